/* test_loaders: safetensors and GGUF readers.
 *   1.x  round trip: a tiny model written as one safetensors file, as two
 *        shards with an index, and as a GGUF file of mixed types (Meta row
 *        order for Q and K) loads back with every tensor equal
 *   2.x  bad files, each a clear error: header length beyond the file,
 *        overlapping and misaligned offsets, shape x type size overflow,
 *        unknown dtypes, a shape that disagrees with config.json, gaps
 *   3.x  a NaN or infinite weight (F32, BF16, a Q8_0 block's scale) names the
 *        file, the tensor and the element's index
 * Run as `test_loaders MODELS_DIR`. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "es_fp.h"
#include "es_model.h"
#include "es_quant.h"
#include "es_synth.h"
#include "es_wsrc.h"

#include "test_check.h"

static char dir[64];
static es_model M;

typedef struct wt {         /* a tensor to write */
    char name[128];
    const char *dtype;      /* safetensors dtype, or NULL for GGUF */
    uint32_t gtype;         /* GGUF type */
    int ndims;
    int64_t dims[4];        /* outermost first */
    unsigned char *data;
    int64_t nbytes;
} wt;

static void put_le(FILE *f, uint64_t v, int n) { for (int i = 0; i < n; i++) fputc((int)(v >> 8 * i & 0xFF), f); }

static void write_st(const char *path, wt *t, int n, const char *extra_header)
{
    char *h = malloc(1 << 20);
    int64_t off = 0;
    strcpy(h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        char shape[96] = "";
        for (int d = 0; d < t[i].ndims; d++)
            sprintf(shape + strlen(shape), d ? ",%lld" : "%lld", (long long)t[i].dims[d]);
        sprintf(h + strlen(h), ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%lld,%lld]}",
                t[i].name, t[i].dtype, shape, (long long)off, (long long)(off + t[i].nbytes));
        off += t[i].nbytes;
    }
    strcat(h, extra_header ? extra_header : "");
    strcat(h, "}");
    while (strlen(h) % 8) strcat(h, " ");
    FILE *f = fopen(path, "wb");
    put_le(f, strlen(h), 8);
    fwrite(h, 1, strlen(h), f);
    for (int i = 0; i < n; i++) fwrite(t[i].data, 1, (size_t)t[i].nbytes, f);
    fclose(f);
    free(h);
}

/* Every tensor of the model M in dtype (elem_bytes each), zero-filled, with its config.json shape; tensor
 * `half` (-1: none) gets half its columns. */
static wt *model_tensors(const char *dtype, int elem_bytes, int half)
{
    int n = M.n_tensors;
    wt *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; t && i < n; i++) {
        const es_tensor *mt = &M.tensors[i];
        snprintf(t[i].name, sizeof t[i].name, "%s", mt->name);
        t[i].dtype = dtype;
        t[i].ndims = mt->rows == 1 ? 1 : 2;
        t[i].dims[0] = mt->rows == 1 ? mt->cols : mt->rows;
        t[i].dims[1] = i == half ? mt->cols / 2 : mt->cols;
        t[i].nbytes = elem_bytes * t[i].dims[0] * (t[i].ndims == 2 ? t[i].dims[1] : 1);
        t[i].data = calloc((size_t)t[i].nbytes, 1);
    }
    return t;
}

static void put_str(FILE *f, const char *s)
{
    put_le(f, strlen(s), 8);
    fwrite(s, 1, strlen(s), f);
}

/* offsets: NULL for packed, aligned; else given per tensor */
static void write_gguf(const char *path, wt *t, int n, const uint64_t *offsets)
{
    FILE *f = fopen(path, "wb");
    fwrite("GGUF", 1, 4, f);
    put_le(f, 3, 4);
    put_le(f, (uint64_t)n, 8);
    put_le(f, 3, 8);
    put_str(f, "general.architecture"); put_le(f, 8, 4); put_str(f, "llama");
    put_str(f, "general.alignment"); put_le(f, 4, 4); put_le(f, 32, 4);
    put_str(f, "tokenizer.ggml.tokens"); put_le(f, 9, 4); put_le(f, 8, 4); put_le(f, 3, 8);
    put_str(f, "a"); put_str(f, "bb"); put_str(f, "ccc");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        put_str(f, t[i].name);
        put_le(f, (uint64_t)t[i].ndims, 4);
        for (int d = t[i].ndims - 1; d >= 0; d--) put_le(f, (uint64_t)t[i].dims[d], 8);
        put_le(f, t[i].gtype, 4);
        put_le(f, offsets ? offsets[i] : off, 8);
        off += (uint64_t)(t[i].nbytes + 31) / 32 * 32;
    }
    long pos = ftell(f);
    while (pos % 32) { fputc(0, f); pos++; }
    off = 0;
    for (int i = 0; i < n; i++) {
        fwrite(t[i].data, 1, (size_t)t[i].nbytes, f);
        for (int64_t k = t[i].nbytes; k % 32; k++) fputc(0, f);
    }
    fclose(f);
}

static void synth(int i, float *buf) /* all rows of model tensor i, HF order */
{
    for (int64_t r = 0; r < M.tensors[i].rows; r++) es_synth_row(99, &M.tensors[i], r, buf + r * M.tensors[i].cols);
}

static char *gguf_name(const es_tensor *t, char *buf)
{
    static const char *roles[ES_ROLE_COUNT] = {"token_embd", "attn_norm", "attn_q", "attn_k", "attn_v",
                                               "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down",
                                               "output_norm", "output"};
    if (t->layer >= 0) sprintf(buf, "blk.%d.%s.weight", t->layer, roles[t->role]);
    else sprintf(buf, "%s.weight", roles[t->role]);
    return buf;
}

/* compare every row loaded from s with want(i) */
static void compare(es_wsrc *s, float **want, const char *label)
{
    es_err e;
    int bad = 0;
    for (int i = 0; i < M.n_tensors; i++) {
        const es_tensor *t = &M.tensors[i];
        float *row = malloc((size_t)t->cols * sizeof *row);
        for (int64_t r = 0; r < t->rows; r++) {
            if (es_wsrc_read_row(s, i, r, row, &e)) { bad++; fprintf(stderr, "%s\n", e.msg); break; }
            if (memcmp(row, want[i] + r * t->cols, (size_t)t->cols * sizeof *row)) { bad++; break; }
        }
        free(row);
    }
    CHECK(bad == 0, "%s: %d tensors differ", label, bad);
}

static void t1_roundtrip(void)
{
    es_err e;
    int n = M.n_tensors;
    wt *t = calloc((size_t)n, sizeof *t);
    float **want = calloc((size_t)n, sizeof *want);
    /* 1.1 safetensors, dtypes by role: norms F32, q/k/v/o BF16, the rest F16 */
    for (int i = 0; i < n; i++) {
        const es_tensor *mt = &M.tensors[i];
        int64_t elems = mt->rows * mt->cols;
        float *x = malloc((size_t)elems * sizeof *x);
        synth(i, x);
        es_qtype q = mt->rows == 1 ? ES_Q_F32 : (mt->role >= ES_ROLE_Q && mt->role <= ES_ROLE_O) ? ES_Q_BF16 : ES_Q_F16;
        es_qfmt f = {q, 0, 1.0f, ES_NIB_SPLIT};
        snprintf(t[i].name, sizeof t[i].name, "%s", mt->name);
        t[i].dtype = q == ES_Q_F32 ? "F32" : q == ES_Q_BF16 ? "BF16" : "F16";
        t[i].ndims = mt->rows == 1 ? 1 : 2;
        t[i].dims[0] = mt->rows == 1 ? mt->cols : mt->rows;
        t[i].dims[1] = mt->cols;
        t[i].nbytes = elems * (q == ES_Q_F32 ? 4 : 2);
        t[i].data = malloc((size_t)t[i].nbytes);
        es_quantize_row(&f, x, elems, t[i].data, &e);
        want[i] = malloc((size_t)elems * sizeof *want[i]);
        es_dequantize_row(&f, t[i].data, elems, want[i], &e);
        free(x);
    }
    char p[256], p2[256], ix[256];
    es_wsrc s;
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_st(p, t, n, NULL);
    CHECK(es_wsrc_open(&s, p, NULL, &e) == 0 && es_wsrc_bind(&s, &M, &e) == 0, "st open: %s", e.msg);
    CHECK(!s.gguf && s.rope_rows == ES_ROPE_HALVES, "safetensors defaults");
    compare(&s, want, "safetensors");
    es_wsrc_close(&s);
    /* 1.2 the same, sharded in two files with an index, opened through the folder */
    snprintf(p, sizeof p, "%s/shard-1.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/shard-2.safetensors", dir);
    write_st(p, t, n / 2, NULL);
    write_st(p2, t + n / 2, n - n / 2, NULL);
    snprintf(ix, sizeof ix, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(ix, "w");
    fprintf(f, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (int i = 0; i < n; i++) fprintf(f, "%s\"%s\": \"shard-%d.safetensors\"", i ? ", " : "", t[i].name, i < n / 2 ? 1 : 2);
    fprintf(f, "}}");
    fclose(f);
    CHECK(es_wsrc_open(&s, dir, NULL, &e) == 0 && es_wsrc_bind(&s, &M, &e) == 0, "sharded open: %s", e.msg);
    CHECK(s.n_files == 2, "two shards, got %d files", s.n_files);
    compare(&s, want, "sharded safetensors");
    es_wsrc_close(&s);
    /* 1.3 GGUF with mixed types; Q and K rows written in Meta (pairs) order */
    const struct { es_role r; es_qtype q; uint32_t g; } types[] = {
        {ES_ROLE_EMBED, ES_Q_Q8_0, 8}, {ES_ROLE_Q, ES_Q_Q4_0, 2}, {ES_ROLE_K, ES_Q_Q3_K, 11},
        {ES_ROLE_V, ES_Q_Q6_K, 14}, {ES_ROLE_O, ES_Q_MXFP4, 39}, {ES_ROLE_GATE, ES_Q_Q4_K, 12},
        {ES_ROLE_UP, ES_Q_Q5_K, 13}, {ES_ROLE_ATTN_NORM, ES_Q_F16, 1}, {ES_ROLE_FFN_NORM, ES_Q_BF16, 30}, {ES_ROLE_DOWN, ES_Q_Q3_K, 11}, {ES_ROLE_LM_HEAD, ES_Q_Q6_K, 14}};
    for (int i = 0; i < n; i++) {
        const es_tensor *mt = &M.tensors[i];
        int64_t elems = mt->rows * mt->cols, hd = M.head_dim;
        float *x = malloc((size_t)elems * sizeof *x), *meta = malloc((size_t)elems * sizeof *meta);
        synth(i, x);
        memcpy(meta, x, (size_t)elems * sizeof *x);
        if (mt->role == ES_ROLE_Q || mt->role == ES_ROLE_K)
            for (int64_t r = 0; r < mt->rows; r++) { /* HF row h*hd + j*half + i -> Meta row h*hd + 2i + j */
                int64_t k = r % hd, half = hd / 2, dst = r - k + 2 * (k % half) + k / half;
                memcpy(meta + dst * mt->cols, x + r * mt->cols, (size_t)mt->cols * sizeof *x);
            }
        es_qfmt fq = {ES_Q_F32, 0, 1.0f, ES_NIB_SPLIT};
        t[i].gtype = 0;
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
            if (types[k].r == mt->role) { fq.type = types[k].q; t[i].gtype = types[k].g; }
        gguf_name(mt, t[i].name);
        free(t[i].data);
        t[i].nbytes = es_q_row_bytes(&fq, mt->cols, &e) * mt->rows;
        t[i].data = malloc((size_t)t[i].nbytes);
        int64_t rb = t[i].nbytes / mt->rows;
        for (int64_t r = 0; r < mt->rows; r++) es_quantize_row(&fq, meta + r * mt->cols, mt->cols, t[i].data + r * rb, &e);
        /* expected: the HF-order rows of the decoded tensor */
        float *dec = malloc((size_t)elems * sizeof *dec);
        for (int64_t r = 0; r < mt->rows; r++) es_dequantize_row(&fq, t[i].data + r * rb, mt->cols, dec + r * mt->cols, &e);
        for (int64_t r = 0; r < mt->rows; r++) {
            int64_t src = r;
            if (mt->role == ES_ROLE_Q || mt->role == ES_ROLE_K) { int64_t k = r % hd, half = hd / 2; src = r - k + 2 * (k % half) + k / half; }
            memcpy(want[i] + r * mt->cols, dec + src * mt->cols, (size_t)mt->cols * sizeof *dec);
        }
        free(dec);
        free(x);
        free(meta);
    }
    snprintf(p, sizeof p, "%s/model.gguf", dir);
    write_gguf(p, t, n, NULL);
    CHECK(es_wsrc_open(&s, p, NULL, &e) == 0 && es_wsrc_bind(&s, &M, &e) == 0, "gguf open: %s", e.msg);
    CHECK(s.gguf && s.rope_rows == ES_ROPE_PAIRS, "gguf defaults");
    compare(&s, want, "gguf");
    es_wsrc_close(&s);
    /* 1.4 the row order is a setting: read as halves, Q comes back permuted */
    es_wsrc_opts o = {ES_ROPE_HALVES, -1};
    CHECK(es_wsrc_open(&s, p, &o, &e) == 0 && es_wsrc_bind(&s, &M, &e) == 0, "gguf halves: %s", e.msg);
    float row[256];
    es_wsrc_read_row(&s, 2, 1, row, &e); /* layer 0 attn_q, row 1 */
    CHECK(memcmp(row, want[2] + 1 * 256, sizeof row) != 0 && memcmp(row, want[2] + 16 * 256, sizeof row) == 0,
          "halves setting did not read the file order");
    es_wsrc_close(&s);
    /* 2.x bad GGUF variants reuse these tensors */
    uint64_t *offs = calloc((size_t)n, sizeof *offs);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) { offs[i] = at; at += (uint64_t)(t[i].nbytes + 31) / 32 * 32; }
    offs[3] = offs[2]; /* 2.1 overlap */
    write_gguf(p, t, n, offs);
    CHECK(es_wsrc_open(&s, p, NULL, &e) != 0 && strstr(e.msg, "overlap") && strstr(e.msg, "model.gguf"), "overlap: %s", e.msg);
    offs[3] = offs[2] + 4; /* 2.2 misaligned */
    write_gguf(p, t, n, offs);
    CHECK(es_wsrc_open(&s, p, NULL, &e) != 0 && strstr(e.msg, "not aligned"), "misaligned: %s", e.msg);
    offs[3] = at + 4096; /* 2.3 beyond the file */
    write_gguf(p, t, n, offs);
    CHECK(es_wsrc_open(&s, p, NULL, &e) != 0 && strstr(e.msg, "past the end"), "beyond: %s", e.msg);
    /* 2.4 unsupported GGUF type (Q2_K = 10) */
    t[5].gtype = 10;
    write_gguf(p, t, n, NULL);
    CHECK(es_wsrc_open(&s, p, NULL, &e) != 0 && strstr(e.msg, "type 10 is not supported") &&
          strstr(e.msg, t[5].name), "type: %s", e.msg);
    t[5].gtype = 0;
    /* 2.5 shape times type size overflows */
    int64_t d0 = t[2].dims[0], d1 = t[2].dims[1]; /* layer 0 attn_q, Q4_0 */
    t[2].dims[0] = (int64_t)1 << 40;
    t[2].dims[1] = (int64_t)1 << 36;
    write_gguf(p, t, n, NULL);
    CHECK(es_wsrc_open(&s, p, NULL, &e) != 0 && strstr(e.msg, "overflows"), "gguf overflow: %s", e.msg);
    t[2].dims[0] = d0;
    t[2].dims[1] = d1;
    /* 2.6 truncated GGUF */
    write_gguf(p, t, n, NULL);
    CHECK(truncate(p, 200) == 0 && es_wsrc_open(&s, p, NULL, &e) != 0 && strstr(e.msg, "model.gguf"), "truncated: %s", e.msg);
    for (int i = 0; i < n; i++) { free(t[i].data); free(want[i]); }
    free(t);
    free(want);
    free(offs);
}

static void t2_bad_safetensors(void)
{
    es_err e;
    es_wsrc s;
    char p[256];
    snprintf(p, sizeof p, "%s/bad.safetensors", dir);
    unsigned char data[64] = {0};
    wt one = {"x", "F32", 0, 2, {4, 4}, data, 64};
    /* 2.7 header length beyond the file */
    FILE *f = fopen(p, "wb");
    put_le(f, 1000000, 8);
    fputs("{}", f);
    fclose(f);
    CHECK(es_wsrc_open(&s, p, NULL, &e) != 0 && strstr(e.msg, "runs past the end"), "hdr: %s", e.msg);
    f = fopen(p, "wb");
    put_le(f, 200000000, 8);
    fclose(f);
    CHECK(es_wsrc_open(&s, p, NULL, &e) != 0 && strstr(e.msg, "exceeds the limit"), "hdr limit: %s", e.msg);
    /* 2.8 unknown dtype */
    one.dtype = "I8";
    write_st(p, &one, 1, NULL);
    CHECK(es_wsrc_open(&s, p, NULL, &e) != 0 && strstr(e.msg, "unknown or unsupported dtype 'I8'"), "dtype: %s", e.msg);
    one.dtype = "F32";
    /* 2.9 shape x dtype size overflows */
    write_st(p, &one, 1, ",\"y\":{\"dtype\":\"F32\",\"shape\":[2251799813685248,2048],\"data_offsets\":[64,64]}");
    CHECK(es_wsrc_open(&s, p, NULL, &e) != 0 && strstr(e.msg, "shape times dtype size overflows"), "overflow: %s", e.msg);
    /* 2.10 overlapping offsets, and a gap */
    write_st(p, &one, 1, ",\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}");
    CHECK(es_wsrc_open(&s, p, NULL, &e) != 0 && (strstr(e.msg, "overlaps") || strstr(e.msg, "outside")), "overlap: %s", e.msg);
    write_st(p, &one, 1, ",\"y\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[70,70]}");
    CHECK(es_wsrc_open(&s, p, NULL, &e) != 0 && strstr(e.msg, "outside"), "outside: %s", e.msg);
    one.nbytes = 48; /* size disagrees with shape */
    write_st(p, &one, 1, NULL);
    CHECK(es_wsrc_open(&s, p, NULL, &e) != 0 && strstr(e.msg, "shape x dtype needs 64"), "size: %s", e.msg);
    /* 2.11 a shape that disagrees with config.json */
    int n = M.n_tensors;
    wt *t = model_tensors("F32", 4, 3); /* layer 0 attn_k, half its columns */
    write_st(p, t, n, NULL);
    CHECK(es_wsrc_open(&s, p, NULL, &e) == 0, "open: %s", e.msg);
    CHECK(es_wsrc_bind(&s, &M, &e) != 0 && strstr(e.msg, "k_proj.weight has shape [64, 128]") &&
          strstr(e.msg, "says [64, 256]") && strstr(e.msg, "config.json"), "shape: %s", e.msg);
    es_wsrc_close(&s);
    /* 2.12 a missing tensor */
    t[3].dims[1] = M.tensors[3].cols;
    t[3].nbytes *= 2;
    free(t[3].data);
    t[3].data = calloc((size_t)t[3].nbytes, 1);
    write_st(p, t, n - 1, NULL);
    CHECK(es_wsrc_open(&s, p, NULL, &e) == 0 && es_wsrc_bind(&s, &M, &e) != 0 && strstr(e.msg, "has no tensor"), "missing: %s", e.msg);
    es_wsrc_close(&s);
    for (int i = 0; i < n; i++) free(t[i].data);
    free(t);
}

/* 3.x a NaN or infinite weight is an error naming the file, the tensor and the element's index */
static void t3_nonfinite(void)
{
    es_err e;
    es_wsrc s;
    char p[256];
    int n = M.n_tensors;
    wt *t = model_tensors("BF16", 2, -1);
    /* 3.1 safetensors BF16: +infinity (0x7F80) at element 3 * 256 + 17 of layer 1's gate [768, 256] */
    int g = -1;
    for (int i = 0; i < n; i++)
        if (M.tensors[i].layer == 1 && M.tensors[i].role == ES_ROLE_GATE) g = i;
    uint16_t inf = 0x7F80, nan = 0x7FC1;
    memcpy(t[g].data + 2 * (3 * 256 + 17), &inf, 2);
    snprintf(p, sizeof p, "%s/inf.safetensors", dir);
    write_st(p, t, n, NULL);
    float row[1024];
    CHECK(es_wsrc_open(&s, p, NULL, &e) == 0 && es_wsrc_bind(&s, &M, &e) == 0, "open: %s", e.msg);
    CHECK(es_wsrc_read_row(&s, g, 2, row, &e) == 0, "row 2 is finite: %s", e.msg);
    CHECK(es_wsrc_read_row(&s, g, 3, row, &e) != 0 && strstr(e.msg, "inf.safetensors: tensor model.layers.1.mlp.gate_proj.weight") &&
          strstr(e.msg, "element 785 (row 3, column 17) is +infinity"), "inf: %s", e.msg);
    es_wsrc_close(&s);
    /* 3.2 NaN in a norm's gains */
    memset(t[g].data, 0, (size_t)t[g].nbytes);
    memcpy(t[0 + 1].data + 2 * 200, &nan, 2); /* tensor 1: layer 0's attn norm */
    write_st(p, t, n, NULL);
    CHECK(M.tensors[1].rows == 1 && es_wsrc_open(&s, p, NULL, &e) == 0 && es_wsrc_bind(&s, &M, &e) == 0, "open: %s", e.msg);
    CHECK(es_wsrc_read_row(&s, 1, 0, row, &e) != 0 && strstr(e.msg, M.tensors[1].name) &&
          strstr(e.msg, "element 200 (row 0, column 200) is NaN"), "nan: %s", e.msg);
    es_wsrc_close(&s);
    /* 3.3 GGUF Q8_0: a NaN block scale (F16 0x7E00) makes its 32 elements NaN; block 3 of row 2 of the
     * embedding [1024, 256] starts at element 2 * 256 + 96 */
    for (int i = 0; i < n; i++) {
        const es_tensor *mt = &M.tensors[i];
        gguf_name(mt, t[i].name);
        t[i].gtype = i == 0 ? 8 : 0; /* Q8_0 embedding, the rest F32 */
        t[i].nbytes = i == 0 ? mt->rows * (mt->cols / 32) * 34 : 4 * mt->rows * mt->cols;
        free(t[i].data);
        t[i].data = calloc((size_t)t[i].nbytes, 1);
    }
    CHECK(M.tensors[0].role == ES_ROLE_EMBED && M.tensors[0].cols == 256, "tensor 0 is the [1024, 256] embedding");
    uint16_t qnan = 0x7E00;
    memcpy(t[0].data + (2 * 8 + 3) * 34, &qnan, 2);
    snprintf(p, sizeof p, "%s/nan.gguf", dir);
    write_gguf(p, t, n, NULL);
    CHECK(es_wsrc_open(&s, p, NULL, &e) == 0 && es_wsrc_bind(&s, &M, &e) == 0, "gguf open: %s", e.msg);
    CHECK(es_wsrc_read_row(&s, 0, 1, row, &e) == 0, "row 1 is finite: %s", e.msg);
    CHECK(es_wsrc_read_row(&s, 0, 2, row, &e) != 0 && strstr(e.msg, "nan.gguf: tensor token_embd.weight") &&
          strstr(e.msg, "element 608 (row 2, column 96) is NaN"), "q8_0 nan: %s", e.msg);
    es_wsrc_close(&s);
    for (int i = 0; i < n; i++) free(t[i].data);
    free(t);
}

int main(int argc, char **argv)
{
    if (argc != 2) { fprintf(stderr, "usage: test_loaders MODELS_DIR\n"); return 2; }
    setenv("ETCHSIM_MODELS", argv[1], 1);
    es_err e;
    if (es_model_load(&M, "tiny-llama", &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    strcpy(dir, "/tmp/test_loaders_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    t1_roundtrip();
    t2_bad_safetensors();
    t3_nonfinite();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    es_model_free(&M);
    printf("%d passed, %d failed\n", passes, fails);
    return fails ? 1 : 0;
}
