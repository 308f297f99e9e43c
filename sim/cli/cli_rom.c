/* cli_rom: `etchsim rom build|inspect|verify` (see cli_rom.h). */
#define _POSIX_C_SOURCE 200809L
#include "cli_rom.h"
#include "cli_opts.h"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "es_quant.h"
#include "es_recipe.h"
#include "es_rom.h"
#include "es_wsrc.h"

static const char *ROM_HELP =
    "usage: etchsim rom build   [--model M] [--chip C] [--recipe R]\n"
    "                           (--synthetic SEED | --weights PATH [--rope-rows halves|pairs]\n"
    "                           [--nibbles split|interleaved]) -o FILE [--set KEY=VALUE]... [--threads N]\n"
    "       etchsim rom inspect FILE [--json] [--banks] [--tensors]\n"
    "       etchsim rom verify  FILE\n"
    "\n"
    "build    quantize a model's weights by a recipe and pack them into the ROM banks of\n"
    "         a chip: one CRC-32-checked payload per bank (its rows as stored), and an index.\n"
    "         --synthetic SEED makes deterministic synthetic weights (weights/es_synth.h);\n"
    "         --weights reads a .safetensors file, a model.safetensors.index.json, a .gguf\n"
    "         file or a folder holding one. --rope-rows says how the file orders Q and K\n"
    "         rows (halves: Hugging Face, the default for safetensors; pairs: Meta and GGUF,\n"
    "         the default for GGUF); --nibbles the order of 4-bit elements (default split).\n"
    "         Defaults: --model llama-3.1-8b --chip hc1-class --recipe hc1-mix.\n"
    "inspect  bits per weight, bits per layer and per bank, bank fill; --banks lists\n"
    "         every bank, --tensors every tensor, --json prints one object.\n"
    "verify   check every bank's CRC-32 and size; names the first bad bank, exit 1.\n";

static int usage(const char *msg, const char *arg) { return es_opt_usage("rom", msg, arg); }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void progress(int done, int total, void *arg)
{
    (void)arg;
    if (isatty(2)) fprintf(stderr, "\r  packed %d / %d ROM units", done, total);
}

static int wsrc_rows(void *arg, int tensor, int64_t row, float *out, es_err *e)
{
    return es_wsrc_read_row(arg, tensor, row, out, e);
}

typedef struct build_args {
    const char *model, *chip, *recipe, *out, *weights; /* --model, --chip, --recipe, -o, --weights */
    es_wsrc_opts wo;                                    /* --rope-rows, --nibbles */
    const char **sets;                                  /* --set KEY=VALUE, n_sets of them (owned) */
    int n_sets, threads, have_seed;                     /* ..., --threads (0: all), --synthetic given */
    unsigned long long seed;                            /* --synthetic SEED */
} build_args;

/* --rope-rows or --nibbles (rope 1 or 0) V into wo: 0, or the usage error printed and -1. */
static int parse_layout(int rope, const char *v, es_wsrc_opts *wo)
{
    const char *x = rope ? "halves" : "split", *y = rope ? "pairs" : "interleaved";
    if (strcmp(v, x) && strcmp(v, y)) {
        fprintf(stderr, "etchsim rom build: --%s expects %s or %s, got %s\nTry 'etchsim rom --help'.\n",
                rope ? "rope-rows" : "nibbles", x, y, v);
        return -1;
    }
    if (rope) wo->rope_rows = strcmp(v, "pairs") ? ES_ROPE_HALVES : ES_ROPE_PAIRS;
    else wo->nibbles = strcmp(v, "interleaved") ? ES_NIB_SPLIT : ES_NIB_INTERLEAVED;
    return 0;
}

/* rom build's options into a: -1 to go on (free a->sets after), else the exit code (usage printed). */
static int parse_build(int argc, char **argv, build_args *a)
{
    memset(a, 0, sizeof *a);
    a->model = "llama-3.1-8b", a->chip = "hc1-class", a->recipe = "hc1-mix";
    a->wo = (es_wsrc_opts){-1, -1};
    enum { MODEL, CHIP, RECIPE, SYNTHETIC, WEIGHTS, ROPE, NIBBLES, OUT, OUTPUT, SET, THREADS, N_OPTS };
    static const es_opt opts[N_OPTS] = {
        {"model", ES_OPT_STR, 0, 0, 0},   {"chip", ES_OPT_STR, 0, 0, 0},      {"recipe", ES_OPT_STR, 0, 0, 0},
        {"synthetic", ES_OPT_COUNT, 0, 9.2e18, 0}, {"weights", ES_OPT_STR, 0, 0, 0},
        {"rope-rows", ES_OPT_STR, 0, 0, 0}, {"nibbles", ES_OPT_STR, 0, 0, 0}, {"o", ES_OPT_STR, 0, 0, 0},
        {"output", ES_OPT_STR, 0, 0, 0},  {"set", ES_OPT_STR, 0, 0, 1},       {"threads", ES_OPT_COUNT, 1, 1024, 0}};
    es_optarg *items = NULL;
    int n_items = es_opts_parse("rom build", argc, argv, opts, N_OPTS, 0, NULL, &items);
    if (n_items < 0) return 2; /* --help was handled by es_cli_rom */
    a->sets = calloc((size_t)argc + 1, sizeof *a->sets);
    int code = -1;
    for (int k = 0; k < n_items && code < 0; k++) {
        const char *v = items[k].val;
        switch (items[k].opt) {
        case MODEL: a->model = v; break;
        case CHIP: a->chip = v; break;
        case RECIPE: a->recipe = v; break;
        case SYNTHETIC: a->seed = (unsigned long long)items[k].num, a->have_seed = 1; break;
        case WEIGHTS: a->weights = v; break;
        case ROPE:
        case NIBBLES:
            if (parse_layout(items[k].opt == ROPE, v, &a->wo)) code = 2;
            break;
        case OUT:
        case OUTPUT: a->out = v; break;
        case SET:
            if (!strchr(v, '=')) code = usage("build: --set needs KEY=VALUE, got", v);
            else a->sets[a->n_sets++] = v;
            break;
        case THREADS: a->threads = (int)items[k].num; break;
        }
    }
    free(items);
    if (code < 0 && !a->out) code = usage("build: -o FILE is required", NULL);
    if (code < 0 && a->have_seed == !!a->weights)
        code = usage("build: give one of --synthetic SEED (a whole number) or --weights PATH", NULL);
    if (code >= 0) free(a->sets);
    return code;
}

/* What rom build wrote: the image's tensors, weights, bits, banks and size, and the time it took. */
static int print_built(const build_args *a, const es_model *m, const es_chip *c, const es_recipe *r, double t0,
                       es_err *e)
{
    es_rom_image img;
    if (es_rom_open(&img, a->out, e)) return -1;
    double bits = 0, w = 0;
    for (int i = 0; i < img.n_tensors; i++) {
        bits += 8.0 * (double)img.tensors[i].bytes;
        w += (double)img.tensors[i].rows * (double)img.tensors[i].cols;
    }
    if (a->weights) printf("built %s: %s on %s with %s, weights from %s\n", a->out, m->name, c->name, r->name, a->weights);
    else printf("built %s: %s on %s with %s, seed %llu\n", a->out, m->name, c->name, r->name, a->seed);
    char size[32];
    printf("  %d tensors, %.4g weights, %.6g Gbit (%.4f bits/weight), %d banks, %s file, %.1f s\n",
           img.n_tensors, w, bits / 1e9, bits / w, img.n_banks, es_fmt_bytes(size, sizeof size, (double)img.file_bytes),
           now_s() - t0);
    es_rom_close(&img);
    return 0;
}

static int cmd_build(int argc, char **argv)
{
    build_args a;
    int code = parse_build(argc, argv, &a);
    if (code >= 0) return code;
    es_err e = {{0}};
    es_model m;
    es_chip c;
    es_recipe r;
    es_wsrc src;
    int have_m = 0, have_c = 0, have_r = 0, have_w = 0, rc = 1;
    if (es_model_load(&m, a.model, &e)) goto out;
    have_m = 1;
    if (es_chip_load(&c, a.chip, a.sets, a.n_sets, &e)) goto out;
    have_c = 1;
    if (es_recipe_load(&r, a.recipe, &e)) goto out;
    have_r = 1;
    if (a.weights) {
        if (es_wsrc_open(&src, a.weights, &a.wo, &e)) goto out;
        have_w = 1;
        if (es_wsrc_bind(&src, &m, &e)) goto out;
    }
    double t0 = now_s();
    if (a.weights ? es_rom_build(&c, &m, &r, wsrc_rows, &src, a.out, a.threads, progress, NULL, &e)
                  : es_rom_build_synthetic(&c, &m, &r, a.seed, a.out, a.threads, progress, NULL, &e)) {
        if (isatty(2)) fprintf(stderr, "\n");
        goto out;
    }
    if (isatty(2)) fprintf(stderr, "\r%50s\r", "");
    if (print_built(&a, &m, &c, &r, t0, &e)) goto out;
    rc = 0;
out:
    if (rc) fprintf(stderr, "etchsim rom build: %s\n", e.msg);
    if (have_w) es_wsrc_close(&src);
    if (have_r) es_recipe_free(&r);
    if (have_c) es_chip_free(&c);
    if (have_m) es_model_free(&m);
    free(a.sets);
    return rc;
}

typedef struct unit_sum {
    double weights, bits;       /* tensors' weights and quantized bits */
    double fill_min, fill_max;  /* bank fill: rows used / rows */
} unit_sum;

/* An image's totals, by format and by unit. */
typedef struct rom_sums {
    unit_sum *us;                                  /* per unit (n_units, owned) */
    double fmt_w[ES_Q_COUNT], fmt_b[ES_Q_COUNT];   /* weights and bits per format */
    double tw, tb;                                 /* all weights, all bits */
    double cap, used;                              /* ROM bits: the units' capacity, in use */
    double pad_w, pad_b;                           /* zero padding of partial last blocks: elements, bits */
} rom_sums;

static int sum_image(const es_rom_image *img, rom_sums *s, es_err *e)
{
    memset(s, 0, sizeof *s);
    s->us = calloc((size_t)img->n_units + 1, sizeof *s->us);
    if (!s->us) return es_fail(e, "out of memory");
    unit_sum *us = s->us;
    for (int u = 0; u < img->n_units; u++) {
        us[u].fill_min = 1;
        s->cap += (double)img->units[u].banks * (double)img->units[u].rows * (double)img->units[u].row_bits;
    }
    for (int i = 0; i < img->n_tensors; i++) {
        const es_rom_tensor *t = &img->tensors[i];
        double w = (double)t->rows * (double)t->cols, b = 8.0 * (double)t->bytes;
        us[t->unit].weights += w;
        us[t->unit].bits += b;
        s->fmt_w[t->fmt.type] += w;
        s->fmt_b[t->fmt.type] += b;
        s->tw += w;
        s->tb += b;
        /* a partial last block per row is zero-padded: its elements count as padding */
        double padded = (double)es_q_padded(&t->fmt, t->cols);
        s->pad_w += (double)t->rows * (padded - (double)t->cols);
        s->pad_b += b * (padded - (double)t->cols) / padded;
    }
    for (int k = 0; k < img->n_banks; k++) {
        const es_rom_bank *b = &img->banks[k];
        double fill = (double)b->rows_used / (double)img->units[b->unit].rows;
        if (fill < us[b->unit].fill_min) us[b->unit].fill_min = fill;
        if (fill > us[b->unit].fill_max) us[b->unit].fill_max = fill;
    }
    s->used = es_rom_used_bits(img);
    return 0;
}

/* rom inspect --json: the totals, formats and units, and with --banks every bank. */
static void print_inspect_json(const es_rom_image *img, const rom_sums *s, int banks)
{
    cJSON *j = cJSON_CreateObject();
    char hx[24];
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)img->model_hash);
    cJSON_AddStringToObject(j, "model_hash", hx);
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)img->geom_hash);
    cJSON_AddStringToObject(j, "geometry_hash", hx);
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)img->recipe_hash);
    cJSON_AddStringToObject(j, "recipe_hash", hx);
    cJSON_AddNumberToObject(j, "tensors", img->n_tensors);
    cJSON_AddNumberToObject(j, "banks", img->n_banks);
    cJSON_AddNumberToObject(j, "weights", s->tw);
    cJSON_AddNumberToObject(j, "bits", s->tb);
    cJSON_AddNumberToObject(j, "bits_per_weight", s->tb / s->tw);
    cJSON_AddNumberToObject(j, "padding_elements", s->pad_w);
    cJSON_AddNumberToObject(j, "padding_bits", s->pad_b);
    cJSON_AddNumberToObject(j, "rom_bits_used", s->used);
    cJSON_AddNumberToObject(j, "rom_bits_capacity", s->cap);
    cJSON *fm = cJSON_AddObjectToObject(j, "formats");
    for (int f = 0; f < ES_Q_COUNT; f++)
        if (s->fmt_w[f] > 0) {
            cJSON *o = cJSON_AddObjectToObject(fm, es_qtype_name((es_qtype)f));
            cJSON_AddNumberToObject(o, "weights", s->fmt_w[f]);
            cJSON_AddNumberToObject(o, "bits", s->fmt_b[f]);
        }
    cJSON *ua = cJSON_AddArrayToObject(j, "units");
    for (int u = 0; u < img->n_units; u++) {
        const unit_sum *us = &s->us[u];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "unit", img->units[u].label);
        cJSON_AddNumberToObject(o, "weights", us->weights);
        cJSON_AddNumberToObject(o, "bits", us->bits);
        cJSON_AddNumberToObject(o, "bits_per_weight", us->weights > 0 ? us->bits / us->weights : 0);
        cJSON_AddNumberToObject(o, "rows_used", (double)img->units[u].stream_rows);
        cJSON_AddNumberToObject(o, "rows_capacity", (double)(img->units[u].banks * img->units[u].rows));
        cJSON_AddNumberToObject(o, "bank_fill_min", us->fill_min);
        cJSON_AddNumberToObject(o, "bank_fill_max", us->fill_max);
        cJSON_AddItemToArray(ua, o);
    }
    if (banks) {
        cJSON *ba = cJSON_AddArrayToObject(j, "bank_list");
        for (int k = 0; k < img->n_banks; k++) {
            char lb[64];
            es_rom_bank_label(img, k, lb, sizeof lb);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "bank", lb);
            cJSON_AddNumberToObject(o, "rows_used", (double)img->banks[k].rows_used);
            cJSON_AddNumberToObject(o, "compressed_bytes", (double)img->banks[k].comp_bytes); /* payload bytes */
            cJSON_AddStringToObject(o, "encoding", img->banks[k].encoding == ES_ROM_STORED ? "stored" : "zlib");
            cJSON_AddItemToArray(ba, o);
        }
    }
    char *text = cJSON_Print(j);
    puts(text);
    cJSON_free(text);
    cJSON_Delete(j);
}

/* rom inspect: the totals, formats and units; with --tensors every tensor, with --banks every bank. */
static void print_inspect_text(const char *path, const es_rom_image *img, const rom_sums *s, int tensors, int banks)
{
    char size[32];
    printf("%s: %d tensors in %d units, %d banks, %s\n", path, img->n_tensors, img->n_units, img->n_banks,
           es_fmt_bytes(size, sizeof size, (double)img->file_bytes));
    printf("  model %016llx  geometry %016llx  recipe %016llx\n", (unsigned long long)img->model_hash,
           (unsigned long long)img->geom_hash, (unsigned long long)img->recipe_hash);
    printf("  weights %.0f, bits %.0f, %.4f bits/weight; ROM rows in use %.4g of %.4g bits (%.1f%%)\n",
           s->tw, s->tb, s->tb / s->tw, s->used, s->cap, 100 * s->used / s->cap);
    if (s->pad_w > 0)
        printf("  padding: %.0f elements, %.0f bits (rows zero-padded to whole blocks; included above)\n",
               s->pad_w, s->pad_b);
    printf("  %-8s %16s %16s %8s\n", "format", "weights", "bits", "bits/w");
    for (int f = 0; f < ES_Q_COUNT; f++)
        if (s->fmt_w[f] > 0)
            printf("  %-8s %16.0f %16.0f %8.4f\n", es_qtype_name((es_qtype)f), s->fmt_w[f], s->fmt_b[f],
                   s->fmt_b[f] / s->fmt_w[f]);
    printf("  %-8s %14s %16s %8s %12s %16s\n", "unit", "weights", "bits", "bits/w", "rows used", "bank fill");
    for (int u = 0; u < img->n_units; u++) {
        const unit_sum *us = &s->us[u];
        printf("  %-8s %14.0f %16.0f %8.4f %5.1f%% of %-4lld %6.1f%%-%5.1f%%\n", img->units[u].label,
               us->weights, us->bits, us->weights > 0 ? us->bits / us->weights : 0,
               100.0 * (double)img->units[u].stream_rows / (double)(img->units[u].banks * img->units[u].rows),
               (long long)img->units[u].rows, 100 * us->fill_min, 100 * us->fill_max);
    }
    if (tensors)
        for (int i = 0; i < img->n_tensors; i++) {
            const es_rom_tensor *t = &img->tensors[i];
            printf("  tensor %-52s %-6s %8lld x %-6lld %12lld bits  %s row %lld\n", t->name,
                   es_qtype_name(t->fmt.type), (long long)t->rows, (long long)t->cols,
                   (long long)(8 * t->bytes), img->units[t->unit].label, (long long)t->row_first);
        }
    if (banks)
        for (int k = 0; k < img->n_banks; k++) {
            char lb[64];
            es_rom_bank_label(img, k, lb, sizeof lb);
            printf("  %-22s rows %6lld  fill %5.1f%%  %10lld bytes %s\n", lb,
                   (long long)img->banks[k].rows_used,
                   100.0 * (double)img->banks[k].rows_used / (double)img->units[img->banks[k].unit].rows,
                   (long long)img->banks[k].comp_bytes, img->banks[k].encoding == ES_ROM_STORED ? "stored" : "zlib");
        }
}

static int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0, banks = 0, tensors = 0;
    static const es_opt opts[3] = {{"json", ES_OPT_FLAG, 0, 0, 0}, {"banks", ES_OPT_FLAG, 0, 0, 0},
                                   {"tensors", ES_OPT_FLAG, 0, 0, 0}};
    es_optarg *items = NULL;
    int n = es_opts_parse("rom inspect", argc, argv, opts, 3, 1, NULL, &items);
    if (n < 0) return 2;
    for (int k = 0; k < n; k++) {
        if (items[k].opt == 0) json = 1;
        else if (items[k].opt == 1) banks = 1;
        else if (items[k].opt == 2) tensors = 1;
        else path = items[k].val;
    }
    free(items);
    if (!path) return usage("inspect: FILE is required", NULL);
    es_rom_image img;
    es_err e;
    rom_sums s;
    if (es_rom_open(&img, path, &e)) {
        fprintf(stderr, "etchsim rom inspect: %s\n", e.msg);
        return 1;
    }
    if (sum_image(&img, &s, &e)) {
        es_rom_close(&img);
        fprintf(stderr, "etchsim rom inspect: %s\n", e.msg);
        return 1;
    }
    if (json) print_inspect_json(&img, &s, banks);
    else print_inspect_text(path, &img, &s, tensors, banks);
    free(s.us);
    es_rom_close(&img);
    return 0;
}

static int cmd_verify(int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-') return usage("verify: expected exactly one FILE", argc ? argv[0] : NULL);
    es_rom_image img;
    es_err e;
    if (es_rom_open(&img, argv[0], &e)) {
        fprintf(stderr, "etchsim rom verify: %s\n", e.msg);
        return 1;
    }
    int bad = es_rom_verify(&img, &e);
    int n = img.n_banks;
    es_rom_close(&img);
    if (bad) {
        fprintf(stderr, "etchsim rom verify: %s (%d of %d banks bad)\n", e.msg, bad < 0 ? n : bad, n);
        return 1;
    }
    printf("%s: ok, %d banks verified\n", argv[0], n);
    return 0;
}

int es_cli_rom(int argc, char **argv)
{
    if (argc < 1) return usage("expected build, inspect or verify", NULL);
    if (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
        fputs(ROM_HELP, stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(ROM_HELP, stdout);
            return 0;
        }
    if (!strcmp(argv[0], "build")) return cmd_build(argc - 1, argv + 1);
    if (!strcmp(argv[0], "inspect")) return cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(argv[0], "verify")) return cmd_verify(argc - 1, argv + 1);
    return usage("unknown subcommand", argv[0]);
}
