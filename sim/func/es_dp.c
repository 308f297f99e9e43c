/* es_dp: the functional datapath (see es_dp.h for the semantics it
 * implements). Quantized tensors stay packed in their format's bytes and the
 * lanes unpack each block as they read it (es_dp.h: packed layout); float
 * formats are decoded once, at load, to FP32. Matrix products run over rows in parallel
 * (pthreads); every row is computed by one thread in a fixed order, and
 * integer sums are exact whatever their order, so results do not depend on
 * the thread count or on the vector unit of the host (tests hold both). A
 * prompt chunk's tokens share one pass over each weight row (matrix-matrix).
 * A call walks the model's op graph: dp_op hands each op to its kind's unit
 * (UNITS, near the end), which reads and writes the buffers the op names. */
#define _POSIX_C_SOURCE 200809L
#include "es_dp.h"
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "es_fp.h"
#include "es_quant.h"
#include "es_stats.h"

enum { ACT_INT8, ACT_FP8, ACT_BF16, ACT_FP32 };
enum { KV_INT8, KV_FP8, KV_BF16, KV_FP32 };

typedef struct dp_tensor {
    es_qfmt fmt;            /* storage format */
    int64_t rows, cols;     /* graph shape */
    int64_t padded;         /* cols rounded up to whole blocks */
    int64_t sub;            /* elements per scale (0: a float format) */
    int max_code;           /* largest |code| of the format */
    int has_min;            /* q4_k, q5_k: sub-blocks carry a min */
    int64_t rb, be, bb;     /* quantized formats: bytes per row, elements and bytes per block */
    const unsigned char *q; /* (rows, rb) the format's bytes as stored (es_dp.h: the packed layout) */
    unsigned char *own;     /* q when the tensor owns it (a recipe's), else NULL (a ROM unit's stream) */
    float *fv;              /* (rows, padded) values, float formats */
} dp_tensor;

typedef struct dp_seq {
    int used;
    int64_t start, cap;     /* positions [start, start + cap) */
    int32_t prefix;         /* sequence holding positions below start, or -1 */
    uint64_t rng;           /* sampler stream */
    unsigned char *k, *v;   /* (layers, cap, kv_heads, head_dim) elements of the KV format */
    float *ks, *vs;         /* (layers, cap, kv_heads) scales (int8, fp8) */
    int lora;               /* its adapter (es_dp_seq_lora), -1: none */
} dp_seq;

/* The lanes' threads: threads - 1 workers started at open and kept until close; a product's row shares go to
 * them and to the caller, each taking the next share not yet taken (es_dp.c: pool_run). */
typedef struct dp_pool {
    pthread_t th[63];
    int n;                  /* workers running */
    pthread_mutex_t lock;
    pthread_cond_t go, done;
    uint64_t gen;           /* bumped for each batch of jobs */
    int quit;               /* close asks the workers to end */
    void *(*fn)(void *);
    char *jobs;             /* the batch: jobs of `size` bytes, taken in order by whichever thread is free */
    size_t size;
    int n_jobs, next, done_jobs; /* jobs in the batch, the next not taken, those finished */
    int ready;              /* the mutex and conditions are initialized */
} dp_pool;

struct es_dp {
    const es_chip *c;
    const es_model *m;
    int act, kv, link16, threads;
    int64_t acc_max;        /* accumulator saturates at +-acc_max */
    int ref_decode;         /* es_dp_set_reference_decode */
    int kernels;            /* the widest vector kernels used (es_dp_set_kernels) */
    dp_pool pool;           /* the lanes' persistent threads */
    double split_min;       /* the smallest product (rows x cols x tokens) split between threads */
    unsigned char **streams; /* (n_streams) the ROM units' streams the tensors point into */
    int n_streams;
    es_dp_lane_fn lane_fn;  /* co-simulation: computes lane rows in place of the C code, or NULL */
    void *lane_ctx;
    dp_tensor *t;           /* (m->n_tensors) */
    int embed_op, head_op, sample_op; /* the graph's EMBED op, the head's first op, its SAMPLE op */
    float **norm;           /* (n_tensors) decoded vectors (rows == 1: norm gains, SSM biases and D), or NULL */
    float **fp32;           /* (n_tensors) FP32 values of the CONV and SCAN ops' tensors (SCAN: -exp(A)), or NULL */
    double *freq;           /* (head_dim / 2) */
    float *cos_t, *sin_t;   /* (rope_rows, head_dim / 2) */
    int64_t rope_rows;
    dp_seq *seqs;
    int64_t n_seqs;
    es_sampler smp;
    uint64_t seed;
    es_sample_slot *work;   /* (vocab) sampler scratch */
    /* the graph's activation buffers (es_buf), grown as chunks need: (scratch_n, width) each */
    int64_t width[ES_BUF_COUNT]; /* elements per token, 0: the model has no such buffer */
    int used[ES_BUF_COUNT];      /* some op reads or writes it or a part of it (SSM_X: SSM_XZ) */
    float *buf[ES_BUF_COUNT];    /* (scratch_n, width) each used buffer but X and LOGITS (the caller's) */
    int64_t scratch_n;
    float *xh;              /* (hidden) the head's copy of its input */
    float *sc;              /* attention: (positions) scores, a K row, one KV head's keys and values (op_attn) */
    es_dp_stats stats;
    /* MoE: the experts each token of the last es_dp_layers call went to, (layers, n, top_k) */
    int32_t *routes;
    int64_t routes_cap;
    /* the LoRA adapters (es_dp_set_loras), each sequence's own (dp_seq.lora) */
    es_dp_lora *lora;
    int n_lora;
    float *l_h;             /* (largest rank) A x */
};

static int max_code(es_qtype t)
{
    switch (t) {
    case ES_Q_INT3: case ES_Q_Q3_K: return 4;
    case ES_Q_INT6: case ES_Q_Q6_K: return 32;
    case ES_Q_Q4_0: return 8;
    case ES_Q_Q8_0: return 128;
    case ES_Q_Q4_K: return 15;
    case ES_Q_Q5_K: return 31;
    case ES_Q_MXFP4: case ES_Q_NVFP4: return 12;
    default: return 0;
    }
}

static int check_graph(es_dp *dp, es_err *e);

typedef struct pool_arg { dp_pool *p; int k; } pool_arg; /* a worker's pool and index, freed by the worker */

/* Runs the batch's jobs not yet taken, one at a time, until none is left; called with the lock held, returns
 * with it held. */
static void pool_take(dp_pool *p)
{
    while (p->next < p->n_jobs) {
        void *job = p->jobs + (size_t)p->next++ * p->size;
        void *(*fn)(void *) = p->fn;
        pthread_mutex_unlock(&p->lock);
        fn(job);
        pthread_mutex_lock(&p->lock);
        if (++p->done_jobs == p->n_jobs) pthread_cond_signal(&p->done);
    }
}

static void *pool_worker(void *arg)
{
    dp_pool *p = ((pool_arg *)arg)->p;
    free(arg);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->go, &p->lock);
        if (p->quit) break;
        seen = p->gen;
        pool_take(p);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* threads - 1 workers; fewer when the system refuses some (their shares then run on the caller). */
static void pool_start(dp_pool *p, int threads)
{
    if (pthread_mutex_init(&p->lock, NULL)) return;
    if (pthread_cond_init(&p->go, NULL)) { pthread_mutex_destroy(&p->lock); return; }
    if (pthread_cond_init(&p->done, NULL)) { pthread_cond_destroy(&p->go); pthread_mutex_destroy(&p->lock); return; }
    p->ready = 1;
    for (int k = 0; k < threads - 1 && k < 63; k++) {
        pool_arg *a = malloc(sizeof *a);
        if (!a) break;
        *a = (pool_arg){p, k};
        if (pthread_create(&p->th[p->n], NULL, pool_worker, a)) { free(a); break; }
        p->n++;
    }
}

static void pool_stop(dp_pool *p)
{
    if (!p->ready) return;
    pthread_mutex_lock(&p->lock);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->lock);
    for (int k = 0; k < p->n; k++) pthread_join(p->th[k], NULL);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->lock);
    p->ready = 0;
}

/* fn on each of n jobs (size bytes each, at jobs), each on whichever thread takes it first: the caller and the
 * workers take the next job not taken until none is left, so a worker the host has not scheduled yet leaves
 * its share to the others instead of holding up the product (a loaded machine). Returns when every job has
 * finished. */
static void pool_run(dp_pool *p, void *(*fn)(void *), void *jobs, size_t size, int n)
{
    if (n <= 1 || !p->n) {
        for (int k = 0; k < n; k++) fn((char *)jobs + (size_t)k * size);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->jobs = jobs;
    p->size = size;
    p->n_jobs = n;
    p->next = p->done_jobs = 0;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pool_take(p);
    while (p->done_jobs < p->n_jobs) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

int es_dp_open(es_dp **out, const es_chip *c, const es_model *m, int threads, es_err *e)
{
    *out = NULL;
    if (c->link.elem_bits != 16 && c->link.elem_bits != 32)
        return es_fail(e, "%s: key 'link.elem_bits': functional mode carries the residual as BF16 (16) or "
                          "FP32 (32), got %d", c->path, c->link.elem_bits);
    es_dp *dp = calloc(1, sizeof *dp);
    if (!dp) return es_fail(e, "out of memory");
    dp->c = c;
    dp->m = m;
    const char *a = c->tile.act_format, *k = c->kv.format;
    dp->act = !strcmp(a, "int8") ? ACT_INT8 : !strcmp(a, "fp8") ? ACT_FP8 : !strcmp(a, "bf16") ? ACT_BF16 : ACT_FP32;
    dp->kv = !strcmp(k, "int8") ? KV_INT8 : !strcmp(k, "fp8") ? KV_FP8 : !strcmp(k, "bf16") ? KV_BF16 : KV_FP32;
    dp->link16 = c->link.elem_bits == 16;
    dp->acc_max = c->tile.acc_bits >= 63 ? INT64_MAX : ((int64_t)1 << (c->tile.acc_bits - 1)) - 1;
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    dp->threads = threads > 0 ? threads : nc > 0 ? (int)nc : 1;
    if (dp->threads > 64) dp->threads = 64;
    pool_start(&dp->pool, dp->threads);
    dp->kernels = ES_DP_KERNELS_AVX512;
    dp->split_min = 262144; /* host tuning, not a chip figure: below it a thread's wake-up costs more than its share */
    dp->t = calloc((size_t)m->n_tensors, sizeof *dp->t);
    dp->norm = calloc((size_t)m->n_tensors, sizeof *dp->norm);
    dp->fp32 = calloc((size_t)m->n_tensors, sizeof *dp->fp32);
    dp->freq = malloc((size_t)(m->head_dim / 2) * sizeof *dp->freq);
    dp->work = malloc((size_t)m->vocab * sizeof *dp->work);
    dp->xh = malloc((size_t)m->hidden * sizeof *dp->xh);
    if (!dp->t || !dp->norm || !dp->fp32 || !dp->freq || !dp->work || !dp->xh) {
        es_dp_close(dp);
        return es_fail(e, "out of memory");
    }
    if (check_graph(dp, e)) {
        es_dp_close(dp);
        return -1;
    }
    es_model_rope_freqs(m, dp->freq);
    dp->smp.temperature = 0;
    dp->smp.top_p = 1;
    *out = dp;
    return 0;
}

void es_dp_close(es_dp *dp)
{
    if (!dp) return;
    pool_stop(&dp->pool);
    for (int i = 0; dp->t && i < dp->m->n_tensors; i++) {
        free(dp->t[i].own);
        free(dp->t[i].fv);
    }
    for (int i = 0; dp->norm && i < dp->m->n_tensors; i++) free(dp->norm[i]);
    for (int i = 0; dp->fp32 && i < dp->m->n_tensors; i++) free(dp->fp32[i]);
    for (int64_t s = 0; s < dp->n_seqs; s++) es_dp_seq_end(dp, (int32_t)s);
    for (int u = 0; u < dp->n_streams; u++) free(dp->streams[u]);
    free(dp->streams);
    free(dp->seqs);
    free(dp->norm);
    free(dp->fp32);
    free(dp->t);
    free(dp->freq);
    free(dp->cos_t);
    free(dp->sin_t);
    free(dp->work);
    for (int b = 0; b < ES_BUF_COUNT; b++) free(dp->buf[b]);
    free(dp->xh);
    free(dp->sc);
    free(dp->routes);
    free(dp->l_h);
    free(dp->lora);
    free(dp);
}

int es_dp_set_loras(es_dp *dp, const es_dp_lora *l, int n, es_err *e)
{
    int most = 1;
    for (int k = 0; k < n; k++) {
        if (l[k].rank < 1) return es_fail(e, "functional datapath: adapter %d has rank %d", k, l[k].rank);
        if (l[k].rank > most) most = l[k].rank;
    }
    float *h = realloc(dp->l_h, (size_t)most * sizeof *h);
    if (!h) return es_fail(e, "out of memory");
    dp->l_h = h;
    es_dp_lora *c = realloc(dp->lora, (size_t)(n > 0 ? n : 1) * sizeof *c);
    if (!c) return es_fail(e, "out of memory");
    if (n > 0) memcpy(c, l, (size_t)n * sizeof *c);
    dp->lora = c;
    dp->n_lora = n;
    return 0;
}

int es_dp_seq_lora(es_dp *dp, int32_t seq, int k, es_err *e)
{
    if (seq < 0 || seq >= dp->n_seqs || !dp->seqs[seq].used)
        return es_fail(e, "functional datapath: sequence %d has no KV cache", seq);
    if (k < -1 || k >= dp->n_lora)
        return es_fail(e, "functional datapath: sequence %d names adapter %d; the chip holds %d (ids 0 to %d)", seq, k,
                       dp->n_lora, dp->n_lora - 1);
    dp->seqs[seq].lora = k;
    return 0;
}

/* ---- packed weights: one unpacker per format ---- */

enum { BLK_MAX = 256, SUB_MAX = 16, DP_SLACK = 32 }; /* DP_SLACK: bytes the vector kernels may read past a tensor */ /* the largest block (K-quants) and its sub-blocks (q3_k, q6_k) */

/* twice the E2M1 value of each FP4 code (the lane view's integer code) */
static const int8_t E2M1X2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

static float f16_at(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return es_f16_to_f32(h);
}

/* q4_k / q5_k: the 6-bit scale and min of sub-block j from the 12 packed bytes q */
static void kq_scale_min(int j, const uint8_t *q, int *sc, int *mn)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* The sub-block scales (and mins: q4_k, q5_k) of one block at p, as the format's reference computes them
 * (the same FP32 operations in the same order); NaN where the stored scale is NaN. */
static void unpack_scales(const es_qfmt *f, const uint8_t *p, float *sc, float *mn)
{
    switch (f->type) {
    case ES_Q_Q8_0: case ES_Q_Q4_0: case ES_Q_INT3: case ES_Q_INT6: sc[0] = f16_at(p); break;
    case ES_Q_Q3_K: {
        const uint8_t *s = p + 96;
        float d = f16_at(p + 108);
        for (int k = 0; k < 16; k++) {
            int lo = k < 8 ? s[k] & 0xF : s[k - 8] >> 4, hi = (s[8 + (k & 3)] >> (2 * (k >> 2))) & 3;
            sc[k] = d * (float)((lo | hi << 4) - 32);
        }
        break;
    }
    case ES_Q_Q6_K: {
        float d = f16_at(p + 208);
        for (int k = 0; k < 16; k++) sc[k] = d * (float)(int8_t)p[192 + k];
        break;
    }
    case ES_Q_Q4_K: case ES_Q_Q5_K: {
        float d = f16_at(p), dmin = f16_at(p + 2);
        for (int k = 0; k < 8; k++) {
            int s, m;
            kq_scale_min(k, p + 4, &s, &m);
            sc[k] = d * (float)s;
            mn[k] = dmin * (float)m;
        }
        break;
    }
    case ES_Q_MXFP4: sc[0] = es_e8m0_to_f32(p[0]) * 0.5f; break;
    case ES_Q_NVFP4: sc[0] = es_e4m3_to_f32(p[0]) * f->tensor_scale * 0.5f; break;
    default: break;
    }
}

static void unpack_int3(const uint8_t *p, int g, int8_t *qb)
{
    for (int j = 0; j < g; j += 8, p += 3) { /* 8 codes in 3 bytes, LSB first */
        uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
        for (int k = 0; k < 8; k++) qb[j + k] = (int8_t)((int)(v >> (3 * k) & 7) - 4);
    }
}

static void unpack_int6(const uint8_t *p, int g, int8_t *qb)
{
    for (int j = 0; j < g; j += 4, p += 3) { /* 4 codes in 3 bytes, LSB first */
        uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
        for (int k = 0; k < 4; k++) qb[j + k] = (int8_t)((int)(v >> (6 * k) & 63) - 32);
    }
}

/* nibbles: 4-bit codes, lo of byte j at element j (split) or 2j (interleaved), through table tab */
static void unpack_nibbles(const uint8_t *qs, int half, es_nibble_order o, const int8_t *tab, int8_t *qb)
{
    if (o == ES_NIB_SPLIT)
        for (int j = 0; j < half; j++) {
            qb[j] = tab[qs[j] & 0xF];
            qb[j + half] = tab[qs[j] >> 4];
        }
    else
        for (int j = 0; j < half; j++) {
            qb[2 * j] = tab[qs[j] & 0xF];
            qb[2 * j + 1] = tab[qs[j] >> 4];
        }
}

static const int8_t Q4_0[16] = {-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7};

static void unpack_q3_k(const uint8_t *p, int8_t *qb)
{
    const uint8_t *hm = p, *qs = p + 32;
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++)
                qb[128 * h + 32 * j + l] =
                    (int8_t)(((qs[32 * h + l] >> (2 * j)) & 3) - (((hm[l] >> (4 * h + j)) & 1) ? 0 : 4));
}

static void unpack_q6_k(const uint8_t *p, int8_t *qb)
{
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = p + 64 * h, *qh = p + 128 + 32 * h;
        int8_t *q = qb + 128 * h;
        for (int l = 0; l < 32; l++) {
            q[l] = (int8_t)(((ql[l] & 0xF) | (qh[l] & 3) << 4) - 32);
            q[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (qh[l] >> 2 & 3) << 4) - 32);
            q[l + 64] = (int8_t)(((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) - 32);
            q[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) - 32);
        }
    }
}

static void unpack_q45_k(const uint8_t *qs, const uint8_t *qh, int8_t *qb)
{
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
            if (qh) {
                lo |= (qh[l] >> (2 * c) & 1) << 4;
                hi |= (qh[l] >> (2 * c + 1) & 1) << 4;
            }
            qb[64 * c + l] = (int8_t)lo;
            qb[64 * c + 32 + l] = (int8_t)hi;
        }
}

int es_dp_unpack_block(const es_qfmt *f, const void *blk, int8_t *qb, float *sc, float *mn)
{
    const uint8_t *p = blk;
    float unused[SUB_MAX];
    unpack_scales(f, p, sc, mn ? mn : unused);
    switch (f->type) {
    case ES_Q_Q8_0: memcpy(qb, p + 2, 32); break;
    case ES_Q_Q4_0: unpack_nibbles(p + 2, 16, f->nibbles, Q4_0, qb); break;
    case ES_Q_Q3_K: unpack_q3_k(p, qb); break;
    case ES_Q_Q6_K: unpack_q6_k(p, qb); break;
    case ES_Q_Q4_K: unpack_q45_k(p + 16, NULL, qb); break;
    case ES_Q_Q5_K: unpack_q45_k(p + 48, p + 16, qb); break;
    case ES_Q_MXFP4: unpack_nibbles(p + 1, 16, f->nibbles, E2M1X2, qb); break;
    case ES_Q_NVFP4: unpack_nibbles(p + 1, 8, f->nibbles, E2M1X2, qb); break;
    case ES_Q_INT3: unpack_int3(p + 2, f->group, qb); break;
    case ES_Q_INT6: unpack_int6(p + 2, f->group, qb); break;
    default: return -1;
    }
    return 0;
}

/* Block k of row r of quantized tensor w: its codes, sub-block scales and mins (has_min), through the packed
 * kernels' unpacker or, with ref, the format's scalar reference (es_decode_codes). */
static void tensor_block(const dp_tensor *w, int ref, int64_t r, int64_t k, int8_t *qb, float *sc, float *mn)
{
    const unsigned char *p = w->q + r * w->rb + k * w->bb;
    if (!ref) {
        es_dp_unpack_block(&w->fmt, p, qb, sc, mn);
        return;
    }
    es_err e; /* the weights were checked at load: the reference cannot fail on them */
    es_decode_codes(&w->fmt, p, w->be, qb, sc, w->has_min ? mn : NULL, &e);
}

/* Every block's scales of row r of w finite; else the reference decoder's error for the row or the
 * sub-block whose scale or min is not finite. */
static int check_row(const dp_tensor *w, const char *name, int64_t r, es_err *e)
{
    float sc[SUB_MAX], mn[SUB_MAX];
    const int64_t nsb = w->be / w->sub;
    for (int64_t k = 0; k < w->padded / w->be; k++) {
        unpack_scales(&w->fmt, w->q + r * w->rb + k * w->bb, sc, mn);
        for (int64_t j = 0; j < nsb; j++) {
            if (isfinite(sc[j]) && (!w->has_min || isfinite(mn[j]))) continue;
            int8_t *q = malloc((size_t)w->padded);
            float *s = malloc((size_t)(w->padded / w->sub) * sizeof *s), *m = malloc((size_t)(w->padded / w->sub) * sizeof *m);
            int bad = !q || !s || !m ? -2 : es_decode_codes(&w->fmt, w->q + r * w->rb, w->padded, q, s, m, e);
            free(q); free(s); free(m);
            if (bad == -2) return es_fail(e, "out of memory");
            if (bad) {
                char msg[sizeof e->msg];
                snprintf(msg, sizeof msg, "%s", e->msg);
                return es_fail(e, "%s row %lld: %s", name, (long long)r, msg);
            }
            return es_fail(e, "%s row %lld: the %s of sub-block %lld is not finite; weights must be finite", name,
                           (long long)r, isfinite(sc[j]) ? "minimum" : "scale", (long long)(k * nsb + j));
        }
    }
    return 0;
}

/* Tensor i from its stored bytes (rows of es_q_row_bytes(padded)): a quantized format keeps them packed
 * (data, owned when own is data), checked that every scale is finite; a float format is decoded to FP32 (own
 * freed); norms also keep their FP32 gains. Thread-safe across tensors. */
static int set_tensor(es_dp *dp, int i, const es_qfmt *f, const unsigned char *data, unsigned char *own, es_err *e)
{
    const es_tensor *mt = &dp->m->tensors[i];
    dp_tensor *t = &dp->t[i];
    t->fmt = *f;
    t->rows = mt->rows;
    t->cols = mt->cols;
    t->padded = es_q_padded(f, mt->cols);
    int64_t rb = es_q_row_bytes(f, t->padded, e);
    if (rb < 0) { free(own); return -1; }
    t->sub = es_q_sub_elems(f);
    t->max_code = max_code(f->type);
    t->has_min = f->type == ES_Q_Q4_K || f->type == ES_Q_Q5_K;
    size_t n = (size_t)(t->rows * t->padded);
    if (mt->rows == 1) { /* a norm's gains */
        float *g = malloc((size_t)t->padded * sizeof *g);
        if (!g) { free(own); return es_fail(e, "out of memory"); }
        dp->norm[i] = g;
        if (es_dequantize_row(f, data, t->padded, g, e)) { free(own); return -1; }
    }
    if (!t->sub) {
        int rc = 0;
        if (!(t->fv = malloc(n * sizeof *t->fv))) rc = es_fail(e, "out of memory for %s", mt->name);
        for (int64_t r = 0; !rc && r < t->rows; r++)
            rc = es_dequantize_row(f, data + r * rb, t->padded, t->fv + r * t->padded, e);
        free(own);
        for (size_t k = 0; !rc && k < n; k++)
            if (!isfinite(t->fv[k]))
                return es_fail(e, "%s row %lld: weight %lld is %s; weights must be finite", mt->name,
                               (long long)(k / (size_t)t->padded), (long long)(k % (size_t)t->padded),
                               isnan(t->fv[k]) ? "NaN" : "infinite");
        return rc;
    }
    t->rb = rb;
    t->be = es_q_block_elems(f);
    t->bb = es_q_block_bytes(f);
    t->q = data;
    t->own = own;
    if (t->be > BLK_MAX || t->be / t->sub > SUB_MAX)
        return es_fail(e, "%s: blocks of %lld elements; the lanes take at most %d", mt->name, (long long)t->be, BLK_MAX);
    for (int64_t r = 0; r < t->rows; r++)
        if (check_row(t, mt->name, r, e)) return -1;
    return 0;
}

/* The FP32 values of row r of tensor i (the format's decoder: scale x code - min, or the float). */
static void tensor_row(const es_dp *dp, int i, int64_t r, float *out)
{
    const dp_tensor *w = &dp->t[i];
    if (!w->sub) { memcpy(out, w->fv + r * w->padded, (size_t)w->cols * sizeof *out); return; }
    int8_t q[BLK_MAX];
    float sc[SUB_MAX], mn[SUB_MAX];
    for (int64_t k = 0; k * w->be < w->cols; k++) {
        tensor_block(w, dp->ref_decode, r, k, q, sc, mn);
        for (int64_t c = 0; c < w->be && k * w->be + c < w->cols; c++)
            out[k * w->be + c] = sc[c / w->sub] * (float)q[c] - (w->has_min ? mn[c / w->sub] : 0.0f);
    }
}

/* The FP32 values the vector unit and the scan engine read, once the weights are loaded: a CONV
 * op's weights (SSM conv1d) and a SCAN op's A as -exp(A_log). */
static int op_params(es_dp *dp, es_err *e)
{
    const es_model *m = dp->m;
    for (int i = 0; i < m->n_ops; i++) {
        const es_op *op = &m->ops[i];
        if (op->kind != ES_OP_CONV && op->kind != ES_OP_SCAN) continue;
        const es_tensor *t = &m->tensors[op->tensor];
        float *v = malloc((size_t)(t->rows * t->cols) * sizeof *v);
        if (!v) return es_fail(e, "out of memory");
        free(dp->fp32[op->tensor]);
        dp->fp32[op->tensor] = v;
        for (int64_t r = 0; r < t->rows; r++) {
            tensor_row(dp, op->tensor, r, v + r * t->cols);
            if (op->kind == ES_OP_SCAN)
                for (int64_t k = 0; k < t->cols; k++) v[r * t->cols + k] = -expf(v[r * t->cols + k]);
        }
    }
    return 0;
}

/* Run fn(arg, k) for k in [0, n) on the datapath's threads; the first error wins. */
typedef struct pool { int (*fn)(void *, int, es_err *); void *arg; int n, next, failed; es_err err; pthread_mutex_t lock; } pool;

static void *load_worker(void *p)
{
    pool *q = p;
    for (;;) {
        pthread_mutex_lock(&q->lock);
        int k = q->failed ? q->n : q->next++;
        pthread_mutex_unlock(&q->lock);
        if (k >= q->n) return NULL;
        es_err e = {{0}};
        if (q->fn(q->arg, k, &e)) {
            pthread_mutex_lock(&q->lock);
            if (!q->failed) { q->failed = 1; q->err = e; }
            pthread_mutex_unlock(&q->lock);
        }
    }
}

static int run_pool(int threads, int n, int (*fn)(void *, int, es_err *), void *arg, es_err *e)
{
    pool q = {fn, arg, n, 0, 0, {{0}}, PTHREAD_MUTEX_INITIALIZER};
    pthread_t th[64];
    int started = 0;
    for (int k = 1; k < threads && k < n && k < 64; k++)
        if (pthread_create(&th[started], NULL, load_worker, &q) == 0) started++;
    load_worker(&q);
    for (int k = 0; k < started; k++) pthread_join(th[k], NULL);
    if (q.failed) *e = q.err;
    return q.failed ? -1 : 0;
}

typedef struct rom_load { es_dp *dp; const es_rom_image *img; } rom_load;

static int load_rom_unit(void *arg, int u, es_err *e)
{
    rom_load *L = arg;
    const es_rom_unit *un = &L->img->units[u];
    int64_t rb = un->row_bits / 8;
    unsigned char *stream = es_rom_alloc(un->stream_rows * rb + DP_SLACK);
    if (!stream) return es_fail(e, "out of memory for %s (%lld bytes)", un->label, (long long)(un->stream_rows * rb));
    int rc = es_rom_unit_bytes(L->img, u, stream, e);
    L->dp->streams[u] = stream; /* the unit's tensors stay packed in it (es_dp_close frees it) */
    for (int i = 0; !rc && i < L->img->n_tensors; i++) {
        const es_rom_tensor *rt = &L->img->tensors[i];
        if (rt->unit == u && (rc = set_tensor(L->dp, i, &rt->fmt, stream + rt->row_first * rb, NULL, e))) {
            char m[sizeof e->msg];
            snprintf(m, sizeof m, "%s", e->msg);
            es_fail(e, "%s: %s", L->img->path, m);
        }
    }
    return rc;
}

int es_dp_load_rom(es_dp *dp, const es_rom_image *img, es_err *e)
{
    const es_model *m = dp->m;
    if (img->n_tensors != m->n_tensors)
        return es_fail(e, "%s: %d tensors, but %s has %d", img->path, img->n_tensors, m->path, m->n_tensors);
    for (int i = 0; i < m->n_tensors; i++) {
        const es_rom_tensor *rt = &img->tensors[i];
        if (strcmp(rt->name, m->tensors[i].name) || rt->rows != m->tensors[i].rows || rt->cols != m->tensors[i].cols)
            return es_fail(e, "%s: tensor %d is %s [%lld, %lld], but the model's is %s", img->path, i, rt->name,
                           (long long)rt->rows, (long long)rt->cols, m->tensors[i].name);
    }
    if (!(dp->streams = calloc((size_t)img->n_units, sizeof *dp->streams))) return es_fail(e, "out of memory");
    dp->n_streams = img->n_units;
    rom_load L = {dp, img};
    if (run_pool(dp->threads, img->n_units, load_rom_unit, &L, e)) return -1;
    return op_params(dp, e);
}

typedef struct rows_load { es_dp *dp; const es_recipe *r; es_ref_rows rows; void *arg; } rows_load;

static int load_rows_tensor(void *arg, int i, es_err *e)
{
    rows_load *L = arg;
    const es_tensor *mt = &L->dp->m->tensors[i];
    es_qfmt f;
    if (es_recipe_format(L->r, mt, &f, e)) return -1;
    int64_t rb = es_q_row_bytes(&f, es_q_padded(&f, mt->cols), e);
    if (rb < 0) return -1;
    unsigned char *b = es_rom_alloc(rb * mt->rows + DP_SLACK);
    if (!b) return es_fail(e, "out of memory for %s (%lld bytes)", mt->name, (long long)(rb * mt->rows));
    if (es_quantize_tensor(&f, mt->rows, mt->cols, L->rows, L->arg, i, mt->name, b, e)) { free(b); return -1; }
    return set_tensor(L->dp, i, &f, b, b, e); /* b is the tensor's now */
}

int es_dp_load_rows(es_dp *dp, const es_recipe *r, es_ref_rows rows, void *arg, es_err *e)
{
    rows_load L = {dp, r, rows, arg};
    if (run_pool(dp->threads, dp->m->n_tensors, load_rows_tensor, &L, e)) return -1;
    return op_params(dp, e);
}

void es_dp_set_lane_fn(es_dp *dp, es_dp_lane_fn fn, void *ctx)
{
    dp->lane_fn = fn;
    dp->lane_ctx = ctx;
}

void es_dp_set_reference_decode(es_dp *dp, int on) { dp->ref_decode = on != 0; }

void es_dp_set_split_min(es_dp *dp, double elems) { dp->split_min = elems; }

static int kernels_host(void);

int es_dp_set_kernels(es_dp *dp, int level)
{
    int host = kernels_host();
    dp->kernels = level < ES_DP_KERNELS_PLAIN ? ES_DP_KERNELS_PLAIN : level > host ? host : level;
    return dp->kernels;
}

void es_dp_set_sampler(es_dp *dp, const es_sampler *s, uint64_t seed)
{
    dp->smp = *s;
    dp->seed = seed;
}

es_dp_stats es_dp_get_stats(const es_dp *dp) { return dp->stats; }

/* ---- sequences and the KV cache ---- */

static int kv_elem_bytes(const es_dp *dp) { return dp->kv == KV_FP32 ? 4 : dp->kv == KV_BF16 ? 2 : 1; }

int es_dp_seq_begin(es_dp *dp, int32_t seq, int64_t start, int64_t positions, int32_t prefix_seq, uint64_t tag,
                    es_err *e)
{
    const es_model *m = dp->m;
    if (seq < 0) return es_fail(e, "functional datapath: sequence %d", seq);
    if (seq >= dp->n_seqs) {
        int64_t n = dp->n_seqs ? dp->n_seqs : 16;
        while (n <= seq) n *= 2;
        dp_seq *s = realloc(dp->seqs, (size_t)n * sizeof *s);
        if (!s) return es_fail(e, "out of memory");
        memset(s + dp->n_seqs, 0, (size_t)(n - dp->n_seqs) * sizeof *s);
        dp->seqs = s;
        dp->n_seqs = n;
    }
    es_dp_seq_end(dp, seq);
    dp_seq *s = &dp->seqs[seq];
    /* KV: (layers, positions, kv heads) vectors of head_dim; SSM: in k the scan state, (layers,
     * channels) vectors of state_size, in v the conv1d window, (layers, K - 1) vectors of channels */
    int64_t vecs = m->ssm_state > 0 ? m->layers * m->ssm_inner : m->layers * (positions > 0 ? positions : 1) * m->kv_heads;
    int64_t hd = m->ssm_state > 0 ? m->ssm_state : m->head_dim;
    if (m->ssm_state > 0) {
        int64_t wv = m->layers * (m->ssm_conv > 1 ? m->ssm_conv - 1 : 1), wb = wv * m->ssm_inner;
        if (wb > vecs * hd) { vecs = (wb + hd - 1) / hd; }
    }
    size_t bytes = (size_t)vecs * (size_t)hd * (size_t)kv_elem_bytes(dp);
    s->k = malloc(bytes);
    s->v = malloc(bytes);
    s->ks = malloc((size_t)vecs * sizeof *s->ks);
    s->vs = malloc((size_t)vecs * sizeof *s->vs);
    if (!s->k || !s->v || !s->ks || !s->vs) {
        es_dp_seq_end(dp, seq);
        return es_fail(e, "functional datapath: out of memory for the KV cache of sequence %d (%zu bytes)", seq,
                       2 * bytes);
    }
    /* a new sequence's state and conv window start at zero (every format encodes 0 as zero bytes
     * with a zero scale) */
    memset(s->k, 0, bytes);
    memset(s->v, 0, bytes);
    memset(s->ks, 0, (size_t)vecs * sizeof *s->ks);
    memset(s->vs, 0, (size_t)vecs * sizeof *s->vs);
    s->used = 1;
    s->lora = -1;
    s->start = start;
    s->cap = positions;
    s->prefix = start > 0 ? prefix_seq : -1;
    uint64_t st = dp->seed ^ (tag * 0x9E3779B97F4A7C15ULL);
    s->rng = es_splitmix64(&st);
    return 0;
}

void es_dp_seq_end(es_dp *dp, int32_t seq)
{
    if (seq < 0 || seq >= dp->n_seqs) return;
    dp_seq *s = &dp->seqs[seq];
    free(s->k); free(s->v); free(s->ks); free(s->vs);
    memset(s, 0, sizeof *s);
}

static float round_half_away(float v) { return v >= 0 ? floorf(v + 0.5f) : -floorf(-v + 0.5f); }

/* Store one head vector v (hd) in the KV format at element index at. */
static void kv_put(const es_dp *dp, unsigned char *base, float *scales, int64_t at, int64_t vec, const float *v,
                   int64_t hd)
{
    if (dp->kv == KV_FP32) { memcpy((float *)base + at, v, (size_t)hd * sizeof *v); return; }
    if (dp->kv == KV_BF16) {
        uint16_t *p = (uint16_t *)base + at;
        for (int64_t i = 0; i < hd; i++) p[i] = es_f32_to_bf16(v[i]);
        return;
    }
    float am = 0;
    for (int64_t i = 0; i < hd; i++) am = fabsf(v[i]) > am ? fabsf(v[i]) : am;
    float s = am / (dp->kv == KV_INT8 ? 127.0f : 448.0f);
    scales[vec] = s;
    unsigned char *p = base + at;
    for (int64_t i = 0; i < hd; i++) {
        float x = s > 0 ? v[i] / s : 0.0f;
        if (dp->kv == KV_INT8) {
            float r = round_half_away(x);
            r = r > 127 ? 127 : r < -127 ? -127 : r;
            p[i] = (unsigned char)(int8_t)r;
        } else {
            p[i] = es_f32_to_e4m3(x);
        }
    }
}

static void kv_get(const es_dp *dp, const unsigned char *base, const float *scales, int64_t at, int64_t vec, float *v,
                   int64_t hd)
{
    if (dp->kv == KV_FP32) { memcpy(v, (const float *)base + at, (size_t)hd * sizeof *v); return; }
    if (dp->kv == KV_BF16) {
        const uint16_t *p = (const uint16_t *)base + at;
        for (int64_t i = 0; i < hd; i++) v[i] = es_bf16_to_f32(p[i]);
        return;
    }
    float s = scales[vec];
    const unsigned char *p = base + at;
    for (int64_t i = 0; i < hd; i++)
        v[i] = (dp->kv == KV_INT8 ? (float)(int8_t)p[i] : es_e4m3_to_f32(p[i])) * s;
}

/* The sequence holding position pos of seq, and the vector index there. */
static const dp_seq *kv_where(const es_dp *dp, int32_t seq, int64_t layer, int64_t pos, int64_t kvh, int64_t *vec)
{
    const dp_seq *s = &dp->seqs[seq];
    if (pos < s->start && s->prefix >= 0) s = &dp->seqs[s->prefix];
    *vec = (layer * s->cap + (pos - s->start)) * dp->m->kv_heads + kvh;
    return s;
}

/* ---- lanes ---- */

typedef struct mm_job {
    es_dp *dp;
    const dp_tensor *w;
    int64_t n;              /* tokens */
    const float *af;        /* (n, padded) activations as floats (int8: the codes) */
    const int8_t *ai;       /* (n, padded) int8 codes, or NULL */
    const float *s;         /* (n) activation scales */
    const float *asum;      /* (n, padded / sub) the activations' sum over each sub-block (formats with mins) */
    const int16_t *a16;     /* the vector kernel's activations (vec_acts), or NULL */
    const int32_t *gs;      /* and their group sums */
    int wide;               /* the AVX-512 kernel (vec_ok 2) runs the rows */
    float *y;               /* (n, rows) */
    int64_t r0, r1;         /* rows of this job */
    int64_t sat;            /* saturations counted */
    int ti;                 /* the tensor's index */
    int failed;             /* the co-simulation failed: err says why */
    es_err err;
} mm_job;

/* sum of c[i] a[i], i < n: exact in 32 bits (|c| <= 128, |a| <= 127, n <= 256).
 * Integer sums do not depend on order, so the vectorized clone equals the
 * plain one bit for bit. */
__attribute__((target_clones("avx2", "default")))
static int32_t dot_i8(const int8_t *c, const int8_t *a, int64_t n)
{
    int32_t s = 0;
    for (int64_t i = 0; i < n; i++) s += (int32_t)c[i] * (int32_t)a[i];
    return s;
}

int64_t es_dp_sat_sum(const int8_t *codes, const int8_t *a, int64_t n, int64_t acc_max, int64_t *sats)
{
    int64_t sum = 0, k = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += (int64_t)codes[i] * a[i];
        if (sum > acc_max) { sum = acc_max; k++; }
        else if (sum < -acc_max) { sum = -acc_max; k++; }
    }
    if (sats) *sats += k;
    return sum;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* es_dp_quant_int8's codes of x[0..8k) / s (s > 0), 8 at a time: the same IEEE division, addition and floor as
 * round_half_away, on |v| with v's sign put back, then the clamp; returns the elements done. */
__attribute__((target("avx2"))) static int64_t quant_int8_avx2(const float *x, int64_t n, float s, int8_t *q)
{
    const __m256 vs = _mm256_set1_ps(s), half = _mm256_set1_ps(0.5f), zero = _mm256_setzero_ps();
    const __m256 sign = _mm256_set1_ps(-0.0f), lim = _mm256_set1_ps(127.0f), nlim = _mm256_set1_ps(-127.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i), vs);
        __m256 r = _mm256_floor_ps(_mm256_add_ps(_mm256_andnot_ps(sign, v), half));
        r = _mm256_blendv_ps(r, _mm256_sub_ps(zero, r), _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
        const __m256i k = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(r, nlim), lim));
        __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(k), _mm256_extracti128_si256(k, 1));
        _mm_storel_epi64((__m128i *)(q + i), _mm_packs_epi16(w, w));
    }
    return i;
}
#endif

float es_dp_quant_int8(const float *x, int64_t n, int8_t *q)
{
    float am = 0;
    for (int64_t i = 0; i < n; i++) am = fabsf(x[i]) > am ? fabsf(x[i]) : am;
    float s = am / 127.0f;
    int64_t i0 = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    if (s > 0 && isfinite(s) && __builtin_cpu_supports("avx2")) i0 = quant_int8_avx2(x, n, s, q);
#endif
    for (int64_t i = i0; i < n; i++) {
        float r = s > 0 ? round_half_away(x[i] / s) : 0.0f;
        r = r > 127 ? 127 : r < -127 ? -127 : r;
        q[i] = (int8_t)r;
    }
    return s;
}

/* ---- vector kernels: int3 and int6 weights x int8 activations (x86-64 AVX2) ----
 * A group's sum of code x activation is an integer, exact whatever the order of its additions, so these
 * kernels give the lanes' sub-block sum bit for bit whenever it cannot saturate (the plain path runs when it
 * can, and on a host without AVX2). Each 128-bit half of a vector takes 8 consecutive codes (one int3 triplet of
 * 3 bytes, or two int6 triplets): a byte shuffle puts in each 16-bit lane the two bytes holding its code, a
 * multiply by 2^(top - shift) and a logical shift right by top leave the code's bits alone (top = 16 - bits), and
 * a multiply-add with the activations (int16) sums pairs exactly in 32 bits. A group's codes are unpacked once for
 * all the chunk's tokens. sum(code x a) = sum(u x a) - offset x sum(a), u the stored unsigned code. The group's
 * scale then goes through es_dp_acc_step as on the plain path. The kernels read up to 32 bytes past a tensor's
 * last group: its buffer holds DP_SLACK more. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DP_VEC 1
#else
#define DP_VEC 0
#endif

static float F16_TAB[65536]; /* es_f16_to_f32 of every half, for the kernels' group scales */
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;
static void f16_fill(void)
{
    for (uint32_t h = 0; h < 65536; h++) F16_TAB[h] = es_f16_to_f32((uint16_t)h);
}

/* The widest kernels this host runs (es_dp_set_kernels): AVX-512 needs F, BW, VBMI (vpermb, vpmultishiftqb) and
 * VNNI (vpdpbusd). */
static int kernels_host(void)
{
#if DP_VEC
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vnni"))
        return ES_DP_KERNELS_AVX512;
    if (__builtin_cpu_supports("avx2")) return ES_DP_KERNELS_AVX2;
#endif
    return ES_DP_KERNELS_PLAIN;
}

/* Which vector kernel runs product w (int8 activations): 0 the plain path, 1 the AVX2 kernel (int3 or int6 with
 * groups of 16k up to 128), 2 the AVX-512 kernel (groups of 64 or 128); never with co-simulation or the reference
 * decoder, nor where a sub-block can saturate (check), nor above the level es_dp_set_kernels allows. */
static int vec_ok(const es_dp *dp, const dp_tensor *w, int check)
{
#if DP_VEC
    if (dp->lane_fn || dp->ref_decode || check || dp->act != ACT_INT8 || dp->kernels < ES_DP_KERNELS_AVX2) return 0;
    if (w->fmt.type != ES_Q_INT3 && w->fmt.type != ES_Q_INT6) return 0;
    if (w->sub % 16 || w->sub > 128) return 0;
    return dp->kernels >= ES_DP_KERNELS_AVX512 && w->sub % 64 == 0 ? 2 : 1;
#else
    (void)dp; (void)w; (void)check;
    return 0;
#endif
}

/* The activations of n tokens (ai: (n, P) codes) as int16, a16 (n, P), and each group's sum, gs (n, P / sub). */
static void vec_acts(const dp_tensor *w, const int8_t *ai, int64_t n, int16_t *a16, int32_t *gs)
{
    const int64_t P = w->padded, G = w->sub;
    for (int64_t t = 0; t < n; t++)
        for (int64_t g = 0; g < P / G; g++) {
            int32_t sum = 0;
            for (int64_t i = g * G; i < (g + 1) * G; i++) {
                sum += ai[t * P + i];
                a16[t * P + i] = ai[t * P + i];
            }
            gs[t * (P / G) + g] = sum;
        }
}

#if DP_VEC
__attribute__((target("avx2"))) static inline int32_t vec_hsum(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* Rows r0..r1 of the job with the int3/int6 kernel (vec_ok): a16, gs from vec_acts. */
__attribute__((target("avx2"))) static void vec_rows(mm_job *j, const int16_t *a16, const int32_t *gs, float *acc)
{
    const dp_tensor *w = j->w;
    const int64_t P = w->padded, G = w->sub, R = w->rows, n = j->n, ng = P / G, nv = G / 16;
    const int i3 = w->fmt.type == ES_Q_INT3, top = i3 ? 13 : 10, off = i3 ? 4 : 32;
    const int64_t half = i3 ? 3 : 6; /* bytes of 8 codes */
    /* per 16-bit lane: the bytes holding its code, and 2^(top - its bit offset in them) */
    /* (the upper half's 8 codes start half bytes on, in the same 16 bytes broadcast to both halves) */
    const __m256i shuf = i3 ? _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 1, 2, 1, 2, 1, 2, 2, 3, 2, 3,
                                               3, 4, 3, 4, 3, 4, 4, 5, 4, 5, 4, 5, 5, 6, 5, 6)
                            : _mm256_setr_epi8(0, 1, 0, 1, 1, 2, 2, 3, 3, 4, 3, 4, 4, 5, 5, 6,
                                               6, 7, 6, 7, 7, 8, 8, 9, 9, 10, 9, 10, 10, 11, 11, 12);
    const __m256i mul = i3 ? _mm256_setr_epi16(8192, 1024, 128, 4096, 512, 64, 2048, 256,
                                               8192, 1024, 128, 4096, 512, 64, 2048, 256)
                           : _mm256_setr_epi16(1024, 16, 64, 256, 1024, 16, 64, 256,
                                               1024, 16, 64, 256, 1024, 16, 64, 256);
    __m256i u[8];
    for (int64_t r = j->r0; r < j->r1; r++) {
        const uint8_t *row = w->q + r * w->rb;
        for (int64_t t = 0; t < n; t++) acc[t] = 0.0f;
        for (int64_t g = 0; g < ng; g++) {
            const uint8_t *p = row + g * w->bb;
            uint16_t h;
            memcpy(&h, p, 2);
            const float d = F16_TAB[h];
            for (int64_t v = 0; v < nv; v++) { /* codes 16v..16v+15 */
                const uint8_t *c = p + 2 + 2 * half * v;
                __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)c));
                b = _mm256_mullo_epi16(_mm256_shuffle_epi8(b, shuf), mul);
                u[v] = _mm256_srli_epi16(b, top);
            }
            for (int64_t t = 0; t < n; t++) {
                const int16_t *a = a16 + t * P + g * G;
                __m256i s = _mm256_setzero_si256();
                for (int64_t v = 0; v < nv; v++)
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(u[v], _mm256_loadu_si256((const __m256i *)(a + 16 * v))));
                int64_t sum = (int64_t)vec_hsum(s) - (int64_t)off * gs[t * ng + g];
                acc[t] = es_dp_acc_step(acc[t], d, sum);
            }
        }
        for (int64_t t = 0; t < n; t++) j->y[t * R + r] = acc[t] * j->s[t];
    }
}
/* Rows r0..r1 of the job with the AVX-512 kernel (vec_ok 2): 16 rows at a time (the last tile's missing rows
 * repeat its last row, and are not stored). The 16 rows sit in slots, several a vector: int3 four rows a vector
 * (one 128-bit quarter each; int6 runs vec512_body_rows). For each group and 64-code chunk, the slots' packed
 * bytes (two rows to a 64-byte register: 2 x 32 int3 bytes) are unpacked to bytes by
 * a two-source byte permute (each 8 codes' bytes to one 64-bit lane) and a multishift (each code's bits to its
 * byte), masked; permute m puts in each row's quarter the codes of quarter q + m, so that with the
 * token's int8 activations rotated alike vpdpbusd (unsigned code x signed activation, four products summed
 * exactly in each 32-bit lane) sums every row's whole chunk in the row's own lanes. A short transpose-and-add
 * tree gives the 16 rows' group sums in one vector (the slots are ordered so that lane i is row i), less offset x
 * sum(a), exact integers as on the plain path. The group's 16 scales (FP16 to FP32 exactly) times the sums, each
 * rounded to FP32, are added to the 16 rows' accumulators, one FP32 multiply and one FP32 add per row and group,
 * in group order: each row's accumulation is es_dp_acc_step's, lane by lane. acc holds 16 n floats. */
#define DP512 __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vnni"), always_inline)) static inline
DP512 __m512i vec512_add32(__m512i x, __m512i y) /* dword pairs of x and y, interleaved by 128-bit quarter */
{
    return _mm512_add_epi32(_mm512_unpacklo_epi32(x, y), _mm512_unpackhi_epi32(x, y));
}
DP512 __m512i vec512_add64(__m512i x, __m512i y)
{
    return _mm512_add_epi32(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y));
}
/* The 16 rows' sums, lane i row i, from v[0..3] (slot 4j + q in quarter q of v[j]). */
DP512 __m512i vec512_sum16(const __m512i *v)
{
    return vec512_add64(vec512_add32(v[0], v[1]), vec512_add32(v[2], v[3]));
}
/* The row of each slot (so that vec512_sum16's lane i is row i), permute m's byte indices into a slot pair's
 * 128 bytes (each slot's 32 bytes start at its group's scale), each code's bit offset in its 64-bit lane (ms), and
 * the activations' dword rotation for permute m (ri). */
static void vec512_tables(int *row, uint8_t pi[4][64], uint8_t *ms, int32_t ri[4][16])
{
    for (int k = 0; k < 64; k++) ms[k] = (uint8_t)(3 * (k % 8));
    for (int m = 0; m < 4; m++)
        for (int i = 0; i < 16; i++) ri[m][i] = (i + 4 * m) % 16;
    for (int l = 0; l < 16; l++) row[4 * (l % 4) + l / 4] = l;
    for (int m = 0; m < 4; m++)
        for (int k = 0; k < 64; k++) { /* byte b of 64-bit lane L: 8 codes' first source byte, plus b's */
            const int L = k / 8, b = k % 8;
            pi[m][k] = (uint8_t)(32 * (L / 2) + 2 + 3 * (2 * ((L / 2 + m) % 4) + L % 2) + (b < 3 ? b : 2));
        }
}

/* int3 (nc: 64-code chunks per group, 1 or 2: a constant in each of vec512_rows' two copies) */
DP512 void vec512_body(mm_job *j, float *acc, const int64_t nc)
{
    const dp_tensor *w = j->w;
    const int64_t P = w->padded, G = w->sub, R = w->rows, n = j->n, ng = P / G;
    const int64_t cb = 24; /* bytes of 64 codes */
    const int nv = 4, M = 4; /* vectors of a tile, permutes of a chunk */
    uint8_t pi[4][64], ms[64];
    int32_t ri[4][16];
    int row[16];
    vec512_tables(row, pi, ms, ri);
    __m512i perm[4], rot[4]; /* rot[m]: the activations rotated by m quarters */
    for (int m = 0; m < M; m++) perm[m] = _mm512_loadu_si512(pi[m]), rot[m] = _mm512_loadu_si512(ri[m]);
    const __m512i shift = _mm512_loadu_si512(ms), mask = _mm512_set1_epi8(7);
    const __m512i sidx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* word i: 16 (i / 4) */
                                          48, 48, 48, 48, 32, 32, 32, 32, 16, 16, 16, 16, 0, 0, 0, 0);
    const int32_t off = 4;
    __m512i u[16][2];
    for (int64_t r0 = j->r0; r0 < j->r1; r0 += 16) {
        const int64_t live = j->r1 - r0 < 16 ? j->r1 - r0 : 16;
        const uint8_t *rp[16], *rs[16]; /* each row's, each slot's bytes */
        for (int i = 0; i < 16; i++) rp[i] = w->q + (r0 + (i < live ? i : live - 1)) * w->rb;
        for (int s = 0; s < 16; s++) rs[s] = rp[row[s]];
        const char *nx = (const char *)(w->q + (r0 + 16) * w->rb);
        for (int64_t t = 0; t < n; t++) _mm512_storeu_ps(acc + 16 * t, _mm512_setzero_ps());
        __m512 acc1 = _mm512_setzero_ps(); /* n == 1: token 0's accumulators */
        for (int64_t g = 0; g < ng; g++) {
            const int64_t at = g * w->bb;
            /* the next tile's rows (contiguous) read ahead at the rate this tile's are consumed */
            for (const char *f = nx + 16 * at, *e = f + 16 * w->bb; f < e; f += 64) _mm_prefetch(f, _MM_HINT_T0);
#define DP_LD256(p) _mm256_loadu_si256((const __m256i *)(p))
#define DP_HALF(s, c)                                                                                      \
    _mm512_inserti64x4(_mm512_castsi256_si512(DP_LD256(rs[2 * (s)] + at + (c) * cb)),                        \
                       DP_LD256(rs[2 * (s) + 1] + at + (c) * cb), 1)
#define DP_X(q, h, c) x[q][h][c]
            __m512i x[4][2][2]; /* quad q's source registers h of chunk c */
            /* the 16 rows' FP16 scales, to FP32 exactly: quad q's words 16k (k its slot in the quad) are rows
               4k + q's scales */
            for (int q = 0; q < 4; q++)
                for (int64_t c = 0; c < nc; c++) x[q][0][c] = DP_HALF(2 * q, c), x[q][1][c] = DP_HALF(2 * q + 1, c);
            __m512i h = _mm512_permutex2var_epi16(x[0][0][0], sidx, x[0][1][0]);
            for (int q = 1; q < 4; q++)
                h = _mm512_mask_blend_epi16((__mmask32)0x1111 << q, h, _mm512_permutex2var_epi16(x[q][0][0], sidx, x[q][1][0]));
            const __m512 d = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
#define DP_ROT(p, m) ((m) ? _mm512_permutexvar_epi32(rot[m], _mm512_loadu_si512(p)) : _mm512_loadu_si512(p))
#define DP_UNPACK(x0, x1, m) \
    _mm512_and_si512(_mm512_multishift_epi64_epi8(shift, _mm512_permutex2var_epi8(x0, perm[m], x1)), mask)
            if (n == 1) { /* one token: each row's codes go straight to the dot product */
                __m512i v[4], a[2][4];
                for (int64_t c = 0; c < nc; c++)
                    for (int m = 0; m < M; m++) a[c][m] = DP_ROT(j->ai + g * G + 64 * c, m);
                for (int q = 0; q < nv; q++) {
                    v[q] = _mm512_setzero_si512();
                    for (int64_t c = 0; c < nc; c++) {
                        const __m512i x0 = DP_X(q, 0, c), x1 = DP_X(q, 1, c);
                        for (int m = 0; m < M; m++) v[q] = _mm512_dpbusd_epi32(v[q], DP_UNPACK(x0, x1, m), a[c][m]);
                    }
                }
                __m512i s = _mm512_sub_epi32(vec512_sum16(v), _mm512_set1_epi32(off * j->gs[g]));
                acc1 = _mm512_add_ps(acc1, _mm512_mul_ps(d, _mm512_cvtepi32_ps(s)));
                continue;
            }
            for (int q = 0; q < nv; q++)
                for (int64_t c = 0; c < nc; c++) {
                    const __m512i x0 = DP_X(q, 0, c), x1 = DP_X(q, 1, c);
                    for (int m = 0; m < M; m++) u[q * M + m][c] = DP_UNPACK(x0, x1, m);
                }
#undef DP_UNPACK
#undef DP_HALF
#undef DP_X
#undef DP_LD256
            for (int64_t t = 0; t < n; t++) {
                const int8_t *a = j->ai + t * P + g * G;
                __m512i v[4];
                for (int q = 0; q < nv; q++) v[q] = _mm512_setzero_si512();
                for (int64_t c = 0; c < nc; c++)
                    for (int m = 0; m < M; m++) {
                        const __m512i am = DP_ROT(a + 64 * c, m);
                        for (int q = 0; q < nv; q++) v[q] = _mm512_dpbusd_epi32(v[q], u[q * M + m][c], am);
                    }
                __m512i s = _mm512_sub_epi32(vec512_sum16(v), _mm512_set1_epi32(off * j->gs[t * ng + g]));
                __m512 part = _mm512_mul_ps(d, _mm512_cvtepi32_ps(s));
                _mm512_storeu_ps(acc + 16 * t, _mm512_add_ps(_mm512_loadu_ps(acc + 16 * t), part));
            }
#undef DP_ROT
        }
        if (n == 1) _mm512_storeu_ps(acc, acc1);
        for (int64_t t = 0; t < n; t++)
            _mm512_mask_storeu_ps(j->y + t * R + r0, (__mmask16)((1u << live) - 1),
                                  _mm512_mul_ps(_mm512_loadu_ps(acc + 16 * t), _mm512_set1_ps(j->s[t])));
    }
}
#undef DP512

__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vnni"))) static inline __m512i
vec512_sum16_rows(__m512i *v)
{
    __m512i a[8], b[4], c[2];
    for (int i = 0; i < 8; i++)
        a[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 4; i++)
        b[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_epi64(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 2; i++)
        c[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(b[2 * i], b[2 * i + 1], 0x88),
                                _mm512_shuffle_i32x4(b[2 * i], b[2 * i + 1], 0xDD));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(c[0], c[1], 0x88), _mm512_shuffle_i32x4(c[0], c[1], 0xDD));
}

/* int6: one row a vector (vpermb from one row's bytes) and a 15-merge transpose-and-add tree for the 16 rows: the
 * int3 scheme's two int6 rows a vector ran slower on the AMD Zen 5 host (2026-12-06, a kernel micro-benchmark).
 * (nc: 64-code chunks per group, 1 or 2) */
__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vnni"), always_inline)) static inline void
vec512_body_rows(mm_job *j, float *acc, const int64_t nc)
{
    const dp_tensor *w = j->w;
    const int64_t P = w->padded, G = w->sub, R = w->rows, n = j->n, ng = P / G;
    const int64_t cb = 48; /* bytes of 64 codes */
    uint8_t pi[64], ms[64];
    for (int k = 0; k < 64; k++) { /* byte k of 64-bit lane q: source byte 6 q + k, code k's bit offset */
        int q = k / 8, b = k % 8;
        pi[k] = (uint8_t)(6 * q + (b < 6 ? b : 5));
        ms[k] = (uint8_t)(6 * b);
    }
    const __m512i perm = _mm512_loadu_si512(pi), shift = _mm512_loadu_si512(ms);
    const __m512i mask = _mm512_set1_epi8(63);
    const int32_t off = 32;
    __m512i u[16][2];
    for (int64_t r0 = j->r0; r0 < j->r1; r0 += 16) {
        const int64_t live = j->r1 - r0 < 16 ? j->r1 - r0 : 16;
        const uint8_t *rp[16];
        for (int i = 0; i < 16; i++) rp[i] = w->q + (r0 + (i < live ? i : live - 1)) * w->rb;
        const char *nx = (const char *)(w->q + (r0 + 16) * w->rb);
        for (int64_t t = 0; t < n; t++) _mm512_storeu_ps(acc + 16 * t, _mm512_setzero_ps());
        __m512 acc1 = _mm512_setzero_ps(); /* n == 1: token 0's accumulators */
        for (int64_t g = 0; g < ng; g++) {
            const int64_t at = g * w->bb;
            uint16_t hs[16]; /* the 16 rows' FP16 scales (a gather was slower), to FP32 exactly */
            for (int i = 0; i < 16; i++) memcpy(&hs[i], rp[i] + at, 2);
            const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)hs));
            /* the next tile's rows (contiguous) read ahead at the rate this tile's are consumed */
            for (const char *f = nx + 16 * at, *e = f + 16 * w->bb; f < e; f += 64) _mm_prefetch(f, _MM_HINT_T0);
#define DP_UNPACK(i, c)                                                                                          \
    _mm512_and_si512(                                                                                            \
        _mm512_multishift_epi64_epi8(shift, _mm512_permutexvar_epi8(perm, _mm512_loadu_si512(rp[i] + at + 2 + (c) * cb))), \
        mask)
            if (n == 1) { /* one token: each row's codes go straight to the dot product */
                const __m512i a0 = _mm512_loadu_si512(j->ai + g * G), a1 = nc > 1 ? _mm512_loadu_si512(j->ai + g * G + 64) : a0;
                __m512i v[16];
                for (int i = 0; i < 16; i++) {
                    v[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), DP_UNPACK(i, 0), a0);
                    if (nc > 1) v[i] = _mm512_dpbusd_epi32(v[i], DP_UNPACK(i, 1), a1);
                }
                __m512i s = _mm512_sub_epi32(vec512_sum16_rows(v), _mm512_set1_epi32(off * j->gs[g]));
                acc1 = _mm512_add_ps(acc1, _mm512_mul_ps(d, _mm512_cvtepi32_ps(s)));
                continue;
            }
            for (int i = 0; i < 16; i++)
                for (int64_t c = 0; c < nc; c++) u[i][c] = DP_UNPACK(i, c);
#undef DP_UNPACK
            for (int64_t t = 0; t < n; t++) {
                const int8_t *a = j->ai + t * P + g * G;
                const __m512i a0 = _mm512_loadu_si512(a), a1 = nc > 1 ? _mm512_loadu_si512(a + 64) : a0;
                __m512i v[16];
                for (int i = 0; i < 16; i++) {
                    v[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[i][0], a0);
                    if (nc > 1) v[i] = _mm512_dpbusd_epi32(v[i], u[i][1], a1);
                }
                __m512i s = _mm512_sub_epi32(vec512_sum16_rows(v), _mm512_set1_epi32(off * j->gs[t * ng + g]));
                __m512 part = _mm512_mul_ps(d, _mm512_cvtepi32_ps(s));
                _mm512_storeu_ps(acc + 16 * t, _mm512_add_ps(_mm512_loadu_ps(acc + 16 * t), part));
            }
        }
        if (n == 1) _mm512_storeu_ps(acc, acc1);
        for (int64_t t = 0; t < n; t++)
            _mm512_mask_storeu_ps(j->y + t * R + r0, (__mmask16)((1u << live) - 1),
                                  _mm512_mul_ps(_mm512_loadu_ps(acc + 16 * t), _mm512_set1_ps(j->s[t])));
    }
}

__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vnni"))) static void vec512_rows(mm_job *j, float *acc)
{
    const int i3 = j->w->fmt.type == ES_Q_INT3, nc = j->w->sub == 128 ? 2 : 1;
    if (i3 && nc == 1) vec512_body(j, acc, 1);
    else if (i3) vec512_body(j, acc, 2);
    else if (nc == 1) vec512_body_rows(j, acc, 1);
    else vec512_body_rows(j, acc, 2);
}
#endif

/* One sub-block of one token on the lanes: the row's accumulator acc plus the sub-block's sum (es_dp.h: integer and
 * saturating with int8 activations, FP32 in element order otherwise) times its scale, less min x asum (the
 * activations' sum over the sub-block, has_min only). The one place the lanes' arithmetic is written. */
static inline float lane_sub(const mm_job *j, float acc, const int8_t *cq, int64_t t, int64_t off, float sc, float mn,
                             float asum, int check, int64_t *sat)
{
    const int64_t sub = j->w->sub, P = j->w->padded;
    if (j->ai) {
        const int8_t *ab = j->ai + t * P + off;
        int64_t sum = check ? es_dp_sat_sum(cq, ab, sub, j->dp->acc_max, sat) : dot_i8(cq, ab, sub);
        if (!j->w->has_min) return es_dp_acc_step(acc, sc, sum); /* the lanes' scale-and-accumulate (rtl-ref/fp_scale_acc.v) */
        float part = sc * (float)sum;
        part = part - mn * asum;
        return acc + part;
    }
    const float *ab = j->af + t * P + off;
    float sum = 0.0f;
    for (int64_t i = 0; i < sub; i++) sum += (float)cq[i] * ab[i];
    float part = sc * sum;
    if (j->w->has_min) part = part - mn * asum;
    return acc + part;
}

/* Co-simulation: row r through the lane function, token by token, the row decoded by the format's reference
 * (the codes the RTL reads); a token it leaves goes through lane_sub. */
static int mm_row_cosim(mm_job *j, int64_t r, int check)
{
    const dp_tensor *w = j->w;
    const int64_t P = w->padded, sub = w->sub, nsub = sub ? P / sub : 0, R = w->rows;
    int8_t *codes = sub ? malloc((size_t)P) : NULL;
    float *sc = sub ? malloc((size_t)nsub * sizeof *sc) : NULL, *mn = sub ? calloc((size_t)nsub, sizeof *mn) : NULL;
    if (sub && (!codes || !sc || !mn)) {
        free(codes); free(sc); free(mn);
        j->failed = 1;
        es_fail(&j->err, "out of memory");
        return -1;
    }
    if (sub) es_decode_codes(&w->fmt, w->q + r * w->rb, P, codes, sc, w->has_min ? mn : NULL, &j->err);
    for (int64_t t = 0; t < j->n; t++) {
        int h = j->dp->lane_fn(j->dp->lane_ctx, j->ti, w->fmt.type, w->has_min ? NULL : codes, j->ai ? j->ai + t * P : NULL,
                               P, sub, sc, j->s[t], &j->y[t * R + r], &j->err);
        if (h < 0) j->failed = 1;
        if (h != 0) continue;
        float acc = 0.0f;
        if (!sub)
            for (int64_t i = 0; i < P; i++) acc += w->fv[r * P + i] * j->af[t * P + i];
        for (int64_t b = 0; b < nsub; b++)
            acc = lane_sub(j, acc, codes + b * sub, t, b * sub, sc[b], mn[b], w->has_min ? j->asum[t * nsub + b] : 0.0f,
                           check, &j->sat);
        j->y[t * R + r] = acc * j->s[t];
    }
    free(codes); free(sc); free(mn);
    return j->failed ? -1 : 0;
}

/* ---- q8_0 weights x int8 activations (x86-64 AVX2) ----
 * Each 32-code block's sum of code x activation is an exact integer (|sum| <= 32 x 128 x 127 < 2^24): a byte
 * multiply-add of |code| (unsigned) with the activation carrying the code's sign sums pairs exactly in 16 bits
 * (at most 2 x 128 x 127 < 2^15; activations are within +-127), and a multiply-add with ones sums them in 32.
 * Eight blocks' sums are reduced into one vector together; then each block goes through es_dp_acc_step in block
 * order, with its scale as the reference decoder gives it (F16_TAB), as on the plain path, bit for bit. Only
 * where no sub-block can saturate (check 0), without co-simulation or the reference decoder. */
static int q8_ok(const mm_job *j, int check)
{
#if DP_VEC
    return j->w->fmt.type == ES_Q_Q8_0 && j->ai && !check && !j->dp->lane_fn && !j->dp->ref_decode &&
           __builtin_cpu_supports("avx2");
#else
    (void)j; (void)check;
    return 0;
#endif
}

#if DP_VEC
__attribute__((target("avx2"))) static inline __m256i q8_dot(const uint8_t *blk, const int8_t *a)
{
    const __m256i w = _mm256_loadu_si256((const __m256i *)(blk + 2)), x = _mm256_loadu_si256((const __m256i *)a);
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* Row r of a q8_0 product for the job's tokens (q8_ok). */
__attribute__((target("avx2"))) static void q8_row(mm_job *j, int64_t r)
{
    const dp_tensor *w = j->w;
    const int64_t P = w->padded, nb = P / 32, R = w->rows;
    const uint8_t *row = w->q + r * w->rb;
    for (int64_t t = 0; t < j->n; t++) {
        const int8_t *a = j->ai + t * P;
        float acc = 0.0f;
        int64_t b = 0;
        for (; b + 8 <= nb; b += 8) {
            __m256i v[8];
            for (int i = 0; i < 8; i++) v[i] = q8_dot(row + (b + i) * 34, a + (b + i) * 32);
            const __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
            const __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
            int32_t s[8];
            _mm256_storeu_si256((__m256i *)s, _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20),
                                                               _mm256_permute2x128_si256(h0, h1, 0x31)));
            for (int i = 0; i < 8; i++) {
                uint16_t h;
                memcpy(&h, row + (b + i) * 34, 2);
                acc = es_dp_acc_step(acc, F16_TAB[h], s[i]);
            }
        }
        for (; b < nb; b++) {
            uint16_t h;
            memcpy(&h, row + b * 34, 2);
            acc = es_dp_acc_step(acc, F16_TAB[h], vec_hsum(q8_dot(row + b * 34, a + b * 32)));
        }
        j->y[t * R + r] = acc * j->s[t];
    }
}
#else
static void q8_row(mm_job *j, int64_t r) { (void)j; (void)r; }
#endif

/* Rows r0..r1 of the job: each weight row read once for all the job's tokens, block by block, each block unpacked
 * from its packed bytes (or by the reference decoder) and its sub-blocks run in order for every token; per token
 * the same operations in the same order as one token alone. */
static void *mm_run(void *arg)
{
    mm_job *j = arg;
    const dp_tensor *w = j->w;
    const int64_t P = w->padded, sub = w->sub, nsub = sub ? P / sub : 0, R = w->rows, n = j->n;
    /* a sub-block can overflow the accumulator only if its largest possible sum can */
    const int check = j->ai && (double)w->max_code * 127.0 * (double)sub > (double)j->dp->acc_max;
    float *acc = malloc((size_t)(j->wide ? 16 * n : n) * sizeof *acc);
    if (!acc) {
        j->failed = 1;
        es_fail(&j->err, "out of memory");
        return NULL;
    }
#if DP_VEC
    if (j->wide) {
        vec512_rows(j, acc);
        free(acc);
        return NULL;
    }
    if (j->a16) {
        vec_rows(j, j->a16, j->gs, acc);
        free(acc);
        return NULL;
    }
#endif
    int8_t qb[BLK_MAX];
    float sc[SUB_MAX], mn[SUB_MAX] = {0};
    const int q8 = q8_ok(j, check);
    if (q8) pthread_once(&f16_once, f16_fill);
    for (int64_t r = j->r0; r < j->r1; r++) {
        if (j->dp->lane_fn) {
            if (mm_row_cosim(j, r, check)) break;
            continue;
        }
        if (q8) {
            q8_row(j, r);
            continue;
        }
        for (int64_t t = 0; t < n; t++) acc[t] = 0.0f;
        if (!sub) {
            const float *wf = w->fv + r * P;
            for (int64_t t = 0; t < n; t++) {
                const float *a = j->af + t * P;
                for (int64_t i = 0; i < P; i++) acc[t] += wf[i] * a[i];
            }
        }
        const int64_t nsb = sub ? w->be / sub : 0;
        for (int64_t k = 0; sub && k < P / w->be; k++) {
            tensor_block(w, j->dp->ref_decode, r, k, qb, sc, mn);
            for (int64_t b = 0; b < nsb; b++) {
                const int64_t off = k * w->be + b * sub, sb = k * nsb + b;
                for (int64_t t = 0; t < n; t++)
                    acc[t] = lane_sub(j, acc[t], qb + b * sub, t, off, sc[b], mn[b],
                                      w->has_min ? j->asum[t * nsub + sb] : 0.0f, check, &j->sat);
            }
        }
        for (int64_t t = 0; t < n; t++) j->y[t * R + r] = acc[t] * j->s[t];
    }
    free(acc);
    return NULL;
}

/* y (n, rows) = lanes(W, x (n, cols)) with the declared activation format. */
/* Each token's activation vector (x: n of C) in the lanes' format: af (n, P) as floats (int8: the codes), ai
 * (n, P) the int8 codes (int8 only), s (n) the scales. */
static void lane_acts(const es_dp *dp, const float *x, int64_t n, int64_t C, int64_t P, float *af, int8_t *ai, float *s)
{
    for (int64_t t = 0; t < n; t++) {
        const float *xt = x + t * C;
        float *a = af + t * P, am = 0;
        for (int64_t i = 0; i < C; i++) am = fabsf(xt[i]) > am ? fabsf(xt[i]) : am;
        switch (dp->act) {
        case ACT_INT8:
            s[t] = es_dp_quant_int8(xt, C, ai + t * P);
            for (int64_t i = 0; i < C; i++) a[i] = ai[t * P + i];
            break;
        case ACT_FP8:
            s[t] = am / 448.0f;
            for (int64_t i = 0; i < C; i++) a[i] = s[t] > 0 ? es_e4m3_to_f32(es_f32_to_e4m3(xt[i] / s[t])) : 0.0f;
            break;
        case ACT_BF16:
            s[t] = 1.0f;
            for (int64_t i = 0; i < C; i++) a[i] = es_bf16_to_f32(es_f32_to_bf16(xt[i]));
            break;
        default:
            s[t] = 1.0f;
            memcpy(a, xt, (size_t)C * sizeof *a);
        }
    }
}

/* Formats with mins: each sub-block's sum of activations, as the lanes form it (integer, or FP32 in order), asum
 * (n, P / sub). */
static void lane_asum(const dp_tensor *w, int64_t n, const float *af, const int8_t *ai, float *asum)
{
    const int64_t P = w->padded, nsub = P / w->sub;
    for (int64_t t = 0; t < n; t++)
        for (int64_t b = 0; b < nsub; b++) {
            int64_t is = 0;
            float fs = 0.0f;
            for (int64_t i = b * w->sub; i < (b + 1) * w->sub; i++) {
                if (ai) is += ai[t * P + i];
                else fs += af[t * P + i];
            }
            asum[t * nsub + b] = ai ? (float)is : fs;
        }
}

static int lane_matmul(es_dp *dp, int ti, const float *x, int64_t n, float *y, es_err *e)
{
    const dp_tensor *w = &dp->t[ti];
    int64_t P = w->padded, C = w->cols;
    if (!w->q && !w->fv) return es_fail(e, "functional datapath: %s has no weights loaded", dp->m->tensors[ti].name);
    float *af = calloc((size_t)(n * P), sizeof *af), *s = malloc((size_t)n * sizeof *s), *asum = NULL;
    int8_t *ai = dp->act == ACT_INT8 ? calloc((size_t)(n * P), 1) : NULL;
    if (w->has_min) asum = malloc((size_t)(n * (P / w->sub)) * sizeof *asum);
    if (!af || !s || (dp->act == ACT_INT8 && !ai) || (w->has_min && !asum)) {
        free(af); free(s); free(ai); free(asum);
        return es_fail(e, "out of memory");
    }
    lane_acts(dp, x, n, C, P, af, ai, s);
    if (asum) lane_asum(w, n, af, ai, asum);
    int16_t *a16 = NULL;
    int32_t *gs = NULL;
    const int vec = vec_ok(dp, w, (double)w->max_code * 127.0 * (double)w->sub > (double)dp->acc_max);
    if (vec) {
        a16 = malloc((size_t)(n * P) * sizeof *a16);
        gs = malloc((size_t)(n * (P / w->sub)) * sizeof *gs);
        pthread_once(&f16_once, f16_fill);
        if (a16 && gs) vec_acts(w, ai, n, a16, gs);
        else { free(a16); free(gs); a16 = NULL; gs = NULL; } /* the plain path */
    }
    int nt = dp->threads;
    if ((double)w->rows * (double)P * (double)n < dp->split_min) nt = 1; /* small: threads cost more than they save */
    if (dp->lane_fn) nt = 1; /* a co-simulated lane is one model */
    if (nt > w->rows) nt = (int)w->rows;
    if (nt > dp->pool.n + 1) nt = dp->pool.n + 1; /* the workers running, and the caller */
    if (nt > 1) nt = (int)(w->rows < 4 * nt ? w->rows : 4 * nt < 64 ? 4 * nt : 64); /* shares taken as threads free up */
    mm_job jobs[64];
    for (int k = 0; k < nt; k++) /* contiguous row shares: each row computed whole by one thread */
        jobs[k] = (mm_job){.dp = dp, .w = w, .n = n, .af = af, .ai = ai, .s = s, .asum = asum, .a16 = a16, .gs = gs, .wide = vec == 2 && a16, .y = y, .r0 = w->rows * k / nt,
                           .r1 = w->rows * (k + 1) / nt, .ti = ti};
    pool_run(&dp->pool, mm_run, jobs, sizeof *jobs, nt);
    int failed = -1;
    for (int k = 0; k < nt; k++) {
        dp->stats.saturations += jobs[k].sat;
        if (jobs[k].failed && failed < 0) failed = k;
    }
    free(asum);
    free(a16);
    free(gs);
    if (failed >= 0) {
        free(af);
        free(s);
        free(ai);
        *e = jobs[failed].err;
        return -1;
    }
    dp->stats.lane_rows += w->rows * n;
    dp->stats.weight_bytes += w->rows * (w->sub ? w->rb : P * (int64_t)sizeof *w->fv);
    free(af);
    free(s);
    free(ai);
    return 0;
}

/* ---- vector unit ---- */

static void rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    float ss = 0.0f;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] * r) * w[i];
}

static int rope_table(es_dp *dp, int64_t rows, es_err *e)
{
    if (rows <= dp->rope_rows) return 0;
    int64_t half = dp->m->head_dim / 2, n = dp->rope_rows ? dp->rope_rows : 256;
    while (n < rows) n *= 2;
    float *c = realloc(dp->cos_t, (size_t)(n * half) * sizeof *c);
    if (c) dp->cos_t = c;
    float *s = c ? realloc(dp->sin_t, (size_t)(n * half) * sizeof *s) : NULL;
    if (!c || !s) return es_fail(e, "out of memory for the RoPE table");
    dp->sin_t = s;
    const double ms = es_model_rope_mscale(dp->m); /* YaRN's concentration, else 1 */
    for (int64_t p = dp->rope_rows; p < n; p++)
        for (int64_t i = 0; i < half; i++) {
            double a = (double)p * dp->freq[i];
            dp->cos_t[p * half + i] = (float)(cos(a) * ms);
            dp->sin_t[p * half + i] = (float)(sin(a) * ms);
        }
    dp->rope_rows = n;
    return 0;
}

static void rope(const es_dp *dp, float *v, int64_t heads, int64_t pos)
{
    int64_t hd = dp->m->head_dim, half = hd / 2;
    const float *c = dp->cos_t + pos * half, *s = dp->sin_t + pos * half;
    for (int64_t h = 0; h < heads; h++) {
        float *p = v + h * hd;
        for (int64_t i = 0; i < half; i++) {
            float x0 = p[i], x1 = p[i + half];
            p[i] = x0 * c[i] - x1 * s[i];
            p[i + half] = x0 * s[i] + x1 * c[i];
        }
    }
}

static void link_round(const es_dp *dp, float *x, int64_t n)
{
    if (!dp->link16) return;
    for (int64_t i = 0; i < n; i++) x[i] = es_bf16_to_f32(es_f32_to_bf16(x[i]));
}

static int grow(float **p, int64_t n, es_err *e)
{
    float *q = realloc(*p, (size_t)(n > 0 ? n : 1) * sizeof *q);
    if (!q) return es_fail(e, "out of memory");
    *p = q;
    return 0;
}

/* ---- the graph's buffers ---- */

/* Elements per token of buffer b in model m (es_model.h), 0 when the model has none. */
static int64_t buf_width(const es_model *m, es_buf b)
{
    int64_t qd = m->heads * m->head_dim, kvd = m->kv_heads * m->head_dim, I = m->ssm_inner;
    switch (b) {
    case ES_BUF_X: case ES_BUF_XB: case ES_BUF_OUT: return m->hidden;
    case ES_BUF_Q: case ES_BUF_ATT: return qd;
    case ES_BUF_K: case ES_BUF_V: return kvd;
    case ES_BUF_GATE: case ES_BUF_UP: return m->ffn;
    case ES_BUF_SCORE: return m->experts;
    case ES_BUF_ROUTE: return m->top_k;
    case ES_BUF_EXPERT_OUT: return m->top_k * m->hidden;
    case ES_BUF_SSM_XZ: return 2 * I;
    case ES_BUF_SSM_X: case ES_BUF_SSM_Z: case ES_BUF_SSM_U: case ES_BUF_SSM_DT: case ES_BUF_SSM_Y: return I;
    case ES_BUF_SSM_DBC: return m->ssm_dt_rank + 2 * m->ssm_state;
    case ES_BUF_SSM_DTR: return m->ssm_dt_rank;
    case ES_BUF_LOGITS: return m->vocab;
    default: return 0;
    }
}

/* The buffer that holds b (b itself, or the one b is a part of) and b's offset in a token's elements. */
static es_buf buf_home(const es_model *m, es_buf b, int64_t *off)
{
    *off = b == ES_BUF_SSM_Z ? m->ssm_inner : 0;
    return b == ES_BUF_SSM_X || b == ES_BUF_SSM_Z ? ES_BUF_SSM_XZ : b == ES_BUF_SSM_DTR ? ES_BUF_SSM_DBC : b;
}

/* One call's walk over the graph: the tokens, and the buffers the caller holds. */
typedef struct dp_run {
    int32_t seq;            /* the sequence, or -1 (the embedding) */
    int64_t pos, n;         /* the n tokens at positions pos.. */
    int lo;                 /* the call's first layer (MoE routes are kept per layer of the call) */
    float *x;               /* ES_BUF_X (n, hidden) */
    float *logits;          /* ES_BUF_LOGITS (n, vocab) */
    const int32_t *ids;     /* EMBED's tokens (n) */
    int32_t token;          /* SAMPLE's token */
} dp_run;

/* Token t's elements of a buffer: p + t * stride, width of them. */
typedef struct dp_buf { float *p; int64_t stride, width; } dp_buf;

static dp_buf buf(const es_dp *dp, const dp_run *r, es_buf b)
{
    int64_t off;
    es_buf h = buf_home(dp->m, b, &off);
    float *p = h == ES_BUF_X ? r->x : h == ES_BUF_LOGITS ? r->logits : dp->buf[h];
    return (dp_buf){p + off, dp->width[h], dp->width[b]};
}

/* Every buffer the graph uses, for n tokens. */
static int scratch(es_dp *dp, int64_t n, es_err *e)
{
    if (n <= dp->scratch_n) return 0;
    for (int b = 0; b < ES_BUF_COUNT; b++) {
        if (dp->used[b] && b != ES_BUF_X && b != ES_BUF_LOGITS && grow(&dp->buf[b], n * dp->width[b], e)) return -1;
    }
    dp->scratch_n = n;
    return 0;
}

/* ---- the ops, one unit each (es_model.h says what each kind reads and writes) ---- */

static int op_embed(es_dp *dp, const es_op *op, dp_run *r, es_err *e)
{
    const dp_tensor *w = &dp->t[op->tensor];
    dp_buf y = buf(dp, r, op->out);
    if (!w->q && !w->fv) return es_fail(e, "functional datapath: the embedding has no weights loaded");
    for (int64_t t = 0; t < r->n; t++) {
        const int32_t id = r->ids[t];
        if (id < 0 || id >= w->rows)
            return es_fail(e, "functional datapath: token %d outside the vocabulary of %lld", id, (long long)w->rows);
        tensor_row(dp, op->tensor, id, y.p + t * y.stride); /* scale x code - min, as the reference decoder computes it */
    }
    return 0;
}

/* Each group of the gains' length (the whole vector, or one head) normalized on its own. */
static int op_rmsnorm(es_dp *dp, const es_op *op, dp_run *r, es_err *e)
{
    dp_buf x = buf(dp, r, op->in[0]), y = buf(dp, r, op->out);
    const float *g = dp->norm[op->tensor];
    const int64_t n = dp->m->tensors[op->tensor].cols;
    const float eps = (float)dp->m->eps;
    if (!g) return es_fail(e, "functional datapath: %s has no weights loaded", dp->m->tensors[op->tensor].name);
    for (int64_t t = 0; t < r->n; t++)
        for (int64_t k = 0; k < x.width; k += n) rmsnorm(y.p + t * y.stride + k, x.p + t * x.stride + k, g, n, eps);
    return 0;
}

/* Falcon-Mamba: dt, B and C each normalized without a gain as x_proj writes them. */
static void ssm_dbc_norm(const es_dp *dp, dp_buf d, int64_t n)
{
    const es_model *m = dp->m;
    int64_t R = m->ssm_dt_rank, N = m->ssm_state;
    for (int64_t t = 0; t < n; t++) {
        float parts[3][2] = {{0, (float)R}, {(float)R, (float)N}, {(float)(R + N), (float)N}};
        for (int k = 0; k < 3; k++) {
            float *v = d.p + t * d.stride + (int64_t)parts[k][0];
            int64_t len = (int64_t)parts[k][1];
            float ss = 0.0f;
            for (int64_t i = 0; i < len; i++) ss += v[i] * v[i];
            float rs = 1.0f / sqrtf(ss / (float)len + (float)m->ssm_norm_eps);
            for (int64_t i = 0; i < len; i++) v[i] = v[i] * rs;
        }
    }
}

/* A LoRA adapter on tensor ti, on the vector unit in FP32 (es_an_adapter books it): for each token, h = A x
 * (rank sums in element order), then y += scale x (B h) (sums in rank order). */
static void lora_add(es_dp *dp, const dp_run *r, int ti, const float *x, int64_t x_stride, dp_buf y, int64_t n)
{
    int k = r->seq >= 0 ? dp->seqs[r->seq].lora : -1; /* the sequence's adapter */
    if (k < 0 || !dp->lora[k].a || !dp->lora[k].a[ti]) return; /* none, or timing's adapter (no matrices) */
    const es_tensor *t = &dp->m->tensors[ti];
    const float *A = dp->lora[k].a[ti], *B = dp->lora[k].b[ti];
    const int R = dp->lora[k].rank;
    const float scale = (float)dp->lora[k].scale;
    for (int64_t tok = 0; tok < n; tok++) {
        const float *xt = x + tok * x_stride;
        float *yt = y.p + tok * y.stride;
        for (int k = 0; k < R; k++) {
            float acc = 0.0f;
            for (int64_t j = 0; j < t->cols; j++) acc += A[k * t->cols + j] * xt[j];
            dp->l_h[k] = acc;
        }
        for (int64_t i = 0; i < t->rows; i++) {
            float acc = 0.0f;
            for (int k = 0; k < R; k++) acc += B[i * R + k] * dp->l_h[k];
            yt[i] += scale * acc;
        }
    }
}

/* The lanes; an input that is part of a wider buffer is gathered first. */
static int op_matvec(es_dp *dp, const es_op *op, dp_run *r, es_err *e)
{
    dp_buf x = buf(dp, r, op->in[0]), y = buf(dp, r, op->out);
    float *packed = NULL;
    if (x.stride != x.width) {
        if (!(packed = malloc((size_t)(r->n * x.width) * sizeof *packed))) return es_fail(e, "out of memory");
        for (int64_t t = 0; t < r->n; t++)
            memcpy(packed + t * x.width, x.p + t * x.stride, (size_t)x.width * sizeof *packed);
    }
    int rc = lane_matmul(dp, op->tensor, packed ? packed : x.p, r->n, y.p, e);
    if (!rc) lora_add(dp, r, op->tensor, packed ? packed : x.p, packed ? x.width : x.stride, y, r->n);
    free(packed);
    if (!rc && op->out == ES_BUF_SSM_DBC && dp->m->ssm_bcdt_norm) ssm_dbc_norm(dp, y, r->n);
    return rc;
}

static int op_rope(es_dp *dp, const es_op *op, dp_run *r, es_err *e)
{
    if (rope_table(dp, r->pos + r->n, e)) return -1;
    dp_buf q = buf(dp, r, op->in[0]), k = buf(dp, r, op->in[1]);
    const int64_t hd = dp->m->head_dim;
    for (int64_t t = 0; t < r->n; t++) {
        rope(dp, q.p + t * q.stride, q.width / hd, r->pos + t);
        rope(dp, k.p + t * k.stride, k.width / hd, r->pos + t);
    }
    return 0;
}

/* The tokens' K and V into the sequence's KV state, then each query head over positions 0..p (a sliding
 * window's layer: its last op->window positions), with the head's sink logit (gpt-oss: op->tensor) in the
 * softmax's sum. */
static int op_attn(es_dp *dp, const es_op *op, dp_run *r, es_err *e)
{
    const es_model *m = dp->m;
    const int64_t hd = m->head_dim, pos = r->pos, l = op->layer;
    const int64_t group = m->heads / m->kv_heads, cap = pos + r->n;
    dp_buf q = buf(dp, r, op->in[0]), k = buf(dp, r, op->in[1]), v = buf(dp, r, op->in[2]), y = buf(dp, r, op->out);
    dp_seq *S = &dp->seqs[r->seq];
    if (grow(&dp->sc, cap + hd + 2 * cap * hd, e)) return -1;
    const float inv_sqrt = 1.0f / sqrtf((float)hd);
    /* a K row read back, then one KV head's keys (transposed: (hd, positions)) and values (positions, hd) */
    float *kv_tmp = dp->sc + cap, *kt = kv_tmp + hd, *vf = kt + cap * hd;
    for (int64_t t = 0; t < r->n; t++)
        for (int64_t h = 0; h < m->kv_heads; h++) {
            int64_t vec = (l * S->cap + (pos + t - S->start)) * m->kv_heads + h;
            kv_put(dp, S->k, S->ks, vec * hd, vec, k.p + t * k.stride + h * hd, hd);
            kv_put(dp, S->v, S->vs, vec * hd, vec, v.p + t * v.stride + h * hd, hd);
        }
    const float *sinks = op->tensor >= 0 ? dp->norm[op->tensor] : NULL;
    for (int64_t t = 0; t < r->n; t++) {
        int64_t p = pos + t, j0 = op->window > 0 && p >= op->window ? p - op->window + 1 : 0, np = p - j0 + 1;
        for (int64_t kvh = 0; kvh < m->kv_heads; kvh++) {
            /* the KV head's positions read once for the heads of its group */
            for (int64_t j = j0; j <= p; j++) {
                int64_t vec;
                const dp_seq *hs = kv_where(dp, r->seq, l, j, kvh, &vec);
                kv_get(dp, hs->k, hs->ks, vec * hd, vec, kv_tmp, hd);
                for (int64_t i = 0; i < hd; i++) kt[i * np + (j - j0)] = kv_tmp[i];
                kv_get(dp, hs->v, hs->vs, vec * hd, vec, vf + (j - j0) * hd, hd);
            }
            for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
                const float *qh = q.p + t * q.stride + h * hd;
                float mx = sinks ? sinks[h] : -INFINITY, sum = 0.0f, *sc = dp->sc + j0;
                /* each position's q.k summed in element order, positions side by side */
                for (int64_t j = 0; j < np; j++) sc[j] = 0.0f;
                for (int64_t i = 0; i < hd; i++) {
                    const float qi = qh[i], *kr = kt + i * np;
                    for (int64_t j = 0; j < np; j++) sc[j] += qi * kr[j];
                }
                for (int64_t j = 0; j < np; j++) {
                    sc[j] = sc[j] * inv_sqrt;
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int64_t j = 0; j < np; j++) {
                    sc[j] = expf(sc[j] - mx);
                    sum += sc[j];
                }
                if (sinks) sum += expf(sinks[h] - mx); /* the sink's share of the softmax, dropped */
                float *o = y.p + t * y.stride + h * hd;
                for (int64_t i = 0; i < hd; i++) o[i] = 0.0f;
                for (int64_t j = 0; j < np; j++)
                    for (int64_t i = 0; i < hd; i++) o[i] += sc[j] * vf[j * hd + i];
                for (int64_t i = 0; i < hd; i++) o[i] = o[i] / sum;
            }
        }
    }
    return 0;
}

/* A residual add; with a route, the experts' outputs weighted by it and summed in the order chosen; with a
 * tensor, a bias. */
static int op_add(es_dp *dp, const es_op *op, dp_run *r, es_err *e)
{
    (void)e;
    dp_buf a = buf(dp, r, op->in[0]), y = buf(dp, r, op->out);
    if (op->tensor >= 0) { /* a bias (gpt-oss) */
        const float *b = dp->norm[op->tensor];
        for (int64_t t = 0; t < r->n; t++)
            for (int64_t i = 0; i < y.width; i++) y.p[t * y.stride + i] += b[i];
        return 0;
    }
    if (op->in[1] == ES_BUF_NONE) {
        for (int64_t t = 0; t < r->n; t++)
            for (int64_t i = 0; i < y.width; i++) y.p[t * y.stride + i] += a.p[t * a.stride + i];
        return 0;
    }
    dp_buf w = buf(dp, r, op->in[1]);
    const int64_t H = y.width;
    for (int64_t t = 0; t < r->n; t++)
        for (int64_t i = 0; i < H; i++) {
            float acc = 0.0f;
            for (int64_t j = 0; j < w.width; j++) acc += w.p[t * w.stride + j] * a.p[t * a.stride + j * H + i];
            y.p[t * y.stride + i] = acc;
        }
    return 0;
}

static float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

static int op_silu_mul(es_dp *dp, const es_op *op, dp_run *r, es_err *e)
{
    (void)e;
    dp_buf a = buf(dp, r, op->in[0]), y = buf(dp, r, op->out);
    if (op->fn == ES_FN_SOFTPLUS) { /* softplus(a + bias) */
        const float *bias = dp->norm[op->vec];
        for (int64_t t = 0; t < r->n; t++)
            for (int64_t c = 0; c < y.width; c++) {
                float v = a.p[t * a.stride + c] + bias[c];
                y.p[t * y.stride + c] = v > 20.0f ? v : log1pf(expf(v));
            }
        return 0;
    }
    dp_buf b = buf(dp, r, op->in[1]);
    for (int64_t t = 0; t < r->n; t++)
        for (int64_t i = 0; i < y.width; i++)
            y.p[t * y.stride + i] = silu_mul(a.p[t * a.stride + i], b.p[t * b.stride + i]);
    return 0;
}

static int op_sample(es_dp *dp, const es_op *op, dp_run *r, es_err *e)
{
    (void)e;
    uint64_t spare = dp->seed;
    uint64_t *rng = r->seq >= 0 && r->seq < dp->n_seqs && dp->seqs[r->seq].used ? &dp->seqs[r->seq].rng : &spare;
    r->token = es_sample(&dp->smp, buf(dp, r, op->in[0]).p, dp->m->vocab, rng, dp->work);
    return 0;
}

/* MoE: softmax of the router's scores and the top-k (the lower index on ties) in FP32 on the vector
 * unit; the probabilities renormalized to sum 1 when norm_topk. The choices are kept (es_dp_routes)
 * for the tile to book. */
static int op_route(es_dp *dp, const es_op *op, dp_run *r, es_err *e)
{
    dp_buf s = buf(dp, r, op->in[0]), w = buf(dp, r, op->out);
    const int64_t E = s.width, k = w.width, n = r->n, li = op->layer - r->lo;
    if ((li + 1) * n * k > dp->routes_cap) { /* the layers before this one are kept */
        int64_t cap = (li + 1) * n * k;
        int32_t *rt = realloc(dp->routes, (size_t)cap * sizeof *rt);
        if (!rt) return es_fail(e, "out of memory");
        dp->routes = rt;
        dp->routes_cap = cap;
    }
    int32_t *route = dp->routes + li * n * k;
    for (int64_t t = 0; t < n; t++) {
        const float *sc = s.p + t * s.stride;
        float *wt = w.p + t * w.stride;
        float mx = -INFINITY, z = 0.0f, sel = 0.0f;
        for (int64_t x2 = 0; x2 < E; x2++) mx = sc[x2] > mx ? sc[x2] : mx;
        for (int64_t x2 = 0; x2 < E; x2++) z += expf(sc[x2] - mx);
        for (int64_t j = 0; j < k; j++) {
            int64_t b = -1;
            for (int64_t x2 = 0; x2 < E; x2++) {
                int taken = 0;
                for (int64_t q = 0; q < j; q++) taken |= route[t * k + q] == x2;
                if (!taken && (b < 0 || sc[x2] > sc[b])) b = x2;
            }
            route[t * k + j] = (int32_t)b;
            wt[j] = expf(sc[b] - mx) / z;
            sel += wt[j];
        }
        if (dp->m->norm_topk)
            for (int64_t j = 0; j < k; j++) wt[j] = wt[j] / sel;
    }
    return 0;
}

/* gpt-oss's clamped SwiGLU of expert ex's cnt rows of gate g and up u (each plus its half of the interleaved
 * gate_up bias: gate at even, up at odd places), into g (es_model.h, swiglu_limit). */
static void gpt_oss_glu(const es_dp *dp, int l, int64_t ex, int64_t cnt, float *g, const float *u)
{
    const es_model *m = dp->m;
    const int64_t F = m->expert_ffn;
    const es_tensor *gb = es_model_expert_bias(m, l, ex, 0);
    const float *b = gb ? dp->norm[gb - m->tensors] : NULL, lim = (float)m->swiglu_limit;
    const float alpha = (float)m->swiglu_alpha;
    for (int64_t i = 0; i < cnt * F; i++) {
        float gv = g[i] + (b ? b[2 * (i % F)] : 0.0f), uv = u[i] + (b ? b[2 * (i % F) + 1] : 0.0f);
        gv = gv > lim ? lim : gv;
        uv = uv > lim ? lim : uv < -lim ? -lim : uv;
        g[i] = gv / (1.0f + expf(-alpha * gv)) * (uv + 1.0f);
    }
}

/* MoE: each expert's gate, up, SiLU x up (gpt-oss: its biases and clamped SwiGLU) and down (and its bias) on
 * the lanes, for the tokens routed to it; each output lands in its token's row for that choice. */
static int op_experts(es_dp *dp, const es_op *op, dp_run *r, es_err *e)
{
    const es_model *m = dp->m;
    const int l = op->layer;
    const int64_t H = m->hidden, E = m->experts, k = m->top_k, F = m->expert_ffn, n = r->n;
    dp_buf x = buf(dp, r, op->in[0]), y = buf(dp, r, op->out);
    const int32_t *route = dp->routes + (int64_t)(l - r->lo) * n * k;
    float *in = malloc((size_t)(n * H) * sizeof *in), *g = malloc((size_t)(n * F) * sizeof *g);
    float *u = malloc((size_t)(n * F) * sizeof *u), *o = malloc((size_t)(n * H) * sizeof *o);
    int64_t *rows = malloc((size_t)n * sizeof *rows);
    int rc = -1;
    if (!in || !g || !u || !o || !rows) { es_fail(e, "out of memory"); goto out; }
    for (int64_t ex = 0; ex < E; ex++) {
        int64_t cnt = 0;
        for (int64_t t = 0; t < n; t++)
            for (int64_t j = 0; j < k; j++)
                if (route[t * k + j] == ex) {
                    memcpy(in + cnt * H, x.p + t * x.stride, (size_t)H * sizeof *in);
                    rows[cnt++] = t * k + j;
                }
        if (!cnt) continue;
        const es_tensor *t0 = m->tensors;
        int gi = (int)(es_model_expert(m, l, ES_ROLE_GATE, ex) - t0), ui = (int)(es_model_expert(m, l, ES_ROLE_UP, ex) - t0);
        int di = (int)(es_model_expert(m, l, ES_ROLE_DOWN, ex) - t0);
        if (lane_matmul(dp, gi, in, cnt, g, e) || lane_matmul(dp, ui, in, cnt, u, e)) goto out;
        if (m->swiglu_limit > 0) gpt_oss_glu(dp, l, ex, cnt, g, u);
        else for (int64_t i = 0; i < cnt * F; i++) g[i] = silu_mul(g[i], u[i]);
        if (lane_matmul(dp, di, g, cnt, o, e)) goto out;
        const es_tensor *db = es_model_expert_bias(m, l, ex, 1);
        if (db)
            for (int64_t i = 0; i < cnt * H; i++) o[i] += dp->norm[db - m->tensors][i % H];
        for (int64_t q = 0; q < cnt; q++) /* row t * k + j of (n * k, H) */
            memcpy(y.p + rows[q] / k * y.stride + rows[q] % k * H, o + q * H, (size_t)H * sizeof *o);
    }
    rc = 0;
out:
    free(in); free(g); free(u); free(o); free(rows);
    return rc;
}

int es_dp_routes(const es_dp *dp, const int32_t **routes)
{
    *routes = dp->routes;
    return dp->m->experts > 0 ? (int)dp->m->top_k : 0;
}

/* SSM: the causal conv1d and SiLU, token by token (a recurrence); the window of the last inputs
 * kept in kv.element_format, read and rewritten each token. */
static int op_conv(es_dp *dp, const es_op *op, dp_run *r, es_err *e)
{
    const es_model *m = dp->m;
    const int64_t I = m->ssm_inner, K = m->ssm_conv, W = K > 1 ? K - 1 : 0, l = op->layer;
    dp_buf x = buf(dp, r, op->in[0]), u = buf(dp, r, op->out);
    dp_seq *S = &dp->seqs[r->seq];
    const float *cw = dp->fp32[op->tensor], *cb = dp->norm[op->vec];
    float *win = malloc((size_t)((W ? W : 1) * I) * sizeof *win);
    if (!win) return es_fail(e, "out of memory");
    for (int64_t k = 0; k < W; k++) {
        int64_t vec = l * W + k;
        kv_get(dp, S->v, S->vs, vec * I, vec, win + k * I, I);
    }
    for (int64_t t = 0; t < r->n; t++) {
        const float *xt = x.p + t * x.stride;
        for (int64_t c = 0; c < I; c++) {
            const float *w = cw + c * K;
            float acc = cb[c];
            for (int64_t k = 0; k < W; k++) acc += w[k] * win[k * I + c];
            acc += w[K - 1] * xt[c];
            u.p[t * u.stride + c] = acc / (1.0f + expf(-acc));
        }
        for (int64_t k = 0; k + 1 < W; k++) memcpy(win + k * I, win + (k + 1) * I, (size_t)I * sizeof *win);
        if (W) {
            int64_t vec = l * W + W - 1;
            memcpy(win + (W - 1) * I, xt, (size_t)I * sizeof *win);
            /* what the SRAM holds is what the next token reads */
            kv_put(dp, S->v, S->vs, vec * I, vec, win + (W - 1) * I, I);
            kv_get(dp, S->v, S->vs, vec * I, vec, win + (W - 1) * I, I);
        }
    }
    for (int64_t k = 0; k + 1 < W; k++) { /* the shifted window back to the SRAM */
        int64_t vec = l * W + k;
        kv_put(dp, S->v, S->vs, vec * I, vec, win + k * I, I);
    }
    free(win);
    return 0;
}

/* SSM: the selective scan, token by token; each channel's state (state_size values) kept in
 * kv.element_format, read and rewritten each token. */
static int op_scan(es_dp *dp, const es_op *op, dp_run *r, es_err *e)
{
    const es_model *m = dp->m;
    const int64_t I = m->ssm_inner, N = m->ssm_state, R = m->ssm_dt_rank, l = op->layer;
    dp_buf u = buf(dp, r, op->in[0]), dt = buf(dp, r, op->in[1]), bc = buf(dp, r, op->in[2]), y = buf(dp, r, op->out);
    dp_seq *S = &dp->seqs[r->seq];
    const float *A = dp->fp32[op->tensor], *D = dp->norm[op->vec];
    float *h = malloc((size_t)N * sizeof *h);
    if (!h) return es_fail(e, "out of memory");
    for (int64_t t = 0; t < r->n; t++) {
        const float *B = bc.p + t * bc.stride + R, *C = B + N;
        for (int64_t c = 0; c < I; c++) {
            int64_t vec = l * I + c;
            float d = dt.p[t * dt.stride + c], ut = u.p[t * u.stride + c], acc = 0.0f;
            kv_get(dp, S->k, S->ks, vec * N, vec, h, N);
            for (int64_t k = 0; k < N; k++) {
                h[k] = expf(d * A[c * N + k]) * h[k] + d * B[k] * ut;
                acc += h[k] * C[k];
            }
            kv_put(dp, S->k, S->ks, vec * N, vec, h, N);
            acc += D[c] * ut;
            y.p[t * y.stride + c] = acc;
        }
    }
    free(h);
    return 0;
}

/* ---- the graph walk ---- */

typedef int (*dp_op_fn)(es_dp *dp, const es_op *op, dp_run *r, es_err *e);

/* The unit of each op kind and what the kind needs of an op: buffers read, a buffer written, a
 * tensor, a vector. A new kind is added here and in es_model.h. */
static const struct dp_unit {
    dp_op_fn run;
    int n_in, out, tensor, vec;
} UNITS[] = {
    [ES_OP_EMBED] = {op_embed, 0, 1, 1, 0},
    [ES_OP_RMSNORM] = {op_rmsnorm, 1, 1, 1, 0},
    [ES_OP_MATVEC] = {op_matvec, 1, 1, 1, 0},
    [ES_OP_ROPE] = {op_rope, 2, 0, 0, 0},
    [ES_OP_ATTN] = {op_attn, 3, 1, 0, 0},
    [ES_OP_ADD] = {op_add, 1, 1, 0, 0},
    [ES_OP_SILU_MUL] = {op_silu_mul, 1, 1, 0, 0},
    [ES_OP_SAMPLE] = {op_sample, 1, 0, 0, 0},
    [ES_OP_ROUTE] = {op_route, 1, 1, 0, 0},
    [ES_OP_EXPERTS] = {op_experts, 2, 1, 1, 0},
    [ES_OP_CONV] = {op_conv, 1, 1, 1, 1},
    [ES_OP_SCAN] = {op_scan, 3, 1, 1, 1},
};
#define N_UNITS ((int)(sizeof UNITS / sizeof *UNITS))

static const struct dp_unit *unit_of(const es_op *op)
{
    return (int)op->kind >= 0 && (int)op->kind < N_UNITS && UNITS[op->kind].run ? &UNITS[op->kind] : NULL;
}

/* Op op on the run's tokens. */
static int dp_op(es_dp *dp, const es_op *op, dp_run *r, es_err *e)
{
    const struct dp_unit *u = unit_of(op);
    if (!u)
        return es_fail(e, "functional datapath: op '%s' (layer %d): no unit computes op kind %d", op->name, op->layer,
                       (int)op->kind);
    return u->run(dp, op, r, e);
}

/* Whether the model has buffer b (a width for it). */
static int has_buf(const es_model *m, es_buf b) { return (int)b > 0 && b < ES_BUF_COUNT && buf_width(m, b) > 0; }

/* Op i of the graph against what its kind needs and the buffers this model has. */
static int check_op(es_dp *dp, int i, es_err *e)
{
    const es_model *m = dp->m;
    const es_op *op = &m->ops[i];
    const struct dp_unit *u = unit_of(op);
    char at[700];
    snprintf(at, sizeof at, "%s: graph op %d '%s' (layer %d)", m->path, i, op->name, op->layer);
    if (!u) return es_fail(e, "%s: the functional datapath has no unit for op kind %d", at, (int)op->kind);
    if (op->kind == ES_OP_ADD && op->tensor >= 0) { /* a bias: no input, a vector of its output's width */
        const es_tensor *t = op->tensor < m->n_tensors ? &m->tensors[op->tensor] : NULL;
        if (!t || t->rows != 1 || op->in[0] != ES_BUF_NONE || !has_buf(m, op->out) || buf_width(m, op->out) != t->cols)
            return es_fail(e, "%s: a bias add expects no input and a vector as wide as its output, got input '%s', "
                              "output '%s' (%lld wide) and tensor %d", at, es_buf_name(op->in[0]), es_buf_name(op->out),
                           (long long)buf_width(m, op->out), op->tensor);
        int64_t off;
        dp->used[buf_home(m, op->out, &off)] = 1;
        return 0;
    }
    if (op->kind == ES_OP_ATTN && op->tensor >= 0 &&
        (op->tensor >= m->n_tensors || m->tensors[op->tensor].rows != 1 || m->tensors[op->tensor].cols != m->heads))
        return es_fail(e, "%s: sinks tensor %d; expected a vector of one logit per head (%lld)", at, op->tensor,
                       (long long)m->heads);
    int silu = op->kind == ES_OP_SILU_MUL;
    if (silu && op->fn != ES_FN_SILU_MUL && op->fn != ES_FN_SOFTPLUS)
        return es_fail(e, "%s: unknown element-wise function %d", at, (int)op->fn);
    /* inputs: the kind's, and a second for SiLU x up; ADD's second (a route) is optional */
    int n_in = u->n_in + (silu && op->fn == ES_FN_SILU_MUL), opt = op->kind == ES_OP_ADD ? 1 : 0;
    for (int k = 0; k < 3; k++) {
        es_buf b = op->in[k];
        int bad = k < n_in ? !has_buf(m, b)              /* needed */
                : b == ES_BUF_NONE ? 0                   /* not given */
                : k >= n_in + opt || !has_buf(m, b);     /* optional, or not read */
        if (bad)
            return es_fail(e, "%s: input %d is buffer '%s'; expected %s", at, k, es_buf_name(b),
                           k < n_in + opt ? "one this model has" : "none");
    }
    if (u->out ? !has_buf(m, op->out) : op->out != ES_BUF_NONE)
        return es_fail(e, "%s: writes buffer '%s'; expected %s", at, es_buf_name(op->out),
                       u->out ? "one this model has" : "none");
    if (u->tensor && (op->tensor < 0 || op->tensor >= m->n_tensors))
        return es_fail(e, "%s: tensor %d; expected one of the model's %d", at, op->tensor, m->n_tensors);
    if ((u->vec || (silu && op->fn == ES_FN_SOFTPLUS)) && (op->vec < 0 || op->vec >= m->n_tensors))
        return es_fail(e, "%s: vector %d; expected one of the model's %d tensors", at, op->vec, m->n_tensors);
    int64_t off, w0 = buf_width(m, op->in[0]), w1 = buf_width(m, op->in[1]), wo = buf_width(m, op->out);
    if ((op->kind == ES_OP_ADD && w0 != (w1 ? w1 : 1) * wo) || (op->kind == ES_OP_SILU_MUL && w0 != wo) ||
        (op->kind == ES_OP_RMSNORM && (w0 != wo || w0 % m->tensors[op->tensor].cols)))
        return es_fail(e, "%s: its buffers' widths (%lld in, %lld out) do not fit together", at, (long long)w0,
                       (long long)wo);
    if (op->kind == ES_OP_MATVEC) { /* the lanes write a whole buffer */
        const es_tensor *t = &m->tensors[op->tensor];
        if (buf_width(m, op->in[0]) != t->cols || buf_width(m, op->out) != t->rows ||
            buf_home(m, op->out, &off) != op->out)
            return es_fail(e, "%s: %s [%lld, %lld] does not map its input (%lld) to its output (%lld)", at, t->name,
                           (long long)t->rows, (long long)t->cols, (long long)buf_width(m, op->in[0]),
                           (long long)buf_width(m, op->out));
    }
    for (int k = 0; k < 3; k++)
        if (op->in[k] != ES_BUF_NONE) dp->used[buf_home(m, op->in[k], &off)] = 1;
    if (op->out != ES_BUF_NONE) dp->used[buf_home(m, op->out, &off)] = 1;
    return 0;
}

/* Every op of the graph has a unit and the buffers it needs; where the embedding, the head and
 * the sampler are; the buffers' widths. */
static int check_graph(es_dp *dp, es_err *e)
{
    const es_model *m = dp->m;
    for (int b = 0; b < ES_BUF_COUNT; b++) dp->width[b] = buf_width(m, (es_buf)b);
    dp->embed_op = dp->sample_op = -1;
    dp->head_op = 0;
    for (int i = 0; i < m->n_ops; i++) {
        const es_op *op = &m->ops[i];
        if (check_op(dp, i, e)) return -1;
        if (op->layer >= 0) dp->head_op = i + 1;
        else if (op->kind == ES_OP_EMBED && dp->embed_op < 0) dp->embed_op = i;
        else if (op->kind == ES_OP_SAMPLE) dp->sample_op = i;
    }
    if (dp->embed_op < 0 || dp->sample_op < dp->head_op)
        return es_fail(e, "%s: the graph needs an embedding op and, after the blocks, a sampler op", m->path);
    for (int i = dp->head_op; i < dp->sample_op; i++)
        if (m->ops[i].kind == ES_OP_EMBED || m->ops[i].layer >= 0)
            return es_fail(e, "%s: graph op %d '%s' sits among the head's ops", m->path, i, m->ops[i].name);
    return 0;
}

int es_dp_embed(es_dp *dp, const int32_t *ids, int64_t n, float *x, es_err *e)
{
    dp_run r = {.seq = -1, .n = n, .x = x, .ids = ids};
    if (dp_op(dp, &dp->m->ops[dp->embed_op], &r, e)) return -1;
    link_round(dp, x, n * dp->width[ES_BUF_X]);
    return 0;
}

int es_dp_layers(es_dp *dp, int lo, int hi, int32_t seq, int64_t pos, int64_t n, float *x, es_err *e)
{
    const es_model *m = dp->m;
    if (seq < 0 || seq >= dp->n_seqs || !dp->seqs[seq].used)
        return es_fail(e, "functional datapath: sequence %d has no KV cache", seq);
    dp_seq *S = &dp->seqs[seq];
    if (pos < S->start || pos + n > S->start + S->cap)
        return es_fail(e, "functional datapath: positions %lld..%lld outside sequence %d's %lld..%lld",
                       (long long)pos, (long long)(pos + n - 1), seq, (long long)S->start,
                       (long long)(S->start + S->cap - 1));
    if (S->start > 0 && (S->prefix < 0 || S->prefix >= dp->n_seqs || !dp->seqs[S->prefix].used))
        return es_fail(e, "functional datapath: sequence %d starts at %lld but its prefix is gone", seq,
                       (long long)S->start);
    if (scratch(dp, n, e)) return -1;
    dp_run r = {.seq = seq, .pos = pos, .n = n, .lo = lo, .x = x};
    for (int i = 0; i < m->n_ops; i++) /* the blocks' ops in graph order */
        if (m->ops[i].layer >= lo && m->ops[i].layer < hi && dp_op(dp, &m->ops[i], &r, e)) return -1;
    link_round(dp, x, n * m->hidden);
    return 0;
}

int es_dp_head(es_dp *dp, const float *x, float *logits, es_err *e)
{
    const es_model *m = dp->m;
    if (scratch(dp, 1, e)) return -1;
    memcpy(dp->xh, x, (size_t)m->hidden * sizeof *dp->xh);
    dp_run r = {.seq = -1, .n = 1, .x = dp->xh, .logits = logits};
    for (int i = dp->head_op; i < dp->sample_op; i++) /* final norm, LM head */
        if (dp_op(dp, &m->ops[i], &r, e)) return -1;
    return es_logits_finite(logits, m->vocab, -1, e); /* no token from logits past the float range */
}

int32_t es_dp_sample(es_dp *dp, int32_t seq, const float *logits)
{
    es_err e;
    /* SAMPLE reads the logits and cannot fail */
    dp_run r = {.seq = seq, .n = 1, .logits = (float *)logits};
    dp_op(dp, &dp->m->ops[dp->sample_op], &r, &e);
    return r.token;
}
