/* es_map: the placement table, the one place that decides where each weight
 * tensor of a model lives on a chip and which unit runs each op of its graph.
 * It is built once, after the chip and the model are loaded (and a ROM image
 * or a recipe, when one is given), and everything that needs a tensor's bits,
 * its partition, its lanes or its ROM reads it: the analytic model
 * (es_analytic), area and energy (es_area), the SystemC tiles, the ROM image
 * builder and the commands.
 *
 * What decides placement:
 * - chip: 0 (one die; the field is there for systems of several chips);
 * - tile: layer / tile.layers_per_tile; tensors outside the blocks sit with the
 *   head (tile -1);
 * - store and ROM unit: every tensor is in the chip's store (store.kind). In
 *   mask ROM (ES_STORE_ROM, the default): a layer's tensors in its tile's ROM
 *   (tile.rom), an untied embedding table in the embedding ROM
 *   (head.embed_rom), the LM head, the final norm and a tied table in the
 *   LM-head ROM (head.lm_rom). In SRAM or HBM (store.*) a tensor streams from
 *   the store's ports (its geom: banks = ports, row_bits = bits per port per
 *   cycle) and takes no ROM rows; the fit check compares the bits each store
 *   holds (a tile's, the head's, or the chip's one) with store.capacity_bytes;
 * - bits and element bits: the chip's weights.* format of the tensor's role
 *   (a tied table: the LM head's), or, when given, the bits a recipe or a
 *   loaded ROM image holds (es_map_weights: es_rom_apply_recipe and es_apply_rom in
 *   weights/es_rom.c build the table with them);
 * - lane cells per token: rows x cols x ceil(element bits / tile.lanes.cell_bits);
 * - partition (tile.lanes.mapping, and the model): a striped tile is one
 *   partition; a partitioned dense tile has four (q/k/v, o, gate/up, down); a
 *   mixture of experts always has 1 + experts (0: attention and router, 1 + e:
 *   expert e). Each partition gets the share of the tile's lanes and ROM banks
 *   that its lane cells have of layer 0's projections, so one token takes
 *   about as long in each; a tensor's lanes and ROM geometry are its
 *   partition's (the head's tensors: head.lanes.count and their ROM).
 * - ROM rows: each tensor starts on a fresh row of its ROM; a ROM unit (a tile,
 *   each partition of a partitioned tile, the embedding table, the LM head)
 *   stripes the sum of its tensors' rows over its banks. The fit check compares
 *   the rows per bank each unit needs with the chip's rows key.
 * - ops: an op runs on its layer's tile (-1: the embedding lookup and the head),
 *   on the resource class the graph gives it; a matrix product on its tensor's
 *   partition's lanes, the experts op on each token's experts' partitions.
 *
 * The fit as a typed result (what chip derive reads instead of a message):
 *     es_map pm;
 *     if (es_map_build(&pm, &chip, &model, NULL, &e)) ...;  // -1: a size limit or no memory
 *     if (pm.fit.kind == ES_FIT_ROM)                         // e.g. tile 0 is short
 *         ... pm.fit.key ("tile.rom.rows"), pm.fit.unit ("tile 0, partition o"),
 *             pm.fit.need - pm.fit.have (rows per bank short) ...;
 *     es_rom_need n; es_map_rom_need(&pm, ES_ROM_TILE, &n);  // the least tile.rom.rows that holds it
 *     es_map_free(&pm);
 *
 * The table does not change after it is built; callers pass `const es_map *`
 * (the analytic model takes it in place of a chip and a model: pm->chip and
 * pm->model are the ones it was built from, and must outlive it). */
#ifndef ES_MAP_H
#define ES_MAP_H
#include <stdint.h>
#include "es_chip.h"
#include "es_err.h"
#include "es_model.h"
#ifdef __cplusplus
extern "C" {
#endif


/* The chip's ROMs: the tile ROM (tile.rom), the embedding ROM (head.embed_rom), the LM-head ROM (head.lm_rom). */
typedef enum es_rom_kind { ES_ROM_TILE, ES_ROM_EMBED, ES_ROM_LM } es_rom_kind;
const char *es_rom_kind_name(es_rom_kind k); /* "tile ROM", "embedding ROM", "LM-head ROM" */
const char *es_rom_kind_key(es_rom_kind k);  /* "tile.rom", "head.embed_rom", "head.lm_rom" */

/* Partitions of a partitioned dense tile (tile.lanes.mapping "partitioned"). */
enum { ES_PART_QKV, ES_PART_O, ES_PART_GATE_UP, ES_PART_DOWN, ES_PART_N };

/* Where the bits come from. */
typedef enum es_bits_from {
    ES_BITS_CHIP,   /* the chip's weights.* formats */
    ES_BITS_RECIPE, /* a recipe, as a ROM image built with it would hold them (es_rom_apply_recipe, weights/es_rom.h) */
    ES_BITS_IMAGE   /* a loaded ROM image (es_apply_rom, weights/es_rom.h) */
} es_bits_from;

/* Tensor `tensor` of the model as a recipe or an image stores it: its bits (scales and block padding included)
 * and its bits per element. Returns 0, or -1 with e filled to stop the build. */
typedef int (*es_map_bits_fn)(void *arg, int tensor, int64_t *bits, int *elem_bits, es_err *e);

/* Bits that replace the chip's formats: a recipe's or a ROM image's (weights/es_rom.c). The table asks for each
 * tensor's in turn, before anything else (so the source's errors come first). */
typedef struct es_map_weights {
    es_bits_from from;     /* ES_BITS_RECIPE or ES_BITS_IMAGE */
    es_map_bits_fn bits;   /* each tensor's bits and element bits */
    void *arg;             /* passed to it */
    double image_bits;     /* an image's ROM bits in use (its units' stream rows x row bits); 0: count the rows of
                              the tensors (a recipe) */
} es_map_weights;

/* One tensor's place. */
typedef struct es_map_tensor {
    int chip;          /* the chip holding it: 0 */
    int tile;          /* its layer tile, -1 outside the blocks (the head side) */
    int part;          /* the partition whose lanes multiply by it (0: unpartitioned, the head, a norm) */
    int in_part;       /* 1: held in its partition's share of the banks (a matrix of a partitioned tile); 0: the tile's
                          ROM as a whole (norms, every tensor of a one-partition tile, the head's ROMs) */
    es_store store;    /* the chip's store.kind: ES_STORE_ROM, ES_STORE_SRAM or ES_STORE_HBM */
    es_rom_kind rom;   /* the ROM holding it */
    int64_t bits;      /* bits stored, scales and block padding included */
    int elem_bits;     /* bits per element of its format */
    int64_t cells;     /* lane cells per token: rows x cols x ceil(elem_bits / cell_bits) */
    int64_t rom_rows;  /* rows of its ROM it takes, from a fresh row (0 in an SRAM or HBM store) */
    int64_t row_first; /* its first row in its ROM's stream (a tile's, the embedding's or the LM head's), tensors in model
                          order: the layout of a ROM image */
    int64_t lanes;     /* the lanes that multiply by it: its partition's share (a tile), head.lanes.count (the head) */
    es_rom_geom geom;       /* the ROM it streams from: its partition's share of the tile ROM's banks, or its head ROM;
                               in an SRAM or HBM store, the store as banks = store.ports of row_bits =
                               store.bits_per_cycle, latency store.latency_cycles (rows 0) */
} es_map_tensor;

/* One op's unit. */
typedef struct es_map_op {
    int chip;          /* 0 */
    int tile;          /* the tile running it; -1: the embedding lookup and the head */
    es_res res;        /* the resource class that runs it (the op's) */
    int part;          /* ES_RES_LANES: the partition whose lanes run it (a tile's lane server); the experts op: -1 (each
                          token's experts run on partitions 1 + e); other ops 0 */
    int64_t lanes;     /* ES_RES_LANES (but the experts op): the lanes it holds; else 0 */
} es_map_op;

/* One ROM unit: the rows its tensors need. */
typedef struct es_map_unit {
    es_rom_kind rom;     /* its ROM */
    int tile;            /* a tile's unit: the tile; -1: the embedding table, the LM head */
    int part;            /* -1: the whole ROM of the tile (or of the head); else the partition */
    int64_t stream_rows; /* its tensors' ROM rows, each tensor from a fresh row */
    int64_t bits;        /* its tensors' bits */
    int64_t banks;       /* the banks they stripe over */
    int64_t rows;        /* rows per bank it needs: ceil(stream_rows / banks) */
    char what[64];       /* "tile 0", "tile 0, partition o", "tile 0, expert 3", "tile 0, attention partition", "the
                            embedding table", "the LM head" */
} es_map_unit;

/* Whether the model fits the chip, and if not what is short: the first check that fails, in the order the messages
 * have always come (sizes the simulator counts, the tile ROM, the embedding ROM, the LM-head ROM, an SRAM or HBM
 * store, the scan engine, the state or KV SRAM). */
typedef enum es_fit_kind {
    ES_FIT_OK,
    ES_FIT_LIMIT, /* a size beyond what the simulator counts (es_map_build returned -1) */
    ES_FIT_ROM,   /* a ROM unit needs more rows per bank than its ROM has */
    ES_FIT_STORE, /* an SRAM or HBM store cannot hold its weights (need, have: bits), or holds a kind of model it
                     cannot (key store.kind) */
    ES_FIT_SCAN,  /* a state-space model on a chip without a scan engine (need 1, have 0) */
    ES_FIT_STATE, /* a tile's SRAM cannot hold one sequence's state */
    ES_FIT_KV     /* a tile's KV SRAM cannot hold one slot of kv.slot_context positions */
} es_fit_kind;

typedef struct es_fit {
    es_fit_kind kind;
    const char *key;      /* the chip key that is short ("tile.rom.rows", "head.lm_rom.rows", "kv.bytes_per_tile",
                             "tile.scan.elems_per_cycle", ...); NULL when it fits */
    es_rom_kind rom;      /* ES_FIT_ROM: the ROM */
    int tile, part;       /* ES_FIT_ROM: the unit's tile (-1: a head ROM) and partition (-1: the whole ROM) */
    char unit[64];        /* what is short: ES_FIT_ROM the unit's es_map_unit.what; "a sequence's state"; "a KV slot" */
    int64_t need, have;   /* ES_FIT_ROM: rows per bank needed and the ROM's rows per bank; ES_FIT_STORE: bits of
                             weights the store must hold and the bits it holds; ES_FIT_STATE and ES_FIT_KV:
                             bits one sequence needs in a tile and the bits kv.bytes_per_tile holds; the shortfall is
                             need - have */
    char msg[1024];       /* the one-line error, as es_map_check gives it */
} es_fit;

/* A LoRA adapter (--adapter-rank and --adapter-roles, or --adapter FILE): on each layer's projections of the roles
 * given, the tile adds (alpha / rank) x B(A x) to the etched projection's output. A and B live in the tile's KV SRAM,
 * beside the KV cache, whose capacity they take. */
typedef struct es_adapter_spec {
    int rank;          /* r (0: no adapter) */
    unsigned roles;    /* 1u << es_role for each adapted role (q, k, v, o, gate, up, down) */
    double alpha;      /* the scale is alpha / rank (timing alone: alpha = rank) */
    const unsigned char *tensors; /* (model's n_tensors) 1 for each adapted tensor (an adapter file's); NULL: every
                                     layer's projections of the roles */
} es_adapter_spec;

/* An adapter's placement (es_map_set_adapters); rank 0: none. pm->adapter is all of them together: one adapter's
 * figures when there is one; with several, tile_bits and total_bits are all of theirs (each tile holds every
 * adapter's A and B of its layers) and rank, roles, alpha and scale are adapter 0's (pm->adapters[k]: each one's). */
typedef struct es_map_adapter {
    int rank;
    unsigned roles;
    double alpha, scale;  /* scale = alpha / rank */
    int elem_bits;        /* kv.element_bits: A and B are held in the KV SRAM's element format */
    int64_t tile_bits;    /* A and B bits in the tile holding the most (each tile holds its layers') */
    int64_t total_bits;   /* in all tiles */
    int64_t tensors;      /* adapted projections (all layers) */
    int64_t kv_slots_without, kv_positions_without; /* what the KV SRAM held without the adapters */
} es_map_adapter;

/* One adapter's A and B for one tensor: lora_bits, A (rank x cols) and B (rows x rank) in its tile's KV SRAM in
 * kv.element_bits, each matrix from a fresh kv.word_bits word (0: not adapted); lora_macs, its multiply-adds per
 * token on the tile's vector unit, rank x (cols + rows). */
typedef struct es_map_lora {
    int64_t bits, macs;
} es_map_lora;

typedef struct es_map {
    const es_chip *chip;     /* what it was built from */
    const es_model *model;
    es_bits_from from;       /* where the bits came from */
    int64_t tiles;           /* layer tiles */
    es_map_tensor *tensors;  /* (model->n_tensors) */
    es_map_op *ops;          /* (model->n_ops) */
    int n_parts;             /* lane partitions of a tile (every tile is alike) */
    es_map_unit *units;      /* (n_units) per tile: the whole tile, then each partition (n_parts > 1); then the
                                embedding table (untied models) and the LM head */
    int n_units;
    double model_bits;       /* all tensors' bits */
    double rom_used_bits;    /* ROM bits in use: an image's, or a recipe's tensors' rows x row bits; 0 with the chip's
                                formats (area then counts the ROMs' whole capacity) */
    es_fit fit;              /* whether the model fits */
    es_map_adapter adapter;  /* the LoRA adapters in the KV SRAM, all together (rank 0: none) */
    int n_adapters;          /* adapters placed (ids 0 .. n_adapters - 1; 0: none) */
    es_map_adapter *adapters; /* (n_adapters) each one's own figures */
    es_map_lora *lora;       /* (n_adapters x model->n_tensors): adapter k's tensor i at [k * n_tensors + i] */
    int an_adapter;          /* the adapter the analytic model (es_analytic.h) gives every sequence: -1 none;
                                es_map_set_adapters sets 0; run sets stream 0's */
    int64_t kv_bits;         /* bits of each tile's KV SRAM left for the KV cache: kv.bytes_per_tile x 8 less the
                                adapters' tile_bits */
    int64_t kv_positions;    /* KV positions per layer they hold (es_chip_kv_positions without an adapter) */
    int64_t kv_slots;        /* sequences of kv.slot_context positions (es_chip_kv_slots without an adapter) */
} es_map;

/* Build the table of model m on chip c, bits from w (NULL: the chip's weights.* formats). Returns 0 when built,
 * whether or not the model fits (pm->fit says; es_map_check turns it into an error): a table that does not fit still
 * gives area and timing, as chip derive sizes its ROMs from it. Returns -1 with e filled, and nothing to free, when w's
 * source fails (pm->fit.kind ES_FIT_OK), a size is beyond what the simulator counts (pm->fit.kind ES_FIT_LIMIT, the
 * message in pm->fit.msg too) or memory runs out. */
int es_map_build(es_map *pm, const es_chip *c, const es_model *m, const es_map_weights *w, es_err *e);
void es_map_free(es_map *pm);
/* 0 when the model fits; else -1 with pm->fit.msg in e. */
int es_map_check(const es_map *pm, es_err *e);
/* Put adapters a[0..n) in the table, all held in the KV SRAM at once (several tenants, each sequence naming one or
 * none): each one's es_map_lora per tensor, pm->adapters, pm->adapter (all together), and the KV capacity they leave
 * (pm->kv_bits, kv_positions, kv_slots). Returns -1 with e filled for an adapter the table cannot place (rank 0, a
 * role the model has no projection of, an expert's projection, a state-space model, a KV cache in the weight store);
 * when the adapters leave less than one KV slot, returns 0 with pm->fit saying so (key kv.bytes_per_tile), as
 * es_map_check reports it. Call once per table. */
int es_map_set_adapters(es_map *pm, const es_adapter_spec *a, int n, es_err *e);
/* Adapter k's row for tensor i: {0, 0} when k < 0 (no adapter), k has no such tensor, or none is placed. */
static inline es_map_lora es_map_lora_of(const es_map *pm, int k, int i)
{
    es_map_lora none = {0, 0};
    return k >= 0 && k < pm->n_adapters ? pm->lora[(int64_t)k * pm->model->n_tensors + i] : none;
}
/* Whether any adapter adapts tensor i. */
static inline int es_map_lora_any(const es_map *pm, int i)
{
    for (int k = 0; k < pm->n_adapters; k++)
        if (pm->lora[(int64_t)k * pm->model->n_tensors + i].bits > 0) return 1;
    return 0;
}
/* "q,v" into roles (1u << es_role each): 0, or -1 with e naming the role that is not q, k, v, o, gate, up or down. */
int es_adapter_roles_parse(const char *list, unsigned *roles, es_err *e);
/* The roles as "q,v" into buf. */
const char *es_adapter_roles_text(unsigned roles, char *buf, size_t n);
/* The row of a tensor or an op of pm->model. */
static inline const es_map_tensor *es_map_tensor_of(const es_map *pm, const es_tensor *t)
{
    return &pm->tensors[t - pm->model->tensors];
}
static inline const es_map_op *es_map_op_of(const es_map *pm, const es_op *op) { return &pm->ops[op - pm->model->ops]; }
/* The ROM unit of a ROM, tile and partition (-1: whole), or NULL. */
const es_map_unit *es_map_unit_of(const es_map *pm, es_rom_kind rom, int tile, int part);

/* What one of the chip's ROMs must hold: its unit needing the most rows per bank (the first on a tie); rows is the
 * least `rows` key that holds every unit of that ROM. Chip derive sizes ROMs with it. */
typedef struct es_rom_need {
    int64_t rows;          /* the least rows per bank (0: the ROM holds nothing) */
    int64_t stream_rows;   /* the ROM rows of the unit needing the most rows per bank */
    int64_t bits;          /* its tensors' bits */
    int64_t banks;         /* its banks */
    char what[64];         /* es_map_unit.what of that unit */
} es_rom_need;
void es_map_rom_need(const es_map *pm, es_rom_kind kind, es_rom_need *n);

/* The same from a chip and a model in the chip's formats (a table built and freed): chip derive's calls. */
int es_chip_rom_need(const es_chip *c, const es_model *m, es_rom_kind kind, es_rom_need *n, es_err *e);
/* Check the model fits in the chip's formats: es_map_build, then es_map_check. */
int es_chip_check_fit(const es_chip *c, const es_model *m, es_err *e);

#ifdef __cplusplus
}
#endif
#endif
