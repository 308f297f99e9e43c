/* cli_func: what the commands with a functional mode share (infer, run,
 * eval): the tokenizer for a model, a datapath with weights from a ROM
 * image, a weights file or synthetic rows (es_func.h holds the loading), the
 * text of token ids, and the --logits file. Part of the command line; errors
 * name the file and key. */
#ifndef CLI_FUNC_H
#define CLI_FUNC_H
#include <stdint.h>
#include <stdio.h>
#include <cjson/cJSON.h>
#include "es_chip.h"
#include "es_dp.h"
#include "es_err.h"
#include "es_fs.h"
#include "es_func.h"
#include "es_model.h"
#include "es_tok.h"
#ifdef __cplusplus
extern "C" {
#endif

/* The tokenizer: vocab (a GGUF file's metadata or a tiktoken file), else
 * the model's own GGUF file, else models/llm/NAME/tokenizer.tiktoken. The
 * file used is written to path. */
int es_func_tokenizer(const es_model *m, const char *vocab, es_tok **tok, char *path, size_t n, es_err *e);

/* es_func_load with the command line's words: none or several of --rom, --weights and --synthetic
 * is an error saying so. */
int es_func_datapath(es_dp **dp, const es_chip *c, const es_model *m, const es_func_weights *w, int threads,
                     es_err *e);

/* The text of ids (malloc'd, NUL-terminated), or NULL when out of memory.
 * Always valid UTF-8: bytes that form no character (a byte token cut off)
 * become U+FFFD. */
char *es_func_text(const es_tok *tok, const int32_t *ids, int64_t n);

/* --logits FILE: a JSON array of {"pos", "token", "logits": [...]}, written to
 * FILE.tmp and renamed over FILE when complete (a run stopped by a signal removes FILE.tmp). A NaN or
 * infinite logit is an error naming the position and the token (JSON has no such numbers). */
typedef struct es_logits_file { es_atomic out; int rows; } es_logits_file;
int es_logits_open(es_logits_file *lf, const char *path, es_err *e);
int es_logits_row(es_logits_file *lf, int64_t pos, int32_t token, const float *logits, int64_t n, es_err *e);
int es_logits_close(es_logits_file *lf, es_err *e); /* renames; on a failure removes the temporary */
void es_logits_abort(es_logits_file *lf);           /* drops the temporary */

#ifdef __cplusplus
}
#endif
#endif
