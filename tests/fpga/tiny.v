// Small modules with known synthesis results, for the report parsing tests (tests/fpga/test_report.py).

// 512 x 16 with a registered read: one block RAM (DP16KD), no flip-flop memory.
module t_bram (input wire clk, input wire we, input wire [8:0] wa, input wire [8:0] ra,
               input wire [15:0] wd, output reg [15:0] rd);
    reg [15:0] mem [0:511];
    always @(posedge clk) begin
        if (we) mem[wa] <= wd;
        rd <= mem[ra];
    end
endmodule

// 16 x 4 with a combinational read: one distributed RAM cell (TRELLIS_DPR16X4).
module t_lutram (input wire clk, input wire we, input wire [3:0] wa, input wire [3:0] ra,
                 input wire [3:0] wd, output wire [3:0] rd);
    reg [3:0] mem [0:15];
    always @(posedge clk) if (we) mem[wa] <= wd;
    assign rd = mem[ra];
endmodule

// 16 x 8 forced into logic: the memory the report must name as built from flip-flops (128 bits).
module t_ffmem (input wire clk, input wire we, input wire [3:0] wa, input wire [3:0] ra,
                input wire [7:0] wd, output wire [7:0] rd);
    (* ram_style = "logic" *) reg [7:0] mem [0:15];
    always @(posedge clk) if (we) mem[wa] <= wd;
    assign rd = mem[ra];
endmodule

// Three 8-bit pipeline registers and nothing else: exactly 24 TRELLIS_FF, no LUT.
module t_ff (input wire clk, input wire [7:0] d, output reg [7:0] q);
    reg [7:0] a, b;
    always @(posedge clk) begin
        a <= d;
        b <= a;
        q <= b;
    end
endmodule

// One 16 x 16 multiply: exactly one MULT18X18D.
module t_mul (input wire signed [15:0] a, input wire signed [15:0] b, output wire signed [31:0] p);
    assign p = a * b;
endmodule

// A latch: the Yosys check must refuse it.
module t_latch (input wire en, input wire d, output reg q);
    always @* if (en) q = d;
endmodule

// Two drivers of one net: the Yosys check must refuse it.
module t_multi (input wire a, input wire b, output wire y);
    assign y = a;
    assign y = b;
endmodule

// 16 x 8 reset asynchronously: the Verilog frontend makes it a list of registers at once (mem2reg), so it
// never becomes a memory cell; the report must still name it as memory built from flip-flops.
module t_mem2reg (input wire clk, input wire rst, input wire we, input wire [3:0] wa, input wire [3:0] ra,
                  input wire [7:0] wd, output wire [7:0] rd);
    reg [7:0] regs [0:15];
    integer i;
    always @(posedge clk or posedge rst)
        if (rst) begin
            for (i = 0; i < 16; i = i + 1) regs[i] <= 8'd0;
        end else if (we) begin
            regs[wa] <= wd;
        end
    assign rd = regs[ra];
endmodule
