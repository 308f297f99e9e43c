/* es_db: the SQLite log. A run is inserted as 'running' when it starts
 * (which also proves the database is writable) and completed in one
 * transaction at its end, so a killed run never looks complete. */
#ifndef ES_DB_H
#define ES_DB_H
#include <stdint.h>
#include "es_area.h"
#include "es_err.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct es_seq_rec {
    int32_t id;            /* sequence number in the run, from 0 */
    int64_t prompt, gen;   /* prompt tokens, tokens to generate */
    double submit_ns;      /* host submitted it */
    double admit_ns;       /* a KV slot was granted */
    double first_ns;       /* first output token reached the host */
    double done_ns;        /* last output token reached the host */
    double energy_j;       /* sum of its tokens' energies */
} es_seq_rec;

typedef struct es_token_rec {
    int32_t seq, idx;      /* sequence and output index, from 0 */
    double t_ns;           /* arrival at the host */
    double latency_ns;     /* idx 0: since submission; else since the previous token */
    double energy_j;       /* dynamic energy it caused plus its share of static power */
} es_token_rec;

typedef struct es_unit_rec {
    char name[32];         /* "embed", "tile0", "link3", "head", ... */
    int64_t items;         /* work items served */
    int64_t tokens;        /* tokens in those items */
    int64_t busy_cycles;   /* cycles occupied */
    double energy_j;       /* dynamic energy of its events (card level) */
    es_events ev;          /* event counts */
    double area_mm2;       /* die area that is active while it is busy (es_area_of_unit) */
} es_unit_rec;

typedef struct es_rec_row {
    int64_t record;        /* index in the dataset, from 0 */
    int64_t line;          /* its first line in the file */
    char key[64];          /* its first field's value, truncated */
    int done;              /* 1 evaluated, 0 skipped */
    char reason[160];      /* why it was skipped */
    int64_t prompt_tokens; /* rule (shared prefix) + record tokens */
    int64_t output_tokens;
    double submit_ns, first_ns, done_ns; /* SQ submission, first and last completion at the host */
    double energy_j;       /* its tokens' energies */
    int tokens_estimated;  /* token counts from the estimate, not a tokenizer */
    const char *output_text; /* functional mode: the output's text (borrowed), else NULL */
    char verdict[64];      /* functional mode: the label found in the output, "other", or "" (NULL) */
} es_rec_row;

typedef struct es_run_info {
    const char *command;   /* "run" */
    const char *chip, *model;
    int64_t prompt, gen, streams;
    const char *chip_json, *process_json; /* effective configurations */
} es_run_info;

typedef struct es_db es_db;
struct sqlite3;

/* Open (or create) a database to write: a file, or a folder for its journal, that cannot be written
 * (a read-only mount, no permission) is an error saying so, naming the path. */
int es_db_open(es_db **db, const char *path, es_err *e);
void es_db_close(es_db *db);
int es_db_begin_run(es_db *db, const es_run_info *ri, int64_t *run_id, es_err *e);
/* Records and tokens streamed during a run (es_db_put_record, es_db_put_token) are buffered and
 * written 1,024 records at a time in short transactions, so other writers are not locked out;
 * es_db_finish_run writes the rest and marks the run complete in one transaction. A run killed in
 * between stays 'running' with the chunks written so far (`etchsim db check --mark-failed` fails it
 * and removes them). es_db_stream_begin is kept for callers; it does nothing. */
int es_db_stream_begin(es_db *db, es_err *e);
int es_db_put_record(es_db *db, int64_t run_id, const es_rec_row *r, es_err *e);
/* One tokens row, streamed the same way (eval: seq is the record's index). */
int es_db_put_token(es_db *db, int64_t run_id, const es_token_rec *t, es_err *e);
int es_db_finish_run(es_db *db, int64_t run_id, double total_cycles, const es_seq_rec *seqs,
                     int n_seqs, const es_token_rec *toks, int64_t n_toks,
                     const es_unit_rec *units, int n_units, const es_rec_row *recs,
                     int64_t n_recs, const char *summary_json, es_err *e);

/* Sweeps: copy the one complete run of the database at path (with its
 * sequences, tokens, unit_stats and records) into db under a new run id. */
/* A run that stopped on an error: status 'failed' with the message, what it streamed dropped.
 * es_db_close does this to a run begun and not finished, with the message es_db_set_error gave. */
int es_db_fail_run(es_db *db, int64_t run_id, const char *error, es_err *e);
void es_db_set_error(es_db *db, const char *error);
int es_db_merge_run(es_db *db, const char *path, int64_t *run_id, es_err *e);
/* One sweep_points row: its parameters (a JSON object), its run (0: none), the
 * error of a failed point (NULL: done) and its host wall time. */
int es_db_put_sweep_point(es_db *db, int64_t point, const char *params, int64_t run_id, const char *error,
                          double wall_s, es_err *e);
/* Run SQL (BEGIN, COMMIT, ...) on db. */
int es_db_exec(es_db *db, const char *sql, es_err *e);

/* Open the database at path for reading only (*h, sqlite3_close it). A write-ahead-log database in
 * a folder this process cannot write (a read-only mount) is read as immutable, as SQLite cannot make
 * its PATH-shm there, unless PATH-wal holds writes not merged yet (an error saying so). Errors name
 * the file: missing, not an SQLite database, unreadable. */
int es_db_open_read(const char *path, struct sqlite3 **h, es_err *e);

/* Read the summary (the `--json` object) of a complete run from the database at
 * path, opened read-only: run_id > 0 that run, else the newest complete one. Fills
 * *id and malloc'd *command ("run" or "eval") and *summary. A missing file, a run
 * that is not there or never completed, each an error naming the file and run. */
int es_db_read_summary(const char *path, int64_t run_id, int64_t *id, char **command, char **summary, es_err *e);

#ifdef __cplusplus
}
#endif
#endif
