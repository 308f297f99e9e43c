// es_cosim: co-simulation of the lanes with the reference RTL (etchsim run --rtl-cosim). The
// Verilated lane (rtl-ref/msa_slice.v: product lines, select, pipelined adder tree, sub-block
// accumulator; 64 cells, int3 or int6 codes, 24-bit accumulator, a register every 2 adder levels)
// and its scale-and-accumulate stage (rtl-ref/fp_scale_acc.v) compute the output rows of the lane
// matmuls of one tile's layers in place of the C datapath, clock by clock, 64 elements a cycle.
// Built when CMake finds Verilator (ES_RTL_COSIM); es_cosim_available() says whether it was.
#ifndef ES_COSIM_H
#define ES_COSIM_H
#include <cstdint>
#include "es_dp.h"

namespace es {

struct Cosim;
bool es_cosim_available();
// The lane matmuls of layers [lo, hi) of model m through the RTL; the chip's lanes must be what the
// Verilated lane is (64-element sub-blocks or multiples, a 24-bit accumulator). NULL on error.
Cosim *es_cosim_open(const es_chip *c, const es_model *m, int lo, int hi, es_err *e);
void es_cosim_close(Cosim *cs);
// es_dp_set_lane_fn's function, with a Cosim as its context
int es_cosim_lane_row(void *cosim, int tensor, es_qtype type, const int8_t *codes, const int8_t *acts, int64_t cols,
                      int64_t sub, const float *scales, float act_scale, float *y, es_err *e);
// rows computed through the RTL, and the RTL clock cycles they took (lane and scale stages)
void es_cosim_counts(const Cosim *cs, int64_t *rows, int64_t *cycles);
// the Verilated lane's pipeline from ROM data to a row's output, measured as it opened: what
// tile.lanes.pipeline_depth stands for (the co-simulated tile's lanes take it instead)
int64_t es_cosim_lane_depth(const Cosim *cs);

} // namespace es
#endif
