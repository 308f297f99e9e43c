/* cli_chip: `etchsim chip derive` (the derivation is es_chip_derive, sim/core/es_derive.c: this
 * parses the options, writes the derived chip and says what it is) and `etchsim chip keys`. */
#define _XOPEN_SOURCE 700 /* realpath */
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
#include "es_recipe.h"
#include "es_system.h"

static const char *HELP =
    "usage: etchsim chip derive --model M --like CHIP [--area MM2] [-o FILE]\n"
    "       etchsim chip derive --model M --like CHIP --split [--area MM2] -o DIR\n"
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
    "chip derive --split: the fewest chips of that area that hold M, each a\n"
    "contiguous range of its layers (the first also the embedding table, the last\n"
    "the final norm and LM head), each derived as above for its layers; written to\n"
    "DIR as NAME-part1.json, NAME-part2.json, ... (chips alike share one file) with\n"
    "the system file joining them by a chain of card links (DIR/NAME.json, or\n"
    "--system-file). The link is the template's host link unless given.\n"
    "\n"
    "options:\n"
    "  --model M        the model (name, config.json or GGUF)\n"
    "  --like CHIP      the template chip (default hc1-class)\n"
    "  --area MM2       the die area to reach (mm2)\n"
    "  --expert-parallel N  with --split: each middle stage is N chips splitting its\n"
    "                   layers' experts evenly over all_to_all links (a mixture of experts)\n"
    "  --recipe R       store the weights in recipe R's formats (models/recipes; one\n"
    "                   format per role) instead of the template's weights.*; the\n"
    "                   area stays the template's own unless --area; the template\n"
    "                   is named CHIP-R\n"
    "  --name NAME      the derived chip's name (default: MODEL-class)\n"
    "  -o FILE          write here (default: standard output); with --split, a folder\n"
    "  --split          split M over the fewest chips of the area (see above)\n"
    "  --name NAME      with --split: the system's name, its chips NAME-partK\n"
    "                   (default: MODEL-CHIP)\n"
    "  --system-file F  with --split: where the system file goes (default DIR/NAME.json)\n"
    "  --link-bw B      with --split: the card link's bits/s per direction\n"
    "                   (default: the template's host.bandwidth_bytes_per_s x 8)\n"
    "  --link-latency-ns NS  the card link's latency (default: the template's host.latency_ns)\n"
    "  --link-pj-per-bit PJ  the card link's energy per bit (default: the template's\n"
    "                   process energy.host_pj_per_bit)\n"
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
    int split;                      /* --split */
    const char *system_file;        /* --system-file */
    const char *recipe;             /* --recipe */
    es_split_opts so;               /* --split's: --area, --name, -o, --link-* */
} derive_args;

/* chip derive's options into a: -1 to go on, else the exit code (0 after --help, 2 on a usage error). */
static int parse_derive(int argc, char **argv, derive_args *a)
{
    memset(a, 0, sizeof *a);
    a->like = "hc1-class";
    static const es_opt opts[12] = {{"model", ES_OPT_STR, 0, 0, 0},        {"like", ES_OPT_STR, 0, 0, 0},
                                    {"o", ES_OPT_STR, 0, 0, 0},            {"name", ES_OPT_STR, 0, 0, 0},
                                    {"area", ES_OPT_REAL, 1e-3, 1e6, 0},   {"split", ES_OPT_FLAG, 0, 0, 0},
                                    {"system-file", ES_OPT_STR, 0, 0, 0},  {"link-bw", ES_OPT_REAL, 1e3, 1e15, 0},
                                    {"link-latency-ns", ES_OPT_REAL, 0, 1e9, 0}, {"link-pj-per-bit", ES_OPT_REAL, 0, 1e6, 0},
                                    {"recipe", ES_OPT_STR, 0, 0, 0},       {"expert-parallel", ES_OPT_COUNT, 2, 64, 0}};
    es_optarg *items = NULL;
    a->so.link_bits_per_s = a->so.link_latency_ns = a->so.link_pj_per_bit = -1;
    const char *split_only = NULL;
    int n = es_opts_parse("chip derive", argc, argv, opts, 12, 0, HELP, &items);
    if (n < 0) return n == -2 ? 0 : 2;
    for (int k = 0; k < n; k++) {
        const char *v = items[k].val;
        switch (items[k].opt) {
        case 0: a->model = v; break;
        case 1: a->like = v; break;
        case 2: a->out = v; break;
        case 3: a->o.name = v; break;
        case 4: a->o.area_mm2 = items[k].real; break;
        case 5: a->split = 1; break;
        case 6: a->system_file = v, split_only = "--system-file"; break;
        case 7: a->so.link_bits_per_s = items[k].real, split_only = "--link-bw"; break;
        case 8: a->so.link_latency_ns = items[k].real, split_only = "--link-latency-ns"; break;
        case 9: a->so.link_pj_per_bit = items[k].real, split_only = "--link-pj-per-bit"; break;
        case 10: a->recipe = v; break;
        case 11: a->so.ep = (int)items[k].num, split_only = "--expert-parallel"; break;
        }
    }
    free(items);
    if (!a->model) return usage("--model is required", NULL);
    if (split_only && !a->split) return usage("this option needs --split:", split_only);
    if (a->split && !a->out) return usage("--split needs -o DIR, the folder the chips and the system file go to", NULL);
    a->o.out = a->out;
    a->so.area_mm2 = a->o.area_mm2;
    a->so.name = a->o.name;
    a->so.dir = a->out;
    return -1;
}

/* A {"value": v, "source": src} member. */
static void add_sourced(cJSON *obj, const char *key, cJSON *v, const char *src)
{
    cJSON *w = cJSON_AddObjectToObject(obj, key);
    cJSON_AddItemToObject(w, "value", v);
    cJSON_AddStringToObject(w, "source", src);
}

/* The system file's tree: the split's chips, each by its file's path from the system file's folder (refs). */
static cJSON *system_tree(const es_split *s, const char *tmpl, const char *model, char (*refs)[1100])
{
    cJSON *j = cJSON_CreateObject();
    char text[1024];
    cJSON_AddStringToObject(j, "name", s->name);
    if (s->n_chips == 1)
        snprintf(text, sizeof text, "%s fits one chip of %.1f mm2 derived from %s (etchsim chip derive --split).", model,
                 s->area_mm2, tmpl);
    else
        snprintf(text, sizeof text, "The fewest chips of %.1f mm2 derived from %s that hold %s (etchsim chip derive "
                 "--split): a chip holds at most %d layers with the embedding table, %d in the middle, %d with the final "
                 "norm and LM head; the layers spread as evenly as that allows, one layer pipeline over a chain of card "
                 "links.", s->area_mm2, tmpl, model, s->cap_first, s->cap_mid, s->cap_last);
    if (s->ep > 1) /* a middle chip's cap is with its share of the experts */
        snprintf(text, sizeof text, "The fewest chips of %.1f mm2 derived from %s that hold %s (etchsim chip derive "
                 "--split --expert-parallel %d): a chip holds at most %d layers with the embedding table, %d with the "
                 "final norm and LM head, and each middle stage is %d chips holding at most %d layers, each chip 1/%d "
                 "of their experts (expert parallelism); the layers spread as evenly as that allows, one layer pipeline "
                 "of stages over card links, the chips of a stage joined all-to-all.", s->area_mm2, tmpl, model, s->ep,
                 s->cap_first, s->cap_last, s->ep, s->cap_mid, s->ep);
    cJSON_AddStringToObject(j, "description", text);
    cJSON_AddStringToObject(j, "model", model);
    cJSON *l = cJSON_AddObjectToObject(j, "link");
    if (s->ep > 1)
        add_sourced(l, "topology", cJSON_CreateString("all_to_all"), "chip derive --split --expert-parallel: the chips "
                    "of an expert-parallel stage each send tokens to the others (dispatch and combine); the stages "
                    "form a layer pipeline on the same kind of link");
    else
        add_sourced(l, "topology", cJSON_CreateString("chain"), "chip derive --split: a layer pipeline, each chip "
                    "sending to the next and the last the sampled token back to the first");
    add_sourced(l, "bandwidth_bits_per_s", cJSON_CreateNumber(s->link_bits_per_s), s->link_src[0]);
    add_sourced(l, "latency_ns", cJSON_CreateNumber(s->link_latency_ns), s->link_src[1]);
    add_sourced(l, "energy_pj_per_bit", cJSON_CreateNumber(s->link_pj_per_bit), s->link_src[2]);
    cJSON *chips = cJSON_AddArrayToObject(j, "chips");
    for (int i = 0; i < s->n_chips; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "chip", refs[s->chips[i].part]);
        int r[2] = {s->chips[i].first, s->chips[i].last};
        cJSON_AddItemToObject(c, "layers", cJSON_CreateIntArray(r, 2));
        int x[2] = {s->chips[i].expert_first, s->chips[i].expert_last};
        if (x[0] >= 0) cJSON_AddItemToObject(c, "experts", cJSON_CreateIntArray(x, 2));
        cJSON_AddItemToArray(chips, c);
    }
    return j;
}

/* chip derive --split: derive the chips, write them and the system file, load the system back and check it holds
 * the model, and say what was written. */
static int write_split(const derive_args *a, const es_model *m, const es_chip *t, es_err *e)
{
    es_split s;
    if (es_chip_split(m, t, &a->so, &s, e)) return -1;
    char sys_path[1100], sys_dir[1100], (*refs)[1100] = calloc((size_t)s.n_parts, sizeof *refs);
    cJSON *tree = NULL;
    es_cfg sys = {0};
    int rc = -1;
    if (!refs) goto out;
    snprintf(sys_path, sizeof sys_path, "%s/%s.json", a->out, s.name);
    if (a->system_file) snprintf(sys_path, sizeof sys_path, "%s", a->system_file);
    snprintf(sys_dir, sizeof sys_dir, "%s", sys_path);
    char *slash = strrchr(sys_dir, '/');
    if (slash) slash[slash == sys_dir] = 0;
    else snprintf(sys_dir, sizeof sys_dir, ".");
    for (int p = 0; p < s.n_parts; p++) {
        char path[1200], real[4096];
        snprintf(path, sizeof path, "%s/%s.json", a->out, s.parts[p].name);
        if (write_cfg(&s.parts[p].cfg, path, e)) goto out;
        if (!realpath(path, real) || es_relpath(real, sys_dir, refs[p], sizeof refs[p])) {
            es_fail(e, "%s: cannot name it from the system file's folder %s", path, sys_dir);
            goto out;
        }
    }
    tree = system_tree(&s, t->name, a->model, refs);
    sys.root = tree;
    if (write_cfg(&sys, sys_path, e)) goto out;
    es_system check; /* what was written loads and holds the model */
    if (es_system_load(&check, sys_path, NULL, 0, e)) goto out;
    rc = es_system_check(&check, m, e);
    es_system_free(&check);
    if (rc) goto out;
    for (int p = 0; p < s.n_parts; p++) {
        const es_derived *d = &s.parts[p];
        printf("wrote %s/%s.json: %lld layers of %s (%lld lane cells and %lld x %lld ROM, %lld KiB KV SRAM per tile), "
               "%.1f mm2 (target %.1f), for", a->out, d->name, (long long)d->tiles, m->name, (long long)d->lanes,
               (long long)d->banks, (long long)d->rows, (long long)(d->kv_bytes / 1024), d->area.total_mm2, d->area_mm2);
        for (int i = 0; i < s.n_chips; i++)
            if (s.chips[i].part == p) printf(" chips[%d] (layers %d-%d)", i, s.chips[i].first, s.chips[i].last);
        printf("\n");
    }
    printf("wrote %s: %s, %d chip%s of %.1f mm2 holding %s's %lld layers, card link %.6g bit/s, %.6g ns, %.6g pJ/bit\n",
           sys_path, s.name, s.n_chips, s.n_chips == 1 ? "" : "s", s.area_mm2, m->name, (long long)m->layers, s.link_bits_per_s, s.link_latency_ns,
           s.link_pj_per_bit);
out:
    if (tree) cJSON_Delete(tree);
    free(refs);
    es_split_free(&s);
    return rc;
}

/* --recipe: the template t with its weights.* in recipe's formats and named CHIP-RECIPE, at t's own area unless
 * --area gave one (the formats change what llama-3.1-8b needs, not the die). t is replaced. */
static int recipe_template(derive_args *a, es_chip *t, es_err *e)
{
    double mm2 = a->o.area_mm2;
    if (mm2 <= 0 && es_derive_default_area(t, &mm2, e)) return -1;
    a->o.area_mm2 = a->so.area_mm2 = mm2;
    es_recipe r;
    if (es_recipe_load(&r, a->recipe, e)) return -1;
    cJSON *w = NULL;
    es_cfg cfg = {{0}, NULL};
    char name[160], src[700], dir[512], *slash;
    int rc = es_recipe_chip_weights(&r, &w, e);
    if (rc == 0) {
        snprintf(cfg.path, sizeof cfg.path, "%s", t->path);
        cfg.root = cJSON_Duplicate(t->cfg.root, 1);
        rc = cfg.root ? 0 : es_fail(e, "out of memory");
    }
    if (rc == 0) {
        cJSON_ReplaceItemInObjectCaseSensitive(cfg.root, "weights", w);
        w = NULL;
        snprintf(name, sizeof name, "\"%s-%s\"", t->name, r.name);
        snprintf(src, sizeof src, "%s with the weight formats of recipe %s (chip derive --recipe %s)", t->name, r.name,
                 r.name);
        rc = es_cfg_set_sourced(&cfg, "name", name, src, e);
    }
    snprintf(dir, sizeof dir, "%s", t->path);
    slash = strrchr(dir, '/');
    if (slash) slash[slash == dir] = 0;
    else snprintf(dir, sizeof dir, ".");
    es_chip nt;
    if (rc == 0) rc = es_chip_load_cfg(&nt, &cfg, dir, t->path, NULL, 0, e);
    if (rc == 0) {
        es_chip_free(t);
        *t = nt;
    }
    cJSON_Delete(w);
    if (cfg.root) cJSON_Delete(cfg.root);
    es_recipe_free(&r);
    return rc;
}

/* Derive, write and say what was written. */
static int cmd_derive(int argc, char **argv)
{
    derive_args a;
    int code = parse_derive(argc, argv, &a);
    if (code >= 0) return code;
    if (a.split && !es_is_dir(a.out))
        return usage("--split writes its chips and the system file into a folder: -o expects an existing folder, got",
                     a.out);
    es_err e = {{0}};
    es_model m;
    es_chip t;
    es_derived d;
    int rc = 1, have_m = 0, have_t = 0, have_d = 0;
    if (es_model_load(&m, a.model, &e)) goto out;
    have_m = 1;
    if (es_chip_load(&t, a.like, NULL, 0, &e)) goto out;
    have_t = 1;
    if (a.recipe && recipe_template(&a, &t, &e)) goto out;
    if (a.split) {
        rc = write_split(&a, &m, &t, &e) ? 1 : 0;
        goto out;
    }
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
