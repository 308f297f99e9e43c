/* test_map: the placement table (es_map) of models/llm/tiny-llama on
 * tests/data/tiny-chip.json, against numbers worked out by hand from the two
 * files (none from the code under test):
 *   tiny-llama: hidden 256, intermediate 768, 8 heads of 32, 2 KV heads, 4 layers, vocabulary 1024, untied.
 *   tiny chip: one layer per tile; tile ROM 64 banks x 64 rows of 1024 bits; 8192 lanes of 3-bit cells;
 *   embedding ROM 8 x 160 x 1024; LM-head ROM 64 x 64 x 1024, 8192 head lanes; KV 4 MiB per tile, 8-bit
 *   elements, 512-position slots; weights int3 (group 64) but attn_v and lm_head int6 (group 64), norms bf16.
 *   int3/int6, group 64: an fp16 scale then 64 codes: (2 + 24) bytes = 3.25 bits, (2 + 48) bytes = 6.25 bits
 *   per element. bf16: 16 bits.
 * 5.x: the SRAM and HBM stores of tests/data/tiny-chip-{sram,hbm}.json (t5_store).
 * Run as `test_map TESTS_DATA_DIR`. */
#include <stdio.h>
#include <string.h>
#include "es_chip.h"
#include "es_map.h"
#include "es_model.h"

#include "test_check.h"

static char chip_path[1024];

static const es_op *op_named(const es_model *m, int layer, const char *name)
{
    for (int i = 0; i < m->n_ops; i++)
        if (m->ops[i].layer == layer && !strcmp(m->ops[i].name, name)) return &m->ops[i];
    return NULL;
}

static int load(es_chip *c, const char *set, es_map *pm, es_model *m)
{
    es_err e = {{0}};
    const char *sets[1] = {set};
    if (es_chip_load(c, chip_path, sets, set ? 1 : 0, &e)) {
        CHECK(0, "chip: %s", e.msg);
        return -1;
    }
    if (es_map_build(pm, c, m, NULL, &e)) {
        CHECK(0, "map: %s", e.msg);
        es_chip_free(c);
        return -1;
    }
    return 0;
}

static void t1_tensors(es_model *m)
{
    es_chip c;
    es_map pm;
    if (load(&c, NULL, &pm, m)) return;
    /* layer 1's attn_v: 64 x 256 int6: 64 rows x 4 groups x 50 bytes x 8 = 102400 bits; 6-bit codes take two
     * 3-bit cells: 64 x 256 x 2 = 32768 cells; 102400 / 1024 = 100 ROM rows; in tile 1 after its attn_norm
     * (256 x 16 bits: 4 rows), q (256 rows x 104 bytes = 212992 bits: 208 rows) and k (64 x 832 bits: 52 rows) */
    const es_map_tensor *v = es_map_tensor_of(&pm, es_model_tensor(m, 1, ES_ROLE_V));
    CHECK(v->chip == 0 && v->tile == 1 && v->part == 0 && v->store == ES_STORE_ROM && v->rom == ES_ROM_TILE,
          "v place: chip %d tile %d part %d rom %d", v->chip, v->tile, v->part, (int)v->rom);
    CHECK(v->bits == 102400 && v->elem_bits == 6 && v->cells == 32768, "v bits %lld elem %d cells %lld",
          (long long)v->bits, v->elem_bits, (long long)v->cells);
    CHECK(v->rom_rows == 100 && v->row_first == 4 + 208 + 52, "v rows %lld first %lld", (long long)v->rom_rows,
          (long long)v->row_first);
    CHECK(v->lanes == 8192 && v->geom.banks == 64 && v->geom.rows == 64 && v->geom.row_bits == 1024,
          "v lanes %lld banks %lld", (long long)v->lanes, (long long)v->geom.banks);
    /* a bf16 norm's 16-bit elements take ceil(16 / 3) = 6 cells each: 256 x 6 */
    const es_map_tensor *nrm = es_map_tensor_of(&pm, es_model_tensor(m, 1, ES_ROLE_ATTN_NORM));
    CHECK(nrm->elem_bits == 16 && nrm->cells == 1536 && nrm->bits == 4096 && nrm->rom_rows == 4 && nrm->row_first == 0,
          "norm elem %d cells %lld", nrm->elem_bits, (long long)nrm->cells);
    /* the LM head: 1024 x 256 int6 = 1024 x 1600 bits, in the LM-head ROM after the final norm's 4 rows */
    const es_map_tensor *lm = es_map_tensor_of(&pm, es_model_tensor(m, -1, ES_ROLE_LM_HEAD));
    CHECK(lm->tile == -1 && lm->rom == ES_ROM_LM && lm->bits == 1638400 && lm->rom_rows == 1600 &&
          lm->row_first == 4 && lm->lanes == 8192, "lm tile %d rom %d bits %lld rows %lld first %lld", lm->tile,
          (int)lm->rom, (long long)lm->bits, (long long)lm->rom_rows, (long long)lm->row_first);
    const es_map_tensor *emb = es_map_tensor_of(&pm, es_model_tensor(m, -1, ES_ROLE_EMBED));
    CHECK(emb->rom == ES_ROM_EMBED && emb->bits == 1024 * 832 && emb->geom.banks == 8, "embed rom %d bits %lld",
          (int)emb->rom, (long long)emb->bits);
    /* ops: layer 2's attn_o runs on tile 2's lanes; the LM head on the head's */
    const es_map_op *o = es_map_op_of(&pm, op_named(m, 2, "attn_o"));
    CHECK(o->tile == 2 && o->res == ES_RES_LANES &&
          o->part == 0 && o->lanes == 8192, "attn_o op: tile %d part %d lanes %lld", o->tile, o->part,
          (long long)o->lanes);
    const es_map_op *head = es_map_op_of(&pm, es_model_op(m, -1, ES_OP_MATVEC));
    CHECK(head->tile == -1 && head->res == ES_RES_LANES && head->lanes == 8192, "head op");
    CHECK(es_map_op_of(&pm, es_model_op(m, 0, ES_OP_ATTN))->res == ES_RES_ATTN, "attention op");
    /* rows needed: a tile holds 4 + 208 + 52 + 100 + 208 + 4 + 3 x 624 (gate, up: 768 x 832 bits; down: 256 x
     * 2496 bits) = 2448 rows, 39 per bank over 64 banks; 2 x 4096 + 2 x 212992 + 53248 + 102400 + 3 x 638976 =
     * 2506752 bits. The embedding table 832 rows over 8 banks: 104; the LM head 4 + 1600 over 64: 26 */
    es_rom_need n;
    es_map_rom_need(&pm, ES_ROM_TILE, &n);
    CHECK(n.rows == 39 && n.stream_rows == 2448 && n.bits == 2506752 && n.banks == 64 && !strcmp(n.what, "tile 0"),
          "tile need %lld rows (%lld stream, %lld bits) %s", (long long)n.rows, (long long)n.stream_rows,
          (long long)n.bits, n.what);
    es_map_rom_need(&pm, ES_ROM_EMBED, &n);
    CHECK(n.rows == 104 && !strcmp(n.what, "the embedding table"), "embed need %lld", (long long)n.rows);
    es_map_rom_need(&pm, ES_ROM_LM, &n);
    CHECK(n.rows == 26 && n.stream_rows == 1604 && !strcmp(n.what, "the LM head"), "lm need %lld", (long long)n.rows);
    CHECK(pm.fit.kind == ES_FIT_OK && pm.fit.key == NULL, "fits: %s", pm.fit.msg);
    /* in the chip's formats, area counts the ROMs' capacity; all bits: 4 x 2506752 + 851968 + 4096 + 1638400 */
    CHECK(pm.from == ES_BITS_CHIP && pm.rom_used_bits == 0 && pm.model_bits == 12521472.0, "model bits %.0f",
          pm.model_bits);
    es_map_free(&pm);
    es_chip_free(&c);
}

/* Bits from a recipe or an image replace the chip's formats: cells follow the element bits, ROM use the rows. */
/* A weights source for the table: the bits and element bits in two arrays; a negative bit count is an error. */
typedef struct arrays { const int64_t *bits; const int *elem; } arrays;
static int from_arrays(void *arg, int i, int64_t *bits, int *elem, es_err *e)
{
    const arrays *a = arg;
    if (a->bits[i] < 0) return es_fail(e, "tensor %d: no bits", i);
    *bits = a->bits[i];
    *elem = a->elem[i];
    return 0;
}

static void t2_weights(es_model *m)
{
    es_chip c;
    es_map pm;
    if (load(&c, NULL, &pm, m)) return;
    int64_t bits[64];
    int elem[64];
    CHECK(m->n_tensors == 39 && m->n_tensors <= 64, "tensors %d", m->n_tensors); /* 1 + 4 x 9 + 2 */
    for (int i = 0; i < m->n_tensors && i < 64; i++) bits[i] = pm.tensors[i].bits, elem[i] = pm.tensors[i].elem_bits;
    es_map_free(&pm);
    int v = (int)(es_model_tensor(m, 1, ES_ROLE_V) - m->tensors);
    bits[v] = 53248; /* attn_v in int3: 64 x 832 bits, 3-bit codes: one cell each */
    elem[v] = 3;
    arrays a = {bits, elem};
    es_map_weights w = {ES_BITS_RECIPE, from_arrays, &a, 0};
    es_err e = {{0}};
    CHECK(es_map_build(&pm, &c, m, &w, &e) == 0, "%s", e.msg);
    CHECK(pm.tensors[v].cells == 16384 && pm.tensors[v].rom_rows == 52, "v cells %lld rows %lld",
          (long long)pm.tensors[v].cells, (long long)pm.tensors[v].rom_rows);
    /* ROM bits in use: (4 x 2448 - 48 + 832 + 1604) rows x 1024 bits */
    CHECK(pm.from == ES_BITS_RECIPE && pm.rom_used_bits == (4.0 * 2448 - 48 + 832 + 1604) * 1024, "used %.0f",
          pm.rom_used_bits);
    es_map_free(&pm);
    w.image_bits = 123456; /* an image's own count is taken as it is */
    w.from = ES_BITS_IMAGE;
    CHECK(es_map_build(&pm, &c, m, &w, &e) == 0 && pm.rom_used_bits == 123456, "image bits %.0f", pm.rom_used_bits);
    es_map_free(&pm);
    bits[v] = -1; /* the source's error stops the build, and says so */
    CHECK(es_map_build(&pm, &c, m, &w, &e) == -1 && !strcmp(e.msg, "tensor 13: no bits") && pm.tensors == NULL,
          "source error: %s", e.msg);
    es_chip_free(&c);
}

/* Partitioned tiles: layer 0's projections take 47 x 16384 lane cells (q 4, k 1, v 2, o 4, gate, up and down 12
 * each, in 16384s); each partition gets its share of 8192 lanes and 64 banks, rounded down. */
static void t3_partitions(es_model *m)
{
    es_chip c;
    es_map pm;
    if (load(&c, "tile.lanes.mapping=partitioned", &pm, m)) return;
    CHECK(pm.n_parts == 4, "partitions %d", pm.n_parts);
    const es_map_tensor *o = es_map_tensor_of(&pm, es_model_tensor(m, 2, ES_ROLE_O));
    /* o: 4/47 of 8192 lanes = 697.2, of 64 banks = 5.4 */
    CHECK(o->part == ES_PART_O && o->in_part && o->lanes == 697 && o->geom.banks == 5, "o part %d lanes %lld banks %lld",
          o->part, (long long)o->lanes, (long long)o->geom.banks);
    const es_map_tensor *k = es_map_tensor_of(&pm, es_model_tensor(m, 0, ES_ROLE_K));
    CHECK(k->part == ES_PART_QKV && k->lanes == 1220 && k->geom.banks == 9, "k lanes %lld banks %lld",
          (long long)k->lanes, (long long)k->geom.banks); /* 7/47: 1220.1 lanes, 9.5 banks */
    const es_map_tensor *nrm = es_map_tensor_of(&pm, es_model_tensor(m, 0, ES_ROLE_FFN_NORM));
    CHECK(!nrm->in_part, "a norm sits in the tile's ROM as a whole");
    CHECK(es_map_op_of(&pm, op_named(m, 3, "ffn_down"))->part == ES_PART_DOWN, "down op partition");
    /* rows per bank: q, k, v 360 rows over 9 banks: 40; o 208 over 5: 42; gate, up 1248 over 32: 39; down 624 over
     * 16: 39; the tile 39. The o partition needs the most */
    es_rom_need n;
    es_map_rom_need(&pm, ES_ROM_TILE, &n);
    CHECK(n.rows == 42 && n.banks == 5 && n.stream_rows == 208 && !strcmp(n.what, "tile 0, partition o"),
          "need %lld %s", (long long)n.rows, n.what);
    const es_map_unit *u = es_map_unit_of(&pm, ES_ROM_TILE, 3, ES_PART_QKV);
    CHECK(u && u->rows == 40 && u->stream_rows == 360, "qkv unit");
    es_map_free(&pm);
    es_chip_free(&c);
    /* 41 rows: the o partition is one row per bank short */
    const char *sets[2] = {"tile.lanes.mapping=partitioned", "tile.rom.rows=41"};
    es_err e = {{0}};
    if (es_chip_load(&c, chip_path, sets, 2, &e)) { CHECK(0, "%s", e.msg); return; }
    CHECK(es_map_build(&pm, &c, m, NULL, &e) == 0, "%s", e.msg);
    CHECK(pm.fit.kind == ES_FIT_ROM && pm.fit.rom == ES_ROM_TILE && pm.fit.tile == 0 && pm.fit.part == ES_PART_O &&
          pm.fit.need == 42 && pm.fit.have == 41 && !strcmp(pm.fit.unit, "tile 0, partition o"),
          "partition fit: kind %d tile %d part %d need %lld have %lld", (int)pm.fit.kind, pm.fit.tile, pm.fit.part,
          (long long)pm.fit.need, (long long)pm.fit.have);
    es_map_free(&pm);
    es_chip_free(&c);
}

/* The fit as a typed result: which unit is short and by how much, with the message the commands print. */
static void t4_fit(es_model *m)
{
    es_chip c;
    es_map pm;
    es_err e = {{0}};
    if (load(&c, "tile.rom.rows=38", &pm, m)) return;
    CHECK(pm.fit.kind == ES_FIT_ROM && pm.fit.rom == ES_ROM_TILE && pm.fit.tile == 0 && pm.fit.part == -1 &&
          pm.fit.need == 39 && pm.fit.have == 38 && !strcmp(pm.fit.unit, "tile 0") &&
          !strcmp(pm.fit.key, "tile.rom.rows"), "tile fit: kind %d tile %d part %d need %lld have %lld %s",
          (int)pm.fit.kind, pm.fit.tile, pm.fit.part, (long long)pm.fit.need, (long long)pm.fit.have, pm.fit.unit);
    char want[1200];
    snprintf(want, sizeof want, "%s: key 'tile.rom.rows': ROM cannot hold the model: tile 0 needs 39 rows per bank "
             "(2506752 bits in 2448 rows of 1024 bits, each tensor from a fresh row, over 64 banks), the ROM has 38",
             c.path);
    CHECK(es_map_check(&pm, &e) == -1 && !strcmp(e.msg, want), "message: %s", e.msg);
    CHECK(es_chip_check_fit(&c, m, &e) == -1 && !strcmp(e.msg, want), "es_chip_check_fit: %s", e.msg);
    es_map_free(&pm);
    es_chip_free(&c);
    /* the LM-head ROM: 1604 rows over 64 banks need 26 */
    if (load(&c, "head.lm_rom.rows=25", &pm, m)) return;
    CHECK(pm.fit.kind == ES_FIT_ROM && pm.fit.rom == ES_ROM_LM && pm.fit.tile == -1 && pm.fit.need == 26 &&
          pm.fit.have == 25 && !strcmp(pm.fit.key, "head.lm_rom.rows") && !strcmp(pm.fit.unit, "the LM head"),
          "lm fit: kind %d need %lld", (int)pm.fit.kind, (long long)pm.fit.need);
    es_map_free(&pm);
    es_chip_free(&c);
    /* a KV slot: 2 x 2 heads x 32 x 8 bits x 512 positions x 1 layer = 524288 bits; 65535 bytes hold 524280 */
    if (load(&c, "kv.bytes_per_tile=65535", &pm, m)) return;
    CHECK(pm.fit.kind == ES_FIT_KV && pm.fit.need == 524288 && pm.fit.have == 524280 &&
          !strcmp(pm.fit.key, "kv.bytes_per_tile"), "kv fit: kind %d need %lld have %lld", (int)pm.fit.kind,
          (long long)pm.fit.need, (long long)pm.fit.have);
    es_map_free(&pm);
    es_chip_free(&c);
    if (load(&c, "kv.bytes_per_tile=65536", &pm, m)) return;
    CHECK(pm.fit.kind == ES_FIT_OK, "kv 65536 fits: %s", pm.fit.msg);
    es_map_free(&pm);
    es_chip_free(&c);
}

/* 5. Weight stores (tests/data/tiny-chip-sram.json: a store per tile of 400000 bytes, 2 ports of 512 bits, latency 5;
 * tiny-chip-hbm.json: BF16 weights in HBM, 2 stacks of 1024 bits, latency 20, one tile of all 4 layers). A tile's
 * weights at the chip's formats: q, o 212992 bits each, k 53248, v 102400, gate, up, down 638976 each, two bf16
 * norms of 4096: 2506752 bits = 313344 bytes; in BF16 the model is 4 x (753664 + 512) x 16 + 2 x 262144 x 16 +
 * 256 x 16 = 56659968 bits = 7082496 bytes. */
static void t5_store(es_model *m, const char *data)
{
    char sram[1024], hbm[1024];
    snprintf(sram, sizeof sram, "%s/tiny-chip-sram.json", data);
    snprintf(hbm, sizeof hbm, "%s/tiny-chip-hbm.json", data);
    snprintf(chip_path, sizeof chip_path, "%s", sram);
    es_chip c;
    es_map pm;
    if (load(&c, NULL, &pm, m)) return;
    const es_map_tensor *v = es_map_tensor_of(&pm, es_model_tensor(m, 1, ES_ROLE_V));
    CHECK(v->store == ES_STORE_SRAM && v->tile == 1 && v->bits == 102400 && v->rom_rows == 0 && v->geom.banks == 2 &&
          v->geom.row_bits == 512 && v->geom.latency == 5 && pm.fit.kind == ES_FIT_OK && pm.rom_used_bits == 0,
          "5.1 sram v: store %d rows %lld geom %lld x %lld lat %d fit %d", (int)v->store, (long long)v->rom_rows,
          (long long)v->geom.banks, (long long)v->geom.row_bits, v->geom.latency, (int)pm.fit.kind);
    es_map_free(&pm);
    es_chip_free(&c);
    /* a byte short of tile 0's 313344 */
    if (load(&c, "store.capacity_bytes=313343", &pm, m)) return;
    CHECK(pm.fit.kind == ES_FIT_STORE && !strcmp(pm.fit.key, "store.capacity_bytes") && pm.fit.tile == 0 &&
          pm.fit.need == 2506752 && pm.fit.have == 2506744 && !strcmp(pm.fit.unit, "tile 0"),
          "5.2 sram fit: kind %d need %lld have %lld unit %s", (int)pm.fit.kind, (long long)pm.fit.need,
          (long long)pm.fit.have, pm.fit.unit);
    es_map_free(&pm);
    es_chip_free(&c);
    if (load(&c, "store.capacity_bytes=313344", &pm, m)) return;
    CHECK(pm.fit.kind == ES_FIT_OK, "5.2 313344 bytes per tile fit: %s", pm.fit.msg);
    es_map_free(&pm);
    es_chip_free(&c);
    snprintf(chip_path, sizeof chip_path, "%s", hbm);
    if (load(&c, "store.capacity_bytes=7082495", &pm, m)) return;
    const es_map_tensor *lm = es_map_tensor_of(&pm, es_model_tensor(m, -1, ES_ROLE_LM_HEAD));
    CHECK(lm->store == ES_STORE_HBM && lm->bits == 262144 * 16 && lm->geom.banks == 2 && lm->geom.row_bits == 1024 &&
          lm->geom.latency == 20 && pm.model_bits == 56659968.0,
          "5.3 hbm lm: store %d bits %lld model %.0f", (int)lm->store, (long long)lm->bits, pm.model_bits);
    CHECK(pm.fit.kind == ES_FIT_STORE && pm.fit.need == 56659968 && pm.fit.have == 56659960 &&
          !strcmp(pm.fit.unit, "the model"), "5.3 hbm fit: kind %d need %lld have %lld", (int)pm.fit.kind,
          (long long)pm.fit.need, (long long)pm.fit.have);
    es_map_free(&pm);
    es_chip_free(&c);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_map TESTS_DATA_DIR\n");
        return 2;
    }
    snprintf(chip_path, sizeof chip_path, "%s/tiny-chip.json", argv[1]);
    es_model m;
    es_err e = {{0}};
    if (es_model_load(&m, "tiny-llama", &e)) {
        fprintf(stderr, "FAIL: %s\n", e.msg);
        return 1;
    }
    t1_tensors(&m);
    t2_weights(&m);
    t3_partitions(&m);
    t4_fit(&m);
    t5_store(&m, argv[1]);
    es_model_free(&m);
    printf("test_map: %d passed, %d failed\n", passes, fails);
    return fails ? 1 : 0;
}
