/* es_system: a system of chips holding one model (models/systems/NAME.json): which chips, which layers
 * (and, for a mixture of experts, which experts) each holds, and the card-to-card links joining them.
 *
 *   {
 *     "name": "llama-3.1-70b-x9",
 *     "description": "...",
 *     "model": "llama-3.1-70b",
 *     "link": {
 *       "topology": {"value": "chain", "source": "..."},          chain | all_to_all
 *       "bandwidth_bits_per_s": {"value": 4.48e11, "source": "..."},
 *       "latency_ns": {"value": 500, "source": "..."},
 *       "energy_pj_per_bit": {"value": 5, "source": "..."}
 *     },
 *     "chips": [
 *       {"chip": "part-a.json", "layers": [0, 8]},                 the first holds the embedding table
 *       {"chip": "part-a.json", "layers": [9, 17]},
 *       ...
 *       {"chip": "part-b.json", "layers": [72, 79]}               the last holds the final norm and LM head
 *     ]
 *   }
 *
 * Chips are listed in pipeline order. Consecutive chips with the same layer range form one stage: they
 * hold the same layers' attention (each its own sequences' KV) and split the experts between them
 * ("experts": [first, last], required then, and only on a mixture of experts); the stages' ranges must
 * cover the model's layers from 0 to the last exactly once, in order. A stage of several chips needs
 * the all_to_all topology (tokens go to the chips holding their experts). "chip" is a name under
 * models/chips or a path; a relative path resolves from the system file's folder first (so does "model"). Each
 * chip keeps its own configuration: clock, power limit, KV SRAM and statistics. Clocks: each chip's units count its own
 * cycles; a card link is timed in ns and bits/s in its sender's cycles, and an item reaching a chip of another
 * clock starts on that chip's first edge at or after its arrival (es_an_cycle_to); the run's cycles are the
 * first chip's (README "Systems of chips"); so do an expert-parallel stage's dispatch and combine (each in its
 * sender's cycles, the experts in their chip's). tile.sync_step: the chips of the first stage (in pipeline order)
 * whose files set it form the steps (Ctx::steps), each stepping its own batch, its first tile taking no new pass
 * until every token that left its last tile bound for the head is back in its FIFO or finished (Ctx::returning,
 * per chip); later chips carry those steps as they come (a barrier on two chips in series could wait on each
 * other when sequences interleave). card.power_limit_w: each chip holds its own on its own card, by a
 * reactive governor inside the simulation that changes its clock at window edges (es_ctx.h Throttle; README "Power
 * limits on a system's chips"); the run's cycles then count the first chip's nominal clock (real time). Not
 * simulated yet: a power limit on a chip of an expert-parallel stage (its chips book each other's lanes ahead,
 * in cycles converted by the clocks' mappings at the time of booking, which a governor may change before them).
 *
 * Tensor parallelism: {"chip": ..., "layers": [a, b], "tensor_parallel": T} stands for T identical chips that
 * split every matrix of those layers Megatron-style (Shoeybi et al. 2019, arXiv:1909.08053, section 3): q, k, v,
 * gate and up by columns (output features: heads / T and ffn / T, which must divide; kv_heads / T, or one
 * kv head copied on T / kv_heads chips when T is a multiple of kv_heads, as vLLM does), o and down
 * by rows, so each layer needs one all-reduce of the hidden vector after o and one after down; the embedding
 * table and LM head split by vocabulary (ceil(vocab / T) rows each; one all-reduce after the lookup, and one of
 * each chip's best score and id, 64 bits, after the sampler). Dense attention models only. The stage is
 * simulated as one of its chips holding its shard (es_model_shard: the placement table, timing and energy all
 * see 1/T of each matrix) plus the all-reduces, each booked on the chip's "ring" unit (the card links, the
 * system's "link") as a ring all-reduce of N bits over T chips (Patarasuk and Yuan 2009, "Bandwidth optimal
 * all-reduce algorithms"; NCCL's ring: 2 (T - 1) steps of N / T bits):
 *     occupancy = 2 (T - 1) / T x N / link.bandwidth_bits_per_s,   then   2 (T - 1) x link.latency_ns,
 * N = tokens x hidden x link.elem_bits (the chip's on-die activation width); energy: 2 (T - 1) / T x N bits x
 * link.energy_pj_per_bit per chip. The stage's energy, leakage, clock power, board (and HBM) static power, area
 * and cost are those of the simulated chip times T (its T chips do the same work on their shards at once; the hop
 * to the next stage is each chip sending its copy of the hidden vector to its peer there: one vector's time, T
 * vectors' energy). The
 * functional datapath and --fidelity cycle do not simulate a split stage (run refuses them with T > 1).
 *
 * Expert parallelism: a stage of n chips holding the same layers, chips[i].experts = [f_i, l_i] each, is simulated
 * chip by chip. Each holds the stage's attention, router and norms whole and only its own experts (es_model_expert_slice:
 * their ROM, lanes and area); a sequence's KV is on one of them, the one with the most KV positions free when it is
 * admitted (the first on a tie), which runs its attention and router (the stage holds the sum of its chips' KV: the
 * run's KV bound is the least over stages). A stage boundary where either side has several chips is a Switch: the
 * sender's card link carries each token to the chip holding its sequence. After each MoE layer's router, the
 * token's top_k experts (routed among the whole model's, as on one chip) go to their chips: for each other chip
 * holding at least one of them, the token's hidden vector is sent there (dispatch) and one vector comes back (the
 * combine: that chip's experts' outputs, weighted and summed there), each on the link of its pair and direction
 * ("a2a" unit of the sender):
 *     occupancy = tokens x hidden x link.elem_bits / link.bandwidth_bits_per_s,   then   link.latency_ns,
 * tokens the work item's tokens with an expert on that chip; energy: those bits x link.energy_pj_per_bit. The
 * remote chip's expert chains start when the dispatch has arrived, on its own lanes (shared with its own tokens);
 * the token goes on when its local experts are done and every combine is back. Per MoE layer a token with an expert
 * elsewhere thus waits 2 x (hidden x elem_bits / bandwidth + latency) beyond the chains. The analytic step adds that
 * round trip per MoE layer times the chance a token's top_k experts (uniform, without repeats) are not all on its
 * chip, 1 - C(experts held, top_k) / C(experts, top_k) (es_an_remote_share). An expert-parallel stage must hold
 * neither the embedding table nor the LM head; functional mode and --fidelity cycle refuse it. */
#ifndef ES_SYSTEM_H
#define ES_SYSTEM_H
#include <stdint.h>
#include "es_chip.h"
#include "es_err.h"
#include "es_model.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef enum es_topo { ES_TOPO_CHAIN, ES_TOPO_ALL_TO_ALL } es_topo;

/* The card-to-card links (link.*). */
typedef struct es_sys_link {
    es_topo topo;            /* link.topology */
    double bits_per_s;       /* link.bandwidth_bits_per_s, per link and direction (> 0) */
    double latency_ns;       /* link.latency_ns: first bit out to first bit in */
    double pj_per_bit;       /* link.energy_pj_per_bit: both ends, per bit moved */
} es_sys_link;

typedef struct es_sys_chip {
    char spec[512];          /* "chip" as written */
    es_chip chip;            /* loaded (owned) */
    int layer_first, layer_last;   /* "layers": inclusive */
    int expert_first, expert_last; /* "experts": inclusive; -1, -1 when absent (all of them) */
    int stage;               /* its stage: chips of one layer range */
    int embed, head;         /* 1: holds the embedding table / the final norm and LM head */
    int tp;                  /* "tensor_parallel": the entry stands for tp identical chips splitting its layers' matrices */
} es_sys_chip;

typedef struct es_system {
    char path[512];          /* the file */
    char name[80];           /* "name" */
    char model[512];         /* "model": a model name or path */
    es_sys_link link;
    es_sys_chip *chips;      /* (n_chips) in pipeline order */
    int n_chips;
    int n_stages;
} es_system;

/* Load a system file by name (models/systems/NAME.json) or path, and each of its chips, with the
 * overrides sets applied to every chip (as es_chip_load). The shape of the file is checked here;
 * whether its split fits a model, by es_system_check. 0, or -1 with e naming the file, the key (e.g.
 * "chips[2].layers") and what was expected. */
int es_system_load(es_system *s, const char *spec, const char *const *sets, int n_sets, es_err *e);
/* The same, with link_sets overriding numbers of the file's link before its chips take it: "KEY=VALUE", KEY one
 * of es_system_link_keys() (etchsim's --set system.link.latency_ns=V, without "system."). A value is checked as
 * the file's own; an unknown key is an error naming the keys. */
int es_system_load_link(es_system *s, const char *spec, const char *const *sets, int n_sets,
                        const char *const *link_sets, int n_link_sets, es_err *e);
/* The keys link_sets may name, NULL-terminated: link.bandwidth_bits_per_s, link.latency_ns, link.energy_pj_per_bit. */
const char *const *es_system_link_keys(void);
/* Whether the split covers model m: every layer on exactly one stage, in order; the experts of a stage
 * of several chips split between them exactly once, in order. 0, or -1 with e naming the chips and the
 * layers (or experts) in the gap or overlap. */
int es_system_check(const es_system *s, const es_model *m, es_err *e);
void es_system_free(es_system *s);
const char *es_topo_name(es_topo t); /* "chain", "all_to_all" */

#ifdef __cplusplus
}
#endif
#endif
