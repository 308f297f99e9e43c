/* es_map: the placement table (see es_map.h): each tensor's tile, partition,
 * ROM, bits, lane cells, lanes and ROM geometry, each op's unit, the rows each
 * ROM unit needs, and whether the model fits, worked out once. */
#include "es_map.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *es_store_name(es_store s)
{
    return s == ES_STORE_ROM ? "ROM" : s == ES_STORE_SRAM ? "SRAM" : s == ES_STORE_HBM ? "HBM" : "?";
}

const char *es_rom_kind_name(es_rom_kind k)
{
    static const char *names[3] = {"tile ROM", "embedding ROM", "LM-head ROM"};
    return k >= ES_ROM_TILE && k <= ES_ROM_LM ? names[k] : "?";
}

const char *es_rom_kind_key(es_rom_kind k)
{
    static const char *keys[3] = {"tile.rom", "head.embed_rom", "head.lm_rom"};
    return k >= ES_ROM_TILE && k <= ES_ROM_LM ? keys[k] : "?";
}

static const es_rom_geom *rom_of(const es_chip *c, es_rom_kind k)
{
    return k == ES_ROM_TILE ? &c->store.tile_rom : k == ES_ROM_EMBED ? &c->store.embed_rom : &c->store.lm_rom;
}

static int64_t add_sat(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

/* The partition of a tile tensor's role in a partitioned dense tile, or -1 outside the tile's projections. */
static int part_of_role(es_role r)
{
    switch (r) {
    case ES_ROLE_Q: case ES_ROLE_K: case ES_ROLE_V: return ES_PART_QKV;
    case ES_ROLE_O: return ES_PART_O;
    case ES_ROLE_GATE: case ES_ROLE_UP: return ES_PART_GATE_UP;
    case ES_ROLE_DOWN: return ES_PART_DOWN;
    default: return -1;
    }
}

/* Mixture-of-experts models are always partitioned: each routed expert's ROM banks feed lanes of its own, and the
 * attention projections and the router share one more partition, so tokens routed to different experts run in
 * parallel and tokens routed to the same expert queue for it. */
static int n_partitions(const es_chip *c, const es_model *m)
{
    if (m->experts > 0) return 1 + (int)m->experts;
    return c->tile.partitioned ? ES_PART_N : 1;
}

static int partition(const es_chip *c, const es_model *m, const es_tensor *t)
{
    if (m->experts > 0) return t->expert >= 0 ? 1 + t->expert : 0;
    if (!c->tile.partitioned) return 0;
    int g = part_of_role(t->role);
    return g < 0 ? 0 : g;
}

/* The fit's message, as es_fail would write it (cut to its length). */
static void fit_msg(es_fit *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fit_msg(es_fit *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof f->msg, fmt, ap);
    va_end(ap);
}

/* Sizes the simulator multiplies together stay well inside 64 bits: checked in floating point before any integer
 * product is formed. */
static int check_limits(es_map *pm, es_err *e)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    es_fit *f = &pm->fit;
    const double lim = 0x1p62;
    double kvb = 2.0 * (double)m->kv_heads * (double)m->head_dim * (double)c->kv.elem_bits;
    double slot = kvb * (double)c->kv.slot_context * (double)c->tile.layers;
    f->kind = ES_FIT_LIMIT;
    if (kvb > 0x1p36 || slot > lim) {
        f->key = "kv.slot_context";
        fit_msg(f, "%s: keys 'kv.slot_context', 'kv.element_bits', 'tile.layers_per_tile': one "
                 "sequence's KV would be %.4g bits (%.4g bits per position per layer x %lld positions x %d layers), "
                 "beyond the 2^62 bits (2^36 per position) the simulator counts",
                 c->path, slot, kvb, (long long)c->kv.slot_context, c->tile.layers);
        return es_fail(e, "%s", f->msg);
    }
    if ((double)c->kv.bytes * 8.0 > lim) {
        f->key = "kv.bytes_per_tile";
        fit_msg(f, "%s: key 'kv.bytes_per_tile': %lld bytes is beyond the 2^59 bytes the simulator "
                 "counts", c->path, (long long)c->kv.bytes);
        return es_fail(e, "%s", f->msg);
    }
    double state = ((double)m->ssm_inner * (double)m->ssm_state + (double)(m->ssm_conv > 0 ? m->ssm_conv - 1 : 0) *
                    (double)m->ssm_inner) * (double)c->kv.elem_bits * (double)c->tile.layers;
    if (state > lim) {
        fit_msg(f, "%s: one sequence's state would be %.4g bits, beyond the 2^62 the simulator "
                 "counts", m->path, state);
        return es_fail(e, "%s", f->msg);
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const es_tensor *x = &m->tensors[i];
        if ((double)x->rows * (double)x->cols * 64.0 > lim) {
            fit_msg(f, "%s: tensor %s is %lld x %lld, beyond the 2^56 elements the simulator "
                     "counts", m->path, x->name, (long long)x->rows, (long long)x->cols);
            return es_fail(e, "%s", f->msg);
        }
    }
    f->kind = ES_FIT_OK;
    return 0;
}

/* Each tensor's tile, ROM, bits (the chip's formats unless given: from_w), element bits, lane cells, partition
 * and ROM rows. */
static void place_tensors(es_map *pm, int from_w)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    for (int i = 0; i < m->n_tensors; i++) {
        const es_tensor *t = &m->tensors[i];
        es_map_tensor *x = &pm->tensors[i];
        x->store = c->store.kind;
        x->tile = t->layer >= 0 ? t->layer / c->tile.layers : -1;
        x->rom = t->layer >= 0 ? ES_ROM_TILE : (t->role == ES_ROLE_EMBED && !m->tied) ? ES_ROM_EMBED : ES_ROM_LM;
        if (!from_w) {
            x->bits = es_tensor_bits(c, t);
            x->elem_bits = c->store.fmt[es_tensor_fmt_role(t)].bits;
        }
        x->cells = t->rows * t->cols * ((x->elem_bits + c->tile.cell_bits - 1) / c->tile.cell_bits);
        x->rom_rows = x->store == ES_STORE_ROM ? es_rom_tensor_rows(x->bits, rom_of(c, x->rom)->row_bits) : 0;
        if (t->layer >= 0) {
            x->part = partition(c, m, t);
            x->in_part = pm->n_parts > 1 && t->rows != 1 && (m->experts > 0 || part_of_role(t->role) >= 0);
        }
        pm->model_bits += (double)x->bits;
    }
}

/* Each partition's lanes and ROM banks: its share of layer 0's projections' lane cells (every layer is alike), at
 * least one of each; then every tensor's lanes and ROM geometry. */
static int place_lanes(es_map *pm, es_err *e)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    int np = pm->n_parts;
    double *cells = calloc((size_t)np, sizeof *cells), total = 0;
    int64_t *lanes = calloc((size_t)np, sizeof *lanes), *banks = calloc((size_t)np, sizeof *banks);
    if (!cells || !lanes || !banks) {
        free(cells); free(lanes); free(banks);
        return es_fail(e, "out of memory");
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const es_tensor *t = &m->tensors[i];
        if (t->layer != 0 || t->rows == 1) continue;
        if (m->experts == 0 && part_of_role(t->role) < 0) continue;
        double x = (double)pm->tensors[i].cells;
        total += x;
        cells[pm->tensors[i].part] += x;
    }
    for (int g = 0; g < np; g++) {
        lanes[g] = c->tile.lanes;
        banks[g] = c->store.tile_rom.banks;
        if (np == 1) continue;
        double share = total > 0 ? cells[g] / total : 1.0;
        lanes[g] = (int64_t)((double)c->tile.lanes * share);
        banks[g] = (int64_t)((double)c->store.tile_rom.banks * share);
        if (lanes[g] < 1) lanes[g] = 1;
        if (banks[g] < 1) banks[g] = 1;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        es_map_tensor *x = &pm->tensors[i];
        x->geom = *rom_of(c, x->rom);
        if (x->store != ES_STORE_ROM) /* an SRAM or HBM store: its ports, each streaming bits_per_cycle */
            x->geom = (es_rom_geom){c->store.ports, 0, c->store.port_bits, c->store.latency};
        if (x->tile >= 0) {
            x->lanes = lanes[x->part];
            if (x->store == ES_STORE_ROM) x->geom.banks = banks[x->part];
        } else {
            x->lanes = x->rom == ES_ROM_LM ? c->head.lanes : 0; /* the embedding table is looked up, not multiplied */
        }
    }
    free(cells);
    free(lanes);
    free(banks);
    return 0;
}

static void unit_init(es_map_unit *u, es_rom_kind rom, int tile, int part, int64_t banks, const char *what)
{
    u->rom = rom;
    u->tile = tile;
    u->part = part;
    u->banks = banks < 1 ? 1 : banks; /* the loader refuses zero banks; a partition keeps at least one */
    snprintf(u->what, sizeof u->what, "%s", what);
}

/* The ROM units: per tile the whole tile, then each partition; then the embedding table (untied) and the LM head.
 * Each tensor's rows go to its ROM's unit (row_first: where its stream stood) and, held in a partition's banks, to
 * that partition's too. */
static int place_rows(es_map *pm, es_err *e)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    int np = pm->n_parts, per_tile = 1 + (np > 1 ? np : 0);
    static const char *names[ES_PART_N] = {"q, k, v", "o", "gate, up", "down"};
    int has_emb = m->has_embed && !m->tied; /* a slice of a system may hold neither end (es_model_slice) */
    pm->n_units = (int)pm->tiles * per_tile + has_emb + m->has_head;
    pm->units = calloc((size_t)pm->n_units, sizeof *pm->units);
    if (!pm->units) return es_fail(e, "out of memory");
    int64_t *part_banks = calloc((size_t)np, sizeof *part_banks);
    if (!part_banks) return es_fail(e, "out of memory");
    for (int g = 0; g < np; g++) part_banks[g] = c->store.tile_rom.banks;
    for (int i = 0; i < m->n_tensors; i++)
        if (pm->tensors[i].in_part) part_banks[pm->tensors[i].part] = pm->tensors[i].geom.banks;
    for (int64_t t = 0; t < pm->tiles; t++) {
        char what[64];
        es_map_unit *u = &pm->units[t * per_tile];
        snprintf(what, sizeof what, "tile %lld", (long long)t);
        unit_init(u, ES_ROM_TILE, (int)t, -1, c->store.tile_rom.banks, what);
        for (int g = 0; np > 1 && g < np; g++) {
            if (m->experts > 0 && g) snprintf(what, sizeof what, "tile %lld, expert %d", (long long)t, g - 1);
            else if (m->experts > 0) snprintf(what, sizeof what, "tile %lld, attention partition", (long long)t);
            else snprintf(what, sizeof what, "tile %lld, partition %s", (long long)t, names[g]);
            unit_init(u + 1 + g, ES_ROM_TILE, (int)t, g, part_banks[g], what);
        }
    }
    free(part_banks);
    es_map_unit *emb = has_emb ? &pm->units[pm->tiles * per_tile] : NULL;
    es_map_unit *lm = m->has_head ? &pm->units[pm->n_units - 1] : NULL;
    if (emb) unit_init(emb, ES_ROM_EMBED, -1, -1, c->store.embed_rom.banks, "the embedding table");
    if (lm) unit_init(lm, ES_ROM_LM, -1, -1, c->store.lm_rom.banks, "the LM head");
    for (int i = 0; i < m->n_tensors; i++) {
        es_map_tensor *x = &pm->tensors[i];
        es_map_unit *u = x->rom == ES_ROM_TILE ? &pm->units[x->tile * per_tile] : x->rom == ES_ROM_EMBED ? emb : lm;
        x->row_first = u->stream_rows;
        u->stream_rows = add_sat(u->stream_rows, x->rom_rows);
        u->bits = add_sat(u->bits, x->bits);
        if (x->in_part) {
            u += 1 + x->part;
            u->stream_rows = add_sat(u->stream_rows, x->rom_rows);
            u->bits = add_sat(u->bits, x->bits);
        }
        if (pm->from != ES_BITS_CHIP) pm->rom_used_bits += (double)x->rom_rows * (double)x->geom.row_bits;
    }
    for (int k = 0; k < pm->n_units; k++) {
        es_map_unit *u = &pm->units[k];
        u->rows = u->stream_rows / u->banks + (u->stream_rows % u->banks != 0);
    }
    return 0;
}

/* Each op's tile, resource, partition and lanes. */
static void place_ops(es_map *pm)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    for (int i = 0; i < m->n_ops; i++) {
        const es_op *op = &m->ops[i];
        es_map_op *o = &pm->ops[i];
        o->tile = op->layer >= 0 ? op->layer / c->tile.layers : -1;
        o->res = op->res;
        if (op->res != ES_RES_LANES) continue;
        if (op->kind == ES_OP_EXPERTS) {
            o->part = -1;
            continue;
        }
        const es_map_tensor *x = &pm->tensors[op->tensor];
        o->part = x->tile >= 0 ? x->part : 0;
        o->lanes = x->lanes;
    }
}

/* The unit of a ROM that needs the most rows per bank (the first on a tie), or NULL when the ROM holds nothing. */
static const es_map_unit *most_rows(const es_map *pm, es_rom_kind kind)
{
    const es_map_unit *best = NULL;
    for (int k = 0; k < pm->n_units; k++) {
        const es_map_unit *u = &pm->units[k];
        if (u->rom != kind || u->stream_rows == 0 || (best && u->rows <= best->rows)) continue;
        best = u;
    }
    return best;
}

void es_map_rom_need(const es_map *pm, es_rom_kind kind, es_rom_need *n)
{
    memset(n, 0, sizeof *n);
    const es_map_unit *u = most_rows(pm, kind);
    if (!u) return;
    n->rows = u->rows;
    n->stream_rows = u->stream_rows;
    n->bits = u->bits;
    n->banks = u->banks;
    snprintf(n->what, sizeof n->what, "%s", u->what);
}

/* An SRAM or HBM store holds its weights: with tile scope each tile's store its tile's tensors and the head's its
 * own (the embedding table, the final norm, the LM head), else the one store every tensor. A mixture of experts is
 * refused: its expert partitions' share of a store's ports is not modelled. Returns 1 when it fails (f filled). */
static int check_store(es_map *pm)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    const es_store_cfg *s = &c->store;
    es_fit *f = &pm->fit;
    if (s->kind == ES_STORE_ROM) return 0;
    if (m->experts > 0) {
        *f = (es_fit){ES_FIT_STORE, "store.kind", ES_ROM_TILE, -1, -1, "a mixture of experts", 1, 0, ""};
        fit_msg(f, "%s: key 'store.kind': %s is a mixture of experts, whose expert partitions need store.kind rom "
                 "(their share of an %s store's ports is not modelled)", c->path, m->path, es_store_name(s->kind));
        return 1;
    }
    int64_t have = s->capacity_bytes * 8, need = 0, head = 0;
    int tile = -1;
    if (s->chip_scope) {
        need = (int64_t)pm->model_bits;
    } else {
        for (int i = 0; i < m->n_tensors; i++)
            if (pm->tensors[i].tile < 0) head = add_sat(head, pm->tensors[i].bits);
        need = head;
        for (int k = 0; k < pm->n_units; k++) { /* each tile's whole unit: its tensors' bits */
            const es_map_unit *u = &pm->units[k];
            if (u->rom == ES_ROM_TILE && u->part < 0 && u->bits > need) need = u->bits, tile = u->tile;
        }
    }
    if (need <= have) return 0;
    *f = (es_fit){ES_FIT_STORE, "store.capacity_bytes", ES_ROM_TILE, tile, -1, "", need, have, ""};
    if (s->chip_scope) snprintf(f->unit, sizeof f->unit, "the model");
    else if (tile >= 0) snprintf(f->unit, sizeof f->unit, "tile %d", tile);
    else snprintf(f->unit, sizeof f->unit, "the head");
    fit_msg(f, "%s: key 'store.capacity_bytes': the %s store cannot hold the model: %s needs %lld bits (%.0f bytes) "
             "of weights, the store holds %lld bytes%s", c->path, es_store_name(s->kind), f->unit, (long long)need,
             (double)need / 8.0, (long long)s->capacity_bytes, s->chip_scope ? "" : " per tile");
    return 1;
}

/* The fit: every ROM holds its units, a state-space model has a scan engine, one sequence's state or KV slot fits a
 * tile's SRAM. */
static void check_fit(es_map *pm)
{
    static const char *rows_keys[3] = {"tile.rom.rows", "head.embed_rom.rows", "head.lm_rom.rows"};
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    es_fit *f = &pm->fit;
    memset(f, 0, sizeof *f);
    for (int k = ES_ROM_TILE; k <= ES_ROM_LM; k++) {
        const es_rom_geom *r = rom_of(c, (es_rom_kind)k);
        const es_map_unit *u = most_rows(pm, (es_rom_kind)k);
        if (!u || u->rows <= r->rows) continue;
        *f = (es_fit){ES_FIT_ROM, rows_keys[k], (es_rom_kind)k, u->tile, u->part, "", u->rows, r->rows, ""};
        snprintf(f->unit, sizeof f->unit, "%s", u->what);
        fit_msg(f, "%s: key '%s.rows': ROM cannot hold the model: %s needs %lld rows per bank (%lld "
                 "bits in %lld rows of %lld bits, each tensor from a fresh row, over %lld banks), the ROM has %lld",
                 c->path, es_rom_kind_key((es_rom_kind)k), u->what, (long long)u->rows, (long long)u->bits,
                 (long long)u->stream_rows, (long long)r->row_bits, (long long)u->banks, (long long)r->rows);
        return;
    }
    if (check_store(pm)) return;
    int64_t have = c->kv.bytes * 8;
    if (m->ssm_state > 0 && c->tile.scan_width <= 0) {
        *f = (es_fit){ES_FIT_SCAN, "tile.scan.elems_per_cycle", ES_ROM_TILE, -1, -1, "the scan engine", 1, 0, ""};
        fit_msg(f, "%s: key 'tile.scan.elems_per_cycle': %s is a state-space model and needs a scan "
                 "engine (tile.scan.elems_per_cycle and tile.scan.latency_cycles)", c->path, m->path);
    } else if (m->ssm_state > 0 && es_chip_kv_slots(c, m) < 1) {
        *f = (es_fit){ES_FIT_STATE, "kv.bytes_per_tile", ES_ROM_TILE, -1, -1, "a sequence's state",
                      es_chip_state_bits(c, m) * c->tile.layers, have, ""};
        fit_msg(f, "%s: key 'kv.bytes_per_tile': %lld bytes per tile cannot hold one sequence's "
                 "state (%lld bits per layer, %d layers per tile)", c->path, (long long)c->kv.bytes,
                 (long long)es_chip_state_bits(c, m), c->tile.layers);
    } else if (m->ssm_state <= 0 && es_chip_kv_slots(c, m) < 1) {
        *f = (es_fit){ES_FIT_KV, "kv.bytes_per_tile", ES_ROM_TILE, -1, -1, "a KV slot",
                      es_chip_kv_bits_per_pos(c, m) * c->kv.slot_context * c->tile.layers, have, ""};
        fit_msg(f, "%s: key 'kv.bytes_per_tile': KV SRAM of %lld bytes per tile cannot hold one "
                 "slot of kv.slot_context %lld positions (%lld bits per position per layer, %d layers per tile)",
                 c->path, (long long)c->kv.bytes, (long long)c->kv.slot_context,
                 (long long)es_chip_kv_bits_per_pos(c, m), c->tile.layers);
    }
}

int es_map_build(es_map *pm, const es_chip *c, const es_model *m, const es_map_weights *w, es_err *e)
{
    memset(pm, 0, sizeof *pm);
    pm->chip = c;
    pm->model = m;
    pm->from = w ? w->from : ES_BITS_CHIP;
    pm->tiles = es_chip_tiles(c, m);
    pm->n_parts = n_partitions(c, m);
    pm->tensors = calloc((size_t)m->n_tensors + 1, sizeof *pm->tensors);
    pm->ops = calloc((size_t)m->n_ops + 1, sizeof *pm->ops);
    if (!pm->tensors || !pm->ops) {
        es_map_free(pm);
        return es_fail(e, "out of memory");
    }
    for (int i = 0; w && i < m->n_tensors; i++)
        if (w->bits(w->arg, i, &pm->tensors[i].bits, &pm->tensors[i].elem_bits, e)) {
            es_map_free(pm);
            return -1;
        }
    if (check_limits(pm, e)) {
        es_map_free(pm);
        return -1;
    }
    place_tensors(pm, w != NULL);
    if (place_lanes(pm, e) || place_rows(pm, e)) {
        es_map_free(pm);
        return -1;
    }
    if (w && w->image_bits > 0) pm->rom_used_bits = w->image_bits;
    place_ops(pm);
    check_fit(pm);
    pm->kv_bits = c->kv.bytes * 8;
    pm->kv_positions = es_chip_kv_positions(c, m);
    pm->kv_slots = es_chip_kv_slots(c, m);
    pm->an_adapter = -1;
    return 0;
}

void es_map_free(es_map *pm)
{
    free(pm->tensors);
    free(pm->ops);
    free(pm->units);
    free(pm->adapters);
    free(pm->lora);
    pm->adapters = NULL;
    pm->lora = NULL;
    pm->n_adapters = 0;
    pm->tensors = NULL;
    pm->ops = NULL;
    pm->units = NULL;
    pm->n_units = 0;
}

int es_map_check(const es_map *pm, es_err *e)
{
    if (pm->fit.kind == ES_FIT_OK) return 0;
    return es_fail(e, "%s", pm->fit.msg);
}

const es_map_unit *es_map_unit_of(const es_map *pm, es_rom_kind rom, int tile, int part)
{
    for (int k = 0; k < pm->n_units; k++)
        if (pm->units[k].rom == rom && pm->units[k].tile == tile && pm->units[k].part == part) return &pm->units[k];
    return NULL;
}

int es_chip_rom_need(const es_chip *c, const es_model *m, es_rom_kind kind, es_rom_need *n, es_err *e)
{
    es_map pm;
    if (es_map_build(&pm, c, m, NULL, e)) return -1;
    es_map_rom_need(&pm, kind, n);
    es_map_free(&pm);
    return 0;
}

int es_chip_check_fit(const es_chip *c, const es_model *m, es_err *e)
{
    es_map pm;
    if (es_map_build(&pm, c, m, NULL, e)) return -1;
    int rc = es_map_check(&pm, e);
    es_map_free(&pm);
    return rc;
}

/* ---- a LoRA adapter in the KV SRAM ---- */

static const struct { const char *name; es_role role; } adapter_roles[] = {
    {"q", ES_ROLE_Q}, {"k", ES_ROLE_K}, {"v", ES_ROLE_V}, {"o", ES_ROLE_O},
    {"gate", ES_ROLE_GATE}, {"up", ES_ROLE_UP}, {"down", ES_ROLE_DOWN}};
enum { N_ADAPTER_ROLES = (int)(sizeof adapter_roles / sizeof adapter_roles[0]) };

int es_adapter_roles_parse(const char *list, unsigned *roles, es_err *e)
{
    *roles = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int k = 0;
        while (k < N_ADAPTER_ROLES && (strlen(adapter_roles[k].name) != len || strncmp(adapter_roles[k].name, p, len)))
            k++;
        if (k == N_ADAPTER_ROLES)
            return es_fail(e, "--adapter-roles: unknown role '%.*s' in '%s': expected a comma-separated list of q, k, "
                              "v, o, gate, up, down", (int)len, p, list);
        *roles |= 1u << adapter_roles[k].role;
        if (!end) return 0;
        p = end + 1;
    }
}

const char *es_adapter_roles_text(unsigned roles, char *buf, size_t n)
{
    buf[0] = 0;
    for (int k = 0; k < N_ADAPTER_ROLES; k++)
        if (roles & (1u << adapter_roles[k].role)) {
            size_t l = strlen(buf);
            snprintf(buf + l, n - l, "%s%s", l ? "," : "", adapter_roles[k].name);
        }
    return buf;
}

/* Bits of a matrix of `elems` elements of elem_bits in an SRAM of word_bits words, from a fresh word. */
static int64_t sram_matrix_bits(int64_t elems, int elem_bits, int64_t word_bits)
{
    int64_t bits = elems * elem_bits;
    return (bits + word_bits - 1) / word_bits * word_bits;
}

/* a's checks that need no placement: rank, roles the model has, a kind of model and chip that can hold it */
static int adapter_usable(const es_map *pm, const es_adapter_spec *a, es_err *e)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    char rl[64];
    es_adapter_roles_text(a->roles, rl, sizeof rl);
    if (a->rank < 1) return es_fail(e, "--adapter-rank: the rank must be at least 1, got %d", a->rank);
    if (!a->roles) return es_fail(e, "--adapter-roles: no roles given (expected q, k, v, o, gate, up or down)");
    if (m->ssm_state > 0) return es_fail(e, "adapter on %s: a state-space model has no q, k, v, o projections", m->path);
    if (c->kv.in_store)
        return es_fail(e, "adapter: %s keeps its KV cache in the weight store (key 'kv.in_store'); an adapter lives in "
                          "a tile's KV SRAM", c->path);
    for (int k = 0; k < N_ADAPTER_ROLES; k++) {
        es_role r = adapter_roles[k].role;
        if (!(a->roles & (1u << r))) continue;
        if (m->experts > 0 && (r == ES_ROLE_GATE || r == ES_ROLE_UP || r == ES_ROLE_DOWN))
            return es_fail(e, "--adapter-roles %s: %s routes its feed-forward to experts; adapters on experts are not "
                              "modelled (use q, k, v, o)", rl, m->path);
        if (!es_model_tensor(m, 0, r))
            return es_fail(e, "--adapter-roles %s: %s has no %s projection", rl, m->path, adapter_roles[k].name);
    }
    return 0;
}

/* Adapter a's rows in pm->lora[k] and its own figures in *ad; per_tile gains its bits in each tile (mine: scratch of
 * pm->tiles). */
static void place_adapter(es_map *pm, const es_adapter_spec *a, int k, es_map_adapter *ad, int64_t *per_tile,
                          int64_t *mine)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    memset(ad, 0, sizeof *ad);
    ad->rank = a->rank;
    ad->roles = a->roles;
    ad->alpha = a->alpha;
    ad->scale = a->alpha / a->rank;
    ad->elem_bits = c->kv.elem_bits;
    memset(mine, 0, (size_t)pm->tiles * sizeof *mine);
    for (int i = 0; i < m->n_tensors; i++) {
        const es_tensor *t = &m->tensors[i];
        const es_map_tensor *x = &pm->tensors[i];
        if (t->layer < 0 || t->expert >= 0 || !(a->roles & (1u << t->role)) || x->tile < 0) continue;
        if (a->tensors && !a->tensors[i]) continue; /* a file adapting only some layers */
        es_map_lora *l = &pm->lora[(int64_t)k * m->n_tensors + i];
        l->bits = sram_matrix_bits((int64_t)a->rank * t->cols, c->kv.elem_bits, c->kv.word_bits) +
                  sram_matrix_bits(t->rows * a->rank, c->kv.elem_bits, c->kv.word_bits);
        l->macs = (int64_t)a->rank * (t->cols + t->rows);
        per_tile[x->tile] += l->bits;
        mine[x->tile] += l->bits;
        ad->total_bits += l->bits;
        ad->tensors++;
    }
    for (int64_t j = 0; j < pm->tiles; j++)
        if (mine[j] > ad->tile_bits) ad->tile_bits = mine[j];
}

int es_map_set_adapters(es_map *pm, const es_adapter_spec *a, int n, es_err *e)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    if (n < 1 || pm->n_adapters) return es_fail(e, "adapters: %d given to a table holding %d", n, pm->n_adapters);
    for (int k = 0; k < n; k++)
        if (adapter_usable(pm, &a[k], e)) return -1;
    es_map_adapter *ad = &pm->adapter;
    pm->adapters = calloc((size_t)n, sizeof *pm->adapters);
    pm->lora = calloc((size_t)n * (size_t)m->n_tensors + 1, sizeof *pm->lora);
    int64_t *per_tile = calloc(2 * ((size_t)pm->tiles + 1), sizeof *per_tile), *mine = per_tile + pm->tiles + 1;
    if (!pm->adapters || !pm->lora || !per_tile) {
        free(per_tile);
        return es_fail(e, "out of memory");
    }
    pm->n_adapters = n;
    pm->an_adapter = 0;
    memset(ad, 0, sizeof *ad);
    for (int k = 0; k < n; k++) {
        place_adapter(pm, &a[k], k, &pm->adapters[k], per_tile, mine);
        ad->total_bits += pm->adapters[k].total_bits;
        ad->tensors += pm->adapters[k].tensors;
    }
    ad->rank = pm->adapters[0].rank; /* adapter 0's; each one's in pm->adapters */
    ad->roles = pm->adapters[0].roles;
    ad->alpha = pm->adapters[0].alpha;
    ad->scale = pm->adapters[0].scale;
    ad->elem_bits = c->kv.elem_bits;
    ad->kv_slots_without = pm->kv_slots;
    ad->kv_positions_without = pm->kv_positions;
    int most = 0;
    for (int64_t k = 0; k < pm->tiles; k++)
        if (per_tile[k] > per_tile[most]) most = (int)k;
    ad->tile_bits = per_tile[most];
    free(per_tile);
    int64_t have = c->kv.bytes * 8;
    int64_t slot = es_chip_kv_bits_per_pos(c, m) * c->kv.slot_context * c->tile.layers;
    pm->kv_bits = have > ad->tile_bits ? have - ad->tile_bits : 0;
    pm->kv_positions = pm->kv_bits / (es_chip_kv_bits_per_pos(c, m) * c->tile.layers);
    pm->kv_slots = pm->kv_bits / slot;
    if (pm->kv_slots >= 1 || pm->fit.kind != ES_FIT_OK) return 0;
    es_fit *f = &pm->fit;
    char rl[64], who[96];
    if (n == 1) snprintf(who, sizeof who, "the adapter (rank %d on %s) takes", a->rank,
                         es_adapter_roles_text(a->roles, rl, sizeof rl));
    else snprintf(who, sizeof who, "the %d adapters take", n);
    *f = (es_fit){ES_FIT_KV, "kv.bytes_per_tile", ES_ROM_TILE, most, -1, "a KV slot", ad->tile_bits + slot, have, ""};
    fit_msg(f, "%s: key 'kv.bytes_per_tile': %s %lld bytes of tile %d's KV SRAM of %lld "
             "bytes, leaving %lld bytes, less than one KV slot of %lld bytes (kv.slot_context %lld positions x %lld "
             "bits per position per layer x %d layers per tile)",
             c->path, who, (long long)(ad->tile_bits / 8), most,
             (long long)c->kv.bytes, (long long)(pm->kv_bits / 8), (long long)(slot / 8), (long long)c->kv.slot_context,
             (long long)es_chip_kv_bits_per_pos(c, m), c->tile.layers);
    return 0;
}
