// es_top: wiring and the run (see es_top.h). The chip is a ring:
// host link -> embed -> link -> tile 0 -> ... -> tile N-1 -> link -> head,
// with the sampled token going back to embed over the feedback link and
// out to the host over the completion path.
#include "es_top.h"
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <cstdio>
#include <memory>
#include <string>
#include "es_ctx.h"
#include "es_fs.h"
#include "es_head.h"
#include "es_proc.h"
#include "es_host.h"
#include "es_link.h"
#include "es_stack.h"
#include "es_stats.h"
#include "es_tile.h"

namespace es {

namespace {

using Fifo = sc_core::sc_fifo<Item>;

/* --vcd: signals that follow the units' counters, written by one method process woken when any
 * changes (Ctx::vcd_touch), so each signal has one writer; SystemC's VCD writer records them. */
struct VcdTracer : sc_core::sc_module {
    Ctx &ctx;
    std::vector<const Tile *> tiles;
    std::vector<std::unique_ptr<sc_core::sc_signal<uint32_t>>> items;
    sc_core::sc_signal<uint64_t> kv_used{"kv_positions_held"};
    sc_core::sc_signal<uint32_t> in_flight{"sequences_in_flight"};
    sc_core::sc_event changed;
    SC_HAS_PROCESS(VcdTracer);
    VcdTracer(sc_core::sc_module_name nm, Ctx &c) : sc_module(nm), ctx(c)
    {
        SC_METHOD(copy);
        sensitive << changed;
        dont_initialize();
        ctx.vcd_changed = &changed;
    }
    void add(const Tile *t, const std::string &name)
    {
        tiles.push_back(t);
        items.emplace_back(new sc_core::sc_signal<uint32_t>((name + "_items").c_str()));
    }
    void copy()
    {
        for (size_t i = 0; i < tiles.size(); i++) items[i]->write((uint32_t)tiles[i]->items());
        kv_used.write((uint64_t)ctx.kv_used);
        in_flight.write((uint32_t)ctx.in_flight);
    }
    void trace(sc_core::sc_trace_file *tf)
    {
        for (size_t i = 0; i < tiles.size(); i++) sc_core::sc_trace(tf, *items[i], items[i]->name());
        sc_core::sc_trace(tf, kv_used, "kv_positions_held");
        sc_core::sc_trace(tf, in_flight, "sequences_in_flight");
    }
};

struct Chip {
    std::vector<std::unique_ptr<Fifo>> fifos;
    std::vector<std::unique_ptr<sc_core::sc_module>> mods;
    std::vector<std::unique_ptr<Server>> kv_groups;
    std::vector<std::unique_ptr<LinkPort>> links;
    std::unique_ptr<sc_core::sc_mutex> rom;
    HostDevice *dev = nullptr;
    HostProgram *prog = nullptr;
    VcdTracer *vcd = nullptr;
    Ctx *ctx_ = nullptr;

    LinkPort *link(const char *name, int64_t bits_per_token, bool host)
    {
        links.emplace_back(new LinkPort(*ctx_, name, bits_per_token, host));
        return links.back().get();
    }
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

    Chip(Ctx &ctx, bool with_vcd) : ctx_(&ctx)
    {
        const es_chip *c = ctx.c;
        if (with_vcd) vcd = add(new VcdTracer("vcd", ctx));
        const es_model *m = ctx.m;
        int depth = (int)c->fifo_depth;
        int64_t tiles = es_chip_tiles(c, m);
        if (m->tied) rom.reset(new sc_core::sc_mutex("head_rom"));
        /* the feedback path never blocks the head: it holds one token per sequence
         * in flight at most, and the KV holds at most kv_cap sequences */
        int ring = (int)(ctx.kv_cap < (1 << 20) ? ctx.kv_cap : (1 << 20)) + 1;

        HostDevice *host = dev = add(new HostDevice("host", ctx));
        prog = add(new HostProgram("host_program", ctx, *host));
        /* each link is folded into its sender (es_link.h); created in this order, the units are
         * listed host, host_link, embed, feedback, link0, tile0, link1, ..., head */
        host->link = link("host_link", 0, true);
        Embed *emb = add(new Embed("embed", ctx, es_model_op(m, -1, ES_OP_EMBED), rom.get()));
        LinkPort *fb = link("feedback", c->token_id_bits, false);
        Fifo *f = fifo("q_prompt", depth);
        host->submit(*f);
        emb->prompt(*f);
        Fifo *feedback = fifo("q_feedback", ring);
        emb->feedback(*feedback);

        sc_core::sc_fifo_out<Item> *up = &emb->out;
        LinkPort **up_link = &emb->link;
        const int64_t act_bits = m->hidden * c->link_elem_bits;
        for (int64_t t = 0; t <= tiles; t++) {
            *up_link = link(("link" + std::to_string(t)).c_str(), act_bits, false);
            if (t == tiles) break;
            std::vector<const es_op *> ops;
            for (int i = 0; i < m->n_ops; i++)
                if (m->ops[i].layer >= 0 && m->ops[i].layer / c->layers_per_tile == t)
                    ops.push_back(&m->ops[i]);
            size_t g = (size_t)(t / c->kv_tiles_per_group);
            if (g >= kv_groups.size())
                kv_groups.emplace_back(new Server(c->kv_ports));
            std::string tn = "tile" + std::to_string(t);
            Tile *tile = add(new Tile(tn.c_str(), ctx, ops, kv_groups[g].get(), t == tiles - 1));
            if (vcd) vcd->add(tile, tn);
            f = fifo("q_" + tn + "_in", depth);
            (*up)(*f);
            tile->in(*f);
            up = &tile->out;
            up_link = &tile->link;
        }
        const es_op *hops[3] = {es_model_op(m, -1, ES_OP_RMSNORM), es_model_op(m, -1, ES_OP_MATVEC),
                                es_model_op(m, -1, ES_OP_SAMPLE)};
        Head *head = add(new Head("head", ctx, hops, rom.get()));
        f = fifo("q_head_in", depth);
        (*up)(*f);
        head->in(*f);
        head->feedback(*feedback);
        head->feedback_link = fb;
        f = fifo("q_completion", ring);
        head->completion(*f);
        host->completion(*f);
    }
};

} // namespace

namespace {
void op_doorbell(void *dev) { static_cast<HostDevice *>(dev)->doorbell.notify(sc_core::SC_ZERO_TIME); }
void op_wait(void *dev) { sc_core::wait(static_cast<HostDevice *>(dev)->cq_event); }
double op_now_ns(void *dev) { return static_cast<HostDevice *>(dev)->now_ns(); }
const es_dev_ops dev_ops = {op_doorbell, op_wait, op_now_ns};
} // namespace

namespace {

struct SourceCtx {             // adapts a Workload to the driver's C callbacks
    const Workload *w;
    Ctx *ctx;
    size_t next = 0;
    RunResult *r;
    std::map<double, int64_t> inter; // run: inter-token latencies (ns) and how many tokens had each
    // power limit: finished requests wait here until the windows they lived in have their clocks
    std::deque<std::pair<es_req_result, SeqState>> held;
};

int finish(SourceCtx *s, es_req_result q, SeqState &st, es_err *e);

/* The q-th percentile, nearest rank (as es_percentile), of values given with their counts. */
double percentile_counts(const std::map<double, int64_t> &h, double q)
{
    int64_t n = 0, acc = 0;
    for (const auto &kv : h) n += kv.second;
    if (n == 0) return 0;
    int64_t rank = (int64_t)std::ceil(q / 100.0 * (double)n);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    for (const auto &kv : h)
        if ((acc += kv.second) >= rank) return kv.first;
    return h.rbegin()->first;
}

/* Pass on the held requests whose windows have closed, in finishing order; false on a sink's error. */
bool release(SourceCtx *s, bool all = false)
{
    const Governor &g = s->ctx->gov;
    if (!s->ctx->error.empty()) return false; /* the run is stopping: nothing more to its sink */
    /* a request is done when its last token reaches the host: its last arrival cycle */
    while (!s->held.empty() && (all || g.known(s->held.front().second.last_arrival))) {
        es_err e{};
        auto &h = s->held.front();
        if (finish(s, h.first, h.second, &e)) {
            s->ctx->fail("%s", e.msg);
            s->held.clear();
            return false;
        }
        s->held.pop_front();
    }
    return true;
}

int src_next(void *arg, int64_t *id, int64_t *prompt, int64_t *max_new, es_err *e)
{
    SourceCtx *s = static_cast<SourceCtx *>(arg);
    Request q;
    if (s->w->source) {
        int rc = s->w->source(*id, q, e);
        if (rc <= 0) return rc;
    } else {
        if (s->next >= s->w->reqs.size()) return 0;
        *id = (int64_t)s->next;
        q = s->w->reqs[s->next++];
    }
    *prompt = q.prompt;
    *max_new = q.gen;
    if (s->ctx->dp) {
        if ((int64_t)q.ids.size() != q.prompt)
            return es_fail(e, "request %lld: %zu prompt token ids for %lld tokens", (long long)*id, q.ids.size(),
                           (long long)q.prompt);
        s->ctx->pending_prompts[(uint32_t)*id] = std::move(q.ids);
    }
    return 1;
}

int src_done(void *arg, const es_req_result *q, uint32_t slot, es_err *e)
{
    SourceCtx *s = static_cast<SourceCtx *>(arg);
    SeqState &st = s->ctx->seqs[slot];
    if (!s->ctx->error.empty()) return es_fail(e, "%s", s->ctx->error.c_str());
    if (!s->ctx->gov.on) return finish(s, *q, st, e);
    s->held.emplace_back(*q, st); /* its slot is reused: keep a copy */
    st.spans.clear();
    return release(s) ? 0 : es_fail(e, "%s", s->ctx->error.c_str());
}

/* A finished request, its times made real (power limit) and passed on: to the sink (eval) or the run's records. */
int finish(SourceCtx *s, es_req_result q, SeqState &st, es_err *e)
{
    const Governor &g = s->ctx->gov;
    if (g.first_slow >= 0) { /* a window ran below the nominal clock: times and static shares change */
        q.submit_ns = g.real_ns(q.submit_ns);
        q.first_ns = g.real_ns(q.first_ns);
        q.done_ns = g.real_ns(q.done_ns);
        for (size_t k = 0; k < st.spans.size(); k++) {
            double fix = g.static_fix(st.spans[k].first, st.spans[k].second);
            st.energy_j += fix;
            if (k < st.toks.size()) st.toks[k].energy_j += fix;
        }
        for (es_token_rec &t : st.toks) {
            double t0 = t.t_ns - t.latency_ns;
            t.t_ns = g.real_ns(t.t_ns);
            t.latency_ns = t.t_ns - g.real_ns(t0);
        }
    }
    if (s->w->sink) return s->w->sink(q, st, e);
    for (const es_token_rec &t : st.toks) { /* run: its tokens' rows, and the latency distribution */
        if (t.idx > 0) s->inter[t.latency_ns]++;
        if (s->w->token_sink && s->w->token_sink(t, e)) return -1;
    }
    es_seq_rec rec{};
    rec.id = (int32_t)q.id;
    rec.prompt = st.prompt + st.start;
    rec.gen = st.gen;
    rec.submit_ns = 0;
    rec.admit_ns = g.real_ns(s->ctx->cycles_to_ns((double)st.admit));
    rec.first_ns = q.first_ns;
    rec.done_ns = q.done_ns;
    rec.energy_j = st.energy_j;
    s->r->seqs.push_back(rec);
    if (s->ctx->dp) {
        if (s->r->out_ids.size() <= (size_t)q.id) s->r->out_ids.resize((size_t)q.id + 1);
        s->r->out_ids[(size_t)q.id] = st.out_ids;
    }
    return 0;
}

} // namespace

int run_sim(const es_map *pm, const Workload &w, RunResult &r, es_err *e)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    es_area_compute(pm, &r.area);
    if (w.an_prompt > 0) es_an_summarize(pm, w.an_prompt, w.an_gen, &r.an);
    Ctx ctx(pm, &r.area);
    if (ctx.gov.on && c->power_limit_w <= ctx.gov.fixed_w) /* an ungated clock slows with the clock; these do not */
        return es_fail(e, "%s: key 'card.power_limit_w': %.4g W is at or below the card's static power, %.4g W "
                          "(leakage / VR efficiency + board): no clock keeps the card under it",
                       c->path, c->power_limit_w, ctx.gov.fixed_w);
    ctx.kv_cap = es_chip_kv_positions(c, m);
    ctx.seq_tokens = w.seq_tokens || !w.sink; /* run: every token's record, streamed as its request finishes */
    int64_t total = 0;
    for (const auto &q : w.reqs) total += q.gen;
    ctx.progress = w.progress && !w.source;
    ctx.total_tokens = total;
    ctx.dp = w.dp;
    ctx.cycle = w.cycle;
    ctx.cosim_depth = w.cosim_depth;
    if (w.cycle && m->experts > 0)
        return es_fail(e, "--fidelity cycle: %s routes tokens to experts, which only the transaction fidelity "
                          "books; use a dense or state-space model", m->name);
    ctx.prefix_ids = w.prefix_ids;
    ctx.tap_id = w.tap_id;
    ctx.routing = w.routing;
    if (w.dp && w.prefix > 0 && (int64_t)w.prefix_ids.size() != w.prefix)
        return es_fail(e, "the shared prefix has %zu token ids for %lld tokens", w.prefix_ids.size(), (long long)w.prefix);
    if (!w.trace_path.empty() &&
        es_trace_open(&ctx.trace, w.trace_path.c_str(), c->clock_hz, w.trace_start_ns, w.trace_end_ns, e))
        return -1;
    struct TraceGuard { /* a run that fails removes its partial trace; one that finishes renames it into place */
        Ctx &c;
        ~TraceGuard() { es_trace_close(c.trace, 0, nullptr); }
    } tg{ctx};
    /* --vcd: SystemC writes NAME.vcd; it goes to PATH.tmp.vcd and is renamed over PATH when the run
     * completes, removed when it fails */
    struct VcdFile {
        sc_core::sc_trace_file *tf = nullptr;
        std::string tmp, path;
        int cleanup = -1; /* a run stopped by a signal removes PATH.tmp.vcd */
        ~VcdFile()
        {
            if (tf) sc_core::sc_close_vcd_trace_file(tf);
            if (!tmp.empty()) std::remove((tmp + ".vcd").c_str());
            es_cleanup_drop(cleanup);
        }
    } vf;
    if (!w.vcd_path.empty()) {
        if (es_check_output(w.vcd_path.c_str(), "a VCD trace", e)) return -1;
        vf.path = w.vcd_path;
        vf.tmp = w.vcd_path + ".tmp";
        vf.cleanup = es_cleanup_add((vf.tmp + ".vcd").c_str(), 0);
    }
    Chip chip(ctx, !vf.path.empty());
    if (chip.vcd) {
        vf.tf = sc_core::sc_create_vcd_trace_file(vf.tmp.c_str());
        if (!vf.tf) return es_fail(e, "%s: cannot write the VCD trace", vf.path.c_str());
        vf.tf->set_time_unit(1, sc_core::SC_PS);
        chip.vcd->trace(vf.tf);
    }
    es_drv_cfg dc{};
    dc.kv_positions = ctx.kv_cap;
    dc.policy = w.policy;
    dc.prefix_tokens = w.prefix;
    dc.per_request = m->ssm_state > 0 ? 1 : 0; /* a fixed state per sequence, whatever its length */
    dc.sq_depth = 256;
    dc.cq_depth = 4096;
    dc.window = w.window;
    es_drv *drv = es_drv_open(&dc, &dev_ops, chip.dev, e);
    if (!drv) return -1;
    SourceCtx sc{&w, &ctx, 0, &r, {}, {}};
    ctx.gov.on_close = [&sc]() { release(&sc); };
    es_drv_source src{src_next, src_done, &sc};
    chip.dev->drv = drv;
    chip.prog->src = &src;
    sc_core::sc_start();
    stack_restore(); /* the sanitizer's view of the main stack (es_stack.h) */
    if (ctx.progress) std::fprintf(stderr, "\r%60s\r", "");
    r.max_in_flight = ctx.max_in_flight;
    es_drv_close(drv);
    if (!ctx.error.empty()) return es_fail(e, "%s", ctx.error.c_str());

    ctx.gov.close_last(ctx.end_cycle); /* the last window's clock: the held requests pass on */
    release(&sc, true);
    if (!ctx.error.empty()) return es_fail(e, "%s", ctx.error.c_str());
    if (!sc.held.empty()) return es_fail(e, "%zu finished requests were never passed on", sc.held.size());
    if (!w.source && !w.sink && r.seqs.size() != w.reqs.size())
        return es_fail(e, "%zu of %zu requests finished", r.seqs.size(), w.reqs.size());
    const Governor &g = ctx.gov;
    r.clock_hz = c->clock_hz;
    r.cycles = ctx.end_cycle;
    r.seconds = g.first_slow >= 0 ? g.real_s((double)r.cycles) : (double)r.cycles / c->clock_hz;
    if (g.on) {
        r.power_limit_w = c->power_limit_w;
        r.throttled_s = g.throttled_s;
        r.min_clock_hz = g.min_f;
        r.window_w = g.window_w;
        r.window_s = c->power_window_s;
    }
    r.tokens = ctx.sampled;
    if (!w.source && r.tokens != total)
        return es_fail(e, "simulation ended with %lld of %lld tokens produced (deadlock)", (long long)r.tokens,
                       (long long)total);
    r.kv_positions = ctx.kv_cap;
    r.kv_max_used = ctx.kv_max_used;
    r.prefill_passes = ctx.prefill_passes;
    r.static_w = ctx.static_w;
    r.clock_w = ctx.clock_w;

    if (!w.sink) {
        /* per-sequence figures (run): ids come back in completion order */
        std::sort(r.seqs.begin(), r.seqs.end(), [](const es_seq_rec &a, const es_seq_rec &b) { return a.id < b.id; });
        size_t n = r.seqs.size();
        double rate_sum = 0;
        int rated = 0;
        for (const auto &q : r.seqs) {
            r.ttft_ns += q.first_ns;
            r.seq_ns_per_token += q.done_ns / (double)q.gen;
            if (q.first_ns > r.ttft_max_ns) r.ttft_max_ns = q.first_ns;
            if (q.gen > 1) {
                rate_sum += (double)(q.gen - 1) / ((q.done_ns - q.first_ns) * 1e-9);
                rated++;
            }
        }
        if (n) {
            r.ttft_ns /= (double)n;
            r.seq_ns_per_token /= (double)n;
        }
        r.decode_tokens_per_s = rated ? rate_sum / rated : 0;
    }
    if (!w.sink) {
        for (size_t k = 0; k < ctx.stream0.size(); k++) { /* request 0, in cycles */
            int64_t cyc = ctx.stream0[k];
            if (k == 0) r.ttft_cycles = cyc;
            else {
                int64_t step = cyc - ctx.stream0[k - 1];
                if (k == 1) r.step_first = step;
                r.step_last = step;
                r.step_total += step;
            }
        }
        for (const auto &kv : sc.inter) r.decode_intervals += kv.second;
        r.lat_p50_ns = percentile_counts(sc.inter, 50);
        r.lat_p99_ns = percentile_counts(sc.inter, 99);
    }
    r.tokens_per_s = r.seconds > 0 ? (double)r.tokens / r.seconds : 0;

    if (w.an_prompt > 0) {
        r.an_ttft_cycles = (int64_t)r.an.ttft_cycles;
        for (int64_t k = 1; k < w.an_gen; k++) {
            int64_t st = es_an_decode_step(pm, w.an_prompt + k - 1);
            if (k == 1) r.an_step_first = st;
            r.an_step_last = st;
            r.an_step_total += st;
        }
    }

    r.units.assign(ctx.units.begin(), ctx.units.end());
    double active = 0;
    for (auto &u : r.units) {
        r.dynamic_j += u.energy_j;
        u.area_mm2 = es_area_of_unit(c, m, &r.area, u.name);
        active += u.area_mm2 * (double)u.busy_cycles;
    }
    r.die_utilization = r.cycles > 0 ? active / (r.area.total_mm2 * (double)r.cycles) : 0;
    r.prefix_j = w.prefix > 0 ? ctx.seqs[0].pending_j : 0;
    r.unattributed_j = ctx.static_w * (double)(ctx.end_cycle - ctx.last_sample) / c->clock_hz + r.prefix_j +
                       g.static_fix(ctx.last_sample, ctx.end_cycle);
    /* static power: leakage and board per second; an ungated clock per cycle (the same at any clock) */
    r.total_j = g.first_slow >= 0 ? r.dynamic_j + g.fixed_w * r.seconds + g.clock_j * (double)r.cycles
                                  : r.dynamic_j + ctx.static_w * r.seconds;
    r.watts = r.seconds > 0 ? r.total_j / r.seconds : 0;
    r.joules_per_token = r.tokens ? r.total_j / (double)r.tokens : 0;
    std::sort(ctx.tap_rows.begin(), ctx.tap_rows.end(), [](const TapRow &a, const TapRow &b) { return a.pos < b.pos; });
    r.tap = std::move(ctx.tap_rows);
    r.moe = std::move(ctx.moe);
    if (vf.tf) { /* complete: into place */
        sc_core::sc_close_vcd_trace_file(vf.tf);
        vf.tf = nullptr;
        if (std::rename((vf.tmp + ".vcd").c_str(), vf.path.c_str()))
            return es_fail(e, "%s: cannot write the VCD trace: %s", vf.path.c_str(), std::strerror(errno));
        vf.tmp.clear();
    }
    es_trace *tr = ctx.trace;
    ctx.trace = nullptr;
    return es_trace_close(tr, 1, e);
}

} // namespace es
