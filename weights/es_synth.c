/* es_synth: synthetic weights (see es_synth.h for the distribution). */
#include "es_synth.h"
#include <math.h>
#include <string.h>
#include "es_recipe.h"
#include "es_fs.h"

#define TABLE_BITS 16
static float normal_table[1 << TABLE_BITS];
static int table_ready;

/* Acklam's rational approximation of the inverse normal CDF (|rel err| < 1.2e-9). */
static double inv_norm(double p)
{
    static const double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                                1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                6.680131188771972e+01, -1.328068155288572e+01};
    static const double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[4] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                3.754408661907416e+00};
    if (p < 0.02425) {
        double q = sqrt(-2 * log(p));
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    if (p > 1 - 0.02425) return -inv_norm(1 - p);
    double q = p - 0.5, r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

void es_synth_init(void)
{
    if (table_ready) return;
    for (int i = 0; i < (1 << TABLE_BITS); i++)
        normal_table[i] = (float)inv_norm(((double)i + 0.5) / (double)(1 << TABLE_BITS));
    table_ready = 1;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void es_synth_row(uint64_t seed, const es_tensor *t, int64_t row, float *out)
{
    es_synth_init();
    uint64_t name_h = es_fnv1a(ES_FNV_OFFSET, t->name, strlen(t->name));
    uint64_t s = seed ^ name_h ^ ((uint64_t)row * 0xD1B54A32D192ED03ULL);
    if (t->rows == 1) { /* a norm's gains */
        for (int64_t c = 0; c < t->cols; c += 4) {
            uint64_t r = splitmix(&s);
            for (int k = 0; k < 4 && c + k < t->cols; k++)
                out[c + k] = 1.0f + 0.1f * normal_table[(r >> (16 * k)) & 0xFFFF];
        }
        return;
    }
    uint64_t rs = seed ^ name_h ^ 0x5851F42D4C957F2DULL ^ ((uint64_t)row * 0x2545F4914F6CDD1DULL);
    float row_scale = expf(0.25f * normal_table[splitmix(&rs) & 0xFFFF]);
    float sigma = 0.02f * row_scale;
    for (int64_t c = 0; c < t->cols; c += 4) {
        uint64_t r = splitmix(&s);
        for (int k = 0; k < 4 && c + k < t->cols; k++) {
            /* outlier input channel: a fixed hash of (seed, tensor, column) */
            uint64_t ch = (uint64_t)(c + k) * 0x9E3779B97F4A7C15ULL ^ name_h ^ seed;
            ch ^= ch >> 29;
            ch *= 0xBF58476D1CE4E5B9ULL;
            float cs = ((ch >> 40) & 0xFF) == 0 ? 8.0f : 1.0f;
            out[c + k] = sigma * cs * normal_table[(r >> (16 * k)) & 0xFFFF];
        }
    }
}
