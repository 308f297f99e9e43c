/* cli_func: see cli_func.h. */
#define _POSIX_C_SOURCE 200809L
#include "cli_func.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "es_dataset.h"
#include "es_fs.h"
#include "es_gguf.h"

int es_func_tokenizer(const es_model *m, const char *vocab, es_tok **tok, char *path, size_t n, es_err *e)
{
    *tok = NULL;
    if (vocab) snprintf(path, n, "%s", vocab);
    else if (m->gguf) snprintf(path, n, "%s", m->path);
    else {
        snprintf(path, n, "%s", m->path);
        char *slash = strrchr(path, '/');
        if (slash) snprintf(slash + 1, n - (size_t)(slash + 1 - path), "tokenizer.tiktoken");
        if (!es_is_file(path))
            return es_fail(e, "%s: no tokenizer: give --vocab (a GGUF file or a tiktoken file)", m->path);
    }
    return es_gguf_is_gguf(path) || es_ends_with(path, ".gguf") ? es_tok_load_gguf(tok, path, e) : es_tok_load_tiktoken(tok, path, e);
}

int es_func_datapath(es_dp **out, const es_chip *c, const es_model *m, const es_func_weights *w, int threads,
                     es_err *e)
{
    *out = NULL;
    int given = (w->rom != NULL) + (w->weights != NULL) + (w->synthetic >= 0);
    if (given == 0)
        return es_fail(e, "functional mode needs weights: give --rom FILE, --weights FILE (quantized by --recipe) "
                          "or --synthetic SEED");
    if (given > 1) return es_fail(e, "give one of --rom, --weights and --synthetic, not several");
    return es_func_load(out, c, m, w, threads, e);
}

char *es_func_text(const es_tok *tok, const int32_t *ids, int64_t n)
{
    size_t cap = 64, len = 0;
    char *s = malloc(cap), piece[512];
    if (!s) return NULL;
    for (int64_t i = 0; i < n; i++) {
        size_t k = es_tok_piece(tok, ids[i], piece, sizeof piece);
        if (k > sizeof piece) k = sizeof piece;
        if (len + k + 1 > cap) {
            while (len + k + 1 > cap) cap *= 2;
            char *t = realloc(s, cap);
            if (!t) { free(s); return NULL; }
            s = t;
        }
        memcpy(s + len, piece, k);
        len += k;
    }
    s[len] = 0;
    /* pieces may end inside a character (byte tokens): bytes that do not form
     * valid UTF-8 become U+FFFD, so the text is always valid UTF-8 */
    if (es_utf8_valid(s, len)) return s;
    char *v = malloc(3 * len + 1);
    size_t k = 0;
    if (!v) { free(s); return NULL; }
    for (size_t i = 0, c; i < len; i += c ? c : 1) {
        c = es_utf8_seq(s + i, len - i);
        if (c) { memcpy(v + k, s + i, c); k += c; }
        else { memcpy(v + k, "\xEF\xBF\xBD", 3); k += 3; }
    }
    v[k] = 0;
    free(s);
    return v;
}

int es_logits_open(es_logits_file *lf, const char *path, es_err *e)
{
    memset(lf, 0, sizeof *lf);
    if (es_is_dir(path)) return es_fail(e, "%s: is a folder; --logits expects a file", path);
    if (es_atomic_open(&lf->out, path, "the logits", e)) return -1;
    fputc('[', lf->out.f);
    return 0;
}

int es_logits_row(es_logits_file *lf, int64_t pos, int32_t token, const float *l, int64_t n, es_err *e)
{
    es_err fe;
    FILE *f = lf->out.f;
    if (es_logits_finite(l, n, pos, &fe)) /* JSON has no NaN or infinity: refuse rather than write a non-number */
        return es_fail(e, "%s: %s; no logits file written", lf->out.path, fe.msg);
    fprintf(f, "%s{\"pos\": %lld, \"token\": %d, \"logits\": [", lf->rows ? ",\n " : "", (long long)pos, token);
    for (int64_t i = 0; i < n; i++) fprintf(f, i ? ", %.9g" : "%.9g", (double)l[i]);
    lf->rows++;
    if (fputs("]}", f) < 0) return es_fail(e, "%s: write failed", lf->out.tmp);
    return 0;
}

int es_logits_close(es_logits_file *lf, es_err *e)
{
    fputs("]\n", lf->out.f);
    return es_atomic_commit(&lf->out, e);
}

void es_logits_abort(es_logits_file *lf) { es_atomic_abort(&lf->out); }
