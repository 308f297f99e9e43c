/* es_chat: chat formats (see es_chat.h). */
#define _POSIX_C_SOURCE 200809L
#include "es_chat.h"
#include <stdio.h>
#include <string.h>
#include "es_gguf.h"

/* The id of control token name, or -1 and e saying the format needs it. */
static int32_t need(const es_tok *tok, const char *name, const char *fmt, const char *path, es_err *e)
{
    int32_t id = es_tok_find_piece(tok, name, strlen(name));
    if (id < 0)
        es_fail(e, "%s: the %s chat format needs the token %s, which the vocabulary has not", path, fmt, name);
    return id;
}

/* A default system message the ChatML template writes literally: the text between
 * "<|im_start|>system\n" and the next "<|im_end|>" when no template syntax ({ or }) is in it. */
static void chatml_system(es_chat *c, const char *tmpl)
{
    const char *key = "<|im_start|>system\\n", *at = strstr(tmpl, key); /* "\n" as a Jinja string writes it */
    c->system[0] = 0;
    if (!at) key = "<|im_start|>system\n", at = strstr(tmpl, key);                /* or a newline itself */
    if (!at) return;
    at += strlen(key);
    const char *end = strstr(at, "<|im_end|>");
    if (!end || (size_t)(end - at) >= sizeof c->system) return;
    size_t k = 0;
    for (const char *p = at; p < end; p++) {
        if (*p == '{' || *p == '}' || *p == '\'' || *p == '"') return; /* not literal text */
        if (p[0] == '\\' && p + 1 < end && p[1] == 'n') { c->system[k++] = '\n'; p++; continue; }
        c->system[k++] = *p;
    }
    c->system[k] = 0;
}

/* The family of a GGUF's tokenizer.chat_template from its text. */
static int recognise(es_chat *c, const char *tmpl, const char *path, es_err *e)
{
    if (strstr(tmpl, "<|start_header_id|>") && strstr(tmpl, "<|end_header_id|>") && strstr(tmpl, "<|eot_id|>")) {
        c->family = strstr(tmpl, "Cutting Knowledge Date") ? ES_CHAT_LLAMA31 : ES_CHAT_LLAMA3;
        return 0;
    }
    if (strstr(tmpl, "<|im_start|>") && strstr(tmpl, "<|im_end|>")) {
        c->family = ES_CHAT_CHATML;
        chatml_system(c, tmpl);
        return 0;
    }
    char head[61];
    size_t k = 0;
    for (; tmpl[k] && k < sizeof head - 1; k++) head[k] = tmpl[k] == '\n' ? ' ' : tmpl[k];
    head[k] = 0;
    return es_fail(e, "%s: metadata 'tokenizer.chat_template': a chat format not known here (it begins '%s'); "
                      "known: Llama 3 (<|start_header_id|> ... <|eot_id|>) and ChatML (<|im_start|> ... <|im_end|>)",
                   path, head);
}

/* The GGUF file's template: -1 and e when it has none or the family is unknown. */
static int from_gguf(es_chat *c, const char *path, es_err *e)
{
    es_gguf g;
    if (es_gguf_open(&g, path, e)) return -1;
    const char *tmpl = NULL;
    int rc;
    if (!es_gguf_find(&g, "tokenizer.chat_template"))
        rc = es_fail(e, "%s: no metadata 'tokenizer.chat_template': the model has no chat format (--chat needs one)",
                     path);
    else
        rc = es_gguf_str(&g, "tokenizer.chat_template", &tmpl, e) || recognise(c, tmpl, path, e) ? -1 : 0;
    es_gguf_close(&g);
    return rc;
}

int es_chat_load(es_chat *c, const es_tok *tok, const char *path, es_err *e)
{
    memset(c, 0, sizeof *c);
    c->bos = c->head_start = c->head_end = c->eot = c->im_start = c->im_end = -1;
    if (es_gguf_is_gguf(path)) {
        if (from_gguf(c, path, e)) return -1;
    } else if (es_tok_find_piece(tok, "<|start_header_id|>", 19) >= 0) {
        c->family = ES_CHAT_LLAMA31; /* the Llama 3 tiktoken vocabulary: Llama 3.1 instruct */
    } else {
        return es_fail(e, "%s: a vocabulary without a chat format (--chat knows the Llama 3 tiktoken vocabulary and "
                          "GGUF files with tokenizer.chat_template)", path);
    }
    if (c->family == ES_CHAT_CHATML) {
        c->name = "chatml";
        return (c->im_start = need(tok, "<|im_start|>", c->name, path, e)) < 0 ||
               (c->im_end = need(tok, "<|im_end|>", c->name, path, e)) < 0 ? -1 : 0;
    }
    c->name = c->family == ES_CHAT_LLAMA31 ? "llama-3.1" : "llama-3";
    c->trim = 1;
    /* Llama 3.1 writes <|begin_of_text|>; Llama 3's template writes bos_token (the vocabulary's BOS) */
    c->bos = c->family == ES_CHAT_LLAMA3 && es_tok_bos(tok) >= 0 ? es_tok_bos(tok)
                                                                 : need(tok, "<|begin_of_text|>", c->name, path, e);
    if (c->bos < 0 || (c->head_start = need(tok, "<|start_header_id|>", c->name, path, e)) < 0 ||
        (c->head_end = need(tok, "<|end_header_id|>", c->name, path, e)) < 0 ||
        (c->eot = need(tok, "<|eot_id|>", c->name, path, e)) < 0)
        return -1;
    return 0;
}

/* Appends: one id, or text's ids. */
static void put(int32_t id, int32_t *out, int64_t cap, int64_t *n)
{
    if (out && *n < cap) out[*n] = id;
    (*n)++;
}

static void text(const es_tok *tok, const char *s, int32_t *out, int64_t cap, int64_t *n)
{
    int64_t room = out && *n < cap ? cap - *n : 0;
    *n += es_tok_encode(tok, s, strlen(s), room ? out + *n : NULL, room);
}

/* A Llama 3 header: <|start_header_id|>role<|end_header_id|>, and "\n\n" unless the message's text follows */
static void header(const es_chat *c, const es_tok *tok, const char *role, int nl, int32_t *out, int64_t cap, int64_t *n)
{
    put(c->head_start, out, cap, n);
    text(tok, role, out, cap, n);
    put(c->head_end, out, cap, n);
    if (nl) text(tok, "\n\n", out, cap, n);
}

int64_t es_chat_before(const es_chat *c, const es_tok *tok, int32_t *out, int64_t cap)
{
    int64_t n = 0;
    if (c->family == ES_CHAT_CHATML) {
        if (c->system[0]) {
            char turn[sizeof c->system + 8];
            snprintf(turn, sizeof turn, "system\n%s", c->system); /* one text between control tokens */
            put(c->im_start, out, cap, &n);
            text(tok, turn, out, cap, &n);
            put(c->im_end, out, cap, &n);
            text(tok, "\n", out, cap, &n);
        }
        put(c->im_start, out, cap, &n); /* "user\n" is es_chat_lead's */
        return n;
    }
    put(c->bos, out, cap, &n);
    if (c->family == ES_CHAT_LLAMA31) { /* the system turn, with no system message */
        /* one text between <|end_header_id|> and <|eot_id|>, as llama.cpp encodes it */
        header(c, tok, "system", 0, out, cap, &n);
        text(tok, "\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n", out, cap, &n);
        put(c->eot, out, cap, &n);
    }
    header(c, tok, "user", 0, out, cap, &n); /* "\n\n" is es_chat_lead's */
    return n;
}

int64_t es_chat_after(const es_chat *c, const es_tok *tok, int32_t *out, int64_t cap)
{
    int64_t n = 0;
    if (c->family == ES_CHAT_CHATML) {
        put(c->im_end, out, cap, &n);
        text(tok, "\n", out, cap, &n);
        put(c->im_start, out, cap, &n);
        text(tok, "assistant\n", out, cap, &n);
        return n;
    }
    put(c->eot, out, cap, &n);
    header(c, tok, "assistant", 1, out, cap, &n);
    return n;
}

const char *es_chat_lead(const es_chat *c) { return c->family == ES_CHAT_CHATML ? "user\n" : "\n\n"; }

size_t es_chat_trim(const char *s, size_t n, int lead)
{
    size_t a = 0, b = n;
    while (a < n && strchr(" \t\n\r\v\f", s[a]) && s[a]) a++;
    while (b > 0 && strchr(" \t\n\r\v\f", s[b - 1]) && s[b - 1]) b--;
    return lead ? a : b;
}
