// es_die: one die built from its units for one model: the device side of the host link and the
// host's program, embed, the tiles with their KV SRAM groups, the head, the links between them
// (each folded into its sender, es_link.h) and the FIFOs that carry work items. The die is a
// ring: host link -> embed -> link -> tile 0 -> ... -> tile N-1 -> link -> head, with the sampled
// token going back to embed over the feedback link and out to the host over the completion path.
//
// Die is not itself an sc_module: its units are top-level modules, so their names (unit
// statistics, --trace tracks, --vcd signals) are "tile0", "head", ... with no prefix.
//
// In a system of chips (es_system.h) each chip is a Die holding its slice of the model
// (es_model_slice): the first has the host link and embed, the last the head; the last tile of
// each sends on a card-to-card link (LinkPort::Card, owned by the sender) to the next chip's first
// tile, and the head's sampled token goes back to the first chip's embed on another. Their units'
// names start with the chip's prefix ("c0_tile0", "c1_card", ...).
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
    // Build the die's units on ctx (its chip and model); with_vcd: also the --vcd signals. In a system,
    // prev is the chip before it (null for the first) and first the system's first chip (null: itself); a chip
    // after a Switch (in_port: the switch's output to it; prev null) takes its items from it.
    Die(Ctx &ctx, bool with_vcd, Die *prev = nullptr, Die *first = nullptr,
        sc_core::sc_fifo_out<Item> *in_port = nullptr);
    // Send this chip's last tile's output over its card link into f (a Switch's input).
    void bind_out(sc_core::sc_fifo<Item> &f);
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
    LinkPort *link(const std::string &name, int64_t bits_per_token, int kind);
    void build_front(int depth, int ring);                   // host link, embed, feedback queue
    void build_tiles(int depth, Die *prev);                  // the tiles, chained from embed or prev
    void build_head(int depth, int ring, Die *first);        // the head, feeding back to first's embed
    Fifo *fifo(const std::string &name, int depth);
    template <class T> T *add(T *m)
    {
        mods_.emplace_back(m);
        return m;
    }
    Ctx &ctx_;
    sc_core::sc_fifo_out<Item> *in_port_ = nullptr; // after a Switch: its output to this chip
    LinkPort *no_link_ = nullptr;              // the switch's output: a direct wire (the sender booked the hop)
    sc_core::sc_fifo_out<Item> *up_ = nullptr; // the last unit's output not yet bound (the next chip binds it)
    LinkPort **up_link_ = nullptr;             // the link that output sends on
    Fifo *feedback_q_ = nullptr;               // the first chip's embed: decode tokens back from the head
    LinkPort *feedback_link_ = nullptr;        // a chip alone: the head's on-die feedback link
    std::vector<std::unique_ptr<Fifo>> fifos_;
    std::vector<std::unique_ptr<sc_core::sc_module>> mods_;
    std::vector<std::unique_ptr<Server>> kv_groups_; // the ports of each KV SRAM group
    std::vector<std::unique_ptr<LinkPort>> links_;
    std::unique_ptr<sc_core::sc_mutex> rom_;         // tied embeddings: the ROM embed and head share (or the head's store)
    std::unique_ptr<Server> wstore_;                 // a chip-scope weight store (ctx.wstore)
    std::unique_ptr<Server> ring_;                   // a tensor-parallel shard's card links (ctx.ring)
    VcdTracer *vcd_ = nullptr;
};

// Between two stages of a system when either has several chips (an expert-parallel stage, es_system.h): each
// chip of the stage before sends into its own input (over its card link, booked by the sender); each item goes on,
// in arrival order per input, to the chip of the stage after that holds its sequence's KV (SeqState::home), as
// soon as that chip's input FIFO has room (an item waits here while it is full, so its input fills and its
// sender waits: credit flow control as a link's). It costs no time of its own. An item's `ready` (its sender's
// cycles) becomes the receiving chip's (its first edge at or after it, as a card link delivers); with tile.sync_step
// on the receiver, a step's token written to it is back in its first tile's FIFO (Ctx::token_back).
class Switch : public sc_core::sc_module {
public:
    SC_HAS_PROCESS(Switch);
    // from: the chips of the stage before (an input each); to: those of the stage after (an output each)
    Switch(sc_core::sc_module_name nm, Run &run, int stage, const std::vector<Ctx *> &from, const std::vector<Ctx *> &to,
           int depth);
    std::vector<std::unique_ptr<sc_core::sc_fifo<Item>>> in;
    std::vector<std::unique_ptr<sc_core::sc_fifo_out<Item>>> out;

private:
    void move(); // a method: pass on what it can, then wait for an input or a room
    Run &run_;
    int stage_;
    std::vector<Ctx *> from_, to_;
    std::vector<Item> held_;
    std::vector<char> has_;
    sc_core::sc_event_or_list wake_;
    bool built_ = false;
};

} // namespace es
#endif
