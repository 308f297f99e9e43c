/* es_tok: tokenizers from vocabularies users already have.
 *
 * SentencePiece (a GGUF file whose tokenizer.ggml.model is "llama", the
 * Llama 2 family and stories260K): pieces, scores, token types and byte
 * fallback from the metadata. A space is put before the text (unless
 * tokenizer.ggml.add_space_prefix is false), every space becomes U+2581,
 * the characters are merged pairwise by score (see es_tok.c), and what
 * is left that is not a piece becomes <0xXX> byte tokens.
 *
 * Byte-level BPE (a tiktoken file, or a GGUF file whose tokenizer.ggml.model
 * is "gpt2"). A GGUF file names its pre-tokenizer in tokenizer.ggml.pre, as
 * llama.cpp (src/llama-vocab.cpp) does: "llama-bpe" (also "llama3",
 * "llama-v3"; Llama 3), "gpt-2" (GPT-2's pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
 * where whitespace that no branch takes is a piece of its own) and "smollm"
 * (every \p{N} a piece first, then GPT-2's pattern); another name, or none,
 * is an error naming the file, the key and the names known. Merges apply in
 * the order of tokenizer.ggml.merges ("A B" pairs). A tiktoken file is Llama 3:
 * its ranks are the merge order. Llama 3's pattern is
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *    ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * (hand-coded, with \p{L}/\p{N} from generated Unicode tables and \s as
 * llama.cpp's White_Space set), then each piece's bytes are merged pairwise,
 * the pair whose merge has the lowest rank first (the leftmost on ties),
 * until no merge applies; with Llama 3 a piece that is a token whole is that
 * token (llama.cpp's ignore_merges). The vocabulary comes from a tiktoken
 * file ("<base64> <rank>" per line; ids 128000..128255 are then Llama 3.1's
 * 256 special tokens, <|begin_of_text|> .. <|reserved_special_token_247|>)
 * or from a GGUF file's tokenizer.ggml.tokens.
 *
 * Special tokens (llama.cpp's tokenizer_st_partition): with
 * ES_TOK_PARSE_SPECIAL, the text is first split on the literal text of every
 * control (token type 3), user-defined (4) and unknown (2) token, the longest
 * token first, and each occurrence becomes that token's id; user-defined
 * tokens are split on even without the flag. SentencePiece puts its space
 * before the text after a special token too. */
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
/* Flags of es_tok_encode_flags. */
#define ES_TOK_PARSE_SPECIAL 1u /* control tokens written in the text ("<|eot_id|>") are their ids */
#define ES_TOK_ADD_SPECIAL 2u   /* BOS first / EOS last when the vocabulary says so (es_tok_add_bos/eos) */
#define ES_TOK_CONTINUE 4u      /* text that continues a text already encoded (as es_tok_encode_more) */
/* es_tok_encode with flags; es_tok_encode is flags 0, es_tok_encode_more ES_TOK_CONTINUE. */
int64_t es_tok_encode_flags(const es_tok *t, const char *text, size_t n, unsigned flags, int32_t *out, int64_t cap);
/* BOS and EOS ids (GGUF: tokenizer.ggml.bos_token_id / eos_token_id; tiktoken: <|begin_of_text|>
 * 128000 and <|end_of_text|> 128001); -1 when unknown. */
int32_t es_tok_bos(const es_tok *t);
int32_t es_tok_eos(const es_tok *t);
/* 1 when a prompt starts with BOS / ends with EOS: tokenizer.ggml.add_bos_token / add_eos_token,
 * else llama.cpp's default (BOS: SentencePiece and Llama 3 yes, GPT-2 and SmolLM no; EOS no);
 * 0 when the id is unknown. */
int es_tok_add_bos(const es_tok *t);
int es_tok_add_eos(const es_tok *t);
/* The id of the special (control, user-defined or unknown) token whose text is name, e.g.
 * "<|eot_id|>" or "<|im_start|>"; -1 when the vocabulary has none. */
int32_t es_tok_special_id(const es_tok *t, const char *name);
/* 1 when id ends generation, as llama.cpp's special_eog_ids: EOS, and the tokens named
 * <|eot_id|>, <|eom_id|>, <|end_of_text|>, <|im_end|>, <|endoftext|>, <|end|>, <end_of_turn>,
 * <EOT>, <|return|>, <|call|>, <end_of_utterance> (tokenizer.ggml.eot_token_id / eom_token_id too). */
int es_tok_is_eog(const es_tok *t, int32_t id);
/* The pre-tokenizer: "llama-bpe", "gpt-2", "smollm" or "spm" (SentencePiece). */
const char *es_tok_pre(const es_tok *t);
/* The text of token id as bytes (SentencePiece: U+2581 as a space, byte
 * tokens as their byte, control tokens as nothing); at most cap bytes are
 * written, the piece's length is returned. */
size_t es_tok_piece(const es_tok *t, int32_t id, char *out, size_t cap);

/* Lookups for chat templates (es_chat). The id of the token whose piece is exactly s[0..n),
 * control tokens included: a GGUF file's tokens by their text (SentencePiece: any piece; byte-level
 * BPE: the tokens that are not BPE ranks), the Llama 3 tiktoken vocabulary's special tokens by the
 * ids Meta's tokenizer gives them (128000 <|begin_of_text|> ... 128009 <|eot_id|>, then reserved
 * tokens to 128255). -1 when there is none. es_tok_is_eog (above) says whether an id ends a generation. */
int32_t es_tok_find_piece(const es_tok *t, const char *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif
