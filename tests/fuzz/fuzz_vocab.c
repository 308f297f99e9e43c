/* fuzz_vocab: the tokenizer loaders on arbitrary bytes: a tiktoken file (first byte even) or a
 * GGUF file's tokenizer metadata (odd); a vocabulary that loads must encode a text and give back
 * its pieces without crashing. */
#include "fuzz_common.h"
#include "es_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int gguf = data[0] & 1;
    const char *p = fuzz_path(gguf ? ".gguf" : ".tiktoken");
    if (fuzz_write(p, data + 1, size - 1)) return 0;
    es_tok *t = NULL;
    es_err e;
    if ((gguf ? es_tok_load_gguf(&t, p, &e) : es_tok_load_tiktoken(&t, p, &e)) != 0) return 0;
    static const char text[] = "Once upon a time, \xc3\xa9t\xc3\xa9 12345 \xe2\x96\x81 <0x41> a\n\n b";
    int32_t ids[256];
    int64_t n = es_tok_encode(t, text, sizeof text - 1, ids, 256);
    if (n < 0) abort();
    char piece[64];
    for (int64_t i = 0; i < n && i < 256; i++) { /* -1: bytes the vocabulary cannot spell */
        if (ids[i] < -1 || ids[i] >= es_tok_vocab_size(t)) abort();
        if (ids[i] >= 0 && es_tok_piece(t, ids[i], piece, sizeof piece) > 65535) abort();
    }
    /* special-token parsing splits on the vocabulary's control tokens first; BOS/EOS as the file says */
    static const char chat[] = "<s><|eot_id|>x</s><|im_start|>user\n<unk>hi<|im_end|><|eot_id";
    n = es_tok_encode_flags(t, chat, sizeof chat - 1, ES_TOK_PARSE_SPECIAL | ES_TOK_ADD_SPECIAL, ids, 256);
    if (n < 0) abort();
    for (int64_t i = 0; i < n && i < 256; i++)
        if (ids[i] < -1 || ids[i] >= es_tok_vocab_size(t)) abort();
    if (es_tok_special_id(t, "<|eot_id|>") >= es_tok_vocab_size(t)) abort();
    es_tok_free(t);
    return 0;
}
