// tb_codes: the weight codes the harnesses drive: the bits the RTL reads, and the multiplier the C
// reference gives those bits. TB_FORMAT 0: a two's-complement integer of TB_CODE_BITS bits (int3,
// int6); TB_FORMAT 1: an E2M1 nibble (MXFP4, NVFP4), whose multiplier is twice its value as
// weights/es_fp.c decodes it (es_e2m1_to_f32; the datapath's codes are -12..12 with the scale
// halved, weights/es_quant.c).
#ifndef TB_CODES_H
#define TB_CODES_H
#include <cstdint>
extern "C" {
#include "es_fp.h"
}

#ifndef TB_FORMAT
#define TB_FORMAT 0
#endif

struct tb_code {
    uint32_t bits; // as the RTL reads it
    int8_t mult;   // as the C reference decodes it
};

static inline tb_code tb_code_of(uint32_t bits)
{
    bits &= (1u << TB_CODE_BITS) - 1;
#if TB_FORMAT == 1
    static_assert(TB_CODE_BITS == 4, "E2M1 codes are 4 bits");
    return {bits, (int8_t)(2.0f * es_e2m1_to_f32((uint8_t)bits))};
#else
    int v = (int)bits >= (1 << (TB_CODE_BITS - 1)) ? (int)bits - (1 << TB_CODE_BITS) : (int)bits;
    return {bits, (int8_t)v};
#endif
}

// the largest positive and the most negative multipliers' codes (the edge cases)
#if TB_FORMAT == 1
static const uint32_t TB_CODE_TOP = 0x7, TB_CODE_BOTTOM = 0xF; // +6 and -6
#else
static const uint32_t TB_CODE_TOP = (1u << (TB_CODE_BITS - 1)) - 1, TB_CODE_BOTTOM = 1u << (TB_CODE_BITS - 1);
#endif

#endif
