/* es_grid: see es_grid.h. */
#define _POSIX_C_SOURCE 200809L
#include "es_grid.h"
#include <string.h>
#include "es_cfg.h"

static int add_axis(es_grid *g, const char *file, const cJSON *obj, int zip, es_err *e)
{
    if (g->n_axes == 32) return es_fail(e, "%s: more than 32 axes", file);
    es_grid_axis *a = &g->ax[g->n_axes];
    memset(a, 0, sizeof *a);
    a->len = -1;
    const cJSON *k;
    cJSON_ArrayForEach(k, obj) {
        if (!zip && (!strcmp(k->string, "command") || !strcmp(k->string, "zip"))) continue;
        if (!cJSON_IsArray(k) || cJSON_GetArraySize(k) == 0)
            return es_fail(e, "%s: key '%s'%s: expected a non-empty list of values", file, k->string, zip ? " (in zip)" : "");
        const cJSON *v;
        cJSON_ArrayForEach(v, k) if (!cJSON_IsNumber(v) && !cJSON_IsString(v) && !cJSON_IsBool(v)) return es_fail(
            e, "%s: key '%s': values must be numbers, strings or booleans", file, k->string);
        int len = cJSON_GetArraySize(k);
        if (!zip) { /* each key its own axis */
            if (g->n_axes == 32) return es_fail(e, "%s: more than 32 axes", file);
            a = &g->ax[g->n_axes++];
            memset(a, 0, sizeof *a);
            a->keys[0] = k->string;
            a->vals[0] = k;
            a->n_keys = 1;
            a->len = len;
            continue;
        }
        if (a->n_keys == 16) return es_fail(e, "%s: a zip group of more than 16 keys", file);
        if (a->len >= 0 && len != a->len)
            return es_fail(e, "%s: zip group: '%s' has %d values, '%s' %d; keys that move together need equal lists", file,
                           k->string, len, a->keys[0], a->len);
        a->keys[a->n_keys] = k->string;
        a->vals[a->n_keys++] = k;
        a->len = len;
    }
    if (zip) {
        if (a->n_keys == 0) return es_fail(e, "%s: an empty zip group", file);
        g->n_axes++;
    }
    return 0;
}

int es_grid_read(const char *file, cJSON **root, es_grid *g, es_err *e)
{
    memset(g, 0, sizeof *g);
    *root = NULL;
    es_cfg cfg; /* the strict reader of every configuration: no duplicate keys, nothing trailing */
    if (es_cfg_load(&cfg, file, e)) return -1;
    *root = cfg.root;
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(*root, "command");
    if (cmd && (!cJSON_IsString(cmd) || (strcmp(cmd->valuestring, "run") && strcmp(cmd->valuestring, "eval"))))
        return es_fail(e, "%s: 'command' expects \"run\" or \"eval\"", file);
    g->eval = cmd && !strcmp(cmd->valuestring, "eval");
    if (add_axis(g, file, *root, 0, e)) return -1;
    const cJSON *zip = cJSON_GetObjectItemCaseSensitive(*root, "zip");
    if (zip) {
        if (!cJSON_IsArray(zip)) return es_fail(e, "%s: 'zip' expects a list of objects", file);
        const cJSON *z;
        cJSON_ArrayForEach(z, zip) {
            if (!cJSON_IsObject(z)) return es_fail(e, "%s: 'zip' expects a list of objects", file);
            if (add_axis(g, file, z, 1, e)) return -1;
        }
    }
    /* a key on two axes would be set twice */
    for (int i = 0; i < g->n_axes; i++)
        for (int k = 0; k < g->ax[i].n_keys; k++)
            for (int j = i; j < g->n_axes; j++)
                for (int l = j == i ? k + 1 : 0; l < g->ax[j].n_keys; l++)
                    if (!strcmp(g->ax[i].keys[k], g->ax[j].keys[l]))
                        return es_fail(e, "%s: key '%s' appears twice", file, g->ax[i].keys[k]);
    g->points = 1;
    for (int i = 0; i < g->n_axes; i++) {
        g->points *= g->ax[i].len;
        if (g->points > 1000000) return es_fail(e, "%s: more than 1,000,000 points", file);
    }
    if (g->n_axes == 0) return es_fail(e, "%s: names no key to sweep", file);
    return 0;
}

