// es_tile: see es_tile.h. Ops run in graph order; the cycles of the ops
// between two attention ops are waited in one step, and each attention op
// waits for a free KV port first, so port contention shows up as delay.
// With tokens_per_read > 1, items already waiting are taken together: the
// projections read the weights once for all their tokens, attention runs
// per sequence over its own KV.
#include "es_tile.h"

namespace es {

Tile::Tile(sc_core::sc_module_name nm, Ctx &ctx, std::vector<const es_op *> ops,
           sc_core::sc_semaphore *kv_ports, bool last)
    : sc_module(nm), ctx_(ctx), ops_(std::move(ops)), kv_(kv_ports), last_(last)
{
    stat_ = ctx_.unit(basename());
    lo_ = INT32_MAX;
    hi_ = 0;
    for (const es_op *op : ops_) {
        if (op->layer < lo_) lo_ = op->layer;
        if (op->layer + 1 > hi_) hi_ = op->layer + 1;
    }
    SC_THREAD(run);
}

void Tile::run()
{
    const int64_t tpr = ctx_.c->tokens_per_read;
    std::vector<Item> &group = group_;
    std::vector<es_events> &own = own_;
    Item carry;
    bool have_carry = false;
    es_events shared{}, op_ev, part_ev;
    for (;;) {
        group.clear();
        Item first = have_carry ? carry : in.read();
        have_carry = false;
        ctx_.wait_until(first.ready);
        group.push_back(first);
        int64_t total = first.n;
        /* items that have already arrived share this pass over the weights,
         * up to tokens_per_read tokens: one work item of several sequences */
        Item more;
        while (total < tpr && in.nb_read(more)) {
            if (more.ready > ctx_.now() || total + more.n > tpr) {
                carry = more;
                have_carry = true;
                break;
            }
            group.push_back(more);
            total += more.n;
        }
        int64_t start = ctx_.now(), pending = 0;
        own.assign(group.size(), es_events{}); /* attention: each sequence's own KV */
        shared = es_events{};
        for (const es_op *op : ops_) {
            if (op->kind != ES_OP_ATTN) {
                pending += es_an_op(ctx_.c, ctx_.m, op, total, 0);
                es_an_op_events(ctx_.c, ctx_.m, op, total, 0, &op_ev);
                es_events_add(&shared, &op_ev);
                continue;
            }
            int64_t cyc = 0;
            for (size_t g = 0; g < group.size(); g++) {
                cyc += es_an_op(ctx_.c, ctx_.m, op, group[g].n, group[g].pos);
                es_an_op_events(ctx_.c, ctx_.m, op, group[g].n, group[g].pos, &op_ev);
                es_events_add(&own[g], &op_ev);
            }
            ctx_.wait_cycles(pending);
            pending = 0;
            kv_->wait();
            ctx_.wait_cycles(cyc);
            kv_->post();
        }
        ctx_.wait_cycles(pending);
        if (ctx_.dp) /* functional: the tile's layers on each item's tokens, in arrival order */
            for (Item &it : group) {
                es_err e{};
                if (!it.act || es_dp_layers(ctx_.dp, lo_, hi_, it.seq, it.pos, it.n, it.act->data(), &e)) {
                    ctx_.fail("%s: %s", basename(), it.act ? e.msg : "an item arrived without activations");
                    return;
                }
            }
        stat_->items++;
        stat_->tokens += total;
        stat_->busy_cycles += ctx_.now() - start;
        for (size_t g = 0; g < group.size(); g++) {
            /* shared work is charged in proportion to the tokens each sequence brought */
            part_ev = shared;
            es_events_scale(&part_ev, (double)group[g].n / (double)total);
            es_events_add(&part_ev, &own[g]);
            ctx_.charge(stat_, group[g].seq, part_ev);
        }
        /* the group travels on as one work item: the link moves it in one go */
        std::vector<Item> fwd;
        const int64_t H = ctx_.m->hidden;
        for (Item &it : group) {
            if (last_ && ctx_.dp && !it.decode && ctx_.seqs[(size_t)it.seq].tap) {
                /* run --logits: every prompt position's logits, outside the timed path */
                const SeqState &s = ctx_.seqs[(size_t)it.seq];
                for (int64_t t = 0; t < it.n - (it.final_chunk ? 1 : 0); t++)
                    ctx_.tap(it.seq, it.pos + t, s.prompt_ids[(size_t)(it.pos + t - s.start)], it.act->data() + t * H);
            }
            if (last_ && !it.decode && !it.final_chunk) continue; /* prompt chunk retired */
            if (last_) { /* only the last token of the prompt goes on to the head */
                if (ctx_.dp && it.n > 1)
                    it.act = std::make_shared<std::vector<float>>(it.act->end() - H, it.act->end());
                it.pos += it.n - 1;
                it.n = 1;
            }
            it.ready = ctx_.now();
            fwd.push_back(it);
        }
        for (size_t g = 0; g < fwd.size(); g++) {
            fwd[g].group_left = (int32_t)(fwd.size() - 1 - g);
            out.write(fwd[g]);
        }
    }
}

} // namespace es
