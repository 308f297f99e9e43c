// es_host: see es_host.h.
#include "es_host.h"
#include <chrono>
#include <cstdio>

namespace es {

Host::Host(sc_core::sc_module_name nm, Ctx &ctx, sc_core::sc_semaphore *slots)
    : sc_module(nm), ctx_(ctx), slots_(slots)
{
    stat_ = ctx_.unit("host_completion");
    SC_THREAD(drive);
    SC_THREAD(complete);
}

void Host::drive()
{
    const int64_t chunk = ctx_.c->prefill_chunk;
    for (size_t i = 0; i < ctx_.seqs.size(); i++) {
        slots_->wait();
        SeqState &s = ctx_.seqs[i];
        s.admit = ctx_.now();
        if (++ctx_.in_flight > ctx_.max_in_flight) ctx_.max_in_flight = ctx_.in_flight;
        for (int64_t p = 0; p < s.prompt; p += chunk) {
            Item it;
            it.seq = (int32_t)i;
            it.pos = p;
            it.n = s.prompt - p < chunk ? s.prompt - p : chunk;
            it.final_chunk = p + it.n == s.prompt;
            it.ready = ctx_.now();
            submit.write(it);
        }
    }
}

void Host::complete()
{
    const es_chip *c = ctx_.c;
    const int64_t occ = es_an_host_occ(c, c->host_cpl_bytes), lat = es_an_host_lat(c);
    auto last_print = std::chrono::steady_clock::now();
    int64_t done = 0;
    for (;;) {
        Item it = completion.read();
        ctx_.wait_until(it.ready);
        int64_t start = ctx_.now();
        ctx_.wait_cycles(occ);
        int64_t arrive = ctx_.now() + lat;
        es_events ev{};
        ev.host_bits = 8.0 * (double)c->host_cpl_bytes;
        double j = es_events_joules(c, &ev) * ctx_.dyn_scale;
        es_events_add(&stat_->ev, &ev);
        stat_->energy_j += j;
        stat_->items++;
        stat_->tokens++;
        stat_->busy_cycles += ctx_.now() - start;
        es_token_rec &r = ctx_.toks[(size_t)it.tok_rec];
        r.energy_j += j;
        r.t_ns = ctx_.cycles_to_ns((double)arrive);
        ctx_.tok_cycle[(size_t)it.tok_rec] = arrive;
        SeqState &s = ctx_.seqs[(size_t)it.seq];
        int64_t prev = s.last_arrival < 0 ? 0 : s.last_arrival; /* all submitted at cycle 0 */
        r.latency_ns = ctx_.cycles_to_ns((double)(arrive - prev));
        s.last_arrival = arrive;
        if (arrive > ctx_.end_cycle) ctx_.end_cycle = arrive;
        done++;
        if (ctx_.progress && (done & 1023) == 0) {
            auto t = std::chrono::steady_clock::now();
            if (t - last_print > std::chrono::milliseconds(500)) {
                last_print = t;
                std::fprintf(stderr, "\r  %lld / %lld tokens (%.0f%%), %.3f ms simulated",
                             (long long)done, (long long)ctx_.total_tokens,
                             100.0 * (double)done / (double)ctx_.total_tokens,
                             ctx_.cycles_to_ns((double)arrive) / 1e6);
            }
        }
    }
}

} // namespace es
