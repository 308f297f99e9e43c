// msa_select: each of N lane cells selects the product line its stored code names, registered. In
// the chip this is the multiply-select ROM array itself (a cell's via connects one product line of
// its column to its output; tile.rom.read_latency_cycles counts the stage), so its area is the
// ROM's, not the lanes': scripts/synth-rtl does not count it. The harness needs it as logic.
module msa_select #(
    parameter N = 64,
    parameter CODE_BITS = 3
) (
    input  wire                                      clk,
    input  wire [(8+CODE_BITS)*(1<<CODE_BITS)*N-1:0] prods, // each cell's product lines
    input  wire [CODE_BITS*N-1:0]                    codes, // N stored codes
    output reg  [(8+CODE_BITS)*N-1:0]                sel    // the selected products
);
    localparam PBITS = 8 + CODE_BITS;
    localparam NC = 1 << CODE_BITS;
    genvar k;
    generate
        for (k = 0; k < N; k = k + 1) begin : g_sel
            wire [PBITS*NC-1:0] lines = prods[PBITS*NC*k +: PBITS*NC];
            wire [CODE_BITS-1:0] code = codes[CODE_BITS*k +: CODE_BITS];
            always @(posedge clk) sel[PBITS*k +: PBITS] <= lines[PBITS*code +: PBITS];
        end
    endgenerate
endmodule
