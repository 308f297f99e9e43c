// cli_common: see cli_common.h.
#include "cli_common.h"
#include "es_recipe.h"
#include "es_rom.h"
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace es {

Loaded::~Loaded()
{
    for (auto &pm : maps) es_map_free(&pm);
    for (auto &sm : slices) es_model_free(&sm);
    if (have_sys) es_system_free(&sys);
    for (auto &l : loras) es_lora_free(&l);
    if (have_map) es_map_free(&map);
    if (have_m) es_model_free(&m);
    if (have_c) es_chip_free(&c);
}

/* --adapter FILE: each file read against the whole model L.m (its shapes checked), into L.loras and L.adapters
   (rank, roles, alpha and the tensors it adapts, indexed as L.m's). */
static int load_adapter_files(Loaded &L, es_err *e)
{
    for (size_t k = 0; k < L.adapter_files.size(); k++) {
        L.loras.push_back(es_lora{});
        if (es_lora_load(&L.loras.back(), L.adapter_files[k].c_str(), &L.m, e)) return -1;
        const es_lora &l = L.loras.back();
        L.adapters.push_back(es_adapter_spec{l.rank, l.roles, l.alpha, l.adapted});
    }
    return 0;
}

int load(const std::string &model, const std::string &chip, const std::vector<std::string> &sets,
         const std::string &rom, const std::string &recipe, Loaded &L, es_err *e)
{
    for (const auto &s : sets)
        if (!s.compare(0, 7, "system."))
            return es_fail(e, "--set %s: a system file's key; it needs --system (a chip alone has no card links)",
                           s.c_str());
    if (es_model_load(&L.m, model.c_str(), e)) return -1;
    L.have_m = true;
    std::vector<const char *> sv;
    for (auto &s : sets) sv.push_back(s.c_str());
    if (es_chip_load(&L.c, chip.c_str(), sv.data(), (int)sv.size(), e)) return -1;
    L.have_c = true;
    L.formats = "chip weights.*";
    if (!rom.empty()) {
        if (!recipe.empty()) return es_fail(e, "--recipe %s with --rom %s: the image fixes the formats", recipe.c_str(), rom.c_str());
        if (es_apply_rom(rom.c_str(), &L.c, &L.m, &L.map, e)) return -1;
        L.have_map = true;
        L.formats = "ROM image " + rom;
        L.formats_from = "rom";
    } else if (!recipe.empty()) {
        es_recipe r;
        if (es_recipe_load(&r, recipe.c_str(), e)) return -1;
        int rc = es_rom_apply_recipe(&r, &L.c, &L.m, &L.map, e);
        L.formats = std::string("recipe ") + r.name + " (" + r.path + ")";
        L.formats_from = "recipe";
        es_recipe_free(&r);
        if (rc && L.map.fit.kind != ES_FIT_LIMIT) return -1; /* the recipe's formats; a size limit is a fit error */
        L.have_map = rc == 0;
    } else if (es_map_build(&L.map, &L.c, &L.m, nullptr, e) == 0) {
        L.have_map = true;
    }
    if (L.have_map && load_adapter_files(L, e)) return -1;
    if (L.have_map && !L.adapters.empty() && es_map_set_adapters(&L.map, L.adapters.data(), (int)L.adapters.size(), e))
        return -1;
    if (!L.have_map || es_map_check(&L.map, e)) {
        if (!rom.empty() || recipe.empty()) return -1;
        char msg[sizeof e->msg];
        std::snprintf(msg, sizeof msg, "%s", e->msg);
        return es_fail(e, "%s (weights in the formats of %s)", msg, L.formats.c_str());
    }
    return 0;
}

int Loaded::n_adapters() const
{
    if (!have_sys) return have_map ? map.n_adapters : 0;
    return maps.empty() ? 0 : maps[0].n_adapters; /* every chip holds every adapter's part of its layers */
}

void Loaded::set_an_adapter(int k)
{
    map.an_adapter = k;
    for (auto &pm : maps) pm.an_adapter = k;
}

std::vector<const es_map *> Loaded::pms() const
{
    std::vector<const es_map *> v;
    if (!have_sys) v.push_back(&map);
    for (const auto &pm : maps) v.push_back(&pm);
    return v;
}

/* Chip k's part of the adapters L.adapters in its table pm (slice L.slices[k]): the A and B of its own layers only,
   in its tiles' KV SRAM. An adapter file's tensors are the whole model's; each of the slice's takes the flag of the
   model's tensor it is (the same role, its layer + layer_base). */
static int slice_adapters(Loaded &L, size_t k, es_map *pm, es_err *e)
{
    const es_sys_chip &sc = L.sys.chips[k];
    const es_model &sm = L.slices[k];
    if (sc.tp > 1)
        return es_fail(e, "%s: key 'chips[%zu].tensor_parallel': an adapter on a stage of %d chips splitting each "
                          "layer's matrices (how A and B would be sharded) is not modelled; give the stage's layers "
                          "to one chip, or drop the adapter", L.sys.path, k, sc.tp);
    std::vector<es_adapter_spec> a = L.adapters;
    std::vector<std::vector<unsigned char>> flags(a.size());
    for (size_t j = 0; j < a.size(); j++) {
        if (!a[j].tensors) continue; /* every layer's projections of its roles */
        flags[j].assign((size_t)sm.n_tensors + 1, 0);
        for (int i = 0; i < sm.n_tensors; i++) {
            const es_tensor &t = sm.tensors[i];
            if (t.layer < 0 || t.expert >= 0) continue;
            const es_tensor *w = es_model_tensor(&L.m, t.layer + sm.layer_base, t.role);
            flags[j][(size_t)i] = w ? a[j].tensors[w - L.m.tensors] : 0;
        }
        a[j].tensors = flags[j].data();
    }
    if (es_map_set_adapters(pm, a.data(), (int)a.size(), e) == 0) return 0;
    char msg[sizeof e->msg];
    std::snprintf(msg, sizeof msg, "%s", e->msg);
    return es_fail(e, "%s: chips[%zu] (layers %d..%d of %s): %s", L.sys.path, k, sc.layer_first, sc.layer_last,
                   L.m.name, msg);
}

/* Chip k's slice of the model and its table, checked. */
static int load_slice(Loaded &L, size_t k, const es_recipe *r, es_err *e)
{
    es_sys_chip &sc = L.sys.chips[k];
    es_model sm;
    if (es_model_slice(&L.m, sc.layer_first, sc.layer_last, sc.embed, sc.head, &sm, e)) return -1;
    if (sc.tp > 1) { /* a tensor-parallel stage: one of its chips, holding its shard (es_system.h) */
        es_model sh;
        int rc = es_model_shard(&sm, sc.tp, &sh, e);
        es_model_free(&sm);
        if (rc) return -1;
        sm = sh;
    }
    bool shared = (k > 0 && L.sys.chips[k - 1].stage == sc.stage) ||
                  (k + 1 < (size_t)L.sys.n_chips && L.sys.chips[k + 1].stage == sc.stage);
    if (shared) { /* an expert-parallel stage: its own experts (es_system.h) */
        es_model ex;
        int rc = es_model_expert_slice(&sm, sc.expert_first, sc.expert_last, &ex, e);
        es_model_free(&sm);
        if (rc) return -1;
        sm = ex;
    }
    L.slices.push_back(sm);
    es_map pm{};
    int rc = r ? es_rom_apply_recipe(r, &sc.chip, &L.slices.back(), &pm, e)
               : es_map_build(&pm, &sc.chip, &L.slices.back(), nullptr, e);
    if (rc) return -1;
    L.maps.push_back(pm);
    if (!L.adapters.empty() && slice_adapters(L, k, &L.maps.back(), e)) return -1;
    if (es_map_check(&L.maps.back(), e) == 0) return 0;
    char msg[sizeof e->msg];
    std::snprintf(msg, sizeof msg, "%s", e->msg);
    return es_fail(e, "%s: chips[%zu] (layers %d..%d of %s): %s", L.sys.path, k, sc.layer_first, sc.layer_last,
                   L.m.name, msg);
}

int load_system(const std::string &system, const std::string &model_spec, const std::vector<std::string> &sets,
                const std::string &recipe, Loaded &L, es_err *e)
{
    std::vector<const char *> sv, link; /* the chips' sets; the link's (system.link.KEY=VALUE, without "system.") */
    for (auto &s : sets) {
        if (!s.compare(0, 7, "system.")) link.push_back(s.c_str() + 7);
        else sv.push_back(s.c_str());
    }
    if (es_system_load_link(&L.sys, system.c_str(), sv.data(), (int)sv.size(), link.data(), (int)link.size(), e))
        return -1;
    L.have_sys = true;
    if (es_model_load(&L.m, model_spec.empty() ? L.sys.model : model_spec.c_str(), e)) return -1;
    L.have_m = true;
    if (es_system_check(&L.sys, &L.m, e) || load_adapter_files(L, e)) return -1;
    if (es_chip_load(&L.c, L.sys.chips[0].chip.path, sv.data(), (int)sv.size(), e)) return -1;
    L.have_c = true;
    L.c.card_link = L.sys.chips[0].chip.card_link; /* the energy of the run's card links, by event */
    L.formats = "chip weights.*";
    es_recipe r;
    if (!recipe.empty()) {
        if (es_recipe_load(&r, recipe.c_str(), e)) return -1;
        L.formats = std::string("recipe ") + r.name + " (" + r.path + ")";
        L.formats_from = "recipe";
    }
    L.slices.reserve((size_t)L.sys.n_chips); /* no reallocation: each table points at its slice */
    L.maps.reserve((size_t)L.sys.n_chips);
    int rc = 0;
    for (size_t k = 0; k < (size_t)L.sys.n_chips && rc == 0; k++) rc = load_slice(L, k, recipe.empty() ? nullptr : &r, e);
    if (!recipe.empty()) es_recipe_free(&r);
    return rc;
}

const char *system_opts_conflict(const std::string &system, bool chip_given, bool rom, bool cosim, const char **arg)
{
    *arg = nullptr;
    if (chip_given) {
        *arg = system.c_str();
        return "give --system or --chip, not both (a system file names its chips); got --system";
    }
    if (rom) return "--rom with --system: a ROM image holds one chip's weights; use --recipe";
    if (cosim) return "--rtl-cosim with --system is not modelled";
    return nullptr;
}

std::string timed_recipe(const std::string &recipe, bool functional, bool quantizes)
{
    if (!recipe.empty()) return recipe;
    return functional && quantizes ? "hc1-mix" : "";
}

cJSON *formats_json(const Loaded &L)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "from", L.formats_from.c_str());
    cJSON_AddStringToObject(j, "name", L.formats.c_str());
    return j;
}

cJSON *area_json(const es_area &a)
{
    cJSON *j = cJSON_CreateObject();
    for (int i = 0; i < ES_AREA_N; i++) {
        if (!es_area_listed(&a, i)) continue;
        cJSON *k = cJSON_AddObjectToObject(j, es_area_name(i));
        cJSON_AddNumberToObject(k, "mm2", a.mm2[i]);
        cJSON_AddNumberToObject(k, "transistors", a.tr[i]);
        cJSON_AddNumberToObject(k, "leakage_w", a.leak_w[i]);
    }
    return j;
}

// One adapter's own figures in table pm (adapter_json's "adapters" list).
static cJSON *one_adapter_json(const Loaded &L, const es_map &pm, int k)
{
    const es_map_adapter &a = pm.adapters[k];
    char roles[64];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "id", k);
    if ((size_t)k < L.loras.size()) cJSON_AddStringToObject(j, "file", L.loras[(size_t)k].path);
    cJSON_AddNumberToObject(j, "tensors", (double)a.tensors);
    cJSON_AddNumberToObject(j, "rank", a.rank);
    cJSON_AddStringToObject(j, "roles", es_adapter_roles_text(a.roles, roles, sizeof roles));
    cJSON_AddNumberToObject(j, "alpha", a.alpha);
    cJSON_AddNumberToObject(j, "scale", a.scale);
    cJSON_AddNumberToObject(j, "bytes_per_tile", (double)(a.tile_bits / 8));
    cJSON_AddNumberToObject(j, "bytes", (double)(a.total_bits / 8));
    return j;
}

// Which adapters: one's file, rank, roles, alpha and scale; several: their count.
static void adapter_who_json(const Loaded &L, const es_map &pm, int64_t tensors, cJSON *j)
{
    const es_map_adapter &a = pm.adapter;
    char roles[64];
    if (pm.n_adapters == 1) { /* one adapter: its own figures; several: each one's in "adapters" */
        if (!L.loras.empty()) cJSON_AddStringToObject(j, "file", L.loras[0].path);
        cJSON_AddNumberToObject(j, "tensors", (double)tensors);
        cJSON_AddNumberToObject(j, "rank", a.rank);
        cJSON_AddStringToObject(j, "roles", es_adapter_roles_text(a.roles, roles, sizeof roles));
        cJSON_AddNumberToObject(j, "alpha", a.alpha);
        cJSON_AddNumberToObject(j, "scale", a.scale);
    } else {
        cJSON_AddNumberToObject(j, "count", pm.n_adapters);
        cJSON_AddNumberToObject(j, "tensors", (double)tensors);
    }
}

// The adapters' figures in one table (a chip alone's, or a system's chip's).
static cJSON *map_adapter_json(const Loaded &L, const es_map &pm)
{
    const es_map_adapter &a = pm.adapter;
    cJSON *j = cJSON_CreateObject();
    adapter_who_json(L, pm, a.tensors, j);
    cJSON_AddNumberToObject(j, "element_bits", a.elem_bits);
    cJSON_AddNumberToObject(j, "bytes_per_tile", (double)(a.tile_bits / 8));
    cJSON_AddNumberToObject(j, "bytes", (double)(a.total_bits / 8));
    cJSON_AddNumberToObject(j, "kv_bytes_per_tile_left", (double)(pm.kv_bits / 8));
    cJSON_AddNumberToObject(j, "kv_positions", (double)pm.kv_positions);
    cJSON_AddNumberToObject(j, "kv_positions_without", (double)a.kv_positions_without);
    cJSON_AddNumberToObject(j, "kv_slots", (double)pm.kv_slots);
    cJSON_AddNumberToObject(j, "kv_slots_without", (double)a.kv_slots_without);
    cJSON_AddNumberToObject(j, "kv_slots_lost", (double)(a.kv_slots_without - pm.kv_slots));
    if (pm.n_adapters > 1) {
        cJSON *list = cJSON_AddArrayToObject(j, "adapters");
        for (int k = 0; k < pm.n_adapters; k++) cJSON_AddItemToArray(list, one_adapter_json(L, pm, k));
    }
    return j;
}

cJSON *adapter_json(const Loaded &L)
{
    if (L.n_adapters() == 0) return cJSON_CreateNull();
    if (!L.have_sys) return map_adapter_json(L, L.map);
    /* a system: all its chips' tensors and bytes; its KV slots the fewest of any stage, an expert-parallel stage's
       (chips holding the same layers, each holding its sequences whole) its chips' together */
    int64_t tensors = 0, bits = 0, slots = INT64_MAX, without = INT64_MAX, st_slots = 0, st_without = 0;
    for (size_t k = 0; k < L.maps.size(); k++) {
        const es_map &pm = L.maps[k];
        tensors += pm.adapter.tensors;
        bits += pm.adapter.total_bits;
        st_slots += pm.kv_slots;
        st_without += pm.adapter.kv_slots_without;
        if (k + 1 < L.maps.size() && L.maps[k + 1].model->layer_base == pm.model->layer_base) continue;
        slots = std::min(slots, st_slots);
        without = std::min(without, st_without);
        st_slots = st_without = 0;
    }
    cJSON *j = cJSON_CreateObject();
    adapter_who_json(L, L.maps[0], tensors, j);
    cJSON_AddNumberToObject(j, "bytes", (double)(bits / 8));
    cJSON_AddNumberToObject(j, "kv_slots", (double)slots);
    cJSON_AddNumberToObject(j, "kv_slots_without", (double)without);
    cJSON_AddNumberToObject(j, "kv_slots_lost", (double)(without - slots));
    return j;
}

// The adapters of one table as a summary line.
static std::string map_adapter_text(const es_map &pm)
{
    const es_map_adapter &a = pm.adapter;
    char roles[64], who[96], b[512];
    if (pm.n_adapters == 1)
        std::snprintf(who, sizeof who, "adapter rank %d on %s", a.rank, es_adapter_roles_text(a.roles, roles, sizeof roles));
    else
        std::snprintf(who, sizeof who, "%d adapters", pm.n_adapters);
    std::snprintf(b, sizeof b, "%s: %lld bytes per tile in the KV SRAM (%lld in all); KV slots of "
                  "%lld positions %lld -> %lld (%lld lost), positions %lld -> %lld",
                  who, (long long)(a.tile_bits / 8),
                  (long long)(a.total_bits / 8), (long long)pm.chip->kv.slot_context, (long long)a.kv_slots_without,
                  (long long)pm.kv_slots, (long long)(a.kv_slots_without - pm.kv_slots),
                  (long long)a.kv_positions_without, (long long)pm.kv_positions);
    return b;
}

std::string adapter_text(const Loaded &L)
{
    if (L.n_adapters() == 0) return "";
    if (!L.have_sys) return map_adapter_text(L.map);
    cJSON *j = adapter_json(L); /* a system: its sums and its fewest slots; each chip's line in print_system */
    const es_map_adapter &a = L.maps[0].adapter;
    char roles[64], who[96], b[512];
    if (L.maps[0].n_adapters == 1)
        std::snprintf(who, sizeof who, "adapter rank %d on %s", a.rank, es_adapter_roles_text(a.roles, roles, sizeof roles));
    else
        std::snprintf(who, sizeof who, "%d adapters", L.maps[0].n_adapters);
    bool ep = false; /* an expert-parallel stage: its slots are its chips' together */
    for (size_t k = 1; k < L.maps.size(); k++) ep |= L.maps[k].model->layer_base == L.maps[k - 1].model->layer_base;
    std::snprintf(b, sizeof b, "%s: %.0f bytes in the %d chips' KV SRAM; KV slots, the fewest of any %s, "
                  "%.0f -> %.0f (%.0f lost); each chip's below", who, cJSON_GetObjectItem(j, "bytes")->valuedouble,
                  L.sys.n_chips, ep ? "stage (of several chips, theirs together)" : "chip",
                  cJSON_GetObjectItem(j, "kv_slots_without")->valuedouble,
                  cJSON_GetObjectItem(j, "kv_slots")->valuedouble, cJSON_GetObjectItem(j, "kv_slots_lost")->valuedouble);
    cJSON_Delete(j);
    return b;
}

int set_adapters(Loaded &L, const std::vector<std::string> &files, int64_t rank, const std::string &roles,
                 int64_t count, es_err *e)
{
    L.adapter_files = files;
    if (rank <= 0) return 0;
    es_adapter_spec a{};
    if (es_adapter_roles_parse(roles.c_str(), &a.roles, e)) return -1;
    a.rank = (int)rank;
    a.alpha = (double)rank; /* timing alone: alpha = rank, a scale of 1 */
    L.adapters.assign((size_t)(count > 0 ? count : 1), a);
    return 0;
}

int dp_set_adapters(es_dp *dp, const Loaded &L, es_err *e)
{
    std::vector<es_dp_lora> v; /* timing's adapters (--adapter-rank) have no matrices: they change no value */
    for (int k = 0; k < L.n_adapters(); k++) { /* L.adapters as placed (a system's are the whole model's) */
        const es_lora *l = (size_t)k < L.loras.size() ? &L.loras[(size_t)k] : nullptr;
        const es_adapter_spec &a = L.adapters[(size_t)k];
        v.push_back(l ? es_dp_lora{(const float *const *)l->a, (const float *const *)l->b, l->rank, l->alpha / l->rank}
                      : es_dp_lora{nullptr, nullptr, a.rank, a.alpha / a.rank});
    }
    return v.empty() ? 0 : es_dp_set_loras(dp, v.data(), (int)v.size(), e);
}

namespace {
/* The windows whose average power is above the limit: a reactive governor's first window and windows whose load
   grew (it acts a window late), an ideal one's only at its lowest clock */
template <class R> int64_t windows_over(const R &r)
{
    int64_t n = 0;
    for (double x : r.window_w) n += x > r.power_limit_w;
    return n;
}

/* A power limit's figures (a run's, RunResult; a system's chip's, ChipResult: the same fields) at its effective clock */
template <class R> cJSON *limit_json(const R &r, double effective_hz)
{
    if (r.power_limit_w <= 0) return cJSON_CreateNull();
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "limit_w", r.power_limit_w);
    cJSON_AddNumberToObject(j, "window_s", r.window_s);
    cJSON_AddNumberToObject(j, "throttled_s", r.throttled_s);
    double peak = 0;
    for (double x : r.window_w) peak = x > peak ? x : peak;
    cJSON_AddNumberToObject(j, "windows", (double)r.window_w.size());
    cJSON_AddNumberToObject(j, "max_window_w", peak);
    cJSON_AddNumberToObject(j, "windows_over_limit", (double)windows_over(r));
    cJSON_AddNumberToObject(j, "effective_clock_hz", effective_hz);
    cJSON_AddNumberToObject(j, "min_clock_hz", r.min_clock_hz);
    if (r.window_w.size() <= 10000) { /* each window's watts, for a plot; the count and maximum always */
        cJSON *w = cJSON_AddArrayToObject(j, "window_w");
        for (double x : r.window_w) cJSON_AddItemToArray(w, cJSON_CreateNumber(x));
    }
    if (!r.window_clock_hz.empty() && r.window_clock_hz.size() <= 10000) { /* the reactive governor's */
        cJSON *w = cJSON_AddArrayToObject(j, "window_clock_hz");
        for (double x : r.window_clock_hz) cJSON_AddItemToArray(w, cJSON_CreateNumber(x));
    }
    return j;
}

template <class R> std::string limit_text(const R &r, double effective_hz)
{
    if (r.power_limit_w <= 0) return "";
    double peak = 0;
    for (double x : r.window_w) peak = x > peak ? x : peak;
    char buf[384];
    int n = std::snprintf(buf, sizeof buf, "%.1f W over %.6g s windows: %s%.3f ms throttled, effective clock %.4g GHz "
                          "(lowest %.4g), highest window %.1f W",
                          r.power_limit_w, r.window_s, r.throttled_s > 0 ? "" : "never engaged, ", r.throttled_s * 1e3,
                          effective_hz / 1e9, r.min_clock_hz / 1e9, peak);
    int64_t over = windows_over(r);
    if (over > 0 && n > 0 && (size_t)n < sizeof buf)
        std::snprintf(buf + n, sizeof buf - (size_t)n, ", %lld of %zu windows over the limit%s", (long long)over,
                      r.window_w.size(), r.window_clock_hz.empty() ? "" : " (the reactive governor acts a window late)");
    return buf;
}

/* A system's chip's effective clock: its cycles over the run's seconds */
double chip_effective_hz(const es::ChipResult &c, const es::RunResult &r)
{
    return r.seconds > 0 ? (double)c.cycles / r.seconds : c.clock_hz;
}

} // namespace

cJSON *power_limit_json(const es::RunResult &r)
{
    return limit_json(r, r.seconds > 0 ? (double)r.cycles / r.seconds : r.clock_hz);
}

std::string power_limit_text(const es::RunResult &r)
{
    return limit_text(r, r.seconds > 0 ? (double)r.cycles / r.seconds : r.clock_hz);
}

cJSON *energy_by_event_json(const es_chip *c, const RunResult &r)
{
    const std::vector<es_unit_rec> &units = r.units;
    const es_area &a = r.area;
    const double seconds = r.seconds, cycles = (double)r.cycles, clock_w = r.clock_w;
    const bool sys = !r.chips.empty();
    es_events ev{};
    for (const auto &u : units) es_events_add(&ev, &u.ev);
    const double k = 1.0 / c->card.vr_eff; /* card joules per chip joule */
    double t[ES_EJ_N];
    es_events_terms(c, &ev, t); /* the energies es_events_joules charges, by kind */
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "rom_reads", t[ES_EJ_ROM] * k);
    if (c->store.kind != ES_STORE_ROM) cJSON_AddNumberToObject(j, "store_reads", t[ES_EJ_STORE] * k);
    cJSON_AddNumberToObject(j, "lane_adds", t[ES_EJ_CELL] * k);
    cJSON_AddNumberToObject(j, "registers", t[ES_EJ_REG] * k);
    cJSON_AddNumberToObject(j, "clock_network", t[ES_EJ_CLK] * k);
    cJSON_AddNumberToObject(j, "vector", t[ES_EJ_VEC] * k);
    cJSON_AddNumberToObject(j, "attention_macs", t[ES_EJ_ATTN] * k);
    cJSON_AddNumberToObject(j, "sram", (t[ES_EJ_KV_RD] + t[ES_EJ_STATE_RD] + t[ES_EJ_KV_WR] + t[ES_EJ_STATE_WR]) * k);
    cJSON_AddNumberToObject(j, "links", t[ES_EJ_LINK] * k);
    cJSON_AddNumberToObject(j, "host", t[ES_EJ_HOST] * k);
    if (c->card_link.bits_per_s > 0) cJSON_AddNumberToObject(j, "card_links", t[ES_EJ_CARD] * k);
    if (sys) { /* every chip's, each tensor-parallel stage's copies counted */
        cJSON_AddNumberToObject(j, "leakage", r.sys_leak_w * seconds);
        cJSON_AddNumberToObject(j, "clock_ungated", r.sys_clock_w * seconds);
        cJSON_AddNumberToObject(j, "board", r.sys_board_w * seconds);
        if (r.sys_store_w > 0) cJSON_AddNumberToObject(j, "store_static", r.sys_store_w * seconds);
        return j;
    }
    cJSON_AddNumberToObject(j, "leakage", a.leak_total_w * k * seconds);
    cJSON_AddNumberToObject(j, "clock_ungated", clock_w * cycles / c->clock_hz); /* per cycle, at any clock */
    cJSON_AddNumberToObject(j, "board", c->card.board_w * seconds);
    if (c->store.kind == ES_STORE_HBM) cJSON_AddNumberToObject(j, "store_static", c->store.static_w * seconds);
    return j;
}

cJSON *utilization_json(const std::vector<es_unit_rec> &units, double die_mm2, double die_utilization,
                        int64_t cycles)
{
    static const char *kinds[5] = {"lanes", "vector", "attention", "head", "embed"};
    double area[5] = {0}, active[5] = {0};
    for (const auto &u : units) {
        const char *dot = std::strchr(u.name, '.');
        const char *kind = dot ? dot + 1 : u.name;
        for (int k = 0; k < 5; k++)
            if (!std::strcmp(kind, kinds[k]) && u.area_mm2 > 0) {
                area[k] += u.area_mm2;
                active[k] += u.area_mm2 * (double)u.busy_cycles;
            }
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "die", die_utilization);
    cJSON_AddNumberToObject(j, "die_area_mm2", die_mm2);
    cJSON *by = cJSON_AddObjectToObject(j, "by_resource");
    for (int k = 0; k < 5; k++) {
        if (area[k] <= 0) continue;
        cJSON *o = cJSON_AddObjectToObject(by, kinds[k]);
        cJSON_AddNumberToObject(o, "area_mm2", area[k]);
        cJSON_AddNumberToObject(o, "busy_fraction", cycles > 0 ? active[k] / (area[k] * (double)cycles) : 0);
    }
    return j;
}

const char *unit_base(const char *name)
{
    if (name[0] != 'c' || name[1] < '0' || name[1] > '9') return name;
    const char *p = name + 1;
    while (*p >= '0' && *p <= '9') p++;
    return *p == '_' ? p + 1 : name;
}

/* The chips of stage `stage` of a system: [*first, *last]. */
static void stage_chips(const es_system &s, int stage, int *first, int *last)
{
    *first = *last = -1;
    for (int i = 0; i < s.n_chips; i++)
        if (s.chips[i].stage == stage) *last = i, *first = *first < 0 ? i : *first;
}

/* The card links of a system run: each chip's "card" (to the next stage: its chip, or the chip of an expert-parallel
 * stage holding the sequence), the last's "card_feedback" and, on an expert-parallel stage, each chip's "a2a" (to the
 * other chips of its stage: dispatch and combine); "to" and "to_last" the chips it reaches. */
static void system_links(const Loaded &L, const RunResult &r, cJSON *links)
{
    for (const auto &u : r.units) {
        const char *b = unit_base(u.name);
        bool fb = !std::strcmp(b, "card_feedback"), ring = !std::strcmp(b, "ring"), a2a = !std::strcmp(b, "a2a");
        if (!fb && !ring && !a2a && std::strcmp(b, "card")) continue;
        int k = b == u.name ? 0 : std::atoi(u.name + 1); /* "c3_card": 3; a system of one chip: no prefix */
        int to = k, to_last = k, st = k < L.sys.n_chips ? L.sys.chips[k].stage : 0;
        if (fb) to = to_last = 0;
        else if (a2a) stage_chips(L.sys, st, &to, &to_last);
        else if (!ring) stage_chips(L.sys, (st + 1) % L.sys.n_stages, &to, &to_last); /* ring: a stage's all-reduces */
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "unit", u.name);
        cJSON_AddNumberToObject(l, "from", k);
        cJSON_AddNumberToObject(l, "to", to);
        cJSON_AddNumberToObject(l, "to_last", to_last);
        cJSON_AddNumberToObject(l, "busy_fraction", r.cycles > 0 ? (double)u.busy_cycles / (double)r.cycles : 0);
        cJSON_AddNumberToObject(l, "tokens", (double)u.tokens);
        cJSON_AddItemToArray(links, l);
    }
}

cJSON *system_json(const Loaded &L, const RunResult &r, const Cost &k)
{
    if (!L.have_sys) return cJSON_CreateNull();
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", L.sys.name);
    cJSON_AddStringToObject(j, "path", L.sys.path);
    cJSON *l = cJSON_AddObjectToObject(j, "link");
    cJSON_AddStringToObject(l, "topology", es_topo_name(L.sys.link.topo));
    cJSON_AddNumberToObject(l, "bandwidth_bits_per_s", L.sys.link.bits_per_s);
    cJSON_AddNumberToObject(l, "latency_ns", L.sys.link.latency_ns);
    cJSON_AddNumberToObject(l, "energy_pj_per_bit", L.sys.link.pj_per_bit);
    cJSON *chips = cJSON_AddArrayToObject(j, "chips");
    for (const auto &c : r.chips) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "chip", c.name.c_str());
        cJSON *ly = cJSON_AddArrayToObject(x, "layers");
        cJSON_AddItemToArray(ly, cJSON_CreateNumber((double)c.layer_first));
        cJSON_AddItemToArray(ly, cJSON_CreateNumber((double)c.layer_last));
        cJSON_AddNumberToObject(x, "area_mm2", c.area.total_mm2);
        cJSON_AddNumberToObject(x, "transistors", c.area.total_tr);
        cJSON_AddNumberToObject(x, "kv_positions", (double)c.kv_positions);
        cJSON_AddNumberToObject(x, "kv_max_used", (double)c.kv_max_used);
        cJSON_AddNumberToObject(x, "dynamic_j", c.dynamic_j);
        cJSON_AddNumberToObject(x, "leakage_w", c.leak_w);
        cJSON_AddNumberToObject(x, "board_w", c.board_w);
        size_t i = (size_t)cJSON_GetArraySize(chips); /* each chip's card, when the cost is known */
        if (i < k.chips.size()) cJSON_AddNumberToObject(x, "card_usd", k.chips[i].card_usd);
        else cJSON_AddNullToObject(x, "card_usd");
        cJSON_AddNumberToObject(x, "tensor_parallel", (double)c.copies);
        cJSON_AddNumberToObject(x, "clock_hz", c.clock_hz);
        cJSON_AddNumberToObject(x, "cycles", (double)c.cycles);
        cJSON_AddNumberToObject(x, "busy_cycles", (double)c.busy_cycles);
        cJSON_AddNumberToObject(x, "die_utilization", c.die_utilization);
        cJSON_AddItemToObject(x, "power_limit", limit_json(c, chip_effective_hz(c, r)));
        if (i < L.maps.size() && L.n_adapters() > 0) cJSON_AddItemToObject(x, "adapter", map_adapter_json(L, L.maps[i]));
        cJSON_AddItemToArray(chips, x);
    }
    system_links(L, r, cJSON_AddArrayToObject(j, "links"));
    return j;
}

void print_system(const Loaded &L, const RunResult &r)
{
    if (!L.have_sys) return;
    int chips = 0;
    for (int k = 0; k < L.sys.n_chips; k++) chips += L.sys.chips[k].tp;
    std::printf("  system %s: %d chips, card links %.4g Gbit/s, %.4g ns, %.4g pJ/bit (%s)\n", L.sys.name,
                chips, L.sys.link.bits_per_s / 1e9, L.sys.link.latency_ns, L.sys.link.pj_per_bit,
                es_topo_name(L.sys.link.topo));
    std::printf("    %-4s %-24s %9s %9s %12s %10s\n", "chip", "config", "layers", "mm2", "KV positions", "dynamic J");
    for (size_t k = 0; k < r.chips.size(); k++) {
        const ChipResult &c = r.chips[k];
        char ly[32];
        std::snprintf(ly, sizeof ly, "%lld-%lld", (long long)c.layer_first, (long long)c.layer_last);
        std::string nm = c.name + (c.copies > 1 ? " x" + std::to_string(c.copies) + " (tp)" : "");
        std::printf("    %-4zu %-24s %9s %9.1f %12lld %10.4g\n", k, nm.c_str(), ly, c.area.total_mm2,
                    (long long)c.kv_positions, c.dynamic_j);
    }
    for (size_t k = 0; k < r.chips.size(); k++)
        if (r.chips[k].power_limit_w > 0)
            std::printf("    chip %zu power limit %s\n", k, limit_text(r.chips[k], chip_effective_hz(r.chips[k], r)).c_str());
    for (size_t k = 0; k < L.maps.size() && L.n_adapters() > 0; k++)
        std::printf("    chip %zu %s\n", k, map_adapter_text(L.maps[k]).c_str());
    cJSON *links = cJSON_CreateArray();
    system_links(L, r, links);
    cJSON *x;
    cJSON_ArrayForEach(x, links) {
        int to = cJSON_GetObjectItem(x, "to")->valueint, last = cJSON_GetObjectItem(x, "to_last")->valueint;
        std::string dst = std::to_string(to) + (last != to ? ".." + std::to_string(last) : "");
        std::printf("    link %-18s chip %d -> %s: busy %.2f %% of the run, %.0f tokens\n",
                    cJSON_GetObjectItem(x, "unit")->valuestring, cJSON_GetObjectItem(x, "from")->valueint,
                    dst.c_str(), 100.0 * cJSON_GetObjectItem(x, "busy_fraction")->valuedouble,
                    cJSON_GetObjectItem(x, "tokens")->valuedouble);
    }
    cJSON_Delete(links);
}

cJSON *busy_fraction_json(const std::vector<es_unit_rec> &units, int64_t store_busy_cycles, int64_t cycles)
{
    static const char *kinds[3] = {"lanes", "attention", "link"}; /* tileN.lanes, tileN.attention, linkN */
    double busy[3] = {0};
    int n[3] = {0};
    for (const auto &u : units) {
        const char *name = unit_base(u.name), *dot = std::strchr(name, '.');
        for (int k = 0; k < 3; k++)
            if (k == 2 ? !dot && !std::strncmp(name, "link", 4) : dot && !std::strcmp(dot + 1, kinds[k])) {
                busy[k] += (double)u.busy_cycles;
                n[k]++;
            }
    }
    const double cyc = (double)cycles;
    cJSON *j = cJSON_CreateObject();
    if (store_busy_cycles >= 0 && cycles > 0) cJSON_AddNumberToObject(j, "store", (double)store_busy_cycles / cyc);
    else cJSON_AddNullToObject(j, "store");
    static const char *keys[3] = {"lanes", "attention", "links"};
    for (int k = 0; k < 3; k++) {
        if (n[k] > 0 && cycles > 0) cJSON_AddNumberToObject(j, keys[k], busy[k] / (n[k] * cyc));
        else cJSON_AddNullToObject(j, keys[k]);
    }
    return j;
}

std::vector<es_unit_rec> db_units(const RunResult &r)
{
    std::vector<es_unit_rec> u = r.units;
    if (r.store_busy_cycles < 0) return u; /* a ROM, or a store per tile: its reads are in the tiles' rows */
    es_unit_rec s{};
    std::snprintf(s.name, sizeof s.name, "store");
    s.busy_cycles = r.store_busy_cycles;
    for (const auto &x : r.units) s.ev.store_bits += x.ev.store_bits;
    u.push_back(s);
    return u;
}

Cost::~Cost()
{
    if (have_d) es_deploy_free(&d);
}

int load_deploy(const std::string &deploy, bool given, const std::vector<std::string> &deploy_sets, Cost &k,
                bool required, es_err *e)
{
    std::vector<const char *> sets;
    for (const auto &s : deploy_sets) sets.push_back(s.c_str());
    if (es_deploy_load(&k.d, deploy.c_str(), sets.data(), (int)sets.size(), e)) {
        if (required || given || !deploy_sets.empty()) return -1;
        k.why = e->msg;
        e->msg[0] = 0;
        return 0;
    }
    k.have_d = true;
    return 0;
}

/* A system's cost: every figure es_cost_compute gives is linear in the card's price and in watts, so the system's is
 * the sum of each chip's (its die's area, its card and its host share), the run's card watts charged once. */
static int compute_cost_system(const es::Loaded &L, const es::RunResult &r, Cost &k, es_err *e)
{
    es_cost sum{};
    for (int i = 0; i < L.sys.n_chips; i++) {
        /* a tensor-parallel entry stands for tp cards alike; a system of one entry has no per-chip results */
        int tp = L.sys.chips[i].tp;
        double mm2 = r.chips.empty() ? r.area.total_mm2 / tp : r.chips[(size_t)i].area.total_mm2;
        for (int c = 0; c < tp; c++) {
            es_cost x{};
            if (es_cost_compute(&L.sys.chips[i].chip, &k.d, mm2, i == 0 && c == 0 ? r.watts : 0.0, r.tokens_per_s,
                                r.joules_per_token, &x, e))
                return -1;
            if (c == 0) k.chips.push_back(x); /* each entry's card (its tp cards are alike) */
            if (i == 0 && c == 0) sum = x; /* the die figures are the first chip's */
            else es_cost_add(&sum, &x);
        }
    }
    k.c = sum;
    return 0;
}

int compute_cost(const es::Loaded &L, const es::RunResult &r, Cost &k, es_err *e)
{
    if (!k.have_d) return es_fail(e, "%s", k.why.c_str());
    if (L.have_sys ? compute_cost_system(L, r, k, e)
                   : es_cost_compute(&L.c, &k.d, r.area.total_mm2, r.watts, r.tokens_per_s, r.joules_per_token, &k.c, e)) {
        k.why = e->msg;
        return -1;
    }
    k.have = true;
    return 0;
}

cJSON *cost_json(const es_chip &c, const Cost &k)
{
    if (!k.have) return cJSON_CreateNull();
    const es_cost &x = k.c;
    const es_cost_cfg &in = c.cost;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "deploy", k.d.name);
    cJSON_AddStringToObject(j, "card_from", x.card_given ? "card_usd" : "die");
    if (x.card_given) {
        cJSON_AddNullToObject(j, "die");
    } else {
        cJSON *d = cJSON_AddObjectToObject(j, "die");
        cJSON_AddNumberToObject(d, "area_mm2", x.die_mm2);
        cJSON_AddNumberToObject(d, "wafer_usd", in.wafer_usd);
        cJSON_AddNumberToObject(d, "wafer_diameter_mm", in.wafer_mm);
        cJSON_AddNumberToObject(d, "edge_exclusion_mm", in.edge_mm);
        cJSON_AddNumberToObject(d, "dies_per_wafer", x.dies_per_wafer);
        cJSON_AddStringToObject(d, "yield_model", es_yield_name(in.yield_model));
        cJSON_AddNumberToObject(d, "defect_density_per_cm2", in.d0_cm2);
        if (in.yield_model == ES_YIELD_NEG_BINOMIAL) cJSON_AddNumberToObject(d, "clustering_alpha", in.alpha);
        cJSON_AddNumberToObject(d, "yield", x.yield);
        cJSON_AddNumberToObject(d, "die_usd", x.die_usd);
        cJSON_AddNumberToObject(d, "package_test_usd", in.package_test_usd);
        cJSON_AddNumberToObject(d, "board_usd", in.board_usd);
        if (c.store.kind == ES_STORE_HBM) { /* the stacks, off the die: in the card */
            cJSON_AddNumberToObject(d, "hbm_gb", x.hbm_gb);
            cJSON_AddNumberToObject(d, "hbm_usd_per_gb", in.hbm_usd_per_gb);
            cJSON_AddNumberToObject(d, "hbm_usd", x.hbm_usd);
        }
    }
    cJSON_AddNumberToObject(j, "card_usd", x.card_usd);
    cJSON_AddNumberToObject(j, "host_usd_per_card", in.host_usd);
    cJSON_AddNumberToObject(j, "system_usd", x.system_usd);
    cJSON_AddNumberToObject(j, "electricity_usd_per_kwh", k.d.usd_per_kwh);
    cJSON_AddNumberToObject(j, "pue", k.d.pue);
    cJSON_AddNumberToObject(j, "lifetime_years", k.d.lifetime_years);
    cJSON_AddNumberToObject(j, "utilization", k.d.utilization);
    cJSON_AddNumberToObject(j, "tokens_per_s", x.tokens_per_s);
    cJSON_AddNumberToObject(j, "watts", x.watts);
    cJSON_AddNumberToObject(j, "host_w_per_card", x.host_w);
    cJSON_AddNumberToObject(j, "joules_per_token", x.joules_per_token);
    cJSON_AddNumberToObject(j, "capex_usd_per_s", x.capex_usd_per_s);
    cJSON_AddNumberToObject(j, "energy_usd_per_s", x.energy_usd_per_s);
    cJSON_AddNumberToObject(j, "capex_usd_per_m_tokens", x.capex_usd_per_m_tokens);
    cJSON_AddNumberToObject(j, "energy_usd_per_m_tokens", x.energy_usd_per_m_tokens);
    cJSON_AddNumberToObject(j, "usd_per_m_tokens", x.usd_per_m_tokens);
    return j;
}

} // namespace es
