/* es_recipe: which weight format each tensor of a model is stored in.
 * A recipe (models/recipes/NAME.json) is an ordered list of rules; the
 * first rule whose match fits a tensor gives its format:
 *   {"match": {"role": "attn_v" | [roles], "layers": [lo, hi]},
 *    "format": "int3", "group": 64, "nibbles": "split"}
 * An empty match fits every tensor. A tied embedding table is matched as
 * the LM head. */
#ifndef ES_RECIPE_H
#define ES_RECIPE_H
#include <stdint.h>
#include "es_err.h"
#include "es_model.h"
#include "es_quant.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct es_recipe_rule {
    uint32_t roles;            /* bit r set: matches role r; 0 matches any role */
    int64_t layer_lo, layer_hi; /* inclusive block range; -1, -1 matches any */
    es_qfmt fmt;               /* the format (nvfp4's tensor scale is set per tensor) */
} es_recipe_rule;

typedef struct es_recipe {
    char path[512];            /* file it came from */
    char name[64];             /* "name" */
    es_recipe_rule *rules;     /* (n_rules) in order */
    int n_rules;
    uint64_t hash;             /* FNV-1a of the file's bytes as parsed */
} es_recipe;

int es_recipe_load(es_recipe *r, const char *spec, es_err *e);
/* A recipe from JSON text; label names it in errors. */
int es_recipe_parse(es_recipe *r, const char *label, const char *text, es_err *e);
void es_recipe_free(es_recipe *r);
/* The format of tensor t; fails naming the tensor when no rule matches.
 * A row that does not fill whole blocks is zero-padded where it is stored
 * (es_q_padded). */
int es_recipe_format(const es_recipe *r, const es_tensor *t, es_qfmt *out, es_err *e);
/* The recipe as a chip file's "weights" section (chip derive --recipe): "default" from its first rule that
 * matches every role, and "roles.ROLE" for each role whose first matching rule is another one; each format's
 * source names the recipe and the rule. A chip holds one format per role, so a rule limited to some layers
 * that comes first for a role is an error naming it, as is a recipe without a rule for every role. 0 and
 * *out (a new cJSON object, the caller's), or -1. */
struct cJSON;
int es_recipe_chip_weights(const es_recipe *r, struct cJSON **out, es_err *e);


#ifdef __cplusplus
}
#endif
#endif
