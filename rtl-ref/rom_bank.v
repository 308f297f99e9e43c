// rom_bank: one ROM bank's read port, as tile.rom (and head.embed_rom, head.lm_rom) model it: ROWS
// rows of ROW_BITS bits per access, laid out as physical rows of COL_MUX words side by side (a column
// multiplexer picks one). A read takes two register stages, tile.rom.read_latency_cycles:
//   1. the word line: the row address is decoded and registered (the physical row and the column);
//   2. the bit lines: the array drives the physical row, the column mux picks the access's word,
//      and it is registered. In the lanes' multiply-select array this is also the stage where each
//      cell connects its product line (msa_select.v), so the select costs no cycle of its own.
// One read per cycle (initiation interval 1). The contents come from a $readmemh file named by the
// +rom=FILE plusarg (the harness writes it from a ROM image): mask ROM has no write port, and this
// model is for simulation; the ROM's area is its cells' (process rom_cell_um2), not synthesized.
module rom_bank #(
    parameter ROWS = 64,          // rows per bank (tile.rom.rows)
    parameter ROW_BITS = 1024,    // bits per access (tile.rom.row_bits)
    parameter COL_MUX = 1         // words per physical row
) (
    input  wire                     clk,
    input  wire                     rd_valid,
    input  wire [AW-1:0]            rd_row,     // 0 .. ROWS-1
    output reg                      out_valid,
    output reg  [ROW_BITS-1:0]      out_data
);
    localparam AW = ROWS > 1 ? $clog2(ROWS) : 1;
    localparam PHYS = (ROWS + COL_MUX - 1) / COL_MUX;
    localparam PW = PHYS > 1 ? $clog2(PHYS) : 1;
    localparam CW = COL_MUX > 1 ? $clog2(COL_MUX) : 1;
    reg [ROW_BITS*COL_MUX-1:0] mem [0:PHYS-1];
    reg [8*1024-1:0] init_file;
    initial begin
        if ($value$plusargs("rom=%s", init_file)) $readmemh(init_file, mem);
    end
    // stage 1: the word line and the column
    reg          v1;
    reg [PW-1:0] wl;
    reg [CW-1:0] col;
    /* verilator lint_off WIDTH */
    always @(posedge clk) begin
        v1 <= rd_valid;
        wl <= rd_row / COL_MUX;
        col <= rd_row % COL_MUX;
    end
    /* verilator lint_on WIDTH */
    // stage 2: the bit lines, the column mux, the output register
    always @(posedge clk) begin
        out_valid <= v1;
        out_data <= mem[wl][ROW_BITS * col +: ROW_BITS];
    end
endmodule
