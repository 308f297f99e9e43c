/* es_gguf: GGUF v3 header, metadata and tensor infos (see es_gguf.h).
 * The reader never trusts the header: every count is bounded by the bytes
 * left in the file before anything is allocated or read. */
#define _POSIX_C_SOURCE 200809L
#include "es_gguf.h"
#include "es_fs.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ENTRIES 1000000
#define MAX_STRING (64 * 1024)

typedef struct rd {
    int fd;
    int64_t pos, size;
    unsigned char buf[1 << 16];
    int64_t buf_at, buf_len; /* file offset and length of buf's contents */
} rd;


static int rd_bytes(rd *r, void *out, int64_t n)
{
    if (n < 0 || n > r->size - r->pos) return -1;
    unsigned char *o = out;
    while (n > 0) {
        if (r->pos < r->buf_at || r->pos >= r->buf_at + r->buf_len) {
            int64_t left = r->size - r->pos;
            int64_t want = left < (int64_t)sizeof r->buf ? left : (int64_t)sizeof r->buf;
            if (es_pread_all(r->fd, r->buf, want, r->pos)) return -1;
            r->buf_at = r->pos;
            r->buf_len = want;
        }
        int64_t k = r->buf_at + r->buf_len - r->pos;
        if (k > n) k = n;
        if (o) { memcpy(o, r->buf + (r->pos - r->buf_at), (size_t)k); o += k; }
        r->pos += k;
        n -= k;
    }
    return 0;
}

static int rd_u32(rd *r, uint32_t *v)
{
    unsigned char b[4];
    if (rd_bytes(r, b, 4)) return -1;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

static int rd_u64(rd *r, uint64_t *v)
{
    unsigned char b[8];
    if (rd_bytes(r, b, 8)) return -1;
    *v = 0;
    for (int i = 7; i >= 0; i--) *v = *v << 8 | b[i];
    return 0;
}

/* A string into out (NUL-terminated) when shorter than cap; out NULL skips it. */
static int rd_str(rd *r, char *out, size_t cap)
{
    uint64_t n;
    if (rd_u64(r, &n) || n > (uint64_t)(r->size - r->pos)) return -1;
    if (!out) return rd_bytes(r, NULL, (int64_t)n);
    if (n >= cap) return -1;
    if (rd_bytes(r, out, (int64_t)n)) return -1;
    out[n] = 0;
    return 0;
}

static int scalar_size(uint32_t t)
{
    static const int sz[13] = {1, 1, 2, 2, 4, 4, 4, 1, -1, -1, 8, 8, 8};
    return t < 13 ? sz[t] : 0;
}

/* Decode a numeric scalar of type t from b (little-endian). */
static void decode_num(uint32_t t, const unsigned char *b, es_gguf_kv *kv)
{
    uint64_t u = 0;
    int sz = scalar_size(t);
    for (int i = sz - 1; i >= 0; i--) u = u << 8 | b[i];
    kv->is_int = 1;
    switch (t) {
    case ES_GGUF_I8: kv->i = (int8_t)u; break;
    case ES_GGUF_I16: kv->i = (int16_t)u; break;
    case ES_GGUF_I32: kv->i = (int32_t)u; break;
    case ES_GGUF_I64: kv->i = (int64_t)u; break;
    case ES_GGUF_F32: { uint32_t w = (uint32_t)u; float f; memcpy(&f, &w, 4); kv->f = f; kv->is_int = 0; return; }
    case ES_GGUF_F64: { double d; memcpy(&d, &u, 8); kv->f = d; kv->is_int = 0; return; }
    case ES_GGUF_U64:
        if (u > (uint64_t)INT64_MAX) { kv->is_int = 0; kv->f = (double)u; return; }
        kv->i = (int64_t)u;
        break;
    default: kv->i = (int64_t)u; break; /* u8, u16, u32, bool */
    }
    kv->f = (double)kv->i;
}

static int skip_value(rd *r, uint32_t type, int depth)
{
    if (type == ES_GGUF_STRING) return rd_str(r, NULL, 0);
    if (type == ES_GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (depth > 4 || rd_u32(r, &et) || rd_u64(r, &n)) return -1;
        int sz = scalar_size(et);
        if (sz == 0) return -1;
        if (sz > 0) {
            if (n > (uint64_t)(r->size - r->pos) / (uint64_t)sz) return -1;
            return rd_bytes(r, NULL, (int64_t)(n * (uint64_t)sz));
        }
        if (n > (uint64_t)(r->size - r->pos)) return -1; /* every element takes a byte at least */
        for (uint64_t i = 0; i < n; i++)
            if (skip_value(r, et, depth + 1)) return -1;
        return 0;
    }
    int sz = scalar_size(type);
    return sz > 0 ? rd_bytes(r, NULL, sz) : -1;
}

int es_gguf_is_gguf(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    unsigned char m[4] = {0};
    int ok = es_pread_all(fd, m, 4, 0) == 0 && !memcmp(m, "GGUF", 4);
    close(fd);
    return ok;
}

static int read_kv(es_gguf *g, rd *r, es_gguf_kv *kv, uint64_t i, es_err *e)
{
    if (rd_str(r, kv->key, sizeof kv->key) || rd_u32(r, &kv->type))
        return es_fail(e, "%s: metadata entry %llu: truncated or key longer than 255 bytes", g->path,
                       (unsigned long long)i);
    if (kv->type == ES_GGUF_STRING) {
        uint64_t n;
        if (rd_u64(r, &n) || n > (uint64_t)(r->size - r->pos))
            return es_fail(e, "%s: metadata '%s': string runs past the end of the file", g->path, kv->key);
        if (n > MAX_STRING) return rd_bytes(r, NULL, (int64_t)n); /* kept as absent-valued */
        kv->s = malloc((size_t)n + 1);
        if (!kv->s) return es_fail(e, "%s: out of memory", g->path);
        if (rd_bytes(r, kv->s, (int64_t)n)) return es_fail(e, "%s: read failed", g->path);
        kv->s[n] = 0;
        return 0;
    }
    if (kv->type == ES_GGUF_ARRAY) {
        int64_t start = r->pos;
        if (rd_u32(r, &kv->elem_type) || rd_u64(r, &kv->count))
            return es_fail(e, "%s: metadata '%s': truncated array", g->path, kv->key);
        kv->at = r->pos;
        r->pos = start;
        if (skip_value(r, kv->type, 0))
            return es_fail(e, "%s: metadata '%s': bad element type or array runs past the end of the file",
                           g->path, kv->key);
        return 0;
    }
    int sz = scalar_size(kv->type);
    unsigned char b[8];
    if (sz <= 0) return es_fail(e, "%s: metadata '%s': unknown value type %u", g->path, kv->key, kv->type);
    if (rd_bytes(r, b, sz)) return es_fail(e, "%s: metadata '%s': value runs past the end of the file", g->path, kv->key);
    decode_num(kv->type, b, kv);
    return 0;
}

int es_gguf_open(es_gguf *g, const char *path, es_err *e)
{
    memset(g, 0, sizeof *g);
    g->fd = -1;
    snprintf(g->path, sizeof g->path, "%s", path);
    g->fd = open(path, O_RDONLY);
    if (g->fd < 0) return es_fail(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(g->fd, &st) || !S_ISREG(st.st_mode)) {
        es_gguf_close(g);
        return es_fail(e, "%s: not a regular file", path);
    }
    g->size = (int64_t)st.st_size;
    g->alignment = 32;
    rd *r = calloc(1, sizeof *r);
    if (!r) { es_gguf_close(g); return es_fail(e, "%s: out of memory", path); }
    r->fd = g->fd;
    r->size = g->size;
    int rc = -1;
    unsigned char magic[4];
    uint32_t version = 0;
    uint64_t nt, nk;
    /* the header: magic, version, tensor count and metadata count */
    if (g->size == 0) { es_fail(e, "%s: empty file (0 bytes); expected a GGUF file", path); goto out; }
    if (g->size >= 4 && (rd_bytes(r, magic, 4) || memcmp(magic, "GGUF", 4))) {
        es_fail(e, "%s: not a GGUF file (it does not begin with \"GGUF\")", path);
        goto out;
    }
    if (g->size < 24) {
        es_fail(e, "%s: %lld bytes, too short for a GGUF file (its header alone is 24 bytes)", path, (long long)g->size);
        goto out;
    }
    if (rd_u32(r, &version) || version != 3) { es_fail(e, "%s: GGUF version %u (expected 3)", path, version); goto out; }
    if (rd_u64(r, &nt) || rd_u64(r, &nk)) { es_fail(e, "%s: truncated header", path); goto out; }
    if (nt > MAX_ENTRIES || nk > MAX_ENTRIES) {
        es_fail(e, "%s: %llu tensors and %llu metadata entries exceed the limits of 1,000,000", path,
                (unsigned long long)nt, (unsigned long long)nk);
        goto out;
    }
    /* each entry takes at least 12 bytes: bound the allocation by the file */
    if (nk > (uint64_t)g->size / 12 || nt > (uint64_t)g->size / 12) {
        es_fail(e, "%s: header claims %llu metadata entries and %llu tensors, more than the file holds", path,
                (unsigned long long)nk, (unsigned long long)nt);
        goto out;
    }
    g->kv = calloc((size_t)nk + 1, sizeof *g->kv);
    g->t = calloc((size_t)nt + 1, sizeof *g->t);
    if (!g->kv || !g->t) { es_fail(e, "%s: out of memory", path); goto out; }
    for (uint64_t i = 0; i < nk; i++) {
        es_gguf_kv *kv = &g->kv[g->n_kv++];
        if (read_kv(g, r, kv, i, e)) goto out;
        if (!strcmp(kv->key, "general.alignment")) {
            if (kv->type != ES_GGUF_U32 || kv->i == 0 || kv->i > 65536 || (kv->i & (kv->i - 1))) {
                es_fail(e, "%s: metadata 'general.alignment': expected a u32 power of two up to 65536", path);
                goto out;
            }
            g->alignment = (uint32_t)kv->i;
        }
    }
    for (uint64_t i = 0; i < nt; i++) {
        es_gguf_tensor *t = &g->t[g->n_tensors++];
        if (rd_str(r, t->name, sizeof t->name) || rd_u32(r, &t->n_dims)) {
            es_fail(e, "%s: tensor info %llu: truncated or name longer than 127 bytes", path, (unsigned long long)i);
            goto out;
        }
        if (t->n_dims < 1 || t->n_dims > 4) {
            es_fail(e, "%s: tensor %s: %u dimensions (expected 1 to 4)", path, t->name, t->n_dims);
            goto out;
        }
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (rd_u64(r, &t->ne[d]) || t->ne[d] > ((uint64_t)1 << 40)) {
                es_fail(e, "%s: tensor %s: dimension %u missing or beyond 2^40", path, t->name, d);
                goto out;
            }
        if (rd_u32(r, &t->type) || rd_u64(r, &t->offset)) {
            es_fail(e, "%s: tensor %s: truncated info", path, t->name);
            goto out;
        }
        if (t->offset % g->alignment) {
            es_fail(e, "%s: tensor %s: offset %llu is not aligned to %u", path, t->name,
                    (unsigned long long)t->offset, g->alignment);
            goto out;
        }
    }
    g->data_at = (r->pos + g->alignment - 1) / g->alignment * g->alignment;
    rc = 0;
out:
    free(r);
    if (rc) es_gguf_close(g);
    return rc;
}

void es_gguf_close(es_gguf *g)
{
    if (g->fd >= 0) close(g->fd);
    for (int i = 0; i < g->n_kv; i++) free(g->kv[i].s);
    free(g->kv);
    free(g->t);
    g->fd = -1;
    g->kv = NULL;
    g->t = NULL;
    g->n_kv = g->n_tensors = 0;
}

const es_gguf_kv *es_gguf_find(const es_gguf *g, const char *key)
{
    for (int i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const es_gguf_tensor *es_gguf_tensor_find(const es_gguf *g, const char *name)
{
    for (int i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->t[i].name, name)) return &g->t[i];
    return NULL;
}

static int is_num(const es_gguf_kv *kv)
{
    return kv->type != ES_GGUF_STRING && kv->type != ES_GGUF_ARRAY && kv->type != ES_GGUF_BOOL;
}

int es_gguf_i64_opt(const es_gguf *g, const char *key, int64_t lo, int64_t hi, int64_t dflt,
                    int64_t *out, es_err *e)
{
    const es_gguf_kv *kv = es_gguf_find(g, key);
    if (!kv) { *out = dflt; return 0; }
    if (!is_num(kv) || !kv->is_int)
        return es_fail(e, "%s: metadata '%s': expected an integer from %lld to %lld", g->path, key,
                       (long long)lo, (long long)hi);
    if (kv->i < lo || kv->i > hi)
        return es_fail(e, "%s: metadata '%s': expected an integer from %lld to %lld, got %lld", g->path, key,
                       (long long)lo, (long long)hi, (long long)kv->i);
    *out = kv->i;
    return 0;
}

int es_gguf_i64(const es_gguf *g, const char *key, int64_t lo, int64_t hi, int64_t *out, es_err *e)
{
    if (!es_gguf_find(g, key)) return es_fail(e, "%s: required metadata key '%s' is missing", g->path, key);
    return es_gguf_i64_opt(g, key, lo, hi, 0, out, e);
}

int es_gguf_num_opt(const es_gguf *g, const char *key, double lo, double hi, double dflt, double *out,
                    es_err *e)
{
    const es_gguf_kv *kv = es_gguf_find(g, key);
    if (!kv) { *out = dflt; return 0; }
    if (!is_num(kv) || !(kv->f >= lo && kv->f <= hi))
        return es_fail(e, "%s: metadata '%s': expected a number from %g to %g", g->path, key, lo, hi);
    *out = kv->f;
    return 0;
}

int es_gguf_str(const es_gguf *g, const char *key, const char **out, es_err *e)
{
    const es_gguf_kv *kv = es_gguf_find(g, key);
    if (!kv) return es_fail(e, "%s: required metadata key '%s' is missing", g->path, key);
    if (kv->type != ES_GGUF_STRING || !kv->s)
        return es_fail(e, "%s: metadata '%s': expected a string", g->path, key);
    *out = kv->s;
    return 0;
}

int es_gguf_read(const es_gguf *g, void *buf, int64_t n, int64_t off, es_err *e)
{
    if (n < 0 || off < 0 || off > g->size || n > g->size - off || es_pread_all(g->fd, buf, n, off))
        return es_fail(e, "%s: cannot read %lld bytes at offset %lld", g->path, (long long)n, (long long)off);
    return 0;
}

static const es_gguf_kv *find_array(const es_gguf *g, const char *key, es_err *e)
{
    const es_gguf_kv *kv = es_gguf_find(g, key);
    if (!kv) { es_fail(e, "%s: required metadata key '%s' is missing", g->path, key); return NULL; }
    if (kv->type != ES_GGUF_ARRAY) { es_fail(e, "%s: metadata '%s': expected an array", g->path, key); return NULL; }
    return kv;
}

int64_t es_gguf_arr_count(const es_gguf *g, const char *key, es_err *e)
{
    const es_gguf_kv *kv = find_array(g, key, e);
    return kv ? (int64_t)kv->count : -1;
}

int es_gguf_arr_strings(const es_gguf *g, const char *key,
                        int (*cb)(void *arg, int64_t i, const char *s, size_t n), void *arg, es_err *e)
{
    const es_gguf_kv *kv = find_array(g, key, e);
    if (!kv) return -1;
    if (kv->elem_type != ES_GGUF_STRING)
        return es_fail(e, "%s: metadata '%s': expected an array of strings", g->path, key);
    rd *r = calloc(1, sizeof *r);
    char *s = malloc(MAX_STRING + 1);
    int rc = -1;
    if (!r || !s) { es_fail(e, "%s: out of memory", g->path); goto out; }
    r->fd = g->fd;
    r->size = g->size;
    r->pos = kv->at;
    for (uint64_t i = 0; i < kv->count; i++) {
        uint64_t n;
        if (rd_u64(r, &n) || n > MAX_STRING || rd_bytes(r, s, (int64_t)n)) {
            es_fail(e, "%s: metadata '%s': string %llu is longer than %d bytes or runs past the end of the file",
                    g->path, key, (unsigned long long)i, MAX_STRING);
            goto out;
        }
        s[n] = 0;
        if (cb(arg, (int64_t)i, s, (size_t)n)) goto out;
    }
    rc = 0;
out:
    free(s);
    free(r);
    return rc;
}

int es_gguf_arr_nums(const es_gguf *g, const char *key, double **out, int64_t *n, es_err *e)
{
    *out = NULL;
    *n = 0;
    const es_gguf_kv *kv = find_array(g, key, e);
    if (!kv) return -1;
    int sz = scalar_size(kv->elem_type);
    if (sz <= 0 || kv->elem_type == ES_GGUF_BOOL)
        return es_fail(e, "%s: metadata '%s': expected an array of numbers", g->path, key);
    /* skip_value on open checked count x size against the file */
    unsigned char *raw = malloc((size_t)kv->count * (size_t)sz + 1);
    double *v = malloc(((size_t)kv->count + 1) * sizeof *v);
    if (!raw || !v) { free(raw); free(v); return es_fail(e, "%s: out of memory", g->path); }
    if (es_gguf_read(g, raw, (int64_t)kv->count * sz, kv->at, e)) { free(raw); free(v); return -1; }
    for (uint64_t i = 0; i < kv->count; i++) {
        es_gguf_kv tmp;
        decode_num(kv->elem_type, raw + i * (uint64_t)sz, &tmp);
        v[i] = tmp.f;
    }
    free(raw);
    *out = v;
    *n = (int64_t)kv->count;
    return 0;
}
