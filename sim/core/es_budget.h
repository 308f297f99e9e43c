/* es_budget: latency and energy budgets held against a run's --json summary.
 * A budgets document maps metrics (keys of the summary, dotted for nested ones;
 * a list's item by its index, "system.chips.1.kv_max_used")
 * to limits: {"min": V}, {"max": V}, {"max_regress_pct": P} against a baseline
 * summary, and "better": "higher"|"lower" for the direction of max_regress_pct.
 * Nothing is recomputed: every value is read from the summary as it was logged.
 * Library code: returns errors, prints nothing (cli_budget prints the table and
 * writes the JUnit report). */
#ifndef ES_BUDGET_H
#define ES_BUDGET_H
#include <cjson/cJSON.h>
#include "es_err.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct es_budget_row {
    const char *metric; /* points into the budgets document */
    char limit[96];     /* as printed: ">= 16000", "<= 5% worse than 17185" */
    double value;
    int ok;
    char why[512];      /* the failure message */
} es_budget_row;

/* Check every metric of `budgets` (a JSON object; `path` names it in errors) against `sum`
 * (`what` names that run in messages) and, for max_regress_pct, against `base` (NULL: none;
 * `base_what` names it). On success *rows holds *n rows (free() it) and 0 is returned; on a
 * malformed budget (a metric with no limits among them), a metric the summary lacks or a missing
 * baseline, -1 and e says why. */
int es_budget_eval(const cJSON *budgets, const char *path, const cJSON *sum, const char *what, const cJSON *base,
                   const char *base_what, es_budget_row **rows, int *n, es_err *e);
/* A figure as printed: whole numbers in full (2248612, not 2.24861e+06), others to 6 digits. */
const char *es_budget_num(char *buf, size_t n, double v);

#ifdef __cplusplus
}
#endif
#endif
