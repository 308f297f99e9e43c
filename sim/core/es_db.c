/* es_db: SQLite schema and writers (see es_db.h). All writes use prepared
 * statements; the closing write is one transaction that also flips the
 * run's status from 'running' to 'complete'. */
#define _POSIX_C_SOURCE 200809L
#include "es_db.h"
#include <sqlite3.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

struct es_db {
    sqlite3 *h;
    char path[512];
    int in_tx;                /* the closing transaction is open */
    /* rows streamed into the open run, not yet written: up to STREAM_CHUNK records and their tokens */
    es_rec_row *rb;
    int64_t nr, rcap;
    es_token_rec *tb;
    int64_t nt, tcap;
    int64_t stream_run;
    int64_t open_run;         /* begun, neither finished nor failed: closing the database fails it */
    char error[512];          /* why, when the command said (es_db_set_error) */
    sqlite3_stmt *rec;        /* INSERT INTO records, while streaming */
    sqlite3_stmt *tok;        /* INSERT INTO tokens, while streaming */
};

#define RUNS_COLUMNS \
    " id INTEGER PRIMARY KEY," \
    " started_utc TEXT NOT NULL, finished_utc TEXT," \
    " status TEXT NOT NULL CHECK(status IN ('running','complete','failed'))," \
    " version TEXT NOT NULL, command TEXT NOT NULL, chip TEXT NOT NULL, model TEXT NOT NULL," \
    " prompt_tokens INTEGER, gen_tokens INTEGER, streams INTEGER," \
    " cycles REAL, chip_config TEXT, process_config TEXT, summary TEXT, error TEXT, host TEXT, pid INTEGER"
static const char *SCHEMA =
    "CREATE TABLE IF NOT EXISTS runs("
RUNS_COLUMNS ");"
    "CREATE TABLE IF NOT EXISTS sequences("
    " run_id INTEGER NOT NULL REFERENCES runs(id), seq INTEGER NOT NULL,"
    " prompt_tokens INTEGER, gen_tokens INTEGER, submit_ns REAL, admit_ns REAL,"
    " first_token_ns REAL, done_ns REAL, ttft_ns REAL, energy_j REAL,"
    " PRIMARY KEY(run_id, seq));"
    "CREATE TABLE IF NOT EXISTS tokens("
    " run_id INTEGER NOT NULL REFERENCES runs(id), seq INTEGER NOT NULL, idx INTEGER NOT NULL,"
    " t_ns REAL, latency_ns REAL, energy_j REAL, PRIMARY KEY(run_id, seq, idx));"
    "CREATE TABLE IF NOT EXISTS unit_stats("
    " run_id INTEGER NOT NULL REFERENCES runs(id), unit TEXT NOT NULL,"
    " items INTEGER, tokens INTEGER, busy_cycles INTEGER, utilization REAL, energy_j REAL,"
    " rom_bits REAL, cell_macs REAL, attn_macs REAL, kv_read_bits REAL, kv_write_bits REAL,"
    " vector_ops REAL, link_bit_mm REAL, host_bits REAL, area_mm2 REAL, state_read_bits REAL, state_write_bits REAL,"
    " register_bit_cycles REAL, store_read_bits REAL, PRIMARY KEY(run_id, unit));"
    "CREATE TABLE IF NOT EXISTS records("
    " run_id INTEGER NOT NULL REFERENCES runs(id), record INTEGER NOT NULL, line INTEGER, key TEXT,"
    " status TEXT NOT NULL CHECK(status IN ('done','skipped')), reason TEXT,"
    " prompt_tokens INTEGER, output_tokens INTEGER, submit_ns REAL, first_token_ns REAL, done_ns REAL,"
    " energy_j REAL, tokens_estimated INTEGER, output_text TEXT, verdict TEXT, PRIMARY KEY(run_id, record));"
    "CREATE TABLE IF NOT EXISTS sweep_points("
    " point INTEGER PRIMARY KEY, params TEXT NOT NULL, run_id INTEGER REFERENCES runs(id),"
    " status TEXT NOT NULL CHECK(status IN ('done','failed')), error TEXT, wall_s REAL);"
    "CREATE TABLE IF NOT EXISTS costs("
    " run_id INTEGER PRIMARY KEY REFERENCES runs(id), deploy TEXT, card_from TEXT, die_usd REAL, card_usd REAL,"
    " system_usd REAL, tokens_per_s REAL, watts REAL, joules_per_token REAL, capex_usd_per_m_tokens REAL,"
    " energy_usd_per_m_tokens REAL, usd_per_m_tokens REAL);";
#define SCHEMA_VERSION 6
/* Rows streamed into a run (eval's records and tokens) are kept in memory and written STREAM_CHUNK
 * records at a time in one short transaction, so other writers get the database between chunks; the
 * run is complete only in its closing transaction. */
#define STREAM_CHUNK 1024

/* Migrations, each run inside the transaction that re-reads the version (two processes opening one
 * old database: the second finds it migrated). 2 -> 3: records.verdict, unit_stats.area_mm2 and
 * state_*_bits. 3 -> 4: unit_stats.register_bit_cycles; runs.status may be 'failed', with
 * runs.error; runs.host and runs.pid (SQLite cannot change a CHECK constraint: the runs table is
 * rebuilt, rows unchanged). 4 -> 5: the costs table (SCHEMA's CREATE TABLE IF NOT EXISTS makes it;
 * runs before it have no row there). 5 -> 6: unit_stats.store_read_bits (weight bits read from an SRAM or
 * HBM store; NULL in runs before it). */
static const char *MIGRATE_2_TO_3 =
    "ALTER TABLE records ADD COLUMN verdict TEXT;"
    "ALTER TABLE unit_stats ADD COLUMN area_mm2 REAL;"
    "ALTER TABLE unit_stats ADD COLUMN state_read_bits REAL;"
    "ALTER TABLE unit_stats ADD COLUMN state_write_bits REAL;";
static const char *MIGRATE_3_TO_4 =
    "ALTER TABLE unit_stats ADD COLUMN register_bit_cycles REAL;"
    "CREATE TABLE runs_v4(" RUNS_COLUMNS ");"
    "INSERT INTO runs_v4(id, started_utc, finished_utc, status, version, command, chip, model, prompt_tokens,"
    " gen_tokens, streams, cycles, chip_config, process_config, summary) SELECT * FROM runs;"
    "DROP TABLE runs;"
    "ALTER TABLE runs_v4 RENAME TO runs;";
static const char *MIGRATE_5_TO_6 = "ALTER TABLE unit_stats ADD COLUMN store_read_bits REAL;";

static int user_version(sqlite3 *h)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* 1 when table t has column c */
static int has_column(sqlite3 *h, const char *t, const char *c)
{
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA main.table_info(%s)", t);
    sqlite3_stmt *st = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK)
        while (!found && sqlite3_step(st) == SQLITE_ROW) found = !strcmp((const char *)sqlite3_column_text(st, 1), c);
    sqlite3_finalize(st);
    return found;
}

/* Bring a schema 2 to 5 database to 6 in one transaction (the costs table of 5 comes with SCHEMA's CREATE
 * TABLE IF NOT EXISTS); 0 or an SQLite message (sqlite3_free it). */
static char *migrate(sqlite3 *h)
{
    char *msg = NULL;
    if (sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK) return msg ? msg : sqlite3_mprintf("?");
    int v = user_version(h); /* again, inside the transaction: another process may have migrated it */
    if ((v == 2 && sqlite3_exec(h, MIGRATE_2_TO_3, NULL, NULL, &msg) != SQLITE_OK) ||
        ((v == 2 || v == 3) && sqlite3_exec(h, MIGRATE_3_TO_4, NULL, NULL, &msg) != SQLITE_OK) ||
        (v >= 2 && v <= 5 && ((!has_column(h, "unit_stats", "store_read_bits") &&
                               sqlite3_exec(h, MIGRATE_5_TO_6, NULL, NULL, &msg) != SQLITE_OK) ||
                              sqlite3_exec(h, "PRAGMA user_version = 6", NULL, NULL, &msg) != SQLITE_OK)) ||
        sqlite3_exec(h, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
        return msg ? msg : sqlite3_mprintf("?");
    }
    return NULL;
}

static void drop_stream(es_db *db);

static int db_err(es_db *db, const char *what, es_err *e)
{
    return es_fail(e, "%s: %s: %s", db->path, what, sqlite3_errmsg(db->h));
}

/* The folder holding path ("." for a bare name). */
static void folder_of(const char *path, char *dir, size_t n)
{
    snprintf(dir, n, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, n, ".");
    else slash[slash == dir] = 0; /* "/x": the root */
}

/* A database is written in place and SQLite writes its journal (PATH-wal, PATH-shm) beside it: a
 * file or folder that cannot be written (a read-only mount, no permission) is said so before
 * SQLite opens it read-only and fails at its first write with a message about something else. */
static int check_writable(const char *path, es_err *e)
{
    char dir[1024];
    folder_of(path, dir, sizeof dir);
    if (access(path, F_OK) == 0 && access(path, W_OK) != 0)
        return es_fail(e, "%s: cannot be written (%s): etchsim writes into this database; give a writable path",
                       path, strerror(errno));
    if (access(dir, W_OK) != 0) {
        if (errno == ENOENT) return es_fail(e, "%s: cannot create the database: no folder %s", path, dir);
        return es_fail(e, "%s: cannot be written: its folder %s is not writable (%s), and SQLite writes the "
                          "database's journal there; give a writable path", path, dir, strerror(errno));
    }
    return 0;
}

int es_db_open(es_db **out, const char *path, es_err *e)
{
    *out = NULL;
    if (check_writable(path, e)) return -1;
    es_db *db = calloc(1, sizeof *db);
    if (!db) return es_fail(e, "%s: out of memory", path);
    snprintf(db->path, sizeof db->path, "%s", path);
    if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        es_fail(e, "%s: cannot open database: %s", path, db->h ? sqlite3_errmsg(db->h) : "?");
        es_db_close(db);
        return -1;
    }
    if (sqlite3_db_readonly(db->h, "main") == 1) { /* SQLite fell back to reading: the file refused writing */
        es_fail(e, "%s: cannot be written (read-only: SQLite could open it only for reading): etchsim writes into "
                   "this database; give a writable path", path);
        es_db_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db->h, 5000);
    /* write-ahead log: readers never wait for a writer, and a killed writer leaves the database as
     * of its last commit (a read-only folder or filesystem keeps the rollback journal) */
    sqlite3_exec(db->h, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    char *msg = NULL;
    /* schema 2 to 5 is migrated to 6 (migrate); a newer one is refused */
    sqlite3_stmt *st = NULL;
    int version = user_version(db->h);
    if (sqlite3_errcode(db->h) == SQLITE_NOTADB) {
        es_fail(e, "%s: not an SQLite database (give --db a new path or an etchsim database)", path);
        es_db_close(db);
        return -1;
    }
    /* another program's database: tables, none of them ours; adding ours would change it */
    int tables = 0, ours = 0;
    if (sqlite3_prepare_v2(db->h, "SELECT name FROM sqlite_master WHERE type = 'table'", -1, &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            tables++;
            ours += t && !strcmp(t, "runs");
        }
    }
    sqlite3_finalize(st);
    if (tables && !ours) {
        es_fail(e, "%s: a database of another program (%d tables, no 'runs'); give --db a new path", path, tables);
        es_db_close(db);
        return -1;
    }
    if (version > SCHEMA_VERSION) {
        es_fail(e, "%s: database schema version %d is newer than this etchsim's (%d)", path, version, SCHEMA_VERSION);
        es_db_close(db);
        return -1;
    }
    if (version >= 2 && version <= 5) {
        char *m = migrate(db->h);
        if (m) {
            es_fail(e, "%s: cannot migrate a schema %d database to schema %d: %s", path, version, SCHEMA_VERSION, m);
            sqlite3_free(m);
            es_db_close(db);
            return -1;
        }
    }
    if (sqlite3_exec(db->h, SCHEMA, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(db->h, "PRAGMA user_version = 6", NULL, NULL, &msg) != SQLITE_OK) { /* SCHEMA_VERSION */
        es_fail(e, "%s: cannot create the schema (is the path writable?): %s", path,
                msg ? msg : "?");
        sqlite3_free(msg);
        es_db_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

void es_db_close(es_db *db)
{
    if (!db) return;
    if (db->open_run > 0) { /* the command stopped on an error after the run began (its message was printed) */
        es_err e;
        es_db_fail_run(db, db->open_run, db->error[0] ? db->error : "stopped on an error before it completed", &e);
    }
    drop_stream(db);
    free(db->rb);
    free(db->tb);
    sqlite3_finalize(db->rec);
    sqlite3_finalize(db->tok);
    if (db->in_tx) sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    if (db->h) sqlite3_close(db->h);
    free(db);
}

static const char *REC_SQL = "INSERT INTO records VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
static const char *TOK_SQL = "INSERT INTO tokens VALUES(?,?,?,?,?,?)";

int es_db_stream_begin(es_db *db, es_err *e)
{
    (void)db;
    (void)e;
    return 0; /* rows are buffered and written in chunks (es_db_put_record) */
}

static int prepare_stream(es_db *db, es_err *e)
{
    if ((!db->rec && sqlite3_prepare_v2(db->h, REC_SQL, -1, &db->rec, NULL) != SQLITE_OK) ||
        (!db->tok && sqlite3_prepare_v2(db->h, TOK_SQL, -1, &db->tok, NULL) != SQLITE_OK))
        return db_err(db, "prepare", e);
    return 0;
}

static int bind_token(sqlite3_stmt *s2, int64_t run_id, const es_token_rec *t)
{
    sqlite3_reset(s2);
    sqlite3_bind_int64(s2, 1, run_id);
    sqlite3_bind_int(s2, 2, t->seq);
    sqlite3_bind_int(s2, 3, t->idx);
    sqlite3_bind_double(s2, 4, t->t_ns);
    sqlite3_bind_double(s2, 5, t->latency_ns);
    sqlite3_bind_double(s2, 6, t->energy_j);
    return sqlite3_step(s2) == SQLITE_DONE ? 0 : -1;
}

/* Drop the buffered rows (their texts are owned here). */
static void drop_stream(es_db *db)
{
    for (int64_t i = 0; i < db->nr; i++) free((char *)db->rb[i].output_text); /* our strdup */
    db->nr = db->nt = 0;
}

static int bind_record(sqlite3_stmt *s5, int64_t run_id, const es_rec_row *r);

/* Insert the buffered rows in the current transaction. */
static int write_stream(es_db *db, es_err *e)
{
    if (prepare_stream(db, e)) return -1;
    for (int64_t i = 0; i < db->nr; i++)
        if (bind_record(db->rec, db->stream_run, &db->rb[i])) return db_err(db, "insert records", e);
    for (int64_t i = 0; i < db->nt; i++)
        if (bind_token(db->tok, db->stream_run, &db->tb[i])) return db_err(db, "insert tokens", e);
    sqlite3_reset(db->rec);
    sqlite3_reset(db->tok);
    drop_stream(db);
    return 0;
}

/* Write the buffered rows in one short transaction. */
static int flush_stream(es_db *db, es_err *e)
{
    if (!db->nr && !db->nt) return 0;
    if (sqlite3_exec(db->h, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_err(db, "cannot begin writing streamed records", e);
    if (write_stream(db, e) || sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        if (!e->msg[0]) db_err(db, "commit streamed records", e);
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

int es_db_put_token(es_db *db, int64_t run_id, const es_token_rec *t, es_err *e)
{
    if (db->nt == db->tcap) {
        int64_t cap = db->tcap ? 2 * db->tcap : 4096;
        es_token_rec *g = realloc(db->tb, (size_t)cap * sizeof *g);
        if (!g) return es_fail(e, "%s: out of memory buffering tokens", db->path);
        db->tb = g;
        db->tcap = cap;
    }
    db->stream_run = run_id;
    db->tb[db->nt++] = *t;
    return db->nt >= 64 * STREAM_CHUNK ? flush_stream(db, e) : 0; /* a run streams tokens without records */
}

static int bind_record(sqlite3_stmt *s5, int64_t run_id, const es_rec_row *r)
{
    sqlite3_reset(s5);
    sqlite3_bind_int64(s5, 1, run_id);
    sqlite3_bind_int64(s5, 2, r->record);
    sqlite3_bind_int64(s5, 3, r->line);
    sqlite3_bind_text(s5, 4, r->key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s5, 5, r->done ? "done" : "skipped", -1, SQLITE_STATIC);
    if (r->done) sqlite3_bind_null(s5, 6);
    else sqlite3_bind_text(s5, 6, r->reason, -1, SQLITE_TRANSIENT);
    if (r->done) {
        sqlite3_bind_int64(s5, 7, r->prompt_tokens);
        sqlite3_bind_int64(s5, 8, r->output_tokens);
        sqlite3_bind_double(s5, 9, r->submit_ns);
        sqlite3_bind_double(s5, 10, r->first_ns);
        sqlite3_bind_double(s5, 11, r->done_ns);
        sqlite3_bind_double(s5, 12, r->energy_j);
    } else {
        for (int k = 7; k <= 12; k++) sqlite3_bind_null(s5, k);
    }
    sqlite3_bind_int(s5, 13, r->tokens_estimated);
    if (r->done && r->output_text) sqlite3_bind_text(s5, 14, r->output_text, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(s5, 14);
    if (r->done && r->verdict[0]) sqlite3_bind_text(s5, 15, r->verdict, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(s5, 15);
    return sqlite3_step(s5) == SQLITE_DONE ? 0 : -1;
}

int es_db_put_record(es_db *db, int64_t run_id, const es_rec_row *r, es_err *e)
{
    if (db->nr == db->rcap) {
        int64_t cap = db->rcap ? 2 * db->rcap : 256;
        es_rec_row *g = realloc(db->rb, (size_t)cap * sizeof *g);
        if (!g) return es_fail(e, "%s: out of memory buffering records", db->path);
        db->rb = g;
        db->rcap = cap;
    }
    es_rec_row *c = &db->rb[db->nr];
    *c = *r;
    c->output_text = NULL;
    if (r->output_text) {
        char *t = strdup(r->output_text);
        if (!t) return es_fail(e, "%s: out of memory", db->path);
        c->output_text = t;
    }
    db->nr++;
    db->stream_run = run_id;
    return db->nr >= STREAM_CHUNK ? flush_stream(db, e) : 0;
}

static void utc_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int es_db_begin_run(es_db *db, const es_run_info *ri, int64_t *run_id, es_err *e)
{
    sqlite3_stmt *st = NULL;
    const char *sql = "INSERT INTO runs(started_utc,status,version,command,chip,model,"
                      "prompt_tokens,gen_tokens,streams,chip_config,process_config,host,pid)"
                      " VALUES(?,'running',?,?,?,?,?,?,?,?,?,?,?)";
    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) return db_err(db, "prepare", e);
    char now[32];
    utc_now(now, sizeof now);
    sqlite3_bind_text(st, 1, now, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, ETCHSIM_VERSION, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, ri->command, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, ri->chip, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, ri->model, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, ri->prompt);
    sqlite3_bind_int64(st, 7, ri->gen);
    sqlite3_bind_int64(st, 8, ri->streams);
    sqlite3_bind_text(st, 9, ri->chip_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, ri->process_json, -1, SQLITE_STATIC);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    sqlite3_bind_text(st, 11, host, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 12, (int64_t)getpid());
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_err(db, "cannot record the run (is the database writable?)", e);
    *run_id = sqlite3_last_insert_rowid(db->h);
    db->open_run = *run_id;
    return 0;
}

/* One row of sequences / unit_stats (the closing transaction's statements). */
static int bind_sequence(sqlite3_stmt *s1, int64_t run_id, const es_seq_rec *q)
{
    sqlite3_reset(s1);
    sqlite3_bind_int64(s1, 1, run_id);
    sqlite3_bind_int(s1, 2, q->id);
    sqlite3_bind_int64(s1, 3, q->prompt);
    sqlite3_bind_int64(s1, 4, q->gen);
    sqlite3_bind_double(s1, 5, q->submit_ns);
    sqlite3_bind_double(s1, 6, q->admit_ns);
    sqlite3_bind_double(s1, 7, q->first_ns);
    sqlite3_bind_double(s1, 8, q->done_ns);
    sqlite3_bind_double(s1, 9, q->first_ns - q->submit_ns);
    sqlite3_bind_double(s1, 10, q->energy_j);
    return sqlite3_step(s1) != SQLITE_DONE;
}

static int bind_unit(sqlite3_stmt *s3, int64_t run_id, const es_unit_rec *u, double total_cycles)
{
    sqlite3_reset(s3);
    sqlite3_bind_int64(s3, 1, run_id);
    sqlite3_bind_text(s3, 2, u->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s3, 3, u->items);
    sqlite3_bind_int64(s3, 4, u->tokens);
    sqlite3_bind_int64(s3, 5, u->busy_cycles);
    sqlite3_bind_double(s3, 6, total_cycles > 0 ? (double)u->busy_cycles / total_cycles : 0);
    sqlite3_bind_double(s3, 7, u->energy_j);
    sqlite3_bind_double(s3, 8, u->ev.rom_bits);
    sqlite3_bind_double(s3, 9, u->ev.cell_macs);
    sqlite3_bind_double(s3, 10, u->ev.attn_macs);
    sqlite3_bind_double(s3, 11, u->ev.kv_rd_bits);
    sqlite3_bind_double(s3, 12, u->ev.kv_wr_bits);
    sqlite3_bind_double(s3, 13, u->ev.vec_ops);
    sqlite3_bind_double(s3, 14, u->ev.link_bit_mm);
    sqlite3_bind_double(s3, 15, u->ev.host_bits);
    sqlite3_bind_double(s3, 16, u->area_mm2);
    sqlite3_bind_double(s3, 17, u->ev.state_rd_bits);
    sqlite3_bind_double(s3, 18, u->ev.state_wr_bits);
    sqlite3_bind_double(s3, 19, u->ev.reg_bit_cycles);
    sqlite3_bind_double(s3, 20, u->ev.store_bits);
    return sqlite3_step(s3) != SQLITE_DONE;
}

static void finalize_closing(es_db *db, sqlite3_stmt *s1, sqlite3_stmt *s2, sqlite3_stmt *s3, sqlite3_stmt *s4,
                             sqlite3_stmt *s5)
{
    sqlite3_finalize(s1);
    sqlite3_finalize(s2);
    sqlite3_finalize(s3);
    sqlite3_finalize(s4);
    sqlite3_finalize(s5);
    sqlite3_finalize(db->rec);
    sqlite3_finalize(db->tok);
    db->rec = db->tok = NULL;
}

/* The summary's "cost" object (run --json's; es_cost.h), when it has one, as the run's costs row. */
static int put_cost(es_db *db, int64_t run_id, const char *summary_json, es_err *e)
{
    cJSON *j = summary_json ? cJSON_Parse(summary_json) : NULL;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "cost");
    if (!cJSON_IsObject(c)) {
        cJSON_Delete(j);
        return 0;
    }
    static const char *const num[] = {"card_usd", "system_usd", "tokens_per_s", "watts", "joules_per_token",
                                      "capex_usd_per_m_tokens", "energy_usd_per_m_tokens", "usd_per_m_tokens"};
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db->h, "INSERT INTO costs VALUES(?,?,?,?,?,?,?,?,?,?,?,?)", -1, &st, NULL) != SQLITE_OK) {
        db_err(db, "prepare the costs row", e);
        goto out;
    }
    sqlite3_bind_int64(st, 1, run_id);
    const cJSON *deploy = cJSON_GetObjectItemCaseSensitive(c, "deploy"), *from = cJSON_GetObjectItemCaseSensitive(c, "card_from");
    const cJSON *die = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, "die"), "die_usd");
    if (cJSON_IsString(deploy)) sqlite3_bind_text(st, 2, deploy->valuestring, -1, SQLITE_TRANSIENT);
    if (cJSON_IsString(from)) sqlite3_bind_text(st, 3, from->valuestring, -1, SQLITE_TRANSIENT);
    if (cJSON_IsNumber(die)) sqlite3_bind_double(st, 4, die->valuedouble); /* NULL: the card's price was given */
    for (int i = 0; i < 8; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, num[i]);
        if (cJSON_IsNumber(v)) sqlite3_bind_double(st, 5 + i, v->valuedouble);
    }
    if (sqlite3_step(st) != SQLITE_DONE) {
        db_err(db, "insert costs", e);
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    cJSON_Delete(j);
    return rc;
}

int es_db_finish_run(es_db *db, int64_t run_id, double total_cycles, const es_seq_rec *seqs,
                     int n_seqs, const es_token_rec *toks, int64_t n_toks,
                     const es_unit_rec *units, int n_units, const es_rec_row *recs, int64_t n_recs,
                     const char *summary_json, es_err *e)
{
    sqlite3_stmt *s1 = NULL, *s2 = NULL, *s3 = NULL, *s4 = NULL, *s5 = NULL;
    if (!db->in_tx && sqlite3_exec(db->h, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_err(db, "cannot begin the closing transaction", e);
    db->in_tx = 1;
    if ((db->nr || db->nt) && write_stream(db, e)) goto fail;
    if (sqlite3_prepare_v2(db->h, "INSERT INTO sequences VALUES(?,?,?,?,?,?,?,?,?,?)", -1, &s1, NULL) ||
        sqlite3_prepare_v2(db->h, TOK_SQL, -1, &s2, NULL) ||
        sqlite3_prepare_v2(db->h, "INSERT INTO unit_stats VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &s3, NULL) ||
        sqlite3_prepare_v2(db->h, "UPDATE runs SET status='complete', finished_utc=?, cycles=?,"
                                  " summary=? WHERE id=? AND status='running'", -1, &s4, NULL) ||
        sqlite3_prepare_v2(db->h, REC_SQL, -1, &s5, NULL)) {
        db_err(db, "prepare", e);
        goto fail;
    }
    for (int i = 0; i < n_seqs; i++)
        if (bind_sequence(s1, run_id, &seqs[i])) { db_err(db, "insert sequences", e); goto fail; }
    for (int64_t i = 0; i < n_toks; i++)
        if (bind_token(s2, run_id, &toks[i])) { db_err(db, "insert tokens", e); goto fail; }
    for (int i = 0; i < n_units; i++)
        if (bind_unit(s3, run_id, &units[i], total_cycles)) { db_err(db, "insert unit_stats", e); goto fail; }
    for (int64_t i = 0; i < n_recs; i++)
        if (bind_record(s5, run_id, &recs[i])) { db_err(db, "insert records", e); goto fail; }
    if (put_cost(db, run_id, summary_json, e)) goto fail;
    char now[32];
    utc_now(now, sizeof now);
    sqlite3_bind_text(s4, 1, now, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(s4, 2, total_cycles);
    sqlite3_bind_text(s4, 3, summary_json, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s4, 4, run_id);
    if (sqlite3_step(s4) != SQLITE_DONE || sqlite3_changes(db->h) != 1) {
        db_err(db, "mark the run complete", e);
        goto fail;
    }
    finalize_closing(db, s1, s2, s3, s4, s5);
    if (sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        db_err(db, "commit", e);
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
        db->in_tx = 0;
        return -1;
    }
    db->in_tx = 0;
    if (run_id == db->open_run) db->open_run = 0;
    return 0;
fail:
    finalize_closing(db, s1, s2, s3, s4, s5);
    sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    db->in_tx = 0;
    return -1;
}

void es_db_set_error(es_db *db, const char *error)
{
    if (db && error) snprintf(db->error, sizeof db->error, "%s", error);
}

int es_db_fail_run(es_db *db, int64_t run_id, const char *error, es_err *e)
{
    drop_stream(db);
    if (db->in_tx) { /* what was streamed belongs to the failed run: dropped */
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
        db->in_tx = 0;
    }
    sqlite3_stmt *st = NULL;
    char now[32];
    utc_now(now, sizeof now);
    char del[160];
    for (int i = 0; i < 4; i++) { /* rows committed while it streamed are not results */
        static const char *const t[4] = {"records", "tokens", "sequences", "unit_stats"};
        snprintf(del, sizeof del, "DELETE FROM %s WHERE run_id = %lld", t[i], (long long)run_id);
        if (sqlite3_exec(db->h, del, NULL, NULL, NULL) != SQLITE_OK) return db_err(db, "remove the failed run's rows", e);
    }
    if (sqlite3_prepare_v2(db->h, "UPDATE runs SET status='failed', finished_utc=?, error=? WHERE id=? AND status='running'",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(db, "mark the run failed", e);
    sqlite3_bind_text(st, 1, now, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, error, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, run_id);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    sqlite3_finalize(st);
    if (run_id == db->open_run) db->open_run = 0;
    return rc ? db_err(db, "mark the run failed", e) : 0;
}

/* 0 when h reads: its schema can be listed */
static int probe(sqlite3 *h)
{
    return sqlite3_exec(h, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

int es_db_open_read(const char *path, sqlite3 **out, es_err *e)
{
    *out = NULL;
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        es_fail(e, "%s: cannot open the database: %s", path, h ? sqlite3_errmsg(h) : "?");
        sqlite3_close(h);
        return -1;
    }
    sqlite3_busy_timeout(h, 5000);
    if (probe(h) == 0) {
        *out = h;
        return 0;
    }
    int code = sqlite3_errcode(h);
    char why[256];
    snprintf(why, sizeof why, "%s", sqlite3_errmsg(h));
    sqlite3_close(h);
    h = NULL;
    char dir[1024], wal[1100];
    folder_of(path, dir, sizeof dir);
    snprintf(wal, sizeof wal, "%s-wal", path);
    struct stat st;
    int wal_data = stat(wal, &st) == 0 && st.st_size > 0;
    if (code == SQLITE_NOTADB) return es_fail(e, "%s: not an SQLite database", path);
    if (access(dir, W_OK) == 0) return es_fail(e, "%s: cannot read the database: %s", path, why);
    /* a write-ahead-log database in a folder that cannot be written: SQLite cannot make PATH-shm to
     * read it. Nothing can change it there, so it is read as immutable, unless PATH-wal holds writes
     * not merged into it yet (they would be missed). */
    if (wal_data)
        return es_fail(e, "%s: cannot be read here: its folder %s is not writable and %s holds writes not yet "
                          "merged into the database (open it once where it can be written)", path, dir, wal);
    char uri[3400];
    size_t k = (size_t)snprintf(uri, sizeof uri, "file:%s", path[0] == '/' ? "//" : "");
    for (const unsigned char *p = (const unsigned char *)path; *p && k + 4 < sizeof uri; p++) {
        if (*p == '%' || *p == '?' || *p == '#' || *p <= ' ' || *p >= 0x7f) k += (size_t)snprintf(uri + k, 4, "%%%02X", *p);
        else uri[k++] = (char)*p;
    }
    snprintf(uri + k, sizeof uri - k, "?immutable=1");
    if (sqlite3_open_v2(uri, &h, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK || probe(h)) {
        int notadb = h && sqlite3_errcode(h) == SQLITE_NOTADB;
        es_fail(e, notadb ? "%s: not an SQLite database" : "%s: cannot read the database: %s", path,
                h ? sqlite3_errmsg(h) : why);
        sqlite3_close(h);
        return -1;
    }
    *out = h;
    return 0;
}

int es_db_read_summary(const char *path, int64_t run_id, int64_t *id, char **command, char **summary, es_err *e)
{
    *command = *summary = NULL;
    sqlite3 *h = NULL;
    if (es_db_open_read(path, &h, e)) return -1;
    sqlite3_stmt *st = NULL;
    const char *sql = run_id > 0 ? "SELECT id, status, command, summary FROM runs WHERE id = ?"
                                 : "SELECT id, status, command, summary FROM runs WHERE status = 'complete' ORDER BY id DESC LIMIT 1";
    int rc = -1;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK) {
        es_fail(e, "%s: not an etchsim database: %s", path, sqlite3_errmsg(h));
        goto out;
    }
    if (run_id > 0) sqlite3_bind_int64(st, 1, run_id);
    int step = sqlite3_step(st);
    if (step != SQLITE_ROW) {
        if (step != SQLITE_DONE) es_fail(e, "%s: cannot read runs: %s", path, sqlite3_errmsg(h));
        else if (run_id > 0) es_fail(e, "%s: there is no run %lld", path, (long long)run_id);
        else es_fail(e, "%s: holds no complete run", path);
        goto out;
    }
    *id = sqlite3_column_int64(st, 0);
    const char *status = (const char *)sqlite3_column_text(st, 1);
    const char *cmd = (const char *)sqlite3_column_text(st, 2);
    const char *sum = (const char *)sqlite3_column_text(st, 3);
    if (!status || strcmp(status, "complete") || !sum) {
        es_fail(e, "%s: run %lld never completed (status '%s'): it has no summary", path, (long long)*id,
                status ? status : "?");
        goto out;
    }
    *command = strdup(cmd ? cmd : "");
    *summary = strdup(sum);
    if (!*command || !*summary) {
        free(*command);
        free(*summary);
        *command = *summary = NULL;
        es_fail(e, "%s: out of memory", path);
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    sqlite3_close(h);
    return rc;
}

/* the columns of table t in db h, comma-separated, run_id replaced by "?1" when subst */
static int column_list(sqlite3 *h, const char *t, int subst, char *out, size_t n)
{
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA main.table_info(%s)", t);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    size_t len = 0;
    out[0] = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *c = (const char *)sqlite3_column_text(st, 1);
        const char *use = subst && !strcmp(c, "run_id") ? "?1" : c;
        int k = snprintf(out + len, n - len, "%s%s", len ? "," : "", use);
        if (k < 0 || (size_t)k >= n - len) {
            sqlite3_finalize(st);
            return -1;
        }
        len += (size_t)k;
    }
    sqlite3_finalize(st);
    return len ? 0 : -1;
}

int es_db_merge_run(es_db *db, const char *path, int64_t *run_id, es_err *e)
{
    *run_id = 0;
    static const char *tables[] = {"sequences", "tokens", "unit_stats", "records", "costs"};
    char sql[4096], cols[1024], sel[1024];
    sqlite3_stmt *st = NULL;
    char *msg = NULL;
    int rc = -1;
    snprintf(sql, sizeof sql, "ATTACH DATABASE ?1 AS pt");
    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) return db_err(db, "prepare", e);
    sqlite3_bind_text(st, 1, path, -1, SQLITE_TRANSIENT);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    st = NULL;
    if (step != SQLITE_DONE) return es_fail(e, "%s: cannot attach %s: %s", db->path, path, sqlite3_errmsg(db->h));
    if (sqlite3_exec(db->h, "SAVEPOINT merge", NULL, NULL, NULL) != SQLITE_OK) {
        db_err(db, "begin the merge", e);
        goto detach;
    }
    /* its one complete run */
    int64_t old = 0;
    if (sqlite3_prepare_v2(db->h, "SELECT id FROM pt.runs WHERE status = 'complete'", -1, &st, NULL) != SQLITE_OK) {
        es_fail(e, "%s: not an etchsim database: %s", path, sqlite3_errmsg(db->h));
        goto undo;
    }
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) old = sqlite3_column_int64(st, 0), n++;
    sqlite3_finalize(st);
    st = NULL;
    if (n != 1) {
        es_fail(e, "%s: holds %d complete runs, expected 1", path, n);
        goto undo;
    }
    if (column_list(db->h, "runs", 0, cols, sizeof cols)) {
        db_err(db, "read the runs columns", e);
        goto undo;
    }
    /* a new id in this database; the rest as logged */
    snprintf(sql, sizeof sql, "INSERT INTO main.runs(%s) SELECT NULL%s FROM pt.runs WHERE id = %lld", cols,
             strchr(cols, ',') ? strchr(cols, ',') : "", (long long)old);
    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        es_fail(e, "%s: cannot copy run %lld from %s: %s", db->path, (long long)old, path, msg ? msg : "?");
        goto undo;
    }
    *run_id = sqlite3_last_insert_rowid(db->h);
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        if (column_list(db->h, tables[i], 0, cols, sizeof cols) || column_list(db->h, tables[i], 1, sel, sizeof sel)) {
            db_err(db, "read the columns", e);
            goto undo;
        }
        snprintf(sql, sizeof sql, "INSERT INTO main.%s(%s) SELECT %s FROM pt.%s WHERE run_id = %lld", tables[i], cols,
                 sel, tables[i], (long long)old);
        if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) {
            es_fail(e, "%s: cannot copy %s from %s: %s", db->path, tables[i], path, sqlite3_errmsg(db->h));
            goto undo;
        }
        sqlite3_bind_int64(st, 1, *run_id);
        step = sqlite3_step(st);
        sqlite3_finalize(st);
        st = NULL;
        if (step != SQLITE_DONE) {
            es_fail(e, "%s: cannot copy %s from %s: %s", db->path, tables[i], path, sqlite3_errmsg(db->h));
            goto undo;
        }
    }
    rc = 0;
undo:
    sqlite3_free(msg);
    sqlite3_exec(db->h, rc ? "ROLLBACK TO merge; RELEASE merge" : "RELEASE merge", NULL, NULL, NULL);
detach:
    sqlite3_exec(db->h, "DETACH DATABASE pt", NULL, NULL, NULL);
    if (rc) *run_id = 0;
    return rc;
}

int es_db_put_sweep_point(es_db *db, int64_t point, const char *params, int64_t run_id, const char *error,
                          double wall_s, es_err *e)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h, "INSERT INTO sweep_points VALUES(?,?,?,?,?,?)", -1, &st, NULL) != SQLITE_OK)
        return db_err(db, "prepare", e);
    sqlite3_bind_int64(st, 1, point);
    sqlite3_bind_text(st, 2, params, -1, SQLITE_TRANSIENT);
    if (run_id > 0) sqlite3_bind_int64(st, 3, run_id);
    else sqlite3_bind_null(st, 3);
    sqlite3_bind_text(st, 4, error ? "failed" : "done", -1, SQLITE_STATIC);
    if (error) sqlite3_bind_text(st, 5, error, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, 5);
    if (wall_s >= 0) sqlite3_bind_double(st, 6, wall_s);
    else sqlite3_bind_null(st, 6);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    return step == SQLITE_DONE ? 0 : db_err(db, "insert sweep_points", e);
}

int es_db_exec(es_db *db, const char *sql, es_err *e)
{
    char *msg = NULL;
    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    es_fail(e, "%s: %s: %s", db->path, sql, msg ? msg : "?");
    sqlite3_free(msg);
    return -1;
}
