`default_nettype none
// cnnx_pe: one output-stationary multiply-accumulate processing element of the systolic array.
//
// Every cycle the activation arriving from the west is multiplied by the weight arriving from the north; the
// product is registered (the multiplier's output register: a DSP multiplier's delay alone fills most of a
// 150 MHz cycle) and added to this PE's own accumulator one cycle later, with the flags delayed to match.
// Both operands (and the activation's flags) are passed on, registered, to the east and south neighbours. `first` starts a fresh sum, `last` copies the finished sum into `res_reg`,
// so the accumulator can start the next tile on the very next cycle while the finished result waits in
// `res_reg` to be shifted out (the drain of one tile overlaps the fill of the next).
// The drain is a per-column shift register: `drain_load` copies `res_reg` into `drain_reg`, otherwise
// `drain_reg` takes the value of the PE above (`drain_in`), so a column empties one row per cycle.
(* keep_hierarchy *)
module cnnx_pe #(
    parameter DATA_W = 8,   // signed operand width (int8)
    parameter ACC_W  = 32   // signed accumulator width (int32)
) (
    input  wire                     clk,
    input  wire                     rst,         // synchronous, active high
    input  wire signed [DATA_W-1:0] a_in,        // activation from the west
    input  wire signed [DATA_W-1:0] w_in,        // weight from the north
    input  wire                     valid_in,    // a_in/w_in carry a real MAC step this cycle
    input  wire                     first_in,    // first step of a sum: start from zero
    input  wire                     last_in,     // last step of a sum: publish it in res_reg
    output reg  signed [DATA_W-1:0] a_out,       // a_in, one cycle later, to the east
    output reg  signed [DATA_W-1:0] w_out,       // w_in, one cycle later, to the south
    output reg                      valid_out,
    output reg                      first_out,
    output reg                      last_out,
    input  wire                     drain_load,  // copy res_reg into the drain chain
    input  wire        [ACC_W-1:0]  drain_in,    // drain value of the PE above (zero for row 0)
    output wire        [ACC_W-1:0]  drain_out    // this PE's drain register, to the PE below
);

    generate
        if (DATA_W < 2 || 2 * DATA_W > ACC_W) begin : g_bad_width
            $fatal(1, "cnnx_pe: need 2 <= DATA_W and 2*DATA_W <= ACC_W, got DATA_W=%0d ACC_W=%0d",
                           DATA_W, ACC_W);
        end
    endgenerate

    reg        [ACC_W-1:0] acc_reg;
    reg        [ACC_W-1:0] res_reg;
    reg        [ACC_W-1:0] drain_reg;

    // The product, exact in ACC_W bits: the low ACC_W bits of the product of the two sign-extended operands
    // are the signed product (it fits, 2*DATA_W <= ACC_W), so an unsigned multiply does; Verilator then
    // emits a plain C multiply instead of its slower signed-multiply helper (the simulation's hot spot).
    // (cnnx_mult18: the DSP multiplier with its own output register for synthesis, this multiply for
    // simulation)
    wire [ACC_W-1:0] prod_reg;
    cnnx_mult18 #(
        .A_W(DATA_W),
        .B_W(DATA_W),
        .P_W(ACC_W)
    ) u_mul (
        .clk(clk),
        .rst(rst),
        .a(a_in),
        .b(w_in),
        .p(prod_reg)
    );
    reg              valid_q, first_q, last_q;     // the flags of the registered product
    wire [ACC_W-1:0] sum = (first_q ? {ACC_W{1'b0}} : acc_reg) + prod_reg;

    assign drain_out = drain_reg;

    always @(posedge clk) begin
        if (rst) begin
            a_out     <= {DATA_W{1'b0}};
            w_out     <= {DATA_W{1'b0}};
            valid_out <= 1'b0;
            first_out <= 1'b0;
            last_out  <= 1'b0;
            acc_reg   <= {ACC_W{1'b0}};
            res_reg   <= {ACC_W{1'b0}};
            drain_reg <= {ACC_W{1'b0}};
            valid_q   <= 1'b0;
            first_q   <= 1'b0;
            last_q    <= 1'b0;
        end else begin
            a_out     <= a_in;
            w_out     <= w_in;
            valid_out <= valid_in;
            first_out <= first_in;
            last_out  <= last_in;
            valid_q   <= valid_in;
            first_q   <= first_in;
            last_q    <= last_in;
            if (valid_q) begin
                acc_reg <= sum;
            end
            if (valid_q && last_q) begin
                res_reg <= sum;
            end
            drain_reg <= drain_load ? res_reg : drain_in;
        end
    end

endmodule

`default_nettype wire
