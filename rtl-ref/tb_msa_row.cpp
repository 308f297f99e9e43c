// tb_msa_row: msa_slice (product generators and msa_row, rtl-ref/msa_row.v) against the datapath's sub-block sum (es_dp_sat_sum) at
// the chip's widths, where no partial sum can saturate: random sub-blocks of 1 to 4 rows of N,
// edge cases included (zeros, the largest codes and activations, alternating signs); and its
// latency and initiation interval.
//   tb_msa_row N_SUBBLOCKS SEED
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "Vmsa_slice.h"
#include "verilated.h"
#include "tb_common.h"
#include "tb_codes.h"
extern "C" {
#include "es_dp.h"
#include "es_stats.h" /* es_splitmix64, the project's random stream */
}



static uint64_t rng; /* the random stream's state, from SEED */

int main(int argc, char **argv)
{
    const long blocks = tb_args(argc, argv, "tb_msa_row N_SUBBLOCKS SEED", &rng);
    const int N = TB_N, cb = TB_CODE_BITS, ab = TB_ACC_BITS;
    const int64_t acc_max = ((int64_t)1 << (ab - 1)) - 1;
    Vmsa_slice *m = new Vmsa_slice;
    tb_sim<Vmsa_slice> sim(m);
    sim.reset();
    long mism = 0, vectors = 0;
    int64_t latency = -1;
    std::vector<int8_t> a, c;
    std::vector<uint32_t> bits;
    for (long b = 0; b < blocks; b++) {
        int rows = 1 + (int)(es_splitmix64(&rng) % 4), n = rows * N, kind = (int)(b % 8);
        tb_draw_block(kind, n, -127, &rng, a, c, bits);
        int64_t sats = 0, want = es_dp_sat_sum(c.data(), a.data(), n, acc_max, &sats);
        if (sats) { std::fprintf(stderr, "tb_msa_row: a sub-block saturated; choose wider ACC_BITS\n"); return 2; }
        int64_t got = 0, last_in = -1;
        bool seen = false;
        for (int k = 0; k < rows + 12 + 2 * 8 && !seen; k++) {
            bool in = k < rows;
            m->in_valid = in;
            m->in_last = k == rows - 1;
            for (int i = 0; i < N; i++) {
                put(m->acts, 8 * i, 8, in ? (uint8_t)a[(size_t)(k * N + i)] : 0);
                put(m->codes, cb * i, cb, in ? bits[(size_t)(k * N + i)] : 0);
            }
            sim.tick();
            if (k == rows - 1) last_in = sim.cycle;
            if (m->out_valid) {
                int64_t v = (int64_t)m->out_sum;
                if (v & ((int64_t)1 << (ab - 1))) v -= (int64_t)1 << ab;
                got = v;
                seen = true;
                int64_t lat = sim.cycle - last_in + 1;
                if (latency < 0) latency = lat;
                else if (lat != latency) mism++;
            }
        }
        vectors += n;
        if (!seen || got != want) {
            if (mism < 5) std::fprintf(stderr, "block %ld (%d rows, kind %d): rtl %lld, C %lld\n", b, rows, kind, (long long)got, (long long)want);
            mism++;
        }
    }
    /* the documented latency: the tree's register stages (the select is combinational, in the first),
     * the accumulator */
    int levels = 0;
    while ((1 << levels) < N) levels++;
    const int64_t want_latency = (levels + TB_REG_EVERY - 1) / TB_REG_EVERY + 1;
    std::printf("msa_row %s N %d code_bits %d acc_bits %d, a register every %d adder levels: %ld sub-blocks, %ld element "
                "vectors, %ld mismatches, latency %lld cycles (expected %lld), initiation interval 1 (N elements per "
                "cycle)\n", TB_FORMAT == 1 ? "e2m1" : "int", N, cb, ab, TB_REG_EVERY, blocks, vectors, mism, (long long)latency, (long long)want_latency);
    if (latency != want_latency) mism++;
    m->final();
    delete m;
    return mism ? 1 : 0;
}
