// tb_common: what every Verilator harness here does the same way: read N and SEED from the command
// line, clock the model, and hold it in reset for two cycles.
#ifndef TB_COMMON_H
#define TB_COMMON_H
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include "verilated.h"

// argv: NAME N SEED; *seed gets SEED; returns N (exits with usage when they are missing)
static inline long tb_args(int argc, char **argv, const char *usage, uint64_t *seed)
{
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s\n", usage);
        std::exit(2);
    }
    *seed = std::strtoull(argv[2], nullptr, 10);
    Verilated::commandArgs(argc, argv);
    return std::atol(argv[1]);
}

/* set bit field [at, at+bits) of a Verilator wide signal (32-bit words) */
template <class W> static inline void put(W &w, int at, int bits, uint32_t v)
{
    for (int b = 0; b < bits; b++, at++) {
        uint32_t &word = w[at / 32];
        if ((v >> b) & 1) word |= 1u << (at % 32);
        else word &= ~(1u << (at % 32));
    }
}

/* ports of up to 64 bits are plain integers */
static inline void put(uint64_t &w, int at, int bits, uint32_t v)
{
    uint64_t mask = (bits >= 64 ? ~0ull : ((1ull << bits) - 1)) << at;
    w = (w & ~mask) | (((uint64_t)v << at) & mask);
}
static inline void put(uint32_t &w, int at, int bits, uint32_t v)
{
    uint64_t x = w;
    put(x, at, bits, v);
    w = (uint32_t)x;
}

// a model with clk, rst and in_valid: its clock and cycle count
template <class M> struct tb_sim {
    M *m;
    int64_t cycle = 0;
    explicit tb_sim(M *model) : m(model) {}
    void tick() /* one rising edge */
    {
        m->clk = 0;
        m->eval();
        m->clk = 1;
        m->eval();
        cycle++;
    }
    void reset() /* synchronous reset, two cycles, nothing valid */
    {
        m->rst = 1;
        m->in_valid = 0;
        tick();
        tick();
        m->rst = 0;
    }
};
#endif
