/* es_lora: a LoRA adapter for a model's projections, from
 *   - PEFT: adapter_model.safetensors (tensors base_model.model.<graph name less .weight>.lora_A.weight, [r, in],
 *     and .lora_B.weight, [out, r]), with r and lora_alpha from adapter_config.json beside it, or
 *   - a llama.cpp GGUF LoRA (general.type "adapter", adapter.type "lora", adapter.lora.alpha; tensors
 *     <GGUF tensor>.lora_a, ne [in, r], and .lora_b, ne [r, out]; a GGUF's Q and K rows are in Meta's order and
 *     B's rows are returned in the graph's, as es_wsrc returns the weights').
 * models/chips/baselines-sources.md s10 cites both layouts. The output of an adapted projection W is
 * W x + (alpha / r) B (A x); alpha 0 in a GGUF means a scale of 1 (llama.cpp's get_scale).
 * Every tensor's shape is checked against the model: one error naming the tensor, the shape expected and found. */
#ifndef ES_LORA_H
#define ES_LORA_H
#include <stdint.h>
#include "es_err.h"
#include "es_model.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct es_lora {
    char path[512];
    int rank;            /* r, the same for every tensor */
    double alpha;        /* the scale is alpha / rank */
    unsigned roles;      /* 1u << es_role of each role with an adapted tensor */
    int n_tensors;       /* the model's */
    float **a, **b;      /* (n_tensors): A (rank x cols) and B (rows x rank) of each adapted tensor, FP32, graph layout;
                            NULL where not adapted */
    unsigned char *adapted; /* (n_tensors) 1 where a and b are set */
    int n_adapted;
} es_lora;

/* path: the .safetensors or .gguf file, or PEFT's folder holding adapter_model.safetensors. */
int es_lora_load(es_lora *l, const char *path, const es_model *m, es_err *e);
void es_lora_free(es_lora *l);

#ifdef __cplusplus
}
#endif
#endif
