// es_die: wiring one die's units (see es_die.h).
#include "es_die.h"
#include "es_head.h"
#include "es_host.h"
#include "es_link.h"
#include "es_server.h"
#include "es_tile.h"

namespace es {

/* --vcd: signals that follow the units' counters, written by one method process woken when any
 * changes (Ctx::vcd_touch), so each signal has one writer; SystemC's VCD writer records them. In a
 * system each chip's die has its own tracer, its signals named with the chip's prefix ("c1_tile0_items",
 * "c1_kv_positions_held"), all woken by the first's event; the first alone traces the sequences in flight
 * (the run's), and each traces the work items sent so far on each card link it sends on ("c0_card_items"). */
struct VcdTracer : sc_core::sc_module {
    Ctx &ctx;
    bool first;
    std::vector<const Tile *> tiles;
    std::vector<std::unique_ptr<sc_core::sc_signal<uint32_t>>> items;
    std::vector<const LinkPort *> links;
    std::vector<std::unique_ptr<sc_core::sc_signal<uint32_t>>> sent;
    sc_core::sc_signal<uint64_t> kv_used{"kv_positions_held"};
    sc_core::sc_signal<uint32_t> in_flight{"sequences_in_flight"};
    sc_core::sc_event changed;
    SC_HAS_PROCESS(VcdTracer);
    VcdTracer(sc_core::sc_module_name nm, Ctx &c) : sc_module(nm), ctx(c), first(!c.run.vcd_changed)
    {
        SC_METHOD(copy);
        if (first) ctx.run.vcd_changed = &changed;
        sensitive << *ctx.run.vcd_changed;
        dont_initialize();
    }
    void add(const Tile *t, const std::string &name)
    {
        tiles.push_back(t);
        items.emplace_back(new sc_core::sc_signal<uint32_t>((name + "_items").c_str()));
    }
    void add(const LinkPort *l, const std::string &name)
    {
        links.push_back(l);
        sent.emplace_back(new sc_core::sc_signal<uint32_t>((name + "_items").c_str()));
    }
    void copy()
    {
        for (size_t i = 0; i < tiles.size(); i++) items[i]->write((uint32_t)tiles[i]->items());
        for (size_t i = 0; i < links.size(); i++) sent[i]->write((uint32_t)links[i]->items());
        kv_used.write((uint64_t)ctx.kv_used);
        in_flight.write((uint32_t)ctx.run.in_flight);
    }
    void trace(sc_core::sc_trace_file *tf)
    {
        for (size_t i = 0; i < tiles.size(); i++) sc_core::sc_trace(tf, *items[i], items[i]->name());
        for (size_t i = 0; i < links.size(); i++) sc_core::sc_trace(tf, *sent[i], sent[i]->name());
        sc_core::sc_trace(tf, kv_used, ctx.prefix + "kv_positions_held");
        if (first) sc_core::sc_trace(tf, in_flight, "sequences_in_flight");
    }
};

Switch::Switch(sc_core::sc_module_name nm, Run &run, int stage, const std::vector<Ctx *> &from,
               const std::vector<Ctx *> &to, int depth)
    : sc_module(nm), run_(run), stage_(stage), from_(from), to_(to), held_(from.size()), has_(from.size(), 0)
{
    for (size_t i = 0; i < from.size(); i++)
        in.emplace_back(new sc_core::sc_fifo<Item>(("in" + std::to_string(i)).c_str(), depth));
    for (size_t j = 0; j < to.size(); j++)
        out.emplace_back(new sc_core::sc_fifo_out<Item>(("out" + std::to_string(j)).c_str()));
    SC_METHOD(move);
}

void Switch::move()
{
    for (bool moved = true; moved;) {
        moved = false;
        for (size_t i = 0; i < in.size(); i++) {
            if (!has_[i] && in[i]->nb_read(held_[i])) has_[i] = 1;
            if (!has_[i]) continue;
            const SeqState &s = run_.seqs[(size_t)held_[i].seq];
            size_t d = (size_t)s.home[(size_t)stage_];
            Item it = held_[i];
            it.ready = from_[i]->cycle_to(*to_[d], it.ready); /* on the receiver's clock */
            if (!(*out[d])->nb_write(it)) continue;
            has_[i] = 0, moved = true;
            if (to_[d]->steps && it.decode) to_[d]->token_back(); /* in its first tile's FIFO */
        }
    }
    if (!built_) {
        for (auto &f : in) wake_ |= f->data_written_event();
        for (auto &p : out) wake_ |= (*p)->data_read_event();
        built_ = true;
    }
    next_trigger(wake_);
}

void Die::bind_out(sc_core::sc_fifo<Item> &f)
{
    *up_link_ = link("card", ctx_.m->hidden * ctx_.c->link.elem_bits, LinkPort::Card);
    (*up_)(f);
    up_ = nullptr;
}

LinkPort *Die::link(const std::string &name, int64_t bits_per_token, int kind)
{
    links_.emplace_back(new LinkPort(ctx_, (ctx_.prefix + name).c_str(), bits_per_token, (LinkPort::Kind)kind));
    if (vcd_ && kind == LinkPort::Card) vcd_->add(links_.back().get(), ctx_.prefix + name);
    return links_.back().get();
}

Die::Fifo *Die::fifo(const std::string &name, int depth)
{
    fifos_.emplace_back(new Fifo((ctx_.prefix + name).c_str(), depth));
    return fifos_.back().get();
}

Die::Die(Ctx &ctx, bool with_vcd, Die *prev, Die *first, sc_core::sc_fifo_out<Item> *in_port)
    : ctx_(ctx), in_port_(in_port)
{
    const es_chip *c = ctx.c;
    if (with_vcd) vcd_ = add(new VcdTracer((ctx.prefix + "vcd").c_str(), ctx));
    const es_model *m = ctx.m;
    int depth = (int)c->sched.fifo_depth;
    const es_map *pm = ctx.map;
    /* the embedding table in the LM-head ROM (a tied model): the two lookups share its port */
    const es_tensor *table = es_model_tensor(m, -1, ES_ROLE_EMBED);
    /* a chip-scope SRAM or HBM store: one, booked by every tile and the head (its ports' whole bandwidth as one
     * server: a matrix product holds it while its bits stream, and with kv.in_store an attention while its KV
     * streams); a tile-scope SRAM: the head's own store, which
     * the two lookups share as they would a ROM */
    if (c->store.kind != ES_STORE_ROM && c->store.chip_scope) {
        wstore_.reset(new Server(1));
        ctx.wstore = wstore_.get();
    } else if (table && (es_map_tensor_of(pm, table)->rom == ES_ROM_LM || c->store.kind != ES_STORE_ROM)) {
        rom_.reset(new sc_core::sc_mutex((ctx.prefix + "head_rom").c_str()));
    }
    if (m->tp > 1) { /* a tensor-parallel shard: its all-reduces hold the card links, one at a time */
        ring_.reset(new Server(1));
        ctx.ring = ring_.get();
        ctx.ring_stat = ctx.unit((ctx.prefix + "ring").c_str());
    }
    /* the feedback path never blocks the head: it holds one token per sequence
     * in flight at most, and at most seq_cap sequences are in flight */
    int ring = (int)(ctx.seq_cap < (1 << 20) ? ctx.seq_cap : (1 << 20)) + 1;
    /* created in this order, a chip alone lists its units host, host_link, embed, feedback, link0, tile0,
     * link1, ..., head; each link is folded into its sender (es_link.h) */
    if (m->has_embed) build_front(depth, ring);
    build_tiles(depth, prev);
    if (m->has_head) build_head(depth, ring, first ? first : this);
}

void Die::build_front(int depth, int ring)
{
    HostDevice *host = dev = add(new HostDevice((ctx_.prefix + "host").c_str(), ctx_));
    prog = add(new HostProgram((ctx_.prefix + "host_program").c_str(), ctx_, *host));
    host->link = link("host_link", 0, LinkPort::Host);
    Embed *emb = add(new Embed((ctx_.prefix + "embed").c_str(), ctx_, es_model_op(ctx_.m, -1, ES_OP_EMBED), rom_.get()));
    if (ctx_.m->has_head) feedback_link_ = link("feedback", ctx_.c->link.token_id_bits, LinkPort::OnDie);
    Fifo *f = fifo("q_prompt", depth);
    host->submit(*f);
    emb->prompt(*f);
    feedback_q_ = fifo("q_feedback", ring);
    emb->feedback(*feedback_q_);
    up_ = &emb->out;
    up_link_ = &emb->link;
}

void Die::build_tiles(int depth, Die *prev)
{
    const es_chip *c = ctx_.c;
    const es_model *m = ctx_.m;
    const es_map *pm = ctx_.map;
    const int64_t tiles = pm->tiles, act_bits = m->hidden * c->link.elem_bits;
    if (prev) { /* the previous chip's last tile sends here over a card link (its chip's clock and link) */
        up_ = prev->up_;
        up_link_ = prev->up_link_;
        *up_link_ = prev->link("card", act_bits, LinkPort::Card);
        (*up_link_)->to = &ctx_;
    } else if (in_port_) { /* a Switch's output: the sender booked its card link */
        up_ = in_port_;
        up_link_ = &no_link_;
    }
    for (int64_t t = 0; t < tiles; t++) {
        if (t > 0 || (!prev && !in_port_)) *up_link_ = link("link" + std::to_string(t), act_bits, LinkPort::OnDie);
        std::vector<const es_op *> ops;
        for (int i = 0; i < m->n_ops; i++)
            if (pm->ops[i].tile == t) /* the ops the placement table gives this tile */
                ops.push_back(&m->ops[i]);
        size_t g = (size_t)(t / c->kv.tiles_per_group);
        if (g >= kv_groups_.size())
            kv_groups_.emplace_back(new Server(c->kv.ports));
        std::string tn = ctx_.prefix + "tile" + std::to_string(t);
        /* the model's last tile passes only a prompt's last token on, to the head */
        Tile *tile = add(new Tile(tn.c_str(), ctx_, ops, kv_groups_[g].get(), t == tiles - 1 && m->has_head));
        if (vcd_) vcd_->add(tile, tn);
        Fifo *f = fifo("q_tile" + std::to_string(t) + "_in", depth);
        (*up_)(*f);
        tile->in(*f);
        up_ = &tile->out;
        up_link_ = &tile->link;
    }
}

void Die::build_head(int depth, int ring, Die *first)
{
    const es_model *m = ctx_.m;
    *up_link_ = link("link" + std::to_string(ctx_.map->tiles), m->hidden * ctx_.c->link.elem_bits, LinkPort::OnDie);
    const es_op *hops[3] = {es_model_op(m, -1, ES_OP_RMSNORM), es_model_op(m, -1, ES_OP_MATVEC),
                            es_model_op(m, -1, ES_OP_SAMPLE)};
    Head *head = add(new Head((ctx_.prefix + "head").c_str(), ctx_, hops, rom_.get()));
    Fifo *f = fifo("q_head_in", depth);
    (*up_)(*f);
    head->in(*f);
    up_ = nullptr;
    head->feedback(*first->feedback_q_);
    /* a chip alone: the on-die feedback link; the last chip of a system: a card link back to the first */
    head->feedback_link = first == this ? feedback_link_ : link("card_feedback", ctx_.c->link.token_id_bits,
                                                                 LinkPort::Card);
    if (first != this) head->feedback_link->to = &first->ctx_;
    f = fifo("q_completion", ring);
    head->completion(*f);
    first->dev->completion(*f);
}

Die::~Die() = default;

void Die::trace(sc_core::sc_trace_file *tf)
{
    if (vcd_) vcd_->trace(tf);
}

} // namespace es
