// msa_tree: the lane logic of one output row: the adder tree over N selected products and the
// accumulator of a sub-block's row sums. Its inputs are the products the ROM array selects (one per
// lane cell: a multiply-select ROM cell connects one of the product lines of its column to its
// output, so the select is the array itself, counted with the ROM; msa_select.v models it for the
// harness). The tree adds pairs level by level, each sum one bit wider than its inputs, with a
// register after every REG_EVERY levels and after the last; the accumulator adds the row sums of a
// sub-block (several rows when a scale group is wider than N) in ACC_BITS, saturating at
// +-(2^(ACC_BITS-1) - 1) after every addition.
//
// Timing: N products per cycle (initiation interval 1); a sub-block's sum is on out_sum with
// out_valid ceil(log2(N) / REG_EVERY) + 1 cycles after its last row is presented (counting the
// edge that takes it in).
//
// This is the module scripts/synth-rtl synthesizes for the area model's lane cell
// (rtl-ref/lane-synth.json): its transistors and flip-flops over N.
module msa_tree #(
    parameter N = 64,            // lane cells in the row (a power of two)
    parameter PBITS = 11,        // product bits: 8-bit activation x CODE_BITS code
    parameter ACC_BITS = 24,     // tile.lanes.accumulator_bits
    parameter REG_EVERY = 2      // adder levels between pipeline registers
) (
    input  wire                       clk,
    input  wire                       rst,        // synchronous, active high
    input  wire                       in_valid,
    input  wire                       in_last,    // this row ends the sub-block
    input  wire [PBITS*N-1:0]         sel,        // the N selected products, two's complement
    output reg                        out_valid,
    output reg  signed [ACC_BITS-1:0] out_sum
);
    localparam LEVELS = $clog2(N);
    localparam TBITS = PBITS + LEVELS;                   // a sum of N products
    localparam STAGES = (LEVELS + REG_EVERY - 1) / REG_EVERY;
    localparam SW = (ACC_BITS > TBITS ? ACC_BITS : TBITS) + 1;
    localparam signed [SW-1:0] MAXV = (1 <<< (ACC_BITS - 1)) - 1;
    // level l: N >> l sums of PBITS + l bits each, packed (level 0: the selected products)
    genvar l, j;
    generate
        for (l = 0; l <= LEVELS; l = l + 1) begin : g_lvl
            wire [(PBITS + l) * (N >> l) - 1:0] vals;
            if (l == 0) begin : g_in
                assign vals = sel;
            end else begin : g_sum
                for (j = 0; j < (N >> l); j = j + 1) begin : g_add
                    localparam W = PBITS + l;   // one bit wider than its inputs: no overflow
                    wire [W-2:0] a_in = g_lvl[l-1].vals[(W-1)*(2*j) +: W-1];
                    wire [W-2:0] b_in = g_lvl[l-1].vals[(W-1)*(2*j+1) +: W-1];
                    wire signed [W-1:0] a = {a_in[W-2], a_in}, b = {b_in[W-2], b_in};
                    if (l % REG_EVERY == 0 || l == LEVELS) begin : g_reg
                        reg signed [W-1:0] q;
                        always @(posedge clk) q <= a + b;
                        assign vals[W*j +: W] = q;
                    end else begin : g_comb
                        assign vals[W*j +: W] = a + b;
                    end
                end
            end
        end
    endgenerate
    reg [STAGES:0] v, last;   // valid and last, one bit per register stage of the tree
    always @(posedge clk) begin
        if (rst) begin
            v <= 0;
            last <= 0;
        end else begin
            v <= {v[STAGES-1:0], in_valid};
            last <= {last[STAGES-1:0], in_valid & in_last};
        end
    end
    // the accumulator over the row sums of a sub-block
    reg signed [ACC_BITS-1:0] acc;
    wire signed [TBITS-1:0] row_sum = g_lvl[LEVELS].vals;
    wire signed [SW-1:0] sum = {{(SW - ACC_BITS){acc[ACC_BITS-1]}}, acc} + {{(SW - TBITS){row_sum[TBITS-1]}}, row_sum};
    /* verilator lint_off UNUSEDSIGNAL */
    wire signed [SW-1:0] clamped = sum > MAXV ? MAXV : sum < -MAXV ? -MAXV : sum;
    /* verilator lint_on UNUSEDSIGNAL */
    always @(posedge clk) begin
        if (rst) begin
            acc <= 0;
            out_valid <= 1'b0;
            out_sum <= 0;
        end else begin
            out_valid <= v[STAGES-1] & last[STAGES-1];
            if (v[STAGES-1]) begin
                if (last[STAGES-1]) begin
                    out_sum <= clamped[ACC_BITS-1:0];
                    acc <= 0;
                end else acc <= clamped[ACC_BITS-1:0];
            end
        end
    end
endmodule
