// es_ctx: shared run state and the energy ledger (see es_ctx.h).
#include "es_ctx.h"
#include <algorithm>
#include <cmath>
#include "es_stats.h"
#include <cstdarg>
#include <cstring>

namespace es {

std::ostream &operator<<(std::ostream &os, const Item &it)
{
    return os << "seq " << it.seq << " pos " << it.pos << " n " << it.n;
}

Clock::Clock(const es_chip *c, Run *run) : clock_hz(c->clock_hz), fail_to_(run)
{
    period = sc_core::sc_time((double)es_an_period_ps(c), sc_core::SC_PS);
    max_cycle = (int64_t)(((uint64_t)1 << 63) / period.value()); /* half of SystemC's range: sums stay inside it */
}

Run::Run(const es_chip *card, bool ideal) : Clock(card, this)
{
    dyn_scale = 1.0 / card->card.vr_eff;
    static_w = card->card.board_w; /* the dies' leakage and clocks join it as they are built (add_die) */
    if (card->store.kind == ES_STORE_HBM) static_w += card->store.static_w; /* off the die: at the card, as the board */
    if (ideal && card->card.power_limit_w > 0) {
        gov.on = true;
        gov.f_nom = card->clock_hz;
        gov.W = (int64_t)(card->card.power_window_s * card->clock_hz + 0.5);
        if (gov.W < 1) gov.W = 1;
        gov.step = card->card.clock_step_hz;
        gov.limit = card->card.power_limit_w;
        gov.fixed_w = static_w;
        gov.min_f = card->clock_hz;
    }
}

void Run::add_die(double leak_w, double clock_w)
{
    static_w += leak_w;
    static_w += clock_w;
    if (gov.on) {
        gov.fixed_w += leak_w;
        gov.clock_j += clock_w / clock_hz;
    }
}

Ctx::Ctx(Run &r, const es_map *pm, const es_area *a, const std::string &pfx)
    : Clock(pm->chip, &r), run(r), prefix(pfx), map(pm), c(pm->chip), m(pm->model)
{
    run.chips.push_back(this);
    const es_chip *chip = c;
    const es_model *model = m;
    if (chip->gating == ES_GATING_NONE) /* every register clocked every cycle: a constant power */
        clock_w = ((double)es_chip_tiles(chip, model) * es_chip_tile_register_bits(chip) + es_chip_head_register_bits(chip)) *
                  (chip->process.e_reg_bit + chip->process.e_clk_net) * chip->clock_hz / chip->card.vr_eff;
    copies = model->tp > 1 ? (double)model->tp : 1.0;
    clock_w *= copies;
    leak_w = copies * a->leak_total_w / chip->card.vr_eff;
    run.add_die(leak_w, clock_w);
}

int64_t Ctx::allreduce(int64_t ready, int32_t seq, int64_t n, int64_t bits_each)
{
    if (!ring) return ready;
    int64_t occ, lat;
    es_events ev{};
    es_an_allreduce(map, n, bits_each, &occ, &lat, &ev.card_bits);
    int64_t s0 = ring->book(now(), ready, occ);
    ring_stat->items++;
    ring_stat->tokens += n;
    ring_stat->busy_cycles += occ;
    charge(ring_stat, seq, ev);
    return s0 + occ + lat;
}

void Governor::close_one(int64_t len)
{
    /* window `closed`: e_open dynamic joules in len cycles. At clock f it lasts len / f seconds and
     * draws (e_open + clock_j len) f / len + fixed_w; the highest step with that <= limit */
    double fl = f_nom, per_cycle = (e_open + clock_j * (double)len) / (double)len;
    if (per_cycle * f_nom + fixed_w > limit) {
        double fmax = (limit - fixed_w) / per_cycle;
        fl = f_nom - std::ceil((f_nom - fmax) / step - 1e-9) * step;
        if (fl <= 0) fl = fmax; /* below the lowest step: exactly the limit */
    }
    if (fl < f_nom && first_slow < 0) first_slow = closed;
    if (first_slow >= 0) { /* windows before the last are whole */
        start_s.push_back(closed == first_slow ? (double)closed * (double)W / f_nom : start_s.back() + (double)W / f.back());
        f.push_back(fl);
    }
    double dur = (double)len / fl;
    window_w.push_back((e_open + clock_j * (double)len) / dur + fixed_w);
    if (fl < f_nom) throttled_s += dur;
    if (fl < min_f) min_f = fl;
    e_open = 0;
    closed++;
}

void Governor::close_to(int64_t k)
{
    if (closed >= k) return;
    while (closed < k) close_one(W);
    if (on_close) on_close();
}

void Governor::close_last(int64_t end)
{
    if (!on) return;
    close_to(end / W);
    if (end > closed * W) {
        close_one(end - closed * W);
        if (on_close) on_close();
    }
}

double Governor::static_fix(int64_t from, int64_t at) const
{
    if (first_slow < 0) return 0;
    return fixed_w * ((real_s((double)at) - real_s((double)from)) - (double)(at - from) / f_nom);
}

double Governor::real_s(double c) const
{
    int64_t k = (int64_t)(c / (double)W);
    if (first_slow < 0 || k < first_slow) return c / f_nom;
    size_t i = (size_t)(k - first_slow);
    if (i >= f.size()) i = f.size() - 1; /* the run's end, on the last window's boundary */
    return start_s[i] + (c - (double)(first_slow + (int64_t)i) * (double)W) / f[i];
}

int64_t Clock::now() const
{
    uint64_t ps = sc_core::sc_time_stamp().value();
    if (ps != now_ps_) {
        if (thr_ && ps >= thr_->next_ps) thr_->close_to(ps); /* a window ended: its clock changes first */
        now_ps_ = ps;
        now_cycle_ = thr_ ? cycle_at(ps) : (int64_t)((ps + period.value() - 1) / period.value()); /* woken by another
                                                                                   chip: its next edge */
    }
    return now_cycle_;
}

namespace {
const uint64_t ps_end = (uint64_t)1 << 63; /* SystemC's time, as max_cycle counts it */
}

uint64_t Clock::ps_of(int64_t cyc) const
{
    if (cyc < 0) cyc = 0;
    if (!thr_) return (uint64_t)cyc * period.value();
    const std::vector<Throttle::Seg> &v = thr_->segs;
    auto it = std::upper_bound(v.begin(), v.end(), cyc, [](int64_t c, const Throttle::Seg &g) { return c < g.cycle; });
    const Throttle::Seg &g = *(it - 1); /* segs[0] starts at cycle 0 */
    uint64_t d = (uint64_t)(cyc - g.cycle);
    return d > (ps_end - g.ps) / g.period ? ps_end : g.ps + d * g.period;
}

int64_t Clock::cycle_at(uint64_t ps) const
{
    if (!thr_) return (int64_t)((ps + period.value() - 1) / period.value());
    const std::vector<Throttle::Seg> &v = thr_->segs;
    auto it = std::upper_bound(v.begin(), v.end(), ps, [](uint64_t p, const Throttle::Seg &g) { return p < g.ps; });
    const Throttle::Seg &g = *(it - 1);
    return g.cycle + (int64_t)((ps - g.ps + g.period - 1) / g.period);
}

sc_core::sc_time Clock::delay_to(int64_t cycle)
{
    int64_t t = now();
    uint64_t ps = sc_core::sc_time_stamp().value(), p = period.value();
    uint64_t to = thr_ ? ps_of(cycle) : 0;
    if (cycle > max_cycle || cycle < t || to >= ps_end) {
        fail_to_->fail("simulated time would pass %lld cycles (%.4g s at this clock), the most SystemC's 64-bit time in "
             "picoseconds can count: the run is too long for this chip; shorten it or speed the chip up",
             (long long)max_cycle, (double)max_cycle / clock_hz);
        return sc_core::SC_ZERO_TIME;
    }
    if (thr_) /* a governed clock: to the cycle, or to the window's end, where its clock may change (wait_until) */
        return sc_core::sc_time::from_value((to < thr_->next_ps ? to : thr_->next_ps) - ps);
    if (ps % p == 0) return period * (double)(cycle - t); /* on an edge (a chip alone: always) */
    return sc_core::sc_time::from_value((uint64_t)cycle * p - ps); /* woken by another chip's clock: to the edge */
}

void Clock::wait_cycles(int64_t n)
{
    if (n > 0) wait_until(now() + n);
}

void Clock::wait_until(int64_t cycle)
{
    while (cycle > now()) {
        sc_core::sc_time d = delay_to(cycle);
        if (d == sc_core::SC_ZERO_TIME) {
            sc_core::wait(sc_core::SC_ZERO_TIME);
            return;
        }
        sc_core::wait(d);
        if (!thr_) return; /* a governed clock: a window may have ended on the way */
    }
}

double Throttle::pick(double e, int64_t n) const
{
    double per_cycle = (e + clock_j * (double)n) / (double)n; /* card joules per cycle, at any clock */
    for (int64_t j = 0; step > 0; j++) {
        double f = f_nom - (double)j * step;
        if (f <= 0) break;
        if (per_cycle * (1e12 / (double)period_ps(f)) + fixed_w <= limit) return f;
    }
    double fmax = (limit - fixed_w) / per_cycle; /* below the lowest step: the whole period that keeps under it */
    return 1e12 / std::ceil(1e12 / fmax);
}

void Throttle::close_window(int64_t n, uint64_t dur_ps)
{
    double dur = (double)dur_ps * 1e-12;
    window_w.push_back((e_open + clock_j * (double)n) / dur + fixed_w);
    window_hz.push_back(f_open);
    if (f_open < f_nom) throttled_s += dur;
    if (f_open < min_f) min_f = f_open;
}

void Throttle::close_to(uint64_t ps)
{
    while (ps >= next_ps) {
        uint64_t p = segs.back().period;
        int64_t n = (int64_t)((next_ps - open_ps) / p);
        close_window(n, next_ps - open_ps);
        double f = pick(e_open, n);
        e_open = 0;
        open_ps = next_ps;
        open_cycle += n;
        k++;
        uint64_t np = period_ps(f);
        if (np != p) segs.push_back({open_ps, open_cycle, np});
        f_open = f;
        uint64_t end = (uint64_t)(k + 1) * window_ps; /* real time; the window ends on its first edge there or after */
        next_ps = open_ps + (end > open_ps ? (end - open_ps + np - 1) / np : 1) * np;
    }
}

void Throttle::close_last(uint64_t end_ps)
{
    if (!on) return;
    close_to(end_ps);
    if (end_ps > open_ps) {
        uint64_t p = segs.back().period;
        close_window((int64_t)((end_ps - open_ps + p - 1) / p), end_ps - open_ps);
        e_open = 0;
        open_ps = end_ps;
    }
}

void Ctx::add_energy(double j)
{
    run.gov.add(run.now(), j);
    if (thr.on) {
        now(); /* the windows before now closed */
        thr.e_open += j;
    }
}

double Run::clock_fix(int64_t from, int64_t to) const
{
    double fix = 0;
    for (const Ctx *k : chips) {
        if (!k->thr.slowed() || k->clock_w == 0) continue;
        uint64_t a = std::max(ps_of(from), k->thr.segs[1].ps), b = ps_of(to);
        if (b <= a) continue;
        fix += k->thr.clock_j * (double)(k->cycle_at(b) - k->cycle_at(a)) - k->clock_w * (double)(b - a) * 1e-12;
    }
    return fix;
}

es_unit_rec *Ctx::unit(const char *name)
{
    units.emplace_back();
    es_unit_rec *u = &units.back();
    std::memset(u, 0, sizeof *u);
    std::snprintf(u->name, sizeof u->name, "%s", name);
    return u;
}

void Ctx::charge(es_unit_rec *u, int32_t seq, const es_events &ev)
{
    es_events all = ev; /* a tensor-parallel stage: its copies' events (each chip's shard does the same work) */
    if (copies > 1) es_events_scale(&all, copies);
    double j = es_events_joules(c, &all) * run.dyn_scale;
    add_energy(j);
    es_events_add(&u->ev, &all);
    u->energy_j += j;
    run.seqs[(size_t)seq].pending_j += j;
}

SeqState &Run::seq(uint32_t slot)
{
    while (seqs.size() <= slot) seqs.emplace_back();
    return seqs[slot];
}

void Run::sample(int32_t seq_id, Item &cpl)
{
    SeqState &s = seqs[(size_t)seq_id];
    int64_t t = now();
    for (Ctx *k : chips)
        if (k->thr.on) k->now(); /* a governed chip's windows closed to now */
    double j = s.pending_j + static_w * (double)(t - last_sample) / clock_hz + clock_fix(last_sample, t);
    if (gov.on) { /* its static share at the nominal clock; made real once its windows' clocks are known */
        s.spans.emplace_back(last_sample, t);
    }
    s.pending_j = 0;
    last_sample = t;
    cpl.tok_idx = (int32_t)s.produced++;
    cpl.tok_j = j;
    sampled++;
}

} // namespace es

namespace es {

void Ctx::kv_take(int64_t n)
{
    kv_used += n;
    if (kv_used > kv_max_used) kv_max_used = kv_used;
    if (run.trace) es_trace_counter(run.trace, "KV positions held", run.now(), (double)kv_used);
    run.vcd_touch();
    if (kv_used > kv_cap)
        run.fail("KV SRAM overflow: %lld positions held, the chip%s%.*s holds %lld", (long long)kv_used,
                 prefix.empty() ? "" : " ", prefix.empty() ? 0 : (int)prefix.size() - 1, prefix.c_str(), (long long)kv_cap);
}

void Ctx::kv_take_all(SeqState &s, int64_t n)
{
    s.home.assign((size_t)run.chips.back()->stage + 1, 0);
    for (Ctx *k : run.chips) {
        if (!k->ep()) {
            k->kv_take(n);
            continue;
        }
        if (k->stage_index != 0) continue; /* the stage's first chip chooses for it */
        Ctx *best = k;
        for (Ctx *x : k->stage_chips)
            if (x->kv_cap - x->kv_used > best->kv_cap - best->kv_used) best = x;
        s.home[(size_t)k->stage] = best->stage_index;
        best->kv_take(n);
    }
}

void Ctx::kv_give_all(const SeqState &s, int64_t n)
{
    for (Ctx *k : run.chips)
        if (!k->ep() || s.home[(size_t)k->stage] == k->stage_index) k->kv_give(n);
}

void Ctx::kv_give(int64_t n)
{
    kv_used -= n;
    if (run.trace) es_trace_counter(run.trace, "KV positions held", run.now(), (double)kv_used);
    run.vcd_touch();
}

void Ctx::tap(int32_t seq, int64_t pos, int32_t token, const float *x)
{
    TapRow r{pos, token, std::vector<float>((size_t)m->vocab)};
    es_err e{};
    if (es_dp_head(dp, x, r.logits.data(), &e)) {
        run.fail("sequence %d position %lld: %s", seq, (long long)pos, e.msg);
        return;
    }
    run.tap_rows.push_back(std::move(r));
}

void Run::route(const es_model *m, int32_t seq, int64_t pos, int layer, int32_t *out)
{
    const int64_t E = es_model_experts_all(m), k = m->top_k; /* the model's experts, whichever chip holds them */
    if (routing.kind == 2 && !routing.replay.empty()) {
        const std::vector<int32_t> &r = routing.replay[replay_next++ % routing.replay.size()];
        for (int64_t i = 0; i < k; i++) out[i] = r[(size_t)i];
        return;
    }
    /* a stream of its own per (request, position, layer): the same run routes the same way */
    uint64_t st = routing.seed ^ ((uint64_t)seqs[(size_t)seq].tag * 0x9E3779B97F4A7C15ULL) ^
                  ((uint64_t)pos * 0xC2B2AE3D27D4EB4FULL) ^ ((uint64_t)layer * 0x165667B19E3779F9ULL);
    std::vector<double> w((size_t)E);
    double sum = 0;
    for (int64_t e = 0; e < E; e++) sum += w[(size_t)e] = routing.kind == 1 ? std::pow((double)(e + 1), -routing.zipf_s) : 1.0;
    for (int64_t i = 0; i < k; i++) { /* k distinct experts, each drawn by weight among those left */
        double u = (double)(es_splitmix64(&st) >> 11) * 0x1.0p-53 * sum, acc = 0;
        int64_t pick = E - 1;
        for (int64_t e = 0; e < E; e++) {
            if (w[(size_t)e] == 0) continue;
            acc += w[(size_t)e];
            if (u < acc) { pick = e; break; }
        }
        while (w[(size_t)pick] == 0) pick--; /* rounding at the end */
        out[i] = (int32_t)pick;
        sum -= w[(size_t)pick];
        w[(size_t)pick] = 0;
    }
}

void Run::fail(const char *fmt, ...)
{
    if (!error.empty()) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    error = buf;
    sc_core::sc_stop();
}

} // namespace es
