/* es_dp: the chip's functional datapath: what each unit computes on real
 * activations, with the semantics the chip configuration declares. The
 * SystemC units call it as work items pass (sim/units); it never changes
 * their timing. It shares no arithmetic with the FP32 reference (es_ref),
 * which is the oracle it is checked against.
 *
 * It walks the model's op graph (es_model.h), the one timing walks: one unit
 * per op kind, each op run on the activation buffers the graph names for it
 * (es_buf). es_dp_open refuses a graph with an op it has no unit for or whose
 * data flow it cannot run, naming the op.
 *
 * Declared semantics, unit by unit:
 *
 * Weights. Each tensor is stored as its format's bytes (a ROM image, or the
 *   same bytes quantized in memory by a recipe), rows zero-padded to whole
 *   blocks, and read in the lane view of the format reference
 *   (es_decode_codes): integer code x sub-block scale - sub-block min.
 *   Float formats (f32, f16, bf16, fp8) are decoded to their FP32 values.
 *
 * Packed layout (in memory). A quantized tensor stays in its ROM format: rows
 *   of es_q_row_bytes(padded) bytes, blocks exactly as es_quant.h lays them out
 *   (codes at their real width, fp16/E8M0/E4M3 scales and 6-bit K-quant scales
 *   and mins per block), no copy: a ROM image's tensors point into their unit's
 *   stream of bank rows (read from the file), a recipe's into the buffer it was quantized into. The lanes
 *   unpack one block at a time (es_dp_unpack_block, one unpacker per format) to
 *   the codes, scales and mins es_decode_codes gives, computing each scale with
 *   the same FP32 operations; load only checks that every scale is finite
 *   (es_decode_codes' own error for a NaN E8M0/E4M3 scale). Nothing below
 *   changed: each weight row is read once per chunk of tokens and each token's
 *   row sum takes the same operations in the same order as before (sub-blocks
 *   in element order; the activations' per-sub-block sum for the mins is formed
 *   once per token instead of once per row, the same integer or the same FP32
 *   sum in element order), so the logits are unchanged bit for bit (test_dp 8.x
 *   holds them against hashes recorded before the change and against the lanes
 *   decoding through es_decode_codes, es_dp_set_reference_decode).
 *   Vector kernels (x86-64 with AVX2, checked at run time): int3 and int6 weights
 *   with int8 activations sum each group's code x activation in SIMD integer
 *   lanes, as sum(u x a) - offset x sum(a) with u the stored unsigned code: an
 *   integer sum is exact in any order, and they run only where the sub-block
 *   cannot saturate the accumulator (es_dp.c vec_ok), so its value is the one
 *   defined above; every FP32 operation (scale x sum, the row accumulation, the
 *   float-activation sums) stays scalar in element order, since reordering
 *   FP32 additions would change bits. On a host with AVX-512 (F, BW, VBMI,
 *   VNNI) int3 and int6 with groups of 64 or 128 take a wider kernel: 16 rows
 *   at a time, codes unpacked from the same ROM bytes (no repacking), integer
 *   group sums exact as above, and each row's FP32 scale x sum and running
 *   add done in one SIMD lane per row: still one FP32 multiply and one FP32
 *   add per group, rounded alike, in group order (lanes are rows, never
 *   groups), so es_dp_acc_step's result bit for bit. es_dp_set_kernels picks
 *   the widest level used; test_dp 8.4 holds every level to the reference
 *   decoder. Threads: each product's rows are split
 *   in whole contiguous shares between the datapath's threads; a row's result
 *   does not depend on which thread computes it.
 *
 * Lanes (every matrix-vector product: Q, K, V, O, gate, up, down, LM head).
 *   The input vector x is first quantized to tile.lanes.activation_format:
 *     int8  s = max|x| / 127, a = round-half-away(x / s) clamped to +-127
 *     fp8   s = max|x| / 448, a = E4M3(x / s), round to nearest even, saturating
 *     bf16  s = 1, a = BF16(x), round to nearest even
 *     fp32  s = 1, a = x
 *   (all-zero x: s = 0 and y = 0). For each row and each sub-block of the
 *   weight format, with int8 activations the products code x a are summed
 *   in a two's-complement accumulator of tile.lanes.accumulator_bits bits
 *   that SATURATES at +-(2^(bits-1) - 1) after every addition (saturations
 *   are counted); with fp8, bf16 and fp32 activations the products and the
 *   sub-block sum are FP32. The sub-block sum is converted to FP32 and the
 *   row accumulates, in FP32 and in element order,
 *     scale x sum - min x sum(a)      (min: q4_k and q5_k only),
 *   and the row's result is that times s. Float weight formats: the row
 *   sums w x a in FP32, in element order, then times s.
 *
 * Vector unit, all IEEE FP32 (glibc expf and sqrtf), no approximations:
 *   RMSNorm  ss = sum x^2 in element order; r = 1 / sqrtf(ss / n + eps); y = (x r) w
 *   RoPE     cos and sin from a table computed in double and rounded to FP32
 *            (one entry per position and frequency, llama3 scaling applied);
 *            pairs (i, i + head_dim/2), the graph's row order
 *   SiLU     g / (1 + expf(-g)), times up
 *   residual FP32 adds
 *
 * Attention engine: K and V are stored in kv.element_format:
 *     int8  per position and KV head: s = max|v| / 127, codes round-half-away(v / s)
 *     fp8   per position and KV head: s = max|v| / 448, E4M3(v / s)
 *     bf16, fp32  the values, rounded to nearest even
 *   scores q.k summed in FP32 in element order, times 1 / sqrtf(head_dim);
 *   softmax in FP32: m = max, e = expf(score - m), sum in position order;
 *   output = (sum of e x v in position order) / sum. Grouped-query heads
 *   share their KV head. A sequence that starts after a shared prefix reads
 *   the prefix's positions from the prefix sequence's cache.
 *
 * Links: the residual stream is rounded to link.elem_bits on every hop out
 *   of the embedding and out of each tile (16: BF16, round to nearest even;
 *   32: FP32 as is).
 *
 * Head: final RMSNorm, the LM head on the lanes, then the sampler (es_sample:
 *   greedy, or seeded temperature / top-k / top-p with one random stream per
 *   sequence seeded from the run's seed and the request's id). */
#ifndef ES_DP_H
#define ES_DP_H
#include <stdint.h>
#include "es_chip.h"
#include "es_err.h"
#include "es_model.h"
#include "es_recipe.h"
#include "es_ref.h"
#include "es_rom.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct es_dp es_dp;

typedef struct es_dp_stats {
    int64_t lane_rows;        /* row x token products computed */
    int64_t saturations;      /* int8 accumulator additions that saturated */
    int64_t weight_bytes;     /* bytes of weights the lane products read from host memory: each product reads its
                               * tensor once for all its tokens (packed bytes; float formats their FP32 values) */
} es_dp_stats;

/* A datapath for chip c running model m on threads host threads (threads <= 0: one per core, at most 64), started
 * here and kept until es_dp_close: each matrix product's rows are split between them. The
 * chip must have link.elem_bits 16 or 32. Weights come next. */
int es_dp_open(es_dp **dp, const es_chip *c, const es_model *m, int threads, es_err *e);
void es_dp_close(es_dp *dp);
/* A LoRA adapter: A (rank x cols) and B (rows x rank) row-major per graph tensor (NULL where not adapted), arrays
 * indexed by the model's tensors, outliving dp; out = W x + scale x B (A x). NULL a and b: an adapter that is only
 * timed (it changes no value). */
typedef struct es_dp_lora {
    const float *const *a, *const *b;
    int rank;
    double scale;
} es_dp_lora;
/* The adapters the chip holds, ids 0 .. n - 1 (copied; their matrices are not). A sequence uses the one
 * es_dp_seq_lora names: each matrix product of graph tensor i its adapter adapts adds scale x B (A x) to its output, on
 * the vector unit in FP32 (x the product's FP32 input, before the lanes quantize it). */
int es_dp_set_loras(es_dp *dp, const es_dp_lora *l, int n, es_err *e);
/* Weights from a ROM image built for this model (tensors in model order). */
int es_dp_load_rom(es_dp *dp, const es_rom_image *img, es_err *e);
/* Weights quantized in memory by a recipe from rows (a weights file, synthetic). */
int es_dp_load_rows(es_dp *dp, const es_recipe *r, es_ref_rows rows, void *arg, es_err *e);
/* Sampling for every sequence. */
void es_dp_set_sampler(es_dp *dp, const es_sampler *s, uint64_t seed);
/* Co-simulation (etchsim run --rtl-cosim): fn computes one output row of a lane matmul in place
 * of the C code: the tensor's index and format, the row's codes (cols of them, two's complement;
 * NULL for a float format or one with sub-block mins), one token's int8 activations (NULL when the
 * activations are not int8), the row's sub-block scales (cols / sub of them) and the token's
 * activation scale; *y gets the row's output (the accumulator times the activation scale). It
 * returns 1 when it computed the row, 0 to leave it to the C code, -1 on error (e filled). While
 * set, lane matmuls run on one thread. NULL restores the C code. */
typedef int (*es_dp_lane_fn)(void *ctx, int tensor, es_qtype type, const int8_t *codes, const int8_t *acts,
                             int64_t cols, int64_t sub, const float *scales, float act_scale, float *y, es_err *e);
void es_dp_set_lane_fn(es_dp *dp, es_dp_lane_fn fn, void *ctx);
/* on: the lanes decode each weight block through the format's scalar reference (es_decode_codes, weights/)
 * instead of the packed kernels (tests compare the two bit for bit); 0: the packed kernels. */
void es_dp_set_reference_decode(es_dp *dp, int on);
/* The vector kernels the lanes may use, at most: ES_DP_KERNELS_PLAIN (the plain C path), _AVX2 (the int3/int6 AVX2
 * kernel), _AVX512 (the int3/int6 AVX-512 kernel; the default). Levels the host lacks are lowered to what it runs;
 * returns the level set. Results do not depend on it (tests compare every level with the reference decoder). */
enum { ES_DP_KERNELS_PLAIN = 0, ES_DP_KERNELS_AVX2 = 1, ES_DP_KERNELS_AVX512 = 2 };
int es_dp_set_kernels(es_dp *dp, int level);
/* Products of at least elems (rows x cols x tokens; default 262,144) have their rows split between the threads,
 * smaller ones run on the caller. Results do not depend on it (each row is computed whole by one thread); tests
 * set 0 to split every product. */
void es_dp_set_split_min(es_dp *dp, double elems);

/* A sequence's KV: positions [start, start + positions) in each layer; start > 0
 * reads positions below start from sequence prefix_seq. tag seeds its sampler. */
int es_dp_seq_begin(es_dp *dp, int32_t seq, int64_t start, int64_t positions, int32_t prefix_seq,
                    uint64_t tag, es_err *e);
void es_dp_seq_end(es_dp *dp, int32_t seq);
/* The adapter sequence seq uses (after es_dp_seq_begin, which sets none): an id of es_dp_set_loras, or -1 for none. */
int es_dp_seq_lora(es_dp *dp, int32_t seq, int k, es_err *e);

/* x (n, hidden) = embedding rows of ids (the graph's EMBED op), rounded for the link. */
int es_dp_embed(es_dp *dp, const int32_t *ids, int64_t n, float *x, es_err *e);
/* The ops of layers [lo, hi), in graph order, on the n tokens at positions pos.. of seq, in
 * place on x (n, hidden: the residual, ES_BUF_X); the result is rounded for the link. */
int es_dp_layers(es_dp *dp, int lo, int hi, int32_t seq, int64_t pos, int64_t n, float *x, es_err *e);
/* logits (vocab) of one token's residual x (hidden): the head's ops after the blocks, up to the sampler. */
int es_dp_head(es_dp *dp, const float *x, float *logits, es_err *e);
/* The next token of seq from logits (the graph's SAMPLE op). */
int32_t es_dp_sample(es_dp *dp, int32_t seq, const float *logits);
es_dp_stats es_dp_get_stats(const es_dp *dp);
/* A lane's integer sub-block sum with int8 activations: sum of codes[i] x a[i] for i < n, in
 * element order, in an accumulator that saturates at +-acc_max after every addition; *sats (if not
 * NULL) gains the additions that saturated. The semantics above; rtl-ref/msa_lane.v is checked
 * against it bit for bit. */
int64_t es_dp_sat_sum(const int8_t *codes, const int8_t *a, int64_t n, int64_t acc_max, int64_t *sats);
/* The lanes' INT8 activation quantizer: one vector x (n) to q (n) with one scale, returned: the
 * largest magnitude / 127, each element x / scale rounded half away from zero (as floor(|v| + 0.5)
 * in FP32) and clamped to +-127; all zero when the scale is 0. rtl-ref/act_quant.v is checked
 * against it bit for bit. */
float es_dp_quant_int8(const float *x, int64_t n, int8_t *q);
/* One step of a lane's scale-and-accumulate: the row's FP32 accumulator plus a sub-block's integer
 * sum times its scale, each operation rounded to FP32 (nearest, ties to even; no fused multiply-add).
 * The datapath accumulates a row's sub-blocks in order from +0 and multiplies the result by the
 * activation's scale; rtl-ref/fp_scale_acc.v is checked against this bit for bit. */
static inline float es_dp_acc_step(float acc, float scale, int64_t sum)
{
    float part = scale * (float)sum;
    return acc + part;
}
/* The packed kernels' unpacker: one block of quantized format f at blk (es_q_block_bytes of them) to its integer
 * codes (es_q_block_elems), sub-block scales and, for q4_k and q5_k, mins (min may then be NULL); the same values
 * the format's reference (es_decode_codes) gives, without its checks (a NaN scale comes out NaN). -1 for a float
 * format. */
int es_dp_unpack_block(const es_qfmt *f, const void *blk, int8_t *codes, float *scale, float *min);
/* MoE: the experts the last es_dp_layers call routed each token to, as *routes
 * (layers of the call, tokens, top_k; the largest router score first); returns
 * top_k, or 0 for a model without experts. */
int es_dp_routes(const es_dp *dp, const int32_t **routes);

#ifdef __cplusplus
}
#endif
#endif
