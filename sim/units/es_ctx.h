// es_ctx: what the SystemC units share: the work item that travels between units, per-sequence
// state, the run-wide state every chip of a run shares (Run: simulated time, sequences, the
// host's accounting, the card's power and the energy ledger that attributes every joule to a
// token, trace and VCD, MoE routing, the first error) and each chip's own (Ctx: its chip and
// model, unit statistics, KV accounting, datapath, MoE statistics, power figures). Why each
// piece is where it is: the comments over Run and Ctx.
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
#include "es_server.h"
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
    int32_t adapter = -1;    // the LoRA adapter its sequence names (es_map_set_adapters' id; -1: none)
    std::shared_ptr<std::vector<float>> act; // functional: (n, hidden) residual stream of the tokens
    bool operator==(const Item &o) const { return seq == o.seq && n == o.n && pos == o.pos; }
};
std::ostream &operator<<(std::ostream &os, const Item &it);

struct SeqState {
    int64_t prompt = 0, gen = 0;  // tokens prefilled (after any shared prefix), tokens out
    int64_t start = 0;            // position of the first prompt token (shared prefix length)
    int64_t kv = 0;               // KV positions held while in flight
    uint32_t tag = 0;             // the host's request id
    int32_t adapter = -1;         // the LoRA adapter it names (its SQ entry's; -1: none)
    int64_t produced = 0;         // tokens sampled so far
    int64_t admit = -1;           // cycle a KV slot was granted
    int64_t first_arrival = -1;   // cycle the first token reached the host
    int64_t last_arrival = -1;    // cycle the previous token reached the host
    double pending_j = 0;         // dynamic energy not yet attributed to a token
    double energy_j = 0;          // energy of its tokens so far
    std::vector<int32_t> prompt_ids; // functional: token ids of positions start.. (prompt)
    std::vector<int32_t> out_ids;    // functional: tokens sampled so far
    std::vector<int> home;           // per stage: the chip of an expert-parallel stage holding its KV (its index)
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

// card.power_limit_w on a chip of a system: a governor inside the simulation, as a real card's
// (Governor above cannot work across chips: a slowed chip delays the chips after it). SystemC
// time is real time; the chip's clock changes at window boundaries, each the chip's first edge at
// or after k x power_window_s of real time. At the end of window k it picks window k+1's clock:
// the highest step (nominal - j x clock_step_hz, run at the whole-picosecond period nearest it)
// at which window k's energy would fit the limit had the window run at that clock, the same
// physics as Governor's (dynamic energy per event, an ungated clock per cycle, leakage and board
// per second: fixed_w, the chip's own card's). Windows close lazily: the first time the chip's
// clock is read at or past a boundary (Clock::now), so every charge falls in its window.
struct Throttle {
    bool on = false;
    double f_nom = 0, step = 0, limit = 0;
    double fixed_w = 0;               // its card: leakage / VR efficiency + board (+ HBM), per second
    double clock_j = 0;               // clock_gating none: its card joules per cycle, whatever the clock
    uint64_t window_ps = 0;           // power_window_s
    struct Seg { uint64_t ps; int64_t cycle; uint64_t period; }; // from ps (an edge, cycle): this period
    std::vector<Seg> segs;            // its clock's changes, in time order; segs[0] at 0, nominal
    int64_t k = 0;                    // the open window
    uint64_t next_ps = 0;             // its end: the edge that closes it
    double e_open = 0;                // its card dynamic joules charged in the open window
    double f_open = 0;                // its clock (the step)
    std::vector<double> window_w, window_hz; // each closed window's average card watts and clock
    double throttled_s = 0, min_f = 0;
    // Window k ran n cycles with e dynamic joules: the next window's step (pick) and its period in ps.
    double pick(double e, int64_t n) const;
    static uint64_t period_ps(double f) { return (uint64_t)(1e12 / f + 0.5); }
    uint64_t open_ps = 0;             // the open window's start (an edge) and its cycle there
    int64_t open_cycle = 0;
    void close_window(int64_t n, uint64_t dur_ps); // the open window's figures: n cycles, dur_ps long
    void close_to(uint64_t ps);       // close every window that ends at or before ps
    void close_last(uint64_t end_ps); // close the open window, cut at end_ps (the run's end)
    bool slowed() const { return segs.size() > 1; }
};

// Clock: a chip's clock, counting simulated time (SystemC's, in picoseconds) in its cycles. Each chip
// (Ctx) has its own; the run's (Run) is the first chip's, the host's: the run's cycles, its requests'
// and tokens' times, its trace and its power governor count it. An item passed between chips of
// different clocks has its `ready` cycle converted (cycle_to: the receiver's first edge at or after it).
class Clock {
public:
    // c: the chip whose clock_hz it counts; run: where a run too long for SystemC's time fails.
    Clock(const es_chip *c, class Run *run);
    double clock_hz;                  // its clock
    sc_core::sc_time period;          // one cycle, whole picoseconds (es_an_period_ps)
    // simulated time, in its cycles: the first edge at or after it (a process another chip's clock woke
    // acts on its own chip's next edge)
    int64_t now() const;
    mutable uint64_t now_ps_ = ~0ull;  // now(): the time it last converted and its cycle, so a
    mutable int64_t now_cycle_ = 0;   // process asking again at the same time does not divide
    void wait_cycles(int64_t n);
    void wait_until(int64_t cycle);
    // The delay from now to `cycle`, for wait() and next_trigger(). Past the cycles SystemC's 64-bit
    // time can count (max_cycle), the run fails instead of wrapping; the delay is then zero.
    sc_core::sc_time delay_to(int64_t cycle);
    int64_t max_cycle = 0;
    double cycles_to_ns(double cyc) const { return cyc * 1e9 / clock_hz; }
    // Its cycle `cyc` as a cycle of `to`: the first edge of `to` at or after it (itself for one period).
    int64_t cycle_to(const Clock &to, int64_t cyc) const
    {
        if (thr_ || to.thr_) { /* a governed clock: the current mappings, each clock's windows closed to now */
            now();
            to.now();
            return to.cycle_at(ps_of(cyc));
        }
        uint64_t a = period.value(), b = to.period.value();
        return a == b ? cyc : (int64_t)(((uint64_t)cyc * a + b - 1) / b);
    }
    // Its edge `cyc` in picoseconds (past its last change: at the current period), and its first edge at or after ps.
    uint64_t ps_of(int64_t cyc) const;
    int64_t cycle_at(uint64_t ps) const;
    // card.power_limit_w on a chip of a system (Throttle): its clock's period changes at window boundaries; a wait
    // that crosses one wakes there and goes on at the new period (wait_until; a method re-arms, as the tiles do).
    // Null: the nominal period throughout.
    Throttle *thr_ = nullptr;

private:
    class Run *fail_to_;
};

// Run: what every chip of a run shares. A run is one card's workload: one host, one clock, one
// power governor, one set of sequences, one trace and VCD file. These are run-wide because they
// are either the host's view (sequences, their tokens and energy, what is in flight, prompts and
// tapped logits waiting to be paired with requests), card-level (the card's power limit, static
// power and board power, and so the energy attributed to each token), or how the run is observed
// and stopped (simulated time, trace, VCD, the first error). Its clock (Clock) is the first chip's:
// the run's cycles (RunResult::cycles, the host's arrivals, the trace) count it; each chip's units
// count their own chip's (Ctx).
class Run : public Clock {
public:
    // The clock, power limit and board of the card; ideal: card.power_limit_w governs the run (Governor: a chip
    // alone), else each chip's own governor does (Ctx::thr: a system's chips).
    explicit Run(const es_chip *card, bool ideal = true);
    bool cycle = false;               // --fidelity cycle: tiles advance clock by clock (es_tile.h)

    // sequences and the host's accounting
    std::deque<SeqState> seqs;        // by sequence id (slot); deque: stable references as it grows
    // The state of sequence id `slot`, created on first use.
    SeqState &seq(uint32_t slot);
    bool seq_tokens = false;          // keep each sequence's token records until it finishes (its rows)
    std::vector<int64_t> stream0;     // request 0's token arrival cycles at the host (the decode-step figures)
    int64_t sampled = 0;              // tokens sampled
    int64_t end_cycle = 0;            // last arrival at the host
    int in_flight = 0, max_in_flight = 0;
    bool progress = false;            // print progress lines to stderr
    int64_t total_tokens = 0;         // tokens the run will produce
    int64_t prefill_passes = 0;       // prompt tokens sent through the tiles
    // functional mode: prompts waiting for their SQ entry (by request tag), the shared prefix's
    // ids, the request whose logits are tapped and its logits by position
    std::unordered_map<uint32_t, std::vector<int32_t>> pending_prompts;
    std::vector<int32_t> prefix_ids;
    int64_t tap_id = -1;
    std::vector<TapRow> tap_rows;
    const es_tok *stop_at_eog = nullptr; // --stop-at-eos: a sequence ends at its first end-of-generation token

    // the card's power: its voltage regulators, static power, the governor, each token's share of them
    double dyn_scale;                 // card joules per chip joule (1 / card.vr_efficiency)
    double static_w = 0;              // leakage / VR efficiency of every die + board static + their clock_w
    Governor gov;                     // card.power_limit_w (off without a limit)
    int64_t last_sample = 0;          // cycle of the previous sample, for static shares
    // The ungated clock of chips whose governor (Throttle) slowed them, from their first change on: their clock
    // energy per cycle less the per-second share static_w charged for it, over the run's cycles [from, to).
    double clock_fix(int64_t from, int64_t to) const;
    // A die's static power, once per die as it is built: its leakage / VR efficiency and its
    // ungated clock (Ctx::clock_w).
    void add_die(double leak_w, double clock_w);
    // The sampler produced the next token of seq now. Fills the completion
    // item's token index, energy and (when tokens are kept) record index.
    void sample(int32_t seq, Item &cpl);

    // MoE: how the workload routes tokens to experts (one choice for the whole model, whichever
    // chip holds a layer); the top_k experts of m for the token at pos of seq, in layer, into out.
    Routing routing;
    size_t replay_next = 0;
    void route(const es_model *m, int32_t seq, int64_t pos, int layer, int32_t *out);

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

    // the chips of the run, in pipeline order (each Ctx adds itself): a system's first chip admits a sequence
    // and its last retires it, and each holds that sequence's KV for its own layers (kv_take, kv_give)
    std::vector<class Ctx *> chips;

    std::string error;                // set by a unit that cannot go on; the run stops
    // Stop the run with an error message.
    void fail(const char *fmt, ...)
#ifdef __GNUC__
        __attribute__((format(printf, 2, 3)))
#endif
        ;
};

// Ctx: one chip of a run, what its units are built on: the chip and the model it holds, its
// units' statistics, its KV SRAM accounting, its functional datapath, its MoE statistics and its
// own power figures (VR efficiency, ungated clock). These are per chip because each die has its
// own configuration, its own KV SRAM (a split model's chips each hold their layers' KV) and its
// own units; its events become energy through its own process tables (then through the card's
// voltage regulators, Run::dyn_scale). Each unit holds its chip's
// Ctx and reaches the run's shared state through `run`. Its units count cycles of its own clock (Clock).
class Ctx : public Clock {
public:
    // prefix: its units' names start with it ("c1_" for chip 1 of a system; "" for a chip alone).
    Ctx(Run &run, const es_map *pm, const es_area *a, const std::string &prefix = "");
    Run &run;
    std::string prefix;
    // --trace: a span of its cycles [start, end) on track trk, in the run's cycles (Run::span)
    void span(int trk, int64_t start, int64_t end, const char *op, int32_t seq, int64_t pos, int64_t n, bool flow) const
    {
        if (run.trace) run.span(trk, cycle_to(run, start), cycle_to(run, end), op, seq, pos, n, flow);
    }
    const es_map *map;                // the placement table: each tensor's place, each op's unit
    const es_chip *c;                 // map->chip
    const es_model *m;                // map->model
    double leak_w = 0;                // its leakage / VR efficiency
    double clock_w = 0;               // clock_gating "none": every register clocked every cycle / VR efficiency
    std::deque<es_unit_rec> units;    // its units' statistics; deque: stable addresses
    es_unit_rec *unit(const char *name);
    // Count an item's events on a unit and on the sequence that caused them.
    void charge(es_unit_rec *u, int32_t seq, const es_events &ev);
    // KV accounting on the device: a sequence takes its positions when fetched
    // and gives them back when its last token is sampled. Overflow is an error.
    int64_t kv_cap = 0;               // KV positions per layer the chip holds
    bool steps = false;               // tile.sync_step and its chip forms the steps: a chip alone; of a system, the chips of
                                      // the first stage setting it (es_system.h)
    int64_t returning = 0;            // steps: tokens past its last tile bound for the head, not yet back in its
                                      // first tile's FIFO (a system: each chip its own; es_system.h)
    sc_core::sc_event returned_ev;    // notified when returning drops to 0
    void token_back() { if (--returning == 0) returned_ev.notify(sc_core::SC_ZERO_TIME); }
    int64_t seq_cap = 0;              // sequences in flight at most: kv_cap, or fewer when the requests are a list
    int64_t kv_used = 0, kv_max_used = 0; // held now, most held at once
    void kv_take(int64_t n);
    void kv_give(int64_t n);
    // A sequence's KV, on every chip of the run (each holds it for its own layers); on an expert-parallel stage,
    // on one of its chips: the one with the most positions free (the first of them on a tie), its s.home.
    void kv_take_all(SeqState &s, int64_t n);
    void kv_give_all(const SeqState &s, int64_t n);
    // functional mode: the datapath (null: timing only)
    es_dp *dp = nullptr;
    // Functional mode: logits of row x (hidden) for the tapped sequence at pos.
    void tap(int32_t seq, int64_t pos, int32_t token, const float *x);
    int64_t cosim_depth = -1;         // --rtl-cosim: tile 0's lane pipeline depth (-1: tile.lanes.pipeline_depth)
    MoeStats moe;                     // its MoE tiles' experts fired and their queues
    // A tensor-parallel stage (es_system.h; m->tp > 1): this chip stands for tp chips, so its joules, leakage and
    // clock power count tp times (and its units' event counts: the stage's); its all-reduces hold `ring` (the card links; Die owns it), counted on ring_stat.
    double copies = 1;
    Server *ring = nullptr;
    es_unit_rec *ring_stat = nullptr;
    // Book a shard's all-reduce of n tokens (es_an_allreduce; bits_each 0: the hidden vector) for sequence seq on
    // the ring from `ready`: the cycle it ends (latency included); ready itself on a whole model.
    int64_t allreduce(int64_t ready, int32_t seq, int64_t n, int64_t bits_each);
    // An expert-parallel stage (es_system.h: chips holding the same layers, each some of their experts): its chips
    // in order (stage_chips; this one alone when it is not one), its place among them, a link to each of them
    // (a2a_out[k], one per pair and direction: the dispatch this chip sends and the combine it sends back),
    // counted on its "a2a" unit; and the lanes of each of its own experts (expert_lanes[layer x experts + e]),
    // which the stage's tiles book for the tokens routed there.
    int stage = 0;
    std::vector<Ctx *> stage_chips;
    int stage_index = 0;
    std::vector<Server> a2a_out;
    es_unit_rec *a2a_stat = nullptr;
    struct ExpertLanes {
        Server *srv = nullptr;        // its partition's lanes
        es_unit_rec *lanes = nullptr; // its tile's lanes unit
        es_unit_rec *tile = nullptr;  // its tile's unit (where its events are charged)
    };
    std::vector<ExpertLanes> expert_lanes;
    bool ep() const { return stage_chips.size() > 1; }
    Throttle thr;                     // card.power_limit_w on a chip of a system (its clock's governor; off otherwise)
    // Dynamic card joules j charged now: the run's power governor (a chip alone), or its own (Throttle).
    void add_energy(double j);
    Server *wstore = nullptr;         // a chip-scope SRAM or HBM weight store, shared by the tiles and the head, and
                                      // by the KV cache with kv.in_store (else null)
};

} // namespace es
#endif
