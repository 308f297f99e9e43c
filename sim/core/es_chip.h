/* es_chip: a chip configuration (models/chips/NAME.json) and the process
 * table it names (models/process/NODE.json), read into one struct. Every
 * field comes from a key of one of the two files; none has a default in code. */
#ifndef ES_CHIP_H
#define ES_CHIP_H
#include <stdint.h>
#include "es_cfg.h"
#include "es_err.h"
#include "es_fmt.h"
#include "es_model.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct es_wfmt {
    int bits;        /* bits per weight element */
    int group;       /* elements sharing one scale; 0 = no scale */
    int scale_bits;  /* bits of each group scale */
    int registry;    /* 1: `format` names a format of the registry (es_fmt.h), in q */
    es_qfmt q;       /* the registry format: bits, blocks and scales as a ROM image stores them */
} es_wfmt;

/* The geometry of one mask-ROM unit (a tile's ROM, the embedding table's, the LM head's). */
typedef struct es_rom_geom {
    int64_t banks;    /* ROM banks in the unit */
    int64_t rows;     /* rows per bank */
    int64_t row_bits; /* bits read per row access */
    int latency;      /* cycles from row address to data */
} es_rom_geom;

/* The process table (models/process/NODE.json): densities, energies, leakage. */
typedef struct es_process {
    double volt;              /* voltage_v */
    double logic_mtr_mm2;     /* logic_mtr_per_mm2 */
    double logic_util;        /* logic_utilization */
    double sram_cell_um2;     /* sram_bitcell_um2 */
    double sram_eff;          /* sram_array_efficiency */
    double sram_tr_bit;       /* sram_transistors_per_bit */
    double rom_cell_um2;      /* rom_cell_um2 */
    double rom_eff;           /* rom_array_efficiency */
    double e_rom_bit;         /* energy.rom_read_fj_per_bit (J after load) */
    double e_cell_mac;        /* energy.lane_cell_mac_fj */
    double e_attn_mac;        /* energy.attention_mac_fj */
    double e_kv_rd_bit;       /* energy.sram_read_fj_per_bit */
    double e_kv_wr_bit;       /* energy.sram_write_fj_per_bit */
    double e_vec_elem;        /* energy.vector_op_fj */
    double e_wire_bit_mm;     /* energy.wire_fj_per_bit_mm */
    double e_host_bit;        /* energy.host_pj_per_bit */
    double e_reg_bit;         /* energy.register_fj_per_bit_cycle: a clocked register bit's flip-flop, one cycle */
    double e_clk_net;         /* energy.clock_network_fj_per_bit_cycle: the clock network's share, per bit and cycle */
    double leak_logic;        /* leakage.logic_w_per_mm2 */
    double leak_sram;         /* leakage.sram_w_per_mm2 */
    double leak_rom;          /* leakage.rom_w_per_mm2 */
} es_process;

/* A layer tile's compute: lanes, vector unit, attention and scan engines (tile.*). */
typedef struct es_tile_cfg {
    int layers;               /* tile.layers_per_tile */
    int64_t slots;            /* tile.items_in_flight: work items a tile holds at once (default 1) */
    int64_t lanes;            /* tile.lanes.count: lane cells per cycle */
    int cell_bits;            /* tile.lanes.cell_bits: bits one select cell decodes */
    int lane_depth;           /* tile.lanes.pipeline_depth: ROM-to-accumulator cycles */
    int tokens_per_read;      /* tile.lanes.tokens_per_read */
    int sync_step;            /* tile.sync_step: a pass starts only once every token passed on is back (a GPU's step) */
    int lanes_shared;         /* tile.lanes.shared_by_tokens: 1, the lanes are the cells per cycle of all a pass's tokens
                                 together (a GPU's tensor units); 0 (default), each token of a pass has lanes of its own */
    int partitioned;          /* tile.lanes.mapping: 0 "striped" (every lane on one tensor at a time),
                                 1 "partitioned" (lanes and banks split among tensor groups) */
    char act_format[8];       /* tile.lanes.activation_format: int8, fp8, bf16 or fp32 */
    int acc_bits;             /* tile.lanes.accumulator_bits */
    int64_t vec_width;        /* tile.vector.elems_per_cycle */
    int vec_latency;          /* tile.vector.latency_cycles */
    int64_t attn_ppc;         /* tile.attention.positions_per_cycle */
    int attn_latency;         /* tile.attention.latency_cycles */
    int64_t scan_width;       /* tile.scan.elems_per_cycle: state elements the scan engine updates per cycle (SSM; 0: none) */
    int scan_latency;         /* tile.scan.latency_cycles */
    double reg_bits_cell;     /* tile.lanes.register_bits_per_cell, or from area.lane_rtl (also the head's lanes) */
    double cell_mac_j;        /* tile.lanes.cell_mac_fj (J): one lane cell's multiply-add, the head's lanes too; 0: the
                                 process table's energy.lane_cell_mac_fj (es_chip_cell_mac_j) */
    double reg_bits_vec;      /* tile.vector.register_bits_per_elem (also the head's vector unit) */
    double reg_bits_attn;     /* tile.attention.register_bits_per_position (also the scan engine) */
} es_tile_cfg;

/* The KV SRAM (kv.*): per tile, or per group of tiles sharing its banks and ports. */
typedef struct es_kv_cfg {
    int64_t bytes;            /* kv.bytes_per_tile */
    int64_t banks;            /* kv.banks (per group); 0 with in_store */
    int64_t word_bits;        /* kv.word_bits; 0 with in_store */
    int ports;                /* kv.ports (per group) */
    int elem_bits;            /* kv.element_bits */
    char format[8];           /* kv.element_format: int8, fp8, bf16 or fp32 (optional; default by width) */
    int64_t slot_context;     /* kv.slot_context: positions reserved per sequence */
    int tiles_per_group;      /* kv.tiles_per_group: tiles sharing one SRAM */
    int prefix_sharing;       /* kv.prefix_sharing: sequences may read a shared prefix's positions */
    int in_store;             /* kv.in_store: the KV cache lives in the HBM weight store (off the die, store energy,
                               * streamed at the store's bits a cycle and booked on it beside the weights) */
} es_kv_cfg;

/* Where the weights live and in which formats (store.*, weights.*, tile.rom.*, head.*_rom.*). Three kinds:
 * mask ROM (the default: a unit per tile and one each for the embedding table and the LM head, tile.rom and
 * head.*_rom), on-die SRAM and off-die HBM stacks (store.*: capacity, ports, bits per port per cycle, latency,
 * energy per bit read). An SRAM store is per tile (each layer tile holds its layers' weights, the head one more
 * of the same size holding its own) or one for the whole chip; HBM is one for the whole chip. */
typedef enum es_store { ES_STORE_ROM, ES_STORE_SRAM, ES_STORE_HBM } es_store;
const char *es_store_name(es_store s); /* "ROM", "SRAM", "HBM" */
typedef struct es_store_cfg {
    es_store kind;            /* store.kind: rom (default), sram or hbm */
    int chip_scope;           /* store.scope: 0 "tile" (sram only), 1 "chip" (one store shared by every tile and the head) */
    int64_t capacity_bytes;   /* store.capacity_bytes: per tile (and the head) with tile scope, else in all */
    int ports;                /* store.ports: ports per store (HBM: stacks) */
    int64_t port_bits;        /* store.bits_per_cycle: bits each port streams per chip clock cycle */
    int latency;              /* store.latency_cycles: cycles from address to data */
    double e_read_bit;        /* store.read_fj_per_bit (J after load) */
    double static_w;          /* store.static_w: HBM refresh and PHY power, off the die (card power) */
    es_rom_geom tile_rom;     /* tile.rom.* */
    es_rom_geom embed_rom;    /* head.embed_rom.* */
    es_rom_geom lm_rom;       /* head.lm_rom.* */
    es_wfmt fmt[ES_ROLE_COUNT]; /* weights.default, overridden by weights.roles.<role> */
} es_store_cfg;

/* The head tile: embedding, final norm, LM head, sampler (head.*; its ROMs are in es_store_cfg). */
typedef struct es_head_cfg {
    int64_t lanes;            /* head.lanes.count */
    int tokens_per_read;      /* head.lanes.tokens_per_read (default 1): the waiting tokens one pass over the LM head's
                                 weights serves, on lanes shared by them (tile.lanes.shared_by_tokens) */
    int64_t sampler_width;    /* head.sampler.elems_per_cycle */
    int sampler_latency;      /* head.sampler.latency_cycles */
    double reg_bits_sampler;  /* head.sampler.register_bits_per_elem */
} es_head_cfg;

/* The links between tiles (link.*). */
typedef struct es_link_cfg {
    int64_t width;            /* link.width_bits */
    int latency;              /* link.latency_cycles */
    double mm;                /* link.distance_mm */
    int elem_bits;            /* link.elem_bits: bits per residual element on the wire */
    int token_id_bits;        /* link.token_id_bits */
} es_link_cfg;

/* The host interface (host.*). */
typedef struct es_host_cfg {
    double bw;                /* host.bandwidth_bytes_per_s */
    double latency_ns;        /* host.latency_ns */
    int64_t cmd_bytes;        /* host.command_bytes */
    int64_t token_bytes;      /* host.token_bytes */
    int64_t cpl_bytes;        /* host.completion_bytes */
} es_host_cfg;

/* Scheduling (scheduler.*). */
typedef struct es_sched_cfg {
    int64_t prefill_chunk;    /* scheduler.prefill_chunk */
    int64_t fifo_depth;       /* scheduler.fifo_depth: items per inter-unit FIFO */
} es_sched_cfg;

/* Area inputs (area.*). */
typedef struct es_area_cfg {
    double lane_tr;           /* area.lane_transistors, or per lane cell from area.lane_rtl */
    char lane_rtl[512];       /* area.lane_rtl resolved (a scripts/synth-rtl file), or "" */
    double vec_tr_per_elem;   /* area.vector_transistors_per_elem */
    double attn_tr_per_pos;   /* area.attention_transistors_per_position */
    double sampler_tr_per_elem; /* area.sampler_transistors_per_elem */
    double ctrl_tr_per_tile;  /* area.control_transistors_per_tile */
    double io_mm2;            /* area.io_mm2 */
    double io_tr;             /* area.io_transistors */
} es_area_cfg;

/* The card around the die (card.*). */
typedef struct es_card_cfg {
    double vr_eff;            /* card.vr_efficiency */
    double board_w;           /* card.board_static_w */
    double power_limit_w;     /* card.power_limit_w: 0 = none */
    double power_window_s;    /* card.power_window_us (s after load): the limit holds over each window */
    double clock_step_hz;     /* card.clock_step_hz: the clock steps down (and back up) by this */
    int reactive;             /* card.governor "reactive": a chip alone's limit held by its own governor in the
                                 simulation, as a system's chip's (es_ctx.h Throttle); "ideal" (0): Governor */
} es_card_cfg;

/* Cost inputs (cost.*): the wafer from the process table, the card from the chip file. Both optional: a
 * chip without them has no cost (es_cost.h says what needs which). */
enum { ES_YIELD_NONE, ES_YIELD_POISSON, ES_YIELD_MURPHY, ES_YIELD_NEG_BINOMIAL };
typedef struct es_cost_cfg {
    int have_wafer;           /* the process table gives cost.* */
    double wafer_usd;         /* cost.wafer_usd: one processed wafer */
    double wafer_mm;          /* cost.wafer_diameter_mm */
    double edge_mm;           /* cost.edge_exclusion_mm: the unusable ring at the wafer's edge */
    double d0_cm2;            /* cost.defect_density_per_cm2 */
    int yield_model;          /* cost.yield_model: ES_YIELD_* */
    double alpha;             /* cost.clustering_alpha (negative_binomial only) */
    int have_card;            /* the chip file gives cost.* */
    int card_given;           /* cost.card_usd given: the card's price outright (a bought GPU) */
    double card_usd;          /* cost.card_usd */
    double package_test_usd;  /* cost.package_test_usd: package, assembly and test of the die */
    double board_usd;         /* cost.board_usd: the card around the die (board, VRs, other parts) */
    int hbm_given;            /* cost.hbm_usd_per_gb given (store.kind hbm, no card_usd) */
    double hbm_usd_per_gb;    /* cost.hbm_usd_per_gb: an HBM store's stacks, per GB (1e9 bytes) of store.capacity_bytes;
                               * with a die-derived card only (0 otherwise) */
    double host_usd;          /* cost.host_usd_per_card: the host server's price, per card it holds */
    double host_w;            /* cost.host_w_per_card: the host server's power, per card */
} es_cost_cfg;

/* A card-to-card link this chip sends on: to the next chip of a system and, from the last, the sampled token back
 * to the first. Not a chip key: a system file's link.* sets it (es_system_load); a chip alone has none (zeros). */
typedef struct es_card_link {
    double bits_per_s;        /* link.bandwidth_bits_per_s */
    double latency_ns;        /* link.latency_ns */
    double j_bit;             /* link.energy_pj_per_bit x 1e-12 */
} es_card_link;

typedef struct es_chip {
    char path[512];           /* chip file */
    char name[64];            /* chip "name" */
    es_cfg cfg;               /* chip tree (after --set) */
    es_cfg proc;              /* process tree (after --set process.*) */
    double clock_hz;          /* clock_hz */
    /* clocking: which registers receive the clock when (ES_GATING_*) */
    int gating;               /* clock_gating: "none", "tile" or "unit" */
    es_tile_cfg tile;
    es_kv_cfg kv;
    es_store_cfg store;
    es_head_cfg head;
    es_link_cfg link;
    es_host_cfg host;
    es_sched_cfg sched;
    es_area_cfg area;
    es_card_cfg card;
    es_process process;
    es_cost_cfg cost;         /* cost.* of both files */
    es_card_link card_link;   /* in a system: the link to the next chip (es_system) */
} es_chip;

/* A key of a chip file or process table: its kind ('d' number, 'l'/'i' whole number, 'b' boolean,
 * 'x' text or a format, read by its own code), its range [lo, hi], whether it may be left out (and
 * then its default), and where the loader puts it (scaled: energies in fJ become joules). */
typedef struct es_key_spec {
    const char *key;
    char kind;
    double lo, hi;
    size_t off;
    int optional;
    double dflt, scale;
    const char *values;   /* 'x': what it accepts */
    const char *note;
} es_key_spec;
/* The table of chip keys (process 0) or process keys (1) the loader checks: `etchsim chip keys`. */
const es_key_spec *es_chip_key_specs(int process, int *n);
/* 1 when key names a key of those tables as --set does (a chip key, or "process." and a process
 * key); else 0, the nearest such key in near (n bytes) and its edit distance in *near_d (may be NULL). */
int es_chip_key_known(const char *key, char *near, size_t n, int *near_d);
/* Edit distance of two keys of at most 63 bytes (for "did you mean"); 99 for longer ones. */
int es_key_distance(const char *a, const char *b);

/* Load a chip by name or path; overrides are "key=value" strings applied
 * before reading (keys starting "process." go to the process table). */
int es_chip_load(es_chip *c, const char *spec, const char *const *sets, int n_sets, es_err *e);
/* Load a chip from an in-memory tree (copied: cfg stays the caller's), as es_chip_load does a file
 * (es_chip_load reads the file and calls this): relative paths in it (process, area.lane_rtl)
 * resolve from folder dir ("." the working folder, "/" the root), and label stands in for the
 * file's path in errors and in c->path (at most 511 bytes of it). */
int es_chip_load_cfg(es_chip *c, const es_cfg *cfg, const char *dir, const char *label, const char *const *sets,
                     int n_sets, es_err *e);
void es_chip_free(es_chip *c);

/* Derived figures. */
int64_t es_chip_tiles(const es_chip *c, const es_model *m);
int64_t es_chip_kv_bits_per_pos(const es_chip *c, const es_model *m); /* per layer; 0 for an SSM */
/* SSM: bits of one sequence's recurrent state in one layer: the scan state
 * (intermediate x state_size) and the conv1d window (conv_kernel - 1 inputs per
 * channel), in kv.element_bits; 0 for a transformer. */
int64_t es_chip_state_bits(const es_chip *c, const es_model *m);
/* KV positions per layer the SRAM holds: sequences take prompt + generated positions. */
/* KV capacity in positions per layer; for an SSM, the sequences whose state fits
 * (each holds one unit whatever its length). */
int64_t es_chip_kv_positions(const es_chip *c, const es_model *m);
/* Sequences of kv.slot_context positions that fit at once. */
int64_t es_chip_kv_slots(const es_chip *c, const es_model *m);
/* The role whose format a tensor is stored in (a tied table: the LM head's). */
static inline es_role es_tensor_fmt_role(const es_tensor *t)
{
    return t->lm_head ? ES_ROLE_LM_HEAD : t->role;
}
/* Bits of a tensor in the chip's weights.* format of its role, scales included (a registry format: whole
 * blocks per row, as a ROM image stores it). Where a tensor lives and the bits it takes there (a recipe's,
 * an image's) are the placement table's (es_map.h); this is the chip's formats alone, for what runs before
 * a table exists (chip derive). */
int64_t es_tensor_bits(const es_chip *c, const es_tensor *t);
/* Bits a KV port streams a cycle: kv.banks x kv.word_bits / kv.ports; with kv.in_store the HBM store's bits a cycle
 * (store.ports x store.bits_per_cycle) / kv.ports, the bandwidth it shares with the weights. */
int64_t es_chip_kv_port_bits(const es_chip *c);
/* Capacity of a ROM in bits, INT64_MAX when it does not fit in 64 bits. */
int64_t es_rom_bits(const es_rom_geom *r); /* bits per cycle one port streams */
/* ROM rows a tensor of `bits` takes in rows of row_bits bits: every tensor starts on a fresh row, as a
 * ROM image lays them out (es_rom_build counts its rows with this too). */
int64_t es_rom_tensor_rows(int64_t bits, int64_t row_bits);
/* Where each tensor lives (tile, partition, lanes, ROM), what each ROM must hold and whether the model
 * fits: es_map.h, the placement table. */

/* clock_gating: none (every register clocked every cycle), tile (a tile's registers while an item is in
 * it; the head's while it works), unit (each resource's registers while it is booked) */
enum { ES_GATING_NONE, ES_GATING_TILE, ES_GATING_UNIT };
/* Register bits of one tile's resources (lanes, vector unit, attention or scan engine) and of the head
 * (lanes, vector unit, sampler), from the chip's register_bits_* keys. */
double es_chip_tile_register_bits(const es_chip *c);
/* Copies of a tile's lanes: tokens_per_read (each token of a pass has its own adder-tree inputs), or 1 when the lanes
 * are shared by a pass's tokens (tile.lanes.shared_by_tokens). */
static inline int64_t es_chip_lane_copies(const es_chip *c) { return c->tile.lanes_shared ? 1 : c->tile.tokens_per_read; }
double es_chip_head_register_bits(const es_chip *c);
/* Energy of one lane cell's multiply-add: tile.lanes.cell_mac_fj, else the process table's energy.lane_cell_mac_fj. */
static inline double es_chip_cell_mac_j(const es_chip *c)
{
    return c->tile.cell_mac_j > 0 ? c->tile.cell_mac_j : c->process.e_cell_mac;
}

#ifdef __cplusplus
}
#endif
#endif
