// fp_scale_acc: a lane row's scale-and-accumulate: each sub-block's integer sum (msa_tree's
// out_sum, ACC_BITS) is converted to FP32 (exact: |sum| < 2^24), multiplied by its block scale and
// added to the row's FP32 accumulator, which starts at +0 with the row's first sub-block; after the
// last, the accumulator times the activation's scale is the row's output. Every operation rounds to
// FP32 as the datapath's C does (fp32.vh; es_dp_acc_step in sim/func/es_dp.h).
//
// Timing: one sub-block per cycle (initiation interval 1); the convert and multiply are one stage,
// the add and the output multiply a second, so a row's output is on y 2 cycles after its last
// sub-block is presented (counting the edge that takes it in). The rounding logic is written for
// exactness, not speed: a silicon version would pipeline each stage further.
module fp_scale_acc #(
    parameter ACC_BITS = 24
) (
    input  wire                       clk,
    input  wire                       rst,
    input  wire                       in_valid,
    input  wire                       in_first,   // the row's first sub-block: the accumulator restarts
    input  wire                       in_last,    // its last: y follows
    input  wire signed [ACC_BITS-1:0] in_sum,
    input  wire [31:0]                in_scale,   // the sub-block's scale, FP32 bits
    input  wire [31:0]                in_act_scale, // the activation's scale, FP32 bits (read with in_last)
    output reg                        out_valid,
    output reg  [31:0]                y
);
    `include "fp32.vh"
    // stage 1: the sum as FP32, times the scale
    wire [ACC_BITS-1:0] neg = -in_sum;
    wire [63:0] abs_sum = {{(64 - ACC_BITS){1'b0}}, in_sum[ACC_BITS-1] ? neg : in_sum};
    reg v1, first1, last1;
    reg [31:0] part, act1;
    always @(posedge clk) begin
        if (rst) begin
            v1 <= 1'b0;
            first1 <= 1'b0;
            last1 <= 1'b0;
        end else begin
            v1 <= in_valid;
            first1 <= in_first;
            last1 <= in_last;
        end
        part <= fp_mul(in_scale, fp_round(in_sum[ACC_BITS-1], abs_sum, 0));
        act1 <= in_act_scale;
    end
    // stage 2: accumulate; after the row's last sub-block, the output
    reg [31:0] acc;
    wire [31:0] next = fp_add(first1 ? 32'b0 : acc, part);
    always @(posedge clk) begin
        if (rst) begin
            acc <= 32'b0;
            out_valid <= 1'b0;
            y <= 32'b0;
        end else begin
            out_valid <= v1 & last1;
            if (v1) begin
                acc <= next;
                if (last1) y <= fp_mul(next, act1);
            end
        end
    end
endmodule
