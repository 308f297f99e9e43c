/* es_derive: a chip configuration for a model, made from a template chip (`etchsim chip derive`).
 * Kept from the template: the process, the clock, every per-unit width and latency (vector unit,
 * attention or scan engine, sampler, links, host), the weight formats, the lanes per ROM bit and
 * the banks per lane (so the derived tiles are as fast per weight as the template's), and the
 * template's area figures. Derived from the model: the tile count and each tile's ROM, lanes and
 * banks; the head's ROMs and lanes; and, last, the KV (or state) SRAM per tile: whatever area is
 * left to reach the target area. Every derived number's "source" says how it was derived. The
 * derived tree is checked by loading it from memory (es_chip_load_cfg); errors about it name
 * "the chip derived for MODEL (PATH) from TEMPLATE (PATH)". */
#ifndef ES_DERIVE_H
#define ES_DERIVE_H
#include <stdint.h>
#include "es_area.h"
#include "es_cfg.h"
#include "es_chip.h"
#include "es_err.h"
#include "es_model.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct es_derive_opts {
    double area_mm2;  /* the die area to reach (mm2); <= 0: the template's own area holding llama-3.1-8b */
    const char *name; /* the derived chip's name; NULL: "MODEL-class" */
    const char *out;  /* the file the derived chip goes to: its relative paths (area.lane_rtl) are written,
                         and resolved, from its folder; NULL: standard output (absolute paths, resolved
                         from the working folder) */
} es_derive_opts;

typedef struct es_derived {
    es_cfg cfg;       /* the derived chip file's tree, each derived number sourced (owned) */
    es_chip chip;     /* cfg loaded (owned) */
    es_area area;     /* chip's area holding the model */
    char name[80];    /* the derived chip's name */
    double area_mm2;  /* the area it was sized to reach */
    int64_t tiles;    /* tiles (the model's layers over the template's layers per tile) */
    int64_t lanes;    /* lane cells per tile */
    int64_t banks;    /* tile ROM banks */
    int64_t rows;     /* tile ROM rows per bank */
    int64_t kv_bytes; /* KV (or state) SRAM bytes per tile */
    int area_short;   /* after -1: 1 when the area was too small for the model (es_chip_split tries more chips) */
} es_derived;

/* Derive a chip for model m from template t: 0 and d filled (free with es_derived_free), or -1
 * and e (d holds nothing to free). An area too small for the model's ROM, lanes and one
 * sequence's KV or state is an error naming the area each needs. */
int es_chip_derive(const es_model *m, const es_chip *t, const es_derive_opts *o, es_derived *d, es_err *e);
void es_derived_free(es_derived *d);
/* The area chip derive sizes to by default: t's own area holding llama-3.1-8b (the model it was made for). */
int es_derive_default_area(const es_chip *t, double *mm2, es_err *e);

/* `etchsim chip derive --split`: the fewest chips of one area (o->area_mm2, default es_derive_default_area) that
 * hold model m, each a contiguous range of its layers (the first also the embedding table, the last the final
 * norm and LM head), each derived for its slice (es_model_slice) by es_chip_derive: ROM sized for the slice, the
 * area left in KV (or state) SRAM. How many layers each chip holds: each end (the first chip, with the embedding
 * table; the last, with the head; one chip holding both when the model fits one) and a middle chip holds at most
 * cap layers (the most whose derived chip still reaches the area with one sequence's KV per tile, found by
 * derivation: the fit only gets harder with more layers); N is the fewest chips whose caps sum to the layers.
 * Then the layers are spread as evenly as the caps allow: every chip min(cap, h) for the least level h that covers
 * them; the surplus taken back one layer at a time from the chip nearest its cap (the least area left for KV
 * SRAM, so the fewest sequences), ties going to the last (which also runs the LM head), the first, then the
 * middle ones from the back. Chips whose derived trees are the same are one part (one file serves them all). The system's card link
 * is the template's host link (bandwidth, latency, energy per bit, each sourced) unless o gives one. */
typedef struct es_split_opts {
    double area_mm2;      /* <= 0: es_derive_default_area */
    const char *name;     /* the system's name; the parts are NAME-part1, -part2, ... (NULL: MODEL-TEMPLATE) */
    const char *dir;      /* the folder the parts' files go to, as es_derive_opts.out (NULL: the working folder) */
    double link_bits_per_s, link_latency_ns, link_pj_per_bit; /* < 0: the template's host link's */
    int ep;               /* > 1: each middle stage is ep chips splitting its layers' experts evenly (expert
                           * parallelism, es_system.h; a mixture of experts whose experts ep divides): its chips are
                           * derived for its layers with experts 0..E/ep-1 (each holds as many), the caps measured so */
} es_split_opts;

typedef struct es_split_chip {
    int part;             /* which es_split.parts[] it is */
    int first, last;      /* its layers (inclusive) */
    int embed, head;      /* holds the embedding table / the final norm and LM head */
    int expert_first, expert_last; /* its experts on an expert-parallel stage (-1, -1: all of its layers') */
} es_split_chip;

typedef struct es_split {
    char name[80];        /* the system's name */
    double area_mm2;      /* the area each chip reaches */
    int cap_first, cap_mid, cap_last; /* the most layers each kind of chip holds (0: not measured, e.g. one chip) */
    es_derived *parts;    /* (n_parts) the distinct derived chips, named NAME-partK (K from 1) */
    int n_parts;
    int ep;               /* chips per middle stage (1: a layer pipeline) */
    es_split_chip *chips; /* (n_chips) in pipeline order */
    int n_chips;
    double link_bits_per_s, link_latency_ns, link_pj_per_bit;
    char link_src[3][1024]; /* each link figure's source */
} es_split;

/* 0 and s filled (free with es_split_free), or -1 and e (s holds nothing to free). One error when the area cannot
 * hold even one layer with the embedding table, or one layer with the final norm and LM head. */
int es_chip_split(const es_model *m, const es_chip *t, const es_split_opts *o, es_split *s, es_err *e);
void es_split_free(es_split *s);

#ifdef __cplusplus
}
#endif
#endif
