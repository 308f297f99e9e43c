/* test_weights: the weight formats' scalar references.
 *   1.x  narrow floats: E2M1 codes, E4M3, E8M0 NaN, FP16 and BF16 exhaustive
 *   2.x  GGUF blocks decode hand-built bytes to exact values (Q3_K, Q6_K, Q4_0)
 *   3.x  bits per weight of every format
 *   4.x  round trip: relative RMSE under a per-format threshold, on Gaussian
 *        and heavy-tailed (Student-t, 3 degrees of freedom) data
 *   5.x  bad input: ragged rows, bad group sizes, NaN scales
 *   6.x  ROM images: every tensor read back from a built image equals the
 *        quantized synthetic weights byte for byte; synthetic weights are
 *        deterministic and have the stated spread and outliers
 *   8.x  fp8 (E4M3, one FP32 scale per tensor): decode and quantize against a
 *        hand-written table of E4M3 values (subnormals, ties to even,
 *        saturation at 448, the NaN pattern), and its tensor scale
 *   9.x  es_row_finite: a quantized row of every format is finite; one scale (or element) made infinite or
 *        NaN by hand makes it not, as the decoded row shows
 * `test_weights --report` prints the RMSE table instead (scripts/bench-formats). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "es_fp.h"
#include "es_quant.h"
#include "es_recipe.h"
#include "es_rom.h"
#include "es_synth.h"

#include "test_check.h"

static void t1_floats(void)
{
    /* 1.1 all 16 E2M1 codes */
    const float want[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
    for (int c = 0; c < 16; c++) {
        float v = es_e2m1_to_f32((uint8_t)c);
        CHECK(v == want[c] && signbit(v) == signbit(want[c]), "e2m1 %d -> %g", c, v);
        CHECK(es_f32_to_e2m1(want[c]) == c, "e2m1 encode %g -> %d", want[c], es_f32_to_e2m1(want[c]));
    }
    /* 1.2 E2M1 ties go to the even code; saturation */
    const float tie_in[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
    const int tie_out[7] = {0, 2, 2, 4, 4, 6, 6};
    for (int i = 0; i < 7; i++) CHECK(es_f32_to_e2m1(tie_in[i]) == tie_out[i], "tie %g", tie_in[i]);
    CHECK(es_f32_to_e2m1(100.0f) == 7 && es_f32_to_e2m1(-7.0f) == 15, "e2m1 saturation");
    /* 1.3 E8M0: 2^(x-127), 0xFF is NaN */
    CHECK(es_e8m0_to_f32(127) == 1.0f && es_e8m0_to_f32(0) == ldexpf(1, -127) &&
          es_e8m0_to_f32(254) == ldexpf(1, 127), "e8m0 values");
    CHECK(isnan(es_e8m0_to_f32(0xFF)) && es_e8m0_is_nan(0xFF), "e8m0 NaN");
    /* 1.4 E4M3: every non-NaN code round-trips; 448 max; NaN codes */
    for (int c = 0; c < 256; c++) {
        float v = es_e4m3_to_f32((uint8_t)c);
        if ((c & 0x7F) == 0x7F) { CHECK(isnan(v), "e4m3 %02x not NaN", c); continue; }
        uint8_t back = es_f32_to_e4m3(v);
        CHECK(back == c || (v == 0 && (back & 0x7F) == 0), "e4m3 %02x -> %g -> %02x", c, v, back);
    }
    CHECK(es_e4m3_to_f32(0x7E) == 448.0f && es_f32_to_e4m3(1e9f) == 0x7E, "e4m3 max");
    CHECK(es_e4m3_to_f32(0x01) == ldexpf(1, -9), "e4m3 smallest subnormal");
    CHECK(es_f32_to_e4m3(1.0625f) == 0x38 && es_f32_to_e4m3(1.1875f) == 0x3A, "e4m3 ties to even");
    /* 1.5 FP16 and BF16: every non-NaN pattern round-trips */
    int bad16 = 0, badbf = 0;
    for (int h = 0; h < 65536; h++) {
        float f = es_f16_to_f32((uint16_t)h);
        if (!isnan(f) && es_f32_to_f16(f) != h) bad16++;
        float g = es_bf16_to_f32((uint16_t)h);
        if (!isnan(g) && es_f32_to_bf16(g) != h) badbf++;
    }
    CHECK(bad16 == 0 && badbf == 0, "fp16 %d, bf16 %d patterns do not round-trip", bad16, badbf);
    CHECK(es_f32_to_f16(65520.0f) == 0x7C00 && es_f32_to_f16(65519.0f) == 0x7BFF, "fp16 overflow edge");
    CHECK(es_f32_to_f16(ldexpf(1, -25)) == 0 && es_f32_to_f16(ldexpf(3, -26)) == 1, "fp16 subnormal rounding");
}

static void t2_blocks(void)
{
    es_err e;
    float y[256];
    /* 2.1 Q3_K: d = 0.5; sub-block s has scale s - 8 (stored 24 + s);
     * hmask = 0x0F sets the high bit for the first 128 elements only;
     * qs = 0xE4 gives q2 = j for the four 32-element groups j. */
    uint8_t q3[110];
    memset(q3, 0x0F, 32);
    memset(q3 + 32, 0xE4, 64);
    const uint8_t sc[12] = {0x08, 0x19, 0x2A, 0x3B, 0x4C, 0x5D, 0x6E, 0x7F, 0xA5, 0xA5, 0xA5, 0xA5};
    memcpy(q3 + 96, sc, 12);
    q3[108] = 0x00;
    q3[109] = 0x38; /* fp16 0.5 */
    es_qfmt f3 = {ES_Q_Q3_K, 0, 0, ES_NIB_SPLIT};
    CHECK(es_dequantize_row(&f3, q3, 256, y, &e) == 0, "%s", e.msg);
    const int idx3[6] = {0, 40, 100, 127, 200, 255};
    const float val3[6] = {0.0f, -3.0f, -3.0f, -1.5f, -4.0f, -3.5f};
    for (int k = 0; k < 6; k++) CHECK(y[idx3[k]] == val3[k], "q3_k y[%d] = %g, want %g", idx3[k], y[idx3[k]], val3[k]);
    /* 2.2 Q6_K: d = 0.25; scales[s] = s - 8; ql = 0x21; qh = 0xE4 */
    uint8_t q6[210];
    memset(q6, 0x21, 128);
    memset(q6 + 128, 0xE4, 64);
    for (int s = 0; s < 16; s++) q6[192 + s] = (uint8_t)(int8_t)(s - 8);
    q6[208] = 0x00;
    q6[209] = 0x34; /* fp16 0.25 */
    es_qfmt f6 = {ES_Q_Q6_K, 0, 0, ES_NIB_SPLIT};
    CHECK(es_dequantize_row(&f6, q6, 256, y, &e) == 0, "%s", e.msg);
    const int idx6[5] = {0, 47, 80, 130, 255};
    const float val6[5] = {62.0f, 22.5f, -1.5f, 0.0f, 31.5f};
    for (int k = 0; k < 5; k++) CHECK(y[idx6[k]] == val6[k], "q6_k y[%d] = %g, want %g", idx6[k], y[idx6[k]], val6[k]);
    /* 2.3 Q4_0: byte j holds element j low and j+16 high */
    uint8_t q4[18] = {0x00, 0x40}; /* fp16 2.0 */
    for (int j = 0; j < 16; j++) q4[2 + j] = (uint8_t)(j | (15 - j) << 4);
    es_qfmt f4 = {ES_Q_Q4_0, 0, 0, ES_NIB_SPLIT};
    CHECK(es_dequantize_row(&f4, q4, 32, y, &e) == 0, "%s", e.msg);
    CHECK(y[0] == -16 && y[15] == 14 && y[16] == 14 && y[31] == -16, "q4_0 split %g %g %g %g", y[0], y[15], y[16], y[31]);
    es_qfmt f4i = {ES_Q_Q4_0, 0, 0, ES_NIB_INTERLEAVED};
    CHECK(es_dequantize_row(&f4i, q4, 32, y, &e) == 0 && y[0] == -16 && y[1] == 14 && y[2] == -14,
          "q4_0 interleaved %g %g %g", y[0], y[1], y[2]);
    /* 2.4 Q4_K: d = 1, dmin = 0.5; sub-blocks 0-3 scale 2 min 3, 4-7 scale 5 min 4;
     * qs = 0x73 (low nibble 3, high 7). Q5_K: the same plus qh = 0x05. */
    uint8_t q4k[144] = {0x00, 0x3C, 0x00, 0x38, 2, 2, 2, 2, 3, 3, 3, 3, 0x45, 0x45, 0x45, 0x45};
    memset(q4k + 16, 0x73, 128);
    es_qfmt fk4 = {ES_Q_Q4_K, 0, 0, ES_NIB_SPLIT};
    CHECK(es_dequantize_row(&fk4, q4k, 256, y, &e) == 0, "%s", e.msg);
    CHECK(y[0] == 4.5f && y[32] == 12.5f && y[128] == 13.0f && y[160] == 33.0f, "q4_k %g %g %g %g",
          y[0], y[32], y[128], y[160]);
    uint8_t q5k[176];
    memcpy(q5k, q4k, 16);
    memset(q5k + 16, 0x05, 32);
    memset(q5k + 48, 0x73, 128);
    es_qfmt fk5 = {ES_Q_Q5_K, 0, 0, ES_NIB_SPLIT};
    CHECK(es_dequantize_row(&fk5, q5k, 256, y, &e) == 0, "%s", e.msg);
    CHECK(y[0] == 36.5f && y[32] == 12.5f && y[64] == 36.5f && y[96] == 12.5f && y[128] == 13.0f &&
          y[224] == 33.0f, "q5_k %g %g %g %g %g %g", y[0], y[32], y[64], y[96], y[128], y[224]);
    /* 2.5 MXFP4: scale 2^1, codes 0..15 in the low nibbles */
    uint8_t mx[17];
    mx[0] = 128;
    for (int j = 0; j < 16; j++) mx[1 + j] = (uint8_t)j;
    es_qfmt fm = {ES_Q_MXFP4, 0, 0, ES_NIB_SPLIT};
    CHECK(es_dequantize_row(&fm, mx, 32, y, &e) == 0 && y[7] == 12.0f && y[15] == -12.0f && y[16] == 0,
          "mxfp4 %g %g", y[7], y[15]);
}

static void t3_bits(void)
{
    struct { es_qtype t; int g; double bpw; } want[] = {
        {ES_Q_F32, 0, 32}, {ES_Q_F16, 0, 16}, {ES_Q_BF16, 0, 16}, {ES_Q_Q8_0, 0, 8.5},
        {ES_Q_Q4_0, 0, 4.5}, {ES_Q_Q3_K, 0, 3.4375}, {ES_Q_Q6_K, 0, 6.5625}, {ES_Q_MXFP4, 0, 4.25},
        {ES_Q_NVFP4, 0, 4.5}, {ES_Q_FP8, 0, 8}, {ES_Q_Q4_K, 0, 4.5}, {ES_Q_Q5_K, 0, 5.5}, {ES_Q_INT3, 32, 3.5}, {ES_Q_INT3, 64, 3.25}, {ES_Q_INT3, 128, 3.125},
        {ES_Q_INT6, 32, 6.5}, {ES_Q_INT6, 64, 6.25}, {ES_Q_INT6, 128, 6.125}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        es_qfmt f = {want[i].t, want[i].g, 1.0f, ES_NIB_SPLIT};
        CHECK(es_q_bits_per_weight(&f) == want[i].bpw, "%s/%d bpw %g", es_qtype_name(want[i].t),
              want[i].g, es_q_bits_per_weight(&f));
    }
}

/* deterministic data: xorshift64*, Box-Muller, Student-t(3) = z / sqrt(chi2_3 / 3) */
static uint64_t rng_state;
static double urand(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return ((double)((rng_state * 2685821657736338717ULL) >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) { return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()); }
static double student3(void)
{
    double z = gauss(), c = 0;
    for (int i = 0; i < 3; i++) { double g = gauss(); c += g * g; }
    return z / sqrt(c / 3);
}

#define N_RT (256 * 256)

static double rel_rmse(es_qfmt f, const float *x, int64_t n)
{
    es_err e;
    if (f.type == ES_Q_NVFP4) f.tensor_scale = es_nvfp4_tensor_scale(x, n);
    if (f.type == ES_Q_FP8) f.tensor_scale = es_fp8_tensor_scale(x, n);
    int64_t bytes = es_q_row_bytes(&f, n, &e);
    unsigned char *q = calloc((size_t)bytes, 1);
    float *y = malloc((size_t)n * sizeof *y);
    double num = 0, den = 0;
    if (es_quantize_row(&f, x, n, q, &e) || es_dequantize_row(&f, q, n, y, &e)) num = NAN;
    for (int64_t i = 0; i < n && !isnan(num); i++) {
        num += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        den += (double)x[i] * x[i];
    }
    free(q);
    free(y);
    return sqrt(num / den);
}

static const struct { es_qtype t; int g; double max_gauss, max_heavy; } rt[] = {
    /* thresholds: 1.2x the error measured by scripts/bench-formats, rounded up */
    {ES_Q_F32, 0, 0.0, 0.0},          {ES_Q_F16, 0, 2.5e-4, 2.5e-4},   {ES_Q_BF16, 0, 2.0e-3, 2.0e-3},
    {ES_Q_Q8_0, 0, 0.0065, 0.010},    {ES_Q_INT6, 64, 0.029, 0.051},   {ES_Q_Q6_K, 0, 0.023, 0.031},
    {ES_Q_Q4_0, 0, 0.104, 0.155},     {ES_Q_MXFP4, 0, 0.138, 0.169},   {ES_Q_NVFP4, 0, 0.115, 0.110},
    {ES_Q_INT3, 32, 0.211, 0.290},    {ES_Q_INT3, 64, 0.232, 0.357},   {ES_Q_INT3, 128, 0.253, 0.434},
    {ES_Q_Q3_K, 0, 0.187, 0.232},     {ES_Q_Q4_K, 0, 0.094, 0.121},     {ES_Q_Q5_K, 0, 0.046, 0.059},
    {ES_Q_FP8, 0, 0.032, 0.033}};

static void t4_roundtrip(int report)
{
    float *gx = malloc(N_RT * sizeof *gx), *hx = malloc(N_RT * sizeof *hx);
    rng_state = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < N_RT; i++) gx[i] = (float)(0.02 * gauss());
    for (int i = 0; i < N_RT; i++) hx[i] = (float)(0.02 * student3());
    if (report) printf("%-10s %8s %14s %14s\n", "format", "bits/w", "rel RMSE gauss", "rel RMSE t(3)");
    for (size_t i = 0; i < sizeof rt / sizeof rt[0]; i++) {
        es_qfmt f = {rt[i].t, rt[i].g, 1.0f, ES_NIB_SPLIT};
        double g = rel_rmse(f, gx, N_RT), h = rel_rmse(f, hx, N_RT);
        char name[32];
        snprintf(name, sizeof name, rt[i].g ? "%s/g%d" : "%s", es_qtype_name(rt[i].t), rt[i].g);
        if (report) printf("%-10s %8.4f %14.5f %14.5f\n", name, es_q_bits_per_weight(&f), g, h);
        else {
            CHECK(g <= rt[i].max_gauss, "%s gauss rel RMSE %.5f > %.5f", name, g, rt[i].max_gauss);
            CHECK(h <= rt[i].max_heavy, "%s heavy rel RMSE %.5f > %.5f", name, h, rt[i].max_heavy);
        }
    }
    free(gx);
    free(hx);
}

static void t5_bad(void)
{
    es_err e;
    float x[64] = {0}, y[64];
    unsigned char q[256] = {0};
    es_qfmt k = {ES_Q_Q3_K, 0, 0, ES_NIB_SPLIT};
    CHECK(es_quantize_row(&k, x, 64, q, &e) != 0 && strstr(e.msg, "q3_k") && strstr(e.msg, "256"), "ragged: %s", e.msg);
    es_qfmt g = {ES_Q_INT3, 48, 0, ES_NIB_SPLIT};
    CHECK(es_quantize_row(&g, x, 48, q, &e) != 0 && strstr(e.msg, "group"), "group: %s", e.msg);
    es_qfmt m = {ES_Q_MXFP4, 0, 0, ES_NIB_SPLIT};
    q[0] = 0xFF;
    CHECK(es_dequantize_row(&m, q, 32, y, &e) != 0 && strstr(e.msg, "NaN"), "e8m0 NaN: %s", e.msg);
    es_qfmt n = {ES_Q_NVFP4, 0, 1.0f, ES_NIB_SPLIT};
    q[0] = 0x7F;
    CHECK(es_dequantize_row(&n, q, 16, y, &e) != 0 && strstr(e.msg, "NaN"), "e4m3 NaN: %s", e.msg);
    n.tensor_scale = 0;
    CHECK(es_dequantize_row(&n, q, 16, y, &e) != 0 && strstr(e.msg, "tensor scale"), "ts: %s", e.msg);
}

static void t6_rom(const char *models, const char *data)
{
    es_err e;
    es_model m;
    es_chip c;
    es_recipe r;
    char chip[1024], out[] = "/tmp/test_weights_XXXXXX";
    setenv("ETCHSIM_MODELS", models, 1);
    snprintf(chip, sizeof chip, "%s/tiny-chip.json", data);
    CHECK(es_model_load(&m, "tiny-llama", &e) == 0, "%s", e.msg);
    CHECK(es_chip_load(&c, chip, NULL, 0, &e) == 0, "%s", e.msg);
    CHECK(es_recipe_load(&r, "hc1-mix", &e) == 0, "%s", e.msg);
    int fd = mkstemp(out);
    close(fd);
    CHECK(es_rom_build_synthetic(&c, &m, &r, 7, out, 2, NULL, NULL, &e) == 0, "build: %s", e.msg);
    es_rom_image img;
    CHECK(es_rom_open(&img, out, &e) == 0, "open: %s", e.msg);
    CHECK(es_rom_verify(&img, &e) == 0, "verify: %s", e.msg);
    CHECK(img.n_tensors == m.n_tensors && img.model_hash == es_rom_model_hash(&m), "identity");
    /* 6.1 every tensor's bytes equal a fresh quantization of the same synthetic rows */
    int mism = 0;
    for (int i = 0; i < img.n_tensors; i++) {
        const es_rom_tensor *t = &img.tensors[i];
        unsigned char *got = malloc((size_t)t->bytes), *want = malloc((size_t)t->bytes);
        float *row = malloc((size_t)t->cols * sizeof *row);
        CHECK(es_rom_tensor_bytes(&img, i, got, &e) == 0, "read %s: %s", t->name, e.msg);
        int64_t rb = t->bytes / t->rows;
        for (int64_t k = 0; k < t->rows; k++) {
            es_synth_row(7, &m.tensors[i], k, row);
            es_quantize_row(&t->fmt, row, t->cols, want + k * rb, &e);
        }
        if (memcmp(got, want, (size_t)t->bytes)) mism++;
        free(got);
        free(want);
        free(row);
    }
    CHECK(mism == 0, "%d tensors differ from their quantized synthetic weights", mism);
    es_rom_close(&img);
    remove(out);
    /* 6.2 synthetic weights: deterministic, sigma near 0.02 x row spread, outlier columns x8 */
    const es_tensor *g = &m.tensors[7]; /* layer 0 ffn_gate, 768 x 256 */
    float a[256], b[256];
    es_synth_row(7, g, 5, a);
    es_synth_row(7, g, 5, b);
    CHECK(memcmp(a, b, sizeof a) == 0, "synthetic rows not deterministic");
    es_synth_row(8, g, 5, b);
    CHECK(memcmp(a, b, sizeof a) != 0, "seed has no effect");
    double ss = 0;
    int64_t n = 0;
    for (int64_t k = 0; k < g->rows; k++) {
        es_synth_row(7, g, k, a);
        for (int j = 0; j < 256; j++) { ss += (double)a[j] * a[j]; n++; }
    }
    double rms = sqrt(ss / (double)n);
    CHECK(rms > 0.02 && rms < 0.04, "synthetic rms %g: expected 0.02 x log-normal spread x outliers", rms);
    es_recipe_free(&r);
    es_chip_free(&c);
    es_model_free(&m);
}

/* 8. fp8: E4M3 elements (bias 7, no infinities, max 448, NaN S.1111.111) times one FP32 tensor scale. The
 * values are written out by hand from the format's definition, not computed by es_fp. */
static void t8_fp8(void)
{
    static const struct { uint8_t b; float v; } dec[] = {
        {0x00, 0.0f}, {0x01, 0.001953125f} /* 2^-9, smallest subnormal */, {0x02, 0.00390625f},
        {0x07, 0.013671875f} /* 7 x 2^-9, largest subnormal */, {0x08, 0.015625f} /* 2^-6, smallest normal */,
        {0x38, 1.0f}, {0x39, 1.125f}, {0x3A, 1.25f}, {0x3F, 1.875f}, {0x40, 2.0f}, {0x4C, 6.0f}, {0x77, 240.0f},
        {0x78, 256.0f}, {0x7D, 416.0f}, {0x7E, 448.0f} /* max */, {0x80, -0.0f}, {0x81, -0.001953125f},
        {0xB8, -1.0f}, {0xCC, -6.0f}, {0xFE, -448.0f}};
    enum { ND = sizeof dec / sizeof dec[0] };
    es_err e;
    es_qfmt f = {ES_Q_FP8, 0, 0.25f, ES_NIB_SPLIT};
    CHECK(es_qtype_from_name("fp8") == ES_Q_FP8 && es_q_block_elems(&f) == 1 && es_q_block_bytes(&f) == 1 &&
          es_qtype_elem_bits(ES_Q_FP8) == 8 && es_q_sub_elems(&f) == 0, "fp8 registry entry");
    /* 8.1 decode: y = e4m3 x tensor scale (0.25: exact), the sign of zero kept */
    uint8_t q[ND + 2];
    float y[ND + 2];
    for (int i = 0; i < ND; i++) q[i] = dec[i].b;
    q[ND] = 0x7F;
    q[ND + 1] = 0xFF;
    CHECK(es_dequantize_row(&f, q, ND + 2, y, &e) == 0, "fp8 decode: %s", e.msg);
    for (int i = 0; i < ND; i++)
        CHECK(y[i] == dec[i].v * 0.25f && signbit(y[i]) == signbit(dec[i].v), "fp8 decode %02x -> %g, want %g",
              dec[i].b, y[i], dec[i].v * 0.25f);
    CHECK(isnan(y[ND]) && isnan(y[ND + 1]), "fp8 NaN patterns 7F, FF -> %g %g", y[ND], y[ND + 1]);
    /* 8.2 quantize: x / tensor scale rounded to nearest even, saturating at +-448; NaN to the NaN pattern */
    static const struct { float x; uint8_t b; } enc[] = {
        {1.0f, 0x38}, {1.0625f, 0x38} /* tie 1 | 1.125: even 1 */, {1.1875f, 0x3A} /* tie 1.125 | 1.25: even */,
        {1.05f, 0x38}, {1.1f, 0x39}, {6.0f, 0x4C}, {-6.0f, 0xCC}, {240.0f, 0x77}, {248.0f, 0x78} /* tie: even 256 */,
        {448.0f, 0x7E}, {460.0f, 0x7E}, {464.0f, 0x7E} /* past max: saturates, never NaN */, {500.0f, 0x7E},
        {1e30f, 0x7E}, {-1000.0f, 0xFE}, {0.0f, 0x00}, {-0.0f, 0x80},
        {0.001953125f, 0x01}, {0.0009765625f, 0x00} /* 2^-10, tie 0 | 2^-9: even 0 */,
        {0.0009766f, 0x01} /* just above the tie */, {0.0029296875f, 0x02} /* 3 x 2^-10: tie 1 | 2: even 2 */,
        {0.0048828125f, 0x02} /* 5 x 2^-10: tie 2 | 3: even 2 */,
        {0.0146484375f, 0x08} /* 7.5 x 2^-9: tie 7 | 8 x 2^-9: even, the smallest normal */,
        {0.0001f, 0x00}, {-0.0001f, 0x80}};
    enum { NE = sizeof enc / sizeof enc[0] };
    float x[NE + 1];
    uint8_t got[NE + 1];
    es_qfmt one = {ES_Q_FP8, 0, 1.0f, ES_NIB_SPLIT};
    for (int i = 0; i < NE; i++) x[i] = enc[i].x;
    x[NE] = NAN;
    CHECK(es_quantize_row(&one, x, NE + 1, got, &e) == 0, "fp8 quantize: %s", e.msg);
    for (int i = 0; i < NE; i++) CHECK(got[i] == enc[i].b, "fp8 quantize %.10g -> %02x, want %02x", enc[i].x, got[i], enc[i].b);
    CHECK((got[NE] & 0x7F) == 0x7F, "fp8 quantize NaN -> %02x", got[NE]);
    /* 8.3 the tensor scale: amax / 448, so the largest weight stores as 448 (0x7E) and decodes to itself */
    float w[4] = {-896.0f, 3.0f, 0.5f, 0.0f}, back[4];
    es_qfmt t = {ES_Q_FP8, 0, es_fp8_tensor_scale(w, 4), ES_NIB_SPLIT};
    CHECK(t.tensor_scale == 2.0f, "fp8 tensor scale %g, want 896 / 448 = 2", t.tensor_scale);
    CHECK(es_quantize_row(&t, w, 4, got, &e) == 0 && got[0] == 0xFE && got[1] == 0x3C /* 1.5 */ && got[2] == 0x28
          /* 0.25 = 2^-2: exp 5 */ && got[3] == 0x00, "fp8 scaled codes %02x %02x %02x %02x", got[0], got[1], got[2], got[3]);
    CHECK(es_dequantize_row(&t, got, 4, back, &e) == 0 && back[0] == -896.0f && back[1] == 3.0f && back[2] == 0.5f &&
          back[3] == 0.0f, "fp8 scaled decode %g %g %g %g", back[0], back[1], back[2], back[3]);
    float zeros[3] = {0, 0, 0};
    CHECK(es_fp8_tensor_scale(zeros, 3) == 1.0f, "fp8 tensor scale of zeros");
    /* 8.4 a tensor scale that is not positive and finite is refused */
    es_qfmt bad = {ES_Q_FP8, 0, 0.0f, ES_NIB_SPLIT};
    CHECK(es_dequantize_row(&bad, got, 4, back, &e) != 0 && strstr(e.msg, "fp8: tensor scale"), "fp8 ts 0: %s", e.msg);
    bad.tensor_scale = INFINITY;
    CHECK(es_quantize_row(&bad, w, 4, got, &e) != 0 && strstr(e.msg, "fp8: tensor scale"), "fp8 ts inf: %s", e.msg);
}

/* 7. Recipes: every key is checked; each bad one is an error naming the rule and the key. */
static void t7_recipes(void)
{
    static const struct { const char *json, *needle; } bad[] = {
        {"{\"name\": \"x\", \"rules\": [{\"match\": {}, \"fromat\": \"int3\", \"format\": \"f32\"}]}",
         "'rules[0].fromat': not expected here"},
        {"{\"name\": \"x\", \"rules\": [{\"match\": {\"roles\": \"lm_head\"}, \"format\": \"f32\"}]}",
         "'rules[0].match.roles'"},
        {"{\"name\": \"x\", \"rule\": [], \"rules\": [{\"match\": {}, \"format\": \"f32\"}]}", "'rule'"},
        {"{\"name\": \"x\", \"rules\": [{\"match\": {\"role\": []}, \"format\": \"f32\"}]}", "non-empty list"},
        {"{\"name\": \"x\", \"rules\": [{\"match\": {\"layers\": [0, 1e300]}, \"format\": \"f32\"}]}",
         "<= 4095"},
        {"{\"name\": \"x\", \"rules\": [{\"match\": {\"layers\": [0.5, 2]}, \"format\": \"f32\"}]}",
         "whole numbers"},
        {"{\"name\": \"x\", \"rules\": [{\"match\": {\"role\": \"lm_haed\"}, \"format\": \"f32\"}]}",
         "router, q_norm"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        es_recipe r;
        es_err e = {0};
        int rc = es_recipe_parse(&r, "r.json", bad[i].json, &e);
        CHECK(rc != 0 && strstr(e.msg, "r.json") && strstr(e.msg, bad[i].needle), "recipe %zu: rc %d, '%s'", i, rc,
              e.msg);
        if (!rc) es_recipe_free(&r);
    }
    es_recipe r;
    es_err e = {0};
    CHECK(es_recipe_parse(&r, "r.json", "{\"name\": \"x\", \"description\": \"why\", \"rules\": [{\"match\": "
                                        "{\"role\": \"router\", \"layers\": [0, 4095]}, \"format\": \"f32\"}, "
                                        "{\"match\": {}, \"format\": \"int3\", \"group\": 64}]}", &e) == 0,
          "a good recipe: %s", e.msg);
    es_recipe_free(&r);
}

/* 9.x: per format, the byte offset of a field that, set to 0xFF 0xFF (0xFF for one-byte fields), makes
 * the block decode to a non-finite value: the fp16 d (int3/int6/q8_0/q4_0 first, q3_k at 108, q6_k at 208,
 * q4_k/q5_k dmin at 2), the E8M0/E4M3 scale, an element (float formats). */
static void t9_row_finite(void)
{
    static const struct { es_qtype t; int off, bytes; } c[] = {
        {ES_Q_F32, 4, 4}, {ES_Q_F16, 2, 2}, {ES_Q_BF16, 2, 2}, {ES_Q_FP8, 1, 1}, {ES_Q_Q8_0, 0, 2},
        {ES_Q_Q4_0, 18, 2}, {ES_Q_Q3_K, 108, 2}, {ES_Q_Q6_K, 208, 2}, {ES_Q_Q4_K, 0, 2}, {ES_Q_Q4_K, 2, 2},
        {ES_Q_Q5_K, 2, 2}, {ES_Q_MXFP4, 17, 1}, {ES_Q_NVFP4, 0, 1}, {ES_Q_INT3, 0, 2}, {ES_Q_INT6, 0, 2}};
    float x[512], y[512];
    for (int i = 0; i < 512; i++) x[i] = 0.01f * (float)((i * 37) % 101 - 50);
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        es_qfmt f = {c[k].t, 32, 1.0f, ES_NIB_SPLIT};
        es_err e;
        unsigned char q[4096];
        CHECK(es_quantize_row(&f, x, 512, q, &e) == 0, "9.1 %s: %s", es_qtype_name(f.type), e.msg);
        CHECK(es_row_finite(&f, q, 512) == 1, "9.1 %s: a quantized row is not finite", es_qtype_name(f.type));
        memset(q + c[k].off, 0xFF, (size_t)c[k].bytes);
        int dec = es_dequantize_row(&f, q, 512, y, &e), bad = dec != 0;
        for (int i = 0; !dec && i < 512; i++) bad |= !isfinite(y[i]);
        CHECK(bad, "9.2 %s: the oracle: the broken row decodes finite", es_qtype_name(f.type));
        CHECK(es_row_finite(&f, q, 512) == 0, "9.2 %s: field at %d broken, still finite", es_qtype_name(f.type),
              c[k].off);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--report") == 0) {
        t4_roundtrip(1);
        return 0;
    }
    t1_floats();
    t2_blocks();
    t3_bits();
    t4_roundtrip(0);
    t5_bad();
    t7_recipes();
    t8_fp8();
    t9_row_finite();
    if (argc == 3) t6_rom(argv[1], argv[2]);
    else fprintf(stderr, "test_weights: no MODELS_DIR TESTS_DATA_DIR given, ROM image tests skipped\n");
    printf("%d passed, %d failed\n", passes, fails);
    return fails ? 1 : 0;
}
