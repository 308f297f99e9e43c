/* cli_sweep: `etchsim sweep`: run the cross product of a grid of chip keys and
 * run options, each point as its own `etchsim run` (or `eval`) process writing
 * its own SQLite file, up to --jobs at once, and merge them into one database
 * with a sweep_points table. Points that fail keep their error; the sweep goes
 * on. Exit codes: 0 every point done, 1 some failed, 2 usage or a bad grid. */
#define _XOPEN_SOURCE 700
#include "cli_sweep.h"
#include "es_grid.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "es_cfg.h"
#include "es_chip.h"
#include "es_cost.h"
#include "es_db.h"
#include "es_proc.h"
#include "es_system.h"
#include "es_err.h"
#include "es_fs.h"
#include "cli_opts.h"

static const char *HELP =
    "usage: etchsim sweep --grid GRID.json --db OUT.sqlite [--jobs N] [--keep-points]\n"
    "       etchsim sweep --grid GRID.json --db OUT.sqlite --emit parallel|slurm\n"
    "       etchsim sweep merge --db OUT.sqlite DIR\n"
    "\n"
    "Run every point of a grid, each as its own `etchsim run` (or `etchsim eval`) process\n"
    "with its own SQLite file, up to N at once, and merge them into OUT.sqlite: the runs\n"
    "with their sequences, tokens, unit_stats and records, and a sweep_points table (point,\n"
    "params, run_id, status, error, wall_s). A point that fails keeps its error and the\n"
    "sweep goes on; the exit status is 1 when any failed. OUT.sqlite must not exist yet;\n"
    "it appears only when the sweep has ended (a killed sweep leaves none).\n"
    "\n"
    "The grid is a JSON object from keys to lists of values; the sweep runs their cross\n"
    "product. Keys are the run's options (model, chip, system, prompt, generate, streams,\n"
    "routing, rom, recipe, deploy; for eval: data, rule, rule_file, template, records,\n"
    "max_new_tokens, policy, vocab, rom, recipe, deploy, model, chip, system), chip and\n"
    "process keys as for --set (clock_hz, tile.lanes.tokens_per_read,\n"
    "process.leakage.logic_w_per_mm2, ...; `etchsim chip keys` lists them), deployment keys\n"
    "(deploy.electricity_usd_per_kwh, deploy.pue, deploy.lifetime_years, deploy.utilization)\n"
    "or, with a system, its link's keys (system.link.bandwidth_bits_per_s,\n"
    "system.link.latency_ns, system.link.energy_pj_per_bit); every key is checked before any\n"
    "point runs. Two keys that are not lists:\n"
    "  \"command\": \"run\" | \"eval\"   what each point runs (default run)\n"
    "  \"zip\": [{\"k1\": [...], \"k2\": [...]}, ...]   keys that move together: each object\n"
    "                                 is one axis, its lists of equal length\n"
    "Example: {\"clock_hz\": [8e8, 1e9], \"tile.lanes.tokens_per_read\": [1, 2], \"streams\": [1, 8]}\n"
    "\n"
    "options:\n"
    "  --grid FILE          the grid\n"
    "  --db OUT.sqlite      the merged database (a new file)\n"
    "  --jobs N             points run at once (default: the machine's processors)\n"
    "  --keep-points        keep the per-point databases and logs (OUT.sqlite.points/)\n"
    "  --emit parallel      do not run: write OUT.sqlite.points/jobs.txt, one shell command per\n"
    "                       point, for GNU parallel (parallel --jobs N < jobs.txt)\n"
    "  --emit slurm         the same and OUT.sqlite.points/sweep.sbatch, a Slurm array job of\n"
    "                       one task per point (sbatch --wait sweep.sbatch)\n"
    "  merge --db OUT DIR   after --emit: merge the points' databases in DIR into OUT; a point\n"
    "                       without a complete run is failed, with its log's first line\n"
    "  -h, --help           this text\n";

static int usage(const char *msg, const char *arg) { return es_opt_usage("sweep", msg, arg); }

/* run options a grid may name, and their flags */
static const char *const RUN_OPTS[][2] = {{"model", "--model"},   {"chip", "--chip"},       {"prompt", "--prompt"},
                                          {"generate", "--generate"}, {"streams", "--streams"}, {"routing", "--routing"},
                                          {"rom", "--rom"},         {"recipe", "--recipe"},   {"deploy", "--deploy"},
                                          {"system", "--system"}};
static const char *const EVAL_OPTS[][2] = {{"model", "--model"},       {"chip", "--chip"},
                                           {"system", "--system"},
                                           {"data", "--data"},         {"rule", "--rule"},
                                           {"rule_file", "--rule-file"}, {"template", "--template"},
                                           {"records", "--records"},   {"max_new_tokens", "--max-new-tokens"},
                                           {"policy", "--policy"},     {"rom", "--rom"},
                                           {"vocab", "--vocab"},       {"recipe", "--recipe"},
                                           {"deploy", "--deploy"}};

/* deploy.KEY: a deployment's number (es_cost.h), which run and eval take as --set deploy.KEY=VALUE */
static int deploy_key_known(const char *key)
{
    int n;
    const es_deploy_key *k = es_deploy_keys(&n);
    if (strncmp(key, "deploy.", 7)) return 0;
    for (int i = 0; i < n; i++)
        if (k[i].kind == 'd' && !strcmp(key + 7, k[i].key)) return 1;
    return 0;
}

/* system.link.KEY: a system file's link number, which run and eval take as --set system.link.KEY=VALUE */
static int system_key_known(const char *key)
{
    if (strncmp(key, "system.", 7)) return 0;
    for (const char *const *k = es_system_link_keys(); *k; k++)
        if (!strcmp(key + 7, *k)) return 1;
    return 0;
}

/* The grid's list of values for key (on any axis), or NULL. */
static const cJSON *grid_values(const es_grid *g, const char *key)
{
    for (int a = 0; a < g->n_axes; a++)
        for (int k = 0; k < g->ax[a].n_keys; k++)
            if (!strcmp(g->ax[a].keys[k], key)) return g->ax[a].vals[k];
    return NULL;
}

static int grid_has(const es_grid *g, const char *key) { return grid_values(g, key) != NULL; }

static char *value_text(const cJSON *v);

/* Each system the grid names loads, with each value of each system.link.* key the grid gives (as its points'
 * --set system.link.KEY=VALUE): a missing file or a link value out of its range fails before any point. */
static int check_system_values(const es_grid *g, const char *file, es_err *e)
{
    const cJSON *sys_v, *sys = grid_values(g, "system");
    cJSON_ArrayForEach(sys_v, sys) {
        char *spec = value_text(sys_v);
        const char *key = "system";
        es_system s;
        es_err se = {0};
        int rc = es_system_load(&s, spec ? spec : "", NULL, 0, &se); /* the file itself */
        if (!rc) es_system_free(&s);
        for (int a = 0; a < g->n_axes && !rc; a++)
            for (int k = 0; k < g->ax[a].n_keys && !rc; k++) {
                const cJSON *v;
                if (!system_key_known(g->ax[a].keys[k])) continue;
                key = g->ax[a].keys[k];
                cJSON_ArrayForEach(v, g->ax[a].vals[k]) { /* each value of its link */
                    char *txt = value_text(v), set[128];
                    snprintf(set, sizeof set, "%s=%s", key + 7, txt ? txt : "");
                    free(txt);
                    const char *sets[1] = {set};
                    if ((rc = es_system_load_link(&s, spec ? spec : "", NULL, 0, sets, 1, &se))) break;
                    es_system_free(&s);
                }
            }
        free(spec);
        if (rc) return es_fail(e, "%s: key '%s': %s", file, key, se.msg);
    }
    return 0;
}

/* The keys that go together: system.link.* needs a system; a system names its chips (no chip key). */
static int check_system_keys(const es_grid *g, const char *file, es_err *e)
{
    int sys = grid_has(g, "system");
    if (sys && grid_has(g, "chip"))
        return es_fail(e, "%s: keys 'system' and 'chip': a point takes a system or a chip, not both (a system file "
                          "names its chips)", file);
    for (int a = 0; a < g->n_axes && !sys; a++)
        for (int k = 0; k < g->ax[a].n_keys; k++)
            if (system_key_known(g->ax[a].keys[k]))
                return es_fail(e, "%s: key '%s': a system's link key; the grid needs a 'system' key (a chip alone "
                                  "has no card links)", file, g->ax[a].keys[k]);
    return check_system_values(g, file, e);
}

/* a value as a command-line string, malloc'd */
static char *value_text(const cJSON *v)
{
    if (cJSON_IsString(v)) return strdup(v->valuestring);
    if (cJSON_IsBool(v)) return strdup(cJSON_IsTrue(v) ? "true" : "false");
    return cJSON_PrintUnformatted(v);
}

static const char *option_flag(const es_grid *g, const char *key)
{
    const char *const(*t)[2] = g->eval ? EVAL_OPTS : RUN_OPTS;
    size_t n = g->eval ? sizeof EVAL_OPTS / sizeof *EVAL_OPTS : sizeof RUN_OPTS / sizeof *RUN_OPTS;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i][0], key)) return t[i][1];
    return NULL;
}

/* Every key of the grid is an option of its command or a chip or process key, checked before any
 * point runs (a misspelt key would fail every point); the error names the nearest valid key. */
static int check_keys(const es_grid *g, const char *file, es_err *e)
{
    const char *const(*t)[2] = g->eval ? EVAL_OPTS : RUN_OPTS;
    size_t n = g->eval ? sizeof EVAL_OPTS / sizeof *EVAL_OPTS : sizeof RUN_OPTS / sizeof *RUN_OPTS;
    const char *cmd = g->eval ? "eval" : "run";
    for (int a = 0; a < g->n_axes; a++)
        for (int k = 0; k < g->ax[a].n_keys; k++) {
            const char *key = g->ax[a].keys[k];
            char near[256];
            int d = 0;
            if (option_flag(g, key) || deploy_key_known(key) || system_key_known(key) ||
                es_chip_key_known(key, near, sizeof near, &d))
                continue;
            es_grid other = *g; /* an option of the other command */
            other.eval = !g->eval;
            if (option_flag(&other, key))
                return es_fail(e, "%s: key '%s': an option of %s, not of %s (the grid's \"command\")", file, key,
                               g->eval ? "run" : "eval", cmd);
            for (size_t i = 0; i < n; i++) /* an option nearer than any chip key */
                if (es_key_distance(t[i][0], key) < d) {
                    d = es_key_distance(t[i][0], key);
                    snprintf(near, sizeof near, "%s", t[i][0]);
                }
            int nd;
            const es_deploy_key *dk = es_deploy_keys(&nd);
            for (int i = 0; i < nd; i++) { /* or a deployment key */
                char full[96];
                snprintf(full, sizeof full, "deploy.%s", dk[i].key);
                if (dk[i].kind == 'd' && es_key_distance(full, key) < d) {
                    d = es_key_distance(full, key);
                    snprintf(near, sizeof near, "%s", full);
                }
            }
            for (const char *const *sk = es_system_link_keys(); *sk; sk++) { /* or a system's link key */
                char full[96];
                snprintf(full, sizeof full, "system.%s", *sk);
                if (es_key_distance(full, key) < d) {
                    d = es_key_distance(full, key);
                    snprintf(near, sizeof near, "%s", full);
                }
            }
            return es_fail(e, "%s: key '%s': not a%s %s option, chip key, process key or deployment key (%s '%s'%s "
                              "`etchsim chip keys` lists the chip and process keys)", file, key, g->eval ? "n" : "", cmd,
                           d <= 3 ? "did you mean" : "the nearest is", near, d <= 3 ? "?" : ";");
        }
    return check_system_keys(g, file, e);
}

typedef struct point {
    char **argv;    /* the child's arguments, NULL-terminated */
    int argc;
    char *params;   /* {"key": value, ...} */
} point;

static void point_free(point *p)
{
    for (int i = 0; i < p->argc; i++) free(p->argv[i]);
    free(p->argv);
    free(p->params);
}

/* point index i: the argument vector of its run and its parameters */
static int make_point(const es_grid *g, int64_t i, const char *db, point *p)
{
    memset(p, 0, sizeof *p);
    p->argv = calloc(8 + 4 * 16 * 32, sizeof *p->argv);
    cJSON *params = cJSON_CreateObject();
    if (!p->argv || !params) {
        cJSON_Delete(params);
        return -1;
    }
    p->argv[p->argc++] = strdup("etchsim");
    p->argv[p->argc++] = strdup(g->eval ? "eval" : "run");
    p->argv[p->argc++] = strdup("--db");
    p->argv[p->argc++] = strdup(db);
    if (g->eval) p->argv[p->argc++] = strdup("--no-compare");
    int64_t rest = i;
    for (int a = 0; a < g->n_axes; a++) { /* the first axis varies slowest */
        int64_t stride = 1;
        for (int b = a + 1; b < g->n_axes; b++) stride *= g->ax[b].len;
        int idx = (int)(rest / stride);
        rest %= stride;
        for (int k = 0; k < g->ax[a].n_keys; k++) {
            const cJSON *v = cJSON_GetArrayItem(g->ax[a].vals[k], idx);
            cJSON_AddItemToObject(params, g->ax[a].keys[k], cJSON_Duplicate(v, 1));
            char *txt = value_text(v);
            const char *flag = option_flag(g, g->ax[a].keys[k]);
            if (flag) {
                p->argv[p->argc++] = strdup(flag);
                p->argv[p->argc++] = txt;
            } else {
                size_t n = strlen(g->ax[a].keys[k]) + strlen(txt ? txt : "") + 2;
                char *kv = malloc(n);
                if (kv) snprintf(kv, n, "%s=%s", g->ax[a].keys[k], txt ? txt : "");
                free(txt);
                p->argv[p->argc++] = strdup("--set");
                p->argv[p->argc++] = kv;
            }
        }
    }
    p->params = cJSON_PrintUnformatted(params);
    cJSON_Delete(params);
    for (int k = 0; k < p->argc; k++)
        if (!p->argv[k]) return -1;
    return p->params ? 0 : -1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* the last non-empty line of a log file: the child's error */
static char *last_line(const char *path)
{
    char *text;
    size_t len;
    es_err e = {0};
    if (es_read_file(path, 1 << 20, &text, &len, &e)) return strdup("no error output");
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r')) text[--len] = 0;
    /* the first line is the error; usage errors add a "Try ..." line after it */
    char *start = text;
    char *nl = strchr(start, '\n');
    if (nl) *nl = 0;
    char *out = strdup(*start ? start : "no error output");
    free(text);
    return out;
}

typedef struct slot {
    pid_t pid;
    int64_t point;
    double started;
    int cleanup;    /* its es_cleanup entry: a stopped sweep kills and reaps it first */
} slot;

/* The points folder's files: N.sqlite with SQLite's companions, and N.log. */
static const char *const POINT_SUFFIX[5] = {".sqlite", ".sqlite-wal", ".sqlite-shm", ".sqlite-journal", ".log"};

/* A running sweep's points folder holds an owner file: host, process and its start time (clock
 * ticks after boot, /proc/PID/stat field 22), so a later sweep can tell a live owner from a dead
 * one whose process id was reused. */
static long long start_time(long long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%lld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the name may hold spaces; the fields after it do not */
    long long v = -1;
    for (int field = 2; p && *p; p++)
        if (*p == ' ' && ++field == 22) {
            v = atoll(p + 1);
            break;
        }
    return v;
}

static int is_point_file(const char *name)
{
    if (!strcmp(name, "grid.json") || !strcmp(name, "owner")) return 1;
    const char *p = name;
    while (*p >= '0' && *p <= '9') p++;
    if (p == name) return 0;
    for (int k = 0; k < 5; k++)
        if (!strcmp(p, POINT_SUFFIX[k])) return 1;
    return 0;
}

/* A killed sweep (SIGKILL, a machine that stopped) leaves its points folder. Before a sweep into
 * out: a folder whose owner is gone is removed (its point files, then the folder, and out's
 * merge scratch file); one whose owner runs, or ran on another host, is an error (2). A folder
 * without an owner file (--emit's, or kept points) is used as before. */
static int clear_stale(const char *dir, const char *out)
{
    char path[4200], host[256] = "", me[256] = "";
    snprintf(path, sizeof path, "%s/owner", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long long pid = 0, started = 0;
    int got = fscanf(f, "etchsim sweep host %255s pid %lld started %lld", host, &pid, &started);
    fclose(f);
    gethostname(me, sizeof me - 1);
    if (got != 3 || strcmp(host, me)) {
        fprintf(stderr, "etchsim sweep: %s: left by a sweep on %s; remove the folder if that sweep has ended\n", dir,
                got == 3 ? host : "another host (its owner file is unreadable)");
        return 2;
    }
    if (started > 0 ? start_time(pid) == started : pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
        fprintf(stderr, "etchsim sweep: %s: in use by sweep process %lld, still running; wait for it or give another "
                        "--db\n", dir, pid);
        return 2;
    }
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (is_point_file(de->d_name)) {
            if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) < (int)sizeof path) unlink(path);
        }
    if (d) closedir(d);
    rmdir(dir);
    snprintf(path, sizeof path, "%s.tmp", out);
    es_remove_db(path);
    fprintf(stderr, "etchsim sweep: removed %s, left by sweep process %lld that is gone\n", dir, pid);
    return 0;
}

/* Merge the points' databases in dir into out (through out.tmp, renamed when
 * complete) with a sweep_points row each. status[i]: 1 its process succeeded, 2
 * it failed; status NULL (runs made elsewhere): a point is done when its
 * database holds its complete run. wall: seconds per point, or NULL. Prints the
 * outcome; returns the exit code. */
static int merge_points(const es_grid *g, const char *dir, const int *status, const double *wall, const char *out,
                        double elapsed)
{
    es_err e = {0};
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    es_remove_db(tmp); /* with the journal of an earlier one that was stopped */
    int cleanup[4];
    es_cleanup_add_db(tmp, cleanup); /* a stopped merge leaves none of them */
    es_db *db = NULL;
    /* a scratch file until renamed: no need to sync each point's commit */
    if (es_db_open(&db, tmp, &e) || es_db_exec(db, "PRAGMA synchronous = OFF", &e)) {
        fprintf(stderr, "etchsim sweep: %s\n", e.msg);
        es_db_close(db);
        es_remove_db(tmp);
        es_cleanup_drop_db(cleanup);
        return 2;
    }
    int rc = 0, shown = 0;
    int64_t done = 0, failed = 0;
    for (int64_t i = 0; i < g->points && !rc; i++) {
        char pdb[4200], log[4200];
        snprintf(pdb, sizeof pdb, "%s/%lld.sqlite", dir, (long long)i);
        snprintf(log, sizeof log, "%s/%lld.log", dir, (long long)i);
        point p;
        if (make_point(g, i, pdb, &p)) {
            point_free(&p);
            fprintf(stderr, "etchsim sweep: out of memory\n");
            rc = 2;
            break;
        }
        int64_t run_id = 0;
        char *err = NULL;
        struct stat st;
        if (status && status[i] != 1) {
            err = last_line(log);
        } else if (!status && stat(pdb, &st)) { /* never ran, or failed before opening its database */
            err = stat(log, &st) == 0 && st.st_size > 0 ? last_line(log) : strdup("no result: the point never ran");
        } else if (es_db_merge_run(db, pdb, &run_id, &e)) {
            err = stat(log, &st) == 0 && st.st_size > 0 ? last_line(log) : strdup(e.msg);
        }
        err ? failed++ : done++;
        if (err && shown++ < 10) fprintf(stderr, "  point %lld %s failed: %s\n", (long long)i, p.params, err);
        if (es_db_put_sweep_point(db, i, p.params, run_id, err, wall ? wall[i] : -1, &e)) {
            fprintf(stderr, "etchsim sweep: %s\n", e.msg);
            rc = 2;
        }
        free(err);
        point_free(&p);
    }
    es_db_close(db);
    if (rc) {
        es_remove_db(tmp);
        es_cleanup_drop_db(cleanup);
        return rc;
    }
    if (rename(tmp, out)) {
        fprintf(stderr, "etchsim sweep: %s: cannot move the merged database into place: %s\n", out, strerror(errno));
        es_remove_db(tmp);
        es_cleanup_drop_db(cleanup);
        return 2;
    }
    es_cleanup_drop_db(cleanup);
    if (shown > 10) fprintf(stderr, "  ... and %d more failed points (sweep_points.error)\n", shown - 10);
    printf("sweep: %lld points, %lld done, %lld failed", (long long)g->points, (long long)done, (long long)failed);
    if (elapsed >= 0) printf(", %.1f s", elapsed);
    printf("; merged into %s (table sweep_points)\n", out);
    return failed ? 1 : 0;
}

static int rm_rf_points(const char *dir, int64_t n)
{
    char p[4200];
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < 5; k++) {
            snprintf(p, sizeof p, "%s/%lld%s", dir, (long long)i, POINT_SUFFIX[k]);
            remove(p);
        }
    snprintf(p, sizeof p, "%s/grid.json", dir);
    remove(p);
    snprintf(p, sizeof p, "%s/owner", dir);
    remove(p);
    return rmdir(dir);
}

/* shell-quoted: 'it'\''s' */
static void put_quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputs("'\\''", f);
        else fputc(*s, f);
    }
    fputc('\'', f);
}

/* The grid beside the points (DIR/grid.json), for `etchsim sweep merge DIR`; 0 or -1. */
static int copy_grid(const char *grid_path, const char *dir)
{
    es_err e = {0};
    char *text, path[4200];
    size_t len;
    if (es_read_file(grid_path, 1 << 20, &text, &len, &e)) return -1;
    snprintf(path, sizeof path, "%s/grid.json", dir);
    FILE *f = fopen(path, "w");
    int bad = !f || fwrite(text, 1, len, f) != len;
    free(text);
    if (f && fclose(f)) bad = 1;
    return bad ? -1 : 0;
}

/* --emit: the points as a job list (one shell command per line, for GNU parallel)
 * and, for Slurm, an array script running line SLURM_ARRAY_TASK_ID + 1 of it; the
 * grid is copied beside them for `etchsim sweep merge`. */
static int emit_jobs(const es_grid *g, const char *grid_path, const char *dir, const char *out, int slurm)
{
    char self[4096], path[4200], adir[4096];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0) {
        fprintf(stderr, "etchsim sweep: cannot find this program's path: %s\n", strerror(errno));
        return 2;
    }
    self[k] = 0;
    if (!realpath(dir, adir)) {
        fprintf(stderr, "etchsim sweep: %s: %s\n", dir, strerror(errno));
        return 2;
    }
    int bad = copy_grid(grid_path, adir);
    snprintf(path, sizeof path, "%s/jobs.txt", adir);
    FILE *j = bad ? NULL : fopen(path, "w");
    for (int64_t i = 0; j && i < g->points; i++) {
        char pdb[4200];
        snprintf(pdb, sizeof pdb, "%s/%lld.sqlite", adir, (long long)i);
        point p;
        if (make_point(g, i, pdb, &p)) {
            point_free(&p);
            bad = 1;
            break;
        }
        fputs("rm -f ", j); /* a rerun starts afresh */
        put_quoted(j, pdb);
        fputs(" && ", j);
        put_quoted(j, self);
        for (int a = 1; a < p.argc; a++) {
            fputc(' ', j);
            put_quoted(j, p.argv[a]);
        }
        fprintf(j, " >/dev/null 2>");
        snprintf(pdb, sizeof pdb, "%s/%lld.log", adir, (long long)i);
        put_quoted(j, pdb);
        fputc('\n', j);
        point_free(&p);
    }
    if (!j || fclose(j)) bad = 1;
    if (!bad && slurm) {
        snprintf(path, sizeof path, "%s/sweep.sbatch", adir);
        FILE *s = fopen(path, "w");
        if (s) {
            fprintf(s, "#!/bin/bash\n#SBATCH --job-name=etchsim-sweep\n#SBATCH --array=0-%lld\n#SBATCH --ntasks=1\n",
                    (long long)g->points - 1);
            fprintf(s, "#SBATCH --output=%s/%%a.slurm.out\n", adir);
            fprintf(s, "# one point per array task: line SLURM_ARRAY_TASK_ID + 1 of jobs.txt\n");
            fprintf(s, "set -euo pipefail\nline=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" ");
            put_quoted(s, adir);
            fprintf(s, "/jobs.txt)\nexec bash -c \"$line\"\n");
        }
        if (!s || fclose(s)) bad = 1;
    }
    if (bad) {
        fprintf(stderr, "etchsim sweep: %s: cannot write the job files\n", adir);
        return 2;
    }
    printf("wrote %lld jobs to %s/jobs.txt%s. Run them, then merge:\n", (long long)g->points, adir,
           slurm ? " and the array script sweep.sbatch" : "");
    if (slurm) printf("  sbatch --wait %s/sweep.sbatch\n", adir);
    else printf("  parallel --jobs N < %s/jobs.txt\n", adir);
    printf("  etchsim sweep merge --db %s %s\n", out, adir);
    return 0;
}

/* `etchsim sweep merge --db OUT DIR`: the points that ran elsewhere */
static int merge_dir(const char *out, const char *dir)
{
    es_err e = {0};
    char path[4200];
    snprintf(path, sizeof path, "%s/grid.json", dir);
    cJSON *root = NULL;
    es_grid g;
    struct stat st;
    int rc = 2;
    if (es_grid_read(path, &root, &g, &e)) fprintf(stderr, "etchsim sweep merge: %s (is %s a folder written by --emit?)\n", e.msg, dir);
    else if (stat(out, &st) == 0) fprintf(stderr, "etchsim sweep merge: %s exists; give a new path for the merged database\n", out);
    else rc = merge_points(&g, dir, NULL, NULL, out, -1);
    cJSON_Delete(root);
    return rc;
}

/* A sweep while it runs. */
typedef struct sweep {
    es_grid g;
    char dir[4096];     /* OUT.sqlite.points */
    char owner[4200];   /* its owner file */
    int reg[9];         /* es_cleanup entries: the folder, the owner file, grid.json, the points' five series */
    int jobs;           /* points at once */
    slot *slots;        /* jobs of them */
    double *wall;       /* per point: host seconds */
    int *status;        /* per point: 0 pending, 1 done, 2 failed */
    int64_t next, done, failed;
    int running;
} sweep;

/* The points folder with its owner file and the grid, each registered for removal when the sweep is
 * stopped (not with --emit). 0, or 2 (printed, what was made removed). */
static int make_points_dir(sweep *s, const char *grid_path, int emit)
{
    /* a stopped sweep (SIGINT, SIGTERM, SIGHUP) kills its points and removes the folder: registered
     * before anything is made in it; the folder goes last, and only when empty */
    for (int k = 0; k < 9; k++) s->reg[k] = -1;
    if (!emit) s->reg[0] = es_cleanup_add(s->dir, 1);
    if (mkdir(s->dir, 0755) && errno != EEXIST) {
        fprintf(stderr, "etchsim sweep: %s: cannot make the points folder: %s\n", s->dir, strerror(errno));
        return 2;
    }
    snprintf(s->owner, sizeof s->owner, "%s/owner", s->dir);
    if (!emit) {
        char grid_file[4200], me[256] = "";
        snprintf(grid_file, sizeof grid_file, "%s/grid.json", s->dir);
        s->reg[1] = es_cleanup_add(s->owner, 0);
        s->reg[2] = es_cleanup_add(grid_file, 0);
        gethostname(me, sizeof me - 1);
        FILE *f = fopen(s->owner, "w");
        if (!f || fprintf(f, "etchsim sweep host %s pid %lld started %lld\n", me, (long long)getpid(),
                          start_time((long long)getpid())) < 0 || fclose(f)) {
            fprintf(stderr, "etchsim sweep: %s: cannot write its owner file\n", s->dir);
            remove(s->owner);
            rmdir(s->dir);
            for (int k = 0; k < 9; k++) es_cleanup_drop(s->reg[k]);
            return 2;
        }
        for (int k = 0; k < 5; k++) s->reg[3 + k] = es_cleanup_add_series(s->dir, s->g.points, POINT_SUFFIX[k]);
    }
    if (copy_grid(grid_path, s->dir)) {
        fprintf(stderr, "etchsim sweep: %s: cannot write grid.json there\n", s->dir);
        if (!emit) rm_rf_points(s->dir, 0);
        for (int k = 0; k < 9; k++) es_cleanup_drop(s->reg[k]);
        return 2;
    }
    return 0;
}

/* Start point s->next as a child `etchsim run` (or eval) writing N.sqlite and N.log. 0, or 2 (printed). */
static int start_point(sweep *s)
{
    char db[4200], log[4200];
    snprintf(db, sizeof db, "%s/%lld.sqlite", s->dir, (long long)s->next);
    snprintf(log, sizeof log, "%s/%lld.log", s->dir, (long long)s->next);
    es_remove_db(db);
    point p;
    if (make_point(&s->g, s->next, db, &p)) {
        point_free(&p);
        fprintf(stderr, "etchsim sweep: out of memory\n");
        return 2;
    }
    pid_t parent = getpid(), pid = fork();
    if (pid == 0) {
        es_die_with_parent(parent); /* a killed sweep leaves no points running */
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644), nul = open("/dev/null", O_WRONLY);
        if (fd >= 0) dup2(fd, 2);
        if (nul >= 0) dup2(nul, 1);
        execv("/proc/self/exe", p.argv);
        _exit(127);
    }
    point_free(&p);
    if (pid < 0) {
        fprintf(stderr, "etchsim sweep: fork: %s\n", strerror(errno));
        return 2;
    }
    for (int k = 0; k < s->jobs; k++)
        if (!s->slots[k].pid) {
            s->slots[k] = (slot){pid, s->next, now_s(), es_cleanup_add_pid(pid)};
            break;
        }
    s->running++;
    s->next++;
    return 0;
}

/* Wait for a point to end: its status and host time. 0, or 2 (printed). */
static int reap_point(sweep *s)
{
    int wst = 0;
    pid_t pid = wait(&wst);
    if (pid < 0) {
        fprintf(stderr, "etchsim sweep: wait: %s\n", strerror(errno));
        return 2;
    }
    for (int k = 0; k < s->jobs; k++) {
        if (s->slots[k].pid != pid) continue;
        int64_t i = s->slots[k].point;
        s->wall[i] = now_s() - s->slots[k].started;
        int ok = WIFEXITED(wst) && WEXITSTATUS(wst) == 0;
        s->status[i] = ok ? 1 : 2;
        ok ? s->done++ : s->failed++;
        s->slots[k].pid = 0;
        es_cleanup_drop_pid(s->slots[k].cleanup);
        s->running--;
    }
    return 0;
}

/* Run every point, up to s->jobs at once, then merge them into out: the exit code. */
static int run_points(sweep *s, const char *out)
{
    const int64_t n = s->g.points;
    const int tty = isatty(2);
    fprintf(stderr, "etchsim sweep: %lld points (%s), %d at once\n", (long long)n, s->g.eval ? "eval" : "run", s->jobs);
    fflush(NULL);
    double t0 = now_s();
    while (s->done + s->failed < n) {
        while (s->running < s->jobs && s->next < n) /* start points */
            if (start_point(s)) return 2;
        if (reap_point(s)) return 2;
        if (tty) {
            int64_t ended = s->done + s->failed;
            double el = now_s() - t0, left = ended ? el / (double)ended * (double)(n - ended) : 0;
            fprintf(stderr, "\r  %lld/%lld done, %lld failed, %d running, %.0f s left   ", (long long)s->done,
                    (long long)n, (long long)s->failed, s->running, left);
        }
    }
    if (tty) fprintf(stderr, "\r%70s\r", "");
    return merge_points(&s->g, s->dir, s->status, s->wall, out, now_s() - t0);
}

/* After the points: any still running killed; the points folder removed, or kept (rc 2, --keep-points). */
static void end_sweep(sweep *s, int rc, int keep)
{
    for (int k = 0; k < s->jobs; k++)
        if (s->slots[k].pid) {
            kill(s->slots[k].pid, SIGTERM), waitpid(s->slots[k].pid, NULL, 0);
            es_cleanup_drop_pid(s->slots[k].cleanup);
        }
    if (rc == 2) /* the merge (or the sweep) failed: what the points computed is kept */
        fprintf(stderr, "etchsim sweep: the points' databases and logs are kept in %s (etchsim sweep merge)\n", s->dir);
    if (rc == 2 || keep)
        remove(s->owner); /* kept on purpose: no later sweep takes it for a dead one's */
    else
        rm_rf_points(s->dir, s->g.points);
    for (int k = 0; k < 9; k++) es_cleanup_drop(s->reg[k]);
}

static int run_sweep(const char *grid_path, const char *out, int jobs, int keep, int emit)
{
    es_err e = {0};
    cJSON *root = NULL;
    sweep s;
    memset(&s, 0, sizeof s);
    s.jobs = jobs;
    if (es_grid_read(grid_path, &root, &s.g, &e) || check_keys(&s.g, grid_path, &e)) {
        fprintf(stderr, "etchsim sweep: %s\n", e.msg);
        cJSON_Delete(root);
        return 2;
    }
    struct stat st;
    if (stat(out, &st) == 0) {
        fprintf(stderr, "etchsim sweep: %s exists; give a new path for the merged database\n", out);
        cJSON_Delete(root);
        return 2;
    }
    snprintf(s.dir, sizeof s.dir, "%s.points", out);
    int rc = !emit && clear_stale(s.dir, out) ? 2 : make_points_dir(&s, grid_path, emit);
    if (rc || emit) {
        if (!rc) rc = emit_jobs(&s.g, grid_path, s.dir, out, emit == 2);
        cJSON_Delete(root);
        return rc;
    }
    const int64_t n = s.g.points;
    s.wall = calloc((size_t)n, sizeof *s.wall);
    s.status = calloc((size_t)n, sizeof *s.status);
    s.slots = calloc((size_t)jobs, sizeof *s.slots);
    if (!s.wall || !s.status || !s.slots) {
        fprintf(stderr, "etchsim sweep: out of memory\n");
        rm_rf_points(s.dir, 0);
        for (int k = 0; k < 9; k++) es_cleanup_drop(s.reg[k]);
        rc = 2;
    } else {
        rc = run_points(&s, out);
        end_sweep(&s, rc, keep);
    }
    free(s.wall);
    free(s.status);
    free(s.slots);
    cJSON_Delete(root);
    return rc;
}

int es_cli_sweep(int argc, char **argv)
{
    const char *grid_path = NULL, *out = NULL, *dir = NULL;
    long jobs = sysconf(_SC_NPROCESSORS_ONLN);
    int keep = 0, emit = 0, merge = argc > 0 && !strcmp(argv[0], "merge");
    if (jobs < 1) jobs = 1;
    enum { GRID, DB, JOBS, KEEP, EMIT, N_OPTS };
    static const es_opt defs[N_OPTS] = {{"grid", ES_OPT_STR, 0, 0, 0}, {"db", ES_OPT_STR, 0, 0, 0},
                                        {"jobs", ES_OPT_COUNT, 1, 1024, 0}, {"keep-points", ES_OPT_FLAG, 0, 0, 0},
                                        {"emit", ES_OPT_STR, 0, 0, 0}};
    es_optarg *items = NULL;
    int n = es_opts_parse(merge ? "sweep merge" : "sweep", argc - merge, argv + merge, defs, N_OPTS, merge, HELP, &items);
    if (n < 0) return n == -2 ? 0 : 2;
    for (int k = 0; k < n; k++) {
        const char *v = items[k].val;
        switch (items[k].opt) {
        case GRID: grid_path = v; break;
        case DB: out = v; break;
        case JOBS: jobs = (long)items[k].num; break;
        case KEEP: keep = 1; break;
        case EMIT:
            if (strcmp(v, "parallel") && strcmp(v, "slurm")) {
                free(items);
                return usage("--emit expects parallel or slurm, got", v);
            }
            emit = strcmp(v, "parallel") ? 2 : 1;
            break;
        default: dir = v; break; /* merge: the folder */
        }
    }
    free(items);
    if (merge) {
        if (!out) return usage("merge: --db is required", NULL);
        if (!dir) return usage("merge: give the folder the points ran in (OUT.sqlite.points)", NULL);
        if (grid_path || emit || keep) return usage("merge: takes --db OUT and the folder only", NULL);
        return merge_dir(out, dir);
    }
    if (!grid_path) return usage("--grid is required", NULL);
    if (!out) return usage("--db is required", NULL);
    return run_sweep(grid_path, out, (int)jobs, keep, emit);
}
