// es_link: see es_link.h.
#include "es_link.h"
#include <algorithm>

namespace es {

Link::Link(sc_core::sc_module_name nm, Ctx &ctx, int64_t bits_per_token, bool host)
    : sc_module(nm), ctx_(ctx), bits_per_token_(bits_per_token), host_(host)
{
    stat_ = ctx_.unit(basename());
    trk_ = ctx_.track(basename());
    SC_THREAD(run);
}

void Link::run()
{
    const es_chip *c = ctx_.c;
    std::vector<Item> group;
    for (;;) {
        group.clear();
        group.push_back(in.read());
        while (group.back().group_left > 0) group.push_back(in.read()); /* one work item */
        int64_t start = std::max(ctx_.now(), group.front().ready), occ = 0, lat = 0, bits = 0, bytes = 0;
        for (const Item &it : group) {
            if (host_) bytes += c->host_cmd_bytes + it.n * c->host_token_bytes;
            else bits += it.n * bits_per_token_;
        }
        if (host_) {
            occ = es_an_host_occ(c, bytes);
            lat = es_an_host_lat(c);
        } else {
            occ = es_an_link_occ(c, bits);
            lat = c->link_latency;
        }
        ctx_.wait_until(start + occ); /* it arrives, then occupies the link: one wait */
        for (const Item &it : group) ctx_.span(trk_, start, start + occ, "transfer", it.seq, it.pos, it.n, true);
        stat_->items++;
        stat_->busy_cycles += ctx_.now() - start;
        for (Item &it : group) {
            es_events ev{};
            if (host_) ev.host_bits = 8.0 * (double)(c->host_cmd_bytes + it.n * c->host_token_bytes);
            else ev.link_bit_mm = (double)(it.n * bits_per_token_) * c->link_mm;
            stat_->tokens += it.n;
            ctx_.charge(stat_, it.seq, ev);
            it.ready = ctx_.now() + lat;
            out.write(it);
        }
    }
}

} // namespace es
