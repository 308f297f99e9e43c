// es_link: see es_link.h.
#include "es_link.h"

namespace es {

Link::Link(sc_core::sc_module_name nm, Ctx &ctx, int64_t bits_per_token, bool host)
    : sc_module(nm), ctx_(ctx), bits_per_token_(bits_per_token), host_(host)
{
    stat_ = ctx_.unit(basename());
    SC_THREAD(run);
}

void Link::run()
{
    const es_chip *c = ctx_.c;
    for (;;) {
        Item it = in.read();
        ctx_.wait_until(it.ready);
        int64_t start = ctx_.now(), occ, lat;
        es_events ev{};
        if (host_) {
            int64_t bytes = c->host_cmd_bytes + it.n * c->host_token_bytes;
            occ = es_an_host_occ(c, bytes);
            lat = es_an_host_lat(c);
            ev.host_bits = 8.0 * (double)bytes;
        } else {
            int64_t bits = it.n * bits_per_token_;
            occ = es_an_link_occ(c, bits);
            lat = c->link_latency;
            ev.link_bit_mm = (double)bits * c->link_mm;
        }
        ctx_.wait_cycles(occ);
        stat_->items++;
        stat_->tokens += it.n;
        stat_->busy_cycles += ctx_.now() - start;
        ctx_.charge(stat_, it.seq, ev);
        it.ready = ctx_.now() + lat;
        out.write(it);
    }
}

} // namespace es
