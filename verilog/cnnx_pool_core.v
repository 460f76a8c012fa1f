`default_nettype none
// cnnx_pool_core: int8 max and average pooling of one image (C, H, W), window and stride set at run time.
//
// LANES channels are pooled side by side, each lane reading one input byte per cycle (one read port per
// lane) through a two-stage pipeline (buffer read, then combine), windows back to back with no gap, so a
// layer of C x OH x OW windows of KSIZE x KSIZE takes
//     cycles = ceil(C / LANES) * OH * OW * KSIZE * KSIZE + 1
// counted like the conv core: from the cycle after `start` is sampled to the cycle `done` rises, both
// included; buffer loading and unloading are not counted (cnnx/cycles.py holds the same formula).
// Max pooling is exact. Average pooling requantises the int32 window sum the quant.py way with the MULT and
// SHIFT registers (the driver writes quant.avg_pool_multiplier(KSIZE*KSIZE)): clamp((sum * MULT +
// 2**(SHIFT-1)) >>> SHIFT, -128, 127), carried in 48 bits. No padding (the lectures' pooling has none).
//
// Host interface, as cnnx_conv_core's: wr_en/wr_addr/wr_data (32-bit word index, 4 input bytes little-
// endian; input byte (c, h, w) at c*H*W + h*W + w), cfg_en/cfg_addr/cfg_data (0 C, 1 H, 2 W, 3 KSIZE,
// 4 STRIDE, 5 OH, 6 OW, 7 MODE (0 max, 1 avg), 8 MULT, 9 SHIFT), start/busy/done, rd_addr -> rd_data (4
// output bytes; output (c, oh, ow) at c*OH*OW + oh*OW + ow), cycle_count. Writes are ignored while busy;
// a layer with a zero size finishes at once, without a run.
module cnnx_pool_core #(
    parameter LANES       = 4,      // channels pooled in parallel (1 ... 64)
    parameter IFMAP_DEPTH = 8192,   // input map buffer, bytes (power of two, 16 ... 65536)
    parameter OFMAP_DEPTH = 2048    // output map buffer, bytes (power of two, 16 ... 65536)
) (
    input  wire                               clk,
    input  wire                               rst,          // synchronous, active high
    input  wire                               wr_en,
    input  wire [$clog2(IFMAP_DEPTH)-3:0]     wr_addr,
    input  wire [31:0]                        wr_data,
    input  wire                               cfg_en,
    input  wire [3:0]                         cfg_addr,
    input  wire [31:0]                        cfg_data,
    input  wire                               start,
    output wire                               busy,
    output wire                               done,
    input  wire [$clog2(OFMAP_DEPTH)-3:0]     rd_addr,
    output wire [31:0]                        rd_data,
    output wire [31:0]                        cycle_count
);

    localparam IF_AW = $clog2(IFMAP_DEPTH);
    localparam OF_AW = $clog2(OFMAP_DEPTH);

    generate
        if ((1 << IF_AW) != IFMAP_DEPTH || (1 << OF_AW) != OFMAP_DEPTH || IF_AW < 4 || OF_AW < 4
                || IF_AW > 16 || OF_AW > 16) begin : g_bad_depth
            $fatal(1, "cnnx_pool_core: buffer depths must be powers of two in 16 ... 65536");
        end
        if (LANES < 1 || LANES > 64) begin : g_bad_lanes
            $fatal(1, "cnnx_pool_core: LANES must be in 1 ... 64, got %0d", LANES);
        end
    endgenerate

    reg [7:0] ifmap_mem [0:IFMAP_DEPTH-1];
    reg [7:0] ofmap_mem [0:OFMAP_DEPTH-1];

    localparam [1:0] ST_IDLE = 2'd0;
    localparam [1:0] ST_RUN = 2'd1;
    localparam [1:0] ST_FLUSH = 2'd2;
    reg [1:0] state_reg;

    always @(posedge clk) begin
        // host writes land only while idle; the buffer is not cleared by reset (the host reloads it)
        if (wr_en && state_reg == ST_IDLE && !rst) begin
            ifmap_mem[{wr_addr, 2'd0}] <= wr_data[7:0];
            ifmap_mem[{wr_addr, 2'd1}] <= wr_data[15:8];
            ifmap_mem[{wr_addr, 2'd2}] <= wr_data[23:16];
            ifmap_mem[{wr_addr, 2'd3}] <= wr_data[31:24];
        end
    end

    assign rd_data = {ofmap_mem[{rd_addr, 2'd3}], ofmap_mem[{rd_addr, 2'd2}],
                      ofmap_mem[{rd_addr, 2'd1}], ofmap_mem[{rd_addr, 2'd0}]};

    // configuration registers
    reg [31:0] c_reg, k_reg, oh_reg, ow_reg;
    reg [IF_AW-1:0] h_reg, w_reg, stride_reg;   // only address arithmetic uses them, modulo the buffer
    reg        mode_reg;
    reg [15:0] mult_reg;
    reg [5:0]  shift_reg;

    always @(posedge clk) begin
        if (rst) begin
            c_reg <= 32'd0; h_reg <= {IF_AW{1'b0}}; w_reg <= {IF_AW{1'b0}}; k_reg <= 32'd0;
            stride_reg <= {IF_AW{1'b0}};
            oh_reg <= 32'd0; ow_reg <= 32'd0; mode_reg <= 1'b0; mult_reg <= 16'd0; shift_reg <= 6'd0;
        end else if (cfg_en && state_reg == ST_IDLE) begin
            case (cfg_addr)
                4'd0: c_reg <= cfg_data;
                4'd1: h_reg <= cfg_data[IF_AW-1:0];
                4'd2: w_reg <= cfg_data[IF_AW-1:0];
                4'd3: k_reg <= cfg_data;
                4'd4: stride_reg <= cfg_data[IF_AW-1:0];
                4'd5: oh_reg <= cfg_data;
                4'd6: ow_reg <= cfg_data;
                4'd7: mode_reg <= cfg_data[0];
                4'd8: mult_reg <= cfg_data[15:0];
                4'd9: shift_reg <= cfg_data[5:0];
                default: ;
            endcase
        end
    end

    // the window walker (stage 0): channel group, output row/column, tap row/column
    localparam [31:0] LANES32 = LANES;
    reg [31:0]      ch_reg, oh_i_reg, ow_i_reg, kh_i_reg, kw_i_reg;
    reg [31:0]      cycle_reg;
    reg             done_reg;

    wire last_kw = (kw_i_reg + 32'd1 == k_reg);
    wire last_kh = (kh_i_reg + 32'd1 == k_reg);
    wire last_ow = (ow_i_reg + 32'd1 == ow_reg);
    wire last_oh = (oh_i_reg + 32'd1 == oh_reg);
    wire last_ch = (ch_reg + LANES32 >= c_reg);
    wire running = (state_reg == ST_RUN);
    wire empty_layer = (c_reg == 32'd0) || (k_reg == 32'd0) || (oh_reg == 32'd0) || (ow_reg == 32'd0);

    // lane 0's input address of the current tap and output index of the current window, modulo the
    // buffers (the host guarantees C*H*W and C*OH*OW fit); lane l adds l channel planes to both
    wire [IF_AW-1:0] hw = h_reg * w_reg;
    wire [OF_AW-1:0] ohow = oh_reg[OF_AW-1:0] * ow_reg[OF_AW-1:0];
    wire [IF_AW-1:0] ih = oh_i_reg[IF_AW-1:0] * stride_reg + kh_i_reg[IF_AW-1:0];
    wire [IF_AW-1:0] iw = ow_i_reg[IF_AW-1:0] * stride_reg + kw_i_reg[IF_AW-1:0];
    wire [IF_AW-1:0] addr = ch_reg[IF_AW-1:0] * hw + ih * w_reg + iw;
    wire [OF_AW-1:0] oidx = ch_reg[OF_AW-1:0] * ohow + oh_i_reg[OF_AW-1:0] * ow_reg[OF_AW-1:0]
                            + ow_i_reg[OF_AW-1:0];

    // stage 1 registers: the flags of the bytes read (the bytes themselves are per lane, below)
    reg             valid_q_reg;
    reg             first_q_reg;
    reg             last_q_reg;
    reg [OF_AW-1:0] oidx_q_reg;

    always @(posedge clk) begin
        if (rst) begin
            state_reg <= ST_IDLE;
            ch_reg <= 32'd0; oh_i_reg <= 32'd0; ow_i_reg <= 32'd0; kh_i_reg <= 32'd0; kw_i_reg <= 32'd0;
            cycle_reg <= 32'd0;
            done_reg <= 1'b0;
            valid_q_reg <= 1'b0; first_q_reg <= 1'b0; last_q_reg <= 1'b0;
            oidx_q_reg <= {OF_AW{1'b0}};
        end else begin
            valid_q_reg <= running;
            first_q_reg <= (kh_i_reg == 32'd0) && (kw_i_reg == 32'd0);
            last_q_reg <= last_kh && last_kw;
            oidx_q_reg <= oidx;
            if (state_reg != ST_IDLE) begin
                cycle_reg <= cycle_reg + 32'd1;
            end
            case (state_reg)
                ST_IDLE: begin
                    if (start && empty_layer) begin
                        // nothing to pool (a register left at zero): finish at once rather than hang
                        done_reg <= 1'b1;
                        cycle_reg <= 32'd0;
                    end else if (start) begin
                        state_reg <= ST_RUN;
                        done_reg <= 1'b0;
                        ch_reg <= 32'd0; oh_i_reg <= 32'd0; ow_i_reg <= 32'd0;
                        kh_i_reg <= 32'd0; kw_i_reg <= 32'd0;
                        cycle_reg <= 32'd0;
                    end
                end
                ST_RUN: begin
                    // walk kw fastest, then kh, then ow, oh, channel
                    if (!last_kw) begin
                        kw_i_reg <= kw_i_reg + 32'd1;
                    end else begin
                        kw_i_reg <= 32'd0;
                        if (!last_kh) begin
                            kh_i_reg <= kh_i_reg + 32'd1;
                        end else begin
                            kh_i_reg <= 32'd0;
                            if (!last_ow) begin
                                ow_i_reg <= ow_i_reg + 32'd1;
                            end else begin
                                ow_i_reg <= 32'd0;
                                if (!last_oh) begin
                                    oh_i_reg <= oh_i_reg + 32'd1;
                                end else begin
                                    oh_i_reg <= 32'd0;
                                    if (!last_ch) begin
                                        ch_reg <= ch_reg + LANES32;
                                    end else begin
                                        state_reg <= ST_FLUSH;
                                    end
                                end
                            end
                        end
                    end
                end
                ST_FLUSH: begin
                    // the last window's byte is combined and written on this edge
                    state_reg <= ST_IDLE;
                    done_reg <= 1'b1;
                end
                default: state_reg <= ST_IDLE;
            endcase
        end
    end

    // per lane: stage 1 reads the byte, stage 2 combines it with the running max / sum; the window's result
    // is written on its last byte. Lanes past the last channel (C not a multiple of LANES) write nothing.
    wire [47:0] round_half = {47'd0, 1'b1} << (shift_reg - 6'd1);
    wire [LANES-1:0]       wr_lane;
    wire [LANES*8-1:0]     wr_val;
    wire [LANES*OF_AW-1:0] wr_idx;
    genvar l;
    generate
        for (l = 0; l < LANES; l = l + 1) begin : g_lane
            localparam [IF_AW-1:0] L_IF = l;
            localparam [OF_AW-1:0] L_OF = l;
            reg [7:0]          d_reg;
            reg                on_q_reg;     // this lane has a channel in the current group
            reg signed [7:0]   max_reg;
            reg signed [31:0]  sum_reg;
            wire signed [7:0]  d = $signed(d_reg);
            wire signed [7:0]  max_next = (first_q_reg || d > max_reg) ? d : max_reg;
            wire signed [31:0] sum_next = (first_q_reg ? 32'sd0 : sum_reg) + {{24{d[7]}}, d};
            wire signed [47:0] scaled = {{16{sum_next[31]}}, sum_next} * $signed({32'd0, mult_reg});
            wire signed [47:0] shifted = (scaled + $signed(round_half)) >>> shift_reg;
            wire [7:0] avg = (shifted > 48'sd127) ? 8'd127 : (shifted < -48'sd128) ? 8'h80 : shifted[7:0];
            always @(posedge clk) begin
                if (rst) begin
                    d_reg <= 8'd0;
                    on_q_reg <= 1'b0;
                    max_reg <= 8'sd0;
                    sum_reg <= 32'sd0;
                end else begin
                    d_reg <= ifmap_mem[addr + L_IF * hw];
                    on_q_reg <= (ch_reg + l < c_reg);
                    if (valid_q_reg) begin
                        max_reg <= max_next;
                        sum_reg <= sum_next;
                    end
                end
            end
            assign wr_lane[l] = valid_q_reg && last_q_reg && on_q_reg;
            assign wr_val[l*8 +: 8] = mode_reg ? avg : max_next;
            assign wr_idx[l*OF_AW +: OF_AW] = oidx_q_reg + L_OF * ohow;
        end
    endgenerate

    integer wl;
    always @(posedge clk) begin
        for (wl = 0; wl < LANES; wl = wl + 1) begin
            if (!rst && wr_lane[wl]) begin
                ofmap_mem[wr_idx[wl*OF_AW +: OF_AW]] <= wr_val[wl*8 +: 8];
            end
        end
    end

    assign busy = (state_reg != ST_IDLE);
    assign done = done_reg;
    assign cycle_count = cycle_reg;

endmodule

`default_nettype wire
