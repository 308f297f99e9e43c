/* es_trace: unit occupancy as a Chrome trace-event file (JSON object form,
 * https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU),
 * which Perfetto and chrome://tracing open. One track (thread) per unit; a
 * complete ("X") event per work item a unit served, named by its op and
 * carrying its sequence, first position and tokens; flow events ("s", "t",
 * "f", id = the request) that follow each sequence from unit to unit; and
 * counters ("C") for KV positions held and sequences in flight.
 *
 * Events are written as they happen (memory stays flat) to PATH.tmp, which
 * es_trace_close renames to PATH only for a run that finished: a killed or
 * failed run never leaves a trace that looks complete, and one stopped by
 * SIGINT, SIGTERM or SIGHUP removes PATH.tmp too (es_cleanup, es_proc.h). Times are simulated:
 * cycles at the chip's clock, written in microseconds with nanosecond
 * resolution. A window [start_ns, end_ns] keeps only the events that overlap it. */
#ifndef ES_TRACE_H
#define ES_TRACE_H
#include <stdint.h>
#include "es_err.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct es_trace es_trace;

/* end_ns < 0: no upper bound. */
int es_trace_open(es_trace **t, const char *path, double clock_hz, double start_ns, double end_ns, es_err *e);
/* A track for a unit; its id for the calls below. Tracks sort in creation order. */
int es_trace_track(es_trace *t, const char *name);
/* Unit `track` served a work item from cycle start to end: op, request (the
 * host's id of its sequence; a group's first), first position and tokens. */
void es_trace_span(es_trace *t, int track, int64_t start, int64_t end, const char *op, int64_t request,
                   int64_t pos, int64_t n);
/* The request's flow passes track at cycle c (inside a span there): its first
 * call starts the flow; last = 1 ends it (its last token reached the host). */
void es_trace_flow(es_trace *t, int track, int64_t c, int64_t request, int last);
/* A counter's value from cycle c on. */
void es_trace_counter(es_trace *t, const char *name, int64_t c, double value);
/* Finish the file; finished = 0 (a failed run) removes it instead. Frees t. */
int es_trace_close(es_trace *t, int finished, es_err *e);
/* Parse "START:END" in ns (either may be empty: from the beginning, to the end). */
int es_trace_parse_window(const char *s, double *start_ns, double *end_ns);

#ifdef __cplusplus
}
#endif
#endif
