// es_host: see es_host.h.
#include "es_host.h"
#include <algorithm>
#include <chrono>
#include <cstdio>

namespace es {

HostDevice::HostDevice(sc_core::sc_module_name nm, Ctx &ctx) : sc_module(nm), ctx_(ctx)
{
    stat_ = ctx_.unit("host_completion");
    trk_ = ctx_.run.track("host_completion");
    SC_THREAD(fetch);
    SC_THREAD(complete);
    SC_THREAD(dma);
}

void HostDevice::fetch()
{
    const int64_t chunk = ctx_.c->sched.prefill_chunk;
    for (;;) {
        es_sqe q;
        while (!es_drv_sq_pop(drv, &q)) sc_core::wait(doorbell);
        if (q.seq > (1u << 24)) {
            ctx_.run.fail("device: SQ entry names sequence %u", q.seq);
            return;
        }
        SeqState &s = ctx_.run.seq(q.seq);
        s = SeqState();
        s.prompt = q.prompt_tokens;
        s.gen = q.max_new;
        s.start = q.start_pos;
        s.kv = q.kv_positions;
        s.tag = q.tag;
        s.adapter = (int32_t)q.adapter - 1;
        if (s.adapter >= ctx_.map->n_adapters) {
            ctx_.run.fail("device: request %u names adapter %d; the chip holds %d", q.tag, s.adapter,
                          ctx_.map->n_adapters);
            return;
        }
        s.admit = ctx_.run.now();
        ctx_.kv_take_all(s, s.kv);
        if (ctx_.dp) { /* functional: the prompt's ids cross with its chunks; KV for its positions */
            if (q.opcode == ES_SQE_PREFIX) {
                s.prompt_ids = ctx_.run.prefix_ids;
            } else {
                auto it = ctx_.run.pending_prompts.find(q.tag);
                if (it != ctx_.run.pending_prompts.end()) {
                    s.prompt_ids = std::move(it->second);
                    ctx_.run.pending_prompts.erase(it);
                }
            }
            if ((int64_t)s.prompt_ids.size() != s.prompt) {
                ctx_.run.fail("device: request %u has %zu prompt token ids for %lld positions", q.tag,
                          s.prompt_ids.size(), (long long)s.prompt);
                return;
            }
            s.tap = q.opcode == ES_SQE_SEQ && ctx_.run.tap_id >= 0 && q.tag == (uint32_t)ctx_.run.tap_id;
            es_err e{};
            if (es_dp_seq_begin(ctx_.dp, (int32_t)q.seq, s.start, s.prompt + s.gen, 0, q.tag, &e) ||
                es_dp_seq_lora(ctx_.dp, (int32_t)q.seq, s.adapter, &e)) {
                ctx_.run.fail("%s", e.msg);
                return;
            }
        }
        if (q.opcode == ES_SQE_SEQ && ++ctx_.run.in_flight > ctx_.run.max_in_flight)
            ctx_.run.max_in_flight = ctx_.run.in_flight;
        if (q.opcode == ES_SQE_SEQ) ctx_.run.count_in_flight();
        for (int64_t p = 0; p < s.prompt; p += chunk) {
            Item it;
            it.seq = (int32_t)q.seq;
            it.pos = s.start + p;
            it.n = s.prompt - p < chunk ? s.prompt - p : chunk;
            it.final_chunk = q.opcode == ES_SQE_SEQ && p + it.n == s.prompt;
            it.adapter = s.adapter;
            it.ready = ctx_.now(); /* the first chip's cycles (the run's but for a governed clock) */
            ctx_.run.prefill_passes += it.n;
            send_item(submit, link, it);
        }
    }
}

void HostDevice::complete()
{
    const es_chip *c = ctx_.c;
    const int64_t occ = es_an_host_occ(c, c->host.cpl_bytes), lat = es_an_host_lat(c);
    auto last_print = std::chrono::steady_clock::now();
    int64_t done = 0;
    for (;;) {
        Item it = completion.read();
        int64_t start = std::max(ctx_.run.now(), it.ready);
        ctx_.run.wait_until(start + occ); /* it arrives, then occupies the link: one wait */
        int64_t arrive = ctx_.run.now() + lat;
        es_events ev{};
        ev.host_bits = 8.0 * (double)c->host.cpl_bytes;
        double j = es_events_joules(c, &ev) * ctx_.run.dyn_scale;
        ctx_.add_energy(j); /* the host link is the first chip's card's */
        es_events_add(&stat_->ev, &ev);
        stat_->energy_j += j;
        stat_->items++;
        stat_->tokens++;
        stat_->busy_cycles += ctx_.run.now() - start;
        SeqState &s = ctx_.run.seqs[(size_t)it.seq];
        int64_t prev = s.last_arrival < 0 ? 0 : s.last_arrival; /* the batch starts at cycle 0 */
        if (s.tag == 0) ctx_.run.stream0.push_back(arrive); /* request 0: its decode steps in cycles */
        s.energy_j += it.tok_j + j;
        ctx_.run.span(trk_, start, start + occ, "completion", it.seq, it.pos, 1, true);
        if (ctx_.run.trace && it.tok_idx + 1 == s.gen) es_trace_flow(ctx_.run.trace, trk_, start, (int64_t)s.tag, 1);
        if (ctx_.run.seq_tokens) {
            es_token_rec r{};
            r.seq = (int32_t)s.tag;
            r.idx = it.tok_idx;
            r.t_ns = ctx_.run.cycles_to_ns((double)arrive);
            r.latency_ns = ctx_.run.cycles_to_ns((double)(arrive - prev)); /* idx 0: the sink makes it since submission */
            r.energy_j = it.tok_j + j;
            s.toks.push_back(r);
        }
        if (it.tok_idx == 0) s.first_arrival = arrive;
        s.last_arrival = arrive;
        if (arrive > ctx_.run.end_cycle) ctx_.run.end_cycle = arrive;
        es_cqe q{};
        q.seq = (uint32_t)it.seq;
        q.token = it.token < 0 ? 0 : (uint32_t)it.token;
        q.idx = (uint16_t)it.tok_idx;
        q.flags = (uint16_t)((it.tok_idx == 0 ? ES_CQE_FIRST : 0) | (it.tok_idx + 1 == s.gen ? ES_CQE_LAST : 0));
        in_transit_.emplace_back(arrive, q);
        transit_event_.notify(sc_core::SC_ZERO_TIME);
        done++;
        if (ctx_.run.progress && (done & 1023) == 0) {
            auto t = std::chrono::steady_clock::now();
            if (t - last_print > std::chrono::milliseconds(500)) {
                last_print = t;
                std::fprintf(stderr, "\r  %lld / %lld tokens (%.0f%%), %.3f ms simulated", (long long)done,
                             (long long)ctx_.run.total_tokens, 100.0 * (double)done / (double)ctx_.run.total_tokens,
                             ctx_.run.cycles_to_ns((double)arrive) / 1e6);
            }
        }
    }
}

// Completions reach host memory after the link latency, in order.
void HostDevice::dma()
{
    for (;;) {
        while (in_transit_.empty()) sc_core::wait(transit_event_);
        ctx_.run.wait_until(in_transit_.front().first);
        while (es_drv_cq_push(drv, &in_transit_.front().second)) sc_core::wait(ctx_.run.period);
        in_transit_.pop_front();
        cq_event.notify(sc_core::SC_ZERO_TIME);
    }
}

HostProgram::HostProgram(sc_core::sc_module_name nm, Ctx &ctx, HostDevice &dev)
    : sc_module(nm), ctx_(ctx), dev_(dev)
{
    SC_THREAD(main);
}

void HostProgram::main()
{
    es_err e{};
    if (es_drv_run(dev_.drv, src, &e)) ctx_.run.fail("%s", e.msg);
}

} // namespace es
