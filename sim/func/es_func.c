/* es_func: functional mode's weights (see es_func.h). */
#define _POSIX_C_SOURCE 200809L
#include "es_func.h"
#include <stdlib.h>
#include <string.h>
#include "es_recipe.h"
#include "es_rom.h"
#include "es_synth.h"
#include "es_wsrc.h"

int es_func_rows_open(es_func_rows *r, const es_model *m, const char *weights, int64_t synthetic, int rope_rows,
                      es_err *e)
{
    memset(r, 0, sizeof *r);
    r->m = m;
    r->seed = (uint64_t)synthetic;
    if (!weights) {
        es_synth_init();
        return 0;
    }
    es_wsrc *ws = calloc(1, sizeof *ws);
    if (!ws) return es_fail(e, "out of memory");
    es_wsrc_opts wo = {rope_rows, -1};
    if (es_wsrc_open(ws, weights, &wo, e)) { free(ws); return -1; }
    r->ws = ws;
    if (es_wsrc_bind(ws, m, e)) { es_func_rows_close(r); return -1; }
    return 0;
}

int es_func_rows_read(void *arg, int t, int64_t row, float *out, es_err *e)
{
    es_func_rows *r = arg;
    if (r->ws) return es_wsrc_read_row(r->ws, t, row, out, e);
    es_synth_row(r->seed, &r->m->tensors[t], row, out);
    return 0;
}

void es_func_rows_close(es_func_rows *r)
{
    if (r->ws) {
        es_wsrc_close(r->ws);
        free(r->ws);
    }
    r->ws = NULL;
}

/* The weights of a ROM image built for dp's model. */
static int load_rom(es_dp *dp, const es_model *m, const char *path, es_err *e)
{
    es_rom_image img;
    if (es_rom_open(&img, path, e)) return -1;
    int rc = -1;
    if (img.model_hash != es_rom_model_hash(m))
        es_fail(e, "%s: the ROM image was built for another model than %s", path, m->path);
    else
        rc = es_dp_load_rom(dp, &img, e);
    es_rom_close(&img);
    return rc;
}

/* A weights file's rows or synthetic rows, quantized by the recipe. */
static int load_quantized(es_dp *dp, const es_model *m, const es_func_weights *w, es_err *e)
{
    es_recipe r;
    if (es_recipe_load(&r, w->recipe ? w->recipe : "hc1-mix", e)) return -1;
    es_func_rows rows;
    int rc = -1;
    if (es_func_rows_open(&rows, m, w->weights, w->synthetic, w->rope_rows, e) == 0) {
        rc = es_dp_load_rows(dp, &r, es_func_rows_read, &rows, e);
        es_func_rows_close(&rows);
    }
    es_recipe_free(&r);
    return rc;
}

int es_func_load(es_dp **out, const es_chip *c, const es_model *m, const es_func_weights *w, int threads,
                 es_err *e)
{
    *out = NULL;
    int given = (w->rom != NULL) + (w->weights != NULL) + (w->synthetic >= 0);
    if (given != 1)
        return es_fail(e, "functional weights: expected one source (a ROM image, a weights file or a synthetic "
                          "seed), got %d", given);
    es_dp *dp = NULL;
    if (es_dp_open(&dp, c, m, threads, e)) return -1;
    if (w->rom ? load_rom(dp, m, w->rom, e) : load_quantized(dp, m, w, e)) {
        es_dp_close(dp);
        return -1;
    }
    *out = dp;
    return 0;
}
