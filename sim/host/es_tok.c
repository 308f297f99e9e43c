/* es_tok: Llama 3 byte-level BPE (see es_tok.h). */
#define _POSIX_C_SOURCE 200809L
#include "es_tok.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "es_dataset.h"
#include "es_unicode_tables.h"
#include "es_gguf.h"

struct es_tok {
    int spm;                /* 1: SentencePiece (tokenizer.ggml.model "llama"); 0: Llama 3 BPE */
    unsigned char *bytes;   /* all tokens' bytes (SentencePiece: the piece text, with U+2581) */
    size_t n_bytes, cap_bytes;
    uint64_t *off;          /* (n) offset << 16 | length of token id i; length 0: no token */
    int64_t n;              /* ids 0..n-1 */
    int64_t cap_off;        /* entries allocated in off */
    int32_t *table;         /* open addressing: token ids by hash of their bytes, -1 empty */
    uint64_t mask;
    float *scores;          /* SentencePiece: (n) merge scores, higher merges first */
    int32_t *types;         /* SentencePiece: (n) token types (1 normal, 2 unknown, 3 control, 6 byte) */
    int32_t byte_tok[256];  /* SentencePiece: the <0xXX> token of each byte, -1 when absent */
    int add_space_prefix;   /* SentencePiece: a space goes before the text */
    int32_t bos, eos;       /* -1 when the vocabulary has none */
    int add_bos, add_eos;   /* a prompt starts with BOS / ends with EOS (es_tok_add_bos) */
    int pre;                /* PRE_*: the pre-tokenizer (byte-level BPE) */
    int ignore_merges;      /* a piece that is a token whole is that token (Llama 3) */
    uint64_t *pairs;        /* merges (GGUF): open addressing, (left id + 1) << 32 | (right id + 1), 0 empty */
    int32_t *pair_rank;     /* the rank of pairs[i] (its index in tokenizer.ggml.merges) */
    uint64_t pair_mask;     /* 0: no merges: a pair's rank is the id of its concatenation (tiktoken) */
    struct es_tok_sp *sp;   /* special tokens, the longest text first */
    int64_t n_sp;
    int32_t *eog;           /* ids that end generation */
    int64_t n_eog;
};

/* A special token: its text and kind (2 unknown, 3 control, 4 user-defined). */
struct es_tok_sp { char *text; size_t len; int32_t id; int kind; };

enum { PRE_LLAMA3, PRE_GPT2, PRE_SMOLLM };
static const char *const pre_names[] = {"llama-bpe", "gpt-2", "smollm"};

static int add_special(es_tok *t, int32_t id, const char *s, size_t n, int kind)
{
    if (n == 0) return 0;
    struct es_tok_sp *sp = realloc(t->sp, (size_t)(t->n_sp + 1) * sizeof *sp);
    if (!sp) return -1;
    t->sp = sp;
    char *c = malloc(n + 1);
    if (!c) return -1;
    memcpy(c, s, n);
    c[n] = 0;
    t->sp[t->n_sp++] = (struct es_tok_sp){c, n, id, kind};
    return 0;
}

static int sp_cmp(const void *a, const void *b)
{
    const struct es_tok_sp *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The end-of-generation set, as llama.cpp's special_eog_ids: tokens by name, then EOS and extra
 * (eot/eom ids from the metadata, -1 when none). */
static int build_eog(es_tok *t, int32_t eot, int32_t eom)
{
    static const char *const names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
                                        "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
                                        "<|end_of_text|>", "<end_of_utterance>"};
    t->eog = malloc((size_t)(t->n_sp + 3) * sizeof *t->eog);
    if (!t->eog) return -1;
    for (int64_t i = 0; i < t->n_sp; i++)
        for (size_t k = 0; k < sizeof names / sizeof *names; k++)
            if (!strcmp(t->sp[i].text, names[k])) t->eog[t->n_eog++] = t->sp[i].id;
    int32_t more[3] = {t->eos, eot, eom};
    for (int k = 0; k < 3; k++)
        if (more[k] >= 0 && !es_tok_is_eog(t, more[k])) t->eog[t->n_eog++] = more[k];
    if (t->n_sp > 1) qsort(t->sp, (size_t)t->n_sp, sizeof *t->sp, sp_cmp); /* no special tokens: sp is NULL */
    return 0;
}

/* Decode the code point at s[0..n) (n >= 1) into *cp; returns its length in
 * bytes (1 for a malformed or truncated sequence's first byte). */
static int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    int len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if ((size_t)len > n) len = 1;
    uint32_t v = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (int j = 1; j < len; j++) v = v << 6 | (s[j] & 0x3F);
    *cp = v;
    return len;
}

/* ---- vocabulary ---- */

static uint64_t hash_bytes(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static int add_token(es_tok *t, int64_t id, const unsigned char *p, size_t len, es_err *e, const char *path)
{
    if (len == 0 || len > 65535)
        return es_fail(e, "%s: token %lld: empty or longer than 65,535 bytes", path, (long long)id);
    if (id < 0 || id >= ES_TOK_MAX_RANKS)
        return es_fail(e, "%s: token rank %lld: out of range (a vocabulary has at most %d ranks)", path, (long long)id,
                       ES_TOK_MAX_RANKS);
    if (id >= t->cap_off) { /* geometric growth: a vocabulary of n ranks costs O(n) */
        int64_t cap = t->cap_off ? 2 * t->cap_off : 4096;
        while (cap <= id) cap *= 2;
        uint64_t *o = realloc(t->off, (size_t)cap * sizeof *o);
        if (!o) return es_fail(e, "%s: out of memory", path);
        t->off = o;
        t->cap_off = cap;
    }
    if (id >= t->n) {
        for (int64_t k = t->n; k <= id; k++) t->off[k] = 0;
        t->n = id + 1;
    }
    if (t->off[id]) return es_fail(e, "%s: rank %lld appears twice", path, (long long)id);
    if (t->n_bytes + len > t->cap_bytes) {
        size_t cap = t->cap_bytes ? 2 * t->cap_bytes : 1 << 20;
        while (cap < t->n_bytes + len) cap *= 2;
        unsigned char *b = realloc(t->bytes, cap);
        if (!b) return es_fail(e, "%s: out of memory", path);
        t->bytes = b;
        t->cap_bytes = cap;
    }
    memcpy(t->bytes + t->n_bytes, p, len);
    t->off[id] = (uint64_t)t->n_bytes << 16 | len;
    t->n_bytes += len;
    return 0;
}

static int build_table(es_tok *t, const char *path, es_err *e)
{
    uint64_t size = 1;
    while (size < (uint64_t)t->n * 2) size <<= 1;
    t->table = malloc(size * sizeof *t->table);
    if (!t->table) return es_fail(e, "%s: out of memory", path);
    memset(t->table, 0xFF, size * sizeof *t->table);
    t->mask = size - 1;
    for (int64_t id = 0; id < t->n; id++) {
        if (!t->off[id]) continue;
        const unsigned char *p = t->bytes + (t->off[id] >> 16);
        size_t len = t->off[id] & 0xFFFF;
        uint64_t h = hash_bytes(p, len) & t->mask;
        while (t->table[h] >= 0) {
            int32_t o = t->table[h];
            if ((t->off[o] & 0xFFFF) == len && !memcmp(t->bytes + (t->off[o] >> 16), p, len))
                return es_fail(e, "%s: tokens %d and %lld have the same bytes", path, o, (long long)id);
            h = (h + 1) & t->mask;
        }
        t->table[h] = (int32_t)id;
    }
    return 0;
}

static int32_t lookup(const es_tok *t, const unsigned char *p, size_t len)
{
    uint64_t h = hash_bytes(p, len) & t->mask;
    int32_t id;
    while ((id = t->table[h]) >= 0) {
        if ((t->off[id] & 0xFFFF) == len && !memcmp(t->bytes + (t->off[id] >> 16), p, len)) return id;
        h = (h + 1) & t->mask;
    }
    return -1;
}

/* Ids 0..n-1 (n > t->n), the new ones without bytes. */
static int grow_ids(es_tok *t, int64_t n)
{
    if (n > t->cap_off) {
        uint64_t *o = realloc(t->off, (size_t)n * sizeof *o);
        if (!o) return -1;
        t->off = o;
        t->cap_off = n;
    }
    for (int64_t k = t->n; k < n; k++) t->off[k] = 0;
    t->n = n;
    return 0;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Llama 3.1's special tokens follow its 128,000 ranks (Meta's tokenizer.py, and the npm package
 * llama3-tokenizer-js 1.2.0 that scripts/fetch-vocab reads): 256 of them, 11 named, the rest
 * <|reserved_special_token_N|>. */
#define LLAMA3_SPECIAL0 128000
static int llama3_specials(es_tok *t)
{
    static const char *const named[11] = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                                          "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                                          "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
                                          "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"};
    char name[48];
    for (int i = 0; i < 256; i++) {
        if (i < 11) snprintf(name, sizeof name, "%s", named[i]);
        else snprintf(name, sizeof name, "<|reserved_special_token_%d|>", i - 8);
        if (add_special(t, LLAMA3_SPECIAL0 + i, name, strlen(name), 3)) return -1;
    }
    if (grow_ids(t, LLAMA3_SPECIAL0 + 256)) return -1; /* no BPE bytes: special tokens are not ranks */
    t->bos = LLAMA3_SPECIAL0;
    t->eos = LLAMA3_SPECIAL0 + 1;
    t->add_bos = 1;
    return build_eog(t, -1, -1);
}

int es_tok_load_tiktoken(es_tok **out, const char *path, es_err *e)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return es_fail(e, "%s: cannot open: %s", path, strerror(errno));
    es_tok *t = calloc(1, sizeof *t);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0;
    unsigned char dec[1024];
    int rc = -1;
    if (!t) { es_fail(e, "%s: out of memory", path); goto out; }
    t->bos = t->eos = -1; /* a tiktoken file lists the BPE ranks, not the special tokens */
    size_t at = 0; /* bytes read before this line */
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        const char *nul = memchr(line, 0, (size_t)len); /* strtoll would stop there and drop the rest */
        if (nul) {
            es_fail(e, "%s: a NUL byte at offset %zu: expected a text file of '<base64 bytes> <rank>' lines", path,
                    at + (size_t)(nul - line));
            goto out;
        }
        at += (size_t)len;
        char *sp = memchr(line, ' ', (size_t)len);
        char *end = NULL;
        long long rank = sp ? strtoll(sp + 1, &end, 10) : -1;
        if (!sp || !end || (*end && *end != '\n' && *end != '\r') || rank < 0) {
            es_fail(e, "%s: line %lld: expected '<base64 bytes> <rank>'", path, (long long)lineno);
            goto out;
        }
        size_t n = 0;
        unsigned acc = 0;
        int bits = 0;
        for (char *p = line; p < sp; p++) {
            if (*p == '=') break;
            int v = b64val((unsigned char)*p);
            if (v < 0 || n >= sizeof dec) {
                es_fail(e, "%s: line %lld: bad base64", path, (long long)lineno);
                goto out;
            }
            acc = acc << 6 | (unsigned)v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                dec[n++] = (unsigned char)(acc >> bits);
                acc &= (1u << bits) - 1;
            }
        }
        if (add_token(t, rank, dec, n, e, path)) goto out;
    }
    if (t->n == 0) { es_fail(e, "%s: no tokens", path); goto out; }
    if (build_table(t, path, e)) goto out;
    t->pre = PRE_LLAMA3;
    t->ignore_merges = 1;
    /* Llama 3's 128,000 ranks: its special tokens follow (another vocabulary has none known) */
    if (t->n == LLAMA3_SPECIAL0 && llama3_specials(t)) { es_fail(e, "%s: out of memory", path); goto out; }
    rc = 0;
out:
    free(line);
    fclose(f);
    if (rc) es_tok_free(t);
    else *out = t;
    return rc;
}

/* GPT-2's map from bytes to printable characters, inverted: code point -> byte. */
static int gpt2_byte(uint32_t cp)
{
    static int table[324];
    static int ready;
    if (!ready) {
        int n = 0;
        for (int i = 0; i < 324; i++) table[i] = -1;
        for (int b = 0; b < 256; b++) {
            int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            table[printable ? b : 256 + n++] = b;
        }
        ready = 1;
    }
    return cp < 324 ? table[cp] : -1;
}

/* A GPT-2-form string (bytes as printable characters) back to bytes; -1 when a character is not
 * byte-mapped or the bytes pass cap. */
static int64_t gpt2_bytes(const char *s, size_t n, unsigned char *buf, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)utf8_decode((const unsigned char *)s + i, n - i, &cp);
        int b = gpt2_byte(cp);
        if (b < 0 || k >= cap) return -1;
        buf[k++] = (unsigned char)b;
    }
    return (int64_t)k;
}

typedef struct gguf_ctx {
    es_tok *t;
    const char *path;
    es_err *e;
    const double *types;   /* tokenizer.ggml.token_type, or NULL */
    int64_t n_types;
} gguf_ctx;

/* A Llama 3 (gpt2-model) vocabulary entry: GPT-2 characters back to bytes. */
static int gguf_bpe_token(void *arg, int64_t id, const char *s, size_t n)
{
    gguf_ctx *g = arg;
    unsigned char buf[1024];
    int type = g->types && id < g->n_types ? (int)g->types[id] : 1;
    if ((type == 2 || type == 3 || type == 4) && add_special(g->t, (int32_t)id, s, n, type))
        return es_fail(g->e, "%s: out of memory", g->path);
    /* only normal (1) and byte (6) tokens are BPE ranks; control tokens and the like are not */
    if (type != 1 && type != 6) return 0;
    if (!es_utf8_valid(s, n)) return es_fail(g->e, "%s: token %lld: bad UTF-8", g->path, (long long)id);
    int64_t k = gpt2_bytes(s, n, buf, sizeof buf);
    if (k < 0) return 0; /* a special token (e.g. <|begin_of_text|>) typed normal: not a BPE rank */
    return k ? add_token(g->t, id, buf, (size_t)k, g->e, g->path) : 0;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The byte of a piece reading exactly <0xXX>, or -1. */
static int byte_piece(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>' || hexval(s[3]) < 0 || hexval(s[4]) < 0) return -1;
    return hexval(s[3]) << 4 | hexval(s[4]);
}

/* A SentencePiece vocabulary entry: the piece text as it is; byte tokens
 * (type 6, "<0xXX>") are also indexed by their byte. */
static int gguf_spm_token(void *arg, int64_t id, const char *s, size_t n)
{
    gguf_ctx *g = arg;
    if (n == 0) return 0;
    int type = g->types && id < g->n_types ? (int)g->types[id] : 1;
    if ((type == 2 || type == 3 || type == 4) && add_special(g->t, (int32_t)id, s, n, type))
        return es_fail(g->e, "%s: out of memory", g->path);
    if (type == 6) {
        int v = byte_piece(s, n);
        if (v < 0)
            return es_fail(g->e, "%s: token %lld: a byte token must read <0xXX>, got '%.32s'", g->path,
                           (long long)id, s);
        g->t->byte_tok[v] = (int32_t)id;
    }
    return add_token(g->t, id, (const unsigned char *)s, n, g->e, g->path);
}

static uint64_t pair_slot(uint64_t key, uint64_t mask) { return (key * 0x9E3779B97F4A7C15ULL >> 17) & mask; }

/* tokenizer.ggml.merges entry i, "A B" in GPT-2 form (split at the first space after the first
 * character, as llama.cpp): the pair (id of A, id of B) gets rank i, the first listing winning. */
static int gguf_merge(void *arg, int64_t i, const char *s, size_t n)
{
    gguf_ctx *g = arg;
    es_tok *t = g->t;
    const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
    if (!sp)
        return es_fail(g->e, "%s: metadata 'tokenizer.ggml.merges' entry %lld: expected 'A B', got '%.32s'", g->path,
                       (long long)i, s);
    unsigned char a[1024], b[1024];
    int64_t na = gpt2_bytes(s, (size_t)(sp - s), a, sizeof a);
    int64_t nb = gpt2_bytes(sp + 1, n - (size_t)(sp + 1 - s), b, sizeof b);
    int32_t ia = na > 0 ? lookup(t, a, (size_t)na) : -1, ib = nb > 0 ? lookup(t, b, (size_t)nb) : -1;
    if (ia < 0 || ib < 0) return 0; /* a merge of parts that are not tokens never applies */
    uint64_t key = (uint64_t)(ia + 1) << 32 | (uint32_t)(ib + 1), h = pair_slot(key, t->pair_mask);
    while (t->pairs[h] && t->pairs[h] != key) h = (h + 1) & t->pair_mask;
    if (!t->pairs[h]) {
        t->pairs[h] = key;
        t->pair_rank[h] = (int32_t)i;
    }
    return 0;
}

static int gguf_merges(es_tok *t, const es_gguf *g, gguf_ctx *c, const char *path, es_err *e)
{
    int64_t n = es_gguf_arr_count(g, "tokenizer.ggml.merges", e);
    if (n < 0) {
        es_fail(e, "%s: metadata 'tokenizer.ggml.merges' missing or not an array: a gpt2-model vocabulary "
                   "needs its merges", path);
        return -1;
    }
    uint64_t size = 2;
    while (size < (uint64_t)n * 2) size <<= 1;
    t->pairs = calloc(size, sizeof *t->pairs);
    t->pair_rank = malloc(size * sizeof *t->pair_rank);
    if (!t->pairs || !t->pair_rank) return es_fail(e, "%s: out of memory", path);
    t->pair_mask = size - 1;
    return es_gguf_arr_strings(g, "tokenizer.ggml.merges", gguf_merge, c, e);
}

/* tokenizer.ggml.pre of a gpt2-model file, with llama.cpp's defaults that follow from it. */
static int gguf_pre(es_tok *t, const es_gguf *g, const char *path, es_err *e)
{
    static const struct { const char *name; int pre; } known[] = {
        {"llama-bpe", PRE_LLAMA3}, {"llama3", PRE_LLAMA3}, {"llama-v3", PRE_LLAMA3},
        {"gpt-2", PRE_GPT2}, {"smollm", PRE_SMOLLM}};
    const char *name = NULL;
    if (es_gguf_find(g, "tokenizer.ggml.pre") && es_gguf_str(g, "tokenizer.ggml.pre", &name, e)) return -1;
    for (size_t k = 0; name && k < sizeof known / sizeof *known; k++)
        if (!strcmp(name, known[k].name)) {
            t->pre = known[k].pre;
            t->ignore_merges = t->add_bos = t->pre == PRE_LLAMA3; /* llama.cpp: llama3 sets both */
            return 0;
        }
    if (!name)
        return es_fail(e, "%s: metadata 'tokenizer.ggml.pre' missing: a gpt2-model vocabulary must name its "
                          "pre-tokenizer (known: llama-bpe, llama3, llama-v3, gpt-2, smollm)", path);
    return es_fail(e, "%s: metadata 'tokenizer.ggml.pre': unknown pre-tokenizer '%.64s' (known: llama-bpe, llama3, "
                      "llama-v3, gpt-2, smollm)", path, name);
}

/* A bool key; *v unchanged when absent. */
static int gguf_bool_opt(const es_gguf *g, const char *key, int *v, const char *path, es_err *e)
{
    const es_gguf_kv *kv = es_gguf_find(g, key);
    if (!kv) return 0;
    if (kv->type != ES_GGUF_BOOL) return es_fail(e, "%s: metadata '%s': expected a bool", path, key);
    *v = kv->i != 0;
    return 0;
}

int es_tok_load_gguf(es_tok **out, const char *path, es_err *e)
{
    *out = NULL;
    es_gguf g;
    if (es_gguf_open(&g, path, e)) return -1;
    es_tok *t = calloc(1, sizeof *t);
    double *types = NULL, *scores = NULL;
    int64_t n_types = 0, n_scores = 0, n_tok = 0, v;
    const char *model = NULL;
    int rc = -1;
    if (!t) { es_fail(e, "%s: out of memory", path); goto out; }
    t->bos = t->eos = -1;
    for (int i = 0; i < 256; i++) t->byte_tok[i] = -1;
    if (es_gguf_str(&g, "tokenizer.ggml.model", &model, e)) goto out;
    if (strcmp(model, "gpt2") && strcmp(model, "llama")) {
        es_fail(e, "%s: metadata 'tokenizer.ggml.model': unknown tokenizer model '%.64s' (supported: "
                   "llama (SentencePiece), gpt2 (byte-level BPE))", path, model);
        goto out;
    }
    t->spm = !strcmp(model, "llama");
    t->add_bos = t->spm; /* llama.cpp's defaults: SentencePiece adds BOS; byte-level BPE per pre-tokenizer */
    if (!t->spm && gguf_pre(t, &g, path, e)) goto out;
    if ((n_tok = es_gguf_arr_count(&g, "tokenizer.ggml.tokens", e)) < 0) goto out;
    if (es_gguf_find(&g, "tokenizer.ggml.token_type") &&
        es_gguf_arr_nums(&g, "tokenizer.ggml.token_type", &types, &n_types, e))
        goto out;
    if (t->spm) {
        if (es_gguf_arr_nums(&g, "tokenizer.ggml.scores", &scores, &n_scores, e)) goto out;
        if (n_scores != n_tok || n_types != n_tok) {
            es_fail(e, "%s: metadata 'tokenizer.ggml.scores' and 'tokenizer.ggml.token_type' must have one "
                       "entry per token (%lld), got %lld and %lld", path, (long long)n_tok,
                    (long long)n_scores, (long long)n_types);
            goto out;
        }
        t->scores = malloc((size_t)(n_tok ? n_tok : 1) * sizeof *t->scores);
        t->types = malloc((size_t)(n_tok ? n_tok : 1) * sizeof *t->types);
        if (!t->scores || !t->types) { es_fail(e, "%s: out of memory", path); goto out; }
        for (int64_t i = 0; i < n_tok; i++) {
            t->scores[i] = (float)scores[i];
            t->types[i] = (int32_t)types[i];
        }
        int64_t asp = 1;
        const es_gguf_kv *kv = es_gguf_find(&g, "tokenizer.ggml.add_space_prefix");
        if (kv && kv->type == ES_GGUF_BOOL) asp = kv->i;
        t->add_space_prefix = (int)asp;
    }
    if (es_gguf_i64_opt(&g, "tokenizer.ggml.bos_token_id", -1, n_tok - 1, -1, &v, e)) goto out;
    t->bos = (int32_t)v;
    if (es_gguf_i64_opt(&g, "tokenizer.ggml.eos_token_id", -1, n_tok - 1, -1, &v, e)) goto out;
    t->eos = (int32_t)v;
    int64_t eot, eom;
    if (es_gguf_i64_opt(&g, "tokenizer.ggml.eot_token_id", -1, n_tok - 1, -1, &eot, e) ||
        es_gguf_i64_opt(&g, "tokenizer.ggml.eom_token_id", -1, n_tok - 1, -1, &eom, e) ||
        gguf_bool_opt(&g, "tokenizer.ggml.add_bos_token", &t->add_bos, path, e) ||
        gguf_bool_opt(&g, "tokenizer.ggml.add_eos_token", &t->add_eos, path, e))
        goto out;
    gguf_ctx c = {t, path, e, types, n_types};
    if (es_gguf_arr_strings(&g, "tokenizer.ggml.tokens", t->spm ? gguf_spm_token : gguf_bpe_token, &c, e) ||
        build_table(t, path, e) || (!t->spm && gguf_merges(t, &g, &c, path, e)))
        goto out;
    if (build_eog(t, (int32_t)eot, (int32_t)eom)) { es_fail(e, "%s: out of memory", path); goto out; }
    if (t->n < n_tok && grow_ids(t, n_tok)) { es_fail(e, "%s: out of memory", path); goto out; } /* trailing
        special tokens and empty pieces keep their ids */
    if (t->spm) { /* bytes with no <0xXX> piece fall back to the unknown token, as SentencePiece does */
        int32_t unk = -1;
        for (int64_t i = 0; i < n_tok && unk < 0; i++)
            if (t->types[i] == 2) unk = (int32_t)i;
        for (int b = 0; b < 256; b++)
            if (t->byte_tok[b] < 0) t->byte_tok[b] = unk;
    }
    rc = 0;
out:
    free(types);
    free(scores);
    es_gguf_close(&g);
    if (rc) es_tok_free(t);
    else *out = t;
    return rc;
}

void es_tok_free(es_tok *t)
{
    if (!t) return;
    for (int64_t i = 0; i < t->n_sp; i++) free(t->sp[i].text);
    free(t->sp);
    free(t->eog);
    free(t->pairs);
    free(t->pair_rank);
    free(t->bytes);
    free(t->off);
    free(t->table);
    free(t->scores);
    free(t->types);
    free(t);
}

int64_t es_tok_vocab_size(const es_tok *t) { return t->n; }

/* ---- pre-tokenizer ---- */

static int in_ranges(uint32_t cp, const uint32_t (*r)[2], int n)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid - 1;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

enum { C_LETTER, C_NUMBER, C_SPACE, C_CRLF, C_OTHER };

static int klass(uint32_t cp)
{
    if (cp == '\r' || cp == '\n') return C_CRLF;
    /* Unicode's White_Space, as llama.cpp's unicode_set_whitespace (U+0085 in, U+FEFF out) */
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
        (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000)
        return C_SPACE;
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return C_LETTER;
        if (cp >= '0' && cp <= '9') return C_NUMBER;
        return C_OTHER;
    }
    if (in_ranges(cp, es_uc_letter, ES_UC_LETTER_N)) return C_LETTER;
    if (in_ranges(cp, es_uc_number, ES_UC_NUMBER_N)) return C_NUMBER;
    return C_OTHER;
}
#define IS_WS(k) ((k) == C_SPACE || (k) == C_CRLF)

/* Length in code points of the pre-token starting at i of cp[0..n). */
static int64_t pretoken(const uint32_t *cp, const int *k, int64_t i, int64_t n)
{
    /* 's 't 're 've 'm 'll 'd, any case */
    if (cp[i] == '\'' && i + 1 < n) {
        uint32_t a = cp[i + 1] | 0x20, b = i + 2 < n ? cp[i + 2] | 0x20 : 0;
        if (cp[i + 1] < 0x80 && (a == 's' || a == 't' || a == 'm' || a == 'd')) return 2;
        if (cp[i + 1] < 0x80 && i + 2 < n && cp[i + 2] < 0x80 &&
            ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')))
            return 3;
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    int64_t j = i;
    if (k[j] != C_LETTER && k[j] != C_CRLF && k[j] != C_NUMBER && j + 1 < n && k[j + 1] == C_LETTER) j++;
    if (k[j] == C_LETTER) {
        while (j < n && k[j] == C_LETTER) j++;
        return j - i;
    }
    /* \p{N}{1,3} */
    if (k[i] == C_NUMBER) {
        j = i;
        while (j < n && j - i < 3 && k[j] == C_NUMBER) j++;
        return j - i;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    j = i;
    if (cp[j] == ' ' && j + 1 < n && k[j + 1] == C_OTHER) j++;
    if (k[j] == C_OTHER) {
        while (j < n && k[j] == C_OTHER) j++;
        while (j < n && k[j] == C_CRLF) j++;
        return j - i;
    }
    /* whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+ */
    int64_t e = i, last_crlf = -1;
    while (e < n && IS_WS(k[e])) {
        if (k[e] == C_CRLF) last_crlf = e;
        e++;
    }
    if (last_crlf >= 0) return last_crlf + 1 - i;
    if (e == n || e - i < 2) return e - i;
    return e - 1 - i;
}

/* GPT-2's pattern (llama.cpp's unicode_regex_split_custom_gpt2): the length in code points of
 * the pre-token starting at i of cp[0..n). Contractions are lower case only; a letter, number or
 * other run takes one space before it; whitespace before a non-space leaves its last character. */
static int64_t pretoken_gpt2(const uint32_t *cp, const int *k, int64_t i, int64_t n)
{
    if (cp[i] == '\'' && i + 1 < n) {
        uint32_t a = cp[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
        uint32_t b = i + 2 < n ? cp[i + 2] : 0;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    int sp = cp[i] == ' ';
    int c = sp ? (i + 1 < n ? k[i + 1] : -1) : k[i];
    if (c == C_LETTER || c == C_NUMBER || c == C_OTHER) {
        int64_t j = i + sp;
        while (j < n && k[j] == c) j++;
        return j - i;
    }
    int64_t w = 0;
    while (i + w < n && IS_WS(k[i + w])) w++;
    if (w > 1 && i + w < n) return w - 1;
    return w > 0 ? w : 1;
}

/* ---- BPE ---- */

/* The rank of merging the part p[0..la) with p[la..la+lb): its place in tokenizer.ggml.merges
 * (GGUF), or the id of the merged token (tiktoken: ranks are merge order); -1: no merge. */
static int32_t pair_rank(const es_tok *t, const unsigned char *p, size_t la, size_t lb)
{
    if (!t->pair_mask) return lookup(t, p, la + lb);
    int32_t a = lookup(t, p, la), b = lookup(t, p + la, lb);
    if (a < 0 || b < 0) return -1;
    uint64_t key = (uint64_t)(a + 1) << 32 | (uint32_t)(b + 1), h = pair_slot(key, t->pair_mask);
    for (; t->pairs[h]; h = (h + 1) & t->pair_mask)
        if (t->pairs[h] == key) return t->pair_rank[h];
    return -1;
}

/* Long pieces: the same merges in O(n log n). Parts form a linked list;
 * a min-heap holds (rank, left part start) of adjacent pairs, so the lowest
 * rank, then the leftmost, merges first, as in the quadratic loop. */
typedef struct hpair { int32_t rank; uint32_t left; uint32_t right_len; } hpair;

static int hless(const hpair *a, const hpair *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->left < b->left;
}

static void hpush(hpair *h, size_t *n, hpair v)
{
    size_t i = (*n)++;
    h[i] = v;
    while (i > 0 && hless(&h[i], &h[(i - 1) / 2])) {
        hpair t = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static hpair hpop(hpair *h, size_t *n)
{
    hpair top = h[0];
    h[0] = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && hless(&h[l], &h[m])) m = l;
        if (r < *n && hless(&h[r], &h[m])) m = r;
        if (m == i) break;
        hpair t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
    return top;
}

static int64_t bpe_long(const es_tok *t, const unsigned char *p, size_t n, int32_t *out, int64_t cap, int64_t at)
{
    /* part i starts at byte i; len[i] its length (0: merged away); next/prev by start */
    uint32_t *len = malloc(n * sizeof *len), *next = malloc(n * sizeof *next), *prev = malloc(n * sizeof *prev);
    hpair *h = malloc(2 * n * sizeof *h);
    size_t hn = 0;
    int64_t count = 0;
    if (!len || !next || !prev || !h) goto out;
    for (size_t i = 0; i < n; i++) {
        len[i] = 1;
        next[i] = (uint32_t)(i + 1);
        prev[i] = (uint32_t)(i ? i - 1 : 0);
    }
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t r = pair_rank(t, p + i, 1, 1);
        if (r >= 0) hpush(h, &hn, (hpair){r, (uint32_t)i, 1});
    }
    while (hn > 0) {
        hpair q = hpop(h, &hn);
        uint32_t l = q.left, rgt = l + len[l];
        /* stale: the left part changed, or the right part is not the one paired */
        if (len[l] == 0 || rgt >= n || len[rgt] != q.right_len || pair_rank(t, p + l, len[l], len[rgt]) != q.rank)
            continue;
        len[l] += len[rgt];
        len[rgt] = 0;
        next[l] = next[rgt];
        if (next[l] < n) prev[next[l]] = l;
        if (next[l] < n) {
            int32_t r = pair_rank(t, p + l, len[l], len[next[l]]);
            if (r >= 0) hpush(h, &hn, (hpair){r, l, len[next[l]]});
        }
        if (l > 0) {
            uint32_t pl = prev[l];
            int32_t r = pair_rank(t, p + pl, len[pl], len[l]);
            if (r >= 0) hpush(h, &hn, (hpair){r, pl, len[l]});
        }
    }
    for (size_t i = 0; i < n; i += len[i]) {
        if (out && at + count < cap) out[at + count] = lookup(t, p + i, len[i]);
        count++;
    }
out:
    free(len);
    free(next);
    free(prev);
    free(h);
    return count;
}

static int64_t bpe(const es_tok *t, const unsigned char *p, size_t n, int32_t *out, int64_t cap, int64_t at)
{
    int32_t whole = t->ignore_merges ? lookup(t, p, n) : -1;
    if (whole >= 0) {
        if (out && at < cap) out[at] = whole;
        return 1;
    }
    if (n > 128) return bpe_long(t, p, n, out, cap, at);
    /* parts: start offsets; part i spans [start[i], start[i+1]) */
    size_t start[130];
    size_t parts = n;
    for (size_t i = 0; i <= n; i++) start[i] = i;
    for (;;) {
        int32_t best = -1;
        size_t where = 0;
        for (size_t i = 0; i + 1 < parts; i++) {
            int32_t r = pair_rank(t, p + start[i], start[i + 1] - start[i], start[i + 2] - start[i + 1]);
            if (r >= 0 && (best < 0 || r < best)) { best = r; where = i; }
        }
        if (best < 0) break;
        memmove(&start[where + 1], &start[where + 2], (parts - where - 1) * sizeof *start);
        parts--;
    }
    int64_t count = 0;
    for (size_t i = 0; i < parts; i++) {
        if (out && at + count < cap) out[at + count] = lookup(t, p + start[i], start[i + 1] - start[i]);
        count++;
    }
    return count;
}

/* ---- SentencePiece ---- */

/* Symbols merge pairwise as llama.cpp's SentencePiece tokenizer does: the
 * adjacent pair whose concatenation is a token with the highest score
 * first, the leftmost on ties (tests/test_tok.c 4.x holds it to llama.cpp on
 * a vocabulary whose scores tie); a pair made stale by an earlier merge is
 * skipped. Symbols left that are not tokens become byte tokens. */
typedef struct spm_sym { int64_t prev, next, at, n; } spm_sym;
typedef struct spm_big { int64_t left, right, size; float score; } spm_big;

static int big_before(const spm_big *a, const spm_big *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void big_push(spm_big *h, size_t *n, spm_big v)
{
    size_t i = (*n)++;
    h[i] = v;
    while (i > 0 && big_before(&h[i], &h[(i - 1) / 2])) {
        spm_big tmp = h[i]; h[i] = h[(i - 1) / 2]; h[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
}

static spm_big big_pop(spm_big *h, size_t *n)
{
    spm_big top = h[0];
    h[0] = h[--*n];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && big_before(&h[l], &h[m])) m = l;
        if (r < *n && big_before(&h[r], &h[m])) m = r;
        if (m == i) break;
        spm_big tmp = h[i]; h[i] = h[m]; h[m] = tmp;
        i = m;
    }
    return top;
}

static void spm_try(const es_tok *t, const unsigned char *p, const spm_sym *sy, int64_t l, int64_t r,
                    spm_big *h, size_t *nh)
{
    if (l < 0 || r < 0) return;
    int32_t id = lookup(t, p + sy[l].at, (size_t)(sy[l].n + sy[r].n));
    if (id < 0) return;
    big_push(h, nh, (spm_big){l, r, sy[l].n + sy[r].n, t->scores[id]});
}

static int64_t spm_encode(const es_tok *t, const char *text, size_t n, int32_t *out, int64_t cap, int space)
{
    if (n == 0) return 0;
    /* escape: an optional leading space, then every ' ' as U+2581 (3 bytes) */
    size_t len = 0;
    unsigned char *p = malloc(3 * (n + 1));
    spm_sym *sy = malloc((n + 4) * sizeof *sy);
    spm_big *h = malloc(3 * (n + 4) * sizeof *h);
    int64_t count = -1, m = 0;
    size_t nh = 0;
    if (!p || !sy || !h) goto out;
    for (size_t i = 0; i < n + (size_t)(space != 0); i++) {
        char c = space ? (i == 0 ? ' ' : text[i - 1]) : text[i];
        if (c == ' ') { p[len++] = 0xE2; p[len++] = 0x96; p[len++] = 0x81; }
        else p[len++] = (unsigned char)c;
    }
    /* one symbol per UTF-8 character (a stray byte is a character of its own) */
    for (size_t i = 0; i < len; m++) {
        static const int lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
        size_t k = (size_t)lens[p[i] >> 4];
        if (k > len - i) k = len - i;
        sy[m] = (spm_sym){m - 1, -1, (int64_t)i, (int64_t)k};
        if (m) sy[m - 1].next = m;
        i += k;
    }
    for (int64_t i = 1; i < m; i++) spm_try(t, p, sy, i - 1, i, h, &nh);
    while (nh) {
        spm_big b = big_pop(h, &nh);
        spm_sym *l = &sy[b.left], *r = &sy[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sy[r->next].prev = b.left;
        spm_try(t, p, sy, l->prev, b.left, h, &nh);
        spm_try(t, p, sy, b.left, l->next, h, &nh);
    }
    count = 0;
    for (int64_t i = 0; i >= 0 && m > 0; i = sy[i].next) {
        int32_t id = lookup(t, p + sy[i].at, (size_t)sy[i].n);
        if (id >= 0) {
            if (out && count < cap) out[count] = id;
            count++;
            continue;
        }
        for (int64_t j = 0; j < sy[i].n; j++) {
            if (out && count < cap) out[count] = t->byte_tok[p[sy[i].at + j]];
            count++;
        }
    }
out:
    free(p);
    free(sy);
    free(h);
    return count < 0 ? 0 : count;
}

int64_t es_tok_encode_more(const es_tok *t, const char *text, size_t n, int32_t *out, int64_t cap)
{
    return es_tok_encode_flags(t, text, n, ES_TOK_CONTINUE, out, cap);
}

int32_t es_tok_bos(const es_tok *t) { return t->bos; }
int32_t es_tok_eos(const es_tok *t) { return t->eos; }

size_t es_tok_piece(const es_tok *t, int32_t id, char *out, size_t cap)
{
    if (id < 0 || id >= t->n || !t->off[id]) return 0;
    const unsigned char *p = t->bytes + (t->off[id] >> 16);
    size_t len = t->off[id] & 0xFFFF, k = 0;
    if (!t->spm) {
        for (size_t i = 0; i < len; i++)
            if (k < cap) out[k++] = (char)p[i];
        return k;
    }
    if (t->types[id] == 6) { /* <0xXX>, checked at load */
        int v = byte_piece((const char *)p, len);
        if (cap && v >= 0) out[k++] = (char)v;
        return k;
    }
    if (t->types[id] != 1 && t->types[id] != 4) return 0; /* control, unknown, unused: no text */
    for (size_t i = 0; i < len;) {
        if (i + 3 <= len && p[i] == 0xE2 && p[i + 1] == 0x96 && p[i + 2] == 0x81) {
            if (k < cap) out[k++] = ' ';
            i += 3;
        } else {
            if (k < cap) out[k++] = (char)p[i];
            i++;
        }
    }
    return k;
}

/* Byte-level BPE of text[0..n) (no special tokens): pre-tokenize, then merge each piece; ids go
 * to out[at..cap). */
static int64_t bpe_encode(const es_tok *t, const char *text, size_t n, int32_t *out, int64_t cap, int64_t at)
{
    uint32_t cps_stack[512];
    int k_stack[512];
    int64_t bo_stack[513];
    uint32_t *cp = n < 512 ? cps_stack : malloc(n * sizeof *cp);
    int *k = n < 512 ? k_stack : malloc(n * sizeof *k);
    int64_t *bo = n < 512 ? bo_stack : malloc((n + 1) * sizeof *bo); /* byte offset of each code point */
    int64_t count = 0;
    if (!cp || !k || !bo) goto out;
    int64_t m = 0;
    for (size_t i = 0; i < n;) {
        bo[m] = (int64_t)i;
        i += (size_t)utf8_decode((const unsigned char *)text + i, n - i, &cp[m]);
        k[m] = klass(cp[m]);
        m++;
    }
    bo[m] = (int64_t)n;
    for (int64_t i = 0; i < m;) {
        /* SmolLM: every number a piece of its own first; GPT-2's pattern inside the rest */
        int64_t end = m;
        if (t->pre == PRE_SMOLLM) {
            end = i + 1;
            if (k[i] != C_NUMBER)
                while (end < m && k[end] != C_NUMBER) end++;
        }
        int64_t len = t->pre == PRE_LLAMA3 ? pretoken(cp, k, i, end) : pretoken_gpt2(cp, k, i, end);
        if (len < 1) len = 1;
        count += bpe(t, (const unsigned char *)text + bo[i], (size_t)(bo[i + len] - bo[i]), out, cap, at + count);
        i += len;
    }
out:
    if (cp != cps_stack) free(cp);
    if (k != k_stack) free(k);
    if (bo != bo_stack) free(bo);
    return count;
}

/* A part of the text: bytes [off, off + len), or the special token id (>= 0). */
typedef struct frag { size_t off, len; int32_t id; } frag;

/* llama.cpp's tokenizer_st_partition: for each special token, the longest first, every text part
 * is split at each occurrence of its text. Returns the number of parts in *out (malloc'd), -1
 * when out of memory. */
static int64_t partition(const es_tok *t, const char *text, size_t n, int parse, frag **out)
{
    frag *a = malloc((2 * n + 2) * sizeof *a), *b = malloc((2 * n + 2) * sizeof *b);
    int64_t na = 0;
    if (!a || !b) { free(a); free(b); return -1; }
    if (n) a[na++] = (frag){0, n, -1};
    for (int64_t s = 0; s < t->n_sp && na; s++) {
        const struct es_tok_sp *sp = &t->sp[s];
        if (sp->kind != 4 && !parse) continue; /* user-defined tokens split always, as llama.cpp */
        int64_t nb = 0;
        for (int64_t f = 0; f < na; f++) {
            size_t at = a[f].off, end = a[f].off + a[f].len;
            if (a[f].id >= 0) { b[nb++] = a[f]; continue; }
            while (end - at >= sp->len) {
                const char *hit = memchr(text + at, sp->text[0], end - at - sp->len + 1);
                while (hit && memcmp(hit, sp->text, sp->len)) {
                    size_t from = (size_t)(hit - text) + 1;
                    hit = from + sp->len <= end ? memchr(text + from, sp->text[0], end - from - sp->len + 1) : NULL;
                }
                if (!hit) break;
                size_t h = (size_t)(hit - text);
                if (h > at) b[nb++] = (frag){at, h - at, -1};
                b[nb++] = (frag){h, sp->len, sp->id};
                at = h + sp->len;
            }
            if (at < end) b[nb++] = (frag){at, end - at, -1};
        }
        frag *tmp = a; a = b; b = tmp;
        na = nb;
    }
    free(b);
    *out = a;
    return na;
}

int64_t es_tok_encode_flags(const es_tok *t, const char *text, size_t n, unsigned flags, int32_t *out, int64_t cap)
{
    int64_t count = 0;
    frag one = {0, n, -1}, *f = &one;
    int64_t nf = n > 0;
    if (t->n_sp && (nf = partition(t, text, n, (flags & ES_TOK_PARSE_SPECIAL) != 0, &f)) < 0) {
        f = &one; /* out of memory for the parts: the text as one part */
        nf = 1;
    }
    if ((flags & ES_TOK_ADD_SPECIAL) && es_tok_add_bos(t)) {
        if (out && count < cap) out[count] = t->bos;
        count++;
    }
    int space = !(flags & ES_TOK_CONTINUE); /* SentencePiece: a space first, and after each special token */
    for (int64_t i = 0; i < nf; i++) {
        if (f[i].id >= 0) {
            if (out && count < cap) out[count] = f[i].id;
            count++;
            space = 1;
            continue;
        }
        if (t->spm) {
            int32_t *o = out && count < cap ? out + count : NULL;
            count += spm_encode(t, text + f[i].off, f[i].len, o, o ? cap - count : 0, t->add_space_prefix && space);
        } else {
            count += bpe_encode(t, text + f[i].off, f[i].len, out, cap, count);
        }
        space = 0;
    }
    if ((flags & ES_TOK_ADD_SPECIAL) && es_tok_add_eos(t)) {
        if (out && count < cap) out[count] = t->eos;
        count++;
    }
    if (f != &one) free(f);
    return count;
}

int64_t es_tok_encode(const es_tok *t, const char *text, size_t n, int32_t *out, int64_t cap)
{
    return es_tok_encode_flags(t, text, n, 0, out, cap);
}

int es_tok_add_bos(const es_tok *t) { return t->add_bos && t->bos >= 0; }
int es_tok_add_eos(const es_tok *t) { return t->add_eos && t->eos >= 0; }

/* The special token (control, user-defined, unknown; Llama 3's by id) whose text is s[0..n), else -1. */
static int32_t sp_find(const es_tok *t, const char *s, size_t n)
{
    for (int64_t i = 0; i < t->n_sp; i++)
        if (t->sp[i].len == n && !memcmp(t->sp[i].text, s, n)) return t->sp[i].id;
    return -1;
}

int32_t es_tok_special_id(const es_tok *t, const char *name) { return sp_find(t, name, strlen(name)); }

int es_tok_is_eog(const es_tok *t, int32_t id)
{
    for (int64_t i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return 1;
    return 0;
}

const char *es_tok_pre(const es_tok *t) { return t->spm ? "spm" : pre_names[t->pre]; }

int32_t es_tok_find_piece(const es_tok *t, const char *s, size_t n)
{
    int32_t id = sp_find(t, s, n);
    if (id >= 0) return id;
    if (!t->spm || !t->table || n == 0 || n > 65535) return -1;
    return lookup(t, (const unsigned char *)s, n); /* SentencePiece: every piece */
}
