/* test_chat: chat formats (sim/host/es_chat) on the Llama 3 tiktoken vocabulary.
 *   1.x  a chat-formatted prompt's ids equal ids derived by hand from the Llama 3.1 instruct
 *        template (Meta's tokenizer_config.json): the control tokens by their published ids
 *        (128000 <|begin_of_text|>, 128006/128007 the header, 128009 <|eot_id|>), the text between
 *        them encoded piece by piece (es_tok_encode, which test_tok checks against the reference)
 *   2.x  the demo's shared prefix (eval's default template and rule) is 45 tokens and every record
 *        gains 5 (test_cli's eval_chat_demo asserts eval reports the same)
 *   3.x  end-of-generation tokens and control-token lookups
 *   4.x  a byte-level BPE GGUF written here: its control tokens (token_type 3) found by their text, its
 *        eot_token_id an end of generation, its Llama 3.1 chat template recognised and built from its ids
 * Run as `test_chat VOCAB`; exits 77 (skipped) when VOCAB is absent (scripts/fetch-vocab). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "es_chat.h"
#include "es_tok.h"

#include "test_check.h"

typedef struct { int32_t id[512]; int n; } ids;

static void put(ids *v, int32_t id) { if (v->n < 512) v->id[v->n++] = id; }
static void text(ids *v, const es_tok *t, const char *s)
{
    int32_t buf[512];
    int64_t n = es_tok_encode(t, s, strlen(s), buf, 512);
    for (int64_t i = 0; i < n && i < 512; i++) put(v, buf[i]);
}

/* What es_chat gives for message (already trimmed): before, encode(lead + message), after. */
static void chat_ids(ids *v, const es_chat *c, const es_tok *t, const char *message)
{
    v->n = (int)es_chat_before(c, t, v->id, 512);
    char buf[1024];
    snprintf(buf, sizeof buf, "%s%s", es_chat_lead(c), message);
    text(v, t, buf);
    v->n += (int)es_chat_after(c, t, v->id + v->n, 512 - v->n);
}

static void put_le(FILE *f, uint64_t v, int n) { for (int i = 0; i < n; i++) fputc((int)(v >> 8 * i & 0xFF), f); }
static void put_str(FILE *f, const char *s) { put_le(f, strlen(s), 8); fputs(s, f); }
static void put_key(FILE *f, const char *k, int type) { put_str(f, k); put_le(f, (uint64_t)type, 4); }

/* A GGUF of metadata only: a gpt2 vocabulary (pre-tokenizer llama-bpe, no merges) of the given tokens and types, eot_token_id, a chat template. */
static int write_gguf(const char *path, const char *const *toks, const int *types, int n, int eot, const char *tmpl)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fwrite("GGUF", 1, 4, f);
    put_le(f, 3, 4);
    put_le(f, 0, 8);
    put_le(f, 7, 8);
    put_key(f, "tokenizer.ggml.model", 8); put_str(f, "gpt2");
    put_key(f, "tokenizer.ggml.pre", 8); put_str(f, "llama-bpe"); /* a byte-level BPE file names its pre-tokenizer */
    put_key(f, "tokenizer.ggml.merges", 9); put_le(f, 8, 4); put_le(f, 0, 8); /* and its merges: none here */
    put_key(f, "tokenizer.ggml.tokens", 9); put_le(f, 8, 4); put_le(f, (uint64_t)n, 8);
    for (int i = 0; i < n; i++) put_str(f, toks[i]);
    put_key(f, "tokenizer.ggml.token_type", 9); put_le(f, 5, 4); put_le(f, (uint64_t)n, 8);
    for (int i = 0; i < n; i++) put_le(f, (uint64_t)types[i], 4);
    put_key(f, "tokenizer.ggml.eot_token_id", 4); put_le(f, (uint64_t)eot, 4);
    put_key(f, "tokenizer.chat_template", 8); put_str(f, tmpl);
    return fclose(f);
}

/* 4.x the control tokens of a byte-level BPE GGUF */
static void test_bpe_gguf(void)
{
    static const char *const toks[] = {"s", "y", "t", "e", "m", "u", "r", "a", "i", "n", "\xC4\x8A",
                                       "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "z"};
    static const int types[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 1};
    char path[] = "/tmp/test_chat_gguf_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    CHECK(fd >= 0 && write_gguf(path, toks, types, 16, 15,
                                "{{- bos_token }}<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
                                "December 2023<|eot_id|>") == 0, "4.0 writing %s", path);
    es_err e;
    es_tok *t = NULL;
    CHECK(es_tok_load_gguf(&t, path, &e) == 0, "4.0 load: %s", e.msg);
    if (t) {
        CHECK(es_tok_find_piece(t, "<|start_header_id|>", 19) == 12 && es_tok_find_piece(t, "<|eot_id|>", 10) == 14 &&
              es_tok_find_piece(t, "<|begin_of_text|>", 17) == 11 && es_tok_find_piece(t, "z", 1) == -1,
              "4.1 control tokens by their text, normal ones not");
        CHECK(es_tok_is_eog(t, 14) && es_tok_is_eog(t, 15) && !es_tok_is_eog(t, 12) && !es_tok_is_eog(t, 0),
              "4.2 <|eot_id|> and eot_token_id (15) end a generation, others not");
        es_chat c;
        CHECK(es_chat_load(&c, t, path, &e) == 0 && !strcmp(c.name, "llama-3.1"), "4.3 chat: %s", e.msg);
        int32_t b[256];
        int64_t n = es_chat_before(&c, t, b, 256);
        /* <|begin_of_text|> <|start_header_id|> s y s t e m <|end_header_id|> ... <|eot_id|> <|start_header_id|> u s e r
           <|end_header_id|>: no merges, one token a letter */
        CHECK(n > 12 && n <= 256 && b[0] == 11 && b[1] == 12 && b[2] == 0 && b[3] == 1 && b[7] == 4 && b[8] == 13 &&
              b[n - 7] == 14 && b[n - 6] == 12 && b[n - 5] == 5 && b[n - 2] == 6 && b[n - 1] == 13, "4.4 the chat's ids (%lld)", (long long)n);
        es_tok_free(t);
    }
    remove(path);
}

static int same(const ids *a, const ids *b)
{
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++)
        if (a->id[i] != b->id[i]) return 0;
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) { fprintf(stderr, "usage: test_chat VOCAB\n"); return 2; }
    test_bpe_gguf();
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        if (fails) return 1;
        printf("test_chat: %s absent (run scripts/fetch-vocab): skipped\n", argv[1]);
        return 77;
    }
    fclose(f);
    es_err e;
    es_tok *t;
    CHECK(es_tok_load_tiktoken(&t, argv[1], &e) == 0, "load: %s", e.msg);
    if (fails) return 1;
    es_chat c;
    CHECK(es_chat_load(&c, t, argv[1], &e) == 0, "chat: %s", e.msg);
    if (fails) return 1;
    CHECK(!strcmp(c.name, "llama-3.1"), "1.0 format %s", c.name);

    /* 1.1 the template by hand: the published special-token ids, the texts between them */
    const char *msg = "Flag if the amount is over 100.\n\nRecord:\nid: 7\namount: 250";
    ids want = {{0}, 0}, got;
    put(&want, 128000); /* bos_token */
    put(&want, 128006); text(&want, t, "system"); put(&want, 128007);
    text(&want, t, "\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
    put(&want, 128009);
    put(&want, 128006); text(&want, t, "user"); put(&want, 128007);
    char um[512];
    snprintf(um, sizeof um, "\n\n%s", msg);
    text(&want, t, um);
    put(&want, 128009);
    put(&want, 128006); text(&want, t, "assistant"); put(&want, 128007); text(&want, t, "\n\n");
    chat_ids(&got, &c, t, msg);
    CHECK(same(&got, &want), "1.1 chat ids: %d, by hand %d", got.n, want.n);
    /* 1.2 the role names and the blank line are single tokens of the Llama 3 vocabulary (ids as the Llama 3
       chat format is published: user 882, assistant 78191, system 9125, "\n\n" 271) */
    ids one = {{0}, 0};
    text(&one, t, "user"); text(&one, t, "assistant"); text(&one, t, "system"); text(&one, t, "\n\n");
    CHECK(one.n == 4 && one.id[0] == 882 && one.id[1] == 78191 && one.id[2] == 9125 && one.id[3] == 271,
          "1.2 role ids %d %d %d %d (%d)", one.id[0], one.id[1], one.id[2], one.id[3], one.n);
    CHECK(got.n > 12 && got.id[got.n - 4] == 128006 && got.id[got.n - 3] == 78191 && got.id[got.n - 2] == 128007 &&
          got.id[got.n - 1] == 271 && got.id[got.n - 5] == 128009, "1.3 the assistant's header ends the prompt");

    /* 2.1 the demo's shared prefix: eval's default template up to the record, the rule in it */
    const char *rule = "Flag if merchant category doesn't match customer's typical spending pattern";
    ids pre = {{0}, 0};
    put(&pre, 128000);
    put(&pre, 128006); text(&pre, t, "system"); put(&pre, 128007);
    text(&pre, t, "\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
    put(&pre, 128009);
    put(&pre, 128006); text(&pre, t, "user"); put(&pre, 128007);
    snprintf(um, sizeof um, "\n\n%s\n\nRecord:\n", rule);
    text(&pre, t, um);
    CHECK(pre.n == 45, "2.1 the demo's chat prefix is %d tokens by hand", pre.n);
    CHECK(es_chat_after(&c, t, NULL, 0) == 5, "2.2 a record gains %lld tokens after its text",
          (long long)es_chat_after(&c, t, NULL, 0));

    /* 3.x end of generation and lookups */
    CHECK(es_tok_is_eog(t, 128009) && es_tok_is_eog(t, 128001) && es_tok_is_eog(t, 128008), "3.1 eot/eos/eom end");
    CHECK(!es_tok_is_eog(t, 128006) && !es_tok_is_eog(t, 882) && !es_tok_is_eog(t, -1), "3.2 others do not end");
    CHECK(es_tok_find_piece(t, "<|reserved_special_token_3|>", 28) == 128011 &&
          es_tok_find_piece(t, "<|reserved_special_token_247|>", 30) == 128255 &&
          es_tok_find_piece(t, "<|reserved_special_token_248|>", 30) == -1 &&
          es_tok_find_piece(t, "<|reserved_special_token_03|>", 29) == -1 && es_tok_find_piece(t, "user", 4) == -1,
          "3.3 reserved tokens by id, nothing else");
    CHECK(es_chat_trim(" \n a b \n", 8, 1) == 3 && es_chat_trim(" \n a b \n", 8, 0) == 6, "3.4 trim");
    es_tok_free(t);
    printf("%d passed, %d failed\n", passes, fails);
    return fails ? 1 : 0;
}
