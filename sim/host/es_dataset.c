/* es_dataset: streaming CSV and JSONL readers and the demo generator (see
 * es_dataset.h). CSV follows RFC 4180: fields separated by commas, a field
 * may be quoted, a quote inside a quoted field is doubled, quoted fields may
 * hold commas and line breaks; CRLF and LF both end a record. A quoted field
 * still open after 64 lines or ES_REC_MAX_BYTES, or a record of several lines
 * that does not parse into the header's columns, is taken as an unbalanced
 * quote on its first line: that line is bad and reading resumes at the next. */
#define _POSIX_C_SOURCE 200809L
#include "es_dataset.h"
#include "es_cfg.h"
#include "es_fs.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CSV_MAX_LINES 64

struct es_dataset {
    char path[512];
    FILE *f;
    int jsonl;
    int64_t line;          /* lines read so far */
    char *buf;             /* current record text */
    size_t buf_len, buf_cap;
    char **names;          /* CSV header, or the current JSON object's keys */
    int any;               /* a record (good or bad) has been read */
    int n_names, cap_names;
    char **values;         /* pointers into vbuf */
    int cap_values;
    char *vbuf;            /* unescaped field text */
    size_t vbuf_cap;
    cJSON *json;           /* the current JSONL object */
    char **jtext;          /* printed non-string JSON values */
    int n_jtext;
};

size_t es_utf8_seq(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (len > n) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int es_utf8_valid(const char *str, size_t n)
{
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = es_utf8_seq(str + i, n - i))) return 0;
    return 1;
}

/* Read one physical line (with its terminator) into d->buf at buf_len.
 * Returns bytes read, 0 at EOF, -1 when the line would exceed the limit (it
 * is then skipped to its end). */
static long read_line(es_dataset *d)
{
    long got = 0;
    int c;
    while ((c = fgetc(d->f)) != EOF) {
        if (d->buf_len + 2 > d->buf_cap) {
            size_t cap = d->buf_cap ? 2 * d->buf_cap : 4096;
            if (cap > (size_t)ES_REC_MAX_BYTES + 2) {
                while (c != EOF && c != '\n') c = fgetc(d->f);
                d->line++;
                return -1;
            }
            char *b = realloc(d->buf, cap);
            if (!b) return -1;
            d->buf = b;
            d->buf_cap = cap;
        }
        d->buf[d->buf_len++] = (char)c;
        got++;
        if (c == '\n') break;
    }
    if (got) d->line++;
    if (d->buf) d->buf[d->buf_len] = 0;
    return got;
}

/* Split buf[0..len) into fields; returns the count, or -1 (unbalanced quote),
 * -2 (stray quote in an unquoted field), -4 (a carriage return inside the line, outside quotes:
 * CR-only line endings). */
static int csv_split(es_dataset *d, size_t len)
{
    if (d->vbuf_cap < len + 1) {
        char *v = realloc(d->vbuf, len + 1);
        if (!v) return -3;
        d->vbuf = v;
        d->vbuf_cap = len + 1;
    }
    while (len > 0 && (d->buf[len - 1] == '\n' || d->buf[len - 1] == '\r')) len--;
    int n = 0;
    size_t i = 0, o = 0;
    for (;;) {
        if (n == d->cap_values) {
            int cap = d->cap_values ? 2 * d->cap_values : 16;
            char **v = realloc(d->values, (size_t)cap * sizeof *v);
            if (!v) return -3;
            d->values = v;
            d->cap_values = cap;
        }
        d->values[n++] = d->vbuf + o;
        if (i < len && d->buf[i] == '"') {
            i++;
            for (;;) {
                if (i >= len) return -1;
                if (d->buf[i] == '"') {
                    if (i + 1 < len && d->buf[i + 1] == '"') { d->vbuf[o++] = '"'; i += 2; continue; }
                    i++;
                    break;
                }
                d->vbuf[o++] = d->buf[i++];
            }
            if (i < len && d->buf[i] != ',') return -2;
        } else {
            while (i < len && d->buf[i] != ',') {
                if (d->buf[i] == '"') return -2;
                if (d->buf[i] == '\r') return -4;
                d->vbuf[o++] = d->buf[i++];
            }
        }
        d->vbuf[o++] = 0;
        if (i >= len) break;
        i++; /* the comma */
    }
    return n;
}

/* Whether buf[0..len) ends inside a quoted field. */
static int open_quote(const char *s, size_t len)
{
    int in = 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '"') in = !in; /* a doubled quote toggles twice */
    return in;
}

static int csv_next(es_dataset *d, es_record *rec, char *reason, size_t rn, es_err *e)
{
    for (;;) {
        d->buf_len = 0;
        long first_pos = ftell(d->f);
        int64_t start_line = d->line + 1;
        long got = read_line(d);
        if (got == 0) return ES_REC_EOF;
        if (got < 0) {
            snprintf(reason, rn, "line %lld: longer than %d bytes", (long long)start_line, ES_REC_MAX_BYTES);
            rec->line = start_line;
            return ES_REC_BAD;
        }
        size_t first_len = d->buf_len;
        if (d->buf_len <= 2 && (d->buf[0] == '\n' || d->buf[0] == '\r')) continue; /* blank line */
        int lines = 1;
        while (open_quote(d->buf, d->buf_len) && lines < CSV_MAX_LINES) {
            long more = read_line(d);
            if (more <= 0) break;
            lines++;
        }
        rec->line = start_line;
        if (open_quote(d->buf, d->buf_len)) {
            /* resume right after the record's first line */
            if (fseek(d->f, first_pos + (long)first_len, SEEK_SET))
                return es_fail(e, "%s: cannot seek", d->path);
            d->line = start_line;
            snprintf(reason, rn, "line %lld: unbalanced quote", (long long)start_line);
            return ES_REC_BAD;
        }
        int n = csv_split(d, d->buf_len);
        if (n == -3) return es_fail(e, "%s: out of memory", d->path);
        if (lines > 1 && (n < 0 || (d->names && n != d->n_names))) {
            /* a quote opened on the first line and closed by some later line's
             * quote: take the first line as the bad one and read on from its second */
            if (fseek(d->f, first_pos + (long)first_len, SEEK_SET)) return es_fail(e, "%s: cannot seek", d->path);
            d->line = start_line;
            snprintf(reason, rn, "line %lld: unbalanced quote", (long long)start_line);
            return ES_REC_BAD;
        }
        const char *bad = !es_utf8_valid(d->buf, d->buf_len) ? "invalid UTF-8"
                        : memchr(d->buf, 0, d->buf_len) ? "a NUL byte (a field cannot hold one)"
                        : n == -1 ? "unbalanced quote"
                        : n == -2 ? "quote inside an unquoted field"
                        : n == -4 ? "a carriage return without a line feed (CR-only line endings: convert the file "
                                    "to LF or CRLF)"
                                  : NULL;
        if (bad && !d->names) /* a bad header would make the first record the header: nothing can be read */
            return es_fail(e, "%s: line %lld: the header line has %s", d->path, (long long)start_line, bad);
        if (bad) {
            snprintf(reason, rn, "line %lld: %s", (long long)start_line, bad);
            return ES_REC_BAD;
        }
        if (!d->names) { /* the header */
            d->names = calloc((size_t)n, sizeof *d->names);
            if (!d->names) return es_fail(e, "%s: out of memory", d->path);
            for (int k = 0; k < n; k++)
                if (!(d->names[k] = strdup(d->values[k]))) return es_fail(e, "%s: out of memory", d->path);
            d->n_names = n;
            continue;
        }
        if (n != d->n_names) {
            snprintf(reason, rn, "line %lld: %d fields, the header has %d", (long long)start_line, n, d->n_names);
            return ES_REC_BAD;
        }
        rec->n_fields = n;
        rec->names = (const char *const *)d->names;
        rec->values = (const char *const *)d->values;
        return ES_REC_OK;
    }
}

static void json_clear(es_dataset *d)
{
    cJSON_Delete(d->json);
    d->json = NULL;
    for (int i = 0; i < d->n_jtext; i++) cJSON_free(d->jtext[i]);
    d->n_jtext = 0;
}

static int jsonl_next(es_dataset *d, es_record *rec, char *reason, size_t rn, es_err *e)
{
    for (;;) {
        json_clear(d);
        d->buf_len = 0;
        int64_t start_line = d->line + 1;
        long got = read_line(d);
        if (got == 0) return ES_REC_EOF;
        rec->line = start_line;
        if (got < 0) {
            snprintf(reason, rn, "line %lld: longer than %d bytes", (long long)start_line, ES_REC_MAX_BYTES);
            return ES_REC_BAD;
        }
        size_t k = 0;
        while (k < d->buf_len && (d->buf[k] == ' ' || d->buf[k] == '\t' || d->buf[k] == '\r' || d->buf[k] == '\n')) k++;
        if (k == d->buf_len) continue; /* blank line */
        if (!es_utf8_valid(d->buf, d->buf_len) || memchr(d->buf, 0, d->buf_len)) {
            snprintf(reason, rn, "line %lld: %s", (long long)start_line,
                     memchr(d->buf, 0, d->buf_len) ? "a NUL byte (JSON text cannot hold one raw)" : "invalid UTF-8");
            return ES_REC_BAD;
        }
        const char *end = NULL;
        d->json = cJSON_ParseWithLengthOpts(d->buf, d->buf_len, &end, 0);
        if (!cJSON_IsObject(d->json)) {
            char why[160] = "not a JSON object";
            if (!d->json) {
                es_json_error_at(d->buf, d->buf_len, end, why, sizeof why);
                char *at = strstr(why, " at line"); /* the record's line is named instead */
                if (at) *at = 0;
            }
            snprintf(reason, rn, "line %lld: %s", (long long)start_line, why);
            return ES_REC_BAD;
        }
        /* one object per line: anything after it but blanks (a second object) is not dropped silently */
        for (size_t at = end ? (size_t)(end - d->buf) : d->buf_len; at < d->buf_len; at++)
            if (d->buf[at] != ' ' && d->buf[at] != '\t' && d->buf[at] != '\r' && d->buf[at] != '\n') {
                snprintf(reason, rn, "line %lld: text after the JSON object (one object per line)", (long long)start_line);
                return ES_REC_BAD;
            }
        int n = cJSON_GetArraySize(d->json);
        if (n > d->cap_values || n > d->cap_names) {
            char **v = realloc(d->values, (size_t)n * sizeof *v);
            char **nm = v ? realloc(d->names, (size_t)n * sizeof *nm) : NULL;
            char **jt = nm ? realloc(d->jtext, (size_t)n * sizeof *jt) : NULL;
            if (v) d->values = v;
            if (nm) d->names = nm;
            if (!jt) return es_fail(e, "%s: out of memory", d->path);
            d->jtext = jt;
            d->cap_values = d->cap_names = n;
        }
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, d->json) {
            d->names[i] = it->string;
            if (cJSON_IsString(it)) {
                d->values[i] = it->valuestring;
            } else {
                char *t = cJSON_PrintUnformatted(it);
                if (!t) return es_fail(e, "%s: out of memory", d->path);
                d->jtext[d->n_jtext++] = t;
                d->values[i] = t;
            }
            i++;
        }
        rec->n_fields = n;
        rec->names = (const char *const *)d->names;
        rec->values = (const char *const *)d->values;
        return ES_REC_OK;
    }
}

int es_dataset_open(es_dataset **out, const char *path, es_err *e)
{
    *out = NULL;
    int jsonl = es_ends_with(path, ".jsonl") || es_ends_with(path, ".ndjson");
    if (!jsonl && !es_ends_with(path, ".csv"))
        return es_fail(e, "%s: expected a .csv or .jsonl file", path);
    return es_dataset_open_as(out, path, jsonl, e);
}

int es_dataset_open_as(es_dataset **out, const char *path, int jsonl, es_err *e)
{
    *out = NULL;
    /* eval reads the data twice (its batch and the comparison batch): a pipe or device cannot be */
    FILE *f = es_fopen_regular(path, "a .csv or .jsonl file", e);
    if (!f) return -1;
    es_dataset *d = calloc(1, sizeof *d);
    if (!d) { fclose(f); return es_fail(e, "%s: out of memory", path); }
    snprintf(d->path, sizeof d->path, "%s", path);
    d->f = f;
    d->jsonl = jsonl;
    /* a UTF-8 byte-order mark (spreadsheet exports) is not part of the first column's name */
    unsigned char bom[3];
    if (fread(bom, 1, 3, f) != 3 || bom[0] != 0xEF || bom[1] != 0xBB || bom[2] != 0xBF) rewind(f);
    *out = d;
    return 0;
}

int es_dataset_next(es_dataset *d, es_record *rec, char *reason, size_t n, es_err *e)
{
    memset(rec, 0, sizeof *rec);
    if (reason && n) reason[0] = 0;
    int rc = d->jsonl ? jsonl_next(d, rec, reason, n, e) : csv_next(d, rec, reason, n, e);
    if (rc == ES_REC_EOF && ferror(d->f)) return es_fail(e, "%s: read error", d->path);
    if (rc == ES_REC_EOF && !d->jsonl && !d->names) return es_fail(e, "%s: empty file, expected a header line", d->path);
    if (rc == ES_REC_EOF && d->jsonl && !d->any) return es_fail(e, "%s: empty file, expected a JSON object per line", d->path);
    if (rc != ES_REC_EOF) d->any = 1;
    return rc;
}

void es_dataset_close(es_dataset *d)
{
    if (!d) return;
    if (d->f) fclose(d->f);
    if (!d->jsonl && d->names)
        for (int i = 0; i < d->n_names; i++) free(d->names[i]);
    json_clear(d);
    free(d->names);
    free(d->values);
    free(d->vbuf);
    free(d->buf);
    free(d->jtext);
    free(d);
}
