// es_link: see es_link.h. The link is a method process (a state machine
// re-triggered by its FIFOs and its own timer) rather than a thread: it does
// exactly what a thread reading, waiting and writing would, without a
// coroutine switch per item.
#include "es_link.h"
#include <algorithm>

namespace es {

Link::Link(sc_core::sc_module_name nm, Ctx &ctx, int64_t bits_per_token, bool host)
    : sc_module(nm), ctx_(ctx), bits_per_token_(bits_per_token), host_(host)
{
    stat_ = ctx_.unit(basename());
    trk_ = ctx_.track(basename());
    SC_METHOD(step);
}

void Link::step()
{
    const es_chip *c = ctx_.c;
    for (;;) {
        switch (phase_) {
        case Collect: {
            /* one work item: its items follow each other through the FIFO */
            do {
                Item it;
                if (!in.nb_read(it)) {
                    next_trigger(in.data_written_event());
                    return;
                }
                group_.push_back(std::move(it));
            } while (group_.back().group_left > 0);
            start_ = std::max(ctx_.now(), group_.front().ready);
            int64_t occ, bits = 0, bytes = 0;
            for (const Item &it : group_) {
                if (host_) bytes += c->host_cmd_bytes + it.n * c->host_token_bytes;
                else bits += it.n * bits_per_token_;
            }
            if (host_) {
                occ = es_an_host_occ(c, bytes);
                lat_ = es_an_host_lat(c);
            } else {
                occ = es_an_link_occ(c, bits);
                lat_ = c->link_latency;
            }
            phase_ = Transfer;
            int64_t now = ctx_.now();
            if (start_ + occ > now) { /* it arrives, then occupies the link: one wait */
                next_trigger(ctx_.delay_to(start_ + occ));
                return;
            }
            break;
        }
        case Transfer: {
            int64_t now = ctx_.now();
            for (const Item &it : group_) ctx_.span(trk_, start_, now, "transfer", it.seq, it.pos, it.n, true);
            stat_->items++;
            stat_->busy_cycles += now - start_;
            for (Item &it : group_) {
                es_events ev{};
                if (host_) ev.host_bits = 8.0 * (double)(c->host_cmd_bytes + it.n * c->host_token_bytes);
                else ev.link_bit_mm = (double)(it.n * bits_per_token_) * c->link_mm;
                stat_->tokens += it.n;
                ctx_.charge(stat_, it.seq, ev);
                it.ready = now + lat_;
            }
            sent_ = 0;
            phase_ = Deliver;
            break;
        }
        case Deliver:
            for (; sent_ < group_.size(); sent_++)
                if (!out.nb_write(group_[sent_])) {
                    next_trigger(out.data_read_event());
                    return;
                }
            group_.clear();
            phase_ = Collect;
            break;
        }
    }
}

} // namespace es
