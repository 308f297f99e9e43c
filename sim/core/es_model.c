/* es_model: config.json loader, tensor list and op graph (see es_model.h).
 * Parameter counts follow from the tensor list alone, so the totals the
 * tests check (8,030,261,248 for Llama-3.1-8B) exercise the whole graph. */
#define _POSIX_C_SOURCE 200809L
#include "es_model.h"
#include "es_cfg.h"
#include "es_fs.h"
#include "es_gguf.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *role_names[ES_ROLE_COUNT] = {
    "embed", "attn_norm", "attn_q", "attn_k", "attn_v", "attn_o",
    "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "out_norm", "lm_head", "router", "q_norm", "k_norm",
    "ssm_in", "ssm_conv", "ssm_x", "ssm_dt", "ssm_a", "ssm_out", "ssm_vec", "bias", "attn_sinks"};
_Static_assert(sizeof role_names / sizeof *role_names == ES_ROLE_COUNT, "a name for every es_role");

const char *es_role_name(es_role r) { return (r >= 0 && r < ES_ROLE_COUNT) ? role_names[r] : "?"; }

const char *es_role_names(void)
{
    static _Thread_local char list[512]; /* built on first use, per thread */
    if (!list[0])
        for (int r = 0; r < ES_ROLE_COUNT; r++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", r ? (r + 1 < ES_ROLE_COUNT ? ", " : " or ") : "", role_names[r]);
        }
    return list;
}

int es_role_from_name(const char *s)
{
    for (int i = 0; i < ES_ROLE_COUNT; i++)
        if (strcmp(s, role_names[i]) == 0) return i;
    return -1;
}

const char *es_models_dir(void)
{
    const char *env = getenv("ETCHSIM_MODELS");
    if (env && env[0]) return env;
#ifdef ETCHSIM_MODELS_DIR
    return ETCHSIM_MODELS_DIR;
#else
    return "models";
#endif
}

int es_resolve(const char *spec, const char *sub, const char *leaf, char *out, size_t n, es_err *e)
{
    if (!spec || !spec[0]) return es_fail(e, "empty %s name", sub);
    if (es_is_file(spec)) { snprintf(out, n, "%s", spec); return 0; }
    if (es_is_dir(spec)) {
        if (!leaf) return es_fail(e, "%s: is a folder; expected a %s .json file", spec, sub);
        snprintf(out, n, "%s/%s", spec, leaf);
        if (es_is_file(out)) return 0;
        return es_fail(e, "%s: folder has no %s", spec, leaf);
    }
    if (!strchr(spec, '/')) {
        if (leaf) snprintf(out, n, "%s/%s/%s/%s", es_models_dir(), sub, spec, leaf);
        else snprintf(out, n, "%s/%s/%s.json", es_models_dir(), sub, spec);
        if (es_is_file(out)) return 0;
        return es_fail(e, "%s: no such file, and no '%s' under %s/%s", spec, spec,
                       es_models_dir(), sub);
    }
    return es_fail(e, "%s: no such file", spec);
}

static int add_tensor(es_model *m, es_role role, int layer, int64_t rows, int64_t cols,
                      const char *name)
{
    es_tensor *t = &m->tensors[m->n_tensors];
    t->role = role;
    t->layer = layer;
    t->rows = rows;
    t->cols = cols;
    t->expert = -1;
    snprintf(t->name, sizeof t->name, "%s", name);
    return m->n_tensors++;
}

static const char *res_names[] = {"embed_rom", "lanes", "vector", "attention", "scan", "router", "sampler"};
const char *es_res_name(es_res r) { return (r >= 0 && r <= ES_RES_SAMPLER) ? res_names[r] : "?"; }

static const char *buf_names[] = {
    "none", "x", "xb", "q", "k", "v", "att", "gate", "up", "out", "score", "route", "expert_out",
    "ssm_xz", "ssm_x", "ssm_z", "ssm_u", "ssm_dbc", "ssm_dtr", "ssm_dt", "ssm_y", "logits"};
_Static_assert(sizeof buf_names / sizeof *buf_names == ES_BUF_COUNT, "a name for every es_buf");
const char *es_buf_name(es_buf b) { return ((int)b >= 0 && b < ES_BUF_COUNT) ? buf_names[b] : "?"; }

static es_op *add_op(es_model *m, es_op_kind k, int layer, int tensor, int64_t elems,
                     const char *name)
{
    es_op *o = &m->ops[m->n_ops++];
    o->kind = k;
    switch (k) {
    case ES_OP_EMBED: o->res = ES_RES_EMBED_ROM; break;
    case ES_OP_MATVEC: o->res = ES_RES_LANES; break;
    case ES_OP_ATTN: o->res = ES_RES_ATTN; o->state = ES_STATE_KV; break;
    case ES_OP_SAMPLE: o->res = ES_RES_SAMPLER; break;
    case ES_OP_ROUTE: o->res = ES_RES_ROUTER; break;
    case ES_OP_EXPERTS: o->res = ES_RES_LANES; o->state = ES_STATE_EXPERTS; break;
    case ES_OP_SCAN: o->res = ES_RES_SCAN; o->state = ES_STATE_RECURRENT; break;
    default: o->res = ES_RES_VECTOR; break;
    }
    o->layer = layer;
    o->tensor = tensor;
    o->elems = elems;
    snprintf(o->name, sizeof o->name, "%s", name);
    o->vec = -1;
    return o;
}

/* The data flow of op o (es_model.h says what each kind reads and writes): it writes out and
 * reads in (up to three, ES_BUF_NONE after the last). Timing reads none of it. */
static es_op *io(es_op *o, es_buf out, const es_buf in[3])
{
    o->out = out;
    memcpy(o->in, in, sizeof o->in);
    return o;
}
#define IO(op, out, ...) io(op, out, (const es_buf[3]){__VA_ARGS__})

/* A residual add: X += OUT. */
static void add_residual(es_model *m, int layer, int64_t elems, const char *name)
{
    IO(add_op(m, ES_OP_ADD, layer, -1, elems, name), ES_BUF_X, ES_BUF_OUT);
}

/* A bias add (gpt-oss): out += tensor b, elems elements a token, on the vector unit. */
static void add_bias(es_model *m, int layer, int b, int64_t elems, es_buf out, const char *name)
{
    IO(add_op(m, ES_OP_ADD, layer, b, elems, name), out, ES_BUF_NONE);
}

/* gpt-oss's extras in a layer's attention: the q, k, v and o biases, and the sinks (-1: none). */
typedef struct attn_extra { int qb, kb, vb, ob, sinks; } attn_extra;
static const attn_extra NO_EXTRA = {-1, -1, -1, -1, -1};

/* Attention as Llama and the MoE families lay it out: norm, the Q, K and V projections (each with its
 * bias, gpt-oss), the RMSNorm on q and k when the model has one (gains qn and kn), RoPE, attention (over
 * gpt-oss's sinks), the output projection (and its bias) and the residual add. */
static void add_attention_ops(es_model *m, int l, int an, int q, int k, int v, int o, int qn, int kn,
                              const attn_extra *x)
{
    int64_t H = m->hidden, q_out = m->heads * m->head_dim, kv_out = m->kv_heads * m->head_dim;
    IO(add_op(m, ES_OP_RMSNORM, l, an, H, "attn_norm"), ES_BUF_XB, ES_BUF_X);
    IO(add_op(m, ES_OP_MATVEC, l, q, 0, "attn_q"), ES_BUF_Q, ES_BUF_XB);
    if (x->qb >= 0) add_bias(m, l, x->qb, q_out, ES_BUF_Q, "q_bias");
    IO(add_op(m, ES_OP_MATVEC, l, k, 0, "attn_k"), ES_BUF_K, ES_BUF_XB);
    if (x->kb >= 0) add_bias(m, l, x->kb, kv_out, ES_BUF_K, "k_bias");
    IO(add_op(m, ES_OP_MATVEC, l, v, 0, "attn_v"), ES_BUF_V, ES_BUF_XB);
    if (x->vb >= 0) add_bias(m, l, x->vb, kv_out, ES_BUF_V, "v_bias");
    if (m->qk_norm) {
        IO(add_op(m, ES_OP_RMSNORM, l, qn, q_out, "q_norm"), ES_BUF_Q, ES_BUF_Q);
        IO(add_op(m, ES_OP_RMSNORM, l, kn, kv_out, "k_norm"), ES_BUF_K, ES_BUF_K);
    }
    IO(add_op(m, ES_OP_ROPE, l, -1, q_out + kv_out, "rope"), ES_BUF_NONE, ES_BUF_Q, ES_BUF_K);
    IO(add_op(m, ES_OP_ATTN, l, x->sinks, q_out, "attention"), ES_BUF_ATT, ES_BUF_Q, ES_BUF_K, ES_BUF_V);
    IO(add_op(m, ES_OP_MATVEC, l, o, 0, "attn_o"), ES_BUF_OUT, ES_BUF_ATT);
    if (x->ob >= 0) add_bias(m, l, x->ob, H, ES_BUF_OUT, "o_bias");
    add_residual(m, l, H, "attn_residual");
}

/* The head's ops: final norm, LM head, sampler. */
static void add_head_ops(es_model *m, int out_norm, int head)
{
    IO(add_op(m, ES_OP_RMSNORM, -1, out_norm, m->hidden, "out_norm"), ES_BUF_XB, ES_BUF_X);
    IO(add_op(m, ES_OP_MATVEC, -1, head, 0, "lm_head"), ES_BUF_LOGITS, ES_BUF_XB);
    IO(add_op(m, ES_OP_SAMPLE, -1, -1, m->vocab, "sampler"), ES_BUF_NONE, ES_BUF_LOGITS);
}

/* The embedding op: X = the tokens' rows. */
static void add_embed_op(es_model *m, int emb)
{
    IO(add_op(m, ES_OP_EMBED, -1, emb, m->hidden, "embed"), ES_BUF_X, ES_BUF_NONE);
}

/* After the blocks, both graphs end alike: final norm, LM head (the
 * embedding table when tied), sampler. */
static int add_head(es_model *m, int emb)
{
    int on = add_tensor(m, ES_ROLE_OUT_NORM, -1, 1, m->hidden, "model.norm.weight");
    m->tensors[emb].lm_head = m->tied;
    int head = m->tied ? emb : add_tensor(m, ES_ROLE_LM_HEAD, -1, m->vocab, m->hidden, "lm_head.weight");
    add_head_ops(m, on, head);
    return 0;
}

/* The graph of a dense Llama (LlamaForCausalLM, GGUF "llama"). */
static int build_llama(es_model *m, es_err *e)
{
    int64_t L = m->layers, H = m->hidden;
    int64_t q_out = m->heads * m->head_dim, kv_out = m->kv_heads * m->head_dim;
    m->tensors = calloc((size_t)(9 * L + 3), sizeof *m->tensors);
    m->ops = calloc((size_t)(14 * L + 4), sizeof *m->ops);
    if (!m->tensors || !m->ops) return es_fail(e, "%s: out of memory building the graph", m->path);
    char nm[96];
    int emb = add_tensor(m, ES_ROLE_EMBED, -1, m->vocab, H, "model.embed_tokens.weight");
    add_embed_op(m, emb);
    for (int l = 0; l < L; l++) {
#define T(role, rows, cols, fmt) (snprintf(nm, sizeof nm, "model.layers.%d." fmt, l), \
                                   add_tensor(m, role, l, rows, cols, nm))
        int an = T(ES_ROLE_ATTN_NORM, 1, H, "input_layernorm.weight");
        int q = T(ES_ROLE_Q, q_out, H, "self_attn.q_proj.weight");
        int k = T(ES_ROLE_K, kv_out, H, "self_attn.k_proj.weight");
        int v = T(ES_ROLE_V, kv_out, H, "self_attn.v_proj.weight");
        int o = T(ES_ROLE_O, H, q_out, "self_attn.o_proj.weight");
        int fn = T(ES_ROLE_FFN_NORM, 1, H, "post_attention_layernorm.weight");
        int g = T(ES_ROLE_GATE, m->ffn, H, "mlp.gate_proj.weight");
        int u = T(ES_ROLE_UP, m->ffn, H, "mlp.up_proj.weight");
        int d = T(ES_ROLE_DOWN, H, m->ffn, "mlp.down_proj.weight");
#undef T
        add_attention_ops(m, l, an, q, k, v, o, -1, -1, &NO_EXTRA);
        IO(add_op(m, ES_OP_RMSNORM, l, fn, H, "ffn_norm"), ES_BUF_XB, ES_BUF_X);
        IO(add_op(m, ES_OP_MATVEC, l, g, 0, "ffn_gate"), ES_BUF_GATE, ES_BUF_XB);
        IO(add_op(m, ES_OP_MATVEC, l, u, 0, "ffn_up"), ES_BUF_UP, ES_BUF_XB);
        IO(add_op(m, ES_OP_SILU_MUL, l, -1, m->ffn, "silu_mul"), ES_BUF_GATE, ES_BUF_GATE, ES_BUF_UP);
        IO(add_op(m, ES_OP_MATVEC, l, d, 0, "ffn_down"), ES_BUF_OUT, ES_BUF_GATE);
        add_residual(m, l, H, "ffn_residual");
    }
    return add_head(m, emb);
}

/* The graph of a mixture-of-experts Llama: attention as in Llama (with an
 * RMSNorm on q and k for OLMoE and Qwen3), then a router (a projection to
 * one score per expert), the top-k selection, and the routed experts. The
 * tensor names follow each family's checkpoints. */
typedef struct moe_names { const char *router, *gate, *up, *down; } moe_names;

static int build_moe_named(es_model *m, const moe_names *nm_moe, es_err *e)
{
    int64_t L = m->layers, H = m->hidden, E = m->experts, F = m->expert_ffn;
    int64_t q_out = m->heads * m->head_dim, kv_out = m->kv_heads * m->head_dim;
    m->tensors = calloc((size_t)((9 + 3 * E) * L + 3), sizeof *m->tensors);
    m->ops = calloc((size_t)(17 * L + 4), sizeof *m->ops);
    if (!m->tensors || !m->ops) return es_fail(e, "%s: out of memory building the graph", m->path);
    char nm[96];
    int emb = add_tensor(m, ES_ROLE_EMBED, -1, m->vocab, H, "model.embed_tokens.weight");
    add_embed_op(m, emb);
    int64_t qn = m->qk_norm == 1 ? m->head_dim : q_out, kn = m->qk_norm == 1 ? m->head_dim : kv_out;
    for (int l = 0; l < L; l++) {
#define T(role, rows, cols, ...) (snprintf(nm, sizeof nm, __VA_ARGS__), add_tensor(m, role, l, rows, cols, nm))
        int an = T(ES_ROLE_ATTN_NORM, 1, H, "model.layers.%d.input_layernorm.weight", l);
        int q = T(ES_ROLE_Q, q_out, H, "model.layers.%d.self_attn.q_proj.weight", l);
        int k = T(ES_ROLE_K, kv_out, H, "model.layers.%d.self_attn.k_proj.weight", l);
        int v = T(ES_ROLE_V, kv_out, H, "model.layers.%d.self_attn.v_proj.weight", l);
        int o = T(ES_ROLE_O, H, q_out, "model.layers.%d.self_attn.o_proj.weight", l);
        int qnt = -1, knt = -1;
        if (m->qk_norm) {
            qnt = T(ES_ROLE_Q_NORM, 1, qn, "model.layers.%d.self_attn.q_norm.weight", l);
            knt = T(ES_ROLE_K_NORM, 1, kn, "model.layers.%d.self_attn.k_norm.weight", l);
        }
        int fn = T(ES_ROLE_FFN_NORM, 1, H, "model.layers.%d.post_attention_layernorm.weight", l);
        int r = T(ES_ROLE_ROUTER, E, H, "model.layers.%d.%s.weight", l, nm_moe->router);
        int first = -1;
        for (int64_t x = 0; x < E; x++) {
            int g = T(ES_ROLE_GATE, F, H, "model.layers.%d.%s.%lld.%s.weight", l, nm_moe->router[0] == 'b' ?
                      "block_sparse_moe.experts" : "mlp.experts", (long long)x, nm_moe->gate);
            int u = T(ES_ROLE_UP, F, H, "model.layers.%d.%s.%lld.%s.weight", l, nm_moe->router[0] == 'b' ?
                      "block_sparse_moe.experts" : "mlp.experts", (long long)x, nm_moe->up);
            int d = T(ES_ROLE_DOWN, H, F, "model.layers.%d.%s.%lld.%s.weight", l, nm_moe->router[0] == 'b' ?
                      "block_sparse_moe.experts" : "mlp.experts", (long long)x, nm_moe->down);
            m->tensors[g].expert = m->tensors[u].expert = m->tensors[d].expert = (int)x;
            if (first < 0) first = g;
        }
#undef T
        add_attention_ops(m, l, an, q, k, v, o, qnt, knt, &NO_EXTRA);
        IO(add_op(m, ES_OP_RMSNORM, l, fn, H, "ffn_norm"), ES_BUF_XB, ES_BUF_X);
        IO(add_op(m, ES_OP_MATVEC, l, r, 0, "router"), ES_BUF_SCORE, ES_BUF_XB);
        IO(add_op(m, ES_OP_ROUTE, l, -1, E, "route"), ES_BUF_ROUTE, ES_BUF_SCORE);
        IO(add_op(m, ES_OP_EXPERTS, l, first, m->top_k, "experts"), ES_BUF_EXPERT_OUT, ES_BUF_XB, ES_BUF_ROUTE);
        /* the k outputs, weighted */
        IO(add_op(m, ES_OP_ADD, l, -1, m->top_k * H, "expert_combine"), ES_BUF_OUT, ES_BUF_EXPERT_OUT, ES_BUF_ROUTE);
        add_residual(m, l, H, "ffn_residual");
    }
    return add_head(m, emb);
}

/* The graph of a Mamba block model (MambaForCausalLM, FalconMambaForCausalLM):
 * RMSNorm, in_proj to x and z, causal conv1d and SiLU on x, x_proj to dt, B
 * and C, dt_proj and softplus, the selective scan over a fixed state of
 * N values per channel, y x SiLU(z), out_proj, residual. No attention, no KV. */
static int build_mamba(es_model *m, es_err *e)
{
    int64_t L = m->layers, H = m->hidden, I = m->ssm_inner, N = m->ssm_state, K = m->ssm_conv, R = m->ssm_dt_rank;
    m->tensors = calloc((size_t)(11 * L + 3), sizeof *m->tensors);
    m->ops = calloc((size_t)(11 * L + 4), sizeof *m->ops);
    if (!m->tensors || !m->ops) return es_fail(e, "%s: out of memory building the graph", m->path);
    char nm[96];
    int emb = add_tensor(m, ES_ROLE_EMBED, -1, m->vocab, H, "backbone.embeddings.weight");
    add_embed_op(m, emb);
    for (int l = 0; l < L; l++) {
#define T(role, rows, cols, fmt) (snprintf(nm, sizeof nm, "backbone.layers.%d." fmt, l), \
                                   add_tensor(m, role, l, rows, cols, nm))
        int no = T(ES_ROLE_ATTN_NORM, 1, H, "norm.weight");
        int in = T(ES_ROLE_SSM_IN, 2 * I, H, "mixer.in_proj.weight");
        int cv = T(ES_ROLE_SSM_CONV, I, K, "mixer.conv1d.weight");
        int cb = T(ES_ROLE_SSM_VEC, 1, I, "mixer.conv1d.bias");
        int xp = T(ES_ROLE_SSM_X, R + 2 * N, I, "mixer.x_proj.weight");
        int dt = T(ES_ROLE_SSM_DT, I, R, "mixer.dt_proj.weight");
        int db = T(ES_ROLE_SSM_VEC, 1, I, "mixer.dt_proj.bias");
        int a = T(ES_ROLE_SSM_A, I, N, "mixer.A_log");
        int dv = T(ES_ROLE_SSM_VEC, 1, I, "mixer.D");
        int out = T(ES_ROLE_SSM_OUT, H, I, "mixer.out_proj.weight");
#undef T
        IO(add_op(m, ES_OP_RMSNORM, l, no, H, "norm"), ES_BUF_XB, ES_BUF_X);
        IO(add_op(m, ES_OP_MATVEC, l, in, 0, "in_proj"), ES_BUF_SSM_XZ, ES_BUF_XB);
        IO(add_op(m, ES_OP_CONV, l, cv, I * K, "conv1d"), ES_BUF_SSM_U, ES_BUF_SSM_X)->vec = cb;
        IO(add_op(m, ES_OP_MATVEC, l, xp, 0, "x_proj"), ES_BUF_SSM_DBC, ES_BUF_SSM_U);
        IO(add_op(m, ES_OP_MATVEC, l, dt, 0, "dt_proj"), ES_BUF_SSM_DT, ES_BUF_SSM_DTR);
        es_op *sp = IO(add_op(m, ES_OP_SILU_MUL, l, -1, I, "dt_softplus"), ES_BUF_SSM_DT, ES_BUF_SSM_DT);
        sp->vec = db;
        sp->fn = ES_FN_SOFTPLUS;
        IO(add_op(m, ES_OP_SCAN, l, a, I * N, "scan"), ES_BUF_SSM_Y, ES_BUF_SSM_U, ES_BUF_SSM_DT, ES_BUF_SSM_DBC)->vec = dv;
        IO(add_op(m, ES_OP_SILU_MUL, l, -1, I, "gate"), ES_BUF_SSM_Y, ES_BUF_SSM_Z, ES_BUF_SSM_Y);
        IO(add_op(m, ES_OP_MATVEC, l, out, 0, "out_proj"), ES_BUF_OUT, ES_BUF_SSM_Y);
        add_residual(m, l, H, "residual");
    }
    /* the final norm is backbone.norm_f */
    int on = add_tensor(m, ES_ROLE_OUT_NORM, -1, 1, H, "backbone.norm_f.weight");
    m->tensors[emb].lm_head = m->tied;
    int head = m->tied ? emb : add_tensor(m, ES_ROLE_LM_HEAD, -1, m->vocab, H, "lm_head.weight");
    add_head_ops(m, on, head);
    return 0;
}

static int build_mixtral(es_model *m, es_err *e)
{
    static const moe_names n = {"block_sparse_moe.gate", "w1", "w3", "w2"};
    return build_moe_named(m, &n, e);
}

static int build_moe_mlp(es_model *m, es_err *e)
{
    static const moe_names n = {"mlp.gate", "gate_proj", "up_proj", "down_proj"};
    return build_moe_named(m, &n, e);
}

/* The graph of gpt-oss (GptOssForCausalLM; OpenAI's reference, openai/gpt-oss gpt_oss/torch/model.py, and
 * models/chips/baselines-sources.md s9.2): attention as in Llama with biases on q, k, v and o and a learned
 * sink logit per head, alternate layers attending over a sliding window; a router with a bias choosing the
 * top-k experts, each a gate and an up projection (the even and odd rows of the checkpoint's one gate_up_proj,
 * interleaved) with one bias, a clamped SwiGLU, and a down projection with a bias. The experts' gate, up and
 * down come three by three (es_model_expert), their biases after them. Names: the HF checkpoint's, an
 * expert's rows in brackets (its gate_up_proj and down_proj are one tensor per layer there). */
static int build_gpt_oss(es_model *m, es_err *e)
{
    int64_t L = m->layers, H = m->hidden, E = m->experts, F = m->expert_ffn;
    int64_t q_out = m->heads * m->head_dim, kv_out = m->kv_heads * m->head_dim;
    m->tensors = calloc((size_t)((13 + 5 * E) * L + 3), sizeof *m->tensors);
    m->ops = calloc((size_t)(19 * L + 4), sizeof *m->ops);
    if (!m->tensors || !m->ops) return es_fail(e, "%s: out of memory building the graph", m->path);
    char nm[96];
    int emb = add_tensor(m, ES_ROLE_EMBED, -1, m->vocab, H, "model.embed_tokens.weight");
    add_embed_op(m, emb);
    for (int l = 0; l < L; l++) {
#define T(role, rows, cols, ...) (snprintf(nm, sizeof nm, "model.layers.%d." __VA_ARGS__), \
                                  add_tensor(m, role, l, rows, cols, nm))
        int an = T(ES_ROLE_ATTN_NORM, 1, H, "input_layernorm.weight", l);
        attn_extra x = NO_EXTRA;
        int q = T(ES_ROLE_Q, q_out, H, "self_attn.q_proj.weight", l);
        if (m->attn_bias) x.qb = T(ES_ROLE_BIAS, 1, q_out, "self_attn.q_proj.bias", l);
        int k = T(ES_ROLE_K, kv_out, H, "self_attn.k_proj.weight", l);
        if (m->attn_bias) x.kb = T(ES_ROLE_BIAS, 1, kv_out, "self_attn.k_proj.bias", l);
        int v = T(ES_ROLE_V, kv_out, H, "self_attn.v_proj.weight", l);
        if (m->attn_bias) x.vb = T(ES_ROLE_BIAS, 1, kv_out, "self_attn.v_proj.bias", l);
        int o = T(ES_ROLE_O, H, q_out, "self_attn.o_proj.weight", l);
        if (m->attn_bias) x.ob = T(ES_ROLE_BIAS, 1, H, "self_attn.o_proj.bias", l);
        x.sinks = T(ES_ROLE_SINKS, 1, m->heads, "self_attn.sinks", l);
        int fn = T(ES_ROLE_FFN_NORM, 1, H, "post_attention_layernorm.weight", l);
        int r = T(ES_ROLE_ROUTER, E, H, "mlp.router.weight", l);
        int rb = T(ES_ROLE_BIAS, 1, E, "mlp.router.bias", l);
        int first = -1;
        for (int64_t ex = 0; ex < E; ex++) {
            int g = T(ES_ROLE_GATE, F, H, "mlp.experts.gate_up_proj[%lld, 0::2]", l, (long long)ex);
            int u = T(ES_ROLE_UP, F, H, "mlp.experts.gate_up_proj[%lld, 1::2]", l, (long long)ex);
            int d = T(ES_ROLE_DOWN, H, F, "mlp.experts.down_proj[%lld]", l, (long long)ex);
            m->tensors[g].expert = m->tensors[u].expert = m->tensors[d].expert = (int)ex;
            if (first < 0) first = g;
        }
        for (int64_t ex = 0; ex < E; ex++) {
            int gb = T(ES_ROLE_BIAS, 1, 2 * F, "mlp.experts.gate_up_proj_bias[%lld]", l, (long long)ex);
            int db = T(ES_ROLE_BIAS, 1, H, "mlp.experts.down_proj_bias[%lld]", l, (long long)ex);
            m->tensors[gb].expert = m->tensors[db].expert = (int)ex;
        }
#undef T
        add_attention_ops(m, l, an, q, k, v, o, -1, -1, &x);
        IO(add_op(m, ES_OP_RMSNORM, l, fn, H, "ffn_norm"), ES_BUF_XB, ES_BUF_X);
        IO(add_op(m, ES_OP_MATVEC, l, r, 0, "router"), ES_BUF_SCORE, ES_BUF_XB);
        add_bias(m, l, rb, E, ES_BUF_SCORE, "router_bias");
        IO(add_op(m, ES_OP_ROUTE, l, -1, E, "route"), ES_BUF_ROUTE, ES_BUF_SCORE);
        IO(add_op(m, ES_OP_EXPERTS, l, first, m->top_k, "experts"), ES_BUF_EXPERT_OUT, ES_BUF_XB, ES_BUF_ROUTE);
        IO(add_op(m, ES_OP_ADD, l, -1, m->top_k * H, "expert_combine"), ES_BUF_OUT, ES_BUF_EXPERT_OUT, ES_BUF_ROUTE);
        add_residual(m, l, H, "ffn_residual");
    }
    return add_head(m, emb);
}

/* ---- the architecture registry ---- */

typedef struct es_arch {
    const char *hf;       /* config.json architectures[0] */
    const char *gguf;     /* GGUF general.architecture (NULL: config.json only) */
    int (*build)(es_model *m, es_err *e);
    /* MoE: the config.json keys of the expert count and of each expert's
     * intermediate size (NULL: dense), and the RMSNorm on q and k */
    const char *experts_key, *ffn_key;
    int qk_norm;
    int ssm;              /* 1: a Mamba block model (its own config keys); 2: with Falcon-Mamba's B, C, dt norms */
} es_arch;

static const es_arch ARCHS[] = {
    {"LlamaForCausalLM", "llama", build_llama, NULL, NULL, 0, 0},
    {"MixtralForCausalLM", NULL, build_mixtral, "num_local_experts", "intermediate_size", 0, 0},
    {"OlmoeForCausalLM", NULL, build_moe_mlp, "num_experts", "intermediate_size", 2, 0},
    {"Qwen3MoeForCausalLM", NULL, build_moe_mlp, "num_experts", "moe_intermediate_size", 1, 0},
    {"GptOssForCausalLM", NULL, build_gpt_oss, "num_local_experts", "intermediate_size", 0, 0},
    {"MambaForCausalLM", NULL, build_mamba, NULL, NULL, 0, 1},
    {"FalconMambaForCausalLM", NULL, build_mamba, NULL, NULL, 0, 2},
};

/* mixer_rms_eps (Falcon-Mamba), default 1e-6 as its config class says. */
static int read_mixer_eps(es_cfg *c, es_model *m, es_err *e)
{
    m->ssm_norm_eps = 1e-6;
    return es_cfg_has(c, "mixer_rms_eps") ? es_cfg_num(c, "mixer_rms_eps", 1e-12, 1.0, &m->ssm_norm_eps, e) : 0;
}

/* A Mamba config: hidden_size, num_hidden_layers, intermediate_size, state_size,
 * conv_kernel, time_step_rank, vocab_size, layer_norm_epsilon; no positional
 * limit (max_position_embeddings, when given, is kept). */
static int load_mamba_keys(es_model *m, es_cfg *c, es_err *e)
{
    const int64_t BIG = (int64_t)1 << 24;
    if (es_cfg_i64(c, "hidden_size", 1, BIG, &m->hidden, e) ||
        es_cfg_i64(c, "num_hidden_layers", 1, 4096, &m->layers, e) ||
        es_cfg_i64(c, "intermediate_size", 1, BIG, &m->ssm_inner, e) ||
        es_cfg_i64(c, "state_size", 1, 4096, &m->ssm_state, e) ||
        es_cfg_i64(c, "conv_kernel", 1, 64, &m->ssm_conv, e) ||
        es_cfg_i64(c, "time_step_rank", 1, BIG, &m->ssm_dt_rank, e) ||
        es_cfg_i64(c, "vocab_size", 1, (int64_t)1 << 22, &m->vocab, e) ||
        es_cfg_num(c, "layer_norm_epsilon", 1e-12, 1.0, &m->eps, e) ||
        es_cfg_i64_opt(c, "max_position_embeddings", 1, (int64_t)1 << 24, (int64_t)1 << 24, &m->max_pos, e))
        return -1;
    m->ffn = m->ssm_inner;
    m->tied = 0;
    if (es_cfg_has(c, "tie_word_embeddings") && es_cfg_bool(c, "tie_word_embeddings", &m->tied, e)) return -1;
    return 0;
}
#define N_ARCHS ((int)(sizeof ARCHS / sizeof *ARCHS))

static const es_arch *find_arch(const char *name, int gguf)
{
    for (int i = 0; i < N_ARCHS; i++) {
        const char *a = gguf ? ARCHS[i].gguf : ARCHS[i].hf;
        if (a && !strcmp(name, a)) return &ARCHS[i];
    }
    return NULL;
}

static void arch_list(char *out, size_t n, int gguf)
{
    out[0] = 0;
    for (int i = 0; i < N_ARCHS; i++) {
        const char *a = gguf ? ARCHS[i].gguf : ARCHS[i].hf;
        if (a) snprintf(out + strlen(out), n - strlen(out), "%s%s", out[0] ? ", " : "", a);
    }
}

/* Index the tensors by (layer, role). */
static int index_roles(es_model *m, es_err *e)
{
    int64_t rows = m->layers + 1;
    m->by_role = malloc((size_t)(rows * ES_ROLE_COUNT) * sizeof *m->by_role);
    if (!m->by_role) return es_fail(e, "%s: out of memory building the graph", m->path);
    for (int64_t i = 0; i < rows * ES_ROLE_COUNT; i++) m->by_role[i] = -1;
    for (int i = 0; i < m->n_tensors; i++) {
        const es_tensor *t = &m->tensors[i];
        int64_t row = t->layer >= 0 ? t->layer : m->layers;
        int *slot = &m->by_role[row * ES_ROLE_COUNT + t->role];
        if (t->expert <= 0 && (t->role != ES_ROLE_BIAS || *slot < 0)) *slot = i; /* experts: expert 0's; bias: the first */
        if (t->lm_head) m->by_role[m->layers * ES_ROLE_COUNT + ES_ROLE_LM_HEAD] = i;
    }
    return 0;
}

/* Build the graph, then index its tensors by (layer, role). */
static int build_graph(es_model *m, const es_arch *a, es_err *e)
{
    if (a->build(m, e)) return -1;
    m->full_layers = m->layers;
    m->has_embed = m->has_head = 1;
    return index_roles(m, e);
}

int es_model_slice(const es_model *m, int64_t first, int64_t last, int embed, int head, es_model *out, es_err *e)
{
    if (first < 0 || last < first || last >= m->layers)
        return es_fail(e, "%s: layers [%lld, %lld] are not a range of its %lld layers", m->name, (long long)first,
                       (long long)last, (long long)m->layers);
    *out = *m;
    out->tensors = malloc((size_t)m->n_tensors * sizeof *out->tensors);
    out->ops = malloc((size_t)m->n_ops * sizeof *out->ops);
    out->by_role = NULL;
    int *map = malloc((size_t)m->n_tensors * sizeof *map);
    if (!out->tensors || !out->ops || !map) {
        free(map);
        es_model_free(out);
        return es_fail(e, "%s: out of memory slicing layers [%lld, %lld]", m->name, (long long)first, (long long)last);
    }
    out->layers = last - first + 1;
    out->layer_base = m->layer_base + first;
    out->has_embed = embed && m->has_embed;
    out->has_head = head && m->has_head;
    out->tied = m->tied && out->has_head;
    out->n_tensors = out->n_ops = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        es_tensor t = m->tensors[i];
        int keep = t.layer >= first && t.layer <= last;
        if (t.layer < 0) keep = t.role == ES_ROLE_EMBED ? out->has_embed || (t.lm_head && out->has_head)
                                                        : out->has_head;
        map[i] = -1;
        if (!keep) continue;
        if (t.layer >= 0) t.layer -= (int)first;
        if (t.lm_head && !out->has_head) t.lm_head = 0;
        map[i] = out->n_tensors;
        out->tensors[out->n_tensors++] = t;
    }
    for (int i = 0; i < m->n_ops; i++) {
        es_op op = m->ops[i];
        int keep = op.layer >= first && op.layer <= last;
        if (op.layer < 0) keep = op.kind == ES_OP_EMBED ? out->has_embed : out->has_head;
        if (!keep) continue;
        if (op.layer >= 0) op.layer -= (int)first;
        if (op.tensor >= 0) op.tensor = map[op.tensor];
        if (op.vec >= 0) op.vec = map[op.vec];
        out->ops[out->n_ops++] = op;
    }
    free(map);
    if (index_roles(out, e)) {
        es_model_free(out);
        return -1;
    }
    return 0;
}

int es_model_expert_slice(const es_model *m, int64_t first, int64_t last, es_model *out, es_err *e)
{
    if (m->experts <= 0 || first < 0 || last < first || last >= m->experts)
        return es_fail(e, "%s: experts [%lld, %lld] are not a range of its %lld experts", m->name, (long long)first,
                       (long long)last, (long long)m->experts);
    if (es_model_slice(m, 0, m->layers - 1, m->has_embed, m->has_head, out, e)) return -1; /* a deep copy */
    out->layer_base = m->layer_base;
    out->experts_all = es_model_experts_all(m);
    out->expert_base = m->expert_base + first;
    out->experts = last - first + 1;
    int *map = malloc((size_t)out->n_tensors * sizeof *map);
    if (!map) {
        es_model_free(out);
        return es_fail(e, "%s: out of memory slicing experts", m->name);
    }
    int n = 0;
    for (int i = 0; i < out->n_tensors; i++) { /* keep the order: each layer's experts, then their biases */
        es_tensor t = out->tensors[i];
        map[i] = -1;
        if (t.expert >= 0 && (t.expert < first || t.expert > last)) continue;
        if (t.expert >= 0) t.expert -= (int)first;
        map[i] = n;
        out->tensors[n++] = t;
    }
    out->n_tensors = n;
    for (int i = 0; i < out->n_ops; i++) {
        es_op *op = &out->ops[i];
        if (op->kind == ES_OP_EXPERTS && op->tensor >= 0) /* the layer's first expert: now its expert first */
            op->tensor = map[op->tensor + (int)(3 * first)];
        else if (op->tensor >= 0) op->tensor = map[op->tensor];
        if (op->vec >= 0) op->vec = map[op->vec];
    }
    free(map);
    free(out->by_role);
    out->by_role = NULL;
    if (index_roles(out, e)) {
        es_model_free(out);
        return -1;
    }
    return 0;
}

int64_t es_model_experts_all(const es_model *m) { return m->experts_all > 0 ? m->experts_all : m->experts; }

const es_tensor *es_model_expert(const es_model *m, int64_t layer, es_role role, int64_t e)
{
    const es_tensor *t0 = es_model_tensor(m, layer, role);
    if (!t0 || t0->expert < 0 || e < 0 || e >= m->experts) return NULL;
    /* the builder lays an expert's gate, up and down out together, experts in order */
    const es_tensor *t = t0 + 3 * e;
    return t->expert == e && t->role == role ? t : NULL;
}

int64_t es_model_active_params(const es_model *m)
{
    int64_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const es_tensor *t = &m->tensors[i];
        if (t->expert < 0 || t->expert < m->top_k) n += t->rows * t->cols; /* any top_k experts */
    }
    return n;
}

const es_tensor *es_model_tensor(const es_model *m, int64_t layer, es_role role)
{
    int64_t row = layer >= 0 ? layer : m->layers;
    if (row > m->layers || role < 0 || role >= ES_ROLE_COUNT || !m->by_role) return NULL;
    int i = m->by_role[row * ES_ROLE_COUNT + role];
    return i >= 0 ? &m->tensors[i] : NULL;
}

const es_op *es_model_op(const es_model *m, int64_t layer, es_op_kind k)
{
    for (int i = 0; i < m->n_ops; i++)
        if (m->ops[i].layer == layer && m->ops[i].kind == k) return &m->ops[i];
    return NULL;
}

int64_t es_model_kv_layers(const es_model *m)
{
    int64_t n = 0;
    for (int i = 0; i < m->n_ops; i++) n += m->ops[i].state == ES_STATE_KV;
    return n;
}

/* The model's name: the file's base name without ".gguf". */
static void gguf_name(es_model *m)
{
    const char *b = strrchr(m->path, '/');
    b = b ? b + 1 : m->path;
    size_t n = strlen(b);
    if (n > 5 && !strcmp(b + n - 5, ".gguf")) n -= 5;
    if (n == 0 || n >= sizeof m->name) { snprintf(m->name, sizeof m->name, "model"); return; }
    memcpy(m->name, b, n);
    m->name[n] = 0;
}

/* Shapes from GGUF metadata (llama.cpp's key names); the weights stay in
 * the same file (es_wsrc). */
static int load_gguf(es_model *m, es_err *e)
{
    es_gguf g;
    if (es_gguf_open(&g, m->path, e)) return -1;
    int rc = -1;
    const char *arch;
    gguf_name(m);
    m->gguf = 1;
    if (es_gguf_str(&g, "general.architecture", &arch, e)) goto out;
    const es_arch *reg = find_arch(arch, 1);
    if (!reg) {
        char list[256];
        arch_list(list, sizeof list, 1);
        es_fail(e, "%s: metadata 'general.architecture': unsupported architecture '%.64s' (supported: %s)",
                m->path, arch, list);
        goto out;
    }
    snprintf(m->arch, sizeof m->arch, "%s", reg->hf);
    const int64_t BIG = (int64_t)1 << 24;
    int64_t vocab_tokens = -1, rope_dims;
    if (es_gguf_i64(&g, "llama.embedding_length", 1, BIG, &m->hidden, e) ||
        es_gguf_i64(&g, "llama.block_count", 1, 4096, &m->layers, e) ||
        es_gguf_i64(&g, "llama.attention.head_count", 1, 4096, &m->heads, e) ||
        es_gguf_i64_opt(&g, "llama.attention.head_count_kv", 1, 4096, m->heads, &m->kv_heads, e) ||
        es_gguf_i64(&g, "llama.feed_forward_length", 1, BIG, &m->ffn, e) ||
        es_gguf_i64(&g, "llama.context_length", 1, BIG, &m->max_pos, e) ||
        es_gguf_num_opt(&g, "llama.rope.freq_base", 1.0, 1e12, 10000.0, &m->rope_theta, e))
        goto out;
    if (!es_gguf_find(&g, "llama.attention.layer_norm_rms_epsilon")) {
        es_fail(e, "%s: required metadata key 'llama.attention.layer_norm_rms_epsilon' is missing", m->path);
        goto out;
    }
    if (es_gguf_num_opt(&g, "llama.attention.layer_norm_rms_epsilon", 1e-12, 1.0, 0, &m->eps, e)) goto out;
    /* the vocabulary: llama.vocab_size, else the tokenizer's token count */
    if (es_gguf_find(&g, "tokenizer.ggml.tokens") &&
        (vocab_tokens = es_gguf_arr_count(&g, "tokenizer.ggml.tokens", e)) < 0)
        goto out;
    if (!es_gguf_find(&g, "llama.vocab_size") && vocab_tokens < 1) {
        es_fail(e, "%s: required metadata key 'llama.vocab_size' is missing (and no tokenizer.ggml.tokens "
                   "to count)", m->path);
        goto out;
    }
    if (es_gguf_i64_opt(&g, "llama.vocab_size", 1, (int64_t)1 << 22, vocab_tokens, &m->vocab, e)) goto out;
    if (m->vocab < 1 || m->vocab > ((int64_t)1 << 22)) {
        es_fail(e, "%s: metadata 'tokenizer.ggml.tokens': %lld tokens (expected 1 to 4194304)", m->path,
                (long long)m->vocab);
        goto out;
    }
    if (m->hidden % m->heads || m->heads % m->kv_heads) {
        es_fail(e, "%s: metadata 'llama.attention.head_count' %lld must divide llama.embedding_length %lld "
                   "and be a multiple of llama.attention.head_count_kv %lld", m->path, (long long)m->heads,
                (long long)m->hidden, (long long)m->kv_heads);
        goto out;
    }
    if (es_gguf_i64_opt(&g, "llama.attention.key_length", 2, 65536, m->hidden / m->heads, &m->head_dim, e))
        goto out;
    if (m->head_dim % 2) {
        es_fail(e, "%s: metadata 'llama.attention.key_length': expected an even head size, got %lld", m->path,
                (long long)m->head_dim);
        goto out;
    }
    if (es_gguf_i64_opt(&g, "llama.rope.dimension_count", 1, 65536, m->head_dim, &rope_dims, e)) goto out;
    if (rope_dims != m->head_dim) {
        es_fail(e, "%s: metadata 'llama.rope.dimension_count': %lld, but only RoPE over the whole head "
                   "(%lld) is supported", m->path, (long long)rope_dims, (long long)m->head_dim);
        goto out;
    }
    const es_gguf_kv *st = es_gguf_find(&g, "llama.rope.scaling.type");
    if (st && (st->type != ES_GGUF_STRING || !st->s || strcmp(st->s, "none"))) {
        es_fail(e, "%s: metadata 'llama.rope.scaling.type': only \"none\" is supported (llama3 scaling "
                   "comes as a rope_freqs.weight tensor)", m->path);
        goto out;
    }
    if (es_gguf_tensor_find(&g, "rope_freqs.weight")) {
        es_fail(e, "%s: tensor rope_freqs.weight (llama3 RoPE scaling) is not supported in GGUF models yet; "
                   "use the model's config.json", m->path);
        goto out;
    }
    m->tied = es_gguf_tensor_find(&g, "output.weight") == NULL; /* llama.cpp uses token_embd then */
    rc = build_graph(m, reg, e);
out:
    es_gguf_close(&g);
    return rc;
}

/* The model's name: the folder holding its config.json ("model" when the name is too long). */
static void name_from_folder(es_model *m)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", m->path);
    char *slash = strrchr(tmp, '/');
    if (slash) *slash = 0;
    char *base = strrchr(tmp, '/');
    const char *nm = slash ? (base ? base + 1 : tmp) : "model";
    if (strlen(nm) >= sizeof m->name) nm = "model";
    memcpy(m->name, nm, strlen(nm) + 1);
}

/* A transformer's shape keys (hidden size, layers, heads, ...; a mixture of experts' expert keys). */
static int load_transformer_keys(es_model *m, es_cfg *c, const es_arch *reg, es_err *e)
{
    const int64_t BIG = (int64_t)1 << 24;
    if (es_cfg_i64(c, "hidden_size", 1, BIG, &m->hidden, e) ||
        es_cfg_i64(c, "num_hidden_layers", 1, 4096, &m->layers, e) ||
        es_cfg_i64(c, "num_attention_heads", 1, 4096, &m->heads, e) ||
        es_cfg_i64_opt(c, "num_key_value_heads", 1, 4096, m->heads, &m->kv_heads, e) ||
        es_cfg_i64(c, "intermediate_size", 1, BIG, &m->ffn, e) ||
        es_cfg_i64(c, "vocab_size", 1, (int64_t)1 << 22, &m->vocab, e) ||
        es_cfg_i64(c, "max_position_embeddings", 1, (int64_t)1 << 24, &m->max_pos, e) ||
        es_cfg_num(c, "rms_norm_eps", 1e-12, 1.0, &m->eps, e) ||
        es_cfg_num(c, "rope_theta", 1.0, 1e12, &m->rope_theta, e))
        return -1;
    if (!es_cfg_has(c, "head_dim") && m->hidden % m->heads) {
        es_fail(e, "%s: key 'hidden_size': %lld is not a multiple of num_attention_heads %lld",
                m->path, (long long)m->hidden, (long long)m->heads);
        return -1;
    }
    if (es_cfg_i64_opt(c, "head_dim", 1, 65536, m->hidden / m->heads, &m->head_dim, e)) return -1;
    if (reg->experts_key) {
        m->qk_norm = reg->qk_norm;
        if (es_cfg_i64(c, reg->experts_key, 1, 4096, &m->experts, e) ||
            es_cfg_i64(c, "num_experts_per_tok", 1, 4096, &m->top_k, e) ||
            es_cfg_i64(c, reg->ffn_key, 1, BIG, &m->expert_ffn, e))
            return -1;
        if (m->top_k > m->experts) {
            es_fail(e, "%s: key 'num_experts_per_tok': %lld is more than the %lld experts (key '%s')", m->path,
                    (long long)m->top_k, (long long)m->experts, reg->experts_key);
            return -1;
        }
        m->ffn = m->expert_ffn;
        /* Mixtral, gpt-oss: softmax over the top-k logits, the same as renormalized top-k of the softmax */
        m->norm_topk = !strcmp(reg->hf, "MixtralForCausalLM") || !strcmp(reg->hf, "GptOssForCausalLM");
        if (es_cfg_has(c, "norm_topk_prob") && es_cfg_bool(c, "norm_topk_prob", &m->norm_topk, e)) return -1;
    }
    if (m->head_dim % 2) {
        es_fail(e, "%s: key 'head_dim': expected an even number, got %lld", m->path,
                (long long)m->head_dim);
        return -1;
    }
    if (m->heads % m->kv_heads) {
        es_fail(e, "%s: key 'num_key_value_heads': %lld does not divide num_attention_heads %lld",
                m->path, (long long)m->kv_heads, (long long)m->heads);
        return -1;
    }
    return 0;
}

/* YaRN's keys (rope_scaling.rope_type "yarn", gpt-oss: HF's rope_scaling, its _compute_yarn_parameters keys). */
static int load_yarn(es_model *m, es_cfg *c, es_err *e)
{
    m->rope_yarn = 1;
    return es_cfg_num(c, "rope_scaling.factor", 1.0, 1e6, &m->rope_factor, e) ||
           es_cfg_num(c, "rope_scaling.beta_fast", 1e-6, 1e6, &m->rope_beta_fast, e) ||
           es_cfg_num(c, "rope_scaling.beta_slow", 1e-6, 1e6, &m->rope_beta_slow, e) ||
           es_cfg_i64(c, "rope_scaling.original_max_position_embeddings", 1, (int64_t)1 << 24, &m->rope_orig_ctx, e)
               ? -1 : 0;
}

/* rope_scaling (llama3; yarn for gpt-oss only, whose functional mode is refused; absent or null: none). */
static int load_rope_scaling(es_model *m, es_cfg *c, const es_arch *reg, es_err *e)
{
    const cJSON *rs = es_cfg_node(c, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        char type[32];
        if (es_cfg_str(c, "rope_scaling.rope_type", type, sizeof type, e)) return -1;
        if (!strcmp(type, "yarn") && reg->build == build_gpt_oss) return load_yarn(m, c, e);
        if (strcmp(type, "llama3") != 0) {
            es_fail(e, "%s: key 'rope_scaling.rope_type': expected \"llama3\", got \"%s\"",
                    m->path, type);
            return -1;
        }
        m->rope_llama3 = 1;
        if (es_cfg_num(c, "rope_scaling.factor", 1.0, 1e6, &m->rope_factor, e) ||
            es_cfg_num(c, "rope_scaling.low_freq_factor", 1e-6, 1e6, &m->rope_low, e) ||
            es_cfg_num(c, "rope_scaling.high_freq_factor", 1e-6, 1e6, &m->rope_high, e) ||
            es_cfg_i64(c, "rope_scaling.original_max_position_embeddings", 1, (int64_t)1 << 24,
                       &m->rope_orig_ctx, e))
            return -1;
        if (m->rope_high <= m->rope_low) {
            es_fail(e, "%s: key 'rope_scaling.high_freq_factor': expected more than "
                       "low_freq_factor %g, got %g", m->path, m->rope_low, m->rope_high);
            return -1;
        }
    }
    return 0;
}

/* gpt-oss's own keys (HF GptOssConfig: attention_bias, default true; sliding_window, default 128, null for
 * none; swiglu_limit, default 7.0; swiglu_alpha, default 1.702). Its sinks have no key: every GptOssAttention has them. */
static int load_gpt_oss_keys(es_model *m, es_cfg *c, es_err *e)
{
    m->attn_bias = 1;
    m->attn_sinks = m->router_bias = 1;
    m->sliding_window = 128;
    m->swiglu_limit = 7.0;
    if (es_cfg_has(c, "attention_bias") && es_cfg_bool(c, "attention_bias", &m->attn_bias, e)) return -1;
    const cJSON *sw = es_cfg_node(c, "sliding_window");
    if (sw && cJSON_IsNull(sw)) m->sliding_window = 0;
    else if (sw && es_cfg_i64(c, "sliding_window", 1, m->max_pos, &m->sliding_window, e)) return -1;
    if (es_cfg_has(c, "swiglu_limit") && es_cfg_num(c, "swiglu_limit", 1e-6, 1e6, &m->swiglu_limit, e)) return -1;
    m->swiglu_alpha = 1.702; /* GptOssConfig's default; OpenAI's swiglu(x, alpha=1.702) */
    if (es_cfg_has(c, "swiglu_alpha") && es_cfg_num(c, "swiglu_alpha", 1e-6, 1e6, &m->swiglu_alpha, e)) return -1;
    return 0;
}

/* layer_types (HF GptOssConfig): "sliding_attention" or "full_attention" per layer; absent, its default:
 * sliding on even layers (0, 2, ...), full on odd. A sliding layer's attention op takes sliding_window. */
static int load_layer_types(es_model *m, es_cfg *c, es_err *e)
{
    const cJSON *lt = es_cfg_node(c, "layer_types");
    if (lt && (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != m->layers))
        return es_fail(e, "%s: key 'layer_types': expected an array of %lld names (num_hidden_layers), each "
                          "\"sliding_attention\" or \"full_attention\"", m->path, (long long)m->layers);
    for (int i = 0; i < m->n_ops; i++) {
        es_op *op = &m->ops[i];
        if (op->kind != ES_OP_ATTN) continue;
        int sliding = op->layer % 2 == 0;
        if (lt) {
            const cJSON *it = cJSON_GetArrayItem(lt, op->layer);
            sliding = cJSON_IsString(it) && !strcmp(it->valuestring, "sliding_attention");
            if (!sliding && !(cJSON_IsString(it) && !strcmp(it->valuestring, "full_attention")))
                return es_fail(e, "%s: key 'layer_types[%d]': expected \"sliding_attention\" or \"full_attention\"",
                               m->path, op->layer);
        }
        if (sliding && m->sliding_window == 0)
            return es_fail(e, "%s: key 'layer_types[%d]': \"sliding_attention\", but sliding_window is null",
                           m->path, op->layer);
        op->window = sliding ? m->sliding_window : 0;
    }
    return 0;
}

int es_model_load(es_model *m, const char *spec, es_err *e)
{
    memset(m, 0, sizeof *m);
    if (es_resolve(spec, "llm", "config.json", m->path, sizeof m->path, e)) return -1;
    if (es_gguf_is_gguf(m->path) || es_ends_with(m->path, ".gguf")) { /* an empty .gguf is not JSON either */
        int rc = load_gguf(m, e);
        if (rc) es_model_free(m);
        return rc;
    }
    es_cfg c;
    if (es_cfg_load(&c, m->path, e)) return -1;
    int rc = -1;
    name_from_folder(m);
    const cJSON *archs = es_cfg_node(&c, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (!cJSON_IsString(a0)) {
        es_fail(e, "%s: key 'architectures': expected an array of one or more names, e.g. "
                   "[\"LlamaForCausalLM\"]", m->path);
        goto out;
    }
    snprintf(m->arch, sizeof m->arch, "%s", a0->valuestring);
    const es_arch *reg = find_arch(m->arch, 0);
    if (!reg) {
        char list[256];
        arch_list(list, sizeof list, 0);
        es_fail(e, "%s: key 'architectures': unknown architecture '%s' (supported: %s)", m->path, m->arch, list);
        goto out;
    }
    if (reg->ssm) {
        if (load_mamba_keys(m, &c, e)) goto out;
        m->ssm_bcdt_norm = reg->ssm == 2;
        if (read_mixer_eps(&c, m, e)) goto out;
        rc = build_graph(m, reg, e);
        goto out;
    }
    if (load_transformer_keys(m, &c, reg, e)) goto out;
    m->tied = 0;
    if (es_cfg_has(&c, "tie_word_embeddings") && es_cfg_bool(&c, "tie_word_embeddings", &m->tied, e))
        goto out;
    if (load_rope_scaling(m, &c, reg, e)) goto out;
    if (reg->build == build_gpt_oss && load_gpt_oss_keys(m, &c, e)) goto out;
    rc = build_graph(m, reg, e);
    if (rc == 0 && reg->build == build_gpt_oss) rc = load_layer_types(m, &c, e);
out:
    es_cfg_free(&c);
    if (rc) es_model_free(m);
    return rc;
}

void es_model_free(es_model *m)
{
    free(m->tensors);
    free(m->ops);
    free(m->by_role);
    m->tensors = NULL;
    m->ops = NULL;
    m->by_role = NULL;
    m->n_tensors = m->n_ops = 0;
}

int es_model_shard(const es_model *m, int64_t tp, es_model *out, es_err *e)
{
    if (tp < 1 || m->experts > 0 || m->ssm_state > 0 || m->qk_norm == 2 || m->heads % tp ||
        (m->kv_heads % tp && tp % m->kv_heads) || m->ffn % tp)
        return es_fail(e, "%s: a tensor-parallel split over %lld chips needs a dense attention model (no experts, "
                          "no SSM, no whole-projection q/k norm) whose heads (%lld) and ffn (%lld) divide by %lld, "
                          "and kv_heads (%lld) divides by it or it by them", m->name, (long long)tp, (long long)m->heads, (long long)m->ffn,
                       (long long)tp, (long long)m->kv_heads);
    if (es_model_slice(m, 0, m->layers - 1, 1, 1, out, e)) return -1; /* a deep copy */
    out->tp = tp;
    if (tp == 1) return 0;
    out->heads /= tp;
    out->kv_heads = m->kv_heads >= tp ? m->kv_heads / tp : 1; /* fewer kv heads than chips: each holds a copy of one */
    out->ffn /= tp;
    int64_t vshard = (m->vocab + tp - 1) / tp;
    for (int i = 0; i < out->n_tensors; i++) {
        es_tensor *t = &out->tensors[i];
        switch (t->role) {
        case ES_ROLE_Q: case ES_ROLE_GATE: case ES_ROLE_UP: t->rows /= tp; break;
        case ES_ROLE_K: case ES_ROLE_V: t->rows = t->rows / m->kv_heads * out->kv_heads; break;
        case ES_ROLE_O: case ES_ROLE_DOWN: t->cols /= tp; break;
        case ES_ROLE_EMBED: case ES_ROLE_LM_HEAD: t->rows = vshard; break;
        default: break;
        }
    }
    for (int i = 0; i < out->n_ops; i++) {
        es_op *op = &out->ops[i];
        if (op->kind == ES_OP_ROPE || op->kind == ES_OP_ATTN || op->kind == ES_OP_SILU_MUL) op->elems /= tp;
        else if (op->kind == ES_OP_SAMPLE) op->elems = vshard;
        else if (op->kind == ES_OP_RMSNORM && (!strcmp(op->name, "q_norm") || !strcmp(op->name, "k_norm")))
            op->elems /= tp; /* a per-head norm of the chip's heads */
    }
    return 0;
}

int64_t es_model_params(const es_model *m)
{
    int64_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) n += m->tensors[i].rows * m->tensors[i].cols;
    return n;
}

/* YaRN's frequencies ("NTK by parts", openai/gpt-oss gpt_oss/torch/model.py
 * _compute_concentration_and_inv_freq; HF _compute_yarn_parameters with truncate false): the ramp from
 * extrapolation (1/f) to interpolation (1/(factor f)) runs over the dimensions between low and high, where
 * d/2 ln(ctx / (beta 2 pi)) / ln(theta) is low for beta_fast and high for beta_slow. */
static double yarn_freq(const es_model *m, int64_t i, double f)
{
    double dh = (double)m->head_dim / 2.0, two_pi = 2.0 * 3.14159265358979323846;
    double lo = dh * log((double)m->rope_orig_ctx / (m->rope_beta_fast * two_pi)) / log(m->rope_theta);
    double hi = dh * log((double)m->rope_orig_ctx / (m->rope_beta_slow * two_pi)) / log(m->rope_theta);
    if (hi == lo) hi += 0.001; /* HF linear_ramp_factor's guard */
    double ramp = ((double)i - lo) / (hi - lo), mask = 1.0 - (ramp < 0 ? 0 : ramp > 1 ? 1 : ramp);
    return f / m->rope_factor * (1.0 - mask) + f * mask;
}

double es_model_rope_mscale(const es_model *m)
{
    return m->rope_yarn && m->rope_factor > 1.0 ? 0.1 * log(m->rope_factor) + 1.0 : 1.0;
}

const es_tensor *es_model_expert_bias(const es_model *m, int64_t layer, int64_t e, int down)
{
    const es_tensor *g0 = es_model_expert(m, layer, ES_ROLE_GATE, 0);
    if (!g0 || e < 0 || e >= m->experts) return NULL;
    const es_tensor *t = g0 + 3 * m->experts + 2 * e + (down ? 1 : 0); /* build_gpt_oss: after every expert */
    if (t >= m->tensors + m->n_tensors || t->role != ES_ROLE_BIAS || t->expert != e || t->layer != g0->layer)
        return NULL;
    return t;
}

void es_model_rope_freqs(const es_model *m, double *out)
{
    int64_t half = m->head_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        double f = pow(m->rope_theta, -2.0 * (double)i / (double)m->head_dim);
        if (m->rope_yarn && m->rope_factor > 1.0) f = yarn_freq(m, i, f);
        if (m->rope_llama3) {
            double wl = 2.0 * 3.14159265358979323846 / f;
            double lo_wl = (double)m->rope_orig_ctx / m->rope_low;
            double hi_wl = (double)m->rope_orig_ctx / m->rope_high;
            if (wl > lo_wl) {
                f = f / m->rope_factor;
            } else if (wl >= hi_wl) {
                double s = ((double)m->rope_orig_ctx / wl - m->rope_low) / (m->rope_high - m->rope_low);
                f = (1.0 - s) * f / m->rope_factor + s * f;
            }
        }
        out[i] = f;
    }
}
