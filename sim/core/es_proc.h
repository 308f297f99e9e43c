/* es_proc: process helpers: the children of the commands that fork (eval's comparison batch,
 * sweep points, compare runs), and the temporaries a stopped process removes. */
#ifndef ES_PROC_H
#define ES_PROC_H
#include <stdint.h>
#include <sys/types.h>
#ifdef __cplusplus
extern "C" {
#endif

/* In a child just forked from `parent`: be killed when the parent dies (even by
 * SIGKILL), so no orphan keeps running or writing. Linux prctl; kept across exec.
 * The parent's temporaries (es_cleanup_*) are not the child's: it forgets them. */
void es_die_with_parent(pid_t parent);

/* Temporaries removed when the process is stopped by SIGINT, SIGTERM or SIGHUP.
 * es_cleanup_install (main, once) sets a handler that, async-signal-safe, SIGKILLs and reaps
 * the registered children, then removes the registered paths, newest first (files before the
 * folder that holds them), and re-raises the signal, so the process still ends by it. Paths are
 * formatted when registered; the handler only calls kill, waitpid, unlink and rmdir. A fixed
 * table: when it is full, or a path is too long, nothing is registered (-1) and the caller goes
 * on; that temporary is then left by a stopped run as before. SIGKILL cannot be caught: what is
 * registered then stays (README, "Stopped runs"). Entries belong to the process that made them:
 * a forked child neither removes nor inherits them. */
#define ES_CLEANUP_PATHS 64
#define ES_CLEANUP_PIDS 1024
void es_cleanup_install(void);
/* A file (folder = 0), or an empty folder (1) that rmdir removes after its files. Returns the
 * entry for es_cleanup_drop, or -1. */
int es_cleanup_add(const char *path, int folder);
/* Files DIR/0SUFFIX .. DIR/(count-1)SUFFIX ("DIR/12.sqlite-wal"), their names made by the handler. */
int es_cleanup_add_series(const char *dir, int64_t count, const char *suffix);
/* The path was renamed into place or removed: forget it. -1 is ignored. */
void es_cleanup_drop(int entry);
/* A child to kill (SIGKILL) and reap before the paths go; es_cleanup_drop_pid once it is reaped. */
int es_cleanup_add_pid(pid_t pid);
void es_cleanup_drop_pid(int entry);
/* The SQLite companions of a database path: PATH, PATH-wal, PATH-shm, PATH-journal (entries into
 * e[4], each -1 when not registered), and their removal. */
void es_cleanup_add_db(const char *path, int e[4]);
void es_cleanup_drop_db(const int e[4]);
void es_remove_db(const char *path);

#ifdef __cplusplus
}
#endif
#endif
