/* cli_db: `etchsim db check`: is a database whole, and which runs never completed. */
#define _POSIX_C_SOURCE 200809L
#include "cli_db.h"
#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#include "cli_opts.h"
#include "es_db.h"
#include "es_err.h"
#include "es_fs.h"

static const char *HELP =
    "usage: etchsim db check DB [--mark-failed]\n"
    "\n"
    "Check an etchsim database: SQLite's integrity check, then every run that never\n"
    "completed (status 'running'), with the host and process that began it and whether\n"
    "that process is still alive: 'in progress' (alive on this host), 'dead' (gone: killed,\n"
    "or the machine stopped), or 'unknown' (another host, or an older etchsim that did not\n"
    "record its process). Exit 0 when the database is whole and every run completed or\n"
    "failed, 1 otherwise, 2 when the check cannot be made.\n"
    "\n"
    "options:\n"
    "  --mark-failed        mark the dead runs, and those of an older etchsim, 'failed' and\n"
    "                       remove the rows they had streamed (runs in progress and runs of\n"
    "                       other hosts are left alone)\n"
    "  -h, --help           this text\n";

static const es_opt OPTS[] = {{"mark-failed", ES_OPT_FLAG, 0, 0, 0}};

static int fail2(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "etchsim db: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

enum { ALIVE, DEAD, UNKNOWN };

static int state_of(const char *host, int64_t pid, const char *me)
{
    if (!host || pid <= 0 || strcmp(host, me)) return UNKNOWN;
    if (kill((pid_t)pid, 0) != 0 && errno != EPERM) return DEAD;
    char stat[64], buf[512];
    snprintf(stat, sizeof stat, "/proc/%lld/stat", (long long)pid);
    FILE *f = fopen(stat, "r");
    if (f) { /* a killed process its parent has not reaped yet is a zombie: dead */
        size_t got = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[got] = 0;
        const char *p = strrchr(buf, ')');
        if (p && p[1] == ' ' && p[2] == 'Z') return DEAD;
    }
    return ALIVE;
}

/* db check's arguments: -1 to go on, else the exit code (usage printed). */
static int parse_check(int argc, char **argv, const char **path, int *mark)
{
    if (argc < 1 || strcmp(argv[0], "check")) {
        if (argc >= 1 && (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"))) {
            fputs(HELP, stdout);
            return 0;
        }
        return es_opt_usage("db", "expected the subcommand 'check', got", argc ? argv[0] : "nothing");
    }
    es_optarg *items = NULL;
    int n = es_opts_parse("db check", argc - 1, argv + 1, OPTS, 1, 1, HELP, &items);
    if (n == -2) return 0;
    if (n < 0) return 2;
    *path = NULL;
    *mark = 0;
    for (int i = 0; i < n; i++) {
        if (items[i].opt < 0) *path = items[i].val;
        else *mark = 1;
    }
    free(items);
    if (!*path) return es_opt_usage("db check", "expected a database file (etchsim db check DB)", NULL);
    return -1;
}

/* SQLite's integrity check, its first problems printed: *whole 1 when there are none. 0, or 2 (printed). */
static int check_integrity(sqlite3 *h, const char *path, int *whole)
{
    sqlite3_stmt *st = NULL;
    int problems = 0;
    *whole = 1;
    if (sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK)
        return fail2("%s: not an SQLite database (%s)", path, sqlite3_errmsg(h));
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        if (r && strcmp(r, "ok")) {
            if (problems++ < 10) printf("integrity: %s\n", r);
            *whole = 0;
        }
    }
    sqlite3_finalize(st);
    if (*whole) printf("integrity: ok\n");
    return 0;
}

/* The runs still 'running', printed with their process's state; those whose process is gone or was
 * not recorded into *to_mark (*n_mark, malloc'd). 0, or 2 (printed). */
static int list_open_runs(sqlite3 *h, const char *path, int *n_runs, int64_t **to_mark, int *n_mark)
{
    sqlite3_stmt *st = NULL;
    int has_pid = 0, has_runs = 0, cap = 0;
    *n_runs = *n_mark = 0;
    *to_mark = NULL;
    if (sqlite3_prepare_v2(h, "SELECT name FROM pragma_table_info('runs')", -1, &st, NULL) == SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW) {
            has_runs = 1;
            has_pid |= !strcmp((const char *)sqlite3_column_text(st, 0), "pid");
        }
    sqlite3_finalize(st);
    if (!has_runs) return fail2("%s: not an etchsim database (no runs table)%s", path, "");
    char me[256] = "";
    gethostname(me, sizeof me - 1);
    const char *sql = has_pid ? "SELECT id, command, started_utc, host, pid FROM runs WHERE status = 'running' ORDER BY id"
                              : "SELECT id, command, started_utc, NULL, NULL FROM runs WHERE status = 'running' ORDER BY id";
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK)
        return fail2("%s: cannot read runs: %s", path, sqlite3_errmsg(h));
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0), pid = sqlite3_column_int64(st, 4);
        const char *cmd = (const char *)sqlite3_column_text(st, 1), *when = (const char *)sqlite3_column_text(st, 2);
        const char *host = (const char *)sqlite3_column_text(st, 3);
        int s = state_of(host, pid, me);
        if ((*n_runs)++ == 0) printf("%-6s %-6s %-21s %-28s %s\n", "run", "cmd", "started (UTC)", "process", "state");
        char proc[300];
        if (host && pid > 0) snprintf(proc, sizeof proc, "%s:%lld", host, (long long)pid);
        else snprintf(proc, sizeof proc, "(not recorded)");
        printf("%-6lld %-6s %-21s %-28s %s\n", (long long)id, cmd ? cmd : "?", when ? when : "?", proc,
               s == ALIVE ? "in progress" : s == DEAD ? "dead" : host && pid > 0 ? "unknown (another host)" : "unknown (older etchsim)");
        if (s == DEAD || !(host && pid > 0)) {
            if (*n_mark == cap) {
                cap = cap ? 2 * cap : 16;
                int64_t *g = realloc(*to_mark, (size_t)cap * sizeof *g);
                if (!g) {
                    sqlite3_finalize(st);
                    return fail2("%s%s", "out of memory", "");
                }
                *to_mark = g;
            }
            (*to_mark)[(*n_mark)++] = id;
        }
    }
    sqlite3_finalize(st);
    return 0;
}

/* --mark-failed: the runs in ids[0..n) marked failed, *left counted down for each. 0, or 2 (printed). */
static int mark_failed(const char *path, const int64_t *ids, int n, int *left)
{
    es_err e;
    es_db *db = NULL;
    if (es_db_open(&db, path, &e)) return fail2("%s%s", e.msg, "");
    for (int i = 0; i < n; i++) {
        if (es_db_fail_run(db, ids[i], "incomplete: its process was gone; marked failed by etchsim db check", &e)) {
            es_db_close(db);
            return fail2("%s%s", e.msg, "");
        }
        printf("run %lld marked failed\n", (long long)ids[i]);
        (*left)--;
    }
    es_db_close(db);
    return 0;
}

int es_cli_db(int argc, char **argv)
{
    const char *path = NULL;
    int mark = 0;
    int code = parse_check(argc, argv, &path, &mark);
    if (code >= 0) return code;
    es_err e;
    FILE *f = es_fopen_regular(path, "rb", &e);
    if (!f) return fail2("%s%s", e.msg, "");
    fclose(f);
    sqlite3 *h = NULL;
    if (es_db_open_read(path, &h, &e)) return fail2("%s%s", e.msg, "");
    /* integrity first: a damaged file is the worst finding */
    int whole, n_runs, n_mark;
    int64_t *to_mark = NULL;
    if ((code = check_integrity(h, path, &whole)) || (code = list_open_runs(h, path, &n_runs, &to_mark, &n_mark))) {
        free(to_mark);
        sqlite3_close(h);
        return code;
    }
    sqlite3_close(h);
    if (!n_runs) printf("runs: every run completed or failed\n");
    int left = n_runs;
    if (mark && n_mark) code = mark_failed(path, to_mark, n_mark, &left);
    else if (n_mark) printf("%d run(s) can be marked failed: etchsim db check %s --mark-failed\n", n_mark, path);
    free(to_mark);
    if (code) return code;
    return whole && left == 0 ? 0 : 1;
}
