/* test_core: unit tests of the C core, numbered by group.
 *   1.x  model graphs: parameter counts, op graph shape, RoPE frequencies
 *   2.x  configuration: getters, overrides, errors naming file and key
 *   3.x  chip: derived figures, fit checks, shipped files carry sources; a chip from an in-memory tree
 *   4.x  analytic model: per-op cycles by hand for the tiny test chip
 *   5.x  statistics
 *   6.x  reports and stopped processes: byte sizes, JSON error places, the temporaries'
 *        registry removing what a process stopped by a signal leaves, outputs written whole
 *        or not at all (es_atomic)
 * Run as `test_core MODELS_DIR TESTS_DATA_DIR`. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "es_analytic.h"
#include "es_cfg.h"
#include "es_chip.h"
#include "es_fmt.h"
#include "es_fs.h"
#include "es_map.h"
#include "es_model.h"
#include "es_proc.h"
#include "es_stats.h"
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_check.h"

static const char *data_dir;
static char path_buf[1024];
static const char *data(const char *f)
{
    snprintf(path_buf, sizeof path_buf, "%s/%s", data_dir, f);
    return path_buf;
}

static void t1_models(void)
{
    es_model m;
    es_err e;
    /* 1.1 Llama-3.1-8B: exact parameter count, untied */
    CHECK(es_model_load(&m, "llama-3.1-8b", &e) == 0, "load 8b: %s", e.msg);
    CHECK(es_model_params(&m) == 8030261248LL, "8b params %lld", (long long)es_model_params(&m));
    CHECK(m.n_ops == 1 + 32 * 14 + 3, "8b ops %d", m.n_ops);
    CHECK(!m.tied && m.head_dim == 128 && m.kv_heads == 8, "8b shape");
    /* 1.2 per-layer parameter count 218,112,000 */
    int64_t layer0 = 0;
    for (int i = 0; i < m.n_tensors; i++)
        if (m.tensors[i].layer == 0) layer0 += m.tensors[i].rows * m.tensors[i].cols;
    CHECK(layer0 == 218112000LL, "layer params %lld", (long long)layer0);
    /* 1.2b Llama-3.1-70B: 70,553,706,496 parameters, derived by hand in models/chips/baselines-sources.md s9.1:
     * per layer q 8192^2 + k, v 8192 x 1024 each + o 8192^2 + gate/up/down 3 x 8192 x 28672 + 2 norms of 8192
     * = 855,654,400; x 80 + embedding and LM head 2 x 128256 x 8192 + final norm 8192 */
    {
        es_model m70;
        CHECK(es_model_load(&m70, "llama-3.1-70b", &e) == 0, "load 70b: %s", e.msg);
        int64_t per_layer = 2LL * 8192 * 8192 + 2LL * 8192 * 1024 + 3LL * 8192 * 28672 + 2 * 8192;
        CHECK(per_layer == 855654400LL, "70b per layer %lld", (long long)per_layer);
        CHECK(es_model_params(&m70) == 80 * per_layer + 2LL * 128256 * 8192 + 8192, "70b params %lld",
              (long long)es_model_params(&m70));
        CHECK(es_model_params(&m70) == 70553706496LL, "70b params %lld", (long long)es_model_params(&m70));
        es_model_free(&m70);
    }
    /* 1.3 llama3 RoPE: i=0..28 unchanged, 35..63 divided by 8, blends in between */
    double f[64];
    es_model_rope_freqs(&m, f);
    const double blend[6] = {1.2075, 1.5534, 2.0263, 2.6945, 3.6843, 5.2573};
    for (int i = 0; i < 64; i++) {
        double base = pow(500000.0, -2.0 * i / 128.0), div = base / f[i];
        if (i <= 28) CHECK(fabs(div - 1.0) < 1e-12, "rope i=%d div %g", i, div);
        else if (i >= 35) CHECK(fabs(div - 8.0) < 1e-9, "rope i=%d div %g", i, div);
        else CHECK(fabs(div - blend[i - 29]) < 1e-4, "rope i=%d div %.5f want %.4f", i, div, blend[i - 29]);
    }
    /* 1.4 graph order of one layer */
    const char *want[14] = {"attn_norm", "attn_q", "attn_k", "attn_v", "rope", "attention", "attn_o",
                            "attn_residual", "ffn_norm", "ffn_gate", "ffn_up", "silu_mul", "ffn_down",
                            "ffn_residual"};
    for (int i = 0; i < 14; i++) CHECK(strcmp(m.ops[1 + i].name, want[i]) == 0, "op %d %s", i, m.ops[1 + i].name);
    CHECK(m.ops[0].kind == ES_OP_EMBED && m.ops[m.n_ops - 1].kind == ES_OP_SAMPLE, "graph ends");
    /* 1.4b the typed graph: resource classes and state kinds; tensors found by (layer, role) */
    int kv = 0, lanes = 0, vecs = 0;
    for (int i = 0; i < m.n_ops; i++) {
        const es_op *o = &m.ops[i];
        kv += o->state == ES_STATE_KV;
        lanes += o->res == ES_RES_LANES;
        vecs += o->res == ES_RES_VECTOR;
        if (o->kind == ES_OP_ATTN) CHECK(o->res == ES_RES_ATTN && o->state == ES_STATE_KV, "attention op typed");
        else CHECK(o->state == ES_STATE_NONE, "op %s keeps no state", o->name);
    }
    CHECK(kv == 32 && es_model_kv_layers(&m) == 32, "KV layers %d", kv);
    CHECK(lanes == 32 * 7 + 1 && vecs == 32 * 6 + 1, "lanes ops %d, vector ops %d", lanes, vecs);
    CHECK(!strcmp(es_model_tensor(&m, 7, ES_ROLE_DOWN)->name, "model.layers.7.mlp.down_proj.weight") &&
          !strcmp(es_model_tensor(&m, -1, ES_ROLE_LM_HEAD)->name, "lm_head.weight") &&
          es_model_tensor(&m, 32, ES_ROLE_Q) == NULL && es_model_tensor(&m, -1, ES_ROLE_Q) == NULL,
          "tensor lookup by layer and role");
    es_model_free(&m);
    /* 1.5 Llama-3.2-1B: tied embeddings, exact count */
    CHECK(es_model_load(&m, "llama-3.2-1b", &e) == 0, "load 1b: %s", e.msg);
    CHECK(es_model_params(&m) == 1235814400LL, "1b params %lld", (long long)es_model_params(&m));
    CHECK(m.tied && m.head_dim == 64, "1b tied");
    CHECK(m.ops[m.n_ops - 2].tensor == 0, "1b LM head reads the embedding");
    CHECK(es_model_tensor(&m, -1, ES_ROLE_LM_HEAD) == es_model_tensor(&m, -1, ES_ROLE_EMBED), "tied lookup");
    es_model_free(&m);
    /* 1.5b mixture-of-experts configs: the published totals (every expert, router, QK norms) */
    {
        static const struct { const char *name; long long params, experts, top_k; } moe[3] = {
            {"olmoe-1b-7b", 6919161856LL, 64, 8},      /* allenai/OLMoE-1B-7B-0924 */
            {"mixtral-8x7b", 46702792704LL, 8, 2},     /* mistralai/Mixtral-8x7B-v0.1 */
            {"qwen3-30b-a3b", 30532122624LL, 128, 8}}; /* Qwen/Qwen3-30B-A3B */
        for (int i = 0; i < 3; i++) {
            CHECK(es_model_load(&m, moe[i].name, &e) == 0, "load %s: %s", moe[i].name, e.msg);
            CHECK(es_model_params(&m) == moe[i].params, "%s params %lld, want %lld", moe[i].name,
                  (long long)es_model_params(&m), moe[i].params);
            CHECK(m.experts == moe[i].experts && m.top_k == moe[i].top_k, "%s experts", moe[i].name);
            CHECK(es_model_active_params(&m) < es_model_params(&m) / 3, "%s active params", moe[i].name);
            CHECK(es_model_expert(&m, 1, ES_ROLE_DOWN, moe[i].experts - 1) != NULL &&
                  es_model_expert(&m, 1, ES_ROLE_DOWN, moe[i].experts - 1)->expert == moe[i].experts - 1 &&
                  es_model_expert(&m, 1, ES_ROLE_DOWN, moe[i].experts) == NULL, "%s expert lookup", moe[i].name);
            es_model_free(&m);
        }
    }
    /* 1.5d gpt-oss-120b (models/chips/baselines-sources.md s9.2, from OpenAI's gpt_oss/torch/model.py shapes):
     * per layer, attention: q 2880 x 4096 + bias 4096, k and v 2 x (2880 x 512 + bias 512), o 4096 x 2880 +
     * bias 2880, sinks 64, norm 2880 = 26,553,024; MoE: norm 2880 + router 128 x 2880 + bias 128 + 128 experts x
     * (gate and up 5760 x 2880 + their bias 5760 + down 2880 x 2880 + bias 2880 = 24,891,840) = 3,186,527,168;
     * x 36 layers + embedding and LM head 2 x 201088 x 2880 + final norm 2880 = 116,829,156,672. Active (OpenAI's
     * count: 4 experts, no embedding table) = 36 x (26,553,024 + 2880 + 368,768 + 4 x 24,891,840) + LM head
     * 579,133,440 + 2880 = 5,132,849,472; es_model_active_params counts the embedding table too (as Mixtral's
     * and OLMoE's published active counts do), 579,133,440 more. */
    {
        es_model g;
        CHECK(es_model_load(&g, "gpt-oss-120b", &e) == 0, "load gpt-oss-120b: %s", e.msg);
        int64_t attn = 2880LL * 4096 + 4096 + 2 * (2880LL * 512 + 512) + 4096LL * 2880 + 2880 + 64 + 2880;
        int64_t expert = 5760LL * 2880 + 5760 + 2880LL * 2880 + 2880;
        int64_t moe = 2880 + 128LL * 2880 + 128 + 128 * expert;
        int64_t emb = 201088LL * 2880;
        CHECK(attn == 26553024LL && expert == 24891840LL && moe == 3186527168LL, "gpt-oss per layer %lld %lld %lld",
              (long long)attn, (long long)expert, (long long)moe);
        CHECK(es_model_params(&g) == 36 * (attn + moe) + 2 * emb + 2880 && es_model_params(&g) == 116829156672LL,
              "gpt-oss params %lld", (long long)es_model_params(&g));
        int64_t openai_active = 36 * (attn + 2880 + 128LL * 2880 + 128 + 4 * expert) + emb + 2880;
        CHECK(openai_active == 5132849472LL, "gpt-oss active by hand %lld", (long long)openai_active);
        CHECK(es_model_active_params(&g) - es_model_tensor(&g, -1, ES_ROLE_EMBED)->rows *
              es_model_tensor(&g, -1, ES_ROLE_EMBED)->cols == 5132849472LL &&
              es_model_active_params(&g) == 5132849472LL + emb, "gpt-oss active %lld",
              (long long)es_model_active_params(&g));
        CHECK(g.experts == 128 && g.top_k == 4 && g.norm_topk && g.heads * g.head_dim == 4096 && g.hidden == 2880 &&
              g.rope_yarn && g.rope_factor == 32.0 && g.rope_orig_ctx == 4096 && g.swiglu_limit == 7.0 &&
              g.sliding_window == 128, "gpt-oss shape");
        /* sliding window on even layers (layer_types), biases and sinks found by (layer, role) */
        int win[2] = {0, 0}, n_attn = 0;
        for (int i = 0; i < g.n_ops; i++)
            if (g.ops[i].kind == ES_OP_ATTN) {
                n_attn++;
                win[g.ops[i].layer % 2] += g.ops[i].window == (g.ops[i].layer % 2 ? 0 : 128);
                CHECK(g.ops[i].tensor >= 0 && g.tensors[g.ops[i].tensor].role == ES_ROLE_SINKS, "attention's sinks");
            }
        CHECK(n_attn == 36 && win[0] == 18 && win[1] == 18, "gpt-oss windows %d %d of %d", win[0], win[1], n_attn);
        CHECK(!strcmp(es_model_tensor(&g, 3, ES_ROLE_BIAS)->name, "model.layers.3.self_attn.q_proj.bias") &&
              es_model_tensor(&g, 3, ES_ROLE_SINKS)->cols == 64 &&
              !strcmp(es_model_expert(&g, 35, ES_ROLE_UP, 127)->name,
                      "model.layers.35.mlp.experts.gate_up_proj[127, 1::2]"), "gpt-oss tensor lookup");
        es_model_free(&g);
    }
    /* 1.5c state-space configs: the published totals; no KV anywhere, a recurrent state per layer */
    {
        static const struct { const char *name; long long params; } ssm[2] = {
            {"mamba-2.8b", 2768345600LL},        /* state-spaces/mamba-2.8b-hf (tied) */
            {"falcon-mamba-7b", 7272665088LL}};  /* tiiuae/falcon-mamba-7b */
        for (int i = 0; i < 2; i++) {
            CHECK(es_model_load(&m, ssm[i].name, &e) == 0, "load %s: %s", ssm[i].name, e.msg);
            CHECK(es_model_params(&m) == ssm[i].params, "%s params %lld, want %lld", ssm[i].name,
                  (long long)es_model_params(&m), ssm[i].params);
            int recurrent = 0;
            for (int k = 0; k < m.n_ops; k++) recurrent += m.ops[k].state == ES_STATE_RECURRENT;
            CHECK(es_model_kv_layers(&m) == 0 && recurrent == 64, "%s: KV layers %lld, recurrent %d", ssm[i].name,
                  (long long)es_model_kv_layers(&m), recurrent);
            es_model_free(&m);
        }
    }
    /* 1.5e bad gpt-oss keys: one error naming the file and the key */
    {
        static const struct { const char *json, *want; } bad[] = {
            {"\"layer_types\": [\"sliding_attention\", \"full_attention\"]",
             "key 'layer_types': expected an array of 4 names (num_hidden_layers)"},
            {"\"layer_types\": [\"sliding_attention\", \"local\", \"sliding_attention\", \"full_attention\"]",
             "key 'layer_types[1]': expected \"sliding_attention\" or \"full_attention\""},
            {"\"sliding_window\": null", "key 'layer_types[0]': \"sliding_attention\", but sliding_window is null"},
            {"\"sliding_window\": 0", "key 'sliding_window'"},
            {"\"swiglu_limit\": \"seven\"", "key 'swiglu_limit'"}};
        char dir[] = "/tmp/test_core-gptoss-XXXXXX", cfg[256];
        CHECK(mkdtemp(dir) != NULL, "mkdtemp");
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            FILE *f = fopen(cfg, "w");
            if (!f) break;
            fprintf(f, "{\"architectures\": [\"GptOssForCausalLM\"], \"hidden_size\": 64, \"head_dim\": 16, "
                       "\"intermediate_size\": 32, \"max_position_embeddings\": 512, \"num_attention_heads\": 4, "
                       "\"num_experts_per_tok\": 2, \"num_hidden_layers\": 4, \"num_key_value_heads\": 2, "
                       "\"num_local_experts\": 4, \"rms_norm_eps\": 1e-05, \"rope_theta\": 150000, "
                       "\"vocab_size\": 64, %s}", bad[i].json);
            fclose(f);
            es_model g;
            int rc = es_model_load(&g, cfg, &e);
            CHECK(rc != 0 && strstr(e.msg, cfg) && strstr(e.msg, bad[i].want), "1.5e case %zu: %d, '%s'; want '%s'", i,
                  rc, rc ? e.msg : "", bad[i].want);
            if (rc == 0) es_model_free(&g);
        }
        remove(cfg);
        rmdir(dir);
        /* YaRN is read for gpt-oss only: a Llama config with it is refused */
        CHECK(es_model_load(&m, data("bad-yarn-llama/config.json"), &e) != 0 &&
              strstr(e.msg, "bad-yarn-llama/config.json: key 'rope_scaling.rope_type': expected \"llama3\", got \"yarn\""),
              "yarn on llama: %s", e.msg);
    }
    /* 1.6 unknown architecture names the file and key */
    CHECK(es_model_load(&m, data("bad-arch/config.json"), &e) != 0, "bad arch accepted");
    CHECK(strstr(e.msg, "architectures") && strstr(e.msg, "RwkvForCausalLM") &&
          strstr(e.msg, "bad-arch/config.json"), "bad arch msg: %s", e.msg);
}

static void t2_cfg(void)
{
    es_cfg c;
    es_err e;
    /* 2.1 wrapped and plain leaves */
    CHECK(es_cfg_parse(&c, "t.json", "{\"a\":{\"b\":{\"value\":3,\"source\":\"s\"},\"c\":4}}", &e) == 0, "%s", e.msg);
    int64_t v = 0;
    CHECK(es_cfg_i64(&c, "a.b", 1, 10, &v, &e) == 0 && v == 3, "wrapped");
    CHECK(es_cfg_i64(&c, "a.c", 1, 10, &v, &e) == 0 && v == 4, "plain");
    /* 2.2 range and type errors name file and key */
    CHECK(es_cfg_i64(&c, "a.b", 5, 10, &v, &e) != 0 && strstr(e.msg, "t.json: key 'a.b'"), "range: %s", e.msg);
    CHECK(es_cfg_i64(&c, "a.x", 1, 10, &v, &e) != 0 && strstr(e.msg, "key missing"), "missing: %s", e.msg);
    /* 2.3 overrides keep the wrapper and mark the source */
    CHECK(es_cfg_set(&c, "a.b", "7", &e) == 0 && es_cfg_i64(&c, "a.b", 1, 10, &v, &e) == 0 && v == 7, "set");
    CHECK(es_cfg_set(&c, "a.c", "8", &e) == 0 && es_cfg_i64(&c, "a.c", 1, 10, &v, &e) == 0 && v == 8, "set plain");
    CHECK(es_cfg_set(&c, "a.nope", "1", &e) != 0 && strstr(e.msg, "no such key"), "set unknown: %s", e.msg);
    CHECK(es_cfg_set(&c, "a", "1", &e) != 0 && strstr(e.msg, "section"), "set section: %s", e.msg);
    char first[128];
    CHECK(es_cfg_unsourced(&c, first, sizeof first) == 1 && strcmp(first, "a.c") == 0, "unsourced %s", first);
    es_cfg_free(&c);
    /* 2.4 malformed JSON names line and column */
    CHECK(es_cfg_parse(&c, "bad.json", "{\n  \"a\": 1,\n  oops\n}", &e) != 0 &&
          strstr(e.msg, "bad.json: malformed JSON at line 3"), "malformed: %s", e.msg);
    /* 2.5 non-integer where an integer is expected */
    CHECK(es_cfg_parse(&c, "t.json", "{\"n\": 2.5}", &e) == 0, "parse");
    CHECK(es_cfg_i64(&c, "n", 0, 10, &v, &e) != 0 && strstr(e.msg, "expected an integer"), "int: %s", e.msg);
    es_cfg_free(&c);
}

static void t3_chip(void)
{
    es_chip c;
    es_model m;
    es_err e;
    CHECK(es_model_load(&m, "llama-3.1-8b", &e) == 0, "%s", e.msg);
    /* 3.1 hc1-class loads, fits, every numeric leaf in it and its process carries a source */
    CHECK(es_chip_load(&c, "hc1-class", NULL, 0, &e) == 0, "load: %s", e.msg);
    CHECK(es_chip_check_fit(&c, &m, &e) == 0, "fit: %s", e.msg);
    char first[256];
    CHECK(es_cfg_unsourced(&c.cfg, first, sizeof first) == 0, "unsourced chip key %s", first);
    CHECK(es_cfg_unsourced(&c.proc, first, sizeof first) == 0, "unsourced process key %s", first);
    /* 3.2 KV: 8-bit, 8 kv heads x 128 x 2 = 16384 bits per position per layer */
    CHECK(es_chip_kv_bits_per_pos(&c, &m) == 16384, "kv bits");
    CHECK(es_chip_kv_slots(&c, &m) == c.kv.bytes * 8 / (16384 * c.kv.slot_context), "slots");
    /* 3.3 bits of a 3-bit, group-64 tensor: 3 + 16/64 = 3.25 bits per weight */
    es_tensor q = m.tensors[2];
    CHECK(q.role == ES_ROLE_Q && es_tensor_bits(&c, &q) == 4096LL * 4096 * 13 / 4, "q bits %lld",
          (long long)es_tensor_bits(&c, &q));
    /* 3.4 a 6-bit weight takes two 3-bit lane cells */
    es_map pm;
    CHECK(es_map_build(&pm, &c, &m, NULL, &e) == 0, "%s", e.msg);
    CHECK(m.tensors[4].role == ES_ROLE_V && pm.tensors[4].cells == 2 * 1024LL * 4096, "v cells");
    es_map_free(&pm);
    es_chip_free(&c);
    /* 3.5 a ROM too small for the model names the file and the key */
    const char *sets[] = {"tile.rom.rows=100"};
    CHECK(es_chip_load(&c, "hc1-class", sets, 1, &e) == 0, "%s", e.msg);
    CHECK(es_chip_check_fit(&c, &m, &e) != 0 && strstr(e.msg, "hc1-class.json: key 'tile.rom.rows'") &&
          strstr(e.msg, "cannot hold"), "fit msg: %s", e.msg);
    es_chip_free(&c);
    /* 3.6 zero and negative sizes are rejected with the key */
    const char *zero[] = {"kv.banks=0"}, *neg[] = {"tile.lanes.count=-4"};
    CHECK(es_chip_load(&c, "hc1-class", zero, 1, &e) != 0 && strstr(e.msg, "key 'kv.banks'"), "zero: %s", e.msg);
    CHECK(es_chip_load(&c, "hc1-class", neg, 1, &e) != 0 && strstr(e.msg, "key 'tile.lanes.count'"), "neg: %s", e.msg);
    /* 3.7 process overrides go to the process file */
    const char *p[] = {"process.energy.rom_read_fj_per_bit=-1"};
    CHECK(es_chip_load(&c, "hc1-class", p, 1, &e) != 0 && strstr(e.msg, "n6.json: key 'energy.rom_read_fj_per_bit'"),
          "process: %s", e.msg);
    es_model_free(&m);
}

/* the bytes of text field s (n bytes) past its end: zero */
static void clear_tail(char *s, size_t n)
{
    size_t l = strnlen(s, n);
    memset(s + l, 0, n - l);
}

/* a and b hold the same numbers, formats and names (their paths and trees aside) */
static int same_chip(const es_chip *a, const es_chip *b)
{
    es_chip x = *a, y = *b;
    es_chip *both[2] = {&x, &y};
    for (int i = 0; i < 2; i++) { /* what a longer text left past a field's end is no part of it */
        clear_tail(both[i]->name, sizeof x.name);
        clear_tail(both[i]->tile.act_format, sizeof x.tile.act_format);
        clear_tail(both[i]->kv.format, sizeof x.kv.format);
        clear_tail(both[i]->area.lane_rtl, sizeof x.area.lane_rtl);
    }
    memset(x.path, 0, sizeof x.path);
    memset(y.path, 0, sizeof y.path);
    memset(&x.cfg, 0, sizeof x.cfg);
    memset(&y.cfg, 0, sizeof y.cfg);
    memset(&x.proc, 0, sizeof x.proc);
    memset(&y.proc, 0, sizeof y.proc);
    return memcmp(&x, &y, sizeof x) == 0;
}

static void t3_chip_from_memory(void)
{
    es_chip f, c;
    es_cfg tree;
    es_err e;
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/chips", getenv("ETCHSIM_MODELS"));
    snprintf(path, sizeof path, "%s/hc1-class.json", dir);
    /* 3.8 hc1-class from its tree in memory: the struct es_chip_load gives from the file */
    CHECK(es_chip_load(&f, path, NULL, 0, &e) == 0, "file: %s", e.msg);
    CHECK(es_cfg_load(&tree, path, &e) == 0, "tree: %s", e.msg);
    CHECK(es_chip_load_cfg(&c, &tree, dir, path, NULL, 0, &e) == 0, "memory: %s", e.msg);
    CHECK(same_chip(&f, &c) && !strcmp(c.path, f.path) && cJSON_Compare(c.cfg.root, f.cfg.root, 1) &&
          cJSON_Compare(c.proc.root, f.proc.root, 1), "the chip from memory differs from the chip from its file");
    es_chip_free(&c);
    /* 3.9 relative paths (process, area.lane_rtl) resolve from the folder given; the label is the path */
    CHECK(es_cfg_set(&tree, "process", "../process/n6.json", &e) == 0 &&
          es_cfg_set(&tree, "area.lane_rtl", "../../rtl-ref/lane-synth.json", &e) == 0, "%s", e.msg);
    CHECK(es_chip_load_cfg(&c, &tree, dir, "in-memory chip", NULL, 0, &e) == 0, "relative: %s", e.msg);
    CHECK(same_chip(&f, &c) && !strcmp(c.path, "in-memory chip") && !strcmp(c.cfg.path, "in-memory chip"),
          "relative paths from %s: path '%s'", dir, c.path);
    es_chip_free(&c);
    /* 3.10 overrides go to the chip's copy, not the caller's tree */
    const char *sets[] = {"tile.lanes.count=7"};
    CHECK(es_chip_load_cfg(&c, &tree, dir, "in-memory chip", sets, 1, &e) == 0 && c.tile.lanes == 7, "set: %s", e.msg);
    const cJSON *lanes = es_cfg_node(&tree, "tile.lanes.count");
    CHECK(cJSON_IsNumber(lanes) && lanes->valuedouble == (double)f.tile.lanes, "the caller's tree changed");
    es_chip_free(&c);
    /* 3.11 a bad value or an unknown key in memory names the label and the key */
    CHECK(es_cfg_set(&tree, "tile.lanes.count", "0", &e) == 0, "%s", e.msg);
    CHECK(es_chip_load_cfg(&c, &tree, dir, "in-memory chip", NULL, 0, &e) != 0 &&
          !strcmp(e.msg, "in-memory chip: key 'tile.lanes.count': expected an integer in [1, 1099511627776], got 0"),
          "bad value: %s", e.msg);
    CHECK(es_cfg_set(&tree, "tile.lanes.count", "8192", &e) == 0, "%s", e.msg);
    cJSON *node = (cJSON *)es_cfg_node(&tree, "tile.lanes");
    CHECK(cJSON_AddNumberToObject(node, "cuont", 3) != NULL, "add a key");
    CHECK(es_chip_load_cfg(&c, &tree, dir, "in-memory chip", NULL, 0, &e) != 0 &&
          !strcmp(e.msg, "in-memory chip: key 'tile.lanes.cuont': not a chip key (did you mean 'tile.lanes.count'? "
                         "`etchsim chip keys` lists them)"), "unknown key: %s", e.msg);
    es_cfg_free(&tree);
    es_chip_free(&f);
}

static void t4_analytic(void)
{
    es_chip c;
    es_model m;
    es_err e;
    CHECK(es_model_load(&m, "tiny-llama", &e) == 0, "%s", e.msg);
    CHECK(es_chip_load(&c, data("tiny-chip.json"), NULL, 0, &e) == 0, "%s", e.msg);
    es_map pm;
    CHECK(es_map_build(&pm, &c, &m, NULL, &e) == 0, "%s", e.msg);
    /* tiny chip: lanes 8192, ROM 64 x 1024 bits/cycle, latency 2, depth 10,
     * vector 64/cycle latency 4, attention 4 pos/cycle latency 8, KV port 16 x 256 bits */
    /* 4.1 attn_q: 256x256 3-bit: cells 65536 -> 8 cycles; bits 65536*3.25 = 212992 -> 4 cycles */
    const es_op *q = &m.ops[2];
    CHECK(strcmp(q->name, "attn_q") == 0 && es_an_op(&pm, q, 1, 0) == 8 + 2 + 10, "q %lld",
          (long long)es_an_op(&pm, q, 1, 0));
    /* 4.2 prefill of 8 tokens reads the weights 8 times (tokens_per_read 1) */
    CHECK(es_an_op(&pm, q, 8, 0) == 64 + 12, "q x8");
    /* 4.3 attn_v 6-bit: 64x256 -> 32768 cells -> 4 cycles */
    CHECK(es_an_op(&pm, &m.ops[4], 1, 0) == 4 + 12, "v");
    /* 4.4 RMSNorm over 256: two passes of 4 cycles + 4 latency */
    CHECK(es_an_op(&pm, &m.ops[1], 1, 0) == 12, "norm");
    /* 4.5 attention at position 99 (100 positions): kv bits/pos = 2*2*32*8 = 1024;
     * write 1024/4096 -> 1; read 100*1024/4096 = 25; mac 100/4 = 25; + 8 */
    const es_op *at = &m.ops[6];
    CHECK(at->kind == ES_OP_ATTN && es_an_op(&pm, at, 1, 99) == 1 + 25 + 8, "attn %lld",
          (long long)es_an_op(&pm, at, 1, 99));
    /* 4.6 the layer closed form equals the sum of its graph ops */
    for (int64_t p = 0; p < 300; p += 37) {
        int64_t sum = 0;
        for (int i = 1; i <= 14; i++) sum += es_an_op(&pm, &m.ops[i], 3, p);
        CHECK(sum == es_an_layer(&pm, 0, 3, p), "layer p=%lld: %lld vs %lld", (long long)p,
              (long long)sum, (long long)es_an_layer(&pm, 0, 3, p));
    }
    /* 4.6b gpt-oss's layer (tests/data/tiny-gpt-oss: q, k, v, o and router biases on the vector unit, each its own
     * add): the closed form equals the sum of its graph ops too */
    {
        es_model g;
        es_chip gc;
        es_map gm;
        const char *rows[1] = {"tile.rom.rows=128"};
        CHECK(es_model_load(&g, data("tiny-gpt-oss"), &e) == 0, "%s", e.msg);
        CHECK(es_chip_load(&gc, data("tiny-chip.json"), rows, 1, &e) == 0, "%s", e.msg);
        CHECK(es_map_build(&gm, &gc, &g, NULL, &e) == 0, "%s", e.msg);
        int biases = 0;
        for (int64_t p = 0; p < 300; p += 37) {
            int64_t sum = 0;
            for (int i = 0; i < g.n_ops; i++) {
                if (g.ops[i].layer != 1) continue;
                sum += es_an_op(&gm, &g.ops[i], 3, p);
                biases += p == 0 && g.ops[i].kind == ES_OP_ADD && g.ops[i].tensor >= 0;
            }
            CHECK(sum == es_an_layer(&gm, 1, 3, p), "gpt-oss layer p=%lld: %lld vs %lld", (long long)p, (long long)sum,
                  (long long)es_an_layer(&gm, 1, 3, p));
        }
        CHECK(biases == 5, "gpt-oss bias adds in a layer: %d", biases);
        /* 4.6c the sliding window (16 positions on even layers) in attention's time and KV reads: at position 99 a
         * sliding layer reads 16 positions, 16 x 1024 bits (2 x 2 kv heads x 32 x 8 bits) over a 4096-bit port =
         * 4 cycles, + 1 to write K and V + 8 latency = 13; the full layer reads 100: 25 + 1 + 8 = 34. Twenty tokens
         * from position 0 on the sliding layer read 1 + 2 + ... + 16 + 4 x 16 = 200 positions' bits; and the layer
         * closed form agrees on the sliding layer too */
        const es_op *a0 = es_model_op(&g, 0, ES_OP_ATTN), *a1 = es_model_op(&g, 1, ES_OP_ATTN);
        CHECK(a0->window == 16 && a1->window == 0, "tiny-gpt-oss windows %lld %lld", (long long)a0->window,
              (long long)a1->window);
        CHECK(es_an_op(&gm, a0, 1, 99) == 13 && es_an_op(&gm, a1, 1, 99) == 34, "gpt-oss attention at 99: %lld, %lld",
              (long long)es_an_op(&gm, a0, 1, 99), (long long)es_an_op(&gm, a1, 1, 99));
        es_events ev;
        es_an_op_events(&gm, a0, 20, 0, &ev);
        CHECK(ev.kv_rd_bits == 200.0 * 1024, "gpt-oss sliding KV read bits %.0f", ev.kv_rd_bits);
        for (int64_t p = 0; p < 300; p += 37) {
            int64_t sum = 0;
            for (int i = 0; i < g.n_ops; i++)
                if (g.ops[i].layer == 0) sum += es_an_op(&gm, &g.ops[i], 3, p);
            CHECK(sum == es_an_layer(&gm, 0, 3, p), "gpt-oss sliding layer p=%lld: %lld vs %lld", (long long)p,
                  (long long)sum, (long long)es_an_layer(&gm, 0, 3, p));
        }
        es_map_free(&gm);
        es_chip_free(&gc);
        es_model_free(&g);
    }
    /* 4.7 decode step grows with context, by the attention term only */
    int64_t d0 = es_an_decode_step(&pm, 100), d1 = es_an_decode_step(&pm, 104);
    /* 4 layers x 1 cycle: read and MAC cycles both go 26 -> 27 and the larger counts */
    CHECK(d1 - d0 == 4, "step growth %lld", (long long)(d1 - d0));
    es_map_free(&pm);
    es_chip_free(&c);
    es_model_free(&m);
}

static void t5_stats(void)
{
    double v[] = {5, 1, 4, 2, 3};
    CHECK(es_percentile(v, 5, 50) == 3 && es_percentile(v, 5, 99) == 5 && es_percentile(v, 5, 0) == 1, "pct");
    CHECK(es_percentile(v, 0, 50) == 0, "empty");
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void touch(const char *p)
{
    FILE *f = fopen(p, "w");
    if (f) fclose(f);
}

static void t6_reports_and_stops(void)
{
    /* 6.1 byte sizes in the unit that fits, decimal */
    static const struct { double b; const char *want; } sz[] = {
        {0, "0 bytes"}, {999, "999 bytes"}, {1000, "1.0 KB"}, {33499, "33.5 KB"}, {999949, "999.9 KB"},
        {999950, "1.0 MB"}, {1552457, "1.6 MB"}, {9137000000.0, "9.137 GB"}};
    for (size_t i = 0; i < sizeof sz / sizeof *sz; i++) {
        char b[32];
        CHECK(!strcmp(es_fmt_bytes(b, sizeof b, sz[i].b), sz[i].want), "%.0f bytes: '%s', want '%s'", sz[i].b, b, sz[i].want);
    }
    /* 6.2 where cJSON stopped, and why: the limit is CJSON_NESTING_LIMIT (1000) levels */
    char why[160], text[2100];
    const char *bad = "{\n \"a\": tru }";
    es_json_error_at(bad, strlen(bad), bad + 8, why, sizeof why);
    CHECK(!strcmp(why, "malformed JSON at line 2, column 7"), "%s", why);
    int k = snprintf(text, sizeof text, "{\"s\": \"{[\\\"\",\n \"d\": ");
    for (int i = 0; i < 1000; i++) text[k++] = '[';
    text[k] = 0;
    es_json_error_at(text, (size_t)k, text + k - 1, why, sizeof why); /* the 1000th array: level 1001 */
    CHECK(!strcmp(why, "JSON nested more than 1000 levels deep (the reader's limit) at line 2, column 1006"), "%s", why);
    es_json_error_at(text, (size_t)k, text + k - 2, why, sizeof why); /* level 1000 is allowed */
    CHECK(!strcmp(why, "malformed JSON at line 2, column 1005"), "%s", why);

    /* 6.3 a process stopped by SIGTERM removes what it registered (series, files, then the folder,
     * after killing its registered child), and ends by the signal; what it dropped stays, and so do
     * the entries of its parent */
    char dir[] = "/tmp/test_core-XXXXXX", p[256];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    int before[8]; /* entries the child's own would not reuse first */
    for (int i = 0; i < 8; i++) {
        snprintf(p, sizeof p, "%s/absent%d", dir, i);
        before[i] = es_cleanup_add(p, 0);
    }
    snprintf(p, sizeof p, "%s/parent.tmp", dir);
    touch(p);
    int parent_entry = es_cleanup_add(p, 0);
    CHECK(parent_entry >= 0, "register");
    pid_t child = fork();
    if (child == 0) {
        es_cleanup_install();
        char q[256];
        snprintf(q, sizeof q, "%s/sub", dir);
        mkdir(q, 0755);
        es_cleanup_add(q, 1);
        for (int i = 0; i < 12; i++) {
            snprintf(q, sizeof q, "%s/sub/%d.log", dir, i);
            touch(q);
        }
        snprintf(q, sizeof q, "%s/sub", dir);
        es_cleanup_add_series(q, 12, ".log");
        snprintf(q, sizeof q, "%s/kept", dir);
        touch(q);
        es_cleanup_drop(es_cleanup_add(q, 0));
        snprintf(q, sizeof q, "%s/t.json.tmp", dir);
        touch(q);
        es_cleanup_add(q, 0);
        pid_t grandchild = fork();
        if (grandchild == 0) { /* killed by the handler; alarm only bounds a broken one */
            alarm(20);
            pause();
            _exit(0);
        }
        es_cleanup_add_pid(grandchild);
        raise(SIGTERM);
        _exit(3); /* not reached */
    }
    int st = 0;
    waitpid(child, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "the stopped process ended by SIGTERM (status %d)", st);
    snprintf(p, sizeof p, "%s/sub", dir);
    CHECK(!exists(p), "the registered folder and its series are gone");
    snprintf(p, sizeof p, "%s/t.json.tmp", dir);
    CHECK(!exists(p), "the registered file is gone");
    snprintf(p, sizeof p, "%s/kept", dir);
    CHECK(exists(p), "a dropped entry stays");
    remove(p);
    snprintf(p, sizeof p, "%s/parent.tmp", dir);
    CHECK(exists(p), "the parent's entry is not the child's to remove");
    es_cleanup_drop(parent_entry);
    for (int i = 0; i < 8; i++) es_cleanup_drop(before[i]);
    remove(p);
    CHECK(rmdir(dir) == 0, "nothing else was left in %s", dir);
}

static int file_is(const char *p, const char *want)
{
    char got[64] = {0};
    FILE *f = fopen(p, "rb");
    if (!f) return 0;
    size_t n = fread(got, 1, sizeof got - 1, f);
    fclose(f);
    return n == strlen(want) && !memcmp(got, want, n);
}

static void t6_atomic(void)
{
    char dir[] = "/tmp/test_core-XXXXXX", p[256], tmp[300], want[400];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(p, sizeof p, "%s/out.txt", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    es_atomic a;
    es_err e = {0};
    /* 6.4 written then committed: PATH.tmp while writing, PATH untouched until the commit; then PATH
     * holds what was written and no PATH.tmp is left */
    FILE *f = fopen(p, "w");
    if (f) { fputs("old\n", f); fclose(f); }
    CHECK(es_atomic_open(&a, p, "the test output", &e) == 0, "open: %s", e.msg);
    fputs("new\n", a.f);
    fflush(a.f);
    CHECK(exists(tmp) && file_is(tmp, "new\n") && file_is(p, "old\n"), "while writing: PATH.tmp, PATH as it was");
    CHECK(es_atomic_commit(&a, &e) == 0, "commit: %s", e.msg);
    CHECK(file_is(p, "new\n") && !exists(tmp) && a.f == NULL, "committed: PATH replaced, no PATH.tmp");
    /* 6.5 aborted: PATH as it was, no PATH.tmp; a second abort does nothing */
    CHECK(es_atomic_open(&a, p, "the test output", &e) == 0, "open: %s", e.msg);
    fputs("partial", a.f);
    es_atomic_abort(&a);
    es_atomic_abort(&a);
    CHECK(file_is(p, "new\n") && !exists(tmp), "aborted: PATH untouched, no PATH.tmp");
    /* 6.6 a write error on the stream fails the commit naming PATH.tmp, removes it, leaves PATH */
    CHECK(es_atomic_open(&a, p, "the test output", &e) == 0, "open: %s", e.msg);
    fputs("lost", a.f);
    (void)fgetc(a.f); /* reading a write-only stream sets its error flag, as a failed write does */
    CHECK(es_atomic_commit(&a, &e) != 0, "a stream in error committed");
    snprintf(want, sizeof want, "%s: cannot write the test output: ", tmp);
    CHECK(!strncmp(e.msg, want, strlen(want)) && file_is(p, "new\n") && !exists(tmp), "write error: %s", e.msg);
    /* 6.7 a folder that does not exist: an error naming PATH.tmp, what it was for and why */
    char q[300];
    snprintf(q, sizeof q, "%s/no/such/out.txt", dir);
    e.msg[0] = 0;
    CHECK(es_atomic_open(&a, q, "the test output", &e) != 0 && a.f == NULL, "opened in a missing folder");
    snprintf(want, sizeof want, "%s.tmp: cannot write the test output: No such file or directory", q);
    CHECK(!strcmp(e.msg, want), "missing folder: '%s'", e.msg);
    es_atomic_abort(&a); /* nothing to do */
    /* 6.8 a rename that fails (a folder where PATH goes): an error naming PATH; PATH.tmp removed */
    snprintf(q, sizeof q, "%s/sub", dir);
    mkdir(q, 0755);
    char sub_tmp[320];
    snprintf(sub_tmp, sizeof sub_tmp, "%s.tmp", q);
    CHECK(es_atomic_open(&a, q, "the test output", &e) == 0, "open: %s", e.msg);
    CHECK(es_atomic_commit(&a, &e) != 0, "renamed over a folder");
    snprintf(want, sizeof want, "%s: cannot move the test output into place: Is a directory", q);
    CHECK(!strcmp(e.msg, want) && !exists(sub_tmp) && es_is_dir(q), "rename over a folder: '%s'", e.msg);
    rmdir(q);
    /* 6.9 a process stopped by a signal while writing removes PATH.tmp (it is registered) */
    pid_t child = fork();
    if (child == 0) {
        es_cleanup_install();
        if (es_atomic_open(&a, p, "the test output", &e) || !exists(tmp)) _exit(1);
        raise(SIGTERM);
        _exit(3); /* not reached */
    }
    int st = 0;
    waitpid(child, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "stopped writer ended by SIGTERM (status %d)", st);
    CHECK(!exists(tmp) && file_is(p, "new\n"), "a stopped write left PATH.tmp or changed PATH");
    remove(p);
    CHECK(rmdir(dir) == 0, "nothing else was left in %s", dir);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_core MODELS_DIR TESTS_DATA_DIR\n");
        return 2;
    }
    setenv("ETCHSIM_MODELS", argv[1], 1);
    data_dir = argv[2];
    t1_models();
    t2_cfg();
    t3_chip();
    t3_chip_from_memory();
    t4_analytic();
    t5_stats();
    t6_reports_and_stops();
    t6_atomic();
    printf("%d passed, %d failed\n", passes, fails);
    return fails ? 1 : 0;
}
