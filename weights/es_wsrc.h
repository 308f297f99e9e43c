/* es_wsrc: real checkpoint weights for a model's tensors, from
 *   - safetensors: one file, or shards named by model.safetensors.index.json
 *     (BF16, F16, F32), or
 *   - GGUF v3: F32, F16, BF16, Q8_0, Q4_0, Q3_K, Q4_K, Q5_K, Q6_K and MXFP4,
 *     mixed freely as in real Q3_K_M files.
 * Every size, offset and count in a file is checked before use.
 *
 * Hugging Face names (model.layers.N.self_attn.q_proj.weight) are the
 * graph's own; GGUF names (blk.N.attn_q.weight) are mapped onto them. Two
 * layout differences are named settings, never guessed:
 *   rope_rows: how Q and K rows are ordered in the file. ES_ROPE_HALVES is
 *     Hugging Face's order (rotation pairs (i, i + head_dim/2)); ES_ROPE_PAIRS
 *     is Meta's and GGUF's (pairs (2i, 2i+1)). Rows are returned in the
 *     graph's order, HALVES. Defaults: safetensors HALVES, GGUF PAIRS.
 *   nibbles: the order of 4-bit elements in a byte for Q4_0 and MXFP4.
 *     Default: ES_NIB_SPLIT (GGUF: element j low, j + 16 high). */
#ifndef ES_WSRC_H
#define ES_WSRC_H
#include <stdint.h>
#include "es_err.h"
#include "es_model.h"
#include "es_quant.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef enum es_rope_rows { ES_ROPE_HALVES, ES_ROPE_PAIRS } es_rope_rows;

typedef struct es_wsrc_opts {
    int rope_rows;  /* es_rope_rows, or -1 for the container's default */
    int nibbles;    /* es_nibble_order, or -1 for ES_NIB_SPLIT */
} es_wsrc_opts;

typedef struct es_wtensor {
    char name[128];       /* name in the file */
    int file;             /* index into es_wsrc.fds */
    int64_t offset;       /* absolute byte offset of the data */
    int64_t nbytes;       /* bytes of data */
    es_qfmt fmt;          /* storage format */
    int ndims;
    int64_t dims[4];      /* outermost first (Hugging Face order) */
} es_wtensor;

typedef struct es_wsrc {
    char path[512];       /* what was opened */
    int gguf;             /* 1: GGUF, 0: safetensors */
    int n_files;
    int *fds;             /* (n_files) open descriptors */
    char (*files)[512];   /* (n_files) their paths */
    es_wtensor *t;        /* (n) tensors found */
    int n;
    es_rope_rows rope_rows;
    es_nibble_order nibbles;
    char (*alias)[2][128]; /* (n_alias) safetensors __metadata__ entries {name, kept name}: a tensor saved
                           * once under the kept name (safetensors' save_model drops shared copies so) */
    int n_alias;
    const es_model *m;    /* bound model, after es_wsrc_bind */
    int *map;             /* (m->n_tensors) file tensor of each graph tensor */
} es_wsrc;

/* Open a .safetensors file, a model.safetensors.index.json, a .gguf file,
 * or a folder holding one of them. */
int es_wsrc_open(es_wsrc *s, const char *path, const es_wsrc_opts *o, es_err *e);
void es_wsrc_close(es_wsrc *s);
/* Find every graph tensor in the file and check its shape against the model.
 * A tensor the file lacks is read from the tensor a __metadata__ alias names
 * (e.g. "model.embed_tokens.weight": "lm_head.weight"), and a tied model's
 * embedding table, lacking, from lm_head.weight: the same table. */
int es_wsrc_bind(es_wsrc *s, const es_model *m, es_err *e);
/* Row `row` of graph tensor i, as floats in the graph's layout. Thread-safe.
 * A NaN or infinite weight is an error naming the file, the tensor and the
 * element's index in the file's row-major order (row x columns + column). */
int es_wsrc_read_row(const es_wsrc *s, int i, int64_t row, float *out, es_err *e);
/* The graph's name for a GGUF tensor name, or NULL if it is not one. */
const char *es_gguf_to_hf(const char *gguf, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
