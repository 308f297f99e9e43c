/* cli_chip: `etchsim chip derive`: a chip configuration for a model, made
 * from a template chip. Kept from the template: the process, the clock, every
 * per-unit width and latency (vector unit, attention or scan engine, sampler,
 * links, host), the weight formats, the lanes per ROM bit and the banks per
 * lane (so the derived tiles are as fast per weight as the template's), and
 * the template's area figures. Derived from the model: the tile count and
 * each tile's ROM, lanes and banks; the head's ROMs and lanes; and, last,
 * the KV (or state) SRAM per tile: whatever area is left to reach --area.
 * Every derived number's "source" says how it was derived. */
#define _POSIX_C_SOURCE 200809L
#include "cli_chip.h"
#include "cli_opts.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "es_area.h"
#include "es_cfg.h"
#include "es_chip.h"
#include "es_fs.h"
#include "es_model.h"
#include "es_proc.h"

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

typedef struct deriv { es_cfg cfg; char src[1024]; char val[64]; } deriv;

static int put(deriv *d, const char *key, double v, es_err *e)
{
    snprintf(d->val, sizeof d->val, "%.17g", v);
    return es_cfg_set_sourced(&d->cfg, key, d->val, d->src, e);
}

/* Write the tree to path (or stdout when NULL), through a temporary name. */
static int write_cfg(const es_cfg *c, const char *path, es_err *e)
{
    char *text = cJSON_Print(c->root);
    if (!text) return es_fail(e, "out of memory");
    int rc = 0;
    if (!path) {
        puts(text);
    } else {
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        int cleanup = es_cleanup_add(tmp, 0); /* a stopped derive leaves no PATH.tmp */
        FILE *f = fopen(tmp, "w");
        if (!f) rc = es_fail(e, "%s: cannot write: %s", tmp, strerror(errno));
        else {
            int bad = fputs(text, f) < 0 || fputc('\n', f) < 0;
            bad |= fclose(f) != 0;
            if (bad) rc = es_fail(e, "%s: write failed", tmp);
            else if (rename(tmp, path)) rc = es_fail(e, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
            if (rc) remove(tmp);
        }
        es_cleanup_drop(cleanup);
    }
    cJSON_free(text);
    return rc;
}

/* Replace each mention of the temporary file tmp in e's message by what it stands for (label):
 * the user never sees a file that existed for a moment. */
static void untemp(es_err *e, const char *tmp, const char *label)
{
    char out[sizeof e->msg];
    size_t k = 0, tl = strlen(tmp), ll = strlen(label);
    for (const char *p = e->msg; *p && k + 1 < sizeof out;) {
        if (tl && !strncmp(p, tmp, tl)) {
            size_t c = ll < sizeof out - 1 - k ? ll : sizeof out - 1 - k;
            memcpy(out + k, label, c);
            k += c;
            p += tl;
        } else {
            out[k++] = *p++;
        }
    }
    out[k] = 0;
    memcpy(e->msg, out, k + 1);
}

/* Load the chip tree in d (written for a moment to tmp, beside the output, so the paths in it
 * resolve from there) with model m; area into a. Errors name `label`, not tmp. */
static int evaluate(const deriv *d, const es_model *m, const char *tmp, const char *label, es_area *a, es_chip *out,
                    es_err *e)
{
    es_cfg c = d->cfg;
    int cleanup = es_cleanup_add(tmp, 0);
    int rc = write_cfg(&c, tmp, e) ? -1 : es_chip_load(out, tmp, NULL, 0, e);
    remove(tmp);
    es_cleanup_drop(cleanup);
    es_map pm;
    if (rc == 0 && es_map_build(&pm, out, m, NULL, e)) {
        es_chip_free(out);
        rc = -1;
    }
    if (rc) {
        untemp(e, tmp, label);
        return -1;
    }
    es_area_compute(&pm, a);
    es_map_free(&pm);
    return 0;
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
    const char *model = NULL, *like = "hc1-class", *out = NULL, *name = NULL;
    double area = 0;
    static const es_opt opts[5] = {{"model", ES_OPT_STR, 0, 0, 0}, {"like", ES_OPT_STR, 0, 0, 0}, {"o", ES_OPT_STR, 0, 0, 0},
                                   {"name", ES_OPT_STR, 0, 0, 0},  {"area", ES_OPT_REAL, 1e-3, 1e6, 0}};
    es_optarg *items = NULL;
    int n = es_opts_parse("chip derive", argc - 1, argv + 1, opts, 5, 0, HELP, &items);
    if (n < 0) return n == -2 ? 0 : 2;
    for (int k = 0; k < n; k++) {
        const char *v = items[k].val;
        switch (items[k].opt) {
        case 0: model = v; break;
        case 1: like = v; break;
        case 2: out = v; break;
        case 3: name = v; break;
        case 4: area = items[k].real; break;
        }
    }
    free(items);
    if (!model) return usage("--model is required", NULL);
    es_err e = {{0}};
    es_model m, ref;
    es_chip t, dc;
    es_area ta, da;
    deriv d;
    memset(&d, 0, sizeof d);
    int rc = 1, have_m = 0, have_t = 0, have_ref = 0, have_d = 0, have_dc = 0;
    if (es_model_load(&m, model, &e)) goto out;
    have_m = 1;
    if (es_chip_load(&t, like, NULL, 0, &e)) goto out;
    have_t = 1;
    if (area <= 0) { /* the template's own area, holding the model it was made for */
        if (es_model_load(&ref, "llama-3.1-8b", &e)) goto out;
        have_ref = 1;
        es_map tm;
        if (es_map_build(&tm, &t, &ref, NULL, &e)) goto out;
        es_area_compute(&tm, &ta);
        es_map_free(&tm);
        area = ta.total_mm2;
    }
    char *text = es_cfg_dump(&t.cfg);
    if (!text || es_cfg_parse(&d.cfg, t.path, text, &e)) { free(text); goto out; }
    free(text);
    have_d = 1;
    snprintf(d.cfg.path, sizeof d.cfg.path, "%s", t.path);
    char tmpl_rtl[512] = "";
    if (t.lane_rtl[0] && es_cfg_str(&t.cfg, "area.lane_rtl", tmpl_rtl, sizeof tmpl_rtl, &e) == 0 &&
        strchr(tmpl_rtl, '/')) { /* the template's synthesis file by path: a path from the derived chip's folder */
        char dir[1024], rel[1100];
        snprintf(dir, sizeof dir, "%s", out ? out : "");
        char *slash = strrchr(dir, '/');
        if (slash) slash[slash == dir] = 0; /* "/x.json": the root */
        else snprintf(dir, sizeof dir, ".");
        if (!out) snprintf(rel, sizeof rel, "%s", t.lane_rtl); /* standard output: the absolute path */
        else if (es_relpath(t.lane_rtl, dir, rel, sizeof rel)) rel[0] = 0;
        snprintf(d.src, sizeof d.src, "%s's lane synthesis (its area.lane_rtl), from this file's folder: the lane "
                 "cell's transistors and register bits from rtl-ref's synthesized RTL", t.name);
        if (!rel[0] || es_cfg_set_sourced(&d.cfg, "area.lane_rtl", rel, d.src, &e)) {
            if (!e.msg[0]) es_fail(&e, "%s: key 'area.lane_rtl': path too long", t.path);
            goto out;
        }
    }
    char mname[80];
    snprintf(mname, sizeof mname, "%s-class", m.name);
    snprintf(d.src, sizeof d.src, "etchsim chip derive --model %s --like %s", m.name, t.name);
    if (es_cfg_set_sourced(&d.cfg, "name", name ? name : mname, d.src, &e)) goto out;
    {
        char desc[512];
        snprintf(desc, sizeof desc, "\"A chip for %s derived from %s by etchsim chip derive: %s's process, clock, "
                 "unit widths, weight formats, lanes per ROM bit and banks per lane; ROM and lanes sized for the model; "
                 "the rest of the area in KV or state SRAM. Each derived number's source says how.\"", m.name, t.name,
                 t.name);
        if (es_cfg_has(&d.cfg, "description") && es_cfg_set(&d.cfg, "description", desc, &e)) goto out;
    }
    /* the derived tree is checked by loading it from a file for a moment, beside the output */
    char tmp[1100], label[1400];
    snprintf(tmp, sizeof tmp, "%s.derive-%d.json", out ? out : "/tmp/etchsim", (int)getpid());
    snprintf(label, sizeof label, "the chip derived for %s (%s) from %s (%s)", m.name, m.path, t.name, t.path);
    /* the tile: ROM bits of one tile's layers, in the template's formats (they size the lanes) */
    int64_t lpt = t.layers_per_tile, tiles = (m.layers + lpt - 1) / lpt;
    double bits = 0, lm_bits = 0;
    for (int i = 0; i < m.n_tensors; i++) {
        const es_tensor *x = &m.tensors[i];
        double b = (double)es_tensor_bits(&t, x);
        if (x->layer >= 0 && x->layer < lpt) bits += b;
        else if (x->role == ES_ROLE_LM_HEAD || x->role == ES_ROLE_OUT_NORM || x->lm_head) lm_bits += b;
    }
    double t_rom = (double)es_rom_bits(&t.rom), lanes_per_bit = (double)t.lanes / t_rom;
    double banks_per_lane = (double)t.rom.banks / (double)t.lanes;
    int64_t lanes = (int64_t)llround(bits * lanes_per_bit);
    int64_t banks = (int64_t)llround((double)lanes * banks_per_lane);
    if (lanes < 1) lanes = 1;
    if (banks < 1) banks = 1;
    int64_t rows = 0;
    snprintf(d.src, sizeof d.src, "derived for %s (chip derive --like %s): the tile's %.0f ROM bits x %s's %.6g lane "
             "cells per ROM bit", m.name, t.name, bits, t.name, lanes_per_bit);
    if (put(&d, "tile.lanes.count", (double)lanes, &e)) goto out;
    snprintf(d.src, sizeof d.src, "derived for %s: %lld lane cells x %s's %.6g banks per lane cell", m.name,
             (long long)lanes, t.name, banks_per_lane);
    if (put(&d, "tile.rom.banks", (double)banks, &e)) goto out;
    /* head: the LM head's lanes per ROM bit and banks per lane as the template's */
    double t_lm = (double)es_rom_bits(&t.head_rom);
    int64_t hl = (int64_t)llround(lm_bits * (double)t.head_lanes / t_lm);
    int64_t hb = (int64_t)llround((double)hl * (double)t.head_rom.banks / (double)t.head_lanes);
    if (hl < 1) hl = 1;
    if (hb < 1) hb = 1;
    snprintf(d.src, sizeof d.src, "derived for %s: the LM head's %.0f ROM bits x %s's head lane cells per ROM bit",
             m.name, lm_bits, t.name);
    if (put(&d, "head.lanes.count", (double)hl, &e)) goto out;
    snprintf(d.src, sizeof d.src, "derived for %s: %lld head lane cells x %s's LM-ROM banks per head lane cell", m.name,
             (long long)hl, t.name);
    if (put(&d, "head.lm_rom.banks", (double)hb, &e)) goto out;
    snprintf(d.src, sizeof d.src, "placeholder");
    if (put(&d, "head.lm_rom.rows", 1, &e) || put(&d, "tile.rom.rows", 1, &e)) goto out;
    if (!m.tied && put(&d, "head.embed_rom.rows", 1, &e)) goto out;
    /* rows: the least that hold each ROM's tensors as a ROM image lays them out (es_chip_rom_need, which
     * the fit check uses too); the banks and partitions are set above, so one evaluation gives them. KV
     * SRAM left out to measure the rest: 1 byte per tile */
    if (put(&d, "kv.bytes_per_tile", 1, &e)) goto out;
    if (evaluate(&d, &m, tmp, label, &da, &dc, &e)) goto out;
    have_dc = 1;
    static const char *row_keys[3] = {"tile.rom.rows", "head.embed_rom.rows", "head.lm_rom.rows"};
    for (int k = ES_ROM_TILE; k <= ES_ROM_LM; k++) {
        if (k == ES_ROM_EMBED && m.tied) continue; /* the tied table sits in the LM-head ROM */
        es_rom_need nd;
        if (es_chip_rom_need(&dc, &m, (es_rom_kind)k, &nd, &e)) goto out;
        const es_rom *r = k == ES_ROM_TILE ? &dc.rom : k == ES_ROM_EMBED ? &dc.embed_rom : &dc.head_rom;
        int64_t need = nd.rows > 0 ? nd.rows : 1;
        if (k == ES_ROM_TILE) rows = need;
        snprintf(d.src, sizeof d.src, "derived for %s: the least rows that hold %s's %lld ROM rows of %lld bits "
                 "(%lld bits, each tensor from a fresh row) over its %lld banks", m.name, nd.what[0] ? nd.what : "it",
                 (long long)nd.stream_rows, (long long)r->row_bits, (long long)nd.bits, (long long)nd.banks);
        if (put(&d, row_keys[k], (double)need, &e)) goto out;
    }
    es_chip_free(&dc);
    have_dc = 0;
    if (evaluate(&d, &m, tmp, label, &da, &dc, &e)) goto out;
    have_dc = 1;
    double rest = da.total_mm2 - da.mm2[ES_AREA_SRAM];
    double sram_mm2 = area - rest;
    double bit_mm2 = dc.sram_cell_um2 / dc.sram_eff * 1e-6;
    int64_t bytes = sram_mm2 > 0 ? (int64_t)(sram_mm2 / bit_mm2 / 8.0 / (double)tiles) / 1024 * 1024 : 0;
    int64_t need = m.ssm_state > 0 ? (es_chip_state_bits(&dc, &m) * lpt + 7) / 8
                                   : (es_chip_kv_bits_per_pos(&dc, &m) * dc.kv_slot_context * lpt + 7) / 8;
    if (bytes < need) {
        es_fail(&e, "--area %.1f mm2: %s on %s-derived tiles needs %.1f mm2 before any %s SRAM, and one sequence "
                    "needs %lld bytes per tile; the derived chip exceeds --area", area, m.name, t.name, rest,
                m.ssm_state > 0 ? "state" : "KV", (long long)need);
        goto out;
    }
    snprintf(d.src, sizeof d.src, "derived for %s: the area left to reach %.1f mm2 (%.1f mm2 of ROM, lanes, logic and "
             "I/O) is %.2f mm2 of %s SRAM, over %lld tiles, at %s's bit cell and array efficiency, in whole KiB",
             m.name, area, rest, sram_mm2, m.ssm_state > 0 ? "state" : "KV", (long long)tiles, t.name);
    if (put(&d, "kv.bytes_per_tile", (double)bytes, &e)) goto out;
    es_chip_free(&dc);
    have_dc = 0;
    if (evaluate(&d, &m, tmp, label, &da, &dc, &e)) goto out;
    have_dc = 1;
    if (es_chip_check_fit(&dc, &m, &e)) {
        untemp(&e, tmp, label);
        goto out;
    }
    if (write_cfg(&d.cfg, out, &e)) goto out;
    if (out)
        printf("wrote %s: %s for %s, %lld tiles of %lld lane cells and %lld x %lld ROM, %lld KiB %s SRAM per tile, "
               "%.1f mm2 (target %.1f), %.3g transistors\n", out, name ? name : mname, m.name, (long long)tiles,
               (long long)lanes, (long long)banks, (long long)rows, (long long)(bytes / 1024),
               m.ssm_state > 0 ? "state" : "KV", da.total_mm2, area, da.total_tr);
    rc = 0;
out:
    if (rc) fprintf(stderr, "etchsim chip: %s\n", e.msg);
    if (have_dc) es_chip_free(&dc);
    if (have_d) es_cfg_free(&d.cfg);
    if (have_t) es_chip_free(&t);
    if (have_ref) es_model_free(&ref);
    if (have_m) es_model_free(&m);
    return rc;
}
