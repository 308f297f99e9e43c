// cli_common: pieces the commands share: loading a model and a chip (with
// --set overrides, an optional ROM image and the fit check), and the JSON
// of an area breakdown.
#ifndef CLI_COMMON_H
#define CLI_COMMON_H
#include <string>
#include <vector>
#include "es_db.h"
#include <cjson/cJSON.h>
#include "es_area.h"
#include "es_chip.h"
#include "es_lora.h"
#include "es_cost.h"
#include "es_map.h"
#include "es_model.h"
#include "es_system.h"
#include "es_top.h"

namespace es {

struct Loaded {
    es_model m{};
    es_chip c{};
    es_map map{}; // the placement table of m on c, in the formats below (es_map.h)
    bool have_m = false, have_c = false, have_map = false;
    // a system of chips (--system): its file (its chips loaded), each chip's slice of m and that slice's table;
    // c is then the first chip's configuration, loaded again (the figures that read one chip: clock, KV slot),
    // and map is not built
    es_system sys{};
    bool have_sys = false;
    std::vector<es_model> slices;
    std::vector<es_map> maps;
    // The tables a run simulates: the chip's (map), or each chip's of a system in pipeline order.
    std::vector<const es_map *> pms() const;
    // The adapters placed (ids 0 .. n - 1; 0: none): the chip's, or a system's (each chip holds every adapter's A
    // and B of its own layers).
    int n_adapters() const;
    // The adapter the analytic model gives every sequence (-1: none), on the chip's table or each chip's.
    void set_an_adapter(int k);
    std::string formats_from = "chip"; // where the formats timed come from: "chip", "recipe" or "rom"
    // LoRA adapters to place in the KV SRAM, ids 0, 1, ... in order (empty: none): set before load()
    std::vector<es_adapter_spec> adapters;
    std::vector<std::string> adapter_files; // or LoRA adapter files (--adapter, repeatable): load() reads them into
    std::vector<es_lora> loras;             // loras and sets adapters
    std::string formats; // which weight formats timing, area and energy follow: "chip weights.*",
                         // "recipe NAME (PATH)" or "ROM image PATH"
    Loaded() = default;
    Loaded(const Loaded &) = delete;
    Loaded &operator=(const Loaded &) = delete;
    ~Loaded();
};

// Load model and chip (with --set overrides); then the placement table in the weight formats timing, area and
// energy follow: a ROM image's real bits (rom), a recipe's as an image built with it would hold them (recipe), or
// else the chip's weights.* section; then the fit check (the table's), after L.adapters are placed (es_map_set_adapters).
int load(const std::string &model, const std::string &chip, const std::vector<std::string> &sets,
         const std::string &rom, const std::string &recipe, Loaded &L, es_err *e);
// Load a system of chips (es_system.h), the model (model_spec, or the system's own when empty), each chip's
// slice of it and its table in the weight formats of recipe (empty: each chip's weights.*), and check each
// fits; sets apply to every chip.
int load_system(const std::string &system, const std::string &model_spec, const std::vector<std::string> &sets,
                const std::string &recipe, Loaded &L, es_err *e);
// --system NAME beside the options a system does not take (run, cost, eval): null when none conflicts, else the
// usage error's message, with *arg its argument (or null).
const char *system_opts_conflict(const std::string &system, bool chip_given, bool rom, bool cosim, const char **arg);
// The recipe a command times: --recipe, else hc1-mix (es_func_datapath's default) when functional mode
// quantizes --weights or --synthetic weights, else none (the chip's weights.*).
std::string timed_recipe(const std::string &recipe, bool functional, bool quantizes);
// The JSON of Loaded::formats: {"from": "chip"|"recipe"|"rom", "name": ...}.
cJSON *formats_json(const Loaded &L);
cJSON *area_json(const es_area &a);
// The adapters' figures (null without one): rank, roles, alpha, scale, element bits, bytes per tile and in all, KV
// positions and slots with and without them, slots lost; with several, "count" and each one's in "adapters".
// A system: rank, roles, alpha and scale (or count), the tensors and bytes of all its chips, and the KV slots of
// the chip holding the fewest (with and without, and lost); each chip's own figures are its "adapter" in
// system_json's "chips".
cJSON *adapter_json(const Loaded &L);
// The same as a summary line ("" without an adapter); a system: its bytes and the fewest KV slots (print_system
// gives each chip's line).
std::string adapter_text(const Loaded &L);
// The adapter options (run, eval): --adapter FILE (files, repeatable) or --adapter-rank R --adapter-roles L
// --adapter-count K (rank 0: none; count 0: not given) into L's adapters or adapter_files; 0, or -1 with e.
int set_adapters(Loaded &L, const std::vector<std::string> &files, int64_t rank, const std::string &roles,
                 int64_t count, es_err *e);
// The datapath's view of the adapter files (functional mode): 0, or -1 with e.
int dp_set_adapters(es_dp *dp, const Loaded &L, es_err *e);
// The power limit's figures (null without a limit): limit, window, time throttled, effective and lowest
// clock, each window's average watts.
cJSON *power_limit_json(const es::RunResult &r);
// The same as summary lines ("" without a limit).
std::string power_limit_text(const es::RunResult &r);
// A unit's name without a system's chip prefix ("c1_tile0.lanes" -> "tile0.lanes"; es_die.h).
const char *unit_base(const char *name);
// The same as lines of text.
void print_system(const Loaded &L, const RunResult &r);
// Card energy of a run by kind of event (ROM reads, lane adds, registers, ...) and of static power
// (leakage, board, clock without gating), joules; the parts add up to the run's energy.
// c: the chip whose process prices the events (a system's first). A system's static parts are all its chips'.
cJSON *energy_by_event_json(const es_chip *c, const RunResult &r);
// Utilization of a run: {"die": fraction, "by_resource": {"lanes": {"area_mm2", "busy_fraction"}, ...}}:
// each resource kind's area-weighted busy time over its area x run time, the die's
// over the die's area (control, I/O and wires count as idle).
cJSON *utilization_json(const std::vector<es_unit_rec> &units, double die_mm2, double die_utilization,
                        int64_t cycles);
// Where a run's time goes: {"store", "lanes", "attention", "links"}: each kind's units' busy cycles /
// (its units x run cycles); "store" is a chip-scope weight store's booked cycles / run cycles, null
// without one (a ROM or a store per tile streams inside the lanes' bookings); a kind the chip lacks is null.
cJSON *busy_fraction_json(const std::vector<es_unit_rec> &units, int64_t store_busy_cycles, int64_t cycles);

// The database's unit_stats rows of a run: its units, and with a chip-scope SRAM or HBM weight store one more,
// "store": the cycles booked on it (RunResult::store_busy_cycles) and the weight bits read from it (the
// units' events' store_bits summed); its energy is the units' that read it and its area no unit's (0 both).
std::vector<es_unit_rec> db_units(const RunResult &r);

// The deployment and a run's cost (es_cost.h); when it is not known, why. run, cost and eval share it.
struct Cost {
    es_deploy d{};
    bool have_d = false, have = false;
    es_cost c{};
    std::vector<es_cost> chips;        // a system: each chip's own figures (its die, card and host share)
    std::string why;
    Cost() = default;
    Cost(const Cost &) = delete;
    Cost &operator=(const Cost &) = delete;
    ~Cost();
};
// Load --deploy (deploy, given: named on the command line) and the deploy.* sets. A command given
// neither asks for the default quietly: when it is missing (another models folder), the cost is not
// known and k.why says why; with required (etchsim cost) it is an error.
int load_deploy(const std::string &deploy, bool given, const std::vector<std::string> &deploy_sets, Cost &k,
                bool required, es_err *e);
// A run's cost from its die area, card watts and tokens/s: -1 with the reason in e (and k.why) when not known.
int compute_cost(const Loaded &L, const RunResult &r, Cost &k, es_err *e);
// run --json's, cost --json's and eval --json's "cost" (null when not known).
cJSON *cost_json(const es_chip &c, const Cost &k);
// A system run's chips and card links (null for a chip alone): {"name", "path", "link": {...}, "chips": [{"chip",
// "layers", "area_mm2", "transistors", "kv_positions", "kv_max_used", "dynamic_j", "leakage_w", "board_w",
// "card_usd" (k's, null when the cost is not known), "adapter" (with adapters: adapter_json's figures of its own
// table, else absent)}], "links": [{"unit", "from", "to", "busy_fraction", "tokens"}]}.
// run --json's and eval --json's "system".
cJSON *system_json(const Loaded &L, const RunResult &r, const Cost &k);

} // namespace es
#endif
