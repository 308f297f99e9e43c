/* test_system: system files (sim/core/es_system): loading, the stages, and every split that leaves a gap or an
 * overlap, with the message naming the key and the layers. Each case writes its system file into a fresh
 * folder. Usage: test_system DATA_DIR (tests/data: tiny-chip.json, tiny-moe). */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "es_model.h"
#include "es_system.h"
#include "test_check.h"

static const char *data_dir;
static char tmp[256];

/* Write a system file whose link is `link` and whose chips are `chips` (JSON array text), load it and check it
 * against model; the error, if any, into e. 0 ok, 1 the load failed, 2 the check failed. */
static int try_system(const char *model, const char *link, const char *chips, es_system *s, es_err *e)
{
    char path[512];
    snprintf(path, sizeof path, "%s/sys.json", tmp);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f, "{\"name\": \"t\", \"model\": \"%s\", \"link\": %s, \"chips\": %s}\n", model, link, chips);
    fclose(f);
    if (es_system_load(s, path, NULL, 0, e)) return 1;
    es_model m;
    if (es_model_load(&m, model, e)) { es_system_free(s); return 1; }
    int rc = es_system_check(s, &m, e) ? 2 : 0;
    es_model_free(&m);
    if (rc) es_system_free(s);
    return rc;
}

#define CHAIN "{\"topology\": \"chain\", \"bandwidth_bits_per_s\": {\"value\": 1e11, \"source\": \"t\"}, " \
              "\"latency_ns\": 500, \"energy_pj_per_bit\": 5}"
#define A2A "{\"topology\": \"all_to_all\", \"bandwidth_bits_per_s\": 1e11, \"latency_ns\": 500, " \
            "\"energy_pj_per_bit\": 5}"

static void t1_good(void)
{
    es_system s;
    es_err e = {0};
    char chips[1024];
    /* 1.1 tiny-llama (4 layers) over two chips: the chip path resolves from the system file's folder */
    snprintf(chips, sizeof chips, "[{\"chip\": \"chip.json\", \"layers\": [0, 1]}, {\"chip\": \"%s/tiny-chip.json\", "
             "\"layers\": [2, 3]}]", data_dir);
    int rc = try_system("tiny-llama", CHAIN, chips, &s, &e);
    CHECK(rc == 0, "1.1 two chips: %s", e.msg);
    if (rc == 0) {
        CHECK(s.n_chips == 2 && s.n_stages == 2, "1.1 %d chips %d stages", s.n_chips, s.n_stages);
        CHECK(s.chips[0].embed && !s.chips[0].head && s.chips[1].head && !s.chips[1].embed, "1.1 embed/head");
        CHECK(s.chips[1].layer_first == 2 && s.chips[1].layer_last == 3 && s.chips[1].expert_first == -1, "1.1 range");
        CHECK(s.link.bits_per_s == 1e11 && s.link.latency_ns == 500 && s.link.pj_per_bit == 5 &&
              s.link.topo == ES_TOPO_CHAIN, "1.1 link");
        CHECK(s.chips[0].chip.clock_hz > 0, "1.1 chip loaded");
        es_system_free(&s);
    }
    /* 1.2 tiny-moe (4 layers, 16 experts): a stage of two chips splitting the experts, then one chip */
    char moe[512];
    snprintf(moe, sizeof moe, "%s/tiny-moe", data_dir);
    rc = try_system(moe, A2A,
                    "[{\"chip\": \"chip.json\", \"layers\": [0, 1], \"experts\": [0, 7]},"
                    " {\"chip\": \"chip.json\", \"layers\": [0, 1], \"experts\": [8, 15]},"
                    " {\"chip\": \"chip.json\", \"layers\": [2, 3]}]", &s, &e);
    CHECK(rc == 0, "1.2 experts split: %s", e.msg);
    if (rc == 0) {
        CHECK(s.n_stages == 2 && s.chips[1].stage == 0 && s.chips[2].stage == 1, "1.2 stages");
        CHECK(s.chips[2].head && !s.chips[1].head, "1.2 head on the last stage");
        es_system_free(&s);
    }
}

/* The case must fail (load or check) with a message holding each of the NULL-terminated parts. */
static void bad(const char *what, const char *model, const char *link, const char *chips, ...)
{
    es_system s;
    es_err e = {0};
    int rc = try_system(model, link, chips, &s, &e);
    CHECK(rc != 0, "%s: accepted", what);
    if (rc == 0) { es_system_free(&s); return; }
    va_list ap;
    va_start(ap, chips);
    for (const char *p; (p = va_arg(ap, const char *));)
        CHECK(strstr(e.msg, p) != NULL, "%s: message lacks '%s': %s", what, p, e.msg);
    va_end(ap);
}

static void t2_bad(void)
{
    char moe[512];
    snprintf(moe, sizeof moe, "%s/tiny-moe", data_dir);
    bad("2.1 gap", "tiny-llama", CHAIN, "[{\"chip\": \"chip.json\", \"layers\": [0, 0]}, {\"chip\": \"chip.json\", "
        "\"layers\": [2, 3]}]", "chips[1].layers", "layers 1..1", "on no chip", NULL);
    bad("2.2 overlap", "tiny-llama", CHAIN, "[{\"chip\": \"chip.json\", \"layers\": [0, 2]}, {\"chip\": \"chip.json\", "
        "\"layers\": [2, 3]}]", "chips[1].layers", "layers 2..2 are on chips[0] too", NULL);
    bad("2.3 short", "tiny-llama", CHAIN, "[{\"chip\": \"chip.json\", \"layers\": [0, 1]}, {\"chip\": \"chip.json\", "
        "\"layers\": [2, 2]}]", "chips[1].layers", "layers 3..3", "on no chip", NULL);
    bad("2.4 past the end", "tiny-llama", CHAIN, "[{\"chip\": \"chip.json\", \"layers\": [0, 4]}]",
        "chips[0].layers", "4 layers", NULL);
    bad("2.5 late start", "tiny-llama", CHAIN, "[{\"chip\": \"chip.json\", \"layers\": [1, 3]}]",
        "chips[0].layers", "layers 0..0", NULL);
    bad("2.6 zero bandwidth", "tiny-llama", "{\"topology\": \"chain\", \"bandwidth_bits_per_s\": 0, "
        "\"latency_ns\": 1, \"energy_pj_per_bit\": 1}", "[{\"chip\": \"chip.json\", \"layers\": [0, 3]}]",
        "link.bandwidth_bits_per_s", "above 0", NULL);
    bad("2.7 topology", "tiny-llama", "{\"topology\": \"ring\", \"bandwidth_bits_per_s\": 1, "
        "\"latency_ns\": 1, \"energy_pj_per_bit\": 1}", "[{\"chip\": \"chip.json\", \"layers\": [0, 3]}]",
        "link.topology", "\"ring\"", NULL);
    bad("2.8 reversed range", "tiny-llama", CHAIN, "[{\"chip\": \"chip.json\", \"layers\": [3, 0]}]",
        "chips[0].layers", "first <= last", NULL);
    bad("2.9 no chip file", "tiny-llama", CHAIN, "[{\"chip\": \"nosuch.json\", \"layers\": [0, 3]}]",
        "chips[0].chip", "nosuch.json", NULL);
    bad("2.10 unknown key", "tiny-llama", CHAIN, "[{\"chip\": \"chip.json\", \"layer\": [0, 3]}]",
        "chips[0]", "layer", NULL);
    bad("2.11 shared layers on a dense model", "tiny-llama", A2A, "[{\"chip\": \"chip.json\", \"layers\": [0, 3]},"
        " {\"chip\": \"chip.json\", \"layers\": [0, 3]}]", "only a mixture of experts", NULL);
    bad("2.12 expert stage on a chain", moe, CHAIN, "[{\"chip\": \"chip.json\", \"layers\": [0, 3], \"experts\": "
        "[0, 7]}, {\"chip\": \"chip.json\", \"layers\": [0, 3], \"experts\": [8, 15]}]", "link.topology",
        "all_to_all", NULL);
    bad("2.13 expert gap", moe, A2A, "[{\"chip\": \"chip.json\", \"layers\": [0, 3], \"experts\": [0, 6]},"
        " {\"chip\": \"chip.json\", \"layers\": [0, 3], \"experts\": [8, 15]}]", "chips[1].experts", "experts 7..7",
        NULL);
    bad("2.14 expert overlap", moe, A2A, "[{\"chip\": \"chip.json\", \"layers\": [0, 3], \"experts\": [0, 8]},"
        " {\"chip\": \"chip.json\", \"layers\": [0, 3], \"experts\": [8, 15]}]", "chips[1].experts",
        "experts 8..8", "chips[0] too", NULL);
    bad("2.15 experts short", moe, A2A, "[{\"chip\": \"chip.json\", \"layers\": [0, 3], \"experts\": [0, 7]},"
        " {\"chip\": \"chip.json\", \"layers\": [0, 3], \"experts\": [8, 14]}]", "chips[1].experts", "16 experts",
        NULL);
    bad("2.16 no chips", "tiny-llama", CHAIN, "[]", "'chips'", NULL);
}

/* 3. es_model_slice: the parts of Llama-3.1-8B and of tiny-llama (tied copy) a split gives each chip */
static void t3_slice(void)
{
    es_model m, a, b;
    es_err e = {0};
    CHECK(es_model_load(&m, "llama-3.1-8b", &e) == 0, "3 load: %s", e.msg);
    /* 3.1 layers 0..15 with the embedding, 16..31 with the head: the parameters add up to the whole, and by hand:
     * a layer 218,112,000 (test_core 1.2); embedding and LM head 128,256 x 4096 = 525,336,576; final norm 4096 */
    CHECK(es_model_slice(&m, 0, 15, 1, 0, &a, &e) == 0, "3.1 slice a: %s", e.msg);
    CHECK(es_model_slice(&m, 16, 31, 0, 1, &b, &e) == 0, "3.1 slice b: %s", e.msg);
    CHECK(es_model_params(&a) == 16 * 218112000LL + 525336576LL, "3.1 a params %lld", (long long)es_model_params(&a));
    CHECK(es_model_params(&b) == 16 * 218112000LL + 525336576LL + 4096, "3.1 b params %lld",
          (long long)es_model_params(&b));
    CHECK(es_model_params(&a) + es_model_params(&b) == es_model_params(&m), "3.1 sum");
    CHECK(a.layers == 16 && a.layer_base == 0 && b.layer_base == 16 && b.full_layers == 32, "3.1 layers");
    CHECK(a.has_embed && !a.has_head && !b.has_embed && b.has_head, "3.1 ends");
    /* 3.2 ops: 14 per layer; a's first is the embedding, b's last the sampler; b's layer 0 is the model's 16th */
    CHECK(a.n_ops == 1 + 16 * 14 && b.n_ops == 16 * 14 + 3, "3.2 ops %d %d", a.n_ops, b.n_ops);
    CHECK(a.ops[0].kind == ES_OP_EMBED && b.ops[b.n_ops - 1].kind == ES_OP_SAMPLE, "3.2 ends");
    const es_tensor *q = es_model_tensor(&b, 0, ES_ROLE_Q), *q16 = es_model_tensor(&m, 16, ES_ROLE_Q);
    CHECK(q && q16 && !strcmp(q->name, q16->name), "3.2 layer 0 of b is layer 16: %s", q ? q->name : "none");
    CHECK(es_model_tensor(&a, -1, ES_ROLE_LM_HEAD) == NULL && es_model_tensor(&b, -1, ES_ROLE_EMBED) == NULL, "3.2");
    for (int i = 0; i < b.n_ops; i++)
        if (b.ops[i].tensor >= 0)
            CHECK(b.ops[i].tensor < b.n_tensors && b.tensors[b.ops[i].tensor].layer == b.ops[i].layer,
                  "3.2 op %d tensor", i);
    es_model_free(&a);
    es_model_free(&b);
    /* 3.3 a slice of a slice keeps the model's numbering; out of range is an error */
    CHECK(es_model_slice(&m, 8, 23, 0, 0, &a, &e) == 0, "3.3: %s", e.msg);
    CHECK(es_model_slice(&a, 4, 7, 0, 1, &b, &e) == 0 && b.layer_base == 12 && !b.has_head && b.n_ops == 4 * 14,
          "3.3 nested base %lld", (long long)b.layer_base);
    es_model_free(&b);
    CHECK(es_model_slice(&a, 4, 16, 0, 0, &b, &e) != 0 && strstr(e.msg, "[4, 16]"), "3.3 range: %s", e.msg);
    es_model_free(&a);
    es_model_free(&m);
    /* 3.4 tiny-llama tied (Llama-3.2-1B shape): the table goes with both ends */
    CHECK(es_model_load(&m, "llama-3.2-1b", &e) == 0 && m.tied, "3.4 load: %s", e.msg);
    CHECK(es_model_slice(&m, 0, 7, 1, 0, &a, &e) == 0 && es_model_slice(&m, 8, 15, 0, 1, &b, &e) == 0, "3.4: %s",
          e.msg);
    const es_tensor *ta = es_model_tensor(&a, -1, ES_ROLE_EMBED), *tb = es_model_tensor(&b, -1, ES_ROLE_LM_HEAD);
    CHECK(ta && !ta->lm_head && !a.tied && es_model_tensor(&a, -1, ES_ROLE_LM_HEAD) == NULL, "3.4 a: plain table");
    CHECK(tb && tb->lm_head && b.tied && tb->rows == 128256, "3.4 b: the table is the LM head");
    CHECK(es_model_params(&a) + es_model_params(&b) == es_model_params(&m) + 128256LL * 2048, "3.4 one copy each");
    es_model_free(&a);
    es_model_free(&b);
    es_model_free(&m);
}

/* 4. es_model_shard: one chip's shard of Llama-3.1-70B (hidden 8192, 64 heads, 8 kv heads of 128, ffn 28672,
 * vocab 128256, 80 layers) over 8 and 16 chips, shapes by hand from its config.json. */
static void t4_shard(void)
{
    es_model m, a;
    es_err e = {0};
    CHECK(es_model_load(&m, "llama-3.1-70b", &e) == 0, "4 load: %s", e.msg);
    /* 4.1 TP8: q, k, v, gate, up an eighth of their rows, o and down of their columns, the LM head 128256 / 8 rows */
    CHECK(es_model_shard(&m, 8, &a, &e) == 0, "4.1: %s", e.msg);
    CHECK(a.tp == 8 && a.heads == 8 && a.kv_heads == 1 && a.ffn == 3584 && a.hidden == 8192, "4.1 dims");
    const es_tensor *q = es_model_tensor(&a, 5, ES_ROLE_Q), *k = es_model_tensor(&a, 5, ES_ROLE_K),
                    *o = es_model_tensor(&a, 5, ES_ROLE_O), *g = es_model_tensor(&a, 5, ES_ROLE_GATE),
                    *d = es_model_tensor(&a, 5, ES_ROLE_DOWN), *lm = es_model_tensor(&a, -1, ES_ROLE_LM_HEAD),
                    *emb = es_model_tensor(&a, -1, ES_ROLE_EMBED);
    CHECK(q->rows == 1024 && q->cols == 8192 && k->rows == 128 && o->rows == 8192 && o->cols == 1024 &&
          g->rows == 3584 && d->rows == 8192 && d->cols == 3584 && lm->rows == 16032 && emb->rows == 16032,
          "4.1 shapes q %lld k %lld o %lld g %lld d %lld lm %lld", (long long)q->rows, (long long)k->rows,
          (long long)o->cols, (long long)g->rows, (long long)d->cols, (long long)lm->rows);
    /* every matrix split in 8, the 161 norms of 8192 whole on each chip */
    CHECK(8 * es_model_params(&a) == es_model_params(&m) + 7LL * 161 * 8192, "4.1 params %lld x 8 vs %lld",
          (long long)es_model_params(&a), (long long)es_model_params(&m));
    CHECK(es_model_op(&a, 5, ES_OP_ROPE)->elems == 1024 + 128 && es_model_op(&a, 5, ES_OP_SILU_MUL)->elems == 3584 &&
          es_model_op(&a, -1, ES_OP_SAMPLE)->elems == 16032, "4.1 op widths");
    es_model_free(&a);
    /* 4.2 TP16: more chips than kv heads, each holds a copy of one */
    CHECK(es_model_shard(&m, 16, &a, &e) == 0 && a.kv_heads == 1 && es_model_tensor(&a, 0, ES_ROLE_V)->rows == 128 &&
          a.heads == 4, "4.2: %s", e.msg);
    es_model_free(&a);
    /* 4.3 a count that does not divide the heads */
    CHECK(es_model_shard(&m, 3, &a, &e) != 0 && strstr(e.msg, "heads (64)") && strstr(e.msg, "divide by 3"),
          "4.3: %s", e.msg);
    es_model_free(&m);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_system DATA_DIR\n");
        return 2;
    }
    data_dir = argv[1];
    snprintf(tmp, sizeof tmp, "/tmp/es_test_system.XXXXXX");
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 1; }
    char src[512], dst[512], cmd[1200];
    snprintf(src, sizeof src, "%s/tiny-chip.json", data_dir);
    snprintf(dst, sizeof dst, "%s/chip.json", tmp);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, dst);
    if (system(cmd)) { fprintf(stderr, "cannot copy %s\n", src); return 1; }
    t1_good();
    t2_bad();
    t3_slice();
    t4_shard();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmp);
    printf("%d passed, %d failed\n", passes, fails);
    return fails ? 1 : 0;
}
