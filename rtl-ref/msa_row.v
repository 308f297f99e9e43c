// msa_row: N lane cells of one output row, as tile.lanes lays them out. The products of each
// activation with every code are formed once (msa_products) and run along the product lines shared
// by every row that multiplies that activation; a cell only selects the product its stored code
// names. A pipelined adder tree sums the N selections (a register after every level), and an
// accumulator of ACC_BITS adds the row sums of a sub-block, saturating at +-(2^(ACC_BITS-1) - 1)
// after every addition. With the chip's widths (24-bit accumulator, 64-weight groups) no partial sum
// can reach the limit, so the result equals the datapath's element-order saturating sum
// (es_dp_sat_sum) exactly; with narrower accumulators a tree saturates per row, not per element.
// msa_slice wires N product generators to one row, for the harness; for area, msa_row is the
// lane cells and msa_products is shared by all the rows of a column.
//
// Timing: N elements per cycle (initiation interval 1); 2 + log2(N) cycles from a sub-block's last
// elements to its sum (select, log2(N) tree levels, accumulate), counting the edge that takes them in.
module msa_row #(
    parameter N = 64,            // lane cells in the row (a power of two)
    parameter CODE_BITS = 3,
    parameter ACC_BITS = 24
) (
    input  wire                       clk,
    input  wire                       rst,
    input  wire                       in_valid,
    input  wire                       in_last,     // these N elements end the sub-block
    input  wire [(8+CODE_BITS)*(1<<CODE_BITS)*N-1:0] prods, // each cell's product lines (msa_products)
    input  wire [CODE_BITS*N-1:0]     codes,       // N stored codes, two's complement
    output reg                        out_valid,
    output reg  signed [ACC_BITS-1:0] out_sum
);
    localparam LEVELS = $clog2(N);
    localparam PBITS = 8 + CODE_BITS;
    localparam TBITS = PBITS + LEVELS;               // a tree sum of N products
    localparam SW = (ACC_BITS > TBITS ? ACC_BITS : TBITS) + 1;
    localparam signed [SW-1:0] MAXV = (1 <<< (ACC_BITS - 1)) - 1;

    localparam NC = 1 << CODE_BITS;
    // stage 0: each cell selects the product line its code picks
    reg signed [TBITS-1:0] lvl [0:LEVELS][0:N-1];
    reg [LEVELS+1:0] v, last;
    genvar gk;
    generate
        for (gk = 0; gk < N; gk = gk + 1) begin : g_sel
            wire [PBITS-1:0] line [0:NC-1];   // this cell's product lines
            genvar c;
            for (c = 0; c < NC; c = c + 1) begin : g_line
                assign line[c] = prods[PBITS * (NC * gk + c) +: PBITS];
            end
            wire [PBITS-1:0] pick = line[codes[CODE_BITS*gk +: CODE_BITS]]; // an NC:1 select
            always @(posedge clk) lvl[0][gk] <= {{(TBITS - PBITS){pick[PBITS-1]}}, pick};
        end
    endgenerate
    // the adder tree, one registered level per cycle
    genvar l, j;
    generate
        for (l = 1; l <= LEVELS; l = l + 1) begin : g_lvl
            for (j = 0; j < (N >> l); j = j + 1) begin : g_add
                always @(posedge clk) lvl[l][j] <= lvl[l-1][2*j] + lvl[l-1][2*j+1];
            end
        end
    endgenerate
    always @(posedge clk) begin
        if (rst) begin
            v <= 0;
            last <= 0;
        end else begin
            v <= {v[LEVELS:0], in_valid};
            last <= {last[LEVELS:0], in_valid & in_last};
        end
    end
    // the accumulator over the row sums of a sub-block
    reg signed [ACC_BITS-1:0] acc;
    wire signed [TBITS-1:0] row_sum = lvl[LEVELS][0];
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
            out_valid <= v[LEVELS] & last[LEVELS];
            if (v[LEVELS]) begin
                if (last[LEVELS]) begin
                    out_sum <= clamped[ACC_BITS-1:0];
                    acc <= 0;
                end else acc <= clamped[ACC_BITS-1:0];
            end
        end
    end
endmodule
