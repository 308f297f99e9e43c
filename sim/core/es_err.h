/* es_err: the error record every library call fills instead of exiting.
 * A call that fails returns -1 (or NULL) and writes one human-readable line
 * into an es_err; only main() prints it and chooses the exit status. */
#ifndef ES_ERR_H
#define ES_ERR_H
#ifdef __cplusplus
extern "C" {
#endif

typedef struct es_err {
    char msg[1024]; /* one line: "<file>: <key>: expected ..., got ..." */
} es_err;

/* Format into e (if non-NULL) and return -1, so callers can `return es_fail(...)`. */
int es_fail(es_err *e, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
