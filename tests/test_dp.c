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
 * Run as `test_dp FIXTURES CHIP [MODELS_DIR]`; exits 77 when the model is absent. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "es_dp.h"
#include "es_cfg.h"
#include "es_fs.h"
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

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: test_dp FIXTURES CHIP [MODELS_DIR]\n"); return 2; }
    char gguf[1024];
    if (test_model_path("test_dp", argc > 3 ? argv[3] : NULL, gguf, sizeof gguf)) return 77;
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
