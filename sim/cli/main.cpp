// etchsim command line: `run` simulates a chip running a model and logs the
// run to SQLite; `area` prints the die area and transistor breakdown. The
// only place that prints errors and picks exit codes: 0 success, 1 a bad
// input or failed run, 2 a usage error.
#include <systemc>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>
#include <cjson/cJSON.h>
#include <unistd.h>
#include "es_analytic.h"
#include "es_area.h"
#include "es_chip.h"
#include "es_cost.h"
#include "es_db.h"
#include "es_fs.h"
#include "es_model.h"
#include "es_stack.h"
#include "es_proc.h"
#include "es_top.h"
#include "es_cosim.h"
#include "cli_rom.h"
#include "cli_common.h"
#include "cli_eval.h"
#include "cli_func.h"
#include "cli_infer.h"
#include "cli_json.h"
#include "cli_chip.h"
#include "cli_compare.h"
#include "cli_budget.h"
#include "cli_db.h"
#include "cli_sweep.h"
#include "cli_opts.h"
#include "es_stats.h"
#include "es_trace.h"
#include "es_chat.h"

namespace {

const char *USAGE =
    "usage: etchsim <command> [options]\n"
    "\n"
    "commands:\n"
    "  eval     apply a rule to every record of a dataset, as a batch on the chip\n"
    "  run      simulate streams of prompt + generation; print a summary, log to SQLite\n"
    "  area     print die area, transistors and leakage of a chip holding a model\n"
    "  cost     what a chip costs to build and run: die, card, $ per million tokens of a run\n"
    "  rom      build, inspect and verify mask-ROM images of quantized weights\n"
    "  infer    run the FP32 reference forward pass on a real model (no chip): tokens and logits\n"
    "  dataset  write the demo dataset of card transactions\n"
    "  chip     derive a chip for a model, or (--split) the chips and system file holding it; list every key\n"
    "  compare  dense, MoE and SSM models on chips of equal area, in one table\n"
    "  sweep    run a grid of configurations in parallel processes, merged into one database\n"
    "  budget   check a logged run against latency, throughput and energy budgets (CI)\n"
    "  db       check a database: integrity, and runs that never completed\n"
    "\n"
    "`etchsim <command> --help` describes each command's options.\n";

const char *RUN_HELP =
    "usage: etchsim run [options]\n"
    "\n"
    "Simulate S identical streams, each a prompt of N tokens followed by M\n"
    "generated tokens, on a chip configuration, in SystemC at transaction\n"
    "fidelity (or clock by clock: --fidelity cycle). Prints tokens/s, latency,\n"
    "watts, joules/token, area and the analytical model's figures beside the\n"
    "simulated ones.\n"
    "\n"
    "options:\n"
    "  --chip NAME|PATH     chip configuration (default hc1-class, from models/chips)\n"
    "  --model NAME|PATH    model config.json or its folder (default llama-3.1-8b)\n"
    "  --system NAME|PATH   a system of chips instead of --chip (models/systems): each chip holds\n"
    "                       the layers the file gives it, joined by card links; the model is the\n"
    "                       file's unless --model is given. --set applies to every chip;\n"
    "                       --set system.link.KEY=VALUE overrides the file's link (KEY:\n"
    "                       bandwidth_bits_per_s, latency_ns or energy_pj_per_bit)\n"
    "  --prompt N           prompt tokens per stream (default 1024)\n"
    "  --generate M         generated tokens per stream (default 1024)\n"
    "  --streams S          concurrent identical streams (default 1)\n"
    "  --set KEY=VALUE      override a chip key, e.g. --set tile.lanes.count=131072;\n"
    "                       process keys as process.KEY; repeatable\n"
    "  --rom FILE           a ROM image (etchsim rom build): area, energy and lane timing\n"
    "                       use its real bits and formats instead of the chip's weights.*\n"
    "  --recipe NAME|PATH   weight formats (models/recipes): timing, area and energy follow them as\n"
    "                       a ROM image built with it would hold them (default: the chip's weights.*;\n"
    "                       in functional mode, also how --weights and --synthetic are quantized,\n"
    "                       default hc1-mix there)\n"
    "  --mode timing|functional  timing (default): shapes only; functional: the units also\n"
    "                       compute real tokens with the chip's declared datapath (same cycles)\n"
    "  functional mode:\n"
    "  --weights FILE       weights (safetensors or GGUF) quantized in memory by --recipe\n"
    "  --synthetic SEED     synthetic weights quantized by --recipe\n"
    "                       (or --rom FILE: the image's own quantized weights)\n"
    "  --threads N          host threads of the datapath (default: one per core); results do not\n"
    "                       depend on it\n"
    "  --text T             the prompt as text (BOS first when the vocabulary adds it; sets --prompt\n"
    "                       to its token count);\n"
    "                       without it the prompt is --prompt token ids drawn from --seed\n"
    "  --chat               --text as one user turn of the model's chat format, the assistant's\n"
    "                       turn opened after it (as `etchsim infer --chat`; no other BOS)\n"
    "  --vocab F            tokenizer (default: the model's GGUF or models/llm/NAME/tokenizer.tiktoken)\n"
    "  --seed S             seed of the drawn prompt (default 1)\n"
    "  --logits FILE        stream 0's logits at every position, as etchsim infer writes them\n"
    "  --adapter FILE       a LoRA adapter: PEFT adapter_model.safetensors (adapter_config.json\n"
    "                       beside it) or a GGUF LoRA; timed as --adapter-rank, and applied\n"
    "                       in functional mode. Repeatable: adapters 0, 1, ... in order, all\n"
    "                       held in the KV SRAM at once (several tenants); with --system each\n"
    "                       chip holds its own layers' A and B\n"
    "  --adapter-rank R     a LoRA adapter of rank R in the tiles' KV SRAM (timing; with\n"
    "                       --adapter-roles): it takes KV capacity and KV port time, and the\n"
    "                       vector unit adds (alpha/R) x B(A x) to each adapted projection\n"
    "  --adapter-roles L    the projections it adapts: a comma-separated list of q, k, v, o,\n"
    "                       gate, up, down (e.g. q,v)\n"
    "  --adapter-count K    K such adapters (ids 0 to K-1; default 1), all in the KV SRAM\n"
    "  --adapter-of-stream LIST  each stream's adapter: a comma-separated list of adapter ids\n"
    "                       or 'none', stream i taking entry i mod its length (default: stream\n"
    "                       i uses adapter i mod K)\n"
    "  --db PATH            SQLite database to log into (default etchsim.sqlite)\n"
    "  --no-db              do not write a database\n"
    "  --json               print one JSON object instead of the summary\n"
    "  --trace FILE.json    unit occupancy as a Chrome trace-event file (open it in Perfetto,\n"
    "                       ui.perfetto.dev): a track per unit, flows per request, counters\n"
    "                       for KV positions and sequences in flight; written only by a run\n"
    "                       that finishes. Large: about 150 bytes per op booked\n"
    "  --trace-window START:END  keep only events overlapping [START, END] simulated ns\n"
    "  --fidelity F         transaction (default): each op booked on its resource as its item\n"
    "                       enters a tile; cycle: the tiles' resources advance clock by clock,\n"
    "                       ops issuing beat by beat through pipelines of their latency\n"
    "                       (dense and state-space models; slower)\n"
    "  --rtl-cosim          with --mode functional and --fidelity cycle: tile 0's lane matmuls\n"
    "                       run through the Verilated reference RTL (rtl-ref/msa_slice.v,\n"
    "                       fp_scale_acc.v), int3 and int6 lanes of a 24-bit accumulator\n"
    "  --vcd FILE.vcd       SystemC signals as a VCD file (GTKWave): each tile's work items,\n"
    "                       KV positions held, sequences in flight, a value change per change;\n"
    "                       written only by a run that finishes. About 20 bytes per item per tile\n"
    "  --routing R          MoE models: uniform (default), zipf:S (expert e drawn with weight\n"
    "                       1/(e+1)^S), or replay:FILE (a line of top_k expert ids per routed\n"
    "                       token, used in turn)\n"
    "  --deploy NAME|PATH   the deployment the JSON's \"cost\" assumes (models/deploy; default\n"
    "                       us-industrial); its keys: --set deploy.KEY=VALUE\n"
    "  -h, --help           this text\n";

const char *COST_HELP =
    "usage: etchsim cost [options]\n"
    "\n"
    "Simulate a run, as etchsim run does (same workload options and defaults), and print\n"
    "what the chip costs: dies per wafer, yield and die cost from the process table's\n"
    "cost.* keys, card and system cost from the chip's cost.* keys (or the card's price,\n"
    "cost.card_usd), energy and amortization from the deployment: dollars per million\n"
    "tokens beside tokens/s, watts and joules per token. Nothing is logged.\n"
    "\n"
    "options:\n"
    "  --chip NAME|PATH     chip configuration (default hc1-class)\n"
    "  --system NAME|PATH   a system of chips instead (as for etchsim run): the sum of its chips' cards\n"
    "  --model NAME|PATH    model (default llama-3.1-8b)\n"
    "  --prompt N           prompt tokens per stream (default 1024)\n"
    "  --generate M         generated tokens per stream (default 1024)\n"
    "  --streams S          concurrent identical streams (default 1)\n"
    "  --deploy NAME|PATH   deployment: electricity price, PUE, lifetime, utilization\n"
    "                       (models/deploy/NAME.json; default us-industrial)\n"
    "  --set KEY=VALUE      a chip key, process.KEY, deploy.KEY or (with --system) system.link.KEY;\n"
    "                       repeatable\n"
    "  --rom FILE, --recipe NAME|PATH, --routing R, --fidelity F   as for etchsim run\n"
    "  --json               print one JSON object\n"
    "  -h, --help           this text\n";

const char *AREA_HELP =
    "usage: etchsim area [options]\n"
    "\n"
    "Die area, transistor count and leakage, by component, of a chip\n"
    "configuration holding a model, and how busy one user keeps it (the\n"
    "analytical model, one decode step at --position).\n"
    "\n"
    "options:\n"
    "  --chip NAME|PATH     chip configuration (default hc1-class)\n"
    "  --model NAME|PATH    model (default llama-3.1-8b)\n"
    "  --set KEY=VALUE      override a chip or process key; repeatable\n"
    "  --system NAME|PATH   a system of chips instead of --chip (as for etchsim run): each chip's\n"
    "                       area holding its layers, and their sum (no one-user utilization)\n"
    "  --position P         the decode position of the one-user utilization (default 1536)\n"
    "  --json               print one JSON object\n"
    "  -h, --help           this text\n";

struct Opts {
    std::string chip = "hc1-class", model = "llama-3.1-8b", db = "etchsim.sqlite", rom;
    std::string system;                         // --system (run, cost): a system of chips instead of --chip
    bool chip_given = false, model_given = false;
    std::string deploy = "us-industrial";       // --deploy (run, cost)
    bool deploy_given = false;
    std::vector<std::string> deploy_sets;       // --set deploy.KEY=VALUE (run, cost)
    int64_t prompt = 1024, gen = 1024, streams = 1, position = 1536;
    bool json = false, no_db = false, prompt_given = false, position_given = false;
    std::vector<std::string> sets;
    // functional mode
    bool functional = false;
    std::string text, vocab, weights, recipe, logits, routing;
    bool have_text = false;
    bool chat = false;                          // --chat: --text in the model's chat format
    std::string trace;                          // --trace FILE.json
    std::string vcd;                            // --vcd FILE.vcd
    bool cycle = false;                         // --fidelity cycle
    bool cosim = false;                         // --rtl-cosim
    double trace_start_ns = 0, trace_end_ns = -1; // --trace-window
    int64_t synthetic = -1, seed = 1;
    int threads = 0;                            // --threads (0: one per core)
    int64_t adapter_rank = 0;                   // --adapter-rank (0: none)
    std::string adapter_roles;                  // --adapter-roles
    std::vector<std::string> adapters;          // --adapter FILE (repeatable): adapters 0, 1, ...
    int64_t adapter_count = 0;                  // --adapter-count (0: not given, one adapter)
    std::string adapter_of_stream;              // --adapter-of-stream LIST
    std::vector<int32_t> stream_adapter;        // each stream's adapter (-1: none), from it (prepare_run)
};

int usage_error(const char *cmd, const char *msg, const char *arg) { return es_opt_usage(cmd, msg, arg); }

// --system's options: -1 to continue, else the exit code of a usage error.
int check_system_opts(const char *cmd, const Opts &o)
{
    const char *arg = nullptr;
    const char *msg = es::system_opts_conflict(o.system, o.chip_given, !o.rom.empty(), o.cosim, &arg);
    return msg ? usage_error(cmd, msg, arg) : -1;
}

// The adapter options together: -1, or the usage error's exit code.
int check_adapter_opts(const char *cmd, const Opts &o)
{
    if ((o.adapter_rank > 0) != !o.adapter_roles.empty())
        return usage_error(cmd, "--adapter-rank and --adapter-roles go together; got only", o.adapter_rank > 0 ?
                           "--adapter-rank" : "--adapter-roles");
    if (!o.adapters.empty() && o.adapter_rank > 0)
        return usage_error(cmd, "give --adapter FILE or --adapter-rank and --adapter-roles, not both; got --adapter",
                           o.adapters[0].c_str());
    if ((o.adapter_rank > 0 || !o.adapters.empty()) && o.cycle)
        return usage_error(cmd, "an adapter (--adapter, --adapter-rank) is booked at transaction fidelity only; drop", "--fidelity cycle");
    if (o.adapter_count > 0 && o.adapter_rank == 0)
        return usage_error(cmd, "--adapter-count needs --adapter-rank and --adapter-roles (files: repeat --adapter)", nullptr);
    if (!o.adapter_of_stream.empty() && o.adapter_rank == 0 && o.adapters.empty())
        return usage_error(cmd, "--adapter-of-stream needs adapters (--adapter FILE, or --adapter-rank); got",
                           o.adapter_of_stream.c_str());
    return -1;
}

// The options together, after parsing: -1 to continue, else the exit code of a usage error.
int check_run_opts(const char *cmd, const Opts &o)
{
    if (o.cosim && (!o.functional || !o.cycle))
        return usage_error(cmd, "--rtl-cosim needs --mode functional and --fidelity cycle", nullptr);
    if (!o.functional && (o.have_text || !o.weights.empty() || o.synthetic >= 0 || !o.logits.empty() ||
                          !o.vocab.empty() || o.threads))
        return usage_error(cmd, "--text, --weights, --synthetic, --vocab, --logits and --threads need --mode functional",
                           nullptr);
    if (!o.recipe.empty() && !o.rom.empty())
        return usage_error(cmd, "give --recipe or --rom, not both (the image fixes the formats); got --recipe",
                           o.recipe.c_str());
    if (o.have_text && o.prompt_given) return usage_error(cmd, "give --text or --prompt, not both", nullptr);
    if (o.chat && !o.have_text) return usage_error(cmd, "--chat wraps --text in the model's chat format; give --text", nullptr);
    if (int rc = check_adapter_opts(cmd, o); rc >= 0) return rc;
    if (o.trace.empty() && (o.trace_start_ns > 0 || o.trace_end_ns >= 0))
        return usage_error(cmd, "--trace-window needs --trace", nullptr);
    return o.system.empty() ? -1 : check_system_opts(cmd, o);
}

// Returns -1 to continue, else an exit code.
int parse(const char *cmd, int argc, char **argv, Opts &o, bool run)
{
    enum { CHIP, MODEL, SET, JSON, PROMPT, GENERATE, STREAMS, POSITION, DB, ROM, NODB, ROUTING, MODE, TEXT, VOCAB,
           WEIGHTS, RECIPE, LOGITS, SYNTHETIC, SEED, TRACE, TRACE_WINDOW, VCD, FIDELITY, COSIM, DEPLOY, SYSTEM,
           ADAPTER_RANK, ADAPTER_ROLES, ADAPTER, ADAPTER_COUNT, ADAPTER_OF_STREAM, CHAT, THREADS, N_OPTS };
    static const es_opt opts[N_OPTS] = {
        {"chip", ES_OPT_STR, 0, 0, 0},          {"model", ES_OPT_STR, 0, 0, 0},
        {"set", ES_OPT_STR, 0, 0, 1},           {"json", ES_OPT_FLAG, 0, 0, 0},
        {"prompt", ES_OPT_COUNT, 1, 1 << 24, 0}, {"generate", ES_OPT_COUNT, 1, 1 << 24, 0},
        {"streams", ES_OPT_COUNT, 1, 100000, 0}, {"position", ES_OPT_COUNT, 0, 1 << 24, 0},
        {"db", ES_OPT_STR, 0, 0, 0},            {"rom", ES_OPT_STR, 0, 0, 0},
        {"no-db", ES_OPT_FLAG, 0, 0, 0},        {"routing", ES_OPT_STR, 0, 0, 0},
        {"mode", ES_OPT_STR, 0, 0, 0},          {"text", ES_OPT_TEXT, 0, 0, 0},
        {"vocab", ES_OPT_STR, 0, 0, 0},         {"weights", ES_OPT_STR, 0, 0, 0},
        {"recipe", ES_OPT_STR, 0, 0, 0},        {"logits", ES_OPT_STR, 0, 0, 0},
        {"synthetic", ES_OPT_COUNT, 0, 9.2e18, 0}, {"seed", ES_OPT_COUNT, 0, 9.2e18, 0},
        {"trace", ES_OPT_STR, 0, 0, 0},         {"trace-window", ES_OPT_STR, 0, 0, 0},
        {"vcd", ES_OPT_STR, 0, 0, 0},           {"fidelity", ES_OPT_STR, 0, 0, 0},
        {"rtl-cosim", ES_OPT_FLAG, 0, 0, 0},    {"deploy", ES_OPT_STR, 0, 0, 0},
        {"system", ES_OPT_STR, 0, 0, 0},
        {"adapter-rank", ES_OPT_COUNT, 1, 65536, 0}, {"adapter-roles", ES_OPT_STR, 0, 0, 0},
        {"adapter", ES_OPT_STR, 0, 0, 1}, {"adapter-count", ES_OPT_COUNT, 1, 4096, 0},
        {"adapter-of-stream", ES_OPT_STR, 0, 0, 0}, {"chat", ES_OPT_FLAG, 0, 0, 0},
        {"threads", ES_OPT_COUNT, 1, 64, 0}};
    const bool cost = !std::strcmp(cmd, "cost"); /* run's workload options, no logging or functional mode */
    es_optarg *items = nullptr;
    int n = es_opts_parse(cmd, argc, argv, opts, N_OPTS, 0, cost ? COST_HELP : run ? RUN_HELP : AREA_HELP, &items);
    if (n < 0) return n == -2 ? 0 : 2;
    struct Free { es_optarg *p; ~Free() { std::free(p); } } fr{items};
    int pick; /* es_opt_pick's choice */
    for (int k = 0; k < n; k++) {
        const es_optarg &a = items[k];
        const char *v = a.val;
        bool run_only = a.opt != CHIP && a.opt != MODEL && a.opt != SET && a.opt != JSON && a.opt != POSITION &&
                        a.opt != SYSTEM;
        bool cost_too = a.opt == PROMPT || a.opt == GENERATE || a.opt == STREAMS || a.opt == ROM || a.opt == RECIPE ||
                        a.opt == ROUTING || a.opt == FIDELITY || a.opt == DEPLOY || a.opt == SYSTEM;
        if ((run && a.opt == POSITION) || (!run && run_only) || (cost && run_only && !cost_too))
            return usage_error(cmd, "unknown option", (std::string("--") + opts[a.opt].name).c_str());
        switch (a.opt) {
        case CHIP: o.chip = v, o.chip_given = true; break;
        case MODEL: o.model = v, o.model_given = true; break;
        case SYSTEM: o.system = v; break;
        case SET:
            if (!std::strchr(v, '=')) return usage_error(cmd, "--set needs KEY=VALUE, got", v);
            if (run && !std::strncmp(v, "deploy.", 7)) o.deploy_sets.push_back(v); /* the deployment's */
            else o.sets.push_back(v);
            break;
        case DEPLOY: o.deploy = v, o.deploy_given = true; break;
        case JSON: o.json = true; break;
        case PROMPT: o.prompt = a.num, o.prompt_given = true; break;
        case GENERATE: o.gen = a.num; break;
        case STREAMS: o.streams = a.num; break;
        case POSITION: o.position = a.num, o.position_given = true; break;
        case DB: o.db = v; break;
        case ROM: o.rom = v; break;
        case NODB: o.no_db = true; break;
        case ROUTING: o.routing = v; break;
        case MODE:
            if ((pick = es_opt_pick(cmd, "mode", v, "timing", "functional")) < 0) return 2;
            o.functional = pick;
            break;
        case TEXT: o.text = v, o.have_text = true; break;
        case CHAT: o.chat = true; break;
        case VOCAB: o.vocab = v; break;
        case WEIGHTS: o.weights = v; break;
        case RECIPE: o.recipe = v; break;
        case LOGITS: o.logits = v; break;
        case SYNTHETIC: o.synthetic = a.num; break;
        case SEED: o.seed = a.num; break;
        case TRACE: o.trace = v; break;
        case TRACE_WINDOW:
            if (es_trace_parse_window(v, &o.trace_start_ns, &o.trace_end_ns))
                return usage_error(cmd, "--trace-window expects START:END in simulated ns (END >= START >= 0, either may be empty), got", v);
            break;
        case VCD: o.vcd = v; break;
        case FIDELITY:
            if ((pick = es_opt_pick(cmd, "fidelity", v, "transaction", "cycle")) < 0) return 2;
            o.cycle = pick;
            break;
        case COSIM: o.cosim = true; break;
        case THREADS: o.threads = (int)a.num; break;
        case ADAPTER_RANK: o.adapter_rank = a.num; break;
        case ADAPTER_ROLES: o.adapter_roles = v; break;
        case ADAPTER: o.adapters.push_back(v); break;
        case ADAPTER_COUNT: o.adapter_count = a.num; break;
        case ADAPTER_OF_STREAM: o.adapter_of_stream = v; break;
        }
    }
    return check_run_opts(cmd, o);
}

// --routing: uniform, zipf:S or replay:FILE, for a model with experts.
int rc_routing(const std::string &spec, const es_model &m, es::Routing &r, es_err *e)
{
    if (m.experts == 0) return es_fail(e, "--routing: %s has no experts (a dense model)", m.path);
    if (spec == "uniform") { r.kind = 0; return 0; }
    if (spec.rfind("zipf:", 0) == 0) {
        char *end = nullptr;
        double s = std::strtod(spec.c_str() + 5, &end);
        if (spec.size() == 5 || *end || !(s >= 0 && s <= 10)) return es_fail(e, "--routing zipf:S: expected S from 0 to 10, got '%s'", spec.c_str() + 5);
        r.kind = 1;
        r.zipf_s = s;
        return 0;
    }
    if (spec.rfind("replay:", 0) == 0) {
        std::string path = spec.substr(7);
        char *text = nullptr;
        size_t len = 0;
        /* read whole, so a NUL byte is an error, not the end of its line, and a line has no length limit */
        if (es_read_file(path.c_str(), (size_t)1 << 30, &text, &len, e) ||
            es_check_text(path.c_str(), text, len, "a text file of expert ids", e)) {
            std::free(text);
            return -1;
        }
        struct Free { char *p; ~Free() { std::free(p); } } fr{text};
        int64_t ln = 0;
        for (char *line = text; line < text + len;) {
            char *nl = static_cast<char *>(std::memchr(line, '\n', (size_t)(text + len - line)));
            char *next = nl ? nl + 1 : text + len;
            ln++;
            std::vector<int32_t> ids;
            char *p = line, *end;
            for (;;) {
                while (*p == ' ' || *p == '\t') p++;
                if (*p == '\n' || *p == '\r' || !*p) break;
                long v = std::strtol(p, &end, 10);
                if (end == p || v < 0 || v >= m.experts)
                    return es_fail(e, "%s: line %lld: expected expert ids from 0 to %lld", path.c_str(), (long long)ln,
                                   (long long)m.experts - 1);
                for (int32_t x : ids)
                    if (x == v) return es_fail(e, "%s: line %lld: expert %ld twice", path.c_str(), (long long)ln, v);
                ids.push_back((int32_t)v);
                p = end;
            }
            line = next;
            if (ids.empty()) continue;
            if ((int64_t)ids.size() != m.top_k)
                return es_fail(e, "%s: line %lld: %zu expert ids, the model routes each token to %lld", path.c_str(),
                               (long long)ln, ids.size(), (long long)m.top_k);
            r.replay.push_back(ids);
        }
        if (r.replay.empty()) return es_fail(e, "%s: no expert ids", path.c_str());
        r.kind = 2;
        return 0;
    }
    return es_fail(e, "--routing: expected uniform, zipf:S or replay:FILE, got '%s'", spec.c_str());
}

void print_area(const es_chip &c, const es_model &m, const es_area &a)
{
    std::printf("%s holding %s\n", c.name, m.name);
    std::printf("  %-10s %10s %8s %14s %10s\n", "component", "mm2", "share", "transistors", "leak W");
    for (int i = 0; i < ES_AREA_N; i++)
        if (es_area_listed(&a, i))
            std::printf("  %-10s %10.1f %7.1f%% %14.3e %10.2f\n", es_area_name(i), a.mm2[i],
                    100.0 * a.mm2[i] / a.total_mm2, a.tr[i], a.leak_w[i]);
    std::printf("  %-10s %10.1f %8s %14.3e %10.2f\n", "total", a.total_mm2, "", a.total_tr,
                a.leak_total_w);
    std::printf("  ROM %.3f Gbit (model needs %.3f Gbit, %.3f bits/weight), KV SRAM %.3f GiB\n",
                a.rom_bits / 1e9, a.model_bits / 1e9, a.model_bits / (double)es_model_params(&m),
                a.sram_bits / 8.0 / (1u << 30));
    if (c.store.kind != ES_STORE_ROM)
        std::printf("  weights in %s (store.kind): %.3f Gbit of weight SRAM on the die\n", es_store_name(c.store.kind),
                    a.store_bits / 1e9);
    std::printf("  lane cell %.1f transistors, %.2f register bits (%s)\n", c.area.lane_tr, c.tile.reg_bits_cell,
                c.area.lane_rtl[0] ? c.area.lane_rtl : "area.lane_transistors, tile.lanes.register_bits_per_cell");
}

// etchsim area --system: each chip's area holding its slice (es_area_compute on its table), and the sum.
int area_system(const Opts &o, es::Loaded &L)
{
    std::vector<const es_map *> pms = L.pms();
    std::vector<es_area> as(pms.size());
    double mm2 = 0, tr = 0, leak = 0;
    for (size_t k = 0; k < pms.size(); k++) {
        es_area_compute(pms[k], &as[k]);
        mm2 += as[k].total_mm2, tr += as[k].total_tr, leak += as[k].leak_total_w;
    }
    if (!o.json) {
        std::printf("the system %s holding %s: %d chips\n", L.sys.name, L.m.name, L.sys.n_chips);
        std::printf("  %-4s %-24s %9s %10s %14s %10s %12s %12s\n", "chip", "config", "layers", "mm2", "transistors",
                    "leak W", "ROM Gbit", "KV SRAM GiB");
        for (size_t k = 0; k < pms.size(); k++) {
            const es_sys_chip &sc = L.sys.chips[k];
            char ly[32];
            std::snprintf(ly, sizeof ly, "%d-%d", sc.layer_first, sc.layer_last);
            std::printf("  %-4zu %-24s %9s %10.1f %14.3e %10.2f %12.3f %12.3f\n", k, sc.chip.name, ly, as[k].total_mm2,
                        as[k].total_tr, as[k].leak_total_w, as[k].rom_bits / 1e9, as[k].sram_bits / 8.0 / (1u << 30));
        }
        std::printf("  %-4s %-24s %9s %10.1f %14.3e %10.2f\n", "all", "", "", mm2, tr, leak);
        std::printf("  (each chip's breakdown by component: etchsim area --chip CONFIG, or --json)\n");
        return 0;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "chip", L.sys.name);
    cJSON_AddStringToObject(j, "model", L.m.name);
    cJSON_AddNumberToObject(j, "area_mm2", mm2);
    cJSON_AddNumberToObject(j, "transistors", tr);
    cJSON_AddNumberToObject(j, "leakage_w", leak);
    cJSON *sys = cJSON_AddObjectToObject(j, "system");
    cJSON_AddStringToObject(sys, "name", L.sys.name);
    cJSON_AddStringToObject(sys, "path", L.sys.path);
    cJSON *chips = cJSON_AddArrayToObject(sys, "chips");
    for (size_t k = 0; k < pms.size(); k++) {
        const es_sys_chip &sc = L.sys.chips[k];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "chip", sc.chip.name);
        cJSON *ly = cJSON_AddArrayToObject(x, "layers");
        cJSON_AddItemToArray(ly, cJSON_CreateNumber(sc.layer_first));
        cJSON_AddItemToArray(ly, cJSON_CreateNumber(sc.layer_last));
        cJSON_AddNumberToObject(x, "area_mm2", as[k].total_mm2);
        cJSON_AddNumberToObject(x, "transistors", as[k].total_tr);
        cJSON_AddNumberToObject(x, "leakage_w", as[k].leak_total_w);
        cJSON_AddNumberToObject(x, "rom_bits", as[k].rom_bits);
        cJSON_AddNumberToObject(x, "model_bits", as[k].model_bits);
        cJSON_AddNumberToObject(x, "kv_sram_bits", as[k].sram_bits);
        cJSON_AddItemToObject(x, "breakdown", es::area_json(as[k]));
        cJSON_AddItemToArray(chips, x);
    }
    char *s = cJSON_Print(j);
    std::puts(s);
    cJSON_free(s);
    cJSON_Delete(j);
    return 0;
}

int cmd_area(int argc, char **argv)
{
    Opts o;
    int rc = parse("area", argc, argv, o, false);
    if (rc >= 0) return rc;
    es_err e{};
    es::Loaded L;
    if (!o.system.empty()) {
        if (o.position_given) return usage_error("area", "--position with --system: a system's area has no one-user "
                                                         "utilization (etchsim run --system gives its utilization)", nullptr);
        if (es::load_system(o.system, o.model_given ? o.model : "", o.sets, "", L, &e)) {
            std::fprintf(stderr, "etchsim area: %s\n", e.msg);
            return 1;
        }
        return area_system(o, L);
    }
    if (es::load(o.model, o.chip, o.sets, o.rom, "", L, &e)) {
        std::fprintf(stderr, "etchsim area: %s\n", e.msg);
        return 1;
    }
    es_area a;
    es_area_compute(&L.map, &a);
    /* one user's decode at --position (default the middle of a 1k/1k run), analytical */
    const int64_t pos = o.position;
    double busy[5], die = es_an_utilization(&L.map, &a, pos, busy);
    static const char *kinds[5] = {"lanes", "vector", "attention", "head", "embed"};
    if (o.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "chip", L.c.name);
        cJSON_AddStringToObject(j, "model", L.m.name);
        cJSON_AddNumberToObject(j, "area_mm2", a.total_mm2);
        cJSON_AddNumberToObject(j, "transistors", a.total_tr);
        cJSON_AddNumberToObject(j, "leakage_w", a.leak_total_w);
        cJSON_AddNumberToObject(j, "rom_bits", a.rom_bits);
        cJSON_AddNumberToObject(j, "model_bits", a.model_bits);
        cJSON_AddNumberToObject(j, "kv_sram_bits", a.sram_bits);
        if (L.c.store.kind != ES_STORE_ROM) { /* the weights in SRAM or HBM: where, and the die's SRAM for them */
            cJSON_AddStringToObject(j, "weight_store", es_store_name(L.c.store.kind));
            cJSON_AddNumberToObject(j, "weight_sram_bits", a.store_bits);
        }
        cJSON_AddNumberToObject(j, "lane_cell_transistors", L.c.area.lane_tr);
        cJSON_AddNumberToObject(j, "lane_cell_register_bits", L.c.tile.reg_bits_cell);
        if (L.c.area.lane_rtl[0]) cJSON_AddStringToObject(j, "lane_rtl", L.c.area.lane_rtl);
        cJSON_AddItemToObject(j, "breakdown", es::area_json(a));
        cJSON *u = cJSON_AddObjectToObject(j, "utilization_one_user");
        cJSON_AddNumberToObject(u, "position", (double)pos);
        cJSON_AddNumberToObject(u, "die", die);
        cJSON *bk = cJSON_AddObjectToObject(u, "busy_fraction");
        for (int k = 0; k < 5; k++)
            if (k != 4 || !L.m.tied) cJSON_AddNumberToObject(bk, kinds[k], busy[k]);
        char *s = cJSON_Print(j);
        std::puts(s);
        cJSON_free(s);
        cJSON_Delete(j);
    } else {
        print_area(L.c, L.m, a);
        std::printf("  one user, decode at position %lld: die %.2f %% busy (lanes %.1f %%, vector %.1f %%, "
                    "attention %.1f %%, head %.1f %% of the step)\n", (long long)pos, 100 * die, 100 * busy[0],
                    100 * busy[1], 100 * busy[2], 100 * busy[3]);
    }
    return 0;
}

// Functional mode's resources and results (run).
struct Func {
    es_dp *dp = nullptr;
    es::Cosim *cosim = nullptr; // --rtl-cosim: tile 0's lanes through the Verilated RTL
    es_tok *tok = nullptr;
    std::vector<int32_t> prompt_ids;
    std::string text;      // stream 0's output text (empty without a tokenizer)
    bool have_text = false;
    ~Func()
    {
        es_dp_close(dp);
        es::es_cosim_close(cosim);
        es_tok_free(tok);
    }
};

// etchsim cost's table, line by line as es_cost.h derives it.
// A system's cost: each chip's die and card, then the system's sums.
void print_cost_system(const Opts &o, const es::Loaded &L, const es::Cost &k)
{
    const es_cost &x = k.c;
    int chips = 0; /* a tensor-parallel entry is tp chips */
    for (int i = 0; i < L.sys.n_chips; i++) chips += L.sys.chips[i].tp;
    std::printf("etchsim cost: %s on the system %s (%d chips), %" PRId64 " stream(s) of %" PRId64 " in / %" PRId64
                " out, deployment %s\n", L.m.name, L.sys.name, chips, o.streams, o.prompt, o.gen, k.d.name);
    std::printf("    %-4s %-28s %9s %7s %7s %10s %10s %8s\n", "chip", "config", "die mm2", "dies", "yield", "die $",
                "card $", "host W");
    for (size_t i = 0; i < k.chips.size(); i++) { /* a tensor-parallel entry: one of its tp cards, "xT" */
        const es_cost &c = k.chips[i];
        std::string name = L.sys.chips[i].chip.name;
        if (L.sys.chips[i].tp > 1) name += " x" + std::to_string(L.sys.chips[i].tp);
        if (c.card_given)
            std::printf("    %-4zu %-28s %9s %7s %7s %10s %10.2f %8.1f\n", i, name.c_str(), "-", "-", "-", "-",
                        c.card_usd, c.host_w);
        else
            std::printf("    %-4zu %-28s %9.1f %7.0f %7.4f %10.2f %10.2f %8.1f\n", i, name.c_str(), c.die_mm2,
                        c.dies_per_wafer, c.yield, c.die_usd, c.card_usd, c.host_w);
    }
    std::printf("  %-34s %14.2f   (the chips' cards, each tensor-parallel entry's T times)\n", "cards, $", x.card_usd);
    std::printf("  %-34s %14.2f   (cards + each card's host share)\n", "system, $", x.system_usd);
    std::printf("  %-34s %14.0f\n", "tokens/s, all streams", x.tokens_per_s);
    std::printf("  %-34s %14.1f   (+ hosts %.1f W in all)\n", "card power, W (all chips)", x.watts, x.host_w);
    std::printf("  %-34s %14.3f\n", "energy per token, mJ", x.joules_per_token * 1e3);
    std::printf("  %-34s %14.3e   (over %.3g years at utilization %.3g)\n", "capex, $/s", x.capex_usd_per_s,
                k.d.lifetime_years, k.d.utilization);
    std::printf("  %-34s %14.3e   (%.4g $/kWh, PUE %.3g)\n", "energy, $/s", x.energy_usd_per_s, k.d.usd_per_kwh, k.d.pue);
    std::printf("  %-34s %14.6f   (capex %.6f + energy %.6f)\n", "$ per million tokens", x.usd_per_m_tokens,
                x.capex_usd_per_m_tokens, x.energy_usd_per_m_tokens);
}

void print_cost(const Opts &o, const es::Loaded &L, const es::Cost &k)
{
    if (L.have_sys) return print_cost_system(o, L, k);
    const es_cost &x = k.c;
    const es_cost_cfg &in = L.c.cost;
    std::printf("etchsim cost: %s on %s%s, %" PRId64 " stream(s) of %" PRId64 " in / %" PRId64 " out, deployment %s\n",
                L.m.name, L.have_sys ? "the system " : "", L.have_sys ? L.sys.name : L.c.name, o.streams, o.prompt,
                o.gen, k.d.name);
    if (x.card_given) {
        std::printf("  %-34s %14.2f   (cost.card_usd)\n", "card, $", x.card_usd);
    } else {
        std::printf("  %-34s %14.1f\n", "die area, mm2", x.die_mm2);
        std::printf("  %-34s %14.0f   (%.0f mm wafer, %.1f mm edge exclusion)\n", "gross dies per wafer",
                    x.dies_per_wafer, in.wafer_mm, in.edge_mm);
        std::printf("  %-34s %14.4f   (%s, D0 %.3g per cm2", "yield", x.yield, es_yield_name(in.yield_model), in.d0_cm2);
        if (in.yield_model == ES_YIELD_NEG_BINOMIAL) std::printf(", alpha %.3g", in.alpha);
        std::printf(")\n");
        std::printf("  %-34s %14.2f   ($%.0f per wafer / %.2f good dies)\n", "die, $", x.die_usd, in.wafer_usd,
                    x.dies_per_wafer * x.yield);
        if (L.c.store.kind == ES_STORE_HBM)
            std::printf("  %-34s %14.2f   (%.3f GB of store.capacity_bytes x %.2f $/GB, cost.hbm_usd_per_gb)\n",
                        "HBM stacks, $", x.hbm_usd, x.hbm_gb, in.hbm_usd_per_gb);
        std::printf("  %-34s %14.2f   (die + package and test %.2f + board %.2f%s)\n", "card, $", x.card_usd,
                    in.package_test_usd, in.board_usd, L.c.store.kind == ES_STORE_HBM ? " + HBM" : "");
    }
    std::printf("  %-34s %14.2f   (card + host %.2f)\n", "system per card, $", x.system_usd, in.host_usd);
    std::printf("  %-34s %14.0f\n", "tokens/s, all streams", x.tokens_per_s);
    std::printf("  %-34s %14.1f   (+ host %.1f W per card)\n", "card power, W", x.watts, x.host_w);
    std::printf("  %-34s %14.3f\n", "energy per token, mJ", x.joules_per_token * 1e3);
    std::printf("  %-34s %14.3e   (over %.3g years at utilization %.3g)\n", "capex, $/s", x.capex_usd_per_s,
                k.d.lifetime_years, k.d.utilization);
    std::printf("  %-34s %14.3e   (%.4g $/kWh, PUE %.3g)\n", "energy, $/s", x.energy_usd_per_s, k.d.usd_per_kwh,
                k.d.pue);
    std::printf("  %-34s %14.6f   (capex %.6f + energy %.6f)\n", "$ per million tokens", x.usd_per_m_tokens,
                x.capex_usd_per_m_tokens, x.energy_usd_per_m_tokens);
    /* an input of 0 is a part left uncounted (the chip's cost.* sources say why): the figure is a lower bound */
    std::string zero;
    if (!x.card_given && in.board_usd == 0) zero += " board (cost.board_usd)";
    if (in.host_usd == 0) zero += std::string(zero.empty() ? "" : ",") + " host (cost.host_usd_per_card)";
    if (!zero.empty())
        std::printf("  note: priced at 0, so not counted:%s; the $ per million tokens is a lower bound\n", zero.c_str());
}

// A figure that needs two tokens of a stream (a decode interval): null when every stream made one.
void add_decode_figure(cJSON *j, const char *key, bool defined, double v)
{
    if (defined) cJSON_AddNumberToObject(j, key, v);
    else cJSON_AddNullToObject(j, key);
}

// run --json's "moe": experts, routing, how many experts each token's layers used and how busy they were.
void add_moe_json(cJSON *j, const Opts &o, const es::Loaded &L, const es::RunResult &r)
{
    cJSON *mo = cJSON_AddObjectToObject(j, "moe");
    cJSON_AddNumberToObject(mo, "experts", (double)L.m.experts);
    cJSON_AddNumberToObject(mo, "top_k", (double)L.m.top_k);
    cJSON_AddNumberToObject(mo, "active_params", (double)es_model_active_params(&L.m));
    cJSON_AddNumberToObject(mo, "params", (double)es_model_params(&L.m));
    cJSON_AddStringToObject(mo, "routing", o.routing.empty() ? "uniform" : o.routing.c_str());
    double util = r.moe.item_layers ? (double)r.moe.distinct / ((double)r.moe.item_layers * (double)L.m.experts) : 0;
    cJSON_AddNumberToObject(mo, "expert_utilization", util);
    cJSON_AddNumberToObject(mo, "expert_utilization_prefill",
                            r.moe.prefill_item_layers ? (double)r.moe.prefill_distinct /
                                ((double)r.moe.prefill_item_layers * (double)L.m.experts) : 0);
    double busy = 0;
    for (int64_t b : r.moe.busy) busy += (double)b;
    cJSON_AddNumberToObject(mo, "expert_busy_fraction",
                            r.cycles ? busy / ((double)L.m.experts * (double)es_chip_tiles(&L.c, &L.m) * (double)r.cycles) : 0);
    cJSON *fired = cJSON_AddArrayToObject(mo, "fired_by_expert");
    cJSON *queue = cJSON_AddArrayToObject(mo, "mean_queue_ns_by_expert");
    for (size_t x = 0; x < r.moe.fired.size(); x++) {
        cJSON_AddItemToArray(fired, cJSON_CreateNumber((double)r.moe.fired[x]));
        cJSON_AddItemToArray(queue, cJSON_CreateNumber(
            r.moe.fired[x] ? r.moe.queue[x] * 1e9 / r.clock_hz / (double)r.moe.fired[x] : 0.0));
    }
}

// run --json's "functional": stream 0's ids and text, the weights and the datapath's formats.
void add_functional_json(cJSON *j, const Opts &o, const es::Loaded &L, const es::RunResult &r, const Func &fn)
{
    cJSON *f = cJSON_AddObjectToObject(j, "functional");
    cJSON_AddItemToObject(f, "prompt_ids", es_ids_json(fn.prompt_ids.data(), (int64_t)fn.prompt_ids.size()));
    cJSON_AddItemToObject(f, "output_ids", r.out_ids.empty() ? es_ids_json(nullptr, 0)
                                            : es_ids_json(r.out_ids[0].data(), (int64_t)r.out_ids[0].size()));
    if (fn.have_text) cJSON_AddStringToObject(f, "output_text", fn.text.c_str());
    else cJSON_AddNullToObject(f, "output_text");
    cJSON_AddStringToObject(f, "weights", !o.rom.empty() ? ("rom " + o.rom).c_str()
                                          : !o.weights.empty() ? ("weights " + o.weights).c_str()
                                                               : ("synthetic " + std::to_string(o.synthetic)).c_str());
    cJSON_AddStringToObject(f, "activation_format", L.c.tile.act_format);
    cJSON_AddNumberToObject(f, "accumulator_bits", L.c.tile.acc_bits);
    cJSON_AddStringToObject(f, "kv_format", L.c.kv.format);
    cJSON_AddNumberToObject(f, "link_bits", L.c.link.elem_bits);
    es_dp_stats st = es_dp_get_stats(fn.dp);
    cJSON_AddNumberToObject(f, "accumulator_saturations", (double)st.saturations);
    cJSON_AddNumberToObject(f, "weight_bytes_read", (double)st.weight_bytes);
    int same = 1;
    for (const auto &v : r.out_ids) same &= v == r.out_ids[0];
    cJSON_AddBoolToObject(f, "streams_agree", same);
    if (fn.cosim) {
        int64_t rows, cycles;
        es::es_cosim_counts(fn.cosim, &rows, &cycles);
        cJSON *cs = cJSON_AddObjectToObject(f, "rtl_cosim");
        cJSON_AddNumberToObject(cs, "layers", (double)L.c.tile.layers);
        cJSON_AddNumberToObject(cs, "rows", (double)rows);
        cJSON_AddNumberToObject(cs, "rtl_cycles", (double)cycles);
        cJSON_AddNumberToObject(cs, "lane_pipeline_cycles", (double)es::es_cosim_lane_depth(fn.cosim));
    }
}

cJSON *run_json(const Opts &o, const es::Loaded &L, const es::RunResult &r, double wall, const Func &fn, const es::Cost &k)
{
    const bool dec = r.decode_intervals > 0, an_dec = o.gen > 1; /* simulated streams; the analytic stream 0 */
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "mode", o.functional ? "functional" : "timing");
    cJSON_AddStringToObject(j, "fidelity", o.cycle ? "cycle" : "transaction");
    cJSON_AddStringToObject(j, "chip", L.have_sys ? L.sys.name : L.c.name); /* a system: its name ("system" below) */
    cJSON_AddStringToObject(j, "model", L.m.name);
    cJSON_AddItemToObject(j, "weight_formats", es::formats_json(L));
    cJSON_AddNumberToObject(j, "prompt_tokens", (double)o.prompt);
    cJSON_AddNumberToObject(j, "generate_tokens", (double)o.gen);
    cJSON_AddNumberToObject(j, "streams", (double)o.streams);
    add_decode_figure(j, "decode_tokens_per_s", dec, r.decode_tokens_per_s);
    cJSON_AddNumberToObject(j, "tokens_per_s", r.tokens_per_s);
    cJSON_AddNumberToObject(j, "ttft_ns", r.ttft_ns);
    cJSON_AddNumberToObject(j, "ttft_max_ns", r.ttft_max_ns);
    cJSON *lat = cJSON_AddObjectToObject(j, "token_latency_ns");
    add_decode_figure(lat, "p50", dec, r.lat_p50_ns);
    add_decode_figure(lat, "p99", dec, r.lat_p99_ns);
    cJSON_AddNumberToObject(j, "stream_ns_per_token", r.seq_ns_per_token);
    cJSON_AddNumberToObject(j, "watts", r.watts);
    cJSON_AddNumberToObject(j, "joules_per_token", r.joules_per_token);
    cJSON_AddNumberToObject(j, "energy_j", r.total_j);
    cJSON_AddNumberToObject(j, "dynamic_j", r.dynamic_j);
    cJSON_AddNumberToObject(j, "static_w", r.static_w);
    cJSON_AddNumberToObject(j, "unattributed_j", r.unattributed_j);
    cJSON_AddNumberToObject(j, "area_mm2", r.area.total_mm2);
    cJSON_AddNumberToObject(j, "transistors", r.area.total_tr);
    cJSON_AddNumberToObject(j, "cycles", (double)r.cycles);
    cJSON_AddNumberToObject(j, "clock_hz", r.clock_hz);
    cJSON_AddNumberToObject(j, "tokens", (double)r.tokens);
    cJSON_AddNumberToObject(j, "kv_slots", (double)r.an.kv_slots);
    cJSON_AddNumberToObject(j, "kv_positions", (double)r.kv_positions);
    cJSON_AddNumberToObject(j, "kv_max_used", (double)r.kv_max_used);
    if (L.n_adapters() > 0) cJSON_AddItemToObject(j, "adapter", es::adapter_json(L));
    cJSON_AddNumberToObject(j, "max_in_flight", r.max_in_flight);
    add_decode_figure(j, "analytic_decode_tokens_per_s", an_dec, r.an.decode_tokens_per_s);
    if (L.have_sys) { /* a system: the analytic model gives its decode step only (es_an_system_decode_step) */
        cJSON_AddNullToObject(j, "analytic_ttft_ns");
        cJSON_AddNullToObject(j, "analytic_knee_streams");
        cJSON_AddNullToObject(j, "analytic_saturated_tokens_per_s");
    } else {
        cJSON_AddNumberToObject(j, "analytic_ttft_ns", r.an.ttft_cycles * 1e9 / r.clock_hz);
        cJSON_AddNumberToObject(j, "analytic_knee_streams", (double)r.an.knee_streams);
        cJSON_AddNumberToObject(j, "analytic_saturated_tokens_per_s", r.an.sat_tokens_per_s);
    }
    cJSON *st = cJSON_AddObjectToObject(j, "stream0_cycles");
    cJSON_AddNumberToObject(st, "ttft", (double)r.ttft_cycles);
    add_decode_figure(st, "decode_first", an_dec, (double)r.step_first); /* stream 0 made o.gen tokens */
    add_decode_figure(st, "decode_last", an_dec, (double)r.step_last);
    cJSON_AddNumberToObject(st, "decode_total", (double)r.step_total);
    cJSON *an = cJSON_AddObjectToObject(j, "analytic_stream0_cycles");
    cJSON_AddNumberToObject(an, "ttft", (double)r.an_ttft_cycles);
    add_decode_figure(an, "decode_first", an_dec, (double)r.an_step_first);
    add_decode_figure(an, "decode_last", an_dec, (double)r.an_step_last);
    cJSON_AddNumberToObject(an, "decode_total", (double)r.an_step_total);
    cJSON *units = cJSON_AddObjectToObject(j, "energy_by_unit_j");
    double tiles_j = 0, links_j = 0;
    for (const auto &u : r.units) {
        if (!std::strncmp(es::unit_base(u.name), "tile", 4)) tiles_j += u.energy_j;
        else if (!std::strncmp(es::unit_base(u.name), "link", 4)) links_j += u.energy_j;
        else cJSON_AddNumberToObject(units, u.name, u.energy_j);
    }
    cJSON_AddNumberToObject(units, "tiles", tiles_j);
    cJSON_AddNumberToObject(units, "links", links_j);
    cJSON_AddNumberToObject(units, "static", r.total_j - r.dynamic_j);
    cJSON_AddItemToObject(j, "energy_by_event_j", es::energy_by_event_json(&L.c, r));
    cJSON_AddItemToObject(j, "power_limit", es::power_limit_json(r));
    cJSON_AddItemToObject(j, "area", es::area_json(r.area));
    cJSON_AddItemToObject(j, "utilization", es::utilization_json(r.units, r.area.total_mm2, r.die_utilization, r.cycles));
    if (L.m.experts > 0) add_moe_json(j, o, L, r);
    if (o.functional) add_functional_json(j, o, L, r, fn);
    cJSON_AddNumberToObject(j, "sim_wall_s", wall);
    cJSON_AddItemToObject(j, "cost", es::cost_json(L.c, k));
    if (!k.have) cJSON_AddStringToObject(j, "cost_unknown", k.why.c_str()); /* why "cost" is null */
    cJSON_AddItemToObject(j, "busy_fraction", es::busy_fraction_json(r.units, r.store_busy_cycles, r.cycles));
    if (L.have_sys) cJSON_AddItemToObject(j, "system", es::system_json(L, r, k));
    return j;
}

void print_run(const Opts &o, const es::Loaded &L, const es::RunResult &r, double wall, int64_t run_id,
               const Func &fn, const es::Cost &k)
{
    const double ns = 1e9 / r.clock_hz;
    std::printf("etchsim run: %s on %s%s, %" PRId64 " stream(s) of %" PRId64 " in / %" PRId64 " out%s\n",
                L.m.name, L.have_sys ? "the system " : "", L.have_sys ? L.sys.name : L.c.name, o.streams, o.prompt, o.gen, o.cycle ? ", cycle fidelity" : "");
    std::printf("  weight formats timed: %s\n", L.formats.c_str());
    std::printf("  %-28s %14s %14s\n", "", "simulated", "analytic");
    /* one token per stream: no decode interval, so no decode rate or token latency ("-") */
    const bool dec = r.decode_intervals > 0, an_dec = o.gen > 1;
    auto fig = [](bool defined, const char *fmt, double v) {
        char b[32];
        if (defined) std::snprintf(b, sizeof b, fmt, v);
        else std::snprintf(b, sizeof b, "-");
        return std::string(b);
    };
    std::printf("  %-28s %14s %14s\n", "decode tokens/s per stream", fig(dec, "%.0f", r.decode_tokens_per_s).c_str(),
                fig(an_dec, "%.0f", r.an.decode_tokens_per_s).c_str());
    std::printf("  %-28s %14.0f\n", "tokens/s, all streams", r.tokens_per_s);
    std::printf("  %-28s %14.1f %14s\n", "time to first token, us", r.ttft_ns / 1e3,
                fig(!L.have_sys, "%.1f", r.an.ttft_cycles * ns / 1e3).c_str());
    std::printf("  %-28s %14s %14s\n", "token latency p50, us", fig(dec, "%.2f", r.lat_p50_ns / 1e3).c_str(),
                fig(an_dec, "%.2f", r.an.step_mid_cycles * ns / 1e3).c_str());
    std::printf("  %-28s %14s\n", "token latency p99, us", fig(dec, "%.2f", r.lat_p99_ns / 1e3).c_str());
    if (!dec) std::printf("  (-: every stream made one token: there is no decode interval to measure)\n");
    std::printf("  %-28s %14s %14" PRId64 "\n", "knee: streams / KV slots",
                fig(!L.have_sys, "%.0f", (double)r.an.knee_streams).c_str(), r.an.kv_slots);
    if (L.n_adapters() > 0) std::printf("  %s\n", es::adapter_text(L).c_str());
    std::printf("  %-28s %14.1f   (static %.1f W, dynamic %.1f W)\n", "card power, W", r.watts,
                (r.total_j - r.dynamic_j) / r.seconds, r.dynamic_j / r.seconds);
    if (r.power_limit_w > 0) std::printf("  %-28s %s\n", "power limit", es::power_limit_text(r).c_str());
    std::printf("  %-28s %14.3f\n", "energy per token, mJ", r.joules_per_token * 1e3);
    std::printf("  %-28s %14.1f\n", "die area, mm2", r.area.total_mm2);
    std::printf("  %-28s %14.2f   (area x busy time / die area x run time)\n", "die utilization, %",
                100.0 * r.die_utilization);
    std::printf("  %-28s %14.2f\n", "transistors, billions", r.area.total_tr / 1e9);
    std::printf("  %-28s %14.3f   (%" PRId64 " cycles at %.4g GHz%s)\n", "simulated time, ms", r.seconds * 1e3, r.cycles,
                (r.seconds > 0 ? (double)r.cycles / r.seconds : r.clock_hz) / 1e9, r.throttled_s > 0 ? " on average" : "");
    std::printf("  %-28s %14.2f\n", "host wall time, s", wall);
    if (k.have) std::printf("  %-28s %14.6f   (deployment %s; etchsim cost says how)\n", "$ per million tokens",
                            k.c.usd_per_m_tokens, k.d.name);
    else std::printf("  %-28s %14s   (%s)\n", "$ per million tokens", "-", k.why.c_str());
    if (o.functional) {
        std::printf("  functional (%s activations, %d-bit accumulator, %s KV), stream 0:\n", L.c.tile.act_format,
                    L.c.tile.acc_bits, L.c.kv.format);
        std::printf("    prompt ids:");
        for (int32_t x : fn.prompt_ids) std::printf(" %d", x);
        std::printf("\n    output ids:");
        if (!r.out_ids.empty())
            for (int32_t x : r.out_ids[0]) std::printf(" %d", x);
        std::printf("\n");
        if (fn.have_text) std::printf("    output text: %s\n", fn.text.c_str());
    }
    es::print_system(L, r);
    if (run_id > 0) std::printf("  logged as run %" PRId64 " in %s\n", run_id, o.db.c_str());
}

const char *g_cmd = "run"; /* the command run_error names: run or cost */

int run_error(const es_err *e)
{
    std::fprintf(stderr, "etchsim %s: %s\n", g_cmd, e->msg);
    return 1;
}

// Functional mode: the tokenizer, the prompt's ids (from --text or drawn from --seed), the datapath
// and, with --rtl-cosim, tile 0's lanes through the Verilated RTL. May set o.prompt (--text).
int prepare_functional(Opts &o, const es::Loaded &L, Func &fn, es_err *e)
{
    char vpath[1024];
    es_err te{};
    if (es_func_tokenizer(&L.m, o.vocab.empty() ? nullptr : o.vocab.c_str(), &fn.tok, vpath, sizeof vpath, &te)) {
        if (o.have_text || !o.vocab.empty()) {
            *e = te;
            return -1;
        }
        fn.tok = nullptr; /* no tokenizer: ids only */
    }
    if (o.have_text) {
        /* as llama.cpp tokenizes a prompt: control tokens in the text parsed; without a chat BOS/EOS as the
           vocabulary says */
        unsigned fl = ES_TOK_PARSE_SPECIAL | ES_TOK_ADD_SPECIAL;
        es_chat chat{};
        std::string text = o.text;
        if (o.chat) { /* the chat's ids, then its lead text and the message (trimmed as the format trims it) */
            if (es_chat_load(&chat, fn.tok, vpath, e)) return -1;
            if (chat.trim) {
                text.resize(es_chat_trim(text.data(), text.size(), 0));
                text.erase(0, es_chat_trim(text.data(), text.size(), 1));
            }
            text.insert(0, es_chat_lead(&chat));
            fn.prompt_ids.resize((size_t)es_chat_before(&chat, fn.tok, nullptr, 0));
            es_chat_before(&chat, fn.tok, fn.prompt_ids.data(), (int64_t)fn.prompt_ids.size());
            fl = ES_TOK_PARSE_SPECIAL;
        }
        int64_t n = es_tok_encode_flags(fn.tok, text.data(), text.size(), fl, nullptr, 0);
        size_t at = fn.prompt_ids.size();
        fn.prompt_ids.resize(at + (size_t)n);
        es_tok_encode_flags(fn.tok, text.data(), text.size(), fl, fn.prompt_ids.data() + at, n);
        if (o.chat) {
            at = fn.prompt_ids.size();
            fn.prompt_ids.resize(at + (size_t)es_chat_after(&chat, fn.tok, nullptr, 0));
            es_chat_after(&chat, fn.tok, fn.prompt_ids.data() + at, (int64_t)(fn.prompt_ids.size() - at));
        }
        o.prompt = (int64_t)fn.prompt_ids.size();
        if (o.prompt < 1) return es_fail(e, "--text has no tokens");
        for (int32_t x : fn.prompt_ids)
            if (x < 0 || x >= L.m.vocab)
                return es_fail(e, "%s: token id %d lies outside %s's vocabulary of %lld", vpath, x, L.m.name,
                               (long long)L.m.vocab);
    } else {
        uint64_t st = (uint64_t)o.seed;
        for (int64_t i = 0; i < o.prompt; i++) fn.prompt_ids.push_back((int32_t)(es_splitmix64(&st) % (uint64_t)L.m.vocab));
    }
    es_func_weights fw{o.rom.empty() ? nullptr : o.rom.c_str(), o.weights.empty() ? nullptr : o.weights.c_str(),
                       o.synthetic, o.recipe.empty() ? nullptr : o.recipe.c_str(), -1};
    if (es_func_datapath(&fn.dp, &L.c, &L.m, &fw, o.threads, e)) return -1;
    if (es::dp_set_adapters(fn.dp, L, e)) return -1;
    if (o.cosim) { /* tile 0's lane matmuls through the Verilated lane */
        if (!(fn.cosim = es::es_cosim_open(&L.c, &L.m, 0, (int)L.c.tile.layers, e))) return -1;
        es_dp_set_lane_fn(fn.dp, es::es_cosim_lane_row, fn.cosim);
    }
    return 0;
}

// The run's positions fit the KV slot and the model's context, and its output tokens the per-run limit.
int check_run_size(const Opts &o, const es::Loaded &L, es_err *e)
{
    if (o.prompt + o.gen > L.c.kv.slot_context)
        return es_fail(e, "--prompt %" PRId64 " + --generate %" PRId64 " exceeds the KV slot of %" PRId64
                          " positions (%s: key 'kv.slot_context')", o.prompt, o.gen, L.c.kv.slot_context, L.c.path);
    const int64_t max_tokens = 50000000;
    if (o.streams * o.gen > max_tokens)
        return es_fail(e, "--streams %" PRId64 " x --generate %" PRId64 " = %" PRId64 " output tokens; at most %" PRId64
                          " per run", o.streams, o.gen, o.streams * o.gen, max_tokens);
    if (o.prompt + o.gen > L.m.max_pos)
        return es_fail(e, "--prompt + --generate = %" PRId64 " exceeds the model's context (%s: key "
                          "'max_position_embeddings' = %" PRId64 ")", o.prompt + o.gen, L.m.path, L.m.max_pos);
    return 0;
}

// Each stream's adapter (-1: none) into out: --adapter-of-stream's list, stream i taking entry i mod its length, or
// without one stream i adapter i mod k. 0, or -1 with e naming the entry that is not an id from 0 to k - 1 or none.
int stream_adapters(const std::string &list, int k, int64_t streams, std::vector<int32_t> &out, es_err *e)
{
    std::vector<int32_t> ids;
    for (size_t at = 0; !list.empty() && at <= list.size();) {
        size_t c = list.find(',', at);
        if (c == std::string::npos) c = list.size();
        std::string one = list.substr(at, c - at);
        char *end = nullptr;
        long v = one == "none" ? -1 : std::strtol(one.c_str(), &end, 10);
        if (one != "none" && (one.empty() || *end || v < 0 || v >= k))
            return es_fail(e, "--adapter-of-stream: entry %zu, '%s', in '%s': expected an adapter id from 0 to %d or "
                              "'none'", ids.size() + 1, one.c_str(), list.c_str(), k - 1);
        ids.push_back((int32_t)v);
        at = c + 1;
    }
    out.resize((size_t)streams);
    for (int64_t i = 0; i < streams; i++)
        out[(size_t)i] = ids.empty() ? (int32_t)(i % k) : ids[(size_t)i % ids.size()];
    return 0;
}

// Load the model and chip, read --routing, set up functional mode and check the run's size: -1 to
// go on, else the exit code (the error printed).
int prepare_run(Opts &o, es::Loaded &L, es::Routing &routing, Func &fn, es_err *e)
{
    const std::string timed = es::timed_recipe(o.recipe, o.functional, !o.weights.empty() || o.synthetic >= 0);
    if (es::set_adapters(L, o.adapters, o.adapter_rank, o.adapter_roles, o.adapter_count, e)) return run_error(e);
    if (!o.system.empty() ? es::load_system(o.system, o.model_given ? o.model : "", o.sets, timed, L, e)
                          : es::load(o.model, o.chip, o.sets, o.rom, timed, L, e))
        return run_error(e);
    if (!o.routing.empty() && rc_routing(o.routing, L.m, routing, e)) {
        run_error(e);
        return o.routing.rfind("replay:", 0) == 0 || L.m.experts == 0 ? 1 : 2;
    }
    for (int k = 0; L.have_sys && k < L.sys.n_chips; k++)
        if (L.sys.chips[k].tp > 1 && (o.functional || o.cycle)) {
            es_fail(e, "%s: key 'chips[%d].tensor_parallel': a stage of %d chips splitting each layer's matrices is "
                       "simulated as one chip holding its shard, in timing at the transaction fidelity only: drop %s",
                    L.sys.path, k, L.sys.chips[k].tp, o.functional ? "--mode functional" : "--fidelity cycle");
            return run_error(e);
        }
    if (L.n_adapters() == 0) {
    } else if (stream_adapters(o.adapter_of_stream, L.n_adapters(), o.streams, o.stream_adapter, e)) {
        return run_error(e);
    } else {
        L.set_an_adapter(o.stream_adapter[0]); /* the analytic model's stream 0 */
    }
    if (o.functional && prepare_functional(o, L, fn, e)) return run_error(e);
    if (check_run_size(o, L, e)) return run_error(e);
    return -1;
}

// What a run owns until the end of the command, whichever way it ends.
struct RunOwned {
    es_db *db = nullptr;
    const es_err *err = nullptr;   // the command's last error: a run left open is failed with it
    char *chip_json = nullptr, *proc_json = nullptr, *summary = nullptr;
    cJSON *json = nullptr;
    RunOwned() = default;
    RunOwned(const RunOwned &) = delete;
    RunOwned &operator=(const RunOwned &) = delete;
    ~RunOwned()
    {
        if (db && err && err->msg[0]) es_db_set_error(db, err->msg);
        es_db_close(db);
        cJSON_free(chip_json);
        cJSON_free(proc_json);
        cJSON_free(summary);
        cJSON_Delete(json);
    }
};

// Open the database and begin the run in it (not with --no-db: run_id stays 0).
int begin_db(const Opts &o, const es::Loaded &L, RunOwned &own, int64_t &run_id, es_err *e)
{
    own.chip_json = es_cfg_dump(&L.c.cfg);
    own.proc_json = es_cfg_dump(&L.c.proc);
    if (o.no_db) return 0;
    es_run_info ri{"run", L.have_sys ? L.sys.name : L.c.name, L.m.name, o.prompt, o.gen, o.streams, own.chip_json, own.proc_json};
    return es_db_open(&own.db, o.db.c_str(), e) || es_db_begin_run(own.db, &ri, &run_id, e) ? -1 : 0;
}

// The streams and what the simulation records (tokens into the database, logits, trace, VCD).
void fill_workload(es::Workload &w, const Opts &o, const Func &fn, const es::Routing &routing, RunOwned &own,
                   int64_t run_id)
{
    w.reqs.assign((size_t)o.streams, es::Request{o.prompt, o.gen, fn.prompt_ids, -1});
    for (size_t i = 0; i < o.stream_adapter.size() && i < w.reqs.size(); i++) w.reqs[i].adapter = o.stream_adapter[i];
    if (own.db) /* each token's row, streamed as its stream finishes */
        w.token_sink = [&own, run_id](const es_token_rec &t, es_err *err) { return es_db_put_token(own.db, run_id, &t, err); };
    w.dp = fn.dp;
    w.tap_id = o.logits.empty() ? -1 : 0;
    w.routing = routing;
    w.trace_path = o.trace;
    w.vcd_path = o.vcd;
    w.cycle = o.cycle;
    if (fn.cosim) w.cosim_depth = es::es_cosim_lane_depth(fn.cosim);
    w.trace_start_ns = o.trace_start_ns;
    w.trace_end_ns = o.trace_end_ns;
    w.an_prompt = o.prompt;
    w.an_gen = o.gen;
    w.progress = isatty(2) != 0;
}

// Functional mode after the run: stream 0's text, and its logits into --logits.
int finish_functional(const Opts &o, Func &fn, const es::RunResult &r, es_err *e)
{
    if (fn.tok && !r.out_ids.empty()) {
        char *t = es_func_text(fn.tok, r.out_ids[0].data(), (int64_t)r.out_ids[0].size());
        if (t) {
            fn.text = t;
            fn.have_text = true;
            std::free(t);
        }
    }
    if (o.logits.empty()) return 0;
    es_logits_file lf;
    if (es_logits_open(&lf, o.logits.c_str(), e)) return -1;
    for (const auto &row : r.tap)
        if (es_logits_row(&lf, row.pos, row.token, row.logits.data(), (int64_t)row.logits.size(), e)) {
            es_logits_abort(&lf);
            return -1;
        }
    return es_logits_close(&lf, e);
}

// Finish the run in the database with its JSON as the summary, then print the JSON or the summary.
int report_run(const Opts &o, const es::Loaded &L, const es::RunResult &r, double wall, const Func &fn,
               RunOwned &own, int64_t run_id, es::Cost &k, es_err *e)
{
    if (k.have_d) {
        es_err ce{};
        es::compute_cost(L, r, k, &ce); /* not known (no cost.* keys): null, and the summary says why */
    }
    own.json = run_json(o, L, r, wall, fn, k);
    own.summary = cJSON_PrintUnformatted(own.json);
    const std::vector<es_unit_rec> units = es::db_units(r); /* with the weight store's row */
    if (own.db && es_db_finish_run(own.db, run_id, (double)r.cycles, r.seqs.data(), (int)r.seqs.size(),
                                   nullptr, 0, units.data(), /* the tokens were streamed */
                                   (int)units.size(), nullptr, 0, own.summary, e))
        return run_error(e);
    if (o.json) {
        char *s = cJSON_Print(own.json);
        std::puts(s);
        cJSON_free(s);
    } else {
        print_run(o, L, r, wall, own.db ? run_id : 0, fn, k);
    }
    return 0;
}

// run and cost alike: the options, the loaded chip, model and workload inputs, and the deployment
// (need_cost: a chip without cost inputs is an error). -1 to go on, else the exit code.
int start_run(const char *cmd, int argc, char **argv, Opts &o, es::Loaded &L, es::Routing &routing, Func &fn,
              es::Cost &k, bool need_cost, es_err *e)
{
    int rc = parse(cmd, argc, argv, o, true);
    if (rc >= 0) return rc;
    if ((rc = prepare_run(o, L, routing, fn, e)) >= 0) return rc;
    if (es::load_deploy(o.deploy, o.deploy_given, o.deploy_sets, k, need_cost, e)) return run_error(e);
    return -1;
}

int cmd_run(int argc, char **argv)
{
    Opts o;
    es_err e{};
    es::Loaded L;
    es::Routing routing;
    Func fn;
    es::Cost k;
    int rc = start_run("run", argc, argv, o, L, routing, fn, k, false, &e);
    if (rc >= 0) return rc;
    RunOwned own; // after e: its closing marks a run left open failed with e
    own.err = &e;
    int64_t run_id = 0;
    if (begin_db(o, L, own, run_id, &e)) return run_error(&e);
    es::Workload w;
    fill_workload(w, o, fn, routing, own, run_id);
    es::RunResult r;
    auto t0 = std::chrono::steady_clock::now();
    std::vector<const es_map *> pms = L.pms();
    rc = es::run_sim(pms.data(), (int)pms.size(), w, r, &e);
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rc) return run_error(&e); /* own's closing marks the run failed with it */
    if (o.functional && finish_functional(o, fn, r, &e)) return run_error(&e);
    return report_run(o, L, r, wall, fn, own, run_id, k, &e);
}

// etchsim cost: the run's figures (no database) and what they cost (es_cost.h).
int cmd_cost(int argc, char **argv)
{
    Opts o;
    g_cmd = "cost";
    es_err e{};
    es::Loaded L;
    es::Routing routing;
    Func fn;
    es::Cost k;
    int rc = start_run("cost", argc, argv, o, L, routing, fn, k, true, &e);
    if (rc >= 0) return rc;
    RunOwned own; /* no database */
    es::Workload w;
    fill_workload(w, o, fn, routing, own, 0);
    es::RunResult r;
    std::vector<const es_map *> pms = L.pms();
    if (es::run_sim(pms.data(), (int)pms.size(), w, r, &e) || es::compute_cost(L, r, k, &e)) return run_error(&e);
    if (!o.json) {
        print_cost(o, L, k);
        return 0;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "chip", L.have_sys ? L.sys.name : L.c.name); /* a system: its name, as run's */
    cJSON_AddStringToObject(j, "model", L.m.name);
    cJSON_AddNumberToObject(j, "prompt_tokens", (double)o.prompt);
    cJSON_AddNumberToObject(j, "generate_tokens", (double)o.gen);
    cJSON_AddNumberToObject(j, "streams", (double)o.streams);
    cJSON_AddItemToObject(j, "cost", es::cost_json(L.c, k));
    char *s = cJSON_Print(j);
    std::puts(s);
    cJSON_free(s);
    cJSON_Delete(j);
    return 0;
}

} // namespace

int sc_main(int argc, char **argv)
{
    if (argc < 2) {
        std::fputs(USAGE, stderr);
        return 2;
    }
    std::string cmd = argv[1];
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
        std::fputs(USAGE, stdout);
        return 0;
    }
    if (cmd == "--version") {
        std::printf("etchsim %s\n", ETCHSIM_VERSION);
        return 0;
    }
    try {
        if (cmd == "run") return cmd_run(argc - 2, argv + 2);
        if (cmd == "area") return cmd_area(argc - 2, argv + 2);
        if (cmd == "cost") return cmd_cost(argc - 2, argv + 2);
        if (cmd == "rom") return es_cli_rom(argc - 2, argv + 2);
        if (cmd == "infer") return es_cli_infer(argc - 2, argv + 2);
        if (cmd == "chip") return es_cli_chip(argc - 2, argv + 2);
        if (cmd == "compare") return es_cli_compare(argc - 2, argv + 2);
        if (cmd == "budget") return es_cli_budget(argc - 2, argv + 2);
        if (cmd == "db") return es_cli_db(argc - 2, argv + 2);
        if (cmd == "sweep") return es_cli_sweep(argc - 2, argv + 2);
        if (cmd == "eval") return es::cmd_eval(argc - 2, argv + 2);
        if (cmd == "dataset") return es::cmd_dataset(argc - 2, argv + 2);
    } catch (const std::bad_alloc &) {
        std::fprintf(stderr, "etchsim %s: out of memory\n", cmd.c_str());
        return 1;
    } catch (const std::exception &ex) {
        std::fprintf(stderr, "etchsim %s: %s\n", cmd.c_str(), ex.what());
        return 1;
    }
    std::fprintf(stderr, "etchsim: unknown command '%s'\n%s", cmd.c_str(), USAGE);
    return 2;
}

// Our own main: SystemC prints a banner before sc_main unless told not to,
// and that banner must not reach users' terminals or JSON consumers.
int main(int argc, char **argv)
{
    setenv("SC_COPYRIGHT_MESSAGE", "DISABLE", 1);
    es_cleanup_install(); /* SIGINT, SIGTERM, SIGHUP: the registered temporaries go first */
    /* SystemC's informational reports go to stdout, into --json output: a run that fails stops the
     * kernel (sc_stop: "Simulation stopped by user.", our own error says why) and --vcd sets the
     * trace's time unit ("tracing timescale unit set") */
    sc_core::sc_report_handler::set_actions(sc_core::SC_INFO, sc_core::SC_DO_NOTHING);
    es::stack_save(); /* before any coroutine runs (es_stack.h) */
    return sc_core::sc_elab_and_sim(argc, argv);
}
