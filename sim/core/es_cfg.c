/* es_cfg: loading, overriding and typed, range-checked reading of JSON
 * configuration trees (see es_cfg.h). Keys are dotted paths into objects. */
#define _POSIX_C_SOURCE 200809L
#include "es_cfg.h"
#include <cjson/cJSON.h>
#include "es_fs.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the first key of an object (at any depth) that appears twice in it: JSON
 * readers disagree on which one wins, so a file must not have any */
static int find_duplicate(const cJSON *n, const char *prefix, char *out, size_t len)
{
    for (const cJSON *a = n ? n->child : NULL; a; a = a->next) {
        char key[512];
        if (cJSON_IsObject(n)) {
            if (prefix[0]) snprintf(key, sizeof key, "%s.%s", prefix, a->string ? a->string : "?");
            else snprintf(key, sizeof key, "%s", a->string ? a->string : "?");
            for (const cJSON *b = a->next; b; b = b->next)
                if (a->string && b->string && !strcmp(a->string, b->string)) {
                    snprintf(out, len, "%s", key);
                    return 1;
                }
        } else {
            snprintf(key, sizeof key, "%s", prefix);
        }
        if ((cJSON_IsObject(a) || cJSON_IsArray(a)) && find_duplicate(a, key, out, len)) return 1;
    }
    return 0;
}

void es_json_error_at(const char *text, size_t len, const char *at, char *out, size_t n)
{
    int line = 1, col = 1, depth = 0, in_str = 0, esc = 0;
    const char *stop = at && at >= text && at <= text + len ? at : text + len;
    for (const char *p = text; p < stop; p++) {
        if (*p == '\n') { line++; col = 1; } else col++;
        if (in_str) { /* brackets inside strings do not nest */
            if (esc) esc = 0;
            else if (*p == '\\') esc = 1;
            else if (*p == '"') in_str = 0;
        } else if (*p == '"') in_str = 1;
        else if (*p == '[' || *p == '{') depth++;
        else if (*p == ']' || *p == '}') depth--;
    }
    if (!in_str && depth >= CJSON_NESTING_LIMIT && stop < text + len && (*stop == '[' || *stop == '{'))
        snprintf(out, n, "JSON nested more than %d levels deep (the reader's limit) at line %d, column %d",
                 CJSON_NESTING_LIMIT, line, col);
    else
        snprintf(out, n, "malformed JSON at line %d, column %d", line, col);
}

int es_cfg_parse(es_cfg *c, const char *label, const char *text, es_err *e)
{
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", label);
    const char *end = NULL;
    c->root = cJSON_ParseWithOpts(text, &end, 1);
    if (!c->root) {
        char why[160];
        es_json_error_at(text, strlen(text), end ? end : cJSON_GetErrorPtr(), why, sizeof why);
        return es_fail(e, "%s: %s", label, why);
    }
    if (!cJSON_IsObject(c->root)) {
        cJSON_Delete(c->root);
        c->root = NULL;
        return es_fail(e, "%s: expected a JSON object at the top level", label);
    }
    char dup[512];
    if (find_duplicate(c->root, "", dup, sizeof dup)) {
        cJSON_Delete(c->root);
        c->root = NULL;
        return es_fail(e, "%s: key '%s' appears twice (which one counts would be a guess)", label, dup);
    }
    return 0;
}

int es_cfg_load(es_cfg *c, const char *path, es_err *e)
{
    memset(c, 0, sizeof *c);
    char *buf;
    size_t n;
    if (es_read_file(path, (size_t)64 << 20, &buf, &n, e)) return -1;
    if (es_check_text(path, buf, n, "a JSON text file", e)) { /* what follows a NUL would go unread */
        free(buf);
        return -1;
    }
    int rc = es_cfg_parse(c, path, buf, e);
    free(buf);
    return rc;
}

void es_cfg_free(es_cfg *c)
{
    if (c && c->root) cJSON_Delete(c->root);
    if (c) c->root = NULL;
}

/* The raw node (possibly a {"value","source"} wrapper) at a dotted key. */
static cJSON *raw_node(const es_cfg *c, const char *key)
{
    if (!c || !c->root || !key) return NULL;
    cJSON *n = c->root;
    char part[128];
    const char *p = key;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len == 0 || len >= sizeof part) return NULL;
        memcpy(part, p, len);
        part[len] = 0;
        if (!cJSON_IsObject(n)) return NULL;
        n = cJSON_GetObjectItemCaseSensitive(n, part);
        if (!n) return NULL;
        p += len;
        if (*p == '.') p++;
    }
    return n;
}

static int is_wrapper(const cJSON *n)
{
    return cJSON_IsObject(n) && cJSON_GetObjectItemCaseSensitive(n, "value") != NULL;
}

const cJSON *es_cfg_node(const es_cfg *c, const char *key)
{
    cJSON *n = raw_node(c, key);
    if (n && is_wrapper(n)) n = cJSON_GetObjectItemCaseSensitive(n, "value");
    return n;
}

int es_cfg_has(const es_cfg *c, const char *key) { return es_cfg_node(c, key) != NULL; }

static void describe(const cJSON *n, char *out, size_t len)
{
    if (!n) { snprintf(out, len, "nothing (key missing)"); return; }
    if (cJSON_IsNumber(n)) { snprintf(out, len, "%.17g", n->valuedouble); return; }
    if (cJSON_IsString(n)) { snprintf(out, len, "\"%.60s\"", n->valuestring); return; }
    if (cJSON_IsBool(n)) { snprintf(out, len, "%s", cJSON_IsTrue(n) ? "true" : "false"); return; }
    if (cJSON_IsNull(n)) { snprintf(out, len, "null"); return; }
    snprintf(out, len, "%s", cJSON_IsArray(n) ? "an array" : "an object");
}

int es_cfg_num(const es_cfg *c, const char *key, double lo, double hi, double *out, es_err *e)
{
    const cJSON *n = es_cfg_node(c, key);
    char got[96];
    describe(n, got, sizeof got);
    if (!n || !cJSON_IsNumber(n) || !isfinite(n->valuedouble) || n->valuedouble < lo ||
        n->valuedouble > hi)
        return es_fail(e, "%s: key '%s': expected a number in [%g, %g], got %s",
                       c->path, key, lo, hi, got);
    *out = n->valuedouble;
    return 0;
}

int es_cfg_i64(const es_cfg *c, const char *key, int64_t lo, int64_t hi, int64_t *out, es_err *e)
{
    const cJSON *n = es_cfg_node(c, key);
    char got[96];
    describe(n, got, sizeof got);
    if (!n || !cJSON_IsNumber(n) || !isfinite(n->valuedouble) ||
        n->valuedouble != floor(n->valuedouble) || n->valuedouble < (double)lo ||
        n->valuedouble > (double)hi)
        return es_fail(e, "%s: key '%s': expected an integer in [%lld, %lld], got %s",
                       c->path, key, (long long)lo, (long long)hi, got);
    *out = (int64_t)n->valuedouble;
    return 0;
}

int es_cfg_int(const es_cfg *c, const char *key, int lo, int hi, int *out, es_err *e)
{
    int64_t v = 0;
    if (es_cfg_i64(c, key, lo, hi, &v, e)) return -1;
    *out = (int)v;
    return 0;
}

int es_cfg_bool(const es_cfg *c, const char *key, int *out, es_err *e)
{
    const cJSON *n = es_cfg_node(c, key);
    char got[96];
    describe(n, got, sizeof got);
    if (!n || !cJSON_IsBool(n))
        return es_fail(e, "%s: key '%s': expected true or false, got %s", c->path, key, got);
    *out = cJSON_IsTrue(n);
    return 0;
}

int es_cfg_str(const es_cfg *c, const char *key, char *out, size_t n, es_err *e)
{
    const cJSON *j = es_cfg_node(c, key);
    char got[96];
    describe(j, got, sizeof got);
    if (!j || !cJSON_IsString(j) || !j->valuestring[0] || strlen(j->valuestring) >= n)
        return es_fail(e, "%s: key '%s': expected a non-empty string, got %s", c->path, key, got);
    snprintf(out, n, "%s", j->valuestring);
    return 0;
}

int es_cfg_i64_opt(const es_cfg *c, const char *key, int64_t lo, int64_t hi, int64_t dflt,
                   int64_t *out, es_err *e)
{
    if (!es_cfg_has(c, key)) { *out = dflt; return 0; }
    return es_cfg_i64(c, key, lo, hi, out, e);
}

/* Put v (owned) in place of the node at key, a plain leaf of its parent. */
static void replace_leaf(es_cfg *c, const char *key, cJSON *v)
{
    char parent[512];
    snprintf(parent, sizeof parent, "%s", key);
    char *dot = strrchr(parent, '.');
    cJSON *obj = c->root;
    const char *leaf = parent;
    if (dot) {
        *dot = 0;
        obj = raw_node(c, parent);
        leaf = dot + 1;
    }
    cJSON_ReplaceItemInObjectCaseSensitive(obj, leaf, v);
}

static int set_source(es_cfg *c, cJSON *wrapper, const char *source, es_err *e)
{
    cJSON *src = cJSON_CreateString(source);
    if (!src) return es_fail(e, "%s: out of memory", c->path);
    if (cJSON_GetObjectItemCaseSensitive(wrapper, "source")) cJSON_ReplaceItemInObjectCaseSensitive(wrapper, "source", src);
    else cJSON_AddItemToObject(wrapper, "source", src);
    return 0;
}

int es_cfg_set_sourced(es_cfg *c, const char *key, const char *value, const char *source, es_err *e)
{
    if (es_cfg_set(c, key, value, e)) return -1;
    cJSON *n = raw_node(c, key);
    if (!is_wrapper(n)) { /* a plain leaf: wrap it */
        cJSON *v = cJSON_Duplicate(n, 1), *w = cJSON_CreateObject();
        if (!v || !w) { cJSON_Delete(v); cJSON_Delete(w); return es_fail(e, "%s: out of memory", c->path); }
        cJSON_AddItemToObject(w, "value", v);
        replace_leaf(c, key, w);
        n = w;
    }
    return set_source(c, n, source, e);
}

int es_cfg_set(es_cfg *c, const char *key, const char *value, es_err *e)
{
    cJSON *n = raw_node(c, key);
    if (!n)
        return es_fail(e, "%s: --set %s: no such key in this file", c->path, key);
    if (cJSON_IsObject(n) && !is_wrapper(n))
        return es_fail(e, "%s: --set %s: the key names a section, not a value", c->path, key);
    cJSON *v = cJSON_ParseWithOpts(value, NULL, 1); /* all of it: "1024abc" and "0x10" are not numbers */
    if (!v) v = cJSON_CreateString(value);
    if (!v) return es_fail(e, "%s: --set %s: out of memory", c->path, key);
    if (is_wrapper(n)) {
        cJSON_ReplaceItemInObjectCaseSensitive(n, "value", v);
        return set_source(c, n, "command line --set", e);
    }
    replace_leaf(c, key, v); /* a plain leaf */
    return 0;
}

static int walk_unsourced(const cJSON *n, const char *prefix, char *first, size_t len)
{
    int count = 0;
    const cJSON *ch;
    cJSON_ArrayForEach(ch, n) {
        char key[512];
        if (prefix[0]) snprintf(key, sizeof key, "%s.%s", prefix, ch->string ? ch->string : "?");
        else snprintf(key, sizeof key, "%s", ch->string ? ch->string : "?");
        if (cJSON_IsNumber(ch)) {
            if (count == 0 && first) snprintf(first, len, "%s", key);
            count++;
        } else if (is_wrapper(ch)) {
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(ch, "source");
            if (!cJSON_IsString(s) || !s->valuestring[0]) {
                if (count == 0 && first) snprintf(first, len, "%s", key);
                count++;
            }
        } else if (cJSON_IsObject(ch)) {
            int sub = walk_unsourced(ch, key, count == 0 ? first : NULL, len);
            count += sub;
        }
    }
    return count;
}

int es_cfg_unsourced(const es_cfg *c, char *first, size_t n)
{
    if (first && n) first[0] = 0;
    return c->root ? walk_unsourced(c->root, "", first, n) : 0;
}

char *es_cfg_dump(const es_cfg *c) { return c->root ? cJSON_PrintUnformatted(c->root) : NULL; }

int es_cfg_only_keys(const cJSON *obj, const char *path, const char *where, const char *const *allowed, es_err *e)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++) ok = !strcmp(it->string, allowed[i]);
        if (ok) continue;
        char list[256] = "";
        for (int i = 0; allowed[i]; i++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", i ? (allowed[i + 1] ? ", " : " or ") : "", allowed[i]);
        }
        return es_fail(e, "%s: key '%s%s%.80s': not expected here (expected %s)", path, where, where[0] ? "." : "",
                       it->string, list);
    }
    return 0;
}
