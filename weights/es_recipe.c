/* es_recipe: recipe files and tensor-to-format matching (see es_recipe.h). */
#include "es_recipe.h"
#include "es_fs.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "es_cfg.h"


static int role_bit(const char *path, int i, const cJSON *s, uint32_t *mask, es_err *e)
{
    int r = cJSON_IsString(s) ? es_role_from_name(s->valuestring) : -1;
    if (r < 0)
        return es_fail(e, "%s: key 'rules[%d].match.role': expected a tensor role (%s), got %.80s", path, i,
                       es_role_names(), cJSON_IsString(s) ? s->valuestring : "a non-string");
    *mask |= 1u << r;
    return 0;
}

static int parse_rule(const char *path, int i, const cJSON *j, es_recipe_rule *rule, es_err *e)
{
    memset(rule, 0, sizeof *rule);
    rule->layer_lo = rule->layer_hi = -1;
    if (!cJSON_IsObject(j)) return es_fail(e, "%s: key 'rules[%d]': expected an object", path, i);
    static const char *const rule_keys[] = {"match", "format", "group", "nibbles", "description", NULL};
    static const char *const match_keys[] = {"role", "layers", NULL};
    char where[32];
    snprintf(where, sizeof where, "rules[%d]", i);
    if (es_cfg_only_keys(j, path, where, rule_keys, e)) return -1;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "match");
    if (!cJSON_IsObject(m)) return es_fail(e, "%s: key 'rules[%d].match': expected an object", path, i);
    snprintf(where, sizeof where, "rules[%d].match", i);
    if (es_cfg_only_keys(m, path, where, match_keys, e)) return -1;
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    if (role && cJSON_IsArray(role)) {
        if (cJSON_GetArraySize(role) == 0) /* would match no role, not every one */
            return es_fail(e, "%s: key 'rules[%d].match.role': expected a role or a non-empty list of roles", path, i);
        const cJSON *it;
        cJSON_ArrayForEach(it, role) if (role_bit(path, i, it, &rule->roles, e)) return -1;
    } else if (role && role_bit(path, i, role, &rule->roles, e)) {
        return -1;
    }
    const cJSON *ly = cJSON_GetObjectItemCaseSensitive(m, "layers");
    if (ly) {
        const cJSON *a = cJSON_GetArrayItem(ly, 0), *b = cJSON_GetArrayItem(ly, 1);
        if (!cJSON_IsArray(ly) || cJSON_GetArraySize(ly) != 2 || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) ||
            a->valuedouble < 0 || b->valuedouble < a->valuedouble || b->valuedouble > 4095 ||
            a->valuedouble != floor(a->valuedouble) || b->valuedouble != floor(b->valuedouble))
            return es_fail(e, "%s: key 'rules[%d].match.layers': expected [first, last], whole numbers with "
                              "0 <= first <= last <= 4095 (a model has at most 4096 layers)", path, i);
        rule->layer_lo = (int64_t)a->valuedouble;
        rule->layer_hi = (int64_t)b->valuedouble;
    }
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    int t = cJSON_IsString(fmt) ? es_qtype_from_name(fmt->valuestring) : -1;
    if (t < 0)
        return es_fail(e, "%s: key 'rules[%d].format': expected one of f32, f16, bf16, q8_0, q4_0, "
                          "q3_k, q4_k, q5_k, q6_k, mxfp4, nvfp4, fp8, int3, int6, got %s", path, i,
                       cJSON_IsString(fmt) ? fmt->valuestring : "a non-string");
    rule->fmt.type = (es_qtype)t;
    rule->fmt.tensor_scale = 1.0f;
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(j, "group");
    if (t == ES_Q_INT3 || t == ES_Q_INT6) {
        if (!cJSON_IsNumber(g) || (g->valuedouble != 32 && g->valuedouble != 64 && g->valuedouble != 128))
            return es_fail(e, "%s: key 'rules[%d].group': expected 32, 64 or 128 for %s", path, i,
                           fmt->valuestring);
        rule->fmt.group = (int)g->valuedouble;
    } else if (g) {
        return es_fail(e, "%s: key 'rules[%d].group': only int3 and int6 take a group size", path, i);
    }
    const cJSON *nb = cJSON_GetObjectItemCaseSensitive(j, "nibbles");
    if (nb) {
        if (cJSON_IsString(nb) && strcmp(nb->valuestring, "split") == 0) rule->fmt.nibbles = ES_NIB_SPLIT;
        else if (cJSON_IsString(nb) && strcmp(nb->valuestring, "interleaved") == 0)
            rule->fmt.nibbles = ES_NIB_INTERLEAVED;
        else return es_fail(e, "%s: key 'rules[%d].nibbles': expected \"split\" or \"interleaved\"", path, i);
    }
    return 0;
}

static int from_cfg(es_recipe *r, es_cfg *c, es_err *e);

int es_recipe_load(es_recipe *r, const char *spec, es_err *e)
{
    memset(r, 0, sizeof *r);
    if (es_resolve(spec, "recipes", NULL, r->path, sizeof r->path, e)) return -1;
    es_cfg c;
    if (es_cfg_load(&c, r->path, e)) return -1;
    return from_cfg(r, &c, e);
}

int es_recipe_parse(es_recipe *r, const char *label, const char *text, es_err *e)
{
    memset(r, 0, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", label);
    es_cfg c;
    if (es_cfg_parse(&c, label, text, e)) return -1;
    return from_cfg(r, &c, e);
}

/* Takes c (freed here). */
static int from_cfg(es_recipe *r, es_cfg *cp, es_err *e)
{
    es_cfg c = *cp;
    int rc = -1;
    char *text = es_cfg_dump(&c);
    r->hash = es_fnv1a(ES_FNV_OFFSET, text, text ? strlen(text) : 0);
    cJSON_free(text);
    static const char *const top_keys[] = {"name", "description", "rules", NULL};
    if (es_cfg_only_keys(c.root, r->path, "", top_keys, e) || es_cfg_str(&c, "name", r->name, sizeof r->name, e))
        goto out;
    const cJSON *rules = es_cfg_node(&c, "rules");
    if (!cJSON_IsArray(rules) || cJSON_GetArraySize(rules) == 0) {
        es_fail(e, "%s: key 'rules': expected a non-empty array of rules", r->path);
        goto out;
    }
    r->n_rules = cJSON_GetArraySize(rules);
    r->rules = calloc((size_t)r->n_rules, sizeof *r->rules);
    if (!r->rules) { es_fail(e, "%s: out of memory", r->path); goto out; }
    for (int i = 0; i < r->n_rules; i++)
        if (parse_rule(r->path, i, cJSON_GetArrayItem(rules, i), &r->rules[i], e)) goto out;
    rc = 0;
out:
    es_cfg_free(&c);
    if (rc) es_recipe_free(r);
    return rc;
}

void es_recipe_free(es_recipe *r)
{
    free(r->rules);
    r->rules = NULL;
    r->n_rules = 0;
}

int es_recipe_format(const es_recipe *r, const es_tensor *t, es_qfmt *out, es_err *e)
{
    es_role role = t->lm_head ? ES_ROLE_LM_HEAD : t->role;
    for (int i = 0; i < r->n_rules; i++) {
        const es_recipe_rule *u = &r->rules[i];
        if (u->roles && !(u->roles >> role & 1)) continue;
        if (u->layer_lo >= 0 && (t->layer < u->layer_lo || t->layer > u->layer_hi)) continue;
        *out = u->fmt; /* a row that does not fill whole blocks is zero-padded in the ROM */
        return 0;
    }
    return es_fail(e, "%s: no rule matches %s (role %s, layer %d)", r->path, t->name,
                   es_role_name(role), t->layer);
}

/* One format as a chip file's weights.* section, sourced by the recipe's rule k. */
static cJSON *chip_fmt(const es_recipe *r, int k)
{
    char src[200];
    cJSON *j = cJSON_CreateObject(), *f = cJSON_AddObjectToObject(j, "format");
    snprintf(src, sizeof src, "recipe %s's rules[%d] (chip derive --recipe %s)", r->name, k, r->name);
    cJSON_AddStringToObject(f, "value", es_qtype_name(r->rules[k].fmt.type));
    cJSON_AddStringToObject(f, "source", src);
    if (r->rules[k].fmt.type == ES_Q_INT3 || r->rules[k].fmt.type == ES_Q_INT6) {
        cJSON *g = cJSON_AddObjectToObject(j, "group");
        cJSON_AddNumberToObject(g, "value", r->rules[k].fmt.group);
        cJSON_AddStringToObject(g, "source", src);
    }
    return j;
}

int es_recipe_chip_weights(const es_recipe *r, cJSON **out, es_err *e)
{
    *out = NULL;
    int def = -1;
    for (int k = 0; k < r->n_rules && def < 0; k++)
        if (r->rules[k].roles == 0) def = k;
    if (def < 0 || r->rules[def].layer_lo >= 0)
        return es_fail(e, "%s: a chip's weights.default needs a rule matching every role and every layer; %s",
                       r->path, def < 0 ? "the recipe has none" : "its first such rule is limited to some layers");
    cJSON *w = cJSON_CreateObject();
    cJSON_AddItemToObject(w, "default", chip_fmt(r, def));
    cJSON *roles = cJSON_AddObjectToObject(w, "roles");
    for (int role = 0; role < ES_ROLE_COUNT; role++) {
        int k = 0;
        while (k < r->n_rules && r->rules[k].roles && !(r->rules[k].roles & (1u << role))) k++;
        if (r->rules[k].layer_lo >= 0) {
            cJSON_Delete(w);
            return es_fail(e, "%s: key 'rules[%d].match.layers': a chip holds one format per role, but the first "
                              "rule for role %s holds only layers [%lld, %lld]", r->path, k, es_role_name((es_role)role),
                           (long long)r->rules[k].layer_lo, (long long)r->rules[k].layer_hi);
        }
        if (k != def) cJSON_AddItemToObject(roles, es_role_name((es_role)role), chip_fmt(r, k));
    }
    *out = w;
    return 0;
}
