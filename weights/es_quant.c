/* es_quant: scalar quantizers and decoders, one pair per format (see
 * es_quant.h for the layouts). Decoders follow the published layouts bit
 * for bit; quantizers are straightforward absmax schemes whose error the
 * round-trip tests bound per format. */
#include "es_quant.h"
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "es_fp.h"

typedef struct { uint16_t d; int8_t qs[32]; } es_block_q8_0;
typedef struct { uint16_t d; uint8_t qs[16]; } es_block_q4_0;
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } es_block_q3_k;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } es_block_q6_k;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } es_block_q4_k;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } es_block_q5_k;
typedef struct { uint8_t e; uint8_t qs[16]; } es_block_mxfp4;
typedef struct { uint8_t s; uint8_t qs[8]; } es_block_nvfp4;

_Static_assert(sizeof(es_block_q8_0) == 34, "q8_0 block is 34 bytes");
_Static_assert(sizeof(es_block_q4_0) == 18, "q4_0 block is 18 bytes");
_Static_assert(sizeof(es_block_q3_k) == 110, "q3_k block is 110 bytes");
_Static_assert(offsetof(es_block_q3_k, scales) == 96 && offsetof(es_block_q3_k, d) == 108, "q3_k layout");
_Static_assert(sizeof(es_block_q6_k) == 210, "q6_k block is 210 bytes");
_Static_assert(offsetof(es_block_q6_k, scales) == 192 && offsetof(es_block_q6_k, d) == 208, "q6_k layout");
_Static_assert(sizeof(es_block_q4_k) == 144, "q4_k block is 144 bytes");
_Static_assert(sizeof(es_block_q5_k) == 176 && offsetof(es_block_q5_k, qs) == 48, "q5_k layout");
_Static_assert(sizeof(es_block_mxfp4) == 17, "mxfp4 block is 17 bytes");
_Static_assert(sizeof(es_block_nvfp4) == 9, "nvfp4 block is 9 bytes");

/* ---- helpers ---- */

/* The element of largest magnitude, with its sign (first one on ties). x finite: for non-negative floats the
 * order of |x| is that of their bits as integers, so the largest magnitude is an integer max over the block
 * (it vectorizes: the select chain on floats was most of a load's quantizing), then the first element that
 * has it. */
static float signed_absmax(const float *x, int n)
{
    uint32_t top = 0;
    for (int i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        b &= 0x7FFFFFFFu;
        top = b > top ? b : top;
    }
    if (top == 0) return 0.0f;
    for (int i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        if ((b & 0x7FFFFFFFu) == top) return x[i];
    }
    return 0.0f;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* 1/d, or 0 for a zero scale (every element then quantizes to 0). */
static float inv_of(float d) { return d == 0.0f ? 0.0f : 1.0f / d; }

/* q = clamp(round(x / d)) computed as x * (1/d), rounding half away from zero: v clamped to [lo, hi], then
 * v + 0.5 with v's sign truncated (lo - 0.5 truncates to lo, hi + 0.5 to hi; -0.0 - 0.5 to 0 as -0.0 + 0.5
 * would), without branches so that a block's loop vectorizes. x finite (the readers refuse others). */
static int quant_int(float x, float inv, int lo, int hi)
{
    float v = x * inv;
    v = v < (float)lo ? (float)lo : v;
    v = v > (float)hi ? (float)hi : v;
    return (int)(v + copysignf(0.5f, v));
}

static int nib_index(es_nibble_order o, int j, int half, int hi)
{
    return o == ES_NIB_SPLIT ? j + (hi ? half : 0) : 2 * j + (hi ? 1 : 0);
}

/* ---- quantizers ---- */

static void q_intn(const float *x, int g, int bits, uint8_t *dst)
{
    int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
    uint16_t d16 = es_f32_to_f16(signed_absmax(x, g) / (float)lo);
    float inv = inv_of(es_f16_to_f32(d16));
    memcpy(dst, &d16, 2);
    uint8_t u[128], *p = dst + 2; /* g is 32, 64 or 128 (es_qfmt_check) */
    for (int i = 0; i < g; i++) u[i] = (uint8_t)(quant_int(x[i], inv, lo, hi) - lo);
    /* codes packed LSB first: 24 / bits codes (8 of 3 bits, 4 of 6) fill 3 bytes */
    for (int i = 0, per = 24 / bits; i < g; i += per, p += 3) {
        uint32_t v = 0;
        for (int k = 0; k < per; k++) v |= (uint32_t)u[i + k] << (bits * k);
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
    }
}

static void q_q8_0(const float *x, es_block_q8_0 *b)
{
    float am = fabsf(signed_absmax(x, 32));
    b->d = es_f32_to_f16(am / 127.0f);
    float inv = inv_of(es_f16_to_f32(b->d));
    for (int i = 0; i < 32; i++) b->qs[i] = (int8_t)quant_int(x[i], inv, -127, 127);
}

static void q_q4_0(const float *x, es_block_q4_0 *b, es_nibble_order o)
{
    b->d = es_f32_to_f16(signed_absmax(x, 32) / -8.0f);
    float inv = inv_of(es_f16_to_f32(b->d));
    memset(b->qs, 0, 16);
    for (int j = 0; j < 16; j++) {
        int lo = quant_int(x[nib_index(o, j, 16, 0)], inv, -8, 7) + 8;
        int hi = quant_int(x[nib_index(o, j, 16, 1)], inv, -8, 7) + 8;
        b->qs[j] = (uint8_t)(lo | hi << 4);
    }
}

static void q_q3_k(const float *x, es_block_q3_k *b)
{
    float s[16];
    for (int j = 0; j < 16; j++) s[j] = signed_absmax(x + 16 * j, 16) / -4.0f;
    b->d = es_f32_to_f16(signed_absmax(s, 16) / -32.0f);
    float d = es_f16_to_f32(b->d);
    memset(b, 0, offsetof(es_block_q3_k, d));
    for (int j = 0; j < 16; j++) {
        int sc = quant_int(s[j], inv_of(d), -32, 31) + 32; /* stored 0..63 */
        if (j < 8) b->scales[j] |= (uint8_t)(sc & 0xF);
        else b->scales[j - 8] |= (uint8_t)((sc & 0xF) << 4);
        b->scales[8 + (j & 3)] |= (uint8_t)((sc >> 4) << (2 * (j >> 2)));
        float inv = inv_of(d * (float)(sc - 32));
        for (int k = 0; k < 16; k++) {
            int i = 16 * j + k, h = i >> 7, jj = (i & 127) >> 5, l = i & 31;
            int u = quant_int(x[i], inv, -4, 3) + 4;
            b->qs[32 * h + l] |= (uint8_t)((u & 3) << (2 * jj));
            if (u >> 2) b->hmask[l] |= (uint8_t)(1u << (4 * h + jj));
        }
    }
}

static void q_q6_k(const float *x, es_block_q6_k *b)
{
    float s[16];
    for (int j = 0; j < 16; j++) s[j] = signed_absmax(x + 16 * j, 16) / -32.0f;
    b->d = es_f32_to_f16(signed_absmax(s, 16) / -128.0f);
    float d = es_f16_to_f32(b->d);
    memset(b->ql, 0, sizeof b->ql);
    memset(b->qh, 0, sizeof b->qh);
    for (int j = 0; j < 16; j++) b->scales[j] = (int8_t)quant_int(s[j], inv_of(d), -128, 127);
    for (int i = 0; i < 256; i++) {
        /* inverse of the decoder: half n, lane l, quarter k (0..3) */
        int n = i >> 7, r = i & 127, k = r >> 5, l = r & 31;
        int is = 8 * n + (l >> 4) + 2 * k;
        int u = quant_int(x[i], inv_of(d * (float)b->scales[is]), -32, 31) + 32;
        int qlb = 64 * n + l + ((k & 1) ? 32 : 0);
        b->ql[qlb] |= (uint8_t)((u & 0xF) << ((k >> 1) ? 4 : 0));
        b->qh[32 * n + l] |= (uint8_t)((u >> 4) << (2 * k));
    }
}

/* q4_k / q5_k: 8 sub-blocks of 32, each y = d*sc*q - dmin*m with 6-bit sc, m. */
static void pack_scale_min(uint8_t *scales, const int *sc, const int *mn)
{
    memset(scales, 0, 12);
    for (int j = 0; j < 4; j++) {
        scales[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        scales[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        scales[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | (mn[j + 4] & 0xF) << 4);
    }
}

static void scale_min(int j, const uint8_t *q, int *sc, int *mn)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* codes[256] in 0..qmax; returns d, dmin as fp16 in the block's header fields */
static void q_kquant(const float *x, int qmax, uint16_t *d16, uint16_t *dmin16, uint8_t *scales, int *codes)
{
    float s[8], mneg[8], smax = 0, mmax = 0;
    for (int j = 0; j < 8; j++) {
        float lo = x[32 * j], hi = x[32 * j];
        for (int k = 1; k < 32; k++) {
            if (x[32 * j + k] < lo) lo = x[32 * j + k];
            if (x[32 * j + k] > hi) hi = x[32 * j + k];
        }
        if (lo > 0) lo = 0;
        s[j] = (hi - lo) / (float)qmax;
        mneg[j] = -lo;
        if (s[j] > smax) smax = s[j];
        if (mneg[j] > mmax) mmax = mneg[j];
    }
    *d16 = es_f32_to_f16(smax / 63.0f);
    *dmin16 = es_f32_to_f16(mmax / 63.0f);
    float d = es_f16_to_f32(*d16), dmin = es_f16_to_f32(*dmin16);
    int sc[8], mn[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = quant_int(s[j], inv_of(d), 0, 63);
        mn[j] = quant_int(mneg[j], inv_of(dmin), 0, 63);
        if (sc[j] == 0 && s[j] > 0) sc[j] = 1;
        float inv = inv_of(d * (float)sc[j]), off = dmin * (float)mn[j];
        for (int k = 0; k < 32; k++) codes[32 * j + k] = quant_int(x[32 * j + k] + off, inv, 0, qmax);
    }
    pack_scale_min(scales, sc, mn);
}

static void q_q4_k(const float *x, es_block_q4_k *b)
{
    int codes[256];
    q_kquant(x, 15, &b->d, &b->dmin, b->scales, codes);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            b->qs[32 * c + l] = (uint8_t)(codes[64 * c + l] | codes[64 * c + 32 + l] << 4);
}

static void q_q5_k(const float *x, es_block_q5_k *b)
{
    int codes[256];
    q_kquant(x, 31, &b->d, &b->dmin, b->scales, codes);
    memset(b->qh, 0, sizeof b->qh);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int a = codes[64 * c + l], z = codes[64 * c + 32 + l];
            b->qs[32 * c + l] = (uint8_t)((a & 0xF) | (z & 0xF) << 4);
            b->qh[l] |= (uint8_t)((a >> 4) << (2 * c) | (z >> 4) << (2 * c + 1));
        }
}

static void q_mxfp4(const float *x, es_block_mxfp4 *b, es_nibble_order o)
{
    float am = fabsf(signed_absmax(x, 32));
    int exp = 0; /* shared_exp = floor(log2(amax)) - 2, E8M0 range */
    if (am > 0) {
        int e;
        frexpf(am, &e);      /* am in [2^(e-1), 2^e) */
        exp = e - 1 - 2;
    }
    int biased = clampi(exp + 127, 0, 254);
    b->e = (uint8_t)biased;
    float inv = ldexpf(1.0f, 127 - biased);
    for (int j = 0; j < 16; j++)
        b->qs[j] = (uint8_t)(es_f32_to_e2m1(x[nib_index(o, j, 16, 0)] * inv) |
                             es_f32_to_e2m1(x[nib_index(o, j, 16, 1)] * inv) << 4);
}

static void q_nvfp4(const float *x, float ts, es_block_nvfp4 *b, es_nibble_order o)
{
    float am = fabsf(signed_absmax(x, 16));
    b->s = es_f32_to_e4m3(am / (6.0f * ts));
    float sc = es_e4m3_to_f32(b->s) * ts;
    for (int j = 0; j < 8; j++) {
        float a = sc > 0 ? x[nib_index(o, j, 8, 0)] / sc : 0, c = sc > 0 ? x[nib_index(o, j, 8, 1)] / sc : 0;
        b->qs[j] = (uint8_t)(es_f32_to_e2m1(a) | es_f32_to_e2m1(c) << 4);
    }
}

int es_quantize_row(const es_qfmt *f, const float *x, int64_t n, void *dst, es_err *e)
{
    if (es_qfmt_check(f, e) || es_q_row_bytes(f, n, e) < 0) return -1;
    uint8_t *p = dst;
    int64_t be = es_q_block_elems(f), bb = es_q_block_bytes(f);
    for (int64_t i = 0; i < n; i += be, p += bb) {
        const float *xb = x + i;
        switch (f->type) {
        case ES_Q_F32: memcpy(p, xb, 4); break;
        case ES_Q_F16: { uint16_t h = es_f32_to_f16(*xb); memcpy(p, &h, 2); break; }
        case ES_Q_BF16: { uint16_t h = es_f32_to_bf16(*xb); memcpy(p, &h, 2); break; }
        case ES_Q_FP8: *p = es_f32_to_e4m3(*xb / f->tensor_scale); break; /* RNE, saturating at +-448 */
        case ES_Q_Q8_0: q_q8_0(xb, (es_block_q8_0 *)p); break;
        case ES_Q_Q4_0: q_q4_0(xb, (es_block_q4_0 *)p, f->nibbles); break;
        case ES_Q_Q3_K: q_q3_k(xb, (es_block_q3_k *)p); break;
        case ES_Q_Q6_K: q_q6_k(xb, (es_block_q6_k *)p); break;
        case ES_Q_Q4_K: q_q4_k(xb, (es_block_q4_k *)p); break;
        case ES_Q_Q5_K: q_q5_k(xb, (es_block_q5_k *)p); break;
        case ES_Q_MXFP4: q_mxfp4(xb, (es_block_mxfp4 *)p, f->nibbles); break;
        case ES_Q_NVFP4: q_nvfp4(xb, f->tensor_scale, (es_block_nvfp4 *)p, f->nibbles); break;
        case ES_Q_INT3: q_intn(xb, f->group, 3, p); break;
        case ES_Q_INT6: q_intn(xb, f->group, 6, p); break;
        default: return es_fail(e, "unknown weight format");
        }
    }
    return 0;
}

/* ---- decoders ---- */

/* One block's codes (qb) and sub-block scales (sc) per format family, the inverse of the q_* quantizers
 * above; the K-quants with a minimum also fill mn when it is not NULL. */
static void dc_q8_0(const uint8_t *p, int8_t *qb, float *sc)
{
    const es_block_q8_0 *b = (const es_block_q8_0 *)p;
    *sc = es_f16_to_f32(b->d);
    for (int j = 0; j < 32; j++) qb[j] = b->qs[j];
}

static void dc_q4_0(const uint8_t *p, es_nibble_order o, int8_t *qb, float *sc)
{
    const es_block_q4_0 *b = (const es_block_q4_0 *)p;
    *sc = es_f16_to_f32(b->d);
    for (int j = 0; j < 16; j++) {
        qb[nib_index(o, j, 16, 0)] = (int8_t)((b->qs[j] & 0xF) - 8);
        qb[nib_index(o, j, 16, 1)] = (int8_t)((b->qs[j] >> 4) - 8);
    }
}

static void dc_q3_k(const uint8_t *p, int8_t *qb, float *sc)
{
    const es_block_q3_k *b = (const es_block_q3_k *)p;
    float d = es_f16_to_f32(b->d);
    for (int s16 = 0; s16 < 16; s16++) {
        int lo = s16 < 8 ? b->scales[s16] & 0xF : b->scales[s16 - 8] >> 4;
        int hi = (b->scales[8 + (s16 & 3)] >> (2 * (s16 >> 2))) & 3;
        sc[s16] = d * (float)((lo | hi << 4) - 32);
    }
    for (int k = 0; k < 256; k++) {
        int h = k >> 7, j = (k & 127) >> 5, l = k & 31;
        int q2 = (b->qs[32 * h + l] >> (2 * j)) & 3;
        int hb = (b->hmask[l] >> (4 * h + j)) & 1;
        qb[k] = (int8_t)(q2 - (hb ? 0 : 4));
    }
}

static void dc_q6_k(const uint8_t *p, int8_t *qb, float *sc)
{
    const es_block_q6_k *b = (const es_block_q6_k *)p;
    float d = es_f16_to_f32(b->d);
    for (int s16 = 0; s16 < 16; s16++) sc[s16] = d * (float)b->scales[s16];
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int8_t *qq = qb + 128 * h;
        for (int l = 0; l < 32; l++) {
            qq[l] = (int8_t)(((ql[l] & 0xF) | ((qh[l] >> 0 & 3) << 4)) - 32);
            qq[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | ((qh[l] >> 2 & 3) << 4)) - 32);
            qq[l + 64] = (int8_t)(((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32);
            qq[l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32);
        }
    }
}

/* q4_k and q5_k: the same scales and minimums; q5_k adds a fifth bit per code from qh */
static void dc_q45_k(const uint8_t *p, es_qtype t, int8_t *qb, float *sc, float *mn)
{
    const uint8_t *scales, *qs, *qh = NULL;
    uint16_t d16, dmin16;
    if (t == ES_Q_Q4_K) {
        const es_block_q4_k *b = (const es_block_q4_k *)p;
        d16 = b->d; dmin16 = b->dmin; scales = b->scales; qs = b->qs;
    } else {
        const es_block_q5_k *b = (const es_block_q5_k *)p;
        d16 = b->d; dmin16 = b->dmin; scales = b->scales; qs = b->qs; qh = b->qh;
    }
    float d = es_f16_to_f32(d16), dmin = es_f16_to_f32(dmin16);
    for (int c = 0; c < 4; c++) {
        int sc1, m1, sc2, m2;
        scale_min(2 * c, scales, &sc1, &m1);
        scale_min(2 * c + 1, scales, &sc2, &m2);
        sc[2 * c] = d * (float)sc1;
        sc[2 * c + 1] = d * (float)sc2;
        if (mn) { mn[2 * c] = dmin * (float)m1; mn[2 * c + 1] = dmin * (float)m2; }
        for (int l = 0; l < 32; l++) {
            int lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
            if (qh) {
                lo += (qh[l] >> (2 * c) & 1) << 4;
                hi += (qh[l] >> (2 * c + 1) & 1) << 4;
            }
            qb[64 * c + l] = (int8_t)lo;
            qb[64 * c + 32 + l] = (int8_t)hi;
        }
    }
}

/* mxfp4 and nvfp4; blk: the block's index in its row, for the error on a NaN scale */
static int dc_fp4(const uint8_t *p, const es_qfmt *f, int8_t *qb, float *sc, long long blk, es_err *e)
{
    /* E2M1 values are halves: the code is twice the value (-12..12), the scale half the block's */
    int half = f->type == ES_Q_MXFP4 ? 16 : 8;
    const uint8_t *qs = p + 1;
    float s;
    if (f->type == ES_Q_MXFP4) {
        if (es_e8m0_is_nan(p[0])) return es_fail(e, "mxfp4: block %lld has the NaN scale 0xFF", blk);
        s = es_e8m0_to_f32(p[0]);
    } else {
        s = es_e4m3_to_f32(p[0]);
        if (isnan(s)) return es_fail(e, "nvfp4: block %lld has a NaN E4M3 scale", blk);
        s *= f->tensor_scale;
    }
    *sc = s * 0.5f;
    for (int j = 0; j < half; j++) {
        qb[nib_index(f->nibbles, j, half, 0)] = (int8_t)(2.0f * es_e2m1_to_f32(qs[j] & 0xF));
        qb[nib_index(f->nibbles, j, half, 1)] = (int8_t)(2.0f * es_e2m1_to_f32(qs[j] >> 4));
    }
    return 0;
}

/* int3 and int6: an f16 scale, then `group` codes of `bits` bits packed from the low bit up */
static void dc_intn(const uint8_t *p, int group, int bits, int8_t *qb, float *sc)
{
    int off = 1 << (bits - 1);
    uint16_t h;
    memcpy(&h, p, 2);
    *sc = es_f16_to_f32(h);
    const uint8_t *qp = p + 2;
    uint64_t acc = 0;
    int nacc = 0;
    for (int j = 0; j < group; j++) {
        while (nacc < bits) {
            acc |= (uint64_t)*qp++ << nacc;
            nacc += 8;
        }
        qb[j] = (int8_t)((int)(acc & ((1u << bits) - 1)) - off);
        acc >>= bits;
        nacc -= bits;
    }
}

/* blk0: the index of src's first block in its row, for error messages */
static int decode_codes(const es_qfmt *f, const void *src, int64_t n, int8_t *q, float *scale, float *min,
                        int64_t blk0, es_err *e)
{
    if (es_qfmt_check(f, e) || es_q_row_bytes(f, n, e) < 0) return -1;
    if (es_q_sub_elems(f) == 0) return es_fail(e, "%s: a float format has no integer codes", es_qtype_name(f->type));
    const uint8_t *p = src;
    int64_t be = es_q_block_elems(f), bb = es_q_block_bytes(f), sub = es_q_sub_elems(f);
    for (int64_t i = 0; i < n; i += be, p += bb) {
        int8_t *qb = q + i;
        float *sc = scale + i / sub, *mn = min ? min + i / sub : NULL;
        if (mn)
            for (int64_t k = 0; k < be / sub; k++) mn[k] = 0;
        switch (f->type) {
        case ES_Q_Q8_0: dc_q8_0(p, qb, sc); break;
        case ES_Q_Q4_0: dc_q4_0(p, f->nibbles, qb, sc); break;
        case ES_Q_Q3_K: dc_q3_k(p, qb, sc); break;
        case ES_Q_Q6_K: dc_q6_k(p, qb, sc); break;
        case ES_Q_Q4_K:
        case ES_Q_Q5_K: dc_q45_k(p, f->type, qb, sc, mn); break;
        case ES_Q_MXFP4:
        case ES_Q_NVFP4:
            if (dc_fp4(p, f, qb, sc, (long long)(i / be + blk0), e)) return -1;
            break;
        case ES_Q_INT3: dc_intn(p, f->group, 3, qb, sc); break;
        case ES_Q_INT6: dc_intn(p, f->group, 6, qb, sc); break;
        default: return es_fail(e, "unknown weight format");
        }
    }
    return 0;
}

int es_decode_codes(const es_qfmt *f, const void *src, int64_t n, int8_t *q, float *scale, float *min,
                    es_err *e)
{
    return decode_codes(f, src, n, q, scale, min, 0, e);
}

int es_dequantize_row(const es_qfmt *f, const void *src, int64_t n, float *y, es_err *e)
{
    if (es_qfmt_check(f, e) || es_q_row_bytes(f, n, e) < 0) return -1;
    const uint8_t *p = src;
    int64_t sub = es_q_sub_elems(f);
    if (sub == 0) { /* float formats */
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            switch (f->type) {
            case ES_Q_F32: memcpy(&y[i], p + 4 * i, 4); break;
            case ES_Q_F16: memcpy(&h, p + 2 * i, 2); y[i] = es_f16_to_f32(h); break;
            case ES_Q_BF16: memcpy(&h, p + 2 * i, 2); y[i] = es_bf16_to_f32(h); break;
            case ES_Q_FP8: y[i] = es_e4m3_to_f32(p[i]) * f->tensor_scale; break; /* NaN for S.1111.111 */
            default: return es_fail(e, "unknown weight format");
            }
        }
        return 0;
    }
    /* y = scale x code - min, per sub-block: the same decomposition the lanes use */
    int64_t be = es_q_block_elems(f), bb = es_q_block_bytes(f);
    int8_t q[256];
    float sc[256], mn[256];
    if (be > 256) return es_fail(e, "%s: blocks of %lld elements are not supported", es_qtype_name(f->type), (long long)be);
    for (int64_t i = 0; i < n; i += be, p += bb) {
        if (decode_codes(f, p, be, q, sc, mn, i / be, e)) return -1;
        for (int64_t k = 0; k < be; k++) y[i + k] = sc[k / sub] * (float)q[k] - mn[k / sub];
    }
    return 0;
}

static int f16_finite(const uint8_t *p) { return (p[1] & 0x7C) != 0x7C; } /* exponent not all ones */

int es_row_finite(const es_qfmt *f, const void *src, int64_t n)
{
    const uint8_t *p = src;
    int64_t be = es_q_block_elems(f), bb = es_q_block_bytes(f), nb = be > 0 ? n / be : 0;
    int ok = 1;
    switch (f->type) {
    case ES_Q_F32:
        for (int64_t i = 0; i < n; i++) {
            float v;
            memcpy(&v, p + 4 * i, 4);
            ok &= isfinite(v) != 0;
        }
        return ok;
    case ES_Q_F16: for (int64_t i = 0; i < n; i++) ok &= f16_finite(p + 2 * i); return ok;
    case ES_Q_BF16: for (int64_t i = 0; i < n; i++) ok &= (p[2 * i + 1] & 0x7F) != 0x7F || (p[2 * i] & 0x80) == 0; return ok;
    /* one fp16 d per block (group), |code| <= 128: finite d gives finite elements */
    case ES_Q_INT3: case ES_Q_INT6: case ES_Q_Q8_0: case ES_Q_Q4_0:
        for (int64_t k = 0; k < nb; k++) ok &= f16_finite(p + k * bb);
        return ok;
    /* sub-block scales of at most 6 bits (q6_k: int8) times fp16 d (and dmin): finite d, dmin give finite
     * elements (at most 65504 x 128 x 32) */
    case ES_Q_Q3_K:
        for (int64_t k = 0; k < nb; k++) ok &= f16_finite(p + k * bb + offsetof(es_block_q3_k, d));
        return ok;
    case ES_Q_Q6_K:
        for (int64_t k = 0; k < nb; k++) ok &= f16_finite(p + k * bb + offsetof(es_block_q6_k, d));
        return ok;
    case ES_Q_Q4_K: case ES_Q_Q5_K:
        for (int64_t k = 0; k < nb; k++) ok &= f16_finite(p + k * bb) & f16_finite(p + k * bb + 2);
        return ok;
    default: break; /* mxfp4, nvfp4, fp8: the scale times the element can overflow: decode */
    }
    float y[256];
    es_err e;
    int64_t c = be > 0 && be <= 256 ? 256 / be : 0; /* blocks per chunk */
    if (!c) return 0;
    for (int64_t k = 0; k < nb; k += c) {
        int64_t m = nb - k < c ? nb - k : c;
        if (es_dequantize_row(f, p + k * bb, m * be, y, &e)) return 0;
        for (int64_t i = 0; i < m * be; i++) ok &= isfinite(y[i]) != 0;
    }
    return ok;
}

float es_nvfp4_tensor_scale(const float *x, int64_t n)
{
    float am = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabsf(x[i]) > am) am = fabsf(x[i]);
    return am > 0 ? am / (448.0f * 6.0f) : 1.0f;
}

float es_fp8_tensor_scale(const float *x, int64_t n)
{
    float am = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabsf(x[i]) > am) am = fabsf(x[i]);
    return am > 0 ? am / 448.0f : 1.0f;
}
