// es_host: both ends of the PCIe link. HostDevice is the chip's side: it
// fetches submission-queue entries when the doorbell rings, holds KV for
// each admitted sequence, sends prompt chunks over the host link, and
// writes each sampled token into the completion queue once it has crossed
// the link back. HostProgram is the host's side: one process running the C
// host driver (sim/host/es_driver.h) and its scheduler.
#ifndef ES_HOST_H
#define ES_HOST_H
#include <systemc>
#include <deque>
#include "es_ctx.h"
#include "es_link.h"
#include "es_driver.h"

namespace es {

class HostDevice : public sc_core::sc_module {
public:
    sc_core::sc_fifo_out<Item> submit;    // prompt chunks, to Embed
    LinkPort *link = nullptr;             // the host link `submit` sends on (es_link.h)
    sc_core::sc_fifo_in<Item> completion; // sampled tokens, from the head
    sc_core::sc_event doorbell;           // the host moved the SQ tail
    sc_core::sc_event cq_event;           // a completion reached host memory
    HostDevice(sc_core::sc_module_name nm, Ctx &ctx);
    SC_HAS_PROCESS(HostDevice);
    es_drv *drv = nullptr;                // set before the simulation starts
    // The driver's clock: now in ns from cycles, as token times are (SystemC time holds the period
    // rounded to whole picoseconds)
    double now_ns() const { return ctx_.run.cycles_to_ns((double)ctx_.run.now()); }

private:
    void fetch();
    void complete();
    void dma();
    Ctx &ctx_;
    es_unit_rec *stat_;
    int trk_ = 0;                          // its --trace track
    std::deque<std::pair<int64_t, es_cqe>> in_transit_; // (arrival cycle, entry)
    sc_core::sc_event transit_event_;
};

class HostProgram : public sc_core::sc_module {
public:
    HostProgram(sc_core::sc_module_name nm, Ctx &ctx, HostDevice &dev);
    SC_HAS_PROCESS(HostProgram);
    const es_drv_source *src = nullptr;   // set before the simulation starts

private:
    void main();
    Ctx &ctx_;
    HostDevice &dev_;
};

} // namespace es
#endif
