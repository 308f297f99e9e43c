/* es_lora: see es_lora.h. */
#include "es_lora.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "es_fs.h"
#include "es_gguf.h"
#include "es_wsrc.h"

void es_lora_free(es_lora *l)
{
    for (int i = 0; i < l->n_tensors && l->a; i++) {
        free(l->a[i]);
        free(l->b[i]);
    }
    free(l->a);
    free(l->b);
    free(l->adapted);
    memset(l, 0, sizeof *l);
}

/* PEFT's adapter_config.json beside the safetensors file: rank r and lora_alpha; variants whose output is not
 * W x + (alpha / r) B A x are refused. */
static int peft_config(es_lora *l, const char *st_path, int64_t *rank, es_err *e)
{
    char cfg[600];
    const char *slash = strrchr(st_path, '/');
    snprintf(cfg, sizeof cfg, "%.*sadapter_config.json", slash ? (int)(slash - st_path + 1) : 0, st_path);
    char *text = NULL;
    size_t len = 0;
    if (es_read_file(cfg, 1u << 20, &text, &len, e)) return -1;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return es_fail(e, "%s: not a JSON object (PEFT's adapter_config.json)", cfg);
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "r"), *a = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    int rc = 0;
    if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble > 65536 || r->valuedouble != floor(r->valuedouble))
        rc = es_fail(e, "%s: key 'r': expected the rank, a whole number from 1 to 65536", cfg);
    else if (!cJSON_IsNumber(a) || !isfinite(a->valuedouble))
        rc = es_fail(e, "%s: key 'lora_alpha': expected a number", cfg);
    else if (pt && (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA")))
        rc = es_fail(e, "%s: key 'peft_type': expected \"LORA\"", cfg);
    else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_rslora")) ||
             cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_dora")) ||
             cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "fan_in_fan_out")))
        rc = es_fail(e, "%s: keys 'use_rslora', 'use_dora', 'fan_in_fan_out': only plain LoRA (all false) is "
                        "modelled", cfg);
    if (!rc) {
        *rank = (int64_t)r->valuedouble;
        l->alpha = a->valuedouble;
    }
    cJSON_Delete(j);
    return rc;
}

/* A GGUF LoRA's metadata: general.type "adapter", adapter.type "lora", adapter.lora.alpha (0 if absent). */
static int gguf_meta(es_lora *l, const char *path, es_err *e)
{
    es_gguf g;
    if (es_gguf_open(&g, path, e)) return -1;
    const char *type = NULL, *at = NULL;
    int rc = 0;
    const es_gguf_kv *gt = es_gguf_find(&g, "general.type");
    if (!gt || gt->type != ES_GGUF_STRING)
        rc = es_fail(e, "%s: key 'general.type': expected \"adapter\" (a LoRA adapter), %s", path,
                     gt ? "not a string" : "missing (a model, not an adapter?)");
    else if (es_gguf_str(&g, "general.type", &type, e)) rc = -1;
    else if (strcmp(type, "adapter"))
        rc = es_fail(e, "%s: key 'general.type': expected \"adapter\" (a LoRA adapter), got \"%s\"", path, type);
    else if (es_gguf_str(&g, "adapter.type", &at, e)) rc = -1;
    else if (strcmp(at, "lora")) rc = es_fail(e, "%s: key 'adapter.type': expected \"lora\", got \"%s\"", path, at);
    else if (es_gguf_num_opt(&g, "adapter.lora.alpha", -1e9, 1e9, 0, &l->alpha, e)) rc = -1;
    es_gguf_close(&g);
    return rc;
}

/* File tensor t's graph tensor and whether it is A (0) or B (1): 0, 1 (a GGUF norm pair llama.cpp skips too), or -1
 * with e. */
static int lora_name(const es_wsrc *s, const es_wtensor *t, const es_model *m, int *ti, int *is_b, es_err *e)
{
    char base[160], hf[160];
    const char *name = t->name, *p = NULL;
    size_t n = strlen(name);
    if (s->gguf) {
        if (n > 7 && (!strcmp(name + n - 7, ".lora_a") || !strcmp(name + n - 7, ".lora_b"))) {
            *is_b = name[n - 1] == 'b';
            snprintf(base, sizeof base, "%.*s", (int)(n - 7), name);
            if (es_ends_with(base, "_norm.weight")) return 1;
            p = es_gguf_to_hf(base, hf, sizeof hf);
        }
    } else {
        if (!strncmp(name, "base_model.model.", 17)) name += 17, n -= 17;
        if (n > 14 && (!strcmp(name + n - 14, ".lora_A.weight") || !strcmp(name + n - 14, ".lora_B.weight"))) {
            *is_b = name[n - 8] == 'B';
            snprintf(hf, sizeof hf, "%.*s.weight", (int)(n - 14), name);
            p = hf;
        }
    }
    if (!p) return es_fail(e, "%s: tensor %s: not a LoRA A or B tensor (expected %s)", s->path, t->name,
                           s->gguf ? "<tensor>.lora_a, <tensor>.lora_b" : "<module>.lora_A.weight, <module>.lora_B.weight");
    for (int i = 0; i < m->n_tensors; i++) {
        const es_tensor *x = &m->tensors[i];
        if (strcmp(x->name, p)) continue;
        es_role r = x->role;
        if (x->expert >= 0 || x->layer < 0 ||
            !(r == ES_ROLE_Q || r == ES_ROLE_K || r == ES_ROLE_V || r == ES_ROLE_O || r == ES_ROLE_GATE ||
              r == ES_ROLE_UP || r == ES_ROLE_DOWN))
            return es_fail(e, "%s: tensor %s: adapts %s, which is not a layer's q, k, v, o, gate, up or down "
                              "projection", s->path, t->name, p);
        *ti = i;
        return 0;
    }
    return es_fail(e, "%s: tensor %s: the model %s has no tensor %s", s->path, t->name, m->path, p);
}

/* File tensor t as FP32 into *out (rows x cols, the graph's row order). */
static int read_tensor(const es_wsrc *s, const es_wtensor *t, const es_model *m, const es_tensor *mt, int is_b,
                       float **out, es_err *e)
{
    int64_t rows = t->dims[0], cols = t->dims[1];
    es_qfmt f = t->fmt;
    f.nibbles = s->nibbles;
    int64_t rb = es_q_row_bytes(&f, cols, e);
    if (rb < 0) return -1;
    unsigned char *buf = malloc((size_t)rb);
    float *v = malloc((size_t)(rows * cols) * sizeof *v);
    if (!buf || !v) {
        free(buf);
        free(v);
        return es_fail(e, "out of memory");
    }
    int pairs = s->gguf && is_b && (mt->role == ES_ROLE_Q || mt->role == ES_ROLE_K); /* Meta's row order */
    int rc = 0;
    for (int64_t row = 0; row < rows && !rc; row++) {
        int64_t src = row;
        if (pairs) {
            int64_t hd = m->head_dim, half = hd / 2, k = row % hd;
            src = row - k + 2 * (k % half) + k / half; /* graph row (i + j*half) reads file row 2i + j */
        }
        float *y = v + row * cols;
        if (es_pread_all(s->fds[t->file], buf, rb, t->offset + src * rb))
            rc = es_fail(e, "%s: tensor %s: cannot read row %lld", s->path, t->name, (long long)src);
        else if (es_dequantize_row(&f, buf, cols, y, e))
            rc = -1;
        for (int64_t k = 0; !rc && k < cols; k++)
            if (!isfinite(y[k]))
                rc = es_fail(e, "%s: tensor %s: element %lld (row %lld, column %lld) is not finite", s->path, t->name,
                             (long long)(src * cols + k), (long long)src, (long long)k);
    }
    free(buf);
    if (rc) free(v);
    else *out = v;
    return rc;
}

/* Each tensor of the file: named, shaped [rank, in] (A) or [out, rank] (B), read. */
static int lora_tensors(es_lora *l, const es_wsrc *s, const es_model *m, int64_t rank, es_err *e)
{
    for (int j = 0; j < s->n; j++) {
        const es_wtensor *t = &s->t[j];
        int ti = -1, is_b = 0, rc = lora_name(s, t, m, &ti, &is_b, e);
        if (rc < 0) return -1;
        if (rc > 0) continue;
        const es_tensor *mt = &m->tensors[ti];
        int64_t want0 = is_b ? mt->rows : rank, want1 = is_b ? rank : mt->cols;
        if (t->ndims != 2 || t->dims[0] != want0 || t->dims[1] != want1)
            return es_fail(e, "%s: tensor %s: expected shape [%lld, %lld] (%s of %s, rank %lld), found %s[%lld, %lld]",
                           s->path, t->name, (long long)want0, (long long)want1, is_b ? "out x rank" : "rank x in",
                           mt->name, (long long)rank, t->ndims != 2 ? "a tensor of other than 2 dimensions, " : "",
                           (long long)t->dims[0], (long long)(t->ndims > 1 ? t->dims[1] : 0));
        float **slot = is_b ? &l->b[ti] : &l->a[ti];
        if (*slot) return es_fail(e, "%s: tensor %s: a second %s for %s", s->path, t->name, is_b ? "B" : "A", mt->name);
        if (read_tensor(s, t, m, mt, is_b, slot, e)) return -1;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        if (!l->a[i] != !l->b[i])
            return es_fail(e, "%s: %s has a LoRA %s but no %s", s->path, m->tensors[i].name, l->a[i] ? "A" : "B",
                           l->a[i] ? "B" : "A");
        if (!l->a[i]) continue;
        l->adapted[i] = 1;
        l->n_adapted++;
        l->roles |= 1u << m->tensors[i].role;
    }
    if (!l->n_adapted) return es_fail(e, "%s: no LoRA tensors", s->path);
    return 0;
}

int es_lora_load(es_lora *l, const char *path, const es_model *m, es_err *e)
{
    memset(l, 0, sizeof *l);
    if (es_is_dir(path)) { /* PEFT's save_pretrained folder */
        if (snprintf(l->path, sizeof l->path, "%s/adapter_model.safetensors", path) >= (int)sizeof l->path)
            return es_fail(e, "%s: path too long", path);
        if (!es_is_file(l->path)) return es_fail(e, "%s: folder holds no adapter_model.safetensors", path);
    } else {
        snprintf(l->path, sizeof l->path, "%s", path);
    }
    path = l->path;
    es_wsrc s;
    if (es_wsrc_open(&s, path, NULL, e)) return -1;
    int64_t rank = 0;
    int rc = s.gguf ? gguf_meta(l, path, e) : peft_config(l, path, &rank, e);
    for (int j = 0; !rc && s.gguf && j < s.n && !rank; j++) /* a GGUF's rank: its first A's rows */
        if (es_ends_with(s.t[j].name, ".lora_a") && s.t[j].ndims == 2) rank = s.t[j].dims[0];
    if (!rc && (rank < 1 || rank > 65536))
        rc = es_fail(e, "%s: no LoRA A tensor of rank 1 to 65536 (a GGUF's <tensor>.lora_a, ne [in, rank])", path);
    l->n_tensors = m->n_tensors;
    if (!rc) {
        l->a = calloc((size_t)m->n_tensors + 1, sizeof *l->a);
        l->b = calloc((size_t)m->n_tensors + 1, sizeof *l->b);
        l->adapted = calloc((size_t)m->n_tensors + 1, 1);
        if (!l->a || !l->b || !l->adapted) rc = es_fail(e, "out of memory");
    }
    if (!rc) rc = lora_tensors(l, &s, m, rank, e);
    int gguf = s.gguf;
    es_wsrc_close(&s);
    if (rc) {
        es_lora_free(l);
        return -1;
    }
    l->rank = (int)rank;
    if (gguf && l->alpha == 0) l->alpha = (double)rank; /* llama.cpp: alpha 0 is a scale of 1 */
    return 0;
}
