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

static const char *fuzz_path(const char *suffix)
{
    static char path[128];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/etchsim-fuzz-%d%s", (int)getpid(), suffix);
    return path;
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
