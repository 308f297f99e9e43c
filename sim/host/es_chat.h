/* es_chat: chat formats of instruct models, for prompts wrapped as a chat
 * (eval/infer/run --chat). A prompt becomes one user turn of the model's
 * chat, the assistant's turn opened after it:
 *
 *   llama-3.1  the Llama 3.1 instruct template (Meta's tokenizer_config.json, as
 *              llama.cpp renders it without tools or a date given):
 *     <|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n
 *     Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>
 *     <|start_header_id|>user<|end_header_id|>\n\n{message, trimmed}<|eot_id|>
 *     <|start_header_id|>assistant<|end_header_id|>\n\n
 *   llama-3    the Llama 3 (3.0) template: the same turns without a system turn
 *   chatml     <|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n,
 *              after <|im_start|>system\n{text}<|im_end|>\n when the template
 *              writes a default system message literally
 *
 * The format comes from the vocabulary: the Llama 3 tiktoken vocabulary is
 * llama-3.1's; a GGUF file's tokenizer.chat_template is recognised from its
 * text. Control tokens are inserted by id (es_tok_find_piece), never parsed
 * from text; the text between them is encoded piece by piece, as llama.cpp
 * encodes text split at special tokens. */
#ifndef ES_CHAT_H
#define ES_CHAT_H
#include <stddef.h>
#include <stdint.h>
#include "es_err.h"
#include "es_tok.h"
#ifdef __cplusplus
extern "C" {
#endif

enum { ES_CHAT_LLAMA31 = 1, ES_CHAT_LLAMA3 = 2, ES_CHAT_CHATML = 3 };

typedef struct es_chat {
    int family;            /* ES_CHAT_* */
    const char *name;      /* "llama-3.1", "llama-3", "chatml" */
    int trim;              /* the message is trimmed of leading and trailing whitespace (Llama 3's | trim) */
    char system[1024];     /* chatml: the default system message the template writes ("" none) */
    int32_t bos, head_start, head_end, eot; /* llama: <|begin_of_text|> (the vocabulary's BOS for llama-3), header ids, <|eot_id|> */
    int32_t im_start, im_end;               /* chatml */
} es_chat;

/* The chat format of tok, read from vocab_path (the file tok came from): a GGUF's
 * tokenizer.chat_template, or llama-3.1 for the Llama 3 tiktoken vocabulary. No template, a
 * template of no family known here, or a control token the format needs and the vocabulary
 * lacks: -1 and e naming the file and what was expected. */
int es_chat_load(es_chat *c, const es_tok *tok, const char *vocab_path, es_err *e);

/* Token ids of the chat before the user's message, to its last control token (BOS, system turn,
 * <|start_header_id|>user<|end_header_id|> or <|im_start|>), and after it (end of turn, assistant
 * header). At most cap ids are written to out (out may be NULL); the count is returned. The text
 * between that control token and the message, es_chat_lead ("\n\n" or "user\n"), is the
 * message's: encode lead + message as one text, as llama.cpp does. */
int64_t es_chat_before(const es_chat *c, const es_tok *tok, int32_t *out, int64_t cap);
int64_t es_chat_after(const es_chat *c, const es_tok *tok, int32_t *out, int64_t cap);
const char *es_chat_lead(const es_chat *c);

/* The length of s[0..n) without leading (lead = 1) or trailing (lead = 0) whitespace, as
 * Jinja's trim removes it; returns the offset of the first kept byte (lead) or the kept length. */
size_t es_chat_trim(const char *s, size_t n, int lead);

#ifdef __cplusplus
}
#endif
#endif
