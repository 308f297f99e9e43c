/* es_fmt: the weight-format registry (see es_fmt.h). */
#include "es_fmt.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *names[ES_Q_COUNT] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q3_k", "q6_k",
                                        "mxfp4", "nvfp4", "int3", "int6", "q4_k", "q5_k", "fp8"};

const char *es_qtype_name(es_qtype t) { return (t >= 0 && t < ES_Q_COUNT) ? names[t] : "?"; }

int es_qtype_from_name(const char *s)
{
    for (int i = 0; i < ES_Q_COUNT; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

int es_qfmt_check(const es_qfmt *f, es_err *e)
{
    if (f->type < 0 || f->type >= ES_Q_COUNT) return es_fail(e, "unknown weight format %d", (int)f->type);
    if ((f->type == ES_Q_INT3 || f->type == ES_Q_INT6) && f->group != 32 && f->group != 64 &&
        f->group != 128)
        return es_fail(e, "%s: group must be 32, 64 or 128, got %d", names[f->type], f->group);
    if ((f->type == ES_Q_NVFP4 || f->type == ES_Q_FP8) && !(f->tensor_scale > 0 && isfinite(f->tensor_scale)))
        return es_fail(e, "%s: tensor scale must be positive and finite", names[f->type]);
    return 0;
}

int64_t es_q_block_elems(const es_qfmt *f)
{
    switch (f->type) {
    case ES_Q_F32: case ES_Q_F16: case ES_Q_BF16: case ES_Q_FP8: return 1;
    case ES_Q_Q8_0: case ES_Q_Q4_0: case ES_Q_MXFP4: return 32;
    case ES_Q_Q3_K: case ES_Q_Q6_K: case ES_Q_Q4_K: case ES_Q_Q5_K: return 256;
    case ES_Q_NVFP4: return 16;
    case ES_Q_INT3: case ES_Q_INT6: return f->group;
    default: return 0;
    }
}

int64_t es_q_block_bytes(const es_qfmt *f)
{
    switch (f->type) {
    case ES_Q_F32: return 4;
    case ES_Q_F16: case ES_Q_BF16: return 2;
    case ES_Q_FP8: return 1;
    case ES_Q_Q8_0: return 34;
    case ES_Q_Q4_0: return 18;
    case ES_Q_Q3_K: return 110;
    case ES_Q_Q6_K: return 210;
    case ES_Q_Q4_K: return 144;
    case ES_Q_Q5_K: return 176;
    case ES_Q_MXFP4: return 17;
    case ES_Q_NVFP4: return 9;
    case ES_Q_INT3: return 2 + f->group * 3 / 8;
    case ES_Q_INT6: return 2 + f->group * 6 / 8;
    default: return 0;
    }
}

int es_qtype_elem_bits(es_qtype t)
{
    static const int bits[ES_Q_COUNT] = {32, 16, 16, 8, 4, 3, 6, 4, 4, 3, 6, 4, 5, 8};
    return (t >= 0 && t < ES_Q_COUNT) ? bits[t] : 0;
}

double es_q_bits_per_weight(const es_qfmt *f)
{
    return 8.0 * (double)es_q_block_bytes(f) / (double)es_q_block_elems(f);
}

int64_t es_q_row_bytes(const es_qfmt *f, int64_t n, es_err *e)
{
    int64_t be = es_q_block_elems(f);
    if (be <= 0 || n < 0 || n % be)
        return es_fail(e, "%s: %lld elements is not a whole number of %lld-element blocks",
                       es_qtype_name(f->type), (long long)n, (long long)be);
    return n / be * es_q_block_bytes(f);
}

int64_t es_q_padded(const es_qfmt *f, int64_t n)
{
    int64_t be = es_q_block_elems(f);
    return be > 0 && n >= 0 ? (n + be - 1) / be * be : -1;
}

int64_t es_q_sub_elems(const es_qfmt *f)
{
    switch (f->type) {
    case ES_Q_Q3_K: case ES_Q_Q6_K: case ES_Q_NVFP4: return 16;
    case ES_Q_Q4_K: case ES_Q_Q5_K: case ES_Q_Q8_0: case ES_Q_Q4_0: case ES_Q_MXFP4: return 32;
    case ES_Q_INT3: case ES_Q_INT6: return f->group;
    default: return 0; /* f32, f16, bf16, fp8: no integer codes */
    }
}


const char *es_fmt_bytes(char *buf, size_t n, double b)
{
    if (b < 999.5) snprintf(buf, n, "%.0f bytes", b);
    else if (b < 999.95e3) snprintf(buf, n, "%.1f KB", b / 1e3);
    else if (b < 999.95e6) snprintf(buf, n, "%.1f MB", b / 1e6);
    else snprintf(buf, n, "%.3f GB", b / 1e9);
    return buf;
}
