/* es_derive: a chip configuration for a model from a template chip (see es_derive.h). The tree is
 * built from the template's, each derived key set with its source, and checked by loading it from
 * memory after each step that the next one measures: the lanes and banks, then the ROM rows that
 * hold the model, then the KV or state SRAM that fills the area left. */
#define _POSIX_C_SOURCE 200809L
#include "es_derive.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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
    if (bytes < need) {
        d->area_short = 1;
        return es_fail(e, "--area %.1f mm2: %s on %s-derived tiles needs %.1f mm2 before any %s SRAM, and one "
                          "sequence needs %lld bytes per tile; the derived chip exceeds --area", area, m->name,
                       t->name, rest, what, (long long)need);
    }
    d->kv_bytes = bytes;
    snprintf(x->src, sizeof x->src, "derived for %s: the area left to reach %.1f mm2 (%.1f mm2 of ROM, lanes, logic "
             "and I/O) is %.2f mm2 of %s SRAM, over %lld tiles, at %s's bit cell and array efficiency, in whole KiB",
             m->name, area, rest, sram_mm2, what, (long long)d->tiles, t->name);
    return put(x, "kv.bytes_per_tile", (double)bytes, e);
}

/* Whether the derived chip holds the model: the placement table's typed fit (its message when not). */
static int derived_fits(const deriv *x, es_err *e) { return es_map_check(&x->map, e); }

int es_derive_default_area(const es_chip *t, double *mm2, es_err *e) { return target_area(t, 0, mm2, e); }

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

/* ---- chip derive --split (es_chip_split) ---- */

typedef struct splitter {
    const es_model *m;
    const es_chip *t;
    es_split *s;
    char dir[1024]; /* the parts' folder */
} splitter;

/* Derive the chip for layers [first, last] of the model (with the embedding table and the head as asked) into d:
 * 0; 1 when the area is too small for it (d and e hold nothing); -1 on another error (e). */
static int derive_slice(const splitter *x, int first, int last, int embed, int head, es_derived *d, es_err *e)
{
    es_model sm;
    if (es_model_slice(x->m, first, last, embed, head, &sm, e)) return -1;
    if (x->s->ep > 1 && !embed && !head) { /* a chip of an expert-parallel stage: its share of the experts */
        es_model ex;
        int rc = es_model_expert_slice(&sm, 0, x->m->experts / x->s->ep - 1, &ex, e);
        es_model_free(&sm);
        if (rc) return -1;
        sm = ex;
    }
    char out[1200], name[96];
    snprintf(name, sizeof name, "%s-part", x->s->name); /* each part is renamed once they are told apart */
    snprintf(out, sizeof out, "%s/%s.json", x->dir, name);
    es_derive_opts o = {x->s->area_mm2, name, out};
    int rc = es_chip_derive(&sm, x->t, &o, d, e);
    es_model_free(&sm);
    return rc && d->area_short ? 1 : rc;
}

/* The most layers (0..L) a chip of one kind holds: the first (embed), a middle one, the last (head); the fit only
 * gets harder with more layers, so a bisection finds it. -1 on an error other than the area's. */
static int layer_cap(const splitter *x, int embed, int head, int *cap, es_err *e)
{
    int lo = 0, hi = (int)x->m->layers, L = hi; /* lo fits (0: none), hi + 1 does not */
    while (lo < hi) {
        int k = (lo + hi + 1) / 2, first = head && !embed ? L - k : 0;
        es_derived d;
        int rc = derive_slice(x, first, first + k - 1, embed, head, &d, e);
        if (rc < 0) return -1;
        if (rc == 0) es_derived_free(&d);
        if (rc == 0) lo = k;
        else hi = k - 1;
    }
    *cap = lo;
    return 0;
}

/* Layers per chip for n >= 2 chips under the caps (es_chip_split's rule): 0, or -1 when the caps cannot hold them. */
static int spread(const es_split *s, int L, int n, int *count)
{
    int h, sum = 0;
    for (h = 1; h <= L; h++) {
        sum = 0;
        for (int i = 0; i < n; i++) {
            int cap = i == 0 ? s->cap_first : i == n - 1 ? s->cap_last : s->cap_mid;
            count[i] = cap < h ? cap : h;
            sum += count[i];
        }
        if (sum >= L) break;
    }
    if (sum < L) return -1;
    /* the surplus back one layer at a time from the chip nearest its cap (the least area left for KV SRAM), ties
       going to the last (which also runs the LM head), the first, then the middle ones from the back */
    for (; sum > L; sum--) {
        int best = -1, best_room = 0;
        for (int k = 0; k < n; k++) {
            int i = k == 0 ? n - 1 : k == 1 ? 0 : n - k;
            int room = (i == 0 ? s->cap_first : i == n - 1 ? s->cap_last : s->cap_mid) - count[i];
            if (count[i] > 1 && (best < 0 || room < best_room)) best = i, best_room = room;
        }
        if (best < 0) return -1;
        count[best]--;
    }
    return sum == L ? 0 : -1;
}

/* Free the parts derived so far. */
static void drop_parts(es_split *s)
{
    for (int i = 0; i < s->n_parts; i++) es_derived_free(&s->parts[i]);
    s->n_parts = 0;
}

/* Derive each chip of an n-chip split: 0; 1 when a chip's slice does not reach the area after all (its layers
 * differ from those the caps were measured on); -1 on another error. Chips whose derived trees are the same are
 * one part. */
static int derive_chips(const splitter *x, int n, const int *count, es_err *e)
{
    es_split *s = x->s;
    int first = 0, L = (int)x->m->layers, k = 0;
    for (int i = 0; i < n; i++) {
        es_split_chip *c = &s->chips[k];
        c->first = first;
        c->last = first + count[i] - 1;
        c->embed = i == 0;
        c->head = i == n - 1;
        c->expert_first = c->expert_last = -1;
        first = c->last + 1;
        int rc = derive_slice(x, c->first, c->last, c->embed, c->head, &s->parts[s->n_parts], e);
        if (rc) return rc;
        c->part = s->n_parts;
        for (int p = 0; p < s->n_parts; p++)
            if (cJSON_Compare(s->parts[p].cfg.root, s->parts[s->n_parts].cfg.root, 1)) {
                c->part = p;
                break;
            }
        if (c->part == s->n_parts) s->n_parts++;
        else es_derived_free(&s->parts[s->n_parts]);
        int share = (int)x->m->experts / s->ep, stage = s->ep > 1 && !c->embed && !c->head ? s->ep : 1;
        for (int j = 0; j < stage; j++) { /* an expert-parallel stage: its chips alike, each its share */
            s->chips[k + j] = *c;
            if (stage > 1) s->chips[k + j].expert_first = j * share, s->chips[k + j].expert_last = (j + 1) * share - 1;
        }
        k += stage;
    }
    s->n_chips = k;
    return first == L ? 0 : es_fail(e, "%s: the split covers %d of its %d layers", x->m->name, first, L);
}

/* The number at key in a tree, and its source (or "not given"). */
static const char *key_source(const es_cfg *c, const char *key)
{
    const cJSON *n = c->root;
    char part[128];
    for (const char *k = key; n && *k;) {
        size_t len = strcspn(k, ".");
        snprintf(part, sizeof part, "%.*s", (int)len, k);
        n = cJSON_GetObjectItemCaseSensitive(n, part);
        k += len + (k[len] == '.');
    }
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(n, "source");
    return cJSON_IsString(src) ? src->valuestring : "not given";
}

/* The card link: the template's host link, each figure as given when o gives it. */
static void split_link(es_split *s, const es_chip *t, const es_split_opts *o)
{
    if (o->link_bits_per_s >= 0) {
        s->link_bits_per_s = o->link_bits_per_s;
        snprintf(s->link_src[0], sizeof s->link_src[0], "given: chip derive --split --link-bw %.6g", o->link_bits_per_s);
    } else {
        s->link_bits_per_s = t->host.bw * 8.0;
        snprintf(s->link_src[0], sizeof s->link_src[0], "derived: %s's host link, host.bandwidth_bytes_per_s %.6g x 8 "
                 "bits (its source: %.700s)", t->name, t->host.bw, key_source(&t->cfg, "host.bandwidth_bytes_per_s"));
    }
    if (o->link_latency_ns >= 0) {
        s->link_latency_ns = o->link_latency_ns;
        snprintf(s->link_src[1], sizeof s->link_src[1], "given: chip derive --split --link-latency-ns %.6g", o->link_latency_ns);
    } else {
        s->link_latency_ns = t->host.latency_ns;
        snprintf(s->link_src[1], sizeof s->link_src[1], "%s's host link, host.latency_ns (its source: %.800s)", t->name,
                 key_source(&t->cfg, "host.latency_ns"));
    }
    if (o->link_pj_per_bit >= 0) {
        s->link_pj_per_bit = o->link_pj_per_bit;
        snprintf(s->link_src[2], sizeof s->link_src[2], "given: chip derive --split --link-pj-per-bit %.6g", o->link_pj_per_bit);
    } else {
        s->link_pj_per_bit = t->process.e_host_bit * 1e12;
        snprintf(s->link_src[2], sizeof s->link_src[2], "%s's host link, its process's energy.host_pj_per_bit (its "
                 "source: %.800s)", t->name, key_source(&t->proc, "energy.host_pj_per_bit"));
    }
}

/* Name each part NAME-partK and describe the chips it serves. */
static int name_parts(const splitter *x, es_err *e)
{
    es_split *s = x->s;
    for (int p = 0; p < s->n_parts; p++) {
        es_derived *d = &s->parts[p];
        snprintf(d->name, sizeof d->name, "%.60s-part%d", s->name, p + 1);
        snprintf(d->chip.name, sizeof d->chip.name, "%.63s", d->name);
        char desc[2048], which[512] = "";
        int k = 0;
        const es_split_chip *c0 = NULL;
        for (int i = 0; i < s->n_chips; i++)
            if (s->chips[i].part == p) {
                if (!c0) c0 = &s->chips[i];
                size_t at = strlen(which);
                if (s->chips[i].expert_first >= 0)
                    snprintf(which + at, sizeof which - at, "%schips[%d] (layers %d-%d, experts %d-%d)", k++ ? ", " : "",
                             i, s->chips[i].first, s->chips[i].last, s->chips[i].expert_first, s->chips[i].expert_last);
                else
                    snprintf(which + at, sizeof which - at, "%schips[%d] (layers %d-%d)", k++ ? ", " : "", i,
                             s->chips[i].first, s->chips[i].last);
            }
        if (snprintf(desc, sizeof desc, "\"A chip of the system %s derived from %s by etchsim chip derive --split: %d "
                 "layers of %s%s%s, at %s's process, clock, unit widths and weight formats, the area left in KV or "
                 "state SRAM; serves %s. Each derived number's source says how.\"", s->name, x->t->name,
                 c0->last - c0->first + 1, x->m->name, c0->embed ? " with the embedding table" : "",
                 c0->head ? " with the final norm and LM head" : "", x->t->name, which) >= (int)sizeof desc)
            desc[sizeof desc - 2] = '"'; /* cut short: still one JSON string */
        if (d->chip.card.power_limit_w > 0 && c0->expert_first >= 0) { /* a chip of an expert-parallel stage */
            char src[512];
            snprintf(src, sizeof src, "chip derive --split: %s's card.power_limit_w of %.6g W is not carried over to a "
                     "chip of an expert-parallel stage: the stage's chips book each other's expert lanes in one count "
                     "of cycles, so a clock of its own (its governor's) is not modelled (etchsim run refuses it); each "
                     "chip's watts in a run show whether it would bind", x->t->name, d->chip.card.power_limit_w);
            if (es_cfg_set_sourced(&d->cfg, "card.power_limit_w", "0", src, e)) return -1;
            d->chip.card.power_limit_w = 0;
        }
        char quoted[96];
        snprintf(quoted, sizeof quoted, "\"%s\"", d->name);
        if (es_cfg_set(&d->cfg, "name", quoted, e)) return -1;
        if (es_cfg_has(&d->cfg, "description") && es_cfg_set(&d->cfg, "description", desc, e)) return -1;
    }
    return 0;
}

/* The caps of each kind of chip; the one chip when the whole model fits one (*one = 1). */
static int split_caps(const splitter *x, int *one, es_err *e)
{
    es_split *s = x->s;
    int L = (int)x->m->layers, rc;
    es_derived d;
    *one = 0;
    if ((rc = derive_slice(x, 0, L - 1, 1, 1, &d, e)) < 0) return -1;
    if (rc == 0) {
        es_derived_free(&d);
        *one = 1;
        return 0;
    }
    if (layer_cap(x, 1, 0, &s->cap_first, e) || layer_cap(x, 0, 1, &s->cap_last, e)) return -1;
    if (!s->cap_first || !s->cap_last) {
        int head = !s->cap_last;
        es_err why;
        if (derive_slice(x, head ? L - 1 : 0, head ? L - 1 : 0, !head, head, &d, &why) == 0) es_derived_free(&d);
        return es_fail(e, "chip derive --split: a chip of %.1f mm2 derived from %s cannot hold even one layer of %s "
                          "with its %s (%s); give a larger --area", s->area_mm2, x->t->name, x->m->name,
                       head ? "final norm and LM head" : "embedding table", why.msg);
    }
    return L > 2 ? layer_cap(x, 0, 0, &s->cap_mid, e) : 0;
}

int es_chip_split(const es_model *m, const es_chip *t, const es_split_opts *o, es_split *s, es_err *e)
{
    memset(s, 0, sizeof *s);
    splitter x = {m, t, s, ""};
    snprintf(x.dir, sizeof x.dir, "%s", o->dir ? o->dir : ".");
    snprintf(s->name, sizeof s->name, "%.40s-%.38s", m->name, t->name);
    if (o->name && strlen(o->name) > 60)
        return es_fail(e, "chip derive --split: --name %s: at most 60 characters (its chips are NAME-partK)", o->name);
    if (o->name) snprintf(s->name, sizeof s->name, "%s", o->name);
    s->area_mm2 = o->area_mm2;
    s->ep = o->ep > 1 ? o->ep : 1;
    if (s->ep > 1 && (m->experts <= 1 || m->experts % s->ep))
        return es_fail(e, "chip derive --split --expert-parallel %d: %s has %lld experts a layer, which %d chips cannot "
                          "split evenly", s->ep, m->name, (long long)m->experts, s->ep);
    int L = (int)m->layers, one = 0, rc = -1;
    s->parts = calloc((size_t)L, sizeof *s->parts);
    s->chips = calloc((size_t)L * (size_t)s->ep, sizeof *s->chips);
    int *count = calloc((size_t)L, sizeof *count);
    if (!s->parts || !s->chips || !count) {
        es_fail(e, "out of memory splitting %s", m->name);
        goto out;
    }
    if ((s->area_mm2 <= 0 && es_derive_default_area(t, &s->area_mm2, e)) || split_caps(&x, &one, e)) goto out;
    for (int n = one ? 1 : 2; n <= L && rc != 0; n++) {
        if (n == 1) count[0] = L;
        else if (spread(s, L, n, count)) continue;
        drop_parts(s);
        if ((rc = derive_chips(&x, n, count, e)) < 0) goto out;
    }
    if (rc) {
        es_fail(e, "chip derive --split: %s does not fit %d chips of %.1f mm2 derived from %s, one layer each",
                m->name, L, s->area_mm2, t->name);
        goto out;
    }
    split_link(s, t, o);
    rc = name_parts(&x, e);
out:
    free(count);
    if (rc) es_split_free(s);
    return rc ? -1 : 0;
}

void es_split_free(es_split *s)
{
    drop_parts(s);
    free(s->parts);
    free(s->chips);
    memset(s, 0, sizeof *s);
}
