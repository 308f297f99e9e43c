/* es_rom: mask-ROM images. An image holds every tensor of one model,
 * quantized by one recipe and packed into the ROM banks of one chip:
 * each unit (layer tile, embedding ROM, LM-head ROM) lays its tensors out
 * as a stream of ROM rows, each tensor starting on a fresh row, and stream
 * row r goes to bank r mod banks, so one access of every bank reads
 * consecutive rows. File layout (little-endian):
 *   header  64 B: "ETCHROM\0", u32 version (2; 1 is read too), u32 header bytes 64,
 *                 u64 model hash, u64 ROM geometry hash, u64 recipe hash,
 *                 u64 index offset, u64 index bytes, u32 index CRC-32,
 *                 u32 CRC-32 of the header's first 60 bytes
 *   banks   one payload per bank, anywhere between header and index: the bank's rows
 *           as stored (encoding 1), or a zlib stream of them (encoding 0)
 *   index   u32 units, u32 tensors, u32 banks, u32 0, then
 *           units   32 B: i32 id (tile index; -1 embedding; -2 LM head), u32 banks, u64 rows, u64 row_bits, u64 stream rows used
 *           tensors 152 B: name[96], i32 role, i32 layer, i64 rows, i64 cols,
 *                   u8 format, u8 nibble order, u16 group, f32 tensor scale,
 *                   i32 unit, u32 0, i64 first stream row, i64 bytes
 *           banks   48 B: i32 unit, u32 bank, u64 rows used, u64 raw bytes,
 *                   u64 payload bytes, u64 offset, u32 CRC-32 of the
 *                   payload bytes, u32 encoding (0 zlib, 1 stored: payload
 *                   bytes = raw bytes)
 * Units come in order: tiles 0..T-1, the embedding ROM (untied models only),
 * the LM-head ROM; banks in unit order, then bank order; a version 2 build also
 * places the payloads so (each bank at an offset laid out before quantizing),
 * and the file's bytes do not depend on the threads.
 * Version 2 images are written with every bank stored: a load is then reading
 * the file (its size in bytes), where inflating the Huffman-only zlib streams of
 * version 1 took most of a load and saved 3.8% of the file on hc1-mix
 * (weights/README.md). Version 1 images (every bank zlib, the encoding field 0)
 * are read as before. A build writes FILE.tmp and renames it when complete
 * (es_atomic: a failed build, or one stopped by a signal, leaves no FILE.tmp). */
#ifndef ES_ROM_H
#define ES_ROM_H
#include <stdint.h>
#include <stdio.h>
#include "es_chip.h"
#include "es_err.h"
#include "es_map.h"
#include "es_model.h"
#include "es_quant.h"
#include "es_recipe.h"
#ifdef __cplusplus
extern "C" {
#endif

#define ES_ROM_VERSION 2 /* written; 1 is read too */
enum { ES_ROM_ZLIB = 0, ES_ROM_STORED = 1 }; /* a bank's payload encoding */

typedef struct es_rom_unit {
    int32_t id;          /* tile index; -1 embedding ROM; -2 LM-head ROM */
    int64_t banks, rows, row_bits; /* geometry */
    int64_t stream_rows; /* rows of the unit's stream in use */
    char label[32];      /* "tile 3", "embed", "lm_head" */
} es_rom_unit;

typedef struct es_rom_tensor {
    char name[96];       /* Hugging Face name */
    int32_t role, layer;
    int64_t rows, cols;
    es_qfmt fmt;         /* format, group, nibble order, tensor scale */
    int32_t unit;        /* index into units */
    int64_t row_first;   /* first stream row */
    int64_t bytes;       /* quantized bytes: rows x bytes of es_q_padded(cols) elements */
} es_rom_tensor;

typedef struct es_rom_bank {
    int32_t unit;        /* index into units */
    uint32_t bank;       /* bank within the unit */
    int64_t rows_used;   /* rows holding data */
    int64_t raw_bytes;   /* rows_used x row bytes */
    int64_t comp_bytes, offset; /* the payload in the file (stored: comp_bytes = raw_bytes) */
    uint32_t crc;        /* CRC-32 of the payload */
    uint32_t encoding;   /* ES_ROM_ZLIB or ES_ROM_STORED */
} es_rom_bank;

typedef struct es_rom_image {
    char path[512];
    uint32_t version;     /* 1 or 2 */
    uint64_t model_hash, geom_hash, recipe_hash;
    es_rom_unit *units;   int n_units;
    es_rom_tensor *tensors; int n_tensors;
    es_rom_bank *banks;   int n_banks;
    int64_t file_bytes;
} es_rom_image;

/* Identity of what an image is built for. */
uint64_t es_rom_model_hash(const es_model *m);
uint64_t es_rom_geom_hash(const es_chip *c, const es_model *m);

typedef void (*es_rom_progress)(int units_done, int units_total, void *arg);

/* Where weights come from: fill out[0..cols) with row `row` of graph tensor
 * `tensor`. Called from several threads at once. */
typedef int (*es_row_fn)(void *arg, int tensor, int64_t row, float *out, es_err *e);

/* Quantize one tensor (rows x cols, rows from rowf) into dst: rows of
 * es_q_row_bytes(es_q_padded(cols)) bytes, each zero-padded to whole blocks.
 * nvfp4 and fp8: set f->tensor_scale from the whole tensor first. A weight the format
 * would store as infinity or NaN (beyond its range) is an error naming `name`. */
int es_quantize_tensor(es_qfmt *f, int64_t rows, int64_t cols, es_row_fn rowf, void *arg, int tensor,
                       const char *name, unsigned char *dst, es_err *e);
/* Build an image. threads <= 0: one per core. */
int es_rom_build(const es_chip *c, const es_model *m, const es_recipe *r, es_row_fn rows, void *rows_arg,
                 const char *out, int threads, es_rom_progress cb, void *cb_arg, es_err *e);
/* Build from synthetic weights (seed). */
int es_rom_build_synthetic(const es_chip *c, const es_model *m, const es_recipe *r, uint64_t seed,
                           const char *out, int threads, es_rom_progress cb, void *cb_arg,
                           es_err *e);
/* The placement table (es_map.h) of m on c with the bits an image built with recipe r would hold, without
 * building one: each tensor's bits (whole blocks per row, scales included) and element width, and the ROM
 * bits in use (each tensor from a fresh row of its ROM), as es_apply_rom takes them from an image. Timing,
 * area and energy then follow the recipe's formats instead of the chip's weights.* section. -1 on a format
 * the recipe cannot give (pm->fit.kind ES_FIT_OK) or when the table cannot be built (es_map_build: pm->fit
 * says why); 0 with pm built, fitting or not (pm->fit). */
int es_rom_apply_recipe(const es_recipe *r, const es_chip *c, const es_model *m, es_map *pm, es_err *e);
/* The placement table of m on c with the bits of the ROM image at path (`run --rom`): the image must be
 * built for this model and this chip's ROM geometry, and every bank's CRC-32 must hold; each tensor then
 * takes the image's bits and element width, and area the image's ROM rows in use. Returns as
 * es_rom_apply_recipe. */
int es_apply_rom(const char *path, const es_chip *c, const es_model *m, es_map *pm, es_err *e);
/* Read header and index; every size and offset is checked against the file. */
int es_rom_open(es_rom_image *img, const char *path, es_err *e);
void es_rom_close(es_rom_image *img);
/* Check every bank's CRC-32 and that it holds its size (a zlib bank: inflates to it); names the first bad bank.
 * Returns the number of bad banks (0 = good) or -1 when the file cannot be read. */
int es_rom_verify(const es_rom_image *img, es_err *e);
/* The stream of unit u (stream_rows x row_bits / 8 bytes), each bank read (and inflated when zlib)
 * once and its CRC-32 checked: tensor t starts at row t.row_first of its unit's stream. */
int es_rom_unit_bytes(const es_rom_image *img, int u, void *out, es_err *e);
/* The quantized bytes of tensor i, gathered from its unit's banks. */
int es_rom_tensor_bytes(const es_rom_image *img, int i, void *out, es_err *e);
/* Memory for weights held for a run (free() frees it): blocks of 2 MiB or more are 2 MiB aligned and
 * advised to use huge pages (Linux transparent huge pages, "madvise" mode), which cuts the page faults of
 * first touching gigabytes of weights by 512 (measured: they were most of a ROM image's load). */
void *es_rom_alloc(int64_t bytes);
/* Total bits in use: stream rows x row bits over all units. */
double es_rom_used_bits(const es_rom_image *img);
/* The label of bank k, e.g. "tile 3 bank 17". */
void es_rom_bank_label(const es_rom_image *img, int k, char *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif
