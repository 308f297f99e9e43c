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
#include "es_fs.h"
#include "es_model.h"
#include "es_ref.h"
#include "es_tok.h"
#include "es_wsrc.h"

static const char *HELP =
    "usage: etchsim infer --model M --text T [--generate N] [options]\n"
    "\n"
    "Run the FP32 reference forward pass (no chip) on a model's real weights:\n"
    "tokenize T (BOS first), run the prompt, generate up to N tokens. Prints the\n"
    "prompt's and the output's token ids and the output text.\n"
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
    "  --ignore-eos         do not stop at the end-of-sequence token\n"
    "  --logits FILE        write JSON: [{\"pos\", \"token\", \"logits\": [...]}, ...], one per position run\n"
    "  --json               print {\"model\", \"prompt_ids\", \"output_ids\", \"output_text\", \"stopped_at_eos\"}\n"
    "  -h, --help           this text\n";

static int usage(const char *msg, const char *arg) { return es_opt_usage("infer", msg, arg); }

int es_cli_infer(int argc, char **argv)
{
    enum { MODEL, TEXT, GENERATE, WEIGHTS, SYNTHETIC, ROPE, VOCAB, TEMP, TOPK, TOPP, SEED, IGNORE_EOS, LOGITS, JSON, N_OPTS };
    static const es_opt opts[N_OPTS] = {
        {"model", ES_OPT_STR, 0, 0, 0},         {"text", ES_OPT_TEXT, 0, 0, 0},
        {"generate", ES_OPT_COUNT, 0, 65536, 0}, {"weights", ES_OPT_STR, 0, 0, 0},
        {"synthetic", ES_OPT_COUNT, 0, 9.2e18, 0}, {"rope-rows", ES_OPT_STR, 0, 0, 0},
        {"vocab", ES_OPT_STR, 0, 0, 0},         {"temperature", ES_OPT_REAL, 0, 100, 0},
        {"top-k", ES_OPT_COUNT, 0, 1 << 24, 0}, {"top-p", ES_OPT_REAL, 1e-9, 1, 0},
        {"seed", ES_OPT_COUNT, 0, 9.2e18, 0},   {"ignore-eos", ES_OPT_FLAG, 0, 0, 0},
        {"logits", ES_OPT_STR, 0, 0, 0},        {"json", ES_OPT_FLAG, 0, 0, 0}};
    const char *model = NULL, *text = NULL, *weights = NULL, *vocab = NULL, *logits_path = NULL;
    int64_t gen = 16, seed = 1, synth = -1, top_k = 0;
    double temp = 0, top_p = 1;
    int json = 0, ignore_eos = 0, rope_rows = -1;
    es_optarg *items = NULL;
    int n_items = es_opts_parse("infer", argc, argv, opts, N_OPTS, 0, HELP, &items);
    if (n_items < 0) return n_items == -2 ? 0 : 2;
    for (int k = 0; k < n_items; k++) {
        const char *v = items[k].val;
        switch (items[k].opt) {
        case MODEL: model = v; break;
        case TEXT: text = v; break;
        case GENERATE: gen = items[k].num; break;
        case WEIGHTS: weights = v; break;
        case SYNTHETIC: synth = items[k].num; break;
        case ROPE:
            if (!strcmp(v, "halves")) rope_rows = ES_ROPE_HALVES;
            else if (!strcmp(v, "pairs")) rope_rows = ES_ROPE_PAIRS;
            else {
                free(items);
                return usage("--rope-rows expects halves or pairs, got", v);
            }
            break;
        case VOCAB: vocab = v; break;
        case TEMP: temp = items[k].real; break;
        case TOPK: top_k = items[k].num; break;
        case TOPP: top_p = items[k].real; break;
        case SEED: seed = items[k].num; break;
        case IGNORE_EOS: ignore_eos = 1; break;
        case LOGITS: logits_path = v; break;
        case JSON: json = 1; break;
        }
    }
    free(items);
    if (!model) return usage("--model is required (a .gguf file, or a config.json with --weights)", NULL);
    if (!text) return usage("--text is required", NULL);
    if (weights && synth >= 0) return usage("give --weights or --synthetic, not both", NULL);

    es_err e = {{0}};
    es_model m;
    es_func_rows rows = {0};
    es_tok *tok = NULL;
    es_ref *ref = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    es_sample_slot *work = NULL;
    char *out_text = NULL;
    es_logits_file lf = {0};
    int rc = 1, have_w = 0, have_lf = 0;
    if (es_model_load(&m, model, &e)) { fprintf(stderr, "etchsim infer: %s\n", e.msg); return 1; }
    /* tokenizer */
    char vpath[1024];
    if (es_func_tokenizer(&m, vocab, &tok, vpath, sizeof vpath, &e)) goto out;
    /* weights */
    const char *wp = synth >= 0 ? NULL : weights ? weights : m.gguf ? m.path : NULL;
    if (synth < 0 && !wp) { es_fail(&e, "%s: no weights: give --weights PATH or --synthetic SEED", m.path); goto out; }
    if (es_func_rows_open(&rows, &m, wp, synth, rope_rows, &e)) goto out;
    have_w = 1;
    /* prompt */
    size_t tlen = strlen(text);
    int64_t n_text = es_tok_encode(tok, text, tlen, NULL, 0);
    int32_t bos = es_tok_bos(tok), eos = es_tok_eos(tok);
    int64_t n_prompt = n_text + (bos >= 0), total = n_prompt + gen;
    if (n_prompt < 1) { es_fail(&e, "--text: the prompt has no tokens (and the vocabulary no BOS)"); goto out; }
    if (total > m.max_pos) {
        es_fail(&e, "%lld prompt tokens + --generate %lld exceed the model's context of %lld (%s)",
                (long long)n_prompt, (long long)gen, (long long)m.max_pos, m.path);
        goto out;
    }
    ids = malloc((size_t)total * sizeof *ids);
    logits = malloc((size_t)m.vocab * sizeof *logits);
    work = malloc((size_t)m.vocab * sizeof *work);
    if (!ids || !logits || !work) { es_fail(&e, "out of memory"); goto out; }
    if (bos >= 0) ids[0] = bos;
    es_tok_encode(tok, text, tlen, ids + (bos >= 0), n_text);
    for (int64_t i = 0; i < n_prompt; i++)
        if (ids[i] < 0 || ids[i] >= m.vocab) {
            es_fail(&e, "%s: the tokenizer gave id %d, outside the model's vocabulary of %lld", vpath, ids[i],
                    (long long)m.vocab);
            goto out;
        }
    if (es_ref_load(&ref, &m, es_func_rows_read, &rows, total, ES_REF_ROPE_HALVES, &e)) goto out;
    if (logits_path) {
        if (es_logits_open(&lf, logits_path, &e)) goto out;
        have_lf = 1;
    }
    es_sampler smp = {temp, top_k, top_p};
    uint64_t rng = (uint64_t)seed;
    int64_t n = n_prompt, produced = 0;
    int stopped = 0;
    for (int64_t pos = 0; pos < n; pos++) {
        if (es_ref_forward(ref, ids[pos], pos, logits, &e)) goto out;
        if (have_lf && es_logits_row(&lf, pos, ids[pos], logits, m.vocab, &e)) goto out;
        if (pos < n - 1 || produced >= gen) continue;
        if (es_logits_finite(logits, m.vocab, pos, &e)) goto out;
        int32_t next = es_sample(&smp, logits, m.vocab, &rng, work);
        ids[n++] = next;
        produced++;
        if (next == eos && !ignore_eos) { stopped = 1; break; }
        if (produced >= gen) break;
    }
    if (have_lf) {
        have_lf = 0;
        if (es_logits_close(&lf, &e)) goto out;
    }
    out_text = es_func_text(tok, ids + n_prompt, produced);
    if (!out_text) { es_fail(&e, "out of memory"); goto out; }
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", m.name);
        cJSON_AddItemToObject(j, "prompt_ids", es_func_ids_json(ids, n_prompt));
        cJSON_AddItemToObject(j, "output_ids", es_func_ids_json(ids + n_prompt, produced));
        cJSON_AddStringToObject(j, "output_text", out_text);
        cJSON_AddBoolToObject(j, "stopped_at_eos", stopped);
        char *s = cJSON_Print(j);
        puts(s);
        cJSON_free(s);
        cJSON_Delete(j);
    } else {
        printf("prompt ids:");
        for (int64_t i = 0; i < n_prompt; i++) printf(" %d", ids[i]);
        printf("\noutput ids:");
        for (int64_t i = n_prompt; i < n_prompt + produced; i++) printf(" %d", ids[i]);
        printf("%s\noutput text: %s\n", stopped ? " (end of sequence)" : "", out_text);
    }
    rc = 0;
out:
    if (rc) fprintf(stderr, "etchsim infer: %s\n", e.msg);
    if (have_lf) es_logits_abort(&lf);
    free(out_text);
    free(ids);
    free(logits);
    free(work);
    es_ref_free(ref);
    es_tok_free(tok);
    if (have_w) es_func_rows_close(&rows);
    es_model_free(&m);
    return rc;
}
