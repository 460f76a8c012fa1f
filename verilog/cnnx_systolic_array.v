`default_nettype none
// cnnx_systolic_array: a ROWS x COLS grid of output-stationary cnnx_pe, with the input skew and the drain.
//
// Row r takes its activations (and the valid/first/last flags) at the west edge, delayed by r cycles; column c
// takes its weights at the north edge, delayed by c cycles. So step k of a sum, presented on all edges in the
// same cycle t, meets in PE (r, c) at cycle t + r + c: every PE sums the same k sequence, one diagonal later.
// Each column drains through its own shift register (see cnnx_pe): the bottom PE's "last" flag, one cycle
// late, means the whole column has finished its sums, so it loads the column's drain chain; the column then
// leaves at the bottom, one row per cycle, bottom row first. `drain_first[c]` marks the cycle in which
// `drain_data` column c carries row ROWS-1; rows ROWS-2 ... 0 follow on the next cycles; `drain_soon[c]`
// rises one cycle before `drain_first[c]` (a reader can start a block-RAM read for the tile then).
// A tile must therefore last at least ROWS cycles (the controller pads short sums with idle cycles).
module cnnx_systolic_array #(
    parameter ROWS   = 8,   // PE rows: output pixels computed at once
    parameter COLS   = 8,   // PE columns: filters computed at once
    parameter DATA_W = 8,   // signed operand width (int8)
    parameter ACC_W  = 32   // signed accumulator width (int32)
) (
    input  wire                     clk,
    input  wire                     rst,          // synchronous, active high
    input  wire [ROWS*DATA_W-1:0]   a_west,       // row r's activation in bits [r*DATA_W +: DATA_W]
    input  wire [COLS*DATA_W-1:0]   w_north,      // column c's weight in bits [c*DATA_W +: DATA_W]
    input  wire                     valid,        // this cycle carries a MAC step (for every row)
    input  wire                     first,        // ... the first of a sum
    input  wire                     last,         // ... the last of a sum
    output wire [COLS*ACC_W-1:0]    drain_data,   // bottom of column c's drain chain
    output wire [COLS-1:0]          drain_first,  // column c's drain_data is row ROWS-1 of a finished tile
    output wire [COLS-1:0]          drain_soon    // drain_first[c] rises on the next cycle
);

    generate
        if (ROWS < 1 || COLS < 1) begin : g_bad_size
            $fatal(1, "cnnx_systolic_array: ROWS and COLS must be >= 1, got %0dx%0d", ROWS, COLS);
        end
    endgenerate

    // West-to-east operands and flags: index r*(COLS+1) + c is the input of PE (r, c); c == COLS is the
    // east edge (nothing reads it beyond the bottom row's flags, which start the drains).
    wire [DATA_W-1:0] a_h     [0:ROWS*(COLS+1)-1];
    wire              valid_h [0:ROWS*(COLS+1)-1];
    wire              first_h [0:ROWS*(COLS+1)-1];
    wire              last_h  [0:ROWS*(COLS+1)-1];
    // North-to-south weights: index r*COLS + c is the input of PE (r, c); r == ROWS is the south edge.
    wire [DATA_W-1:0] w_v     [0:(ROWS+1)*COLS-1];
    // Drain chains: index r*COLS + c is the drain value entering PE (r, c) from above.
    wire [ACC_W-1:0]  d_v     [0:(ROWS+1)*COLS-1];
    wire [COLS-1:0]   drain_load;
    reg  [COLS-1:0]   drain_first_reg;

    genvar r, c;
    generate
        // the input skew: row r waits r cycles; the flags travel with the activation
        for (r = 0; r < ROWS; r = r + 1) begin : g_row_skew
            if (r == 0) begin : g_direct
                assign a_h[0]     = a_west[DATA_W-1:0];
                assign valid_h[0] = valid;
                assign first_h[0] = first;
                assign last_h[0]  = last;
            end else begin : g_delay
                reg [r*DATA_W-1:0] a_dly;      // stage i in bits [i*DATA_W +: DATA_W]
                reg [3*r-1:0]      flag_dly;   // stage i's {valid, first, last} in bits [3*i +: 3]
                integer i;
                always @(posedge clk) begin
                    if (rst) begin
                        a_dly    <= {(r*DATA_W){1'b0}};
                        flag_dly <= {(3*r){1'b0}};
                    end else begin
                        a_dly[DATA_W-1:0] <= a_west[r*DATA_W +: DATA_W];
                        flag_dly[2:0]     <= {valid, first, last};
                        for (i = 1; i < r; i = i + 1) begin
                            a_dly[i*DATA_W +: DATA_W] <= a_dly[(i-1)*DATA_W +: DATA_W];
                            flag_dly[3*i +: 3]        <= flag_dly[3*(i-1) +: 3];
                        end
                    end
                end
                assign a_h[r*(COLS+1)]     = a_dly[(r-1)*DATA_W +: DATA_W];
                assign valid_h[r*(COLS+1)] = flag_dly[3*r-1];
                assign first_h[r*(COLS+1)] = flag_dly[3*r-2];
                assign last_h[r*(COLS+1)]  = flag_dly[3*r-3];
            end
        end

        // the weight skew: column c waits c cycles
        for (c = 0; c < COLS; c = c + 1) begin : g_col_skew
            if (c == 0) begin : g_direct
                assign w_v[0] = w_north[DATA_W-1:0];
            end else begin : g_delay
                reg [c*DATA_W-1:0] w_dly;      // stage i in bits [i*DATA_W +: DATA_W]
                integer i;
                always @(posedge clk) begin
                    if (rst) begin
                        w_dly <= {(c*DATA_W){1'b0}};
                    end else begin
                        w_dly[DATA_W-1:0] <= w_north[c*DATA_W +: DATA_W];
                        for (i = 1; i < c; i = i + 1) begin
                            w_dly[i*DATA_W +: DATA_W] <= w_dly[(i-1)*DATA_W +: DATA_W];
                        end
                    end
                end
                assign w_v[c] = w_dly[(c-1)*DATA_W +: DATA_W];
            end
            // row 0's drain input is zero; the bottom of the chain is the column's output
            assign d_v[c] = {ACC_W{1'b0}};
            assign drain_data[c*ACC_W +: ACC_W] = d_v[ROWS*COLS + c];
        end

        // the grid
        for (r = 0; r < ROWS; r = r + 1) begin : g_r
            for (c = 0; c < COLS; c = c + 1) begin : g_c
                cnnx_pe #(
                    .DATA_W(DATA_W),
                    .ACC_W(ACC_W)
                ) u_pe (
                    .clk(clk),
                    .rst(rst),
                    .a_in(a_h[r*(COLS+1) + c]),
                    .w_in(w_v[r*COLS + c]),
                    .valid_in(valid_h[r*(COLS+1) + c]),
                    .first_in(first_h[r*(COLS+1) + c]),
                    .last_in(last_h[r*(COLS+1) + c]),
                    .a_out(a_h[r*(COLS+1) + c + 1]),
                    .w_out(w_v[(r+1)*COLS + c]),
                    .valid_out(valid_h[r*(COLS+1) + c + 1]),
                    .first_out(first_h[r*(COLS+1) + c + 1]),
                    .last_out(last_h[r*(COLS+1) + c + 1]),
                    .drain_load(drain_load[c]),
                    .drain_in(d_v[r*COLS + c]),
                    .drain_out(d_v[(r+1)*COLS + c])
                );
            end
        end
    endgenerate

    // The bottom PE of column c registers its inputs' flags: "valid and last" there, one cycle late, is the
    // cycle its product register holds the last product; one cycle more and its sum is in res_reg and every
    // PE of the column has finished (the bottom row is the column's last to finish): load the drain chain.
    wire [COLS-1:0] bottom_last;
    reg  [COLS-1:0] drain_load_reg;
    generate
        for (c = 0; c < COLS; c = c + 1) begin : g_load
            assign bottom_last[c] = valid_h[(ROWS-1)*(COLS+1) + c + 1] & last_h[(ROWS-1)*(COLS+1) + c + 1];
        end
    endgenerate
    assign drain_load = drain_load_reg;

    always @(posedge clk) begin
        if (rst) begin
            drain_load_reg <= {COLS{1'b0}};
            drain_first_reg <= {COLS{1'b0}};
        end else begin
            drain_load_reg <= bottom_last;
            drain_first_reg <= drain_load;
        end
    end
    assign drain_first = drain_first_reg;

    // drain_soon: a copy of drain_load_reg for the readers outside the array (column c's writer, its bias
    // read), which sit far from the column's PEs that drain_load_reg drives. The copy is built from other
    // inputs so that synthesis keeps it apart: the flags reach column c one cycle after column c - 1, so
    // drain_load_reg[c] is drain_load_reg[c - 1] one cycle late; column 0's is the bottom-left PE's input
    // flags two cycles late.
    reg [COLS-1:0] drain_soon_reg;
    reg            bl_in_reg;      // valid and last at the bottom-left PE's input, one cycle late
    wire [COLS:0]  soon_src = {drain_load_reg, bl_in_reg};   // column c's source: bit c
    wire           unused_soon = soon_src[COLS];              // drain_load_reg[COLS-1] feeds no copy
    always @(posedge clk) begin
        if (rst) begin
            drain_soon_reg <= {COLS{1'b0}};
            bl_in_reg <= 1'b0;
        end else begin
            bl_in_reg <= valid_h[(ROWS-1)*(COLS+1)] & last_h[(ROWS-1)*(COLS+1)];
            drain_soon_reg <= soon_src[COLS-1:0];
        end
    end
    assign drain_soon = drain_soon_reg;

endmodule

`default_nettype wire
