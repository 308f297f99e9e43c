// tb_act_quant: act_quant (rtl-ref/act_quant.v) against the datapath's INT8 activation quantizer
// (es_dp_quant_int8, sim/func/es_dp.h) bit for bit, scale and codes: random vectors of 1 to 512
// elements (some 4096) at magnitudes from subnormal to 2^60, all-zero vectors, exact ties (x / scale
// = k + 0.5) and the largest float below one half (where floor(v + 0.5) rounds up); and its timing.
//   tb_act_quant N_VECTORS SEED
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "Vact_quant.h"
#include "verilated.h"
#include "tb_common.h"
extern "C" {
#include "es_dp.h"
#include "es_stats.h" /* es_splitmix64 */
}

static uint64_t rng;
static uint32_t bits_of(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
static float float_of(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

int main(int argc, char **argv)
{
    const long n_vec = tb_args(argc, argv, "tb_act_quant N_VECTORS SEED", &rng);
    Vact_quant *m = new Vact_quant;
    tb_sim<Vact_quant> sim(m);
    m->q_valid_in = 0;
    sim.reset();
    long mism = 0, elements = 0, ties = 0, zeros = 0;
    int64_t scale_lat = -1, q_lat = -1;
    std::vector<float> x;
    std::vector<int8_t> want;
    for (long k = 0; k < n_vec; k++) {
        int kind = (int)(k % 8);
        int n = kind == 7 ? 4096 : 1 + (int)(es_splitmix64(&rng) % 512);
        x.assign((size_t)n, 0.0f);
        /* a power-of-two scale for the exact kinds: elements at multiples of it are exact */
        int pw = (int)(es_splitmix64(&rng) % 60) - 30;
        float unit = std::ldexp(1.0f, pw);
        for (int i = 0; i < n; i++) {
            uint64_t r = es_splitmix64(&rng);
            switch (kind) {
            case 1: x[i] = 0.0f; break;
            case 2: /* ties: (j + 0.5) x unit, the largest 127 x unit */
                x[i] = (float)((int)(r % 254) - 127 + ((r >> 8) & 1 ? 0.5 : 0.0)) * unit;
                if (i == 0) x[i] = 127.0f * unit;
                break;
            case 3: /* just below a half, and halves: floor(v + 0.5) in FP32 */
                x[i] = ((r & 1) ? 0.49999997f : 0.5f) * unit * (float)(1 + (int)((r >> 1) % 100));
                if (r & 2) x[i] = -x[i];
                if (i == 0) x[i] = 127.0f * unit;
                break;
            case 4: /* subnormal and tiny */
                x[i] = float_of((uint32_t)(r >> 8) & 0x80FFFFFFu);
                break;
            case 5: { /* one large element among small ones */
                x[i] = std::ldexp((float)((int)(r % 2001) - 1000), pw);
                if (i == n / 2) x[i] = std::ldexp(1.0f, 60);
                break;
            }
            default: { /* any finite value in a random band */
                uint32_t e = (uint32_t)(97 + (r >> 40) % 60), u = ((uint32_t)r & 0x807FFFFFu) | (e << 23);
                x[i] = float_of(u);
            }
            }
        }
        want.assign((size_t)n, 0);
        float s = es_dp_quant_int8(x.data(), n, want.data());
        if (s == 0) zeros++;
        if (kind == 2 || kind == 3) ties++;
        /* the first pass */
        int64_t last_in = 0;
        for (int i = 0; i < n; i++) {
            m->in_valid = 1;
            m->in_last = i == n - 1;
            m->in_x = bits_of(x[i]);
            sim.tick();
            if (i == n - 1) last_in = sim.cycle;
        }
        m->in_valid = 0;
        for (int w = 0; w < 4 && !m->scale_valid; w++) sim.tick();
        if (!m->scale_valid || m->scale != bits_of(s)) {
            if (mism < 5) std::fprintf(stderr, "vector %ld: scale rtl %08x, C %08x\n", k, (unsigned)m->scale, bits_of(s));
            mism++;
        }
        if (scale_lat < 0) scale_lat = sim.cycle - last_in + 1;
        else if (sim.cycle - last_in + 1 != scale_lat) mism++;
        /* the second pass, one element per cycle; each code one cycle later */
        size_t got = 0;
        for (int i = 0; i <= n + 2 && got < (size_t)n; i++) {
            m->q_valid_in = i < n;
            m->q_x = i < n ? bits_of(x[i]) : 0;
            sim.tick();
            if (m->q_valid) {
                if (q_lat < 0) q_lat = i - (int64_t)got + 1;
                if ((int8_t)m->q != want[got]) {
                    if (mism < 5)
                        std::fprintf(stderr, "vector %ld element %zu (%.9g): rtl %d, C %d\n", k, got, (double)x[got],
                                     (int)(int8_t)m->q, (int)want[got]);
                    mism++;
                }
                got++;
            }
        }
        m->q_valid_in = 0;
        if (got != (size_t)n) mism++;
        elements += n;
    }
    std::printf("act_quant int8: %ld vectors, %ld elements, %ld mismatches (%ld all-zero vectors, %ld with exact ties), "
                "scale latency %lld cycles, code latency %lld cycles, initiation interval 1 element per cycle\n",
                n_vec, elements, mism, zeros, ties, (long long)scale_lat, (long long)q_lat);
    m->final();
    delete m;
    return mism ? 1 : 0;
}
