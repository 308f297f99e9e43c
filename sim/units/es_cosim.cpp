// es_cosim: see es_cosim.h.
#include "es_cosim.h"
#include <cstring>
#include <new>
#ifdef ES_RTL_COSIM
#include "Vcosim_fp.h"
#include "Vcosim_i3.h"
#include "Vcosim_i6.h"
#include "tb_common.h"
#endif

namespace es {

#ifdef ES_RTL_COSIM
namespace {
constexpr int N = 64;        // lane cells per row: the Verilated msa_slice's N
constexpr int ACC_BITS = 24; // its accumulator, and fp_scale_acc's
uint32_t bits_of(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
float float_of(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
int64_t signed_sum(uint32_t v) { return (v & (1u << (ACC_BITS - 1))) ? (int64_t)v - ((int64_t)1 << ACC_BITS) : v; }

// Cycles from one input (set(m, true) for a clock, then set(m, false)) to out_valid, counting the
// edge that takes it in.
template <class M, class Set> int64_t latency(tb_sim<M> &sim, Set set)
{
    set(sim.m, true);
    for (int64_t k = 1; k < 64; k++) {
        sim.tick();
        set(sim.m, false);
        if (sim.m->out_valid) return k;
    }
    return -1;
}

// One row's sub-block sums through a lane: N elements a cycle, each sub-block's last elements
// marked; the sums come out as the pipeline delivers them.
template <class M>
void lane_sums(tb_sim<M> &sim, int code_bits, const int8_t *codes, const int8_t *acts, int64_t cols, int64_t sub,
               std::vector<int64_t> &sums)
{
    M *m = sim.m;
    const int64_t beats = cols / N, per = sub / N;
    sums.clear();
    for (int64_t k = 0; (int64_t)sums.size() < cols / sub; k++) {
        bool in = k < beats;
        m->in_valid = in;
        m->in_last = in && (k % per == per - 1);
        for (int i = 0; i < N; i++) {
            put(m->acts, 8 * i, 8, in ? (uint8_t)acts[k * N + i] : 0);
            put(m->codes, code_bits * i, code_bits, in ? (uint32_t)(uint8_t)codes[k * N + i] : 0);
        }
        sim.tick();
        if (m->out_valid) sums.push_back(signed_sum(m->out_sum));
    }
}
} // namespace

struct Cosim {
    Vcosim_i3 *i3 = nullptr;
    Vcosim_i6 *i6 = nullptr;
    Vcosim_fp *fp = nullptr;
    tb_sim<Vcosim_i3> s3{nullptr};
    tb_sim<Vcosim_i6> s6{nullptr};
    tb_sim<Vcosim_fp> sf{nullptr};
    const es_model *m = nullptr;
    int lo = 0, hi = 0;
    int64_t rows = 0;
    int64_t depth = 0; // measured: the lane's cycles after the ROM's second, and the scale stage's
    std::vector<int64_t> sums;
};

bool es_cosim_available() { return true; }

Cosim *es_cosim_open(const es_chip *c, const es_model *m, int lo, int hi, es_err *e)
{
    if (c->tile.acc_bits != ACC_BITS) {
        es_fail(e, "--rtl-cosim: %s: key 'tile.lanes.accumulator_bits' is %d; the Verilated lane's is %d", c->path,
                c->tile.acc_bits, ACC_BITS);
        return nullptr;
    }
    Cosim *cs = new (std::nothrow) Cosim;
    if (!cs) {
        es_fail(e, "out of memory");
        return nullptr;
    }
    cs->i3 = new Vcosim_i3;
    cs->i6 = new Vcosim_i6;
    cs->fp = new Vcosim_fp;
    cs->s3.m = cs->i3;
    cs->s6.m = cs->i6;
    cs->sf.m = cs->fp;
    cs->s3.reset();
    cs->s6.reset();
    cs->sf.reset();
    /* the pipeline as the RTL has it: one sub-block in, cycles to its sum (its first register stage
     * is the ROM read's second cycle, as scripts/bench-rtl counts), then to its scaled output */
    int64_t lane = latency(cs->s3, [](Vcosim_i3 *m, bool on) { m->in_valid = m->in_last = on; });
    int64_t scale = latency(cs->sf, [](Vcosim_fp *m, bool on) { m->in_valid = m->in_first = m->in_last = on; });
    if (lane < 0 || scale < 0) {
        es_cosim_close(cs);
        es_fail(e, "--rtl-cosim: the Verilated %s gave no output in 64 cycles", lane < 0 ? "lane" : "scale stage");
        return nullptr;
    }
    cs->depth = lane - 1 + scale;
    cs->m = m;
    cs->lo = lo;
    cs->hi = hi;
    return cs;
}

void es_cosim_close(Cosim *cs)
{
    if (!cs) return;
    cs->i3->final();
    cs->i6->final();
    cs->fp->final();
    delete cs->i3;
    delete cs->i6;
    delete cs->fp;
    delete cs;
}

int es_cosim_lane_row(void *cosim, int tensor, es_qtype type, const int8_t *codes, const int8_t *acts, int64_t cols,
                      int64_t sub, const float *scales, float act_scale, float *y, es_err *e)
{
    Cosim *cs = static_cast<Cosim *>(cosim);
    const es_tensor *t = &cs->m->tensors[tensor];
    if (t->layer < cs->lo || t->layer >= cs->hi) return 0; /* another tile's: the C datapath */
    if ((type != ES_Q_INT3 && type != ES_Q_INT6) || !codes)
        return es_fail(e, "--rtl-cosim: %s is %s; the Verilated lanes are int3 and int6", t->name, es_qtype_name(type));
    if (!acts)
        return es_fail(e, "--rtl-cosim: %s: the activations are not int8 (key 'tile.lanes.activation_format'); the "
                          "Verilated lane's are", t->name);
    if (sub % N || cols % sub)
        return es_fail(e, "--rtl-cosim: %s: sub-blocks of %lld weights over %lld columns; the Verilated lane takes %d "
                          "a cycle", t->name, (long long)sub, (long long)cols, N);
    if (type == ES_Q_INT3) lane_sums(cs->s3, 3, codes, acts, cols, sub, cs->sums);
    else lane_sums(cs->s6, 6, codes, acts, cols, sub, cs->sums);
    /* the scale-and-accumulate stage: one sub-block a cycle, the row's output after its last */
    Vcosim_fp *f = cs->fp;
    const int64_t nsub = cols / sub;
    bool done = false;
    for (int64_t b = 0; !done; b++) {
        bool in = b < nsub;
        f->in_valid = in;
        f->in_first = in && b == 0;
        f->in_last = in && b == nsub - 1;
        f->in_sum = in ? (uint32_t)cs->sums[(size_t)b] & ((1u << ACC_BITS) - 1) : 0;
        f->in_scale = in ? bits_of(scales[b]) : 0;
        f->in_act_scale = bits_of(act_scale);
        cs->sf.tick();
        if (f->out_valid) {
            *y = float_of(f->y);
            done = true;
        }
    }
    cs->rows++;
    return 1;
}

void es_cosim_counts(const Cosim *cs, int64_t *rows, int64_t *cycles)
{
    *rows = cs ? cs->rows : 0;
    *cycles = cs ? cs->s3.cycle + cs->s6.cycle + cs->sf.cycle : 0;
}

int64_t es_cosim_lane_depth(const Cosim *cs) { return cs->depth; }
#else
struct Cosim {};
bool es_cosim_available() { return false; }
Cosim *es_cosim_open(const es_chip *, const es_model *, int, int, es_err *e)
{
    es_fail(e, "--rtl-cosim: this etchsim was built without Verilator (Debian package 'verilator'; scripts/setup "
               "installs it, then rebuild)");
    return nullptr;
}
void es_cosim_close(Cosim *) {}
int es_cosim_lane_row(void *, int, es_qtype, const int8_t *, const int8_t *, int64_t, int64_t, const float *, float,
                      float *, es_err *)
{
    return 0;
}
void es_cosim_counts(const Cosim *, int64_t *rows, int64_t *cycles) { *rows = 0, *cycles = 0; }
int64_t es_cosim_lane_depth(const Cosim *) { return 0; }
#endif

} // namespace es
