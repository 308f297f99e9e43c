// test_units: the SystemC units alone, built from the esunits library without the command line,
// each timed against cycles worked out by hand below, numbered by group.
//   1.x  Server (es_server.h): the start cycle of every booking of hand-written request sequences
//   2.x  Tile (es_tile.h): one work item alone in a tile takes exactly the cycles of the table in
//        t2 (tiny-llama on tests/data/tiny-chip.json), which the analytical model also gives;
//        transaction and cycle fidelity alike, entering directly and over a link
//   3.x  LinkPort (es_link.h): an item's arrival = its start + serialization + latency, by hand;
//        back-to-back items pipeline; the link's statistics
// Run as `test_units MODELS_DIR TESTS_DATA_DIR`.
#include <systemc>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>
#include "es_analytic.h"
#include "es_area.h"
#include "es_chip.h"
#include "es_ctx.h"
#include "es_link.h"
#include "es_model.h"
#include "es_server.h"
#include "es_stack.h"
#include "es_tile.h"

#include "test_check.h"

namespace {

using es::Item;

/* ---- 1. Server: a reservation table, earliest fit at or after `ready` ---- */

void t1_server()
{
    /* 1.1 one port: in order, back to back, then a later request, then gaps filled */
    es::Server s;
    CHECK(s.book(0, 0, 5) == 0, "1.1 first booking starts at its ready cycle");
    CHECK(s.book(0, 0, 3) == 5, "1.1 [0,5) taken: starts at 5");
    CHECK(s.book(0, 2, 4) == 8, "1.1 ready at 2, [0,8) taken: starts at 8");
    CHECK(s.book(0, 20, 2) == 20, "1.1 free from 12: starts at its ready cycle 20");
    /* booked: [0,5) [5,8) [8,12) [20,22) */
    CHECK(s.book(0, 12, 4) == 12, "1.1 the gap [12,20) holds 4 cycles from 12");
    /* booked: ... [8,12) [12,16) [20,22): 5 cycles from 13 fit neither [16,20) nor before 22 */
    int64_t late = s.book(0, 13, 5);
    CHECK(late == 22, "1.1 5 cycles ready at 13: the first gap that holds them is [22,..), got %lld", (long long)late);
    CHECK(s.book(0, 0, 4) == 16, "1.1 4 cycles ready at 0: the gap [16,20)");
    /* no occupancy: it still starts at a cycle the resource is not busy ([0,5) holds 3), and reserves nothing */
    CHECK(s.book(0, 3, 0) == 5, "1.1 no occupancy, ready at 3 inside [0,5): starts at 5");
    CHECK(s.book(0, 5, 0) == 5, "1.1 no occupancy, ready at 5: starts at 5");
    CHECK(s.book(0, 27, 1) == 27, "1.1 [27,28) is free after [22,27)");
    CHECK(s.busy_cycles == 5 + 3 + 4 + 2 + 4 + 5 + 4 + 0 + 0 + 1 && s.items == 10, "1.1 busy %lld items %lld",
          (long long)s.busy_cycles, (long long)s.items);
    /* 1.2 `now` drops what is over: a later booking from now is unaffected */
    CHECK(s.book(100, 100, 10) == 100 && !s.free_at(105) && s.free_at(110), "1.2 after the past bookings");
    CHECK(s.book(100, 100, 5) == 110, "1.2 [100,110) taken: starts at 110");

    /* 1.3 two ports (a KV group's): two at once, the third when the first port frees */
    es::Server two(2);
    CHECK(two.book(0, 0, 10) == 0 && two.book(0, 0, 6) == 0, "1.3 both ports from 0");
    CHECK(two.book(0, 0, 5) == 6, "1.3 the second port frees first, at 6");
    /* port 0 [0,10), port 1 [0,6) [6,11): ready at 1, port 0 frees first */
    CHECK(two.book(0, 1, 4) == 10, "1.3 ready at 1: port 0 frees at 10, port 1 at 11: starts at 10");
    /* port 0 [0,10) [10,14), port 1 [0,6) [6,11) */
    CHECK(!two.free_at(10) && two.free_at(11), "1.3 free_at: some port has nothing booked after now");
}

/* ---- harness modules ---- */

/* Writes each item into `out` at its cycle, over `link` (none: a wire). */
struct Feeder : sc_core::sc_module {
    sc_core::sc_fifo_out<Item> out;
    es::Run &run;
    es::LinkPort *link = nullptr;
    std::vector<std::pair<int64_t, Item>> items; // (cycle, item), in cycle order
    SC_HAS_PROCESS(Feeder);
    Feeder(sc_core::sc_module_name nm, es::Run &r) : sc_module(nm), run(r) { SC_THREAD(feed); }
    void feed()
    {
        for (auto &ci : items) {
            run.wait_until(ci.first);
            ci.second.ready = run.now();
            es::send_item(out, link, ci.second);
        }
    }
};

/* Reads what leaves a unit: the cycle each item arrives and the item. */
struct Sink : sc_core::sc_module {
    sc_core::sc_fifo_in<Item> in;
    es::Run &run;
    std::vector<std::pair<int64_t, Item>> got;
    SC_HAS_PROCESS(Sink);
    Sink(sc_core::sc_module_name nm, es::Run &r) : sc_module(nm), run(r) { SC_THREAD(drain); }
    void drain()
    {
        for (;;) {
            Item it = in.read();
            got.emplace_back(run.now(), it);
        }
    }
};

/* Runs a function once, at a cycle. */
struct Script : sc_core::sc_module {
    es::Run &run;
    int64_t at;
    std::function<void()> fn;
    SC_HAS_PROCESS(Script);
    Script(sc_core::sc_module_name nm, es::Run &r, int64_t cycle, std::function<void()> f)
        : sc_module(nm), run(r), at(cycle), fn(std::move(f))
    {
        SC_THREAD(go);
    }
    void go()
    {
        run.wait_until(at);
        fn();
    }
};

Item item(int32_t seq, int64_t n, int64_t pos, bool decode)
{
    Item it;
    it.seq = seq;
    it.n = n;
    it.pos = pos;
    it.decode = decode;
    return it;
}

/* A tile of layer 0 fed by a Feeder, drained by a Sink. */
struct TileBench {
    es::Server kv;
    sc_core::sc_fifo<Item> q_in, q_out;
    es::Tile tile;
    Feeder feed;
    Sink sink;
    TileBench(const std::string &name, es::Ctx &ctx, const std::vector<const es_op *> &ops)
        : kv(ctx.c->kv.ports), q_in((name + "_in").c_str(), (int)ctx.c->sched.fifo_depth),
          q_out((name + "_out").c_str(), (int)ctx.c->sched.fifo_depth), tile(name.c_str(), ctx, ops, &kv, false),
          feed((name + "_feed").c_str(), ctx.run), sink((name + "_sink").c_str(), ctx.run)
    {
        feed.out(q_in);
        tile.in(q_in);
        tile.out(q_out);
        sink.in(q_out);
    }
};

const char *data_dir;
std::string data(const char *f) { return std::string(data_dir) + "/" + f; }

/* The cycles of each op of one tiny-llama layer (hidden 256, FFN 768, 8 heads of 32, 2 KV heads)
 * on tests/data/tiny-chip.json, by hand, for one decode token at position p (n = 1) and a prompt
 * chunk of 8 tokens at position 0. The chip: vector unit 64 elements per cycle, latency 4; lanes
 * 8192 cells of 3 bits, striped (one partition); tile ROM 64 banks x 1024 bits per cycle, read
 * latency 2, lane pipeline 10 (a projection: ceil(n / tokens_per_read 1) x max(lane cycles, ROM
 * cycles) + 2 + 10); int3 weights in groups of 64 (26 bytes a block), attn_v int6 (50 bytes a
 * block, 2 cells a weight); KV 2 x 2 heads x 32 x 8 bits = 1024 bits a position, a port of
 * 16 banks x 256 = 4096 bits, attention 4 positions per cycle, latency 8.
 *
 *  op             work                                      n=1 (p)            n=8, p=0
 *  attn_norm      2 passes x ceil(n 256 / 64) + 4           2x4+4 = 12         2x32+4 = 68
 *  attn_q  256x256 cells 65536 / 8192 = 8; bits 8x104x256
 *                 = 212992 / 65536 -> 4: 8 a pass            8+12 = 20          64+12 = 76
 *  attn_k   64x256 cells 16384 -> 2; bits 53248 -> 1         2+12 = 14          16+12 = 28
 *  attn_v   64x256 int6 cells 32768 -> 4; bits 102400 -> 2   4+12 = 16          32+12 = 44
 *  rope           ceil(n x 320 / 64) + 4                    5+4 = 9            40+4 = 44
 *  attention      write ceil(n 1024 / 4096) + n x 8, then per token ceil(context x 1024 / 4096)
 *                 (reading takes as long as scoring 4 a cycle): 1 + 8 + ceil((p+1)/4)
 *                                                           p=9: 12, p=12: 13  2+64+(1+1+1+1+2+2+2+2) = 78
 *  attn_o  256x256 as attn_q                                20                 76
 *  attn_residual  ceil(n 256 / 64) + 4                      8                  36
 *  ffn_norm       as attn_norm                              12                 68
 *  ffn_gate 768x256 cells 196608 -> 24; bits 638976 -> 10   24+12 = 36         192+12 = 204
 *  ffn_up         as ffn_gate                               36                 204
 *  silu_mul       ceil(n 768 / 64) + 4                      12+4 = 16          96+4 = 100
 *  ffn_down 256x768 cells 196608 -> 24; bits 8x312x256 -> 10 36                204
 *  ffn_residual   as attn_residual                          8                  36
 *  the layer                                                p=9: 255, p=12: 256  1266            */
const int64_t DECODE_P9[14] = {12, 20, 14, 16, 9, 12, 20, 8, 12, 36, 36, 16, 36, 8};
const int64_t PREFILL8[14] = {68, 76, 28, 44, 44, 78, 76, 36, 68, 204, 204, 100, 204, 36};
const int64_t DECODE_P9_TOTAL = 255, DECODE_P12_TOTAL = 256, PREFILL8_TOTAL = 1266;

int64_t sum14(const int64_t *v)
{
    int64_t s = 0;
    for (int i = 0; i < 14; i++) s += v[i];
    return s;
}

/* 2.0 the hand table against the analytical model, op by op and per layer */
void t2_table(const es_map *pm, const std::vector<const es_op *> &ops)
{
    CHECK(ops.size() == 14, "2.0 a tiny-llama layer has 14 ops, got %zu", ops.size());
    CHECK(sum14(DECODE_P9) == DECODE_P9_TOTAL && sum14(PREFILL8) == PREFILL8_TOTAL, "2.0 the table adds up");
    for (size_t i = 0; i < ops.size() && i < 14; i++) {
        int64_t d = es_an_op(pm, ops[i], 1, 9), p = es_an_op(pm, ops[i], 8, 0);
        CHECK(d == DECODE_P9[i], "2.0 %s, 1 token at 9: by hand %lld, analytic %lld", ops[i]->name,
              (long long)DECODE_P9[i], (long long)d);
        CHECK(p == PREFILL8[i], "2.0 %s, 8 tokens at 0: by hand %lld, analytic %lld", ops[i]->name,
              (long long)PREFILL8[i], (long long)p);
    }
    CHECK(es_an_tile(pm, 0, 1, 9) == DECODE_P9_TOTAL, "2.0 es_an_tile(1 token at 9) %lld",
          (long long)es_an_tile(pm, 0, 1, 9));
    CHECK(es_an_tile(pm, 0, 1, 12) == DECODE_P12_TOTAL, "2.0 es_an_tile(1 token at 12) %lld",
          (long long)es_an_tile(pm, 0, 1, 12));
    CHECK(es_an_tile(pm, 0, 8, 0) == PREFILL8_TOTAL, "2.0 es_an_tile(8 tokens at 0) %lld",
          (long long)es_an_tile(pm, 0, 8, 0));
}

/* One item's trip: it left at `want` (and its `ready` says so). */
void expect_left(const char *what, const Sink &s, size_t k, int32_t seq, int64_t want)
{
    if (s.got.size() <= k) {
        CHECK(false, "%s: %zu items left the tile, expected item %zu", what, s.got.size(), k + 1);
        return;
    }
    const auto &g = s.got[k];
    CHECK(g.second.seq == seq && g.first == want && g.second.ready == want,
          "%s: sequence %d left at cycle %lld (ready %lld), by hand %lld", what, g.second.seq, (long long)g.first,
          (long long)g.second.ready, (long long)want);
}

} // namespace

int sc_main(int argc, char **argv)
{
    if (argc < 3) {
        std::fprintf(stderr, "usage: test_units MODELS_DIR TESTS_DATA_DIR\n");
        return 2;
    }
    setenv("ETCHSIM_MODELS", argv[1], 1);
    data_dir = argv[2];
    t1_server();

    es_chip c;
    es_model m;
    es_err e;
    if (es_model_load(&m, "tiny-llama", &e) || es_chip_load(&c, data("tiny-chip.json").c_str(), nullptr, 0, &e)) {
        std::fprintf(stderr, "FAIL: %s\n", e.msg);
        return 1;
    }
    es_map pm;
    if (es_map_build(&pm, &c, &m, nullptr, &e)) {
        std::fprintf(stderr, "FAIL: %s\n", e.msg);
        return 1;
    }
    es_area area;
    es_area_compute(&pm, &area);
    std::vector<const es_op *> ops;
    for (int i = 0; i < m.n_ops; i++)
        if (m.ops[i].layer == 0) ops.push_back(&m.ops[i]);
    t2_table(&pm, ops);

    /* every unit below is built before the one simulation: SystemC elaborates once */
    es::Run run(&c), run_cycle(&c);
    run_cycle.cycle = true; /* --fidelity cycle: the tile's resources clock by clock */
    es::Ctx ctx(run, &pm, &area), ctx_cycle(run_cycle, &pm, &area);
    for (uint32_t s = 0; s < 8; s++) run.seq(s), run_cycle.seq(s);

    /* 2.1 a decode token at 9 enters at 0; another at 12 enters at 1000, the tile empty again */
    TileBench dec("tile_decode", ctx, ops);
    dec.feed.items = {{0, item(0, 1, 9, true)}, {1000, item(1, 1, 12, true)}};
    /* 2.2 a prompt chunk of 8 at 0 crosses the link into the tile: it arrives at 0 + 32 + 2 = 34
     * (8 tokens x 256 x 16 bits over 1024 a cycle, latency 2) and leaves 1266 later */
    TileBench pre("tile_prefill", ctx, ops);
    es::LinkPort pre_link(ctx, "link_prefill", m.hidden * c.link.elem_bits, es::LinkPort::OnDie);
    pre.feed.link = &pre_link;
    pre.feed.items = {{0, item(2, 8, 0, false)}};
    /* 2.3 the same decode tokens, cycle fidelity */
    TileBench cyc("tile_cycle", ctx_cycle, ops);
    cyc.feed.items = {{0, item(0, 1, 9, true)}, {1000, item(1, 1, 12, true)}};

    /* 3.x links booked from cycle 100: activations (256 x 16 bits a token, 1024 bits a cycle,
     * latency 2), token ids (32 bits), the host link (64-byte command + 4 bytes a token at
     * 64 GB/s = 64 bytes a cycle at 1 GHz, latency 500 ns = 500 cycles) */
    es::LinkPort act(ctx, "link_act", m.hidden * c.link.elem_bits, es::LinkPort::OnDie);
    es::LinkPort tok(ctx, "link_tok", c.link.token_id_bits, es::LinkPort::OnDie);
    es::LinkPort host(ctx, "link_host", 0, es::LinkPort::Host);
    std::vector<Item> sent(5);
    Script links("links", run, 100, [&]() {
        sent[0] = item(3, 1, 0, true);
        act.send(&sent[0], 1); /* 100 + 4 + 2 */
        sent[1] = item(4, 1, 0, true);
        act.send(&sent[1], 1); /* the link is busy to 104: 104 + 4 + 2 */
        sent[2] = item(5, 8, 0, false);
        sent[2].ready = 300; /* not ready before 300: 300 + 32 + 2 */
        act.send(&sent[2], 1);
        sent[3] = item(6, 1, 0, true);
        tok.send(&sent[3], 1); /* ceil(32 / 1024) = 1, + 2 */
        sent[4] = item(7, 8, 0, false);
        host.send(&sent[4], 1); /* ceil(96 bytes / 64) = 2, + 500 */
    });

    sc_core::sc_start();
    es::stack_restore();
    CHECK(run.error.empty() && run_cycle.error.empty(), "the run failed: %s%s", run.error.c_str(), run_cycle.error.c_str());

    CHECK(dec.sink.got.size() == 2, "2.1 two items left the tile, got %zu", dec.sink.got.size());
    expect_left("2.1 decode at 9 from 0", dec.sink, 0, 0, DECODE_P9_TOTAL);
    expect_left("2.1 decode at 12 from 1000", dec.sink, 1, 1, 1000 + DECODE_P12_TOTAL);
    CHECK(pre.sink.got.size() == 1, "2.2 one item left the tile, got %zu", pre.sink.got.size());
    expect_left("2.2 prompt chunk over a link", pre.sink, 0, 2, 34 + PREFILL8_TOTAL);
    CHECK(cyc.sink.got.size() == 2, "2.3 two items left the tile, got %zu", cyc.sink.got.size());
    expect_left("2.3 cycle fidelity, decode at 9 from 0", cyc.sink, 0, 0, DECODE_P9_TOTAL);
    expect_left("2.3 cycle fidelity, decode at 12 from 1000", cyc.sink, 1, 1, 1000 + DECODE_P12_TOTAL);
    /* 2.4 the tile's statistics: busy while an item is in it; its lanes and vector unit by op */
    for (const es_unit_rec &u : ctx.units) {
        if (std::strcmp(u.name, "tile_decode") == 0)
            CHECK(u.busy_cycles == DECODE_P9_TOTAL + DECODE_P12_TOTAL && u.items == 2 && u.tokens == 2,
                  "2.4 tile_decode busy %lld items %lld", (long long)u.busy_cycles, (long long)u.items);
        if (std::strcmp(u.name, "tile_decode.lanes") == 0) /* 8 + 2 + 4 + 8 + 24 x 3 a token */
            CHECK(u.busy_cycles == 2 * 94 && u.items == 2 * 7, "2.4 lanes busy %lld", (long long)u.busy_cycles);
        if (std::strcmp(u.name, "tile_decode.attention") == 0) /* 12 and 13 */
            CHECK(u.busy_cycles == 12 + 13 && u.items == 2, "2.4 attention busy %lld", (long long)u.busy_cycles);
    }

    /* 3.1 arrival = start + serialization + latency; back to back, the second waits for the first */
    CHECK(sent[0].ready == 106, "3.1 one token: ready %lld, by hand 106", (long long)sent[0].ready);
    CHECK(sent[1].ready == 110, "3.1 back to back: ready %lld, by hand 110", (long long)sent[1].ready);
    CHECK(sent[2].ready == 334, "3.1 8 tokens ready at 300: ready %lld, by hand 334", (long long)sent[2].ready);
    CHECK(sent[3].ready == 103, "3.2 a token id: ready %lld, by hand 103", (long long)sent[3].ready);
    CHECK(sent[4].ready == 602, "3.3 host link, 8 tokens: ready %lld, by hand 602", (long long)sent[4].ready);
    /* 3.4 the links' statistics: serialization cycles booked */
    int seen = 0;
    for (const es_unit_rec &u : ctx.units) {
        if (std::strcmp(u.name, "link_act") == 0) {
            seen++;
            CHECK(u.busy_cycles == 4 + 4 + 32 && u.items == 3 && u.tokens == 10, "3.4 link_act busy %lld",
                  (long long)u.busy_cycles);
        }
        if (std::strcmp(u.name, "link_host") == 0) {
            seen++;
            CHECK(u.busy_cycles == 2 && u.items == 1 && u.tokens == 8, "3.4 link_host busy %lld", (long long)u.busy_cycles);
        }
    }
    CHECK(seen == 2, "3.4 the links' statistics are listed");

    es_map_free(&pm);
    es_chip_free(&c);
    es_model_free(&m);
    std::printf("test_units: %d passed, %d failed\n", passes, fails);
    return fails ? 1 : 0;
}

// SystemC prints a banner before sc_main unless told not to.
int main(int argc, char **argv)
{
    setenv("SC_COPYRIGHT_MESSAGE", "DISABLE", 1);
    sc_core::sc_report_handler::set_actions(sc_core::SC_INFO, sc_core::SC_DO_NOTHING);
    es::stack_save(); /* before any coroutine runs (es_stack.h) */
    return sc_core::sc_elab_and_sim(argc, argv);
}
