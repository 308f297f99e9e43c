// msa_lane: one multiply-select-add lane cell for the integer weight families (int3, int6), as
// tile.lanes runs them: every product of the activation with each possible code is formed once
// (the product lines), the weight's stored code selects one (the ROM cell), and the selection is
// added into a two's-complement accumulator of ACC_BITS bits that saturates at
// +-(2^(ACC_BITS-1) - 1) after every addition, in element order. One sub-block (a group of weights
// sharing a scale) flows through per `last`; its sum leaves with out_valid. Bit for bit the sum
// es_dp_sat_sum (sim/func/es_dp.h) computes, saturation count included.
//
// Timing: one element per cycle (initiation interval 1); two register stages (the selected
// product, then the accumulator), so a sub-block's sum is on out_sum with out_valid 2 cycles after
// its last element is presented (counting the clock edge that takes it in).
module msa_lane #(
    parameter FORMAT = 0,       // 0: two's-complement codes; 1: E2M1 nibbles (MXFP4, NVFP4), CODE_BITS 4
    parameter CODE_BITS = 3,    // 3: int3 codes -4..3; 6: int6 codes -32..31; 4 for E2M1
    parameter ACC_BITS = 24     // tile.lanes.accumulator_bits
) (
    input  wire                       clk,
    input  wire                       rst,        // synchronous, active high
    input  wire                       in_valid,   // an element this cycle
    input  wire                       in_last,    // it ends its sub-block
    input  wire signed [7:0]          act,        // the int8 activation
    input  wire [CODE_BITS-1:0]       code_bits,  // the stored code: two's complement
    output reg                        out_valid,
    output reg  signed [ACC_BITS-1:0] out_sum,
    output reg  [15:0]                out_sats    // saturating additions in that sub-block
);
    `include "msa_code.vh"
    localparam NCODES = 1 << CODE_BITS;
    localparam PBITS = 8 + CODE_BITS;             // |act x code| < 2^(7 + CODE_BITS - 1) * 2
    localparam SW = (ACC_BITS > PBITS ? ACC_BITS : PBITS) + 1; // the sum before clamping
    localparam signed [SW-1:0] MAXV = (1 <<< (ACC_BITS - 1)) - 1;

    // the product lines: act x c for every code c, formed once per activation
    wire signed [PBITS-1:0] prod [0:NCODES-1];
    genvar i;
    generate
        for (i = 0; i < NCODES; i = i + 1) begin : g_prod
            localparam integer M = msa_code_mult(FORMAT, CODE_BITS, i);
            localparam signed [PBITS-1:0] C = M[PBITS-1:0];
            wire signed [PBITS-1:0] a = {{(PBITS - 8){act[7]}}, act};
            assign prod[i] = a * C;
        end
    endgenerate

    // stage 1: the cell selects its product
    reg signed [PBITS-1:0] sel;
    reg                    sel_valid, sel_last;
    always @(posedge clk) begin
        if (rst) begin
            sel_valid <= 1'b0;
            sel_last <= 1'b0;
            sel <= 0;
        end else begin
            sel_valid <= in_valid;
            sel_last <= in_valid & in_last;
            sel <= prod[code_bits];
        end
    end

    // stage 2: saturating accumulation
    reg signed [ACC_BITS-1:0] acc;
    reg [15:0]                sats;
    wire signed [SW-1:0]      sum = {{(SW - ACC_BITS){acc[ACC_BITS-1]}}, acc} + {{(SW - PBITS){sel[PBITS-1]}}, sel};
    wire                      hi = sum > MAXV, lo = sum < -MAXV;
    /* verilator lint_off UNUSEDSIGNAL */ // after clamping the high bits are copies of the sign
    wire signed [SW-1:0]      clamped = hi ? MAXV : lo ? -MAXV : sum;
    /* verilator lint_on UNUSEDSIGNAL */
    wire signed [ACC_BITS-1:0] next = clamped[ACC_BITS-1:0];
    always @(posedge clk) begin
        if (rst) begin
            acc <= 0;
            sats <= 0;
            out_valid <= 1'b0;
            out_sum <= 0;
            out_sats <= 0;
        end else begin
            out_valid <= sel_valid & sel_last;
            if (sel_valid) begin
                if (sel_last) begin          // the sub-block ends: out, and start the next at zero
                    out_sum <= next;
                    out_sats <= sats + {15'd0, hi | lo};
                    acc <= 0;
                    sats <= 0;
                end else begin
                    acc <= next;
                    sats <= sats + {15'd0, hi | lo};
                end
            end
        end
    end
endmodule
