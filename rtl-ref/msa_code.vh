// msa_code.vh: the multiplier a weight code stands for, shared by the product generators.
// fmt 0: the code is a two's-complement integer of nbits bits (int3, int6).
// fmt 1: the code is an E2M1 nibble (sign, 2-bit exponent, 1-bit mantissa: 0, 0.5, 1, 1.5, 2, 3,
// 4, 6), and the multiplier is twice its value (0, 1, 2, 3, 4, 6, 8, 12, negated by the sign bit;
// -0 is 0), as the datapath holds E2M1 codes with the block scale halved (weights/es_quant.c).
function automatic integer msa_code_mult(input integer fmt, input integer nbits, input integer code);
    integer mag;
    begin
        if (fmt == 1) begin
            case (code & 7)
                0: mag = 0;
                1: mag = 1;
                2: mag = 2;
                3: mag = 3;
                4: mag = 4;
                5: mag = 6;
                6: mag = 8;
                default: mag = 12;
            endcase
            msa_code_mult = (code & 8) != 0 ? -mag : mag;
        end else begin
            msa_code_mult = code >= (1 << (nbits - 1)) ? code - (1 << nbits) : code;
        end
    end
endfunction
