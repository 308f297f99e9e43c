// cli_eval: `etchsim eval`. Reads a rule and a dataset, makes one prompt per
// record from a template (the rule first, then the record's fields), counts
// tokens, and runs the batch through the host driver on the simulated chip.
// With prefix sharing the rule's KV is computed once and every sequence
// reads it; a second batch without sharing runs in a forked child, in
// parallel, so the report can say what sharing saved. In functional mode the
// chip also computes each record's output, and a verdict (the first of
// --labels the output contains) is counted and stored.
//
// cmd_eval runs in four parts: options (parse_opts), inputs (load_inputs:
// rule, data, chip and model, template, tokenizer, datapath), the batch
// (run_batch: database, reader, comparison child, simulation) and the report
// (report: JSON, database, summary).
#include "cli_eval.h"
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
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
#include "es_trace.h"
#include "cli_opts.h"
#include "es_proc.h"
#include "es_ctx.h"
#include "es_tok.h"
#include "es_chat.h"
#include "cli_func.h"

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
    "a fraud rule over 10,000 generated card transactions (--records N: the first N).\n"
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
    "  --system NAME|PATH     a system of chips instead of --chip, as for `etchsim run` (the records\n"
    "                         through its pipeline; --set system.link.KEY=VALUE overrides its link)\n"
    "  --deploy NAME|PATH     the deployment the JSON's \"cost\" assumes, as for `etchsim run`\n"
    "                         (default us-industrial); its keys: --set deploy.KEY=VALUE\n"
    "  --trace FILE.json, --trace-window START:END   as for `etchsim run` (the batch itself,\n"
    "                       not the comparison run); with a window for large batches\n"
    "  --vcd FILE.vcd         as for `etchsim run` (the batch itself): large for large batches\n"
    "  --fidelity transaction|cycle  as for `etchsim run` (both batches)\n"
    "  --adapter-rank R, --adapter-roles L, --adapter-count K   LoRA adapters in the KV SRAM, as\n"
    "                         for `etchsim run`\n"
    "  --adapter FILE         a LoRA adapter file, as for `etchsim run` (applied in functional mode);\n"
    "                         repeatable: adapters 0, 1, ... in order\n"
    "  --adapter-field NAME   the records' field naming each one's adapter: an id (0, 1, ...), or\n"
    "                         'none' or empty for none; left out of {record}. Without it every\n"
    "                         record uses adapter 0. With it the rule's KV is computed per record\n"
    "                         (no prefix sharing: a shared prefix's KV is one adapter's)\n"
    "  --mode timing|functional  functional: the chip computes each record's output\n"
    "                         (needs a tokenizer and --rom, --weights or --synthetic)\n"
    "  --weights F, --synthetic SEED   weights for functional mode, as for run\n"
    "  --recipe R             weight formats timed (and, in functional mode, how weights are\n"
    "                         quantized), as for run\n"
    "  --labels A,B,...       functional: the verdict is the first label (in this order)\n"
    "                         the output contains, read up to its first end-of-turn or\n"
    "                         end-of-sequence token, else 'other' (default FLAG,OK)\n"
    "  --chat                 wrap each prompt in the model's chat format, as one user turn\n"
    "                         (Llama 3.1 instruct for the Llama 3 vocabulary; a GGUF's\n"
    "                         tokenizer.chat_template: Llama 3 or ChatML); the rule and the\n"
    "                         chat's start are the shared prefix. The demo's default when the\n"
    "                         model's vocabulary has a chat format\n"
    "  --no-chat              the template's text alone, BOS first if the\n"
    "                         vocabulary adds it (the demo before --chat)\n"
    "  --stop-at-eos          functional: a record's generation ends at its first end-of-turn\n"
    "                         or end-of-sequence token (at most --max-new-tokens), and its time\n"
    "                         and KV follow; without it every record generates --max-new-tokens.\n"
    "                         No comparison batch (its records would not know their lengths)\n"
    "  -h, --help             this text\n"
    "\n"
    "Token counts: with a vocabulary, Llama 3 byte-level BPE (the prompt starts with BOS, or\n"
    "with --chat with the chat's own tokens);\n"
    "without one, a record's tokens are estimated as one per 4 UTF-8 bytes, rounded up,\n"
    "and the report, the JSON and the database say so.\n";

struct Opts {
    std::string rule, rule_file, data, tmpl, vocab, chip = "hc1-class", model = "llama-3.1-8b", db = "etchsim.sqlite", rom;
    int64_t max_new = 4, records = -1;
    int policy = ES_POLICY_FCFS;
    bool sharing = true, compare = true, json = false, no_db = false, have_rule = false;
    std::vector<std::string> sets;
    std::string system;                           // --system: a system of chips instead of --chip
    bool chip_given = false, model_given = false;
    std::string deploy = "us-industrial";         // --deploy
    bool deploy_given = false;
    std::vector<std::string> deploy_sets;         // --set deploy.KEY=VALUE
    // functional mode
    bool functional = false;
    std::string weights, recipe;
    int64_t synthetic = -1;
    std::vector<std::string> labels{"FLAG", "OK"};
    std::string trace;                            // --trace FILE.json
    std::string vcd;                              // --vcd FILE.vcd
    bool cycle = false;                           // --fidelity cycle
    double trace_start_ns = 0, trace_end_ns = -1; // --trace-window
    int64_t adapter_rank = 0;                     // --adapter-rank (0: none)
    std::string adapter_roles;                    // --adapter-roles
    std::vector<std::string> adapters;            // --adapter FILE (repeatable)
    int64_t adapter_count = 0;                    // --adapter-count (0: not given)
    std::string adapter_field;                    // --adapter-field NAME
    int chat = -1;                                // --chat 1, --no-chat 0; -1: the demo's default (chat when the model has a format)
    bool stop_eos = false;                        // --stop-at-eos (functional)
};

int usage(const char *msg, const char *arg) { return es_opt_usage("eval", msg, arg); }

/* A text file (the rule, the template) of at most 1 MiB; a NUL byte in it is an error naming the offset. */
bool read_file(const std::string &path, const char *expected, std::string &out, es_err *e)
{
    char *buf;
    size_t n;
    if (es_read_file(path.c_str(), 1u << 20, &buf, &n, e)) return false;
    int bad = es_check_text(path.c_str(), buf, n, expected, e);
    if (!bad) out.assign(buf, n);
    std::free(buf);
    return !bad;
}

/* The documented estimate: one token per 4 UTF-8 bytes, rounded up, at least 1. */
int64_t estimate_tokens(const std::string &s) { return std::max<int64_t>(1, ((int64_t)s.size() + 3) / 4); }

/* Token ids of s; `more`: s continues a text already encoded (a record after the rule). Control
 * tokens written in the text (<|eot_id|>, <|im_start|>) are their ids, as llama.cpp parses a prompt. */
std::vector<int32_t> encode(const es_tok *tok, const std::string &s, bool more)
{
    unsigned fl = ES_TOK_PARSE_SPECIAL | (more ? ES_TOK_CONTINUE : 0u);
    int64_t n = es_tok_encode_flags(tok, s.data(), s.size(), fl, nullptr, 0);
    std::vector<int32_t> ids((size_t)n);
    es_tok_encode_flags(tok, s.data(), s.size(), fl, ids.data(), n);
    return ids;
}

/* Token counts: the tokenizer when a vocabulary was found, else the estimate. */
int64_t count_tokens(const es_tok *tok, const std::string &s, bool more)
{
    if (!tok) return estimate_tokens(s);
    unsigned fl = ES_TOK_PARSE_SPECIAL | (more ? ES_TOK_CONTINUE : 0u);
    return std::max<int64_t>(1, es_tok_encode_flags(tok, s.data(), s.size(), fl, nullptr, 0));
}

struct Template {
    std::string label;    // the template's file, or "built-in template", for errors
    std::string prefix;   // text before the first record-dependent part (holds the rule)
    std::string body;     // the rest, with {record} and {field:NAME}
    std::vector<std::string> fields; // the names {field:NAME} uses, each once
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
    out.label = label;
    out.prefix = t.substr(0, rec);
    out.prefix.replace(r, 6, rule);
    out.body = t.substr(rec);
    out.fields.clear();
    // every {field:NAME} names a field: a NAME without its closing brace, or an empty one, would be text
    for (size_t at = out.body.find("{field:"); at != std::string::npos; at = out.body.find("{field:", at + 1)) {
        size_t end = out.body.find_first_of("}\n", at);
        std::string name = out.body.substr(at + 7, end == std::string::npos ? std::string::npos : end - at - 7);
        if (end == std::string::npos || out.body[end] != '}' || name.empty()) {
            es_fail(e, "%s: '{field:%.40s': expected {field:NAME}, a field's name and '}' on one line", label.c_str(),
                    name.c_str());
            return false;
        }
        if (std::find(out.fields.begin(), out.fields.end(), name) == out.fields.end()) out.fields.push_back(name);
    }
    return true;
}

/* The record's field names, "a, b, c", shortened past about 100 bytes. */
std::string field_list(const es_record &rec)
{
    std::string s;
    for (int k = 0; k < rec.n_fields; k++) {
        if (s.size() > 100) { s += ", ..."; break; }
        s += (k ? ", " : "") + std::string(rec.names[k]);
    }
    return rec.n_fields ? s : "no fields";
}

/* The record's prompt text into out; false and the name in `missing` when the record lacks a field
 * a {field:NAME} names (nothing is put in its place). {record} leaves out field `skip` (--adapter-field). */
bool render(const Template &t, const es_record &rec, std::string &out, std::string &missing,
            const std::string &skip = std::string())
{
    out.clear();
    const std::string &b = t.body;
    size_t i = 0;
    while (i < b.size()) {
        if (b.compare(i, 8, "{record}") == 0) {
            for (int k = 0; k < rec.n_fields; k++) {
                if (!skip.empty() && skip == rec.names[k]) continue; /* the adapter's field: not prompt text */
                out += rec.names[k];
                out += ": ";
                out += rec.values[k];
                out += "\n";
            }
            i += 8;
        } else if (b.compare(i, 7, "{field:") == 0) { /* split_template saw its '}' */
            size_t end = b.find('}', i);
            std::string name = b.substr(i + 7, end - i - 7);
            int k = 0;
            while (k < rec.n_fields && name != rec.names[k]) k++;
            if (k == rec.n_fields) {
                missing = name;
                return false;
            }
            out += rec.values[k];
            i = end + 1;
        } else {
            out += b[i++];
        }
    }
    return true;
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
    // tok: the tokenizer (NULL: estimated counts); prefix_ids non-null: functional
    // mode, requests carry their token ids (the record's, after the shared prefix's)
    Reader(const Template &tp, const es_tok *tok, int64_t rule_tokens, int64_t context, int64_t max_new, int64_t limit,
           bool sharing, const std::vector<int32_t> *prefix_ids)
        : tp_(tp), tok_(tok), rule_tokens_(rule_tokens), context_(context), max_new_(max_new), limit_(limit),
          sharing_(sharing), estimated_(tok == nullptr), prefix_ids_(prefix_ids)
    {
    }
    ~Reader() { es_dataset_close(ds_); }
    // the demo dataset is an open, already unlinked file (/proc/self/fd/N): CSV by decree
    int open(const std::string &path, es_err *e)
    {
        path_ = path;
        return path.rfind("/proc/self/fd/", 0) == 0 ? es_dataset_open_as(&ds_, path.c_str(), 0, e)
                                                    : es_dataset_open(&ds_, path.c_str(), e);
    }
    std::function<int(const es_rec_row &, es_err *)> on_skip;
    // LoRA adapters: the chip holds n_adapters; a record names its own in field adapter_field (empty: every record
    // uses default_adapter, -1 none)
    std::string adapter_field;
    int n_adapters = 0;
    int32_t default_adapter = -1;
    int64_t accepted = 0, first_prompt = 0;
    double body_sum = 0;
    // --chat: the ids every record's text is followed by (null: no chat), and whether its text is trimmed at the end
    const std::vector<int32_t> *chat_after = nullptr;
    bool chat_trim = false;

    int next(int64_t &id, Request &req, es_err *e)
    {
        char reason[160];
        for (;;) {
            if (limit_ >= 0 && idx_ >= limit_) return end(e);
            es_record rec;
            int rc = es_dataset_next(ds_, &rec, reason, sizeof reason, e);
            if (rc == ES_REC_EOF) return end(e);
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
            std::string text, missing;
            if (record_adapter(rec, req.adapter, e)) return -1;
            if (!render(tp_, rec, text, missing, adapter_field)) {
                if (rec.shared_names) /* the CSV header lacks it: no record has it */
                    return es_fail(e, "%s: the header has no field '%s', which %s's {field:%s} names (its fields: %s)",
                                   path_.c_str(), missing.c_str(), tp_.label.c_str(), missing.c_str(),
                                   field_list(rec).c_str());
                std::snprintf(row.reason, sizeof row.reason, "line %lld: no field '%s' for the template's {field:%s} "
                              "(the record has %s)", (long long)rec.line, missing.c_str(), missing.c_str(),
                              field_list(rec).c_str());
                if (first_missing_.empty()) first_missing_ = missing, first_line_ = rec.line, first_fields_ = field_list(rec);
                if (on_skip && on_skip(row, e)) return -1;
                continue;
            }
            rendered_ = true;
            if (chat_after && chat_trim) text.resize(es_chat_trim(text.data(), text.size(), 0)); /* the message's | trim */
            std::vector<int32_t> ids;
            if (prefix_ids_) {
                ids = encode(tok_, text, true);
                if (chat_after) ids.insert(ids.end(), chat_after->begin(), chat_after->end());
                if (ids.empty()) { /* keep counts and ids equal: a record must have a token */
                    std::snprintf(row.reason, sizeof row.reason, "line %lld: the record renders to no tokens",
                                  (long long)rec.line);
                    if (on_skip && on_skip(row, e)) return -1;
                    continue;
                }
            }
            int64_t body = prefix_ids_ ? (int64_t)ids.size()
                           : chat_after ? es_tok_encode_more(tok_, text.data(), text.size(), nullptr, 0) + (int64_t)chat_after->size()
                                        : count_tokens(tok_, text, true);
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
            if (prefix_ids_) {
                req.ids.clear();
                if (!sharing_) req.ids = *prefix_ids_;
                req.ids.insert(req.ids.end(), ids.begin(), ids.end());
            }
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
    /* The adapter record rec names in adapter_field into *k: an id from 0 to n_adapters - 1, or none (-1: the value
     * empty or "none", or a JSONL record without the field); default_adapter without adapter_field. -1 and e naming
     * the file, the line and what was expected for any other value, or a CSV header without the field. */
    int record_adapter(const es_record &rec, int32_t &k, es_err *e)
    {
        k = default_adapter;
        if (adapter_field.empty()) return 0;
        k = -1;
        int f = 0;
        while (f < rec.n_fields && adapter_field != rec.names[f]) f++;
        if (f == rec.n_fields) {
            if (!rec.shared_names) return 0; /* a JSONL record without it: no adapter */
            return es_fail(e, "%s: the header has no field '%s', which --adapter-field names (its fields: %s)",
                           path_.c_str(), adapter_field.c_str(), field_list(rec).c_str());
        }
        const char *v = rec.values[f];
        if (!*v || !std::strcmp(v, "none")) return 0;
        char *end = nullptr;
        long id = std::strtol(v, &end, 10);
        if (*end || id < 0 || id >= n_adapters || !std::isdigit((unsigned char)*v))
            return es_fail(e, "%s: line %lld: field '%s' is '%.40s': expected an adapter id from 0 to %d (the chip "
                              "holds %d), or 'none' or empty for no adapter", path_.c_str(), (long long)rec.line,
                           adapter_field.c_str(), v, n_adapters - 1, n_adapters);
        k = (int32_t)id;
        return 0;
    }

    /* The records ran out: when JSONL records lacked a {field:NAME} and none had every field the
     * template names, the name is wrong, not the data sparse. 0, or -1 and e says which. */
    int end(es_err *e)
    {
        if (rendered_ || first_missing_.empty()) return 0;
        return es_fail(e, "%s: no record has every field %s names (the first record, line %lld, has no field '%s' "
                          "for {field:%s}; its fields: %s)", path_.c_str(), tp_.label.c_str(), (long long)first_line_,
                       first_missing_.c_str(), first_missing_.c_str(), first_fields_.c_str());
    }

    const Template &tp_;
    std::string path_;
    bool rendered_ = false;       // some record had every field the template names
    std::string first_missing_, first_fields_; // the first record lacking a field: that field, its fields
    int64_t first_line_ = 0;      // and its line
    const es_tok *tok_;
    int64_t rule_tokens_, context_, max_new_, limit_;
    bool sharing_, estimated_;
    const std::vector<int32_t> *prefix_ids_;
    es_dataset *ds_ = nullptr;
    int64_t idx_ = 0;
    std::unordered_map<int64_t, es_rec_row> fly_;
};

// The adapters the reader gives records: --adapter-field's, else adapter 0 for every record (none without adapters).
void reader_adapters(Reader &rd, const Loaded &L, const Opts &o)
{
    rd.adapter_field = o.adapter_field;
    rd.n_adapters = L.n_adapters();
    rd.default_adapter = L.n_adapters() > 0 ? 0 : -1;
}

// Run the batch without sharing in a child; the parent collects it later.
pid_t start_compare(const Loaded &L, const std::string &data, const Template &tp, const es_tok *tok,
                    int64_t rule_tokens, int64_t context, const Opts &o, const std::vector<int32_t> *chat_after,
                    bool chat_trim, int fd_out)
{
    pid_t parent = getpid(), pid = fork();
    if (pid != 0) return pid;
    es_die_with_parent(parent); /* a killed eval leaves no orphan batch behind */
    Compare c;
    RunResult r;
    es_err e{};
    Reader rd(tp, tok, rule_tokens, context, o.max_new, o.records, false, nullptr); /* timing: the same cycles */
    reader_adapters(rd, L, o);
    rd.chat_after = chat_after;
    rd.chat_trim = chat_trim;
    Workload w;
    w.source = [&](int64_t &id, Request &q, es_err *err) { return rd.next(id, q, err); };
    w.sink = [&](const es_req_result &q, const SeqState &, es_err *) {
        es_rec_row row;
        return rd.finish(q.id, row);
    };
    w.policy = o.policy;
    w.cycle = o.cycle;
    std::vector<const es_map *> pms = L.pms();
    if (rd.open(data, &e) == 0 && run_sim(pms.data(), (int)pms.size(), w, r, &e) == 0) {
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
    const char *help = "usage: etchsim dataset demo -o FILE.csv [--records N] [--seed S]\n\n"
                       "Write the demo dataset: N card transactions (default 10,000) with customer, their usual\n"
                       "merchant categories, merchant, category, amount, time and location; about 3% anomalous.\n"
                       "Deterministic from the seed.\n";
    if (argc >= 1 && (!std::strcmp(argv[0], "-h") || !std::strcmp(argv[0], "--help"))) {
        std::fputs(help, stdout);
        return 0;
    }
    if (argc < 1 || std::strcmp(argv[0], "demo")) return es_opt_usage("dataset", "expected 'demo', got", argc ? argv[0] : "nothing");
    static const es_opt opts[3] = {{"o", ES_OPT_STR, 0, 0, 0}, {"records", ES_OPT_COUNT, 1, 1e8, 0},
                                   {"seed", ES_OPT_COUNT, 0, 9.2e18, 0}};
    es_optarg *items = nullptr;
    int k = es_opts_parse("dataset", argc - 1, argv + 1, opts, 3, 0, help, &items);
    if (k < 0) return k == -2 ? 0 : 2;
    for (int i = 0; i < k; i++) {
        if (items[i].opt == 0) out = items[i].val;
        else if (items[i].opt == 1) n = items[i].num;
        else seed = (unsigned long long)items[i].num;
    }
    std::free(items);
    if (!out) return es_opt_usage("dataset", "demo: -o FILE.csv is required", nullptr);
    es_err e{};
    if (es_demo_write(out, n, seed, &e)) {
        std::fprintf(stderr, "etchsim dataset: %s\n", e.msg);
        return 1;
    }
    std::printf("wrote %s: %lld transactions, seed %llu\n", out, n, seed);
    return 0;
}

namespace {

// --labels A,B,...: non-empty labels of under 64 bytes, none 'other'; 0, or the usage error printed and -1.
int parse_labels(const char *v, Opts &o)
{
    o.labels.clear();
    std::string l = v;
    for (size_t at = 0; at <= l.size();) {
        size_t c = l.find(',', at);
        if (c == std::string::npos) c = l.size();
        std::string one = l.substr(at, c - at);
        if (one.empty() || one.size() >= 64 || one == "other") {
            usage("--labels expects non-empty labels of under 64 bytes, other than 'other', got", v);
            return -1;
        }
        o.labels.push_back(one);
        at = c + 1;
    }
    return 0;
}

// The options that need another: -1 when they have it, else the usage error printed and 2.
int check_opts(const Opts &o)
{
    if (!o.functional && (!o.weights.empty() || o.synthetic >= 0))
        return usage("--weights and --synthetic need --mode functional", nullptr);
    if (!o.functional && o.stop_eos)
        return usage("--stop-at-eos needs --mode functional (timing mode produces no tokens to stop at)", nullptr);
    if (!o.recipe.empty() && !o.rom.empty())
        return usage("give --recipe or --rom, not both (the image fixes the formats); got --recipe", o.recipe.c_str());
    if (o.trace.empty() && (o.trace_start_ns > 0 || o.trace_end_ns >= 0))
        return usage("--trace-window needs --trace", nullptr);
    if ((o.adapter_rank > 0) != !o.adapter_roles.empty())
        return usage("--adapter-rank and --adapter-roles go together; got only",
                     o.adapter_rank > 0 ? "--adapter-rank" : "--adapter-roles");
    if (!o.adapters.empty() && o.adapter_rank > 0)
        return usage("give --adapter FILE or --adapter-rank and --adapter-roles, not both; got --adapter",
                     o.adapters[0].c_str());
    if ((o.adapter_rank > 0 || !o.adapters.empty()) && o.cycle)
        return usage("an adapter (--adapter, --adapter-rank) is booked at transaction fidelity only; drop", "--fidelity cycle");
    if (o.adapter_count > 0 && o.adapter_rank == 0)
        return usage("--adapter-count needs --adapter-rank and --adapter-roles (files: repeat --adapter)", nullptr);
    if (!o.adapter_field.empty() && o.adapter_rank == 0 && o.adapters.empty())
        return usage("--adapter-field needs adapters (--adapter FILE, or --adapter-rank); got --adapter-field",
                     o.adapter_field.c_str());
    const char *arg = nullptr, *msg = o.system.empty() ? nullptr :
        system_opts_conflict(o.system, o.chip_given, !o.rom.empty(), false, &arg);
    return msg ? usage(msg, arg) : -1;
}

// -1 to go on, else the exit code.
int parse_opts(int argc, char **argv, Opts &o)
{
    enum { RULE, RULE_FILE, DATA, TEMPLATE, VOCAB, MAX_NEW, RECORDS, POLICY, NO_SHARING, NO_COMPARE, CHIP, MODEL, DB, ROM,
           WEIGHTS, RECIPE, MODE, SYNTHETIC, LABELS, SET, TRACE, TRACE_WINDOW, NODB, JSON, VCD, FIDELITY, ADAPTER_RANK,
           ADAPTER_ROLES, ADAPTER, DEPLOY, SYSTEM, ADAPTER_COUNT, ADAPTER_FIELD, CHAT, NO_CHAT, STOP_EOS, N_OPTS };
    static const es_opt opts[N_OPTS] = {
        {"rule", ES_OPT_TEXT, 0, 0, 0},          {"rule-file", ES_OPT_STR, 0, 0, 0},
        {"data", ES_OPT_STR, 0, 0, 0},           {"template", ES_OPT_STR, 0, 0, 0},
        {"vocab", ES_OPT_STR, 0, 0, 0},          {"max-new-tokens", ES_OPT_COUNT, 1, 4096, 0},
        {"records", ES_OPT_COUNT, 1, 1e8, 0},    {"policy", ES_OPT_STR, 0, 0, 0},
        {"no-prefix-sharing", ES_OPT_FLAG, 0, 0, 0}, {"no-compare", ES_OPT_FLAG, 0, 0, 0},
        {"chip", ES_OPT_STR, 0, 0, 0},           {"model", ES_OPT_STR, 0, 0, 0},
        {"db", ES_OPT_STR, 0, 0, 0},             {"rom", ES_OPT_STR, 0, 0, 0},
        {"weights", ES_OPT_STR, 0, 0, 0},        {"recipe", ES_OPT_STR, 0, 0, 0},
        {"mode", ES_OPT_STR, 0, 0, 0},           {"synthetic", ES_OPT_COUNT, 0, 9.2e18, 0},
        {"labels", ES_OPT_STR, 0, 0, 0},         {"set", ES_OPT_STR, 0, 0, 1},
        {"trace", ES_OPT_STR, 0, 0, 0},          {"trace-window", ES_OPT_STR, 0, 0, 0},
        {"no-db", ES_OPT_FLAG, 0, 0, 0},         {"json", ES_OPT_FLAG, 0, 0, 0},
        {"vcd", ES_OPT_STR, 0, 0, 0},            {"fidelity", ES_OPT_STR, 0, 0, 0},
        {"adapter-rank", ES_OPT_COUNT, 1, 65536, 0}, {"adapter-roles", ES_OPT_STR, 0, 0, 0},
        {"adapter", ES_OPT_STR, 0, 0, 1},       {"deploy", ES_OPT_STR, 0, 0, 0},
        {"system", ES_OPT_STR, 0, 0, 0},
        {"adapter-count", ES_OPT_COUNT, 1, 4096, 0}, {"adapter-field", ES_OPT_STR, 0, 0, 0},
        {"chat", ES_OPT_FLAG, 0, 0, 0},          {"no-chat", ES_OPT_FLAG, 0, 0, 0},
        {"stop-at-eos", ES_OPT_FLAG, 0, 0, 0}};
    es_optarg *items = nullptr;
    int n = es_opts_parse("eval", argc, argv, opts, N_OPTS, 0, HELP, &items);
    if (n < 0) return n == -2 ? 0 : 2;
    struct Free { es_optarg *p; ~Free() { std::free(p); } } fr{items};
    for (int k = 0; k < n; k++) {
        const char *v = items[k].val;
        int pick; /* es_opt_pick's choice */
        switch (items[k].opt) {
        case RULE: o.rule = v, o.have_rule = true; break;
        case RULE_FILE: o.rule_file = v, o.have_rule = true; break;
        case DATA: o.data = v; break;
        case TEMPLATE: o.tmpl = v; break;
        case VOCAB: o.vocab = v; break;
        case MAX_NEW: o.max_new = items[k].num; break;
        case RECORDS: o.records = items[k].num; break;
        case POLICY:
            if ((pick = es_opt_pick("eval", "policy", v, "fcfs", "spf")) < 0) return 2;
            o.policy = pick ? ES_POLICY_SPF : ES_POLICY_FCFS;
            break;
        case NO_SHARING: o.sharing = false; break;
        case NO_COMPARE: o.compare = false; break;
        case CHIP: o.chip = v, o.chip_given = true; break;
        case MODEL: o.model = v, o.model_given = true; break;
        case SYSTEM: o.system = v; break;
        case DB: o.db = v; break;
        case ROM: o.rom = v; break;
        case WEIGHTS: o.weights = v; break;
        case RECIPE: o.recipe = v; break;
        case MODE:
            if ((pick = es_opt_pick("eval", "mode", v, "timing", "functional")) < 0) return 2;
            o.functional = pick;
            break;
        case SYNTHETIC: o.synthetic = items[k].num; break;
        case LABELS:
            if (parse_labels(v, o)) return 2;
            break;
        case SET:
            if (!std::strchr(v, '=')) return usage("--set needs KEY=VALUE, got", v);
            if (!std::strncmp(v, "deploy.", 7)) o.deploy_sets.push_back(v); /* the deployment's */
            else o.sets.push_back(v);
            break;
        case DEPLOY: o.deploy = v, o.deploy_given = true; break;
        case TRACE: o.trace = v; break;
        case TRACE_WINDOW:
            if (es_trace_parse_window(v, &o.trace_start_ns, &o.trace_end_ns))
                return usage("--trace-window expects START:END in simulated ns (END >= START >= 0, either may be empty), got",
                             v);
            break;
        case NODB: o.no_db = true; break;
        case JSON: o.json = true; break;
        case VCD: o.vcd = v; break;
        case FIDELITY:
            if ((pick = es_opt_pick("eval", "fidelity", v, "transaction", "cycle")) < 0) return 2;
            o.cycle = pick;
            break;
        case ADAPTER_RANK: o.adapter_rank = items[k].num; break;
        case ADAPTER_ROLES: o.adapter_roles = v; break;
        case ADAPTER: o.adapters.push_back(v); break;
        case ADAPTER_COUNT: o.adapter_count = items[k].num; break;
        case ADAPTER_FIELD: o.adapter_field = v; break;
        case CHAT:
        case NO_CHAT:
            if (o.chat == (items[k].opt == CHAT ? 0 : 1)) return usage("give --chat or --no-chat, not both", nullptr);
            o.chat = items[k].opt == CHAT;
            break;
        case STOP_EOS: o.stop_eos = true; break;
        }
    }
    return check_opts(o);
}

// Everything the batch reads: rule, data, chip and model, template, tokenizer, datapath.
struct Inputs {
    std::string data, vocab;
    int demo_fd = -1;              // the demo dataset, open and already removed from disk
    int64_t demo_records = 0;      // the demo: transactions generated (--records N: only N)
    Loaded L;
    Template tp;
    es_tok *tok = nullptr;
    es_dp *dp = nullptr;
    bool sharing = false, estimated = true;
    int64_t rule_tokens = 0, context = 0;
    std::vector<int32_t> prefix_ids; // functional: BOS and the shared prefix's tokens (--chat: also in timing mode)
    es_chat chat{};                // --chat: the model's chat format (chat.name null: none)
    std::vector<int32_t> chat_after; // --chat: the ids after each record's text (end of turn, assistant header)
    Cost cost;                     // the deployment, and the batch's cost once it has run
    Inputs() = default;
    Inputs(const Inputs &) = delete;
    Inputs &operator=(const Inputs &) = delete;
    ~Inputs()
    {
        es_dp_close(dp);
        es_tok_free(tok);
        if (demo_fd >= 0) close(demo_fd);
    }
};

/* --chat (or the demo's default): the model's chat format from its vocabulary, the shared prefix's ids (the chat's
 * start, then the template's text before the record, as the user message's start) and the ids every record ends
 * with. Without --chat or --no-chat the demo uses the chat when the vocabulary has a format, else the plain
 * template; other evals use the plain template. */
int load_chat(const Opts &o, bool demo, Inputs &in, es_err *e)
{
    if (o.chat == 0 || (o.chat < 0 && !demo)) return 0;
    if (!in.tok) {
        if (o.chat < 0) return 0; /* the demo without a vocabulary: estimated counts of the plain template */
        return es_fail(e, "--chat needs the model's tokenizer (no vocabulary found: run scripts/fetch-vocab or give --vocab)");
    }
    es_err ce{};
    if (es_chat_load(&in.chat, in.tok, in.vocab.c_str(), &ce)) {
        in.chat = es_chat{};
        if (o.chat < 0) return 0; /* the demo: the model has no chat format */
        *e = ce;
        return -1;
    }
    std::string msg = in.tp.prefix;
    if (in.chat.trim) msg.erase(0, es_chat_trim(msg.data(), msg.size(), 1)); /* the message's | trim */
    msg.insert(0, es_chat_lead(&in.chat));
    in.prefix_ids.resize((size_t)es_chat_before(&in.chat, in.tok, nullptr, 0));
    es_chat_before(&in.chat, in.tok, in.prefix_ids.data(), (int64_t)in.prefix_ids.size());
    std::vector<int32_t> p = encode(in.tok, msg, false);
    in.prefix_ids.insert(in.prefix_ids.end(), p.begin(), p.end());
    in.chat_after.resize((size_t)es_chat_after(&in.chat, in.tok, nullptr, 0));
    es_chat_after(&in.chat, in.tok, in.chat_after.data(), (int64_t)in.chat_after.size());
    return 0;
}

// Whether the chip, or every chip of a system, computes a shared prefix once (kv.prefix_sharing); a system with an
// expert-parallel stage (chips holding the same layers) does not: its sequences' KV is on one chip of the stage each,
// and a prefix held on every one of them is not modelled (es_top.cpp set_stages refuses --prefix there).
bool system_shares(const Loaded &L)
{
    if (!L.have_sys) return L.c.kv.prefix_sharing;
    for (size_t k = 0; k < L.maps.size(); k++) {
        if (!L.maps[k].chip->kv.prefix_sharing) return false;
        if (k > 0 && L.maps[k].model->layer_base == L.maps[k - 1].model->layer_base) return false;
    }
    return true;
}

// The longest sequence a record may make (its prompt and new tokens): the chip's kv.slot_context, or the fewest of a
// system's chips (each holds every sequence's KV for its layers).
int64_t slot_context(const Loaded &L)
{
    int64_t ctx = L.c.kv.slot_context;
    if (L.have_sys)
        for (const es_map &x : L.maps) ctx = std::min<int64_t>(ctx, x.chip->kv.slot_context);
    return ctx;
}

int load_inputs(Opts &o, Inputs &in, es_err *e)
{
    // the rule
    bool demo = !o.have_rule && o.data.empty();
    if (!o.rule_file.empty() && !read_file(o.rule_file, "a text file (the rule)", o.rule, e)) return -1;
    if (demo) o.rule = DEMO_RULE;
    else if (!o.have_rule) return es_fail(e, "--data needs a rule: give --rule TEXT or --rule-file F");
    while (!o.rule.empty() && std::isspace((unsigned char)o.rule.back())) o.rule.pop_back();
    if (o.rule.find_first_not_of(" \t\r\n") == std::string::npos)
        return es_fail(e, "%s: the rule is empty", o.rule_file.empty() ? "--rule" : o.rule_file.c_str());
    if (!es_utf8_valid(o.rule.data(), o.rule.size()))
        return es_fail(e, "%s: the rule is not valid UTF-8", o.rule_file.empty() ? "--rule" : o.rule_file.c_str());
    // the data
    in.data = o.data;
    if (in.data.empty()) {
        /* a file without a name in $TMPDIR (default /tmp): the batch and its comparison (a forked
         * child, which inherits the descriptor) read it as /proc/self/fd/N, and an eval that is
         * stopped or killed at any moment leaves nothing behind */
        const char *tmpdir = std::getenv("TMPDIR");
        /* rows come from the seed in order: the first N of the 10,000 are the N generated */
        in.demo_records = o.records > 0 && o.records < DEMO_RECORDS ? o.records : DEMO_RECORDS;
        if (es_demo_open_unlinked(tmpdir && *tmpdir ? tmpdir : "/tmp", in.demo_records, DEMO_SEED, &in.demo_fd, e))
            return -1;
        in.data = "/proc/self/fd/" + std::to_string(in.demo_fd);
    }
    if (set_adapters(in.L, o.adapters, o.adapter_rank, o.adapter_roles, o.adapter_count, e)) return -1;
    const std::string timed = timed_recipe(o.recipe, o.functional, !o.weights.empty() || o.synthetic >= 0);
    if ((!o.system.empty() ? load_system(o.system, o.model_given ? o.model : "", o.sets, timed, in.L, e)
                           : load(o.model, o.chip, o.sets, o.rom, timed, in.L, e)) ||
        load_deploy(o.deploy, o.deploy_given, o.deploy_sets, in.cost, false, e))
        return -1;
    std::string tmpl_text = DEFAULT_TEMPLATE;
    if (!o.tmpl.empty() && !read_file(o.tmpl, "a text file (the prompt template)", tmpl_text, e)) return -1;
    if (!es_utf8_valid(tmpl_text.data(), tmpl_text.size())) /* as the rule: the prompt is UTF-8 text */
        return es_fail(e, "%s: the template is not valid UTF-8", o.tmpl.c_str());
    if (!split_template(tmpl_text, o.rule, o.tmpl.empty() ? "built-in template" : o.tmpl, in.tp, e)) return -1;
    /* records naming their adapters: each computes the rule's KV with its own (a shared prefix's is one adapter's); a
       system shares the prefix when every chip does and none is of an expert-parallel stage (not modelled there) */
    in.sharing = o.sharing && system_shares(in.L) && o.adapter_field.empty();
    // the tokenizer: --vocab, else the model's GGUF or tokenizer.tiktoken beside its config.json
    char vpath[1024];
    es_err te{};
    if (es_func_tokenizer(&in.L.m, o.vocab.empty() ? nullptr : o.vocab.c_str(), &in.tok, vpath, sizeof vpath, &te)) {
        if (!o.vocab.empty() || o.functional || access(vpath, F_OK) == 0) {
            *e = te;
            if (o.functional && !std::strstr(e->msg, "--vocab"))
                std::snprintf(e->msg + std::strlen(e->msg), sizeof e->msg - std::strlen(e->msg),
                              " (functional mode needs a tokenizer)");
            return -1;
        }
        in.tok = nullptr; /* no vocabulary: estimated counts */
    } else {
        in.vocab = vpath;
    }
    in.estimated = in.tok == nullptr;
    if (load_chat(o, demo, in, e)) return -1;
    /* the shared prefix: BOS (when the vocabulary adds it), then the rule and the template text before the record;
       with a chat, the chat's ids (es_chat) */
    in.rule_tokens = in.tok ? es_tok_add_bos(in.tok) + count_tokens(in.tok, in.tp.prefix, false)
                            : estimate_tokens(in.tp.prefix);
    if (in.chat.name) in.rule_tokens = (int64_t)in.prefix_ids.size();
    in.context = std::min<int64_t>(in.L.m.max_pos, slot_context(in.L));
    if (o.functional && !in.chat.name) {
        int32_t bos = es_tok_bos(in.tok);
        if (es_tok_add_bos(in.tok)) in.prefix_ids.push_back(bos);
        std::vector<int32_t> p = encode(in.tok, in.tp.prefix, false);
        if (p.empty()) p.push_back(bos >= 0 ? bos : 0); /* count_tokens counts at least one */
        in.prefix_ids.insert(in.prefix_ids.end(), p.begin(), p.end());
        in.rule_tokens = (int64_t)in.prefix_ids.size();
    }
    if (o.functional) {
        es_func_weights fw{o.rom.empty() ? nullptr : o.rom.c_str(), o.weights.empty() ? nullptr : o.weights.c_str(),
                           o.synthetic, o.recipe.empty() ? nullptr : o.recipe.c_str(), -1};
        if (es_func_datapath(&in.dp, &in.L.c, &in.L.m, &fw, 0, e)) return -1;
        if (dp_set_adapters(in.dp, in.L, e)) return -1;
    }
    return 0;
}

// What the batch measured.
struct Batch {
    int64_t done = 0, skipped = 0, run_id = 0;
    std::vector<es_rec_row> shown_skips;
    std::vector<double> lat;
    double first100 = 0, wall = 0;
    RunResult r;
    Compare cmp;
    es_db *db = nullptr;
    std::vector<int64_t> verdicts;  // functional: per label, then 'other'
    std::vector<std::string> samples; // functional: the first outputs, for the report
    int64_t first_prompt = 0;       // the first record's prompt tokens (the analytic bound's size)
    double mean_body = 0;           // mean record tokens after the shared prefix
    Batch() = default;
    Batch(const Batch &) = delete;
    Batch &operator=(const Batch &) = delete;
    const es_err *err = nullptr;    // the command's error: a run left open is failed with it
    ~Batch()
    {
        if (db && err && err->msg[0]) es_db_set_error(db, err->msg);
        es_db_close(db);
    }
};

/* The verdict: the first label (in the given order) the output contains, else "other". The text is the output read up
 * to its first end-of-turn or end-of-sequence token (answer_ids). */
size_t verdict_of(const std::vector<std::string> &labels, const char *text)
{
    for (size_t i = 0; i < labels.size(); i++)
        if (std::strstr(text, labels[i].c_str())) return i;
    return labels.size();
}

/* How many of the output's ids the answer is: those before its first end-of-turn or end-of-sequence token. */
int64_t answer_ids(const es_tok *tok, const std::vector<int32_t> &ids)
{
    size_t n = 0;
    while (n < ids.size() && !es_tok_is_eog(tok, ids[n])) n++;
    return (int64_t)n;
}

// Open the database and begin the eval's run in it, its records streamed (not with --no-db).
int begin_db(const Opts &o, const Inputs &in, Batch &b, es_err *e)
{
    if (o.no_db) return 0;
    const Loaded &L = in.L;
    char *chip_json = es_cfg_dump(&L.c.cfg), *proc_json = es_cfg_dump(&L.c.proc);
    es_run_info ri{"eval", L.have_sys ? L.sys.name : L.c.name, L.m.name, in.rule_tokens, o.max_new, 0, chip_json, proc_json};
    int rc = es_db_open(&b.db, o.db.c_str(), e) || es_db_begin_run(b.db, &ri, &b.run_id, e) ||
                     es_db_stream_begin(b.db, e) ? -1 : 0;
    cJSON_free(chip_json);
    cJSON_free(proc_json);
    return rc;
}

// Records done so far on a terminal's standard error, at most every half second.
struct Progress {
    bool on = false;
    std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
};

// One finished record: its row (in functional mode its output text and verdict), its latency, and
// its row and tokens into the database.
int finish_record(const Opts &o, const Inputs &in, Batch &b, Reader &rd, Progress &pg, const es_req_result &q,
                  const SeqState &st, es_err *err)
{
    es_rec_row row{};
    if (rd.finish(q.id, row)) return es_fail(err, "driver: finished record %lld was never read", (long long)q.id);
    row.submit_ns = q.submit_ns;
    row.first_ns = q.first_ns;
    row.done_ns = q.done_ns;
    row.energy_j = st.energy_j;
    row.output_tokens = q.tokens; /* --stop-at-eos: up to its end */
    char *text = nullptr;
    if (in.dp) {
        text = es_func_text(in.tok, st.out_ids.data(), (int64_t)st.out_ids.size());
        char *answer = es_func_text(in.tok, st.out_ids.data(), answer_ids(in.tok, st.out_ids));
        if (!text || !answer) {
            std::free(text);
            std::free(answer);
            return es_fail(err, "out of memory");
        }
        size_t v = verdict_of(o.labels, answer);
        std::free(answer);
        b.verdicts[v]++;
        std::snprintf(row.verdict, sizeof row.verdict, "%s", v < o.labels.size() ? o.labels[v].c_str() : "other");
        row.output_text = text;
        if (b.samples.size() < 3) { /* shown on one line each */
            std::string t;
            for (const char *c = text; *c; c++) t += *c == '\n' ? std::string("\\n") : *c == '\r' ? std::string("\\r") : std::string(1, *c);
            b.samples.push_back(t);
        }
    }
    b.lat.push_back(q.done_ns - q.submit_ns);
    if (++b.done == 100) b.first100 = q.done_ns;
    if (pg.on && (b.done & 255) == 0) {
        auto now = std::chrono::steady_clock::now();
        if (now - pg.last > std::chrono::milliseconds(500)) {
            pg.last = now;
            std::fprintf(stderr, "\r  %lld records done, %lld skipped, %.1f ms simulated", (long long)b.done,
                         (long long)b.skipped, q.done_ns / 1e6);
        }
    }
    int rc = b.db ? es_db_put_record(b.db, b.run_id, &row, err) : 0;
    std::free(text);
    for (size_t k = 0; b.db && !rc && k < st.toks.size(); k++) { /* its tokens, the first timed from submission */
        es_token_rec t = st.toks[k];
        if (t.idx == 0) t.latency_ns = t.t_ns - q.submit_ns;
        rc = es_db_put_token(b.db, b.run_id, &t, err);
    }
    return rc;
}

// The batch's settings for the simulation (records come and go through its source and sink).
void fill_workload(Workload &w, const Opts &o, const Inputs &in, const Batch &b)
{
    w.seq_tokens = b.db != nullptr;
    w.prefix = in.sharing ? in.rule_tokens : 0;
    w.prefix_adapter = in.L.n_adapters() > 0 ? 0 : -1; /* shared only when every record uses adapter 0 */
    w.policy = o.policy;
    w.progress = false;
    w.dp = in.dp;
    w.trace_path = o.trace;
    w.vcd_path = o.vcd;
    w.cycle = o.cycle;
    w.trace_start_ns = o.trace_start_ns;
    w.trace_end_ns = o.trace_end_ns;
    if (in.sharing && in.dp) w.prefix_ids = in.prefix_ids; /* --chat in timing mode: counted only */
    w.stop_at_eog = o.stop_eos ? in.tok : nullptr;
    w.max_request = in.context; /* a longer record is skipped: an expert-parallel stage's KV bound is sized for it */
}

// Simulate the batch; with prefix sharing (and the comparison asked for), the same batch without it in
// a forked child at the same time, its figures in b.cmp.
int simulate(const Opts &o, const Inputs &in, Batch &b, Workload &w, const Progress &pg, es_err *e)
{
    const Loaded &L = in.L;
    pid_t child = -1;
    int pipefd[2] = {-1, -1};
    if (in.sharing && o.compare && !o.stop_eos && pipe(pipefd) == 0) { /* --stop-at-eos: lengths known only here */
        std::fflush(nullptr);
        child = start_compare(L, in.data, in.tp, in.tok, in.rule_tokens, in.context, o,
                              in.chat.name ? &in.chat_after : nullptr, in.chat.trim, pipefd[1]);
        close(pipefd[1]);
    }
    auto t0 = std::chrono::steady_clock::now();
    std::vector<const es_map *> pms = L.pms();
    if (run_sim(pms.data(), (int)pms.size(), w, b.r, e)) {
        if (child > 0) waitpid(child, nullptr, 0);
        return -1; /* closing the batch's database marks the run failed with the error */
    }
    b.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (pg.on) std::fprintf(stderr, "\r%70s\r", "");
    if (child > 0) {
        ssize_t got = read(pipefd[0], &b.cmp, sizeof b.cmp);
        close(pipefd[0]);
        waitpid(child, nullptr, 0);
        if (got != (ssize_t)sizeof b.cmp) b.cmp.ok = 0;
        b.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    return 0;
}

int run_batch(const Opts &o, Inputs &in, Batch &b, es_err *e)
{
    // the database first: an unwritable path fails before any work
    if (begin_db(o, in, b, e)) return -1;
    // records are read as the driver admits them; memory holds only those in flight
    Reader rd(in.tp, in.tok, in.rule_tokens, in.context, o.max_new, o.records, in.sharing,
              in.dp ? &in.prefix_ids : nullptr);
    reader_adapters(rd, in.L, o);
    if (in.chat.name) rd.chat_after = &in.chat_after, rd.chat_trim = in.chat.trim;
    if (rd.open(in.data, e)) return -1;
    rd.on_skip = [&](const es_rec_row &row, es_err *err) {
        b.skipped++;
        if (b.shown_skips.size() < 5) b.shown_skips.push_back(row);
        return b.db ? es_db_put_record(b.db, b.run_id, &row, err) : 0;
    };
    b.verdicts.assign(o.labels.size() + 1, 0);
    Progress pg;
    pg.on = isatty(2) && !o.json;
    Workload w;
    w.source = [&](int64_t &id, Request &r, es_err *err) { return rd.next(id, r, err); };
    w.sink = [&](const es_req_result &q, const SeqState &st, es_err *err) {
        return finish_record(o, in, b, rd, pg, q, st, err);
    };
    fill_workload(w, o, in, b);
    if (simulate(o, in, b, w, pg, e)) return -1;
    b.first_prompt = rd.first_prompt;
    b.mean_body = b.done ? rd.body_sum / (double)rd.accepted : 0;
    return 0;
}

// 10000 as "10,000"
std::string grouped(int64_t n)
{
    std::string d = std::to_string(n), out;
    for (size_t i = 0; i < d.size(); i++) {
        if (i && (d.size() - i) % 3 == 0) out += ',';
        out += d[i];
    }
    return out;
}

// The figures eval's JSON and text report share.
struct Figures {
    double batch_ns = 0, first100 = 0;     // the batch's simulated time; the first 100 records'
    double p50 = 0, p95 = 0, p99 = 0;      // per-record latency percentiles, ns
    int64_t cap = 0;                       // KV positions
    int64_t slots_plain = 0, slots_shared = 0; // KV slots at the batch's mean sizes, without and with the shared prefix
    std::string data;                      // what the records came from
};

Figures figures(const Opts &o, const Inputs &in, Batch &b)
{
    Figures f;
    const Loaded &L = in.L;
    const int64_t done = b.done, rule_tokens = in.rule_tokens;
    f.batch_ns = done > 0 ? b.r.seconds * 1e9 : 0;
    f.first100 = done > 0 && done < 100 ? f.batch_ns : b.first100;
    f.p50 = es_percentile(b.lat.data(), b.lat.size(), 50);
    f.p95 = es_percentile(b.lat.data(), b.lat.size(), 95);
    f.p99 = es_percentile(b.lat.data(), b.lat.size(), 99);
    f.cap = L.have_sys ? b.r.kv_positions : L.map.kv_positions; // less a LoRA adapter's share; a system: its chips' fewest
    f.slots_plain = (int64_t)((double)f.cap / (b.mean_body + (double)rule_tokens + (double)o.max_new));
    f.slots_shared = (int64_t)((double)(f.cap - rule_tokens) / (b.mean_body + (double)o.max_new));
    f.data = o.data.empty() ? "demo: " + grouped(in.demo_records) + " generated card transactions" : o.data;
    return f;
}

// eval --json's "prefix_sharing": the KV slots it saves and, when the batch also ran without it, what that took.
void add_sharing_json(cJSON *j, const Inputs &in, const Batch &b, const Figures &f)
{
    const RunResult &r = b.r;
    const Compare &cmp = b.cmp;
    cJSON *ps = cJSON_AddObjectToObject(j, "prefix_sharing");
    cJSON_AddBoolToObject(ps, "enabled", in.sharing);
    cJSON_AddNumberToObject(ps, "kv_slots_with", (double)f.slots_shared);
    cJSON_AddNumberToObject(ps, "kv_slots_without", (double)f.slots_plain);
    cJSON_AddNumberToObject(ps, "kv_slots_saved", (double)(f.slots_shared - f.slots_plain));
    if (cmp.ok) {
        cJSON_AddNumberToObject(ps, "batch_ns_without", cmp.batch_ns);
        cJSON_AddNumberToObject(ps, "time_saved_ns", cmp.batch_ns - f.batch_ns);
        cJSON_AddNumberToObject(ps, "prefill_token_passes_without", (double)cmp.prefill_passes);
        cJSON_AddNumberToObject(ps, "prefill_token_passes_saved", (double)(cmp.prefill_passes - r.prefill_passes));
        cJSON_AddNumberToObject(ps, "max_in_flight_without", (double)cmp.max_in_flight);
    }
}

// eval --json's "verdicts" and "functional" (functional mode).
void add_functional_json(cJSON *j, const Opts &o, const Inputs &in, const Batch &b)
{
    const Loaded &L = in.L;
    cJSON *v = cJSON_AddObjectToObject(j, "verdicts");
    for (size_t i = 0; i < o.labels.size(); i++) cJSON_AddNumberToObject(v, o.labels[i].c_str(), (double)b.verdicts[i]);
    cJSON_AddNumberToObject(v, "other", (double)b.verdicts.back());
    cJSON *f = cJSON_AddObjectToObject(j, "functional");
    cJSON_AddStringToObject(f, "activation_format", L.c.tile.act_format);
    cJSON_AddNumberToObject(f, "accumulator_bits", L.c.tile.acc_bits);
    cJSON_AddStringToObject(f, "kv_format", L.c.kv.format);
    cJSON_AddNumberToObject(f, "accumulator_saturations", (double)es_dp_get_stats(in.dp).saturations);
}

// eval --json's "analytic": the oracle for a uniform batch, the busiest unit's total occupancy plus at
// most one fill.
void add_analytic_json(cJSON *j, const Opts &o, const Inputs &in, const Batch &b)
{
    const Loaded &L = in.L;
    double busy = 0, fill = 0, upper = 0;
    es_an_batch(&L.map, b.done, in.sharing ? in.rule_tokens : 0, b.first_prompt, o.max_new, &busy, &fill, &upper);
    cJSON *an = cJSON_AddObjectToObject(j, "analytic");
    cJSON_AddNumberToObject(an, "busy_ns", busy * 1e9 / L.c.clock_hz);
    cJSON_AddNumberToObject(an, "fill_ns", fill * 1e9 / L.c.clock_hz);
    cJSON_AddNumberToObject(an, "upper_ns", upper * 1e9 / L.c.clock_hz);
    cJSON_AddStringToObject(an, "note", "uniform batch: sizes of the first record; exact only when all records are alike");
}

// eval's JSON: the run's summary in the database and what --json prints.
cJSON *eval_json(const Opts &o, const Inputs &in, const Batch &b, const Figures &f)
{
    const Loaded &L = in.L;
    const RunResult &r = b.r;
    const int64_t done = b.done, out_tokens = r.tokens;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "chip", L.have_sys ? L.sys.name : L.c.name); /* a system: its name ("system" below) */
    cJSON_AddStringToObject(j, "model", L.m.name);
    cJSON_AddItemToObject(j, "weight_formats", formats_json(L));
    if (L.n_adapters() > 0) cJSON_AddItemToObject(j, "adapter", adapter_json(L));
    cJSON_AddStringToObject(j, "mode", in.dp ? "functional" : "timing");
    cJSON_AddStringToObject(j, "fidelity", o.cycle ? "cycle" : "transaction");
    cJSON_AddStringToObject(j, "rule", o.rule.c_str());
    cJSON_AddStringToObject(j, "data", f.data.c_str());
    cJSON_AddNumberToObject(j, "records_done", (double)done);
    cJSON_AddNumberToObject(j, "records_skipped", (double)b.skipped);
    cJSON_AddNumberToObject(j, "batch_ns", f.batch_ns);
    cJSON_AddNumberToObject(j, "first_100_ns", f.first100);
    cJSON *rl = cJSON_AddObjectToObject(j, "record_latency_ns");
    cJSON_AddNumberToObject(rl, "p50", f.p50);
    cJSON_AddNumberToObject(rl, "p95", f.p95);
    cJSON_AddNumberToObject(rl, "p99", f.p99);
    cJSON_AddNumberToObject(j, "tokens_per_s", f.batch_ns > 0 ? (double)out_tokens / (f.batch_ns * 1e-9) : 0);
    cJSON_AddNumberToObject(j, "prefill_tokens_per_s", f.batch_ns > 0 ? (double)r.prefill_passes / (f.batch_ns * 1e-9) : 0);
    cJSON_AddNumberToObject(j, "watts", done ? r.watts : 0);
    cJSON_AddNumberToObject(j, "joules_per_record", done ? r.total_j / (double)done : 0);
    cJSON_AddNumberToObject(j, "energy_j", r.total_j);
    cJSON_AddNumberToObject(j, "unattributed_j", r.unattributed_j); /* the rule's prefix and static power after the last token */
    cJSON_AddNumberToObject(j, "output_tokens", (double)out_tokens);
    cJSON_AddNumberToObject(j, "prefill_token_passes", (double)r.prefill_passes);
    cJSON_AddNumberToObject(j, "rule_tokens", (double)in.rule_tokens);
    cJSON_AddNumberToObject(j, "record_tokens_mean", b.mean_body); /* each record's prompt after the shared prefix */
    if (in.chat.name) cJSON_AddStringToObject(j, "chat", in.chat.name);
    else cJSON_AddNullToObject(j, "chat");
    cJSON_AddBoolToObject(j, "stop_at_eos", o.stop_eos);
    cJSON_AddBoolToObject(j, "token_counts_estimated", in.estimated);
    cJSON_AddStringToObject(j, "vocab", in.vocab.c_str());
    cJSON_AddNumberToObject(j, "max_new_tokens", (double)o.max_new);
    cJSON_AddStringToObject(j, "policy", o.policy == ES_POLICY_SPF ? "spf" : "fcfs");
    cJSON_AddNumberToObject(j, "kv_positions", (double)f.cap);
    cJSON_AddNumberToObject(j, "max_in_flight", (double)r.max_in_flight);
    cJSON_AddNumberToObject(j, "kv_max_used", (double)r.kv_max_used);
    cJSON_AddItemToObject(j, "utilization", utilization_json(r.units, r.area.total_mm2, r.die_utilization, r.cycles));
    cJSON_AddItemToObject(j, "energy_by_event_j", energy_by_event_json(&L.c, r));
    cJSON_AddItemToObject(j, "power_limit", power_limit_json(r));
    cJSON_AddItemToObject(j, "area", area_json(r.area));
    add_sharing_json(j, in, b, f);
    if (in.dp) add_functional_json(j, o, in, b);
    if (L.have_sys) cJSON_AddNullToObject(j, "analytic"); /* es_an_batch times one chip */
    else if (done > 0) add_analytic_json(j, o, in, b);
    cJSON_AddNumberToObject(j, "sim_wall_s", b.wall);
    cJSON_AddItemToObject(j, "cost", cost_json(L.c, in.cost)); /* as run's: the batch's tokens/s and watts */
    if (!in.cost.have) cJSON_AddStringToObject(j, "cost_unknown", in.cost.why.c_str()); /* why "cost" is null */
    if (L.have_sys) cJSON_AddItemToObject(j, "system", system_json(L, r, in.cost));
    return j;
}

// eval's text report.
void print_eval(const Opts &o, const Inputs &in, const Batch &b, const Figures &f)
{
    const Loaded &L = in.L;
    const RunResult &r = b.r;
    const Compare &cmp = b.cmp;
    const int64_t done = b.done, skipped = b.skipped, out_tokens = r.tokens;
    const bool sharing = in.sharing, estimated = in.estimated;
    const double ms = 1e-6, batch_ns = f.batch_ns;
    std::printf("etchsim eval: %s on %s%s%s%s\n", L.m.name, L.have_sys ? "the system " : "",
                L.have_sys ? L.sys.name : L.c.name, in.dp ? " (functional)" : "",
                o.cycle ? ", cycle fidelity" : "");
    /* an estimate must be impossible to miss: said before any figure, and beside each it moves */
    const char *est = estimated ? " [ESTIMATED]" : "";
    if (estimated)
        std::printf("  ESTIMATED: no tokenizer vocabulary, so token counts are guessed at 1 per 4 UTF-8 bytes;\n"
                    "  every figure marked [ESTIMATED] follows from them (scripts/fetch-vocab or --vocab F)\n");
    std::printf("  rule: \"%s\"\n", o.rule.c_str());
    std::printf("  weight formats timed: %s\n", L.formats.c_str());
    if (L.n_adapters() > 0) std::printf("  %s\n", adapter_text(L).c_str());
    std::printf("  data: %s\n", o.data.empty() ? ("demo, " + f.data.substr(6)).c_str() : f.data.c_str());
    std::printf("  %-34s %lld done, %lld skipped\n", "records", (long long)done, (long long)skipped);
    if (in.dp) {
        for (size_t i = 0; i <= o.labels.size(); i++)
            std::printf("  %-34s %s %lld / %lld\n", i ? "" : "verdicts", i < o.labels.size() ? o.labels[i].c_str() : "other",
                        (long long)b.verdicts[i], (long long)done);
        for (size_t i = 0; i < b.samples.size(); i++)
            std::printf("  %-34s \"%s\"\n", i ? "" : "first outputs", b.samples[i].c_str());
    }
    std::printf("  %-34s %.3f ms%s\n", "batch time (simulated)", batch_ns * ms, est);
    std::printf("  %-34s %.3f ms%s\n", "first 100 results (live preview)", f.first100 * ms, est);
    std::printf("  %-34s p50 %.1f us, p95 %.1f us, p99 %.1f us%s\n", "per-record latency", f.p50 / 1e3, f.p95 / 1e3,
                f.p99 / 1e3, est);
    std::printf("  %-34s %.0f output, %.0f prefill%s\n", "tokens/s", batch_ns > 0 ? out_tokens / (batch_ns * 1e-9) : 0,
                batch_ns > 0 ? r.prefill_passes / (batch_ns * 1e-9) : 0, est);
    std::printf("  %-34s %.1f W, %.3f mJ per record%s\n", "power", done ? r.watts : 0,
                done ? r.total_j / (double)done * 1e3 : 0, est);
    if (r.power_limit_w > 0) std::printf("  %-34s %s\n", "power limit", power_limit_text(r).c_str());
    std::printf("  %-34s %.1f %%\n", "die utilization", 100.0 * r.die_utilization);
    if (in.cost.have)
        std::printf("  %-34s %.6f (deployment %s; etchsim cost says how)%s\n", "$ per million tokens",
                    in.cost.c.usd_per_m_tokens, in.cost.d.name, est);
    else
        std::printf("  %-34s - (%s)\n", "$ per million tokens", in.cost.why.c_str());
    std::printf("  %-34s %lld output, %lld rule tokens, %lld prefill token passes%s\n", "tokens", (long long)out_tokens,
                (long long)in.rule_tokens, (long long)r.prefill_passes, estimated ? " (ESTIMATED: no vocabulary)" : "");
    std::printf("  %-34s %s: shared prefix %lld tokens, a record's prompt %.1f more on average%s\n", "prompt",
                in.chat.name ? (std::string("chat ") + in.chat.name).c_str() : "plain template", (long long)in.rule_tokens,
                b.mean_body, o.stop_eos ? "; generation stops at each record's end (--stop-at-eos)" : "");
    if (sharing && cmp.ok)
        std::printf("  %-34s saves %lld prefill passes and %.3f ms (%.1f%%); KV fits %lld sequences, not %lld\n",
                    "prefix sharing", (long long)(cmp.prefill_passes - r.prefill_passes),
                    (cmp.batch_ns - batch_ns) * ms, 100.0 * (cmp.batch_ns - batch_ns) / cmp.batch_ns,
                    (long long)f.slots_shared, (long long)f.slots_plain);
    else
        std::printf("  %-34s %s; KV fits %lld sequences (%lld with sharing)\n", "prefix sharing",
                    sharing ? "on" : "off", (long long)(sharing ? f.slots_shared : f.slots_plain),
                    (long long)f.slots_shared);
    std::printf("  %-34s %.2f s\n", "host wall time", b.wall);
    print_system(L, r);
    for (const auto &row : b.shown_skips) std::printf("  skipped record %lld: %s\n", (long long)row.record, row.reason);
    if (skipped > 5) std::printf("  ... %lld more skipped records%s\n", (long long)(skipped - 5), b.db ? " in the database" : "");
    if (b.db) std::printf("  logged as run %lld in %s (table records)\n", (long long)b.run_id, o.db.c_str());
}

// The JSON summary, the database's closing transaction, and the report.
int report(const Opts &o, Inputs &in, Batch &b, es_err *e)
{
    const RunResult &r = b.r;
    if (in.cost.have_d) {
        es_err ce{};
        compute_cost(in.L, r, in.cost, &ce); /* not known (no cost.* keys, no tokens): null, and the report says why */
    }
    const Figures f = figures(o, in, b);
    cJSON *j = eval_json(o, in, b, f);
    char *summary = cJSON_PrintUnformatted(j);
    int rc = 0;
    const std::vector<es_unit_rec> units = db_units(r); /* with the weight store's row */
    if (b.db && es_db_finish_run(b.db, b.run_id, (double)r.cycles, nullptr, 0, nullptr, 0, units.data(),
                                 (int)units.size(), nullptr, 0, summary, e))
        rc = -1;
    cJSON_free(summary);
    if (rc) {
        cJSON_Delete(j);
        return -1;
    }
    if (in.estimated)
        std::fprintf(stderr, "etchsim eval: warning: no tokenizer vocabulary (run scripts/fetch-vocab, or give "
                             "--vocab); token counts are estimated (1 token per 4 UTF-8 bytes)\n");
    if (o.json) {
        char *s = cJSON_Print(j);
        std::puts(s);
        cJSON_free(s);
    }
    cJSON_Delete(j);
    if (!o.json) print_eval(o, in, b, f);
    return 0;
}

} // namespace

int cmd_eval(int argc, char **argv)
{
    Opts o;
    int rc = parse_opts(argc, argv, o);
    if (rc >= 0) return rc;
    es_err e{};
    Inputs in;
    Batch b;
    b.err = &e;
    if (load_inputs(o, in, &e) || run_batch(o, in, b, &e) || report(o, in, b, &e)) {
        std::fprintf(stderr, "etchsim eval: %s\n", e.msg);
        return 1;
    }
    return 0;
}

} // namespace es
