// es_top: builds the chip from its units for one model, runs a workload
// through the host driver to completion and returns what the outputs report.
#ifndef ES_TOP_H
#define ES_TOP_H
#include <cstdint>
#include <functional>
#include <string>
#include <vector>
#include "es_analytic.h"
#include "es_area.h"
#include "es_db.h"
#include "es_driver.h"
#include "es_dp.h"
#include "es_tok.h"

namespace es {

// MoE routing: which experts each token goes to, as a workload chooses it.
struct Routing {
    int kind = 0;                     // 0 uniform, 1 Zipf, 2 replayed from a file
    double zipf_s = 1.0;              // Zipf exponent: expert e drawn with weight 1 / (e + 1)^s
    std::vector<std::vector<int32_t>> replay; // expert ids per routed token, used in turn
    uint64_t seed = 1;
};

// What MoE tiles measured.
struct MoeStats {
    std::vector<int64_t> fired;       // activations per expert (all layers)
    std::vector<int64_t> queue;       // cycles tokens waited for each expert's lanes
    std::vector<int64_t> busy;        // cycles booked on each expert's lanes (all tiles)
    int64_t item_layers = 0;          // decode work items x layers with experts
    int64_t distinct = 0;             // experts fired, summed over them
    int64_t prefill_item_layers = 0, prefill_distinct = 0; // the same for prompt chunks
};

struct Request {
    int64_t prompt = 0;      // tokens to prefill after the shared prefix
    int64_t gen = 0;         // tokens to generate
    std::vector<int32_t> ids; // functional: the prompt's token ids (prompt of them)
    int32_t adapter = -1;     // the LoRA adapter it uses (es_map_set_adapters' id; -1: none)
};

struct SeqState;

// A position's logits, recorded for the sequence being tapped (functional mode).
struct TapRow {
    int64_t pos;
    int32_t token;             // the token at pos
    std::vector<float> logits; // (vocab) predicting pos + 1
};

// A finished request: the driver's view and the device's per-sequence sums
// (energy_j, first_arrival, ...). Return non-zero (and fill e) to stop the run.
using Sink = std::function<int(const es_req_result &, const SeqState &, es_err *)>;
// The next request: 1 with id and r filled, 0 when there are no more, -1 on error.
using Source = std::function<int(int64_t &id, Request &r, es_err *)>;

struct Workload {
    std::vector<Request> reqs;   // all submitted at time 0, admitted by the driver's scheduler
    Source source;               // instead of reqs: requests read as the driver can admit them
    Sink sink;                   // called as each request finishes (eval); run collects seqs itself
    bool seq_tokens = false;     // SeqState::toks holds a request's tokens until its sink (eval's tokens rows)
    // run: each output token's record as its request finishes (its tokens row; null: not kept).
    // Tokens are streamed, never all held: a run's memory does not grow with its length.
    std::function<int(const es_token_rec &, es_err *)> token_sink;
    int window = 1024;           // driver read-ahead (SPF chooses within it)
    int64_t prefix = 0;          // shared prefix tokens computed once (0: none)
    int32_t prefix_adapter = -1; // the LoRA adapter the shared prefix is computed with (-1: none)
    int policy = ES_POLICY_FCFS;
    bool progress = false;       // progress lines on stderr during the run
    // the analytic summary's uniform workload (run): prompt and gen per stream
    int64_t an_prompt = 0, an_gen = 0;
    // functional mode: the datapath (null: timing only), the shared prefix's ids,
    // the request whose every position's logits are recorded (-1: none)
    es_dp *dp = nullptr;
    std::vector<int32_t> prefix_ids;
    int64_t tap_id = -1;
    // --stop-at-eos (functional): a request ends at the first token this tokenizer calls end-of-generation
    // (es_tok_is_eog), at most its gen tokens; null: every request generates its gen tokens
    const es_tok *stop_at_eog = nullptr;
    // source: the most KV positions one request may hold (its prompt and gen; eval: its context window), which an
    // expert-parallel stage's KV bound is sized for (Sim::kv_cap); 0: kv.slot_context of the stage's first chip
    int64_t max_request = 0;
    Routing routing;             // MoE models: how tokens pick their experts
    bool cycle = false;          // --fidelity cycle: tiles advance clock by clock (es_tile.h)
    int64_t cosim_depth = -1;    // --rtl-cosim: tile 0's lane pipeline depth, the Verilated lane's (-1: the chip's)
    // --trace: a Chrome trace-event file of unit occupancy (empty: none), kept to
    // the events overlapping [trace_start_ns, trace_end_ns] (end < 0: to the end)
    std::string trace_path;
    // --vcd: a VCD file of SystemC signals (empty: none): each tile's work items, KV positions held
    // and sequences in flight, one value change per change
    std::string vcd_path;
    double trace_start_ns = 0, trace_end_ns = -1;
};

// One chip of a system run (RunResult::chips): what it holds and what it measured.
struct ChipResult {
    std::string name;                    // its chip's name
    std::string prefix;                  // its units' name prefix ("c0_", ...)
    int64_t layer_first = 0, layer_last = 0; // the model's layers it holds
    es_area area{};                      // its die holding its slice
    int64_t kv_positions = 0;            // KV positions per layer it holds
    int64_t kv_max_used = 0;             // most held at once
    double dynamic_j = 0;                // its units' energy (card joules)
    double leak_w = 0;                   // its leakage / VR efficiency
    double board_w = 0;                  // its card's board static power (a tensor-parallel stage: its copies')
    int64_t copies = 1;                  // the chips it stands for (a tensor-parallel stage's tp; area: one chip's)
    double clock_hz = 0;                 // its clock: its units count its cycles
    int64_t cycles = 0;                  // the run's length in its cycles (RunResult::cycles counts the first chip's)
    int64_t busy_cycles = 0;             // its units' busy cycles summed, in its cycles
    double die_utilization = 0;          // sum of its units' area x busy / (its die area x cycles)
    // card.power_limit_w (0: none; its own governor, es_ctx.h Throttle): its limit (a tensor-parallel stage: its
    // copies'), real time below its nominal clock, its lowest clock, and each window's average card watts and clock
    double power_limit_w = 0, throttled_s = 0, min_clock_hz = 0, window_s = 0;
    std::vector<double> window_w, window_clock_hz;
};

struct RunResult {
    es_an_summary an{};                  // analytical oracle (uniform run workloads)
    es_area area{};                      // area, transistors, leakage
    double clock_hz = 0;
    int64_t cycles = 0;                  // last completion reaches the host
    double seconds = 0;                  // simulated time
    double decode_tokens_per_s = 0;      // mean over streams of (gen-1)/decode time
    double tokens_per_s = 0;             // all output tokens / simulated time
    double ttft_ns = 0, ttft_max_ns = 0; // mean and worst time to first token
    double lat_p50_ns = 0, lat_p99_ns = 0; // inter-token latency after the first token
    int64_t decode_intervals = 0;        // tokens after their stream's first; 0 (one token each): the
                                         // decode rate and token latencies are undefined (JSON null)
    double seq_ns_per_token = 0;         // mean over streams of (done - submit) / tokens
    double total_j = 0;                  // card energy of the run
    double dynamic_j = 0;                // events x energy / VR efficiency
    double static_w = 0;                 // leakage / VR efficiency + board static + clock_w
    double clock_w = 0;                  // clock_gating "none": all registers every cycle / VR efficiency
    // card.power_limit_w (0: none): time below the nominal clock, the lowest clock, each window's average card watts
    double power_limit_w = 0, throttled_s = 0, min_clock_hz = 0, window_s = 0;
    std::vector<double> window_w;
    std::vector<double> window_clock_hz; // card.governor reactive: each window's clock (the ideal's: empty)
    double unattributed_j = 0;           // static energy after the last sample, plus the shared prefix's
    double prefix_j = 0;                 // dynamic energy of the shared prefix
    double watts = 0, joules_per_token = 0;
    int64_t tokens = 0;
    int64_t max_in_flight = 0;           // most sequences holding KV at once (device)
    int64_t kv_positions = 0;            // KV capacity, positions per layer
    int64_t kv_max_used = 0;             // most positions held at once (device)
    int64_t prefill_passes = 0;          // prompt tokens sent through the tiles, prefix included
    double die_utilization = 0;          // sum of unit area x busy / (die area x run time)
    int64_t store_busy_cycles = -1;      // cycles booked on a chip-scope weight store (-1: none, the weights
                                         // stream inside the lanes' bookings)
    // stream 0's decode steps, sim vs analytic, in cycles
    int64_t step_first = 0, step_last = 0, step_total = 0;
    int64_t an_step_first = 0, an_step_last = 0, an_step_total = 0;
    int64_t ttft_cycles = 0, an_ttft_cycles = 0;
    std::vector<es_seq_rec> seqs;
    std::vector<es_unit_rec> units;      // a system's: busy_cycles in the run's (first chip's) cycles
    // functional mode (run): each request's sampled tokens by id; the tapped request's logits
    std::vector<std::vector<int32_t>> out_ids;
    std::vector<TapRow> tap;
    MoeStats moe;                        // MoE models: experts fired and their queues
    // a system of several chips: the static power of all of them (each tensor-parallel stage's copies counted), in
    // card watts: leakage / VR efficiency, ungated clock, boards, HBM stacks (0 for a chip alone: see static_w)
    double sys_leak_w = 0, sys_clock_w = 0, sys_board_w = 0, sys_store_w = 0;
    std::vector<ChipResult> chips;       // a system of several chips: each one (empty for a chip alone);
                                         // area is then their sum, units all of theirs (prefixed)
};

// Run the simulation of pm->model on pm->chip, placed as the table says (es_map.h). Only one call per
// process: SystemC elaborates once.
int run_sim(const es_map *pm, const Workload &w, RunResult &r, es_err *e);
// The same over a system of n chips in pipeline order (es_system.h), pms[k] the table of chip k's slice
// of the model (es_model_slice): the first holds the embedding, the last the head; each chip's card_link
// is the link it sends on. Each chip's units count its own clock's cycles; the run's (r.cycles, the host's
// times, the trace) count the first chip's, and so do r.units' busy_cycles (each chip's own: r.chips). None
// may have a power limit; tile.sync_step: the first stage setting it forms the steps (es_system.h); --vcd traces every chip
// (es_die.cpp). The analytic summary (r.an) is left empty for n > 1 but for its decode figures.
int run_sim(const es_map *const *pms, int n, const Workload &w, RunResult &r, es_err *e);

} // namespace es
#endif
