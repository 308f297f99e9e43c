/* cli_compare: `etchsim compare`: dense, MoE and SSM models on chips of equal
 * area, in one table (or, --baselines, hc1-class beside the GPU and wafer-scale baselines). Each row's figures are read from `etchsim run --json`
 * runs of that model and chip (this same binary, one process per run, as
 * SystemC elaborates one design per process), so they equal single runs:
 * one user at 1k/1k, the same workload at load (--streams users), and the KV
 * (or state) capacity at rule-evaluation sizes. */
#define _POSIX_C_SOURCE 200809L
#include "cli_compare.h"
#include "cli_opts.h"
#include "es_proc.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *HELP =
    "usage: etchsim compare [--baselines] [--pair MODEL:CHIP[:RECIPE]]... [--system-pair MODEL:SYSTEM[:RECIPE]]...\n"
    "                       [--prompt N --generate M]\n"
    "                       [--streams S] [--eval-prompt N --eval-generate M] [--json]\n"
    "\n"
    "Dense, mixture-of-experts and state-space models on chips of equal area, in one\n"
    "table: one user's decode tokens/s, the analytical saturated tokens/s, joules per\n"
    "token, die utilization (area x busy time / die area x run time), and how many\n"
    "sequences the KV or state SRAM holds at 1k/1k and at rule-evaluation sizes; then,\n"
    "per row, the machine at load (S users): tokens/s in all and per user, time to first\n"
    "token, watts, J/token, $ per million tokens (n/a, with the reason, for a chip without\n"
    "cost inputs) and where its time goes (busy fraction of the weight store, lanes,\n"
    "attention, links). Any chip may be paired, an HBM or SRAM store one included.\n"
    "Every figure is read from an `etchsim run --json` of that model and chip.\n"
    "\n"
    "options:\n"
    "  --pair MODEL:CHIP[:RECIPE]  a row (repeatable); default llama-3.1-8b:hc1-class,\n"
    "                       olmoe-1b-7b:olmoe-1b-7b-class, falcon-mamba-7b:falcon-mamba-7b-class;\n"
    "                       RECIPE: the weight formats its runs time (--recipe of etchsim run;\n"
    "                       default the chip's weights.*)\n"
    "  --system-pair MODEL:SYSTEM[:RECIPE]  a row of a system of chips (repeatable; models/systems\n"
    "                       or a path, run with --system): chip \"system:SYSTEM\"; its saturated\n"
    "                       tokens/s is n/a (the analytic model gives a system's decode step only).\n"
    "                       Rows keep the order of --pair and --system-pair\n"
        "  --baselines          hc1-class beside the GPU and wafer-scale baselines on one workload,\n"
    "                       Llama-3.1-8B: llama-3.1-8b:hc1-class, :h100-class:bf16, :h200-class:bf16,\n"
    "                       :b200-class:fp4 and :wafer-class:bf16 (instead of the default rows;\n"
    "                       --pair rows follow them)\n"
    "  --prompt N, --generate M            the one-user and at-load runs (default 1024 / 1024)\n"
    "  --streams S          users at load (default 8)\n"
    "  --eval-prompt N, --eval-generate M  rule-evaluation sizes for capacity (default 150 / 4)\n"
    "  --json               print the rows as JSON\n"
    "  -h, --help           this text\n";

static int usage(const char *msg, const char *arg) { return es_opt_usage("compare", msg, arg); }

/* Run this binary with args; its standard output parsed as JSON into *out. */
static int run_self(char *const args[], cJSON **out, char *err, size_t n)
{
    *out = NULL;
    int fd[2];
    if (pipe(fd)) { snprintf(err, n, "pipe: %s", strerror(errno)); return -1; }
    fflush(NULL);
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) { close(fd[0]); close(fd[1]); snprintf(err, n, "fork: %s", strerror(errno)); return -1; }
    if (pid == 0) {
        es_die_with_parent(parent);
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(fd[1]);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while (buf && (r = read(fd[0], buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        if (len + 1 == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) { free(buf); buf = NULL; }
            else buf = b;
        }
    }
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!buf) { snprintf(err, n, "out of memory"); return -1; }
    buf[len] = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(err, n, "etchsim run exited %d (its error is above)", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        free(buf);
        return -1;
    }
    *out = cJSON_Parse(buf);
    free(buf);
    if (!*out) { snprintf(err, n, "etchsim run printed no JSON"); return -1; }
    return 0;
}

static double num(const cJSON *j, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, a);
    if (b) x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsNumber(x) ? x->valuedouble : 0;
}

typedef struct compare_args {
    const char *pairs[16];  /* --pair MODEL:CHIP[:RECIPE], n_pairs of them (or the defaults, or the baselines) */
    int system[16];         /* 1: that pair is --system-pair MODEL:SYSTEM[:RECIPE] */
    int n_pairs, json;      /* ..., --json */
    const char *prompt, *gen, *eprompt, *egen; /* the one-user and rule-evaluation sizes, as given */
    const char *streams;    /* users at load, as given */
} compare_args;

/* compare's options into c: -1 to go on, else the exit code. */
static int parse_compare(int argc, char **argv, compare_args *c)
{
    static const char *defaults[3] = {"llama-3.1-8b:hc1-class", "olmoe-1b-7b:olmoe-1b-7b-class",
                                      "falcon-mamba-7b:falcon-mamba-7b-class"};
    /* --baselines: one workload on hc1-class and on each GPU baseline in its serving formats (their .md files) */
    static const char *baselines[5] = {"llama-3.1-8b:hc1-class", "llama-3.1-8b:h100-class:bf16",
                                       "llama-3.1-8b:h200-class:bf16", "llama-3.1-8b:b200-class:fp4",
                                       "llama-3.1-8b:wafer-class:bf16"};
    memset(c, 0, sizeof *c);
    c->prompt = "1024", c->gen = "1024", c->eprompt = "150", c->egen = "4", c->streams = "8";
    static const es_opt opts[9] = {{"json", ES_OPT_FLAG, 0, 0, 0},           {"pair", ES_OPT_STR, 0, 0, 1},
                                   {"prompt", ES_OPT_COUNT, 1, 1 << 24, 0},   {"generate", ES_OPT_COUNT, 1, 1 << 24, 0},
                                   {"eval-prompt", ES_OPT_COUNT, 1, 1 << 24, 0}, {"eval-generate", ES_OPT_COUNT, 1, 1 << 24, 0},
                                   {"streams", ES_OPT_COUNT, 1, 100000, 0},   {"baselines", ES_OPT_FLAG, 0, 0, 0},
                                   {"system-pair", ES_OPT_STR, 0, 0, 1}};
    es_optarg *items = NULL;
    int n = es_opts_parse("compare", argc, argv, opts, 9, 0, HELP, &items);
    if (n < 0) return n == -2 ? 0 : 2;
    for (int k = 0; k < n; k++) /* the baselines first, whereever --baselines stands */
        if (items[k].opt == 7 && !c->n_pairs)
            for (int i = 0; i < 5; i++) c->pairs[c->n_pairs++] = baselines[i];
    for (int k = 0; k < n; k++) {
        const char *v = items[k].val;
        switch (items[k].opt) {
        case 0: c->json = 1; break;
        case 1:
        case 8:
            if (!strchr(v, ':') || strchr(v, ':') == v || v[strlen(v) - 1] == ':' || c->n_pairs == 16) {
                const char *msg = items[k].opt == 8 ? "--system-pair expects MODEL:SYSTEM or MODEL:SYSTEM:RECIPE (at "
                                                      "most 16 rows in all), got"
                                                    : "--pair expects MODEL:CHIP or MODEL:CHIP:RECIPE (at most 16 rows), got";
                free(items);
                return usage(msg, v);
            }
            c->system[c->n_pairs] = items[k].opt == 8;
            c->pairs[c->n_pairs++] = v;
            break;
        case 2: c->prompt = v; break; /* validated as counts; passed on as given */
        case 3: c->gen = v; break;
        case 4: c->eprompt = v; break;
        case 5: c->egen = v; break;
        case 6: c->streams = v; break;
        }
    }
    free(items);
    if (!c->n_pairs)
        for (int i = 0; i < 3; i++) c->pairs[c->n_pairs++] = defaults[i];
    return -1;
}

/* The text tables' chip column: the chip, and its recipe when the row names one ("h100-class:bf16"). */
static const char *chip_label(const cJSON *r, char *b, size_t n)
{
    const cJSON *rc = cJSON_GetObjectItemCaseSensitive(r, "recipe");
    snprintf(b, n, "%s%s%s%s", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "system")) ? "system:" : "",
             cJSON_GetObjectItemCaseSensitive(r, "chip")->valuestring, rc ? ":" : "", rc ? rc->valuestring : "");
    return b;
}

static const cJSON *item(const cJSON *j, const char *k) { return cJSON_GetObjectItemCaseSensitive(j, k); }

/* r[key] = x when x is a number, else null. */
static void add_number_or_null(cJSON *r, const char *key, const cJSON *x)
{
    if (cJSON_IsNumber(x)) cJSON_AddNumberToObject(r, key, x->valuedouble);
    else cJSON_AddNullToObject(r, key);
}

/* A figure of x (%.*f, scaled), or "n/a" when it is not a number, into b. */
static const char *fig(char *b, size_t n, const cJSON *x, double scale, int prec)
{
    if (cJSON_IsNumber(x)) snprintf(b, n, "%.*f", prec, x->valuedouble * scale);
    else snprintf(b, n, "n/a");
    return b;
}

/* A row from the one-user run a and the rule-evaluation run b (printed too, without --json); recipe: the
 * row's --recipe, or NULL (the chip's weights.*: the row has no "recipe" key); system: a --system-pair row
 * ("system": true, "chips": its chips; its saturated tokens/s null: the analytic model gives a system's decode
 * step only). */
static cJSON *row_of(const char *model, const char *chip, const char *recipe, int system, const cJSON *a,
                     const cJSON *b, int json)
{
    const cJSON *moe = cJSON_GetObjectItemCaseSensitive(a, "moe");
    double active = moe ? num(moe, "active_params", NULL) / num(moe, "params", NULL) : 1.0;
    cJSON *r = cJSON_CreateObject();
    char label[600];
    cJSON_AddStringToObject(r, "model", model);
    cJSON_AddStringToObject(r, "chip", chip);
    if (recipe) cJSON_AddStringToObject(r, "recipe", recipe);
    if (system) {
        cJSON_AddTrueToObject(r, "system");
        cJSON_AddNumberToObject(r, "chips", cJSON_GetArraySize(item(item(a, "system"), "chips")));
    }
    cJSON_AddNumberToObject(r, "area_mm2", num(a, "area_mm2", NULL));
    /* null with one generated token: no decode interval */
    const int dec = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(a, "decode_tokens_per_s"));
    char rate[32] = "-";
    if (dec) {
        cJSON_AddNumberToObject(r, "decode_tokens_per_s", num(a, "decode_tokens_per_s", NULL));
        snprintf(rate, sizeof rate, "%.0f", num(a, "decode_tokens_per_s", NULL));
    } else {
        cJSON_AddNullToObject(r, "decode_tokens_per_s");
    }
    add_number_or_null(r, "saturated_tokens_per_s", item(a, "analytic_saturated_tokens_per_s"));
    cJSON_AddNumberToObject(r, "joules_per_token", num(a, "joules_per_token", NULL));
    cJSON_AddNumberToObject(r, "die_utilization", num(a, "utilization", "die"));
    cJSON_AddNumberToObject(r, "active_param_share", active);
    cJSON_AddNumberToObject(r, "sequences_1k", num(a, "kv_slots", NULL));
    cJSON_AddNumberToObject(r, "sequences_eval", num(b, "kv_slots", NULL));
    char sat[32];
    if (!json)
        printf("%-16s %-22s %7.1f %10s %11s %9.3f %7.2f%% %7.1f%% %9.0f %9.0f\n", model, chip_label(r, label, sizeof label),
               num(a, "area_mm2", NULL), rate, fig(sat, sizeof sat, item(a, "analytic_saturated_tokens_per_s"), 1, 0),
               1e3 * num(a, "joules_per_token", NULL),
               100 * num(a, "utilization", "die"), 100 * active, num(a, "kv_slots", NULL),
               num(b, "kv_slots", NULL));
    return r;
}


/* The row's keys from the one-user run a beyond the first table's, and from the run at load l: each a
 * figure of those runs' JSON, copied (cost: its usd_per_m_tokens, null with the reason in cost_unknown). */
static void add_load_keys(cJSON *r, const cJSON *a, const cJSON *l)
{
    cJSON_AddNumberToObject(r, "ttft_ns", num(a, "ttft_ns", NULL));
    cJSON_AddNumberToObject(r, "watts", num(a, "watts", NULL));
    add_number_or_null(r, "usd_per_m_tokens", item(item(a, "cost"), "usd_per_m_tokens"));
    cJSON_AddNumberToObject(r, "load_streams", num(l, "streams", NULL));
    cJSON_AddNumberToObject(r, "load_tokens_per_s", num(l, "tokens_per_s", NULL));
    add_number_or_null(r, "load_tokens_per_s_per_user", item(l, "decode_tokens_per_s"));
    cJSON_AddNumberToObject(r, "load_ttft_ns", num(l, "ttft_ns", NULL));
    cJSON_AddNumberToObject(r, "load_watts", num(l, "watts", NULL));
    cJSON_AddNumberToObject(r, "load_joules_per_token", num(l, "joules_per_token", NULL));
    add_number_or_null(r, "load_usd_per_m_tokens", item(item(l, "cost"), "usd_per_m_tokens"));
    const cJSON *why = item(a, "cost_unknown");
    if (!cJSON_IsString(why)) why = item(l, "cost_unknown");
    if (cJSON_IsString(why)) cJSON_AddStringToObject(r, "cost_unknown", why->valuestring);
    else cJSON_AddNullToObject(r, "cost_unknown");
    const cJSON *bf = item(a, "busy_fraction"), *lbf = item(l, "busy_fraction");
    cJSON_AddItemToObject(r, "busy_fraction", bf ? cJSON_Duplicate(bf, 1) : cJSON_CreateNull());
    cJSON_AddItemToObject(r, "load_busy_fraction", lbf ? cJSON_Duplicate(lbf, 1) : cJSON_CreateNull());
}


/* The second table: each row at load, its cost and where its time goes; the reasons for n/a below. */
static void print_load_table(const cJSON *rows, const compare_args *c)
{
    printf("\n%-16s %-22s %8s %8s %5s %10s %9s %7s %8s %11s %11s %6s %6s %6s %6s\n", "model", "chip", "TTFT us",
           "W 1 user", "users", "t/s load", "t/s/user", "W load", "mJ/token", "$/M 1 user", "$/M load", "store",
           "lanes", "attn", "links");
    const cJSON *r;
    cJSON_ArrayForEach(r, rows) {
        const cJSON *bf = item(r, "load_busy_fraction");
        char u1[32], ul[32], pu[32], st[16], la[16], at[16], li[16], label[600];
        printf("%-16s %-22s %8.1f %8.1f %5.0f %10.0f %9s %7.1f %8.3f %11s %11s %6s %6s %6s %6s\n",
               item(r, "model")->valuestring, chip_label(r, label, sizeof label), num(r, "ttft_ns", NULL) / 1e3,
               num(r, "watts", NULL), num(r, "load_streams", NULL), num(r, "load_tokens_per_s", NULL),
               fig(pu, sizeof pu, item(r, "load_tokens_per_s_per_user"), 1, 0), num(r, "load_watts", NULL),
               1e3 * num(r, "load_joules_per_token", NULL), fig(u1, sizeof u1, item(r, "usd_per_m_tokens"), 1, 6),
               fig(ul, sizeof ul, item(r, "load_usd_per_m_tokens"), 1, 6), fig(st, sizeof st, item(bf, "store"), 100, 1),
               fig(la, sizeof la, item(bf, "lanes"), 100, 1), fig(at, sizeof at, item(bf, "attention"), 100, 1),
               fig(li, sizeof li, item(bf, "links"), 100, 1));
    }
    printf("\nTTFT and W 1 user: the one-user run; load: %s users of %s in / %s out: tokens/s in all and per user\n"
           "(decode), card W, J/token; $/M: dollars per million tokens (etchsim cost); store, lanes, attn, links: %%\n"
           "of the run at load each kind of unit is busy (run --json busy_fraction; store n/a: ROM or a store per\n"
           "tile, whose weights stream inside the lanes' time).\n", c->streams, c->prompt, c->gen);
    cJSON_ArrayForEach(r, rows) {
        const cJSON *why = item(r, "cost_unknown");
        if (cJSON_IsString(why)) printf("$/M n/a: %s\n", why->valuestring);
    }
}

/* One pair's three runs, its row into rows: 0, or 1 (the error printed). */
static int compare_pair(const compare_args *c, int i, cJSON *rows)
{
    const char *pair = c->pairs[i];
    char *chip_opt = c->system[i] ? "--system" : "--chip";
    char model[256], chip[512], recipe[512], err[256];
    const char *colon = strchr(pair, ':'), *last = strrchr(pair, ':'); /* MODEL:CHIP or MODEL:CHIP:RECIPE */
    snprintf(model, sizeof model, "%.*s", (int)(colon - pair), pair);
    snprintf(chip, sizeof chip, "%.*s", (int)((last > colon ? last : pair + strlen(pair)) - colon - 1), colon + 1);
    snprintf(recipe, sizeof recipe, "%s", last > colon ? last + 1 : "");
    /* each run's arguments; with a recipe, --recipe R replaces the trailing NULL, NULL */
    char *one[] = {"etchsim", "run", "--json", "--no-db", "--model", model, chip_opt, chip, "--prompt",
                   (char *)c->prompt, "--generate", (char *)c->gen, NULL, NULL, NULL};
    char *ev[] = {"etchsim", "run", "--json", "--no-db", "--model", model, chip_opt, chip, "--prompt",
                  (char *)c->eprompt, "--generate", (char *)c->egen, NULL, NULL, NULL};
    char *load[] = {"etchsim", "run", "--json", "--no-db", "--model", model, chip_opt, chip, "--prompt",
                    (char *)c->prompt, "--generate", (char *)c->gen, "--streams", (char *)c->streams, NULL, NULL, NULL};
    if (recipe[0]) {
        one[12] = ev[12] = load[14] = "--recipe";
        one[13] = ev[13] = load[15] = recipe;
    }
    cJSON *a = NULL, *b = NULL, *l = NULL;
    int rc = 0;
    if (run_self(one, &a, err, sizeof err) || run_self(ev, &b, err, sizeof err) || run_self(load, &l, err, sizeof err)) {
        fprintf(stderr, "etchsim compare: %s on %s: %s\n", model, chip, err);
        rc = 1;
    } else {
        cJSON *r = row_of(model, chip, recipe[0] ? recipe : NULL, c->system[i], a, b, c->json);
        add_load_keys(r, a, l);
        cJSON_AddItemToArray(rows, r);
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(l);
    return rc;
}

int es_cli_compare(int argc, char **argv)
{
    compare_args c;
    int code = parse_compare(argc, argv, &c);
    if (code >= 0) return code;
    cJSON *rows = cJSON_CreateArray();
    int rc = 0;
    if (!c.json)
        printf("%-16s %-22s %7s %10s %11s %9s %8s %8s %9s %9s\n", "model", "chip", "mm2", "1 user t/s",
               "saturated", "mJ/token", "die use", "active", "seqs 1k", "seqs eval");
    for (int i = 0; i < c.n_pairs && !rc; i++) rc = compare_pair(&c, i, rows);
    if (!rc && c.json) {
        char *s = cJSON_Print(rows);
        puts(s);
        cJSON_free(s);
    } else if (!rc) {
        printf("\n1 user: decode tokens/s at %s in / %s out; saturated: the analytical bound with many users;\n"
               "die use: area x busy time / die area x run time for the one user; active: the share of the\n"
               "weights a token uses; seqs: sequences the KV (or state) SRAM holds at %s/%s and %s/%s.\n",
               c.prompt, c.gen, c.prompt, c.gen, c.eprompt, c.egen);
        for (int i = 0; i < c.n_pairs; i++)
            if (c.system[i]) {
                printf("system:NAME: a system of chips (--system-pair); saturated n/a: the analytic model gives a\n"
                       "system's decode step only; mm2, W and $/M are all its chips'.\n");
                break;
            }
        print_load_table(rows, &c);
    }
    cJSON_Delete(rows);
    return rc;
}
