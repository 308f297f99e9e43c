/* es_fp: bit-exact conversions between float and the narrow number formats
 * the weight formats use: IEEE half (FP16), bfloat16, OCP FP8 E4M3, the
 * E8M0 power-of-two scale and the E2M1 (FP4) element. Float to narrow
 * rounds to nearest, ties to even. */
#ifndef ES_FP_H
#define ES_FP_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

float es_f16_to_f32(uint16_t h);
uint16_t es_f32_to_f16(float f);    /* RNE; overflow to Inf, NaN kept */
float es_bf16_to_f32(uint16_t h);
uint16_t es_f32_to_bf16(float f);   /* RNE; NaN kept quiet */

/* E4M3 (OCP FP8): bias 7, max 448, NaN at S.1111.111, no Inf. */
float es_e4m3_to_f32(uint8_t b);    /* NaN for 0x7F / 0xFF */
uint8_t es_f32_to_e4m3(float f);    /* RNE, saturating at +-448; |f| < 2^-10 rounds to 0 */

/* E8M0: 2^(x-127) for x = 0..254; 0xFF is NaN. */
float es_e8m0_to_f32(uint8_t x);    /* NaN for 0xFF */
int es_e8m0_is_nan(uint8_t x);

/* E2M1 (FP4) codes 0..15: {+-0, 0.5, 1, 1.5, 2, 3, 4, 6}. */
float es_e2m1_to_f32(uint8_t code);
uint8_t es_f32_to_e2m1(float f);    /* RNE, saturating at +-6 */

#ifdef __cplusplus
}
#endif
#endif
