/* fuzz_common: libFuzzer harness helpers: each input is written to a
 * private temporary file, because the parsers under test read files. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The input's file, named by the suffix its format needs (one target may use several): under
 * $FUZZ_TMPDIR (scripts/fuzz gives a folder it removes afterwards, so a killed run leaves nothing
 * behind), else /tmp; every one is removed when the target exits. */
static char fuzz_files[4][512];
static void fuzz_unlink(void)
{
    for (int i = 0; i < 4; i++)
        if (fuzz_files[i][0]) unlink(fuzz_files[i]);
}

static const char *fuzz_path(const char *suffix)
{
    char path[512];
    const char *dir = getenv("FUZZ_TMPDIR");
    snprintf(path, sizeof path, "%s/etchsim-fuzz-%d%s", dir && dir[0] ? dir : "/tmp", (int)getpid(), suffix);
    for (int i = 0; i < 4; i++) {
        if (!strcmp(fuzz_files[i], path)) return fuzz_files[i];
        if (!fuzz_files[i][0]) {
            if (i == 0) atexit(fuzz_unlink);
            snprintf(fuzz_files[i], sizeof fuzz_files[i], "%s", path);
            return fuzz_files[i];
        }
    }
    abort(); /* more than four formats in one target */
}

static int fuzz_write(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, size, f);
    fclose(f);
    return w == size ? 0 : -1;
}
#endif
