/* cli_opts: see cli_opts.h. */
#define _GNU_SOURCE
#include "cli_opts.h"
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int es_opt_usage(const char *cmd, const char *msg, const char *arg)
{
    fprintf(stderr, "etchsim %s: %s%s%s\nTry 'etchsim %s --help'.\n", cmd, msg, arg ? " " : "", arg ? arg : "", cmd);
    return 2;
}

int es_opt_pick(const char *cmd, const char *name, const char *v, const char *a, const char *b)
{
    if (!strcmp(v, a)) return 0;
    if (!strcmp(v, b)) return 1;
    fprintf(stderr, "etchsim %s: --%s expects %s or %s, got %s\nTry 'etchsim %s --help'.\n", cmd, name, a, b, v, cmd);
    return -1;
}

/* a whole number as the rules read it: 0 and *out set, or -1 */
static int es_opt_count(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (!s || *s < '0' || *s > '9') return -1; /* digits only: no sign, no space */
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > (unsigned long long)INT64_MAX || (int64_t)v < lo || (int64_t)v > hi) return -1;
    *out = (int64_t)v;
    return 0;
}

static int real_value(const char *s, double lo, double hi, double *out)
{
    if (!s || !*s || (*s != '-' && *s != '.' && (*s < '0' || *s > '9'))) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* getopt_long's table for opts[0..n) into lo (n + 2 entries, zeroed), with --help; one-letter names
 * also as short options in shorts (n bytes): -o FILE. */
static void option_table(const es_opt *opts, int n, struct option *lo, char *shorts, size_t size)
{
    snprintf(shorts, size, ":h");
    for (int i = 0; i < n; i++) {
        if (opts[i].name[0] && !opts[i].name[1] && strlen(shorts) < size - 3) {
            size_t l = strlen(shorts);
            shorts[l] = opts[i].name[0];
            shorts[l + 1] = opts[i].kind == ES_OPT_FLAG ? 0 : ':';
            shorts[l + 2] = 0;
        }
        lo[i].name = opts[i].name;
        lo[i].has_arg = opts[i].kind == ES_OPT_FLAG ? no_argument : required_argument;
        lo[i].val = 1000 + i;
    }
    lo[n].name = "help";
    lo[n].val = 'h';
}

/* getopt_long returned c '?' (unknown) or ':' (a value missing) at word: the usage error. */
static void bad_option(const char *cmd, const es_opt *opts, int n, int c, const char *word)
{
    char msg[256];
    int oi = optopt >= 1000 ? optopt - 1000 : -1;
    for (int i = 0; i < n && oi < 0 && optopt > 0; i++)
        if (opts[i].name[0] == optopt && !opts[i].name[1]) oi = i;
    const char *bad = oi >= 0 ? opts[oi].name : NULL;
    if (c == ':' && bad) {
        snprintf(msg, sizeof msg, "%s%s needs a value", bad[1] ? "--" : "-", bad);
        es_opt_usage(cmd, msg, NULL);
    } else {
        es_opt_usage(cmd, "unknown option", word);
    }
}

/* Option o's value (optarg) by its kind into it: 0, or -1 after the usage error. */
static int read_value(const char *cmd, const es_opt *o, const char *optval, es_optarg *it)
{
    char msg[256], given[96];
    snprintf(given, sizeof given, "'%s'", optval ? optval : "");
    switch (o->kind) {
    case ES_OPT_FLAG:
    case ES_OPT_TEXT: break;
    case ES_OPT_STR:
        if (!*optval) {
            snprintf(msg, sizeof msg, "--%s needs a non-empty value", o->name);
            es_opt_usage(cmd, msg, NULL);
            return -1;
        }
        break;
    case ES_OPT_COUNT:
        if (es_opt_count(optval, (int64_t)o->lo, (int64_t)o->hi, &it->num)) {
            if (o->hi >= 9.2e18) snprintf(msg, sizeof msg, "--%s expects a whole number from %.0f, got", o->name, o->lo);
            else snprintf(msg, sizeof msg, "--%s expects a whole number from %.0f to %.0f, got", o->name, o->lo, o->hi);
            es_opt_usage(cmd, msg, given);
            return -1;
        }
        break;
    case ES_OPT_REAL:
        if (real_value(optval, o->lo, o->hi, &it->real)) {
            snprintf(msg, sizeof msg, "--%s expects a number from %g to %g, got", o->name, o->lo, o->hi);
            es_opt_usage(cmd, msg, given);
            return -1;
        }
        break;
    }
    return 0;
}

int es_opts_parse(const char *cmd, int argc, char **argv, const es_opt *opts, int n, int positional,
                  const char *help, es_optarg **items)
{
    *items = NULL;
    struct option *lo = calloc((size_t)n + 2, sizeof *lo);
    int *seen = calloc((size_t)n + 1, sizeof *seen);
    es_optarg *out = calloc((size_t)argc + 1, sizeof *out);
    char **av = calloc((size_t)argc + 2, sizeof *av);
    int rc = -1, count = 0, npos = 0;
    char msg[256];
    if (!lo || !seen || !out || !av) {
        fprintf(stderr, "etchsim %s: out of memory\n", cmd);
        goto done;
    }
    char shorts[64];
    option_table(opts, n, lo, shorts, sizeof shorts);
    av[0] = (char *)cmd;
    for (int i = 0; i < argc; i++) av[i + 1] = argv[i];
    optind = 0; /* reset: GNU getopt re-initializes */
    opterr = 0;
    int c, longidx;
    /* ":": report a missing value; positional arguments are permuted to the end, in order */
    while ((c = getopt_long(argc + 1, av, shorts, lo, &longidx)) != -1) {
        if (c == 'h') {
            if (help) fputs(help, stdout);
            rc = -2;
            goto done;
        }
        const char *word = av[optind - 1];
        for (int i = 0; i < n && c < 1000 && c != '?' && c != ':'; i++) /* a short option: its table index */
            if (opts[i].name[0] == c && !opts[i].name[1]) c = 1000 + i;
        if (c == '?' || c == ':') {
            bad_option(cmd, opts, n, c, word);
            goto done;
        }
        int i = c - 1000;
        const es_opt *o = &opts[i];
        if (seen[i]++ && !o->repeat && o->kind != ES_OPT_FLAG) { /* a flag twice says the same */
            snprintf(msg, sizeof msg, "--%s given twice", o->name);
            es_opt_usage(cmd, msg, NULL);
            goto done;
        }
        es_optarg *it = &out[count++];
        it->opt = i;
        it->val = optarg;
        if (read_value(cmd, o, optarg, it)) goto done;
    }
    for (int i = optind; i < argc + 1; i++) {
        if (++npos > positional) {
            es_opt_usage(cmd, positional ? "too many arguments:" : "unexpected argument", av[i]);
            goto done;
        }
        out[count].opt = -1;
        out[count++].val = av[i];
    }
    *items = out;
    out = NULL;
    rc = count;
done:
    free(lo);
    free(seen);
    free(out);
    free(av);
    return rc;
}
