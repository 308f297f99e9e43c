/* es_area: die area, transistor count and leakage of a chip configuration
 * holding a model, with a breakdown by component. */
#ifndef ES_AREA_H
#define ES_AREA_H
#include "es_chip.h"
#include "es_map.h"
#include "es_model.h"
#ifdef __cplusplus
extern "C" {
#endif

/* ES_AREA_WSRAM: an SRAM weight store (store.kind sram), last so a ROM chip's outputs, which leave it out, keep
 * their order. */
enum { ES_AREA_ROM, ES_AREA_SRAM, ES_AREA_LANES, ES_AREA_VECTOR, ES_AREA_ATTN, ES_AREA_SAMPLER,
       ES_AREA_CONTROL, ES_AREA_IO, ES_AREA_WSRAM, ES_AREA_N };


typedef struct es_area {
    double mm2[ES_AREA_N];     /* area per component */
    double tr[ES_AREA_N];      /* transistors per component */
    double leak_w[ES_AREA_N];  /* leakage power per component */
    double total_mm2, total_tr, leak_total_w;
    double rom_bits;           /* ROM capacity, all tiles and head */
    double model_bits;         /* bits the model's tensors occupy, incl. scales */
    double sram_bits;          /* KV SRAM capacity */
    double store_bits;         /* an SRAM weight store's capacity, every tile's and the head's (0: ROM or HBM) */
} es_area;

const char *es_area_name(int i); /* "rom", "kv_sram", "lanes", ..., "weight_sram" */
/* Whether outputs list component i: all but the weight SRAM, which only a chip with one lists. */
static inline int es_area_listed(const es_area *a, int i) { return i != ES_AREA_WSRAM || a->store_bits > 0; }
/* The area of pm->chip holding pm->model: ROM as the chip's ROM geometry, or the rows in use when the bits come
 * from an image or a recipe (pm->rom_used_bits); the model's bits from the table. */
void es_area_compute(const es_map *pm, es_area *a);
/* a += b, every field: the silicon of a system of chips. */
void es_area_add(es_area *a, const es_area *b);
/* The die area active while a simulated unit is busy, by its name: a tile's
 * lanes with its ROM ("tileN.lanes"), its vector unit ("tileN.vector"), its
 * attention engine with its KV SRAM ("tileN.attention"); the head's LM-head
 * ROM, lanes, vector unit and sampler ("head"); the embedding ROM ("embed").
 * Links, the host interface and control: 0 (wires and I/O; control counts as
 * idle). A tile's own row is 0: its resources carry its area. */
double es_area_of_unit(const es_chip *c, const es_model *m, const es_area *a, const char *unit);

typedef struct es_events {
    double rom_bits;      /* ROM bits read */
    double cell_macs;     /* lane cell multiply-select-adds */
    double attn_macs;     /* attention MACs (q.k and p.v) */
    double kv_rd_bits;    /* KV SRAM bits read */
    double kv_wr_bits;    /* KV SRAM bits written */
    double state_rd_bits; /* SSM state bits read (the same SRAM, holding states instead of KV) */
    double state_wr_bits; /* SSM state bits written */
    double vec_ops;       /* vector-unit element operations */
    double link_bit_mm;   /* bits moved times millimetres on tile links */
    double host_bits;     /* bits over the host link */
    double reg_bit_cycles; /* register bits clocked, times cycles (clock_gating "unit" or "tile") */
    double store_bits;    /* weight bits read from an SRAM or HBM store (store.kind; a ROM's are rom_bits) */
    double card_bits;     /* bits over a card-to-card link of a system (es_chip.card_link) */
} es_events;

void es_events_add(es_events *a, const es_events *b);
void es_events_scale(es_events *a, double f);
/* Each kind of event's joules (chip level), in the order es_events_joules adds them. */
enum { ES_EJ_ROM, ES_EJ_CELL, ES_EJ_ATTN, ES_EJ_KV_RD, ES_EJ_KV_WR, ES_EJ_VEC, ES_EJ_STATE_RD, ES_EJ_STATE_WR,
       ES_EJ_LINK, ES_EJ_HOST, ES_EJ_REG, ES_EJ_CLK, ES_EJ_STORE, ES_EJ_CARD, ES_EJ_N };
void es_events_terms(const es_chip *c, const es_events *ev, double terms[ES_EJ_N]);
double es_events_joules(const es_chip *c, const es_events *ev);

#ifdef __cplusplus
}
#endif
#endif
