/* es_ref: the FP32 reference forward pass of every architecture the model registry builds
 * (dense Llama, mixtures of experts, Mamba state-space models), the
 * oracle of functional mode. Written to be read top to bottom, like
 * llama2.c's run.c: every weight is held as float, one token goes through
 * at a time (RMSNorm, Q/K/V, RoPE, grouped-query attention over a KV cache,
 * output projection, SwiGLU or the routed experts' SwiGLU, residuals, final norm, LM head;
 * for Mamba the conv1d and selective scan over a recurrent state), sums are
 * accumulated in double. It shares no code with the simulator's datapath;
 * it is itself checked against llama.cpp (tests/data/stories260K-fixtures.json).
 *
 * Weights arrive in the graph's layout (es_wsrc, es_synth): Hugging Face
 * [out, in] rows, with Q and K rows in the order that rotates pairs
 * (i, i + head_dim/2) ("halves"). A source that delivers Meta/GGUF rows
 * unpermuted rotates adjacent pairs (2i, 2i+1) instead: ES_REF_ROPE_PAIRS. */
#ifndef ES_REF_H
#define ES_REF_H
#include <stdint.h>
#include "es_err.h"
#include "es_model.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef enum es_ref_rope { ES_REF_ROPE_HALVES, ES_REF_ROPE_PAIRS } es_ref_rope;

/* Row `row` of graph tensor `tensor` into out[0..cols) (es_row_fn's form). */
typedef int (*es_ref_rows)(void *arg, int tensor, int64_t row, float *out, es_err *e);

typedef struct es_ref es_ref;

/* Hold every weight of m as float (refused past 4 GiB) and a KV cache of
 * ctx positions per layer. */
int es_ref_load(es_ref **r, const es_model *m, es_ref_rows rows, void *arg, int64_t ctx,
                es_ref_rope rope, es_err *e);
void es_ref_free(es_ref *r);
/* A LoRA adapter: after each projection of graph tensor i with a[i] set, out += scale x b[i] (a[i] x), A (rank x
 * cols) and B (rows x rank) row-major FP32, summed in double (arrays indexed by the model's tensors; they must outlive
 * r). NULL a: none. */
int es_ref_set_lora(es_ref *r, const float *const *a, const float *const *b, int rank, double scale, es_err *e);
/* Run token at position pos, attending to positions 0..pos of the cache
 * (so 0..pos-1 must have run before; a new sequence starts again at 0);
 * writes the vocab logits that predict position pos + 1. */
int es_ref_forward(es_ref *r, int32_t token, int64_t pos, float *logits, es_err *e);

/* Sampling: temperature <= 0 is greedy (the first largest logit). Else the
 * logits are divided by the temperature, cut to the top_k largest (0: all),
 * then to the smallest set whose probability reaches top_p (1: all), and one
 * token is drawn with *rng (splitmix64, advanced). work: (n) scratch slots.
 * The same seed gives the same tokens; llama.cpp's own random stream is
 * not reproduced, so only greedy output is compared with it. */
typedef struct es_sampler {
    double temperature;  /* <= 0: greedy */
    int64_t top_k;       /* 0: no cut */
    double top_p;        /* 1: no cut */
} es_sampler;
typedef struct es_sample_slot { float p; int32_t id; } es_sample_slot;
int32_t es_sample(const es_sampler *s, const float *logits, int64_t n, uint64_t *rng, es_sample_slot *work);
/* Fails naming the first NaN or infinite logit of (n) logits (pos >= 0: the position, in the message):
 * finite weights can still overflow the float range, and no token is drawn from such logits. */
int es_logits_finite(const float *logits, int64_t n, int64_t pos, es_err *e);

#ifdef __cplusplus
}
#endif
#endif
