/* es_chip: reads and validates a chip configuration and its process table
 * (see es_chip.h). Each key is range-checked where it is read, so a bad
 * value is reported with its file and key before any simulation starts. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "es_chip.h"
#include "es_fs.h"
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* A weight format: {"format": NAME (a registry format), "group": G (int3, int6)},
 * or the older {"bits", "group", "scale_bits"}. */
static int read_fmt(const es_cfg *c, const char *sec, es_wfmt *f, es_err *e)
{
    char k[128];
    memset(f, 0, sizeof *f);
    snprintf(k, sizeof k, "%s.format", sec);
    if (es_cfg_has(c, k)) {
        char name[32];
        if (es_cfg_str(c, k, name, sizeof name, e)) return -1;
        int t = es_qtype_from_name(name);
        if (t < 0)
            return es_fail(e, "%s: key '%s': unknown weight format '%s' (expected f32, f16, bf16, q8_0, q4_0, q3_k, "
                              "q4_k, q5_k, q6_k, mxfp4, nvfp4, fp8, int3 or int6)", c->path, k, name);
        f->registry = 1;
        f->q.type = (es_qtype)t;
        f->q.tensor_scale = 1.0f;
        snprintf(k, sizeof k, "%s.group", sec);
        if (t == ES_Q_INT3 || t == ES_Q_INT6) {
            if (es_cfg_int(c, k, 32, 128, &f->q.group, e)) return -1;
        } else if (es_cfg_has(c, k)) {
            return es_fail(e, "%s: key '%s': only int3 and int6 take a group size", c->path, k);
        }
        es_err fe;
        if (es_qfmt_check(&f->q, &fe)) return es_fail(e, "%s: key '%s': %s", c->path, k, fe.msg);
        /* the older fields, for what still reads them */
        f->bits = es_qtype_elem_bits(f->q.type);
        f->group = (int)es_q_sub_elems(&f->q);
        f->scale_bits = f->group ? 16 : 0;
        return 0;
    }
    snprintf(k, sizeof k, "%s.bits", sec);
    if (es_cfg_int(c, k, 1, 32, &f->bits, e)) return -1;
    snprintf(k, sizeof k, "%s.group", sec);
    if (es_cfg_int(c, k, 0, 1 << 20, &f->group, e)) return -1;
    snprintf(k, sizeof k, "%s.scale_bits", sec);
    if (es_cfg_int(c, k, 0, 64, &f->scale_bits, e)) return -1;
    return 0;
}

/* name as a path: absolute, or from the chip's folder dir ("/" the root). */
static int beside_chip(const es_chip *c, const char *dir, const char *key, const char *name, char *out, size_t n,
                       es_err *e)
{
    size_t dl = strlen(dir);
    const char *sep = dl && dir[dl - 1] == '/' ? "" : "/";
    if (name[0] == '/' ? snprintf(out, n, "%s", name) >= (int)n : snprintf(out, n, "%s%s%s", dir, sep, name) >= (int)n)
        return es_fail(e, "%s: key '%s': path too long", c->path, key);
    return 0;
}

/* area.lane_rtl: the lane cell's transistors and register bits from a scripts/synth-rtl file: the
 * msa_tree synthesized for this chip's cell bits and accumulator width, over its lane cells. The
 * file names the RTL it came from and their hash: a file older than the RTL is refused. */
static int read_lane_rtl(es_chip *c, const char *dir, es_err *e)
{
    char name[512];
    if (es_cfg_str(&c->cfg, "area.lane_rtl", name, sizeof name, e)) return -1;
    if (strchr(name, '/')) { /* a path */
        if (beside_chip(c, dir, "area.lane_rtl", name, c->area.lane_rtl, sizeof c->area.lane_rtl, e)) return -1;
    } else if (snprintf(c->area.lane_rtl, sizeof c->area.lane_rtl, "%s/../rtl-ref/%s.json", es_models_dir(), name) >=
               (int)sizeof c->area.lane_rtl) { /* a name: rtl-ref/ beside the models folder */
        return es_fail(e, "%s: key 'area.lane_rtl': path too long", c->path);
    }
    char real[PATH_MAX];
    size_t rl;
    if (realpath(c->area.lane_rtl, real) && (rl = strlen(real)) < sizeof c->area.lane_rtl) /* as printed: no "/../" */
        memcpy(c->area.lane_rtl, real, rl + 1);
    es_cfg s;
    if (es_cfg_load(&s, c->area.lane_rtl, e)) {
        es_err inner = *e;
        return es_fail(e, "%s: key 'area.lane_rtl': %s", c->path, inner.msg);
    }
    int rc = -1;
    const cJSON *lanes = es_cfg_node(&s, "lane_cells"), *found = NULL, *it;
    char have[256] = ""; /* the cells it holds, cell bits/accumulator bits, for the error */
    cJSON_ArrayForEach(it, lanes) {
        const cJSON *cb = cJSON_GetObjectItemCaseSensitive(it, "cell_bits"),
                    *acc = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(it, "params"), "ACC_BITS");
        if (!cJSON_IsNumber(cb) || !cJSON_IsNumber(acc)) continue;
        if (cb->valuedouble == c->tile.cell_bits && acc->valuedouble == c->tile.acc_bits) found = it;
        size_t l = strlen(have);
        if (l < sizeof have - 40) snprintf(have + l, sizeof have - l, "%s%g/%g", l ? ", " : "", cb->valuedouble,
                                           acc->valuedouble);
    }
    if (!found) {
        es_fail(e, "%s: no lane cell synthesized for tile.lanes.cell_bits %d and accumulator_bits %d (it holds "
                   "cell bits/accumulator bits %s): synthesize it with scripts/synth-rtl --cell-bits %d --acc-bits %d "
                   "(each list replaces its default: name every width your chips use)", c->area.lane_rtl, c->tile.cell_bits, c->tile.acc_bits, have[0] ? have : "none",
                c->tile.cell_bits, c->tile.acc_bits);
        goto out;
    }
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(found, "transistors_per_lane_cell"),
                *ff = cJSON_GetObjectItemCaseSensitive(found, "flip_flops_per_lane_cell");
    if (!cJSON_IsNumber(tr) || !(tr->valuedouble >= 1 && tr->valuedouble <= 1e9) || !cJSON_IsNumber(ff) ||
        !(ff->valuedouble >= 0 && ff->valuedouble <= 1024)) {
        es_fail(e, "%s: lane cell: expected transistors_per_lane_cell in 1 .. 1e9 and flip_flops_per_lane_cell "
                   "in 0 .. 1024", c->area.lane_rtl);
        goto out;
    }
    /* the sources, beside the file, against the hash it records */
    const cJSON *src = es_cfg_node(&s, "sources");
    char want[32];
    if (!cJSON_IsArray(src) || cJSON_GetArraySize(src) < 1) {
        es_fail(e, "%s: key 'sources': expected the list of RTL files it was synthesized from, as scripts/synth-rtl "
                   "writes", c->area.lane_rtl);
        goto out;
    }
    if (es_cfg_str(&s, "sources_fnv1a64", want, sizeof want, e)) goto out;
    uint64_t h = ES_FNV_OFFSET;
    cJSON_ArrayForEach(it, src) {
        char rtl[1024], *text = NULL;
        size_t len = 0;
        const char *slash = strrchr(c->area.lane_rtl, '/');
        int dl = slash ? (int)(slash - c->area.lane_rtl) : 1;
        if (!cJSON_IsString(it) || strchr(it->valuestring, '/') ||
            snprintf(rtl, sizeof rtl, "%.*s/%s", dl, slash ? c->area.lane_rtl : ".", it->valuestring) >= (int)sizeof rtl) {
            es_fail(e, "%s: key 'sources': expected file names beside it", c->area.lane_rtl);
            goto out;
        }
        if (es_read_file(rtl, (size_t)1 << 24, &text, &len, e)) goto out;
        h = es_fnv1a(h, text, len);
        free(text);
    }
    char got[32];
    snprintf(got, sizeof got, "%016llx", (unsigned long long)h);
    if (strcmp(got, want)) {
        es_fail(e, "%s: synthesized from other RTL (sources hash %s, the files beside it now %s): run "
                   "scripts/synth-rtl to synthesize them again", c->area.lane_rtl, want, got);
        goto out;
    }
    c->area.lane_tr = tr->valuedouble;
    c->tile.reg_bits_cell = ff->valuedouble;
    rc = 0;
out:
    es_cfg_free(&s);
    return rc;
}

/* --set overrides: pass 0 the chip's keys (so --set process=NAME picks the table), pass 1 the
 * process table's (process.KEY), once it is loaded. */
static int apply_sets(es_chip *c, const char *const *sets, int n, int pass, es_err *e)
{
    for (int i = 0; i < n; i++) {
        char key[256];
        const char *eq = strchr(sets[i], '=');
        if (!eq || eq == sets[i] || (size_t)(eq - sets[i]) >= sizeof key)
            return es_fail(e, "--set %s: expected path.to.key=value", sets[i]);
        memcpy(key, sets[i], (size_t)(eq - sets[i]));
        key[eq - sets[i]] = 0;
        int proc = strncmp(key, "process.", 8) == 0;
        if (proc != pass) continue;
        int rc = proc ? es_cfg_set(&c->proc, key + 8, eq + 1, e) : es_cfg_set(&c->cfg, key, eq + 1, e);
        if (rc) return -1;
    }
    return 0;
}

/* Every key of a chip file (CHIP_KEYS) and of a process table (PROC_KEYS): its type, its range and
 * where it goes. The loader reads the numbers through this table, and `etchsim chip keys` prints
 * it, so the documented ranges are the checked ones. Kinds: 'd' number, 'l' and 'i' whole numbers,
 * 'b' true/false, 'x' read by its own code below (text, formats), range given in `values`. */
#define F(m) offsetof(es_chip, m)
#define NO_FIELD ((size_t)-1)
static const es_key_spec CHIP_KEYS[] = {
    {"name", 'x', 0, 0, NO_FIELD, 0, 0, 0, "text", "the chip's name"},
    {"description", 'x', 0, 0, NO_FIELD, 1, 0, 0, "text", "what the chip is, for people"},
    {"process", 'x', 0, 0, NO_FIELD, 0, 0, 0, "a name under models/process/ or a path", "its process table"},
    {"clock_hz", 'd', 1e6, 1e11, F(clock_hz), 0, 0, 1, NULL, "clock"},
    {"clock_gating", 'x', 0, 0, NO_FIELD, 0, 0, 0, "none | tile | unit", "when pipeline registers are clocked"},
    {"tile.layers_per_tile", 'i', 1, 1024, F(tile.layers), 0, 0, 1, NULL, NULL},
    {"tile.items_in_flight", 'l', 1, 64, F(tile.slots), 1, 1, 1, NULL, NULL},
    {"tile.rom.banks", 'l', 1, 0x1p40, F(store.tile_rom.banks), 0, 0, 1, NULL, NULL},
    {"tile.rom.rows", 'l', 1, 0x1p40, F(store.tile_rom.rows), 0, 0, 1, NULL, NULL},
    {"tile.rom.row_bits", 'l', 1, 1 << 20, F(store.tile_rom.row_bits), 0, 0, 1, NULL, NULL},
    {"tile.rom.read_latency_cycles", 'i', 0, 1 << 20, F(store.tile_rom.latency), 0, 0, 1, NULL, NULL},
    {"tile.lanes.count", 'l', 1, 0x1p40, F(tile.lanes), 0, 0, 1, NULL, NULL},
    {"tile.lanes.cell_bits", 'i', 1, 16, F(tile.cell_bits), 0, 0, 1, NULL, NULL},
    {"tile.lanes.pipeline_depth", 'i', 0, 1 << 16, F(tile.lane_depth), 0, 0, 1, NULL, NULL},
    {"tile.lanes.tokens_per_read", 'i', 1, 1 << 16, F(tile.tokens_per_read), 0, 0, 1, NULL, NULL},
    {"tile.sync_step", 'b', 0, 1, F(tile.sync_step), 1, 0, 1, NULL,
     "true: a tile starts a pass only when no token it passed on is still on its way back (head, sampler, "
     "embedding): a GPU's synchronous decode step; default false"},
    {"tile.lanes.shared_by_tokens", 'b', 0, 1, F(tile.lanes_shared), 1, 0, 1, NULL,
     "true: the lanes serve a pass's tokens together (k tokens take k x cells / lanes cycles); default false"},
    {"tile.lanes.mapping", 'x', 0, 0, NO_FIELD, 1, 0, 0, "striped | partitioned (default striped)", NULL},
    {"tile.lanes.activation_format", 'x', 0, 0, NO_FIELD, 0, 0, 0, "int8 | fp8 | bf16 | fp32", NULL},
    {"tile.lanes.accumulator_bits", 'i', 8, 64, F(tile.acc_bits), 0, 0, 1, NULL, NULL},
    {"tile.lanes.register_bits_per_cell", 'd', 0, 1024, F(tile.reg_bits_cell), 1, 0, 1, NULL,
     "needed without area.lane_rtl"},
    {"tile.lanes.cell_mac_fj", 'd', 1e-3, 1e6, F(tile.cell_mac_j), 1, 0, 1e-15, NULL,
     "one lane cell's multiply-add energy on this chip (its head's lanes too); default the process table's "
     "energy.lane_cell_mac_fj"},
    {"tile.vector.elems_per_cycle", 'l', 1, 0x1p40, F(tile.vec_width), 0, 0, 1, NULL, NULL},
    {"tile.vector.latency_cycles", 'i', 0, 1 << 16, F(tile.vec_latency), 0, 0, 1, NULL, NULL},
    {"tile.vector.register_bits_per_elem", 'd', 0, 1e6, F(tile.reg_bits_vec), 0, 0, 1, NULL, NULL},
    {"tile.attention.positions_per_cycle", 'l', 1, 0x1p40, F(tile.attn_ppc), 0, 0, 1, NULL, NULL},
    {"tile.attention.latency_cycles", 'i', 0, 1 << 16, F(tile.attn_latency), 0, 0, 1, NULL, NULL},
    {"tile.attention.register_bits_per_position", 'd', 0, 1e9, F(tile.reg_bits_attn), 0, 0, 1, NULL, NULL},
    {"tile.scan.elems_per_cycle", 'l', 1, 0x1p40, F(tile.scan_width), 1, 0, 1, NULL, "needed by state-space models"},
    {"tile.scan.latency_cycles", 'i', 0, 1 << 16, F(tile.scan_latency), 1, 0, 1, NULL, NULL},
    {"kv.bytes_per_tile", 'l', 1, 0x1p40, F(kv.bytes), 0, 0, 1, NULL, NULL},
    {"kv.banks", 'l', 1, 0x1p40, F(kv.banks), 0, 0, 1, NULL,
     "not with kv.in_store (the KV then streams from the store, store.ports x store.bits_per_cycle bits a cycle)"},
    {"kv.word_bits", 'l', 1, 1 << 20, F(kv.word_bits), 0, 0, 1, NULL, "not with kv.in_store, as kv.banks"},
    {"kv.ports", 'i', 1, 1 << 16, F(kv.ports), 0, 0, 1, NULL, NULL},
    {"kv.element_bits", 'i', 1, 32, F(kv.elem_bits), 0, 0, 1, NULL, NULL},
    {"kv.element_format", 'x', 0, 0, NO_FIELD, 1, 0, 0, "int8 | fp8 (8 bits) | bf16 (16) | fp32 (32)", "matches element_bits"},
    {"kv.slot_context", 'l', 1, 1 << 24, F(kv.slot_context), 0, 0, 1, NULL, NULL},
    {"kv.tiles_per_group", 'i', 1, 1024, F(kv.tiles_per_group), 0, 0, 1, NULL, NULL},
    {"kv.prefix_sharing", 'b', 0, 1, F(kv.prefix_sharing), 0, 0, 1, NULL, NULL},
    {"kv.in_store", 'b', 0, 1, F(kv.in_store), 1, 0, 1, NULL,
     "true (store.kind hbm only): the KV cache is in the HBM: no die area or leakage, its bits read and written at "
     "store.read_fj_per_bit and streamed through the store (store.ports x store.bits_per_cycle bits a cycle, shared "
     "with the weights, over kv.ports engines); give no kv.banks or kv.word_bits"},
    {"store.kind", 'x', 0, 0, NO_FIELD, 1, 0, 0, "rom | sram | hbm (default rom)", "where the weights live"},
    {"store.scope", 'x', 0, 0, NO_FIELD, 1, 0, 0, "tile (sram only) | chip (default)",
     "a store per tile (and one for the head), or one shared by the chip"},
    {"store.capacity_bytes", 'l', 1, 0x1p50, F(store.capacity_bytes), 1, 0, 1, NULL,
     "needed with sram or hbm: per tile with tile scope, else in all"},
    {"store.ports", 'i', 1, 1 << 16, F(store.ports), 1, 0, 1, NULL, "needed with sram or hbm (hbm: its stacks)"},
    {"store.bits_per_cycle", 'l', 1, 0x1p40, F(store.port_bits), 1, 0, 1, NULL,
     "needed with sram or hbm: bits per port per chip cycle"},
    {"store.latency_cycles", 'i', 0, 1 << 20, F(store.latency), 1, 0, 1, NULL, "needed with sram or hbm"},
    {"store.read_fj_per_bit", 'd', 0, 1e6, F(store.e_read_bit), 1, 0, 1e-15, NULL, "needed with sram or hbm"},
    {"store.static_w", 'd', 0, 1e5, F(store.static_w), 1, 0, 1, NULL, "hbm only: refresh and PHY, off the die"},
    {"head.embed_rom.banks", 'l', 1, 0x1p40, F(store.embed_rom.banks), 0, 0, 1, NULL, NULL},
    {"head.embed_rom.rows", 'l', 1, 0x1p40, F(store.embed_rom.rows), 0, 0, 1, NULL, NULL},
    {"head.embed_rom.row_bits", 'l', 1, 1 << 20, F(store.embed_rom.row_bits), 0, 0, 1, NULL, NULL},
    {"head.embed_rom.read_latency_cycles", 'i', 0, 1 << 20, F(store.embed_rom.latency), 0, 0, 1, NULL, NULL},
    {"head.lm_rom.banks", 'l', 1, 0x1p40, F(store.lm_rom.banks), 0, 0, 1, NULL, NULL},
    {"head.lm_rom.rows", 'l', 1, 0x1p40, F(store.lm_rom.rows), 0, 0, 1, NULL, NULL},
    {"head.lm_rom.row_bits", 'l', 1, 1 << 20, F(store.lm_rom.row_bits), 0, 0, 1, NULL, NULL},
    {"head.lm_rom.read_latency_cycles", 'i', 0, 1 << 20, F(store.lm_rom.latency), 0, 0, 1, NULL, NULL},
    {"head.lanes.count", 'l', 1, 0x1p40, F(head.lanes), 0, 0, 1, NULL, NULL},
    {"head.lanes.tokens_per_read", 'i', 1, 1 << 16, F(head.tokens_per_read), 1, 1, 1, NULL,
     "tokens waiting at the head that one pass over the LM head's weights serves (default 1); above 1 needs "
     "tile.lanes.shared_by_tokens true"},
    {"head.sampler.elems_per_cycle", 'l', 1, 0x1p40, F(head.sampler_width), 0, 0, 1, NULL, NULL},
    {"head.sampler.latency_cycles", 'i', 0, 1 << 16, F(head.sampler_latency), 0, 0, 1, NULL, NULL},
    {"head.sampler.register_bits_per_elem", 'd', 0, 1e6, F(head.reg_bits_sampler), 0, 0, 1, NULL, NULL},
    {"link.width_bits", 'l', 1, 1 << 24, F(link.width), 0, 0, 1, NULL, NULL},
    {"link.latency_cycles", 'i', 0, 1 << 16, F(link.latency), 0, 0, 1, NULL, NULL},
    {"link.distance_mm", 'd', 0, 1000, F(link.mm), 0, 0, 1, NULL, NULL},
    {"link.elem_bits", 'i', 1, 64, F(link.elem_bits), 0, 0, 1, NULL, NULL},
    {"link.token_id_bits", 'i', 1, 64, F(link.token_id_bits), 0, 0, 1, NULL, NULL},
    {"host.bandwidth_bytes_per_s", 'd', 1e3, 1e15, F(host.bw), 0, 0, 1, NULL, NULL},
    {"host.latency_ns", 'd', 0, 1e9, F(host.latency_ns), 0, 0, 1, NULL, NULL},
    {"host.command_bytes", 'l', 1, 1 << 20, F(host.cmd_bytes), 0, 0, 1, NULL, NULL},
    {"host.token_bytes", 'l', 1, 1 << 10, F(host.token_bytes), 0, 0, 1, NULL, NULL},
    {"host.completion_bytes", 'l', 1, 1 << 20, F(host.cpl_bytes), 0, 0, 1, NULL, NULL},
    {"scheduler.prefill_chunk", 'l', 1, 1 << 20, F(sched.prefill_chunk), 0, 0, 1, NULL, NULL},
    {"scheduler.fifo_depth", 'l', 1, 4096, F(sched.fifo_depth), 0, 0, 1, NULL, NULL},
    {"weights.default.format", 'x', 0, 0, NO_FIELD, 0, 0, 0,
     "f32 | f16 | bf16 | q8_0 | q4_0 | q3_k | q4_k | q5_k | q6_k | mxfp4 | nvfp4 | fp8 | int3 | int6", NULL},
    {"weights.default.group", 'x', 0, 0, NO_FIELD, 1, 0, 0, "32 to 128 (int3 and int6 only)", NULL},
    {"weights.roles.ROLE.format", 'x', 0, 0, NO_FIELD, 1, 0, 0, "as weights.default.format", "per tensor role"},
    {"weights.roles.ROLE.group", 'x', 0, 0, NO_FIELD, 1, 0, 0, "as weights.default.group", NULL},
    {"area.lane_transistors", 'd', 1, 1e9, F(area.lane_tr), 1, 0, 1, NULL, "needed without area.lane_rtl"},
    {"area.lane_rtl", 'x', 0, 0, NO_FIELD, 1, 0, 0,
     "a scripts/synth-rtl file: a name under rtl-ref/ (lane-synth) or a path from the chip file's folder",
     "lane transistors and register bits per cell from the synthesized RTL"},
    {"area.vector_transistors_per_elem", 'd', 1, 1e12, F(area.vec_tr_per_elem), 0, 0, 1, NULL, NULL},
    {"area.attention_transistors_per_position", 'd', 1, 1e12, F(area.attn_tr_per_pos), 0, 0, 1, NULL, NULL},
    {"area.sampler_transistors_per_elem", 'd', 1, 1e12, F(area.sampler_tr_per_elem), 0, 0, 1, NULL, NULL},
    {"area.control_transistors_per_tile", 'd', 0, 1e12, F(area.ctrl_tr_per_tile), 0, 0, 1, NULL, NULL},
    {"area.io_mm2", 'd', 0, 1e5, F(area.io_mm2), 0, 0, 1, NULL, NULL},
    {"area.io_transistors", 'd', 0, 1e13, F(area.io_tr), 0, 0, 1, NULL, NULL},
    {"card.vr_efficiency", 'd', 0.01, 1.0, F(card.vr_eff), 0, 0, 1, NULL, NULL},
    {"card.board_static_w", 'd', 0, 1e5, F(card.board_w), 0, 0, 1, NULL, NULL},
    {"card.power_limit_w", 'd', 0, 1e6, F(card.power_limit_w), 1, 0, 1, NULL, "0 or absent: no limit"},
    {"card.power_window_us", 'x', 1, 1e8, NO_FIELD, 1, 0, 0, NULL, "needed with a power limit"},
    {"card.clock_step_hz", 'x', 1e3, 1e11, NO_FIELD, 1, 0, 0, NULL, "needed with a power limit"},
    {"card.governor", 'x', 0, 0, NO_FIELD, 1, 0, 0, "ideal | reactive (default ideal)",
     "how a chip alone holds its power limit (README); a chip of a system: always reactive"},
    {"cost.card_usd", 'd', 1, 1e8, F(cost.card_usd), 1, 0, 1, NULL,
     "the card's price outright (a bought GPU): replaces the die-derived card cost"},
    {"cost.package_test_usd", 'd', 0, 1e7, F(cost.package_test_usd), 1, 0, 1, NULL,
     "package, assembly and test of the die (with board_usd, instead of card_usd)"},
    {"cost.board_usd", 'd', 0, 1e7, F(cost.board_usd), 1, 0, 1, NULL, "the card around the die"},
    {"cost.hbm_usd_per_gb", 'd', 0, 1e4, F(cost.hbm_usd_per_gb), 1, 0, 1, NULL,
     "store.kind hbm with a die-derived card (not card_usd): the stacks' price per GB of store.capacity_bytes, "
     "added to the card"},
    {"cost.host_usd_per_card", 'd', 0, 1e8, F(cost.host_usd), 1, 0, 1, NULL, "needed with a cost section"},
    {"cost.host_w_per_card", 'd', 0, 1e6, F(cost.host_w), 1, 0, 1, NULL, "needed with a cost section"},
};
static const es_key_spec PROC_KEYS[] = {
    {"name", 'x', 0, 0, NO_FIELD, 1, 0, 0, "text", NULL},
    {"voltage_v", 'd', 0.1, 5, F(process.volt), 0, 0, 1, NULL, NULL},
    {"logic_mtr_per_mm2", 'd', 0.1, 1e5, F(process.logic_mtr_mm2), 0, 0, 1, NULL, NULL},
    {"logic_utilization", 'd', 0.01, 1, F(process.logic_util), 0, 0, 1, NULL, NULL},
    {"sram_bitcell_um2", 'd', 1e-5, 100, F(process.sram_cell_um2), 0, 0, 1, NULL, NULL},
    {"sram_array_efficiency", 'd', 0.01, 1, F(process.sram_eff), 0, 0, 1, NULL, NULL},
    {"sram_transistors_per_bit", 'd', 1, 16, F(process.sram_tr_bit), 0, 0, 1, NULL, NULL},
    {"rom_cell_um2", 'd', 1e-5, 100, F(process.rom_cell_um2), 0, 0, 1, NULL, NULL},
    {"rom_array_efficiency", 'd', 0.01, 1, F(process.rom_eff), 0, 0, 1, NULL, NULL},
    {"energy.rom_read_fj_per_bit", 'd', 0, 1e6, F(process.e_rom_bit), 0, 0, 1e-15, NULL, NULL},
    {"energy.lane_cell_mac_fj", 'd', 0, 1e6, F(process.e_cell_mac), 0, 0, 1e-15, NULL, NULL},
    {"energy.attention_mac_fj", 'd', 0, 1e6, F(process.e_attn_mac), 0, 0, 1e-15, NULL, NULL},
    {"energy.sram_read_fj_per_bit", 'd', 0, 1e6, F(process.e_kv_rd_bit), 0, 0, 1e-15, NULL, NULL},
    {"energy.sram_write_fj_per_bit", 'd', 0, 1e6, F(process.e_kv_wr_bit), 0, 0, 1e-15, NULL, NULL},
    {"energy.vector_op_fj", 'd', 0, 1e6, F(process.e_vec_elem), 0, 0, 1e-15, NULL, NULL},
    {"energy.wire_fj_per_bit_mm", 'd', 0, 1e6, F(process.e_wire_bit_mm), 0, 0, 1e-15, NULL, NULL},
    {"energy.host_pj_per_bit", 'd', 0, 1e6, F(process.e_host_bit), 0, 0, 1e-12, NULL, NULL},
    {"energy.register_fj_per_bit_cycle", 'd', 0, 1e6, F(process.e_reg_bit), 0, 0, 1e-15, NULL, NULL},
    {"energy.clock_network_fj_per_bit_cycle", 'd', 0, 1e6, F(process.e_clk_net), 0, 0, 1e-15, NULL, NULL},
    {"leakage.logic_w_per_mm2", 'd', 0, 100, F(process.leak_logic), 0, 0, 1, NULL, NULL},
    {"leakage.sram_w_per_mm2", 'd', 0, 100, F(process.leak_sram), 0, 0, 1, NULL, NULL},
    {"leakage.rom_w_per_mm2", 'd', 0, 100, F(process.leak_rom), 0, 0, 1, NULL, NULL},
    {"cost.wafer_usd", 'd', 1, 1e7, F(cost.wafer_usd), 1, 0, 1, NULL, "one processed wafer; a cost section needs it"},
    {"cost.wafer_diameter_mm", 'd', 25, 450, F(cost.wafer_mm), 1, 0, 1, NULL, "a cost section needs it"},
    {"cost.edge_exclusion_mm", 'd', 0, 50, F(cost.edge_mm), 1, 0, 1, NULL, "a cost section needs it"},
    {"cost.defect_density_per_cm2", 'd', 0, 100, F(cost.d0_cm2), 1, 0, 1, NULL, "a cost section needs it"},
    {"cost.yield_model", 'x', 0, 0, NO_FIELD, 1, 0, 0, "poisson | murphy | negative_binomial",
     "a cost section needs it"},
    {"cost.clustering_alpha", 'd', 0.01, 1000, F(cost.alpha), 1, 0, 1, NULL, "read by negative_binomial only"},
};
#undef F

const es_key_spec *es_chip_key_specs(int process, int *n)
{
    *n = process ? (int)(sizeof PROC_KEYS / sizeof *PROC_KEYS) : (int)(sizeof CHIP_KEYS / sizeof *CHIP_KEYS);
    return process ? PROC_KEYS : CHIP_KEYS;
}

/* Keys the older weight form {bits, group, scale_bits} adds (read by read_fmt). */
static const char *const OLD_FMT_KEYS[] = {"weights.default.bits", "weights.default.scale_bits",
                                           "weights.roles.ROLE.bits", "weights.roles.ROLE.scale_bits", NULL};

/* A dotted key against a table key: "ROLE" in the table stands for any one segment. */
static int key_matches(const char *spec, const char *key)
{
    while (*spec && *key) {
        const char *sd = strchr(spec, '.'), *kd = strchr(key, '.');
        size_t sl = sd ? (size_t)(sd - spec) : strlen(spec), kl = kd ? (size_t)(kd - key) : strlen(key);
        if (!(sl == 4 && !strncmp(spec, "ROLE", 4)) && (sl != kl || strncmp(spec, key, sl))) return 0;
        spec += sl + (sd != NULL);
        key += kl + (kd != NULL);
        if (!sd != !kd) return 0;
    }
    return !*spec && !*key;
}

int es_key_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

/* The key of table ks[0..n) nearest to key (prefix in front of the table's keys), if nearer than
 * *best_d edits: its index, and *best_d lowered; else -1. */
static int nearest_key(const es_key_spec *ks, int n, const char *prefix, const char *key, int *best_d)
{
    int best = -1;
    for (int i = 0; i < n; i++) {
        char full[256];
        snprintf(full, sizeof full, "%s%s", prefix, ks[i].key);
        int d = es_key_distance(full, key);
        if (d < *best_d) *best_d = d, best = i;
    }
    return best;
}

int es_chip_key_known(const char *key, char *near, size_t n, int *near_d)
{
    int proc = !strncmp(key, "process.", 8), known = 0;
    const es_key_spec *ks = proc ? PROC_KEYS : CHIP_KEYS;
    int nk = proc ? (int)(sizeof PROC_KEYS / sizeof *PROC_KEYS) : (int)(sizeof CHIP_KEYS / sizeof *CHIP_KEYS);
    for (int i = 0; i < nk && !known; i++) known = key_matches(ks[i].key, proc ? key + 8 : key);
    for (int i = 0; !proc && OLD_FMT_KEYS[i] && !known; i++) known = key_matches(OLD_FMT_KEYS[i], key);
    if (near && n) near[0] = 0;
    if (known) return 1;
    int d = 100;
    int c = nearest_key(CHIP_KEYS, (int)(sizeof CHIP_KEYS / sizeof *CHIP_KEYS), "", key, &d);
    int p = nearest_key(PROC_KEYS, (int)(sizeof PROC_KEYS / sizeof *PROC_KEYS), "process.", key, &d);
    if (near && n && p >= 0) snprintf(near, n, "process.%s", PROC_KEYS[p].key);
    else if (near && n && c >= 0) snprintf(near, n, "%s", CHIP_KEYS[c].key);
    if (near_d) *near_d = d;
    return 0;
}

/* Every leaf of a chip file or process table must be a key of its table: a misspelt optional key
 * would otherwise leave its default in place without a word. A leaf is a value or a sourced
 * value {"value": v, "source": "...", "range": [lo, hi]}. */
static int check_known(const char *path, const cJSON *node, const char *prefix, const es_key_spec *ks, int n,
                       const char *const *extra, const char *what, es_err *e)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, node) {
        char key[256];
        if (snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", it->string) >= (int)sizeof key)
            return es_fail(e, "%s: key '%.60s...': longer than any %s key", path, key, what);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
        if (cJSON_IsObject(it) && !v) {
            if (check_known(path, it, key, ks, n, extra, what, e)) return -1;
            continue;
        }
        if (cJSON_IsObject(it)) {
            const cJSON *m;
            cJSON_ArrayForEach(m, it)
                if (strcmp(m->string, "value") && strcmp(m->string, "source") && strcmp(m->string, "range"))
                    return es_fail(e, "%s: key '%s': a sourced value holds value, source and range, not '%s'", path,
                                   key, m->string);
        }
        int known = 0, best = -1, best_d = 99;
        for (int i = 0; i < n && !known; i++) known = key_matches(ks[i].key, key);
        for (int i = 0; extra && extra[i] && !known; i++) known = key_matches(extra[i], key);
        if (known) continue;
        best = nearest_key(ks, n, "", key, &best_d); /* the nearest key, for the message */
        if (best >= 0 && best_d <= 3)
            return es_fail(e, "%s: key '%s': not a %s key (did you mean '%s'? `etchsim chip keys` lists them)", path,
                           key, what, ks[best].key);
        return es_fail(e, "%s: key '%s': not a %s key (`etchsim chip keys` lists them)", path, key, what);
    }
    return 0;
}

/* A key of the ROMs' geometry (tile.rom.*, head.embed_rom.*, head.lm_rom.*). */
static int is_rom_key(const char *key)
{
    return !strncmp(key, "tile.rom.", 9) || !strncmp(key, "head.embed_rom.", 15) || !strncmp(key, "head.lm_rom.", 12);
}

/* A chip whose weights are in SRAM or HBM (store.kind) has no ROMs: their keys hold nothing, so they are left out
 * (read_keys leaves the geometry 0) and refused if given. Sets *no_rom. An unknown store.kind is read_store's. */
static int check_rom_keys(const es_chip *c, int *no_rom, es_err *e)
{
    char kind[16] = "rom";
    *no_rom = 0;
    if (es_cfg_has(&c->cfg, "store.kind") && es_cfg_str(&c->cfg, "store.kind", kind, sizeof kind, e)) return -1;
    if (strcmp(kind, "sram") && strcmp(kind, "hbm")) return 0;
    *no_rom = 1;
    int n = (int)(sizeof CHIP_KEYS / sizeof *CHIP_KEYS);
    for (int i = 0; i < n; i++)
        if (is_rom_key(CHIP_KEYS[i].key) && es_cfg_has(&c->cfg, CHIP_KEYS[i].key))
            return es_fail(e, "%s: key '%s': the weights are in store.kind %s, not in ROM; tile.rom.* and "
                              "head.*_rom.* hold nothing there (leave them out)", c->path, CHIP_KEYS[i].key, kind);
    return 0;
}

static int is_kv_port_key(const char *key) { return !strcmp(key, "kv.banks") || !strcmp(key, "kv.word_bits"); }

/* kv.in_store (an HBM store only: refused otherwise): the KV cache streams from the HBM store, through its ports and bits a cycle (es_chip_kv_port_bits),
 * shared with the weights' stream; kv.banks and kv.word_bits, a KV SRAM's geometry, hold nothing there, so they are
 * left out (read_keys leaves them 0) and refused if given. Sets *kv_store. */
static int check_kv_port_keys(const es_chip *c, int *kv_store, es_err *e)
{
    *kv_store = 0;
    if (!es_cfg_has(&c->cfg, "kv.in_store")) return 0;
    if (es_cfg_bool(&c->cfg, "kv.in_store", kv_store, e)) return -1;
    char kind[16] = "rom";
    if (es_cfg_has(&c->cfg, "store.kind") && es_cfg_str(&c->cfg, "store.kind", kind, sizeof kind, e)) return -1;
    if (!*kv_store) return 0;
    if (strcmp(kind, "hbm"))
        return es_fail(e, "%s: key 'kv.in_store': the KV cache goes in an HBM store (store.kind hbm), not %s", c->path,
                       kind);
    for (int i = 0; i < (int)(sizeof CHIP_KEYS / sizeof *CHIP_KEYS); i++)
        if (is_kv_port_key(CHIP_KEYS[i].key) && es_cfg_has(&c->cfg, CHIP_KEYS[i].key))
            return es_fail(e, "%s: key '%s': with kv.in_store the KV cache streams from the weight store "
                              "(store.ports x store.bits_per_cycle bits a cycle, shared with the weights); kv.banks "
                              "and kv.word_bits hold nothing there (leave them out)", c->path, CHIP_KEYS[i].key);
    return 0;
}

/* The numbers of a table, each range-checked, into c; with no_rom the ROMs' geometry keys are absent (0), with
 * kv_store (kv.in_store) kv.banks and kv.word_bits. */
static int read_keys(const es_cfg *f, const es_key_spec *ks, int n, es_chip *c, int no_rom, int kv_store, es_err *e)
{
    for (int i = 0; i < n; i++) {
        const es_key_spec *k = &ks[i];
        if (k->kind == 'x') continue;
        char *p = (char *)c + k->off;
        if (no_rom && is_rom_key(k->key)) continue; /* left 0: check_rom_keys refused any given */
        if (kv_store && is_kv_port_key(k->key)) continue; /* left 0: check_kv_port_keys refused any given */
        if (k->optional && !es_cfg_has(f, k->key)) {
            if (k->kind == 'd') *(double *)(void *)p = k->dflt * k->scale;
            else if (k->kind == 'l') *(int64_t *)(void *)p = (int64_t)k->dflt;
            else *(int *)(void *)p = (int)k->dflt;
            continue;
        }
        int rc = 0;
        switch (k->kind) {
        case 'd': {
            double v;
            rc = es_cfg_num(f, k->key, k->lo, k->hi, &v, e);
            if (!rc) *(double *)(void *)p = v * k->scale;
            break;
        }
        case 'l': rc = es_cfg_i64(f, k->key, (int64_t)k->lo, (int64_t)k->hi, (int64_t *)(void *)p, e); break;
        case 'i': rc = es_cfg_int(f, k->key, (int)k->lo, (int)k->hi, (int *)(void *)p, e); break;
        case 'b': rc = es_cfg_bool(f, k->key, (int *)(void *)p, e); break;
        }
        if (rc) return -1;
    }
    return 0;
}

/* store.*: the kind, its scope, and the keys each kind needs or refuses. */
static int read_store(es_chip *c, es_err *e)
{
    static const char *keys[6] = {"store.capacity_bytes", "store.ports", "store.bits_per_cycle",
                                  "store.latency_cycles", "store.read_fj_per_bit", "store.static_w"};
    const es_cfg *f = &c->cfg;
    es_store_cfg *s = &c->store;
    char kind[16] = "rom", scope[16] = "chip";
    if (es_cfg_has(f, "store.kind") && es_cfg_str(f, "store.kind", kind, sizeof kind, e)) return -1;
    if (!strcmp(kind, "rom")) s->kind = ES_STORE_ROM;
    else if (!strcmp(kind, "sram")) s->kind = ES_STORE_SRAM;
    else if (!strcmp(kind, "hbm")) s->kind = ES_STORE_HBM;
    else return es_fail(e, "%s: key 'store.kind': expected \"rom\", \"sram\" or \"hbm\", got \"%s\"", c->path, kind);
    if (s->kind == ES_STORE_ROM) { /* the ROMs' geometry is tile.rom and head.*_rom */
        for (int i = 0; i < 6; i++)
            if (es_cfg_has(f, keys[i]))
                return es_fail(e, "%s: key '%s': a ROM store takes its geometry from tile.rom and head.*_rom (give "
                                  "store.kind sram or hbm, or leave the key out)", c->path, keys[i]);
        if (es_cfg_has(f, "store.scope"))
            return es_fail(e, "%s: key 'store.scope': a ROM store is per tile and head ROM (give store.kind sram "
                              "or hbm, or leave the key out)", c->path);
        return 0;
    }
    for (int i = 0; i < 5; i++)
        if (!es_cfg_has(f, keys[i]))
            return es_fail(e, "%s: key '%s' is missing (needed with store.kind %s)", c->path, keys[i], kind);
    if (s->kind == ES_STORE_SRAM && es_cfg_has(f, "store.static_w"))
        return es_fail(e, "%s: key 'store.static_w': an SRAM store's static power is its leakage (the process "
                          "table's leakage.sram_w_per_mm2); store.static_w is for hbm", c->path);
    if (es_cfg_has(f, "store.scope") && es_cfg_str(f, "store.scope", scope, sizeof scope, e)) return -1;
    if (strcmp(scope, "tile") && strcmp(scope, "chip"))
        return es_fail(e, "%s: key 'store.scope': expected \"tile\" or \"chip\", got \"%s\"", c->path, scope);
    s->chip_scope = !strcmp(scope, "chip");
    if (s->kind == ES_STORE_HBM && !s->chip_scope)
        return es_fail(e, "%s: key 'store.scope': an hbm store is off the die, one for the whole chip: expected "
                          "\"chip\", got \"tile\"", c->path);
    if (c->kv.in_store && c->kv.bytes > s->capacity_bytes)
        return es_fail(e, "%s: key 'kv.bytes_per_tile': a KV cache of %lld bytes in the HBM (kv.in_store) exceeds "
                          "store.capacity_bytes %lld", c->path, (long long)c->kv.bytes, (long long)s->capacity_bytes);
    if (c->tile.partitioned)
        return es_fail(e, "%s: key 'tile.lanes.mapping': \"partitioned\" splits a tile's ROM banks among its "
                          "partitions; with store.kind %s give \"striped\"", c->path, kind);
    return 0;
}

/* card.power_limit_w's window and step (needed with a limit) and card.governor (optional, default ideal). */
static int read_power_limit(es_chip *c, const es_cfg *f, es_err *e)
{
    double us = 0;
    if (c->card.power_limit_w > 0 && (es_cfg_num(f, "card.power_window_us", 1, 1e8, &us, e) ||
                                      es_cfg_num(f, "card.clock_step_hz", 1e3, 1e11, &c->card.clock_step_hz, e)))
        return -1;
    c->card.power_window_s = us * 1e-6;
    char gov[16] = "ideal";
    if (es_cfg_has(f, "card.governor") && es_cfg_str(f, "card.governor", gov, sizeof gov, e)) return -1;
    if (strcmp(gov, "ideal") && strcmp(gov, "reactive"))
        return es_fail(e, "%s: key 'card.governor': expected \"ideal\" or \"reactive\", got \"%s\"", c->path, gov);
    c->card.reactive = !strcmp(gov, "reactive");
    return 0;
}

static int read_chip(es_chip *c, const char *dir, es_err *e)
{
    const es_cfg *f = &c->cfg;
    int no_rom = 0, kv_store = 0;
    if (check_known(c->path, f->root, "", CHIP_KEYS, (int)(sizeof CHIP_KEYS / sizeof *CHIP_KEYS), OLD_FMT_KEYS,
                    "chip", e) ||
        es_cfg_str(f, "name", c->name, sizeof c->name, e) ||
        es_cfg_str(f, "tile.lanes.activation_format", c->tile.act_format, sizeof c->tile.act_format, e) ||
        check_rom_keys(c, &no_rom, e) || check_kv_port_keys(c, &kv_store, e) ||
        read_keys(f, CHIP_KEYS, (int)(sizeof CHIP_KEYS / sizeof *CHIP_KEYS), c, no_rom, kv_store, e))
        return -1;
    /* the lane cell: from the synthesized RTL, or given */
    int rtl = es_cfg_has(f, "area.lane_rtl"), tr = es_cfg_has(f, "area.lane_transistors"),
        regs = es_cfg_has(f, "tile.lanes.register_bits_per_cell");
    if (rtl && (tr || regs))
        return es_fail(e, "%s: key '%s': the lane cell comes from area.lane_rtl; give one or the other", c->path,
                       tr ? "area.lane_transistors" : "tile.lanes.register_bits_per_cell");
    if (!rtl && (!tr || !regs))
        return es_fail(e, "%s: key '%s' is missing (or give area.lane_rtl, a scripts/synth-rtl file)", c->path,
                       tr ? "tile.lanes.register_bits_per_cell" : "area.lane_transistors");
    c->area.lane_rtl[0] = 0;
    if (rtl && read_lane_rtl(c, dir, e)) return -1;
    if (c->head.tokens_per_read > 1 && !c->tile.lanes_shared) /* separate lanes per token: area the head has not */
        return es_fail(e, "%s: key 'head.lanes.tokens_per_read': %d tokens a pass need lanes shared by them "
                          "(tile.lanes.shared_by_tokens true); the head has one set of lanes", c->path,
                       c->head.tokens_per_read);
    if (read_power_limit(c, f, e)) return -1;
    {
        char gating[16];
        if (es_cfg_str(f, "clock_gating", gating, sizeof gating, e)) return -1;
        if (!strcmp(gating, "none")) c->gating = ES_GATING_NONE;
        else if (!strcmp(gating, "tile")) c->gating = ES_GATING_TILE;
        else if (!strcmp(gating, "unit")) c->gating = ES_GATING_UNIT;
        else
            return es_fail(e, "%s: key 'clock_gating': expected \"none\", \"tile\" or \"unit\", got \"%s\"",
                           c->path, gating);
    }
    char mapping[16] = "striped";
    if (es_cfg_has(f, "tile.lanes.mapping") && es_cfg_str(f, "tile.lanes.mapping", mapping, sizeof mapping, e))
        return -1;
    if (strcmp(mapping, "striped") && strcmp(mapping, "partitioned"))
        return es_fail(e, "%s: key 'tile.lanes.mapping': expected \"striped\" or \"partitioned\", got \"%s\"",
                       c->path, mapping);
    c->tile.partitioned = !strcmp(mapping, "partitioned");
    if (read_store(c, e)) return -1;
    if (strcmp(c->tile.act_format, "int8") && strcmp(c->tile.act_format, "fp8") && strcmp(c->tile.act_format, "bf16") &&
        strcmp(c->tile.act_format, "fp32"))
        return es_fail(e, "%s: key 'tile.lanes.activation_format': expected \"int8\", \"fp8\", "
                          "\"bf16\" or \"fp32\", got \"%s\"", c->path, c->tile.act_format);
    /* K and V element format: optional, by default the natural one for the width */
    snprintf(c->kv.format, sizeof c->kv.format, "%s",
             c->kv.elem_bits == 32 ? "fp32" : c->kv.elem_bits == 16 ? "bf16" : "int8");
    if (es_cfg_has(f, "kv.element_format") &&
        es_cfg_str(f, "kv.element_format", c->kv.format, sizeof c->kv.format, e))
        return -1;
    {
        int want = !strcmp(c->kv.format, "fp32") ? 32 : !strcmp(c->kv.format, "bf16") ? 16
                 : (!strcmp(c->kv.format, "int8") || !strcmp(c->kv.format, "fp8")) ? 8 : 0;
        if (!want)
            return es_fail(e, "%s: key 'kv.element_format': expected \"int8\", \"fp8\", \"bf16\" or "
                              "\"fp32\", got \"%s\"", c->path, c->kv.format);
        if (want != c->kv.elem_bits)
            return es_fail(e, "%s: key 'kv.element_format': %s elements are %d bits, but kv.element_bits is %d",
                           c->path, c->kv.format, want, c->kv.elem_bits);
    }
    if (read_fmt(f, "weights.default", &c->store.fmt[0], e)) return -1;
    for (int r = 1; r < ES_ROLE_COUNT; r++) c->store.fmt[r] = c->store.fmt[0];
    const cJSON *roles = es_cfg_node(f, "weights.roles");
    if (roles) {
        if (!cJSON_IsObject(roles))
            return es_fail(e, "%s: key 'weights.roles': expected an object of role names", c->path);
        const cJSON *it;
        cJSON_ArrayForEach(it, roles) {
            int r = es_role_from_name(it->string);
            if (r < 0)
                return es_fail(e, "%s: key 'weights.roles.%.80s': unknown tensor role (expected %s)", c->path,
                               it->string, es_role_names());
            char sec[96];
            snprintf(sec, sizeof sec, "weights.roles.%s", it->string);
            if (read_fmt(f, sec, &c->store.fmt[r], e)) return -1;
        }
    }
    for (int r = 0; r < ES_ROLE_COUNT; r++)
        if (!c->store.fmt[r].registry && (c->store.fmt[r].group == 0) != (c->store.fmt[r].scale_bits == 0))
            return es_fail(e, "%s: weights of role %s: group and scale_bits must both be 0 or "
                              "both positive", c->path, es_role_name((es_role)r));
    return 0;
}

static int read_process(es_chip *c, es_err *e)
{
    if (check_known(c->proc.path, c->proc.root, "", PROC_KEYS, (int)(sizeof PROC_KEYS / sizeof *PROC_KEYS), NULL,
                    "process", e))
        return -1;
    return read_keys(&c->proc, PROC_KEYS, (int)(sizeof PROC_KEYS / sizeof *PROC_KEYS), c, 0, 0, e);
}

/* cost.* of both files (read_keys range-checked the numbers): all of a section or none of it. */
static int read_cost(es_chip *c, es_err *e)
{
    static const char *const wafer[] = {"cost.wafer_usd", "cost.wafer_diameter_mm", "cost.edge_exclusion_mm",
                                        "cost.defect_density_per_cm2", "cost.yield_model", NULL};
    es_cost_cfg *k = &c->cost;
    k->have_wafer = es_cfg_node(&c->proc, "cost") != NULL;
    for (int i = 0; k->have_wafer && wafer[i]; i++)
        if (!es_cfg_has(&c->proc, wafer[i]))
            return es_fail(e, "%s: key '%s' is missing (a cost section gives cost.wafer_usd, wafer_diameter_mm, "
                              "edge_exclusion_mm, defect_density_per_cm2 and yield_model)", c->proc.path, wafer[i]);
    if (k->have_wafer) {
        char y[32];
        if (es_cfg_str(&c->proc, "cost.yield_model", y, sizeof y, e)) return -1;
        k->yield_model = !strcmp(y, "poisson") ? ES_YIELD_POISSON : !strcmp(y, "murphy") ? ES_YIELD_MURPHY
                       : !strcmp(y, "negative_binomial") ? ES_YIELD_NEG_BINOMIAL : ES_YIELD_NONE;
        if (k->yield_model == ES_YIELD_NONE)
            return es_fail(e, "%s: key 'cost.yield_model': expected \"poisson\", \"murphy\" or \"negative_binomial\", "
                              "got \"%s\"", c->proc.path, y);
        /* read by negative_binomial only (kept beside the others, so --set can switch the model) */
        if (k->yield_model == ES_YIELD_NEG_BINOMIAL && !es_cfg_has(&c->proc, "cost.clustering_alpha"))
            return es_fail(e, "%s: key 'cost.clustering_alpha' is missing (the negative_binomial yield model needs it)",
                           c->proc.path);
    }
    const es_cfg *f = &c->cfg;
    k->have_card = es_cfg_node(f, "cost") != NULL;
    if (!k->have_card) return 0;
    k->card_given = es_cfg_has(f, "cost.card_usd");
    int pkg = es_cfg_has(f, "cost.package_test_usd"), board = es_cfg_has(f, "cost.board_usd");
    if (k->card_given && (pkg || board))
        return es_fail(e, "%s: key '%s': the card's price is given (cost.card_usd); give it or the die's parts "
                          "(cost.package_test_usd and cost.board_usd), not both", c->path,
                       pkg ? "cost.package_test_usd" : "cost.board_usd");
    const char *need = !k->card_given && !pkg ? "cost.package_test_usd" : !k->card_given && !board ? "cost.board_usd"
                     : !es_cfg_has(f, "cost.host_usd_per_card") ? "cost.host_usd_per_card"
                     : !es_cfg_has(f, "cost.host_w_per_card") ? "cost.host_w_per_card" : NULL;
    if (need)
        return es_fail(e, "%s: key '%s' is missing (a chip's cost section gives cost.card_usd, or "
                          "cost.package_test_usd and cost.board_usd; and cost.host_usd_per_card and "
                          "cost.host_w_per_card)", c->path, need);
    /* an HBM store's stacks are off the die: a die-derived card prices them per GB, a bought card includes them */
    int hbm = es_cfg_has(f, "cost.hbm_usd_per_gb");
    if (hbm && c->store.kind != ES_STORE_HBM)
        return es_fail(e, "%s: key 'cost.hbm_usd_per_gb': the weights are in %s (store.kind), not in HBM", c->path,
                       es_store_name(c->store.kind));
    if (hbm && k->card_given)
        return es_fail(e, "%s: key 'cost.hbm_usd_per_gb': the card's price is given (cost.card_usd) and includes its "
                          "HBM; give one or the other", c->path);
    k->hbm_given = hbm; /* an HBM chip priced from its die without it has no cost (es_cost_compute says why) */
    return 0;
}

int es_chip_load_cfg(es_chip *c, const es_cfg *cfg, const char *dir, const char *label, const char *const *sets,
                     int n_sets, es_err *e)
{
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", label);
    snprintf(c->cfg.path, sizeof c->cfg.path, "%s", label);
    c->cfg.root = cfg->root ? cJSON_Duplicate(cfg->root, 1) : NULL;
    if (!c->cfg.root) return es_fail(e, "%s: %s", label, cfg->root ? "out of memory" : "no configuration tree");
    if (apply_sets(c, sets, n_sets, 0, e)) goto fail;
    char proc_name[256], proc_path[512];
    if (es_cfg_str(&c->cfg, "process", proc_name, sizeof proc_name, e)) goto fail;
    if (strchr(proc_name, '/')) { /* a path: absolute, or from the chip's folder */
        if (beside_chip(c, dir, "process", proc_name, proc_path, sizeof proc_path, e)) goto fail;
    } else if (es_resolve(proc_name, "process", NULL, proc_path, sizeof proc_path, e)) {
        es_err inner = *e;
        es_fail(e, "%s: key 'process': %s", c->path, inner.msg);
        goto fail;
    }
    if (es_cfg_load(&c->proc, proc_path, e)) goto fail;
    if (apply_sets(c, sets, n_sets, 1, e) || read_chip(c, dir, e) || read_process(c, e) || read_cost(c, e)) goto fail;
    return 0;
fail:
    es_chip_free(c);
    return -1;
}

int es_chip_load(es_chip *c, const char *spec, const char *const *sets, int n_sets, es_err *e)
{
    char path[sizeof c->path], dir[sizeof c->path];
    es_cfg tree;
    memset(c, 0, sizeof *c);
    if (es_resolve(spec, "chips", NULL, path, sizeof path, e)) return -1;
    if (es_cfg_load(&tree, path, e)) return -1;
    snprintf(dir, sizeof dir, "%s", path); /* the file's folder: its relative paths resolve from there */
    char *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir] = 0; /* "/x.json": the root */
    else snprintf(dir, sizeof dir, ".");
    int rc = es_chip_load_cfg(c, &tree, dir, path, sets, n_sets, e);
    es_cfg_free(&tree);
    return rc;
}

void es_chip_free(es_chip *c)
{
    es_cfg_free(&c->cfg);
    es_cfg_free(&c->proc);
}

int64_t es_chip_tiles(const es_chip *c, const es_model *m)
{
    return (m->layers + c->tile.layers - 1) / c->tile.layers;
}

int64_t es_chip_kv_bits_per_pos(const es_chip *c, const es_model *m)
{
    return 2 * m->kv_heads * m->head_dim * c->kv.elem_bits;
}

int64_t es_chip_state_bits(const es_chip *c, const es_model *m)
{
    if (m->ssm_state <= 0) return 0;
    return (m->ssm_inner * m->ssm_state + (m->ssm_conv - 1) * m->ssm_inner) * c->kv.elem_bits;
}

int64_t es_chip_kv_positions(const es_chip *c, const es_model *m)
{
    if (m->ssm_state > 0) return (c->kv.bytes * 8) / (es_chip_state_bits(c, m) * c->tile.layers);
    return (c->kv.bytes * 8) / (es_chip_kv_bits_per_pos(c, m) * c->tile.layers);
}

int64_t es_chip_kv_slots(const es_chip *c, const es_model *m)
{
    if (m->ssm_state > 0) return es_chip_kv_positions(c, m);
    int64_t per_slot_bits = es_chip_kv_bits_per_pos(c, m) * c->kv.slot_context * c->tile.layers;
    return (c->kv.bytes * 8) / per_slot_bits;
}

int64_t es_chip_kv_port_bits(const es_chip *c)
{
    /* kv.in_store: the store's bits a cycle (shared with the weights: the simulation books the store for them) */
    int64_t b = (c->kv.in_store ? c->store.ports * c->store.port_bits : c->kv.banks * c->kv.word_bits) / c->kv.ports;
    return b > 0 ? b : 1;
}

int64_t es_tensor_bits(const es_chip *c, const es_tensor *t)
{
    const es_wfmt *f = &c->store.fmt[es_tensor_fmt_role(t)];
    if (f->registry) { /* as a ROM image stores it: whole blocks per row, zero-padded */
        int64_t rb = es_q_row_bytes(&f->q, es_q_padded(&f->q, t->cols), NULL);
        return rb < 0 ? 0 : 8 * rb * t->rows;
    }
    int64_t n = t->rows * t->cols;
    int64_t bits = n * f->bits;
    if (f->group > 0) {
        /* one scale per group along each row */
        int64_t groups_per_row = (t->cols + f->group - 1) / f->group;
        bits += t->rows * groups_per_row * f->scale_bits;
    }
    return bits;
}

int64_t es_rom_bits(const es_rom_geom *r)
{
    int64_t have;
    if (__builtin_mul_overflow(r->banks, r->rows, &have) ||
        __builtin_mul_overflow(have, r->row_bits, &have))
        return INT64_MAX;
    return have;
}

int64_t es_rom_tensor_rows(int64_t bits, int64_t row_bits)
{
    return row_bits > 0 ? bits / row_bits + (bits % row_bits != 0) : INT64_MAX;
}

double es_chip_tile_register_bits(const es_chip *c)
{
    return (double)c->tile.lanes * (double)es_chip_lane_copies(c) * c->tile.reg_bits_cell + (double)c->tile.vec_width * c->tile.reg_bits_vec +
           (double)c->tile.attn_ppc * c->tile.reg_bits_attn;
}

double es_chip_head_register_bits(const es_chip *c)
{
    return (double)c->head.lanes * c->tile.reg_bits_cell + (double)c->tile.vec_width * c->tile.reg_bits_vec +
           (double)c->head.sampler_width * c->head.reg_bits_sampler;
}
