`default_nettype none
// cnnx_requant: the int8 requantisation of cnnx/quant.py as a pipeline, one value per cycle, used by both
// cores (conv outputs with their bias, average-pool window sums with a zero bias).
//
//     y = clamp(relu?((acc + bias) * MULT + 2**(SHIFT-1)) >>> SHIFT), -128, 127)
//
// Stages (each ends in a register; LATENCY = 6 cycles from in_valid to out_valid):
//   1  s = acc + bias, 33 bits (exact for any two int32 values)
//   2  s = s_hi * 2**16 + s_lo with s_hi = s[32:16] signed and s_lo = s[15:0] unsigned: p_hi = s_hi * MULT
//      on one DSP multiplier (a signed 18x18, its product registered inside the DSP: cnnx_mult18); s_lo * MULT by shift-and-add in logic, four partial sums of
//      four MULT bits each (so the conv core's COLS requantisers cost COLS multipliers, not 2*COLS: an 8x8
//      conv core then needs 64 + 8 = 72, what an LFE5U-45F has)
//   3  p_lo = the sum of the four partial sums; p_hi waits
//   4  x = p_hi * 2**16 + p_lo, the exact 49-bit product
//   5  t = x >>> (SHIFT - 1)
//   6  z = (t + 1) >>> 1, which is floor((x + 2**(SHIFT-1)) / 2**SHIFT) (round half up), then ReLU and the
//      int8 clamp. z > 127 exactly when t >= 255 and z < -128 exactly when t <= -258, so only t's sign,
//      its low 9 bits and whether its upper bits are all-sign are needed: no wide comparator.
// Why so many stages: an unregistered ECP5 multiplier alone takes about 4 ns, a 49-bit carry chain about
// 3 ns, and the 49-bit variable shift 3 to 4 LUT levels; each gets its own cycle.
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

    localparam LAT = 6;

    reg [LAT-1:0]        valid_q;
    reg [LAT*TAG_W-1:0]  tag_q;

    // stage 1: the bias
    reg signed [32:0] s_reg;
    // stage 2: partial products
    wire [33:0]       p_hi_reg;     // s_hi (17 bits signed) * M (16 bits): 33 bits, one spare (cnnx_mult18)
    reg        [79:0] q_lo_reg;     // four partial sums of s_lo * M, 20 bits each
    // stage 3
    reg        [33:0] p_hi_q;
    reg        [31:0] p_lo_reg;     // s_lo (16 bits unsigned) * M (16 bits) : 32 bits
    // stage 3: the full product
    reg signed [49:0] x_reg;
    // stage 4: shifted by S - 1
    reg signed [49:0] t_reg;
    // stage 5: the result
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
    // s_lo * M in logic: partial sum g covers MULT bits 4g ... 4g+3
    wire [79:0] q_lo;
    genvar g;
    generate
        for (g = 0; g < 4; g = g + 1) begin : g_lo
            wire [19:0] s0 = mult[4*g]     ? {4'd0, s_reg[15:0]}       : 20'd0;
            wire [19:0] s1 = mult[4*g + 1] ? {3'd0, s_reg[15:0], 1'b0} : 20'd0;
            wire [19:0] s2 = mult[4*g + 2] ? {2'd0, s_reg[15:0], 2'b0} : 20'd0;
            wire [19:0] s3 = mult[4*g + 3] ? {1'd0, s_reg[15:0], 3'b0} : 20'd0;
            assign q_lo[g*20 +: 20] = (s0 + s1) + (s2 + s3);
        end
    endgenerate
    wire [31:0] p_lo = ({12'd0, q_lo_reg[19:0]} + {8'd0, q_lo_reg[39:20], 4'd0})
                       + ({4'd0, q_lo_reg[59:40], 8'd0} + {q_lo_reg[79:60], 12'd0});
    reg  [5:0] shift_m1;            // SHIFT - 1, registered: it is static, and its subtractor would
                                    // otherwise sit in front of the 50-bit shifter

    // stage 5 arithmetic: saturation from t's sign and upper bits, the rounded value from its low bits
    wire        t_neg = t_reg[49];
    wire        t_upper_sign = t_neg ? (&t_reg[49:9]) : ~(|t_reg[49:9]);   // t fits in 10 bits signed
    wire [9:0]  t_low = t_reg[9:0];
    wire        sat_hi = !t_neg && (!t_upper_sign || t_low >= 10'd255);    // t >= 255
    wire        sat_lo = t_neg && (!t_upper_sign || $signed(t_low) <= -10'sd258);
    wire [7:0]  z = t_low[8:1] + {7'd0, t_low[0]};                           // (t + 1) >>> 1, mod 256
    wire [7:0]  y_next = (relu && t_neg) ? 8'd0 :
                         sat_hi ? 8'd127 :
                         sat_lo ? 8'h80 : z;

    always @(posedge clk) begin
        if (rst) begin
            valid_q <= {LAT{1'b0}};
        end else begin
            valid_q <= {valid_q[LAT-2:0], in_valid};
        end
        tag_q <= {tag_q[(LAT-1)*TAG_W-1:0], tag_in};
        s_reg <= {acc[31], acc} + {bias[31], bias};
        q_lo_reg <= q_lo;
        p_hi_q <= p_hi_reg;
        p_lo_reg <= p_lo;
        x_reg <= {p_hi_q, 16'd0} + {18'd0, p_lo_reg};
        shift_m1 <= shift - 6'd1;
        t_reg <= x_reg >>> shift_m1;
        y_reg <= y_next;
    end

    assign out_valid = valid_q[LAT-1];
    assign tag_out = tag_q[LAT*TAG_W-1 -: TAG_W];
    assign y = y_reg;

endmodule

`default_nettype wire
