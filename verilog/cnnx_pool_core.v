`default_nettype none
// cnnx_pool_core: int8 max and average pooling of one image (C, H, W), window and stride set at run time.
//
// LANES channels are pooled side by side, each lane reading one input byte per cycle, windows back to back
// with no gap, so a layer of C x OH x OW windows of KSIZE x KSIZE takes
//     cycles = ceil(C / LANES) * OH * OW * KSIZE * KSIZE + 16
// counted like the conv core: from the cycle after `start` is sampled to the cycle `done` rises, both
// included; buffer loading and unloading are not counted (cnnx/cycles.py holds the same formula and derives
// the constant: the pipeline below).
// Max pooling is exact. Average pooling requantises the int32 window sum through cnnx_requant with the MULT
// and SHIFT registers (the driver writes quant.avg_pool_multiplier(KSIZE*KSIZE)) and a zero bias. No
// padding (the lectures' pooling has none).
//
// Pipeline: stage T, the window walker (addresses by adding: the window's base moves by STRIDE, STRIDE*W at
// the end of an output row, H*W at the end of a channel group; the tap's offset by 1 or W); stage A, base
// + tap offset; stage B, the block-RAM read; B2, the RAM's output register; stage C, the byte select;
// stage C2, the running max's comparisons; stage D, the running max and sum; stage E, the window's result;
// then cnnx_requant (10 stages, the max value riding in its tag) and the write. No multiplier anywhere.
//
// Buffers: input and output are banked by lane (channel c lives in bank c mod LANES, at local channel index
// c div LANES), so the lanes read (and write) the same local address in their own bank: no copies. Each
// bank is a block RAM of 32-bit words with a registered read.
//
// Host interface, as cnnx_conv_core's: wr_en/wr_addr/wr_data (32-bit words; word w of bank l at word
// address w*LP + l, LP = LANES rounded up to a power of two; bank l's byte (c', h, w) at c'*H*W + h*W + w),
// cfg_en/cfg_addr/cfg_data (0 C, 1 H, 2 W, 3 KSIZE, 4 STRIDE, 5 OH, 6 OW, 7 MODE (0 max, 1 avg), 8 MULT,
// 9 SHIFT, 10 H*W, 11 STRIDE*W: the host computes the products), start/busy/done, rd_addr -> rd_data one
// cycle later (registered; word w of output bank l at w*LP + l, bank l's byte (c', oh, ow) at c'*OH*OW +
// oh*OW + ow), cycle_count. Writes are ignored while busy; a layer with a zero size finishes at once.
module cnnx_pool_core #(
    parameter LANES       = 4,      // channels pooled in parallel (1 ... 64)
    parameter IFMAP_DEPTH = 8192,   // input map buffer, bytes, all banks (power of two, 16 ... 65536)
    parameter OFMAP_DEPTH = 2048    // output map buffer, bytes, all banks (power of two, 16 ... 65536)
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
    localparam LB    = $clog2(LANES);            // bank-number bits (LP = 2**LB)
    localparam IB_AW = IF_AW - LB;               // byte address within an input bank
    localparam OB_AW = OF_AW - LB;               // byte address within an output bank
    localparam D     = 17;                       // layer dimensions: up to 65536

    generate
        if ((1 << IF_AW) != IFMAP_DEPTH || (1 << OF_AW) != OFMAP_DEPTH || IF_AW < 4 || OF_AW < 4
                || IF_AW > 16 || OF_AW > 16) begin : g_bad_depth
            $fatal(1, "cnnx_pool_core: buffer depths must be powers of two in 16 ... 65536");
        end
        if (LANES < 1 || LANES > 64) begin : g_bad_lanes
            $fatal(1, "cnnx_pool_core: LANES must be in 1 ... 64, got %0d", LANES);
        end
        if (IB_AW < 3 || OB_AW < 3) begin : g_bad_banks
            $fatal(1, "cnnx_pool_core: each lane's bank needs >= 8 bytes (depth / LANES rounded up to 2**n)");
        end
    endgenerate

    localparam [1:0] ST_IDLE = 2'd0;
    localparam [1:0] ST_RUN = 2'd1;
    localparam [1:0] ST_FLUSH = 2'd2;
    reg [1:0] state_reg;
    wire idle = (state_reg == ST_IDLE);

    // configuration registers, sized to their fields
    reg [D-1:0]     c_reg, k_reg, oh_reg, ow_reg;
    reg [IB_AW-1:0] w_reg, stride_reg, hw_reg, sw_reg;   // address steps, modulo the bank
    reg             mode_reg;
    reg [15:0]      mult_reg;
    reg [5:0]       shift_reg;
    reg [D-1:0]     k_m2_reg, ow_m2_reg, oh_m2_reg;    // N - 2: i + 1 == N - 1 is i == N - 2, no adder
    reg             k_is1_reg, ow_is1_reg, oh_is1_reg, c_le_lanes_reg;

    always @(posedge clk) begin
        if (rst) begin
            c_reg <= {D{1'b0}}; k_reg <= {D{1'b0}}; oh_reg <= {D{1'b0}}; ow_reg <= {D{1'b0}};
            w_reg <= {IB_AW{1'b0}}; stride_reg <= {IB_AW{1'b0}}; hw_reg <= {IB_AW{1'b0}};
            sw_reg <= {IB_AW{1'b0}};
            mode_reg <= 1'b0; mult_reg <= 16'd0; shift_reg <= 6'd0;
        end else if (cfg_en && idle) begin
            case (cfg_addr)
                4'd0: c_reg <= cfg_data[D-1:0];
                4'd2: w_reg <= cfg_data[IB_AW-1:0];
                4'd3: k_reg <= cfg_data[D-1:0];
                4'd4: stride_reg <= cfg_data[IB_AW-1:0];
                4'd5: oh_reg <= cfg_data[D-1:0];
                4'd6: ow_reg <= cfg_data[D-1:0];
                4'd7: mode_reg <= cfg_data[0];
                4'd8: mult_reg <= cfg_data[15:0];
                4'd9: shift_reg <= cfg_data[5:0];
                4'd10: hw_reg <= cfg_data[IB_AW-1:0];
                4'd11: sw_reg <= cfg_data[IB_AW-1:0];
                default: ;   // 1 (H) is implied by H*W; the walker needs no bounds check
            endcase
        end
    end
    wire unused_cfg = ^cfg_data[31:D];
    always @(posedge clk) begin
        // static while a run lasts; a run's first comparison comes a cycle after start
        k_m2_reg <= k_reg - {{(D-2){1'b0}}, 2'd2};
        ow_m2_reg <= ow_reg - {{(D-2){1'b0}}, 2'd2};
        oh_m2_reg <= oh_reg - {{(D-2){1'b0}}, 2'd2};
        k_is1_reg <= (k_reg == 1);
        ow_is1_reg <= (ow_reg == 1);
        oh_is1_reg <= (oh_reg == 1);
        c_le_lanes_reg <= (c_reg <= LANES32[D-1:0]);
    end

    // ---------------------------------------------------------------------------------------------------
    // stage T: the window walker: channel group, output row/column, tap row/column
    // ---------------------------------------------------------------------------------------------------
    localparam [31:0] LANES32 = LANES;
    reg [D-1:0]       crem_reg;          // C minus the group's first channel (channels from it on)
    reg [D-1:0]       oh_i_reg, ow_i_reg, kh_i_reg, kw_i_reg;
    reg [IB_AW-1:0]   ch_base_reg, row_base_reg, win_reg, tap_row_reg, tap_reg;
    reg [OB_AW-1:0]   oidx_reg;          // output byte of this window in every lane's bank
    reg [LANES-1:0]   lane_on_reg;       // lanes with a channel in this group
    reg [31:0]        cycle_reg;
    reg               done_reg;
    reg               t_valid_reg;

    // "last index" flags, registered with their counters (the walker's decisions start from registers)
    reg  last_kw, last_kh, last_ow, last_oh, last_ch;
    wire running = (state_reg == ST_RUN);
    reg  empty_layer;    // a zero size, registered (static while idle)
    always @(posedge clk) begin
        empty_layer <= (c_reg == 0) || (k_reg == 0) || (oh_reg == 0) || (ow_reg == 0);
    end
    // the next group's lanes and last-group flag compare crem_reg with constants: no adder before them
    localparam [31:0] LANES2_32 = 2 * LANES;

    wire [LANES-1:0] lane_on_first;    // lane l has channel l, (next group) its first channel + l
    wire [LANES-1:0] lane_on_next;
    genvar l;
    generate
        for (l = 0; l < LANES; l = l + 1) begin : g_on
            localparam [31:0] L32 = l;
            assign lane_on_first[l] = (L32[D-1:0] < c_reg);
            localparam [31:0] NEXT32 = l + LANES;
            assign lane_on_next[l] = (NEXT32[D-1:0] < crem_reg);
        end
    endgenerate
    always @(posedge clk) begin
        if (rst) begin
            state_reg <= ST_IDLE;
            cycle_reg <= 32'd0;
            done_reg <= 1'b0;
            t_valid_reg <= 1'b0;
        end else begin
            if (!idle) begin
                cycle_reg <= cycle_reg + 32'd1;
            end
            case (state_reg)
                ST_IDLE: begin
                    // the walker is held at its first window while idle (not loaded on `start`: the
                    // walker's registers then do not wait for the start decision)
                    crem_reg <= c_reg; oh_i_reg <= {D{1'b0}}; ow_i_reg <= {D{1'b0}};
                    kh_i_reg <= {D{1'b0}}; kw_i_reg <= {D{1'b0}};
                    last_kw <= k_is1_reg; last_kh <= k_is1_reg; last_ow <= ow_is1_reg;
                    last_oh <= oh_is1_reg; last_ch <= c_le_lanes_reg;
                    ch_base_reg <= {IB_AW{1'b0}}; row_base_reg <= {IB_AW{1'b0}};
                    win_reg <= {IB_AW{1'b0}}; tap_row_reg <= {IB_AW{1'b0}}; tap_reg <= {IB_AW{1'b0}};
                    oidx_reg <= {OB_AW{1'b0}};
                    lane_on_reg <= lane_on_first;
                    if (start && empty_layer) begin
                        // nothing to pool (a register left at zero): finish at once rather than hang
                        done_reg <= 1'b1;
                        cycle_reg <= 32'd0;
                    end else if (start) begin
                        state_reg <= ST_RUN;
                        done_reg <= 1'b0;
                        cycle_reg <= 32'd0;
                        t_valid_reg <= 1'b1;
                    end
                end
                ST_RUN: begin
                    // walk kw fastest, then kh, then ow, oh, channel group
                    if (!last_kw) begin
                        kw_i_reg <= kw_i_reg + 1'b1;
                        last_kw <= (kw_i_reg == k_m2_reg);
                        tap_reg <= tap_reg + 1'b1;
                    end else if (!last_kh) begin
                        kw_i_reg <= {D{1'b0}};
                        last_kw <= k_is1_reg;
                        kh_i_reg <= kh_i_reg + 1'b1;
                        last_kh <= (kh_i_reg == k_m2_reg);
                        tap_row_reg <= tap_row_reg + w_reg;
                        tap_reg <= tap_row_reg + w_reg;
                    end else begin
                        // the window is complete: the next one
                        kw_i_reg <= {D{1'b0}}; kh_i_reg <= {D{1'b0}};
                        last_kw <= k_is1_reg; last_kh <= k_is1_reg;
                        tap_row_reg <= {IB_AW{1'b0}}; tap_reg <= {IB_AW{1'b0}};
                        oidx_reg <= oidx_reg + 1'b1;
                        if (!last_ow) begin
                            ow_i_reg <= ow_i_reg + 1'b1;
                            last_ow <= (ow_i_reg == ow_m2_reg);
                            win_reg <= win_reg + stride_reg;
                        end else begin
                            ow_i_reg <= {D{1'b0}};
                            last_ow <= ow_is1_reg;
                            if (!last_oh) begin
                                oh_i_reg <= oh_i_reg + 1'b1;
                                last_oh <= (oh_i_reg == oh_m2_reg);
                                row_base_reg <= row_base_reg + sw_reg;
                                win_reg <= row_base_reg + sw_reg;
                            end else begin
                                oh_i_reg <= {D{1'b0}};
                                last_oh <= oh_is1_reg;
                                last_ch <= (crem_reg <= LANES2_32[D-1:0]);
                                ch_base_reg <= ch_base_reg + hw_reg;
                                row_base_reg <= ch_base_reg + hw_reg;
                                win_reg <= ch_base_reg + hw_reg;
                                crem_reg <= crem_reg - LANES32[D-1:0];
                                lane_on_reg <= lane_on_next;
                                if (last_ch) begin
                                    state_reg <= ST_FLUSH;
                                    t_valid_reg <= 1'b0;
                                end
                            end
                        end
                    end
                end
                ST_FLUSH: begin
                    // until the last window's result is written
                    if (last_write) begin
                        state_reg <= ST_IDLE;
                        done_reg <= 1'b1;
                    end
                end
                default: state_reg <= ST_IDLE;
            endcase
        end
    end

    assign busy = !idle;
    assign done = done_reg;
    assign cycle_count = cycle_reg;

    // ---------------------------------------------------------------------------------------------------
    // stages A ... E
    // ---------------------------------------------------------------------------------------------------
    reg              a_valid_reg, b_valid_reg, c_valid_reg, c2_valid_reg, e_valid_reg;
    reg              a_first_reg, b_first_reg, c_first_reg, c2_first_reg;
    reg              a_last_reg, b_last_reg, c_last_reg, c2_last_reg;
    reg              a_fin_reg, b_fin_reg, c_fin_reg, c2_fin_reg, e_fin_reg;
    reg [IB_AW-1:0]  a_addr_reg;
    reg [1:0]        b_lane_reg, b2_lane_reg;
    reg              b2_valid_reg, b2_first_reg, b2_last_reg, b2_fin_reg;
    reg [OB_AW-1:0]  b2_oidx_reg;
    reg [LANES-1:0]  b2_on_reg;
    reg [OB_AW-1:0]  a_oidx_reg, b_oidx_reg, c_oidx_reg, c2_oidx_reg, e_oidx_reg;
    reg [LANES-1:0]  a_on_reg, b_on_reg, c_on_reg, c2_on_reg, e_on_reg;

    always @(posedge clk) begin
        if (rst) begin
            a_valid_reg <= 1'b0; b_valid_reg <= 1'b0; b2_valid_reg <= 1'b0; c_valid_reg <= 1'b0;
            c2_valid_reg <= 1'b0; e_valid_reg <= 1'b0;
        end else begin
            a_valid_reg <= running && t_valid_reg;
            b_valid_reg <= a_valid_reg;
            b2_valid_reg <= b_valid_reg;
            c_valid_reg <= b2_valid_reg;
            c2_valid_reg <= c_valid_reg;
            e_valid_reg <= c2_valid_reg && c2_last_reg;
        end
        a_first_reg <= (kh_i_reg == 0) && (kw_i_reg == 0);
        a_last_reg <= last_kh && last_kw;
        a_fin_reg <= last_kh && last_kw && last_ow && last_oh && last_ch;   // the run's last window
        a_addr_reg <= win_reg + tap_reg;
        a_oidx_reg <= oidx_reg;
        a_on_reg <= lane_on_reg;
        b_first_reg <= a_first_reg; b_last_reg <= a_last_reg; b_fin_reg <= a_fin_reg;
        b_lane_reg <= a_addr_reg[1:0];
        b_oidx_reg <= a_oidx_reg; b_on_reg <= a_on_reg;
        b2_first_reg <= b_first_reg; b2_last_reg <= b_last_reg; b2_fin_reg <= b_fin_reg;
        b2_oidx_reg <= b_oidx_reg; b2_on_reg <= b_on_reg; b2_lane_reg <= b_lane_reg;
        c_first_reg <= b2_first_reg; c_last_reg <= b2_last_reg; c_fin_reg <= b2_fin_reg;
        c_oidx_reg <= b2_oidx_reg; c_on_reg <= b2_on_reg;
        c2_first_reg <= c_first_reg; c2_last_reg <= c_last_reg; c2_fin_reg <= c_fin_reg;
        c2_oidx_reg <= c_oidx_reg; c2_on_reg <= c_on_reg;
        e_fin_reg <= c2_valid_reg && c2_last_reg && c2_fin_reg;
        e_oidx_reg <= c2_oidx_reg; e_on_reg <= c2_on_reg;
    end

    // per lane: the input bank, the byte select (stage C), the running max's comparisons (C2), the running
    // max and sum (stage D, registered into stage E on the window's last byte), the requantiser and the
    // output bank
    localparam TAG_W = 8 + 1 + 1 + OB_AW;      // max value, lane on, last window, output byte
    wire last_write;     // lane 0 (which always has a channel) writes the run's last result
    wire [LANES*32-1:0] of_word;
    generate
        for (l = 0; l < LANES; l = l + 1) begin : g_lane
            wire [31:0]        word;
            reg signed [7:0]   d_reg;     // stage C: the byte
            reg signed [7:0]   dd_reg;    // stage C2: the byte, with its comparisons
            reg signed [7:0]   max_reg;
            reg signed [31:0]  sum_reg;
            reg signed [7:0]   e_max_reg;
            reg signed [31:0]  e_sum_reg;
            // the running max without a comparator in its loop: whether dd_reg beats max_reg is decided one
            // cycle early (stage C2, from registers), from what max_reg is about to become: max_reg
            // unchanged (no byte entered), the entering byte alone (a window's first) or the larger of the
            // two (d > max(a, b) is d > a and d > b); stage D then only muxes
            reg                gt_max_reg, gt_d_reg, p_valid_reg, p_first_reg;
            wire               gt = p_valid_reg ? (gt_d_reg && (p_first_reg || gt_max_reg)) : gt_max_reg;
            wire signed [7:0]  max_next = (c2_first_reg || gt) ? dd_reg : max_reg;
            reg [15:0]         mult_q;    // MULT and SHIFT, one copy per lane (next to its requantiser)
            reg [5:0]          shift_q;
            wire signed [31:0] sum_next = (c2_first_reg ? 32'sd0 : sum_reg) + {{24{dd_reg[7]}}, dd_reg};
            wire               rq_valid;
            wire [7:0]         rq_y;
            wire [TAG_W-1:0]   rq_tag;

            wire bank_sel;
            if (LB == 0) begin : g_one_bank
                assign bank_sel = 1'b1;
            end else begin : g_banks
                localparam [LB-1:0] BANK = l;
                assign bank_sel = (wr_addr[LB-1:0] == BANK);
            end
            cnnx_ram_sdp #(
                .WIDTH(32),
                .DEPTH(IFMAP_DEPTH / (1 << LB) / 4),
                .OUT_REG(1)
            ) u_ifmap (
                .clk(clk),
                .we({4{wr_en && idle && !rst && bank_sel}}),
                .waddr(wr_addr[IF_AW-3:LB]),
                .wdata(wr_data),
                .re(1'b1),
                .raddr(a_addr_reg[IB_AW-1:2]),
                .rdata(word)
            );

            always @(posedge clk) begin
                case (b2_lane_reg)
                    2'd0: d_reg <= word[7:0];
                    2'd1: d_reg <= word[15:8];
                    2'd2: d_reg <= word[23:16];
                    default: d_reg <= word[31:24];
                endcase
                dd_reg <= d_reg;
                // signed order as unsigned order of the sign-flipped bytes: one carry chain, no sign logic
                gt_max_reg <= ({~d_reg[7], d_reg[6:0]} > {~max_reg[7], max_reg[6:0]});
                gt_d_reg <= ({~d_reg[7], d_reg[6:0]} > {~dd_reg[7], dd_reg[6:0]});
                p_valid_reg <= c2_valid_reg;
                p_first_reg <= c2_first_reg;
                if (c2_valid_reg) begin
                    max_reg <= max_next;
                    sum_reg <= sum_next;
                end
                e_max_reg <= max_next;
                e_sum_reg <= sum_next;
            end

            cnnx_requant #(
                .TAG_W(TAG_W)
            ) u_requant (
                .clk(clk),
                .rst(rst),
                .in_valid(e_valid_reg),
                .acc(e_sum_reg),
                .bias(32'd0),
                .tag_in({e_max_reg, e_on_reg[l], e_fin_reg, e_oidx_reg}),
                .mult(mult_q),
                .shift(shift_q),
                .relu(1'b0),
                .out_valid(rq_valid),
                .y(rq_y),
                .tag_out(rq_tag)
            );
            // MULT and SHIFT reach lane l through (l mod 4) + 1 registers, from the configuration or the lane
            // before: copies the synthesis keeps apart (they have different inputs), each near its lane's
            // requantiser; they settle within 4 cycles of a write, long before a first window sum
            if (l % 4 == 0) begin : g_mult_head
                always @(posedge clk) {shift_q, mult_q} <= {shift_reg, mult_reg};
            end else begin : g_mult_next
                always @(posedge clk) {shift_q, mult_q} <= {g_lane[l-1].shift_q, g_lane[l-1].mult_q};
            end
            wire [7:0] value = mode_reg ? rq_y : rq_tag[TAG_W-1 -: 8];
            wire       wr = rq_valid && rq_tag[OB_AW+1];
            if (l == 0) begin : g_fin
                assign last_write = rq_valid && rq_tag[OB_AW];
            end

            cnnx_ram_sdp #(
                .WIDTH(32),
                .DEPTH(OFMAP_DEPTH / (1 << LB) / 4)
            ) u_ofmap (
                .clk(clk),
                .we({4{wr}} & (4'b0001 << rq_tag[1:0])),
                .waddr(rq_tag[OB_AW-1:2]),
                .wdata({4{value}}),
                .re(1'b1),
                .raddr(rd_addr[OF_AW-3:LB]),
                .rdata(of_word[l*32 +: 32])
            );
        end
    endgenerate

    // the host read: the bank of the word, registered with it
    generate
        if (LB == 0) begin : g_rd_one
            assign rd_data = of_word[31:0];
        end else begin : g_rd_banks
            reg [LB-1:0] rd_bank_reg;
            always @(posedge clk) rd_bank_reg <= rd_addr[LB-1:0];
            wire [31:0] bank32 = {{(32-LB){1'b0}}, rd_bank_reg};
            assign rd_data = (bank32 < LANES32) ? of_word[rd_bank_reg * 32 +: 32] : 32'd0;
        end
    endgenerate

endmodule

`default_nettype wire
