/* test_tok: the Llama 3 tokenizer against fixtures made by the reference
 * JavaScript tokenizer (tests/data/tokenizer-fixtures.json, scripts/fetch-vocab).
 *   1.x  every fixture string encodes to exactly its ids
 *   2.x  the vocabulary file: bad lines are errors naming the line
 *   3.x  the same vocabulary as a GGUF file's tokenizer.ggml.tokens (GPT-2
 *        byte-to-character form, with a special token) encodes the same
 * Run as `test_tok VOCAB FIXTURES`; exits 77 (skipped) when VOCAB is absent. */
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
    if (argc != 3) { fprintf(stderr, "usage: test_tok VOCAB FIXTURES\n"); return 2; }
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
