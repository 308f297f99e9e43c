// tb_fp_scale_acc: fp_scale_acc (rtl-ref/fp_scale_acc.v) against the datapath's scale-and-accumulate
// (es_dp_acc_step, sim/func/es_dp.h, and the output multiply of sim/func/es_dp.c) bit for bit: rows
// of 1 to 64 sub-blocks, back to back, with scales as each format decodes them (FP16 for int3 and
// int6, E8M0 halved for MXFP4, E4M3 times a tensor scale for NVFP4; weights/es_fp.c) and as any
// finite FP32 (subnormals, overflow to infinity and the NaN of infinity minus infinity included),
// sums from the 24-bit accumulator's range (zeros, small, full scale); and its latency.
//   tb_fp_scale_acc N_ROWS SEED
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "Vfp_scale_acc.h"
#include "verilated.h"
#include "tb_common.h"
extern "C" {
#include "es_dp.h"
#include "es_fp.h"
#include "es_stats.h" /* es_splitmix64 */
}

static uint64_t rng;
static uint32_t bits_of(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
static float float_of(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

/* a finite FP32 with random bits */
static float any_finite()
{
    for (;;) {
        uint32_t u = (uint32_t)es_splitmix64(&rng);
        if (((u >> 23) & 0xFF) != 0xFF) return float_of(u);
    }
}

static float scale_of(int kind)
{
    uint64_t r = es_splitmix64(&rng);
    switch (kind) {
    case 0: { /* FP16 (int3, int6) */
        uint16_t h = (uint16_t)r;
        if (((h >> 10) & 0x1F) == 0x1F) h &= 0x83FF; /* not inf or NaN: rejected upstream */
        return es_f16_to_f32(h);
    }
    case 1: { /* E8M0, halved as the decoder holds it (MXFP4) */
        uint8_t x = (uint8_t)(r % 255);
        return es_e8m0_to_f32(x) * 0.5f;
    }
    case 2: { /* E4M3 times a tensor scale, halved (NVFP4) */
        uint8_t x = (uint8_t)r;
        if ((x & 0x7F) == 0x7F) x &= 0xFE;
        return es_e4m3_to_f32(x) * float_of(0x3c000000u + (uint32_t)((r >> 8) % 0x02000000u)) * 0.5f;
    }
    default: { /* any sign and mantissa, exponents from subnormal to 2^40 */
        uint32_t e = (uint32_t)((r >> 32) % 167), u = ((uint32_t)r & 0x807FFFFFu) | (e << 23);
        return float_of(u);
    }
    }
}

/* a scale near the bottom of the range: subnormal, or the smallest E8M0 */
static float tiny_scale()
{
    uint64_t r = es_splitmix64(&rng);
    if (r & 1) return float_of((uint32_t)(r >> 8) & 0x807FFFFFu); /* subnormal (or zero) */
    return es_e8m0_to_f32((uint8_t)((r >> 8) % 12)) * 0.5f;
}

int main(int argc, char **argv)
{
    const long n_rows = tb_args(argc, argv, "tb_fp_scale_acc N_ROWS SEED", &rng);
    const int ab = TB_ACC_BITS;
    const int64_t acc_max = ((int64_t)1 << (ab - 1)) - 1;
    Vfp_scale_acc *m = new Vfp_scale_acc;
    tb_sim<Vfp_scale_acc> sim(m);
    sim.reset();
    long mism = 0, vectors = 0, nonfinite = 0, subnormal = 0, sub_steps = 0;
    int64_t latency = -1;
    struct row { std::vector<int64_t> sums; std::vector<float> scales; float act; uint32_t want; int64_t last_in; };
    std::vector<row> pending;
    size_t next_out = 0;
    auto check_out = [&]() { /* a row's output this cycle: the oldest pending row's */
        if (!m->out_valid) return;
        if (next_out >= pending.size()) { mism++; return; }
        row &o = pending[next_out++];
        int64_t lat = sim.cycle - o.last_in + 1; /* counting the edge that took its last sub-block */
        if (latency < 0) latency = lat;
        if (lat != latency) mism++;
        if (m->y != o.want) {
            if (mism < 5) std::fprintf(stderr, "row %zu: rtl %08x, C %08x\n", next_out - 1, (unsigned)m->y, (unsigned)o.want);
            mism++;
        }
    };
    for (long k = 0; k < n_rows; k++) {
        row r;
        int n = 1 + (int)(es_splitmix64(&rng) % 64), kind = (int)(k % 8), skind = (int)((k / 8) % 4);
        for (int i = 0; i < n; i++) {
            uint64_t x = es_splitmix64(&rng);
            int64_t s;
            switch (kind) {
            case 1: s = 0; break;                                               /* zero sums */
            case 2: s = (x & 1) ? acc_max : -acc_max; break;                    /* full scale */
            case 3: s = (int64_t)(x % 2001) - 1000; break;                      /* small */
            default: s = (int64_t)(x % (uint64_t)(2 * acc_max + 1)) - acc_max;  /* any */
            }
            float sc = kind == 4 ? any_finite() : kind == 7 ? tiny_scale() : scale_of(skind);
            if (kind == 5) sc = (i & 1) ? -scale_of(skind) : scale_of(skind);  /* cancellation */
            if (kind == 7) s = (int64_t)(x % 201) - 100;                         /* toward subnormals */
            r.sums.push_back(s);
            r.scales.push_back(sc);
        }
        r.act = kind == 6 ? any_finite() : (float)(1 + es_splitmix64(&rng) % 40000) / 127.0f / 256.0f;
        if (kind == 7 && (k & 8)) r.act = 1.0f;
        float acc = 0.0f; /* the datapath's row: from +0, sub-blocks in order, then the activation scale */
        for (int i = 0; i < n; i++) {
            acc = es_dp_acc_step(acc, r.scales[i], r.sums[i]);
            if (std::fpclassify(r.scales[i] * (float)r.sums[i]) == FP_SUBNORMAL || std::fpclassify(acc) == FP_SUBNORMAL)
                sub_steps++;
        }
        r.want = bits_of(acc * r.act);
        if (!std::isfinite(float_of(r.want))) nonfinite++;
        else if (std::fpclassify(float_of(r.want)) == FP_SUBNORMAL) subnormal++;
        pending.push_back(r);
        for (int i = 0; i < n; i++) { /* one sub-block per cycle, rows back to back */
            const row &p = pending.back();
            m->in_valid = 1;
            m->in_first = i == 0;
            m->in_last = i == n - 1;
            m->in_sum = (uint32_t)(p.sums[i] & ((1 << ab) - 1));
            m->in_scale = bits_of(p.scales[i]);
            m->in_act_scale = bits_of(p.act);
            sim.tick();
            if (i == n - 1) pending.back().last_in = sim.cycle;
            vectors++;
            check_out();
        }
    }
    m->in_valid = 0;
    for (int i = 0; i < 8; i++) {
        sim.tick();
        check_out();
    }
    if (next_out != pending.size()) mism++;
    std::printf("fp_scale_acc acc_bits %d: %ld rows, %ld sub-block vectors, %ld mismatches (%ld outputs infinite or NaN, "
                "%ld subnormal; %ld steps with a subnormal product or sum), latency %lld cycles, initiation interval 1 "
                "sub-block per cycle\n", ab, n_rows, vectors, mism, nonfinite, subnormal, sub_steps, (long long)latency);
    m->final();
    delete m;
    return mism ? 1 : 0;
}
