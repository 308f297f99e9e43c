/* test_chat: chat formats (sim/host/es_chat) on the Llama 3 tiktoken vocabulary.
 *   1.x  a chat-formatted prompt's ids equal ids derived by hand from the Llama 3.1 instruct
 *        template (Meta's tokenizer_config.json): the control tokens by their published ids
 *        (128000 <|begin_of_text|>, 128006/128007 the header, 128009 <|eot_id|>), the text between
 *        them encoded piece by piece (es_tok_encode, which test_tok checks against the reference)
 *   2.x  the demo's shared prefix (eval's default template and rule) is 45 tokens and every record
 *        gains 5 (test_cli's eval_chat_demo asserts eval reports the same)
 *   3.x  end-of-generation tokens and control-token lookups
 * Run as `test_chat VOCAB`; exits 77 (skipped) when VOCAB is absent (scripts/fetch-vocab). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
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
