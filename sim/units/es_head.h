// es_head: the head tile's two units. Embed looks token rows up in the
// embedding ROM; fed-back decode tokens go before new prompt chunks. Head
// runs the final RMSNorm, the LM head projection and the sampler, one token
// at a time (head.lanes.tokens_per_read 1: grouping would add a group's wait
// to every token), or over the tokens already waiting, up to that many, in one
// pass over the LM head's weights (no token waits for others), then
// sends the token to the host and, while the sequence wants more, back to
// Embed. With tied embeddings both units read one ROM and take turns.
#ifndef ES_HEAD_H
#define ES_HEAD_H
#include <systemc>
#include <vector>
#include "es_ctx.h"
#include "es_link.h"

namespace es {

class Embed : public sc_core::sc_module {
public:
    sc_core::sc_fifo_in<Item> feedback; // decode tokens from the sampler
    sc_core::sc_fifo_in<Item> prompt;   // prompt chunks from the host link
    sc_core::sc_fifo_out<Item> out;
    LinkPort *link = nullptr;           // the link `out` sends on (es_link.h)
    Embed(sc_core::sc_module_name nm, Ctx &ctx, const es_op *op, sc_core::sc_mutex *rom);
    SC_HAS_PROCESS(Embed);

private:
    void run();
    Ctx &ctx_;
    const es_op *op_;
    sc_core::sc_mutex *rom_; // shared with Head when embeddings are tied, else NULL
    es_unit_rec *stat_;
    int trk_ = 0;                          // its --trace track
};

class Head : public sc_core::sc_module {
public:
    sc_core::sc_fifo_in<Item> in;
    sc_core::sc_fifo_out<Item> feedback;   // next decode token, to Embed
    LinkPort *feedback_link = nullptr;     // the link `feedback` sends on (es_link.h)
    sc_core::sc_fifo_out<Item> completion; // sampled token, to the host
    // ops: out_norm, lm_head, sampler.
    Head(sc_core::sc_module_name nm, Ctx &ctx, const es_op *const ops[3], sc_core::sc_mutex *rom);
    SC_HAS_PROCESS(Head);

private:
    void run();
    int64_t take(std::vector<Item> &group); // the next pass's items; the cycle it can start
    std::vector<Item> group_;               // the pass's items (run()'s, kept here so the run frees them)
    bool finish(Item &it);                  // sample, send on; false: the run failed
    Ctx &ctx_;
    const es_op *ops_[3];
    Item next_;                             // read while gathering a pass, not yet arrived
    bool have_next_ = false;
    sc_core::sc_mutex *rom_;
    es_unit_rec *stat_;
    int trk_ = 0;                          // its --trace track
    std::vector<float> logits_; // functional: (vocab)
};

} // namespace es
#endif
