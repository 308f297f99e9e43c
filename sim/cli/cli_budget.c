/* cli_budget: `etchsim budget check`: hold a logged run to a budgets file, for
 * CI. Every figure checked is a key of the run's `--json` summary as stored in
 * runs.summary, so a budget can name anything `run --json` or `eval --json`
 * prints; nothing is recomputed here. Exit codes: 0 within budget, 1 a budget
 * violated, 2 the check could not be made (usage, database or budgets file). */
#define _POSIX_C_SOURCE 200809L
#include "cli_budget.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "es_budget.h"
#include "es_cfg.h"
#include "es_db.h"
#include "es_err.h"
#include "es_fs.h"
#include "cli_opts.h"

static const char *HELP =
    "usage: etchsim budget check --db FILE --budgets B.json [--run ID]\n"
    "                            [--baseline RUN_ID | --baseline-db FILE2] [--junit FILE]\n"
    "\n"
    "Hold a logged run (default: the newest complete run in --db) to a budgets file and\n"
    "print one row per limit: metric, value, limit, verdict. Exit 0 when every limit\n"
    "holds, 1 when one does not, 2 when the check cannot be made.\n"
    "\n"
    "The budgets file is a JSON object from metric to limits. A metric is a key of the\n"
    "run's --json summary, dotted for nested ones (token_latency_ns.p99), a list's item by\n"
    "its index (a system run's system.links.0.busy_fraction). Limits:\n"
    "  \"min\": V              the value must be at least V\n"
    "  \"max\": V              the value must be at most V\n"
    "  \"max_regress_pct\": P  against the baseline run, at most P percent worse\n"
    "  \"better\": \"higher\"|\"lower\"  which way is worse for max_regress_pct; default:\n"
    "                        higher for metrics ending in per_s, utilization, slots or\n"
    "                        records_done, lower for all others (latency, energy, power)\n"
    "Example: {\"decode_tokens_per_s\": {\"min\": 16000}, \"token_latency_ns.p99\": {\"max\": 65000},\n"
    "          \"joules_per_token\": {\"max_regress_pct\": 5}}\n"
    "\n"
    "options:\n"
    "  --db FILE            the database the run was logged to (etchsim run/eval --db)\n"
    "  --budgets FILE       the budgets file\n"
    "  --run ID             the run to check (runs.id; default the newest complete run)\n"
    "  --baseline RUN_ID    the baseline for max_regress_pct: a run in the same database\n"
    "  --baseline-db FILE2  the baseline: the newest complete run in another database\n"
    "  --junit FILE         also write a JUnit XML report (one test case per limit)\n"
    "  -h, --help           this text\n";

static int usage(const char *msg, const char *arg) { return es_opt_usage("budget check", msg, arg); }

static int fail(const es_err *e)
{
    fprintf(stderr, "etchsim budget: %s\n", e->msg);
    return 2;
}

static void xml_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* the JUnit report, written beside its path and renamed into place (es_atomic) */
static int write_junit(const char *path, const es_budget_row *rows, int n, int64_t run_id, const char *db, es_err *e)
{
    if (es_check_output(path, "the JUnit report", e)) return -1;
    es_atomic out;
    if (es_atomic_open(&out, path, "the JUnit report", e)) return -1;
    FILE *f = out.f;
    int failures = 0;
    for (int i = 0; i < n; i++) failures += !rows[i].ok;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"%d\" failures=\"%d\">\n", n, failures);
    fprintf(f, "  <testsuite name=\"etchsim budget\" tests=\"%d\" failures=\"%d\" errors=\"0\" skipped=\"0\">\n", n, failures);
    fprintf(f, "    <properties><property name=\"db\" value=\"");
    xml_escaped(f, db);
    fprintf(f, "\"/><property name=\"run\" value=\"%lld\"/></properties>\n", (long long)run_id);
    for (int i = 0; i < n; i++) {
        fputs("    <testcase classname=\"budget\" name=\"", f);
        xml_escaped(f, rows[i].metric);
        fputs(" ", f);
        xml_escaped(f, rows[i].limit);
        fputs("\"", f);
        if (rows[i].ok) {
            fputs("/>\n", f);
            continue;
        }
        fputs(">\n      <failure message=\"", f);
        xml_escaped(f, rows[i].why);
        fputs("\" type=\"budget\"/>\n    </testcase>\n", f);
    }
    fputs("  </testsuite>\n</testsuites>\n", f);
    return es_atomic_commit(&out, e);
}

typedef struct opts {
    const char *db, *budgets, *baseline_db, *junit;
    int64_t run, baseline;
} opts;

static int parse(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    enum { DB, BUDGETS, BASELINE_DB, JUNIT, RUN, BASELINE, N_OPTS };
    static const es_opt defs[N_OPTS] = {{"db", ES_OPT_STR, 0, 0, 0},          {"budgets", ES_OPT_STR, 0, 0, 0},
                                        {"baseline-db", ES_OPT_STR, 0, 0, 0}, {"junit", ES_OPT_STR, 0, 0, 0},
                                        {"run", ES_OPT_COUNT, 1, 9.2e18, 0},  {"baseline", ES_OPT_COUNT, 1, 9.2e18, 0}};
    es_optarg *items = NULL;
    int n = es_opts_parse("budget check", argc - 1, argv + 1, defs, N_OPTS, 0, HELP, &items);
    if (n < 0) return n == -2 ? 1 : 2; /* 1: help printed */
    for (int k = 0; k < n; k++) {
        const char *v = items[k].val;
        switch (items[k].opt) {
        case DB: o->db = v; break;
        case BUDGETS: o->budgets = v; break;
        case BASELINE_DB: o->baseline_db = v; break;
        case JUNIT: o->junit = v; break;
        case RUN: o->run = items[k].num; break;
        case BASELINE: o->baseline = items[k].num; break;
        }
    }
    free(items);
    if (!o->db) return usage("--db is required", NULL);
    if (!o->budgets) return usage("--budgets is required", NULL);
    if (o->baseline && o->baseline_db) return usage("give --baseline or --baseline-db, not both", NULL);
    return 0;
}

static int check(const opts *o)
{
    es_err e = {0};
    int rc = 2;
    char *cmd = NULL, *sum_text = NULL, *bcmd = NULL, *bsum_text = NULL;
    cJSON *budgets = NULL, *sum = NULL, *base = NULL;
    es_budget_row *rows = NULL;
    int n = 0;
    int64_t id = 0, bid = 0;
    char what[96], base_what[4200] = "";
    es_cfg cfg; /* the strict reader of every configuration: no duplicate keys, nothing trailing */
    if (es_cfg_load(&cfg, o->budgets, &e)) goto out;
    budgets = cfg.root;
    if (es_db_read_summary(o->db, o->run, &id, &cmd, &sum_text, &e)) goto out;
    snprintf(what, sizeof what, "run %lld (%s)", (long long)id, cmd);
    sum = cJSON_Parse(sum_text);
    if (!sum) {
        es_fail(&e, "%s: run %lld's summary is not JSON", o->db, (long long)id);
        goto out;
    }
    if (o->baseline || o->baseline_db) {
        const char *bdb = o->baseline_db ? o->baseline_db : o->db;
        if (es_db_read_summary(bdb, o->baseline, &bid, &bcmd, &bsum_text, &e)) goto out;
        if (strcmp(bcmd, cmd)) {
            es_fail(&e, "%s: baseline run %lld is an '%s', the run checked an '%s'", bdb, (long long)bid, bcmd, cmd);
            goto out;
        }
        if (o->baseline_db) snprintf(base_what, sizeof base_what, "run %lld of %s", (long long)bid, bdb);
        else snprintf(base_what, sizeof base_what, "run %lld", (long long)bid);
        base = cJSON_Parse(bsum_text);
        if (!base) {
            es_fail(&e, "%s: run %lld's summary is not JSON", bdb, (long long)bid);
            goto out;
        }
    }
    if (es_budget_eval(budgets, o->budgets, sum, what, base, base_what, &rows, &n, &e)) goto out;
    int failed = 0, w = 6;
    for (int i = 0; i < n; i++) {
        failed += !rows[i].ok;
        if ((int)strlen(rows[i].metric) > w) w = (int)strlen(rows[i].metric);
    }
    if (o->junit && write_junit(o->junit, rows, n, id, o->db, &e)) goto out;
    printf("budget check: %s of %s against %s\n", what, o->db, o->budgets);
    if (base) printf("baseline: %s\n", base_what);
    printf("%-*s %14s  %-32s %s\n", w, "metric", "value", "limit", "verdict");
    for (int i = 0; i < n; i++) {
        char v[32];
        printf("%-*s %14s  %-32s %s\n", w, rows[i].metric, es_budget_num(v, sizeof v, rows[i].value), rows[i].limit,
               rows[i].ok ? "ok" : "FAIL");
    }
    if (failed) {
        fprintf(stderr, "etchsim budget: %d of %d limits violated:\n", failed, n);
        for (int i = 0; i < n; i++)
            if (!rows[i].ok) fprintf(stderr, "  %s\n", rows[i].why);
    } else {
        printf("all %d limits hold\n", n);
    }
    rc = failed ? 1 : 0;
out:
    if (rc == 2) fail(&e);
    free(rows);
    cJSON_Delete(budgets);
    cJSON_Delete(sum);
    cJSON_Delete(base);
    free(cmd);
    free(sum_text);
    free(bcmd);
    free(bsum_text);
    return rc;
}

int es_cli_budget(int argc, char **argv)
{
    if (argc < 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
        fputs(HELP, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    if (strcmp(argv[0], "check")) return usage("expected 'check', got", argv[0]);
    opts o;
    int p = parse(argc, argv, &o);
    if (p == 1) return 0; /* help printed */
    if (p) return p;
    return check(&o);
}
