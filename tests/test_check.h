/* test_check: what the C tests share: the CHECK macro and its counters, and
 * where the real model for the functional tests is. */
#ifndef TEST_CHECK_H
#define TEST_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include "es_fs.h"

static int fails = 0, passes = 0;
#define CHECK(cond, ...) do { if (cond) passes++; else { fails++; \
    fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); \
    fprintf(stderr, "\n"); } } while (0)

/* stories260K.gguf in $ETCHSIM_TEST_MODELS, else dir (else ../shared/models),
 * into out; 0 when it is there, else -1 after saying plainly that `test` skips. */
static inline int test_model_path(const char *test, const char *dir, char *out, size_t n)
{
    const char *env = getenv("ETCHSIM_TEST_MODELS");
    if (env && *env) dir = env;
    if (!dir || !*dir) dir = "../shared/models";
    snprintf(out, n, "%s/stories260K.gguf", dir);
    if (es_is_file(out)) return 0;
    fprintf(stderr, "%s: SKIPPED: %s not found (set ETCHSIM_TEST_MODELS to the folder holding stories260K.gguf)\n",
            test, out);
    return -1;
}
#endif
