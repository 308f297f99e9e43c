/* cli_infer: `etchsim infer` (see cli_infer.h). Tokenizes the text (BOS
 * first), runs every prompt token through the reference, then samples and
 * feeds back up to --generate tokens, stopping early at EOS unless told not
 * to. --logits writes, for every position run, the logits that predict the
 * next position. */
#define _POSIX_C_SOURCE 200809L
#include "cli_infer.h"
#include "cli_opts.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli_func.h"
#include "cli_json.h"
#include "es_fs.h"
#include "es_model.h"
#include "es_ref.h"
#include "es_tok.h"
#include "es_chat.h"
#include "es_lora.h"
#include "es_wsrc.h"

static const char *HELP =
    "usage: etchsim infer --model M --text T [--generate N] [options]\n"
    "\n"
    "Run the FP32 reference forward pass (no chip) on a model's real weights:\n"
    "tokenize T as llama.cpp does a prompt (control tokens written in it parsed, BOS\n"
    "first when the vocabulary adds it), run the prompt, generate up to N tokens.\n"
    "Prints the prompt's and the output's token ids and the output text.\n"
    "\n"
    "options:\n"
    "  --model M            a .gguf file (shapes, weights and tokenizer in one), or a\n"
    "                       config.json / folder / name under models/llm\n"
    "  --text T             the prompt text\n"
    "  --generate N         tokens to generate (default 16, at most 65536)\n"
    "  --weights PATH       weights (safetensors or GGUF); default: the model's GGUF file\n"
    "  --synthetic SEED     synthetic weights (weights/es_synth.h) instead\n"
    "  --rope-rows halves|pairs  Q/K row order in the weights file (default: by container)\n"
    "  --vocab F            tokenizer: a GGUF file's metadata or a tiktoken file\n"
    "                       (default: the model's GGUF, else models/llm/NAME/tokenizer.tiktoken)\n"
    "  --temperature X      0 (default) is greedy; above 0 samples\n"
    "  --top-k K            keep the K most likely tokens (default 0: all)\n"
    "  --top-p P            keep the smallest set reaching probability P (default 1)\n"
    "  --seed S             sampling seed (default 1)\n"
    "  --ignore-eos         do not stop at the end-of-sequence token (nor at an end-of-turn token:\n"
    "                       <|eot_id|>, <|im_end|>, the GGUF's eot/eom ids)\n"
    "  --chat               wrap T in the model's chat format as one user turn, the assistant's\n"
    "                       turn opened after it (Llama 3.1 instruct for the Llama 3 vocabulary; a\n"
    "                       GGUF's tokenizer.chat_template: Llama 3 or ChatML); no other BOS\n"
    "  --adapter FILE       a LoRA adapter (PEFT adapter_model.safetensors with adapter_config.json\n"
    "                       beside it, or a GGUF LoRA): each adapted projection adds (alpha/r) B(A x)\n"
    "  --logits FILE        write JSON: [{\"pos\", \"token\", \"logits\": [...]}, ...], one per position run\n"
    "  --json               print {\"model\", \"prompt_ids\", \"output_ids\", \"output_text\", \"stopped_at_eos\"}\n"
    "  -h, --help           this text\n";

static int usage(const char *msg, const char *arg) { return es_opt_usage("infer", msg, arg); }

typedef struct infer_opts {
    const char *model, *text, *weights, *vocab, *logits_path, *adapter;
    int64_t gen, seed, synth, top_k;
    double temp, top_p;
    int json, ignore_eos, rope_rows, chat;
} infer_opts;

/* The command line into o: -1 to go on, else the exit status (0 after --help, 2 on a usage error). */
static int parse(int argc, char **argv, infer_opts *o)
{
    enum { MODEL, TEXT, GENERATE, WEIGHTS, SYNTHETIC, ROPE, VOCAB, TEMP, TOPK, TOPP, SEED, IGNORE_EOS, LOGITS, JSON, ADAPTER, CHAT, N_OPTS };
    static const es_opt opts[N_OPTS] = {
        {"model", ES_OPT_STR, 0, 0, 0},         {"text", ES_OPT_TEXT, 0, 0, 0},
        {"generate", ES_OPT_COUNT, 0, 65536, 0}, {"weights", ES_OPT_STR, 0, 0, 0},
        {"synthetic", ES_OPT_COUNT, 0, 9.2e18, 0}, {"rope-rows", ES_OPT_STR, 0, 0, 0},
        {"vocab", ES_OPT_STR, 0, 0, 0},         {"temperature", ES_OPT_REAL, 0, 100, 0},
        {"top-k", ES_OPT_COUNT, 0, 1 << 24, 0}, {"top-p", ES_OPT_REAL, 1e-9, 1, 0},
        {"seed", ES_OPT_COUNT, 0, 9.2e18, 0},   {"ignore-eos", ES_OPT_FLAG, 0, 0, 0},
        {"logits", ES_OPT_STR, 0, 0, 0},        {"json", ES_OPT_FLAG, 0, 0, 0},
        {"adapter", ES_OPT_STR, 0, 0, 0},       {"chat", ES_OPT_FLAG, 0, 0, 0}};
    *o = (infer_opts){.gen = 16, .seed = 1, .synth = -1, .top_p = 1, .rope_rows = -1};
    es_optarg *items = NULL;
    int n_items = es_opts_parse("infer", argc, argv, opts, N_OPTS, 0, HELP, &items);
    if (n_items < 0) return n_items == -2 ? 0 : 2;
    for (int k = 0; k < n_items; k++) {
        const char *v = items[k].val;
        switch (items[k].opt) {
        case MODEL: o->model = v; break;
        case TEXT: o->text = v; break;
        case GENERATE: o->gen = items[k].num; break;
        case WEIGHTS: o->weights = v; break;
        case SYNTHETIC: o->synth = items[k].num; break;
        case ROPE:
            if (!strcmp(v, "halves")) o->rope_rows = ES_ROPE_HALVES;
            else if (!strcmp(v, "pairs")) o->rope_rows = ES_ROPE_PAIRS;
            else {
                free(items);
                return usage("--rope-rows expects halves or pairs, got", v);
            }
            break;
        case VOCAB: o->vocab = v; break;
        case TEMP: o->temp = items[k].real; break;
        case TOPK: o->top_k = items[k].num; break;
        case TOPP: o->top_p = items[k].real; break;
        case SEED: o->seed = items[k].num; break;
        case IGNORE_EOS: o->ignore_eos = 1; break;
        case LOGITS: o->logits_path = v; break;
        case JSON: o->json = 1; break;
        case ADAPTER: o->adapter = v; break;
        case CHAT: o->chat = 1; break;
        }
    }
    free(items);
    if (!o->model) return usage("--model is required (a .gguf file, or a config.json with --weights)", NULL);
    if (!o->text) return usage("--text is required", NULL);
    if (o->weights && o->synth >= 0) return usage("give --weights or --synthetic, not both", NULL);
    return -1;
}

static int prompt_encode(const infer_opts *o, const es_model *m, const es_tok *tok, const char *vpath, const char *text,
                         const int32_t *before, int64_t n_before, const int32_t *after, int64_t n_after, int32_t **ids,
                         int64_t *n_prompt, es_err *e);

/* --chat: the text as the chat's user message (malloc'd): the lead text, then the message trimmed as the format
 * trims it; *before and *after the chat's ids around it (malloc'd). NULL and e on an error. */
static char *chat_text(const infer_opts *o, const es_tok *tok, const char *vpath, es_chat *c, int32_t **before,
                       int64_t *n_before, int32_t **after, int64_t *n_after, es_err *e)
{
    if (es_chat_load(c, tok, vpath, e)) return NULL;
    size_t tlen = strlen(o->text), a = c->trim ? es_chat_trim(o->text, tlen, 1) : 0;
    size_t b = c->trim ? es_chat_trim(o->text, tlen, 0) : tlen, lead = strlen(es_chat_lead(c));
    if (b < a) b = a;
    char *msg = malloc(lead + (b - a) + 1);
    *n_before = es_chat_before(c, tok, NULL, 0);
    *n_after = es_chat_after(c, tok, NULL, 0);
    *before = malloc((size_t)(*n_before + 1) * sizeof **before);
    *after = malloc((size_t)(*n_after + 1) * sizeof **after);
    if (!msg || !*before || !*after) {
        free(msg);
        es_fail(e, "out of memory");
        return NULL;
    }
    memcpy(msg, es_chat_lead(c), lead);
    memcpy(msg + lead, o->text + a, b - a);
    msg[lead + b - a] = 0;
    es_chat_before(c, tok, *before, *n_before);
    es_chat_after(c, tok, *after, *n_after);
    return msg;
}

/* The prompt, BOS first (--chat: the chat's ids around the text), into *ids (malloc'd, with room for --generate
 * more); the tokenizer came from vpath. */
static int prompt_ids(const infer_opts *o, const es_model *m, const es_tok *tok, const char *vpath, int32_t **ids,
                      int64_t *n_prompt, es_err *e)
{
    es_chat chat;
    int32_t *before = NULL, *after = NULL;
    int64_t n_before = 0, n_after = 0;
    const char *text = o->text;
    char *msg = NULL;
    if (o->chat && !(text = msg = chat_text(o, tok, vpath, &chat, &before, &n_before, &after, &n_after, e))) {
        free(before);
        free(after);
        return -1;
    }
    int rc = prompt_encode(o, m, tok, vpath, text, before, n_before, after, n_after, ids, n_prompt, e);
    free(msg);
    free(before);
    free(after);
    return rc;
}

/* The prompt's ids: before[], then text's, then after[]. The text is tokenized as llama.cpp tokenizes a prompt:
 * control tokens in it parsed; without a chat (no before[]) BOS/EOS as the vocabulary says. */
static int prompt_encode(const infer_opts *o, const es_model *m, const es_tok *tok, const char *vpath, const char *text,
                         const int32_t *before, int64_t n_before, const int32_t *after, int64_t n_after, int32_t **ids,
                         int64_t *n_prompt, es_err *e)
{
    size_t tlen = strlen(text);
    const unsigned fl = ES_TOK_PARSE_SPECIAL | (before ? 0u : ES_TOK_ADD_SPECIAL);
    int64_t n_text = es_tok_encode_flags(tok, text, tlen, fl, NULL, 0);
    int64_t n = n_before + n_text + n_after, total = n + o->gen;
    if (n < 1) return es_fail(e, "--text: the prompt has no tokens (and the vocabulary adds no BOS)");
    if (total > m->max_pos)
        return es_fail(e, "%lld prompt tokens + --generate %lld exceed the model's context of %lld (%s)",
                       (long long)n, (long long)o->gen, (long long)m->max_pos, m->path);
    if (!(*ids = malloc((size_t)total * sizeof **ids))) return es_fail(e, "out of memory");
    if (n_before) memcpy(*ids, before, (size_t)n_before * sizeof **ids);
    es_tok_encode_flags(tok, text, tlen, fl, *ids + n_before, n_text);
    if (n_after) memcpy(*ids + n_before + n_text, after, (size_t)n_after * sizeof **ids);
    *n_prompt = n;
    for (int64_t i = 0; i < n; i++)
        if ((*ids)[i] < 0 || (*ids)[i] >= m->vocab)
            return es_fail(e, "%s: the tokenizer gave id %d, outside the model's vocabulary of %lld", vpath, (*ids)[i],
                           (long long)m->vocab);
    return 0;
}

/* Every prompt position through the reference, then sample and feed back up to --generate tokens
 * (ids[n_prompt..]), stopping at EOS or an end-of-turn token unless told not to; lf (if not NULL) gets every position's logits. */
static int generate(const infer_opts *o, const es_model *m, const es_tok *tok, es_ref *ref, int32_t *ids, int64_t n_prompt, int32_t eos,
                    es_logits_file *lf, int64_t *produced, int *stopped, es_err *e)
{
    float *logits = malloc((size_t)m->vocab * sizeof *logits);
    es_sample_slot *work = malloc((size_t)m->vocab * sizeof *work);
    int rc = -1;
    if (!logits || !work) { es_fail(e, "out of memory"); goto out; }
    es_sampler smp = {o->temp, o->top_k, o->top_p};
    uint64_t rng = (uint64_t)o->seed;
    int64_t n = n_prompt;
    *produced = 0;
    *stopped = 0;
    for (int64_t pos = 0; pos < n; pos++) {
        if (es_ref_forward(ref, ids[pos], pos, logits, e)) goto out;
        if (lf && es_logits_row(lf, pos, ids[pos], logits, m->vocab, e)) goto out;
        if (pos < n - 1 || *produced >= o->gen) continue;
        if (es_logits_finite(logits, m->vocab, pos, e)) goto out;
        int32_t next = es_sample(&smp, logits, m->vocab, &rng, work);
        ids[n++] = next;
        (*produced)++;
        if ((next == eos || es_tok_is_eog(tok, next)) && !o->ignore_eos) { *stopped = 1; break; }
        if (*produced >= o->gen) break;
    }
    rc = 0;
out:
    free(logits);
    free(work);
    return rc;
}

static void print_result(const infer_opts *o, const es_model *m, const int32_t *ids, int64_t n_prompt,
                         int64_t produced, int stopped, const char *out_text)
{
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", m->name);
        cJSON_AddItemToObject(j, "prompt_ids", es_ids_json(ids, n_prompt));
        cJSON_AddItemToObject(j, "output_ids", es_ids_json(ids + n_prompt, produced));
        cJSON_AddStringToObject(j, "output_text", out_text);
        cJSON_AddBoolToObject(j, "stopped_at_eos", stopped);
        char *s = cJSON_Print(j);
        puts(s);
        cJSON_free(s);
        cJSON_Delete(j);
        return;
    }
    printf("prompt ids:");
    for (int64_t i = 0; i < n_prompt; i++) printf(" %d", ids[i]);
    printf("\noutput ids:");
    for (int64_t i = n_prompt; i < n_prompt + produced; i++) printf(" %d", ids[i]);
    printf("%s\noutput text: %s\n", stopped ? " (end of sequence)" : "", out_text);
}

int es_cli_infer(int argc, char **argv)
{
    infer_opts o;
    int rc = parse(argc, argv, &o);
    if (rc >= 0) return rc;
    es_err e = {{0}};
    es_model m;
    es_func_rows rows = {0};
    es_tok *tok = NULL;
    es_ref *ref = NULL;
    int32_t *ids = NULL;
    char *out_text = NULL;
    es_logits_file lf = {0};
    int have_w = 0, have_lf = 0, stopped = 0, have_lora = 0;
    es_lora lora;
    int64_t n_prompt = 0, produced = 0;
    rc = 1;
    if (es_model_load(&m, o.model, &e)) { fprintf(stderr, "etchsim infer: %s\n", e.msg); return 1; }
    char vpath[1024];
    if (es_func_tokenizer(&m, o.vocab, &tok, vpath, sizeof vpath, &e)) goto out;
    const char *wp = o.synth >= 0 ? NULL : o.weights ? o.weights : m.gguf ? m.path : NULL;
    if (o.synth < 0 && !wp) { es_fail(&e, "%s: no weights: give --weights PATH or --synthetic SEED", m.path); goto out; }
    if (es_func_rows_open(&rows, &m, wp, o.synth, o.rope_rows, &e)) goto out;
    have_w = 1;
    if (prompt_ids(&o, &m, tok, vpath, &ids, &n_prompt, &e)) goto out;
    if (es_ref_load(&ref, &m, es_func_rows_read, &rows, n_prompt + o.gen, ES_REF_ROPE_HALVES, &e)) goto out;
    if (o.adapter) {
        if (es_lora_load(&lora, o.adapter, &m, &e)) goto out;
        have_lora = 1;
        if (es_ref_set_lora(ref, (const float *const *)lora.a, (const float *const *)lora.b, lora.rank,
                            lora.alpha / lora.rank, &e))
            goto out;
    }
    if (o.logits_path) {
        if (es_logits_open(&lf, o.logits_path, &e)) goto out;
        have_lf = 1;
    }
    if (generate(&o, &m, tok, ref, ids, n_prompt, es_tok_eos(tok), have_lf ? &lf : NULL, &produced, &stopped, &e)) goto out;
    if (have_lf) {
        have_lf = 0;
        if (es_logits_close(&lf, &e)) goto out;
    }
    out_text = es_func_text(tok, ids + n_prompt, produced);
    if (!out_text) { es_fail(&e, "out of memory"); goto out; }
    print_result(&o, &m, ids, n_prompt, produced, stopped, out_text);
    rc = 0;
out:
    if (rc) fprintf(stderr, "etchsim infer: %s\n", e.msg);
    if (have_lf) es_logits_abort(&lf);
    free(out_text);
    free(ids);
    es_ref_free(ref);
    if (have_lora) es_lora_free(&lora);
    es_tok_free(tok);
    if (have_w) es_func_rows_close(&rows);
    es_model_free(&m);
    return rc;
}
