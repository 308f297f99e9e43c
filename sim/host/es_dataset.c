/* es_dataset: streaming CSV and JSONL readers and the demo generator (see
 * es_dataset.h). CSV follows RFC 4180: fields separated by commas, a field
 * may be quoted, a quote inside a quoted field is doubled, quoted fields may
 * hold commas and line breaks, over any number of lines; CRLF and LF both end
 * a record. A record is held whole up to ES_REC_MAX_BYTES; past that it is
 * read on, without keeping it, to its end and skipped as one bad record (so
 * reading never resumes inside its quotes). A quoted field still open at the
 * end of the file, or a record of several lines that does not parse into the
 * header's columns, is taken as an unbalanced quote on its first line: that
 * line is bad and reading resumes at the next. */
#define _POSIX_C_SOURCE 200809L
#include "es_dataset.h"
#include "es_cfg.h"
#include "es_fs.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Read one physical line (with its terminator) onto d->buf at buf_len.
 * Returns bytes read, 0 at EOF, -1 when the buffer would pass ES_REC_MAX_BYTES
 * (the bytes that fit are kept, the rest of the line is left unread: the
 * caller reads on to where its record ends), -3 out of memory. */
static long read_line(es_dataset *d)
{
    long got = 0;
    int c;
    while ((c = fgetc(d->f)) != EOF) {
        if (d->buf_len >= (size_t)ES_REC_MAX_BYTES) {
            ungetc(c, d->f);
            return -1;
        }
        if (d->buf_len + 2 > d->buf_cap) {
            size_t cap = d->buf_cap ? 2 * d->buf_cap : 4096;
            if (cap > (size_t)ES_REC_MAX_BYTES + 1) cap = (size_t)ES_REC_MAX_BYTES + 1;
            char *b = realloc(d->buf, cap);
            if (!b) return -3;
            d->buf = b;
            d->buf_cap = cap;
        }
        d->buf[d->buf_len++] = (char)c;
        d->buf[d->buf_len] = 0;
        got++;
        if (c == '\n') break;
    }
    if (got) d->line++;
    return got;
}

/* The rest of an over-long line, unread (a JSONL line has no quotes to span lines). */
static void skip_line(es_dataset *d)
{
    int c;
    while ((c = fgetc(d->f)) != EOF && c != '\n') {}
    d->line++;
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

/* 1 when s[0..len) holds an odd number of quotes: a record read so far ends inside a quoted field
 * (a doubled quote toggles twice). */
static int quotes_odd(const char *s, size_t len)
{
    int odd = 0;
    for (size_t i = 0; i < len; i++) odd ^= s[i] == '"';
    return odd;
}

/* csv_split's checks fed a byte at a time, keeping no text: for a record past ES_REC_MAX_BYTES,
 * whether it is one well-formed record and of how many fields. Fed every byte but the record's
 * last line feed. */
typedef struct csv_scan {
    int state;      /* 0 a field's start, 1 an unquoted field, 2 quoted, 3 a quote seen inside quotes */
    int cr;         /* a carriage return outside quotes: fine only at the record's end */
    int bad;
    int64_t commas; /* fields ended by a comma */
} csv_scan;

static void scan_byte(csv_scan *s, int c)
{
    if (s->bad) return;
    if (s->state == 2) {
        if (c == '"') s->state = 3;
        return;
    }
    if (s->cr && c != '\r') { s->bad = 1; return; }
    if (c == '\r') { s->cr = 1; return; }
    if (c == ',') { s->commas++; s->state = 0; return; }
    if (s->state == 0) s->state = c == '"' ? 2 : 1;
    else if (s->state == 3) {
        if (c == '"') s->state = 2; /* a doubled quote */
        else s->bad = 1;            /* text after a closing quote */
    } else if (c == '"') s->bad = 1; /* a quote inside an unquoted field */
}

/* A bad record (reason written); in the header it is an error: the next line would become the header. */
static int csv_bad(es_dataset *d, const char *reason, es_err *e)
{
    if (!d->names) return es_fail(e, "%s: %s, in the header line: nothing after it can be read", d->path, reason);
    return ES_REC_BAD;
}

/* The record starting at line start_line is taken as an unbalanced quote on that line: bad, and
 * reading resumes on the next line, at file offset first_end (-1: that line ran to the end of the file). */
static int csv_unbalanced(es_dataset *d, int64_t start_line, int64_t first_end, char *reason, size_t rn, es_err *e)
{
    if (first_end >= 0 && fseek(d->f, (long)first_end, SEEK_SET)) return es_fail(e, "%s: cannot seek", d->path);
    d->line = start_line;
    snprintf(reason, rn, "line %lld: unbalanced quote", (long long)start_line);
    return csv_bad(d, reason, e);
}

/* A record past ES_REC_MAX_BYTES: buf holds its first bytes, `odd` whether they end inside quotes.
 * Read on to its end (a line feed outside quotes), keeping nothing. */
static int csv_too_long(es_dataset *d, int64_t start_line, long first_pos, size_t first_len, int odd, char *reason,
                        size_t rn, es_err *e)
{
    csv_scan sc = {0};
    for (size_t k = 0; k < d->buf_len; k++) scan_byte(&sc, (unsigned char)d->buf[k]);
    int64_t at = (int64_t)first_pos + (int64_t)d->buf_len; /* file offset of the next byte */
    int64_t first_end = first_len ? (int64_t)first_pos + (int64_t)first_len : -1;
    int c, partial = 1;
    while ((c = fgetc(d->f)) != EOF) {
        at++;
        odd ^= c == '"';
        if (c == '\n') {
            d->line++;
            partial = 0;
            if (first_end < 0) first_end = at;
            if (!odd) break;
            scan_byte(&sc, c);
            continue;
        }
        partial = 1;
        scan_byte(&sc, c);
    }
    if (c == EOF && ferror(d->f)) return es_fail(e, "%s: read error", d->path);
    if (c == EOF && partial) d->line++; /* a last line without a line feed */
    if (c == EOF && odd) return csv_unbalanced(d, start_line, first_end, reason, rn, e);
    if (first_end < 0 || first_end == at) { /* one line */
        snprintf(reason, rn, "line %lld: longer than %d bytes", (long long)start_line, ES_REC_MAX_BYTES);
        return csv_bad(d, reason, e);
    }
    if (sc.bad || sc.state == 2 || (d->names && sc.commas + 1 != d->n_names))
        return csv_unbalanced(d, start_line, first_end, reason, rn, e);
    snprintf(reason, rn, "lines %lld-%lld: a record of more than %d bytes (a quoted field over %lld lines)",
             (long long)start_line, (long long)d->line, ES_REC_MAX_BYTES, (long long)(d->line - start_line + 1));
    return csv_bad(d, reason, e);
}

static int csv_next(es_dataset *d, es_record *rec, char *reason, size_t rn, es_err *e)
{
    for (;;) {
        d->buf_len = 0;
        long first_pos = ftell(d->f);
        if (first_pos < 0) return es_fail(e, "%s: cannot tell the read position", d->path);
        int64_t start_line = d->line + 1;
        rec->line = start_line;
        long got = read_line(d);
        if (got == 0) return ES_REC_EOF;
        if (got == -3) return es_fail(e, "%s: out of memory", d->path);
        if (got > 0 && d->buf_len <= 2 && (d->buf[0] == '\n' || d->buf[0] == '\r')) continue; /* blank line */
        size_t first_len = got > 0 ? d->buf_len : 0;
        int odd = quotes_odd(d->buf, d->buf_len), lines = 1;
        while (got > 0 && odd) { /* a quoted field goes on to the next line */
            size_t from = d->buf_len;
            got = read_line(d);
            if (got == -3) return es_fail(e, "%s: out of memory", d->path);
            odd ^= quotes_odd(d->buf + from, d->buf_len - from);
            if (got > 0) lines++;
        }
        if (got < 0) return csv_too_long(d, start_line, first_pos, first_len, odd, reason, rn, e);
        if (odd) /* still open at the end of the file */
            return csv_unbalanced(d, start_line, (int64_t)first_pos + (int64_t)first_len, reason, rn, e);
        int n = csv_split(d, d->buf_len);
        if (n == -3) return es_fail(e, "%s: out of memory", d->path);
        if (lines > 1 && (n < 0 || (d->names && n != d->n_names)))
            /* a quote opened on the first line and closed by some later line's
             * quote: take the first line as the bad one and read on from its second */
            return csv_unbalanced(d, start_line, (int64_t)first_pos + (int64_t)first_len, reason, rn, e);
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
        rec->shared_names = 1;
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
        if (got == -3) return es_fail(e, "%s: out of memory", d->path);
        rec->line = start_line;
        if (got < 0) {
            skip_line(d);
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
