/* es_quant: the scalar reference of every weight format: one quantizer and
 * one decoder per format, the single source of truth that SystemC units,
 * the RTL and the loaders are checked against. Rows are quantized
 * independently; a row's length must be a multiple of the format's block.
 *
 * Layouts (little-endian; locked by static_assert in es_quant.c):
 *   f32, f16, bf16   one element per 4 / 2 / 2 bytes
 *   q8_0   34 B / 32:  fp16 d, int8 q[32];                 y = d q
 *   q4_0   18 B / 32:  fp16 d, 16 B nibbles (byte j: elem j low, j+16 high); y = d (q - 8)
 *   q3_k  110 B / 256: hmask[32], qs[64], scales[12], fp16 d  (GGUF type 11)
 *   q6_k  210 B / 256: ql[128], qh[64], int8 scales[16], fp16 d (GGUF type 14)
 *   q4_k  144 B / 256: fp16 d, fp16 dmin, scales[12] (6-bit scale and min per 32),
 *                      qs[128]; y = d sc q - dmin m                (GGUF type 12)
 *   q5_k  176 B / 256: as q4_k with qh[32] (fifth bit) before qs  (GGUF type 13)
 *   mxfp4  17 B / 32:  E8M0 e, 16 B E2M1 nibbles;          y = e2m1 x 2^(e-127)
 *   nvfp4   9 B / 16:  E4M3 s, 8 B E2M1 nibbles;           y = e2m1 x s x tensor_scale
 *   fp8     1 B / 1:   one OCP E4M3 element (bias 7, max 448, NaN S.1111.111, no Inf) and one FP32
 *          scale per tensor (the image's index holds it);     y = e4m3 x tensor_scale
 *          Quantized q = e4m3(x / tensor_scale), tensor_scale = amax / 448, rounding to nearest even and
 *          saturating at +-448: the per-tensor FP8 weights of vLLM (quantization "fp8"; scale amax / 448 and
 *          x / scale clamped to +-448 in csrc/quantization/fp8/common.cuh, segmented_max_reduction and
 *          scaled_fp8_conversion) and TensorRT-LLM (one weights_scaling_factor per linear weight).
 *   int3, int6: per group of g (32, 64 or 128): fp16 d, then g codes of 3 / 6 bits
 *          packed LSB first; code u stores q = u - 4 (int3) or u - 32 (int6); y = d q
 * FP4 nibbles: ES_NIB_SPLIT puts element j in the low and j+half in the high
 * nibble of byte j (GGUF); ES_NIB_INTERLEAVED puts element 2j low, 2j+1 high. */
#ifndef ES_QUANT_H
#define ES_QUANT_H
#include <stdint.h>
#include "es_err.h"
#ifdef __cplusplus
extern "C" {
#endif

#include "es_fmt.h"

int es_quantize_row(const es_qfmt *f, const float *x, int64_t n, void *dst, es_err *e);
/* The lane view of a quantized row: every element is scale x code - min of
 * its sub-block, with an integer code (int3 -4..3, int6 -32..31, q4_0 -8..7,
 * q8_0 -128..127, q3_k -4..3, q6_k -32..31, q4_k 0..15 and q5_k 0..31 with a
 * min, FP4 twice the E2M1 value, -12..12, with half the block scale). codes:
 * (n); scale, min: (n / sub-block); min may be NULL (then only q4_k/q5_k
 * lose their offsets). Float formats have no codes (an error). */
int es_decode_codes(const es_qfmt *f, const void *src, int64_t n, int8_t *codes, float *scale, float *min,
                    es_err *e);
/* Decodes and validates: a NaN scale (E8M0 0xFF, E4M3 S.1111.111) is an error.
 * Quantized formats decode through es_decode_codes: y = scale x code - min. */
int es_dequantize_row(const es_qfmt *f, const void *src, int64_t n, float *y, es_err *e);
/* 1 when every element of row src (n elements, whole blocks) decodes to a finite value, 0 when one may
 * not (es_dequantize_row then says which): without decoding the codes where the format's scales bound them
 * (int3, int6, q4_0, q8_0 and the K-quants: the fp16 scales; f16, bf16, f32: the elements); mxfp4, nvfp4 and
 * fp8 decode. */
int es_row_finite(const es_qfmt *f, const void *src, int64_t n);
/* The nvfp4 tensor scale for data x: amax / (448 x 6), or 1 when all zero. */
float es_nvfp4_tensor_scale(const float *x, int64_t n);
/* The fp8 tensor scale for data x: amax / 448, or 1 when all zero. */
float es_fp8_tensor_scale(const float *x, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
