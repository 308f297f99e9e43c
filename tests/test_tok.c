/* test_tok: the Llama 3 tokenizer against fixtures made by the reference
 * JavaScript tokenizer (tests/data/tokenizer-fixtures.json, scripts/fetch-vocab).
 *   1.x  every fixture string encodes to exactly its ids
 *   2.x  the vocabulary file: bad lines are errors naming the line
 *   3.x  the same vocabulary as a GGUF file's tokenizer.ggml.tokens (GPT-2
 *        byte-to-character form, with a special token) encodes the same
 *   4.x  SentencePiece merges of equal score: a vocabulary written here whose
 *        merges tie, strings whose ids depend on the tie-break, ids derived by
 *        hand (the leftmost pair of equal score first, as llama.cpp), and the
 *        ids llama.cpp gives for the same vocabulary (TIES_FIXTURES, from
 *        scripts/llama-fixtures)
 * Run as `test_tok VOCAB FIXTURES`; exits 77 (skipped) when VOCAB is absent.
 * Run as `test_tok --spm-ties TIES_FIXTURES` for 4.x alone (needs no download). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "es_tok.h"

#include "test_check.h"

static void put_le(FILE *f, uint64_t v, int n) { for (int i = 0; i < n; i++) fputc((int)(v >> 8 * i & 0xFF), f); }
static void put_str(FILE *f, const char *s) { put_le(f, strlen(s), 8); fputs(s, f); }

/* GPT-2's byte -> character (code point) map */
static uint32_t gpt2_char(int b)
{
    static uint32_t map[256];
    static int ready;
    if (!ready) {
        int n = 0;
        for (int x = 0; x < 256; x++) {
            int printable = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
            map[x] = printable ? (uint32_t)x : (uint32_t)(256 + n++);
        }
        ready = 1;
    }
    return map[b];
}

/* ---- a byte-level BPE GGUF from a tiktoken file (3.x, 5.x) ---- */

/* The tiktoken vocabulary: ranks' bytes, and a hash index of them (the test's own, so that the
 * merges it derives do not come from the code under test). */
typedef struct tvocab { unsigned char **b; size_t *len; int n; int32_t *idx; uint64_t mask; } tvocab;

static uint64_t tv_hash(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static int tv_find(const tvocab *v, const unsigned char *p, size_t n)
{
    for (uint64_t h = tv_hash(p, n) & v->mask; v->idx[h] >= 0; h = (h + 1) & v->mask)
        if (v->len[v->idx[h]] == n && !memcmp(v->b[v->idx[h]], p, n)) return v->idx[h];
    return -1;
}

static int tv_load(tvocab *v, const char *path)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    FILE *in = fopen(path, "r");
    if (!in) return -1;
    char line[2048];
    int cap = 1 << 17;
    v->b = calloc((size_t)cap, sizeof *v->b);
    v->len = calloc((size_t)cap, sizeof *v->len);
    v->n = 0;
    while (fgets(line, sizeof line, in) && v->n < cap) {
        unsigned char bytes[1024];
        size_t nb = 0;
        unsigned acc = 0;
        int bits = 0;
        for (char *p = line; *p && *p != ' ' && *p != '='; p++) {
            acc = acc << 6 | (unsigned)(strchr(b64, *p) - b64);
            bits += 6;
            if (bits >= 8) { bits -= 8; bytes[nb++] = (unsigned char)(acc >> bits); acc &= (1u << bits) - 1; }
        }
        int rank = atoi(strchr(line, ' ') + 1);
        if (rank != v->n) { fclose(in); return -1; } /* the file lists ranks in order */
        v->b[v->n] = malloc(nb);
        memcpy(v->b[v->n], bytes, nb);
        v->len[v->n++] = nb;
    }
    fclose(in);
    v->mask = (1u << 18) - 1;
    v->idx = malloc((v->mask + 1) * sizeof *v->idx);
    memset(v->idx, 0xFF, (v->mask + 1) * sizeof *v->idx);
    for (int i = 0; i < v->n; i++) {
        uint64_t h = tv_hash(v->b[i], v->len[i]) & v->mask;
        while (v->idx[h] >= 0) h = (h + 1) & v->mask;
        v->idx[h] = i;
    }
    return 0;
}

static void tv_free(tvocab *v)
{
    for (int i = 0; i < v->n; i++) free(v->b[i]);
    free(v->b);
    free(v->len);
    free(v->idx);
}

/* bytes in GPT-2 form (each byte one printable character, UTF-8) into out; returns the length */
static size_t gpt2_form(const unsigned char *b, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = gpt2_char(b[i]);
        if (c < 0x80) out[k++] = (char)c;
        else { out[k++] = (char)(0xC0 | c >> 6); out[k++] = (char)(0x80 | (c & 0x3F)); }
    }
    out[k] = 0;
    return k;
}

/* One merge per split of a rank into two ranks, ordered by the rank, then the parts' ranks: how
 * Hugging Face's TikTokenConverter turns tiktoken ranks into merges (scripts/lib/bpe-fixtures.mjs
 * checks that this gives llama3-tokenizer-js's 280,147 merges exactly). Writes them (f != NULL)
 * and returns how many there are. */
static int64_t derive_merges(const tvocab *v, FILE *f)
{
    int64_t count = 0;
    for (int r = 0; r < v->n; r++) {
        int local[1024][2], nl = 0;
        for (size_t i = 1; i < v->len[r] && nl < 1024; i++) {
            int a = tv_find(v, v->b[r], i), b = tv_find(v, v->b[r] + i, v->len[r] - i);
            if (a >= 0 && b >= 0) { local[nl][0] = a; local[nl][1] = b; nl++; }
        }
        for (int i = 1; i < nl; i++) /* insertion sort by (left rank, right rank) */
            for (int j = i; j > 0 && (local[j][0] < local[j - 1][0] || (local[j][0] == local[j - 1][0] && local[j][1] < local[j - 1][1])); j--) {
                int t0 = local[j][0], t1 = local[j][1];
                local[j][0] = local[j - 1][0]; local[j][1] = local[j - 1][1];
                local[j - 1][0] = t0; local[j - 1][1] = t1;
            }
        for (int i = 0; i < nl && f; i++) {
            char m[4200];
            size_t k = gpt2_form(v->b[local[i][0]], v->len[local[i][0]], m);
            m[k++] = ' ';
            gpt2_form(v->b[local[i][1]], v->len[local[i][1]], m + k);
            put_str(f, m);
        }
        count += nl;
    }
    return count;
}

/* Llama 3.1's special token i (id 128000 + i), by Meta's list (the test's own copy) */
static void llama3_special(int i, char *out, size_t cap)
{
    static const char *const named[11] = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                                          "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                                          "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
                                          "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"};
    if (i < 11) snprintf(out, cap, "%s", named[i]);
    else snprintf(out, cap, "<|reserved_special_token_%d|>", i - 8);
}

/* A GGUF file holding the tiktoken vocabulary as a gpt2-model tokenizer, as
 * scripts/lib/bpe-fixtures.mjs writes it for llama.cpp: the ranks in GPT-2 form (type 1), the 256
 * special tokens (type 3), merges, pre-tokenizer `pre`, BOS 128000, EOS eos, add_bos_token
 * add_bos (-1: absent); chatml: 128002/128003 are <|im_start|>/<|im_end|>, 128005 is
 * <tool_call>, user-defined (4), and 128012 is <|im_start|>tool. */
static int write_bpe_gguf(const tvocab *v, const char *out, const char *pre, int eos, int add_bos, int chatml)
{
    FILE *f = fopen(out, "wb");
    if (!f) return -1;
    int n = v->n + 256;
    fwrite("GGUF", 1, 4, f);
    put_le(f, 3, 4);
    put_le(f, 0, 8);
    put_le(f, 7 + (add_bos >= 0), 8);
    put_str(f, "tokenizer.ggml.model"); put_le(f, 8, 4); put_str(f, "gpt2");
    put_str(f, "tokenizer.ggml.pre"); put_le(f, 8, 4); put_str(f, pre);
    put_str(f, "tokenizer.ggml.tokens"); put_le(f, 9, 4); put_le(f, 8, 4); put_le(f, (uint64_t)n, 8);
    char buf[4200];
    for (int i = 0; i < v->n; i++) {
        gpt2_form(v->b[i], v->len[i], buf);
        put_str(f, buf);
    }
    for (int i = 0; i < 256; i++) {
        llama3_special(i, buf, sizeof buf);
        if (chatml && i == 2) snprintf(buf, sizeof buf, "<|im_start|>");
        if (chatml && i == 3) snprintf(buf, sizeof buf, "<|im_end|>");
        if (chatml && i == 5) snprintf(buf, sizeof buf, "<tool_call>");
        if (chatml && i == 12) snprintf(buf, sizeof buf, "<|im_start|>tool");
        put_str(f, buf);
    }
    put_str(f, "tokenizer.ggml.token_type"); put_le(f, 9, 4); put_le(f, 5, 4); put_le(f, (uint64_t)n, 8);
    for (int i = 0; i < n; i++) put_le(f, i < v->n ? 1 : chatml && i == v->n + 5 ? 4 : 3, 4);
    put_str(f, "tokenizer.ggml.merges"); put_le(f, 9, 4); put_le(f, 8, 4); put_le(f, (uint64_t)derive_merges(v, NULL), 8);
    derive_merges(v, f);
    put_str(f, "tokenizer.ggml.bos_token_id"); put_le(f, 4, 4); put_le(f, 128000, 4);
    put_str(f, "tokenizer.ggml.eos_token_id"); put_le(f, 4, 4); put_le(f, (uint64_t)eos, 4);
    if (add_bos >= 0) { put_str(f, "tokenizer.ggml.add_bos_token"); put_le(f, 7, 4); put_le(f, (uint64_t)add_bos, 1); }
    return fclose(f);
}

/* ---- 4.x SentencePiece ties ----
 * The vocabulary: 0 <unk> (type 2), 1 <s>, 2 </s> (type 3), 3 + b the byte token <0xBB> (type 6),
 * then these pieces (type 1) from id 259 on. "_" below stands for U+2581, the escaped space. */
enum { TIE_SP = 259, TIE_A, TIE_B, TIE_C, TIE_D, TIE_AB, TIE_BC, TIE_CD, TIE_ABC, TIE_SP_A, TIE_AA, TIE_DA, TIE_N };
static const char *const tie_pieces[] = {"\xe2\x96\x81", "a", "b", "c", "d", "ab", "bc", "cd", "abc",
                                         "\xe2\x96\x81" "a", "aa", "da"};
static const float tie_scores[] = {-10, -10, -10, -10, -10, -5, -5, -5, -3, -5, -5, -4};
#define TIE_BYTE(b) (3 + (b))

/* A GGUF file with that vocabulary's tokenizer metadata only. */
static int write_tie_gguf(const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    const int n = TIE_N;
    char piece[8];
    fwrite("GGUF", 1, 4, f);
    put_le(f, 3, 4);
    put_le(f, 0, 8); /* tensors */
    put_le(f, 6, 8); /* metadata entries */
    put_str(f, "tokenizer.ggml.model"); put_le(f, 8, 4); put_str(f, "llama");
    put_str(f, "tokenizer.ggml.tokens"); put_le(f, 9, 4); put_le(f, 8, 4); put_le(f, (uint64_t)n, 8);
    put_str(f, "<unk>"); put_str(f, "<s>"); put_str(f, "</s>");
    for (int b = 0; b < 256; b++) { snprintf(piece, sizeof piece, "<0x%02X>", b); put_str(f, piece); }
    for (int i = TIE_SP; i < n; i++) put_str(f, tie_pieces[i - TIE_SP]);
    put_str(f, "tokenizer.ggml.scores"); put_le(f, 9, 4); put_le(f, 6, 4); put_le(f, (uint64_t)n, 8);
    for (int i = 0; i < n; i++) {
        float v = i < TIE_SP ? 0.0f : tie_scores[i - TIE_SP];
        uint32_t u;
        memcpy(&u, &v, sizeof u);
        put_le(f, u, 4);
    }
    put_str(f, "tokenizer.ggml.token_type"); put_le(f, 9, 4); put_le(f, 5, 4); put_le(f, (uint64_t)n, 8);
    for (int i = 0; i < n; i++) put_le(f, i == 0 ? 2 : i < 3 ? 3 : i < TIE_SP ? 6 : 1, 4);
    put_str(f, "tokenizer.ggml.bos_token_id"); put_le(f, 4, 4); put_le(f, 1, 4);
    put_str(f, "tokenizer.ggml.eos_token_id"); put_le(f, 4, 4); put_le(f, 2, 4);
    return fclose(f);
}

/* The strings, each with its ids derived by hand. How SentencePiece merges (llama.cpp's
 * llm_tokenizer_spm): the text gets "_" before it (es_tok_encode; not es_tok_encode_more) and
 * every space becomes "_"; each character is a symbol; every adjacent pair whose concatenation
 * is a piece is queued with that piece's score; the queue gives the highest score first and, of
 * equal scores, the pair whose left symbol comes first; a popped pair whose symbols have changed
 * since it was queued (its bytes no longer add up) is dropped; a merge queues the new symbol
 * with its neighbours. Pairs are written (left index, right index) over the symbols as first
 * split. "rightmost:" gives what the rightmost-first tie-break would give instead. */
static const struct { const char *text; int more; int n; int32_t ids[8]; } tie_cases[] = {
    /* _ a b c: pairs (0,1) _a -5, (1,2) ab -5, (2,3) bc -5, a three-way tie.
     * (0,1) -> [_a b c]; (0,2) "_ab" is no piece. (1,2) is stale (a merged away). (2,3) -> [_a bc];
     * "_abc" is no piece. rightmost: (2,3) -> [_ a bc], queues (1,2) "abc" -3, which now comes
     * first -> [_ abc]; (0,1) is stale: [_, abc]. */
    {"abc", 0, 2, {TIE_SP_A, TIE_BC}},
    /* _ b c d: "_b" is no piece; (1,2) bc -5, (2,3) cd -5. (1,2) -> [_ bc d]; "_bc", "bcd" are
     * no pieces; (2,3) stale. rightmost: (2,3) -> [_ b cd]: [_, b, cd]. */
    {"bcd", 0, 3, {TIE_SP, TIE_BC, TIE_D}},
    /* _ a b c d: (0,1) _a, (1,2) ab, (2,3) bc, (3,4) cd, all -5. (0,1) -> [_a b c d]; (1,2)
     * stale; (2,3) -> [_a bc d] ("_abc", "bcd" are no pieces); (3,4) stale.
     * rightmost: (3,4) -> [_ a b cd]; (2,3) stale; (1,2) -> [_ ab cd]; (0,1) stale: [_, ab, cd]. */
    {"abcd", 0, 3, {TIE_SP_A, TIE_BC, TIE_D}},
    /* _ a a a b: (0,1) _a, (1,2) aa, (2,3) aa, (3,4) ab, all -5. (0,1) -> [_a a a b]; (1,2)
     * stale; (2,3) -> [_a aa b] ("_aaa", "aab" are no pieces); (3,4) stale.
     * rightmost: (3,4) -> [_ a a ab]; (2,3) stale; (1,2) -> [_ aa ab]: [_, aa, ab]. */
    {"aaab", 0, 3, {TIE_SP_A, TIE_AA, TIE_B}},
    /* _ a b _ c d: (0,1) _a, (1,2) ab, (4,5) cd, all -5 ("b_", "_c" are no pieces). (0,1) ->
     * [_a b _ c d]; (1,2) stale; (4,5) -> [_a b _ cd]. rightmost: (4,5), then (1,2) -> [_ ab _ cd]. */
    {"ab cd", 0, 4, {TIE_SP_A, TIE_B, TIE_SP, TIE_CD}},
    /* _ a b x: (0,1) _a, (1,2) ab, -5 ("bx" is no piece). (0,1) -> [_a b x]; (1,2) stale. x is
     * no piece: its byte, 0x78. rightmost: [_, ab, <0x78>]. */
    {"abx", 0, 3, {TIE_SP_A, TIE_B, TIE_BYTE(0x78)}},
    /* no _ (es_tok_encode_more): b c d: (0,1) bc, (1,2) cd, -5. (0,1) -> [bc d]; (1,2) stale.
     * rightmost: [b, cd]. */
    {"bcd", 1, 2, {TIE_BC, TIE_D}},
    /* ties that do not overlap give the same either way: _ b c a b: (1,2) bc, (3,4) ab, -5
     * ("_b", "ca" are no pieces): [_, bc, ab]. */
    {"bcab", 0, 3, {TIE_SP, TIE_BC, TIE_AB}},
    /* score before position: _ c d a: (1,2) cd -5, (2,3) da -4 -> da first -> [_ c da]; (1,2)
     * stale ("cda" is no piece): [_, c, da] either way. */
    {"cda", 0, 3, {TIE_SP, TIE_C, TIE_DA}},
};

static int same_ids(const int32_t *a, int64_t na, const cJSON *ids)
{
    if (na != cJSON_GetArraySize(ids)) return 0;
    for (int64_t i = 0; i < na; i++)
        if (a[i] != (int32_t)cJSON_GetArrayItem(ids, (int)i)->valuedouble) return 0;
    return 1;
}

static char *slurp(const char *path);

/* 4.x: hand-derived ids, then llama.cpp's ids for the same vocabulary (fixtures). */
static void test_spm_ties(const char *fixtures)
{
    es_err e;
    es_tok *t = NULL;
    char path[] = "/tmp/test_tok_ties_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    CHECK(fd >= 0 && write_tie_gguf(path) == 0, "4.1 writing %s", path);
    CHECK(es_tok_load_gguf(&t, path, &e) == 0, "4.1 load: %s", e.msg);
    remove(path);
    if (!t) return;
    CHECK(es_tok_vocab_size(t) == TIE_N, "4.1 vocabulary of %lld", (long long)es_tok_vocab_size(t));
    for (size_t k = 0; k < sizeof tie_cases / sizeof *tie_cases; k++) {
        const char *s = tie_cases[k].text;
        int32_t got[16];
        int64_t n = tie_cases[k].more ? es_tok_encode_more(t, s, strlen(s), got, 16) : es_tok_encode(t, s, strlen(s), got, 16);
        int ok = n == tie_cases[k].n && !memcmp(got, tie_cases[k].ids, (size_t)n * sizeof *got);
        char have[128] = "", want[128] = "";
        for (int64_t i = 0, hl = 0; i < n && i < 16; i++) hl += snprintf(have + hl, sizeof have - (size_t)hl, " %d", got[i]);
        for (int i = 0, wl = 0; i < tie_cases[k].n; i++) wl += snprintf(want + wl, sizeof want - (size_t)wl, " %d", tie_cases[k].ids[i]);
        CHECK(ok, "4.2 \"%s\"%s: ids%s, derived by hand%s", s, tie_cases[k].more ? " (continued)" : "", have, want);
    }
    /* 4.3 llama.cpp on the same vocabulary: the fixture's pieces and scores are this file's, its
     * ids are the hand-derived ones where a string is in both, and es_tok gives them all */
    char *json = slurp(fixtures);
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "vocab");
    const cJSON *pieces = cJSON_GetObjectItemCaseSensitive(v, "pieces"), *scores = cJSON_GetObjectItemCaseSensitive(v, "scores");
    int same_vocab = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(v, "pieces_from")) == TIE_SP &&
                     cJSON_GetArraySize(pieces) == TIE_N - TIE_SP && cJSON_GetArraySize(scores) == TIE_N - TIE_SP;
    for (int i = 0; same_vocab && i < TIE_N - TIE_SP; i++) {
        const char *p = cJSON_GetStringValue(cJSON_GetArrayItem(pieces, i));
        same_vocab = p && !strcmp(p, tie_pieces[i]) && cJSON_GetArrayItem(scores, i)->valuedouble == tie_scores[i];
    }
    CHECK(root && same_vocab, "4.3 %s: no fixtures, or their vocabulary is not this test's", fixtures);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "tokenize"), *c;
    int matched = 0;
    CHECK(cJSON_GetArraySize(cases) >= 8, "4.3 %s: %d strings", fixtures, cJSON_GetArraySize(cases));
    cJSON_ArrayForEach(c, cases) {
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "text"));
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(c, "ids");
        if (!s) continue;
        int32_t got[64];
        int64_t n = es_tok_encode(t, s, strlen(s), got, 64);
        CHECK(n <= 64 && same_ids(got, n, ids), "4.3 \"%s\": %lld ids, llama.cpp's differ", s, (long long)n);
        for (size_t k = 0; k < sizeof tie_cases / sizeof *tie_cases; k++)
            if (!tie_cases[k].more && !strcmp(tie_cases[k].text, s)) {
                matched++;
                CHECK(same_ids(tie_cases[k].ids, tie_cases[k].n, ids), "4.3 \"%s\": llama.cpp's ids are not the hand-derived ones", s);
            }
    }
    CHECK(matched == (int)(sizeof tie_cases / sizeof *tie_cases) - 1, "4.3 %d of the hand-derived strings in the fixtures", matched);
    /* 4.4 control and unknown tokens written in the text, special-token parsing on: llama.cpp's ids
     * (a space goes before the text after each special token); off, they are text */
    const cJSON *special = cJSON_GetObjectItemCaseSensitive(root, "tokenize_special");
    CHECK(cJSON_GetArraySize(special) >= 8, "4.4 %s: %d strings with special tokens", fixtures, cJSON_GetArraySize(special));
    cJSON_ArrayForEach(c, special) {
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "text"));
        int32_t got[64];
        int64_t n = s ? es_tok_encode_flags(t, s, strlen(s), ES_TOK_PARSE_SPECIAL, got, 64) : -1;
        CHECK(n <= 64 && same_ids(got, n, cJSON_GetObjectItemCaseSensitive(c, "ids")), "4.4 \"%s\": %lld ids, llama.cpp's differ",
              s, (long long)n);
    }
    int32_t plain[16];
    int64_t np = es_tok_encode(t, "<s>", 3, plain, 16);
    CHECK(np == 4 && plain[0] == TIE_SP && plain[1] == TIE_BYTE('<') && plain[2] == TIE_BYTE('s') &&
          plain[3] == TIE_BYTE('>'), "4.4 \"<s>\" without parsing: %lld ids", (long long)np);
    CHECK(es_tok_add_bos(t) && es_tok_special_id(t, "</s>") == 2 && es_tok_is_eog(t, 2) && !es_tok_is_eog(t, 1) &&
          !strcmp(es_tok_pre(t), "spm"), "4.4 BOS added, </s> special and end of generation");
    cJSON_Delete(root);
    free(json);
    es_tok_free(t);
}

/* ids against a fixture array */
static int ids_equal(const int32_t *a, int64_t n, const cJSON *ids)
{
    if (!cJSON_IsArray(ids) || n != cJSON_GetArraySize(ids)) return 0;
    for (int64_t i = 0; i < n; i++)
        if (a[i] != (int32_t)cJSON_GetArrayItem(ids, (int)i)->valuedouble) return 0;
    return 1;
}

/* 5.x llama.cpp's ids on the Llama 3 vocabulary under three pre-tokenizers (BPE_FIXTURES, from
 * scripts/llama-fixtures): 5.1 each GGUF file written here encodes every string as llama.cpp, with
 * special-token parsing on and off; 5.2 BOS/EOS as llama.cpp adds them (add_bos_token true and
 * false honoured against the pre-tokenizer's default); 5.3 the tiktoken vocabulary gives llama-bpe's ids; 5.4 special-token lookups and the
 * end-of-generation set; 5.5 an unknown or missing pre-tokenizer is an error naming the file, the
 * key and the names known. */
static void test_bpe(const es_tok *tik, const tvocab *tv, const char *fixtures)
{
    char *json = slurp(fixtures);
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "tokenize"), *vocabs = cJSON_GetObjectItemCaseSensitive(root, "vocabs"), *c;
    CHECK(cJSON_GetArraySize(cases) >= 100, "5.0 %s: %d strings", fixtures, cJSON_GetArraySize(cases));
    static const struct { const char *pre; int eos, add_bos, chatml; } v[] = {
        {"llama-bpe", 128009, -1, 0}, {"gpt-2", 128001, 1, 1}, {"smollm", 128001, 0, 1}};
    char gg[] = "/tmp/test_tok_bpe_XXXXXX";
    int fd = mkstemp(gg);
    close(fd);
    es_err e;
    int32_t *got = malloc(8192 * sizeof *got);
    for (size_t k = 0; k < sizeof v / sizeof *v; k++) {
        es_tok *t = NULL;
        CHECK(write_bpe_gguf(tv, gg, v[k].pre, v[k].eos, v[k].add_bos, v[k].chatml) == 0, "5.1 writing %s", gg);
        CHECK(es_tok_load_gguf(&t, gg, &e) == 0, "5.1 %s: %s", v[k].pre, e.msg);
        if (!t) continue;
        CHECK(!strcmp(es_tok_pre(t), v[k].pre), "5.1 pre-tokenizer %s, want %s", es_tok_pre(t), v[k].pre);
        int bad = 0, n_cases = 0;
        cJSON_ArrayForEach(c, cases) {
            const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "text"));
            for (int sp = 0; s && sp < 2; sp++) {
                const cJSON *ids = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, sp ? "special" : "plain"), v[k].pre);
                int64_t n = es_tok_encode_flags(t, s, strlen(s), sp ? ES_TOK_PARSE_SPECIAL : 0, got, 8192);
                n_cases++;
                if (!ids_equal(got, n, ids) && bad++ < 5)
                    CHECK(0, "5.1 %s%s %s: %lld ids, llama.cpp's differ", v[k].pre, sp ? " (special)" : "",
                          cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(c, "text")), (long long)n);
            }
        }
        CHECK(bad == 0, "5.1 %s: %d of %d strings differ from llama.cpp", v[k].pre, bad, n_cases);
        /* 5.2 BOS first exactly when llama.cpp prepends it; no EOS */
        const cJSON *vi = cJSON_GetObjectItemCaseSensitive(vocabs, v[k].pre);
        int want_bos = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(vi, "add_bos"));
        CHECK(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(vi, "add_bos")) && es_tok_add_bos(t) == want_bos &&
              es_tok_add_eos(t) == cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(vi, "add_eos")),
              "5.2 %s: add_bos %d add_eos %d, llama.cpp %d", v[k].pre, es_tok_add_bos(t), es_tok_add_eos(t), want_bos);
        int64_t n = es_tok_encode_flags(t, "Hi<|eot_id|>", 12, ES_TOK_PARSE_SPECIAL | ES_TOK_ADD_SPECIAL, got, 8);
        CHECK(n == 2 + want_bos && (!want_bos || got[0] == 128000) && got[n - 1] == 128009,
              "5.2 %s: %lld ids with BOS/EOS added, first %d", v[k].pre, (long long)n, got[0]);
        CHECK(es_tok_bos(t) == 128000 && es_tok_eos(t) == v[k].eos, "5.2 %s: BOS %d EOS %d", v[k].pre, es_tok_bos(t), es_tok_eos(t));
        /* 5.4 lookups */
        CHECK(es_tok_special_id(t, "<|eot_id|>") == 128009 && es_tok_special_id(t, "<|start_header_id|>") == 128006 &&
              es_tok_special_id(t, "<|im_start|>") == (v[k].chatml ? 128002 : -1) && es_tok_special_id(t, "Hello") == -1,
              "5.4 %s: special ids", v[k].pre);
        CHECK(es_tok_is_eog(t, 128009) && es_tok_is_eog(t, 128008) && es_tok_is_eog(t, 128001) &&
              es_tok_is_eog(t, v[k].eos) && !es_tok_is_eog(t, 128006) && !es_tok_is_eog(t, 128000) &&
              es_tok_is_eog(t, 128003) == v[k].chatml && !es_tok_is_eog(t, 9906),
              "5.4 %s: end-of-generation set", v[k].pre);
        es_tok_free(t);
    }
    /* 5.2 add_bos_token false overrides Llama 3's default (llama.cpp's llama_vocab::impl::load reads
     * the key after the pre-tokenizer's default) */
    es_tok *nb = NULL;
    CHECK(write_bpe_gguf(tv, gg, "llama-bpe", 128009, 0, 0) == 0 && es_tok_load_gguf(&nb, gg, &e) == 0, "5.2 load: %s", e.msg);
    if (nb) {
        int64_t n = es_tok_encode_flags(nb, "Hello", 5, ES_TOK_ADD_SPECIAL, got, 8);
        CHECK(!es_tok_add_bos(nb) && n == 1 && got[0] == 9906, "5.2 add_bos_token false: %lld ids, first %d", (long long)n, got[0]);
        es_tok_free(nb);
    }
    /* 5.3 the tiktoken vocabulary is Llama 3's with its special tokens */
    int bad = 0;
    cJSON_ArrayForEach(c, cases) {
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "text"));
        for (int sp = 0; s && sp < 2; sp++) {
            const cJSON *ids = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, sp ? "special" : "plain"), "llama-bpe");
            int64_t n = es_tok_encode_flags(tik, s, strlen(s), sp ? ES_TOK_PARSE_SPECIAL : 0, got, 8192);
            if (!ids_equal(got, n, ids) && bad++ < 5)
                CHECK(0, "5.3 tiktoken%s %s: llama.cpp's ids differ", sp ? " (special)" : "", cJSON_PrintUnformatted(c));
        }
    }
    CHECK(bad == 0, "5.3 tiktoken: %d strings differ from llama.cpp (llama-bpe)", bad);
    CHECK(es_tok_add_bos(tik) && es_tok_bos(tik) == 128000 && es_tok_eos(tik) == 128001 &&
          es_tok_special_id(tik, "<|reserved_special_token_247|>") == 128255 && es_tok_is_eog(tik, 128009) &&
          !es_tok_is_eog(tik, 128007), "5.3 tiktoken: BOS, EOS, special ids");
    /* 5.5 an unknown pre-tokenizer, and none */
    tvocab tiny = *tv;
    tiny.n = 256; /* the byte ranks suffice */
    CHECK(write_bpe_gguf(&tiny, gg, "qwen2", 128001, -1, 0) == 0, "5.5 writing %s", gg);
    es_tok *t = NULL;
    CHECK(es_tok_load_gguf(&t, gg, &e) != 0 && strstr(e.msg, gg) && strstr(e.msg, "'tokenizer.ggml.pre'") &&
          strstr(e.msg, "unknown pre-tokenizer 'qwen2'") && strstr(e.msg, "known: llama-bpe, llama3, llama-v3, gpt-2, smollm"),
          "5.5 unknown pre-tokenizer: %s", e.msg);
    es_tok_free(t);
    t = NULL;
    CHECK(write_bpe_gguf(&tiny, gg, "", 128001, -1, 0) == 0, "5.5 writing %s", gg);
    CHECK(es_tok_load_gguf(&t, gg, &e) != 0 && strstr(e.msg, "unknown pre-tokenizer ''"), "5.5 empty pre-tokenizer: %s", e.msg);
    es_tok_free(t);
    remove(gg);
    free(got);
    cJSON_Delete(root);
    free(json);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--spm-ties")) {
        test_spm_ties(argv[2]);
        printf("%d passed, %d failed\n", passes, fails);
        return fails ? 1 : 0;
    }
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: test_tok VOCAB FIXTURES [BPE_FIXTURES] | test_tok --spm-ties TIES_FIXTURES\n");
        return 2;
    }
    FILE *v = fopen(argv[1], "rb");
    if (!v) {
        printf("test_tok: %s absent (run scripts/fetch-vocab): skipped\n", argv[1]);
        return 77;
    }
    fclose(v);
    es_err e;
    es_tok *t;
    CHECK(es_tok_load_tiktoken(&t, argv[1], &e) == 0, "load: %s", e.msg);
    if (fails) return 1;
    CHECK(es_tok_vocab_size(t) == 128256, "vocabulary of %lld (128,000 ranks and 256 special tokens)",
          (long long)es_tok_vocab_size(t));
    char *json = slurp(argv[2]);
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases"), *c;
    CHECK(cJSON_GetArraySize(cases) >= 30, "fixtures: %d cases", cJSON_GetArraySize(cases));
    cJSON_ArrayForEach(c, cases) {
        const char *text = cJSON_GetObjectItemCaseSensitive(c, "text")->valuestring;
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(c, "ids");
        int32_t got[4096];
        int64_t n = es_tok_encode(t, text, strlen(text), got, 4096);
        int ok = n == cJSON_GetArraySize(ids);
        for (int64_t i = 0; ok && i < n; i++) ok = got[i] == (int32_t)cJSON_GetArrayItem(ids, (int)i)->valuedouble;
        CHECK(ok, "1.1 %s: %lld ids, fixture has %d", cJSON_PrintUnformatted(c), (long long)n, cJSON_GetArraySize(ids));
    }
    /* 3.1 the same vocabulary from GGUF metadata (Llama 3's pre-tokenizer, merges derived from the ranks) */
    char gg[] = "/tmp/test_tok_gguf_XXXXXX";
    int gfd = mkstemp(gg);
    close(gfd);
    es_tok *t2 = NULL;
    tvocab tv = {0};
    CHECK(tv_load(&tv, argv[1]) == 0 && tv.n == 128000, "3.1 reading %s: %d ranks", argv[1], tv.n);
    CHECK(write_bpe_gguf(&tv, gg, "llama-bpe", 128009, -1, 0) == 0, "writing %s", gg);
    CHECK(es_tok_load_gguf(&t2, gg, &e) == 0, "gguf load: %s", e.msg);
    if (t2) {
        CHECK(es_tok_vocab_size(t2) == 128256, "gguf vocabulary of %lld", (long long)es_tok_vocab_size(t2));
        int same = 1;
        cJSON_ArrayForEach(c, cases) {
            const char *text = cJSON_GetObjectItemCaseSensitive(c, "text")->valuestring;
            int32_t a[4096], b[4096];
            int64_t na = es_tok_encode(t, text, strlen(text), a, 4096), nb = es_tok_encode(t2, text, strlen(text), b, 4096);
            same &= na == nb && !memcmp(a, b, (size_t)(na < 4096 ? na : 4096) * sizeof *a);
        }
        CHECK(same, "GGUF and tiktoken vocabularies encode differently");
        es_tok_free(t2);
    }
    remove(gg);
    if (argc == 4) test_bpe(t, &tv, argv[3]);
    tv_free(&tv);
    cJSON_Delete(root);
    free(json);
    es_tok_free(t);
    /* 2.1 a bad vocabulary line names the line */
    char path[] = "/tmp/test_tok_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs("IQ== 0\nnot base64!! 1\n", f);
    fclose(f);
    CHECK(es_tok_load_tiktoken(&t, path, &e) != 0 && strstr(e.msg, "line 2"), "bad line: %s", e.msg);
    f = fopen(path, "w");
    fputs("IQ== 0\nIQ== 1\n", f);
    fclose(f);
    CHECK(es_tok_load_tiktoken(&t, path, &e) != 0 && strstr(e.msg, "same bytes"), "duplicate: %s", e.msg);
    remove(path);
    printf("%d passed, %d failed\n", passes, fails);
    return fails ? 1 : 0;
}
