// act_quant: the lanes' INT8 activation quantizer (tile.lanes.activation_format int8). A vector
// streams in twice, one element per cycle: the first pass finds its largest magnitude, and after
// its last element the scale is that / 127 (FP32); the second pass turns each element x into
// round-half-away(x / scale) clamped to +-127 (the rounding as the datapath's C does it:
// floor(|v| + 0.5) in FP32), 0 for every element when the scale is 0. Bit for bit the datapath's
// es_dp_quant_int8 (sim/func/es_dp.h).
//
// Timing: one element per cycle in either pass (initiation interval 1); the scale is ready 1 cycle
// after the first pass's last element; each code 1 cycle after its element. The divisions are
// behavioural (a quotient and a remainder): a reference for the arithmetic, not a divider design.
module act_quant (
    input  wire        clk,
    input  wire        rst,
    input  wire        in_valid,   // the first pass: an element
    input  wire        in_last,    // its last element
    /* verilator lint_off UNUSEDSIGNAL */ // the first pass reads magnitudes: not the sign
    input  wire [31:0] in_x,
    /* verilator lint_on UNUSEDSIGNAL */
    output reg         scale_valid,
    output reg  [31:0] scale,      // FP32 bits
    input  wire        q_valid_in, // the second pass: an element
    input  wire [31:0] q_x,
    output reg         q_valid,
    output reg  [7:0]  q           // two's complement
);
    `include "fp32.vh"
    localparam [31:0] F127 = 32'h42FE_0000, HALF = 32'h3F00_0000;
    reg [31:0] am;                 // the largest magnitude so far (a non-negative binary32)
    wire [31:0] mag = {1'b0, in_x[30:0]};
    wire [31:0] am_next = mag > am ? mag : am;   // magnitudes order as their bits
    always @(posedge clk) begin
        if (rst) begin
            am <= 32'b0;
            scale_valid <= 1'b0;
            scale <= 32'b0;
        end else begin
            scale_valid <= in_valid & in_last;
            if (in_valid) begin
                if (in_last) begin
                    scale <= fp_div(am_next, F127);
                    am <= 32'b0;
                end else am <= am_next;
            end
        end
    end
    // the second pass
    wire [31:0] v = scale[30:0] != 0 ? fp_div(q_x, scale) : 32'b0;
    wire [7:0] r = fp_is_nan(v) ? 8'd0 : fp_is_inf(v) ? 8'd255 : fp_floor_u8(fp_add({1'b0, v[30:0]}, HALF));
    wire [7:0] rc = r > 8'd127 ? 8'd127 : r;
    always @(posedge clk) begin
        if (rst) q_valid <= 1'b0;
        else q_valid <= q_valid_in;
        q <= v[31] ? -rc : rc;
    end
endmodule
