// tb_msa_lane: msa_lane (rtl-ref/msa_lane.v) against the functional datapath's integer sub-block
// sum (es_dp_sat_sum) on random sub-blocks and edge cases, bit for bit, saturation counts included;
// and its latency and initiation interval in cycles. Codes as tb_codes.h draws them (int3, int6 or
// E2M1 by TB_FORMAT).
//   tb_msa_lane N SEED      N sub-blocks; prints one line: vectors, mismatches, latency, interval
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "Vmsa_lane.h"
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
    const long n_blocks = tb_args(argc, argv, "tb_msa_lane N SEED", &rng);
    const int code_bits = TB_CODE_BITS, acc_bits = TB_ACC_BITS;
    const int64_t acc_max = ((int64_t)1 << (acc_bits - 1)) - 1;
    Vmsa_lane *m = new Vmsa_lane;
    tb_sim<Vmsa_lane> sim(m);
    sim.reset();
    long mismatches = 0, vectors = 0;
    int64_t latency = -1;
    std::vector<int8_t> a, c;
    std::vector<uint32_t> bits;
    for (long b = 0; b < n_blocks; b++) {
        /* sizes 1..128; every 8th block an edge case: zeros, largest codes and activations
         * (saturating a small accumulator), or alternating signs */
        int n = 1 + (int)(es_splitmix64(&rng) % 128);
        int kind = (int)(b % 8);
        tb_draw_block(kind, n, 127, &rng, a, c, bits);
        int64_t sats = 0;
        int64_t want = es_dp_sat_sum(c.data(), a.data(), n, acc_max, &sats);
        int64_t last_in = -1, got = 0, got_sats = 0;
        bool seen = false;
        for (int i = 0; i < n + 4 && !seen; i++) {
            m->in_valid = i < n;
            m->in_last = i == n - 1;
            m->act = (uint8_t)(i < n ? a[i] : 0);
            m->code_bits = (uint8_t)(i < n ? bits[i] : 0);
            sim.tick();
            if (i == n - 1) last_in = sim.cycle;
            if (m->out_valid) {
                int64_t v = (int64_t)m->out_sum;
                if (v & ((int64_t)1 << (acc_bits - 1))) v -= (int64_t)1 << acc_bits; /* sign-extend */
                got = v;
                got_sats = m->out_sats;
                seen = true;
                int64_t lat = sim.cycle - last_in + 1; /* counting the edge that took the last element in */
                if (latency < 0) latency = lat;
                else if (lat != latency) mismatches++;
            }
        }
        vectors += n;
        if (!seen || got != want || got_sats != sats) {
            if (mismatches < 5)
                std::fprintf(stderr, "block %ld (n %d, kind %d): rtl %lld (%lld saturations), C %lld (%lld)\n", b, n, kind,
                             (long long)got, (long long)got_sats, (long long)want, (long long)sats);
            mismatches++;
        }
    }
    /* initiation interval: blocks were fed back to back, one element per cycle, and every result came */
    std::printf("msa_lane %s code_bits %d acc_bits %d: %ld sub-blocks, %ld element vectors, %ld mismatches, "
                "latency %lld cycles, initiation interval 1\n",
                TB_FORMAT == 1 ? "e2m1" : "int", code_bits, acc_bits, n_blocks, vectors, mismatches, (long long)latency);
    m->final();
    delete m;
    return mismatches ? 1 : 0;
}
