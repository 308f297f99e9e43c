/* es_dataset: records from a CSV (RFC 4180) or JSONL file, streamed one
 * at a time so memory stays flat however many records there are. A bad
 * record (unbalanced quotes, wrong column count, invalid UTF-8, malformed
 * JSON, an over-long line or CSV record) is returned as ES_REC_BAD with a
 * reason, and reading goes on after it. An unreadable or empty file, or a bad
 * CSV header, is an error. */
#ifndef ES_DATASET_H
#define ES_DATASET_H
#include <stddef.h>
#include <stdint.h>
#include "es_err.h"
#ifdef __cplusplus
extern "C" {
#endif

enum { ES_REC_ERR = -1, ES_REC_EOF = 0, ES_REC_OK = 1, ES_REC_BAD = 2 };

#define ES_REC_MAX_BYTES (1 << 20) /* a record (a CSV record with all its lines) longer than this is bad */

typedef struct es_record {
    int64_t line;          /* first line of the record, from 1 */
    int n_fields;
    const char *const *names;  /* (n_fields) column names (CSV header, JSON keys) */
    const char *const *values; /* (n_fields) values as text; valid until the next call */
    int shared_names;      /* 1: the names are the CSV header's, the same for every record; 0: JSONL, each its own */
} es_record;

typedef struct es_dataset es_dataset;

/* Open by extension: .csv or .jsonl (also .ndjson). */
int es_dataset_open(es_dataset **d, const char *path, es_err *e);
/* The same, with the format given (jsonl 0: CSV) instead of taken from the name's suffix. */
int es_dataset_open_as(es_dataset **d, const char *path, int jsonl, es_err *e);
/* ES_REC_OK / ES_REC_BAD (reason filled) / ES_REC_EOF / ES_REC_ERR (e filled). */
int es_dataset_next(es_dataset *d, es_record *rec, char *reason, size_t n, es_err *e);
void es_dataset_close(es_dataset *d);

/* 1 when s[0..n) is valid UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
int es_utf8_valid(const char *s, size_t n);
/* Bytes of the valid UTF-8 character at s[0..n), or 0 when it is not one. */
size_t es_utf8_seq(const char *s, size_t n);

/* The demo dataset: n card transactions (customer, their usual merchant
 * categories, merchant, merchant category, amount, time, location), about
 * 3% of them anomalous, deterministic from seed, written as RFC 4180 CSV. */
int es_demo_write(const char *path, int64_t n, uint64_t seed, es_err *e);
/* The same into a file of folder dir that has no name (O_TMPFILE; else one removed as soon as it
 * is made), open for reading at its start in *fd: nothing is left on disk however the process ends. */
int es_demo_open_unlinked(const char *dir, int64_t n, uint64_t seed, int *fd, es_err *e);

#ifdef __cplusplus
}
#endif
#endif
