/* es_rom: building, opening and checking ROM images (see es_rom.h). */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE */
#include "es_rom.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>
#include "es_fs.h"
#include "es_synth.h"

#define HDR_BYTES 64
#define UNIT_REC 32
#define TENSOR_REC 152
#define BANK_REC 48
static const char MAGIC[8] = {'E', 'T', 'C', 'H', 'R', 'O', 'M', 0};

/* ---- little-endian field access ---- */
static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> 8 * i); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> 8 * i); }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

static uint32_t crc(const void *p, size_t n) { return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n); }

uint64_t es_rom_model_hash(const es_model *m)
{
    uint64_t h = ES_FNV_OFFSET;
    int64_t dims[8] = {m->hidden, m->layers, m->heads, m->kv_heads, m->head_dim, m->ffn, m->vocab, m->tied};
    h = es_fnv1a(h, dims, sizeof dims);
    for (int i = 0; i < m->n_tensors; i++) {
        h = es_fnv1a(h, m->tensors[i].name, strlen(m->tensors[i].name));
        h = es_fnv1a(h, &m->tensors[i].rows, 8);
        h = es_fnv1a(h, &m->tensors[i].cols, 8);
    }
    return h;
}

static void unit_geoms(const es_chip *c, const es_model *m, es_rom_unit *u, int *n)
{
    int64_t tiles = es_chip_tiles(c, m);
    int k = 0;
    for (int64_t t = 0; t < tiles; t++, k++) {
        u[k] = (es_rom_unit){(int32_t)t, c->store.tile_rom.banks, c->store.tile_rom.rows, c->store.tile_rom.row_bits, 0, ""};
        snprintf(u[k].label, sizeof u[k].label, "tile %lld", (long long)t);
    }
    if (!m->tied) {
        u[k] = (es_rom_unit){-1, c->store.embed_rom.banks, c->store.embed_rom.rows, c->store.embed_rom.row_bits, 0, "embed"};
        k++;
    }
    u[k] = (es_rom_unit){-2, c->store.lm_rom.banks, c->store.lm_rom.rows, c->store.lm_rom.row_bits, 0, "lm_head"};
    *n = k + 1;
}

uint64_t es_rom_geom_hash(const es_chip *c, const es_model *m)
{
    int n = 0;
    es_rom_unit *u = calloc((size_t)es_chip_tiles(c, m) + 2, sizeof *u);
    if (!u) return 0;
    unit_geoms(c, m, u, &n);
    uint64_t h = ES_FNV_OFFSET;
    for (int i = 0; i < n; i++) {
        int64_t g[3] = {u[i].banks, u[i].rows, u[i].row_bits};
        h = es_fnv1a(h, g, sizeof g);
    }
    free(u);
    return es_fnv1a(h, &c->tile.layers, sizeof c->tile.layers);
}


/* ---- building ---- */

typedef struct build_ctx {
    const es_chip *c;
    const es_model *m;
    es_row_fn rows;
    void *rows_arg;
    es_rom_unit *units;
    int n_units;
    es_rom_tensor *tensors;
    int n_tensors;
    es_rom_bank *banks;      /* per unit, banks in order; bank_first[u] indexes here */
    int *bank_first;
    FILE *f;
    int64_t file_pos;        /* where the index goes: every bank's offset is laid out before the build */
    pthread_mutex_t lock;    /* guards next_unit, done, failed, err */
    int next_unit, done, failed;
    es_err err;
    es_rom_progress cb;
    void *cb_arg;
} build_ctx;

int es_quantize_tensor(es_qfmt *f, int64_t rows, int64_t cols, es_row_fn rowf, void *arg, int tensor,
                       const char *name, unsigned char *dst, es_err *e)
{
    int64_t padded = es_q_padded(f, cols); /* a partial last block is zero-padded */
    float *row = calloc((size_t)(padded > 0 ? padded : 1), sizeof *row);
    float *back = malloc((size_t)(padded > 0 ? padded : 1) * sizeof *back);
    int rc = -1;
    if (!row || !back) { free(row); free(back); return es_fail(e, "out of memory"); }
    if (f->type == ES_Q_NVFP4) { /* the tensor scale needs the whole tensor's absmax */
        float am = 0;
        for (int64_t r = 0; r < rows; r++) {
            if (rowf(arg, tensor, r, row, e)) goto out;
            float s = es_nvfp4_tensor_scale(row, cols) * 448.0f * 6.0f;
            if (s > am) am = s;
        }
        f->tensor_scale = am > 0 ? am / (448.0f * 6.0f) : 1.0f;
    } else if (f->type == ES_Q_FP8) { /* amax / 448 over the whole tensor (es_fp8_tensor_scale of it) */
        float am = 0;
        for (int64_t r = 0; r < rows; r++) {
            if (rowf(arg, tensor, r, row, e)) goto out;
            for (int64_t k = 0; k < cols; k++)
                if (fabsf(row[k]) > am) am = fabsf(row[k]);
        }
        f->tensor_scale = es_fp8_tensor_scale(&am, 1);
    }
    int64_t rb = es_q_row_bytes(f, padded, e);
    if (rb < 0) goto out;
    for (int64_t r = 0; r < rows; r++) {
        if (rowf(arg, tensor, r, row, e)) goto out;
        if (es_quantize_row(f, row, padded, dst + r * rb, e)) goto out;
        /* a finite weight beyond the format's range (an F16 value or block scale past 65504) would be
         * stored as infinity: refused, not written. es_row_finite checks the scales, not every element; only
         * a row it doubts is decoded to find the element */
        if (es_row_finite(f, dst + r * rb, padded)) continue;
        if (es_dequantize_row(f, dst + r * rb, padded, back, e)) goto out;
        for (int64_t k = 0; k < cols; k++)
            if (!isfinite(back[k])) { /* the row's largest weight set the scale (or is the value) that overflowed */
                int64_t big = 0;
                for (int64_t j = 1; j < cols; j++)
                    if (fabsf(row[j]) > fabsf(row[big])) big = j;
                es_fail(e, "tensor %s: row %lld, column %lld: the weight %g is beyond what %s stores (the row "
                           "decodes to %s)", name, (long long)r, (long long)big, (double)row[big],
                        es_qtype_name(f->type), isnan(back[k]) ? "NaN" : "infinity");
                goto out;
            }
    }
    rc = 0;
out:
    free(row);
    free(back);
    return rc;
}

/* Write all n bytes of p at offset off of fd. */
static int pwrite_all(int fd, const unsigned char *p, int64_t n, int64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, (size_t)n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= w;
        off += w;
    }
    return 0;
}

static int build_unit(build_ctx *b, int u, es_err *e)
{
    const es_rom_unit *un = &b->units[u];
    int64_t row_bytes = un->row_bits / 8;
    int64_t stream_bytes = un->stream_rows * row_bytes;
    unsigned char *stream = calloc((size_t)(stream_bytes > 0 ? stream_bytes : 1), 1);
    unsigned char *gather = NULL;
    int rc = -1;
    if (!stream) { es_fail(e, "out of memory for %s (%lld bytes)", un->label, (long long)stream_bytes); goto out; }
    for (int i = 0; i < b->n_tensors; i++) {
        es_rom_tensor *t = &b->tensors[i];
        if (t->unit != u) continue;
        if (es_quantize_tensor(&t->fmt, t->rows, t->cols, b->rows, b->rows_arg, i, t->name,
                               stream + t->row_first * row_bytes, e))
            goto out;
    }
    /* stripe stream rows over banks, write each bank's rows as they are (ES_ROM_STORED) */
    int64_t max_rows = (un->stream_rows + un->banks - 1) / un->banks;
    gather = malloc((size_t)(max_rows * row_bytes > 0 ? max_rows * row_bytes : 1));
    if (!gather) { es_fail(e, "out of memory"); goto out; }
    for (int64_t k = 0; k < un->banks; k++) {
        es_rom_bank *bk = &b->banks[b->bank_first[u] + k];
        int64_t used = un->stream_rows > k ? (un->stream_rows - k + un->banks - 1) / un->banks : 0;
        for (int64_t r = 0; r < used; r++)
            memcpy(gather + r * row_bytes, stream + (r * un->banks + k) * row_bytes, (size_t)row_bytes);
        size_t len = (size_t)(used * row_bytes);
        bk->crc = crc(gather, len);
        if (pwrite_all(fileno(b->f), gather, (int64_t)len, bk->offset)) {
            es_fail(e, "write failed: %s", strerror(errno));
            goto out;
        }
    }
    rc = 0;
out:
    free(stream);
    free(gather);
    return rc;
}

static void *worker(void *arg)
{
    build_ctx *b = arg;
    for (;;) {
        pthread_mutex_lock(&b->lock);
        int u = b->failed ? b->n_units : b->next_unit++;
        pthread_mutex_unlock(&b->lock);
        if (u >= b->n_units) return NULL;
        es_err e;
        int rc = build_unit(b, u, &e);
        pthread_mutex_lock(&b->lock);
        if (rc && !b->failed) { b->failed = 1; b->err = e; }
        int done = ++b->done;
        pthread_mutex_unlock(&b->lock);
        if (b->cb && !rc) b->cb(done, b->n_units, b->cb_arg);
    }
}

static unsigned char *encode_index(const build_ctx *b, int64_t *len)
{
    int nb = b->bank_first[b->n_units];
    int64_t n = 16 + (int64_t)b->n_units * UNIT_REC + (int64_t)b->n_tensors * TENSOR_REC +
                (int64_t)nb * BANK_REC;
    unsigned char *p = calloc((size_t)n, 1), *q = p;
    if (!p) return NULL;
    put32(q, (uint32_t)b->n_units);
    put32(q + 4, (uint32_t)b->n_tensors);
    put32(q + 8, (uint32_t)nb);
    q += 16;
    for (int i = 0; i < b->n_units; i++, q += UNIT_REC) {
        const es_rom_unit *u = &b->units[i];
        put32(q, (uint32_t)u->id);
        put32(q + 4, (uint32_t)u->banks);
        put64(q + 8, (uint64_t)u->rows);
        put64(q + 16, (uint64_t)u->row_bits);
        put64(q + 24, (uint64_t)u->stream_rows);
    }
    for (int i = 0; i < b->n_tensors; i++, q += TENSOR_REC) {
        const es_rom_tensor *t = &b->tensors[i];
        memcpy(q, t->name, strnlen(t->name, 95));
        put32(q + 96, (uint32_t)t->role);
        put32(q + 100, (uint32_t)t->layer);
        put64(q + 104, (uint64_t)t->rows);
        put64(q + 112, (uint64_t)t->cols);
        q[120] = (unsigned char)t->fmt.type;
        q[121] = (unsigned char)t->fmt.nibbles;
        q[122] = (unsigned char)(t->fmt.group & 0xFF);
        q[123] = (unsigned char)(t->fmt.group >> 8);
        uint32_t ts;
        memcpy(&ts, &t->fmt.tensor_scale, 4);
        put32(q + 124, ts);
        put32(q + 128, (uint32_t)t->unit);
        put64(q + 136, (uint64_t)t->row_first);
        put64(q + 144, (uint64_t)t->bytes);
    }
    for (int i = 0; i < nb; i++, q += BANK_REC) {
        const es_rom_bank *k = &b->banks[i];
        put32(q, (uint32_t)k->unit);
        put32(q + 4, k->bank);
        put64(q + 8, (uint64_t)k->rows_used);
        put64(q + 16, (uint64_t)k->raw_bytes);
        put64(q + 24, (uint64_t)k->comp_bytes);
        put64(q + 32, (uint64_t)k->offset);
        put32(q + 40, k->crc);
        put32(q + 44, k->encoding);
    }
    *len = n;
    return p;
}

static void encode_header(unsigned char *h, uint64_t mh, uint64_t gh, uint64_t rh, uint64_t ioff,
                          uint64_t ilen, uint32_t icrc)
{
    memset(h, 0, HDR_BYTES);
    memcpy(h, MAGIC, 8);
    put32(h + 8, ES_ROM_VERSION);
    put32(h + 12, HDR_BYTES);
    put64(h + 16, mh);
    put64(h + 24, gh);
    put64(h + 32, rh);
    put64(h + 40, ioff);
    put64(h + 48, ilen);
    put32(h + 56, icrc);
    put32(h + 60, crc(h, 60));
}

typedef struct synth_arg { const es_model *m; uint64_t seed; } synth_arg;

static int synth_rows(void *arg, int tensor, int64_t row, float *out, es_err *e)
{
    (void)e;
    const synth_arg *a = arg;
    es_synth_row(a->seed, &a->m->tensors[tensor], row, out);
    return 0;
}

int es_rom_build_synthetic(const es_chip *c, const es_model *m, const es_recipe *r, uint64_t seed,
                           const char *out, int threads, es_rom_progress cb, void *cb_arg, es_err *e)
{
    synth_arg a = {m, seed};
    es_synth_init();
    return es_rom_build(c, m, r, synth_rows, &a, out, threads, cb, cb_arg, e);
}

/* Tensors as recipe r would store them (es_map_bits_fn): format (into fmt[i] when fmt is not NULL), bits
 * (whole blocks per row, scales included) and element bits. */
typedef struct recipe_arg {
    const es_recipe *r;
    const es_model *m;
    es_qfmt *fmt;
} recipe_arg;

static int recipe_bits(void *arg, int i, int64_t *bits, int *elem, es_err *e)
{
    const recipe_arg *a = arg;
    const es_tensor *t = &a->m->tensors[i];
    es_qfmt f;
    if (es_recipe_format(a->r, t, &f, e)) return -1;
    int64_t rb = es_q_row_bytes(&f, es_q_padded(&f, t->cols), e);
    if (rb < 0) return -1;
    if (t->rows > 0 && rb > INT64_MAX / 8 / t->rows)
        return es_fail(e, "%s: %s under recipe %s: more than 2^63 bits", a->m->path, t->name, a->r->name);
    *bits = 8 * rb * t->rows;
    *elem = es_qtype_elem_bits(f.type);
    if (a->fmt) a->fmt[i] = f;
    return 0;
}

int es_rom_apply_recipe(const es_recipe *r, const es_chip *c, const es_model *m, es_map *pm, es_err *e)
{
    recipe_arg a = {r, m, NULL};
    es_map_weights w = {ES_BITS_RECIPE, recipe_bits, &a, 0};
    return es_map_build(pm, c, m, &w, e);
}

/* Tensors as an image holds them (es_map_bits_fn): rec[i] is model tensor i's record. */
typedef struct image_arg {
    const es_rom_image *img;
    const int *rec;
} image_arg;

static int image_bits(void *arg, int i, int64_t *bits, int *elem, es_err *e)
{
    (void)e;
    const image_arg *a = arg;
    const es_rom_tensor *t = &a->img->tensors[a->rec[i]];
    *bits = 8 * t->bytes;
    *elem = es_qtype_elem_bits(t->fmt.type);
    return 0;
}

int es_apply_rom(const char *path, const es_chip *c, const es_model *m, es_map *pm, es_err *e)
{
    memset(pm, 0, sizeof *pm);
    es_rom_image img;
    if (es_rom_open(&img, path, e)) return -1;
    int *rec = calloc((size_t)m->n_tensors + 1, sizeof *rec);
    int rc = -1;
    if (!rec) { es_fail(e, "out of memory"); goto out; }
    if (img.model_hash != es_rom_model_hash(m)) {
        es_fail(e, "%s: built for another model than %s (%s)", path, m->name, m->path);
        goto out;
    }
    if (img.geom_hash != es_rom_geom_hash(c, m)) {
        es_fail(e, "%s: built for another ROM geometry than %s's (tile.rom, head.embed_rom, "
                   "head.lm_rom, tile.layers_per_tile)", path, c->path);
        goto out;
    }
    for (int i = 0; i < m->n_tensors; i++) { /* each tensor's record, by name */
        rec[i] = -1;
        for (int j = 0; j < img.n_tensors && rec[i] < 0; j++)
            if (!strcmp(img.tensors[j].name, m->tensors[i].name)) rec[i] = j;
        if (rec[i] < 0) { es_fail(e, "%s: has no tensor %s", path, m->tensors[i].name); goto out; }
    }
    /* every bank's CRC-32 and size, as functional mode's loading checks them: a corrupt image is refused
     * in either mode with the same message */
    if (es_rom_verify(&img, e)) goto out;
    image_arg a = {&img, rec};
    es_map_weights w = {ES_BITS_IMAGE, image_bits, &a, es_rom_used_bits(&img)};
    rc = es_map_build(pm, c, m, &w, e);
out:
    free(rec);
    es_rom_close(&img);
    return rc;
}

/* Each tensor's format under the recipe, and where it goes: the ROM and first stream row the placement table
 * gives it, the table built with the recipe's bits (the fit check counts rows so too); each unit's stream rows
 * from the table, checked against its capacity; the banks' first records. */
static int lay_out(build_ctx *b, const es_recipe *r, es_err *e)
{
    const es_chip *c = b->c;
    const es_model *m = b->m;
    int rc = -1;
    es_qfmt *fmt = calloc((size_t)m->n_tensors + 1, sizeof *fmt);
    es_map pm = {0};
    recipe_arg a = {r, m, fmt};
    es_map_weights w = {ES_BITS_RECIPE, recipe_bits, &a, 0};
    if (!fmt) { es_fail(e, "out of memory"); goto out; }
    if (es_map_build(&pm, c, m, &w, e)) goto out;
    for (int i = 0; i < m->n_tensors; i++) {
        const es_tensor *mt = &m->tensors[i];
        const es_map_tensor *x = &pm.tensors[i];
        es_rom_tensor *t = &b->tensors[b->n_tensors++];
        snprintf(t->name, sizeof t->name, "%s", mt->name);
        t->role = mt->lm_head ? ES_ROLE_LM_HEAD : (int32_t)mt->role;
        t->layer = mt->layer;
        t->rows = mt->rows;
        t->cols = mt->cols;
        t->fmt = fmt[i];
        t->bytes = x->bits / 8;
        /* units: tiles 0..T-1, the embedding ROM (untied), the LM-head ROM */
        t->unit = x->rom == ES_ROM_TILE ? x->tile : x->rom == ES_ROM_EMBED ? b->n_units - 2 : b->n_units - 1;
        const es_rom_unit *u = &b->units[t->unit];
        if (u->row_bits % 8) { es_fail(e, "%s: ROM rows of %s are not whole bytes", c->path, u->label); goto out; }
        t->row_first = x->row_first;
    }
    for (int i = 0; i < b->n_units; i++) {
        es_rom_unit *u = &b->units[i];
        es_rom_kind k = u->id >= 0 ? ES_ROM_TILE : u->id == -1 ? ES_ROM_EMBED : ES_ROM_LM;
        u->stream_rows = es_map_unit_of(&pm, k, u->id >= 0 ? u->id : -1, -1)->stream_rows;
        if (u->stream_rows > u->banks * u->rows) {
            es_fail(e, "%s: key '%s.rows': ROM cannot hold the model with recipe %s: %s needs %lld rows "
                       "of %lld bits, it has %lld banks x %lld rows", c->path, es_rom_kind_key(k), r->name,
                    u->label, (long long)u->stream_rows, (long long)u->row_bits,
                    (long long)u->banks, (long long)u->rows);
            goto out;
        }
        b->bank_first[i + 1] = b->bank_first[i] + (int)u->banks;
    }
    rc = 0;
out:
    es_map_free(&pm);
    free(fmt);
    return rc;
}

int es_rom_build(const es_chip *c, const es_model *m, const es_recipe *r, es_row_fn rows, void *rows_arg,
                 const char *out, int threads, es_rom_progress cb, void *cb_arg, es_err *e)
{
    build_ctx b;
    memset(&b, 0, sizeof b);
    b.c = c;
    b.m = m;
    b.rows = rows;
    b.rows_arg = rows_arg;
    b.cb = cb;
    b.cb_arg = cb_arg;
    int64_t tiles = es_chip_tiles(c, m);
    if (tiles > 4096) return es_fail(e, "%s: more than 4096 tiles", c->path);
    if (c->store.kind != ES_STORE_ROM) /* its tensors take no ROM rows: there is no layout to write */
        return es_fail(e, "%s: key 'store.kind': a ROM image lays the weights out in the chip's ROMs, and this chip "
                          "keeps them in %s (build the image for a chip with store.kind rom)", c->path,
                       es_store_name(c->store.kind));
    int rc = -1;
    es_atomic file = {0}; /* the image: OUT.tmp until complete */
    unsigned char *index = NULL;
    b.units = calloc((size_t)tiles + 2, sizeof *b.units);
    b.tensors = calloc((size_t)m->n_tensors, sizeof *b.tensors);
    b.bank_first = calloc((size_t)tiles + 3, sizeof *b.bank_first);
    if (!b.units || !b.tensors || !b.bank_first) { es_fail(e, "out of memory"); goto out; }
    unit_geoms(c, m, b.units, &b.n_units);
    if (lay_out(&b, r, e)) goto out;
    b.banks = calloc((size_t)b.bank_first[b.n_units] + 1, sizeof *b.banks);
    if (!b.banks) { es_fail(e, "out of memory"); goto out; }
    /* the image is written beside its path and renamed over it: only a regular file may be replaced */
    if (es_check_output(out, "a ROM image", e)) goto out;
    if (es_atomic_open(&file, out, "the ROM image", e)) goto out;
    b.f = file.f;
    unsigned char hdr[HDR_BYTES];
    memset(hdr, 0, sizeof hdr);
    if (fwrite(hdr, 1, HDR_BYTES, b.f) != HDR_BYTES) { es_fail(e, "%s: write failed", file.tmp); goto out; }
    /* every bank's place: units in order, banks in order, each bank's rows stored as they are, so that the
     * file's bytes do not depend on the threads or on which unit finishes first */
    b.file_pos = HDR_BYTES;
    for (int u = 0; u < b.n_units; u++)
        for (int64_t k = 0; k < b.units[u].banks; k++) {
            const es_rom_unit *un = &b.units[u];
            es_rom_bank *bk = &b.banks[b.bank_first[u] + k];
            bk->unit = u;
            bk->bank = (uint32_t)k;
            bk->rows_used = un->stream_rows > k ? (un->stream_rows - k + un->banks - 1) / un->banks : 0;
            bk->raw_bytes = bk->comp_bytes = bk->rows_used * (un->row_bits / 8);
            bk->encoding = ES_ROM_STORED;
            bk->offset = b.file_pos;
            b.file_pos += bk->raw_bytes;
        }
    if (fflush(b.f)) { es_fail(e, "%s: write failed: %s", file.tmp, strerror(errno)); goto out; }
    pthread_mutex_init(&b.lock, NULL);
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    pthread_t th[64];
    int started = 0;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&th[i], NULL, worker, &b) == 0) started++;
    if (started == 0) worker(&b);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_mutex_destroy(&b.lock);
    if (b.failed) { if (e) *e = b.err; goto out; }
    int64_t ilen = 0;
    index = encode_index(&b, &ilen);
    if (!index) { es_fail(e, "out of memory"); goto out; }
    if (fseek(b.f, (long)b.file_pos, SEEK_SET) || fwrite(index, 1, (size_t)ilen, b.f) != (size_t)ilen) {
        es_fail(e, "%s: write failed", file.tmp);
        goto out;
    }
    encode_header(hdr, es_rom_model_hash(m), es_rom_geom_hash(c, m), r->hash, (uint64_t)b.file_pos,
                  (uint64_t)ilen, crc(index, (size_t)ilen));
    if (fseek(b.f, 0, SEEK_SET) || fwrite(hdr, 1, HDR_BYTES, b.f) != HDR_BYTES || fflush(b.f) ||
        fsync(fileno(b.f))) {
        es_fail(e, "%s: write failed: %s", file.tmp, strerror(errno));
        goto out;
    }
    if (es_atomic_commit(&file, e)) goto out;
    rc = 0;
out:
    es_atomic_abort(&file); /* a build that failed leaves no OUT.tmp */
    free(index);
    free(b.units);
    free(b.tensors);
    free(b.banks);
    free(b.bank_first);
    return rc;
}

/* ---- reading ---- */

void es_rom_close(es_rom_image *img)
{
    free(img->units);
    free(img->tensors);
    free(img->banks);
    img->units = NULL;
    img->tensors = NULL;
    img->banks = NULL;
}

static int cmp_off(const void *a, const void *b)
{
    const es_rom_bank *x = *(es_rom_bank *const *)a, *y = *(es_rom_bank *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* The 64-byte header: magic, CRC-32, version, the identity hashes, and where the index lies (checked against
 * the file's length). */
static int open_header(FILE *f, es_rom_image *img, const char *path, uint64_t *ioff, uint64_t *ilen,
                       uint32_t *icrc, es_err *e)
{
    unsigned char h[HDR_BYTES];
    if (fseek(f, 0, SEEK_END)) return es_fail(e, "%s: cannot seek", path);
    img->file_bytes = ftell(f);
    rewind(f);
    if (img->file_bytes < HDR_BYTES || fread(h, 1, HDR_BYTES, f) != HDR_BYTES)
        return es_fail(e, "%s: truncated: %lld bytes, shorter than the 64-byte header", path,
                       (long long)img->file_bytes);
    if (memcmp(h, MAGIC, 8)) return es_fail(e, "%s: not a ROM image (bad magic)", path);
    if (get32(h + 60) != crc(h, 60)) return es_fail(e, "%s: header CRC-32 mismatch", path);
    img->version = get32(h + 8);
    if (img->version < 1 || img->version > ES_ROM_VERSION || get32(h + 12) != HDR_BYTES)
        return es_fail(e, "%s: unsupported version %u (expected 1 to %d)", path, img->version, ES_ROM_VERSION);
    img->model_hash = get64(h + 16);
    img->geom_hash = get64(h + 24);
    img->recipe_hash = get64(h + 32);
    *ioff = get64(h + 40);
    *ilen = get64(h + 48);
    *icrc = get32(h + 56);
    if (*ioff < HDR_BYTES || *ilen < 16 || *ilen > (1u << 30) || *ioff > (uint64_t)img->file_bytes ||
        *ilen > (uint64_t)img->file_bytes - *ioff)
        return es_fail(e, "%s: truncated or corrupt: index of %llu bytes at %llu lies outside the %lld-byte file",
                       path, (unsigned long long)*ilen, (unsigned long long)*ioff, (long long)img->file_bytes);
    return 0;
}

/* The unit records (q at the first): geometry in range, ids in order (tiles 0..T-1, then -1 for the
 * embedding ROM when untied, then -2 for the LM head last), and their banks summing to the index's count. */
static int open_units(es_rom_image *img, const unsigned char *q, const char *path, es_err *e)
{
    uint64_t nu = (uint64_t)img->n_units;
    int64_t banks_sum = 0;
    for (uint64_t i = 0; i < nu; i++, q += UNIT_REC) {
        es_rom_unit *u = &img->units[i];
        u->id = (int32_t)get32(q);
        u->banks = get32(q + 4);
        u->rows = (int64_t)get64(q + 8);
        u->row_bits = (int64_t)get64(q + 16);
        u->stream_rows = (int64_t)get64(q + 24);
        if (u->banks < 1 || u->rows < 1 || u->rows > ((int64_t)1 << 32) || u->row_bits < 8 ||
            u->row_bits % 8 || u->row_bits > (1 << 20) || u->stream_rows < 0 || u->stream_rows > u->banks * u->rows)
            return es_fail(e, "%s: unit %llu has an impossible geometry", path, (unsigned long long)i);
        int ok = i + 1 == nu ? u->id == -2 : (u->id == (int32_t)i || (u->id == -1 && i + 2 == nu));
        if (!ok)
            return es_fail(e, "%s: unit record %llu has id %d out of order", path, (unsigned long long)i, u->id);
        banks_sum += u->banks;
        if (u->id == -2) snprintf(u->label, sizeof u->label, "lm_head");
        else if (u->id == -1) snprintf(u->label, sizeof u->label, "embed");
        else snprintf(u->label, sizeof u->label, "tile %d", u->id);
    }
    if (banks_sum != (int64_t)img->n_banks)
        return es_fail(e, "%s: index lists %llu banks, units hold %lld", path, (unsigned long long)img->n_banks,
                       (long long)banks_sum);
    return 0;
}

/* The tensor records (q at the first): role, unit, format and shape in range, bytes matching the shape in
 * the format, and the tensor's rows inside its unit's stream. */
static int open_tensors(es_rom_image *img, const unsigned char *q, const char *path, es_err *e)
{
    for (uint64_t i = 0; i < (uint64_t)img->n_tensors; i++, q += TENSOR_REC) {
        es_rom_tensor *t = &img->tensors[i];
        memcpy(t->name, q, 95);
        t->name[95] = 0;
        t->role = (int32_t)get32(q + 96);
        t->layer = (int32_t)get32(q + 100);
        t->rows = (int64_t)get64(q + 104);
        t->cols = (int64_t)get64(q + 112);
        t->fmt.type = (es_qtype)q[120];
        t->fmt.nibbles = (es_nibble_order)q[121];
        t->fmt.group = q[122] | q[123] << 8;
        uint32_t ts = get32(q + 124);
        memcpy(&t->fmt.tensor_scale, &ts, 4);
        t->unit = (int32_t)get32(q + 128);
        t->row_first = (int64_t)get64(q + 136);
        t->bytes = (int64_t)get64(q + 144);
        es_err fe;
        int64_t rb;
        if (t->role < 0 || t->role >= ES_ROLE_COUNT || t->unit < 0 || t->unit >= img->n_units ||
            q[120] >= ES_Q_COUNT || q[121] > ES_NIB_INTERLEAVED || t->rows < 1 || t->cols < 1 ||
            t->rows > ((int64_t)1 << 32) || t->cols > ((int64_t)1 << 32) || es_qfmt_check(&t->fmt, &fe) ||
            (rb = es_q_row_bytes(&t->fmt, es_q_padded(&t->fmt, t->cols), &fe)) < 0 || rb > INT64_MAX / t->rows ||
            rb * t->rows != t->bytes)
            return es_fail(e, "%s: tensor record %llu (%s) is corrupt", path, (unsigned long long)i, t->name);
        const es_rom_unit *u = &img->units[t->unit];
        int64_t rows_needed = (t->bytes + u->row_bits / 8 - 1) / (u->row_bits / 8);
        if (t->row_first < 0 || t->row_first > u->stream_rows || rows_needed > u->stream_rows - t->row_first)
            return es_fail(e, "%s: tensor %s lies outside the rows of %s", path, t->name, u->label);
    }
    return 0;
}

/* The bank records (q at the first): in unit and bank order, each holding its share of the unit's stream
 * rows, its payload between the header and the index (ioff); order[] gets each bank for the overlap check. */
static int open_banks(es_rom_image *img, const unsigned char *q, uint64_t ioff, es_rom_bank **order,
                      const char *path, es_err *e)
{
    int32_t expect_unit = 0;
    uint32_t expect_bank = 0;
    for (uint64_t i = 0; i < (uint64_t)img->n_banks; i++, q += BANK_REC) {
        es_rom_bank *k = &img->banks[i];
        k->unit = (int32_t)get32(q);
        k->bank = get32(q + 4);
        k->rows_used = (int64_t)get64(q + 8);
        k->raw_bytes = (int64_t)get64(q + 16);
        k->comp_bytes = (int64_t)get64(q + 24);
        k->offset = (int64_t)get64(q + 32);
        k->crc = get32(q + 40);
        k->encoding = get32(q + 44);
        if (k->encoding != ES_ROM_ZLIB && (img->version < 2 || k->encoding != ES_ROM_STORED))
            return es_fail(e, "%s: bank record %llu has encoding %u (expected 0, zlib%s)", path,
                           (unsigned long long)i, k->encoding, img->version < 2 ? ", in a version 1 image" : ", or 1, stored");
        if (k->unit != expect_unit || k->bank != expect_bank)
            return es_fail(e, "%s: bank record %llu is out of order (unit %d bank %u)", path,
                           (unsigned long long)i, k->unit, k->bank);
        if (++expect_bank == (uint32_t)img->units[expect_unit].banks) { expect_unit++; expect_bank = 0; }
        const es_rom_unit *u = &img->units[k->unit];
        int64_t want_rows = u->stream_rows > (int64_t)k->bank ? (u->stream_rows - (int64_t)k->bank + u->banks - 1) / u->banks : 0;
        if ((int64_t)k->bank >= u->banks || k->rows_used != want_rows ||
            k->raw_bytes != k->rows_used * (u->row_bits / 8) || k->comp_bytes < 0 ||
            (k->encoding == ES_ROM_STORED && k->comp_bytes != k->raw_bytes) ||
            k->offset < HDR_BYTES || (uint64_t)k->offset > ioff || (uint64_t)k->comp_bytes > ioff - (uint64_t)k->offset)
            return es_fail(e, "%s: %s bank %u: record is corrupt (offset %lld, %lld bytes)", path, u->label,
                           k->bank, (long long)k->offset, (long long)k->comp_bytes);
        order[i] = k;
    }
    qsort(order, (size_t)img->n_banks, sizeof *order, cmp_off);
    for (int i = 1; i < img->n_banks; i++)
        if (order[i - 1]->offset + order[i - 1]->comp_bytes > order[i]->offset)
            return es_fail(e, "%s: banks overlap at offset %lld", path, (long long)order[i]->offset);
    return 0;
}

int es_rom_open(es_rom_image *img, const char *path, es_err *e)
{
    memset(img, 0, sizeof *img);
    snprintf(img->path, sizeof img->path, "%s", path);
    FILE *f = es_fopen_regular(path, "a ROM image file (etchsim rom build -o)", e);
    if (!f) return -1;
    unsigned char *ix = NULL;
    es_rom_bank **order = NULL;
    int rc = -1;
    uint64_t ioff = 0, ilen = 0;
    uint32_t icrc = 0;
    if (open_header(f, img, path, &ioff, &ilen, &icrc, e)) goto out;
    ix = malloc(ilen);
    if (!ix || fseek(f, (long)ioff, SEEK_SET) || fread(ix, 1, ilen, f) != ilen) {
        es_fail(e, "%s: cannot read the index", path);
        goto out;
    }
    if (crc(ix, ilen) != icrc) { es_fail(e, "%s: index CRC-32 mismatch", path); goto out; }
    uint64_t nu = get32(ix), nt = get32(ix + 4), nb = get32(ix + 8);
    if (16 + nu * UNIT_REC + nt * TENSOR_REC + nb * BANK_REC != ilen || nu == 0 || nu > 4098) {
        es_fail(e, "%s: index sizes disagree (%llu units, %llu tensors, %llu banks in %llu bytes)", path,
                (unsigned long long)nu, (unsigned long long)nt, (unsigned long long)nb, (unsigned long long)ilen);
        goto out;
    }
    img->n_units = (int)nu;
    img->n_tensors = (int)nt;
    img->n_banks = (int)nb;
    img->units = calloc(nu, sizeof *img->units);
    img->tensors = calloc(nt + 1, sizeof *img->tensors);
    img->banks = calloc(nb + 1, sizeof *img->banks);
    order = calloc(nb + 1, sizeof *order);
    if (!img->units || !img->tensors || !img->banks || !order) { es_fail(e, "%s: out of memory", path); goto out; }
    const unsigned char *q = ix + 16;
    if (open_units(img, q, path, e)) goto out;
    q += nu * UNIT_REC;
    if (open_tensors(img, q, path, e)) goto out;
    q += nt * TENSOR_REC;
    if (open_banks(img, q, ioff, order, path, e)) goto out;
    rc = 0;
out:
    free(order);
    free(ix);
    fclose(f);
    if (rc) es_rom_close(img);
    return rc;
}

void es_rom_bank_label(const es_rom_image *img, int k, char *out, size_t n)
{
    const es_rom_bank *b = &img->banks[k];
    snprintf(out, n, "%s bank %u", img->units[b->unit].label, b->bank);
}

/* Read bank k into raw (raw_bytes long): a stored payload straight into it, a zlib one through comp; its
 * CRC-32 checked either way. */
static int read_bank(int fd, const es_rom_image *img, int k, unsigned char *comp, unsigned char *raw, es_err *e)
{
    const es_rom_bank *b = &img->banks[k];
    char label[64];
    es_rom_bank_label(img, k, label, sizeof label);
    unsigned char *pay = b->encoding == ES_ROM_STORED ? raw : comp;
    if (es_pread_all(fd, pay, b->comp_bytes, b->offset))
        return es_fail(e, "%s: %s: cannot read %lld bytes at offset %lld", img->path, label,
                       (long long)b->comp_bytes, (long long)b->offset);
    if (crc(pay, (size_t)b->comp_bytes) != b->crc)
        return es_fail(e, "%s: %s: CRC-32 mismatch (payload at offset %lld is corrupt)", img->path, label,
                       (long long)b->offset);
    if (b->encoding == ES_ROM_STORED) return 0;
    uLongf len = (uLongf)b->raw_bytes;
    if (uncompress(raw, &len, comp, (uLong)b->comp_bytes) != Z_OK || (int64_t)len != b->raw_bytes)
        return es_fail(e, "%s: %s: payload does not inflate to %lld bytes", img->path, label,
                       (long long)b->raw_bytes);
    return 0;
}

static int bank_buffers(const es_rom_image *img, unsigned char **comp, unsigned char **raw)
{
    int64_t mc = 1, mr = 1;
    for (int k = 0; k < img->n_banks; k++) {
        if (img->banks[k].comp_bytes > mc) mc = img->banks[k].comp_bytes;
        if (img->banks[k].raw_bytes > mr) mr = img->banks[k].raw_bytes;
    }
    *comp = malloc((size_t)mc);
    *raw = malloc((size_t)mr);
    return *comp && *raw ? 0 : -1;
}

int es_rom_verify(const es_rom_image *img, es_err *e)
{
    int f = open(img->path, O_RDONLY);
    if (f < 0) return es_fail(e, "%s: cannot open: %s", img->path, strerror(errno));
    unsigned char *comp = NULL, *raw = NULL;
    int bad = 0;
    if (bank_buffers(img, &comp, &raw)) { close(f); free(comp); free(raw); return es_fail(e, "out of memory"); }
    for (int k = 0; k < img->n_banks; k++) {
        es_err be;
        if (read_bank(f, img, k, comp, raw, &be)) {
            if (!bad && e) *e = be;
            bad++;
        }
    }
    free(comp);
    free(raw);
    close(f);
    return bad;
}

int es_rom_unit_bytes(const es_rom_image *img, int u, void *out, es_err *e)
{
    const es_rom_unit *un = &img->units[u];
    int64_t rb = un->row_bits / 8, first = 0;
    for (int k = 0; k < img->n_banks && img->banks[k].unit != u; k++) first++;
    int f = open(img->path, O_RDONLY);
    if (f < 0) return es_fail(e, "%s: cannot open: %s", img->path, strerror(errno));
    unsigned char *comp = NULL, *raw = NULL, *dst = out;
    int rc = -1;
    if (bank_buffers(img, &comp, &raw)) { es_fail(e, "out of memory"); goto out; }
    /* stream row s lives in bank s mod banks, at row s / banks */
    for (int64_t k = 0; k < un->banks && k < un->stream_rows; k++) {
        if (read_bank(f, img, (int)(first + k), comp, raw, e)) goto out;
        for (int64_t s = k; s < un->stream_rows; s += un->banks)
            memcpy(dst + s * rb, raw + (s / un->banks) * rb, (size_t)rb);
    }
    rc = 0;
out:
    free(comp);
    free(raw);
    close(f);
    return rc;
}

int es_rom_tensor_bytes(const es_rom_image *img, int i, void *out, es_err *e)
{
    const es_rom_tensor *t = &img->tensors[i];
    const es_rom_unit *u = &img->units[t->unit];
    int64_t rb = u->row_bits / 8, first = 0;
    for (int k = 0; k < img->n_banks && img->banks[k].unit != t->unit; k++) first++;
    int f = open(img->path, O_RDONLY);
    if (f < 0) return es_fail(e, "%s: cannot open: %s", img->path, strerror(errno));
    unsigned char *comp = NULL, *raw = NULL, *dst = out;
    int rc = -1;
    if (bank_buffers(img, &comp, &raw)) { es_fail(e, "out of memory"); goto out; }
    int64_t nrows = (t->bytes + rb - 1) / rb;
    /* bank by bank: copy the rows of this tensor each bank holds */
    for (int64_t k = 0; k < u->banks; k++) {
        int64_t s0 = t->row_first + ((k - t->row_first % u->banks) + u->banks) % u->banks;
        if (s0 >= t->row_first + nrows) continue;
        if (read_bank(f, img, (int)(first + k), comp, raw, e)) goto out;
        for (int64_t s = s0; s < t->row_first + nrows; s += u->banks) {
            int64_t off = (s - t->row_first) * rb, len = t->bytes - off < rb ? t->bytes - off : rb;
            memcpy(dst + off, raw + (s / u->banks) * rb, (size_t)len);
        }
    }
    rc = 0;
out:
    free(comp);
    free(raw);
    close(f);
    return rc;
}

void *es_rom_alloc(int64_t bytes)
{
    enum { HUGE = 2 << 20 };
    if (bytes < HUGE) return malloc((size_t)(bytes > 0 ? bytes : 1));
    void *p = NULL;
    if (posix_memalign(&p, HUGE, (size_t)bytes)) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, (size_t)bytes, MADV_HUGEPAGE); /* advice: without it (or refused) the pages are 4 KiB */
#endif
    return p;
}

double es_rom_used_bits(const es_rom_image *img)
{
    double bits = 0;
    for (int i = 0; i < img->n_units; i++) bits += (double)img->units[i].stream_rows * (double)img->units[i].row_bits;
    return bits;
}
