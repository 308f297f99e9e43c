/* cli_opts: the one way etchsim's commands read their options: getopt_long
 * underneath, one table per command, and the same rules everywhere:
 *   --name VALUE or --name=VALUE; -h and --help;
 *   a whole number is decimal digits only (no sign, space or suffix) within the
 *     option's range; a real is a finite decimal within its range;
 *   a path or name must not be empty (ES_OPT_TEXT may be);
 *   an option with a value given twice is an error unless it is repeatable (--set);
 *     a flag may be repeated;
 *   an unknown option, a missing value, a bad number: one line naming the option,
 *     what was expected and what was given, then "Try 'etchsim CMD --help'.", exit 2.
 * Part of the command line: it prints usage errors. */
#ifndef CLI_OPTS_H
#define CLI_OPTS_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef enum es_opt_kind {
    ES_OPT_FLAG,  /* no value */
    ES_OPT_STR,   /* a non-empty value (path, name) */
    ES_OPT_TEXT,  /* any value, empty included */
    ES_OPT_COUNT, /* a whole number in [lo, hi] */
    ES_OPT_REAL   /* a finite number in [lo, hi] */
} es_opt_kind;

typedef struct es_opt {
    const char *name;  /* without the dashes: "streams" */
    es_opt_kind kind;
    double lo, hi;     /* COUNT and REAL */
    int repeat;        /* may be given more than once */
} es_opt;

typedef struct es_optarg {
    int opt;           /* index into the table; -1: a positional argument */
    const char *val;   /* the value as given (NULL for a flag) */
    int64_t num;       /* COUNT */
    double real;       /* REAL */
} es_optarg;

/* Parse argv[0..argc) (the words after the command's name) against opts[0..n).
 * Returns the number of items written to *items (malloc'd, in command-line order;
 * free it), or -1 after printing a usage error for `etchsim cmd`, or -2 after printing `help`
 * to stdout for -h/--help (the caller exits 0).
 * Positional arguments are accepted only when positional > 0, at most that many. */
int es_opts_parse(const char *cmd, int argc, char **argv, const es_opt *opts, int n, int positional,
                  const char *help, es_optarg **items);
/* Print "etchsim CMD: MSG ARG" and the --help hint; returns 2 (the exit code). */
int es_opt_usage(const char *cmd, const char *msg, const char *arg);
/* A value that must be one of two words: 0 for a, 1 for b; otherwise prints "etchsim CMD: --NAME
 * expects A or B, got V" with the --help hint and returns -1. */
int es_opt_pick(const char *cmd, const char *name, const char *v, const char *a, const char *b);

#ifdef __cplusplus
}
#endif
#endif
