`default_nettype none
// cnnx_conv_core: an int8 convolution layer on a ROWS x COLS systolic array, for one image (C, H, W) per run.
//
// Dataflow: OUTPUT-STATIONARY. A tile is ROWS output pixels x COLS filters; each PE keeps one output's int32
// sum in place while the K = C*KH*KW products stream past, rows receiving activations and columns weights.
// Why: every input byte is read once per tile and every weight once per tile (no partial sums travel
// through the array or back to memory), the accumulator never leaves the PE until it is final, the bias and
// requantisation happen once per output on the way out, and the same array runs dense layers (1x1 maps) with
// no extra mode. Weight-stationary would need the weights reloaded for every K-slice of ROWS channels and
// partial sums added back in a buffer, which is more state to get wrong for the small LeNet layers.
//
// Tiles are walked filter-tile fastest, then pixel-tile (pixels in row-major (oh, ow) order). A tile takes
// PERIOD = max(K, ROWS) cycles: K MAC steps, plus idle steps when K < ROWS so that a column's drain (ROWS
// cycles) ends before the next tile's results arrive. Tiles are issued back to back: the drain of one tile
// and the requantisation of its outputs overlap the fill and compute of the next, so a layer takes
//     cycles = (T - 1) * PERIOD + K + 2*ROWS + COLS + 1,      T = ceil(OH*OW / ROWS) * ceil(F / COLS)
// counted from the cycle after `start` is sampled to the cycle `done` rises, both included (the cycles
// `busy` is high). Buffer loading and unloading through the host ports are not counted.
// cnnx/cycles.py holds the same formula; tests check the counter against it on every layer they run.
//
// Host interface (everything synchronous to clk):
//   memory write port  wr_en, wr_sel (0 input map, 1 weights, 2 bias), wr_addr (32-bit word index),
//                      wr_data: 4 bytes little-endian for the byte buffers, one int32 for the bias
//                      input map byte (c, h, w) at c*H*W + h*W + w; weight (f, c, kh, kw) at f*K + c*KH*KW +
//                      kh*KW + kw (PyTorch's (F, C, KH, KW) order, flattened); output (f, oh, ow) at
//                      f*OH*OW + oh*OW + ow
//   register port      cfg_en, cfg_addr, cfg_data: 0 C, 1 H, 2 W, 3 F, 4 KH, 5 KW, 6 STRIDE, 7 PAD, 8 OH,
//                      9 OW, 10 MULT, 11 SHIFT, 12 RELU. OH/OW are written by the host, which computes them
//                      with the "window must fit" rule (cnnx/shapes.py); the core does not divide.
//   start / busy / done  start is sampled when idle; done stays high from the end of a run to the next start
//                      (a layer with a zero size finishes at once, without a run)
//   read port          rd_addr (word index) -> rd_data, 4 output bytes, combinational
//   cycle_count        cycles of the last (or current) run; mac_count: useful MACs (real pixel x real filter
//                      pairs, padding taps included) of that run, for utilisation = mac_count /
//                      (cycle_count * ROWS * COLS)
// The buffers are plain register arrays with ROWS read ports (input map), COLS read ports (weights) and COLS
// write ports (output map): fine for simulation and small FPGAs; a larger build would bank them (input by
// row, weights by filter column, output by filter column), which the access pattern already allows.
// The host must keep the registers and buffers unchanged while busy (writes are ignored then) and must make
// every sum fit int32 (the driver checks with cnnx.quant.check_acc_range); the requantisation is quant.py's:
// y = clamp(relu?((acc * MULT + 2**(SHIFT-1)) >>> SHIFT), -128, 127), carried in 48 bits.
module cnnx_conv_core #(
    parameter ROWS         = 8,       // systolic array rows (output pixels per tile)
    parameter COLS         = 8,       // systolic array columns (filters per tile)
    parameter IFMAP_DEPTH  = 8192,    // input map buffer, bytes (power of two, 16 ... 65536)
    parameter WEIGHT_DEPTH = 65536,   // weight buffer, bytes (power of two, >= the other buffers, <= 65536)
    parameter OFMAP_DEPTH  = 8192,    // output map buffer, bytes (power of two, 16 ... 65536)
    parameter BIAS_DEPTH   = 256      // bias buffer, int32 entries (power of two, 2 ... WEIGHT_DEPTH/4)
) (
    input  wire                                clk,
    input  wire                                rst,          // synchronous, active high
    input  wire                                wr_en,
    input  wire [1:0]                          wr_sel,
    input  wire [$clog2(WEIGHT_DEPTH)-3:0]     wr_addr,
    input  wire [31:0]                         wr_data,
    input  wire                                cfg_en,
    input  wire [3:0]                          cfg_addr,
    input  wire [31:0]                         cfg_data,
    input  wire                                start,
    output wire                                busy,
    output wire                                done,
    input  wire [$clog2(OFMAP_DEPTH)-3:0]      rd_addr,
    output wire [31:0]                         rd_data,
    output wire [31:0]                         cycle_count,
    output wire [31:0]                         mac_count
);

    localparam IF_AW = $clog2(IFMAP_DEPTH);
    localparam WT_AW = $clog2(WEIGHT_DEPTH);
    localparam OF_AW = $clog2(OFMAP_DEPTH);
    localparam BI_AW = $clog2(BIAS_DEPTH);
    localparam [31:0] ROWS32 = ROWS;
    localparam [31:0] COLS32 = COLS;

    generate
        if (ROWS < 1 || COLS < 1 || ROWS > 256 || COLS > 256) begin : g_bad_array
            $fatal(1, "cnnx_conv_core: ROWS and COLS must be in 1..256, got %0dx%0d", ROWS, COLS);
        end
        if ((1 << IF_AW) != IFMAP_DEPTH || (1 << WT_AW) != WEIGHT_DEPTH || (1 << OF_AW) != OFMAP_DEPTH
                || (1 << BI_AW) != BIAS_DEPTH) begin : g_bad_pow2
            $fatal(1, "cnnx_conv_core: buffer depths must be powers of two");
        end
        if (IF_AW < 4 || OF_AW < 4 || BI_AW < 1 || WT_AW > 16 || IF_AW > WT_AW || OF_AW > 16
                || BI_AW > WT_AW - 2) begin : g_bad_depth
            $fatal(1, "cnnx_conv_core: need 16 <= IFMAP_DEPTH <= WEIGHT_DEPTH <= 65536, %s",
                   "16 <= OFMAP_DEPTH <= 65536 and 2 <= BIAS_DEPTH <= WEIGHT_DEPTH/4");
        end
    endgenerate

    // ---------------------------------------------------------------------------------------------------
    // buffers
    // ---------------------------------------------------------------------------------------------------
    reg  [7:0]  ifmap_mem  [0:IFMAP_DEPTH-1];
    reg  [7:0]  weight_mem [0:WEIGHT_DEPTH-1];
    reg  [7:0]  ofmap_mem  [0:OFMAP_DEPTH-1];
    reg  [31:0] bias_mem   [0:BIAS_DEPTH-1];

    localparam [1:0] SEL_IFMAP = 2'd0;
    localparam [1:0] SEL_WEIGHT = 2'd1;
    localparam [1:0] SEL_BIAS = 2'd2;

    localparam [1:0] ST_IDLE = 2'd0;
    localparam [1:0] ST_RUN = 2'd1;
    localparam [1:0] ST_FLUSH = 2'd2;
    reg [1:0] state_reg;

    always @(posedge clk) begin
        // host writes land only while idle; buffers are not cleared by reset (the host reloads them)
        if (wr_en && state_reg == ST_IDLE && !rst) begin
            case (wr_sel)
                SEL_IFMAP: begin
                    ifmap_mem[{wr_addr[IF_AW-3:0], 2'd0}] <= wr_data[7:0];
                    ifmap_mem[{wr_addr[IF_AW-3:0], 2'd1}] <= wr_data[15:8];
                    ifmap_mem[{wr_addr[IF_AW-3:0], 2'd2}] <= wr_data[23:16];
                    ifmap_mem[{wr_addr[IF_AW-3:0], 2'd3}] <= wr_data[31:24];
                end
                SEL_WEIGHT: begin
                    weight_mem[{wr_addr, 2'd0}] <= wr_data[7:0];
                    weight_mem[{wr_addr, 2'd1}] <= wr_data[15:8];
                    weight_mem[{wr_addr, 2'd2}] <= wr_data[23:16];
                    weight_mem[{wr_addr, 2'd3}] <= wr_data[31:24];
                end
                SEL_BIAS: bias_mem[wr_addr[BI_AW-1:0]] <= wr_data;
                default: ;
            endcase
        end
    end

    assign rd_data = {ofmap_mem[{rd_addr, 2'd3}], ofmap_mem[{rd_addr, 2'd2}],
                      ofmap_mem[{rd_addr, 2'd1}], ofmap_mem[{rd_addr, 2'd0}]};

    // ---------------------------------------------------------------------------------------------------
    // configuration registers
    // ---------------------------------------------------------------------------------------------------
    reg [31:0] c_reg, h_reg, w_reg, f_reg, kh_reg, kw_reg, stride_reg, pad_reg, oh_reg, ow_reg;
    reg [15:0] mult_reg;
    reg [5:0]  shift_reg;
    reg        relu_reg;

    always @(posedge clk) begin
        if (rst) begin
            c_reg <= 32'd0; h_reg <= 32'd0; w_reg <= 32'd0; f_reg <= 32'd0;
            kh_reg <= 32'd0; kw_reg <= 32'd0; stride_reg <= 32'd0; pad_reg <= 32'd0;
            oh_reg <= 32'd0; ow_reg <= 32'd0;
            mult_reg <= 16'd0; shift_reg <= 6'd0; relu_reg <= 1'b0;
        end else if (cfg_en && state_reg == ST_IDLE) begin
            case (cfg_addr)
                4'd0: c_reg <= cfg_data;
                4'd1: h_reg <= cfg_data;
                4'd2: w_reg <= cfg_data;
                4'd3: f_reg <= cfg_data;
                4'd4: kh_reg <= cfg_data;
                4'd5: kw_reg <= cfg_data;
                4'd6: stride_reg <= cfg_data;
                4'd7: pad_reg <= cfg_data;
                4'd8: oh_reg <= cfg_data;
                4'd9: ow_reg <= cfg_data;
                4'd10: mult_reg <= cfg_data[15:0];
                4'd11: shift_reg <= cfg_data[5:0];
                4'd12: relu_reg <= cfg_data[0];
                default: ;
            endcase
        end
    end

    // derived layer sizes
    wire [31:0] khw = kh_reg * kw_reg;
    wire [31:0] k_len = c_reg * khw;                       // K: MAC steps per output
    wire [IF_AW-1:0] hw = h_reg[IF_AW-1:0] * w_reg[IF_AW-1:0];   // only its address use, modulo the buffer
    wire [31:0] n_pix = oh_reg * ow_reg;                   // P: output pixels per filter
    wire [31:0] period = (k_len < ROWS32) ? ROWS32 : k_len;

    // ---------------------------------------------------------------------------------------------------
    // the tile walker and address generator
    // ---------------------------------------------------------------------------------------------------
    reg [31:0]       t_reg;            // step within the tile (the MAC step k while t < K)
    reg [31:0]       tkw_reg;          // kernel column of step t
    reg [31:0]       tkh_reg;          // kernel row of step t
    reg [IF_AW-1:0]  koff_reg;         // c*H*W + kh*W + kw of step t, the part of the address common to rows
    reg [31:0]       p0_reg;           // first output pixel of the tile
    reg [31:0]       boh_reg;          // ... its (oh, ow)
    reg [31:0]       bow_reg;
    reg [31:0]       f0_reg;           // first filter of the tile
    reg [31:0]       tiles_issued_reg;
    reg [31:0]       tiles_drained_reg;
    reg [31:0]       cycle_reg;
    reg [31:0]       mac_reg;
    reg              done_reg;

    wire running = (state_reg == ST_RUN);
    wire empty_layer = (k_len == 32'd0) || (n_pix == 32'd0) || (f_reg == 32'd0);
    wire feeding = running && (t_reg < k_len);
    wire tile_end = running && (t_reg == period - 32'd1);
    wire last_ftile = (f0_reg + COLS32 >= f_reg);
    wire last_ptile = (p0_reg + ROWS32 >= n_pix);


    // address offsets that move koff from one (c, kh, kw) step to the next
    localparam [IF_AW-1:0] IF_ONE = 1;
    wire [IF_AW-1:0] d_next_kh = w_reg[IF_AW-1:0] - kw_reg[IF_AW-1:0] + IF_ONE;
    wire [IF_AW-1:0] d_next_c = hw - (kh_reg[IF_AW-1:0] - IF_ONE) * w_reg[IF_AW-1:0]
                                - kw_reg[IF_AW-1:0] + IF_ONE;

    wire [ROWS*8-1:0] a_feed_next;
    wire [ROWS-1:0]   row_valid;
    genvar r, c;
    generate
        for (r = 0; r < ROWS; r = r + 1) begin : g_rowaddr
            // (oh, ow) of this row: a chain of "next pixel" steps from the tile's first pixel (no divider)
            wire [31:0] oh_cur;
            wire [31:0] ow_cur;
            if (r == 0) begin : g_first
                assign oh_cur = boh_reg;
                assign ow_cur = bow_reg;
            end else begin : g_next
                assign oh_cur = g_rowaddr[r-1].oh_nxt;
                assign ow_cur = g_rowaddr[r-1].ow_nxt;
            end
            wire wrap = (ow_cur + 32'd1 == ow_reg);
            wire [31:0] oh_nxt = wrap ? oh_cur + 32'd1 : oh_cur;
            wire [31:0] ow_nxt = wrap ? 32'd0 : ow_cur + 32'd1;
            // top-left input coordinate of this row's window, and of the current tap (may be in the padding)
            wire signed [31:0] ih0 = $signed(oh_cur * stride_reg) - $signed(pad_reg);
            wire signed [31:0] iw0 = $signed(ow_cur * stride_reg) - $signed(pad_reg);
            wire signed [31:0] ih = ih0 + $signed(tkh_reg);
            wire signed [31:0] iw = iw0 + $signed(tkw_reg);
            wire in_bounds = (ih >= 0) && (ih < $signed(h_reg)) && (iw >= 0) && (iw < $signed(w_reg));
            wire [IF_AW-1:0] addr = ih0[IF_AW-1:0] * w_reg[IF_AW-1:0] + iw0[IF_AW-1:0] + koff_reg;
            assign row_valid[r] = (oh_cur < oh_reg);
            assign a_feed_next[r*8 +: 8] = (feeding && row_valid[r] && in_bounds) ? ifmap_mem[addr] : 8'd0;
        end
    endgenerate

    // the pixel after the tile's last row starts the next pixel tile
    wire [31:0] next_boh;
    wire [31:0] next_bow;
    generate
        if (ROWS >= 1) begin : g_next_base
            assign next_boh = g_rowaddr[ROWS-1].oh_nxt;
            assign next_bow = g_rowaddr[ROWS-1].ow_nxt;
        end else begin : g_no_rows
            assign next_boh = 32'd0;
            assign next_bow = 32'd0;
        end
    endgenerate

    wire [COLS*8-1:0] w_feed_next;
    generate
        for (c = 0; c < COLS; c = c + 1) begin : g_coladdr
            localparam [WT_AW-1:0] COL_OFF = c;
            wire col_valid = (f0_reg + c < f_reg);
            wire [WT_AW-1:0] addr = (f0_reg[WT_AW-1:0] + COL_OFF) * k_len[WT_AW-1:0] + t_reg[WT_AW-1:0];
            assign w_feed_next[c*8 +: 8] = (feeding && col_valid) ? weight_mem[addr] : 8'd0;
        end
    endgenerate

    // useful MACs of one step of this tile: real pixels x real filters
    wire [31:0] rows_used = last_ptile ? n_pix - p0_reg : ROWS32;
    wire [31:0] cols_used = last_ftile ? f_reg - f0_reg : COLS32;
    wire [31:0] macs_per_step = rows_used * cols_used;

    // operands of the array, registered (the buffers' synchronous read)
    reg [ROWS*8-1:0] a_feed_reg;
    reg [COLS*8-1:0] w_feed_reg;
    reg              valid_feed_reg;
    reg              first_feed_reg;
    reg              last_feed_reg;

    wire [COLS*32-1:0] drain_data;
    wire [COLS-1:0]    drain_first;
    wire               last_col_tile_done;

    always @(posedge clk) begin
        if (rst) begin
            state_reg <= ST_IDLE;
            t_reg <= 32'd0; tkw_reg <= 32'd0; tkh_reg <= 32'd0; koff_reg <= {IF_AW{1'b0}};
            p0_reg <= 32'd0; boh_reg <= 32'd0; bow_reg <= 32'd0; f0_reg <= 32'd0;
            tiles_issued_reg <= 32'd0; tiles_drained_reg <= 32'd0;
            cycle_reg <= 32'd0; mac_reg <= 32'd0; done_reg <= 1'b0;
            a_feed_reg <= {(ROWS*8){1'b0}};
            w_feed_reg <= {(COLS*8){1'b0}};
            valid_feed_reg <= 1'b0; first_feed_reg <= 1'b0; last_feed_reg <= 1'b0;
        end else begin
            a_feed_reg <= a_feed_next;
            w_feed_reg <= w_feed_next;
            valid_feed_reg <= feeding;
            first_feed_reg <= feeding && (t_reg == 32'd0);
            last_feed_reg <= feeding && (t_reg == k_len - 32'd1);
            if (state_reg != ST_IDLE) begin
                cycle_reg <= cycle_reg + 32'd1;
            end
            if (last_col_tile_done) begin
                tiles_drained_reg <= tiles_drained_reg + 32'd1;
            end
            case (state_reg)
                ST_IDLE: begin
                    if (start && empty_layer) begin
                        // nothing to compute (a register left at zero): finish at once rather than hang
                        done_reg <= 1'b1;
                        cycle_reg <= 32'd0;
                        mac_reg <= 32'd0;
                    end else if (start) begin
                        state_reg <= ST_RUN;
                        done_reg <= 1'b0;
                        t_reg <= 32'd0; tkw_reg <= 32'd0; tkh_reg <= 32'd0; koff_reg <= {IF_AW{1'b0}};
                        p0_reg <= 32'd0; boh_reg <= 32'd0; bow_reg <= 32'd0; f0_reg <= 32'd0;
                        tiles_issued_reg <= 32'd0; tiles_drained_reg <= 32'd0;
                        cycle_reg <= 32'd0; mac_reg <= 32'd0;
                    end
                end
                ST_RUN: begin
                    if (feeding) begin
                        mac_reg <= mac_reg + macs_per_step;
                    end
                    if (tile_end) begin
                        t_reg <= 32'd0; tkw_reg <= 32'd0; tkh_reg <= 32'd0; koff_reg <= {IF_AW{1'b0}};
                        tiles_issued_reg <= tiles_issued_reg + 32'd1;
                        if (last_ftile) begin
                            f0_reg <= 32'd0;
                            p0_reg <= p0_reg + ROWS32;
                            boh_reg <= next_boh;
                            bow_reg <= next_bow;
                            if (last_ptile) begin
                                state_reg <= ST_FLUSH;
                            end
                        end else begin
                            f0_reg <= f0_reg + COLS32;
                        end
                    end else begin
                        t_reg <= t_reg + 32'd1;
                        if (feeding) begin
                            if (tkw_reg + 32'd1 == kw_reg) begin
                                tkw_reg <= 32'd0;
                                if (tkh_reg + 32'd1 == kh_reg) begin
                                    tkh_reg <= 32'd0;
                                    koff_reg <= koff_reg + d_next_c;
                                end else begin
                                    tkh_reg <= tkh_reg + 32'd1;
                                    koff_reg <= koff_reg + d_next_kh;
                                end
                            end else begin
                                tkw_reg <= tkw_reg + 32'd1;
                                koff_reg <= koff_reg + IF_ONE;
                            end
                        end
                    end
                end
                ST_FLUSH: begin
                    if (tiles_drained_reg == tiles_issued_reg) begin
                        state_reg <= ST_IDLE;
                        done_reg <= 1'b1;
                    end
                end
                default: state_reg <= ST_IDLE;
            endcase
        end
    end

    assign busy = (state_reg != ST_IDLE);
    assign done = done_reg;
    assign cycle_count = cycle_reg;
    assign mac_count = mac_reg;

    // ---------------------------------------------------------------------------------------------------
    // the array
    // ---------------------------------------------------------------------------------------------------
    cnnx_systolic_array #(
        .ROWS(ROWS),
        .COLS(COLS),
        .DATA_W(8),
        .ACC_W(32)
    ) u_array (
        .clk(clk),
        .rst(rst),
        .a_west(a_feed_reg),
        .w_north(w_feed_reg),
        .valid(valid_feed_reg),
        .first(first_feed_reg),
        .last(last_feed_reg),
        .drain_data(drain_data),
        .drain_first(drain_first)
    );

    // ---------------------------------------------------------------------------------------------------
    // the output writers: one per column, bias + requantisation + write, one row per cycle
    // ---------------------------------------------------------------------------------------------------
    localparam [31:0] ROWS_M1 = ROWS - 1;
    wire [COLS-1:0]    wr_out;
    wire [COLS*OF_AW-1:0] out_addr;
    wire [COLS*8-1:0]  out_val;
    wire [COLS-1:0]    col_tile_done;
    wire [47:0]        round_half = {47'd0, 1'b1} << (shift_reg - 6'd1);

    generate
        for (c = 0; c < COLS; c = c + 1) begin : g_writer
            reg        busy_w_reg;
            reg [31:0] j_reg;          // rows of the tile already written
            reg [31:0] wp0_reg;        // the drained tile's first pixel and first filter
            reg [31:0] wf0_reg;
            wire active = drain_first[c] | busy_w_reg;
            wire [31:0] j = drain_first[c] ? 32'd0 : j_reg;
            wire [31:0] pix = wp0_reg + (ROWS_M1 - j);        // the bottom row leaves first
            wire [31:0] filt = wf0_reg + c;
            wire signed [31:0] bias = $signed(bias_mem[filt[BI_AW-1:0]]);
            wire signed [31:0] acc = $signed(drain_data[c*32 +: 32]) + bias;
            wire signed [47:0] scaled = {{16{acc[31]}}, acc} * $signed({32'd0, mult_reg});
            wire signed [47:0] shifted = (scaled + $signed(round_half)) >>> shift_reg;
            wire signed [47:0] rectified = (relu_reg && shifted < 0) ? 48'sd0 : shifted;
            wire [7:0] sat = (rectified > 48'sd127) ? 8'd127 :
                             (rectified < -48'sd128) ? 8'h80 : rectified[7:0];
            assign col_tile_done[c] = active && (j == ROWS_M1);
            assign wr_out[c] = active && (pix < n_pix) && (filt < f_reg);
            assign out_addr[c*OF_AW +: OF_AW] = filt[OF_AW-1:0] * n_pix[OF_AW-1:0] + pix[OF_AW-1:0];
            assign out_val[c*8 +: 8] = sat;
            always @(posedge clk) begin
                if (rst || (start && state_reg == ST_IDLE)) begin
                    busy_w_reg <= 1'b0;
                    j_reg <= 32'd0;
                    wp0_reg <= 32'd0;
                    wf0_reg <= 32'd0;
                end else if (active) begin
                    if (j == ROWS_M1) begin
                        busy_w_reg <= 1'b0;
                        j_reg <= 32'd0;
                        if (wf0_reg + COLS32 >= f_reg) begin
                            wf0_reg <= 32'd0;
                            wp0_reg <= wp0_reg + ROWS32;
                        end else begin
                            wf0_reg <= wf0_reg + COLS32;
                        end
                    end else begin
                        busy_w_reg <= 1'b1;
                        j_reg <= j + 32'd1;
                    end
                end
            end
        end
    endgenerate
    assign last_col_tile_done = col_tile_done[COLS-1];

    integer wc;
    always @(posedge clk) begin
        for (wc = 0; wc < COLS; wc = wc + 1) begin
            if (wr_out[wc]) begin
                ofmap_mem[out_addr[wc*OF_AW +: OF_AW]] <= out_val[wc*8 +: 8];
            end
        end
    end

endmodule

`default_nettype wire
