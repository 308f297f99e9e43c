/* es_derive: a chip configuration for a model from a template chip (see es_derive.h). The tree is
 * built from the template's, each derived key set with its source, and checked by loading it from
 * memory after each step that the next one measures: the lanes and banks, then the ROM rows that
 * hold the model, then the KV or state SRAM that fills the area left. */
#define _POSIX_C_SOURCE 200809L
#include "es_derive.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "es_fs.h"
#include "es_map.h"

/* One derivation: its inputs, what it builds, and the source of the next number it sets. */
typedef struct deriv {
    const es_model *m;
    const es_chip *t;  /* the template */
    es_derived *d;
    char dir[1024];    /* the derived file's folder: its relative paths resolve from there */
    char label[1400];  /* what errors call the derived chip, in place of a file */
    char src[1024];    /* the source of the next number put */
    es_map map;        /* the placement table of d->chip as it stands (after evaluate) */
    int have_map;
} deriv;

static int put(deriv *x, const char *key, double v, es_err *e)
{
    char val[64];
    snprintf(val, sizeof val, "%.17g", v);
    return es_cfg_set_sourced(&x->d->cfg, key, val, x->src, e);
}

/* The area to reach: asked for, or the template's own area holding the model it was made for. */
static int target_area(const es_chip *t, double want, double *out, es_err *e)
{
    if (want > 0) {
        *out = want;
        return 0;
    }
    es_model ref;
    es_area ta;
    es_map tm;
    if (es_model_load(&ref, "llama-3.1-8b", e)) return -1;
    int rc = es_map_build(&tm, t, &ref, NULL, e);
    if (rc == 0) {
        es_area_compute(&tm, &ta);
        es_map_free(&tm);
        *out = ta.total_mm2;
    }
    es_model_free(&ref);
    return rc;
}

/* The template's lane synthesis, when it names the file by path: the same file, as a path from the
 * derived file's folder (absolute on standard output). */
static int lane_rtl_path(deriv *x, const es_derive_opts *o, es_err *e)
{
    const es_chip *t = x->t;
    char tmpl_rtl[512] = "", rel[1100];
    es_err absent;
    if (!t->area.lane_rtl[0] || es_cfg_str(&t->cfg, "area.lane_rtl", tmpl_rtl, sizeof tmpl_rtl, &absent) ||
        !strchr(tmpl_rtl, '/'))
        return 0; /* a name: it resolves from the models folder wherever the file is */
    if (!o->out) snprintf(rel, sizeof rel, "%s", t->area.lane_rtl);
    else if (es_relpath(t->area.lane_rtl, x->dir, rel, sizeof rel)) rel[0] = 0;
    snprintf(x->src, sizeof x->src, "%s's lane synthesis (its area.lane_rtl), from this file's folder: the lane "
             "cell's transistors and register bits from rtl-ref's synthesized RTL", t->name);
    if (!rel[0]) return es_fail(e, "%s: key 'area.lane_rtl': path too long", t->path);
    return es_cfg_set_sourced(&x->d->cfg, "area.lane_rtl", rel, x->src, e);
}

/* The template's tree, renamed and described for the model. */
static int start_tree(deriv *x, const es_derive_opts *o, es_err *e)
{
    const es_model *m = x->m;
    const es_chip *t = x->t;
    es_cfg *c = &x->d->cfg;
    snprintf(c->path, sizeof c->path, "%s", t->path);
    c->root = cJSON_Duplicate(t->cfg.root, 1);
    if (!c->root) return es_fail(e, "%s: out of memory", t->path);
    if (lane_rtl_path(x, o, e)) return -1;
    char mname[80];
    snprintf(mname, sizeof mname, "%s-class", m->name);
    snprintf(x->d->name, sizeof x->d->name, "%s", o->name ? o->name : mname);
    snprintf(x->src, sizeof x->src, "etchsim chip derive --model %s --like %s", m->name, t->name);
    if (es_cfg_set_sourced(c, "name", o->name ? o->name : mname, x->src, e)) return -1;
    char desc[512];
    snprintf(desc, sizeof desc, "\"A chip for %s derived from %s by etchsim chip derive: %s's process, clock, "
             "unit widths, weight formats, lanes per ROM bit and banks per lane; ROM and lanes sized for the model; "
             "the rest of the area in KV or state SRAM. Each derived number's source says how.\"", m->name, t->name,
             t->name);
    if (es_cfg_has(c, "description") && es_cfg_set(c, "description", desc, e)) return -1;
    return 0;
}

/* The ROM bits, in the template's formats, of one tile's layers (*tile) and of the LM-head ROM (*head: the LM
 * head, the final norm, a tied table), as the placement table of the model on the template places them. */
static int model_rom_bits(const es_chip *t, const es_model *m, double *tile, double *head, es_err *e)
{
    es_map tm;
    if (es_map_build(&tm, t, m, NULL, e)) return -1;
    const es_map_unit *ut = es_map_unit_of(&tm, ES_ROM_TILE, 0, -1), *uh = es_map_unit_of(&tm, ES_ROM_LM, -1, -1);
    *tile = ut ? (double)ut->bits : 0;
    *head = uh ? (double)uh->bits : 0;
    es_map_free(&tm);
    return 0;
}

/* Lanes and banks of the tile and the head, at the template's lane cells per ROM bit and banks per
 * lane cell; one-row ROMs and one byte of KV SRAM per tile until they are measured. */
static int size_lanes(deriv *x, es_err *e)
{
    const es_model *m = x->m;
    const es_chip *t = x->t;
    es_derived *d = x->d;
    double bits, lm_bits;
    if (model_rom_bits(t, m, &bits, &lm_bits, e)) return -1;
    double t_rom = (double)es_rom_bits(&t->store.tile_rom), lanes_per_bit = (double)t->tile.lanes / t_rom;
    double banks_per_lane = (double)t->store.tile_rom.banks / (double)t->tile.lanes;
    d->lanes = (int64_t)llround(bits * lanes_per_bit);
    d->banks = (int64_t)llround((double)d->lanes * banks_per_lane);
    if (d->lanes < 1) d->lanes = 1;
    if (d->banks < 1) d->banks = 1;
    snprintf(x->src, sizeof x->src, "derived for %s (chip derive --like %s): the tile's %.0f ROM bits x %s's %.6g "
             "lane cells per ROM bit", m->name, t->name, bits, t->name, lanes_per_bit);
    if (put(x, "tile.lanes.count", (double)d->lanes, e)) return -1;
    snprintf(x->src, sizeof x->src, "derived for %s: %lld lane cells x %s's %.6g banks per lane cell", m->name,
             (long long)d->lanes, t->name, banks_per_lane);
    if (put(x, "tile.rom.banks", (double)d->banks, e)) return -1;
    /* head: the LM head's lanes per ROM bit and banks per lane as the template's */
    double t_lm = (double)es_rom_bits(&t->store.lm_rom);
    int64_t hl = (int64_t)llround(lm_bits * (double)t->head.lanes / t_lm);
    int64_t hb = (int64_t)llround((double)hl * (double)t->store.lm_rom.banks / (double)t->head.lanes);
    if (hl < 1) hl = 1;
    if (hb < 1) hb = 1;
    snprintf(x->src, sizeof x->src, "derived for %s: the LM head's %.0f ROM bits x %s's head lane cells per ROM bit",
             m->name, lm_bits, t->name);
    if (put(x, "head.lanes.count", (double)hl, e)) return -1;
    snprintf(x->src, sizeof x->src, "derived for %s: %lld head lane cells x %s's LM-ROM banks per head lane cell",
             m->name, (long long)hl, t->name);
    if (put(x, "head.lm_rom.banks", (double)hb, e)) return -1;
    snprintf(x->src, sizeof x->src, "placeholder");
    if (put(x, "head.lm_rom.rows", 1, e) || put(x, "tile.rom.rows", 1, e)) return -1;
    if (!m->tied && put(x, "head.embed_rom.rows", 1, e)) return -1;
    /* KV SRAM left out to measure the rest: 1 byte per tile */
    return put(x, "kv.bytes_per_tile", 1, e);
}

/* Load the tree as it stands into d->chip (errors name the label), place the model on it (x->map) and
 * measure its area. */
static int evaluate(deriv *x, es_err *e)
{
    if (x->have_map) es_map_free(&x->map);
    x->have_map = 0;
    es_chip_free(&x->d->chip);
    if (es_chip_load_cfg(&x->d->chip, &x->d->cfg, x->dir, x->label, NULL, 0, e) ||
        es_map_build(&x->map, &x->d->chip, x->m, NULL, e))
        return -1;
    x->have_map = 1;
    es_area_compute(&x->map, &x->d->area);
    return 0;
}

/* Each ROM's rows, the least that hold its tensors as a ROM image lays them out (the placement
 * table's es_map_rom_need, which its fit check uses too); the banks and partitions are set, so one
 * evaluation gives them. */
static int size_rows(deriv *x, es_err *e)
{
    const es_model *m = x->m;
    const es_chip *dc = &x->d->chip;
    static const char *row_keys[3] = {"tile.rom.rows", "head.embed_rom.rows", "head.lm_rom.rows"};
    for (int k = ES_ROM_TILE; k <= ES_ROM_LM; k++) {
        if (k == ES_ROM_EMBED && m->tied) continue; /* the tied table sits in the LM-head ROM */
        es_rom_need nd;
        es_map_rom_need(&x->map, (es_rom_kind)k, &nd);
        const es_rom_geom *r = k == ES_ROM_TILE ? &dc->store.tile_rom : k == ES_ROM_EMBED ? &dc->store.embed_rom : &dc->store.lm_rom;
        int64_t need = nd.rows > 0 ? nd.rows : 1;
        if (k == ES_ROM_TILE) x->d->rows = need;
        snprintf(x->src, sizeof x->src, "derived for %s: the least rows that hold %s's %lld ROM rows of %lld bits "
                 "(%lld bits, each tensor from a fresh row) over its %lld banks", m->name, nd.what[0] ? nd.what : "it",
                 (long long)nd.stream_rows, (long long)r->row_bits, (long long)nd.bits, (long long)nd.banks);
        if (put(x, row_keys[k], (double)need, e)) return -1;
    }
    return 0;
}

/* The KV (or state) SRAM per tile: the area left to reach `area` in whole KiB, at least one
 * sequence's worth. */
static int size_sram(deriv *x, double area, es_err *e)
{
    const es_model *m = x->m;
    const es_chip *t = x->t, *dc = &x->d->chip;
    es_derived *d = x->d;
    int64_t lpt = t->tile.layers;
    double rest = d->area.total_mm2 - d->area.mm2[ES_AREA_SRAM];
    double sram_mm2 = area - rest;
    double bit_mm2 = dc->process.sram_cell_um2 / dc->process.sram_eff * 1e-6;
    int64_t bytes = sram_mm2 > 0 ? (int64_t)(sram_mm2 / bit_mm2 / 8.0 / (double)d->tiles) / 1024 * 1024 : 0;
    int64_t need = m->ssm_state > 0 ? (es_chip_state_bits(dc, m) * lpt + 7) / 8
                                    : (es_chip_kv_bits_per_pos(dc, m) * dc->kv.slot_context * lpt + 7) / 8;
    const char *what = m->ssm_state > 0 ? "state" : "KV";
    if (bytes < need)
        return es_fail(e, "--area %.1f mm2: %s on %s-derived tiles needs %.1f mm2 before any %s SRAM, and one "
                          "sequence needs %lld bytes per tile; the derived chip exceeds --area", area, m->name,
                       t->name, rest, what, (long long)need);
    d->kv_bytes = bytes;
    snprintf(x->src, sizeof x->src, "derived for %s: the area left to reach %.1f mm2 (%.1f mm2 of ROM, lanes, logic "
             "and I/O) is %.2f mm2 of %s SRAM, over %lld tiles, at %s's bit cell and array efficiency, in whole KiB",
             m->name, area, rest, sram_mm2, what, (long long)d->tiles, t->name);
    return put(x, "kv.bytes_per_tile", (double)bytes, e);
}

/* Whether the derived chip holds the model: the placement table's typed fit (its message when not). */
static int derived_fits(const deriv *x, es_err *e) { return es_map_check(&x->map, e); }

int es_chip_derive(const es_model *m, const es_chip *t, const es_derive_opts *o, es_derived *d, es_err *e)
{
    memset(d, 0, sizeof *d);
    if (t->store.kind != ES_STORE_ROM) /* it sizes the ROMs and the lanes from their bandwidth */
        return es_fail(e, "%s: key 'store.kind': chip derive sizes a chip's ROMs, and this template keeps its weights "
                          "in %s (give a template with store.kind rom)", t->path, es_store_name(t->store.kind));
    deriv x;
    memset(&x, 0, sizeof x);
    x.m = m;
    x.t = t;
    x.d = d;
    snprintf(x.dir, sizeof x.dir, "%s", o->out ? o->out : "");
    char *slash = strrchr(x.dir, '/');
    if (slash) slash[slash == x.dir] = 0; /* "/x.json": the root */
    else snprintf(x.dir, sizeof x.dir, ".");
    snprintf(x.label, sizeof x.label, "the chip derived for %s (%s) from %s (%s)", m->name, m->path, t->name, t->path);
    d->tiles = (m->layers + t->tile.layers - 1) / t->tile.layers;
    if (target_area(t, o->area_mm2, &d->area_mm2, e) || start_tree(&x, o, e) || size_lanes(&x, e) ||
        evaluate(&x, e) || size_rows(&x, e) || evaluate(&x, e) || size_sram(&x, d->area_mm2, e) ||
        evaluate(&x, e) || derived_fits(&x, e)) {
        if (x.have_map) es_map_free(&x.map);
        es_derived_free(d);
        return -1;
    }
    es_map_free(&x.map);
    return 0;
}

void es_derived_free(es_derived *d)
{
    es_chip_free(&d->chip);
    es_cfg_free(&d->cfg);
}
