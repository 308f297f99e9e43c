/* es_analytic: the closed-form, uncontended timing of every unit and of a
 * whole token. The SystemC units take their per-item occupancy from the
 * per-op functions here; the composition functions (token loop, TTFT, knee)
 * are the oracle the simulation is tested against. All results in cycles.
 * The functions that need a tensor's bits, lane cells, lanes or ROM take the
 * placement table (es_map.h: pm->chip, pm->model and where each tensor lives). */
#ifndef ES_ANALYTIC_H
#define ES_ANALYTIC_H
#include <stdint.h>
#include "es_chip.h"
#include "es_map.h"
#include "es_model.h"
#include "es_area.h"
#ifdef __cplusplus
extern "C" {
#endif

static inline int64_t es_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Per-op occupancy of the unit that runs it, for n tokens of one sequence
 * whose first token sits at position p (token j attends to p+j+1 positions). */
int64_t es_an_op(const es_map *pm, const es_op *op, int64_t n, int64_t p);
/* The same split into occupancy (cycles the op holds its resource: the lanes,
 * the vector unit, a KV port) and latency (pipeline cycles after it, with the
 * resource free for the next item): es_an_op = occ + lat. Matrix products
 * hold the lanes for their passes, then wait ROM latency + lane depth; vector
 * ops hold the unit for their passes, then wait its latency; attention, the
 * embedding and the sampler hold their resource throughout (lat 0). */
void es_an_op_split(const es_map *pm, const es_op *op, int64_t n, int64_t p, int64_t *occ,
                    int64_t *lat);
int64_t es_an_op_total(const es_map *pm, const es_op *op, int64_t n, int64_t p);
/* Events (ROM bits, MACs, SRAM bits, vector ops) the same op causes. */
void es_an_op_events(const es_map *pm, const es_op *op, int64_t n,
                     int64_t p, es_events *ev);
/* The same, given the occupancy es_an_op_split gives the op (callers that have it already). */
void es_an_op_events_occ(const es_map *pm, const es_op *op, int64_t n, int64_t p, int64_t occ,
                         es_events *ev);
/* MoE: one expert's work (gate, up, SiLU x up, down) for n of its tokens on
 * its own partition, and the events it causes. */
int64_t es_an_expert_chain(const es_map *pm, int64_t layer, int64_t e, int64_t n);
void es_an_expert_events(const es_map *pm, int64_t layer, int64_t e, int64_t n, es_events *ev);
/* The cycles op (n tokens) streams weights from a chip-scope SRAM or HBM store (store.scope chip), which the
 * simulation books on the store shared by every tile and the head: a matrix product's passes over its tensor
 * (ceil(n / tokens_per_read)) x ceil(its bits / the store's bits per cycle, ports x bits_per_cycle), the embedding
 * lookup's rows; 0 for other ops and for a ROM or a tile-scope store. */
int64_t es_an_store_occ(const es_map *pm, const es_op *op, int64_t n);
/* Adapter k's LoRA on tensor i (es_map_lora_of(pm, k, i).bits > 0, es_map_set_adapters) for n tokens, after the
 * tensor's matrix product: the tile's vector unit does its macs multiply-adds per token (A x, then B (A x), scaled and
 * added), and A and B stream from the tile's KV SRAM over its ports, once per tokens_per_read tokens as the etched
 * weights stream from ROM. occ: the vector unit's cycles, the longer of its multiply-adds and the stream (it consumes
 * the stream as it comes); port: the KV port's cycles; lat: the vector unit's latency. All 0 when k < 0 (no adapter)
 * or k does not adapt the tensor. The analytic model's own walks give every sequence pm->an_adapter. */
void es_an_adapter(const es_map *pm, int k, int i, int64_t n, int64_t *occ, int64_t *port, int64_t *lat);
/* Adds to ev the same adapter's events for n tokens: A and B read from the KV SRAM (once per tokens_per_read tokens)
 * and a vector op per multiply-add. es_an_op_events leaves them out (a sequence's adapter is its own). */
void es_an_adapter_events(const es_map *pm, int k, int i, int64_t n, es_events *ev);
/* With kv.in_store, the cycles op (n tokens of one sequence, the first at position p) streams KV bits from the HBM
 * store, which the simulation books on it beside the weights: attention writes the tokens' K and V,
 * ceil(n x kv bits a position / the store's bits per cycle, ports x bits_per_cycle), and reads each token's context,
 * ceil(context x kv bits a position / the same) per token; a selective scan reads and writes its state,
 * ceil(2 x state bits / the same) per token. 0 for other ops and without kv.in_store. */
int64_t es_an_kv_store_occ(const es_map *pm, const es_op *op, int64_t n, int64_t p);
/* Occupancy of a matrix-vector op on a given ROM and lane array. */
int64_t es_an_matvec(const es_chip *c, const es_rom_geom *rom, int64_t lanes, int64_t cells,
                     int64_t bits, int64_t n);
/* Link occupancy (serialization) for a payload; its latency is c->link_latency. */
int64_t es_an_link_occ(const es_chip *c, int64_t bits);
/* Host link: occupancy of a transfer and the one-way latency, in cycles. */
int64_t es_an_host_occ(const es_chip *c, int64_t bytes);
int64_t es_an_host_lat(const es_chip *c);
/* A system's card-to-card link (es_chip.card_link): cycles of c's clock to send bits, rounded up; its latency. */
int64_t es_an_card_occ(const es_chip *c, int64_t bits);
int64_t es_an_card_lat(const es_chip *c);
/* An expert-parallel stage's all-to-all (es_system.h): `tokens` hidden vectors from one chip of the stage to
 * another over the system's link: occupancy (tokens x hidden x link.elem_bits bits) / bandwidth, then its
 * latency; *bits the bits moved (card_bits events: link.energy_pj_per_bit each). */
void es_an_alltoall(const es_map *pm, int64_t tokens, int64_t *occ, int64_t *lat, double *bits);
/* The chance that a token's top_k experts, drawn uniformly without repeats among the model's, are not all on a chip
 * holding m->experts of them: 1 - C(experts, k) / C(all, k); 0 on a chip holding every expert. The analytic
 * model's share of a dispatch and combine per MoE layer. */
double es_an_remote_share(const es_model *m);
/* A tensor-parallel shard (pm->model->tp > 1, es_model_shard): the ring all-reduce of n tokens' hidden vectors
 * (n x hidden x link.elem_bits bits) over the stage's tp chips on the card links (es_system.h): *occ cycles holding
 * the chip's links (2 (tp - 1) / tp of the bits at card_link bandwidth), then *lat (2 (tp - 1) link latencies);
 * *bits: the bits the chip sends. All 0 for a whole model. bits_each: the payload per token (0: the hidden
 * vector; the sampler's all-reduce passes 64, a score and a token id). */
void es_an_allreduce(const es_map *pm, int64_t n, int64_t bits_each, int64_t *occ, int64_t *lat, double *bits);
/* Its whole time, occ + lat. */
int64_t es_an_allreduce_cyc(const es_map *pm, int64_t n, int64_t bits_each);
/* A chip's clock period in whole picoseconds (1e12 / clock_hz, rounded): the simulation's cycle (es_ctx.h). */
int64_t es_an_period_ps(const es_chip *c);
/* Cycle cyc of chip from's clock as a cycle of chip to's: the first edge of to's clock at or after it (periods
 * of es_an_period_ps; cyc itself for equal periods). */
int64_t es_an_cycle_to(const es_chip *from, int64_t cyc, const es_chip *to);
/* One decode step of a system of n chips in pipeline order, in cycles of the first chip's clock, pms[k] the table
 * of chip k's slice (es_model_slice): the first's embedding lookup, each chip's tiles with the links between
 * them, a card link from each chip to the next, the last's head and the token back to the first over its card
 * link. Each chip's part counts its own clock's cycles (a card link: its sender's); an item crossing to a chip of
 * another clock starts on that chip's first edge at or after its arrival (es_an_cycle_to), the step starting with
 * the last chip's sample on an edge of every clock (time 0). For n = 1, es_an_decode_step. */
int64_t es_an_system_decode_step(const es_map *const *pms, int n, int64_t p);

/* Composition, written from the model's dimensions and tensor list (not the op graph). */
int64_t es_an_embed(const es_map *pm, int64_t n);
int64_t es_an_layer(const es_map *pm, int64_t layer, int64_t n, int64_t p);
int64_t es_an_tile(const es_map *pm, int64_t tile, int64_t n, int64_t p);
int64_t es_an_head(const es_map *pm); /* norm + LM head + sampler, 1 token */
int64_t es_an_head_n(const es_map *pm, int64_t n); /* the same for n tokens in one pass (head.lanes.tokens_per_read) */
/* The head's cycles per token at saturation: es_an_head, or a full pass of head.lanes.tokens_per_read tokens over
 * them. */
double es_an_head_per_token(const es_map *pm);
/* The least cycles per token a tile needs when saturated with decode tokens of
 * many sequences at position p: the busiest of its lanes, vector unit and
 * attention engine (times the tiles sharing its KV ports) per token, with
 * tokens_per_read tokens per pass, or an item's whole time over
 * items_in_flight items, whichever is larger. */
double es_an_tile_token_bound(const es_map *pm, int64_t tile, int64_t p);
/* Sample-to-sample interval of one stream, for the decode step whose input
 * token sits at position p. */
int64_t es_an_decode_step(const es_map *pm, int64_t p);
/* tile.sync_step: one synchronous decode step of s sequences, each with its input token at position p, from their
 * tokens' sampling to the next samples: the s token ids through the link to the embedding and on to the first tile,
 * one item each and each stage taking them in turn; then one pass of the s tokens through every tile (each op for s
 * tokens at once, attention once per sequence) and the head's pass over them (es_an_head_n). The units do not
 * overlap: a step starts when the last token of the one before is back. */
int64_t es_an_sync_step(const es_map *pm, int64_t s, int64_t p);
/* Time from submission to the first completion at the host, one stream alone. */
int64_t es_an_ttft(const es_map *pm, int64_t prompt);

/* A uniform batch: n sequences, each prefilling `prompt` tokens after a
 * shared prefix of `prefix` tokens (computed once), then generating `gen`.
 * busy: the most cycles any unit must be occupied (a lower bound on the
 * batch time; with tokens_per_read > 1, items smaller than a full pass are
 * counted at their share of one, as if the tile always grouped them); fill: twice one sequence's
 * trip through the chip alone (TTFT plus its decode steps): one to fill the
 * pipeline, one to drain it, the bound on what a kept-full pipeline adds.
 * upper: the batch time if every tile took its items one at a time, ungrouped
 * (the busiest unit then), plus fill: overlap and grouping inside a tile
 * only shorten it, so the simulated batch lies in [busy, upper]. */
void es_an_batch(const es_map *pm, int64_t n, int64_t prefix, int64_t prompt, int64_t gen,
                 double *busy, double *fill, double *upper);

/* One user's die utilization at the decode step whose input sits at position
 * p: each resource's area x its busy cycles in the step (the lanes weighted
 * by the share of them an op holds, as the simulation books them), over the
 * die's area x the step. busy[0..4]: the busy fraction of the tiles' lanes,
 * vector units, attention (or scan) engines, the head and the embedding ROM. */
double es_an_utilization(const es_map *pm, const es_area *a, int64_t p, double busy[5]);

typedef struct es_an_summary {
    double decode_tokens_per_s;   /* one stream, mean over its decode steps */
    double ttft_cycles;           /* one stream alone */
    double step_mid_cycles;       /* decode step at the middle of generation */
    double bottleneck_cycles;     /* slowest unit's occupancy at that step */
    int64_t kv_slots;             /* sequences of prompt + gen positions the KV SRAM holds at once */
    int64_t knee_streams;         /* S past which aggregate tokens/s stops rising; tile.sync_step: the most sequences
                                   * a step carries, min(KV slots, tokens_per_read of the tiles and of the head) */
    double sat_tokens_per_s;      /* aggregate at and past the knee; tile.sync_step: knee / es_an_sync_step(knee, the
                                   * middle of generation) */
} es_an_summary;
void es_an_summarize(const es_map *pm, int64_t prompt, int64_t gen,
                     es_an_summary *s);

#ifdef __cplusplus
}
#endif
#endif
