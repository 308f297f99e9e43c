// es_server: a resource of a tile that serves one op at a time (or `cap` at
// a time): its lanes, its vector unit, the ports of a KV SRAM group. A work
// item entering a tile books each of its ops, in order, on the op's
// resource at the earliest time the resource is free for the op's whole
// occupancy, at or after the item is ready for it (earliest fit: a reservation
// table, as a statically scheduled pipeline issues work). Booking needs no
// simulated waiting, so an item's whole trip through a tile is known when it
// enters; items that entered earlier keep their bookings.
#ifndef ES_SERVER_H
#define ES_SERVER_H
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace es {

class Server {
public:
    explicit Server(int cap = 1) : lines_((size_t)(cap > 0 ? cap : 1)) {}
    // Book `occ` cycles at or after `ready`; `now` lets past bookings be dropped.
    // Returns the start cycle.
    int64_t book(int64_t now, int64_t ready, int64_t occ)
    {
        if (lines_.size() == 1) { /* one port: the usual case */
            Line &l = lines_[0];
            std::vector<Iv> &iv = l.iv;
            /* free from ready on (nothing booked ends after it): the booking goes last, at ready */
            if (iv.empty() || iv.back().second <= ready) {
                if (occ > 0) {
                    if (!iv.empty() && iv.back().second <= now) iv.clear(), l.head = 0; /* all of it is past */
                    iv.emplace_back(ready, ready + occ);
                }
                busy_cycles += occ;
                items++;
                return ready;
            }
        }
        int64_t best = -1;
        size_t line = 0, best_at = 0;
        for (size_t k = 0; k < lines_.size(); k++) {
            Line &l = lines_[k];
            // intervals over before now can no longer matter: step past them (the list is
            // compacted once they are half of it, not shifted on every booking)
            if (l.head < l.iv.size() && l.iv[l.head].second <= now) {
                l.head = (size_t)(std::lower_bound(l.iv.begin() + (long)l.head, l.iv.end(), now, ends_by) - l.iv.begin());
                if (l.head >= 32 && 2 * l.head >= l.iv.size()) {
                    l.iv.erase(l.iv.begin(), l.iv.begin() + (long)l.head);
                    l.head = 0;
                }
            }
            size_t at;
            int64_t s = fit(l, ready, occ, at);
            if (best < 0 || s < best) { best = s; line = k; best_at = at; }
        }
        auto &iv = lines_[line].iv;
        if (occ > 0) {
            if (best_at == iv.size()) iv.emplace_back(best, best + occ); /* the usual case: after the others */
            else iv.insert(iv.begin() + (long)best_at, {best, best + occ});
        }
        busy_cycles += occ;
        items++;
        return best;
    }
    // The start `book` would give (the earliest fit of `occ` cycles at or after `ready`), booking nothing.
    int64_t earliest(int64_t ready, int64_t occ) const
    {
        int64_t best = -1;
        size_t at;
        for (const Line &l : lines_) {
            int64_t s = fit(l, ready, occ, at);
            if (best < 0 || s < best) best = s;
        }
        return best;
    }
    // Whether a port has nothing booked after `now` (cycle fidelity books only from the
    // current cycle on: a port is free when its last booking has ended).
    bool free_at(int64_t now) const
    {
        for (const Line &l : lines_)
            if (l.iv.empty() || l.iv.back().second <= now) return true;
        return false;
    }
    int64_t busy_cycles = 0; // occupancy booked
    int64_t items = 0;

private:
    using Iv = std::pair<int64_t, int64_t>;
    // the intervals are disjoint and sorted by start, so by end too
    static bool ends_by(const Iv &b, int64_t t) { return b.second <= t; }
    struct Line {
        std::vector<Iv> iv; // busy [start, end), sorted; those before head are over
        size_t head = 0;
    };
    // earliest start >= ready of a gap of `occ` cycles between the busy intervals; `at`:
    // where the booking goes in the list. Intervals that end by `ready` cannot be in the way.
    static int64_t fit(const Line &l, int64_t ready, int64_t occ, size_t &at)
    {
        int64_t s = ready;
        auto b = std::lower_bound(l.iv.begin() + (long)l.head, l.iv.end(), ready, ends_by);
        for (; b != l.iv.end(); ++b) {
            if (s + occ <= b->first) break;
            if (b->second > s) s = b->second;
        }
        at = (size_t)(b - l.iv.begin());
        return s;
    }
    std::vector<Line> lines_; // per port
};

} // namespace es
#endif
