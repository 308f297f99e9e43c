/* es_cfg: JSON configuration files with dotted keys, sources and overrides.
 * A leaf is either a plain JSON value or {"value": v, "source": "..."}; the
 * getters unwrap both. Every getter checks type and range and, on failure,
 * writes "<file>: key '<k>': expected ..., got ..." into the es_err. */
#ifndef ES_CFG_H
#define ES_CFG_H
#include <stddef.h>
#include <stdint.h>
#include "es_err.h"
#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;

typedef struct es_cfg {
    char path[512];      /* file the tree came from, for error messages */
    struct cJSON *root;  /* parsed tree, owned */
} es_cfg;

/* Read and parse a JSON file; a syntax error names the line and column. */
int es_cfg_load(es_cfg *c, const char *path, es_err *e);
/* Parse JSON text; `label` stands in for the file name in errors. */
int es_cfg_parse(es_cfg *c, const char *label, const char *text, es_err *e);
void es_cfg_free(es_cfg *c);
/* Why cJSON stopped at `at` in text[0..len): "JSON nested more than 1000 levels deep (the
 * reader's limit) at line L, column C" when an array or object opened past the limit (cJSON's
 * CJSON_NESTING_LIMIT), else "malformed JSON at line L, column C". */
void es_json_error_at(const char *text, size_t len, const char *at, char *out, size_t n);

/* Set an existing key to {"value": v, "source": source}; v is parsed as JSON,
 * else taken as a string. */
int es_cfg_set_sourced(es_cfg *c, const char *key, const char *value, const char *source, es_err *e);
/* Override an existing key: value is parsed as JSON, else taken as a string. */
int es_cfg_set(es_cfg *c, const char *key, const char *value, es_err *e);

/* The unwrapped node at a dotted key, or NULL when absent. */
const struct cJSON *es_cfg_node(const es_cfg *c, const char *key);
int es_cfg_has(const es_cfg *c, const char *key);

int es_cfg_num(const es_cfg *c, const char *key, double lo, double hi,
               double *out, es_err *e);
int es_cfg_i64(const es_cfg *c, const char *key, int64_t lo, int64_t hi,
               int64_t *out, es_err *e);
int es_cfg_int(const es_cfg *c, const char *key, int lo, int hi, int *out,
               es_err *e);
int es_cfg_bool(const es_cfg *c, const char *key, int *out, es_err *e);
int es_cfg_str(const es_cfg *c, const char *key, char *out, size_t n,
               es_err *e);
/* Optional variant: an absent key leaves *out = dflt and succeeds. */
int es_cfg_i64_opt(const es_cfg *c, const char *key, int64_t lo, int64_t hi,
                   int64_t dflt, int64_t *out, es_err *e);

/* Count numeric leaves that carry no "source"; writes the first such key
 * into `first` (may be NULL). Used to hold shipped configurations sourced. */
int es_cfg_unsourced(const es_cfg *c, char *first, size_t n);

/* Every member of object `obj` (at `where`, e.g. "rules[2]"; "" for the root) must be one of
 * `allowed` (NULL-terminated): otherwise an error naming path, the key and what is accepted. */
int es_cfg_only_keys(const struct cJSON *obj, const char *path, const char *where, const char *const *allowed,
                     es_err *e);

/* Serialize the (overridden) tree, for the run record. Caller frees. */
char *es_cfg_dump(const es_cfg *c);

#ifdef __cplusplus
}
#endif
#endif
