// es_host: the host side of the PCIe link. The driver admits a sequence
// when a KV slot is free (first come, first served), then submits its
// prompt in chunks of scheduler.prefill_chunk tokens. The completion side
// takes each sampled token across the upstream direction of the link and
// records when it reaches the host.
#ifndef ES_HOST_H
#define ES_HOST_H
#include <systemc>
#include "es_ctx.h"

namespace es {

class Host : public sc_core::sc_module {
public:
    sc_core::sc_fifo_out<Item> submit;    // to the host link
    sc_core::sc_fifo_in<Item> completion; // from the head
    Host(sc_core::sc_module_name nm, Ctx &ctx, sc_core::sc_semaphore *slots);
    SC_HAS_PROCESS(Host);

private:
    void drive();
    void complete();
    Ctx &ctx_;
    sc_core::sc_semaphore *slots_;
    es_unit_rec *stat_;
};

} // namespace es
#endif
