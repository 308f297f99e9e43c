// msa_select: each of N lane cells selects the product line its stored code names. In the chip this
// is the multiply-select ROM array itself: a cell's via connects one product line of its column to
// its output when its row's word line is driven, so its area is the ROM's, not the lanes'
// (scripts/synth-rtl does not count it). It has no register: the selected products run straight
// into the adder tree's first levels, and the ROM read's second cycle (word line, select, the tree's
// first REG_EVERY levels) ends at the tree's first register (tile.rom.read_latency_cycles counts it).
// A register here would cost 8 + CODE_BITS flip-flops per lane cell, more than the tree's own, for
// no clock gain: the word line, the select and two 12-13 bit adder levels fit a 1 ns cycle
// (rtl-ref/README.md). The harness needs the select as logic.
module msa_select #(
    parameter N = 64,
    parameter CODE_BITS = 3
) (
    input  wire [(8+CODE_BITS)*(1<<CODE_BITS)*N-1:0] prods, // each cell's product lines
    input  wire [CODE_BITS*N-1:0]                    codes, // N stored codes
    output wire [(8+CODE_BITS)*N-1:0]                sel    // the selected products
);
    localparam PBITS = 8 + CODE_BITS;
    localparam NC = 1 << CODE_BITS;
    genvar k;
    generate
        for (k = 0; k < N; k = k + 1) begin : g_sel
            wire [PBITS*NC-1:0] lines = prods[PBITS*NC*k +: PBITS*NC];
            wire [CODE_BITS-1:0] code = codes[CODE_BITS*k +: CODE_BITS];
            assign sel[PBITS*k +: PBITS] = lines[PBITS*code +: PBITS];
        end
    endgenerate
endmodule
