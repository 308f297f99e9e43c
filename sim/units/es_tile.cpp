// es_tile: see es_tile.h. With tokens_per_read > 1, items already waiting
// are taken together: the projections read the weights once for all their
// tokens, attention runs per sequence over its own KV.
#include "es_tile.h"
#include <algorithm>
#include <climits>
#include <string>

namespace es {

Tile::Tile(sc_core::sc_module_name nm, Ctx &ctx, std::vector<const es_op *> ops, Server *kv_ports, bool last)
    : sc_module(nm), ctx_(ctx), ops_(std::move(ops)), kv_(kv_ports), last_(last)
{
    std::string b = basename();
    stat_ = ctx_.unit(b.c_str());
    lanes_stat_ = ctx_.unit((b + ".lanes").c_str());
    vec_stat_ = ctx_.unit((b + ".vector").c_str());
    attn_stat_ = ctx_.unit((b + ".attention").c_str());
    lanes_trk_ = ctx_.run.track(b + ".lanes");
    vec_trk_ = ctx_.run.track(b + ".vector");
    attn_trk_ = ctx_.run.track(b + (ctx_.m->ssm_state > 0 ? ".scan" : ".attention"));
    lo_ = INT_MAX;
    hi_ = 0;
    for (const es_op *op : ops_) {
        if (op->layer < lo_) lo_ = op->layer;
        if (op->layer + 1 > hi_) hi_ = op->layer + 1;
    }
    free_slots_ = ctx_.c->tile.slots;
    lanes_.resize((size_t)ctx_.map->n_parts);
    const es_model *m = ctx_.m;
    for (const es_op *op : ops_) /* its experts' lanes, for the tiles of its stage to book (Ctx::expert_lanes) */
        for (int64_t e = 0; op->kind == ES_OP_EXPERTS && e < m->experts; e++) {
            if (ctx_.expert_lanes.empty()) ctx_.expert_lanes.resize((size_t)(m->layers * m->experts));
            const es_map_tensor *g = es_map_tensor_of(ctx_.map, es_model_expert(m, op->layer, ES_ROLE_GATE, e));
            ctx_.expert_lanes[(size_t)(op->layer * m->experts + e)] = {&lanes_[(size_t)g->part], lanes_stat_, stat_};
        }
    SC_METHOD(fetch);
    SC_METHOD(complete);
    dont_initialize();
    sensitive << booked_ev_;
    if (ctx_.run.cycle) {
        SC_METHOD(tick);
        dont_initialize();
        sensitive << tick_ev_;
    }
}

bool Tile::take_first()
{
    /* the next item in arrival order, once a slot is free and its sequence is not in the tile */
    Item it;
    if (waiting_.empty() && in.nb_read(it)) waiting_.push_back(std::move(it));
    if (waiting_.empty() || free_slots_ <= 0 || in_tile(waiting_.front().seq)) return false;
    /* tile.sync_step: not before the step's tokens are all back (unless the FIFO is full: they could not enter) */
    if (ctx_.steps && ctx_.returning > 0 && (int64_t)in.num_available() + 1 < ctx_.c->sched.fifo_depth)
        return false;
    group_.assign(1, std::move(waiting_.front()));
    waiting_.pop_front();
    free_slots_--;
    seqs_in_.push_back(group_[0].seq);
    return true;
}

int64_t Tile::take_more()
{
    const int64_t tpr = ctx_.c->tile.tokens_per_read;
    int64_t total = group_[0].n;
    /* items that have already arrived share this pass over the weights, up to
     * tokens_per_read tokens: one work item of several sequences */
    while (total < tpr) {
        Item it;
        if (waiting_.empty()) {
            if (!in.nb_read(it)) break;
            waiting_.push_back(std::move(it));
        }
        const Item &more = waiting_.front();
        /* tile.sync_step: the step's tokens are all sent back: one still on the link joins (the pass waits) */
        if ((more.ready > ctx_.now() && !ctx_.steps) || total + more.n > tpr || in_tile(more.seq))
            break;
        group_.push_back(more);
        seqs_in_.push_back(more.seq);
        total += more.n;
        waiting_.pop_front();
    }
    return total;
}

const Tile::Plan &Tile::plan(int64_t n)
{
    if (n == last_plan_n_) return *last_plan_;
    auto it = plans_.find(n);
    if (it != plans_.end()) {
        last_plan_n_ = n;
        last_plan_ = &it->second;
        return it->second;
    }
    Plan p;
    es_events ev;
    for (const es_op *op : ops_) {
        if (op->kind == ES_OP_ATTN || op->kind == ES_OP_SCAN || op->kind == ES_OP_EXPERTS) {
            /* per item: positions, sequences, routing */
            p.steps.push_back({op->kind == ES_OP_EXPERTS ? Resource::Experts : Resource::Attention, 0, 0, 0, op, 1.0, 0, 0});
            continue;
        }
        const es_map_op *where = es_map_op_of(ctx_.map, op); /* its partition's lanes */
        Step s{op->res == ES_RES_LANES ? Resource::Lanes : Resource::Vector, op->res == ES_RES_LANES ? where->part : 0,
               0, 0, op, 1.0, 0, 0};
        if (op->res == ES_RES_LANES) s.share = (double)where->lanes / (double)ctx_.c->tile.lanes;
        es_an_op_split(ctx_.map, op, n, 0, &s.occ, &s.lat);
        if (ctx_.wstore) s.store = es_an_store_occ(ctx_.map, op, n);
        es_an_op_events(ctx_.map, op, n, 0, &ev);
        es_events_add(&p.shared, &ev);
        p.steps.push_back(s);
        /* a partition is busy over its share of the lanes' area */
        if (op->res == ES_RES_LANES) p.lanes_busy += (int64_t)((double)s.occ * s.share + 0.5), p.lanes_ops++;
        else p.vec_busy += s.occ, p.vec_ops++;
        if (op->kind != ES_OP_MATVEC) continue;
        if (es_map_lora_any(ctx_.map, op->tensor)) {
            Step a{Resource::Vector, 0, 0, 0, op, 1.0, 0, 0}; /* its LoRA adapters: per item, as booked (adapter_step) */
            a.lora = true;
            p.steps.push_back(a);
        }
        es_role role = ctx_.m->tensors[op->tensor].role;
        if (ctx_.ring && (role == ES_ROLE_O || role == ES_ROLE_DOWN)) /* a shard: the partial sums all-reduced */
            p.steps.push_back({Resource::Ring, 0, 0, 0, op, 1.0, 0, 0}); /* booked by Ctx::allreduce */
    }
    return plans_.emplace(n, std::move(p)).first->second;
}

void Tile::fetch()
{
    /* a method process (no coroutine switch per item): take an item, wait until it has
     * arrived, add those that arrived with it, book the work item */
    for (;;) {
        if (ready_wait_ && group_[0].ready > ctx_.now()) { /* woken at a governed clock's window end: on again */
            next_trigger(ctx_.delay_to(group_[0].ready));
            return;
        }
        if (!ready_wait_) {
            if (!take_first()) {
                if (arrived_or_freed_.size() == 0)
                    arrived_or_freed_ = in.data_written_event() | changed_ | ctx_.returned_ev;
                next_trigger(arrived_or_freed_);
                return;
            }
            int64_t now = ctx_.now();
            if (group_[0].ready > now) {
                if (early_ < 0) early_ = book_early();
                if (early_) { /* booked now, from the cycle it arrives: the same bookings, one wake fewer */
                    if (!book(group_[0].n, group_[0].ready)) return;
                    continue;
                }
                ready_wait_ = true;
                next_trigger(ctx_.delay_to(group_[0].ready));
                return;
            }
        }
        ready_wait_ = false;
        int64_t total = take_more(), start = ctx_.now();
        for (const Item &g : group_) start = std::max(start, g.ready); /* later only with tile.sync_step */
        if (!book(total, start)) return; /* the run failed */
    }
}

bool Tile::book_early() const
{
    /* An item that has not arrived yet can be booked as it enters the FIFO, from the cycle it
     * arrives, when nothing but its own bookings depends on the cycle it is booked at: items are
     * taken one at a time (tokens_per_read 1; otherwise those arriving meanwhile would join it),
     * the tile's KV ports are its own (shared ports are booked in the order the tiles book them; so is a
     * chip-scope weight store),
     * experts are not routed from a replayed list (taken in booking order across tiles), and
     * there is no trace or VCD, no functional datapath and no tile-level clock gating (each follows the
     * order of booking in simulated time). The next item's bookings start no earlier, and it is
     * taken as soon as a slot is free either way, so every booking is the same. */
    return !ctx_.run.cycle && ctx_.c->tile.tokens_per_read == 1 && ctx_.c->kv.tiles_per_group == 1 && !ctx_.wstore &&
           !ctx_.ring &&
           ctx_.run.routing.kind != 2 && !ctx_.run.trace && !ctx_.run.vcd_changed && !ctx_.dp &&
           ctx_.c->gating != ES_GATING_TILE;
}

bool Tile::book(int64_t total, int64_t start)
{
    std::vector<Item> &group = group_;
    if (early_) early_starts_.push_back(start); /* counted in from its start, by complete() */
    else if (in_work_++ == 0) busy_since_ = start;
    ctx_.run.vcd_touch();
    if (ctx_.dp) routes_.assign(group.size(), std::vector<int32_t>());
    if (ctx_.dp) /* functional: the tile's layers on each item's tokens, as it enters (no simulated time) */
        for (size_t g = 0; g < group.size(); g++) {
            Item &it = group[g];
            es_err e{};
            if (!it.act || es_dp_layers(ctx_.dp, lo_ + (int)ctx_.m->layer_base, hi_ + (int)ctx_.m->layer_base, it.seq, it.pos, it.n, it.act->data(), &e)) {
                ctx_.run.fail("%s: %s", basename(), it.act ? e.msg : "an item arrived without activations");
                return false;
            }
            const int32_t *r;
            int k = es_dp_routes(ctx_.dp, &r);
            if (k) routes_[g].assign(r, r + (size_t)((hi_ - lo_) * it.n * k)); /* the router's own choices */
        }
    Work w{0, entered_++, std::move(group), std::vector<es_events>()};
    w.ev.resize(w.group.size());
    const Plan &pl = plan(total);
    if (ctx_.run.cycle && ctx_.map->n_adapters) {
        ctx_.run.fail("%s: LoRA adapters are booked at transaction fidelity only", basename());
        return false;
    }
    if (ctx_.run.cycle) { /* its steps issue clock by clock (tick); what they cost is known now */
        Active a{std::move(w), &pl, total, start, 0, -1, 0, false, false, std::vector<int64_t>(pl.steps.size(), 0),
                 std::vector<int64_t>(pl.steps.size(), 0)};
        for (size_t k = 0; k < pl.steps.size(); k++)
            if (pl.steps[k].res == Resource::Attention)
                a.attn_cyc[k] = attention_cycles(pl.steps[k], a.w, total, &a.attn_store[k]);
        charge_plan(a.w, pl, total, es_events{});
        active_.push_back(std::move(a));
        tick_ev_.notify(sc_core::SC_ZERO_TIME);
        return true;
    }
    const std::vector<Item> &items = w.group;
    /* book every op on its resource, in order: the item's trip is known now */
    int64_t t = start;
    int flowed = 0; /* the item's flow steps into the tile at its first booking */
    es_events expert_ev{};
    for (const Step &st : pl.steps) {
        if (st.res == Resource::Experts) {
            t = book_experts(st.op, items, start, t, expert_ev);
            continue;
        }
        if (st.res == Resource::Ring) { /* booked and charged on the ring unit (Ctx::allreduce) */
            t = ctx_.allreduce(t, items[0].seq, total, 0);
            continue;
        }
        if (st.lora) { /* the adapters its sequences name, if any */
            Step a = st;
            if (!adapter_step(st, w, a)) continue;
            int64_t s0 = vec_.book(start, kv_fit(a, t), a.occ);
            kv_->book(start, s0, a.kv); /* A and B stream over the KV port */
            if (ctx_.run.trace)
                ctx_.span(track(a.res), s0, s0 + a.occ, st.op->name, items[0].seq, items[0].pos, total, !flowed++);
            t = s0 + a.occ + a.lat;
            continue;
        }
        if (st.res != Resource::Attention) {
            Server &res = st.res == Resource::Lanes ? lanes_[(size_t)st.part] : vec_;
            int64_t s0 = res.book(start, st.store > 0 ? store_fit(res, st.occ, st.store, t) : st.kv > 0 ? kv_fit(st, t) : t, st.occ);
            if (st.kv > 0) kv_->book(start, s0, st.kv); /* an adapter's A and B stream over the KV port */
            if (st.store > 0) ctx_.wstore->book(start, s0, st.store); /* its weights stream from the shared store */
            if (ctx_.run.trace)
                ctx_.span(track(st.res), s0, s0 + st.occ, st.op->name, items[0].seq, items[0].pos, total, !flowed++);
            t = s0 + st.occ + st.lat;
            continue;
        }
        int64_t kvs; /* kv.in_store: its KV bits' cycles on the chip's store */
        int64_t cyc = attention_cycles(st, w, total, &kvs); /* each sequence's own KV, the port held for all of it */
        int64_t s0 = kv_->book(start, kvs > 0 ? store_fit(*kv_, cyc, kvs, t) : t, cyc);
        if (kvs > 0) ctx_.wstore->book(start, s0, kvs); /* the KV streams from the store, shared with the weights */
        if (ctx_.run.trace)
            ctx_.span(track(st.res), s0, s0 + cyc, st.op->name, items[0].seq, items[0].pos, total, !flowed++);
        t = s0 + cyc;
    }
    charge_plan(w, pl, total, expert_ev);
    finish(std::move(w), t);
    return true;
}

int64_t Tile::store_fit(const Server &res, int64_t occ, int64_t store, int64_t t) const
{
    /* the first cycle from t at which the resource (the lanes, or the attention engine's KV port) is free for the
     * op's occupancy and the chip's store for its stream: each try moves later, and both have a last booking, so it
     * ends */
    for (;;) {
        int64_t s = res.earliest(t, occ), w = ctx_.wstore->earliest(s, store);
        if (w == s) return s;
        t = w;
    }
}

int64_t Tile::kv_fit(const Step &st, int64_t t) const
{
    /* the first cycle from t at which the vector unit is free for an adapter's occupancy and the KV port for its
     * stream (as store_fit) */
    for (;;) {
        int64_t s = vec_.earliest(t, st.occ), w = kv_->earliest(s, st.kv);
        if (w == s) return s;
        t = w;
    }
}

bool Tile::adapter_step(const Step &st, Work &w, Step &out)
{
    out.occ = out.kv = out.lat = 0;
    int64_t adapted = 0;
    for (size_t g = 0; g < w.group.size(); g++) {
        int k = w.group[g].adapter;
        bool seen = false; /* each adapter once, with all its sequences' tokens in the item */
        for (size_t h = 0; h < g; h++) seen |= w.group[h].adapter == k;
        if (k < 0 || seen) continue;
        int64_t n = 0, occ, kv, lat;
        for (const Item &it : w.group) n += it.adapter == k ? it.n : 0;
        es_an_adapter(ctx_.map, k, st.op->tensor, n, &occ, &kv, &lat);
        if (occ == 0) continue;
        out.occ += occ, out.kv += kv, out.lat = std::max(out.lat, lat);
        adapted += n;
        es_events ev{};
        es_an_adapter_events(ctx_.map, k, st.op->tensor, n, &ev);
        for (size_t h = g; h < w.group.size(); h++) { /* shared by its sequences by their tokens */
            if (w.group[h].adapter != k) continue;
            es_events part = ev;
            es_events_scale(&part, (double)w.group[h].n / (double)n);
            es_events_add(&w.ev[h], &part);
        }
    }
    if (out.occ == 0) return false;
    vec_stat_->busy_cycles += out.occ;
    vec_stat_->items++;
    vec_stat_->tokens += adapted;
    return true;
}

int64_t Tile::attention_cycles(const Step &st, Work &w, int64_t total, int64_t *store)
{
    int64_t cyc = 0;
    es_events op_ev;
    *store = 0;
    for (size_t g = 0; g < w.group.size(); g++) {
        const Item &it = w.group[g];
        int64_t occ = es_an_op(ctx_.map, st.op, it.n, it.pos);
        cyc += occ;
        *store += es_an_kv_store_occ(ctx_.map, st.op, it.n, it.pos);
        es_an_op_events_occ(ctx_.map, st.op, it.n, it.pos, occ, &op_ev);
        es_events_add(&w.ev[g], &op_ev);
    }
    attn_stat_->busy_cycles += cyc;
    attn_stat_->items++;
    attn_stat_->tokens += total;
    return cyc;
}

void Tile::charge_plan(Work &w, const Plan &pl, int64_t total, const es_events &expert_ev)
{
    for (size_t g = 0; g < w.group.size(); g++) {
        /* shared work is charged in proportion to the tokens each sequence brought */
        es_events part = pl.shared;
        es_events_add(&part, &expert_ev);
        es_events_scale(&part, (double)w.group[g].n / (double)total);
        es_events_add(&w.ev[g], &part);
    }
    lanes_stat_->busy_cycles += pl.lanes_busy; /* the plan's lanes and vector ops, added up once */
    lanes_stat_->items += pl.lanes_ops;
    lanes_stat_->tokens += total * pl.lanes_ops;
    vec_stat_->busy_cycles += pl.vec_busy;
    vec_stat_->items += pl.vec_ops;
    vec_stat_->tokens += total * pl.vec_ops;
    stat_->items++;
    stat_->tokens += total;
}

void Tile::finish(Work &&w, int64_t t)
{
    w.finish = t;
    /* complete() sleeps until the earliest finish: wake it only if this one is earlier */
    bool earlier = booked_.empty() || w.finish < booked_.front().finish;
    booked_.push_back(std::move(w));
    std::push_heap(booked_.begin(), booked_.end(), std::greater<Work>());
    if (earlier) booked_ev_.notify(sc_core::SC_ZERO_TIME);
}

void Tile::plan_ahead(int64_t now)
{
    /* The tile's controller, as a statically scheduled pipeline has one: each item's ops to come,
     * in the items' order of entry, each placed at the earliest cycle from which its resource is
     * free for its whole occupancy, after its input is valid (a reservation table), re-derived
     * from where the pipelines stand on every clock that has an idle issue stage. An item's
     * next op issues on the clock it was placed at. */
    std::vector<std::vector<std::pair<int64_t, int64_t>>> &busy = plan_busy_;
    busy.resize(pipes_.size());
    for (size_t r = 0; r < pipes_.size(); r++) {
        busy[r].clear();
        const Pipe &p = pipes_[r];
        int64_t from = p.issued == now ? now + 1 : now; /* the op issuing: its beats still to come */
        if (p.cur) busy[r].emplace_back(from, from + p.left);
    }
    for (Active &a : active_) {
        a.plan = -1;
        int64_t t = a.issuing ? a.valid_at : std::max(a.at, now);
        for (size_t k = a.issuing ? a.step + 1 : a.step; k < a.pl->steps.size(); k++) {
            const Step &f = a.pl->steps[k];
            const int64_t o = occupancy(a, k);
            std::vector<std::pair<int64_t, int64_t>> &iv = busy[pipe_of(f)];
            int64_t s0 = t;
            size_t at = 0;
            for (; at < iv.size(); at++) { /* sorted and disjoint: the first gap that holds it */
                if (s0 + o <= iv[at].first) break;
                if (iv[at].second > s0) s0 = iv[at].second;
            }
            if (o > 0) iv.insert(iv.begin() + (long)at, {s0, s0 + o});
            if (k == a.step && !a.issuing) a.plan = s0;
            t = s0 + o + step_lat(f);
        }
    }
}

int64_t Tile::occupancy(const Active &a, size_t k)
{
    return a.pl->steps[k].res == Resource::Attention ? a.attn_cyc[k] : a.pl->steps[k].occ;
}

int Tile::track(Resource res) const
{
    return res == Resource::Attention ? attn_trk_ : res == Resource::Vector ? vec_trk_ : lanes_trk_;
}

size_t Tile::pipe_of(const Step &st)
{
    /* the vector unit, the attention engine, then one per lanes partition (the cycle fidelity
     * books no experts) */
    return st.res == Resource::Vector ? 0 : st.res == Resource::Attention ? 1 : 2 + (size_t)st.part;
}

int64_t Tile::step_lat(const Step &st) const
{
    if (st.res == Resource::Attention) return 0; /* the attention engine holds its port for all of its cycles */
    if (st.res == Resource::Lanes && lo_ + ctx_.m->layer_base == 0 && ctx_.cosim_depth >= 0) /* the co-simulated lanes: the RTL's depth */
        return st.lat + ctx_.cosim_depth - ctx_.c->tile.lane_depth;
    return st.lat;
}

void Tile::tick()
{
    /* --fidelity cycle: one clock of the tile's resources. Each is an issue stage and a pipeline
     * of one stage per cycle of its latency (the lanes: ROM read, select and adder tree,
     * accumulate, scale; the vector unit; the attention engine, whose KV port is held while it
     * streams): a beat enters the issue stage each cycle its op issues and moves one stage per
     * clock (valid); a stage is always ready for the next, as a static pipeline never stalls; an
     * op's result is valid when its last beat leaves, and the item's next op may issue on that
     * clock. A free issue stage takes the item whose next op the controller placed there on this
     * clock (plan_ahead). A clock may run again later in the same cycle (an item entered): it
     * moves the pipelines once and issues only on idle stages. */
    const int64_t now = ctx_.now();
    if (pipes_.empty()) pipes_.resize(2 + lanes_.size());
    const int64_t steps = std::min<int64_t>(now - shifted_, 1 << 20); /* 0 when this clock ran already */
    shifted_ = now;
    for (Pipe &p : pipes_) {
        for (int64_t k = 0; k < steps && p.beats > 0; k++) { /* the beats advance one stage per clock */
            Beat out = p.stage.back();
            for (size_t i = p.stage.size() - 1; i > 0; i--) p.stage[i] = p.stage[i - 1];
            p.stage[0] = Beat{};
            if (out.a) p.beats--;
            if (out.a && out.last) { /* its op's result is valid: the next op may issue now */
                out.a->at = now;
                out.a->step++;
                out.a->issuing = false;
            }
        }
    }
    /* items whose last op's result is valid leave the engine */
    for (auto it = active_.begin(); it != active_.end();) {
        if (!it->issuing && it->step == it->pl->steps.size() && it->at <= now) {
            finish(std::move(it->w), now);
            it = active_.erase(it);
        } else {
            ++it;
        }
    }
    bool idle = false;
    for (const Pipe &p : pipes_) idle = idle || (!p.cur && p.issued != now);
    if (idle) plan_ahead(now);
    for (size_t r = 0; r < pipes_.size(); r++) {
        Pipe &p = pipes_[r];
        if (p.issued == now) continue; /* this clock's beat has entered */
        if (!p.cur) { /* idle: the item whose next op the controller placed here on this clock */
            for (Active &a : active_) {
                if (a.issuing || a.at > now || a.plan != now || a.step >= a.pl->steps.size()) continue;
                const Step &st = a.pl->steps[a.step];
                if (pipe_of(st) != r) continue;
                int64_t occ = occupancy(a, a.step);
                /* its weights, or (kv.in_store) its KV, stream from the chip's store */
                int64_t store = st.res == Resource::Attention ? a.attn_store[a.step] : st.store;
                if (st.res == Resource::Attention && !kv_->free_at(now)) break; /* the KV group's ports are all streaming */
                if (store > 0 && !ctx_.wstore->free_at(now)) break;
                if (st.res == Resource::Attention) kv_->book(now, now, occ);
                if (store > 0) ctx_.wstore->book(now, now, store);
                int64_t lat = step_lat(st);
                if (p.stage.empty()) p.stage.assign((size_t)lat + 1, Beat{});
                if ((int64_t)p.stage.size() != lat + 1) {
                    ctx_.run.fail("%s: --fidelity cycle: ops of %lld and %lld pipeline cycles on one resource", basename(),
                              (long long)(p.stage.size() - 1), (long long)lat);
                    return;
                }
                const Item &i0 = a.w.group[0];
                if (ctx_.run.trace)
                    ctx_.span(track(st.res), now, now + occ, st.op->name, i0.seq, i0.pos, a.total, !a.flowed);
                a.flowed = true;
                a.issuing = true;
                a.valid_at = now + occ + lat;
                if (occ == 0) { /* nothing to issue: its result is valid after the pipeline */
                    a.at = now + lat;
                    a.step++;
                    a.issuing = false;
                    a.plan = -1; /* placed again on the next clock */
                    continue;
                }
                p.cur = &a;
                p.left = occ;
                break;
            }
        }
        if (p.cur) { /* the issuing op's next beat enters the pipeline */
            p.stage[0] = Beat{p.cur, --p.left == 0};
            p.beats++;
            p.issued = now;
            if (p.left == 0) p.cur = nullptr;
        }
    }
    bool busy = !active_.empty();
    for (const Pipe &p : pipes_) busy = busy || p.beats > 0 || p.cur;
    if (busy) next_trigger(ctx_.delay_to(now + 1), tick_ev_); /* the next clock, or an entry now */
    else next_trigger(tick_ev_);
}

/* One fired expert e's chain (gate, up, SiLU x up, down) for n tokens on its own partition of chip o, from t: its
 * end. Its events go into ev (o's own, for the caller to charge where o's tile charges). */
static int64_t book_chain(Ctx &o, const es_op *op, int64_t e, int64_t n, int64_t start, int64_t t, bool decode,
                          es_events &ev)
{
    static const es_role rs[3] = {ES_ROLE_GATE, ES_ROLE_UP, ES_ROLE_DOWN};
    const es_chip *c = o.c;
    const es_model *m = o.m;
    MoeStats &st = o.moe;
    if (st.fired.empty()) st.fired.assign((size_t)m->experts, 0), st.queue.assign((size_t)m->experts, 0), st.busy.assign((size_t)m->experts, 0);
    (decode ? st.distinct : st.prefill_distinct)++;
    st.fired[(size_t)e] += n;
    const Ctx::ExpertLanes &x = o.expert_lanes[(size_t)(op->layer * m->experts + e)];
    int64_t te = t, first = -1;
    for (int s = 0; s < 4; s++) { /* gate, up, SiLU x up, down */
        int64_t occ, lat;
        if (s == 2) {
            lat = c->tile.vec_latency;
            occ = es_ceil_div(n * m->expert_ffn, c->tile.vec_width);
        } else {
            const es_map_tensor *w = es_map_tensor_of(o.map, es_model_expert(m, op->layer, rs[s < 2 ? s : 2], e));
            lat = w->geom.latency + c->tile.lane_depth;
            occ = es_an_matvec(c, &w->geom, w->lanes, w->cells, w->bits, n) - lat;
            x.lanes->busy_cycles += (int64_t)((double)occ * (double)w->lanes / (double)c->tile.lanes + 0.5);
        }
        int64_t b = x.srv->book(start, te, occ);
        st.busy[(size_t)e] += occ;
        if (first < 0) first = b;
        te = b + occ + lat;
    }
    st.queue[(size_t)e] += first - t;
    es_events y;
    es_an_expert_events(o.map, op->layer, e, n, &y);
    es_events_add(&ev, &y);
    return te;
}

/* The all-to-all of an expert-parallel stage (es_system.h): `tokens` hidden vectors sent from chip a to chip b on a's
 * link to b, from t (a's cycles): the cycle they have arrived, on b's clock (its first edge at or after it, as a card
 * link delivers). Booked in a's cycles and counted on a's "a2a" unit; its events in ev, for the caller to charge
 * there. */
static int64_t a2a_send(Ctx &a, Ctx &b, int64_t tokens, int64_t t, es_events &ev)
{
    int64_t occ, lat;
    ev = es_events{};
    es_an_alltoall(a.map, tokens, &occ, &lat, &ev.card_bits);
    int64_t s0 = a.a2a_out[(size_t)b.stage_index].book(a.now(), t, occ);
    a.a2a_stat->items++;
    a.a2a_stat->tokens += tokens;
    a.a2a_stat->busy_cycles += occ;
    return a.cycle_to(b, s0 + occ + lat);
}

/* Charge chip x's unit u the events ev of `of` tokens of an item, each of its sequences its own tokens' share
 * (mine[g] of group[g]'s tokens among them). */
static void charge_tokens(Ctx &x, es_unit_rec *u, const std::vector<Item> &group, const int64_t *mine, int64_t of,
                          const es_events &ev)
{
    for (size_t g = 0; g < group.size(); g++) {
        if (!mine[g]) continue;
        es_events part = ev;
        es_events_scale(&part, (double)mine[g] / (double)of);
        x.charge(u, group[g].seq, part);
    }
}

int64_t Tile::book_experts(const es_op *op, const std::vector<Item> &group, int64_t start, int64_t t,
                           es_events &ev)
{
    const es_model *m = ctx_.m;
    const int64_t k = m->top_k, E = es_model_experts_all(m);
    /* the stage's chips (this one alone on a whole model) and, per expert of the model, the tokens routed to it;
     * per chip, the tokens with at least one expert there (each goes there once), and of them each group item's */
    std::vector<Ctx *> solo{&ctx_};
    const std::vector<Ctx *> &chips = ctx_.ep() ? ctx_.stage_chips : solo;
    const size_t G = group.size();
    std::vector<int64_t> n_e((size_t)E, 0), to((size_t)chips.size(), 0), to_g(chips.size() * G, 0);
    std::vector<int32_t> pick((size_t)k);
    std::vector<char> seen(chips.size());
    for (size_t g = 0; g < group.size(); g++) {
        const Item &it = group[g];
        for (int64_t j = 0; j < it.n; j++) {
            if (ctx_.dp && !routes_[g].empty()) /* functional: where the router sent it */
                for (int64_t i = 0; i < k; i++) pick[(size_t)i] = routes_[g][(size_t)(((op->layer - lo_) * it.n + j) * k + i)];
            else
                ctx_.run.route(m, it.seq, it.pos + j, op->layer + (int)m->layer_base, pick.data());
            std::fill(seen.begin(), seen.end(), 0);
            for (int32_t e : pick) {
                n_e[(size_t)e]++;
                for (size_t c = 0; c < chips.size(); c++)
                    if (e >= chips[c]->m->expert_base && e < chips[c]->m->expert_base + chips[c]->m->experts && !seen[c]++)
                        to[c]++, to_g[c * G + g]++;
            }
        }
    }
    bool decode = true;
    for (const Item &it : group) decode &= it.decode;
    (decode ? ctx_.moe.item_layers : ctx_.moe.prefill_item_layers)++;
    /* each chip's fired experts, each on its own partition, all from when the tokens are there; a chip of the stage
     * other than this one gets them over the link (dispatch) and sends their combined outputs back (combine); the
     * item goes on when every chain is done and every combine is back. Another chip's work (dispatch, chains,
     * combine) is charged to the sequences whose tokens went there, each its own tokens' share */
    int64_t end = t;
    for (size_t c = 0; c < chips.size(); c++) {
        if (!to[c]) continue;
        Ctx &o = *chips[c];
        bool own = &o == &ctx_;
        /* another chip's chains count its own cycles, from its now and the dispatch's arrival on its clock */
        es_events x{}, out{}, back{};
        int64_t at = own ? t : a2a_send(ctx_, o, to[c], t, out), done = at;
        for (int64_t e = 0; e < o.m->experts; e++) {
            int64_t n = n_e[(size_t)(o.m->expert_base + e)];
            if (n) done = std::max(done, book_chain(o, op, e, n, own ? start : o.now(), at, decode, own ? ev : x));
        }
        if (!own) { /* its experts' events are its own: charged to its tile; the combine arrives on this chip's clock */
            done = a2a_send(o, ctx_, to[c], done, back);
            const int64_t *mine = &to_g[c * G];
            charge_tokens(ctx_, ctx_.a2a_stat, group, mine, to[c], out);
            charge_tokens(o, o.expert_lanes[(size_t)(op->layer * o.m->experts)].tile, group, mine, to[c], x);
            charge_tokens(o, o.a2a_stat, group, mine, to[c], back);
        }
        end = std::max(end, done);
    }
    lanes_stat_->items++;
    return end;
}

void Tile::complete()
{
    /* a method process (no coroutine switch per item): finish bookings in finish order,
     * each at its finish cycle, and write its items out as the FIFO takes them */
    for (;;) {
        if (!leaving_.empty()) {
            if (sent_ == 0 && link) { /* the link starts the transfer once the receiver has room */
                if (out->num_free() == 0) {
                    next_trigger(out.data_read_event());
                    return;
                }
                if (!sent_link_) link->send(leaving_), sent_link_ = true;
            }
            for (; sent_ < leaving_.size(); sent_++) {
                if (!out.nb_write(leaving_[sent_])) {
                    next_trigger(out.data_read_event());
                    return;
                }
                /* the next chip of a system forms the steps: a step's token is in its first tile's FIFO */
                if (link && link->to && link->to->steps && leaving_[sent_].decode) link->to->token_back();
            }
            leaving_.clear();
            sent_link_ = false;
            free_slots_++;
            poke_fetch();
        }
        if (booked_.empty()) {
            next_trigger(booked_ev_);
            return;
        }
        int64_t t = booked_.front().finish;
        if (t > ctx_.now()) { /* a later booking may finish earlier: wake for it too */
            next_trigger(ctx_.delay_to(t), booked_ev_);
            return;
        }
        std::pop_heap(booked_.begin(), booked_.end(), std::greater<Work>());
        Work w = std::move(booked_.back());
        booked_.pop_back();
        if (ctx_.c->gating == ES_GATING_TILE && !w.group.empty()) {
            /* the tile's registers are clocked while an item is in it: each finish charges the busy
             * time since the previous one (or since the tile became busy) to the item leaving */
            int64_t from = std::max(clock_mark_, busy_since_);
            w.ev[0].reg_bit_cycles += (double)(ctx_.now() - from) * es_chip_tile_register_bits(ctx_.c);
            clock_mark_ = ctx_.now();
        }
        /* the tile is busy while an item is in it: from its start until it has left */
        for (; !early_starts_.empty() && early_starts_.front() <= ctx_.now(); early_starts_.pop_front())
            if (in_work_++ == 0) busy_since_ = early_starts_.front();
        if (--in_work_ == 0) stat_->busy_cycles += ctx_.now() - busy_since_;
        ctx_.run.vcd_touch();
        for (size_t g = 0; g < w.group.size(); g++) {
            ctx_.charge(stat_, w.group[g].seq, w.ev[g]);
            seqs_in_.erase(std::find(seqs_in_.begin(), seqs_in_.end(), w.group[g].seq));
        }
        poke_fetch();
        forward(w.group);
        leaving_ = std::move(w.group);
        sent_ = 0;
        if (leaving_.empty()) { /* the last tile retired it: nothing to write */
            free_slots_++;
            poke_fetch();
        }
    }
}

void Tile::poke_fetch()
{
    /* fetch sleeps on an arrival or this event; wake it only when it would act: take the item
     * waiting (a slot free, its sequence out of the tile) or read an arrived one. A wake that
     * would find neither changes nothing, and every later change that could let it act comes
     * through here or through an arrival. While it waits for its item's ready cycle it takes no
     * notice of either. */
    if (ready_wait_) return;
    if (waiting_.empty() ? in.num_available() > 0 : free_slots_ > 0 && !in_tile(waiting_.front().seq))
        changed_.notify(sc_core::SC_ZERO_TIME);
}

void Tile::forward(std::vector<Item> &group)
{
    const int64_t H = ctx_.m->hidden;
    size_t kept = 0;
    for (Item &it : group) {
        if (last_ && ctx_.dp && !it.decode && ctx_.run.seqs[(size_t)it.seq].tap) {
            /* run --logits: every prompt position's logits, outside the timed path */
            const SeqState &s = ctx_.run.seqs[(size_t)it.seq];
            for (int64_t t = 0; t < it.n - (it.final_chunk ? 1 : 0); t++)
                ctx_.tap(it.seq, it.pos + t, s.prompt_ids[(size_t)(it.pos + t - s.start)], it.act->data() + t * H);
        }
        if (last_ && !it.decode && !it.final_chunk) continue; /* prompt chunk retired */
        if (last_) { /* only the last token of the prompt goes on to the head */
            if (ctx_.dp && it.n > 1) it.act = std::make_shared<std::vector<float>>(it.act->end() - H, it.act->end());
            it.pos += it.n - 1;
            it.n = 1;
            if (ctx_.steps) ctx_.returning++; /* back when fed to the first tile, or finished */
        } else if (link && link->card() && ctx_.steps && (it.decode || it.final_chunk)) {
            ctx_.returning++; /* a system's chip before the last: bound for the head, back as the next step's token */
        }
        it.ready = ctx_.now();
        if (&group[kept] != &it) group[kept] = std::move(it);
        kept++;
    }
    group.resize(kept);
    /* the group travels on as one work item: the link moves it in one go */
    for (size_t g = 0; g < kept; g++) group[g].group_left = (int32_t)(kept - 1 - g);
}

} // namespace es
