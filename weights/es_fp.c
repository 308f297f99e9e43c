/* es_fp: narrow float conversions (see es_fp.h). All work on bit patterns,
 * so results do not depend on the host's rounding mode. */
#include "es_fp.h"
#include <math.h>
#include <string.h>

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float es_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    if (exp == 0x1F) return float_of(sign | 0x7F800000u | (man << 13));       /* Inf / NaN */
    if (exp == 0) {
        if (man == 0) return float_of(sign);
        float v = (float)man * (1.0f / 16777216.0f);                            /* man x 2^-24 */
        return sign ? -v : v;
    }
    return float_of(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t es_f32_to_f16(float f)
{
    uint32_t u = bits_of(f), sign = (u >> 16) & 0x8000;
    uint32_t exp = (u >> 23) & 0xFF, man = u & 0x7FFFFF;
    if (exp == 0xFF) return (uint16_t)(sign | 0x7C00 | (man ? 0x200 | (man >> 13) : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 0x1F) return (uint16_t)(sign | 0x7C00);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;                 /* below half the smallest subnormal */
        man |= 0x800000;
        int shift = 14 - e;                                 /* to 10-bit subnormal mantissa */
        uint32_t q = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t q = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;   /* carry may reach Inf: correct */
    return (uint16_t)(sign | q);
}

float es_bf16_to_f32(uint16_t h) { return float_of((uint32_t)h << 16); }

uint16_t es_f32_to_bf16(float f)
{
    uint32_t u = bits_of(f);
    if ((u & 0x7FFFFFFF) > 0x7F800000) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7FFF + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float es_e4m3_to_f32(uint8_t b)
{
    int sign = b & 0x80, exp = (b >> 3) & 0xF, man = b & 7;
    if (exp == 0xF && man == 7) return NAN;
    float v = exp == 0 ? ldexpf((float)man, -9) : ldexpf((float)(8 + man), exp - 10);
    return sign ? -v : v;
}

uint8_t es_f32_to_e4m3(float f)
{
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (isnan(f)) return 0x7F;
    if (a >= 448.0f) return sign | 0x7E;                    /* saturate */
    /* choose the exponent, then round the mantissa on a grid of 2^(e-3) */
    int e;
    frexpf(a, &e);                                          /* a = m x 2^e, m in [0.5, 1) */
    int exp = e - 1 + 7;                                    /* biased exponent of a */
    if (exp < 1) exp = 1;                                   /* subnormal grid 2^-9 */
    float step = ldexpf(1.0f, exp - 7 - 3);
    float q = a / step;                                     /* exact: power-of-two divide */
    float r = floorf(q), frac = q - r;                      /* round half to even by hand */
    if (frac > 0.5f || (frac == 0.5f && fmodf(r, 2.0f) != 0.0f)) r += 1.0f;
    int m = (int)r;                                         /* 0..16 */
    if (m >= 16) { exp++; m = 8; }
    if (exp > 15 || (exp == 15 && m > 14)) return sign | 0x7E;
    if (m < 8) return (uint8_t)(sign | m);                  /* subnormal (exp field 0) */
    return (uint8_t)(sign | (exp << 3) | (m - 8));
}

float es_e8m0_to_f32(uint8_t x) { return x == 0xFF ? NAN : ldexpf(1.0f, (int)x - 127); }
int es_e8m0_is_nan(uint8_t x) { return x == 0xFF; }

static const float e2m1_vals[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

float es_e2m1_to_f32(uint8_t code)
{
    float v = e2m1_vals[code & 7];
    return (code & 8) ? -v : v;
}

uint8_t es_f32_to_e2m1(float f)
{
    uint8_t sign = signbit(f) ? 8 : 0;
    float a = fabsf(f);
    if (isnan(f)) return 0;
    /* midpoints between neighbours; at a tie pick the even code (mantissa bit 0) */
    static const float mid[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
    int c = 0;
    while (c < 7 && a > mid[c]) c++;
    if (c < 7 && a == mid[c] && (c & 1)) c++;               /* tie: odd code -> next (even) */
    return (uint8_t)(sign | c);
}
