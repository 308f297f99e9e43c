/* es_model: a model's shape from a Hugging Face config.json or a GGUF
 * file's metadata, its weight tensors and the typed op graph one token
 * walks through. An architecture registry (es_model.c) maps each name a
 * config or a GGUF file may give to the builder of its graph; names it does
 * not hold are rejected, listing those it does: dense Llama, mixtures of experts (Mixtral, OLMoE,
 * Qwen3-MoE, gpt-oss) and Mamba state-space models (Mamba, Falcon-Mamba).
 *
 * The graph is typed: every op names the resource class that executes it
 * (the ROM and its lanes, the vector unit, the attention engine, ...) and
 * the state it keeps per sequence (a KV entry per position, ...). Callers
 * find tensors by (layer, role) with es_model_tensor, never by position in
 * the tensor list. */
#ifndef ES_MODEL_H
#define ES_MODEL_H
#include <stddef.h>
#include <stdint.h>
#include "es_err.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef enum es_role {
    ES_ROLE_EMBED, ES_ROLE_ATTN_NORM, ES_ROLE_Q, ES_ROLE_K, ES_ROLE_V, ES_ROLE_O,
    ES_ROLE_FFN_NORM, ES_ROLE_GATE, ES_ROLE_UP, ES_ROLE_DOWN, ES_ROLE_OUT_NORM,
    ES_ROLE_LM_HEAD, ES_ROLE_ROUTER, ES_ROLE_Q_NORM, ES_ROLE_K_NORM,
    /* SSM (Mamba): in_proj, conv1d, x_proj, dt_proj, A, out_proj, and the small vectors
     * (conv1d bias, dt bias, D) */
    ES_ROLE_SSM_IN, ES_ROLE_SSM_CONV, ES_ROLE_SSM_X, ES_ROLE_SSM_DT, ES_ROLE_SSM_A, ES_ROLE_SSM_OUT,
    ES_ROLE_SSM_VEC,
    /* gpt-oss: every bias vector (q, k, v, o, the router's, each expert's gate_up and down), told apart by name
     * (es_model_tensor finds a layer's q bias); and the attention sinks, one learned logit per head */
    ES_ROLE_BIAS, ES_ROLE_SINKS, ES_ROLE_COUNT
} es_role;

/* "embed", "attn_norm", "attn_q", ... : the names recipes and chips use. */
const char *es_role_name(es_role r);
int es_role_from_name(const char *s); /* -1 when unknown */
/* Every role's name, "embed, attn_norm, ... or ssm_vec", for error messages. */
const char *es_role_names(void);

typedef struct es_tensor {
    es_role role;   /* what the tensor does */
    int layer;      /* 0..layers-1, or -1 outside the blocks */
    int64_t rows;   /* output features (HF [out, in] order); 1 for norms */
    int64_t cols;   /* input features */
    char name[96];  /* Hugging Face name, e.g. model.layers.0.self_attn.q_proj.weight */
    int lm_head;    /* 1 for a tied embedding table that also serves as the LM head */
    int expert;        /* routed expert (MoE gate, up, down), or -1 */
} es_tensor;

typedef enum es_op_kind {
    ES_OP_EMBED, ES_OP_RMSNORM, ES_OP_MATVEC, ES_OP_ROPE, ES_OP_ATTN, ES_OP_ADD,
    ES_OP_SILU_MUL, ES_OP_SAMPLE,
    ES_OP_ROUTE,   /* MoE: top-k of the router's expert scores (the router unit) */
    ES_OP_EXPERTS, /* MoE: each token's top-k experts: gate, up, SiLU x up, down (tensor: expert 0's gate) */
    ES_OP_CONV,    /* SSM: causal depthwise conv1d over the last conv_kernel inputs */
    ES_OP_SCAN     /* SSM: the selective scan over the sequence's recurrent state */
} es_op_kind;

/* The resource class that executes an op. */
typedef enum es_res {
    ES_RES_EMBED_ROM,  /* a row lookup in the embedding ROM */
    ES_RES_LANES,      /* ROM banks and their multiply-select-add lanes */
    ES_RES_VECTOR,     /* the vector unit: norms, RoPE, element-wise ops */
    ES_RES_ATTN,       /* the attention engine and its KV SRAM ports */
    ES_RES_SCAN,       /* the selective-scan engine (SSM): tile.scan.* */
    ES_RES_ROUTER,     /* the expert router (MoE): top-k of the router's scores */
    ES_RES_SAMPLER     /* argmax / top-k over the vocabulary */
} es_res;

/* The state an op keeps per sequence. */
typedef enum es_state {
    ES_STATE_NONE,
    ES_STATE_KV,        /* K and V of every position (attention) */
    ES_STATE_RECURRENT, /* a fixed state per sequence (SSM: scan state and conv window) */
    ES_STATE_EXPERTS    /* routed experts (MoE): the experts each token was routed to */
} es_state;

const char *es_res_name(es_res r);   /* "lanes", "vector", ... */

/* The activation buffers of a token's pass through the graph, as the functional datapath (es_dp)
 * holds them; each op names the ones it reads and writes (widths per token in parentheses). */
typedef enum es_buf {
    ES_BUF_NONE,
    ES_BUF_X,          /* the residual stream (hidden) */
    ES_BUF_XB,         /* the residual normed: a block's input (hidden) */
    ES_BUF_Q,          /* queries (heads x head_dim) */
    ES_BUF_K, ES_BUF_V, /* the token's key and value (kv_heads x head_dim) */
    ES_BUF_ATT,        /* attention's output (heads x head_dim) */
    ES_BUF_GATE, ES_BUF_UP, /* the feed-forward's gate and up projections (ffn) */
    ES_BUF_OUT,        /* what a block adds to the residual (hidden) */
    ES_BUF_SCORE,      /* MoE: the router's score per expert (experts) */
    ES_BUF_ROUTE,      /* MoE: the weights of the token's top_k experts, the largest score first (top_k) */
    ES_BUF_EXPERT_OUT, /* MoE: those experts' outputs, in the same order (top_k x hidden) */
    ES_BUF_SSM_XZ,     /* SSM: in_proj's output, x then z (2 x inner) */
    ES_BUF_SSM_X, ES_BUF_SSM_Z, /* SSM: its halves (inner) */
    ES_BUF_SSM_U,      /* SSM: x after the conv1d and SiLU (inner) */
    ES_BUF_SSM_DBC,    /* SSM: x_proj's output: dt, then B, then C (dt_rank + 2 x state); with
                        * ssm_bcdt_norm each part normalized (no gain) as it is written */
    ES_BUF_SSM_DTR,    /* SSM: its dt part (dt_rank) */
    ES_BUF_SSM_DT,     /* SSM: dt_proj's output, then its softplus (inner) */
    ES_BUF_SSM_Y,      /* SSM: the scan's output, then gated (inner) */
    ES_BUF_LOGITS,     /* the LM head's output (vocab) */
    ES_BUF_COUNT
} es_buf;

const char *es_buf_name(es_buf b);  /* "x", "xb", "q", ... */

/* What an element-wise op (SILU_MUL) computes: SiLU(in[0]) x in[1], or softplus(in[0] + vec). */
typedef enum es_elem_fn { ES_FN_SILU_MUL, ES_FN_SOFTPLUS } es_elem_fn;

/* An op of the graph. Timing reads the fields up to name; the functional datapath (es_dp) reads
 * kind, layer, tensor and the data flow (in, out, vec, fn), which timing does not. Per kind:
 *   EMBED     out = rows of tensor for the tokens
 *   RMSNORM   out = RMSNorm(in[0]) x tensor's gains, over each group of tensor->cols elements
 *             (one group, or one per head for a per-head norm)
 *   MATVEC    out = tensor x in[0] (the lanes)
 *   ROPE      rotates in[0] (queries) and in[1] (keys) in place by the token's position
 *   ATTN      keeps in[1] (K) and in[2] (V) in the KV state, out = attention of in[0] (Q) over it;
 *             with a tensor (gpt-oss's sinks) each head's softmax row also holds that head's learned logit,
 *             dropped after the softmax; window > 0: only the last `window` positions are attended
 *   ADD       out += in[0]; with in[1] (the route): out = in[0]'s top_k rows weighted by it, summed;
 *             with a tensor and no input (a bias, gpt-oss): out += tensor
 *   SILU_MUL  out = fn of in[0] (and in[1], or vec)
 *   SAMPLE    the next token from in[0]
 *   ROUTE     out = the softmax weights of the top_k experts of in[0] (which experts: es_dp_routes)
 *   EXPERTS   out = each chosen expert's down(SiLU(gate in[0]) x up in[0]), in[1] the route
 *   CONV      out = SiLU(causal depthwise conv1d of in[0] by tensor, plus vec), the window kept
 *   SCAN      out = the selective scan of in[0] (u) by in[1] (dt) and in[2]'s B and C, with
 *             tensor A and vec D, the state kept (gating is the next op) */
typedef struct es_op {
    es_op_kind kind;  /* what it computes */
    es_res res;       /* which resource executes it */
    es_state state;   /* what it keeps per sequence */
    int layer;        /* block index, -1 for embedding / head */
    int tensor;       /* index into es_model.tensors, -1 when none */
    int64_t elems;    /* elements per token for vector ops (RoPE: q+k elements) */
    char name[32];    /* e.g. "attn_q", "rope", "silu_mul" */
    es_buf in[3];     /* the buffers it reads, ES_BUF_NONE after the last */
    es_buf out;       /* the buffer it writes (ES_BUF_NONE: ROPE in place, SAMPLE a token) */
    int vec;          /* a vector it also reads (SSM: conv1d bias, dt bias, D): tensor index, -1 none */
    es_elem_fn fn;    /* SILU_MUL: what it computes */
    int64_t window;   /* ATTN: a sliding-window layer's window in positions (gpt-oss: 128), 0 for full attention.
                       * Functional mode, the FP32 reference and attention's time, KV reads and energy (es_analytic,
                       * which the tile books) attend over the window only; the KV capacity does not yet:
                       * es_chip_kv_positions, kv_slots and es_map's fit count every layer as keeping every
                       * position, an over-count of the sliding layers' KV past `window` positions */
} es_op;

typedef struct es_model {
    char path[512];        /* config.json or .gguf file it came from */
    int gguf;              /* 1: from a GGUF file, which also holds the weights */
    char name[64];         /* folder name, e.g. llama-3.1-8b */
    char arch[64];         /* architectures[0] */
    int64_t hidden;        /* hidden_size */
    int64_t layers;        /* num_hidden_layers */
    int64_t heads;         /* num_attention_heads */
    int64_t kv_heads;      /* num_key_value_heads */
    int64_t head_dim;      /* head_dim, or hidden / heads */
    int64_t ffn;           /* intermediate_size */
    int64_t vocab;         /* vocab_size */
    int64_t max_pos;       /* max_position_embeddings */
    int tied;              /* tie_word_embeddings */
    double eps;            /* rms_norm_eps */
    double rope_theta;     /* rope_theta */
    int rope_llama3;       /* rope_scaling.rope_type == "llama3" */
    int64_t experts;       /* MoE: routed experts per layer (0: dense) */
    int64_t top_k;         /* MoE: experts per token */
    int64_t expert_ffn;    /* MoE: each expert's intermediate size */
    int qk_norm;           /* RMSNorm on q and k: 0 none, 1 per head (Qwen3), 2 whole projection (OLMoE) */
    int norm_topk;         /* MoE: the top-k expert weights renormalized to sum 1 (Mixtral, norm_topk_prob) */
    int64_t ssm_state;     /* SSM: state_size N per channel (0: not an SSM) */
    int64_t ssm_inner;     /* SSM: intermediate_size I (channels) */
    int64_t ssm_conv;      /* SSM: conv_kernel K */
    int64_t ssm_dt_rank;   /* SSM: time_step_rank R */
    int ssm_bcdt_norm;     /* SSM: RMSNorm (no gain) on B, C and dt after x_proj (Falcon-Mamba) */
    double ssm_norm_eps;   /* SSM: that norm's epsilon (mixer_rms_eps) */
    double rope_factor, rope_low, rope_high; /* llama3 scaling factors (rope_factor: YaRN's too) */
    int rope_yarn;         /* rope_scaling.rope_type == "yarn" (gpt-oss): es_model_rope_freqs and
                            * es_model_rope_mscale */
    double rope_beta_fast, rope_beta_slow; /* YaRN's beta_fast, beta_slow */
    int attn_bias;         /* gpt-oss attention_bias: biases on q, k, v and o (and on the router and experts) */
    int attn_sinks;        /* gpt-oss: a learned sink logit per head in each attention softmax */
    int router_bias;       /* gpt-oss: a bias on the router's scores, and one on each expert's gate_up and down */
    int64_t sliding_window;/* gpt-oss sliding_window: the window of its "sliding_attention" layers (0: none) */
    double swiglu_limit;   /* gpt-oss swiglu_limit: its experts' clamped SwiGLU (0: plain SiLU x up): with g and u
                            * the gate and up (each plus its bias), g' = min(g, limit), u' = clamp(u, -limit,
                            * limit), out = g' sigmoid(swiglu_alpha g') (u' + 1) */
    double swiglu_alpha;   /* gpt-oss swiglu_alpha (1.702) */
    int64_t rope_orig_ctx; /* original_max_position_embeddings */
    es_tensor *tensors;    /* (n_tensors) unique weight tensors */
    int n_tensors;
    es_op *ops;            /* (n_ops) graph in execution order */
    int n_ops;
    int *by_role;          /* (layers + 1, ES_ROLE_COUNT) tensor index, -1 none; row `layers`: outside blocks */
    /* A slice (es_model_slice) holds some of a model's layers, as one chip of a system does; a loaded model is
     * the whole: layer_base 0, has_embed and has_head 1. */
    int64_t layer_base;    /* the model's layer that is this one's layer 0 */
    int64_t full_layers;   /* the whole model's layers */
    int has_embed;         /* holds the embedding table and op (the first chip of a system) */
    int has_head;          /* holds the final norm, the LM head and the sampler (the last chip) */
    int64_t tp;            /* a shard (es_model_shard): one of tp chips splitting each layer's matrices; 0 or 1: whole */
    /* A chip of an expert-parallel stage (es_model_expert_slice) holds some of each layer's experts, renumbered
     * from 0: `experts` of them, the model's experts expert_base.. ; a whole model: expert_base 0, experts_all 0. */
    int64_t expert_base;   /* the model's expert that is this one's expert 0 */
    int64_t experts_all;   /* the whole model's routed experts (0: experts); routing picks among these */
} es_model;

/* Load from a config.json path, a folder holding one, a name under
 * models/llm/, or a .gguf file (general.architecture "llama"). */
int es_model_load(es_model *m, const char *spec, es_err *e);
void es_model_free(es_model *m);
/* The part of m a chip of a system holds: layers first..last (renumbered from 0; layer_base = first), the
 * embedding table and op when embed, the final norm, LM head and sampler when head. A tied table goes with
 * both: on a chip without the head it is an ordinary embedding table (tied 0), on one without the embedding
 * op it is the LM head. Tensors and ops keep the model's order. 0 and out filled (free with es_model_free),
 * or -1 with e (out holds nothing to free). */
int es_model_slice(const es_model *m, int64_t first, int64_t last, int embed, int head, es_model *out, es_err *e);
/* One chip's shard of m when a stage of tp chips splits every layer's matrices (Megatron-style tensor
 * parallelism): heads, kv_heads and ffn divided by tp; q, k, v, gate and up keep 1/tp of their rows (output
 * features), o and down 1/tp of their columns (input features), so each chip's o and down give a partial sum of
 * the hidden vector, which an all-reduce completes; the embedding table and the LM head keep ceil(vocab / tp)
 * of their rows (vocabulary-parallel: the lookup is completed by an all-reduce, the sampler's choice by an
 * all-reduce of each chip's best score and id); norms whole on every chip. The RoPE, attention, SiLU and sampler
 * ops' widths follow. Dense attention models only (no experts, no SSM, no whole-projection q/k norm), with
 * heads and ffn divisible by tp, and kv_heads divisible by tp or dividing it (fewer kv heads than chips: each chip
 * holds a copy of the one its query heads use, as vLLM replicates them; kv_heads 1 on the shard). 0 and out filled (free with es_model_free), or -1 with e. */
int es_model_shard(const es_model *m, int64_t tp, es_model *out, es_err *e);
/* A chip's part of an expert-parallel stage: m (a slice) with only experts first..last of every layer (their
 * gate, up, down and, on gpt-oss, their biases), renumbered from 0 (expert_base += first); the router keeps
 * every expert's row (it scores them all). 0 and out filled (free with es_model_free), or -1 with e. */
int es_model_expert_slice(const es_model *m, int64_t first, int64_t last, es_model *out, es_err *e);
/* The whole model's routed experts (experts_all, or experts on a model not split by experts). */
int64_t es_model_experts_all(const es_model *m);
int64_t es_model_params(const es_model *m);
/* The tensor of a role in a layer (-1: outside the blocks: embed, out_norm,
 * lm_head; a tied model's lm_head is its embedding), or NULL. */
const es_tensor *es_model_tensor(const es_model *m, int64_t layer, es_role role);
/* Routed expert e's tensor of a role (gate, up, down) in a layer, or NULL. */
const es_tensor *es_model_expert(const es_model *m, int64_t layer, es_role role, int64_t e);
/* Parameters a token uses: every tensor but the experts it is not routed to (the embedding table counted
 * whole, as Mixtral's and OLMoE's published active counts do; OpenAI's gpt-oss count leaves it out). */
int64_t es_model_active_params(const es_model *m);
/* The first op of kind k in layer (-1: outside the blocks), or NULL. */
const es_op *es_model_op(const es_model *m, int64_t layer, es_op_kind k);
/* Layers whose attention keeps a KV entry per position. */
int64_t es_model_kv_layers(const es_model *m);
/* The head_dim/2 RoPE frequencies after llama3 or YaRN scaling, into out[]. */
void es_model_rope_freqs(const es_model *m, double *out);
/* What RoPE's cos and sin are multiplied by: YaRN's concentration 0.1 ln(factor) + 1 (gpt-oss: 1.3466), else 1. */
double es_model_rope_mscale(const es_model *m);
/* gpt-oss: routed expert e's bias of its gate_up (down 0: 2 x expert_ffn, gate and up interleaved, gate first)
 * or of its down (down 1: hidden) in a layer, or NULL. */
const es_tensor *es_model_expert_bias(const es_model *m, int64_t layer, int64_t e, int down);
/* Folder holding models/ (ETCHSIM_MODELS env, else the build's source tree). */
const char *es_models_dir(void);
/* Resolve "name" or a path into an existing file: dir/sub/name/leaf or dir/sub/name.json. */
int es_resolve(const char *spec, const char *sub, const char *leaf, char *out, size_t n,
               es_err *e);

#ifdef __cplusplus
}
#endif
#endif
