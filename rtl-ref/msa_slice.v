// msa_slice: N product generators feeding one row (the unit the harness checks)
module msa_slice #(
    parameter FORMAT = 0,
    parameter N = 64,
    parameter CODE_BITS = 3,
    parameter ACC_BITS = 24,
    parameter REG_EVERY = 2
) (
    input  wire                       clk,
    input  wire                       rst,
    input  wire                       in_valid,
    input  wire                       in_last,
    input  wire [8*N-1:0]             acts,
    input  wire [CODE_BITS*N-1:0]     codes,
    output wire                       out_valid,
    output wire signed [ACC_BITS-1:0] out_sum
);
    localparam PW = (8 + CODE_BITS) * (1 << CODE_BITS);
    wire [PW*N-1:0] prods;
    genvar k;
    generate
        for (k = 0; k < N; k = k + 1) begin : g_gen
            msa_products #(.FORMAT(FORMAT), .CODE_BITS(CODE_BITS)) gen (.act(acts[8*k +: 8]), .prods(prods[PW*k +: PW]));
        end
    endgenerate
    msa_row #(.N(N), .CODE_BITS(CODE_BITS), .ACC_BITS(ACC_BITS), .REG_EVERY(REG_EVERY)) row (
        .clk(clk), .rst(rst), .in_valid(in_valid), .in_last(in_last), .prods(prods), .codes(codes),
        .out_valid(out_valid), .out_sum(out_sum));
endmodule
