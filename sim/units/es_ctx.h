// es_ctx: what the SystemC units share in one run: the configuration, the
// work item that travels between units, per-sequence state, per-unit
// statistics and the energy ledger that attributes every joule to a token.
#ifndef ES_CTX_H
#define ES_CTX_H
#include <systemc>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <ostream>
#include <unordered_map>
#include <string>
#include <vector>
#include "es_analytic.h"
#include "es_area.h"
#include "es_chip.h"
#include "es_db.h"
#include "es_dp.h"
#include "es_model.h"
#include "es_trace.h"
#include "es_top.h"

namespace es {

// A group of tokens of one sequence at one point of the pipeline.
struct Item {
    int32_t seq = -1;        // sequence id
    int64_t n = 0;           // tokens in the group
    int64_t pos = 0;         // position of the first token
    bool final_chunk = false; // last prompt chunk: its last token goes on to the head
    bool decode = false;     // a fed-back output token
    int64_t ready = 0;       // cycle at which it has arrived (link latency)
    int32_t group_left = 0;  // items after this one that belong to the same work item
    int32_t tok_idx = 0;     // completions: output index of the token
    double tok_j = 0;        // completions: the token's energy so far
    int32_t token = -1;      // functional: the token a decode item or a completion carries
    std::shared_ptr<std::vector<float>> act; // functional: (n, hidden) residual stream of the tokens
    bool operator==(const Item &o) const { return seq == o.seq && n == o.n && pos == o.pos; }
};
std::ostream &operator<<(std::ostream &os, const Item &it);

struct SeqState {
    int64_t prompt = 0, gen = 0;  // tokens prefilled (after any shared prefix), tokens out
    int64_t start = 0;            // position of the first prompt token (shared prefix length)
    int64_t kv = 0;               // KV positions held while in flight
    uint32_t tag = 0;             // the host's request id
    int64_t produced = 0;         // tokens sampled so far
    int64_t admit = -1;           // cycle a KV slot was granted
    int64_t first_arrival = -1;   // cycle the first token reached the host
    int64_t last_arrival = -1;    // cycle the previous token reached the host
    double pending_j = 0;         // dynamic energy not yet attributed to a token
    double energy_j = 0;          // energy of its tokens so far
    std::vector<int32_t> prompt_ids; // functional: token ids of positions start.. (prompt)
    std::vector<int32_t> out_ids;    // functional: tokens sampled so far
    bool tap = false;             // functional: record the logits of every position (run --logits)
    std::vector<es_token_rec> toks; // eval: its tokens so far (seq, idx, t_ns, energy_j), kept in flight only
    std::vector<std::pair<int64_t, int64_t>> spans; // power limit: each token's (previous sample, its sample) cycles
};


// card.power_limit_w: simulated time runs in cycles of the nominal clock; the clock of each
// window of power_window_s x nominal cycles is the highest step (nominal - k x clock_step_hz)
// at which that window's average power fits the limit, chosen when the window's events are
// all charged (an ideal governor: a real one reacts a window late). Energy per event does not
// depend on the clock (frequency steps only, voltage fixed); leakage and board power are per
// second, so a slower window costs more of them. real_s() maps a cycle to real seconds.
struct Governor {
    bool on = false;
    int64_t W = 0;                    // window, nominal cycles
    double f_nom = 0, step = 0, limit = 0;
    double fixed_w = 0;               // leakage / VR efficiency + board: per second
    double clock_j = 0;               // clock_gating none: card joules per cycle, whatever the clock
    double e_open = 0;                // card dynamic joules charged in the open window
    int64_t closed = 0;               // windows closed
    int64_t first_slow = -1;          // the first window below the nominal clock (-1: none yet)
    std::vector<double> f, start_s;   // each closed window's clock and real start, from first_slow on
    std::vector<double> window_w;     // each closed window's average card power (dynamic + static)
    double throttled_s = 0;           // real time spent below the nominal clock
    double min_f = 0;                 // lowest clock used
    std::function<void()> on_close;   // called after windows close (deferred eval records)
    // Charge j card joules at `cycle`: windows before it close first.
    void add(int64_t cycle, double j) { if (on && cycle / W > closed) close_to(cycle / W); e_open += j; }
    void close_one(int64_t len);      // close window `closed`, len cycles long
    void close_to(int64_t k);         // close windows [closed, k)
    void close_last(int64_t end);     // close the open window, cut at cycle `end`
    bool known(int64_t cycle) const { return !on || cycle / W < closed; }
    // Real seconds at nominal cycle c (a double: nominal ns x f_nom / 1e9); c's window must be closed.
    double real_s(double c) const;
    // The static energy a token sampled at `at` (the previous sample at `from`) lacks at the nominal clock.
    double static_fix(int64_t from, int64_t at) const;
    double real_ns(double nominal_ns) const { return first_slow < 0 ? nominal_ns : real_s(nominal_ns * f_nom * 1e-9) * 1e9; }
};

class Ctx {
public:
    Ctx(const es_map *pm, const es_area *a);
    const es_map *map;                // the placement table: each tensor's place, each op's unit
    const es_chip *c;                 // map->chip
    const es_model *m;                // map->model
    sc_core::sc_time period;          // one clock cycle
    double dyn_scale;                 // card joules per chip joule (1 / VR efficiency)
    double clock_w = 0;               // clock_gating "none": every register clocked every cycle / VR efficiency
    double static_w;                  // leakage / VR efficiency + board static + clock_w
    std::deque<SeqState> seqs;        // by sequence id (slot); deque: stable references as it grows
    bool seq_tokens = false;          // keep each sequence's token records until it finishes (its rows)
    std::vector<int64_t> stream0;     // request 0's token arrival cycles at the host (the decode-step figures)
    int64_t sampled = 0;              // tokens sampled
    std::deque<es_unit_rec> units;    // deque: stable addresses
    int64_t last_sample = 0;          // cycle of the previous sample, for static shares
    int64_t end_cycle = 0;            // last arrival at the host
    int in_flight = 0, max_in_flight = 0;
    bool progress = false;            // print progress lines to stderr
    int64_t total_tokens = 0;         // tokens the run will produce
    int64_t kv_cap = 0;               // KV positions per layer the chip holds
    int64_t kv_used = 0, kv_max_used = 0; // held now, most held at once
    int64_t prefill_passes = 0;       // prompt tokens sent through the tiles
    std::string error;                // set by a unit that cannot go on; the run stops
    // functional mode (dp non-null): the datapath, prompts waiting for their SQ entry
    // (by request tag), the shared prefix's ids, the request whose logits are tapped
    es_dp *dp = nullptr;
    bool cycle = false;               // --fidelity cycle: tiles advance clock by clock (es_tile.h)
    int64_t cosim_depth = -1;         // --rtl-cosim: tile 0's lane pipeline depth (-1: tile.lanes.pipeline_depth)
    std::unordered_map<uint32_t, std::vector<int32_t>> pending_prompts;
    std::vector<int32_t> prefix_ids;
    int64_t tap_id = -1;
    std::vector<TapRow> tap_rows;
    Routing routing;
    MoeStats moe;
    size_t replay_next = 0;
    // MoE: the top_k experts of the token at pos of sequence seq, in layer, into out.
    void route(int32_t seq, int64_t pos, int layer, int32_t *out);

    // --trace: the writer (null: off); a unit's track (0 when off); a span and its request's flow step
    es_trace *trace = nullptr;
    int track(const std::string &name) const { return trace ? es_trace_track(trace, name.c_str()) : 0; }
    void span(int trk, int64_t start, int64_t end, const char *op, int32_t seq, int64_t pos, int64_t n, bool flow) const
    {
        if (!trace) return;
        int64_t req = (int64_t)seqs[(size_t)seq].tag;
        es_trace_span(trace, trk, start, end, op, req, pos, n);
        if (flow) es_trace_flow(trace, trk, start, req, 0);
    }
    void count_in_flight() const
    {
        if (trace) es_trace_counter(trace, "sequences in flight", now(), in_flight);
        vcd_touch();
    }
    // --vcd: the units' counters changed; the tracer copies them into its signals (null: off)
    sc_core::sc_event *vcd_changed = nullptr;
    void vcd_touch() const { if (vcd_changed) vcd_changed->notify(sc_core::SC_ZERO_TIME); }

    int64_t now() const;
    mutable uint64_t now_ps_ = ~0ull;  // now(): the time it last converted and its cycle, so a
    mutable int64_t now_cycle_ = 0;   // process asking again at the same time does not divide
    void wait_cycles(int64_t n);
    void wait_until(int64_t cycle);
    // The delay from now to `cycle`, for wait() and next_trigger(). Past the cycles SystemC's 64-bit
    // time can count (max_cycle), the run fails instead of wrapping; the delay is then zero.
    sc_core::sc_time delay_to(int64_t cycle);
    int64_t max_cycle = 0;
    es_unit_rec *unit(const char *name);
    // The state of sequence id `slot`, created on first use.
    SeqState &seq(uint32_t slot);
    // Count an item's events on a unit and on the sequence that caused them.
    void charge(es_unit_rec *u, int32_t seq, const es_events &ev);
    Governor gov;                     // card.power_limit_w (off without a limit)
    // The sampler produced the next token of seq now. Fills the completion
    // item's token index, energy and (when tokens are kept) record index.
    void sample(int32_t seq, Item &cpl);
    // KV accounting on the device: a sequence takes its positions when fetched
    // and gives them back when its last token is sampled. Overflow is an error.
    void kv_take(int64_t n);
    void kv_give(int64_t n);
    // Stop the run with an error message.
    void fail(const char *fmt, ...)
#ifdef __GNUC__
        __attribute__((format(printf, 2, 3)))
#endif
        ;
    double cycles_to_ns(double cyc) const { return cyc * 1e9 / c->clock_hz; }
    // Functional mode: logits of row x (hidden) for the tapped sequence at pos.
    void tap(int32_t seq, int64_t pos, int32_t token, const float *x);
};

} // namespace es
#endif
