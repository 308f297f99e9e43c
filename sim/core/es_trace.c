/* es_trace: see es_trace.h. */
#define _POSIX_C_SOURCE 200809L
#include "es_trace.h"
#include "es_fs.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct es_trace {
    es_atomic out;            /* PATH.tmp, renamed over PATH when the run finished */
    double ns_per_cycle;
    double start_ns, end_ns;  /* window; end < 0: open */
    int tracks;
    int first;                /* no event written yet (no comma) */
    unsigned char *flowing;   /* per request: its flow has started */
    int64_t n_flowing;
};

int es_trace_open(es_trace **out, const char *path, double clock_hz, double start_ns, double end_ns, es_err *e)
{
    *out = NULL;
    es_trace *t = calloc(1, sizeof *t);
    if (!t) return es_fail(e, "%s: out of memory", path);
    if (es_check_output(path, "a trace", e) || /* written beside it, renamed over it at the end */
        es_atomic_open(&t->out, path, "the trace", e)) {
        free(t);
        return -1;
    }
    t->ns_per_cycle = 1e9 / clock_hz;
    t->start_ns = start_ns;
    t->end_ns = end_ns;
    t->first = 1;
    fputs("{\"displayTimeUnit\": \"ns\", \"otherData\": {\"generator\": \"etchsim\", \"time\": \"simulated\"},\n"
          "\"traceEvents\": [\n", t->out.f);
    *out = t;
    return 0;
}

static void sep(es_trace *t)
{
    if (!t->first) fputs(",\n", t->out.f);
    t->first = 0;
}

/* the event [a, b] ns overlaps the window */
static int in_window(const es_trace *t, double a, double b)
{
    return b >= t->start_ns && (t->end_ns < 0 || a <= t->end_ns);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
    fputc('"', f);
}

int es_trace_track(es_trace *t, const char *name)
{
    int id = ++t->tracks;
    sep(t);
    fprintf(t->out.f, "{\"ph\": \"M\", \"pid\": 1, \"tid\": %d, \"name\": \"thread_name\", \"args\": {\"name\": ", id);
    json_str(t->out.f, name);
    fprintf(t->out.f, "}},\n{\"ph\": \"M\", \"pid\": 1, \"tid\": %d, \"name\": \"thread_sort_index\", \"args\": {\"sort_index\": %d}}",
            id, id);
    return id;
}

static int flow_started(es_trace *t, int64_t request)
{
    if (request < 0) return 1;
    if (request >= t->n_flowing) {
        int64_t n = t->n_flowing ? t->n_flowing : 1024;
        while (n <= request) n *= 2;
        unsigned char *p = realloc(t->flowing, (size_t)n);
        if (!p) return 1; /* no memory: the flow goes unmarked, the trace stays valid */
        memset(p + t->n_flowing, 0, (size_t)(n - t->n_flowing));
        t->flowing = p;
        t->n_flowing = n;
    }
    int was = t->flowing[request];
    t->flowing[request] = 1;
    return was;
}

void es_trace_span(es_trace *t, int track, int64_t start, int64_t end, const char *op, int64_t request, int64_t pos,
                   int64_t n)
{
    double a = (double)start * t->ns_per_cycle, b = (double)end * t->ns_per_cycle;
    if (!in_window(t, a, b)) return;
    sep(t);
    fprintf(t->out.f, "{\"ph\": \"X\", \"pid\": 1, \"tid\": %d, \"ts\": %.3f, \"dur\": %.3f, \"name\": ", track, a / 1e3,
            (b - a) / 1e3);
    json_str(t->out.f, op);
    fprintf(t->out.f, ", \"args\": {\"request\": %lld, \"pos\": %lld, \"tokens\": %lld}}", (long long)request, (long long)pos,
            (long long)n);
}

void es_trace_flow(es_trace *t, int track, int64_t c, int64_t request, int last)
{
    double a = (double)c * t->ns_per_cycle;
    if (request < 0 || !in_window(t, a, a)) return;
    int started = flow_started(t, request);
    if (last && !started) return; /* a flow that never started in the window */
    sep(t);
    fprintf(t->out.f, "{\"ph\": \"%s\", \"pid\": 1, \"tid\": %d, \"ts\": %.3f, \"id\": %lld, \"cat\": \"request\", "
                  "\"name\": \"request %lld\", \"bp\": \"e\"}",
            last ? "f" : started ? "t" : "s", track, a / 1e3, (long long)request, (long long)request);
}

void es_trace_counter(es_trace *t, const char *name, int64_t c, double value)
{
    double a = (double)c * t->ns_per_cycle;
    if (!in_window(t, a, a)) return;
    sep(t);
    fprintf(t->out.f, "{\"ph\": \"C\", \"pid\": 1, \"ts\": %.3f, \"name\": ", a / 1e3);
    json_str(t->out.f, name);
    fprintf(t->out.f, ", \"args\": {\"value\": %.17g}}", value);
}

int es_trace_close(es_trace *t, int finished, es_err *e)
{
    if (!t) return 0;
    int rc = 0;
    fputs("\n]}\n", t->out.f);
    if (!finished) es_atomic_abort(&t->out);
    else if (es_check_output(t->out.path, "a trace", e)) { /* it may have changed while the run ran */
        rc = -1;
        es_atomic_abort(&t->out);
    } else {
        rc = es_atomic_commit(&t->out, e);
    }
    free(t->flowing);
    free(t);
    return rc;
}

int es_trace_parse_window(const char *s, double *start_ns, double *end_ns)
{
    const char *colon = strchr(s, ':');
    if (!colon) return -1;
    *start_ns = 0;
    *end_ns = -1;
    char *end;
    if (colon != s) {
        errno = 0;
        *start_ns = strtod(s, &end);
        if (errno || end != colon || *start_ns < 0) return -1;
    }
    if (colon[1]) {
        errno = 0;
        *end_ns = strtod(colon + 1, &end);
        if (errno || *end || *end_ns < *start_ns) return -1;
    }
    return 0;
}
