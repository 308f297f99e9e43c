/* test_tables: per-op cycle tables derived by hand from the chip files, the
 * oracle below the analytical model (which the simulation is checked
 * against). Every expected number here is written out from the
 * configuration's values with its arithmetic beside it; none is computed by
 * the code under test.
 *   1.x  hc1-class running Llama-3.1-8B (models/chips/hc1-class.md, section 3):
 *        one layer's ops at decode with 1536 positions of context, the head,
 *        the embedding, the links, the decode step, a 16-token prefill chunk
 *   2.x  the tiny test chip running tiny-llama: the same, at 100 positions
 * Run as `test_tables MODELS_DIR TESTDATA_DIR`. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "es_analytic.h"
#include "es_chip.h"
#include "es_model.h"

static int fails = 0, passes = 0;
#define EQ(got, want, ...) do { long long g_ = (long long)(got), w_ = (long long)(want); \
    if (g_ == w_) passes++; else { fails++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, ": got %lld, want %lld\n", g_, w_); } } while (0)

/* The op named `name` of layer `layer` (-1: outside the blocks). */
static const es_op *op(const es_model *m, int layer, const char *name)
{
    for (int i = 0; i < m->n_ops; i++)
        if (m->ops[i].layer == layer && !strcmp(m->ops[i].name, name)) return &m->ops[i];
    fprintf(stderr, "no op %s in layer %d\n", name, layer);
    exit(1);
}

/* The chip, the model and the placement table of the one on the other. */
static void load(const char *chip, const char *model, es_chip *c, es_model *m, es_map *pm)
{
    es_err e;
    if (es_model_load(m, model, &e) || es_chip_load(c, chip, NULL, 0, &e) || es_map_build(pm, c, m, NULL, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: test_tables MODELS_DIR TESTDATA_DIR\n"); return 2; }
    setenv("ETCHSIM_MODELS", argv[1], 1);
    char tiny[1024];
    snprintf(tiny, sizeof tiny, "%s/tiny-chip.json", argv[2]);
    es_chip c;
    es_model m;
    es_map pm;

    /* 1.x hc1-class, Llama-3.1-8B. Tile: 176,128 lane cells of 3 bits; ROM port 576 banks x 1024 bits =
     * 589,824 bits per cycle, 2 cycles of ROM latency (its second ends at the adder tree's first register), 5 of lane pipeline
     * (rtl-ref: the tree's other 2 stages, accumulate 1, scale and FP32 accumulate 2). Weights 3 bits with an FP16
     * scale per 64 (3.25 bits/weight); attn_v and LM head 6 bits (6.25 bits/weight, 2 cells per weight). */
    load("hc1-class", "llama-3.1-8b", &c, &m, &pm);
    const int64_t P = 1535; /* the decode token at position 1535 attends to 1536 positions */
    /* q: 4096 x 4096 = 16,777,216 cells / 176,128 = 95.3 -> 96; bits 54,525,952 / 589,824 = 92.4 -> 93;
     * max 96 + 2 + 5 */
    EQ(es_an_op(&pm, op(&m, 0, "attn_q"), 1, P), 103, "hc1 q");
    /* k: 1024 x 4096 = 4,194,304 cells / 176,128 = 23.8 -> 24; bits 13,631,488 -> 23.1 -> 24; 24 + 7 */
    EQ(es_an_op(&pm, op(&m, 0, "attn_k"), 1, P), 31, "hc1 k");
    /* v (6-bit): 8,388,608 cells -> 47.6 -> 48; bits 4,194,304 x 6.25 = 26,214,400 -> 44.4 -> 45; 48 + 7 */
    EQ(es_an_op(&pm, op(&m, 0, "attn_v"), 1, P), 55, "hc1 v");
    EQ(es_an_op(&pm, op(&m, 0, "attn_o"), 1, P), 103, "hc1 o");
    /* gate, up, down: 58,720,256 cells / 176,128 = 333.4 -> 334; bits 190,840,832 -> 323.6 -> 324; 334 + 7 */
    EQ(es_an_op(&pm, op(&m, 0, "ffn_gate"), 1, P), 341, "hc1 gate");
    EQ(es_an_op(&pm, op(&m, 0, "ffn_up"), 1, P), 341, "hc1 up");
    EQ(es_an_op(&pm, op(&m, 0, "ffn_down"), 1, P), 341, "hc1 down");
    /* attention: K and V of one position = 2 x 8 heads x 128 x 8 bits = 16,384 bits; the KV port streams
     * 128 banks x 1024 bits = 131,072 bits per cycle. Write 1 position: 1 cycle. Read 1536 positions:
     * 1536 x 16,384 / 131,072 = 192 cycles; scoring 1536 / 8 per cycle = 192; + 24 latency */
    EQ(es_an_op(&pm, op(&m, 0, "attention"), 1, P), 1 + 192 + 24, "hc1 attention");
    /* vector unit, 512 elements per cycle, 8 cycles latency: RMSNorm 2 passes x 4096 / 512 = 16 + 8;
     * RoPE (4096 + 1024) / 512 = 10 + 8; residual add 8 + 8; SiLU x up 14,336 / 512 = 28 + 8 */
    EQ(es_an_op(&pm, op(&m, 0, "attn_norm"), 1, P), 24, "hc1 attn_norm");
    EQ(es_an_op(&pm, op(&m, 0, "ffn_norm"), 1, P), 24, "hc1 ffn_norm");
    EQ(es_an_op(&pm, op(&m, 0, "rope"), 1, P), 18, "hc1 rope");
    EQ(es_an_op(&pm, op(&m, 0, "attn_residual"), 1, P), 16, "hc1 attn residual");
    EQ(es_an_op(&pm, op(&m, 0, "ffn_residual"), 1, P), 16, "hc1 ffn residual");
    EQ(es_an_op(&pm, op(&m, 0, "silu_mul"), 1, P), 36, "hc1 silu_mul");
    /* the layer: 103 + 31 + 55 + 103 + 3 x 341 + 217 + 24 + 24 + 18 + 16 + 16 + 36 = 1666 (section 3) */
    EQ(es_an_layer(&pm, 0, 1, P), 1666, "hc1 layer");
    /* head: final norm 24; LM head 128,256 x 4096 x 2 cells = 1,050,673,152 / 704,512 = 1491.3 -> 1492, bits
     * 525,336,576 x 6.25 = 3,283,353,600 / (2176 x 1024) = 1473.5 -> 1474, 1492 + 2 + 5 = 1499; sampler
     * 128,256 / 512 = 250.5 -> 251 + 16 = 267 */
    EQ(es_an_op(&pm, op(&m, -1, "out_norm"), 1, P), 24, "hc1 out_norm");
    EQ(es_an_op(&pm, op(&m, -1, "lm_head"), 1, P), 1499, "hc1 lm_head");
    EQ(es_an_op(&pm, op(&m, -1, "sampler"), 1, P), 267, "hc1 sampler");
    EQ(es_an_head(&pm), 1790, "hc1 head");
    /* embedding: one row of 4096 x 3.25 = 13,312 bits from 64 banks x 1024 bits: 1 cycle + 2 latency */
    EQ(es_an_op(&pm, op(&m, -1, "embed"), 1, P), 3, "hc1 embed");
    /* links: 4096 x 16 bits over 4096 wires = 16 + 2 latency; a token id of 32 bits: 1 + 2 */
    EQ(es_an_link_occ(&c, 4096 * 16) + c.link.latency, 18, "hc1 activation hop");
    EQ(es_an_link_occ(&c, 32) + c.link.latency, 3, "hc1 token hop");
    /* the decode step: the ring embed -> link -> tile 0 -> ... -> tile 31 -> link -> head has 33
     * activation hops, plus the feedback hop and the embedding: 32 x 1666 + 1790 + 33 x 18 + 3 + 3
     * = 55,702 (hc1-class.md section 3) */
    EQ(es_an_decode_step(&pm, P), 32 * 1666 + 1790 + 33 * 18 + 3 + 3, "hc1 decode step");
    /* a 16-token prefill chunk at positions 0..15: q 16 passes x 96 + 7 = 1543; attention writes
     * 16 x 16,384 / 131,072 = 2 cycles, then token j reads j + 1 positions: ceil((j+1) / 8) cycles + 24,
     * summed over j = 0..15: 8 x 1 + 8 x 2 + 16 x 24 = 408; RMSNorm 2 x 16 x 4096 / 512 = 256 + 8 */
    EQ(es_an_op(&pm, op(&m, 0, "attn_q"), 16, 0), 1543, "hc1 prefill q");
    EQ(es_an_op(&pm, op(&m, 0, "attention"), 16, 0), 2 + 408, "hc1 prefill attention");
    EQ(es_an_op(&pm, op(&m, 0, "attn_norm"), 16, 0), 264, "hc1 prefill attn_norm");
    es_map_free(&pm);
    es_chip_free(&c);
    es_model_free(&m);

    /* 2.x the tiny chip, tiny-llama (hidden 256, 8 heads / 2 KV heads of 32, FFN 768, vocab 1024, 4 layers).
     * Tile: 8192 lane cells; ROM port 64 banks x 1024 = 65,536 bits per cycle; latency 2, pipeline 10.
     * 3-bit weights with an FP16 scale per 64 along each row; attn_v and LM head 6-bit. */
    load(tiny, "tiny-llama", &c, &m, &pm);
    const int64_t T = 99; /* 100 positions of context */
    /* q: 65,536 cells / 8192 = 8; bits 65,536 x 3 + 256 rows x 4 scales x 16 = 212,992 / 65,536 -> 4; 8 + 12 */
    EQ(es_an_op(&pm, op(&m, 1, "attn_q"), 1, T), 20, "tiny q");
    /* k: 16,384 cells -> 2; bits 49,152 + 4096 = 53,248 -> 1; 2 + 12 */
    EQ(es_an_op(&pm, op(&m, 1, "attn_k"), 1, T), 14, "tiny k");
    /* v: 6-bit, 32,768 cells -> 4; bits 98,304 + 4096 -> 2; 4 + 12 */
    EQ(es_an_op(&pm, op(&m, 1, "attn_v"), 1, T), 16, "tiny v");
    EQ(es_an_op(&pm, op(&m, 1, "attn_o"), 1, T), 20, "tiny o");
    /* gate/up: 196,608 cells -> 24; bits 589,824 + 768 x 4 x 16 = 638,976 -> 9.75 -> 10; 24 + 12.
     * down: 256 rows of 768: bits 589,824 + 256 x 12 x 16 = 638,976 -> 10; 24 + 12 */
    EQ(es_an_op(&pm, op(&m, 1, "ffn_gate"), 1, T), 36, "tiny gate");
    EQ(es_an_op(&pm, op(&m, 1, "ffn_up"), 1, T), 36, "tiny up");
    EQ(es_an_op(&pm, op(&m, 1, "ffn_down"), 1, T), 36, "tiny down");
    /* attention: one position = 2 x 2 x 32 x 8 = 1024 bits; port 16 banks x 256 bits = 4096 per cycle.
     * Write 1; read 100 x 1024 / 4096 = 25; score 100 / 4 = 25; + 8 */
    EQ(es_an_op(&pm, op(&m, 1, "attention"), 1, T), 1 + 25 + 8, "tiny attention");
    /* vector unit, 64 per cycle, 4 latency: RMSNorm 2 x 4 + 4; RoPE (256 + 64) / 64 = 5 + 4; add 4 + 4;
     * SiLU x up 768 / 64 = 12 + 4 */
    EQ(es_an_op(&pm, op(&m, 1, "attn_norm"), 1, T), 12, "tiny attn_norm");
    EQ(es_an_op(&pm, op(&m, 1, "rope"), 1, T), 9, "tiny rope");
    EQ(es_an_op(&pm, op(&m, 1, "attn_residual"), 1, T), 8, "tiny residual");
    EQ(es_an_op(&pm, op(&m, 1, "silu_mul"), 1, T), 16, "tiny silu_mul");
    /* the layer: 20 + 14 + 16 + 20 + 3 x 36 + 34 + 2 x 12 + 9 + 2 x 8 + 16 = 277 */
    EQ(es_an_layer(&pm, 1, 1, T), 277, "tiny layer");
    /* head: norm 12; LM head 1024 x 256 x 2 cells = 524,288 / 8192 = 64, bits 262,144 x 6 + 1024 x 4 x 16
     * = 1,638,400 / 65,536 = 25, 64 + 12 = 76; sampler 1024 / 64 = 16 + 10 = 26 */
    EQ(es_an_op(&pm, op(&m, -1, "lm_head"), 1, T), 76, "tiny lm_head");
    EQ(es_an_head(&pm), 12 + 76 + 26, "tiny head");
    /* embedding: a row of 256 x 3 + 4 x 16 = 832 bits from 8 banks x 1024: 1 + 2 */
    EQ(es_an_op(&pm, op(&m, -1, "embed"), 1, T), 3, "tiny embed");
    /* decode step: 4 x 277 + 114 + 5 activation hops of (256 x 16 / 1024 = 4) + 2 + token hop 1 + 2
     * + embedding 3 */
    EQ(es_an_decode_step(&pm, T), 4 * 277 + 114 + 5 * 6 + 3 + 3, "tiny decode step");
    /* an 8-token prefill chunk at 0..7: q 8 x 8 + 12 = 76; attention writes 8 x 1024 / 4096 = 2, token j
     * reads ceil((j+1) / 4) + 8: 4 x 1 + 4 x 2 + 8 x 8 = 76 */
    EQ(es_an_op(&pm, op(&m, 1, "attn_q"), 8, 0), 76, "tiny prefill q");
    EQ(es_an_op(&pm, op(&m, 1, "attention"), 8, 0), 2 + 76, "tiny prefill attention");
    es_map_free(&pm);
    es_chip_free(&c);
    es_model_free(&m);
    printf("%d passed, %d failed\n", passes, fails);
    return fails ? 1 : 0;
}
