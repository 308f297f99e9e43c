// es_die: one die built from its units for one model: the device side of the host link and the
// host's program, embed, the tiles with their KV SRAM groups, the head, the links between them
// (each folded into its sender, es_link.h) and the FIFOs that carry work items. The die is a
// ring: host link -> embed -> link -> tile 0 -> ... -> tile N-1 -> link -> head, with the sampled
// token going back to embed over the feedback link and out to the host over the completion path.
//
// Die is not itself an sc_module: its units are top-level modules, so their names (unit
// statistics, --trace tracks, --vcd signals) are "tile0", "head", ... with no prefix.
#ifndef ES_DIE_H
#define ES_DIE_H
#include <systemc>
#include <memory>
#include <string>
#include <vector>
#include "es_ctx.h"

namespace es {

class HostDevice;
class HostProgram;
class LinkPort;
class Server;
struct VcdTracer;

class Die {
public:
    // Build the die's units on ctx (its chip and model); with_vcd: also the --vcd signals.
    Die(Ctx &ctx, bool with_vcd);
    ~Die();
    Die(const Die &) = delete;
    Die &operator=(const Die &) = delete;
    HostDevice *dev = nullptr;   // the device side of the host link; its driver is set before the run
    HostProgram *prog = nullptr; // the host's program; its request source is set before the run
    bool has_vcd() const { return vcd_ != nullptr; }
    // --vcd: each tile's work items, KV positions held and sequences in flight, into tf.
    void trace(sc_core::sc_trace_file *tf);

private:
    using Fifo = sc_core::sc_fifo<Item>;
    LinkPort *link(const char *name, int64_t bits_per_token, bool host);
    Fifo *fifo(const std::string &name, int depth);
    template <class T> T *add(T *m)
    {
        mods_.emplace_back(m);
        return m;
    }
    Ctx &ctx_;
    std::vector<std::unique_ptr<Fifo>> fifos_;
    std::vector<std::unique_ptr<sc_core::sc_module>> mods_;
    std::vector<std::unique_ptr<Server>> kv_groups_; // the ports of each KV SRAM group
    std::vector<std::unique_ptr<LinkPort>> links_;
    std::unique_ptr<sc_core::sc_mutex> rom_;         // tied embeddings: the ROM embed and head share (or the head's store)
    std::unique_ptr<Server> wstore_;                 // a chip-scope weight store (ctx.wstore)
    VcdTracer *vcd_ = nullptr;
};

} // namespace es
#endif
