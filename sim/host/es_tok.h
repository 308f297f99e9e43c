/* es_tok: tokenizers from vocabularies users already have.
 *
 * SentencePiece (a GGUF file whose tokenizer.ggml.model is "llama", the
 * Llama 2 family and stories260K): pieces, scores, token types and byte
 * fallback from the metadata. A space is put before the text (unless
 * tokenizer.ggml.add_space_prefix is false), every space becomes U+2581,
 * the characters are merged pairwise by score (see es_tok.c), and what
 * is left that is not a piece becomes <0xXX> byte tokens.
 *
 * Byte-level BPE as Llama 3 uses it (a tiktoken file, or a GGUF file whose
 * tokenizer.ggml.model is "gpt2"). Text is split by the Llama 3
 * pre-tokenizer pattern
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *    ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * (hand-coded, with \p{L}/\p{N} from generated Unicode tables and \s as
 * ECMAScript defines it), then each piece's bytes are merged pairwise, the
 * pair whose merge has the lowest rank first, until no merge is in the
 * vocabulary. The vocabulary comes from a tiktoken file ("<base64> <rank>"
 * per line) or from a GGUF file's tokenizer.ggml.tokens. */
#ifndef ES_TOK_H
#define ES_TOK_H
#include <stddef.h>
#include <stdint.h>
#include "es_err.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct es_tok es_tok;

/* The most ranks a vocabulary may have (the largest published ones hold about 256k tokens); a
 * rank past it is an error, not hundreds of megabytes of table. */
#define ES_TOK_MAX_RANKS (1 << 21)

int es_tok_load_tiktoken(es_tok **t, const char *path, es_err *e);
/* The tokenizer of a GGUF file's metadata: tokenizer.ggml.model "llama"
 * (SentencePiece) or "gpt2" (tokens in GPT-2 byte-to-character form);
 * another model is an error naming the key. */
int es_tok_load_gguf(es_tok **t, const char *path, es_err *e);
void es_tok_free(es_tok *t);
int64_t es_tok_vocab_size(const es_tok *t);
/* Token ids of text[0..n) (valid UTF-8), no BOS/EOS. Writes at most cap ids
 * to out (out may be NULL) and returns how many there are in all. */
int64_t es_tok_encode(const es_tok *t, const char *text, size_t n, int32_t *out, int64_t cap);
/* The same for text that continues a text already encoded: SentencePiece
 * puts no space before it (byte-level BPE encodes as es_tok_encode). */
int64_t es_tok_encode_more(const es_tok *t, const char *text, size_t n, int32_t *out, int64_t cap);
/* BOS and EOS ids from a GGUF file's metadata; -1 when unknown (tiktoken). */
int32_t es_tok_bos(const es_tok *t);
int32_t es_tok_eos(const es_tok *t);
/* The text of token id as bytes (SentencePiece: U+2581 as a space, byte
 * tokens as their byte, control tokens as nothing); at most cap bytes are
 * written, the piece's length is returned. */
size_t es_tok_piece(const es_tok *t, int32_t id, char *out, size_t cap);

/* Lookups for chat templates (es_chat). The id of the token whose piece is exactly s[0..n),
 * control tokens included: a GGUF file's tokens by their text (SentencePiece: any piece; byte-level
 * BPE: the tokens that are not BPE ranks), the Llama 3 tiktoken vocabulary's special tokens by the
 * ids Meta's tokenizer gives them (128000 <|begin_of_text|> ... 128009 <|eot_id|>, then reserved
 * tokens to 128255). -1 when there is none. */
int32_t es_tok_find_piece(const es_tok *t, const char *s, size_t n);
/* 1 when id ends a generation (llama.cpp's end-of-generation set): the EOS id, the GGUF's
 * tokenizer.ggml.eot_token_id or eom_token_id, or the token <|eot_id|>, <|eom_id|>,
 * <|end_of_text|>, <|im_end|> or <|endoftext|>; else 0. */
int es_tok_is_eog(const es_tok *t, int32_t id);

#ifdef __cplusplus
}
#endif
#endif
