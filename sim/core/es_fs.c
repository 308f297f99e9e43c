/* es_fs: file-system helpers (see es_fs.h). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "es_fs.h"
#include "es_proc.h"
#include <errno.h>
#include <limits.h>
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

FILE *es_fopen_regular(const char *path, const char *expected, es_err *e)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) { /* opening a FIFO would wait for a writer */
        es_fail(e, S_ISDIR(st.st_mode) ? "%s: is a folder; expected %s" : "%s: not a regular file (a pipe or device); expected %s",
                path, expected);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) es_fail(e, "%s: cannot open: %s", path, strerror(errno));
    return f;
}

int es_read_file(const char *path, size_t max, char **out, size_t *len, es_err *e)
{
    *out = NULL;
    *len = 0;
    FILE *f = es_fopen_regular(path, "a file", e);
    if (!f) return -1;
    if (fseek(f, 0, SEEK_END)) { fclose(f); return es_fail(e, "%s: cannot seek", path); }
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

int es_check_text(const char *path, const char *buf, size_t n, const char *expected, es_err *e)
{
    const char *nul = memchr(buf, 0, n);
    if (!nul) return 0;
    return es_fail(e, "%s: a NUL byte at offset %zu: expected %s", path, (size_t)(nul - buf), expected);
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

int es_check_output(const char *path, const char *what, es_err *e)
{
    struct stat st;
    if (stat(path, &st) != 0 || S_ISREG(st.st_mode)) return 0; /* absent, or a file it may replace */
    return es_fail(e, "%s: exists and is not a regular file (%s); %s goes to a regular file", path,
                   S_ISDIR(st.st_mode) ? "a folder" : S_ISFIFO(st.st_mode) ? "a pipe" : "a device or socket", what);
}

int es_atomic_open(es_atomic *a, const char *path, const char *what, es_err *e)
{
    memset(a, 0, sizeof *a);
    a->what = what;
    a->cleanup = -1;
    if (strlen(path) >= sizeof a->path) return es_fail(e, "%s: path too long", path);
    snprintf(a->path, sizeof a->path, "%s", path);
    snprintf(a->tmp, sizeof a->tmp, "%s.tmp", path);
    a->cleanup = es_cleanup_add(a->tmp, 0);
    a->f = fopen(a->tmp, "wb");
    if (!a->f) {
        int err = errno;
        es_cleanup_drop(a->cleanup);
        a->cleanup = -1;
        return es_fail(e, "%s: cannot write %s: %s", a->tmp, what, strerror(err));
    }
    return 0;
}

int es_atomic_commit(es_atomic *a, es_err *e)
{
    int bad = ferror(a->f), err = errno, rc = 0; /* errno: the failed write's reason, if one failed */
    if (fclose(a->f)) {
        bad = 1;
        err = errno;
    }
    if (bad) {
        rc = es_fail(e, "%s: cannot write %s: %s", a->tmp, a->what, strerror(err ? err : EIO));
        remove(a->tmp);
    } else if (rename(a->tmp, a->path)) {
        rc = es_fail(e, "%s: cannot move %s into place: %s", a->path, a->what, strerror(errno));
        remove(a->tmp);
    }
    a->f = NULL;
    es_cleanup_drop(a->cleanup); /* renamed into place or removed */
    a->cleanup = -1;
    return rc;
}

void es_atomic_abort(es_atomic *a)
{
    if (!a->f) return;
    fclose(a->f);
    a->f = NULL;
    remove(a->tmp);
    es_cleanup_drop(a->cleanup);
    a->cleanup = -1;
}

uint64_t es_fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

int es_relpath(const char *target, const char *dir, char *out, size_t n)
{
    char d[PATH_MAX];
    if (target[0] != '/' || !realpath(dir, d)) return snprintf(out, n, "%s", target) < (int)n ? 0 : -1;
    /* the longest common prefix that ends at a folder boundary */
    size_t common = 0;
    for (size_t i = 0; target[i] && d[i] == target[i]; i++)
        if (target[i] == '/') common = i;
    size_t dl = strlen(d);
    if (dl == 1) return snprintf(out, n, "%s", target + 1) < (int)n ? 0 : -1; /* from the root */
    if (strncmp(target, d, dl) == 0 && target[dl] == '/') common = dl; /* target is inside dir */
    size_t len = 0;
    out[0] = 0;
    for (size_t i = common; i < dl; i++) /* one "../" per folder of dir below the common part */
        if (d[i] == '/') {
            if (len + 3 >= n) return -1;
            memcpy(out + len, "../", 4);
            len += 3;
        }
    const char *rest = target + common + (target[common] == '/');
    if (len + strlen(rest) + 1 > n) return -1;
    memcpy(out + len, rest, strlen(rest) + 1);
    return 0;
}
