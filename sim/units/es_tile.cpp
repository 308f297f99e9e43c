// es_tile: see es_tile.h. Ops run in graph order; the cycles of the ops
// between two attention ops are waited in one step, and each attention op
// waits for a free KV port first, so port contention shows up as delay.
#include "es_tile.h"

namespace es {

Tile::Tile(sc_core::sc_module_name nm, Ctx &ctx, std::vector<const es_op *> ops,
           sc_core::sc_semaphore *kv_ports, bool last)
    : sc_module(nm), ctx_(ctx), ops_(std::move(ops)), kv_(kv_ports), last_(last)
{
    stat_ = ctx_.unit(basename());
    SC_THREAD(run);
}

void Tile::run()
{
    for (;;) {
        Item it = in.read();
        ctx_.wait_until(it.ready);
        int64_t start = ctx_.now(), pending = 0;
        es_events ev{}, op_ev;
        for (const es_op *op : ops_) {
            int64_t cyc = es_an_op(ctx_.c, ctx_.m, op, it.n, it.pos);
            es_an_op_events(ctx_.c, ctx_.m, op, it.n, it.pos, &op_ev);
            es_events_add(&ev, &op_ev);
            if (op->kind != ES_OP_ATTN) {
                pending += cyc;
                continue;
            }
            ctx_.wait_cycles(pending);
            pending = 0;
            kv_->wait();
            ctx_.wait_cycles(cyc);
            kv_->post();
        }
        ctx_.wait_cycles(pending);
        stat_->items++;
        stat_->tokens += it.n;
        stat_->busy_cycles += ctx_.now() - start;
        ctx_.charge(stat_, it.seq, ev);
        if (last_ && !it.decode && !it.final_chunk) continue; /* prompt chunk retired */
        if (last_) { /* only the last token of the prompt goes on to the head */
            it.pos += it.n - 1;
            it.n = 1;
        }
        it.ready = ctx_.now();
        out.write(it);
    }
}

} // namespace es
