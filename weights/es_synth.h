/* es_synth: deterministic synthetic weights for any model, from a seed.
 * The distribution, per tensor:
 *   - RMSNorm gains: 1 + 0.1 z.
 *   - Matrices: w[r][c] = sigma * row_scale[r] * col_scale[c] * z, with
 *     sigma = 0.02 (the init scale of Llama checkpoints and about the
 *     trained spread of their projections), row_scale = exp(0.25 z_r)
 *     (log-normal spread of per-output-row scales), col_scale = 8 on about
 *     1 column in 256 (outlier input channels, as measured in LLM.int8()
 *     and SmoothQuant) and 1 elsewhere.
 *   z: standard normal from a 65,536-entry inverse-CDF table, so samples are
 *   fast and bounded by the table's +-4.3 sigma; outlier channels give the
 *   heavy tail. Every row draws from its own stream seeded by (seed, tensor
 *   name, row), so tensors and rows can be made in any order or in parallel. */
#ifndef ES_SYNTH_H
#define ES_SYNTH_H
#include <stdint.h>
#include "es_model.h"
#ifdef __cplusplus
extern "C" {
#endif

/* Fill out[0..t->cols) with row `row` of tensor t. Thread-safe after es_synth_init(). */
void es_synth_row(uint64_t seed, const es_tensor *t, int64_t row, float *out);
/* Build the normal table once (called by es_synth_row when needed; call it
 * first when several threads will synthesize). */
void es_synth_init(void);

#ifdef __cplusplus
}
#endif
#endif
