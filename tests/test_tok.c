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

/* Write a GGUF file whose only content is tokenizer.ggml.tokens, made from a tiktoken file. */
static int tiktoken_to_gguf(const char *vocab, const char *out)
{
    FILE *in = fopen(vocab, "r"), *f = fopen(out, "wb");
    if (!in || !f) return -1;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof line, in)) n++;
    rewind(in);
    fwrite("GGUF", 1, 4, f);
    put_le(f, 3, 4);
    put_le(f, 0, 8);
    put_le(f, 3, 8);
    put_le(f, 20, 8); fputs("tokenizer.ggml.model", f); put_le(f, 8, 4); put_le(f, 4, 8); fputs("gpt2", f);
    put_le(f, 21, 8); fputs("tokenizer.ggml.tokens", f); put_le(f, 9, 4); put_le(f, 8, 4); put_le(f, (uint64_t)n + 1, 8);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    while (fgets(line, sizeof line, in)) {
        unsigned char bytes[1024], utf[4096];
        size_t nb = 0, nu = 0;
        unsigned acc = 0;
        int bits = 0;
        for (char *p = line; *p && *p != ' ' && *p != '='; p++) {
            acc = acc << 6 | (unsigned)(strchr(b64, *p) - b64);
            bits += 6;
            if (bits >= 8) { bits -= 8; bytes[nb++] = (unsigned char)(acc >> bits); acc &= (1u << bits) - 1; }
        }
        for (size_t i = 0; i < nb; i++) {
            uint32_t c = gpt2_char(bytes[i]);
            if (c < 0x80) utf[nu++] = (unsigned char)c;
            else { utf[nu++] = (unsigned char)(0xC0 | c >> 6); utf[nu++] = (unsigned char)(0x80 | (c & 0x3F)); }
        }
        put_le(f, nu, 8);
        fwrite(utf, 1, nu, f);
    }
    put_le(f, 17, 8);
    fputs("<|begin_of_text|>", f);
    /* token types: normal (1) for the ranks, control (3) for the special token */
    put_le(f, 25, 8); fputs("tokenizer.ggml.token_type", f); put_le(f, 9, 4); put_le(f, 5, 4); put_le(f, (uint64_t)n + 1, 8);
    for (int i = 0; i < n; i++) put_le(f, 1, 4);
    put_le(f, 3, 4);
    fclose(in);
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

static void put_str(FILE *f, const char *s) { put_le(f, strlen(s), 8); fputs(s, f); }

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
    cJSON_Delete(root);
    free(json);
    es_tok_free(t);
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
    if (argc != 3) { fprintf(stderr, "usage: test_tok VOCAB FIXTURES | test_tok --spm-ties TIES_FIXTURES\n"); return 2; }
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
    CHECK(es_tok_vocab_size(t) == 128000, "vocabulary of %lld", (long long)es_tok_vocab_size(t));
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
    /* 3.1 the same vocabulary from GGUF metadata */
    char gg[] = "/tmp/test_tok_gguf_XXXXXX";
    int gfd = mkstemp(gg);
    close(gfd);
    es_tok *t2 = NULL;
    CHECK(tiktoken_to_gguf(argv[1], gg) == 0, "writing %s", gg);
    CHECK(es_tok_load_gguf(&t2, gg, &e) == 0, "gguf load: %s", e.msg);
    if (t2) {
        CHECK(es_tok_vocab_size(t2) == 128000, "gguf vocabulary of %lld", (long long)es_tok_vocab_size(t2));
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
