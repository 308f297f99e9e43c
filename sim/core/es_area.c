/* es_area: area = ROM + SRAM + logic + I/O from the chip's geometry and the
 * process densities; leakage = area x leakage density per component; and
 * dynamic energy = events x energy per event (see es_area.h). */
#include "es_area.h"
#include <string.h>

static const char *names[ES_AREA_N] = {"rom", "kv_sram", "lanes", "vector", "attention",
                                       "sampler", "control", "io", "weight_sram"};

const char *es_area_name(int i) { return (i >= 0 && i < ES_AREA_N) ? names[i] : "?"; }

void es_area_compute(const es_map *pm, es_area *a)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    memset(a, 0, sizeof *a);
    double tiles = (double)pm->tiles;
    /* the head unit (embedding lookup, final norm, LM head, sampler): a chip of a system may hold one end, both or
       neither (es_model_slice) */
    double ends = m->has_embed || m->has_head ? 1.0 : 0.0;
    double tile_rom = (double)es_rom_bits(&c->store.tile_rom);
    double head_rom = m->has_head ? (double)es_rom_bits(&c->store.lm_rom) : 0.0;
    double emb_rom = m->tied || !m->has_embed ? 0.0 : (double)es_rom_bits(&c->store.embed_rom);
    a->rom_bits = pm->rom_used_bits > 0 ? pm->rom_used_bits : tiles * tile_rom + head_rom + emb_rom;
    if (c->store.kind != ES_STORE_ROM) a->rom_bits = 0; /* the weights are in SRAM or HBM: no ROM */
    a->model_bits = pm->model_bits;
    /* ROM: one select transistor per cell of cell_bits bits */
    double cells = a->rom_bits / c->tile.cell_bits;
    a->mm2[ES_AREA_ROM] = cells * c->process.rom_cell_um2 / c->process.rom_eff * 1e-6;
    a->tr[ES_AREA_ROM] = cells;
    /* KV SRAM */
    a->sram_bits = c->kv.in_store ? 0.0 : tiles * (double)c->kv.bytes * 8.0; /* kv.in_store: in the HBM */
    a->mm2[ES_AREA_SRAM] = a->sram_bits * c->process.sram_cell_um2 / c->process.sram_eff * 1e-6;
    a->tr[ES_AREA_SRAM] = a->sram_bits * c->process.sram_tr_bit;
    /* an SRAM weight store: its capacity in the process's bit cells, per tile and the head's with tile scope */
    if (c->store.kind == ES_STORE_SRAM)
        a->store_bits = (c->store.chip_scope ? 1.0 : tiles + ends) * (double)c->store.capacity_bytes * 8.0;
    a->mm2[ES_AREA_WSRAM] = a->store_bits * c->process.sram_cell_um2 / c->process.sram_eff * 1e-6;
    a->tr[ES_AREA_WSRAM] = a->store_bits * c->process.sram_tr_bit;
    /* logic */
    /* a tile serving tokens_per_read tokens per ROM read selects each weight's
     * product for each of them: one adder-tree input (and its share of the
     * tree and pipeline registers) per token, so its lanes grow with it; the
     * head serves one token at a time */
    a->tr[ES_AREA_LANES] = (tiles * (double)c->tile.lanes * (double)es_chip_lane_copies(c) + (m->has_head ? (double)c->head.lanes : 0.0)) * c->area.lane_tr;
    a->tr[ES_AREA_VECTOR] = (tiles + ends) * (double)c->tile.vec_width * c->area.vec_tr_per_elem;
    a->tr[ES_AREA_ATTN] = tiles * (double)c->tile.attn_ppc * c->area.attn_tr_per_pos;
    a->tr[ES_AREA_SAMPLER] = m->has_head ? (double)c->head.sampler_width * c->area.sampler_tr_per_elem : 0.0;
    a->tr[ES_AREA_CONTROL] = (tiles + ends) * c->area.ctrl_tr_per_tile;
    double per_mm2 = c->process.logic_mtr_mm2 * 1e6 * c->process.logic_util;
    for (int i = ES_AREA_LANES; i <= ES_AREA_CONTROL; i++) a->mm2[i] = a->tr[i] / per_mm2;
    a->mm2[ES_AREA_IO] = c->area.io_mm2;
    a->tr[ES_AREA_IO] = c->area.io_tr;
    for (int i = 0; i < ES_AREA_N; i++) {
        double d = i == ES_AREA_ROM ? c->process.leak_rom
                 : i == ES_AREA_SRAM || i == ES_AREA_WSRAM ? c->process.leak_sram : c->process.leak_logic;
        a->leak_w[i] = a->mm2[i] * d;
        a->total_mm2 += a->mm2[i];
        a->total_tr += a->tr[i];
        a->leak_total_w += a->leak_w[i];
    }
}

void es_area_add(es_area *a, const es_area *b)
{
    for (int i = 0; i < ES_AREA_N; i++) {
        a->mm2[i] += b->mm2[i];
        a->tr[i] += b->tr[i];
        a->leak_w[i] += b->leak_w[i];
    }
    a->total_mm2 += b->total_mm2;
    a->total_tr += b->total_tr;
    a->leak_total_w += b->leak_total_w;
    a->rom_bits += b->rom_bits;
    a->model_bits += b->model_bits;
    a->sram_bits += b->sram_bits;
    a->store_bits += b->store_bits;
}

void es_events_add(es_events *a, const es_events *b)
{
    a->rom_bits += b->rom_bits;
    a->cell_macs += b->cell_macs;
    a->attn_macs += b->attn_macs;
    a->kv_rd_bits += b->kv_rd_bits;
    a->kv_wr_bits += b->kv_wr_bits;
    a->state_rd_bits += b->state_rd_bits;
    a->state_wr_bits += b->state_wr_bits;
    a->vec_ops += b->vec_ops;
    a->link_bit_mm += b->link_bit_mm;
    a->host_bits += b->host_bits;
    a->reg_bit_cycles += b->reg_bit_cycles;
    a->store_bits += b->store_bits;
    a->card_bits += b->card_bits;
}

void es_events_scale(es_events *a, double f)
{
    a->rom_bits *= f;
    a->cell_macs *= f;
    a->attn_macs *= f;
    a->kv_rd_bits *= f;
    a->kv_wr_bits *= f;
    a->state_rd_bits *= f;
    a->state_wr_bits *= f;
    a->vec_ops *= f;
    a->link_bit_mm *= f;
    a->host_bits *= f;
    a->reg_bit_cycles *= f;
    a->store_bits *= f;
    a->card_bits *= f;
}

void es_events_terms(const es_chip *c, const es_events *ev, double t[ES_EJ_N])
{
    t[ES_EJ_ROM] = ev->rom_bits * c->process.e_rom_bit;
    t[ES_EJ_CELL] = ev->cell_macs * es_chip_cell_mac_j(c);
    t[ES_EJ_ATTN] = ev->attn_macs * c->process.e_attn_mac;
    /* the KV SRAM, or the HBM (kv.in_store: writes charged as reads, the one HBM energy a chip gives) */
    t[ES_EJ_KV_RD] = ev->kv_rd_bits * (c->kv.in_store ? c->store.e_read_bit : c->process.e_kv_rd_bit);
    t[ES_EJ_KV_WR] = ev->kv_wr_bits * (c->kv.in_store ? c->store.e_read_bit : c->process.e_kv_wr_bit);
    t[ES_EJ_VEC] = ev->vec_ops * c->process.e_vec_elem;
    t[ES_EJ_STATE_RD] = ev->state_rd_bits * c->process.e_kv_rd_bit;
    t[ES_EJ_STATE_WR] = ev->state_wr_bits * c->process.e_kv_wr_bit;
    t[ES_EJ_LINK] = ev->link_bit_mm * c->process.e_wire_bit_mm;
    t[ES_EJ_HOST] = ev->host_bits * c->process.e_host_bit;
    t[ES_EJ_REG] = ev->reg_bit_cycles * c->process.e_reg_bit;
    t[ES_EJ_CLK] = ev->reg_bit_cycles * c->process.e_clk_net; /* the clock network, gated with the registers it feeds */
    t[ES_EJ_STORE] = ev->store_bits * c->store.e_read_bit; /* 0 with a ROM store */
    t[ES_EJ_CARD] = ev->card_bits * c->card_link.j_bit;     /* 0 for a chip alone */
}

double es_events_joules(const es_chip *c, const es_events *ev)
{
    double t[ES_EJ_N], j = 0;
    es_events_terms(c, ev, t);
    for (int i = 0; i < ES_EJ_N; i++) j += t[i]; /* left to right, as the one expression was */
    return j;
}

double es_area_of_unit(const es_chip *c, const es_model *m, const es_area *a, const char *unit)
{
    double tiles = (double)es_chip_tiles(c, m), ends = m->has_embed || m->has_head ? 1.0 : 0.0;
    double tile_rom = (double)es_rom_bits(&c->store.tile_rom);
    double head_rom = m->has_head ? (double)es_rom_bits(&c->store.lm_rom) : 0.0;
    double emb_rom = m->tied || !m->has_embed ? 0.0 : (double)es_rom_bits(&c->store.embed_rom);
    double rom_all = tiles * tile_rom + head_rom + emb_rom, per = c->process.logic_mtr_mm2 * 1e6 * c->process.logic_util;
    double rom_mm2 = rom_all > 0 ? a->mm2[ES_AREA_ROM] / rom_all : 0; /* per bit of geometry */
    /* a tile's (and the head's) own SRAM weight store works with its lanes; a chip's one is no unit's */
    double store_mm2 = c->store.kind == ES_STORE_SRAM && !c->store.chip_scope ? a->mm2[ES_AREA_WSRAM] / (tiles + ends) : 0;
    const char *dot = strchr(unit, '.');
    if (!strncmp(unit, "tile", 4) && dot) {
        if (!strcmp(dot, ".lanes"))
            return tile_rom * rom_mm2 + store_mm2 + (double)c->tile.lanes * (double)es_chip_lane_copies(c) * c->area.lane_tr / per;
        if (!strcmp(dot, ".vector")) return (double)c->tile.vec_width * c->area.vec_tr_per_elem / per;
        if (!strcmp(dot, ".attention"))
            return (double)c->tile.attn_ppc * c->area.attn_tr_per_pos / per + a->mm2[ES_AREA_SRAM] / tiles;
        return 0;
    }
    if (!strcmp(unit, "head"))
        return head_rom * rom_mm2 + store_mm2 + ((double)c->head.lanes * c->area.lane_tr + (double)c->tile.vec_width * c->area.vec_tr_per_elem +
                                     (double)c->head.sampler_width * c->area.sampler_tr_per_elem) / per;
    if (!strcmp(unit, "embed")) return emb_rom * rom_mm2;
    return 0;
}
