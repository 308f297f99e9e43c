/* fuzz_loader: the weight file readers on arbitrary bytes: open, bind to
 * the tiny test model, read one row of every tensor found. Built twice by
 * scripts/fuzz: FUZZ_SUFFIX ".safetensors" (fuzz_safetensors) and ".gguf"
 * (fuzz_gguf); es_wsrc_open picks the parser by the file's magic, and the
 * seed corpora steer each target to its format. */
#include "fuzz_common.h"
#include "es_model.h"
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
    return 0;
}
