/* es_numerics: the numerics study of functional mode. Runs a fixed text
 * through the FP32 reference (es_ref) and through the functional datapath
 * (es_dp) under each weight format, recipe, activation format and KV format,
 * and reports, against the reference, top-1 agreement (the same most likely
 * next token), mean KL divergence KL(reference || datapath) in nats per
 * position, and the perplexity of the text itself.
 *
 *   es_numerics MODEL.gguf CHIP TEXT [--only NAME,NAME...] [--json]
 *
 * The text is tokenized (BOS first) and cut into windows of at most 1,024
 * tokens, each window a fresh sequence; every position of every window is
 * scored. Single weight formats apply to every matrix (embedding, projections,
 * LM head) with the norms in BF16, as the shipped recipes keep them. Weight
 * rows run on an FP32 datapath (FP32 activations, KV and links) so the weight
 * format alone moves the result; activation and KV rows use f32 weights; the
 * "chip" rows are CHIP's datapath as configured. Used by scripts/bench-numerics
 * (the table in weights/README.md) and by the numerics test. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "es_dp.h"
#include "es_fs.h"
#include "es_recipe.h"
#include "es_ref.h"
#include "es_tok.h"
#include "es_wsrc.h"

#define WINDOW 1024

typedef struct config {
    const char *name;     /* row label */
    const char *group;    /* weights, activations, kv, chip */
    const char *recipe;   /* a shipped recipe name, or NULL: single format */
    const char *format;   /* single format, e.g. "int3" */
    int group_size;       /* int3 / int6 */
    const char *sets[6];  /* chip overrides */
} config;

#define FP32_DP "tile.lanes.activation_format=fp32", "kv.element_bits=32", "kv.element_format=fp32", "link.elem_bits=32"

static const config CONFIGS[] = {
    {"f32", "weights", "f32", NULL, 0, {FP32_DP}},
    {"bf16", "weights", NULL, "bf16", 0, {FP32_DP}},
    {"q8_0", "weights", NULL, "q8_0", 0, {FP32_DP}},
    {"q6_k", "weights", NULL, "q6_k", 0, {FP32_DP}},
    {"int6/g32", "weights", NULL, "int6", 32, {FP32_DP}},
    {"int6/g64", "weights", NULL, "int6", 64, {FP32_DP}},
    {"int6/g128", "weights", NULL, "int6", 128, {FP32_DP}},
    {"q4_k", "weights", NULL, "q4_k", 0, {FP32_DP}},
    {"q4_0", "weights", NULL, "q4_0", 0, {FP32_DP}},
    {"mxfp4", "weights", NULL, "mxfp4", 0, {FP32_DP}},
    {"nvfp4", "weights", NULL, "nvfp4", 0, {FP32_DP}},
    {"fp8", "weights", NULL, "fp8", 0, {FP32_DP}},
    {"q3_k", "weights", NULL, "q3_k", 0, {FP32_DP}},
    {"int3/g32", "weights", NULL, "int3", 32, {FP32_DP}},
    {"int3/g64", "weights", NULL, "int3", 64, {FP32_DP}},
    {"int3/g128", "weights", NULL, "int3", 128, {FP32_DP}},
    {"recipe hc1-mix", "weights", "hc1-mix", NULL, 0, {FP32_DP}},
    {"recipe fp4", "weights", "fp4", NULL, 0, {FP32_DP}},
    {"recipe fp8", "weights", "fp8", NULL, 0, {FP32_DP}},
    {"act int8", "activations", "f32", NULL, 0,
     {"tile.lanes.activation_format=int8", "kv.element_bits=32", "kv.element_format=fp32", "link.elem_bits=32"}},
    {"act fp8", "activations", "f32", NULL, 0,
     {"tile.lanes.activation_format=fp8", "kv.element_bits=32", "kv.element_format=fp32", "link.elem_bits=32"}},
    {"act bf16", "activations", "f32", NULL, 0,
     {"tile.lanes.activation_format=bf16", "kv.element_bits=32", "kv.element_format=fp32", "link.elem_bits=32"}},
    {"act fp32", "activations", "f32", NULL, 0, {FP32_DP}},
    {"kv int8", "kv", "f32", NULL, 0,
     {"tile.lanes.activation_format=fp32", "kv.element_bits=8", "kv.element_format=int8", "link.elem_bits=32"}},
    {"kv fp8", "kv", "f32", NULL, 0,
     {"tile.lanes.activation_format=fp32", "kv.element_bits=8", "kv.element_format=fp8", "link.elem_bits=32"}},
    {"kv bf16", "kv", "f32", NULL, 0,
     {"tile.lanes.activation_format=fp32", "kv.element_bits=16", "kv.element_format=bf16", "link.elem_bits=32"}},
    {"chip + hc1-mix", "chip", "hc1-mix", NULL, 0, {NULL}},
    {"chip + fp4", "chip", "fp4", NULL, 0, {NULL}},
};
#define N_CONFIGS ((int)(sizeof CONFIGS / sizeof *CONFIGS))

static int rows(void *arg, int t, int64_t row, float *out, es_err *e) { return es_wsrc_read_row(arg, t, row, out, e); }

typedef struct score { double top1, kl, ppl; int64_t n; } score;

/* log-softmax of l into out (n) */
static void log_softmax(const float *l, int64_t n, double *out)
{
    double m = l[0], z = 0;
    for (int64_t i = 1; i < n; i++) m = l[i] > m ? l[i] : m;
    for (int64_t i = 0; i < n; i++) z += exp(l[i] - m);
    z = log(z) + m;
    for (int64_t i = 0; i < n; i++) out[i] = l[i] - z;
}

static int argmax(const float *l, int64_t n)
{
    int b = 0;
    for (int64_t i = 1; i < n; i++) if (l[i] > l[b]) b = (int)i;
    return b;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: es_numerics MODEL.gguf CHIP TEXT [--only NAME,NAME...] [--json]\n");
        return 2;
    }
    const char *model = argv[1], *chip = argv[2], *text_path = argv[3], *only = NULL;
    int json = 0;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = 1;
        else { fprintf(stderr, "es_numerics: unknown option %s\n", argv[i]); return 2; }
    }
    es_err e = {{0}};
    es_model m;
    es_wsrc w;
    es_tok *tok = NULL;
    char *text;
    size_t tlen;
    if (es_model_load(&m, model, &e) || es_wsrc_open(&w, model, NULL, &e) || es_wsrc_bind(&w, &m, &e) ||
        es_tok_load_gguf(&tok, model, &e) || es_read_file(text_path, 1 << 20, &text, &tlen, &e)) {
        fprintf(stderr, "es_numerics: %s\n", e.msg);
        return 1;
    }
    int64_t nt = es_tok_encode(tok, text, tlen, NULL, 0);
    int32_t *ids = malloc((size_t)(nt + 1) * sizeof *ids);
    es_tok_encode(tok, text, tlen, ids, nt);
    free(text);
    /* windows: BOS + up to WINDOW - 1 text tokens, each scored at every position */
    int64_t n_win = (nt + WINDOW - 2) / (WINDOW - 1), V = m.vocab, scored = 0;
    float *ref = malloc((size_t)((nt + n_win) * V) * sizeof *ref), *got = malloc((size_t)(WINDOW * V) * sizeof *got);
    int32_t *seq = malloc((size_t)(WINDOW + 1) * sizeof *seq);
    double *lp = malloc((size_t)V * sizeof *lp), *lq = malloc((size_t)V * sizeof *lq);
    es_ref *r = NULL;
    if (es_ref_load(&r, &m, rows, &w, WINDOW, ES_REF_ROPE_HALVES, &e)) { fprintf(stderr, "es_numerics: %s\n", e.msg); return 1; }
    /* the reference, window by window; positions whose next token is in the window are scored */
    double ref_nll = 0;
    for (int64_t k = 0, at = 0; k < n_win; k++) {
        int64_t len = nt - k * (WINDOW - 1) < WINDOW - 1 ? nt - k * (WINDOW - 1) : WINDOW - 1;
        seq[0] = es_tok_bos(tok);
        memcpy(seq + 1, ids + k * (WINDOW - 1), (size_t)len * sizeof *seq);
        for (int64_t p = 0; p < len; p++) {
            if (es_ref_forward(r, seq[p], p, ref + (at + p) * V, &e)) { fprintf(stderr, "es_numerics: %s\n", e.msg); return 1; }
            log_softmax(ref + (at + p) * V, V, lp);
            ref_nll -= lp[seq[p + 1]];
        }
        at += len;
        scored += len;
    }
    es_ref_free(r);
    if (json) printf("{\"model\": \"%s\", \"text_tokens\": %lld, \"windows\": %lld, \"positions\": %lld, "
                     "\"reference_ppl\": %.6g, \"rows\": [\n", m.name, (long long)nt, (long long)n_win,
                     (long long)scored, exp(ref_nll / (double)scored));
    else {
        printf("%s, %lld text tokens in %lld windows of at most %d, %lld positions scored; reference perplexity %.4f\n\n",
               m.name, (long long)nt, (long long)n_win, WINDOW, (long long)scored, exp(ref_nll / (double)scored));
        printf("| configuration | group | top-1 agreement | mean KL (nats) | perplexity |\n|---|---|---|---|---|\n");
    }
    int first = 1;
    for (int c = 0; c < N_CONFIGS; c++) {
        const config *cf = &CONFIGS[c];
        if (only) { /* names separated by commas */
            const char *p = strstr(only, cf->name);
            size_t ln = strlen(cf->name);
            int hit = 0;
            while (p && !hit) {
                hit = (p == only || p[-1] == ',') && (p[ln] == 0 || p[ln] == ',');
                p = strstr(p + 1, cf->name);
            }
            if (!hit) continue;
        }
        es_chip ch;
        es_recipe rc;
        es_dp *dp = NULL;
        int n_sets = 0;
        while (n_sets < 6 && cf->sets[n_sets]) n_sets++;
        int bad = es_chip_load(&ch, chip, cf->sets, n_sets, &e);
        if (!bad) {
            if (cf->recipe) bad = es_recipe_load(&rc, cf->recipe, &e);
            else {
                char js[512];
                char grp[32] = "";
                if (cf->group_size) snprintf(grp, sizeof grp, ", \"group\": %d", cf->group_size);
                snprintf(js, sizeof js, "{\"name\": \"%s\", \"rules\": [{\"match\": {\"role\": [\"attn_norm\", "
                                        "\"ffn_norm\", \"out_norm\"]}, \"format\": \"bf16\"}, {\"match\": {}, "
                                        "\"format\": \"%s\"%s}]}", cf->name, cf->format, grp);
                bad = es_recipe_parse(&rc, cf->name, js, &e);
            }
        }
        if (!bad) {
            bad = es_dp_open(&dp, &ch, &m, 0, &e) || es_dp_load_rows(dp, &rc, rows, &w, &e);
            es_recipe_free(&rc);
        }
        score s = {0, 0, 0, 0};
        float *x = malloc((size_t)(WINDOW * m.hidden) * sizeof *x);
        for (int64_t k = 0, at = 0; !bad && k < n_win; k++) {
            int64_t len = nt - k * (WINDOW - 1) < WINDOW - 1 ? nt - k * (WINDOW - 1) : WINDOW - 1;
            seq[0] = es_tok_bos(tok);
            memcpy(seq + 1, ids + k * (WINDOW - 1), (size_t)len * sizeof *seq);
            bad = es_dp_seq_begin(dp, 1, 0, len, -1, 1, &e);
            for (int64_t p = 0; !bad && p < len; p += 64) {
                int64_t n = len - p < 64 ? len - p : 64;
                bad = es_dp_embed(dp, seq + p, n, x, &e) || es_dp_layers(dp, 0, (int)m.layers, 1, p, n, x, &e);
                for (int64_t t = 0; !bad && t < n; t++) bad = es_dp_head(dp, x + t * m.hidden, got + (p + t) * V, &e);
            }
            es_dp_seq_end(dp, 1);
            for (int64_t p = 0; !bad && p < len; p++) {
                const float *a = ref + (at + p) * V, *b = got + p * V;
                log_softmax(a, V, lp);
                log_softmax(b, V, lq);
                double kl = 0;
                for (int64_t v = 0; v < V; v++) kl += exp(lp[v]) * (lp[v] - lq[v]);
                s.kl += kl;
                s.top1 += argmax(a, V) == argmax(b, V);
                s.ppl -= lq[seq[p + 1]];
                s.n++;
            }
            at += len;
        }
        free(x);
        if (bad) {
            fprintf(stderr, "es_numerics: %s: %s\n", cf->name, e.msg);
            return 1;
        }
        es_dp_stats st = es_dp_get_stats(dp);
        es_dp_close(dp);
        es_chip_free(&ch);
        double top1 = s.top1 / (double)s.n, kl = s.kl / (double)s.n, ppl = exp(s.ppl / (double)s.n);
        if (json)
            printf("%s  {\"name\": \"%s\", \"group\": \"%s\", \"top1\": %.6f, \"kl\": %.6g, \"ppl\": %.6g, "
                   "\"saturations\": %lld}", first ? "" : ",\n", cf->name, cf->group, top1, kl, ppl,
                   (long long)st.saturations);
        else
            printf("| %s | %s | %.2f%% | %.5f | %.4f |\n", cf->name, cf->group, 100 * top1, kl, ppl);
        fflush(stdout);
        first = 0;
    }
    if (json) printf("\n]}\n");
    free(ref); free(got); free(seq); free(lp); free(lq); free(ids);
    es_tok_free(tok);
    es_wsrc_close(&w);
    es_model_free(&m);
    return 0;
}
