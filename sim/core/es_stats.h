/* es_stats: small statistics helpers for run summaries. */
#ifndef ES_STATS_H
#define ES_STATS_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
/* Nearest-rank percentile (q in [0,100]) of v[0..n); sorts v in place. 0 when n == 0. */
double es_percentile(double *v, size_t n, double q);
/* splitmix64: the next 64 random bits of the stream whose state is *s. */
uint64_t es_splitmix64(uint64_t *s);
#ifdef __cplusplus
}
#endif
#endif
