// tb_codes: the weight codes the harnesses drive: the bits the RTL reads, and the multiplier the C
// reference gives those bits. TB_FORMAT 0: a two's-complement integer of TB_CODE_BITS bits (int3,
// int6); TB_FORMAT 1: an E2M1 nibble (MXFP4, NVFP4), whose multiplier is twice its value as
// weights/es_fp.c decodes it (es_e2m1_to_f32; the datapath's codes are -12..12 with the scale
// halved, weights/es_quant.c).
#ifndef TB_CODES_H
#define TB_CODES_H
#include <cstdint>
#include <vector>
extern "C" {
#include "es_fp.h"
#include "es_stats.h" /* es_splitmix64, the project's random stream */
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

// n elements of one sub-block of edge case `kind` (the block number mod 8): 1 zero activations, 2
// the largest activations of either sign with the largest codes of either sign, 3 activation
// `kind3_act` with the most negative code, 4 alternating signs, else random; the activations a, the
// codes' bits and their multipliers c, one draw of the stream each
static inline void tb_draw_block(int kind, int n, int8_t kind3_act, uint64_t *rng, std::vector<int8_t> &a,
                                 std::vector<int8_t> &c, std::vector<uint32_t> &bits)
{
    a.assign((size_t)n, 0);
    c.assign((size_t)n, 0);
    bits.assign((size_t)n, 0);
    for (int i = 0; i < n; i++) {
        uint64_t r = es_splitmix64(rng);
        uint32_t code = (uint32_t)(r >> 8);
        switch (kind) {
        case 1: a[i] = 0; break;
        case 2: a[i] = (int8_t)((r & 1) ? 127 : -127); code = (r & 2) ? TB_CODE_BOTTOM : TB_CODE_TOP; break;
        case 3: a[i] = kind3_act; code = TB_CODE_BOTTOM; break;
        case 4: a[i] = (int8_t)((i & 1) ? -127 : 127); code = (i & 1) ? TB_CODE_BOTTOM : TB_CODE_TOP; break;
        default: a[i] = (int8_t)(int)((r & 0xFF) % 255 - 127);
        }
        tb_code k = tb_code_of(code);
        bits[i] = k.bits;
        c[i] = k.mult;
    }
}

#endif
