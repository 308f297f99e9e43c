// es_link: see es_link.h.
#include "es_link.h"
#include <algorithm>

namespace es {

LinkPort::LinkPort(Ctx &ctx, const char *name, int64_t bits_per_token, Kind kind)
    : ctx_(ctx), bits_per_token_(bits_per_token), kind_(kind)
{
    stat_ = ctx_.unit(name);
    trk_ = ctx_.run.track(name);
}

void LinkPort::send(Item *items, size_t n)
{
    const es_chip *c = ctx_.c;
    int64_t occ, lat, bits = 0, bytes = 0;
    const bool host = kind_ == Host;
    for (size_t i = 0; i < n; i++) {
        if (host) bytes += c->host.cmd_bytes + items[i].n * c->host.token_bytes;
        else bits += items[i].n * bits_per_token_;
    }
    if (host) {
        occ = es_an_host_occ(c, bytes);
        lat = es_an_host_lat(c);
    } else if (kind_ == Card) {
        occ = es_an_card_occ(c, bits);
        lat = es_an_card_lat(c);
    } else {
        occ = es_an_link_occ(c, bits);
        lat = c->link.latency;
    }
    /* one work item at a time, in the order they are sent */
    const int64_t start = std::max(std::max(ctx_.now(), items[0].ready), free_at_);
    free_at_ = start + occ;
    stat_->items++;
    stat_->busy_cycles += occ;
    if (kind_ == Card) ctx_.run.vcd_touch(); /* --vcd: its items sent */
    for (size_t i = 0; i < n; i++) {
        Item &it = items[i];
        ctx_.span(trk_, start, start + occ, "transfer", it.seq, it.pos, it.n, true);
        es_events ev{};
        if (host) ev.host_bits = 8.0 * (double)(c->host.cmd_bytes + it.n * c->host.token_bytes);
        else if (kind_ == Card) ev.card_bits = (double)(it.n * bits_per_token_);
        else ev.link_bit_mm = (double)(it.n * bits_per_token_) * c->link.mm;
        stat_->tokens += it.n;
        ctx_.charge(stat_, it.seq, ev);
        it.ready = to ? ctx_.cycle_to(*to, start + occ + lat) : start + occ + lat;
    }
}

void send_item(sc_core::sc_fifo_out<Item> &out, LinkPort *link, Item &it)
{
    if (link) {
        while (out->num_free() == 0) sc_core::wait(out.data_read_event());
        link->send(&it, 1);
    }
    out.write(it);
}

} // namespace es
