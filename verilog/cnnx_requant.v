`default_nettype none
// cnnx_requant: the int8 requantisation of cnnx/quant.py as a pipeline, one value per cycle, used by both
// cores (conv outputs with their bias, average-pool window sums with a zero bias).
//
//     y = clamp(relu?((acc + bias) * MULT + 2**(SHIFT-1)) >>> SHIFT), -128, 127)
//
// Stages (each ends in a register, and each has at most one carry chain; LATENCY = 10 cycles from in_valid
// to out_valid):
//   1  s = acc + bias, 33 bits (exact for any two int32 values)
//   2  s = s_hi * 2**16 + s_lo with s_hi = s[32:16] signed and s_lo = s[15:0] unsigned: p_hi = s_hi * MULT
//      on one DSP multiplier (a signed 18x18, its product registered inside the DSP: cnnx_mult18); s_lo *
//      MULT by shift-and-add in logic (so the conv core's COLS requantisers cost COLS multipliers, not
//      2*COLS: an 8x8 conv core then needs 64 + 8 = 72, what an LFE5U-45F has), as a tree of adders one
//      level per stage: here the eight products s_lo * MULT[2j+1:2j]
//   3  four products s_lo * MULT[4k+3:4k] (pairs of the eight); p_hi waits
//   4  two products s_lo * MULT[8m+7:8m]; p_hi waits
//   5  p_lo = s_lo * MULT; p_hi waits
//   6  x = p_hi * 2**16 + p_lo, the exact 49-bit product
//   7  t = x >>> (SHIFT - 1), in two steps: by the multiple of 8 here ...
//   8  ... by the rest here
//   9  z = (t + 1) >>> 1 mod 256, which is floor((x + 2**(SHIFT-1)) / 2**SHIFT) (round half up) when it
//      fits; whether it does not: z > 127 exactly when t >= 255 and z < -128 exactly when t <= -258, so
//      only t's sign, its low 10 bits and whether its upper bits are all-sign are needed (no wide
//      comparator, but a 41-bit reduction: its own stage)
//  10  ReLU and the int8 clamp
// Why so many stages: an ECP5 carry chain of 20 to 50 bits takes 2 to 3 ns plus its routing, and the 49-bit
// variable shift 3 to 4 LUT levels; each gets its own cycle, so the core runs at 150 MHz.
// `tag_in` rides along unchanged (the cores carry the output address and write enable in it).
// MULT is 1 ... 32767 and SHIFT 1 ... 47 (cnnx.quant.Requant); both must stay constant while values flow
// (SHIFT from at least the cycle before a value enters).
module cnnx_requant #(
    parameter TAG_W = 1   // width of the side-band word carried with each value
) (
    input  wire              clk,
    input  wire              rst,        // synchronous, active high: clears the valid flags
    input  wire              in_valid,
    input  wire [31:0]       acc,        // signed accumulator
    input  wire [31:0]       bias,       // signed bias, added first
    input  wire [TAG_W-1:0]  tag_in,
    input  wire [15:0]       mult,       // M, unsigned (bit 15 must be zero)
    input  wire [5:0]        shift,      // S, 1 ... 47
    input  wire              relu,
    output wire              out_valid,
    output wire [7:0]        y,          // signed int8 result
    output wire [TAG_W-1:0]  tag_out
);

    generate
        if (TAG_W < 1) begin : g_bad_tag
            $fatal(1, "cnnx_requant: TAG_W must be >= 1, got %0d", TAG_W);
        end
    endgenerate

    localparam LAT = 10;

    reg [LAT-1:0]        valid_q;
    reg [LAT*TAG_W-1:0]  tag_q;

    // stage 1: the bias
    reg signed [32:0] s_reg;
    // stage 2 ... 5: p_hi from the DSP (registered there), then waiting; the tree of s_lo * M
    wire [33:0]       p_hi_reg;     // s_hi (17 bits signed) * M (16 bits): 33 bits, one spare (cnnx_mult18)
    reg        [33:0] p_hi_q3, p_hi_q4, p_hi_q5;
    reg        [143:0] q8_reg;      // s_lo * M[2j+1:2j], 18 bits each
    reg        [79:0]  q4_reg;      // s_lo * M[4k+3:4k], 20 bits each
    reg        [47:0]  q2_reg;      // s_lo * M[8m+7:8m], 24 bits each
    reg        [31:0]  p_lo_reg;    // s_lo (16 bits unsigned) * M (16 bits): 32 bits
    // stage 6: the full product
    reg signed [49:0] x_reg;
    // stage 7 and 8: shifted by S - 1
    reg signed [49:0] t8_reg;
    reg        [2:0]  shift_lo;     // (SHIFT - 1) mod 8, for stage 8
    reg signed [49:0] t_reg;
    // stage 9: the rounded value and the flags of the clamp
    reg               neg_reg, fits_reg, ge255_reg, le258_reg;
    reg        [7:0]  z_reg;
    // stage 10: the result
    reg        [7:0]  y_reg;

    // p_hi = s_hi * M, registered inside the DSP block
    cnnx_mult18 #(
        .A_W(17),
        .B_W(17),
        .P_W(34)
    ) u_mul_hi (
        .clk(clk),
        .rst(rst),
        .a(s_reg[32:16]),
        .b({1'b0, mult}),
        .p(p_hi_reg)
    );
    // s_lo * M in logic
    wire [143:0] q8;
    wire [79:0]  q4;
    wire [47:0]  q2;
    genvar g;
    generate
        for (g = 0; g < 8; g = g + 1) begin : g_q8
            wire [17:0] s0 = mult[2*g]     ? {2'd0, s_reg[15:0]}       : 18'd0;
            wire [17:0] s1 = mult[2*g + 1] ? {1'd0, s_reg[15:0], 1'b0} : 18'd0;
            assign q8[g*18 +: 18] = s0 + s1;
        end
        for (g = 0; g < 4; g = g + 1) begin : g_q4
            assign q4[g*20 +: 20] = {2'd0, q8_reg[2*g*18 +: 18]} + {q8_reg[(2*g+1)*18 +: 18], 2'd0};
        end
        for (g = 0; g < 2; g = g + 1) begin : g_q2
            assign q2[g*24 +: 24] = {4'd0, q4_reg[2*g*20 +: 20]} + {q4_reg[(2*g+1)*20 +: 20], 4'd0};
        end
    endgenerate
    wire [31:0] p_lo = {8'd0, q2_reg[23:0]} + {q2_reg[47:24], 8'd0};
    reg  [5:0] shift_m1;            // SHIFT - 1, registered: it is static, and its subtractor would
                                    // otherwise sit in front of the 50-bit shifter

    // stage 9 arithmetic: the rounded value from t's low bits; t's sign, whether it fits in 10 bits signed
    // (its upper bits all-sign) and the two bounds on its low bits
    wire        t_neg = t_reg[49];
    wire        t_fits = t_neg ? (&t_reg[49:9]) : ~(|t_reg[49:9]);
    wire [9:0]  t_low = t_reg[9:0];
    // stage 10: saturation (t >= 255 or t <= -258), ReLU
    wire        sat_hi = !neg_reg && (!fits_reg || ge255_reg);
    wire        sat_lo = neg_reg && (!fits_reg || le258_reg);
    wire [7:0]  y_next = (relu && neg_reg) ? 8'd0 :
                         sat_hi ? 8'd127 :
                         sat_lo ? 8'h80 : z_reg;

    always @(posedge clk) begin
        if (rst) begin
            valid_q <= {LAT{1'b0}};
        end else begin
            valid_q <= {valid_q[LAT-2:0], in_valid};
        end
        tag_q <= {tag_q[(LAT-1)*TAG_W-1:0], tag_in};
        s_reg <= {acc[31], acc} + {bias[31], bias};
        q8_reg <= q8;
        q4_reg <= q4;
        p_hi_q3 <= p_hi_reg;
        q2_reg <= q2;
        p_hi_q4 <= p_hi_q3;
        p_lo_reg <= p_lo;
        p_hi_q5 <= p_hi_q4;
        x_reg <= {p_hi_q5, 16'd0} + {18'd0, p_lo_reg};
        shift_m1 <= shift - 6'd1;
        t8_reg <= x_reg >>> {shift_m1[5:3], 3'd0};
        shift_lo <= shift_m1[2:0];
        t_reg <= t8_reg >>> shift_lo;
        neg_reg <= t_neg;
        fits_reg <= t_fits;
        ge255_reg <= (t_low >= 10'd255);
        le258_reg <= ($signed(t_low) <= -10'sd258);
        z_reg <= t_low[8:1] + {7'd0, t_low[0]};                  // (t + 1) >>> 1, mod 256
        y_reg <= y_next;
    end

    assign out_valid = valid_q[LAT-1];
    assign tag_out = tag_q[LAT*TAG_W-1 -: TAG_W];
    assign y = y_reg;

endmodule

`default_nettype wire
