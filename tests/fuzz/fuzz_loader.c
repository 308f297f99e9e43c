/* fuzz_loader: the weight file readers on arbitrary bytes: open, bind to
 * the tiny test model, read one row of every tensor found. Built twice by
 * scripts/fuzz: FUZZ_SUFFIX ".safetensors" (fuzz_safetensors) and ".gguf"
 * (fuzz_gguf); es_wsrc_open picks the parser by the file's magic, and the
 * seed corpora steer each target to its format. A GGUF input is also read
 * as a model (its llama.* metadata) and as a tokenizer (SentencePiece or
 * BPE from its tokenizer.ggml.* metadata), which then encodes a string. */
#include "fuzz_common.h"
#include "es_model.h"
#include "es_tok.h"
#include "es_wsrc.h"

static es_model model;
static int have_model;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!have_model) {
        es_err e;
        setenv("ETCHSIM_MODELS", ETCHSIM_MODELS_DIR, 1);
        if (es_model_load(&model, "tiny-llama", &e)) abort();
        have_model = 1;
    }
    const char *p = fuzz_path(FUZZ_SUFFIX);
    if (fuzz_write(p, data, size)) return 0;
    es_wsrc s;
    es_err e;
    if (es_wsrc_open(&s, p, NULL, &e) == 0) {
        if (es_wsrc_bind(&s, &model, &e) == 0) {
            float row[1024];
            for (int i = 0; i < model.n_tensors; i++) es_wsrc_read_row(&s, i, 0, row, &e);
        }
        es_wsrc_close(&s);
    }
    es_model gm;
    if (es_model_load(&gm, p, &e) == 0) es_model_free(&gm);
    es_tok *t = NULL;
    if (es_tok_load_gguf(&t, p, &e) == 0) {
        int32_t ids[64];
        char piece[64];
        static const char text[] = "Once upon a time, caf\xc3\xa9 \xf0\x9f\x98\x80!";
        int64_t n = es_tok_encode(t, text, sizeof text - 1, ids, 64);
        for (int64_t i = 0; i < n && i < 64; i++) es_tok_piece(t, ids[i], piece, sizeof piece);
        es_tok_free(t);
    }
    return 0;
}
