/* es_func: the weights of functional mode. Float weight rows from a weights
 * file (safetensors or GGUF) or synthetic weights, for the FP32 reference
 * (es_ref) and for quantizing by a recipe; and a datapath (es_dp) for a chip
 * and a model with its weights from a ROM image, a weights file or synthetic
 * weights. Errors name the file and what was expected. */
#ifndef ES_FUNC_H
#define ES_FUNC_H
#include <stdint.h>
#include "es_chip.h"
#include "es_dp.h"
#include "es_err.h"
#include "es_model.h"
#ifdef __cplusplus
extern "C" {
#endif

/* Float weight rows for the reference or for quantizing in memory: from a
 * weights file (safetensors or GGUF) or synthetic (seed >= 0). */
typedef struct es_func_rows {
    void *ws;              /* es_wsrc when reading a file */
    uint64_t seed;
    const es_model *m;
} es_func_rows;
/* Rows of m from weights (a file; rope_rows: es_rope_rows, or -1 for its default), else synthetic
 * rows from seed synthetic. */
int es_func_rows_open(es_func_rows *r, const es_model *m, const char *weights, int64_t synthetic, int rope_rows,
                      es_err *e);
int es_func_rows_read(void *arg, int tensor, int64_t row, float *out, es_err *e); /* arg: es_func_rows */
void es_func_rows_close(es_func_rows *r);

/* Where a datapath's weights come from: exactly one of rom, weights and synthetic. */
typedef struct es_func_weights {
    const char *rom;       /* a ROM image built for this model and chip */
    const char *weights;   /* a safetensors or GGUF file, quantized in memory by recipe */
    int64_t synthetic;     /* >= 0: synthetic weights from this seed, quantized by recipe */
    const char *recipe;    /* recipe name or path (default hc1-mix) */
    int rope_rows;         /* es_rope_rows of the weights file, or -1 for its default */
} es_func_weights;

/* A datapath for c and m (threads as es_dp_open) with its weights from w: a ROM image built for m
 * (refused when built for another model), or a weights file or synthetic weights quantized by the
 * recipe. No source or more than one is an error. */
int es_func_load(es_dp **dp, const es_chip *c, const es_model *m, const es_func_weights *w, int threads,
                 es_err *e);

#ifdef __cplusplus
}
#endif
#endif
