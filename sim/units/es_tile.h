// es_tile: one layer tile as three resources: the ROM banks with their MAC
// lanes (projections), the vector unit (norms, RoPE, adds, SiLU), and the
// attention engine, which holds a port of its KV SRAM group while it streams
// K and V. Up to tile.items_in_flight work items are in the tile at once.
// An item entering the tile books its ops in order, each on its resource at
// the earliest free fit (es_server.h), so one item's attention overlaps
// another's projections. A sequence's items pass the tile one at a time. An
// op holds its resource for its occupancy and then waits its pipeline latency
// with the resource free (es_an_op_split); alone in the tile, an item takes
// exactly the sum of its ops' times, as the analytical model says.
#ifndef ES_TILE_H
#define ES_TILE_H
#include <systemc>
#include <deque>
#include <list>
#include <functional>
#include <algorithm>
#include <unordered_map>
#include <vector>
#include "es_ctx.h"
#include "es_server.h"
#include "es_link.h"

namespace es {

class Tile : public sc_core::sc_module {
public:
    sc_core::sc_fifo_in<Item> in;
    sc_core::sc_fifo_out<Item> out;
    // ops: this tile's slice of the graph; kv_ports: the SRAM group's ports;
    // last: the final tile, which retires prompt chunks that end no prompt.
    Tile(sc_core::sc_module_name nm, Ctx &ctx, std::vector<const es_op *> ops, Server *kv_ports, bool last);
    SC_HAS_PROCESS(Tile);
    int items() const { return in_work_; } // work items booked and not yet finished (--vcd)
    LinkPort *link = nullptr;              // the link `out` sends on (es_link.h)

private:
    struct Work {                          // a work item in the tile, booked through its ops
        int64_t finish;                    // cycle its last op ends
        uint64_t order;                    // entry order, to break ties
        std::vector<Item> group;           // its items (several sequences with tokens_per_read > 1)
        std::vector<es_events> ev;         // events charged to each item's sequence
        bool operator>(const Work &o) const { return finish != o.finish ? finish > o.finish : order > o.order; }
    };
    enum class Resource {     // what a step of a work item runs on
        Vector,               // the vector unit (norms, RoPE, adds, SiLU)
        Attention,            // the attention or scan engine, holding a port of its KV SRAM group
        Lanes,                // a partition of the lanes (Step.part)
        Experts,              // MoE: each fired expert's chain on its own partition (book_experts)
        Ring,                 // a tensor-parallel shard's all-reduce on the chip's card links (Ctx::ring)
    };
    struct Step {
        Resource res;
        int part;             // Lanes: its partition (es_chip_partition); 0 otherwise
        int64_t occ, lat;
        const es_op *op;
        double share;         // the fraction of the tile's lanes it holds (its area)
        int64_t store;        // Lanes: cycles it holds a chip-scope weight store (es_an_store_occ; 0: none)
        int64_t kv;           // Vector: a LoRA adapter's cycles on the tile's KV port, A and B streaming (es_an_adapter)
        bool lora = false;    // the adapter step after op's projection: occ, kv and lat from the item's sequences'
                              // adapters as it is booked (adapter_step)
    };
    struct Plan {             // a work item of n tokens, attention aside
        std::vector<Step> steps;
        es_events shared{};
        int64_t lanes_busy = 0, lanes_ops = 0; // the lanes' and the vector unit's statistics for
        int64_t vec_busy = 0, vec_ops = 0;     // one item: busy cycles (by area share) and ops
    };
    const Plan &plan(int64_t n);
    std::unordered_map<int64_t, Plan> plans_; // node-based: references stay valid as it grows
    int64_t last_plan_n_ = -1;                // the plan fetched last, looked up once
    const Plan *last_plan_ = nullptr;
    void fetch();                          // takes work items in arrival order and books them (a method)
    bool take_first();                     // the next item into group_, if it may enter now
    int64_t take_more();                   // items arrived with it join it (tokens_per_read); its tokens
    bool book(int64_t total, int64_t start); // books group_ through its ops from start; false if the run failed
    // its sequences' attention: cycles, events; *store: with kv.in_store, its KV bits' cycles on the chip's store
    int64_t attention_cycles(const Step &st, Work &w, int64_t total, int64_t *store);
    void charge_plan(Work &w, const Plan &pl, int64_t total, const es_events &expert_ev); // shared events, stats
    void finish(Work &&w, int64_t t);      // to complete(), which passes it on at t
    // --fidelity cycle (ctx_.run.cycle): items advance through their steps clock by clock (tick)
    struct Active {
        Work w;
        const Plan *pl;
        int64_t total;                     // its tokens
        int64_t at;                        // cycle its next step's input is valid
        int64_t valid_at = 0;              // while issuing: the cycle its op's result will be valid
        int64_t plan = -1;                 // the cycle the controller placed its next op at (plan_ahead)
        size_t step = 0;                   // its next step
        bool issuing = false;              // a step of it is issuing or in a pipeline
        bool flowed = false;               // its --trace flow has entered the tile
        std::vector<int64_t> attn_cyc;     // per step: the attention engine's cycles (0 for other steps)
        std::vector<int64_t> attn_store;   // per step: kv.in_store, its KV bits' cycles on the chip's store
    };
    struct Beat {
        Active *a = nullptr;               // the item whose op it belongs to (none: an empty stage)
        bool last = false;                 // the op's last beat
    };
    struct Pipe {                          // a resource, at pipe_of(): the vector unit, attention, lanes partitions
        std::vector<Beat> stage;           // the issue stage, then one per cycle of latency
        int64_t beats = 0;                 // valid beats in it
        Active *cur = nullptr;             // the op issuing
        int64_t left = 0;                  // its beats still to issue
        int64_t issued = -1;               // the cycle of the last beat issued
    };
    void tick();                           // one clock of the resources (a method)
    std::list<Active> active_;             // in entry order: the oldest issues first
    std::vector<Pipe> pipes_;
    int64_t shifted_ = 0;                  // the cycle the pipelines last moved to
    void plan_ahead(int64_t now);          // the controller: where each item's ops to come go
    int64_t step_lat(const Step &st) const; // its pipeline cycles after its occupancy (cycle fidelity)
    static int64_t occupancy(const Active &a, size_t k); // cycles step k of a holds its resource
    int track(Resource res) const;         // the --trace track of a resource
    static size_t pipe_of(const Step &st); // its resource's index in pipes_ and plan_busy_
    std::vector<std::vector<std::pair<int64_t, int64_t>>> plan_busy_; // plan_ahead: per resource, cycles placed
    sc_core::sc_event tick_ev_;            // an item entered
    bool book_early() const;               // whether an item may be booked before it arrives
    int early_ = -1;                       // book_early(), once the run has set up (-1: not yet asked)
    std::deque<int64_t> early_starts_;     // early: start cycles of items booked, not yet counted in
    std::vector<Item> group_;              // the work item being taken
    bool ready_wait_ = false;              // waiting for group_[0] to arrive (link latency)
    void complete();                       // finishes them in finish order and passes them on (a method)
    void poke_fetch();                     // wakes fetch through changed_ if it would act
    std::vector<Item> leaving_;            // the finished work item's items, being written out
    size_t sent_ = 0;                      // of them, written so far
    bool sent_link_ = false;               // their transfer on `link` is booked
    void forward(std::vector<Item> &group);                    // last tile: retire, tap, truncate
    Ctx &ctx_;
    std::vector<const es_op *> ops_;
    Server *kv_;
    std::vector<Server> lanes_;            // one per partition (es_map.n_parts)
    Server vec_;
    // earliest start from t at which res is free for occ cycles and the chip's store for `store`
    int64_t store_fit(const Server &res, int64_t occ, int64_t store, int64_t t) const;
    int64_t kv_fit(const Step &st, int64_t t) const; // an adapter: earliest start the vector unit and KV port are free
    // the adapter step of work item w (st.lora): each adapter its sequences name, with its tokens, back to back on the
    // vector unit (occ, kv summed; one latency); its events charged to those sequences; false: no sequence has one
    bool adapter_step(const Step &st, Work &w, Step &out);
    int64_t book_experts(const es_op *op, const std::vector<Item> &group, int64_t start, int64_t t,
                         es_events &ev); // MoE: route, book each expert's chain; the end
    bool last_;
    int lo_, hi_;                          // its layers [lo, hi)
    es_unit_rec *stat_, *lanes_stat_, *vec_stat_, *attn_stat_;
    int lanes_trk_ = 0, vec_trk_ = 0, attn_trk_ = 0; // --trace tracks
    std::deque<Item> waiting_;             // read from `in`, not yet taken (at most one)
    std::vector<int32_t> seqs_in_;         // sequences with an item in the tile (a few: items_in_flight)
    bool in_tile(int32_t seq) const { return std::find(seqs_in_.begin(), seqs_in_.end(), seq) != seqs_in_.end(); }
    int64_t free_slots_;                   // items the tile may still take
    sc_core::sc_event changed_;            // a slot or a sequence was freed
    sc_core::sc_event_or_list arrived_or_freed_; // an input arrived or changed_ (built on first use)
    std::vector<Work> booked_;             // min-heap on finish
    std::vector<std::vector<int32_t>> routes_; // functional MoE: each item's experts, (layers, tokens, top_k)
    sc_core::sc_event booked_ev_;
    uint64_t entered_ = 0;
    int in_work_ = 0;                      // items being worked on
    int64_t busy_since_ = 0;
    int64_t clock_mark_ = 0;               // clock_gating "tile": busy time charged up to this cycle
};

} // namespace es
#endif
