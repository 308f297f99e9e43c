/* es_grid: a sweep grid (etchsim sweep --grid): a JSON object from keys to non-empty lists of
 * values, each key its own axis, plus "zip" groups of keys that move together and an optional
 * "command" ("run" or "eval"). Read with the strict configuration reader; a grid's errors name its
 * file and key. */
#ifndef ES_GRID_H
#define ES_GRID_H
#include <stdint.h>
#include <cjson/cJSON.h>
#include "es_err.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct es_grid_axis {
    int n_keys;
    const char *keys[16];
    const cJSON *vals[16]; /* the lists */
    int len;
} es_grid_axis;

typedef struct es_grid {
    int eval;               /* "command": "eval" */
    es_grid_axis ax[32];
    int n_axes;
    int64_t points;         /* the cross product's size, at most 1,000,000 */
} es_grid;

/* Read file into *root (the caller frees it with cJSON_Delete, on success or failure) and g. */
int es_grid_read(const char *file, cJSON **root, es_grid *g, es_err *e);

#ifdef __cplusplus
}
#endif
#endif
