/* cli_chip: `etchsim chip derive` (the derivation is es_chip_derive, sim/core/es_derive.c: this
 * parses the options, writes the derived chip and says what it is) and `etchsim chip keys`. */
#define _POSIX_C_SOURCE 200809L
#include "cli_chip.h"
#include "cli_opts.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "es_cfg.h"
#include "es_chip.h"
#include "es_derive.h"
#include "es_fs.h"
#include "es_model.h"

static const char *HELP =
    "usage: etchsim chip derive --model M --like CHIP [--area MM2] [-o FILE]\n"
    "       etchsim chip keys\n"
    "\n"
    "chip keys: every key of a chip file and of a process table, with its type and the\n"
    "range the loader holds it to (a value outside it is an error naming file and key).\n"
    "\n"
    "chip derive: "
    "Write a chip configuration for model M from the template CHIP: the same\n"
    "process, clock, unit widths, weight formats, lanes per ROM bit and banks per\n"
    "lane; tiles, ROM geometry and lanes sized for M; the area left to reach\n"
    "MM2 (default: the template's own area holding llama-3.1-8b) spent on KV SRAM\n"
    "(state SRAM for a state-space model). Every derived number carries its\n"
    "derivation as its source.\n"
    "\n"
    "options:\n"
    "  --model M        the model (name, config.json or GGUF)\n"
    "  --like CHIP      the template chip (default hc1-class)\n"
    "  --area MM2       the die area to reach (mm2)\n"
    "  --name NAME      the derived chip's name (default: MODEL-class)\n"
    "  -o FILE          write here (default: standard output)\n"
    "  -h, --help       this text\n";

static int usage(const char *msg, const char *arg) { return es_opt_usage("chip", msg, arg); }

/* Write the tree to path (or stdout when NULL), through a temporary name. */
static int write_cfg(const es_cfg *c, const char *path, es_err *e)
{
    char *text = cJSON_Print(c->root);
    if (!text) return es_fail(e, "out of memory");
    int rc = 0;
    if (!path) {
        puts(text);
    } else {
        es_atomic out; /* a stopped derive leaves no PATH.tmp */
        rc = es_atomic_open(&out, path, "the chip configuration", e);
        if (!rc) {
            fputs(text, out.f);
            fputc('\n', out.f);
            rc = es_atomic_commit(&out, e);
        }
    }
    cJSON_free(text);
    return rc;
}

static void print_keys(void)
{
    for (int proc = 0; proc < 2; proc++) {
        int n;
        const es_key_spec *k = es_chip_key_specs(proc, &n);
        printf("%s\n", proc ? "\nprocess table keys (models/process/NODE.json, --set process.KEY=V):"
                              : "chip keys (models/chips/NAME.json, --set KEY=V):");
        printf("  %-44s %-8s %s\n", "key", "type", "range");
        for (int i = 0; i < n; i++, k++) {
            char range[200];
            const char *type = k->kind == 'd' ? "number" : k->kind == 'b' ? "boolean" : k->kind == 'x' && !k->values ? "number"
                             : k->kind == 'x' ? "text" : "integer";
            if (k->kind == 'b') snprintf(range, sizeof range, "true | false");
            else if (k->kind == 'x' && k->values) snprintf(range, sizeof range, "%s", k->values);
            else if (k->kind == 'l' || k->kind == 'i') snprintf(range, sizeof range, "%.0f .. %.0f", k->lo, k->hi);
            else snprintf(range, sizeof range, "%.6g .. %.6g", k->lo, k->hi);
            printf("  %-44s %-8s %s", k->key, type, range);
            if (k->optional && k->kind != 'x') printf(" (optional, default %.6g)", k->dflt);
            else if (k->optional) printf(" (optional)");
            if (k->note) printf("; %s", k->note);
            printf("\n");
        }
    }
}

typedef struct derive_args {
    const char *model, *like, *out; /* --model, --like, -o (NULL: standard output) */
    es_derive_opts o;               /* --area, --name and the output */
} derive_args;

/* chip derive's options into a: -1 to go on, else the exit code (0 after --help, 2 on a usage error). */
static int parse_derive(int argc, char **argv, derive_args *a)
{
    memset(a, 0, sizeof *a);
    a->like = "hc1-class";
    static const es_opt opts[5] = {{"model", ES_OPT_STR, 0, 0, 0}, {"like", ES_OPT_STR, 0, 0, 0}, {"o", ES_OPT_STR, 0, 0, 0},
                                   {"name", ES_OPT_STR, 0, 0, 0},  {"area", ES_OPT_REAL, 1e-3, 1e6, 0}};
    es_optarg *items = NULL;
    int n = es_opts_parse("chip derive", argc, argv, opts, 5, 0, HELP, &items);
    if (n < 0) return n == -2 ? 0 : 2;
    for (int k = 0; k < n; k++) {
        const char *v = items[k].val;
        switch (items[k].opt) {
        case 0: a->model = v; break;
        case 1: a->like = v; break;
        case 2: a->out = v; break;
        case 3: a->o.name = v; break;
        case 4: a->o.area_mm2 = items[k].real; break;
        }
    }
    free(items);
    if (!a->model) return usage("--model is required", NULL);
    a->o.out = a->out;
    return -1;
}

/* Derive, write and say what was written. */
static int cmd_derive(int argc, char **argv)
{
    derive_args a;
    int code = parse_derive(argc, argv, &a);
    if (code >= 0) return code;
    es_err e = {{0}};
    es_model m;
    es_chip t;
    es_derived d;
    int rc = 1, have_m = 0, have_t = 0, have_d = 0;
    if (es_model_load(&m, a.model, &e)) goto out;
    have_m = 1;
    if (es_chip_load(&t, a.like, NULL, 0, &e)) goto out;
    have_t = 1;
    if (es_chip_derive(&m, &t, &a.o, &d, &e)) goto out;
    have_d = 1;
    if (write_cfg(&d.cfg, a.out, &e)) goto out;
    if (a.out)
        printf("wrote %s: %s for %s, %lld tiles of %lld lane cells and %lld x %lld ROM, %lld KiB %s SRAM per tile, "
               "%.1f mm2 (target %.1f), %.3g transistors\n", a.out, d.name, m.name, (long long)d.tiles,
               (long long)d.lanes, (long long)d.banks, (long long)d.rows, (long long)(d.kv_bytes / 1024),
               m.ssm_state > 0 ? "state" : "KV", d.area.total_mm2, d.area_mm2, d.area.total_tr);
    rc = 0;
out:
    if (rc) fprintf(stderr, "etchsim chip: %s\n", e.msg);
    if (have_d) es_derived_free(&d);
    if (have_t) es_chip_free(&t);
    if (have_m) es_model_free(&m);
    return rc;
}

int es_cli_chip(int argc, char **argv)
{
    if (argc < 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
        fputs(HELP, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    if (!strcmp(argv[0], "keys")) {
        if (argc > 1) return usage("keys takes no arguments, got", argv[1]);
        print_keys();
        return 0;
    }
    if (strcmp(argv[0], "derive")) return usage("expected 'derive' or 'keys', got", argv[0]);
    return cmd_derive(argc - 1, argv + 1);
}
