// es_link: a point-to-point link between two units, folded into the unit that
// sends on it (no process of its own). A sender starts a transfer only while the
// receiver's input FIFO has room (credit flow control) and writes the item into
// that FIFO at once; the transfer starts when the item is ready and the link is
// free, serializes it (occupancy = payload bits / width, or bytes over the host
// link's bandwidth) and delivers it after the link latency, which is the item's
// `ready`: the receiver does not start on it before. Back-to-back items pipeline.
// Three kinds: an on-die link (link.*: width bits a cycle, latency cycles, energy per bit and mm), the host
// link (host.*: bytes at its bandwidth, its latency) and, in a system of chips, a card-to-card link
// (es_chip.card_link from the system file: bits at its bandwidth, its latency, energy per bit). A link is timed
// in its sender's cycles; a card link delivers on the receiver's first clock edge at or after its arrival.
#ifndef ES_LINK_H
#define ES_LINK_H
#include <systemc>
#include <vector>
#include "es_ctx.h"

namespace es {

class LinkPort {
public:
    enum Kind { OnDie, Host, Card };
    // name: its unit and --trace track; bits_per_token: payload per token (the host link: host.*'s bytes).
    LinkPort(Ctx &ctx, const char *name, int64_t bits_per_token, Kind kind);
    // Book the transfer of one work item (its items, in order) from now: sets their `ready`.
    void send(Item *items, size_t n);
    void send(std::vector<Item> &group) { send(group.data(), group.size()); }
    // A card link: the receiving chip (null: its own chip), whose cycles `ready` is given in (its clock may differ).
    Ctx *to = nullptr;
    int64_t items() const { return stat_->items; } // work items sent so far (--vcd)
    bool card() const { return kind_ == Card; }     // to another chip (`to`, or a Switch when `to` is null)

private:
    Ctx &ctx_;
    int64_t bits_per_token_;
    Kind kind_;
    int64_t free_at_ = 0;                  // cycle the link is free from
    es_unit_rec *stat_;
    int trk_ = 0;                          // its --trace track
};

// A thread's send of one item: wait for room in the receiver's FIFO, book the
// transfer on `link` (none: a direct wire), write.
void send_item(sc_core::sc_fifo_out<Item> &out, LinkPort *link, Item &it);

} // namespace es
#endif
