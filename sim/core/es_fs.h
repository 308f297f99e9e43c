/* es_fs: the few file-system helpers the loaders share, and outputs written whole or not at all. */
#ifndef ES_FS_H
#define ES_FS_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "es_err.h"
#ifdef __cplusplus
extern "C" {
#endif

int es_is_file(const char *path);   /* a regular file */
int es_is_dir(const char *path);    /* a folder */
int es_ends_with(const char *s, const char *suffix);
/* An output written beside `path` and renamed over it may replace only a regular file: a folder,
 * device or pipe there is an error naming the path and what it was meant for (`what`). */
int es_check_output(const char *path, const char *what, es_err *e);
/* An output written whole or not at all: es_atomic_open creates PATH.tmp beside PATH, registered with
 * es_cleanup_add (es_proc.h) so a process stopped by a signal removes it; es_atomic_commit closes it and
 * renames it over PATH; es_atomic_abort (or a failed commit) removes it, leaving PATH as it was. Check
 * the path first with es_check_output when only a regular file may be replaced. Messages name the file
 * and `what` (a static string: "the trace"): "PATH.tmp: cannot write the trace: REASON" (creating,
 * writing or closing it), "PATH: cannot move the trace into place: REASON" (renaming). */
typedef struct es_atomic {
    FILE *f;            /* the temporary, open for writing ("wb"); NULL once committed or aborted */
    const char *what;   /* what the output is, for messages */
    char path[4096];    /* the output */
    char tmp[4100];     /* path + ".tmp" */
    int cleanup;        /* tmp's es_cleanup entry, or -1 */
} es_atomic;
int es_atomic_open(es_atomic *a, const char *path, const char *what, es_err *e);
/* After a successful open: a write error seen on the stream (ferror), a failed close or a failed rename is
 * an error, and then PATH.tmp is removed. */
int es_atomic_commit(es_atomic *a, es_err *e);
/* Nothing to do once committed or aborted, or when the open failed. */
void es_atomic_abort(es_atomic *a);
/* Read exactly n bytes at offset off of fd; -1 on an error or a short file. */
int es_pread_all(int fd, void *buf, int64_t n, int64_t off);
/* Open a regular file for reading; a folder, FIFO or device is an error naming the
 * path and what was `expected` ("a ROM image file"), as is a file that will not open. */
FILE *es_fopen_regular(const char *path, const char *expected, es_err *e);
/* Read a whole file of at most max bytes into a malloc'd, NUL-terminated
 * buffer (*out, *len); errors name the file. */
int es_read_file(const char *path, size_t max, char **out, size_t *len, es_err *e);
/* A text file (a rule, a template, JSON) holds no NUL byte: C strings would end at it and drop the
 * rest. 0 when buf[0..n) has none, else -1 and an error naming the path, the first NUL's byte offset
 * and what the file should be (`expected`: "a text file"). */
int es_check_text(const char *path, const char *buf, size_t n, const char *expected, es_err *e);
/* target (an absolute path) as seen from folder dir (absolute, or relative to the working folder):
 * "../../rtl-ref/x.json"; the absolute target if dir cannot be resolved. -1 if out is too small. */
int es_relpath(const char *target, const char *dir, char *out, size_t n);
/* FNV-1a 64 over bytes, continuing from h (start with ES_FNV_OFFSET): recipe and source hashes. */
#define ES_FNV_OFFSET 0xcbf29ce484222325ULL
uint64_t es_fnv1a(uint64_t h, const void *p, size_t n);

#ifdef __cplusplus
}
#endif
#endif
