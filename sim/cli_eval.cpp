// cli_eval: `etchsim eval`. Reads a rule and a dataset, makes one prompt per
// record from a template (the rule first, then the record's fields), counts
// tokens, and runs the batch through the host driver on the simulated chip.
// With prefix sharing the rule's KV is computed once and every sequence
// reads it; a second batch without sharing runs in a forked child, in
// parallel, so the report can say what sharing saved.
#include "cli_eval.h"
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <sys/wait.h>
#include <unordered_map>
#include <unistd.h>
#include <vector>
#include <cjson/cJSON.h>
#include "cli_common.h"
#include "es_dataset.h"
#include "es_fs.h"
#include "es_db.h"
#include "es_stats.h"
#include "es_top.h"
#include "es_ctx.h"
#include "es_tok.h"

namespace es {

namespace {

const char *DEMO_RULE = "Flag if merchant category doesn't match customer's typical spending pattern";
const int64_t DEMO_RECORDS = 10000;
const uint64_t DEMO_SEED = 20260221;

const char *DEFAULT_TEMPLATE =
    "{rule}\n"
    "\n"
    "Record:\n"
    "{record}\n"
    "Answer FLAG or OK.\n";

const char *HELP =
    "usage: etchsim eval [options]\n"
    "\n"
    "Apply one natural-language rule to every record of a dataset, as one batch on the\n"
    "simulated chip: one prompt per record, the rule first, then the record's fields.\n"
    "Reports the batch time, the time to the first 100 results, per-record latency,\n"
    "tokens/s, watts and joules per record. Without --rule and --data it runs the demo:\n"
    "a fraud rule over 10,000 generated card transactions.\n"
    "\n"
    "options:\n"
    "  --rule TEXT            the rule\n"
    "  --rule-file F          the rule, from a file\n"
    "  --data F               records: F.csv (RFC 4180, with a header) or F.jsonl\n"
    "  --template F           prompt template: {rule} first, then {record} (all fields as\n"
    "                         'name: value' lines) and/or {field:NAME}\n"
    "  --max-new-tokens N     tokens generated per record (default 4)\n"
    "  --records N            evaluate at most the first N records\n"
    "  --vocab F              tokenizer vocabulary: a tiktoken file or a GGUF file\n"
    "                         (default: tokenizer.tiktoken beside the model's config.json,\n"
    "                         which scripts/fetch-vocab writes for Llama 3)\n"
    "  --policy fcfs|spf      scheduler: first come first served (default) or\n"
    "                         shortest prompt first\n"
    "  --no-prefix-sharing    compute the rule's KV for every record\n"
    "  --no-compare           skip the second batch without prefix sharing\n"
    "  --chip, --model, --set, --rom, --db, --no-db, --json   as for `etchsim run`\n"
    "  -h, --help             this text\n"
    "\n"
    "Token counts: with a vocabulary, Llama 3 byte-level BPE (the prompt starts with BOS);\n"
    "without one, a record's tokens are estimated as one per 4 UTF-8 bytes, rounded up,\n"
    "and the report, the JSON and the database say so.\n";

struct Opts {
    std::string rule, rule_file, data, tmpl, vocab, chip = "hc1-class", model = "llama-3.1-8b", db = "etchsim.sqlite", rom;
    int64_t max_new = 4, records = -1;
    int policy = ES_POLICY_FCFS;
    bool sharing = true, compare = true, json = false, no_db = false, have_rule = false;
    std::vector<std::string> sets;
};

int usage(const char *msg, const char *arg)
{
    std::fprintf(stderr, "etchsim eval: %s%s%s\nTry 'etchsim eval --help'.\n", msg, arg ? " " : "", arg ? arg : "");
    return 2;
}

bool read_file(const std::string &path, std::string &out, es_err *e)
{
    char *buf;
    size_t n;
    if (es_read_file(path.c_str(), 1u << 20, &buf, &n, e)) return false;
    out.assign(buf, n);
    std::free(buf);
    return true;
}

/* The documented estimate: one token per 4 UTF-8 bytes, rounded up, at least 1. */
int64_t estimate_tokens(const std::string &s) { return std::max<int64_t>(1, ((int64_t)s.size() + 3) / 4); }

/* Token counts: the tokenizer when a vocabulary was found, else the estimate. */
const es_tok *g_tok = nullptr;
int64_t count_tokens(const std::string &s)
{
    if (!g_tok) return estimate_tokens(s);
    return std::max<int64_t>(1, es_tok_encode(g_tok, s.data(), s.size(), nullptr, 0));
}

struct Template {
    std::string prefix;   // text before the first record-dependent part (holds the rule)
    std::string body;     // the rest, with {record} and {field:NAME}
};

bool split_template(const std::string &t, const std::string &rule, const std::string &label, Template &out, es_err *e)
{
    size_t r = t.find("{rule}"), rec = std::min(t.find("{record}"), t.find("{field:"));
    if (r == std::string::npos) {
        es_fail(e, "%s: template has no {rule}", label.c_str());
        return false;
    }
    if (rec == std::string::npos) {
        es_fail(e, "%s: template has neither {record} nor {field:NAME}", label.c_str());
        return false;
    }
    if (r > rec) {
        es_fail(e, "%s: {rule} must come before the record's fields, so the rule can be a shared prefix",
                label.c_str());
        return false;
    }
    out.prefix = t.substr(0, rec);
    out.prefix.replace(r, 6, rule);
    out.body = t.substr(rec);
    return true;
}

std::string render(const Template &t, const es_record &rec)
{
    std::string out;
    const std::string &b = t.body;
    size_t i = 0;
    while (i < b.size()) {
        if (b.compare(i, 8, "{record}") == 0) {
            for (int k = 0; k < rec.n_fields; k++) {
                out += rec.names[k];
                out += ": ";
                out += rec.values[k];
                out += "\n";
            }
            i += 8;
        } else if (b.compare(i, 7, "{field:") == 0 && b.find('}', i) != std::string::npos) {
            size_t end = b.find('}', i);
            std::string name = b.substr(i + 7, end - i - 7);
            for (int k = 0; k < rec.n_fields; k++)
                if (name == rec.names[k]) out += rec.values[k];
            i = end + 1;
        } else {
            out += b[i++];
        }
    }
    return out;
}

struct Compare {     // what the batch without prefix sharing measured
    double batch_ns = 0;
    int64_t prefill_passes = 0, max_in_flight = 0;
    int ok = 0;
};

// Reads records as the driver asks for them: renders each prompt, counts its
// tokens, hands skipped records to on_skip and keeps what the results need
// for the records in flight only.
class Reader {
public:
    Reader(const Template &tp, int64_t rule_tokens, int64_t context, int64_t max_new, int64_t limit, bool sharing,
           bool estimated)
        : tp_(tp), rule_tokens_(rule_tokens), context_(context), max_new_(max_new), limit_(limit),
          sharing_(sharing), estimated_(estimated)
    {
    }
    ~Reader() { es_dataset_close(ds_); }
    int open(const std::string &path, es_err *e) { return es_dataset_open(&ds_, path.c_str(), e); }
    std::function<int(const es_rec_row &, es_err *)> on_skip;
    int64_t accepted = 0, first_prompt = 0;
    double body_sum = 0;

    int next(int64_t &id, Request &req, es_err *e)
    {
        char reason[160];
        for (;;) {
            if (limit_ >= 0 && idx_ >= limit_) return 0;
            es_record rec;
            int rc = es_dataset_next(ds_, &rec, reason, sizeof reason, e);
            if (rc == ES_REC_EOF) return 0;
            if (rc == ES_REC_ERR) return -1;
            es_rec_row row{};
            row.record = idx_++;
            row.line = rec.line;
            row.tokens_estimated = estimated_;
            if (rc == ES_REC_BAD) {
                std::snprintf(row.reason, sizeof row.reason, "%s", reason);
                if (on_skip && on_skip(row, e)) return -1;
                continue;
            }
            std::snprintf(row.key, sizeof row.key, "%s", rec.n_fields ? rec.values[0] : "");
            int64_t body = count_tokens(render(tp_, rec));
            row.prompt_tokens = rule_tokens_ + body;
            if (row.prompt_tokens + max_new_ > context_) {
                std::snprintf(row.reason, sizeof row.reason,
                              "line %lld: %lld prompt + %lld new tokens exceed the context window of %lld",
                              (long long)rec.line, (long long)row.prompt_tokens, (long long)max_new_,
                              (long long)context_);
                if (on_skip && on_skip(row, e)) return -1;
                continue;
            }
            row.done = 1;
            row.output_tokens = max_new_;
            id = row.record;
            req.prompt = sharing_ ? body : row.prompt_tokens;
            req.gen = max_new_;
            if (accepted++ == 0) first_prompt = req.prompt;
            body_sum += (double)body;
            fly_.emplace(id, row);
            return 1;
        }
    }

    // The row of a finished record, removed from the in-flight table.
    int finish(int64_t id, es_rec_row &row)
    {
        auto it = fly_.find(id);
        if (it == fly_.end()) return -1;
        row = it->second;
        fly_.erase(it);
        return 0;
    }

private:
    const Template &tp_;
    int64_t rule_tokens_, context_, max_new_, limit_;
    bool sharing_, estimated_;
    es_dataset *ds_ = nullptr;
    int64_t idx_ = 0;
    std::unordered_map<int64_t, es_rec_row> fly_;
};

// Run the batch without sharing in a child; the parent collects it later.
pid_t start_compare(const Loaded &L, const std::string &data, const Template &tp, int64_t rule_tokens,
                    int64_t context, const Opts &o, bool estimated, int fd_out)
{
    pid_t pid = fork();
    if (pid != 0) return pid;
    Compare c;
    RunResult r;
    es_err e{};
    Reader rd(tp, rule_tokens, context, o.max_new, o.records, false, estimated);
    Workload w;
    w.source = [&](int64_t &id, Request &q, es_err *err) { return rd.next(id, q, err); };
    w.sink = [&](const es_req_result &q, const SeqState &, es_err *) {
        es_rec_row row;
        return rd.finish(q.id, row);
    };
    w.keep_tokens = false;
    w.policy = o.policy;
    if (rd.open(data, &e) == 0 && run_sim(&L.c, &L.m, w, r, &e) == 0) {
        c.batch_ns = r.seconds * 1e9;
        c.prefill_passes = r.prefill_passes;
        c.max_in_flight = r.max_in_flight;
        c.ok = 1;
    }
    ssize_t wr = write(fd_out, &c, sizeof c);
    _exit(wr == (ssize_t)sizeof c ? 0 : 1);
}

} // namespace

int cmd_dataset(int argc, char **argv)
{
    const char *out = nullptr;
    long long n = DEMO_RECORDS;
    unsigned long long seed = DEMO_SEED;
    if (argc >= 1 && (!std::strcmp(argv[0], "-h") || !std::strcmp(argv[0], "--help"))) {
        std::puts("usage: etchsim dataset demo -o FILE.csv [--records N] [--seed S]\n\n"
                  "Write the demo dataset: N card transactions (default 10,000) with customer, their usual\n"
                  "merchant categories, merchant, category, amount, time and location; about 3% anomalous.\n"
                  "Deterministic from the seed.");
        return 0;
    }
    if (argc < 1 || std::strcmp(argv[0], "demo")) return usage("dataset: expected 'demo'", argc ? argv[0] : nullptr);
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : nullptr;
        char *end = nullptr;
        if (!std::strcmp(argv[i], "-o") && v) out = argv[++i];
        else if (!std::strcmp(argv[i], "--records") && v && (n = std::strtoll(argv[++i], &end, 10)) > 0 && !*end) {}
        else if (!std::strcmp(argv[i], "--seed") && v && (seed = std::strtoull(argv[++i], &end, 0), !*end)) {}
        else return usage("dataset demo: bad option", argv[i]);
    }
    if (!out) return usage("dataset demo: -o FILE.csv is required", nullptr);
    es_err e{};
    if (es_demo_write(out, n, seed, &e)) {
        std::fprintf(stderr, "etchsim dataset: %s\n", e.msg);
        return 1;
    }
    std::printf("wrote %s: %lld transactions, seed %llu\n", out, n, seed);
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    Opts o;
    for (int i = 0; i < argc; i++) {
        std::string a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : nullptr;
        auto need = [&](void) -> const char * {
            if (!v) return nullptr;
            i++;
            return v;
        };
        if (a == "-h" || a == "--help") {
            std::fputs(HELP, stdout);
            return 0;
        } else if (a == "--rule") {
            if (!need()) return usage("--rule needs TEXT", nullptr);
            o.rule = v;
            o.have_rule = true;
        } else if (a == "--rule-file") {
            if (!need()) return usage("--rule-file needs a path", nullptr);
            o.rule_file = v;
            o.have_rule = true;
        } else if (a == "--data") {
            if (!need() || !*v) return usage("--data needs a path", nullptr);
            o.data = v;
        } else if (a == "--template") {
            if (!need()) return usage("--template needs a path", nullptr);
            o.tmpl = v;
        } else if (a == "--vocab") {
            if (!need() || !*v) return usage("--vocab needs a path", nullptr);
            o.vocab = v;
        } else if (a == "--max-new-tokens" || a == "--records") {
            char *end = nullptr;
            long long n = need() ? std::strtoll(v, &end, 10) : 0;
            if (!v || !end || *end || n < 1 || n > (a == "--records" ? 100000000LL : 4096LL))
                return usage((a + " expects a whole number from 1 to " + (a == "--records" ? "100000000" : "4096") +
                              ", got").c_str(), v ? v : "nothing");
            (a == "--records" ? o.records : o.max_new) = n;
        } else if (a == "--policy") {
            if (!need() || (std::strcmp(v, "fcfs") && std::strcmp(v, "spf")))
                return usage("--policy expects fcfs or spf, got", v ? v : "nothing");
            o.policy = std::strcmp(v, "spf") ? ES_POLICY_FCFS : ES_POLICY_SPF;
        } else if (a == "--no-prefix-sharing") {
            o.sharing = false;
        } else if (a == "--no-compare") {
            o.compare = false;
        } else if (a == "--chip" || a == "--model" || a == "--db" || a == "--rom") {
            if (!need() || !*v) return usage((a + " needs a value").c_str(), nullptr);
            (a == "--chip" ? o.chip : a == "--model" ? o.model : a == "--db" ? o.db : o.rom) = v;
        } else if (a == "--set") {
            if (!need() || !std::strchr(v, '=')) return usage("--set needs KEY=VALUE, got", v ? v : "nothing");
            o.sets.push_back(v);
        } else if (a == "--no-db") {
            o.no_db = true;
        } else if (a == "--json") {
            o.json = true;
        } else {
            return usage("unknown option", a.c_str());
        }
    }
    es_err e{};
    auto fail = [&](void) {
        std::fprintf(stderr, "etchsim eval: %s\n", e.msg);
        return 1;
    };
    // the rule
    bool demo = !o.have_rule && o.data.empty();
    if (!o.rule_file.empty() && !read_file(o.rule_file, o.rule, &e)) return fail();
    if (demo) o.rule = DEMO_RULE;
    else if (!o.have_rule) {
        es_fail(&e, "--data needs a rule: give --rule TEXT or --rule-file F");
        return fail();
    }
    while (!o.rule.empty() && std::isspace((unsigned char)o.rule.back())) o.rule.pop_back();
    if (o.rule.find_first_not_of(" \t\r\n") == std::string::npos) {
        es_fail(&e, "%s: the rule is empty", o.rule_file.empty() ? "--rule" : o.rule_file.c_str());
        return fail();
    }
    if (!es_utf8_valid(o.rule.data(), o.rule.size())) {
        es_fail(&e, "%s: the rule is not valid UTF-8", o.rule_file.empty() ? "--rule" : o.rule_file.c_str());
        return fail();
    }
    // the data
    std::string data = o.data, tmp_dir;
    if (data.empty()) {
        char d[] = "/tmp/etchsim-demo-XXXXXX";
        if (!mkdtemp(d)) {
            es_fail(&e, "cannot create a temporary folder for the demo dataset");
            return fail();
        }
        tmp_dir = d;
        data = tmp_dir + "/transactions.csv";
        if (es_demo_write(data.c_str(), DEMO_RECORDS, DEMO_SEED, &e)) return fail();
    }
    struct Cleanup {
        std::string dir, file;
        ~Cleanup()
        {
            if (!dir.empty()) {
                std::remove(file.c_str());
                rmdir(dir.c_str());
            }
        }
    } cleanup{tmp_dir, data};
    Loaded L;
    if (load(o.model, o.chip, o.sets, o.rom, L, &e)) return fail();
    std::string tmpl_text = DEFAULT_TEMPLATE;
    if (!o.tmpl.empty() && !read_file(o.tmpl, tmpl_text, &e)) return fail();
    Template tp;
    if (!split_template(tmpl_text, o.rule, o.tmpl.empty() ? "built-in template" : o.tmpl, tp, &e)) return fail();
    bool sharing = o.sharing && L.c.kv_prefix_sharing;
    // the tokenizer: --vocab, else tokenizer.tiktoken beside the model's config.json
    std::string vocab = o.vocab;
    if (vocab.empty()) {
        std::string dir = L.m.path;
        size_t slash = dir.rfind('/');
        dir = slash == std::string::npos ? "." : dir.substr(0, slash);
        if (access((dir + "/tokenizer.tiktoken").c_str(), R_OK) == 0) vocab = dir + "/tokenizer.tiktoken";
    }
    es_tok *tok = nullptr;
    struct TokFree {
        es_tok **t;
        ~TokFree() { es_tok_free(*t); g_tok = nullptr; }
    } tkf{&tok};
    if (!vocab.empty()) {
        bool gguf = es_ends_with(vocab.c_str(), ".gguf");
        if (gguf ? es_tok_load_gguf(&tok, vocab.c_str(), &e) : es_tok_load_tiktoken(&tok, vocab.c_str(), &e)) return fail();
        g_tok = tok;
    }
    const bool estimated = tok == nullptr;
    /* the shared prefix: BOS, then the rule and the template text before the record */
    int64_t rule_tokens = tok ? 1 + count_tokens(tp.prefix) : estimate_tokens(tp.prefix);
    int64_t context = std::min<int64_t>(L.m.max_pos, L.c.kv_slot_context);

    // records are read as the driver admits them; memory holds only those in flight
    int64_t done = 0, skipped = 0;
    std::vector<es_rec_row> shown_skips;
    es_db *db = nullptr;
    int64_t run_id = 0;
    struct DbClose {
        es_db **db;
        ~DbClose() { es_db_close(*db); }
    } dbc{&db};
    char *chip_json = es_cfg_dump(&L.c.cfg), *proc_json = es_cfg_dump(&L.c.proc);
    struct Free {
        char *a, *b;
        ~Free()
        {
            cJSON_free(a);
            cJSON_free(b);
        }
    } fr{chip_json, proc_json};
    // the database first: an unwritable path fails before any work
    if (!o.no_db) {
        es_run_info ri{"eval", L.c.name, L.m.name, rule_tokens, o.max_new, 0, chip_json, proc_json};
        if (es_db_open(&db, o.db.c_str(), &e) || es_db_begin_run(db, &ri, &run_id, &e) || es_db_stream_begin(db, &e))
            return fail();
    }
    Reader rd(tp, rule_tokens, context, o.max_new, o.records, sharing, estimated);
    if (rd.open(data, &e)) return fail();
    rd.on_skip = [&](const es_rec_row &row, es_err *err) {
        skipped++;
        if (shown_skips.size() < 5) shown_skips.push_back(row);
        return db ? es_db_put_record(db, run_id, &row, err) : 0;
    };
    std::vector<double> lat;
    double first100 = 0;
    const bool progress = isatty(2) && !o.json;
    auto last_print = std::chrono::steady_clock::now();
    Workload w;
    w.source = [&](int64_t &id, Request &r, es_err *err) { return rd.next(id, r, err); };
    w.sink = [&](const es_req_result &q, const SeqState &st, es_err *err) {
        es_rec_row row{};
        if (rd.finish(q.id, row)) return es_fail(err, "driver: finished record %lld was never read", (long long)q.id);
        row.submit_ns = q.submit_ns;
        row.first_ns = q.first_ns;
        row.done_ns = q.done_ns;
        row.energy_j = st.energy_j;
        lat.push_back(q.done_ns - q.submit_ns);
        if (++done == 100) first100 = q.done_ns;
        if (progress && (done & 255) == 0) {
            auto now = std::chrono::steady_clock::now();
            if (now - last_print > std::chrono::milliseconds(500)) {
                last_print = now;
                std::fprintf(stderr, "\r  %lld records done, %lld skipped, %.1f ms simulated", (long long)done,
                             (long long)skipped, q.done_ns / 1e6);
            }
        }
        return db ? es_db_put_record(db, run_id, &row, err) : 0;
    };
    w.keep_tokens = false;
    w.prefix = sharing ? rule_tokens : 0;
    w.policy = o.policy;
    w.progress = false;

    Compare cmp;
    pid_t child = -1;
    int pipefd[2] = {-1, -1};
    if (sharing && o.compare && pipe(pipefd) == 0) {
        std::fflush(nullptr);
        child = start_compare(L, data, tp, rule_tokens, context, o, estimated, pipefd[1]);
        close(pipefd[1]);
    }
    RunResult r;
    auto t0 = std::chrono::steady_clock::now();
    if (run_sim(&L.c, &L.m, w, r, &e)) {
        if (child > 0) waitpid(child, nullptr, 0);
        return fail();
    }
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (progress) std::fprintf(stderr, "\r%70s\r", "");
    if (child > 0) {
        ssize_t got = read(pipefd[0], &cmp, sizeof cmp);
        close(pipefd[0]);
        waitpid(child, nullptr, 0);
        if (got != (ssize_t)sizeof cmp) cmp.ok = 0;
        wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    double batch_ns = done > 0 ? r.seconds * 1e9 : 0;
    if (done > 0 && done < 100) first100 = batch_ns;
    double p50 = es_percentile(lat.data(), lat.size(), 50), p95 = es_percentile(lat.data(), lat.size(), 95),
           p99 = es_percentile(lat.data(), lat.size(), 99);
    int64_t out_tokens = r.tokens;
    // KV slots at the batch's mean sizes, with and without the shared prefix
    double mean_body = done ? rd.body_sum / (double)rd.accepted : 0;
    int64_t cap = es_chip_kv_positions(&L.c, &L.m);
    int64_t slots_plain = (int64_t)((double)cap / (mean_body + (double)rule_tokens + (double)o.max_new));
    int64_t slots_shared = (int64_t)((double)(cap - rule_tokens) / (mean_body + (double)o.max_new));

    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "chip", L.c.name);
    cJSON_AddStringToObject(j, "model", L.m.name);
    cJSON_AddStringToObject(j, "rule", o.rule.c_str());
    cJSON_AddStringToObject(j, "data", o.data.empty() ? "demo: 10,000 generated card transactions" : o.data.c_str());
    cJSON_AddNumberToObject(j, "records_done", (double)done);
    cJSON_AddNumberToObject(j, "records_skipped", (double)skipped);
    cJSON_AddNumberToObject(j, "batch_ns", batch_ns);
    cJSON_AddNumberToObject(j, "first_100_ns", first100);
    cJSON *rl = cJSON_AddObjectToObject(j, "record_latency_ns");
    cJSON_AddNumberToObject(rl, "p50", p50);
    cJSON_AddNumberToObject(rl, "p95", p95);
    cJSON_AddNumberToObject(rl, "p99", p99);
    cJSON_AddNumberToObject(j, "tokens_per_s", batch_ns > 0 ? (double)out_tokens / (batch_ns * 1e-9) : 0);
    cJSON_AddNumberToObject(j, "prefill_tokens_per_s", batch_ns > 0 ? (double)r.prefill_passes / (batch_ns * 1e-9) : 0);
    cJSON_AddNumberToObject(j, "watts", done ? r.watts : 0);
    cJSON_AddNumberToObject(j, "joules_per_record", done ? r.total_j / (double)done : 0);
    cJSON_AddNumberToObject(j, "energy_j", r.total_j);
    cJSON_AddNumberToObject(j, "output_tokens", (double)out_tokens);
    cJSON_AddNumberToObject(j, "prefill_token_passes", (double)r.prefill_passes);
    cJSON_AddNumberToObject(j, "rule_tokens", (double)rule_tokens);
    cJSON_AddBoolToObject(j, "token_counts_estimated", estimated);
    cJSON_AddStringToObject(j, "vocab", vocab.empty() ? "" : vocab.c_str());
    cJSON_AddNumberToObject(j, "max_new_tokens", (double)o.max_new);
    cJSON_AddStringToObject(j, "policy", o.policy == ES_POLICY_SPF ? "spf" : "fcfs");
    cJSON_AddNumberToObject(j, "kv_positions", (double)cap);
    cJSON_AddNumberToObject(j, "max_in_flight", (double)r.max_in_flight);
    cJSON_AddNumberToObject(j, "kv_max_used", (double)r.kv_max_used);
    cJSON *ps = cJSON_AddObjectToObject(j, "prefix_sharing");
    cJSON_AddBoolToObject(ps, "enabled", sharing);
    cJSON_AddNumberToObject(ps, "kv_slots_with", (double)slots_shared);
    cJSON_AddNumberToObject(ps, "kv_slots_without", (double)slots_plain);
    cJSON_AddNumberToObject(ps, "kv_slots_saved", (double)(slots_shared - slots_plain));
    if (cmp.ok) {
        cJSON_AddNumberToObject(ps, "batch_ns_without", cmp.batch_ns);
        cJSON_AddNumberToObject(ps, "time_saved_ns", cmp.batch_ns - batch_ns);
        cJSON_AddNumberToObject(ps, "prefill_token_passes_without", (double)cmp.prefill_passes);
        cJSON_AddNumberToObject(ps, "prefill_token_passes_saved", (double)(cmp.prefill_passes - r.prefill_passes));
        cJSON_AddNumberToObject(ps, "max_in_flight_without", (double)cmp.max_in_flight);
    }
    /* the oracle for a uniform batch: the busiest unit's total occupancy, plus at most one fill */
    if (done > 0) {
        double busy = 0, fill = 0;
        es_an_batch(&L.c, &L.m, done, w.prefix, rd.first_prompt, o.max_new, &busy, &fill);
        cJSON *an = cJSON_AddObjectToObject(j, "analytic");
        cJSON_AddNumberToObject(an, "busy_ns", busy * 1e9 / L.c.clock_hz);
        cJSON_AddNumberToObject(an, "fill_ns", fill * 1e9 / L.c.clock_hz);
        cJSON_AddStringToObject(an, "note", "uniform batch: sizes of the first record; exact only when all records are alike");
    }
    cJSON_AddNumberToObject(j, "sim_wall_s", wall);
    char *summary = cJSON_PrintUnformatted(j);
    int rc = 0;
    if (db && es_db_finish_run(db, run_id, (double)r.cycles, nullptr, 0, nullptr, 0, r.units.data(),
                               (int)r.units.size(), nullptr, 0, summary, &e)) {
        std::fprintf(stderr, "etchsim eval: %s\n", e.msg);
        rc = 1;
    }
    cJSON_free(summary);
    if (estimated)
        std::fprintf(stderr, "etchsim eval: warning: no tokenizer vocabulary (run scripts/fetch-vocab, or give "
                             "--vocab); token counts are estimated (1 token per 4 UTF-8 bytes)\n");
    if (rc == 0 && o.json) {
        char *s = cJSON_Print(j);
        std::puts(s);
        cJSON_free(s);
    } else if (rc == 0) {
        const double ms = 1e-6;
        std::printf("etchsim eval: %s on %s\n", L.m.name, L.c.name);
        std::printf("  rule: \"%s\"\n", o.rule.c_str());
        std::printf("  data: %s\n", o.data.empty() ? "demo, 10,000 generated card transactions" : o.data.c_str());
        std::printf("  %-34s %lld done, %lld skipped\n", "records", (long long)done, (long long)skipped);
        std::printf("  %-34s %.3f ms\n", "batch time (simulated)", batch_ns * ms);
        std::printf("  %-34s %.3f ms\n", "first 100 results (live preview)", first100 * ms);
        std::printf("  %-34s p50 %.1f us, p95 %.1f us, p99 %.1f us\n", "per-record latency", p50 / 1e3, p95 / 1e3,
                    p99 / 1e3);
        std::printf("  %-34s %.0f output, %.0f prefill\n", "tokens/s", batch_ns > 0 ? out_tokens / (batch_ns * 1e-9) : 0,
                    batch_ns > 0 ? r.prefill_passes / (batch_ns * 1e-9) : 0);
        std::printf("  %-34s %.1f W, %.3f mJ per record\n", "power", done ? r.watts : 0,
                    done ? r.total_j / (double)done * 1e3 : 0);
        std::printf("  %-34s %lld rule tokens, %lld prefill token passes%s\n", "tokens", (long long)rule_tokens,
                    (long long)r.prefill_passes, estimated ? " (ESTIMATED: no vocabulary)" : "");
        if (sharing && cmp.ok)
            std::printf("  %-34s saves %lld prefill passes and %.3f ms (%.1f%%); KV fits %lld sequences, not %lld\n",
                        "prefix sharing", (long long)(cmp.prefill_passes - r.prefill_passes),
                        (cmp.batch_ns - batch_ns) * ms, 100.0 * (cmp.batch_ns - batch_ns) / cmp.batch_ns,
                        (long long)slots_shared, (long long)slots_plain);
        else
            std::printf("  %-34s %s; KV fits %lld sequences (%lld with sharing)\n", "prefix sharing",
                        sharing ? "on" : "off", (long long)(sharing ? slots_shared : slots_plain),
                        (long long)slots_shared);
        std::printf("  %-34s %.2f s\n", "host wall time", wall);
        for (const auto &row : shown_skips) std::printf("  skipped record %lld: %s\n", (long long)row.record, row.reason);
        if (skipped > 5) std::printf("  ... %lld more skipped records%s\n", (long long)(skipped - 5), db ? " in the database" : "");
        if (db) std::printf("  logged as run %lld in %s (table records)\n", (long long)run_id, o.db.c_str());
    }
    cJSON_Delete(j);
    return rc;
}

} // namespace es
