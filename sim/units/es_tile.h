// es_tile: one layer tile: ROM banks and MAC lanes for the projections, a
// vector unit, and an attention engine that must hold a port of its KV SRAM
// group while it streams K and V. One work item (tokens of one or more
// sequences) occupies the tile at a time.
#ifndef ES_TILE_H
#define ES_TILE_H
#include <systemc>
#include <vector>
#include "es_ctx.h"

namespace es {

class Tile : public sc_core::sc_module {
public:
    sc_core::sc_fifo_in<Item> in;
    sc_core::sc_fifo_out<Item> out;
    // ops: this tile's slice of the graph; kv_ports: the SRAM group's ports;
    // last: the final tile, which retires prompt chunks that end no prompt.
    Tile(sc_core::sc_module_name nm, Ctx &ctx, std::vector<const es_op *> ops,
         sc_core::sc_semaphore *kv_ports, bool last);
    SC_HAS_PROCESS(Tile);

private:
    void run();
    Ctx &ctx_;
    std::vector<const es_op *> ops_;
    sc_core::sc_semaphore *kv_;
    bool last_;
    es_unit_rec *stat_;
    std::vector<Item> group_;       // the work item being served
    std::vector<es_events> own_;    // per sequence of it: attention events
    int lo_, hi_;                   // its layers [lo, hi)
};

} // namespace es
#endif
