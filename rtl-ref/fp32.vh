// fp32.vh: IEEE 754 binary32 arithmetic as the datapath's C compiles it on x86-64 (SSE, round to
// nearest with ties to even, subnormals kept, no fused multiply-add; an invalid operation gives the
// default NaN 0xFFC00000, and a NaN operand comes back quieted, the first one first). Functions for
// fp_scale_acc.v; no module state.

/* verilator lint_off UNUSEDSIGNAL */ // the helpers read only the fields they need
// (-1)^sign x mag x 2^e rounded to binary32
function automatic [31:0] fp_round(input sign, input [63:0] mag, input integer e);
    integer msb, be, shift, i;
    reg [63:0] kept, low;
    reg guard, sticky, up;
    reg [31:0] bits;
    begin
        msb = -1;
        for (i = 0; i < 64; i = i + 1)
            if (mag[i]) msb = i;
        if (msb < 0) begin
            fp_round = {sign, 31'b0};
        end else begin
            be = msb + e + 127;                      // the biased exponent before rounding
            if (be >= 255) begin
                fp_round = {sign, 8'hFF, 23'b0};       // overflow: infinity
            end else begin
                shift = be >= 1 ? msb - 23 : -149 - e; // bits to drop: to 24 significant, or to 2^-149
                guard = 1'b0;
                sticky = 1'b0;
                if (shift <= 0) begin
                    kept = mag << (-shift);
                end else if (shift > 64) begin
                    kept = 64'b0;
                    sticky = 1'b1;
                end else begin
                    kept = shift == 64 ? 64'b0 : mag >> shift;
                    guard = mag[shift - 1];
                    low = shift == 1 ? 64'b0 : mag << (65 - shift); // the bits below the guard bit
                    sticky = |low;
                end
                // a normal number: exponent - 1 plus the significand with its hidden bit (2^23)
                // adds the exponent in; rounding up may carry into the exponent, up to infinity
                bits = be >= 1 ? ((be - 1) << 23) + kept[31:0] : kept[31:0];
                up = guard & (sticky | kept[0]);
                bits = bits + {31'b0, up};
                fp_round = {sign, bits[30:0]};
            end
        end
    end
endfunction

function automatic fp_is_nan(input [31:0] x);
    fp_is_nan = x[30:23] == 8'hFF && x[22:0] != 0;
endfunction

function automatic fp_is_inf(input [31:0] x);
    fp_is_inf = x[30:23] == 8'hFF && x[22:0] == 0;
endfunction

// a finite operand as mag x 2^e
function automatic [23:0] fp_mag(input [31:0] x);
    fp_mag = x[30:23] == 0 ? {1'b0, x[22:0]} : {1'b1, x[22:0]};
endfunction

function automatic integer fp_exp(input [31:0] x);
    integer ex;
    begin
        ex = {24'b0, x[30:23]};
        fp_exp = ex == 0 ? -149 : ex - 150;
    end
endfunction

function automatic [31:0] fp_mul(input [31:0] a, input [31:0] b);
    reg s;
    reg [47:0] ma, mb;
    begin
        ma = {24'b0, fp_mag(a)};
        mb = {24'b0, fp_mag(b)};
        s = a[31] ^ b[31];
        if (fp_is_nan(a)) fp_mul = a | 32'h0040_0000;
        else if (fp_is_nan(b)) fp_mul = b | 32'h0040_0000;
        else if (fp_is_inf(a) || fp_is_inf(b))
            fp_mul = (a[30:0] == 0 || b[30:0] == 0) ? 32'hFFC0_0000 : {s, 8'hFF, 23'b0};
        else
            fp_mul = fp_round(s, {16'b0, ma * mb}, fp_exp(a) + fp_exp(b)); // 48 bits: exact
    end
endfunction

function automatic [31:0] fp_add(input [31:0] a, input [31:0] b);
    reg [31:0] fa, fb;
    reg [63:0] big, lesser, m;
    integer d;
    begin
        if (fp_is_nan(a)) fp_add = a | 32'h0040_0000;
        else if (fp_is_nan(b)) fp_add = b | 32'h0040_0000;
        else if (fp_is_inf(a) && fp_is_inf(b)) fp_add = a[31] == b[31] ? a : 32'hFFC0_0000;
        else if (fp_is_inf(a)) fp_add = a;
        else if (fp_is_inf(b)) fp_add = b;
        else if (a[30:0] == 0 && b[30:0] == 0) fp_add = {a[31] & b[31], 31'b0};
        else if (a[30:0] == 0) fp_add = b;
        else if (b[30:0] == 0) fp_add = a;
        else begin
            // x: the operand with the larger magnitude
            if (a[30:0] >= b[30:0]) begin fa = a; fb = b; end
            else begin fa = b; fb = a; end
            d = fp_exp(fa) - fp_exp(fb);
            big = {37'b0, fp_mag(fa), 3'b0};                      // 3 more bits: guard, round, sticky
            if (d >= 30) lesser = 64'd1;                          // all of it below the sticky bit
            else begin
                lesser = {37'b0, fp_mag(fb), 3'b0} >> d;
                if ((({37'b0, fp_mag(fb), 3'b0} << (64 - d)) != 0) && d > 0) lesser = lesser | 64'd1;
            end
            m = fa[31] == fb[31] ? big + lesser : big - lesser;
            fp_add = m == 0 ? 32'b0 : fp_round(fa[31], m, fp_exp(fa) - 3);
        end
    end
endfunction

// a / b for finite a and b (the quantizer's divisions), rounded to binary32: both significands
// normalized to 24 bits, a 41-bit quotient and a sticky bit from the remainder; by zero as x86 does
function automatic [31:0] fp_div(input [31:0] a, input [31:0] b);
    reg [63:0] ma, mb, quo;
    integer ea, eb;
    begin
        ma = {40'b0, fp_mag(a)};
        mb = {40'b0, fp_mag(b)};
        ea = fp_exp(a);
        eb = fp_exp(b);
        if (mb == 0) fp_div = ma == 0 ? 32'hFFC0_0000 : {a[31] ^ b[31], 8'hFF, 23'b0}; // x86: 0/0, x/0
        else if (ma == 0) fp_div = {a[31] ^ b[31], 31'b0};
        else begin
            while (!ma[23]) begin ma = ma << 1; ea = ea - 1; end
            while (!mb[23]) begin mb = mb << 1; eb = eb - 1; end
            quo = (ma << 40) / mb;
            fp_div = fp_round(a[31] ^ b[31], {quo[62:0], ((ma << 40) % mb) != 0}, ea - eb - 41);
        end
    end
endfunction

// floor(x) of a finite binary32 x >= 0, as an integer clamped to 255
function automatic [7:0] fp_floor_u8(input [31:0] x);
    integer e;
    reg [23:0] m;
    begin
        m = fp_mag(x);
        e = fp_exp(x);
        if (x[30:0] == 0 || e < -24) fp_floor_u8 = 8'd0;
        else if (e >= 0) fp_floor_u8 = 8'd255;                  // m >= 2^23, so x >= 2^23
        else begin
            m = m >> (-e);
            fp_floor_u8 = m > 255 ? 8'd255 : m[7:0];
        end
    end
endfunction
/* verilator lint_on UNUSEDSIGNAL */
