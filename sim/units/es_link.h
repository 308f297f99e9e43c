// es_link: a point-to-point link between two units. It serializes one item
// at a time (occupancy = payload bits / width) and delivers it after the
// link latency without holding the link, so back-to-back items pipeline.
#ifndef ES_LINK_H
#define ES_LINK_H
#include <systemc>
#include <vector>
#include "es_ctx.h"

namespace es {

class Link : public sc_core::sc_module {
public:
    sc_core::sc_fifo_in<Item> in;
    sc_core::sc_fifo_out<Item> out;
    // bits_per_token: payload per token; host: true for the PCIe link (bytes,
    // bandwidth and latency from host.*), false for an on-die link.
    Link(sc_core::sc_module_name nm, Ctx &ctx, int64_t bits_per_token, bool host);
    SC_HAS_PROCESS(Link);

private:
    void step();                           // the method process: collect, transfer, deliver
    enum Phase { Collect, Transfer, Deliver };
    Phase phase_ = Collect;
    std::vector<Item> group_;              // the work item on the link
    int64_t start_ = 0, lat_ = 0;          // cycle its transfer began; latency after it
    size_t sent_ = 0;                      // items of it written out so far
    Ctx &ctx_;
    int64_t bits_per_token_;
    bool host_;
    es_unit_rec *stat_;
    int trk_ = 0;                          // its --trace track
};

} // namespace es
#endif
