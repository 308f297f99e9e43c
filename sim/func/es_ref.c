/* es_ref: FP32 reference forward pass and sampler (see es_ref.h). */
#define _POSIX_C_SOURCE 200809L
#include "es_ref.h"
#include "es_stats.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REF_MAX_BYTES ((int64_t)4 << 30)

struct es_ref {
    const es_model *m;
    es_ref_rope rope;
    int64_t ctx;         /* KV positions per layer */
    /* weights, graph layout */
    float *emb;          /* (vocab, hidden) */
    float *head;         /* (vocab, hidden): emb when tied */
    float *out_norm;     /* (hidden) */
    float **attn_norm;   /* (layers) -> (hidden) */
    float **wq;          /* (layers) -> (heads * head_dim, hidden) */
    float **wk, **wv;    /* (layers) -> (kv_heads * head_dim, hidden) */
    float **wo;          /* (layers) -> (hidden, heads * head_dim) */
    float **ffn_norm;    /* (layers) -> (hidden) */
    float **wg, **wu;    /* (layers) -> (ffn, hidden) */
    float **wd;          /* (layers) -> (hidden, ffn) */
    double *freq;        /* (head_dim / 2) RoPE frequencies after llama3 or YaRN scaling */
    double mscale;       /* what cos and sin are multiplied by (YaRN's concentration, else 1) */
    /* KV cache */
    float *kc, *vc;      /* (layers, ctx, kv_heads * head_dim) */
    /* activations */
    float *x;            /* (hidden) residual stream */
    float *xb;           /* (hidden) normed input of a block */
    float *q;            /* (heads * head_dim) */
    float *att_out;      /* (heads * head_dim) */
    float *hb, *hb2;     /* (ffn) */
    double *att;         /* (ctx) attention scores of one head */
    float **owned;       /* every weight buffer, to free */
    int n_owned;
    /* SSM (Mamba), per layer: in_proj (2I, H), conv1d (I, K) and bias (I), x_proj (R + 2N, I),
     * dt_proj (I, R) and bias (I), A_log (I, N), D (I), out_proj (H, I) */
    float **s_in, **s_conv, **s_conv_b, **s_x, **s_dt, **s_dt_b, **s_a, **s_d, **s_out;
    double *h;           /* (layers, I, N) the scan's state */
    float *win;          /* (layers, K - 1, I) the conv1d's last inputs, oldest first */
    float *xz, *u, *dbl, *dt, *y; /* (2I), (I), (R + 2N), (I), (I) */
    /* MoE, per layer: q and k norms, the router (experts, H); expert e's gate, up, down */
    float **qn, **kn, **router;
    float ***eg, ***eu, ***ed; /* (layers) -> (experts) -> weights */
    float *score, *acc;        /* (experts), (H) */
    /* gpt-oss, per layer: the q, k, v, o and router biases and the sinks; expert e's gate_up and down biases */
    float **qb, **kb, **vb, **ob, **rb, **sinks;
    float ***egb, ***edb;      /* (layers) -> (experts) -> bias */
    /* a LoRA adapter (es_ref_set_lora): per graph tensor, or NULL */
    const float *const *la, *const *lb;
    int l_rank;
    double l_scale;
    double *l_h;         /* (l_rank) A x */
};

static int load_tensor(es_ref *r, int ti, float **dst, es_ref_rows rows, void *arg, es_err *e)
{
    const es_tensor *t = &r->m->tensors[ti];
    float *w = malloc((size_t)(t->rows * t->cols) * sizeof *w);
    if (!w) return es_fail(e, "reference: out of memory for %s", t->name);
    r->owned[r->n_owned++] = w;
    for (int64_t i = 0; i < t->rows; i++)
        if (rows(arg, ti, i, w + i * t->cols, e)) return -1;
    *dst = w;
    return 0;
}

/* r's buffers: the per-layer weight tables, the KV cache, the activations, and the MoE and SSM
 * scratch; -1 when out of memory. */
static int ref_alloc(es_ref *r)
{
    const es_model *m = r->m;
    int64_t L = m->layers, H = m->hidden, kvd = m->kv_heads * m->head_dim, qd = m->heads * m->head_dim, ctx = r->ctx;
    float ***per_layer[] = {&r->attn_norm, &r->wq, &r->wk, &r->wv, &r->wo, &r->ffn_norm, &r->wg, &r->wu, &r->wd,
                            &r->s_in, &r->s_conv, &r->s_conv_b, &r->s_x, &r->s_dt, &r->s_dt_b, &r->s_a, &r->s_d,
                            &r->s_out, &r->qn, &r->kn, &r->router, &r->qb, &r->kb, &r->vb, &r->ob, &r->rb, &r->sinks};
    for (size_t i = 0; i < sizeof per_layer / sizeof *per_layer; i++)
        if (!(*per_layer[i] = calloc((size_t)L, sizeof(float *)))) return -1;
    r->owned = calloc((size_t)m->n_tensors, sizeof *r->owned);
    r->freq = malloc((size_t)(m->head_dim / 2) * sizeof *r->freq);
    r->kc = malloc((size_t)(L * ctx * kvd) * sizeof *r->kc);
    r->vc = malloc((size_t)(L * ctx * kvd) * sizeof *r->vc);
    r->x = malloc((size_t)H * sizeof *r->x);
    r->xb = malloc((size_t)(H > qd ? H : qd) * sizeof *r->xb);
    r->q = malloc((size_t)qd * sizeof *r->q);
    r->att_out = malloc((size_t)(qd > H ? qd : H) * sizeof *r->att_out); /* also an expert's output (H) */
    r->hb = malloc((size_t)m->ffn * sizeof *r->hb);
    r->hb2 = malloc((size_t)m->ffn * sizeof *r->hb2);
    r->att = malloc((size_t)ctx * sizeof *r->att);
    if (!r->owned || !r->freq || !r->kc || !r->vc || !r->x || !r->xb || !r->q || !r->att_out || !r->hb ||
        !r->hb2 || !r->att)
        return -1;
    if (m->experts > 0) {
        float ****ex[5] = {&r->eg, &r->eu, &r->ed, &r->egb, &r->edb};
        for (int k = 0; k < 5; k++) {
            if (!(*ex[k] = calloc((size_t)L, sizeof(float **)))) return -1;
            for (int64_t l = 0; l < L; l++)
                if (!((*ex[k])[l] = calloc((size_t)m->experts, sizeof(float *)))) return -1;
        }
        r->score = malloc((size_t)m->experts * sizeof *r->score);
        r->acc = malloc((size_t)H * sizeof *r->acc);
        if (!r->score || !r->acc) return -1;
    }
    if (m->ssm_state > 0) {
        int64_t I = m->ssm_inner, N = m->ssm_state, K = m->ssm_conv, R = m->ssm_dt_rank;
        r->h = calloc((size_t)(L * I * N), sizeof *r->h);
        r->win = calloc((size_t)(L * (K > 1 ? K - 1 : 1) * I), sizeof *r->win);
        r->xz = malloc((size_t)(2 * I) * sizeof *r->xz);
        r->u = malloc((size_t)I * sizeof *r->u);
        r->dbl = malloc((size_t)(R + 2 * N) * sizeof *r->dbl);
        r->dt = malloc((size_t)I * sizeof *r->dt);
        r->y = malloc((size_t)I * sizeof *r->y);
        if (!r->h || !r->win || !r->xz || !r->u || !r->dbl || !r->dt || !r->y) return -1;
    }
    return 0;
}

/* Where tensor t's floats go in r, or NULL when the reference does not read it. */
static float **ref_slot(es_ref *r, const es_tensor *t)
{
    int l = t->layer;
    switch (t->role) {
    case ES_ROLE_EMBED: return &r->emb;
    case ES_ROLE_LM_HEAD: return &r->head;
    case ES_ROLE_OUT_NORM: return &r->out_norm;
    case ES_ROLE_ATTN_NORM: return &r->attn_norm[l];
    case ES_ROLE_Q: return &r->wq[l];
    case ES_ROLE_K: return &r->wk[l];
    case ES_ROLE_V: return &r->wv[l];
    case ES_ROLE_O: return &r->wo[l];
    case ES_ROLE_FFN_NORM: return &r->ffn_norm[l];
    case ES_ROLE_GATE: return t->expert >= 0 ? &r->eg[l][t->expert] : &r->wg[l];
    case ES_ROLE_UP: return t->expert >= 0 ? &r->eu[l][t->expert] : &r->wu[l];
    case ES_ROLE_DOWN: return t->expert >= 0 ? &r->ed[l][t->expert] : &r->wd[l];
    case ES_ROLE_Q_NORM: return &r->qn[l];
    case ES_ROLE_K_NORM: return &r->kn[l];
    case ES_ROLE_ROUTER: return &r->router[l];
    case ES_ROLE_SSM_IN: return &r->s_in[l];
    case ES_ROLE_SSM_CONV: return &r->s_conv[l];
    case ES_ROLE_SSM_X: return &r->s_x[l];
    case ES_ROLE_SSM_DT: return &r->s_dt[l];
    case ES_ROLE_SSM_A: return &r->s_a[l];
    case ES_ROLE_SSM_OUT: return &r->s_out[l];
    case ES_ROLE_SINKS: return &r->sinks[l];
    case ES_ROLE_BIAS: { /* gpt-oss's biases: told apart by name */
        const char *tail = strrchr(t->name, '.');
        if (t->expert >= 0) return strstr(t->name, "gate_up_proj_bias") ? &r->egb[l][t->expert] : &r->edb[l][t->expert];
        return !tail ? NULL : strstr(t->name, "q_proj.bias") ? &r->qb[l] : strstr(t->name, "k_proj.bias") ? &r->kb[l]
             : strstr(t->name, "v_proj.bias") ? &r->vb[l] : strstr(t->name, "o_proj.bias") ? &r->ob[l]
             : strstr(t->name, "router.bias") ? &r->rb[l] : NULL;
    }
    case ES_ROLE_SSM_VEC: { /* three vectors: told apart by name */
        size_t n = strlen(t->name);
        return n >= 11 && !strcmp(t->name + n - 11, "conv1d.bias") ? &r->s_conv_b[l]
             : n >= 12 && !strcmp(t->name + n - 12, "dt_proj.bias") ? &r->s_dt_b[l] : &r->s_d[l];
    }
    default: return NULL;
    }
}

int es_ref_load(es_ref **out, const es_model *m, es_ref_rows rows, void *arg, int64_t ctx, es_ref_rope rope,
                es_err *e)
{
    *out = NULL;
    int64_t L = m->layers, kvd = m->kv_heads * m->head_dim;
    double bytes = 4.0 * (double)es_model_params(m) + 8.0 * (double)L * (double)ctx * (double)kvd;
    if (ctx < 1 || bytes > (double)REF_MAX_BYTES)
        return es_fail(e, "%s: the FP32 reference holds every weight and its KV cache as floats: %.2f GiB, "
                          "more than its limit of %.0f GiB (use a smaller model or context)",
                       m->path, bytes / (1 << 30), (double)REF_MAX_BYTES / (1 << 30));
    es_ref *r = calloc(1, sizeof *r);
    if (!r) return es_fail(e, "reference: out of memory");
    r->m = m;
    r->rope = rope;
    r->ctx = ctx;
    if (ref_alloc(r)) {
        es_ref_free(r);
        return es_fail(e, "reference: out of memory");
    }
    es_model_rope_freqs(m, r->freq);
    r->mscale = es_model_rope_mscale(m);
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const es_tensor *t = &m->tensors[ti];
        float **dst = ref_slot(r, t);
        if (dst && load_tensor(r, ti, dst, rows, arg, e)) {
            es_ref_free(r);
            return -1;
        }
        if (t->lm_head) r->head = r->emb; /* tied */
    }
    *out = r;
    return 0;
}

void es_ref_free(es_ref *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_owned; i++) free(r->owned[i]);
    free(r->owned);
    free(r->attn_norm); free(r->wq); free(r->wk); free(r->wv); free(r->wo);
    free(r->ffn_norm); free(r->wg); free(r->wu); free(r->wd);
    free(r->s_in); free(r->s_conv); free(r->s_conv_b); free(r->s_x); free(r->s_dt); free(r->s_dt_b); free(r->s_a);
    free(r->s_d); free(r->s_out); free(r->h); free(r->win); free(r->xz); free(r->u); free(r->dbl); free(r->dt);
    free(r->y);
    float ***ex[5] = {r->eg, r->eu, r->ed, r->egb, r->edb};
    for (int k = 0; k < 5; k++) {
        for (int64_t l = 0; ex[k] && l < r->m->layers; l++) free(ex[k][l]);
        free(ex[k]);
    }
    free(r->qn); free(r->kn); free(r->router); free(r->score); free(r->acc);
    free(r->qb); free(r->kb); free(r->vb); free(r->ob); free(r->rb); free(r->sinks);
    free(r->freq); free(r->kc); free(r->vc);
    free(r->x); free(r->xb); free(r->q); free(r->att_out); free(r->hb); free(r->hb2); free(r->att);
    free(r->l_h);
    free(r);
}

/* out = RMSNorm(x) * w over n elements. */
static void rmsnorm(float *out, const float *x, const float *w, int64_t n, double eps)
{
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double scale = 1.0 / sqrt(ss / (double)n + eps);
    for (int64_t i = 0; i < n; i++) out[i] = (float)(x[i] * scale) * w[i];
}

/* out[rows] = W[rows, cols] x[cols] */
static void matvec(float *out, const float *W, const float *x, int64_t rows, int64_t cols)
{
    for (int64_t i = 0; i < rows; i++) {
        const float *w = W + i * cols;
        double acc = 0;
        for (int64_t j = 0; j < cols; j++) acc += (double)w[j] * x[j];
        out[i] = (float)acc;
    }
}

int es_ref_set_lora(es_ref *r, const float *const *a, const float *const *b, int rank, double scale, es_err *e)
{
    double *h = realloc(r->l_h, (size_t)(rank > 0 ? rank : 1) * sizeof *h);
    if (!h) return es_fail(e, "reference: out of memory");
    r->l_h = h;
    r->la = a;
    r->lb = b;
    r->l_rank = rank;
    r->l_scale = scale;
    return 0;
}

/* out[rows] += scale x B (A x) for layer l's projection of role `role`, when the adapter has one. */
static void lora(const es_ref *r, int64_t l, es_role role, float *out, const float *x)
{
    if (!r->la) return;
    const es_tensor *t = es_model_tensor(r->m, l, role);
    int64_t ti = t ? t - r->m->tensors : -1;
    if (ti < 0 || !r->la[ti]) return;
    const float *A = r->la[ti], *B = r->lb[ti];
    double *h = r->l_h;
    for (int k = 0; k < r->l_rank; k++) {
        double acc = 0;
        for (int64_t j = 0; j < t->cols; j++) acc += (double)A[k * t->cols + j] * x[j];
        h[k] = acc;
    }
    for (int64_t i = 0; i < t->rows; i++) {
        double acc = 0;
        for (int k = 0; k < r->l_rank; k++) acc += (double)B[i * r->l_rank + k] * h[k];
        out[i] = (float)((double)out[i] + r->l_scale * acc);
    }
}

/* Rotate each head of v (n_heads x hd) by position pos. */
static void rope(const es_ref *r, float *v, int64_t n_heads, int64_t pos)
{
    int64_t hd = r->m->head_dim, half = hd / 2;
    for (int64_t h = 0; h < n_heads; h++) {
        float *p = v + h * hd;
        for (int64_t i = 0; i < half; i++) {
            double a = (double)pos * r->freq[i], c = cos(a) * r->mscale, s = sin(a) * r->mscale;
            int64_t i0 = r->rope == ES_REF_ROPE_PAIRS ? 2 * i : i;
            int64_t i1 = r->rope == ES_REF_ROPE_PAIRS ? 2 * i + 1 : i + half;
            double x0 = p[i0], x1 = p[i1];
            p[i0] = (float)(x0 * c - x1 * s);
            p[i1] = (float)(x0 * s + x1 * c);
        }
    }
}

static double silu(double v) { return v / (1.0 + exp(-v)); }
static double softplus(double v) { return v > 20 ? v : log1p(exp(v)); }

/* RMSNorm without a gain, in place (Falcon-Mamba's B, C and dt). */
static void rms_plain(float *v, int64_t n, double eps)
{
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)v[i] * v[i];
    double s = 1.0 / sqrt(ss / (double)n + eps);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(v[i] * s);
}

/* One Mamba block on the residual x, for the sequence's next token. */
static void mamba_block(es_ref *r, int64_t l)
{
    const es_model *m = r->m;
    int64_t H = m->hidden, I = m->ssm_inner, N = m->ssm_state, K = m->ssm_conv, R = m->ssm_dt_rank;
    rmsnorm(r->xb, r->x, r->attn_norm[l], H, m->eps);
    matvec(r->xz, r->s_in[l], r->xb, 2 * I, H);               /* x: xz[0..I), z: xz[I..2I) */
    float *win = r->win + l * (K - 1) * I;                    /* the K - 1 inputs before this one */
    for (int64_t c = 0; c < I; c++) {                         /* causal depthwise conv1d, then SiLU */
        const float *w = r->s_conv[l] + c * K;
        double acc = r->s_conv_b[l] ? r->s_conv_b[l][c] : 0.0;
        for (int64_t k = 0; k < K - 1; k++) acc += (double)w[k] * win[k * I + c];
        acc += (double)w[K - 1] * r->xz[c];
        r->u[c] = (float)silu(acc);
    }
    for (int64_t k = 0; k + 1 < K - 1; k++) memcpy(win + k * I, win + (k + 1) * I, (size_t)I * sizeof *win);
    if (K > 1) memcpy(win + (K - 2) * I, r->xz, (size_t)I * sizeof *win);
    matvec(r->dbl, r->s_x[l], r->u, R + 2 * N, I);            /* dt_r (R), B (N), C (N) */
    float *B = r->dbl + R, *C = r->dbl + R + N;
    if (m->ssm_bcdt_norm) {
        rms_plain(r->dbl, R, m->ssm_norm_eps);
        rms_plain(B, N, m->ssm_norm_eps);
        rms_plain(C, N, m->ssm_norm_eps);
    }
    matvec(r->dt, r->s_dt[l], r->dbl, I, R);
    double *h = r->h + l * I * N;
    for (int64_t c = 0; c < I; c++) {                         /* the selective scan */
        double dt = softplus((double)r->dt[c] + (r->s_dt_b[l] ? r->s_dt_b[l][c] : 0.0)), y = 0;
        for (int64_t n = 0; n < N; n++) {
            double a = -exp((double)r->s_a[l][c * N + n]);
            h[c * N + n] = exp(dt * a) * h[c * N + n] + dt * B[n] * r->u[c];
            y += h[c * N + n] * C[n];
        }
        y += (double)r->s_d[l][c] * r->u[c];
        r->y[c] = (float)(y * silu(r->xz[I + c]));            /* gated by SiLU(z) */
    }
    matvec(r->xb, r->s_out[l], r->y, H, I);
    for (int64_t i = 0; i < H; i++) r->x[i] += r->xb[i];
}

/* v += b over n elements, when there is a bias. */
static void add_bias(float *v, const float *b, int64_t n)
{
    for (int64_t i = 0; b && i < n; i++) v[i] += b[i];
}

/* Attention of layer l for the token at pos (its K and V into the cache): x += o(attention); gpt-oss: with
 * the q, k, v and o biases, the sinks, and the window of a sliding layer. */
static void attn_block(es_ref *r, int64_t l, int64_t pos)
{
    const es_model *m = r->m;
    int64_t H = m->hidden, hd = m->head_dim, kvd = m->kv_heads * hd;
    int64_t group = m->heads / m->kv_heads;
    float *kl = r->kc + (l * r->ctx) * kvd, *vl = r->vc + (l * r->ctx) * kvd;
    rmsnorm(r->xb, r->x, r->attn_norm[l], H, m->eps);
    matvec(r->q, r->wq[l], r->xb, m->heads * hd, H);
    matvec(kl + pos * kvd, r->wk[l], r->xb, kvd, H);
    matvec(vl + pos * kvd, r->wv[l], r->xb, kvd, H);
    lora(r, l, ES_ROLE_Q, r->q, r->xb);
    lora(r, l, ES_ROLE_K, kl + pos * kvd, r->xb);
    lora(r, l, ES_ROLE_V, vl + pos * kvd, r->xb);
    add_bias(r->q, r->qb[l], m->heads * hd);
    add_bias(kl + pos * kvd, r->kb[l], kvd);
    add_bias(vl + pos * kvd, r->vb[l], kvd);
    if (m->qk_norm == 2) { /* RMSNorm over the whole q and k (OLMoE) */
        rmsnorm(r->q, r->q, r->qn[l], m->heads * hd, m->eps);
        rmsnorm(kl + pos * kvd, kl + pos * kvd, r->kn[l], kvd, m->eps);
    } else if (m->qk_norm == 1) { /* per head (Qwen3) */
        for (int64_t h = 0; h < m->heads; h++) rmsnorm(r->q + h * hd, r->q + h * hd, r->qn[l], hd, m->eps);
        for (int64_t h = 0; h < m->kv_heads; h++)
            rmsnorm(kl + pos * kvd + h * hd, kl + pos * kvd + h * hd, r->kn[l], hd, m->eps);
    }
    rope(r, r->q, m->heads, pos);
    rope(r, kl + pos * kvd, m->kv_heads, pos);
    const es_op *aop = es_model_op(m, l, ES_OP_ATTN);
    int64_t win = aop ? aop->window : 0, t0 = win > 0 && pos >= win ? pos - win + 1 : 0;
    for (int64_t h = 0; h < m->heads; h++) {
        const float *q = r->q + h * hd;
        int64_t kvh = h / group;
        double mx = r->sinks[l] ? r->sinks[l][h] : -INFINITY, sum = 0;
        for (int64_t t = t0; t <= pos; t++) {
            const float *k = kl + t * kvd + kvh * hd;
            double s = 0;
            for (int64_t i = 0; i < hd; i++) s += (double)q[i] * k[i];
            r->att[t] = s / sqrt((double)hd);
            if (r->att[t] > mx) mx = r->att[t];
        }
        for (int64_t t = t0; t <= pos; t++) { r->att[t] = exp(r->att[t] - mx); sum += r->att[t]; }
        if (r->sinks[l]) sum += exp(r->sinks[l][h] - mx); /* the sink's share, dropped */
        float *o = r->att_out + h * hd;
        for (int64_t i = 0; i < hd; i++) {
            double acc = 0;
            for (int64_t t = t0; t <= pos; t++) acc += r->att[t] * vl[t * kvd + kvh * hd + i];
            o[i] = (float)(acc / sum);
        }
    }
    matvec(r->xb, r->wo[l], r->att_out, H, m->heads * hd);
    lora(r, l, ES_ROLE_O, r->xb, r->att_out);
    add_bias(r->xb, r->ob[l], H);
    for (int64_t i = 0; i < H; i++) r->x[i] += r->xb[i];
}

/* hb = silu(hb) * hb2 over n elements. */
static void swiglu(es_ref *r, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double g = r->hb[i];
        r->hb[i] = (float)(g / (1.0 + exp(-g)) * r->hb2[i]);
    }
}

/* gpt-oss: hb = the clamped SwiGLU of hb (gate) and hb2 (up), each plus its half of the interleaved bias b
 * (gate at even, up at odd places), over n elements (OpenAI's swiglu, es_model.h). */
static void clamped_glu(es_ref *r, const float *b, int64_t n)
{
    const double lim = r->m->swiglu_limit, alpha = r->m->swiglu_alpha;
    for (int64_t i = 0; i < n; i++) {
        double g = (double)r->hb[i] + (b ? b[2 * i] : 0.0), u = (double)r->hb2[i] + (b ? b[2 * i + 1] : 0.0);
        g = g > lim ? lim : g;
        u = u > lim ? lim : u < -lim ? -lim : u;
        r->hb[i] = (float)(g / (1.0 + exp(-alpha * g)) * (u + 1.0));
    }
}

/* The router's top-k experts of layer l on xb, each expert's SwiGLU weighted by the softmax of
 * the router's scores: x += their sum. */
static void moe_ffn(es_ref *r, int64_t l)
{
    const es_model *m = r->m;
    int64_t H = m->hidden, E = m->experts;
    matvec(r->score, r->router[l], r->xb, E, H);
    add_bias(r->score, r->rb[l], E);
    double mx = -INFINITY, z = 0, sel = 0;
    for (int64_t x = 0; x < E; x++) mx = r->score[x] > mx ? r->score[x] : mx;
    for (int64_t x = 0; x < E; x++) z += exp(r->score[x] - mx);
    int32_t pick[64];
    double w[64];
    for (int64_t k = 0; k < m->top_k && k < 64; k++) { /* the largest; the lower index on ties */
        int64_t b = -1;
        for (int64_t x = 0; x < E; x++) {
            int taken = 0;
            for (int64_t j = 0; j < k; j++) taken |= pick[j] == x;
            if (!taken && (b < 0 || r->score[x] > r->score[b])) b = x;
        }
        pick[k] = (int32_t)b;
        w[k] = exp(r->score[b] - mx) / z;
        sel += w[k];
    }
    for (int64_t i = 0; i < H; i++) r->acc[i] = 0;
    for (int64_t k = 0; k < m->top_k && k < 64; k++) {
        int32_t x = pick[k];
        double wk = m->norm_topk ? w[k] / sel : w[k];
        matvec(r->hb, r->eg[l][x], r->xb, m->expert_ffn, H);
        matvec(r->hb2, r->eu[l][x], r->xb, m->expert_ffn, H);
        if (m->swiglu_limit > 0) clamped_glu(r, r->egb[l][x], m->expert_ffn);
        else swiglu(r, m->expert_ffn);
        matvec(r->att_out, r->ed[l][x], r->hb, H, m->expert_ffn);
        add_bias(r->att_out, r->edb[l][x], H);
        for (int64_t i = 0; i < H; i++) r->acc[i] += (float)(wk * r->att_out[i]);
    }
    for (int64_t i = 0; i < H; i++) r->x[i] += r->acc[i];
}

/* The feed-forward of layer l: x += down(silu(gate xb) * up xb), or the routed experts'. */
static void ffn_block(es_ref *r, int64_t l)
{
    const es_model *m = r->m;
    int64_t H = m->hidden, F = m->ffn;
    rmsnorm(r->xb, r->x, r->ffn_norm[l], H, m->eps);
    if (m->experts > 0) {
        moe_ffn(r, l);
        return;
    }
    matvec(r->hb, r->wg[l], r->xb, F, H);
    matvec(r->hb2, r->wu[l], r->xb, F, H);
    lora(r, l, ES_ROLE_GATE, r->hb, r->xb);
    lora(r, l, ES_ROLE_UP, r->hb2, r->xb);
    swiglu(r, F);
    matvec(r->xb, r->wd[l], r->hb, H, F);
    lora(r, l, ES_ROLE_DOWN, r->xb, r->hb);
    for (int64_t i = 0; i < H; i++) r->x[i] += r->xb[i];
}

int es_ref_forward(es_ref *r, int32_t token, int64_t pos, float *logits, es_err *e)
{
    const es_model *m = r->m;
    int64_t H = m->hidden;
    if (token < 0 || token >= m->vocab) return es_fail(e, "reference: token %d outside the vocabulary of %lld", token, (long long)m->vocab);
    if (pos < 0 || pos >= r->ctx) return es_fail(e, "reference: position %lld outside the context of %lld", (long long)pos, (long long)r->ctx);
    memcpy(r->x, r->emb + (int64_t)token * H, (size_t)H * sizeof *r->x);
    if (m->ssm_state > 0 && pos == 0) { /* a recurrence: position 0 starts a new sequence */
        memset(r->h, 0, (size_t)(m->layers * m->ssm_inner * m->ssm_state) * sizeof *r->h);
        memset(r->win, 0, (size_t)(m->layers * (m->ssm_conv > 1 ? m->ssm_conv - 1 : 1) * m->ssm_inner) *
                              sizeof *r->win);
    }
    for (int64_t l = 0; l < m->layers; l++) {
        if (m->ssm_state > 0) {
            mamba_block(r, l);
            continue;
        }
        attn_block(r, l, pos);
        ffn_block(r, l);
    }
    rmsnorm(r->xb, r->x, r->out_norm, H, m->eps);
    matvec(logits, r->head, r->xb, m->vocab, H);
    return 0;
}

/* ---- sampling ---- */

static int slot_desc(const void *a, const void *b)
{
    const es_sample_slot *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

int es_logits_finite(const float *l, int64_t n, int64_t pos, es_err *e)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(l[i])) {
            char at[40] = "";
            if (pos >= 0) snprintf(at, sizeof at, "position %lld: ", (long long)pos);
            return es_fail(e, "%sthe logit of token %lld is %s (the forward pass left the float range)", at,
                           (long long)i, isnan(l[i]) ? "NaN" : l[i] > 0 ? "+infinity" : "-infinity");
        }
    return 0;
}

int32_t es_sample(const es_sampler *s, const float *logits, int64_t n, uint64_t *rng, es_sample_slot *w)
{
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = (int32_t)i;
    if (s->temperature <= 0) return best;
    double mx = logits[best] / s->temperature, sum = 0;
    for (int64_t i = 0; i < n; i++) w[i] = (es_sample_slot){(float)exp(logits[i] / s->temperature - mx), (int32_t)i};
    qsort(w, (size_t)n, sizeof *w, slot_desc);
    int64_t keep = s->top_k > 0 && s->top_k < n ? s->top_k : n;
    for (int64_t i = 0; i < keep; i++) sum += w[i].p;
    if (s->top_p < 1.0) {
        double cum = 0;
        for (int64_t i = 0; i < keep; i++) {
            cum += w[i].p / sum;
            if (cum >= s->top_p) { keep = i + 1; break; }
        }
        sum = 0;
        for (int64_t i = 0; i < keep; i++) sum += w[i].p;
    }
    double u = (double)(es_splitmix64(rng) >> 11) * 0x1.0p-53 * sum, cum = 0;
    for (int64_t i = 0; i < keep; i++) {
        cum += w[i].p;
        if (u < cum) return w[i].id;
    }
    return w[keep - 1].id;
}
