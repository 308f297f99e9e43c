/* es_wsrc: safetensors and GGUF readers and the name and layout mapping
 * onto the graph (see es_wsrc.h). Parsers never trust a header: counts,
 * lengths, shapes and offsets are checked against the file size and for
 * overflow before anything is allocated or read. */
#define _POSIX_C_SOURCE 200809L
#include "es_wsrc.h"
#include "es_cfg.h"
#include "es_fs.h"
#include "es_gguf.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
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

/* __metadata__'s string entries whose value names another tensor: aliases, kept for es_wsrc_bind
 * (safetensors' save_model stores shared tensors once and records each dropped name so). */
static int st_aliases(es_wsrc *s, const char *path, const cJSON *md, es_err *e)
{
    if (!cJSON_IsObject(md)) return es_fail(e, "%s: __metadata__ is not a JSON object", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, md) {
        if (!cJSON_IsString(it) || !strcmp(it->string, "format")) continue;
        if (strlen(it->string) >= sizeof s->alias[0][0] || strlen(it->valuestring) >= sizeof s->alias[0][0])
            continue; /* no tensor has a name this long */
        if (s->n_alias >= 1000000) return es_fail(e, "%s: more than a million __metadata__ entries", path);
        char(*a)[2][128] = realloc(s->alias, (size_t)(s->n_alias + 1) * sizeof *a);
        if (!a) return es_fail(e, "%s: out of memory", path);
        s->alias = a;
        snprintf(a[s->n_alias][0], sizeof a[0][0], "%s", it->string);
        snprintf(a[s->n_alias][1], sizeof a[0][1], "%s", it->valuestring);
        s->n_alias++;
    }
    return 0;
}

/* The header: its 8-byte little-endian length (within the limit and the file), then that many bytes of
 * JSON, which must be an object; *data0 is where the data area begins. */
static cJSON *st_header(int fd, const char *path, int64_t size, int64_t *data0, es_err *e)
{
    unsigned char len8[8];
    if (size < 8 || es_pread_all(fd, len8, 8, 0)) {
        es_fail(e, "%s: truncated: shorter than the 8-byte header length", path);
        return NULL;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    if (n > (uint64_t)ST_MAX_HEADER) {
        es_fail(e, "%s: header length %llu exceeds the limit of %lld bytes", path, (unsigned long long)n,
                ST_MAX_HEADER);
        return NULL;
    }
    if ((int64_t)n > size - 8) {
        es_fail(e, "%s: header length %llu runs past the end of the %lld-byte file", path,
                (unsigned long long)n, (long long)size);
        return NULL;
    }
    char *json = malloc(n + 1);
    if (!json) { es_fail(e, "%s: out of memory", path); return NULL; }
    if (es_pread_all(fd, json, (int64_t)n, 8)) { free(json); es_fail(e, "%s: read failed", path); return NULL; }
    json[n] = 0;
    cJSON *root = cJSON_ParseWithLength(json, n);
    free(json);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        es_fail(e, "%s: header is not a JSON object", path);
        return NULL;
    }
    *data0 = 8 + (int64_t)n;
    return root;
}

/* One header entry `it` of file fi: dtype, shape and data_offsets, the offsets inside the data area
 * (data0, data_len bytes) and spanning exactly shape x dtype size; adds the tensor and its span *sp. */
static int st_tensor(es_wsrc *s, int fi, const cJSON *it, int64_t data0, int64_t data_len, span *sp, es_err *e)
{
    const char *path = s->files[fi], *name = it->string;
    if (strlen(name) >= sizeof s->t[0].name) return es_fail(e, "%s: tensor name longer than 127 bytes", path);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
        return es_fail(e, "%s: tensor %s: expected dtype, shape and data_offsets [begin, end]", path, name);
    es_qtype q;
    int64_t esize;
    if (!strcmp(dt->valuestring, "BF16")) { q = ES_Q_BF16; esize = 2; }
    else if (!strcmp(dt->valuestring, "F16")) { q = ES_Q_F16; esize = 2; }
    else if (!strcmp(dt->valuestring, "F32")) { q = ES_Q_F32; esize = 4; }
    else
        return es_fail(e, "%s: tensor %s: unknown or unsupported dtype '%.32s' (expected BF16, F16 or F32)",
                       path, name, dt->valuestring);
    es_wtensor *t = new_tensor(s, e);
    if (!t) return -1;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->file = fi;
    t->fmt.type = q;
    t->fmt.tensor_scale = 1.0f;
    t->ndims = cJSON_GetArraySize(sh);
    if (t->ndims < 1 || t->ndims > 4)
        return es_fail(e, "%s: tensor %s: %d dimensions (expected 1 to 4)", path, name, t->ndims);
    int64_t elems = 1;
    for (int d = 0; d < t->ndims; d++) {
        const cJSON *v = cJSON_GetArrayItem(sh, d);
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9.0e15 ||
            v->valuedouble != (double)(int64_t)v->valuedouble)
            return es_fail(e, "%s: tensor %s: shape entries must be non-negative integers", path, name);
        t->dims[d] = (int64_t)v->valuedouble;
        if (!mul_ok(elems, t->dims[d], &elems)) return es_fail(e, "%s: tensor %s: shape overflows", path, name);
    }
    int64_t bytes;
    if (!mul_ok(elems, esize, &bytes))
        return es_fail(e, "%s: tensor %s: shape times dtype size overflows", path, name);
    const cJSON *b = cJSON_GetArrayItem(of, 0), *en = cJSON_GetArrayItem(of, 1);
    if (!cJSON_IsNumber(b) || !cJSON_IsNumber(en) || b->valuedouble < 0 || en->valuedouble < b->valuedouble ||
        en->valuedouble > (double)data_len)
        return es_fail(e, "%s: tensor %s: data_offsets lie outside the %lld-byte data area", path, name,
                       (long long)data_len);
    int64_t begin = (int64_t)b->valuedouble, end = (int64_t)en->valuedouble;
    if (end - begin != bytes)
        return es_fail(e, "%s: tensor %s: data_offsets span %lld bytes, shape x dtype needs %lld", path, name,
                       (long long)(end - begin), (long long)bytes);
    t->offset = data0 + begin;
    t->nbytes = bytes;
    *sp = (span){begin, end, name}; /* the header's key: stable while s->t grows */
    return 0;
}

/* The tensors' spans, sorted, tile the data area (data_len bytes): no overlap, no gap, nothing after. */
static int st_spans(span *sp, int ns, int64_t data_len, const char *path, es_err *e)
{
    qsort(sp, (size_t)ns, sizeof *sp, cmp_span);
    int64_t at = 0;
    for (int i = 0; i < ns; i++) {
        if (sp[i].begin < at) return es_fail(e, "%s: tensor %s overlaps the one before it", path, sp[i].name);
        if (sp[i].begin > at)
            return es_fail(e, "%s: gap of %lld bytes before tensor %s", path, (long long)(sp[i].begin - at),
                           sp[i].name);
        at = sp[i].end;
    }
    if (at != data_len) return es_fail(e, "%s: %lld bytes after the last tensor", path, (long long)(data_len - at));
    return 0;
}

static int st_parse(es_wsrc *s, int fi, es_err *e)
{
    const char *path = s->files[fi];
    int64_t size = file_size(s->fds[fi]), data0 = 0;
    cJSON *root = st_header(s->fds[fi], path, size, &data0, e);
    if (!root) return -1;
    int64_t data_len = size - data0;
    int count = cJSON_GetArraySize(root), ns = 0, rc = -1;
    span *sp = calloc((size_t)count + 1, sizeof *sp);
    if (!sp) { es_fail(e, "%s: out of memory", path); goto out; }
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (!strcmp(it->string, "__metadata__")) {
            if (st_aliases(s, path, it, e)) goto out;
            continue;
        }
        if (st_tensor(s, fi, it, data0, data_len, &sp[ns++], e)) goto out;
    }
    rc = st_spans(sp, ns, data_len, path, e);
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

/* The tensor infos of es_gguf, checked against the formats' block sizes. */
static int gguf_parse(es_wsrc *s, int fi, es_err *e)
{
    const char *path = s->files[fi];
    es_gguf g;
    if (es_gguf_open(&g, path, e)) return -1;
    int rc = -1, ns = 0;
    span *sp = calloc((size_t)g.n_tensors + 1, sizeof *sp);
    if (!sp) { es_fail(e, "%s: out of memory", path); goto out; }
    for (int i = 0; i < g.n_tensors; i++) {
        const es_gguf_tensor *gt = &g.t[i];
        es_wtensor *t = new_tensor(s, e);
        if (!t) goto out;
        snprintf(t->name, sizeof t->name, "%s", gt->name);
        t->ndims = (int)gt->n_dims;
        int64_t elems = 1;
        for (uint32_t d = 0; d < gt->n_dims; d++) {
            t->dims[gt->n_dims - 1 - d] = (int64_t)gt->ne[d]; /* GGUF lists the innermost first */
            if (!mul_ok(elems, (int64_t)gt->ne[d], &elems)) { es_fail(e, "%s: tensor %s: shape overflows", path, t->name); goto out; }
        }
        es_qtype q;
        if (gguf_type(gt->type, &q)) {
            es_fail(e, "%s: tensor %s: GGUF type %u is not supported (F32, F16, BF16, Q8_0, Q4_0, Q3_K, "
                       "Q4_K, Q5_K, Q6_K, MXFP4)", path, t->name, gt->type);
            goto out;
        }
        t->file = fi;
        t->fmt.type = q;
        t->fmt.tensor_scale = 1.0f;
        int64_t ne0 = (int64_t)gt->ne[0], be = es_q_block_elems(&t->fmt), rows = elems / (ne0 ? ne0 : 1), rowb;
        if (ne0 == 0 || ne0 % be) {
            es_fail(e, "%s: tensor %s: first dimension %lld is not a multiple of the %s block of %lld", path,
                    t->name, (long long)ne0, es_qtype_name(q), (long long)be);
            goto out;
        }
        rowb = ne0 / be * es_q_block_bytes(&t->fmt);
        if (!mul_ok(rowb, rows, &t->nbytes)) { es_fail(e, "%s: tensor %s: shape times type size overflows", path, t->name); goto out; }
        if (gt->offset > (uint64_t)INT64_MAX) { es_fail(e, "%s: tensor %s: offset out of range", path, t->name); goto out; }
        t->offset = (int64_t)gt->offset;
        if (t->offset > g.size - g.data_at || t->nbytes > g.size - g.data_at - t->offset) {
            es_fail(e, "%s: tensor %s: %lld bytes at data offset %lld run past the end of the file", path,
                    t->name, (long long)t->nbytes, (long long)t->offset);
            goto out;
        }
        sp[ns++] = (span){t->offset, t->offset + t->nbytes, gt->name}; /* es_gguf names: stable while s->t grows */
        t->offset += g.data_at;
    }
    qsort(sp, (size_t)ns, sizeof *sp, cmp_span);
    for (int i = 1; i < ns; i++)
        if (sp[i].begin < sp[i - 1].end) { es_fail(e, "%s: tensors %s and %s overlap", path, sp[i - 1].name, sp[i].name); goto out; }
    rc = 0;
out:
    free(sp);
    es_gguf_close(&g);
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
        int is_gguf = es_pread_all(s->fds[fi], magic, 4, 0) == 0 && !memcmp(magic, "GGUF", 4);
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
    free(s->alias);
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

/* The file tensor of graph name `name` (GGUF names mapped), or -1. */
static int find(const es_wsrc *s, const char *name)
{
    for (int j = 0; j < s->n; j++) {
        char hf[160];
        const char *nm = s->gguf ? es_gguf_to_hf(s->t[j].name, hf, sizeof hf) : s->t[j].name;
        if (nm && !strcmp(nm, name)) return j;
    }
    return -1;
}

int es_wsrc_bind(es_wsrc *s, const es_model *m, es_err *e)
{
    free(s->map);
    s->map = malloc((size_t)m->n_tensors * sizeof *s->map);
    if (!s->map) return es_fail(e, "out of memory");
    s->m = m;
    for (int i = 0; i < m->n_tensors; i++) {
        const es_tensor *mt = &m->tensors[i];
        s->map[i] = find(s, mt->name);
        for (int a = 0; a < s->n_alias && s->map[i] < 0; a++) /* stored once under another name */
            if (!strcmp(s->alias[a][0], mt->name)) s->map[i] = find(s, s->alias[a][1]);
        if (s->map[i] < 0 && mt->lm_head) /* a tied table: the LM head's weights are the embedding's */
            s->map[i] = find(s, "lm_head.weight");
        if (s->map[i] < 0) {
            if (mt->role == ES_ROLE_EMBED && find(s, "lm_head.weight") >= 0)
                return es_fail(e, "%s: has no tensor for %s, only lm_head.weight (if the model ties its embeddings, "
                                  "%s should say tie_word_embeddings: true)", s->path, mt->name, m->path);
            return es_fail(e, "%s: has no tensor for %s", s->path, mt->name);
        }
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
    if (es_pread_all(s->fds[t->file], buf, rb, t->offset + src * rb))
        rc = es_fail(e, "%s: tensor %s: cannot read row %lld", s->files[t->file], t->name, (long long)src);
    else if (es_dequantize_row(&f, buf, mt->cols, out, e))
        rc = -1;
    for (int64_t k = 0; rc == 0 && k < mt->cols; k++)
        if (!isfinite(out[k])) /* a NaN or infinity would reach every logit downstream */
            rc = es_fail(e, "%s: tensor %s: element %lld (row %lld, column %lld) is %s; weights must be finite",
                         s->files[t->file], t->name, (long long)(src * mt->cols + k), (long long)src,
                         (long long)k, isnan(out[k]) ? "NaN" : out[k] > 0 ? "+infinity" : "-infinity");
    free(buf);
    return rc;
}
