/* es_gguf: the container part of a GGUF v3 file: header, metadata and
 * tensor infos, read with every count, length and offset checked against
 * the file before use. Scalars are decoded on open; arrays are read on
 * demand from the file. What tensor types mean (block sizes, layouts) is
 * weights/'s business (es_wsrc); this module only locates them.
 * Errors name the file and the metadata key. */
#ifndef ES_GGUF_H
#define ES_GGUF_H
#include <stddef.h>
#include <stdint.h>
#include "es_err.h"
#ifdef __cplusplus
extern "C" {
#endif

enum { ES_GGUF_U8, ES_GGUF_I8, ES_GGUF_U16, ES_GGUF_I16, ES_GGUF_U32, ES_GGUF_I32, ES_GGUF_F32,
       ES_GGUF_BOOL, ES_GGUF_STRING, ES_GGUF_ARRAY, ES_GGUF_U64, ES_GGUF_I64, ES_GGUF_F64 };

typedef struct es_gguf_kv {
    char key[256];       /* e.g. "llama.block_count" */
    uint32_t type;       /* ES_GGUF_* */
    uint32_t elem_type;  /* arrays: element type */
    uint64_t count;      /* arrays: elements */
    int64_t at;          /* arrays: file offset of the first element */
    int is_int;          /* integer or bool scalar: value in i */
    int64_t i;           /* integer scalars (u64 above INT64_MAX: is_int 0) */
    double f;            /* every numeric scalar, as a double */
    char *s;             /* strings (at most 64 KiB), NUL-terminated; owned */
} es_gguf_kv;

typedef struct es_gguf_tensor {
    char name[128];
    uint32_t n_dims;     /* 1..4 */
    uint64_t ne[4];      /* dimensions, innermost first, each at most 2^40 */
    uint32_t type;       /* ggml type number */
    uint64_t offset;     /* relative to the data section */
} es_gguf_tensor;

typedef struct es_gguf {
    char path[512];
    int fd;              /* open for array and tensor reads */
    int64_t size;        /* file bytes */
    uint32_t alignment;  /* general.alignment, default 32 */
    es_gguf_kv *kv;      /* (n_kv) metadata in file order */
    int n_kv;
    es_gguf_tensor *t;   /* (n_tensors) tensor infos in file order */
    int n_tensors;
    int64_t data_at;     /* file offset of the data section */
} es_gguf;

int es_gguf_is_gguf(const char *path); /* starts with the magic "GGUF" */
int es_gguf_open(es_gguf *g, const char *path, es_err *e);
void es_gguf_close(es_gguf *g);

const es_gguf_kv *es_gguf_find(const es_gguf *g, const char *key); /* NULL when absent */
const es_gguf_tensor *es_gguf_tensor_find(const es_gguf *g, const char *name);
/* Typed getters: a missing key or a wrong type or range fails naming the
 * file and the key; the _opt forms leave *out = dflt when the key is absent. */
int es_gguf_i64(const es_gguf *g, const char *key, int64_t lo, int64_t hi, int64_t *out, es_err *e);
int es_gguf_i64_opt(const es_gguf *g, const char *key, int64_t lo, int64_t hi, int64_t dflt,
                    int64_t *out, es_err *e);
int es_gguf_num_opt(const es_gguf *g, const char *key, double lo, double hi, double dflt,
                    double *out, es_err *e);
int es_gguf_str(const es_gguf *g, const char *key, const char **out, es_err *e);
/* Arrays. strings: cb for each element (return non-zero to stop with an
 * error). nums: every numeric element type, as doubles into a malloc'd array. */
int es_gguf_arr_strings(const es_gguf *g, const char *key,
                        int (*cb)(void *arg, int64_t i, const char *s, size_t n), void *arg,
                        es_err *e);
int es_gguf_arr_nums(const es_gguf *g, const char *key, double **out, int64_t *n, es_err *e);
/* The element count of array `key` (-1 with e when absent or not an array). */
int64_t es_gguf_arr_count(const es_gguf *g, const char *key, es_err *e);
/* Read n bytes at absolute file offset off. */
int es_gguf_read(const es_gguf *g, void *buf, int64_t n, int64_t off, es_err *e);

#ifdef __cplusplus
}
#endif
#endif
