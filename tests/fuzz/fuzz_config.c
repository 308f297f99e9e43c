/* fuzz_config: the JSON configuration reader (es_cfg: chips, models, process
 * tables, recipes, sweep grids, budgets) on arbitrary bytes, then the same bytes
 * as a sweep grid (es_grid_read), a budgets file checked against a run's summary and as
 * that summary (es_budget_eval), a recipe, a chip for a real model, a lane synthesis file the shipped
 * chip names (area.lane_rtl) and a model config; and
 * --trace-window's parser on the first line. Everything must come back as loaded or as an error. */
#include "fuzz_common.h"
#include <sys/stat.h>
#include "es_budget.h"
#include "es_cfg.h"
#include "es_chip.h"
#include "es_grid.h"
#include "es_map.h"
#include "es_model.h"
#include "es_recipe.h"
#include "es_trace.h"

static char model_cfg[640], model_dir[600];
static void remove_model_dir(void)
{
    if (model_cfg[0]) unlink(model_cfg);
    if (model_dir[0]) rmdir(model_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fuzz_path(".json");
    if (fuzz_write(p, data, size)) return 0;
    es_err e;
    es_cfg c;
    /* a summary as `run --json` logs it, and budgets naming its keys in every way */
    static cJSON *sum, *budgets;
    if (!sum) {
        sum = cJSON_Parse("{\"tokens_per_s\": 17000.5, \"watts\": 200, \"token_latency_ns\": {\"p50\": 58000, "
                          "\"p99\": 65000}, \"area\": {\"rom\": {\"mm2\": 506.7}}, \"chip\": \"hc1-class\", "
                          "\"joules_per_token\": 0}");
        budgets = cJSON_Parse("{\"tokens_per_s\": {\"min\": 16000, \"max_regress_pct\": 5}, \"watts\": {\"max\": 250, "
                              "\"better\": \"lower\"}, \"token_latency_ns.p99\": {\"max\": 65000}, "
                              "\"area.rom.mm2\": {\"max_regress_pct\": 0}, \"joules_per_token\": {\"max_regress_pct\": 1}}");
        if (!sum || !budgets) abort();
    }
    es_budget_row *rows;
    int nrows;
    if (es_cfg_load(&c, p, &e) == 0) {
        if (es_budget_eval(c.root, p, sum, "run 2", sum, "run 1", &rows, &nrows, &e) == 0) {
            for (int i = 0; i < nrows; i++)
                if (rows[i].ok != !!rows[i].ok || !rows[i].limit[0]) abort();
            free(rows);
        } else if (!e.msg[0] || rows || nrows) abort();
        es_cfg_free(&c);
    } else if (!e.msg[0]) abort(); /* an error must say why */
    cJSON *as_sum = cJSON_ParseWithLength((const char *)data, size); /* the bytes as a logged summary */
    if (as_sum) {
        if (es_budget_eval(budgets, "budgets.json", as_sum, "run 2", sum, "run 1", &rows, &nrows, &e) == 0) free(rows);
        else if (!e.msg[0]) abort();
        if (es_budget_eval(budgets, "budgets.json", sum, "run 2", as_sum, "run 1", &rows, &nrows, &e) == 0) free(rows);
        else if (!e.msg[0]) abort();
        cJSON_Delete(as_sum);
    }
    static es_model tiny;
    static int have_tiny = -1;
    if (have_tiny < 0) have_tiny = es_model_load(&tiny, "tiny-llama", &e) == 0;
    cJSON *root = NULL; /* as a sweep grid */
    es_grid g;
    if (es_grid_read(p, &root, &g, &e) == 0 && (g.n_axes < 1 || g.points < 1 || g.points > 1000000)) abort();
    cJSON_Delete(root);
    es_recipe r; /* as a quantization recipe */
    if (es_recipe_load(&r, p, &e) == 0) es_recipe_free(&r);
    else if (!e.msg[0]) abort();
    es_chip chip;
    if (have_tiny && es_chip_load(&chip, p, NULL, 0, &e) == 0) {
        es_chip_check_fit(&chip, &tiny, &e);
        es_chip_free(&chip);
    }
    /* as a lane synthesis file (scripts/synth-rtl) that the shipped chip names */
    char set[700];
    snprintf(set, sizeof set, "area.lane_rtl=%s", p);
    const char *sets[1] = {set};
    if (es_chip_load(&chip, "hc1-class", sets, 1, &e) == 0) {
        if (chip.area.lane_tr < 1 || chip.area.lane_tr > 1e9 || chip.tile.reg_bits_cell < 0 || chip.tile.reg_bits_cell > 1024) abort();
        es_chip_free(&chip);
    } else if (!e.msg[0]) abort();
    /* as a model: a folder holding it as config.json */
    static char dir[600];
    if (!dir[0]) { /* beside the input file (fuzz_path), removed with it at exit */
        snprintf(dir, sizeof dir, "%s-model", fuzz_path(".json"));
        mkdir(dir, 0700);
        atexit(remove_model_dir);
    }
    char cfg[640];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    if (!model_cfg[0]) {
        snprintf(model_cfg, sizeof model_cfg, "%s", cfg);
        snprintf(model_dir, sizeof model_dir, "%s", dir);
    }
    es_model m;
    if (fuzz_write(cfg, data, size) == 0 && es_model_load(&m, dir, &e) == 0) es_model_free(&m);
    char line[64];
    size_t n = 0;
    while (n < size && n < sizeof line - 1 && data[n] != '\n') line[n] = (char)data[n], n++;
    line[n] = 0;
    double a, b;
    if (es_trace_parse_window(line, &a, &b) == 0 && (a < 0 || (b >= 0 && b < a))) abort();
    return 0;
}
