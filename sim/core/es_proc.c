/* es_proc: see es_proc.h. */
#define _GNU_SOURCE
#include "es_proc.h"
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* One temporary: a file, an empty folder, or a series DIR/<i>SUFFIX for i < count. The fields are
 * written while `owner` is 0 and a signal fence orders them before `owner` is set, so the handler
 * never reads a half-written entry. An entry whose owner is another process is a copy inherited
 * across fork: free for this process to reuse. */
typedef struct entry {
    volatile sig_atomic_t owner;  /* the process that registered it; 0: free */
    int kind;                     /* 0 file, 1 folder, 2 series */
    int64_t count;                /* series: how many */
    char suffix[24];              /* series: ".sqlite-wal" */
    char path[1100];              /* file or folder; series: the folder */
} entry;

static entry paths[ES_CLEANUP_PATHS];
static volatile sig_atomic_t kids[ES_CLEANUP_PIDS];      /* child pids; 0: free */
static volatile sig_atomic_t kid_owner[ES_CLEANUP_PIDS]; /* the parent that registered each */

void es_die_with_parent(pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1); /* the parent died before the line above */
}

static int put(const char *path, int kind, int64_t count, const char *suffix)
{
    sig_atomic_t me = (sig_atomic_t)getpid();
    for (int i = 0; i < ES_CLEANUP_PATHS; i++) {
        entry *p = &paths[i];
        if (p->owner == me) continue;
        if (strlen(path) >= sizeof p->path || strlen(suffix) >= sizeof p->suffix) return -1;
        p->owner = 0;
        atomic_signal_fence(memory_order_seq_cst);
        p->kind = kind;
        p->count = count;
        memcpy(p->suffix, suffix, strlen(suffix) + 1);
        memcpy(p->path, path, strlen(path) + 1);
        atomic_signal_fence(memory_order_seq_cst);
        p->owner = me;
        return i;
    }
    return -1;
}

int es_cleanup_add(const char *path, int folder) { return put(path, folder ? 1 : 0, 0, ""); }

int es_cleanup_add_series(const char *dir, int64_t count, const char *suffix)
{
    return count > 0 ? put(dir, 2, count, suffix) : -1;
}

void es_cleanup_drop(int i)
{
    if (i >= 0 && i < ES_CLEANUP_PATHS && paths[i].owner == (sig_atomic_t)getpid()) paths[i].owner = 0;
}

int es_cleanup_add_pid(pid_t pid)
{
    sig_atomic_t me = (sig_atomic_t)getpid();
    for (int i = 0; i < ES_CLEANUP_PIDS; i++)
        if (!kids[i] || kid_owner[i] != me) {
            kids[i] = 0;
            atomic_signal_fence(memory_order_seq_cst);
            kid_owner[i] = me;
            atomic_signal_fence(memory_order_seq_cst);
            kids[i] = (sig_atomic_t)pid;
            return i;
        }
    return -1;
}

void es_cleanup_drop_pid(int i)
{
    if (i >= 0 && i < ES_CLEANUP_PIDS && kid_owner[i] == (sig_atomic_t)getpid()) kids[i] = 0;
}

static const char *const DB_SUFFIX[4] = {"", "-wal", "-shm", "-journal"};

void es_cleanup_add_db(const char *path, int e[4])
{
    char p[1100];
    for (int k = 0; k < 4; k++) {
        e[k] = -1;
        if (snprintf(p, sizeof p, "%s%s", path, DB_SUFFIX[k]) < (int)sizeof p) e[k] = es_cleanup_add(p, 0);
    }
}

void es_cleanup_drop_db(const int e[4])
{
    for (int k = 0; k < 4; k++) es_cleanup_drop(e[k]);
}

void es_remove_db(const char *path)
{
    char p[4200];
    for (int k = 0; k < 4; k++)
        if (snprintf(p, sizeof p, "%s%s", path, DB_SUFFIX[k]) < (int)sizeof p) unlink(p);
}

/* The handler: only async-signal-safe calls (kill, waitpid, unlink, rmdir, sigaction, sigprocmask,
 * raise) and plain stores into its own stack. */
static void on_signal(int sig)
{
    int saved = errno;
    sig_atomic_t me = (sig_atomic_t)getpid();
    for (int i = 0; i < ES_CLEANUP_PIDS; i++)
        if (kids[i] && kid_owner[i] == me) kill((pid_t)kids[i], SIGKILL);
    for (int i = 0; i < ES_CLEANUP_PIDS; i++)
        if (kids[i] && kid_owner[i] == me) waitpid((pid_t)kids[i], NULL, 0); /* it writes no more */
    for (int pass = 0; pass < 2; pass++) /* files first, then the folders that held them */
        for (int i = ES_CLEANUP_PATHS - 1; i >= 0; i--) {
            const entry *p = &paths[i];
            if (p->owner != me || (p->kind == 1) != (pass == 1)) continue;
            if (p->kind == 0) unlink(p->path);
            else if (p->kind == 1) rmdir(p->path);
            else {
                char f[sizeof p->path + 48];
                size_t n = strlen(p->path);
                memcpy(f, p->path, n);
                f[n++] = '/';
                for (int64_t k = 0; k < p->count; k++) {
                    char d[24];
                    int nd = 0;
                    for (int64_t v = k; nd == 0 || v > 0; v /= 10) d[nd++] = (char)('0' + v % 10);
                    size_t at = n;
                    while (nd) f[at++] = d[--nd];
                    memcpy(f + at, p->suffix, strlen(p->suffix) + 1);
                    unlink(f);
                }
            }
        }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, NULL);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    sigprocmask(SIG_UNBLOCK, &s, NULL);
    raise(sig); /* ends the process as the signal would have */
    errno = saved;
}

void es_cleanup_install(void)
{
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++) sigaddset(&sa.sa_mask, sigs[i]); /* one handler at a time */
    for (int i = 0; i < 3; i++) {
        struct sigaction old;
        /* a signal the caller ignores (nohup, a background job's SIGINT) stays ignored */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sigs[i], &sa, NULL);
    }
}
