// es_top: wiring and the run (see es_top.h). The chip is a ring:
// host link -> embed -> link -> tile 0 -> ... -> tile N-1 -> link -> head,
// with the sampled token going back to embed over the feedback link and
// out to the host over the completion path.
#include "es_top.h"
#include <cstdio>
#include <memory>
#include <string>
#include "es_ctx.h"
#include "es_head.h"
#include "es_host.h"
#include "es_link.h"
#include "es_stats.h"
#include "es_tile.h"

namespace es {

namespace {

using Fifo = sc_core::sc_fifo<Item>;

struct Chip {
    std::vector<std::unique_ptr<Fifo>> fifos;
    std::vector<std::unique_ptr<sc_core::sc_module>> mods;
    std::vector<std::unique_ptr<sc_core::sc_semaphore>> kv_groups;
    std::unique_ptr<sc_core::sc_mutex> rom;
    HostDevice *dev = nullptr;

    Fifo *fifo(const std::string &name, int depth)
    {
        fifos.emplace_back(new Fifo(name.c_str(), depth));
        return fifos.back().get();
    }
    template <class T> T *add(T *m)
    {
        mods.emplace_back(m);
        return m;
    }

    Chip(Ctx &ctx)
    {
        const es_chip *c = ctx.c;
        const es_model *m = ctx.m;
        int depth = (int)c->fifo_depth;
        int64_t tiles = es_chip_tiles(c, m);
        if (m->tied) rom.reset(new sc_core::sc_mutex("head_rom"));
        /* the feedback path never blocks the head: it holds one token per sequence at most */
        int64_t most = (int64_t)ctx.seqs.size() < ctx.kv_cap ? (int64_t)ctx.seqs.size() : ctx.kv_cap;
        int ring = (int)most + 1;

        HostDevice *host = dev = add(new HostDevice("host", ctx));
        add(new HostProgram("host_program", ctx, *host));
        Link *hl = add(new Link("host_link", ctx, 0, true));
        Embed *emb = add(new Embed("embed", ctx, &m->ops[0], rom.get()));
        Link *fb = add(new Link("feedback", ctx, c->token_id_bits, false));
        Fifo *f = fifo("q_submit", depth);
        host->submit(*f);
        hl->in(*f);
        f = fifo("q_prompt", depth);
        hl->out(*f);
        emb->prompt(*f);
        f = fifo("q_feedback_in", ring);
        fb->out(*f);
        emb->feedback(*f);

        sc_core::sc_fifo_out<Item> *up = &emb->out;
        const int64_t act_bits = m->hidden * c->link_elem_bits;
        for (int64_t t = 0; t <= tiles; t++) {
            std::string ln = "link" + std::to_string(t);
            Link *l = add(new Link(ln.c_str(), ctx, act_bits, false));
            f = fifo("q_" + ln + "_in", depth);
            (*up)(*f);
            l->in(*f);
            if (t == tiles) {
                up = &l->out;
                break;
            }
            std::vector<const es_op *> ops;
            for (int i = 0; i < m->n_ops; i++)
                if (m->ops[i].layer >= 0 && m->ops[i].layer / c->layers_per_tile == t)
                    ops.push_back(&m->ops[i]);
            size_t g = (size_t)(t / c->kv_tiles_per_group);
            if (g >= kv_groups.size())
                kv_groups.emplace_back(new sc_core::sc_semaphore(
                    ("kv_ports" + std::to_string(g)).c_str(), c->kv_ports));
            std::string tn = "tile" + std::to_string(t);
            Tile *tile = add(new Tile(tn.c_str(), ctx, ops, kv_groups[g].get(), t == tiles - 1));
            f = fifo("q_" + tn + "_in", depth);
            l->out(*f);
            tile->in(*f);
            up = &tile->out;
        }
        const es_op *hops[3] = {&m->ops[m->n_ops - 3], &m->ops[m->n_ops - 2], &m->ops[m->n_ops - 1]};
        Head *head = add(new Head("head", ctx, hops, rom.get()));
        f = fifo("q_head_in", depth);
        (*up)(*f);
        head->in(*f);
        f = fifo("q_feedback_out", ring);
        head->feedback(*f);
        fb->in(*f);
        f = fifo("q_completion", ring);
        head->completion(*f);
        host->completion(*f);
    }
};

} // namespace

namespace {
void op_doorbell(void *dev) { static_cast<HostDevice *>(dev)->doorbell.notify(sc_core::SC_ZERO_TIME); }
void op_wait(void *dev) { sc_core::wait(static_cast<HostDevice *>(dev)->cq_event); }
double op_now_ns(void *) { return sc_core::sc_time_stamp().to_seconds() * 1e9; }
const es_dev_ops dev_ops = {op_doorbell, op_wait, op_now_ns};
} // namespace

int run_sim(const es_chip *c, const es_model *m, const Workload &w, RunResult &r, es_err *e)
{
    es_area_compute(c, m, &r.area);
    if (w.an_prompt > 0) es_an_summarize(c, m, w.an_prompt, w.an_gen, &r.an);
    Ctx ctx(c, m, &r.area);
    size_t n = w.reqs.size();
    ctx.seqs.resize(n + (w.prefix > 0 ? 1 : 0));
    ctx.kv_cap = es_chip_kv_positions(c, m);
    int64_t total = 0;
    for (const auto &q : w.reqs) total += q.gen;
    ctx.toks.reserve((size_t)total);
    ctx.progress = w.progress;
    ctx.total_tokens = total;
    Chip chip(ctx);
    es_drv_cfg dc{};
    dc.kv_positions = ctx.kv_cap;
    dc.policy = w.policy;
    dc.prefix_tokens = w.prefix;
    dc.sq_depth = 256;
    dc.cq_depth = 4096;
    es_drv *drv = es_drv_open(&dc, &dev_ops, chip.dev, e);
    if (!drv) return -1;
    for (size_t i = 0; i < n; i++)
        if (es_drv_add(drv, (int64_t)i, w.reqs[i].prompt, w.reqs[i].gen, e)) {
            es_drv_close(drv);
            return -1;
        }
    chip.dev->drv = drv;
    sc_core::sc_start();
    if (w.progress) std::fprintf(stderr, "\r%60s\r", "");
    int64_t nres = 0;
    const es_req_result *res = es_drv_results(drv, &nres);
    r.reqs.assign(res, res + nres);
    es_drv_close(drv);
    if (!ctx.error.empty()) return es_fail(e, "%s", ctx.error.c_str());

    r.clock_hz = c->clock_hz;
    r.cycles = ctx.end_cycle;
    r.seconds = (double)r.cycles / c->clock_hz;
    r.tokens = (int64_t)ctx.toks.size();
    if (r.tokens != total)
        return es_fail(e, "simulation ended with %lld of %lld tokens produced (deadlock)", (long long)r.tokens,
                       (long long)total);
    r.max_in_flight = ctx.max_in_flight;
    r.kv_positions = ctx.kv_cap;
    r.kv_max_used = ctx.kv_max_used;
    r.prefill_passes = ctx.prefill_passes;
    r.static_w = ctx.static_w;

    // per-sequence records and decode rates
    std::vector<int64_t> first(n, -1), last(n, -1);
    std::vector<double> inter;
    inter.reserve(ctx.toks.size());
    r.seqs.resize(n);
    for (size_t i = 0; i < n; i++) {
        es_seq_rec &q = r.seqs[i];
        q.id = (int32_t)i;
        q.prompt = ctx.seqs[i].prompt + ctx.seqs[i].start;
        q.gen = ctx.seqs[i].gen;
        q.submit_ns = 0;
        q.admit_ns = ctx.cycles_to_ns((double)ctx.seqs[i].admit);
    }
    std::vector<int64_t> prev(n, -1);
    for (size_t k = 0; k < ctx.toks.size(); k++) {
        const es_token_rec &t = ctx.toks[k];
        size_t s = (size_t)t.seq;
        int64_t cyc = ctx.tok_cycle[k];
        if (t.idx == 0) first[s] = cyc;
        if (t.idx == (int32_t)ctx.seqs[s].gen - 1) last[s] = cyc;
        if (t.idx > 0) inter.push_back(t.latency_ns);
        if (s == 0 && t.idx > 0) {
            int64_t step = cyc - prev[s];
            if (t.idx == 1) r.step_first = step;
            r.step_last = step;
            r.step_total += step;
        }
        prev[s] = cyc;
        r.seqs[s].energy_j += t.energy_j;
    }
    double rate_sum = 0;
    int rated = 0;
    for (size_t i = 0; i < n; i++) {
        r.seqs[i].first_ns = ctx.cycles_to_ns((double)first[i]);
        r.seqs[i].done_ns = ctx.cycles_to_ns((double)last[i]);
        r.ttft_ns += r.seqs[i].first_ns;
        r.seq_ns_per_token += r.seqs[i].done_ns / (double)ctx.seqs[i].gen;
        if (r.seqs[i].first_ns > r.ttft_max_ns) r.ttft_max_ns = r.seqs[i].first_ns;
        if (ctx.seqs[i].gen > 1) {
            rate_sum += (double)(ctx.seqs[i].gen - 1) / ((double)(last[i] - first[i]) / c->clock_hz);
            rated++;
        }
    }
    r.ttft_ns /= (double)n;
    r.seq_ns_per_token /= (double)n;
    r.ttft_cycles = first[0];
    r.decode_tokens_per_s = rated ? rate_sum / rated : 0;
    r.tokens_per_s = (double)r.tokens / r.seconds;
    r.lat_p50_ns = es_percentile(inter.data(), inter.size(), 50);
    r.lat_p99_ns = es_percentile(inter.data(), inter.size(), 99);

    if (w.an_prompt > 0) {
        r.an_ttft_cycles = (int64_t)r.an.ttft_cycles;
        for (int64_t k = 1; k < w.an_gen; k++) {
            int64_t st = es_an_decode_step(c, m, w.an_prompt + k - 1);
            if (k == 1) r.an_step_first = st;
            r.an_step_last = st;
            r.an_step_total += st;
        }
    }

    r.units.assign(ctx.units.begin(), ctx.units.end());
    for (const auto &u : r.units) r.dynamic_j += u.energy_j;
    r.prefix_j = w.prefix > 0 ? ctx.seqs[n].pending_j : 0;
    r.unattributed_j = ctx.static_w * (double)(ctx.end_cycle - ctx.last_sample) / c->clock_hz + r.prefix_j;
    r.total_j = r.dynamic_j + ctx.static_w * r.seconds;
    r.watts = r.total_j / r.seconds;
    r.joules_per_token = r.total_j / (double)r.tokens;
    r.toks = std::move(ctx.toks);
    return 0;
}

} // namespace es
