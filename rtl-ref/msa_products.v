// msa_products: the product lines of one activation: act x c for every CODE_BITS-bit code c (two's
// complement, or twice an E2M1 value), formed once and shared by every lane cell that multiplies this activation
// (msa_row.v says how a row uses them).
module msa_products #(
    parameter FORMAT = 0,        // 0: two's-complement codes; 1: E2M1 nibbles, CODE_BITS 4
    parameter CODE_BITS = 3
) (
    input  wire signed [7:0]                       act,
    output wire [(8 + CODE_BITS) * (1 << CODE_BITS) - 1:0] prods  // act x c, c = code bits as two's complement
);
    `include "msa_code.vh"
    localparam PBITS = 8 + CODE_BITS;
    genvar i;
    generate
        for (i = 0; i < (1 << CODE_BITS); i = i + 1) begin : g_p
            localparam integer M = msa_code_mult(FORMAT, CODE_BITS, i);
            localparam signed [PBITS-1:0] C = M[PBITS-1:0];
            wire signed [PBITS-1:0] a = {{(PBITS - 8){act[7]}}, act};
            wire signed [PBITS-1:0] p = a * C;
            assign prods[PBITS*i +: PBITS] = p;
        end
    endgenerate
endmodule
