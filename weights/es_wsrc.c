/* es_wsrc: safetensors and GGUF readers and the name and layout mapping
 * onto the graph (see es_wsrc.h). Parsers never trust a header: counts,
 * lengths, shapes and offsets are checked against the file size and for
 * overflow before anything is allocated or read. */
#define _POSIX_C_SOURCE 200809L
#include "es_wsrc.h"
#include "es_cfg.h"
#include "es_fs.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER 100000000LL

/* ---- files ---- */

static int64_t file_size(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? (int64_t)st.st_size : -1;
}

static int add_file(es_wsrc *s, const char *path, es_err *e)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return es_fail(e, "%s: cannot open: %s", path, strerror(errno));
    int *fds = realloc(s->fds, (size_t)(s->n_files + 1) * sizeof *fds);
    char(*files)[512] = fds ? realloc(s->files, (size_t)(s->n_files + 1) * sizeof *files) : NULL;
    if (fds) s->fds = fds;
    if (!fds || !files) {
        close(fd);
        return es_fail(e, "%s: out of memory", path);
    }
    s->files = files;
    s->fds[s->n_files] = fd;
    snprintf(s->files[s->n_files], 512, "%s", path);
    return s->n_files++;
}

static int read_at(int fd, void *buf, int64_t n, int64_t off)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, (size_t)n, (off_t)off);
        if (r <= 0) return -1;
        p += r;
        n -= r;
        off += r;
    }
    return 0;
}

static es_wtensor *new_tensor(es_wsrc *s, es_err *e)
{
    if (s->n >= 1000000) { es_fail(e, "%s: more than a million tensors", s->path); return NULL; }
    es_wtensor *t = realloc(s->t, (size_t)(s->n + 1) * sizeof *t);
    if (!t) { es_fail(e, "%s: out of memory", s->path); return NULL; }
    s->t = t;
    memset(&s->t[s->n], 0, sizeof s->t[s->n]);
    return &s->t[s->n++];
}

static int mul_ok(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }

typedef struct span { int64_t begin, end; const char *name; } span;
static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

/* ---- safetensors ---- */

static int st_parse(es_wsrc *s, int fi, es_err *e)
{
    const char *path = s->files[fi];
    int fd = s->fds[fi];
    int64_t size = file_size(fd);
    unsigned char len8[8];
    if (size < 8 || read_at(fd, len8, 8, 0))
        return es_fail(e, "%s: truncated: shorter than the 8-byte header length", path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    if (n > (uint64_t)ST_MAX_HEADER)
        return es_fail(e, "%s: header length %llu exceeds the limit of %lld bytes", path,
                       (unsigned long long)n, ST_MAX_HEADER);
    if ((int64_t)n > size - 8)
        return es_fail(e, "%s: header length %llu runs past the end of the %lld-byte file", path,
                       (unsigned long long)n, (long long)size);
    char *json = malloc(n + 1);
    if (!json) return es_fail(e, "%s: out of memory", path);
    if (read_at(fd, json, (int64_t)n, 8)) { free(json); return es_fail(e, "%s: read failed", path); }
    json[n] = 0;
    cJSON *root = cJSON_ParseWithLength(json, n);
    free(json);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return es_fail(e, "%s: header is not a JSON object", path);
    }
    int64_t data0 = 8 + (int64_t)n, data_len = size - data0;
    int count = cJSON_GetArraySize(root), ns = 0, rc = -1;
    span *sp = calloc((size_t)count + 1, sizeof *sp);
    if (!sp) { es_fail(e, "%s: out of memory", path); goto out; }
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        const char *name = it->string;
        if (!strcmp(name, "__metadata__")) continue;
        if (strlen(name) >= sizeof s->t[0].name) { es_fail(e, "%s: tensor name longer than 127 bytes", path); goto out; }
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *of = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2) {
            es_fail(e, "%s: tensor %s: expected dtype, shape and data_offsets [begin, end]", path, name);
            goto out;
        }
        es_qtype q;
        int64_t esize;
        if (!strcmp(dt->valuestring, "BF16")) { q = ES_Q_BF16; esize = 2; }
        else if (!strcmp(dt->valuestring, "F16")) { q = ES_Q_F16; esize = 2; }
        else if (!strcmp(dt->valuestring, "F32")) { q = ES_Q_F32; esize = 4; }
        else {
            es_fail(e, "%s: tensor %s: unknown or unsupported dtype '%.32s' (expected BF16, F16 or F32)",
                    path, name, dt->valuestring);
            goto out;
        }
        es_wtensor *t = new_tensor(s, e);
        if (!t) goto out;
        snprintf(t->name, sizeof t->name, "%s", name);
        t->file = fi;
        t->fmt.type = q;
        t->fmt.tensor_scale = 1.0f;
        t->ndims = cJSON_GetArraySize(sh);
        if (t->ndims < 1 || t->ndims > 4) { es_fail(e, "%s: tensor %s: %d dimensions (expected 1 to 4)", path, name, t->ndims); goto out; }
        int64_t elems = 1;
        for (int d = 0; d < t->ndims; d++) {
            const cJSON *v = cJSON_GetArrayItem(sh, d);
            if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9.0e15 ||
                v->valuedouble != (double)(int64_t)v->valuedouble) {
                es_fail(e, "%s: tensor %s: shape entries must be non-negative integers", path, name);
                goto out;
            }
            t->dims[d] = (int64_t)v->valuedouble;
            if (!mul_ok(elems, t->dims[d], &elems)) { es_fail(e, "%s: tensor %s: shape overflows", path, name); goto out; }
        }
        int64_t bytes;
        if (!mul_ok(elems, esize, &bytes)) {
            es_fail(e, "%s: tensor %s: shape times dtype size overflows", path, name);
            goto out;
        }
        const cJSON *b = cJSON_GetArrayItem(of, 0), *en = cJSON_GetArrayItem(of, 1);
        if (!cJSON_IsNumber(b) || !cJSON_IsNumber(en) || b->valuedouble < 0 || en->valuedouble < b->valuedouble ||
            en->valuedouble > (double)data_len) {
            es_fail(e, "%s: tensor %s: data_offsets lie outside the %lld-byte data area", path, name, (long long)data_len);
            goto out;
        }
        int64_t begin = (int64_t)b->valuedouble, end = (int64_t)en->valuedouble;
        if (end - begin != bytes) {
            es_fail(e, "%s: tensor %s: data_offsets span %lld bytes, shape x dtype needs %lld", path, name,
                    (long long)(end - begin), (long long)bytes);
            goto out;
        }
        t->offset = data0 + begin;
        t->nbytes = bytes;
        sp[ns++] = (span){begin, end, t->name};
    }
    qsort(sp, (size_t)ns, sizeof *sp, cmp_span);
    int64_t at = 0;
    for (int i = 0; i < ns; i++) {
        if (sp[i].begin < at) { es_fail(e, "%s: tensor %s overlaps the one before it", path, sp[i].name); goto out; }
        if (sp[i].begin > at) { es_fail(e, "%s: gap of %lld bytes before tensor %s", path, (long long)(sp[i].begin - at), sp[i].name); goto out; }
        at = sp[i].end;
    }
    if (at != data_len) { es_fail(e, "%s: %lld bytes after the last tensor", path, (long long)(data_len - at)); goto out; }
    rc = 0;
out:
    free(sp);
    cJSON_Delete(root);
    return rc;
}

static int st_index(es_wsrc *s, const char *index, es_err *e)
{
    es_cfg c;
    if (es_cfg_load(&c, index, e)) return -1;
    const cJSON *wm = es_cfg_node(&c, "weight_map");
    int rc = -1;
    if (!cJSON_IsObject(wm)) { es_fail(e, "%s: key 'weight_map': expected an object of tensor -> file", index); goto out; }
    char dir[512];
    snprintf(dir, sizeof dir, "%s", index);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    const cJSON *it;
    cJSON_ArrayForEach(it, wm) {
        if (!cJSON_IsString(it) || strstr(it->valuestring, "..") || it->valuestring[0] == '/' || !it->valuestring[0]) {
            es_fail(e, "%s: key 'weight_map.%s': expected a file name beside the index", index, it->string);
            goto out;
        }
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, it->valuestring);
        int fi = -1;
        for (int i = 0; i < s->n_files; i++)
            if (!strcmp(s->files[i], path)) fi = i;
        if (fi < 0) {
            if ((fi = add_file(s, path, e)) < 0 || st_parse(s, fi, e)) goto out;
        }
        int found = 0;
        for (int i = 0; i < s->n && !found; i++) found = s->t[i].file == fi && !strcmp(s->t[i].name, it->string);
        if (!found) { es_fail(e, "%s: tensor %s is not in %s as weight_map says", index, it->string, path); goto out; }
    }
    rc = 0;
out:
    es_cfg_free(&c);
    return rc;
}

/* ---- GGUF ---- */

typedef struct rd {
    int fd;
    int64_t pos, size;
    unsigned char buf[1 << 16];
    int64_t buf_at, buf_len;  /* file offset and length of buf's contents */
} rd;

static int rd_bytes(rd *r, void *out, int64_t n)
{
    if (n < 0 || n > r->size - r->pos) return -1;
    unsigned char *o = out;
    while (n > 0) {
        if (r->pos < r->buf_at || r->pos >= r->buf_at + r->buf_len) {
            int64_t want = r->size - r->pos < (int64_t)sizeof r->buf ? r->size - r->pos : (int64_t)sizeof r->buf;
            if (read_at(r->fd, r->buf, want, r->pos)) return -1;
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

/* A string: into out (NUL-terminated) when it fits cap, else error; out NULL: skip. */
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

static int gguf_scalar_size(uint32_t t)
{
    static const int sz[13] = {1, 1, 2, 2, 4, 4, 4, 1, -1, -1, 8, 8, 8};
    return t < 13 ? sz[t] : 0;
}

static int skip_value(rd *r, uint32_t type, int depth)
{
    if (type == 8) return rd_str(r, NULL, 0);
    if (type == 9) {
        uint32_t et;
        uint64_t n;
        if (depth > 4 || rd_u32(r, &et) || rd_u64(r, &n)) return -1;
        int sz = gguf_scalar_size(et);
        if (sz == 0) return -1;
        if (sz > 0) {
            if (n > (uint64_t)(r->size - r->pos) / (uint64_t)sz) return -1;
            return rd_bytes(r, NULL, (int64_t)(n * (uint64_t)sz));
        }
        if (n > (uint64_t)(r->size - r->pos)) return -1; /* every element takes at least a byte */
        for (uint64_t i = 0; i < n; i++)
            if (skip_value(r, et, depth + 1)) return -1;
        return 0;
    }
    int sz = gguf_scalar_size(type);
    return sz > 0 ? rd_bytes(r, NULL, sz) : -1;
}

static int gguf_type(uint32_t t, es_qtype *q)
{
    switch (t) {
    case 0: *q = ES_Q_F32; return 0;
    case 1: *q = ES_Q_F16; return 0;
    case 2: *q = ES_Q_Q4_0; return 0;
    case 8: *q = ES_Q_Q8_0; return 0;
    case 11: *q = ES_Q_Q3_K; return 0;
    case 12: *q = ES_Q_Q4_K; return 0;
    case 13: *q = ES_Q_Q5_K; return 0;
    case 14: *q = ES_Q_Q6_K; return 0;
    case 30: *q = ES_Q_BF16; return 0;
    case 39: *q = ES_Q_MXFP4; return 0;
    default: return -1;
    }
}

static int gguf_parse(es_wsrc *s, int fi, es_err *e)
{
    const char *path = s->files[fi];
    rd *r = calloc(1, sizeof *r);
    if (!r) return es_fail(e, "%s: out of memory", path);
    r->fd = s->fds[fi];
    r->size = file_size(r->fd);
    int rc = -1, ns = 0;
    span *sp = NULL;
    unsigned char magic[4];
    uint32_t version = 0, alignment = 32;
    uint64_t n_tensors, n_kv;
    if (rd_bytes(r, magic, 4) || memcmp(magic, "GGUF", 4)) { es_fail(e, "%s: not a GGUF file (bad magic)", path); goto out; }
    if (rd_u32(r, &version) || version != 3) { es_fail(e, "%s: GGUF version %u (expected 3)", path, version); goto out; }
    if (rd_u64(r, &n_tensors) || rd_u64(r, &n_kv)) { es_fail(e, "%s: truncated header", path); goto out; }
    if (n_tensors > 1000000 || n_kv > 1000000) {
        es_fail(e, "%s: %llu tensors and %llu metadata entries exceed the limits of 1,000,000", path,
                (unsigned long long)n_tensors, (unsigned long long)n_kv);
        goto out;
    }
    for (uint64_t i = 0; i < n_kv; i++) {
        char key[256];
        uint32_t type;
        if (rd_str(r, key, sizeof key) || rd_u32(r, &type)) {
            es_fail(e, "%s: metadata entry %llu: truncated or key longer than 255 bytes", path, (unsigned long long)i);
            goto out;
        }
        if (!strcmp(key, "general.alignment")) {
            if (type != 4 || rd_u32(r, &alignment) || alignment == 0 || alignment > 65536 ||
                (alignment & (alignment - 1))) {
                es_fail(e, "%s: general.alignment must be a u32 power of two up to 65536", path);
                goto out;
            }
        } else if (skip_value(r, type, 0)) {
            es_fail(e, "%s: metadata '%s': bad type %u or value runs past the end of the file", path, key, type);
            goto out;
        }
    }
    sp = calloc((size_t)n_tensors + 1, sizeof *sp);
    if (!sp) { es_fail(e, "%s: out of memory", path); goto out; }
    int first = s->n;
    for (uint64_t i = 0; i < n_tensors; i++) {
        es_wtensor *t = new_tensor(s, e);
        uint32_t nd, type;
        uint64_t off;
        if (!t) goto out;
        if (rd_str(r, t->name, sizeof t->name) || rd_u32(r, &nd)) {
            es_fail(e, "%s: tensor info %llu: truncated or name longer than 127 bytes", path, (unsigned long long)i);
            goto out;
        }
        if (nd < 1 || nd > 4) { es_fail(e, "%s: tensor %s: %u dimensions (expected 1 to 4)", path, t->name, nd); goto out; }
        t->ndims = (int)nd;
        int64_t elems = 1;
        uint64_t ne[4];
        for (uint32_t d = 0; d < nd; d++) {
            if (rd_u64(r, &ne[d]) || ne[d] > ((uint64_t)1 << 40)) {
                es_fail(e, "%s: tensor %s: dimension %u missing or beyond 2^40", path, t->name, d);
                goto out;
            }
            t->dims[nd - 1 - d] = (int64_t)ne[d]; /* GGUF lists the innermost first */
            if (!mul_ok(elems, (int64_t)ne[d], &elems)) { es_fail(e, "%s: tensor %s: shape overflows", path, t->name); goto out; }
        }
        if (rd_u32(r, &type) || rd_u64(r, &off)) { es_fail(e, "%s: tensor %s: truncated info", path, t->name); goto out; }
        es_qtype q;
        if (gguf_type(type, &q)) {
            es_fail(e, "%s: tensor %s: GGUF type %u is not supported (F32, F16, BF16, Q8_0, Q4_0, Q3_K, "
                       "Q4_K, Q5_K, Q6_K, MXFP4)", path, t->name, type);
            goto out;
        }
        t->file = fi;
        t->fmt.type = q;
        t->fmt.tensor_scale = 1.0f;
        int64_t be = es_q_block_elems(&t->fmt), rows = elems / (ne[0] ? (int64_t)ne[0] : 1), rowb;
        if (ne[0] == 0 || (int64_t)ne[0] % be) {
            es_fail(e, "%s: tensor %s: first dimension %llu is not a multiple of the %s block of %lld", path,
                    t->name, (unsigned long long)ne[0], es_qtype_name(q), (long long)be);
            goto out;
        }
        rowb = (int64_t)ne[0] / be * es_q_block_bytes(&t->fmt);
        if (!mul_ok(rowb, rows, &t->nbytes)) { es_fail(e, "%s: tensor %s: shape times type size overflows", path, t->name); goto out; }
        if (off % alignment) { es_fail(e, "%s: tensor %s: offset %llu is not aligned to %u", path, t->name, (unsigned long long)off, alignment); goto out; }
        if (off > (uint64_t)INT64_MAX) { es_fail(e, "%s: tensor %s: offset out of range", path, t->name); goto out; }
        t->offset = (int64_t)off; /* relative for now */
    }
    int64_t data0 = (r->pos + alignment - 1) / alignment * alignment;
    for (int i = first; i < s->n; i++) {
        es_wtensor *t = &s->t[i];
        if (t->offset > r->size - data0 || t->nbytes > r->size - data0 - t->offset) {
            es_fail(e, "%s: tensor %s: %lld bytes at data offset %lld run past the end of the file", path,
                    t->name, (long long)t->nbytes, (long long)t->offset);
            goto out;
        }
        sp[ns++] = (span){t->offset, t->offset + t->nbytes, t->name};
        t->offset += data0;
    }
    qsort(sp, (size_t)ns, sizeof *sp, cmp_span);
    for (int i = 1; i < ns; i++)
        if (sp[i].begin < sp[i - 1].end) { es_fail(e, "%s: tensors %s and %s overlap", path, sp[i - 1].name, sp[i].name); goto out; }
    rc = 0;
out:
    free(sp);
    free(r);
    return rc;
}

/* Position r just past the type of metadata `key`; 1 found (type in *type),
 * 0 not found, -1 error. */
static int gguf_find(rd *r, const char *path, const char *key, uint32_t *type, es_err *e)
{
    unsigned char magic[4];
    uint32_t version = 0;
    uint64_t n_tensors, n_kv;
    if (rd_bytes(r, magic, 4) || memcmp(magic, "GGUF", 4) || rd_u32(r, &version) || version != 3 ||
        rd_u64(r, &n_tensors) || rd_u64(r, &n_kv) || n_kv > 1000000)
        return es_fail(e, "%s: not a GGUF v3 file", path);
    for (uint64_t i = 0; i < n_kv; i++) {
        char k[256];
        if (rd_str(r, k, sizeof k) || rd_u32(r, type))
            return es_fail(e, "%s: metadata entry %llu is truncated", path, (unsigned long long)i);
        if (!strcmp(k, key)) return 1;
        if (skip_value(r, *type, 0)) return es_fail(e, "%s: metadata '%s' is corrupt", path, k);
    }
    return 0;
}

static rd *gguf_reader(const char *path, es_err *e)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) { es_fail(e, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    rd *r = calloc(1, sizeof *r);
    if (!r) { close(fd); es_fail(e, "%s: out of memory", path); return NULL; }
    r->fd = fd;
    r->size = file_size(fd);
    return r;
}

static void gguf_reader_close(rd *r)
{
    if (!r) return;
    close(r->fd);
    free(r);
}

int es_gguf_ints(const char *path, const char *key, int32_t **out, int64_t *n, es_err *e)
{
    *out = NULL;
    *n = 0;
    rd *r = gguf_reader(path, e);
    if (!r) return -1;
    uint32_t type, et;
    uint64_t cnt;
    int found = gguf_find(r, path, key, &type, e), rc = -1;
    if (found < 0) goto out;
    if (found == 0) { rc = 0; goto out; }
    if (type != 9 || rd_u32(r, &et) || (et != 4 && et != 5) || rd_u64(r, &cnt) ||
        cnt > (uint64_t)(r->size - r->pos) / 4) {
        es_fail(e, "%s: metadata '%s': expected an array of 32-bit integers", path, key);
        goto out;
    }
    *out = malloc((size_t)(cnt ? cnt : 1) * sizeof **out);
    if (!*out) { es_fail(e, "%s: out of memory", path); goto out; }
    for (uint64_t i = 0; i < cnt; i++) {
        uint32_t v;
        if (rd_u32(r, &v)) { es_fail(e, "%s: read failed", path); free(*out); *out = NULL; goto out; }
        (*out)[i] = (int32_t)v;
    }
    *n = (int64_t)cnt;
    rc = 0;
out:
    gguf_reader_close(r);
    return rc;
}

int es_gguf_strings(const char *path, const char *key, int (*cb)(void *arg, const char *s, size_t n),
                    void *arg, es_err *e)
{
    rd *r = gguf_reader(path, e);
    if (!r) return -1;
    char *str = NULL;
    int rc = -1;
    uint32_t type;
    int found = gguf_find(r, path, key, &type, e);
    if (found < 0) goto out;
    if (found == 0) { es_fail(e, "%s: no metadata '%s'", path, key); goto out; }
    {
        uint32_t et;
        uint64_t n;
        if (type != 9 || rd_u32(r, &et) || et != 8 || rd_u64(r, &n) || n > (uint64_t)(r->size - r->pos)) {
            es_fail(e, "%s: metadata '%s': expected an array of strings", path, key);
            goto out;
        }
        for (uint64_t j = 0; j < n; j++) {
            uint64_t len;
            if (rd_u64(r, &len) || len > (uint64_t)(r->size - r->pos) || len > (1u << 20)) {
                es_fail(e, "%s: metadata '%s': string %llu runs past the end of the file", path, key, (unsigned long long)j);
                goto out;
            }
            char *b = realloc(str, (size_t)len + 1);
            if (!b) { es_fail(e, "%s: out of memory", path); goto out; }
            str = b;
            if (rd_bytes(r, str, (int64_t)len)) { es_fail(e, "%s: read failed", path); goto out; }
            str[len] = 0;
            if (cb(arg, str, (size_t)len)) goto out;
        }
        rc = 0;
    }
out:
    free(str);
    gguf_reader_close(r);
    return rc;
}

/* ---- opening ---- */

int es_wsrc_open(es_wsrc *s, const char *path, const es_wsrc_opts *o, es_err *e)
{
    memset(s, 0, sizeof *s);
    char p[512];
    snprintf(p, sizeof p, "%s", path);
    if (es_is_dir(path)) {
        char c[600];
        snprintf(c, sizeof c, "%s/model.safetensors.index.json", path);
        if (!es_is_file(c)) snprintf(c, sizeof c, "%s/model.safetensors", path);
        if (!es_is_file(c)) return es_fail(e, "%s: folder holds neither model.safetensors.index.json nor model.safetensors", path);
        if (strlen(c) >= sizeof p) return es_fail(e, "%s: path too long", path);
        memcpy(p, c, strlen(c) + 1);
    }
    snprintf(s->path, sizeof s->path, "%s", p);
    int rc;
    if (es_ends_with(p, ".json")) {
        rc = st_index(s, p, e);
    } else {
        int fi = add_file(s, p, e);
        if (fi < 0) return -1;
        unsigned char magic[4] = {0};
        int is_gguf = read_at(s->fds[fi], magic, 4, 0) == 0 && !memcmp(magic, "GGUF", 4);
        s->gguf = is_gguf;
        rc = is_gguf ? gguf_parse(s, fi, e) : st_parse(s, fi, e);
    }
    if (rc) { es_wsrc_close(s); return -1; }
    s->rope_rows = o && o->rope_rows >= 0 ? (es_rope_rows)o->rope_rows : s->gguf ? ES_ROPE_PAIRS : ES_ROPE_HALVES;
    s->nibbles = o && o->nibbles >= 0 ? (es_nibble_order)o->nibbles : ES_NIB_SPLIT;
    return 0;
}

void es_wsrc_close(es_wsrc *s)
{
    for (int i = 0; i < s->n_files; i++) close(s->fds[i]);
    free(s->fds);
    free(s->files);
    free(s->t);
    free(s->map);
    memset(s, 0, sizeof *s);
}

const char *es_gguf_to_hf(const char *g, char *buf, size_t n)
{
    static const char *top[3][2] = {{"token_embd.weight", "model.embed_tokens.weight"},
                                    {"output_norm.weight", "model.norm.weight"},
                                    {"output.weight", "lm_head.weight"}};
    for (int i = 0; i < 3; i++)
        if (!strcmp(g, top[i][0])) { snprintf(buf, n, "%s", top[i][1]); return buf; }
    static const char *blk[9][2] = {{"attn_norm", "input_layernorm"}, {"attn_q", "self_attn.q_proj"},
                                    {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
                                    {"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"},
                                    {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"},
                                    {"ffn_down", "mlp.down_proj"}};
    unsigned layer;
    char part[64];
    int used = 0;
    if (sscanf(g, "blk.%u.%63[a-z_].weight%n", &layer, part, &used) != 2 || g[used] != 0) return NULL;
    for (int i = 0; i < 9; i++)
        if (!strcmp(part, blk[i][0])) { snprintf(buf, n, "model.layers.%u.%s.weight", layer, blk[i][1]); return buf; }
    return NULL;
}

int es_wsrc_bind(es_wsrc *s, const es_model *m, es_err *e)
{
    free(s->map);
    s->map = malloc((size_t)m->n_tensors * sizeof *s->map);
    if (!s->map) return es_fail(e, "out of memory");
    s->m = m;
    for (int i = 0; i < m->n_tensors; i++) {
        const es_tensor *mt = &m->tensors[i];
        s->map[i] = -1;
        for (int j = 0; j < s->n && s->map[i] < 0; j++) {
            char hf[160];
            const char *nm = s->gguf ? es_gguf_to_hf(s->t[j].name, hf, sizeof hf) : s->t[j].name;
            if (nm && !strcmp(nm, mt->name)) s->map[i] = j;
        }
        if (s->map[i] < 0) return es_fail(e, "%s: has no tensor for %s", s->path, mt->name);
        const es_wtensor *t = &s->t[s->map[i]];
        int ok = mt->rows == 1 ? (t->ndims == 1 && t->dims[0] == mt->cols)
                               : (t->ndims == 2 && t->dims[0] == mt->rows && t->dims[1] == mt->cols);
        if (!ok) {
            char shape[96] = "[";
            for (int d = 0; d < t->ndims; d++)
                snprintf(shape + strlen(shape), sizeof shape - strlen(shape), d ? ", %lld" : "%lld", (long long)t->dims[d]);
            strcat(shape, "]");
            if (mt->rows == 1)
                return es_fail(e, "%s: tensor %s has shape %s, but %s says [%lld]", s->files[t->file], t->name,
                               shape, m->path, (long long)mt->cols);
            return es_fail(e, "%s: tensor %s has shape %s, but %s says [%lld, %lld]", s->files[t->file], t->name,
                           shape, m->path, (long long)mt->rows, (long long)mt->cols);
        }
    }
    return 0;
}

int es_wsrc_read_row(const es_wsrc *s, int i, int64_t row, float *out, es_err *e)
{
    const es_tensor *mt = &s->m->tensors[i];
    const es_wtensor *t = &s->t[s->map[i]];
    int64_t src = row;
    if (s->rope_rows == ES_ROPE_PAIRS && (mt->role == ES_ROLE_Q || mt->role == ES_ROLE_K)) {
        int64_t hd = s->m->head_dim, half = hd / 2, k = row % hd;
        src = row - k + 2 * (k % half) + k / half; /* graph row (i + j*half) reads file row 2i + j */
    }
    es_qfmt f = t->fmt;
    f.nibbles = s->nibbles;
    int64_t rb = es_q_row_bytes(&f, mt->cols, e);
    if (rb < 0) return -1;
    unsigned char *buf = malloc((size_t)rb);
    if (!buf) return es_fail(e, "out of memory");
    int rc = 0;
    if (read_at(s->fds[t->file], buf, rb, t->offset + src * rb))
        rc = es_fail(e, "%s: tensor %s: cannot read row %lld", s->files[t->file], t->name, (long long)src);
    else if (es_dequantize_row(&f, buf, mt->cols, out, e))
        rc = -1;
    free(buf);
    return rc;
}
