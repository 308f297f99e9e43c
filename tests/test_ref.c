/* test_ref: the FP32 reference forward pass, the SentencePiece tokenizer
 * and GGUF models against llama.cpp, on the real trained model
 * stories260K.gguf (fixtures: tests/data/stories260K-fixtures.json, made by
 * scripts/llama-fixtures with llama.cpp's prebuilt CPU build, F32 KV cache).
 *   1.x  the model's shapes from GGUF metadata
 *   2.x  every fixture string tokenizes to exactly llama.cpp's ids
 *   3.x  greedy tokens equal llama.cpp's for every prompt; logits within
 *        1e-4 (absolute) at every fixture position; detokenized text equal
 *   4.x  RoPE layouts: Q/K rows read unpermuted and rotated as adjacent pairs
 *        give the same logits as permuted rows rotated as halves
 *   5.x  sampling: seeded draws repeat; top-k 1 is greedy
 * Run as `test_ref FIXTURES [MODELS_DIR]`; the model is looked up in
 * $ETCHSIM_TEST_MODELS, else MODELS_DIR. Exits 77 (skipped) when absent. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "es_cfg.h"
#include "es_fs.h"
#include "es_model.h"
#include "es_ref.h"
#include "es_tok.h"
#include "es_wsrc.h"

#include "test_check.h"

static int rows(void *arg, int t, int64_t row, float *out, es_err *e) { return es_wsrc_read_row(arg, t, row, out, e); }

static int64_t ints(const cJSON *a, int32_t *out, int64_t cap)
{
    int64_t n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) if (n < cap) out[n++] = (int32_t)x->valuedouble;
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: test_ref FIXTURES [MODELS_DIR]\n"); return 2; }
    char gguf[1024];
    if (test_model_path("test_ref", argc > 2 ? argv[2] : NULL, gguf, sizeof gguf)) return 77;
    es_err e = {{0}};
    es_cfg fxc; /* the fixtures, through the project's JSON reader */
    if (es_cfg_load(&fxc, argv[1], &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    cJSON *fx = fxc.root;

    /* 1.x shapes */
    es_model m;
    CHECK(es_model_load(&m, gguf, &e) == 0, "load %s: %s", gguf, e.msg);
    CHECK(m.gguf && m.layers == 5 && m.hidden == 64 && m.ffn == 172 && m.heads == 8 && m.kv_heads == 4 &&
          m.head_dim == 8 && m.vocab == 512 && m.max_pos == 2048 && !m.tied && fabs(m.eps - 1e-5) < 1e-9 &&
          m.rope_theta == 10000.0 && !strcmp(m.name, "stories260K"),
          "shapes: layers %lld hidden %lld ffn %lld heads %lld/%lld vocab %lld", (long long)m.layers,
          (long long)m.hidden, (long long)m.ffn, (long long)m.heads, (long long)m.kv_heads, (long long)m.vocab);

    /* 2.x tokenizer */
    es_tok *tok = NULL;
    CHECK(es_tok_load_gguf(&tok, gguf, &e) == 0, "tokenizer: %s", e.msg);
    if (!tok) return 1;
    CHECK(es_tok_bos(tok) == 1 && es_tok_eos(tok) == 2, "BOS %d EOS %d", es_tok_bos(tok), es_tok_eos(tok));
    int32_t want[4096], got[4096];
    int n_strings = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(fx, "tokenize")) {
        const char *s = cJSON_GetObjectItem(c, "text")->valuestring;
        int64_t nw = ints(cJSON_GetObjectItem(c, "ids"), want, 4096);
        int64_t ng = es_tok_encode(tok, s, strlen(s), got, 4096);
        int same = ng == nw;
        for (int64_t i = 0; same && i < nw; i++) same = got[i] == want[i];
        CHECK(same, "tokenize %s: %lld ids, want %lld (first differing at %lld)", s, (long long)ng, (long long)nw,
              ({ int64_t k = 0; while (k < ng && k < nw && got[k] == want[k]) k++; (long long)k; }));
        n_strings++;
    }
    CHECK(n_strings >= 30, "only %d fixture strings", n_strings);

    /* 3.x forward pass against llama.cpp; 4.x the other RoPE layout */
    es_wsrc w, wp;
    es_wsrc_opts unpermuted = {ES_ROPE_HALVES, -1};
    CHECK(es_wsrc_open(&w, gguf, NULL, &e) == 0 && es_wsrc_bind(&w, &m, &e) == 0, "weights: %s", e.msg);
    CHECK(es_wsrc_open(&wp, gguf, &unpermuted, &e) == 0 && es_wsrc_bind(&wp, &m, &e) == 0, "weights: %s", e.msg);
    es_ref *ref = NULL, *refp = NULL;
    CHECK(es_ref_load(&ref, &m, rows, &w, 256, ES_REF_ROPE_HALVES, &e) == 0, "reference: %s", e.msg);
    CHECK(es_ref_load(&refp, &m, rows, &wp, 256, ES_REF_ROPE_PAIRS, &e) == 0, "reference: %s", e.msg);
    if (!ref || !refp) return 1;
    float logits[512], lp[512];
    double worst = 0, worst_pairs = 0;
    int positions = 0, prompts = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(fx, "generate")) {
        int32_t ids[512], out_want[512];
        int64_t np = ints(cJSON_GetObjectItem(c, "prompt_ids"), ids, 256);
        int64_t no = ints(cJSON_GetObjectItem(c, "output_ids"), out_want, 256);
        const cJSON *lg = cJSON_GetObjectItem(c, "logits");
        int64_t n = np, made = 0;
        int same = 1;
        for (int64_t pos = 0; pos < n && made < no; pos++) {
            if (es_ref_forward(ref, ids[pos], pos, logits, &e) || es_ref_forward(refp, ids[pos], pos, lp, &e)) {
                CHECK(0, "forward: %s", e.msg);
                break;
            }
            const cJSON *row = cJSON_GetArrayItem(lg, (int)pos);
            double d = 0;
            for (int v = 0; v < 512; v++) {
                double x = fabs(logits[v] - cJSON_GetArrayItem(row, v)->valuedouble);
                if (x > d) d = x;
                if (fabs(logits[v] - lp[v]) > worst_pairs) worst_pairs = fabs(logits[v] - lp[v]);
            }
            CHECK(d <= 1e-4, "prompt %d position %lld: logits differ from llama.cpp's by %.3g", prompts,
                  (long long)pos, d);
            if (d > worst) worst = d;
            positions++;
            if (pos == n - 1) {
                es_sampler greedy = {0, 0, 1};
                int32_t next = es_sample(&greedy, logits, 512, NULL, NULL);
                same &= next == out_want[made];
                ids[n++] = next;
                made++;
            }
        }
        CHECK(same && made == no, "prompt %d: greedy tokens differ from llama.cpp's", prompts);
        /* the text of prompt and output, as llama.cpp detokenizes it (no leading space) */
        char buf[4096] = "";
        size_t bl = 0;
        for (int64_t i = 1; i < n; i++) bl += es_tok_piece(tok, ids[i], buf + bl, sizeof buf - 1 - bl);
        buf[bl] = 0;
        const char *ft = cJSON_GetObjectItem(c, "full_text")->valuestring;
        CHECK(!strcmp(buf[0] == ' ' ? buf + 1 : buf, ft), "prompt %d: text '%s', want '%s'", prompts, buf, ft);
        prompts++;
    }
    CHECK(prompts >= 3 && positions >= 60, "%d prompts, %d positions", prompts, positions);
    CHECK(worst_pairs <= 1e-5, "RoPE layouts disagree by %.3g", worst_pairs);
    printf("test_ref: %d strings, %d prompts, %d positions; largest logit difference from llama.cpp %.3g, "
           "between RoPE layouts %.3g\n", n_strings, prompts, positions, worst, worst_pairs);

    /* 5.x sampling */
    {
        es_sample_slot work[512];
        es_sampler hot = {1.0, 0, 0.9}, top1 = {5.0, 1, 1};
        uint64_t r1 = 42, r2 = 42;
        int same = 1, differ = 0;
        int32_t first = es_sample(&hot, logits, 512, &r1, work);
        es_sample(&hot, logits, 512, &r2, work);
        r2 = 42;
        for (int i = 0; i < 50; i++) {
            int32_t a = es_sample(&hot, logits, 512, &r1, work), b = es_sample(&hot, logits, 512, &r2, work);
            (void)a; (void)b;
        }
        r1 = r2 = 7;
        for (int i = 0; i < 50; i++) {
            int32_t a = es_sample(&hot, logits, 512, &r1, work), b = es_sample(&hot, logits, 512, &r2, work);
            same &= a == b;
            differ |= a != first;
        }
        es_sampler greedy = {0, 0, 1};
        int32_t g = es_sample(&greedy, logits, 512, NULL, NULL);
        CHECK(same, "the same seed gave different draws");
        CHECK(differ, "temperature 1 never left the first draw in 50 tries");
        CHECK(es_sample(&top1, logits, 512, &r1, work) == g, "top-k 1 is not greedy");
    }
    es_ref_free(ref);
    es_ref_free(refp);
    es_wsrc_close(&w);
    es_wsrc_close(&wp);
    es_tok_free(tok);
    es_model_free(&m);
    cJSON_Delete(fx);
    printf("%d passed, %d failed\n", passes, fails);
    return fails ? 1 : 0;
}
