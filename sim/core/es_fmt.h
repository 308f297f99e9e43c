/* es_fmt: the weight-format registry: every format's name, block, bytes
 * and bits, the one source of truth that timing, area, energy (es_chip's
 * weights.*), ROM images and the references (weights/es_quant.h, which
 * quantizes and decodes them) all read. Layouts are in es_quant.h. Also the
 * byte-size text the reports share (es_fmt_bytes). */
#ifndef ES_FMT_H
#define ES_FMT_H
#include <stddef.h>
#include <stdint.h>
#include "es_err.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef enum es_qtype {
    ES_Q_F32, ES_Q_F16, ES_Q_BF16, ES_Q_Q8_0, ES_Q_Q4_0, ES_Q_Q3_K, ES_Q_Q6_K,
    ES_Q_MXFP4, ES_Q_NVFP4, ES_Q_INT3, ES_Q_INT6, ES_Q_Q4_K, ES_Q_Q5_K, ES_Q_FP8, ES_Q_COUNT
} es_qtype;

typedef enum es_nibble_order { ES_NIB_SPLIT, ES_NIB_INTERLEAVED } es_nibble_order;

typedef struct es_qfmt {
    es_qtype type;
    int group;                 /* int3 / int6: 32, 64 or 128 elements per scale */
    float tensor_scale;        /* nvfp4, fp8: the FP32 per-tensor scale */
    es_nibble_order nibbles;   /* mxfp4 / nvfp4 / q4_0 nibble order */
} es_qfmt;

const char *es_qtype_name(es_qtype t);   /* "f32", "q3_k", "mxfp4", ... */
int es_qtype_from_name(const char *s);   /* -1 when unknown */
/* Check the parameters (group size); fills defaults for formats without one. */
int es_qfmt_check(const es_qfmt *f, es_err *e);
int64_t es_q_block_elems(const es_qfmt *f);
int64_t es_q_block_bytes(const es_qfmt *f);
/* Bits of one element before scales: 3 for int3 and q3_k, 4 for the FP4 formats, ... */
int es_qtype_elem_bits(es_qtype t);
/* Bits per weight including block scales (nvfp4, fp8: without their one tensor scale). */
double es_q_bits_per_weight(const es_qfmt *f);
/* n rounded up to whole blocks: the row length a ROM stores, zero-padded. */
int64_t es_q_padded(const es_qfmt *f, int64_t n);
/* Bytes of n elements; -1 (with e) when n is not a whole number of blocks. */
int64_t es_q_row_bytes(const es_qfmt *f, int64_t n, es_err *e);

/* Elements per scale (a sub-block): 16 for q3_k, q6_k and nvfp4; 32 for q4_k,
 * q5_k, q8_0, q4_0 and mxfp4; the group for int3/int6; 0 for the float formats (f32, f16, bf16,
 * fp8: their lanes take values, not integer codes). */
int64_t es_q_sub_elems(const es_qfmt *f);

/* A byte count in the unit that fits it, decimal as disk sizes are: "812 bytes", "33.5 KB",
 * "4.2 MB", "9.137 GB". Writes into buf (32 bytes are enough) and returns it. */
const char *es_fmt_bytes(char *buf, size_t n, double bytes);

#ifdef __cplusplus
}
#endif
#endif
