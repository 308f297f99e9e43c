// es_top: a run (see es_top.h): its die built (es_die.h), the host driver run over it to the
// end, its figures collected.
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
#include "es_die.h"
#include "es_fs.h"
#include "es_proc.h"
#include "es_host.h"
#include "es_stack.h"
#include "es_stats.h"

namespace es {

namespace {
void op_doorbell(void *dev) { static_cast<HostDevice *>(dev)->doorbell.notify(sc_core::SC_ZERO_TIME); }
void op_wait(void *dev) { sc_core::wait(static_cast<HostDevice *>(dev)->cq_event); }
double op_now_ns(void *dev) { return static_cast<HostDevice *>(dev)->now_ns(); }
const es_dev_ops dev_ops = {op_doorbell, op_wait, op_now_ns};
} // namespace

namespace {

struct SourceCtx {             // adapts a Workload to the driver's C callbacks
    const Workload *w;
    Run *run;                  // the run's sequences, governor and error
    Ctx *ctx;                  // the chip (its datapath: functional mode)
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
    const Governor &g = s->run->gov;
    if (!s->run->error.empty()) return false; /* the run is stopping: nothing more to its sink */
    /* a request is done when its last token reaches the host: its last arrival cycle */
    while (!s->held.empty() && (all || g.known(s->held.front().second.last_arrival))) {
        es_err e{};
        auto &h = s->held.front();
        if (finish(s, h.first, h.second, &e)) {
            s->run->fail("%s", e.msg);
            s->held.clear();
            return false;
        }
        s->held.pop_front();
    }
    return true;
}

int src_next(void *arg, int64_t *id, int64_t *prompt, int64_t *max_new, int32_t *adapter, es_err *e)
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
    *adapter = q.adapter;
    if (s->ctx->dp) {
        if ((int64_t)q.ids.size() != q.prompt)
            return es_fail(e, "request %lld: %zu prompt token ids for %lld tokens", (long long)*id, q.ids.size(),
                           (long long)q.prompt);
        s->run->pending_prompts[(uint32_t)*id] = std::move(q.ids);
    }
    return 1;
}

int src_done(void *arg, const es_req_result *q, uint32_t slot, es_err *e)
{
    SourceCtx *s = static_cast<SourceCtx *>(arg);
    SeqState &st = s->run->seqs[slot];
    if (!s->run->error.empty()) return es_fail(e, "%s", s->run->error.c_str());
    if (!s->run->gov.on) return finish(s, *q, st, e);
    s->held.emplace_back(*q, st); /* its slot is reused: keep a copy */
    st.spans.clear();
    return release(s) ? 0 : es_fail(e, "%s", s->run->error.c_str());
}

/* A finished request, its times made real (power limit) and passed on: to the sink (eval) or the run's records. */
int finish(SourceCtx *s, es_req_result q, SeqState &st, es_err *e)
{
    const Governor &g = s->run->gov;
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
    rec.admit_ns = g.real_ns(s->run->cycles_to_ns((double)st.admit));
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

namespace {

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
};

/* A run through its phases: built (build), simulated (simulate), its figures collected (collect),
 * its trace and VCD written into place (close_outputs). Members are destroyed in reverse: the die
 * before the VCD file, both before the trace guard. */
struct Sim {
    const es_map *pm; /* the placement table of the first chip (of a chip alone: the one) */
    const es_chip *c;
    const es_model *m;
    const Workload &w;
    RunResult &r;
    Run run;  /* run-wide: the card, time, sequences, trace */
    Ctx ctx;  /* the first chip (a chip alone: the one) */
    /* a system: chips 1.. in pipeline order, their tables and areas, and every chip's die (the first's is die) */
    std::vector<const es_map *> pms;
    std::vector<es_area> areas;
    std::vector<std::unique_ptr<Ctx>> more;
    std::vector<std::unique_ptr<Die>> more_dies;
    struct TraceGuard { /* a run that fails removes its partial trace; one that finishes renames it into place */
        Run &r;
        ~TraceGuard() { es_trace_close(r.trace, 0, nullptr); }
    } tg{run};
    VcdFile vf;
    std::unique_ptr<Die> die;
    std::vector<std::unique_ptr<Switch>> switches; /* between stages when one has several chips */
    SourceCtx sc;
    int64_t total = 0; /* tokens the requests ask for (w.reqs) */
    /* areas[k]: chip k's area, computed before (the Ctx of each reads it for its leakage) */
    Sim(const es_map *const *pms_, int n, const std::vector<es_area> &areas_, const Workload &w_, RunResult &r_)
        : pm(pms_[0]), c(pms_[0]->chip), m(pms_[0]->model), w(w_), r(r_), run(pms_[0]->chip, n == 1 && !pms_[0]->chip->card.reactive),
          ctx(run, pms_[0], &areas_[0], n > 1 ? "c0_" : ""), pms(pms_, pms_ + n), areas(areas_),
          sc{&w_, &run, &ctx, 0, &r_, {}, {}}
    {
        for (int k = 1; k < n; k++) more.emplace_back(new Ctx(run, pms[(size_t)k], &areas[(size_t)k],
                                                              "c" + std::to_string(k) + "_"));
    }
    Ctx &chip(size_t k) { return k == 0 ? ctx : *more[k - 1]; }
    /* KV positions per layer the sequences in flight may hold: the fewest any stage holds. A stage of one chip, its
       own. An expert-parallel stage of E chips, each holding its own sequences whole (Ctx::kv_take_all: on the chip
       with the most free), sum(kv_cap) - (E - 1) x (L - 1), L the most positions a request holds (ep_request): a
       request of n <= L positions admitted within it always finds a chip with n free (were every chip short of n, the
       stage would hold at least sum(kv_cap) - E x (n - 1), and that and n more would exceed it) */
    int64_t kv_cap()
    {
        int64_t cap = INT64_MAX;
        for (size_t k = 0; k < n_chips(); k++) {
            const Ctx &x = chip(k);
            if (x.stage_index != 0) continue;
            if (!x.ep()) {
                cap = std::min(cap, x.kv_cap);
                continue;
            }
            int64_t sum = 0, L = ep_request(x);
            for (const Ctx *y : x.stage_chips) sum += y->kv_cap;
            cap = std::min(cap, std::max<int64_t>(0, sum - (int64_t)(x.stage_chips.size() - 1) * (L - 1)));
        }
        return cap;
    }
    /* the most KV positions a request may hold, which an expert-parallel stage (its first chip x) is sized for: the
       longest of the list, or a source's Workload::max_request (0: x's kv.slot_context) */
    int64_t ep_request(const Ctx &x) const
    {
        int64_t L = 0;
        for (const auto &q : w.reqs) L = std::max(L, q.prompt + q.gen);
        return w.source || L == 0 ? (w.max_request > 0 ? w.max_request : x.c->kv.slot_context) : L;
    }
    size_t n_chips() const { return pms.size(); }
};

/* A system's chips with card.power_limit_w (a chip alone with card.governor "reactive" too): each its own governor
 * (Throttle), against its own card's limit and static power (a tensor-parallel stage's chip: its copies', each card
 * under its own limit). */
int set_throttles(Sim &s, es_err *e)
{
    for (size_t k = 0; k < s.n_chips(); k++) {
        Ctx &x = s.chip(k);
        const es_chip *c = x.c;
        if (c->card.power_limit_w <= 0 || s.run.gov.on) continue; /* none, or the ideal governor's (a chip alone) */
        Throttle &t = x.thr;
        t.on = true;
        t.f_nom = t.f_open = t.min_f = c->clock_hz;
        t.step = c->card.clock_step_hz;
        t.limit = x.copies * c->card.power_limit_w;
        t.fixed_w = x.leak_w + x.copies * (c->card.board_w + (c->store.kind == ES_STORE_HBM ? c->store.static_w : 0));
        t.clock_j = x.clock_w / c->clock_hz;
        t.window_ps = (uint64_t)std::llround(c->card.power_window_s * 1e12);
        uint64_t p = x.period.value();
        t.segs.push_back({0, 0, p});
        t.next_ps = (t.window_ps + p - 1) / p * p;
        x.thr_ = &t;
        char which[96] = "";
        if (s.n_chips() > 1)
            std::snprintf(which, sizeof which, "chip %zu of the system (layers %lld..%lld): ", k,
                          (long long)x.m->layer_base, (long long)(x.m->layer_base + x.m->layers - 1));
        if (x.ep()) /* its tiles book the stage's other chips' lanes and links in its own cycles */
            return es_fail(e, "%s: key 'card.power_limit_w': %sa chip of an expert-parallel stage: the stage's chips "
                              "book each other's expert lanes in one count of cycles, so a clock of its own (its "
                              "governor's) is not modelled; set it to 0", c->path, which);
        if (t.limit <= t.fixed_w) /* an ungated clock slows with the clock; these do not */
            return es_fail(e, "%s: key 'card.power_limit_w': %s%.4g W is at or below its card's static power, %.4g W "
                              "(leakage / VR efficiency + board): no clock keeps the card under it", c->path, which,
                           t.limit, t.fixed_w);
    }
    return 0;
}

/* A system's stages: consecutive chips holding the same layers (several: an expert-parallel stage, es_system.h),
 * each chip told its stage, its stage's chips and, on an expert-parallel stage, its links to them. An expert-parallel
 * stage holds neither end of the model, and is timed at the transaction fidelity only. */
int set_stages(Sim &s, es_err *e)
{
    int stage = -1;
    for (size_t k = 0; k < s.n_chips(); k++) {
        Ctx &x = s.chip(k);
        if (k == 0 || x.m->layer_base != s.chip(k - 1).m->layer_base) stage++;
        x.stage = stage;
    }
    for (size_t k = 0; k < s.n_chips(); k++) {
        Ctx &x = s.chip(k);
        for (size_t j = 0; j < s.n_chips(); j++) {
            if (s.chip(j).stage != x.stage) continue;
            if (j == k) x.stage_index = (int)x.stage_chips.size();
            x.stage_chips.push_back(&s.chip(j));
        }
        if (!x.ep()) continue;
        if (x.m->has_embed || x.m->has_head)
            return es_fail(e, "%s: an expert-parallel stage (chips holding layers %lld..%lld, each some experts) holding "
                              "the %s is not modelled; give the first and the last layers a chip of their own",
                           x.c->path, (long long)x.m->layer_base, (long long)(x.m->layer_base + x.m->layers - 1),
                           x.m->has_embed ? "embedding table" : "LM head");
        if (s.w.prefix > 0)
            return es_fail(e, "--prefix: a shared prefix on an expert-parallel stage (%s and the chips sharing its "
                              "layers) is not modelled", x.c->path);
        if (s.w.dp)
            return es_fail(e, "--functional: an expert-parallel stage (%s and the chips sharing its layers) is simulated "
                              "in timing only; drop --functional or give each chip its own layers", x.c->path);
        x.a2a_out.assign(x.stage_chips.size(), Server(1));
        x.a2a_stat = x.unit((x.prefix + "a2a").c_str());
    }
    /* tile.sync_step: the chips of the first stage setting it form the steps (es_system.h); a barrier on two chips in
       series could wait on each other when sequences interleave (each holding a token the other's step awaits) */
    int former = -1;
    for (size_t k = 0; k < s.n_chips(); k++) {
        Ctx &x = s.chip(k);
        if (x.c->tile.sync_step && former < 0) former = x.stage;
        x.steps = x.c->tile.sync_step && x.stage == former;
    }
    return 0;
}

/* The dies after the first, stage by stage: a chip after a chip is chained to it (a card link); a Switch joins two
 * stages when either has several chips. */
void build_stages(Sim &s, bool vcd)
{
    std::vector<Die *> before{s.die.get()};
    std::vector<Ctx *> from{&s.chip(0)}; /* the chips of `before` */
    for (size_t k = 1; k < s.n_chips();) {
        size_t end = k;
        while (end < s.n_chips() && s.chip(end).stage == s.chip(k).stage) end++;
        std::vector<Die *> now;
        std::vector<Ctx *> to;
        for (size_t j = k; j < end; j++) to.push_back(&s.chip(j));
        if (end - k == 1 && before.size() == 1) {
            s.more_dies.emplace_back(new Die(s.chip(k), vcd, before[0], s.die.get()));
            now.push_back(s.more_dies.back().get());
        } else {
            int depth = (int)s.chip(k).c->sched.fifo_depth;
            std::string nm = "stage" + std::to_string(s.chip(k).stage) + "_switch";
            s.switches.emplace_back(new Switch(nm.c_str(), s.run, s.chip(k).stage, from, to, depth));
            Switch &sw = *s.switches.back();
            for (size_t i = 0; i < before.size(); i++) before[i]->bind_out(*sw.in[i]);
            for (size_t j = k; j < end; j++) {
                s.more_dies.emplace_back(new Die(s.chip(j), vcd, nullptr, s.die.get(), sw.out[j - k].get()));
                now.push_back(s.more_dies.back().get());
            }
        }
        before = now;
        from = to;
        k = end;
    }
}

/* Check the workload against the chip, set the run's context up, open the trace and VCD files,
 * build the die. */
int build(Sim &s, es_err *e)
{
    Run &run = s.run;
    const es_chip *c = s.c;
    const es_model *m = s.m;
    const Workload &w = s.w;
    Ctx &ctx = s.ctx;
    if (set_stages(s, e) || set_throttles(s, e)) return -1;
    /* each chip holds its own layers' KV; a sequence holds positions on every chip, so the fewest bound it */
    int64_t kv_cap = INT64_MAX;
    for (size_t k = 0; k < s.n_chips(); k++) {
        Ctx &x = s.chip(k);
        x.kv_cap = x.map->kv_positions; /* less a LoRA adapter's share (es_map_set_adapter) */
        /* each chip of a system is a card: its board (and HBM) static power joins the first's; a tensor-parallel
           stage's chip stands for tp cards */
        double cards = (x.m->tp > 1 ? (double)x.m->tp : 1.0) - (k == 0 ? 1.0 : 0.0);
        run.static_w += cards * x.c->card.board_w;
        if (x.c->store.kind == ES_STORE_HBM) run.static_w += cards * x.c->store.static_w;
        if (run.gov.on) /* a power limit: a chip alone, or a tensor-parallel stage alone */
            run.gov.fixed_w += cards * (x.c->card.board_w + (x.c->store.kind == ES_STORE_HBM ? x.c->store.static_w : 0));
        if (x.m->tp > 1 && (w.dp || w.cycle))
            return es_fail(e, "%s: a stage of %lld chips splitting each layer's matrices (tensor_parallel) is "
                              "simulated as one chip holding its shard, in timing only at the transaction fidelity: "
                              "drop %s", x.c->path, (long long)x.m->tp, w.dp ? "--functional" : "--fidelity cycle");
    }
    kv_cap = s.kv_cap();
    /* a tensor-parallel stage alone (a system of one entry): its tp cards, alike, each under its own limit */
    if (s.n_chips() == 1 && ctx.copies > 1) run.gov.limit *= ctx.copies;
    if (run.gov.on && run.gov.limit <= run.gov.fixed_w) /* an ungated clock slows with the clock; these do not */
        return es_fail(e, "%s: key 'card.power_limit_w': %.4g W is at or below the card's static power, %.4g W "
                          "(leakage / VR efficiency + board): no clock keeps the card under it",
                       c->path, run.gov.limit, run.gov.fixed_w);
    /* a list of requests never has more sequences in flight than it has requests (a KV of many GB would
     * otherwise size the feedback and completion FIFOs at hundreds of thousands of items) */
    for (size_t k = 0; k < s.n_chips(); k++)
        s.chip(k).seq_cap = w.source ? kv_cap : std::min<int64_t>(kv_cap, (int64_t)w.reqs.size() + 1);
    run.seq_tokens = w.seq_tokens || !w.sink; /* run: every token's record, streamed as its request finishes */
    for (const auto &q : w.reqs) s.total += q.gen;
    run.progress = w.progress && !w.source;
    run.total_tokens = s.total;
    for (size_t k = 0; k < s.n_chips(); k++) s.chip(k).dp = w.dp;
    run.cycle = w.cycle;
    ctx.cosim_depth = w.cosim_depth;
    if (w.cycle && m->experts > 0)
        return es_fail(e, "--fidelity cycle: %s routes tokens to experts, which only the transaction fidelity "
                          "books; use a dense or state-space model", m->name);
    run.prefix_ids = w.prefix_ids;
    run.tap_id = w.tap_id;
    run.stop_at_eog = w.dp ? w.stop_at_eog : nullptr; /* timing mode produces no tokens to stop at */
    run.routing = w.routing;
    if (w.dp && w.prefix > 0 && (int64_t)w.prefix_ids.size() != w.prefix)
        return es_fail(e, "the shared prefix has %zu token ids for %lld tokens", w.prefix_ids.size(), (long long)w.prefix);
    if (!w.trace_path.empty() &&
        es_trace_open(&run.trace, w.trace_path.c_str(), c->clock_hz, w.trace_start_ns, w.trace_end_ns, e))
        return -1;
    VcdFile &vf = s.vf;
    if (!w.vcd_path.empty()) {
        if (es_check_output(w.vcd_path.c_str(), "a VCD trace", e)) return -1;
        vf.path = w.vcd_path;
        vf.tmp = w.vcd_path + ".tmp";
        vf.cleanup = es_cleanup_add((vf.tmp + ".vcd").c_str(), 0);
    }
    s.die.reset(new Die(ctx, !vf.path.empty()));
    build_stages(s, !vf.path.empty());
    if (s.die->has_vcd()) {
        vf.tf = sc_core::sc_create_vcd_trace_file(vf.tmp.c_str());
        if (!vf.tf) return es_fail(e, "%s: cannot write the VCD trace", vf.path.c_str());
        vf.tf->set_time_unit(1, sc_core::SC_PS);
        s.die->trace(vf.tf);
        for (auto &d : s.more_dies) d->trace(vf.tf); /* each chip's signals, prefixed */
    }
    return 0;
}

/* Open the host driver on the die, simulate to the end, pass the held requests on. */
int simulate(Sim &s, es_err *e)
{
    Run &run = s.run;
    const Workload &w = s.w;
    es_drv_cfg dc{};
    dc.kv_positions = s.kv_cap();
    dc.policy = w.policy;
    dc.prefix_tokens = w.prefix;
    dc.prefix_adapter = w.prefix_adapter + 1;
    dc.per_request = s.m->ssm_state > 0 ? 1 : 0; /* a fixed state per sequence, whatever its length */
    dc.sq_depth = 256;
    dc.cq_depth = 4096;
    dc.window = w.window;
    es_drv *drv = es_drv_open(&dc, &dev_ops, s.die->dev, e);
    if (!drv) return -1;
    SourceCtx &sc = s.sc;
    run.gov.on_close = [&sc]() { release(&sc); };
    es_drv_source src{src_next, src_done, &sc};
    s.die->dev->drv = drv;
    s.die->prog->src = &src;
    sc_core::sc_start();
    stack_restore(); /* the sanitizer's view of the main stack (es_stack.h) */
    if (run.progress) std::fprintf(stderr, "\r%60s\r", "");
    s.r.max_in_flight = run.max_in_flight;
    es_drv_close(drv);
    if (!run.error.empty()) return es_fail(e, "%s", run.error.c_str());

    run.gov.close_last(run.end_cycle); /* the last window's clock: the held requests pass on */
    for (size_t k = 0; k < s.n_chips(); k++) s.chip(k).thr.close_last(run.ps_of(run.end_cycle)); /* a system's */
    release(&sc, true);
    if (!run.error.empty()) return es_fail(e, "%s", run.error.c_str());
    if (!sc.held.empty()) return es_fail(e, "%zu finished requests were never passed on", sc.held.size());
    if (!w.source && !w.sink && s.r.seqs.size() != w.reqs.size())
        return es_fail(e, "%zu of %zu requests finished", s.r.seqs.size(), w.reqs.size());
    return 0;
}

/* run: per-sequence figures, request 0's steps and the token latencies, sim and analytic */
void collect_streams(Sim &s)
{
    const Run &run = s.run;
    RunResult &r = s.r;
    if (!s.w.sink) {
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
        for (size_t k = 0; k < run.stream0.size(); k++) { /* request 0, in cycles */
            int64_t cyc = run.stream0[k];
            if (k == 0) r.ttft_cycles = cyc;
            else {
                int64_t step = cyc - run.stream0[k - 1];
                if (k == 1) r.step_first = step;
                r.step_last = step;
                r.step_total += step;
            }
        }
        for (const auto &kv : s.sc.inter) r.decode_intervals += kv.second;
        r.lat_p50_ns = percentile_counts(s.sc.inter, 50);
        r.lat_p99_ns = percentile_counts(s.sc.inter, 99);
    }
    r.tokens_per_s = r.seconds > 0 ? (double)r.tokens / r.seconds : 0;

    if (s.w.an_prompt > 0) {
        r.an_ttft_cycles = (int64_t)r.an.ttft_cycles; /* a system: 0 (not modelled) */
        for (int64_t k = 1; k < s.w.an_gen; k++) {
            int64_t st = s.n_chips() == 1 ? es_an_decode_step(s.pm, s.w.an_prompt + k - 1)
                                          : es_an_system_decode_step(s.pms.data(), (int)s.n_chips(), s.w.an_prompt + k - 1);
            if (k == 1) r.an_step_first = st;
            r.an_step_last = st;
            r.an_step_total += st;
        }
        if (s.n_chips() > 1) { /* a system: one stream's decode (its steps summed, as es_an_summarize does) and the
                                  sequences every chip's KV holds; its time to first token and knee are not modelled */
            const int64_t gen = s.w.an_gen, mid = s.w.an_prompt + gen / 2;
            r.an.decode_tokens_per_s = gen > 1 && r.an_step_total > 0 ? (double)(gen - 1) / (double)r.an_step_total * s.c->clock_hz : 0;
            r.an.step_mid_cycles = (double)es_an_system_decode_step(s.pms.data(), (int)s.n_chips(), mid);
            r.an.kv_slots = s.m->ssm_state > 0 ? s.kv_cap() : s.kv_cap() / (s.w.an_prompt + gen);
        }
    }
}

/* the units' statistics and areas, the die's utilization, the run's energy and power */
void collect_energy(Sim &s)
{
    Run &run = s.run;
    RunResult &r = s.r;
    Ctx &ctx = s.ctx;
    const Governor &g = run.gov;
    r.units.clear();
    double active = 0;
    for (size_t k = 0; k < s.n_chips(); k++) { /* each chip's units, their areas on its die */
        Ctx &x = s.chip(k);
        double chip_j = 0, chip_active = 0;
        int64_t chip_busy = 0;
        for (const es_unit_rec &u0 : x.units) {
            r.units.push_back(u0);
            es_unit_rec &u = r.units.back();
            r.dynamic_j += u.energy_j;
            chip_j += u.energy_j;
            u.area_mm2 = es_area_of_unit(x.c, x.m, &s.areas[k], u.name + x.prefix.size());
            chip_active += u.area_mm2 * (double)u.busy_cycles;
            chip_busy += u.busy_cycles;
            if (x.period != run.period) /* its cycles as the run's (its chip's own: r.chips) */
                u.busy_cycles = (int64_t)std::llround((double)u.busy_cycles * (run.clock_hz / x.clock_hz));
            active += x.copies * u.area_mm2 * (double)u.busy_cycles; /* r.area counts a stage's tp chips */
        }
        if (s.n_chips() > 1 || x.copies > 1) { /* a system's chips (a tensor-parallel stage alone too) */
            ChipResult cr;
            cr.name = x.c->name;
            cr.prefix = x.prefix;
            cr.layer_first = x.m->layer_base;
            cr.layer_last = x.m->layer_base + x.m->layers - 1;
            cr.area = s.areas[k];
            cr.kv_positions = x.kv_cap;
            cr.kv_max_used = x.kv_max_used;
            cr.dynamic_j = chip_j;
            cr.leak_w = x.leak_w;
            cr.board_w = x.copies * x.c->card.board_w;
            cr.copies = (int64_t)x.copies;
            cr.clock_hz = x.clock_hz;
            cr.cycles = run.cycle_to(x, run.end_cycle);
            cr.busy_cycles = chip_busy;
            cr.die_utilization = cr.cycles > 0 ? chip_active / (s.areas[k].total_mm2 * (double)cr.cycles) : 0;
            if (x.thr.on) { /* its own governor */
                cr.power_limit_w = x.thr.limit;
                cr.throttled_s = x.thr.throttled_s;
                cr.min_clock_hz = x.thr.min_f;
                cr.window_s = x.c->card.power_window_s;
                cr.window_w = x.thr.window_w;
                cr.window_clock_hz = x.thr.window_hz;
            }
            r.chips.push_back(cr);
            r.sys_leak_w += x.leak_w; /* Ctx: its copies' already */
            r.sys_clock_w += x.clock_w;
            r.sys_board_w += cr.board_w;
            if (x.c->store.kind == ES_STORE_HBM) r.sys_store_w += x.copies * x.c->store.static_w;
        }
    }
    r.die_utilization = r.cycles > 0 ? active / (r.area.total_mm2 * (double)r.cycles) : 0;
    r.store_busy_cycles = ctx.wstore ? ctx.wstore->busy_cycles : -1;
    r.prefix_j = s.w.prefix > 0 ? run.seqs[0].pending_j : 0;
    r.unattributed_j = run.static_w * (double)(run.end_cycle - run.last_sample) / s.c->clock_hz + r.prefix_j +
                       g.static_fix(run.last_sample, run.end_cycle) + run.clock_fix(run.last_sample, run.end_cycle);
    /* static power: leakage and board per second; an ungated clock per cycle (the same at any clock; a system's
       chip its governor slowed: its own cycles, clock_fix) */
    r.total_j = g.first_slow >= 0 ? r.dynamic_j + g.fixed_w * r.seconds + g.clock_j * (double)r.cycles
                                  : r.dynamic_j + run.static_w * r.seconds + run.clock_fix(0, run.end_cycle);
    r.watts = r.seconds > 0 ? r.total_j / r.seconds : 0;
    r.joules_per_token = r.tokens ? r.total_j / (double)r.tokens : 0;
}

/* What the run measured, into its result. */
int collect(Sim &s, es_err *e)
{
    Run &run = s.run;
    const es_chip *c = s.c;
    RunResult &r = s.r;
    Ctx &ctx = s.ctx;
    const Governor &g = run.gov;
    r.clock_hz = c->clock_hz;
    r.cycles = run.end_cycle;
    r.seconds = g.first_slow >= 0 ? g.real_s((double)r.cycles) : (double)r.cycles / c->clock_hz;
    if (g.on) {
        r.power_limit_w = g.limit; /* a tensor-parallel stage alone: its cards' */
        r.throttled_s = g.throttled_s;
        r.min_clock_hz = g.min_f;
        r.window_w = g.window_w;
        r.window_s = c->card.power_window_s;
    }
    if (s.n_chips() == 1 && ctx.thr.on) { /* card.governor reactive: the chip's own cycles, as the ideal's count them */
        const Throttle &t = ctx.thr;
        r.cycles = run.cycle_to(ctx, run.end_cycle);
        r.power_limit_w = t.limit;
        r.throttled_s = t.throttled_s;
        r.min_clock_hz = t.min_f;
        r.window_w = t.window_w;
        r.window_clock_hz = t.window_hz;
        r.window_s = c->card.power_window_s;
    }
    r.tokens = run.sampled;
    if (!s.w.source && r.tokens != s.total)
        return es_fail(e, "simulation ended with %lld of %lld tokens produced (deadlock)", (long long)r.tokens,
                       (long long)s.total);
    r.kv_positions = s.kv_cap();
    r.kv_max_used = ctx.kv_max_used;
    r.prefill_passes = run.prefill_passes;
    r.static_w = run.static_w;
    r.clock_w = ctx.clock_w;
    collect_streams(s);
    collect_energy(s);
    std::sort(run.tap_rows.begin(), run.tap_rows.end(), [](const TapRow &a, const TapRow &b) { return a.pos < b.pos; });
    r.tap = std::move(run.tap_rows);
    r.moe = std::move(ctx.moe);
    return 0;
}

/* A complete run's VCD and trace files, renamed into place. */
int close_outputs(Sim &s, es_err *e)
{
    VcdFile &vf = s.vf;
    if (vf.tf) { /* complete: into place */
        sc_core::sc_close_vcd_trace_file(vf.tf);
        vf.tf = nullptr;
        if (std::rename((vf.tmp + ".vcd").c_str(), vf.path.c_str()))
            return es_fail(e, "%s: cannot write the VCD trace: %s", vf.path.c_str(), std::strerror(errno));
        vf.tmp.clear();
    }
    es_trace *tr = s.run.trace;
    s.run.trace = nullptr;
    return es_trace_close(tr, 1, e);
}

} // namespace

int run_sim(const es_map *const *pms, int n, const Workload &w, RunResult &r, es_err *e)
{
    std::vector<es_area> areas((size_t)n);
    r.area = es_area{};
    for (int k = 0; k < n; k++) {
        es_area_compute(pms[k], &areas[(size_t)k]);
        for (int64_t c = 0; c < (pms[k]->model->tp > 1 ? pms[k]->model->tp : 1); c++)
            es_area_add(&r.area, &areas[(size_t)k]); /* a chip alone: its own; a tensor-parallel stage: tp chips' */
    }
    if (w.an_prompt > 0 && n == 1) es_an_summarize(pms[0], w.an_prompt, w.an_gen, &r.an);
    Sim s(pms, n, areas, w, r);
    if (build(s, e) || simulate(s, e) || collect(s, e)) return -1;
    return close_outputs(s, e);
}

int run_sim(const es_map *pm, const Workload &w, RunResult &r, es_err *e) { return run_sim(&pm, 1, w, r, e); }

} // namespace es
