/* es_system: system files (es_system.h). */
#include "es_system.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "es_cfg.h"
#include "es_fs.h"

const char *es_topo_name(es_topo t) { return t == ES_TOPO_ALL_TO_ALL ? "all_to_all" : "chain"; }

/* The unwrapped value of a member ({"value": v, "source": s} or v), or NULL. */
static const cJSON *member(const cJSON *obj, const char *key)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsObject(n) && cJSON_GetObjectItemCaseSensitive(n, "value"))
        n = cJSON_GetObjectItemCaseSensitive(n, "value");
    return n;
}

/* "key": [first, last] of integers, 0 <= first <= last <= hi; absent: -1, -1 when optional. */
static int range(const es_system *s, const cJSON *obj, int i, const char *key, int optional, int hi, int *first,
                 int *last, es_err *e)
{
    const cJSON *n = member(obj, key);
    *first = *last = -1;
    if (!n && optional) return 0;
    if (cJSON_GetArraySize(n) == 2 && cJSON_IsArray(n)) {
        const cJSON *a = cJSON_GetArrayItem(n, 0), *b = cJSON_GetArrayItem(n, 1);
        if (cJSON_IsNumber(a) && cJSON_IsNumber(b) && a->valuedouble == (int)a->valuedouble &&
            b->valuedouble == (int)b->valuedouble && a->valueint >= 0 && a->valueint <= b->valueint &&
            b->valueint <= hi) {
            *first = a->valueint;
            *last = b->valueint;
            return 0;
        }
    }
    return es_fail(e, "%s: key 'chips[%d].%s': expected [first, last], two whole numbers with 0 <= first <= last "
                      "<= %d", s->path, i, key, hi);
}

/* One entry of "chips": its chip file and ranges. */
static int load_chip(es_system *s, const cJSON *obj, int i, const char *dir, const char *const *sets, int n_sets,
                     es_err *e)
{
    static const char *const keys[] = {"chip", "layers", "experts", "tensor_parallel", NULL};
    es_sys_chip *c = &s->chips[i];
    char where[32], path[1024];
    snprintf(where, sizeof where, "chips[%d]", i);
    if (!cJSON_IsObject(obj))
        return es_fail(e, "%s: key '%s': expected an object {\"chip\": ..., \"layers\": [first, last]}", s->path,
                       where);
    if (es_cfg_only_keys(obj, s->path, where, keys, e)) return -1;
    const cJSON *spec = member(obj, "chip");
    if (!cJSON_IsString(spec) || !spec->valuestring[0])
        return es_fail(e, "%s: key '%s.chip': expected a chip name or the path of a chip file", s->path, where);
    snprintf(c->spec, sizeof c->spec, "%s", spec->valuestring);
    if (range(s, obj, i, "layers", 0, 1 << 20, &c->layer_first, &c->layer_last, e)) return -1;
    if (range(s, obj, i, "experts", 1, 1 << 20, &c->expert_first, &c->expert_last, e)) return -1;
    const cJSON *tp = member(obj, "tensor_parallel");
    c->tp = 1;
    if (tp) {
        if (!cJSON_IsNumber(tp) || tp->valuedouble != (int)tp->valuedouble || tp->valueint < 1 || tp->valueint > 1024)
            return es_fail(e, "%s: key '%s.tensor_parallel': expected a whole number of chips from 1 to 1024", s->path,
                           where);
        c->tp = tp->valueint;
        if (c->tp > 1 && c->expert_first >= 0)
            return es_fail(e, "%s: key '%s.tensor_parallel': a stage splitting experts cannot also split each "
                              "layer's matrices (tensor parallelism is for dense models)", s->path, where);
    }
    /* a relative path: from the system file's folder first */
    if (c->spec[0] != '/' && snprintf(path, sizeof path, "%s/%s", dir, c->spec) < (int)sizeof path &&
        es_is_file(path)) {
    } else
        snprintf(path, sizeof path, "%s", c->spec);
    es_err ce;
    if (es_chip_load(&c->chip, path, sets, n_sets, &ce))
        return es_fail(e, "%s: key '%s.chip': %s", s->path, where, ce.msg);
    return 0;
}

static int load_link(es_system *s, const es_cfg *t, es_err *e)
{
    static const char *const keys[] = {"topology", "bandwidth_bits_per_s", "latency_ns", "energy_pj_per_bit", NULL};
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(t->root, "link");
    if (!cJSON_IsObject(l))
        return es_fail(e, "%s: key 'link': expected an object with topology, bandwidth_bits_per_s, latency_ns and "
                          "energy_pj_per_bit", s->path);
    if (es_cfg_only_keys(l, s->path, "link", keys, e)) return -1;
    char topo[32];
    if (es_cfg_str(t, "link.topology", topo, sizeof topo, e)) return -1;
    if (!strcmp(topo, "chain")) s->link.topo = ES_TOPO_CHAIN;
    else if (!strcmp(topo, "all_to_all")) s->link.topo = ES_TOPO_ALL_TO_ALL;
    else return es_fail(e, "%s: key 'link.topology': expected \"chain\" or \"all_to_all\", got \"%s\"", s->path, topo);
    if (es_cfg_num(t, "link.bandwidth_bits_per_s", 0, 1e18, &s->link.bits_per_s, e)) return -1;
    if (s->link.bits_per_s <= 0)
        return es_fail(e, "%s: key 'link.bandwidth_bits_per_s': expected a bandwidth above 0 bits/s, got 0 (a link "
                          "that moves nothing never delivers a token)", s->path);
    if (es_cfg_num(t, "link.latency_ns", 0, 1e9, &s->link.latency_ns, e)) return -1;
    return es_cfg_num(t, "link.energy_pj_per_bit", 0, 1e6, &s->link.pj_per_bit, e);
}

static int load_tree(es_system *s, const es_cfg *t, const char *const *sets, int n_sets, es_err *e)
{
    static const char *const keys[] = {"name", "description", "model", "link", "chips", NULL};
    if (!cJSON_IsObject(t->root)) return es_fail(e, "%s: expected a JSON object (a system file)", s->path);
    if (es_cfg_only_keys(t->root, s->path, "", keys, e)) return -1;
    if (es_cfg_str(t, "name", s->name, sizeof s->name, e)) return -1;
    if (es_cfg_str(t, "model", s->model, sizeof s->model, e)) return -1;
    if (load_link(s, t, e)) return -1;
    const cJSON *chips = cJSON_GetObjectItemCaseSensitive(t->root, "chips");
    int n = cJSON_IsArray(chips) ? cJSON_GetArraySize(chips) : 0;
    if (n < 1 || n > 4096)
        return es_fail(e, "%s: key 'chips': expected an array of 1 to 4096 chips, each {\"chip\": ..., \"layers\": "
                          "[first, last]}", s->path);
    s->chips = calloc((size_t)n, sizeof *s->chips);
    if (!s->chips) return es_fail(e, "%s: out of memory", s->path);
    char dir[sizeof s->path];
    snprintf(dir, sizeof dir, "%s", s->path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir] = 0;
    else snprintf(dir, sizeof dir, ".");
    char mpath[2 * sizeof s->path]; /* "model": a relative path, from the system file's folder first */
    if (s->model[0] != '/' && snprintf(mpath, sizeof mpath, "%s/%s", dir, s->model) < (int)sizeof s->model &&
        (es_is_dir(mpath) || es_is_file(mpath)))
        memcpy(s->model, mpath, strlen(mpath) + 1); /* it fits: checked above */
    for (int i = 0; i < n; i++) {
        if (load_chip(s, cJSON_GetArrayItem(chips, i), i, dir, sets, n_sets, e)) return -1;
        s->n_chips = i + 1;
        s->chips[i].chip.card_link = (es_card_link){s->link.bits_per_s, s->link.latency_ns, s->link.pj_per_bit * 1e-12};
    }
    /* stages: runs of chips with the same layer range; the first chip holds the embedding, the last stage's
       first chip the head */
    for (int i = 0; i < n; i++) {
        es_sys_chip *c = &s->chips[i];
        int same = i > 0 && c->layer_first == c[-1].layer_first && c->layer_last == c[-1].layer_last;
        c->stage = i == 0 ? 0 : c[-1].stage + !same;
        if (same && s->link.topo != ES_TOPO_ALL_TO_ALL)
            return es_fail(e, "%s: key 'link.topology': chips[%d] and chips[%d] hold the same layers [%d, %d] (a "
                              "stage that splits experts): expected \"all_to_all\", got \"chain\"",
                           s->path, i - 1, i, c->layer_first, c->layer_last);
    }
    s->n_stages = s->chips[n - 1].stage + 1;
    s->chips[0].embed = 1;
    for (int i = 0; i < n; i++)
        if (s->chips[i].stage == s->n_stages - 1) { s->chips[i].head = 1; break; }
    return 0;
}

static const char *const LINK_KEYS[] = {"link.bandwidth_bits_per_s", "link.latency_ns", "link.energy_pj_per_bit", NULL};

const char *const *es_system_link_keys(void) { return LINK_KEYS; }

int es_system_load(es_system *s, const char *spec, const char *const *sets, int n_sets, es_err *e)
{
    return es_system_load_link(s, spec, sets, n_sets, NULL, 0, e);
}

/* "link.KEY=VALUE" into the file's tree, where its own value stood (load_link checks it as one). */
static int set_link(es_system *s, es_cfg *t, const char *set, es_err *e)
{
    const char *eq = strchr(set, '=');
    char key[64];
    int known = 0;
    if (eq && (size_t)(eq - set) < sizeof key) {
        snprintf(key, sizeof key, "%.*s", (int)(eq - set), set);
        for (int i = 0; LINK_KEYS[i]; i++) known |= !strcmp(key, LINK_KEYS[i]);
    }
    if (!known)
        return es_fail(e, "%s: --set system.%s: expected system.link.bandwidth_bits_per_s, system.link.latency_ns or "
                          "system.link.energy_pj_per_bit, then =VALUE", s->path, set);
    return es_cfg_set(t, key, eq + 1, e);
}

int es_system_load_link(es_system *s, const char *spec, const char *const *sets, int n_sets,
                        const char *const *link_sets, int n_link_sets, es_err *e)
{
    memset(s, 0, sizeof *s);
    if (es_resolve(spec, "systems", NULL, s->path, sizeof s->path, e)) return -1;
    es_cfg t;
    if (es_cfg_load(&t, s->path, e)) return -1;
    int rc = 0;
    for (int i = 0; i < n_link_sets && rc == 0; i++) rc = set_link(s, &t, link_sets[i], e);
    if (rc == 0) rc = load_tree(s, &t, sets, n_sets, e);
    for (int i = 0; rc && i < n_link_sets; i++) { /* a value set on the command line: say so */
        char key[80];
        snprintf(key, sizeof key, "key '%.*s'", (int)strcspn(link_sets[i], "="), link_sets[i]);
        size_t len = strlen(e->msg);
        if (strstr(e->msg, key) && len + 40 < sizeof e->msg)
            snprintf(e->msg + len, sizeof e->msg - len, " (--set system.%.*s)", (int)strcspn(link_sets[i], "="),
                     link_sets[i]);
    }
    es_cfg_free(&t);
    if (rc) es_system_free(s);
    return rc;
}

/* A stage's experts: its chips' ranges must run from 0 to the last expert, in order, each once. */
static int check_experts(const es_system *s, const es_model *m, int first, int end, es_err *e)
{
    int E = (int)m->experts;
    int next = 0;
    for (int i = first; i < end; i++) {
        const es_sys_chip *c = &s->chips[i];
        if (c->expert_first < 0)
            return es_fail(e, "%s: key 'chips[%d].experts': chips[%d..%d] share layers [%d, %d], so each must say "
                              "which of the %d experts it holds", s->path, i, first, end - 1, c->layer_first,
                           c->layer_last, E);
        if (c->expert_first > next)
            return es_fail(e, "%s: key 'chips[%d].experts': experts %d..%d of layers [%d, %d] are on no chip "
                              "(expected the next range to start at %d)", s->path, i, next, c->expert_first - 1,
                           c->layer_first, c->layer_last, next);
        if (c->expert_first < next)
            return es_fail(e, "%s: key 'chips[%d].experts': experts %d..%d of layers [%d, %d] are on chips[%d] "
                              "too (expected the range to start at %d)", s->path, i, c->expert_first,
                           c->expert_last < next - 1 ? c->expert_last : next - 1, c->layer_first, c->layer_last,
                           i - 1, next);
        next = c->expert_last + 1;
    }
    if (next != E)
        return es_fail(e, "%s: key 'chips[%d].experts': the model has %d experts (0..%d); expected the last range "
                          "to end at %d, got %d", s->path, end - 1, E, E - 1, E - 1,
                       next - 1);
    return 0;
}

int es_system_check(const es_system *s, const es_model *m, es_err *e)
{
    int L = (int)m->layers, E = (int)m->experts;
    int next = 0; /* the first layer not yet held */
    for (int i = 0; i < s->n_chips;) {
        const es_sys_chip *c = &s->chips[i];
        int end = i + 1;
        while (end < s->n_chips && s->chips[end].stage == c->stage) end++;
        if (c->layer_first > next)
            return es_fail(e, "%s: key 'chips[%d].layers': layers %d..%d of %s are on no chip (expected [%d, ...], "
                              "got [%d, %d])", s->path, i, next, c->layer_first - 1, m->name, next, c->layer_first,
                           c->layer_last);
        if (c->layer_first < next)
            return es_fail(e, "%s: key 'chips[%d].layers': layers %d..%d are on chips[%d] too (expected [%d, ...], "
                              "got [%d, %d])", s->path, i, c->layer_first,
                           c->layer_last < next - 1 ? c->layer_last : next - 1, i - 1, next, c->layer_first,
                           c->layer_last);
        if (c->layer_last >= L)
            return es_fail(e, "%s: key 'chips[%d].layers': %s has %d layers (0..%d), got [%d, %d]", s->path, i,
                           m->name, L, L - 1, c->layer_first, c->layer_last);
        if (end - i > 1 && E <= 1)
            return es_fail(e, "%s: key 'chips[%d].layers': chips[%d..%d] hold the same layers [%d, %d], which only "
                              "a mixture of experts can split (by experts); %s has none", s->path, i + 1, i, end - 1,
                           c->layer_first, c->layer_last, m->name);
        if (end - i > 1 && check_experts(s, m, i, end, e)) return -1;
        if (c->tp > 1 && (m->experts > 0 || m->ssm_state > 0 || m->qk_norm == 2 || m->heads % c->tp ||
                          (m->kv_heads % c->tp && c->tp % m->kv_heads) || m->ffn % c->tp))
            return es_fail(e, "%s: key 'chips[%d].tensor_parallel': %d chips splitting each layer's matrices need a "
                              "dense attention model whose heads (%lld) and ffn (%lld) divide by %d, and kv_heads "
                              "(%lld) by it or it by them (%s%s)", s->path, i, c->tp, (long long)m->heads,
                           (long long)m->ffn, c->tp, (long long)m->kv_heads, m->name,
                           m->experts > 0 ? " has experts" : m->ssm_state > 0 ? " is a state-space model"
                           : m->qk_norm == 2 ? " normalizes the whole q and k projections" : " does not divide");
        for (int k = i; k < end && end - i == 1; k++)
            if (s->chips[k].expert_first >= 0 &&
                (s->chips[k].expert_first != 0 || s->chips[k].expert_last != (E > 1 ? E : 1) - 1))
                return es_fail(e, "%s: key 'chips[%d].experts': the only chip of layers [%d, %d] must hold every "
                                  "expert (0..%d), got [%d, %d]", s->path, k, c->layer_first, c->layer_last,
                               (E > 1 ? E : 1) - 1, s->chips[k].expert_first,
                               s->chips[k].expert_last);
        next = c->layer_last + 1;
        i = end;
    }
    if (next != L)
        return es_fail(e, "%s: key 'chips[%d].layers': layers %d..%d of %s are on no chip (the last chip ends at "
                          "layer %d)", s->path, s->n_chips - 1, next, L - 1, m->name, next - 1);
    return 0;
}

void es_system_free(es_system *s)
{
    for (int i = 0; i < s->n_chips; i++) es_chip_free(&s->chips[i].chip);
    free(s->chips);
    memset(s, 0, sizeof *s);
}
