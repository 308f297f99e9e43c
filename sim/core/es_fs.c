/* es_fs: file-system helpers (see es_fs.h). */
#define _POSIX_C_SOURCE 200809L
#include "es_fs.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int es_is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int es_is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int es_ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int es_read_file(const char *path, size_t max, char **out, size_t *len, es_err *e)
{
    *out = NULL;
    *len = 0;
    if (es_is_dir(path)) return es_fail(e, "%s: is a folder; expected a file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return es_fail(e, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END)) { fclose(f); return es_fail(e, "%s: cannot seek (expected a regular file)", path); }
    long n = ftell(f);
    if (n < 0 || (size_t)n > max) {
        fclose(f);
        return es_fail(e, "%s: %ld bytes; expected a file of at most %zu bytes", path, n, max);
    }
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (!buf) { fclose(f); return es_fail(e, "%s: out of memory", path); }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) { free(buf); return es_fail(e, "%s: short read", path); }
    buf[n] = 0;
    *out = buf;
    *len = (size_t)n;
    return 0;
}

int es_pread_all(int fd, void *buf, int64_t n, int64_t off)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, (size_t)n, (off_t)off);
        if (r <= 0) return -1;
        p += r;
        n -= r;
        off += r;
    }
    return 0;
}
