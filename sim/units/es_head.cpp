// es_head: see es_head.h.
#include "es_head.h"
#include <algorithm>

namespace es {

Embed::Embed(sc_core::sc_module_name nm, Ctx &ctx, const es_op *op, sc_core::sc_mutex *rom)
    : sc_module(nm), ctx_(ctx), op_(op), rom_(rom)
{
    stat_ = ctx_.unit(basename());
    trk_ = ctx_.run.track(basename());
    SC_THREAD(run);
}

void Embed::run()
{
    for (;;) {
        Item it;
        while (!feedback.nb_read(it) && !prompt.nb_read(it))
            sc_core::wait(feedback.data_written_event() | prompt.data_written_event());
        ctx_.wait_until(it.ready);
        int64_t start = ctx_.now();
        if (ctx_.wstore) /* the table's rows stream from the chip's weight store, shared with the tiles */
            ctx_.wait_until(ctx_.wstore->book(start, start, es_an_store_occ(ctx_.map, op_, it.n)));
        if (rom_) rom_->lock();
        ctx_.wait_cycles(es_an_op(ctx_.map, op_, it.n, it.pos));
        if (rom_) rom_->unlock();
        if (ctx_.ring) /* a shard: the row, looked up on the chip holding it, all-reduced to every chip */
            ctx_.wait_until(ctx_.allreduce(ctx_.now(), it.seq, it.n, 0));
        ctx_.span(trk_, start, ctx_.now(), op_->name, it.seq, it.pos, it.n, true);
        if (ctx_.dp) { /* functional: the embedding rows of the item's tokens */
            const SeqState &s = ctx_.run.seqs[(size_t)it.seq];
            const int32_t *ids = it.decode ? &it.token : s.prompt_ids.data() + (it.pos - s.start);
            it.act = std::make_shared<std::vector<float>>((size_t)(it.n * ctx_.m->hidden));
            es_err e{};
            if (es_dp_embed(ctx_.dp, ids, it.n, it.act->data(), &e)) {
                ctx_.run.fail("embed: %s", e.msg);
                return;
            }
        }
        es_events ev;
        es_an_op_events(ctx_.map, op_, it.n, it.pos, &ev);
        stat_->items++;
        stat_->tokens += it.n;
        stat_->busy_cycles += ctx_.now() - start;
        ctx_.charge(stat_, it.seq, ev);
        it.ready = ctx_.now();
        bool back = ctx_.steps && it.decode;
        send_item(out, link, it);
        if (back) ctx_.token_back(); /* a step's token is in the first tile's FIFO */
    }
}

Head::Head(sc_core::sc_module_name nm, Ctx &ctx, const es_op *const ops[3], sc_core::sc_mutex *rom)
    : sc_module(nm), ctx_(ctx), rom_(rom)
{
    for (int i = 0; i < 3; i++) ops_[i] = ops[i];
    stat_ = ctx_.unit(basename());
    trk_ = ctx_.run.track(basename());
    SC_THREAD(run);
}

/* The next item, and with head.lanes.tokens_per_read above 1 those that have arrived by the time it can start (up to
 * that many): they share one pass over the LM head's weights. An item read early waits in next_. */
int64_t Head::take(std::vector<Item> &group)
{
    group.clear();
    if (have_next_) group.push_back(std::move(next_)), have_next_ = false;
    else group.push_back(in.read());
    int64_t start = std::max(ctx_.now(), group[0].ready);
    const int64_t tpr = ctx_.c->head.tokens_per_read;
    if (tpr == 1) return start;
    ctx_.wait_until(start);
    Item more;
    while ((int64_t)group.size() < tpr && in.nb_read(more)) {
        if (more.ready > ctx_.now()) {
            next_ = std::move(more);
            have_next_ = true;
            break;
        }
        group.push_back(std::move(more));
    }
    return start;
}

void Head::run()
{
    std::vector<Item> &group = group_; /* a member: the thread never returns, and its locals are never destroyed */
    for (;;) {
        int64_t start = take(group), t = start;
        const Item &it = group[0];
        const int64_t n = group.size() > 1 ? (int64_t)group.size() : it.n; /* tokens in the pass (1 each) */
        es_events ev{}, op_ev;
        for (const es_op *op : ops_) {
            int64_t occ, lat;
            es_an_op_split(ctx_.map, op, n, it.pos, &occ, &lat);
            int64_t cyc = occ + lat;
            bool rom = rom_ && op->kind == ES_OP_MATVEC;
            if (ctx_.wstore && op->kind == ES_OP_MATVEC) /* the LM head streams from the chip's weight store */
                t = ctx_.wstore->book(ctx_.now(), t, es_an_store_occ(ctx_.map, op, n));
            t += cyc;
            if (rom) { /* a ROM shared with the embedding (tied weights): wait for it in simulated time */
                ctx_.wait_until(t - cyc);
                rom_->lock();
                ctx_.wait_cycles(cyc);
                rom_->unlock();
                t = ctx_.now();
            }
            es_an_op_events_occ(ctx_.map, op, n, it.pos, occ, &op_ev);
            es_events_add(&ev, &op_ev);
        }
        if (ctx_.ring) /* a shard: each chip's best score and token id, all-reduced (the max) */
            t = ctx_.allreduce(std::max(t, ctx_.now()), it.seq, n, 64);
        ctx_.wait_until(t); /* the ops back to back: one wait */
        if (ctx_.c->gating == ES_GATING_TILE) /* the head's registers clocked while it works */
            ev.reg_bit_cycles += (double)(ctx_.now() - start) * es_chip_head_register_bits(ctx_.c);
        ctx_.span(trk_, start, t, "head", it.seq, it.pos, n, true);
        stat_->items++;
        stat_->tokens += n;
        stat_->busy_cycles += ctx_.now() - start;
        if (group.size() > 1) es_events_scale(&ev, 1.0 / (double)group.size()); /* each token its share */
        for (Item &g : group) {
            ctx_.charge(stat_, g.seq, ev);
            if (!finish(g)) return;
        }
    }
}

/* One token sampled: functional logits and sample, to the host, and back to Embed while its sequence wants more.
 * false: the run failed. */
bool Head::finish(Item &it)
{
    SeqState &s = ctx_.run.seqs[(size_t)it.seq];
    int32_t token = -1;
    if (ctx_.dp) { /* functional: final norm, LM head, sampler */
        logits_.resize((size_t)ctx_.m->vocab);
        es_err e{};
        if (!it.act || es_dp_head(ctx_.dp, it.act->data(), logits_.data(), &e)) {
            ctx_.run.fail("head: sequence %d position %lld: %s", it.seq, (long long)(it.pos + it.n - 1),
                      it.act ? e.msg : "an item arrived without activations");
            return false;
        }
        token = es_dp_sample(ctx_.dp, it.seq, logits_.data());
        if (s.tap) ctx_.run.tap_rows.push_back({it.pos, it.decode ? it.token : s.prompt_ids.back(), logits_});
        s.out_ids.push_back(token);
    }
    Item cpl = it;
    cpl.group_left = 0; /* tokens leave the head one by one */
    cpl.token = token;
    cpl.act.reset();
    ctx_.run.sample(it.seq, cpl);
    cpl.ready = ctx_.cycle_to(ctx_.run, ctx_.now()); /* to the host: the run's clock (a system's first chip's) */
    if (ctx_.run.stop_at_eog && es_tok_is_eog(ctx_.run.stop_at_eog, token))
        s.gen = s.produced; /* --stop-at-eos: this token is its last (the host sees ES_CQE_LAST) */
    if (s.produced < s.gen) {
        Item next = it;
        next.decode = true;
        next.final_chunk = false;
        next.n = 1;
        next.group_left = 0;
        next.token = token;
        next.act.reset();
        next.pos = s.start + s.prompt + s.produced - 1; /* position of the token just sampled */
        next.ready = ctx_.now();
        send_item(feedback, feedback_link, next);
    } else {
        ctx_.run.in_flight--;
        ctx_.run.count_in_flight();
        for (Ctx *k : ctx_.run.chips) /* its last token: not coming back, to any chip (of a stage, the one holding it) */
            if (k->steps && (!k->ep() || s.home[(size_t)k->stage] == k->stage_index)) k->token_back();
        ctx_.kv_give_all(s, s.kv); /* its KV is no longer read, on any chip */
        if (ctx_.dp) es_dp_seq_end(ctx_.dp, it.seq);
    }
    completion.write(cpl);
    return true;
}

} // namespace es
