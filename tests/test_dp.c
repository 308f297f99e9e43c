/* test_dp: the functional datapath (sim/func/es_dp.h) against the FP32
 * reference and llama.cpp on stories260K.gguf.
 *   1.x  f32 weights, FP32 lanes, KV and links: logits within 1e-4 of
 *        llama.cpp's at every fixture position and of the FP32 reference's,
 *        greedy tokens exact; the
 *        prompt as one chunk gives the same logits as token by token
 *   2.x  quantized datapaths (hc1-mix recipe, int8 activations and KV, BF16
 *        links): runs, stays close to the reference, agrees with itself
 *        bit for bit across thread counts
 *   3.x  a narrow accumulator saturates and is counted; a wide one does not
 *   4.x  a sequence after a shared prefix gives the logits of the whole
 *        prompt run as one sequence
 *   5.x  the INT8 activation quantizer (es_dp_quant_int8) against codes and
 *        scales derived by hand: ties at .5 of both signs, values just below
 *        .5, zero vectors, subnormals, the largest element to +-127 (runs
 *        first, without the model)
 *   6.x  the datapath walks the model's op graph: it takes the graph of every
 *        architecture of the registry (a dense Llama, OLMoE, Qwen3-MoE,
 *        Mixtral, Mamba, Falcon-Mamba), which between them hold every op
 *        kind, and refuses, naming the op, an op kind it has no unit for and
 *        ops whose data flow it cannot run (runs first, without the model)
 *   7.x  fp8 weights (models/recipes/fp8.json) on the FP32 datapath: the logits
 *        equal, within 1e-4 at every position, the FP32 reference's fed the
 *        same weights quantized and decoded by the test's own E4M3 and BF16
 *        rounding (written here from the formats' definitions)
 *   8.x  packed weights: the kernels' unpacker equals the scalar reference
 *        decoder (es_decode_codes) on random blocks of every quantized format
 *        (8.0, runs first); every recipe on stories260K, on int8, FP32 and FP8
 *        lanes, gives the logits the datapath gave before weights stayed packed
 *        (recorded hashes, 8.2; run on 3 threads splitting every product, the
 *        hashes recorded on one) and those of the lanes decoding through the
 *        reference (8.1); a recipe of every other format and group (q4_k, q5_k,
 *        q3_k, q6_k, q4_0, nvfp4, int3/128, int6/32 and /128) equal to the
 *        reference decoding (8.3); each of those at every vector kernel level the
 *        host runs (AVX-512, AVX2, plain), in chunks of 4 and token by token,
 *        equal to the reference decoding (8.4: int3/int6 with groups of 32, 64
 *        and 128, row counts of 32, 64, 172 and 512 split in uneven shares
 *        between 3 threads, so 16-row tiles end short); the q8_0 recipe
 *        (models/recipes/q8_0.json: its AVX2 kernel)
 *        on stories260K (rows of 2 and 6 blocks) and on tiny-llama with synthetic weights (rows of 8,
 *        24 and 32 blocks), int8 lanes, 1 and 3 threads, chunks of 1 and 4: equal to the reference
 *        decoding bit for bit (8.5)
 * Run as `test_dp FIXTURES CHIP [MODELS_DIR]`; exits 77 when the model is absent
 * (after 5.x and 6.x; 1 if they failed). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "es_dp.h"
#include "es_cfg.h"
#include "es_fs.h"
#include "es_quant.h"
#include "es_synth.h"
#include "es_stats.h"
#include "es_recipe.h"
#include "es_wsrc.h"

#include "test_check.h"

static int rows(void *arg, int t, int64_t row, float *out, es_err *e) { return es_wsrc_read_row(arg, t, row, out, e); }

static es_dp *make(const char *chip, const char *const *sets, int n_sets, const es_model *m, es_wsrc *w,
                   const char *recipe, int threads, es_chip *c)
{
    es_err e = {{0}};
    es_recipe r;
    es_dp *dp = NULL;
    if (es_chip_load(c, chip, sets, n_sets, &e) || es_recipe_load(&r, recipe, &e)) {
        fprintf(stderr, "setup: %s\n", e.msg);
        exit(1);
    }
    if (es_dp_open(&dp, c, m, threads, &e) || es_dp_load_rows(dp, &r, rows, w, &e)) {
        fprintf(stderr, "datapath: %s\n", e.msg);
        exit(1);
    }
    es_recipe_free(&r);
    return dp;
}

/* Logits of every position of ids[0..n) in one sequence, chunk tokens at a time. */
static int run_seq(es_dp *dp, const es_model *m, const int32_t *ids, int64_t n, int64_t chunk, float *logits)
{
    es_err e = {{0}};
    float *x = malloc((size_t)(chunk * m->hidden) * sizeof *x);
    int rc = es_dp_seq_begin(dp, 1, 0, n, -1, 7, &e);
    for (int64_t p = 0; !rc && p < n; p += chunk) {
        int64_t k = n - p < chunk ? n - p : chunk;
        rc = es_dp_embed(dp, ids + p, k, x, &e) || es_dp_layers(dp, 0, (int)m->layers, 1, p, k, x, &e);
        for (int64_t t = 0; !rc && t < k; t++) rc = es_dp_head(dp, x + t * m->hidden, logits + (p + t) * m->vocab, &e);
    }
    if (rc) fprintf(stderr, "run: %s\n", e.msg);
    es_dp_seq_end(dp, 1);
    free(x);
    return rc;
}

/* One vector through es_dp_quant_int8: its scale bit for bit and every code against the expected. */
static void quant_case(const char *name, const float *x, int n, float want_scale, const int8_t *want)
{
    int8_t q[16];
    memset(q, 0x55, sizeof q); /* codes not written would show as 85 */
    float s = es_dp_quant_int8(x, n, q);
    CHECK(!memcmp(&s, &want_scale, sizeof s), "5.x %s: scale %a, want %a", name, (double)s, (double)want_scale);
    for (int i = 0; i < n; i++)
        CHECK(q[i] == want[i], "5.x %s: element %d (%a): code %d, want %d", name, i, (double)x[i], q[i], want[i]);
}

/* 7.x The test's own fp8 and bf16 weights for the FP32 reference: E4M3 from its definition (bias 7, 3 mantissa
 * bits, subnormals 2^-9 apart, largest 448), the nearest value to x / scale with ties to the even code,
 * saturating at +-448; BF16 by rounding the FP32 bits to nearest even. Not es_fp's or es_quant's code. */
typedef struct fp8_oracle {
    es_wsrc *w;
    const es_model *m;
    float *scale;           /* (n_tensors) amax / 448 of each fp8 tensor, 0 for the bf16 ones */
    float grid[127];        /* the non-negative E4M3 values, code 0x00..0x7E */
} fp8_oracle;

static int fp8_role(int role)
{
    return role == ES_ROLE_Q || role == ES_ROLE_K || role == ES_ROLE_V || role == ES_ROLE_O || role == ES_ROLE_GATE ||
           role == ES_ROLE_UP || role == ES_ROLE_DOWN;
}

static float oracle_e4m3(const fp8_oracle *o, float v)
{
    float a = fabsf(v);
    int best = 0;
    for (int c = 1; c < 127; c++) {
        float d = fabsf(o->grid[c] - a), db = fabsf(o->grid[best] - a);
        if (d < db || (d == db && (c & 1) == 0)) best = c;
    }
    return v < 0 ? -o->grid[best] : o->grid[best];
}

static float oracle_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    memcpy(&x, &u, 4);
    return x;
}

static int oracle_rows(void *arg, int t, int64_t row, float *out, es_err *e)
{
    const fp8_oracle *o = arg;
    if (es_wsrc_read_row(o->w, t, row, out, e)) return -1;
    for (int64_t k = 0; k < o->m->tensors[t].cols; k++)
        out[k] = o->scale[t] > 0 ? oracle_e4m3(o, out[k] / o->scale[t]) * o->scale[t] : oracle_bf16(out[k]);
    return 0;
}

static int oracle_open(fp8_oracle *o, es_wsrc *w, const es_model *m, es_err *e)
{
    o->w = w;
    o->m = m;
    for (int c = 0; c < 127; c++) /* exponent field c >> 3, mantissa c & 7 */
        o->grid[c] = (c >> 3) == 0 ? ldexpf((float)(c & 7), -9) : ldexpf(1.0f + (float)(c & 7) / 8.0f, (c >> 3) - 7);
    o->scale = calloc((size_t)m->n_tensors, sizeof *o->scale);
    float *row = malloc(4096 * sizeof *row);
    for (int t = 0; o->scale && row && t < m->n_tensors; t++) {
        if (!fp8_role(m->tensors[t].role)) continue;
        float am = 0;
        for (int64_t r = 0; r < m->tensors[t].rows; r++) {
            if (m->tensors[t].cols > 4096 || es_wsrc_read_row(w, t, r, row, e)) { free(row); return -1; }
            for (int64_t k = 0; k < m->tensors[t].cols; k++) am = fabsf(row[k]) > am ? fabsf(row[k]) : am;
        }
        o->scale[t] = am > 0 ? am / 448.0f : 1.0f;
    }
    free(row);
    return o->scale ? 0 : -1;
}

/* 5.x The quantizer's semantics (es_dp.h): scale = FP32(max |x| / 127); code = round half away from
 * zero of FP32(x / scale), as floor(|v| + 0.5) with the addition rounded to FP32, clamped to +-127;
 * all codes 0 when the scale is 0. Every expected value below is worked out by hand from that. */
static void test_quant_int8(void)
{
    /* 5.1 max |x| = 127: scale 1 exactly, so v = x. |v| + 0.5 then floor:
     *   127 -> 127.5 -> 127; 0.5 -> 1.0 -> 1; 1.5 -> 2; 2.5 -> 3 (ties go away from zero, the sign
     *   put back: -0.5 -> -1, -1.5 -> -2, -2.5 -> -3; truncation would give 0, 1, 2, and ties to
     *   even 0, 2, 2); 126.5 -> 127.0 -> 127.
     *   0x1.fffffcp-2 = 0.5 - 2^-24: + 0.5 = 1 - 2^-24, a float ([0.5, 1) is spaced 2^-24) -> 0.
     *   0x1.fffffep-2 = 0.5 - 2^-25, the largest float below 0.5: + 0.5 = 1 - 2^-25 is not a float,
     *   it lies halfway between 1 - 2^-24 and 1 and rounds to the even one, 1.0 -> 1 (the FP32 sum
     *   the semantics name; rtl-ref/act_quant.v does the same).
     *   0x1.7ffffep0 = 1.5 - 2^-23: + 0.5 = 2 - 2^-23, a float ([1, 2) is spaced 2^-23) -> 1.
     *   0 and -0 -> 0. */
    const float a[16] = {127.0f, 0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f, 126.5f, -126.5f, 0x1.fffffcp-2f,
                         -0x1.fffffcp-2f, 0x1.fffffep-2f, -0x1.fffffep-2f, 0x1.7ffffep0f, 0.0f, -0.0f};
    const int8_t qa[16] = {127, 1, -1, 2, -2, 3, -3, 127, -127, 0, 0, 1, -1, 1, 0, 0};
    quant_case("scale 1", a, 16, 1.0f, qa);
    /* 5.2 max |x| = 254, negative: scale 254 / 127 = 2 exactly; v = x / 2 exactly:
     *   -254 -> -127; 100 -> 50; -99 -> -49.5 -> -50; 3 -> 1.5 -> 2; -1 -> -0.5 -> -1;
     *   1 -> 0.5 -> 1; 0.75 -> 0.375 -> 0.875 -> 0; -0.25 -> -0.125 -> 0. */
    const float b[8] = {-254.0f, 100.0f, -99.0f, 3.0f, -1.0f, 1.0f, 0.75f, -0.25f};
    const int8_t qb[8] = {-127, 50, -50, 2, -1, 1, 0, 0};
    quant_case("scale 2", b, 8, 2.0f, qb);
    /* 5.3 max |x| = 3: 3 / 127 in binary is 0.0000011 repeating every 7 bits, i.e.
     *   1.1000001 1000001 1000001 10|00001... x 2^-6; the 24 bits kept give 0x1.83060cp-6 and the
     *   rest (below half an ulp) rounds down, so scale < 3/127 by about 4e-9 relative.
     *   3 / scale = 127 (1 + 4e-9): within half an ulp of 127 (2^-17 apart there) -> 127.0 -> 127.
     *   -1 / scale = -42.33... -> -42; 0.5 / scale = 21.17 -> 21; -2 / scale = -84.67 -> -85. */
    const float c[4] = {3.0f, -1.0f, 0.5f, -2.0f};
    const int8_t qc[4] = {127, -42, 21, -85};
    quant_case("scale 3/127", c, 4, 0x1.83060cp-6f, qc);
    /* 5.4 subnormals: max |x| = 127 x 2^-149 = 0x1.fcp-143; scale = 2^-149 exactly (the smallest
     *   subnormal); v = -127, 64, 1 exactly -> -127, 64, 1. */
    const float d[3] = {-0x1.fcp-143f, 0x1p-143f, 0x1p-149f};
    const int8_t qd[3] = {-127, 64, 1};
    quant_case("subnormal", d, 3, 0x1p-149f, qd);
    /* 5.5 max |x| = 2^-149 alone: 2^-149 / 127 is below half the smallest subnormal, so the scale
     *   rounds to 0 and every code is 0. */
    const float e1[2] = {0x1p-149f, -0x1p-149f};
    const int8_t qe[2] = {0, 0};
    quant_case("scale underflows", e1, 2, 0.0f, qe);
    /* 5.6 zero vectors: scale +0, codes 0 (written: the buffer held 85s) */
    const float z[5] = {0.0f, -0.0f, 0.0f, 0.0f, -0.0f};
    const int8_t qz[5] = {0, 0, 0, 0, 0};
    quant_case("zero", z, 5, 0.0f, qz);
}

/* es_dp_open on m fails with a message holding want and want2. */
static void refused(const char *name, const es_chip *c, const es_model *m, const char *want, const char *want2)
{
    es_err e = {{0}};
    es_dp *dp = NULL;
    int rc = es_dp_open(&dp, c, m, 1, &e);
    CHECK(rc != 0 && strstr(e.msg, want) && strstr(e.msg, want2), "6.x %s: open gave %d, '%s'; want '%s', '%s'",
          name, rc, e.msg, want, want2);
    es_dp_close(dp);
}

/* 6.x The graph walk: every architecture's graph is taken, and their graphs hold every op kind;
 * a bad op is refused naming it. */
static void test_graph(const char *chip)
{
    static const char *models[] = {"tiny-llama", "olmoe-1b-7b", "qwen3-30b-a3b", "mixtral-8x7b", "mamba-2.8b",
                                   "falcon-mamba-7b"};
    es_err e = {{0}};
    es_chip c;
    if (es_chip_load(&c, chip, NULL, 0, &e)) { CHECK(0, "6.x chip: %s", e.msg); return; }
    int seen[ES_OP_SCAN + 1] = {0};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        es_model m;
        es_dp *dp = NULL;
        if (es_model_load(&m, models[i], &e)) { CHECK(0, "6.1 %s: %s", models[i], e.msg); continue; }
        CHECK(es_dp_open(&dp, &c, &m, 1, &e) == 0, "6.1 %s: the datapath refused its graph: %s", models[i], e.msg);
        for (int k = 0; k < m.n_ops; k++) seen[m.ops[k].kind]++;
        es_dp_close(dp);
        es_model_free(&m);
    }
    for (int k = 0; k <= ES_OP_SCAN; k++) CHECK(seen[k] > 0, "6.1 no architecture's graph has op kind %d", k);
    es_model m;
    if (es_model_load(&m, "tiny-llama", &e)) { CHECK(0, "6.x tiny-llama: %s", e.msg); es_chip_free(&c); return; }
    es_op *q = &m.ops[2], *down = &m.ops[13], *silu = &m.ops[12], keep;
    CHECK(!strcmp(q->name, "attn_q") && !strcmp(down->name, "ffn_down") && !strcmp(silu->name, "silu_mul"),
          "6.x tiny-llama's ops moved: %s %s %s", q->name, down->name, silu->name);
    keep = *q;
    q->kind = (es_op_kind)99; /* 6.2 a kind no unit computes */
    refused("unknown kind", &c, &m, "op 2 'attn_q' (layer 0)", "no unit for op kind 99");
    *q = keep;
    q->out = ES_BUF_NONE; /* 6.3 a projection that writes nowhere */
    refused("no output", &c, &m, "'attn_q'", "writes buffer 'none'; expected one this model has");
    *q = keep;
    keep = *down;
    down->in[0] = ES_BUF_XB; /* 6.4 down reads the normed residual (hidden), not the ffn's (ffn) */
    refused("wrong input", &c, &m, "'ffn_down'", "[256, 768] does not map its input (256) to its output (256)");
    *down = keep;
    keep = *silu;
    silu->fn = ES_FN_SOFTPLUS; /* 6.5 a softplus with no bias vector (and an input it does not read) */
    refused("softplus", &c, &m, "'silu_mul'", "input 1 is buffer 'up'; expected none");
    silu->in[1] = ES_BUF_NONE;
    refused("softplus", &c, &m, "'silu_mul'", "vector -1");
    *silu = keep;
    es_dp *dp = NULL;
    CHECK(es_dp_open(&dp, &c, &m, 1, &e) == 0, "6.x restored graph refused: %s", e.msg);
    es_dp_close(dp);
    es_model_free(&m);
    es_chip_free(&c);
}

/* tests/gpt_oss_oracle.py: logits of micro-gpt-oss for tokens [1, 3, 0, 4, 2] (gates clamped 15 times, ups 24) */
static const double MICRO_LOGITS[5][5] = {
    {-0.3037659335, -1.740312786, -1.326965228, 0.4969021968, 1.792579112},
    {-0.1991498406, -1.647571978, -1.344680092, 0.3875619714, 1.707838534},
    {-0.1507248883, -1.586229442, -1.335625039, 0.3347043184, 1.6492541},
    {-0.2484530385, -1.700925444, -1.34537087, 0.4402681546, 1.757916767},
    {-0.1310759375, -1.565750728, -1.336084754, 0.3137948382, 1.63012093},
};

/* micro-gpt-oss's weights as tests/gpt_oss_oracle.py makes them: tensor t's element k = sin(1.3 k + 0.7 t), and
 * each expert's gate_up bias shifted by 7 (by -7 at every fourth element) so that gates and ups cross the clamp. */
static int micro_rows(void *arg, int t, int64_t row, float *out, es_err *e)
{
    const es_model *m = arg;
    const es_tensor *x = &m->tensors[t];
    (void)e;
    int gub = x->role == ES_ROLE_BIAS && x->expert >= 0 && strstr(x->name, "gate_up_proj_bias");
    for (int64_t c = 0; c < x->cols; c++) {
        int64_t k = row * x->cols + c;
        out[c] = (float)(sin(1.3 * (double)k + 0.7 * (double)t) + (gub ? (k % 4 != 3 ? 7.0 : -7.0) : 0.0));
    }
    return 0;
}

/* The largest difference of n positions' logits from MICRO_LOGITS. */
static double micro_diff(const float *l, int64_t n, int64_t vocab)
{
    double d = 0;
    for (int64_t p = 0; p < n; p++)
        for (int64_t v = 0; v < vocab; v++) {
            double x = fabs(l[p * vocab + v] - MICRO_LOGITS[p][v]);
            d = x > d ? x : d;
        }
    return d;
}

/* 8.x gpt-oss (tests/data/micro-gpt-oss, beside the fixtures file: biases, sinks, a sliding window of 2 on
 * layer 0, the clamped SwiGLU on interleaved gate and up, YaRN RoPE) against logits computed by
 * tests/gpt_oss_oracle.py from OpenAI's reference forward pass: the FP32 reference and the FP32 datapath
 * (token by token and in chunks of 3) within 1e-4; YaRN's frequencies and concentration as computed there. */
static void test_gpt_oss(const char *fixtures, const char *chip)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", fixtures);
    char *slash = strrchr(dir, '/');
    snprintf(slash ? slash + 1 : dir, sizeof dir - (size_t)(slash ? slash + 1 - dir : 0), "micro-gpt-oss");
    es_err e = {{0}};
    es_model m;
    if (es_model_load(&m, dir, &e)) { CHECK(0, "8.x %s: %s", dir, e.msg); return; }
    CHECK(m.n_tensors == 1 + 2 * (13 + 5 * 3) + 2 && m.vocab == 5, "8.0 micro-gpt-oss: %d tensors", m.n_tensors);
    double f[4], want_f[4] = {1, 0.0508132748, 0.000456483919, 4.09997848e-06};
    es_model_rope_freqs(&m, f);
    for (int i = 0; i < 4; i++)
        CHECK(fabs(f[i] / want_f[i] - 1) < 1e-8, "8.1 YaRN frequency %d: %.9g, want %.9g", i, f[i], want_f[i]);
    CHECK(fabs(es_model_rope_mscale(&m) - 1.34657359) < 1e-8, "8.1 YaRN concentration %.9f", es_model_rope_mscale(&m));
    const int32_t ids[5] = {1, 3, 0, 4, 2};
    float logits[5 * 5];
    es_ref *ref = NULL;
    CHECK(es_ref_load(&ref, &m, micro_rows, &m, 8, ES_REF_ROPE_HALVES, &e) == 0, "8.2 reference: %s", e.msg);
    for (int p = 0; ref && p < 5; p++)
        CHECK(es_ref_forward(ref, ids[p], p, logits + p * 5, &e) == 0, "8.2 reference: %s", e.msg);
    if (ref) CHECK(micro_diff(logits, 5, 5) <= 1e-4, "8.2 FP32 reference: %.3g from the oracle's logits",
                   micro_diff(logits, 5, 5));
    es_ref_free(ref);
    const char *fp32[] = {"tile.lanes.activation_format=fp32", "kv.element_bits=32", "kv.element_format=fp32",
                          "link.elem_bits=32"};
    es_chip c;
    es_recipe r;
    es_dp *dp = NULL;
    if (es_chip_load(&c, chip, fp32, 4, &e) || es_recipe_load(&r, "f32", &e)) { CHECK(0, "8.x %s", e.msg); return; }
    CHECK(es_dp_open(&dp, &c, &m, 1, &e) == 0 && es_dp_load_rows(dp, &r, micro_rows, &m, &e) == 0, "8.3 datapath: %s",
          e.msg);
    for (int64_t chunk = 1; dp && chunk <= 3; chunk += 2) {
        memset(logits, 0, sizeof logits);
        CHECK(run_seq(dp, &m, ids, 5, chunk, logits) == 0 && micro_diff(logits, 5, 5) <= 1e-4,
              "8.3 FP32 datapath, chunks of %lld: %.3g from the oracle's logits", (long long)chunk,
              micro_diff(logits, 5, 5));
    }
    es_dp_close(dp);
    es_recipe_free(&r);
    es_chip_free(&c);
    es_model_free(&m);
}

/* 8.x packed weights: logits of every recipe on stories260K, on the int8 lanes (the chip's own settings) and on
 * FP32 and FP8 activations, bit for bit equal to those the datapath gave before weights stayed packed (FNV-1a of the
 * logits' bytes, recorded at f349d52, when every weight was decoded to an int8 code at load), and equal to the
 * lanes decoding each block through the format's scalar reference (es_decode_codes). */
static uint64_t fnv(const void *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ULL;
    return h;
}

/* 8.0 the packed kernels' unpacker (es_dp_unpack_block) against the format's scalar reference (es_decode_codes) on
 * random blocks of every quantized format, both nibble orders and every int3/int6 group: codes, scales and mins
 * bit for bit (NaN scales excluded where the reference refuses them: E8M0 0xFF, E4M3 S.1111.111). */
static void test_unpack(void)
{
    static const struct { es_qtype t; int group; es_nibble_order o; } F[] = {
        {ES_Q_Q8_0, 0, ES_NIB_SPLIT}, {ES_Q_Q4_0, 0, ES_NIB_SPLIT}, {ES_Q_Q4_0, 0, ES_NIB_INTERLEAVED},
        {ES_Q_Q3_K, 0, ES_NIB_SPLIT}, {ES_Q_Q6_K, 0, ES_NIB_SPLIT}, {ES_Q_Q4_K, 0, ES_NIB_SPLIT},
        {ES_Q_Q5_K, 0, ES_NIB_SPLIT}, {ES_Q_MXFP4, 0, ES_NIB_SPLIT}, {ES_Q_MXFP4, 0, ES_NIB_INTERLEAVED},
        {ES_Q_NVFP4, 0, ES_NIB_SPLIT}, {ES_Q_NVFP4, 0, ES_NIB_INTERLEAVED}, {ES_Q_INT3, 32, ES_NIB_SPLIT},
        {ES_Q_INT3, 64, ES_NIB_SPLIT}, {ES_Q_INT3, 128, ES_NIB_SPLIT}, {ES_Q_INT6, 32, ES_NIB_SPLIT},
        {ES_Q_INT6, 64, ES_NIB_SPLIT}, {ES_Q_INT6, 128, ES_NIB_SPLIT}};
    uint64_t st = 12345;
    for (size_t k = 0; k < sizeof F / sizeof *F; k++) {
        es_qfmt f = {F[k].t, F[k].group, 0.0123f, F[k].o};
        es_err e = {{0}};
        const int64_t be = es_q_block_elems(&f), bb = es_q_block_bytes(&f), ns = be / es_q_sub_elems(&f);
        int bad = 0, blocks = 0;
        for (int b = 0; b < 300 && !bad; b++) {
            unsigned char blk[256];
            for (int64_t i = 0; i < bb; i++) blk[i] = (unsigned char)(es_splitmix64(&st) >> 56);
            if (f.type == ES_Q_MXFP4 && blk[0] == 0xFF) blk[0] = 0x7F;
            if (f.type == ES_Q_NVFP4 && (blk[0] & 0x7F) == 0x7F) blk[0] = 0x38;
            int8_t qa[256], qb[256];
            float sa[16], sb[16], ma[16] = {0}, mb[16] = {0};
            if (es_decode_codes(&f, blk, be, qa, sa, ma, &e)) { bad = 1; CHECK(0, "8.0 %s: %s", es_qtype_name(f.type), e.msg); break; }
            CHECK(es_dp_unpack_block(&f, blk, qb, sb, mb) == 0, "8.0 %s: refused", es_qtype_name(f.type));
            bad = memcmp(qa, qb, (size_t)be) || memcmp(sa, sb, (size_t)ns * sizeof *sa) || memcmp(ma, mb, (size_t)ns * sizeof *ma);
            blocks++;
        }
        CHECK(!bad, "8.0 %s group %d nibbles %d: the packed unpacker differs from es_decode_codes at block %d",
              es_qtype_name(f.type), f.group, (int)f.nibbles, blocks - 1);
    }
    es_qfmt f32 = {ES_Q_F32, 0, 1, ES_NIB_SPLIT};
    int8_t q[4];
    float s1[1];
    CHECK(es_dp_unpack_block(&f32, q, q, s1, NULL) == -1, "8.0 f32 has no codes");
}

/* 8.4 every vector kernel level the host runs (es_dp_set_kernels: AVX-512, AVX2, plain), on prompt chunks of 4 and
 * token by token, gives logits want (the reference decoder's) bit for bit; 0, or the level and chunk that differed
 * (level + 10 chunk). The reference decoder is off on return, the kernels at the widest level. */
static int kernel_levels(es_dp *dp, const es_model *m, const int32_t *ids, int64_t n, const float *want, float *tmp)
{
    es_dp_set_reference_decode(dp, 0);
    int bad = 0;
    for (int level = ES_DP_KERNELS_AVX512; level >= ES_DP_KERNELS_PLAIN && !bad; level--) {
        if (es_dp_set_kernels(dp, level) != level) continue; /* the host lacks it */
        for (int chunk = 1; chunk <= 4 && !bad; chunk += 3)
            if (run_seq(dp, m, ids, n, chunk, tmp) || memcmp(tmp, want, (size_t)(n * m->vocab) * sizeof *tmp))
                bad = level + 10 * chunk;
    }
    es_dp_set_kernels(dp, ES_DP_KERNELS_AVX512);
    return bad;
}

static void test_packed(const char *chip, const es_model *m, es_wsrc *w, const int32_t *ids, int64_t n)
{
    static const char *const recipes[] = {"f32", "bf16", "fp4", "fp8", "hc1-mix"};
    static const char *const acts[][2] = {{NULL, NULL}, {"tile.lanes.activation_format=fp32", "kv.element_format=fp8"},
                                          {"tile.lanes.activation_format=fp8", "link.elem_bits=32"}};
    static const uint64_t WANT[5][3] = {
        {0xc7d143a193fcdf6cULL, 0x5be50fe6db86d498ULL, 0x0cf3674e28073e8dULL},
        {0x5dbcd9306754abddULL, 0x71fcef43519f54b2ULL, 0x14b9d36c4cac8d7aULL},
        {0x9ca03922e4fb3558ULL, 0x2d7400ebc18decbeULL, 0x41fa3ea0b92b8a73ULL},
        {0xf16feebced9f9186ULL, 0x199a42a427356353ULL, 0xe868dd6088d04a25ULL},
        {0x350555cad7fa64e9ULL, 0x3afb5f2526e6f556ULL, 0x9a46e3a4895be062ULL}};
    float *a = malloc((size_t)(n * m->vocab) * sizeof *a), *b = malloc((size_t)(n * m->vocab) * sizeof *b);
    for (int r = 0; r < 5; r++)
        for (int k = 0; k < 3; k++) {
            es_chip c;
            es_dp *dp = make(chip, acts[k], acts[k][0] ? 2 : 0, m, w, recipes[r], 3, &c);
            es_dp_set_split_min(dp, 0); /* every product's rows split between 3 threads: the hashes are 1 thread's */
            int ok = run_seq(dp, m, ids, n, 4, a) == 0;
            es_dp_set_reference_decode(dp, 1);
            ok = ok && run_seq(dp, m, ids, n, 4, b) == 0;
            uint64_t h = fnv(a, (size_t)(n * m->vocab) * sizeof *a);
            printf("test_dp: 8.x %s %s: logits 0x%016llx\n", recipes[r], acts[k][0] ? acts[k][0] : "chip",
                   (unsigned long long)h);
            CHECK(ok && !memcmp(a, b, (size_t)(n * m->vocab) * sizeof *a),
                  "8.1 %s %s: the packed kernels' logits differ from the scalar reference decoder's", recipes[r],
                  acts[k][0] ? acts[k][0] : "chip");
            CHECK(h == WANT[r][k], "8.2 %s %s: logits 0x%016llx, before packing 0x%016llx", recipes[r],
                  acts[k][0] ? acts[k][0] : "chip", (unsigned long long)h, (unsigned long long)WANT[r][k]);
            int lv = kernel_levels(dp, m, ids, n, b, a);
            CHECK(!lv, "8.4 %s %s: kernel level %d on chunks of %d differs from the scalar reference decoder", recipes[r],
                  acts[k][0] ? acts[k][0] : "chip", lv % 10, lv / 10);
            es_dp_close(dp);
            es_chip_free(&c);
        }
    /* 8.3 every other quantized format and group, through the packed kernels on 3 threads and through the reference
     * decoder: the same logits bit for bit (no earlier hashes: no recipe used them) */
    char path[] = "/tmp/test_dp_recipe_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    CHECK(f != NULL, "8.3 a temporary recipe file");
    if (f) {
        fputs("{\"name\": \"every-format\", \"rules\": ["
              "{\"match\": {\"role\": [\"attn_norm\", \"ffn_norm\", \"out_norm\"]}, \"format\": \"bf16\"},"
              "{\"match\": {\"role\": \"attn_q\"}, \"format\": \"q4_k\"},"
              "{\"match\": {\"role\": \"attn_k\"}, \"format\": \"q5_k\"},"
              "{\"match\": {\"role\": \"attn_v\"}, \"format\": \"int6\", \"group\": 32},"
              "{\"match\": {\"role\": \"attn_o\"}, \"format\": \"q3_k\"},"
              "{\"match\": {\"role\": \"ffn_gate\"}, \"format\": \"int3\", \"group\": 128},"
              "{\"match\": {\"role\": \"ffn_up\"}, \"format\": \"q6_k\"},"
              "{\"match\": {\"role\": \"ffn_down\"}, \"format\": \"int6\", \"group\": 128},"
              "{\"match\": {\"role\": \"lm_head\"}, \"format\": \"nvfp4\"},"
              "{\"match\": {}, \"format\": \"q4_0\"}]}\n", f);
        fclose(f);
        for (int k = 0; k < 3; k++) {
            es_chip c;
            es_dp *dp = make(chip, acts[k], acts[k][0] ? 2 : 0, m, w, path, 3, &c);
            es_dp_set_split_min(dp, 0);
            int ok = run_seq(dp, m, ids, n, 4, a) == 0;
            es_dp_set_reference_decode(dp, 1);
            ok = ok && run_seq(dp, m, ids, n, 4, b) == 0;
            CHECK(ok && !memcmp(a, b, (size_t)(n * m->vocab) * sizeof *a),
                  "8.3 every format %s: the packed kernels' logits differ from the scalar reference decoder's",
                  acts[k][0] ? acts[k][0] : "chip");
            int lv = kernel_levels(dp, m, ids, n, b, a);
            CHECK(!lv, "8.4 every format %s: kernel level %d on chunks of %d differs from the scalar reference decoder",
                  acts[k][0] ? acts[k][0] : "chip", lv % 10, lv / 10);
            es_dp_close(dp);
            es_chip_free(&c);
        }
        remove(path);
    }
    free(a);
    free(b);
}

static int synth_rows(void *arg, int t, int64_t row, float *out, es_err *e)
{
    (void)e;
    es_synth_row(3, &((const es_model *)arg)->tensors[t], row, out);
    return 0;
}

/* 8.5 q8_0 through its kernel against the reference decoder, on model m (weights from rs, arg) */
static void q8_case(const char *chip, const es_model *m, es_ref_rows rs, void *arg, const int32_t *ids, int64_t n)
{
    float *a = malloc((size_t)(n * m->vocab) * sizeof *a), *b = malloc((size_t)(n * m->vocab) * sizeof *b);
    es_err e = {{0}};
    es_recipe r;
    CHECK(es_recipe_load(&r, "q8_0", &e) == 0, "8.5 recipe q8_0: %s", e.msg);
    for (int threads = 1; threads <= 3; threads += 2)
        for (int64_t chunk = 1; chunk <= 4; chunk += 3) {
            es_chip c;
            es_dp *dp = NULL;
            CHECK(es_chip_load(&c, chip, NULL, 0, &e) == 0, "8.5 chip: %s", e.msg);
            CHECK(es_dp_open(&dp, &c, m, threads, &e) == 0 && es_dp_load_rows(dp, &r, rs, arg, &e) == 0,
                  "8.5 %s: %s", m->name, e.msg);
            if (!dp) { es_chip_free(&c); continue; }
            es_dp_set_split_min(dp, 0);
            int ok = run_seq(dp, m, ids, n, chunk, a) == 0;
            es_dp_set_reference_decode(dp, 1);
            ok = ok && run_seq(dp, m, ids, n, chunk, b) == 0;
            int64_t diff = -1;
            for (int64_t i = 0; ok && diff < 0 && i < n * m->vocab; i++)
                if (memcmp(a + i, b + i, sizeof *a)) diff = i;
            CHECK(ok && diff < 0, "8.5 q8_0 on %s, %d threads, chunks of %lld: the kernel's logits differ from the "
                  "reference decoder's at position %lld token %lld (%a, want %a)", m->name, threads, (long long)chunk,
                  (long long)(diff / m->vocab), (long long)(diff % m->vocab), diff < 0 ? 0.0 : (double)a[diff],
                  diff < 0 ? 0.0 : (double)b[diff]);
            es_dp_close(dp);
            es_chip_free(&c);
        }
    es_recipe_free(&r);
    free(a);
    free(b);
}

static void test_q8(const char *chip, const es_model *m, es_wsrc *w, const int32_t *ids, int64_t n)
{
    q8_case(chip, m, rows, w, ids, n);
    es_model t;
    es_err e = {{0}};
    if (es_model_load(&t, "tiny-llama", &e)) { CHECK(0, "8.5 tiny-llama: %s", e.msg); return; }
    CHECK(t.hidden / 32 == 8 && t.ffn / 32 == 24, "8.5 tiny-llama's rows: %lld and %lld elements",
          (long long)t.hidden, (long long)t.ffn);
    int32_t tid[12];
    for (int i = 0; i < 12; i++) tid[i] = (int32_t)((i * 389 + 7) % t.vocab);
    q8_case(chip, &t, synth_rows, &t, tid, 12);
    es_model_free(&t);
}

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: test_dp FIXTURES CHIP [MODELS_DIR]\n"); return 2; }
    test_quant_int8();
    test_unpack();
    test_graph(argv[2]);
    test_gpt_oss(argv[1], argv[2]);
    char gguf[1024];
    if (test_model_path("test_dp", argc > 3 ? argv[3] : NULL, gguf, sizeof gguf)) return fails ? 1 : 77;
    es_err e = {{0}};
    es_cfg fxc; /* the fixtures, through the project's JSON reader */
    if (es_cfg_load(&fxc, argv[1], &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    cJSON *fx = fxc.root;
    es_model m;
    es_wsrc w;
    if (!fx || es_model_load(&m, gguf, &e) || es_wsrc_open(&w, gguf, NULL, &e) || es_wsrc_bind(&w, &m, &e)) {
        fprintf(stderr, "setup: %s\n", e.msg);
        return 1;
    }
    const cJSON *g0 = cJSON_GetArrayItem(cJSON_GetObjectItem(fx, "generate"), 0);
    int32_t ids[256];
    int64_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(g0, "prompt_ids")) ids[n++] = (int32_t)it->valuedouble;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(g0, "output_ids")) ids[n++] = (int32_t)it->valuedouble;
    n--; /* positions with fixture logits: the last output token is not run */
    const cJSON *lg = cJSON_GetObjectItem(g0, "logits");
    float *l1 = malloc((size_t)(n * m.vocab) * sizeof *l1), *l2 = malloc((size_t)(n * m.vocab) * sizeof *l2);

    /* 1.x the FP32 datapath */
    const char *fp32[] = {"tile.lanes.activation_format=fp32", "kv.element_bits=32", "kv.element_format=fp32",
                          "link.elem_bits=32"};
    es_chip c32, cq, cn;
    es_dp *dp = make(argv[2], fp32, 4, &m, &w, "f32", 2, &c32);
    CHECK(run_seq(dp, &m, ids, n, 1, l1) == 0, "fp32 token by token");
    double worst = 0;
    int greedy = 1, np = cJSON_GetArraySize(cJSON_GetObjectItem(g0, "prompt_ids"));
    for (int64_t p = 0; p < n; p++) {
        const cJSON *row = cJSON_GetArrayItem(lg, (int)p);
        int best = 0;
        for (int v = 0; v < m.vocab; v++) {
            double d = fabs(l1[p * m.vocab + v] - cJSON_GetArrayItem(row, v)->valuedouble);
            if (d > worst) worst = d;
            if (l1[p * m.vocab + v] > l1[p * m.vocab + best]) best = v;
        }
        if (p >= np - 1) greedy &= best == ids[p + 1];
    }
    CHECK(worst <= 1e-4, "fp32 datapath: logits differ from llama.cpp's by %.3g", worst);
    /* and from the FP32 reference directly */
    {
        es_ref *ref = NULL;
        float *lr = malloc((size_t)m.vocab * sizeof *lr);
        double dref = 0;
        CHECK(es_ref_load(&ref, &m, rows, &w, n, ES_REF_ROPE_HALVES, &e) == 0, "reference: %s", e.msg);
        for (int64_t p = 0; ref && p < n; p++) {
            if (es_ref_forward(ref, ids[p], p, lr, &e)) break;
            for (int v = 0; v < m.vocab; v++) {
                double d = fabs(lr[v] - l1[p * m.vocab + v]);
                if (d > dref) dref = d;
            }
        }
        CHECK(dref <= 1e-4, "fp32 datapath: logits differ from the FP32 reference's by %.3g", dref);
        printf("test_dp: FP32 datapath within %.3g of the FP32 reference\n", dref);
        es_ref_free(ref);
        free(lr);
    }
    CHECK(greedy, "fp32 datapath: greedy tokens differ from llama.cpp's");
    CHECK(run_seq(dp, &m, ids, n, 8, l2) == 0 && !memcmp(l1, l2, (size_t)(n * m.vocab) * sizeof *l1),
          "fp32: chunks of 8 differ from token by token");
    printf("test_dp: FP32 datapath within %.3g of llama.cpp over %lld positions\n", worst, (long long)n);

    /* 2.x the hc1-class datapath on hc1-mix weights */
    es_dp *dq = make(argv[2], NULL, 0, &m, &w, "hc1-mix", 1, &cq);
    CHECK(run_seq(dq, &m, ids, n, 4, l2) == 0, "hc1-mix run");
    double kl = 0;
    int agree = 0;
    for (int64_t p = 0; p < n; p++) {
        const float *a = l1 + p * m.vocab, *b = l2 + p * m.vocab;
        double ma = -1e30, mb = -1e30, za = 0, zb = 0;
        int ia = 0, ib = 0;
        for (int v = 0; v < m.vocab; v++) {
            if (a[v] > ma) { ma = a[v]; ia = v; }
            if (b[v] > mb) { mb = b[v]; ib = v; }
        }
        for (int v = 0; v < m.vocab; v++) { za += exp(a[v] - ma); zb += exp(b[v] - mb); }
        for (int v = 0; v < m.vocab; v++) {
            double pa = exp(a[v] - ma) / za;
            kl += pa * ((a[v] - ma - log(za)) - (b[v] - mb - log(zb)));
        }
        agree += ia == ib;
    }
    kl /= (double)n;
    printf("test_dp: hc1-mix + int8 datapath: top-1 agreement %d/%lld, mean KL %.4f\n", agree, (long long)n, kl);
    CHECK(kl < 0.5 && agree >= n / 2, "hc1-mix datapath far from the reference: KL %.3f, top-1 %d/%lld", kl, agree,
          (long long)n);
    es_dp *dq2 = make(argv[2], NULL, 0, &m, &w, "hc1-mix", 3, &cn);
    float *l3 = malloc((size_t)(n * m.vocab) * sizeof *l3);
    CHECK(run_seq(dq2, &m, ids, n, 4, l3) == 0 && !memcmp(l2, l3, (size_t)(n * m.vocab) * sizeof *l2),
          "thread count changed the results");
    es_dp_close(dq2);
    es_chip_free(&cn);

    /* 3.x accumulator width */
    es_dp_stats st = es_dp_get_stats(dq);
    CHECK(st.saturations == 0 && st.lane_rows > 0, "24-bit accumulator saturated %lld times", (long long)st.saturations);
    const char *narrow[] = {"tile.lanes.accumulator_bits=10"};
    es_dp *dn = make(argv[2], narrow, 1, &m, &w, "hc1-mix", 1, &cn);
    CHECK(run_seq(dn, &m, ids, n, 4, l3) == 0, "narrow run");
    st = es_dp_get_stats(dn);
    CHECK(st.saturations > 0 && memcmp(l2, l3, (size_t)(n * m.vocab) * sizeof *l2),
          "a 10-bit accumulator never saturated (%lld) or changed nothing", (long long)st.saturations);
    es_dp_close(dn);
    es_chip_free(&cn);

    /* 4.x a shared prefix */
    {
        int64_t k = 3;   /* prefix: ids[0..k); the sequence: ids[k..n) */
        float *x = malloc((size_t)(n * m.hidden) * sizeof *x), *lp = malloc((size_t)m.vocab * sizeof *lp);
        int rc = es_dp_seq_begin(dq, 0, 0, k, -1, 1, &e) || es_dp_embed(dq, ids, k, x, &e) ||
                 es_dp_layers(dq, 0, (int)m.layers, 0, 0, k, x, &e) ||
                 es_dp_seq_begin(dq, 5, k, n - k, 0, 2, &e) || es_dp_embed(dq, ids + k, n - k, x, &e) ||
                 es_dp_layers(dq, 0, (int)m.layers, 5, k, n - k, x, &e) ||
                 es_dp_head(dq, x + (n - k - 1) * m.hidden, lp, &e);
        CHECK(rc == 0, "prefix run: %s", e.msg);
        /* the same chunking as run_seq's chunks of 4 would differ in grouping only, not in values */
        CHECK(!memcmp(lp, l2 + (n - 1) * m.vocab, (size_t)m.vocab * sizeof *lp),
              "the last position after a shared prefix differs from one whole sequence");
        free(x);
        free(lp);
    }
    /* 7.x fp8 weights on the FP32 datapath against the FP32 reference fed the same weights */
    {
        es_chip c8;
        es_dp *d8 = make(argv[2], fp32, 4, &m, &w, "fp8", 2, &c8);
        CHECK(run_seq(d8, &m, ids, n, 4, l3) == 0, "fp8 run");
        fp8_oracle o;
        es_ref *ref = NULL;
        float *lr = malloc((size_t)m.vocab * sizeof *lr);
        double dref = 0, dq = 0;
        CHECK(oracle_open(&o, &w, &m, &e) == 0 && es_ref_load(&ref, &m, oracle_rows, &o, n, ES_REF_ROPE_HALVES, &e) == 0,
              "7.x reference on fp8 weights: %s", e.msg);
        for (int64_t p = 0; ref && p < n; p++) {
            if (es_ref_forward(ref, ids[p], p, lr, &e)) { CHECK(0, "7.x reference: %s", e.msg); break; }
            for (int v = 0; v < m.vocab; v++) {
                double d = fabs(lr[v] - l3[p * m.vocab + v]), q = fabs(l1[p * m.vocab + v] - l3[p * m.vocab + v]);
                if (d > dref) dref = d;
                if (q > dq) dq = q;
            }
        }
        printf("test_dp: fp8 datapath within %.3g of the FP32 reference on the same weights (%.3g from f32 weights)\n",
               dref, dq);
        CHECK(dref <= 1e-4, "7.1 fp8 datapath: logits differ from the FP32 reference on the same weights by %.3g", dref);
        CHECK(dq > 1e-3, "7.2 fp8 weights moved no logit from the f32 run's (%.3g): not quantized?", dq);
        es_ref_free(ref);
        free(lr);
        free(o.scale);
        es_dp_close(d8);
        es_chip_free(&c8);
    }
    test_packed(argv[2], &m, &w, ids, n);
    test_q8(argv[2], &m, &w, ids, n);
    es_dp_close(dp);
    es_dp_close(dq);
    es_chip_free(&c32);
    es_chip_free(&cq);
    free(l1); free(l2); free(l3);
    es_wsrc_close(&w);
    es_model_free(&m);
    cJSON_Delete(fx);
    printf("%d passed, %d failed\n", passes, fails);
    return fails ? 1 : 0;
}
