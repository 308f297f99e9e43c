/* es_proc: process helpers for the commands that fork (eval's comparison batch,
 * sweep points, compare runs). */
#ifndef ES_PROC_H
#define ES_PROC_H
#include <sys/types.h>
#ifdef __cplusplus
extern "C" {
#endif

/* In a child just forked from `parent`: be killed when the parent dies (even by
 * SIGKILL), so no orphan keeps running or writing. Linux prctl; kept across exec. */
void es_die_with_parent(pid_t parent);

#ifdef __cplusplus
}
#endif
#endif
