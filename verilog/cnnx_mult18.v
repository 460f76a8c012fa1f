`default_nettype none
// cnnx_mult18: a signed multiply whose product is registered: A_W x B_W bits (each at most 18), the low P_W
// bits of the product out one cycle after the operands, cleared by rst (synchronous).
//
// For synthesis it is one ECP5 MULT18X18D with its own output register (REG_OUTPUT_CLK = CLK0). Yosys maps a
// `*` onto the DSP with every register bypassed, which leaves the multiplier (about 4 ns) and the routing
// into and out of the DSP block in one cycle; with the register inside the block, a path ends at the DSP's
// inputs and the next starts at its output. For simulation (Verilator) the same function in plain Verilog:
// the low P_W bits of the product of the operands sign-extended to P_W bits, an unsigned multiply that
// becomes one C multiply (Verilator's signed-multiply helper is slower, and the PEs' multiplies are the
// simulation's hot spot).
module cnnx_mult18 #(
    parameter A_W = 18,   // signed operand a, 2 ... 18 bits
    parameter B_W = 18,   // signed operand b, 2 ... 18 bits
    parameter P_W = 36    // product bits kept (the exact product needs A_W + B_W), <= 36
) (
    input  wire              clk,
    input  wire              rst,    // synchronous, active high: clears the product register
    input  wire [A_W-1:0]    a,
    input  wire [B_W-1:0]    b,
    output wire [P_W-1:0]    p       // low P_W bits of a * b (signed), one cycle later
);

    generate
        if (A_W < 2 || A_W > 18 || B_W < 2 || B_W > 18 || P_W <= A_W || P_W <= B_W || P_W > 36) begin : g_bad
            $fatal(1, "cnnx_mult18: need 2 <= A_W, B_W <= 18 and A_W, B_W < P_W <= 36, got %0d, %0d, %0d",
                   A_W, B_W, P_W);
        end
    endgenerate

`ifdef SYNTHESIS
    wire [35:0] a_ext = {{(36 - A_W){a[A_W-1]}}, a};
    wire [35:0] b_ext = {{(36 - B_W){b[B_W-1]}}, b};
    wire [17:0] a18 = a_ext[17:0];
    wire [17:0] b18 = b_ext[17:0];
    wire [35:0] p36;
    MULT18X18D #(
        .REG_INPUTA_CLK("NONE"),
        .REG_INPUTB_CLK("NONE"),
        .REG_INPUTC_CLK("NONE"),
        .REG_PIPELINE_CLK("NONE"),
        .REG_OUTPUT_CLK("CLK0"),
        .REG_OUTPUT_CE("CE0"),
        .REG_OUTPUT_RST("RST0"),
        .RESETMODE("SYNC"),
        .GSR("DISABLED")
    ) u_dsp (
        .A0(a18[0]), .A1(a18[1]), .A2(a18[2]), .A3(a18[3]), .A4(a18[4]), .A5(a18[5]), .A6(a18[6]),
        .A7(a18[7]), .A8(a18[8]), .A9(a18[9]), .A10(a18[10]), .A11(a18[11]), .A12(a18[12]), .A13(a18[13]),
        .A14(a18[14]), .A15(a18[15]), .A16(a18[16]), .A17(a18[17]),
        .B0(b18[0]), .B1(b18[1]), .B2(b18[2]), .B3(b18[3]), .B4(b18[4]), .B5(b18[5]), .B6(b18[6]),
        .B7(b18[7]), .B8(b18[8]), .B9(b18[9]), .B10(b18[10]), .B11(b18[11]), .B12(b18[12]), .B13(b18[13]),
        .B14(b18[14]), .B15(b18[15]), .B16(b18[16]), .B17(b18[17]),
        .C0(1'b0), .C1(1'b0), .C2(1'b0), .C3(1'b0), .C4(1'b0), .C5(1'b0), .C6(1'b0), .C7(1'b0), .C8(1'b0),
        .C9(1'b0), .C10(1'b0), .C11(1'b0), .C12(1'b0), .C13(1'b0), .C14(1'b0), .C15(1'b0), .C16(1'b0),
        .C17(1'b0),
        .SIGNEDA(1'b1), .SIGNEDB(1'b1), .SOURCEA(1'b0), .SOURCEB(1'b0),
        .CLK0(clk), .CLK1(1'b0), .CLK2(1'b0), .CLK3(1'b0), .CE0(1'b1), .CE1(1'b0), .CE2(1'b0), .CE3(1'b0),
        .RST0(rst), .RST1(1'b0), .RST2(1'b0), .RST3(1'b0),
        .P0(p36[0]), .P1(p36[1]), .P2(p36[2]), .P3(p36[3]), .P4(p36[4]), .P5(p36[5]), .P6(p36[6]),
        .P7(p36[7]), .P8(p36[8]), .P9(p36[9]), .P10(p36[10]), .P11(p36[11]), .P12(p36[12]), .P13(p36[13]),
        .P14(p36[14]), .P15(p36[15]), .P16(p36[16]), .P17(p36[17]), .P18(p36[18]), .P19(p36[19]),
        .P20(p36[20]), .P21(p36[21]), .P22(p36[22]), .P23(p36[23]), .P24(p36[24]), .P25(p36[25]),
        .P26(p36[26]), .P27(p36[27]), .P28(p36[28]), .P29(p36[29]), .P30(p36[30]), .P31(p36[31]),
        .P32(p36[32]), .P33(p36[33]), .P34(p36[34]), .P35(p36[35])
    );
    assign p = p36[P_W-1:0];
`else
    wire [P_W-1:0] a_ext = {{(P_W - A_W){a[A_W-1]}}, a};
    wire [P_W-1:0] b_ext = {{(P_W - B_W){b[B_W-1]}}, b};
    reg  [P_W-1:0] p_reg;
    always @(posedge clk) begin
        if (rst) begin
            p_reg <= {P_W{1'b0}};
        end else begin
            p_reg <= a_ext * b_ext;
        end
    end
    assign p = p_reg;
`endif

endmodule

`default_nettype wire
