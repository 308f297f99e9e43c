/* es_budget: see es_budget.h. */
#define _POSIX_C_SOURCE 200809L
#include "es_budget.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "es_fs.h"

/* metric (dotted) in the summary: its number, or an error naming the budgets file */
static int lookup(const cJSON *sum, const char *budgets, const char *metric, const char *what, double *out, es_err *e)
{
    char buf[256];
    if (strlen(metric) >= sizeof buf)
        return es_fail(e, "%s: metric '%.40s...': a name of at most %zu bytes expected", budgets, metric, sizeof buf - 1);
    snprintf(buf, sizeof buf, "%s", metric);
    const cJSON *node = sum;
    for (char *save = NULL, *part = strtok_r(buf, ".", &save); part; part = strtok_r(NULL, ".", &save)) {
        /* an array's item by its index ("system.chips.1.kv_max_used"): digits only */
        const int index = cJSON_IsArray(node) && part[strspn(part, "0123456789")] == 0 && strlen(part) < 10;
        if (cJSON_IsArray(node) && !index)
            return es_fail(e, "%s: metric '%s': %s's summary holds a list of %d there: name an item by its index "
                              "(0 to %d), not '%s'", budgets, metric, what, cJSON_GetArraySize(node),
                           cJSON_GetArraySize(node) - 1, part);
        node = cJSON_IsObject(node) ? cJSON_GetObjectItemCaseSensitive(node, part)
               : index              ? cJSON_GetArrayItem(node, atoi(part))
                                    : NULL;
        if (!node) return es_fail(e, "%s: metric '%s': %s's summary has no '%s'", budgets, metric, what, part);
    }
    if (cJSON_IsNull(node)) /* a figure the run does not define: a decode rate with one token per stream */
        return es_fail(e, "%s: metric '%s': %s's summary holds null there: the run does not define it (README: "
                          "JSON output)", budgets, metric, what);
    if (!cJSON_IsNumber(node))
        return es_fail(e, "%s: metric '%s': %s's summary holds %s there, not a number", budgets, metric, what,
                       cJSON_IsObject(node) ? "an object" : "no number");
    *out = node->valuedouble;
    return 0;
}

const char *es_budget_num(char *buf, size_t n, double v)
{
    if (v == floor(v) && fabs(v) < 1e15) snprintf(buf, n, "%.0f", v);
    else snprintf(buf, n, "%.6g", v);
    return buf;
}

static int higher_is_better(const char *metric)
{
    static const char *up[] = {"per_s", "utilization", "slots", "records_done"};
    for (size_t i = 0; i < sizeof up / sizeof *up; i++)
        if (es_ends_with(metric, up[i])) return 1;
    return 0;
}

/* One budget entry (metric: {limits}); its rows appended to *rows. */
static int check_metric(const cJSON *lim, const char *budgets, const cJSON *sum, const char *what, const cJSON *base,
                        const char *base_what, es_budget_row **rows, int *n, es_err *e)
{
    const char *metric = lim->string;
    if (!cJSON_IsObject(lim))
        return es_fail(e, "%s: metric '%s': expected an object of limits (min, max, max_regress_pct, better)", budgets,
                       metric);
    int limits = 0; /* a metric with no limit would be checked by nothing, and "all hold" would say otherwise */
    const cJSON *k;
    cJSON_ArrayForEach(k, lim) limits += strcmp(k->string, "better") != 0;
    if (!limits)
        return es_fail(e, "%s: metric '%s': no limits; expected at least one of min, max or max_regress_pct", budgets,
                       metric);
    double value;
    if (lookup(sum, budgets, metric, what, &value, e)) return -1;
    int up = higher_is_better(metric);
    cJSON_ArrayForEach(k, lim) { /* "better" first: it qualifies max_regress_pct */
        if (strcmp(k->string, "better")) continue;
        if (!cJSON_IsString(k) || (strcmp(k->valuestring, "higher") && strcmp(k->valuestring, "lower")))
            return es_fail(e, "%s: metric '%s': 'better' expects \"higher\" or \"lower\"", budgets, metric);
        up = !strcmp(k->valuestring, "higher");
    }
    cJSON_ArrayForEach(k, lim) {
        if (!strcmp(k->string, "better")) continue;
        int is_min = !strcmp(k->string, "min"), is_max = !strcmp(k->string, "max"),
            is_reg = !strcmp(k->string, "max_regress_pct");
        if (!is_min && !is_max && !is_reg)
            return es_fail(e, "%s: metric '%s': unknown limit '%s' (expected min, max, max_regress_pct or better)",
                           budgets, metric, k->string);
        if (!cJSON_IsNumber(k) || !isfinite(k->valuedouble) || (is_reg && k->valuedouble < 0))
            return es_fail(e, "%s: metric '%s': '%s' expects a %snumber", budgets, metric, k->string,
                           is_reg ? "non-negative " : "");
        es_budget_row *r = realloc(*rows, (size_t)(*n + 1) * sizeof **rows);
        if (!r) return es_fail(e, "out of memory");
        *rows = r;
        r = &r[(*n)++];
        memset(r, 0, sizeof *r);
        r->metric = metric;
        r->value = value;
        double L = k->valuedouble;
        char a[32], c[32], d[32];
        if (is_min || is_max) {
            snprintf(r->limit, sizeof r->limit, "%s %s", is_min ? ">=" : "<=", es_budget_num(a, sizeof a, L));
            r->ok = is_min ? value >= L : value <= L;
            snprintf(r->why, sizeof r->why, "%s = %s, %s %s", metric, es_budget_num(c, sizeof c, value),
                     is_min ? "below the minimum" : "above the maximum", a);
            continue;
        }
        if (!base)
            return es_fail(e, "%s: metric '%s': max_regress_pct needs a baseline (--baseline RUN_ID or --baseline-db FILE)",
                           budgets, metric);
        double b;
        if (lookup(base, budgets, metric, base_what, &b, e)) return -1;
        /* percent worse than the baseline, in the metric's bad direction */
        double worse = b != 0 ? (up ? b - value : value - b) / fabs(b) * 100.0 : (value == b ? 0 : INFINITY);
        snprintf(r->limit, sizeof r->limit, "<= %s%% worse than %s", es_budget_num(a, sizeof a, L), es_budget_num(d, sizeof d, b));
        r->ok = worse <= L;
        snprintf(r->why, sizeof r->why, "%.60s = %s is %.3g%% worse than %s (%.120s); at most %s%% allowed", metric,
                 es_budget_num(c, sizeof c, value), worse, d, base_what, a);
    }
    return 0;
}

int es_budget_eval(const cJSON *budgets, const char *path, const cJSON *sum, const char *what, const cJSON *base,
                   const char *base_what, es_budget_row **rows, int *n, es_err *e)
{
    *rows = NULL;
    *n = 0;
    if (!cJSON_IsObject(budgets) || !budgets->child) {
        es_fail(e, "%s: expected a JSON object naming at least one metric", path);
        return -1;
    }
    const cJSON *lim;
    cJSON_ArrayForEach(lim, budgets)
        if (check_metric(lim, path, sum, what, base, base_what, rows, n, e)) {
            free(*rows);
            *rows = NULL;
            *n = 0;
            return -1;
        }
    return 0;
}
