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
} es_derived;

/* Derive a chip for model m from template t: 0 and d filled (free with es_derived_free), or -1
 * and e (d holds nothing to free). An area too small for the model's ROM, lanes and one
 * sequence's KV or state is an error naming the area each needs. */
int es_chip_derive(const es_model *m, const es_chip *t, const es_derive_opts *o, es_derived *d, es_err *e);
void es_derived_free(es_derived *d);

#ifdef __cplusplus
}
#endif
#endif
