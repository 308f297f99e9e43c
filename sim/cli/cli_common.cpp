// cli_common: see cli_common.h.
#include "cli_common.h"
#include "es_recipe.h"
#include "es_rom.h"
#include <cstdio>
#include <cstring>

namespace es {

Loaded::~Loaded()
{
    if (have_map) es_map_free(&map);
    if (have_m) es_model_free(&m);
    if (have_c) es_chip_free(&c);
}

int load(const std::string &model, const std::string &chip, const std::vector<std::string> &sets,
         const std::string &rom, const std::string &recipe, Loaded &L, es_err *e)
{
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
    if (!L.have_map || es_map_check(&L.map, e)) {
        if (!rom.empty() || recipe.empty()) return -1;
        char msg[sizeof e->msg];
        std::snprintf(msg, sizeof msg, "%s", e->msg);
        return es_fail(e, "%s (weights in the formats of %s)", msg, L.formats.c_str());
    }
    return 0;
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

cJSON *power_limit_json(const es::RunResult &r)
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
    cJSON_AddNumberToObject(j, "effective_clock_hz", r.seconds > 0 ? (double)r.cycles / r.seconds : r.clock_hz);
    cJSON_AddNumberToObject(j, "min_clock_hz", r.min_clock_hz);
    if (r.window_w.size() <= 10000) { /* each window's watts, for a plot; the count and maximum always */
        cJSON *w = cJSON_AddArrayToObject(j, "window_w");
        for (double x : r.window_w) cJSON_AddItemToArray(w, cJSON_CreateNumber(x));
    }
    return j;
}

std::string power_limit_text(const es::RunResult &r)
{
    if (r.power_limit_w <= 0) return "";
    double peak = 0;
    for (double x : r.window_w) peak = x > peak ? x : peak;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%.1f W over %.6g s windows: %s%.3f ms throttled, effective clock %.4g GHz "
                  "(lowest %.4g), highest window %.1f W",
                  r.power_limit_w, r.window_s, r.throttled_s > 0 ? "" : "never engaged, ", r.throttled_s * 1e3,
                  r.seconds > 0 ? (double)r.cycles / r.seconds / 1e9 : r.clock_hz / 1e9, r.min_clock_hz / 1e9, peak);
    return buf;
}

cJSON *energy_by_event_json(const es_chip *c, const std::vector<es_unit_rec> &units, const es_area &a,
                            double clock_w, double seconds, double cycles)
{
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

cJSON *busy_fraction_json(const std::vector<es_unit_rec> &units, int64_t store_busy_cycles, int64_t cycles)
{
    static const char *kinds[3] = {"lanes", "attention", "link"}; /* tileN.lanes, tileN.attention, linkN */
    double busy[3] = {0};
    int n[3] = {0};
    for (const auto &u : units) {
        const char *dot = std::strchr(u.name, '.');
        for (int k = 0; k < 3; k++)
            if (k == 2 ? !dot && !std::strncmp(u.name, "link", 4) : dot && !std::strcmp(dot + 1, kinds[k])) {
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

int compute_cost(const es::Loaded &L, const es::RunResult &r, Cost &k, es_err *e)
{
    if (!k.have_d) return es_fail(e, "%s", k.why.c_str());
    if (es_cost_compute(&L.c, &k.d, r.area.total_mm2, r.watts, r.tokens_per_s, r.joules_per_token, &k.c, e)) {
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
