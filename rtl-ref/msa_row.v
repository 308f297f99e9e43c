// msa_row: N lane cells of one output row, as tile.lanes lays them out. The products of each
// activation with every code are formed once (msa_products) and run along the product lines shared
// by every row that multiplies that activation; each cell's stored code selects one (msa_select: in
// the chip the ROM array does this, each ROM cell connecting one product line to its output, with no
// register), and msa_tree sums the selections and accumulates a sub-block's rows in ACC_BITS,
// saturating at +-(2^(ACC_BITS-1) - 1) after every addition. With the chip's widths (24-bit
// accumulator, 64-weight groups) no partial sum can reach the limit, so the result equals the
// datapath's element-order saturating sum (es_dp_sat_sum) exactly; with narrower accumulators a
// tree saturates per row, not per element. msa_slice wires N product generators to one row, for the
// harness.
//
// Timing: N elements per cycle (initiation interval 1); ceil(log2(N) / REG_EVERY) + 1 cycles from a
// sub-block's last elements to its sum (the tree's register stages, the first of which also takes
// the select, then the accumulate), counting the edge that takes them in.
module msa_row #(
    parameter N = 64,            // lane cells in the row (a power of two)
    parameter CODE_BITS = 3,
    parameter ACC_BITS = 24,
    parameter REG_EVERY = 2      // adder levels between the tree's pipeline registers
) (
    input  wire                       clk,
    input  wire                       rst,
    input  wire                       in_valid,
    input  wire                       in_last,     // these N elements end the sub-block
    input  wire [(8+CODE_BITS)*(1<<CODE_BITS)*N-1:0] prods, // each cell's product lines (msa_products)
    input  wire [CODE_BITS*N-1:0]     codes,       // N stored codes, two's complement
    output wire                       out_valid,
    output wire signed [ACC_BITS-1:0] out_sum
);
    localparam PBITS = 8 + CODE_BITS;
    wire [PBITS*N-1:0] sel;
    msa_select #(.N(N), .CODE_BITS(CODE_BITS)) select (.prods(prods), .codes(codes), .sel(sel));
    msa_tree #(.N(N), .PBITS(PBITS), .ACC_BITS(ACC_BITS), .REG_EVERY(REG_EVERY)) tree (
        .clk(clk), .rst(rst), .in_valid(in_valid), .in_last(in_last), .sel(sel), .out_valid(out_valid), .out_sum(out_sum));
endmodule
