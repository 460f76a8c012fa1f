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
// cycles) ends before the next tile's results arrive, and so that the pixel walker (below) has the ROWS
// cycles it needs to prepare the next pixel tile. A run starts with ROWS set-up cycles (the walker prepares
// the first pixel tile); tiles are then issued back to back, the drain and requantisation of one tile
// overlapping the compute of the next, so a layer takes
//     cycles = ROWS + (T - 1) * PERIOD + K + 2*ROWS + COLS + 16,   T = ceil(OH*OW / ROWS) * ceil(F / COLS)
// counted from the cycle after `start` is sampled to the cycle `done` rises, both included (the cycles
// `busy` is high). Buffer loading and unloading through the host ports are not counted.
// cnnx/cycles.py holds the same formula (and derives the constant); tests check the counter against it.
//
// Timing: no multiplier on any address path. Addresses come from counters and adders, one register stage
// each: the tap walker (stage T: c, kh, kw and the offset c*H*W + kh*W + kw, advanced by adding 1, W or
// H*W), per-row sums (stage A: row base + offset, ih0 + kh, iw0 + kw), the bounds check and the block-RAM
// read (stage B), the RAM's output register (stage B2: nothing but a register follows a block RAM), the byte
// select (stage C, the array's input register). Each row's window origin (ih0, iw0)
// and base address come from a pixel walker that steps pixel by pixel (adding STRIDE, or STRIDE*W at the
// end of an output row) into a staging shift register during the previous pixel tile.
//
// Buffers (all block RAM, registered read ports, no copy per read port):
//   input map  one copy per PAIR of rows, each a true dual-port RAM whose two ports serve two rows (the
//              ROWS rows read ROWS unrelated addresses every cycle: their windows sit at stride-dependent
//              places, so no address interleaving makes them conflict-free; the host's writes are
//              broadcast to every copy through port A while idle)
//   weights    one bank per column (filters c, c+COLS, ... : bank c holds filter j*COLS + c's K bytes at
//              j*K ...), all read at the same address
//   bias       one bank per column, int32 entry j = filter j*COLS + c
//   output     one bank per column, written in drain order: the column's n-th drained row goes to byte n
//              (tile-major, bottom row first); the host reorders (cnnx/sim/drivers.py)
// Banks hold WEIGHT_DEPTH / CP, BIAS_DEPTH / CP and OFMAP_DEPTH / CP (CP = COLS rounded up to a power of
// two) bytes / entries / bytes each.
//
// Host interface (everything synchronous to clk):
//   memory write port  wr_en, wr_sel (0 input map, 1 weights, 2 bias), wr_addr (32-bit word index),
//                      wr_data: 4 bytes little-endian for the byte buffers, one int32 for the bias.
//                      input map byte (c, h, w) at c*H*W + h*W + w; weights: word w of column bank c at
//                      c * (WEIGHT_DEPTH/CP/4) + w; bias: entry j of bank c at c * (BIAS_DEPTH/CP) + j
//   register port      cfg_en, cfg_addr, cfg_data: 0 C, 1 H, 2 W, 3 F, 4 KH, 5 KW, 6 STRIDE, 7 PAD, 8 OH,
//                      9 OW, 10 MULT, 11 SHIFT, 12 RELU (bit 0) | RAW (bit 1) | RAW_BYTE (bits 3:2),
//                      13 H*W, 14 STRIDE*W, 15 PAD*W + PAD.
//                      Raw-accumulator mode (RAW = 1): each output byte is byte RAW_BYTE of the exact int32
//                      accumulator (bias NOT added, no requantisation); the host runs a tile once per byte it
//                      needs and reassembles the int32 (input-channel tiling, cnnx/compile/tiling.py). Same
//                      schedule and cycles as a requantised run.
//                      The host computes OH/OW ("window must fit", cnnx/shapes.py) and the three products,
//                      as a layer descriptor would: the core neither divides nor multiplies.
//   start / busy / done  start is sampled when idle; done stays high from the end of a run to the next start
//                      (a layer with a zero size finishes at once, without a run)
//   read port          rd_addr -> rd_data one cycle later (registered): word w of output bank c at
//                      c * (OFMAP_DEPTH/CP/4) + w
//   cycle_count        cycles of the last (or current) run; mac_count: useful MACs (real pixel x real filter
//                      pairs, padding taps included) of that run, for utilisation = mac_count /
//                      (cycle_count * ROWS * COLS)
// The host must keep the registers and buffers unchanged while busy (writes are ignored then) and must make
// every sum fit int32 (the driver checks with cnnx.quant.check_acc_range); requantisation: cnnx_requant.v.
module cnnx_conv_core #(
    parameter ROWS         = 8,       // systolic array rows (output pixels per tile)
    parameter COLS         = 8,       // systolic array columns (filters per tile)
    parameter IFMAP_DEPTH  = 8192,    // input map buffer, bytes (power of two, 16 ... 65536)
    parameter WEIGHT_DEPTH = 65536,   // weight buffer, bytes, all banks (power of two, <= 65536)
    parameter OFMAP_DEPTH  = 8192,    // output map buffer, bytes, all banks (power of two, <= 65536)
    parameter BIAS_DEPTH   = 256      // bias buffer, int32 entries, all banks (power of two)
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
    localparam CB    = $clog2(COLS);               // bank-number bits (CP = 2**CB)
    localparam WB_AW = WT_AW - CB;                 // byte address within a weight bank
    localparam OB_AW = OF_AW - CB;                 // byte address within an output bank
    localparam BB_AW = BI_AW - CB;                 // entry address within a bias bank
    localparam D     = 17;                         // layer dimensions: up to 65536
    localparam CW    = 20;                         // signed input coordinates (window origins, taps)
    localparam RW    = $clog2(ROWS + 1);           // 0 ... ROWS
    localparam NCOPY = (ROWS + 1) / 2;             // input map copies: one per pair of rows
    localparam [31:0]   ROWS_32 = ROWS;
    localparam [31:0]   ROWS_M1_32 = ROWS - 1;
    localparam [31:0]   COLS_32 = COLS;
    localparam [31:0]   RW_M1_32 = RW - 1;
    localparam [RW-1:0] ROWS_R = ROWS_32[RW-1:0];
    localparam [RW-1:0] ROWS_M1 = ROWS_M1_32[RW-1:0];
    localparam [31:0]   ROWS_M2_32 = (ROWS >= 2) ? ROWS - 2 : 0;
    localparam [RW-1:0] ROWS_M2 = ROWS_M2_32[RW-1:0];
    localparam [D-1:0]  COLS_D = COLS_32[D-1:0];
    localparam [31:0]   COLS2_32 = 2 * COLS;
    localparam [D-1:0]  COLS2_D = COLS2_32[D-1:0];
    localparam [8:0]    COLS_9 = COLS_32[8:0];

    generate
        if (ROWS < 1 || COLS < 1 || ROWS > 256 || COLS > 256) begin : g_bad_array
            $fatal(1, "cnnx_conv_core: ROWS and COLS must be in 1..256, got %0dx%0d", ROWS, COLS);
        end
        if ((1 << IF_AW) != IFMAP_DEPTH || (1 << WT_AW) != WEIGHT_DEPTH || (1 << OF_AW) != OFMAP_DEPTH
                || (1 << BI_AW) != BIAS_DEPTH) begin : g_bad_pow2
            $fatal(1, "cnnx_conv_core: buffer depths must be powers of two");
        end
        if (IF_AW < 4 || IF_AW > 16 || WT_AW > 16 || OF_AW > 16 || IF_AW > WT_AW || WB_AW < 3 || OB_AW < 3
                || BB_AW < 1 || BI_AW > WT_AW - 2) begin : g_bad_depth
            $fatal(1, "cnnx_conv_core: need 16 <= IFMAP_DEPTH <= WEIGHT_DEPTH <= 65536, OFMAP_DEPTH <= 65536, %s",
                   "and per column bank (COLS rounded up to a power of two) >= 8 bytes and >= 2 bias entries");
        end
    endgenerate

    // one-hot: each state is a flip-flop of its own, so a decision on the state starts from a register
    localparam [3:0] ST_IDLE = 4'b0001;
    localparam [3:0] ST_SETUP = 4'b0010;
    localparam [3:0] ST_RUN = 4'b0100;
    localparam [3:0] ST_FLUSH = 4'b1000;
    reg [3:0] state_reg;
    wire idle = state_reg[0];
    wire in_setup = state_reg[1];
    wire in_flush = state_reg[3];

    localparam [1:0] SEL_IFMAP = 2'd0;
    localparam [1:0] SEL_WEIGHT = 2'd1;
    localparam [1:0] SEL_BIAS = 2'd2;

    // ---------------------------------------------------------------------------------------------------
    // configuration registers, sized to their fields
    // ---------------------------------------------------------------------------------------------------
    reg [D-1:0]     c_reg, h_reg, w_reg, f_reg, kh_reg, kw_reg, stride_reg, pad_reg, oh_reg, ow_reg;
    reg [15:0]      mult_reg;
    reg [5:0]       shift_reg;
    reg             relu_reg;
    reg             raw_reg;         // raw-accumulator output mode
    reg [1:0]       raw_byte_reg;    // ... the accumulator byte it writes
    reg [IF_AW-1:0] hw_reg;          // H*W, STRIDE*W and PAD*W + PAD modulo the buffer: address steps
    reg [IF_AW-1:0] sw_reg;
    reg [IF_AW-1:0] padw_reg;
    // the last index of each loop, registered so the walkers compare without an adder
    reg [D-1:0]     oh_m1_reg;
    // ... and the one before it: a walker compares its index with these (i + 1 == N - 1 without the adder)
    reg [D-1:0]     c_m2_reg, kh_m2_reg, kw_m2_reg, ow_m2_reg;
    reg             c_is1_reg, kh_is1_reg, kw_is1_reg, ow_is1_reg, f_le_cols_reg;
    reg             k_is1_reg;       // C = KH = KW = 1: every tap is the last

    always @(posedge clk) begin
        if (rst) begin
            c_reg <= {D{1'b0}}; h_reg <= {D{1'b0}}; w_reg <= {D{1'b0}}; f_reg <= {D{1'b0}};
            kh_reg <= {D{1'b0}}; kw_reg <= {D{1'b0}}; stride_reg <= {D{1'b0}}; pad_reg <= {D{1'b0}};
            oh_reg <= {D{1'b0}}; ow_reg <= {D{1'b0}};
            mult_reg <= 16'd0; shift_reg <= 6'd0; relu_reg <= 1'b0;
            raw_reg <= 1'b0; raw_byte_reg <= 2'd0;
            hw_reg <= {IF_AW{1'b0}}; sw_reg <= {IF_AW{1'b0}}; padw_reg <= {IF_AW{1'b0}};
        end else if (cfg_en && idle) begin
            case (cfg_addr)
                4'd0: c_reg <= cfg_data[D-1:0];
                4'd1: h_reg <= cfg_data[D-1:0];
                4'd2: w_reg <= cfg_data[D-1:0];
                4'd3: f_reg <= cfg_data[D-1:0];
                4'd4: kh_reg <= cfg_data[D-1:0];
                4'd5: kw_reg <= cfg_data[D-1:0];
                4'd6: stride_reg <= cfg_data[D-1:0];
                4'd7: pad_reg <= cfg_data[D-1:0];
                4'd8: oh_reg <= cfg_data[D-1:0];
                4'd9: ow_reg <= cfg_data[D-1:0];
                4'd10: mult_reg <= cfg_data[15:0];
                4'd11: shift_reg <= cfg_data[5:0];
                4'd12: begin
                    relu_reg <= cfg_data[0];
                    raw_reg <= cfg_data[1];
                    raw_byte_reg <= cfg_data[3:2];
                end
                4'd13: hw_reg <= cfg_data[IF_AW-1:0];
                4'd14: sw_reg <= cfg_data[IF_AW-1:0];
                4'd15: padw_reg <= cfg_data[IF_AW-1:0];
                default: ;
            endcase
        end
    end
    always @(posedge clk) begin
        // static while a run lasts; the set-up cycles give them time to settle after the last write
        c_m2_reg <= c_reg - {{(D-2){1'b0}}, 2'd2};
        kh_m2_reg <= kh_reg - {{(D-2){1'b0}}, 2'd2};
        kw_m2_reg <= kw_reg - {{(D-2){1'b0}}, 2'd2};
        ow_m2_reg <= ow_reg - {{(D-2){1'b0}}, 2'd2};
        oh_m1_reg <= oh_reg - 1'b1;
        c_is1_reg <= (c_reg == 1);
        k_is1_reg <= (c_reg == 1) && (kh_reg == 1) && (kw_reg == 1);
        kh_is1_reg <= (kh_reg == 1);
        kw_is1_reg <= (kw_reg == 1);
        ow_is1_reg <= (ow_reg == 1);
        f_le_cols_reg <= (f_reg <= COLS_D);
    end

    // a zero size, registered (static while idle): `start` then only meets registers on its way in
    reg  empty_layer;
    always @(posedge clk) begin
        empty_layer <= (c_reg == 0) || (kh_reg == 0) || (kw_reg == 0) || (f_reg == 0) || (oh_reg == 0)
                       || (ow_reg == 0);
    end
    // the writers are cleared one cycle after a run starts (they are idle through the set-up cycles), from
    // a register: the clear fans out to every writer's state
    reg  start_run;
    // the host's write port, registered once: a write sampled while idle lands in its buffer one cycle later
    // (before any read of a run it precedes: a run's first buffer read comes ROWS + 2 cycles after `start`),
    // and the buffers' write enables, addresses and data start from these registers
    reg                hw_ifmap_reg, hw_weight_reg, hw_bias_reg;
    reg [WT_AW-3:0]    hw_addr_reg;
    reg [31:0]         hw_data_reg;
    always @(posedge clk) begin
        hw_ifmap_reg <= wr_en && idle && !rst && wr_sel == SEL_IFMAP;
        hw_weight_reg <= wr_en && idle && !rst && wr_sel == SEL_WEIGHT;
        hw_bias_reg <= wr_en && idle && !rst && wr_sel == SEL_BIAS;
        hw_addr_reg <= wr_addr;
        hw_data_reg <= wr_data;
    end
    always @(posedge clk) begin
        start_run <= !rst && idle && start && !empty_layer;
    end

    // ---------------------------------------------------------------------------------------------------
    // the pixel walker: the window origin (ih0, iw0), base address ih0*W + iw0 and validity of one output
    // pixel per step, shifted into a staging register; ROWS steps per pixel tile
    // ---------------------------------------------------------------------------------------------------
    reg [D-1:0]              pw_oh_reg, pw_ow_reg;
    reg signed [CW-1:0]      pw_ih0_reg, pw_iw0_reg;
    reg [IF_AW-1:0]          pw_row_reg;      // base address of the first pixel of this output row
    reg [IF_AW-1:0]          pw_base_reg;
    reg                      pw_valid_reg;    // oh < OH
    reg [RW-1:0]             pw_cnt_reg;      // steps taken for the tile being prepared (ROWS: finished)

    reg [ROWS*CW-1:0]        st_ih0_reg, st_iw0_reg;
    reg [ROWS*IF_AW-1:0]     st_base_reg;
    reg [ROWS-1:0]           st_valid_reg;
    reg [RW-1:0]             st_rows_reg;     // valid pixels staged so far

    // pw_step = walking (SETUP or RUN) and pw_cnt_reg != ROWS, held in registers (computed a cycle ahead,
    // below) rather than decoded from the state: it enables every staging register (ROWS * (2*CW + IF_AW + 1)
    // flip-flops), so each staging slot r has its own copy pw_step_q[r] and the walker copy ROWS. Each copy
    // feeds back into its own next value, so the copies have different inputs and the synthesis keeps them.
    reg  [ROWS:0] pw_step_q;
    wire pw_step = pw_step_q[ROWS];
    reg  pw_ow_last_reg;                      // pw_ow_reg == OW - 1, registered with it
    wire pw_wrap = pw_ow_last_reg;

    // the staging register as it is after this cycle's step (a new pixel tile may take it in this cycle)
    wire [ROWS*CW-1:0]    st_ih0_next;
    wire [ROWS*CW-1:0]    st_iw0_next;
    wire [ROWS*IF_AW-1:0] st_base_next;
    wire [ROWS-1:0]       st_valid_next;
    wire [RW-1:0]         st_rows_next = st_rows_reg + {{(RW-1){1'b0}}, pw_step & pw_valid_reg};
    generate
        if (ROWS == 1) begin : g_st1
            assign st_ih0_next = pw_step_q[0] ? pw_ih0_reg : st_ih0_reg;
            assign st_iw0_next = pw_step_q[0] ? pw_iw0_reg : st_iw0_reg;
            assign st_base_next = pw_step_q[0] ? pw_base_reg : st_base_reg;
            assign st_valid_next = pw_step_q[0] ? pw_valid_reg : st_valid_reg;
        end else begin : g_stn
            // what slot r takes on a step: slot r + 1, or the walker's newest pixel for the top slot
            wire [ROWS*CW-1:0]    ih0_in = {pw_ih0_reg, st_ih0_reg[ROWS*CW-1:CW]};
            wire [ROWS*CW-1:0]    iw0_in = {pw_iw0_reg, st_iw0_reg[ROWS*CW-1:CW]};
            wire [ROWS*IF_AW-1:0] base_in = {pw_base_reg, st_base_reg[ROWS*IF_AW-1:IF_AW]};
            wire [ROWS-1:0]       valid_in = {pw_valid_reg, st_valid_reg[ROWS-1:1]};
            genvar r;
            for (r = 0; r < ROWS; r = r + 1) begin : g_slot
                assign st_ih0_next[r*CW +: CW] = pw_step_q[r] ? ih0_in[r*CW +: CW] : st_ih0_reg[r*CW +: CW];
                assign st_iw0_next[r*CW +: CW] = pw_step_q[r] ? iw0_in[r*CW +: CW] : st_iw0_reg[r*CW +: CW];
                assign st_base_next[r*IF_AW +: IF_AW] = pw_step_q[r] ? base_in[r*IF_AW +: IF_AW]
                                                                       : st_base_reg[r*IF_AW +: IF_AW];
                assign st_valid_next[r] = pw_step_q[r] ? valid_in[r] : st_valid_reg[r];
            end
        end
    endgenerate

    // the rows of the tile being computed
    reg [ROWS*CW-1:0]     act_ih0_reg, act_iw0_reg;
    reg [ROWS*IF_AW-1:0]  act_base_reg;
    reg [ROWS-1:0]        act_valid_reg;
    reg [RW-1:0]          act_rows_reg;

    // ---------------------------------------------------------------------------------------------------
    // the tap walker (stage T) and the tile sequence
    // ---------------------------------------------------------------------------------------------------
    reg [D-1:0]       tc_reg, tkh_reg, tkw_reg;
    reg [IF_AW-1:0]   koff_reg, koff_row_reg, koff_chan_reg;
    reg               feed_reg;          // stage T carries a MAC step
    reg               first_reg;         // ... the first of the tile
    reg [RW-1:0]      tsat_reg;          // step within the tile, saturating at ROWS - 1
    reg               tsat_last_reg;     // tsat_reg == ROWS - 1, registered with it
    reg [WB_AW-1:0]   wt_addr_reg;       // byte address of this step's weight in every column bank
    reg [D-1:0]       frem_reg;          // filters from this tile's first to the last (F - f0)
    reg [16:0]        tiles_issued_reg;
    reg [16:0]        tiles_done_reg;
    reg [31:0]        cycle_reg;
    reg [31:0]        mac_reg;
    reg               done_reg;

    wire running = state_reg[2];
    integer i;
    // "last index" flags, registered with their counters, so the control decisions that fan out to hundreds
    // of enables start from registers rather than from 17-bit comparators
    reg  kw_last_reg, kh_last_reg, c_last_reg, lastf_reg;
    // ... and their conjunction, registered with them (kw_last_reg && kh_last_reg && c_last_reg)
    reg  last_tap_reg;
    wire last_tap = last_tap_reg;
    wire tile_end = running && (!feed_reg || last_tap) && tsat_last_reg;
    wire last_ftile = lastf_reg;            // frem_reg <= COLS
    // the last set-up cycle, in_setup && (pw_cnt_reg == ROWS - 1), registered a cycle ahead
    reg  setup_end_reg;
    wire setup_end = setup_end_reg;
    // a new pixel tile starts after this cycle (not after the last one: the staged rows are then empty)
    // whether the next pixel tile has a pixel at all: the validity of its first pixel, which the walker
    // stages in its first step for that tile, registered then (a tile lasts PERIOD >= ROWS cycles, so with
    // ROWS >= 2 that step lies before the tile's last cycle): the end-of-tile decisions start from a register
    reg  nxt_valid_reg;
    wire nxt_valid;
    generate
        if (ROWS == 1) begin : g_nxt1
            assign nxt_valid = st_valid_next[0];
            wire unused_nxt = nxt_valid_reg;
        end else begin : g_nxtn
            assign nxt_valid = nxt_valid_reg;
        end
    endgenerate
    wire new_ptile = setup_end || (tile_end && last_ftile && nxt_valid);
    wire last_tile = tile_end && last_ftile && !nxt_valid;
    // new_ptile loads every row's act_* registers (ROWS * (2*CW + IF_AW + 1) flip-flops): row r takes it
    // from its own copy, new_ptile_row[r], decided from its own copy of nxt_valid_reg (taken when staging
    // slot r's step copy steps, so the copies have different enables and the synthesis keeps them)
    wire [ROWS-1:0] new_ptile_row;
    generate
        if (ROWS == 1) begin : g_np1
            assign new_ptile_row = new_ptile;
        end else begin : g_npn
            reg [ROWS-1:0] nxt_valid_row;
            genvar r;
            for (r = 0; r < ROWS; r = r + 1) begin : g_row
                always @(posedge clk) begin
                    if (pw_step_q[r] && pw_cnt_reg == {RW{1'b0}}) begin
                        nxt_valid_row[r] <= pw_valid_reg;
                    end
                end
                assign new_ptile_row[r] = setup_end || (tile_end && last_ftile && nxt_valid_row[r]);
            end
        end
    endgenerate

    // the walker steps in the next cycle if it walks then (a run starts, or SETUP, or RUN but not its last
    // tile) and the tile it prepares then is not complete (a new one starts, or one more step is due)
    wire start_go = idle && start && !empty_layer;
    wire walk_next = start_go || in_setup || (running && !last_tile);
    wire step_restart = walk_next && (start_go || new_ptile);
    wire step_more = walk_next && (pw_cnt_reg != ROWS_M1);
    always @(posedge clk) begin
        if (rst) begin
            pw_step_q <= {(ROWS+1){1'b0}};
        end else begin
            pw_step_q <= {(ROWS+1){step_restart}} | ({(ROWS+1){step_more}} & pw_step_q);
        end
    end

    // MACs per step of this tile (real rows x real columns), by shift-and-add over the first MM_STEPS
    // cycles of the tile (MM_STEPS = bits of the row count <= ROWS <= PERIOD); the MAC counter adds it to
    // the steps MM_STEPS cycles late
    localparam MM_STEPS = RW;
    localparam MW = RW + 9;
    localparam [RW-1:0] MM_LAST = RW_M1_32[RW-1:0];
    wire [8:0]    cols_used = last_ftile ? frem_reg[8:0] : COLS_9;
    reg  [MW-1:0] mm_acc_reg;
    reg  [MW-1:0] step_macs_reg;
    reg           mm_done_reg;       // step_macs_reg holds this tile's value (tsat may saturate early)
    reg  [MM_STEPS-1:0] feed_dly_reg;
    wire [RW-1:0] mm_onehot = {{(RW-1){1'b0}}, 1'b1} << tsat_reg;
    wire          mm_bit = |(act_rows_reg & mm_onehot);
    wire [MW-1:0] mm_part = mm_bit ? ({{(MW-9){1'b0}}, cols_used} << tsat_reg) : {MW{1'b0}};
    wire [MW-1:0] mm_next = (tsat_reg == 0 ? {MW{1'b0}} : mm_acc_reg) + mm_part;
    wire [MM_STEPS:0] feed_dly_next = {feed_dly_reg, feed_reg};
    wire          unused_bits = feed_dly_next[MM_STEPS] ^ (^cfg_data[31:D]);

    always @(posedge clk) begin
        if (rst) begin
            state_reg <= ST_IDLE;
            setup_end_reg <= 1'b0;
            done_reg <= 1'b0;
            cycle_reg <= 32'd0;
            mac_reg <= 32'd0;
            feed_reg <= 1'b0;
            first_reg <= 1'b0;
            pw_cnt_reg <= ROWS_R;
            feed_dly_reg <= {MM_STEPS{1'b0}};
            tiles_issued_reg <= 17'd0;
        end else begin
            if (!idle) begin
                cycle_reg <= cycle_reg + 32'd1;
            end
            feed_dly_reg <= feed_dly_next[MM_STEPS-1:0];
            if (feed_dly_reg[MM_STEPS-1]) begin
                mac_reg <= mac_reg + {{(32-MW){1'b0}}, step_macs_reg};
            end
            if (running && !mm_done_reg) begin
                mm_acc_reg <= mm_next;
                if (tsat_reg == MM_LAST) begin
                    step_macs_reg <= mm_next;
                    mm_done_reg <= 1'b1;
                end
            end
            if (tile_end || setup_end) begin
                mm_done_reg <= 1'b0;
            end
            // setup_end in the next cycle: SETUP then, at its step ROWS - 1 (a run's first set-up cycle is
            // step 0; each set-up cycle is one walker step)
            setup_end_reg <= start_go ? (ROWS == 1)
                           : in_setup && !setup_end && (pw_cnt_reg == ROWS_M2);

            // the pixel walker (the staging slots follow their own step copies through st_*_next)
            st_ih0_reg <= st_ih0_next;
            st_iw0_reg <= st_iw0_next;
            st_base_reg <= st_base_next;
            st_valid_reg <= st_valid_next;
            if (pw_step) begin
                if (pw_cnt_reg == {RW{1'b0}}) begin
                    nxt_valid_reg <= pw_valid_reg;
                end
                pw_cnt_reg <= pw_cnt_reg + 1'b1;
                st_rows_reg <= st_rows_next;
                if (pw_wrap) begin
                    pw_ow_reg <= {D{1'b0}};
                    pw_ow_last_reg <= ow_is1_reg;
                    pw_oh_reg <= pw_oh_reg + 1'b1;
                    if (pw_oh_reg == oh_m1_reg) begin
                        pw_valid_reg <= 1'b0;
                    end
                    pw_ih0_reg <= pw_ih0_reg + $signed({{(CW-D){1'b0}}, stride_reg});
                    pw_iw0_reg <= -$signed({{(CW-D){1'b0}}, pad_reg});
                    pw_row_reg <= pw_row_reg + sw_reg;
                    pw_base_reg <= pw_row_reg + sw_reg;
                end else begin
                    pw_ow_reg <= pw_ow_reg + 1'b1;
                    pw_ow_last_reg <= (pw_ow_reg == ow_m2_reg);
                    pw_iw0_reg <= pw_iw0_reg + $signed({{(CW-D){1'b0}}, stride_reg});
                    pw_base_reg <= pw_base_reg + stride_reg[IF_AW-1:0];
                end
            end
            for (i = 0; i < ROWS; i = i + 1) begin
                if (new_ptile_row[i]) begin
                    act_ih0_reg[i*CW +: CW] <= st_ih0_next[i*CW +: CW];
                    act_iw0_reg[i*CW +: CW] <= st_iw0_next[i*CW +: CW];
                    act_base_reg[i*IF_AW +: IF_AW] <= st_base_next[i*IF_AW +: IF_AW];
                    act_valid_reg[i] <= st_valid_next[i];
                end
            end
            if (new_ptile) begin
                act_rows_reg <= st_rows_next;
                pw_cnt_reg <= {RW{1'b0}};
                st_rows_reg <= {RW{1'b0}};
            end

            // the tap walker
            if (running) begin
                if (tile_end) begin
                    tiles_issued_reg <= tiles_issued_reg + 17'd1;
                    tc_reg <= {D{1'b0}}; tkh_reg <= {D{1'b0}}; tkw_reg <= {D{1'b0}};
                    koff_reg <= {IF_AW{1'b0}}; koff_row_reg <= {IF_AW{1'b0}}; koff_chan_reg <= {IF_AW{1'b0}};
                    tsat_reg <= {RW{1'b0}};
                    tsat_last_reg <= (ROWS == 1);
                    feed_reg <= !last_tile;
                    first_reg <= !last_tile;
                    kw_last_reg <= kw_is1_reg; kh_last_reg <= kh_is1_reg; c_last_reg <= c_is1_reg;
                    last_tap_reg <= k_is1_reg;
                    if (last_ftile) begin
                        frem_reg <= f_reg;
                        lastf_reg <= f_le_cols_reg;
                        wt_addr_reg <= {WB_AW{1'b0}};
                    end else begin
                        lastf_reg <= (frem_reg <= COLS2_D);
                        frem_reg <= frem_reg - COLS_D;
                        if (feed_reg) begin
                            wt_addr_reg <= wt_addr_reg + 1'b1;
                        end
                    end
                end else begin
                    if (tsat_reg != ROWS_M1) begin
                        tsat_reg <= tsat_reg + 1'b1;
                        tsat_last_reg <= (tsat_reg == ROWS_M2);
                    end
                    first_reg <= 1'b0;
                    if (feed_reg) begin
                        wt_addr_reg <= wt_addr_reg + 1'b1;
                        if (last_tap) begin
                            feed_reg <= 1'b0;
                        end else if (!kw_last_reg) begin
                            tkw_reg <= tkw_reg + 1'b1;
                            kw_last_reg <= (tkw_reg == kw_m2_reg);
                            last_tap_reg <= (tkw_reg == kw_m2_reg) && kh_last_reg && c_last_reg;
                            koff_reg <= koff_reg + 1'b1;
                        end else if (!kh_last_reg) begin
                            tkw_reg <= {D{1'b0}};
                            kw_last_reg <= kw_is1_reg;
                            tkh_reg <= tkh_reg + 1'b1;
                            kh_last_reg <= (tkh_reg == kh_m2_reg);
                            last_tap_reg <= kw_is1_reg && (tkh_reg == kh_m2_reg) && c_last_reg;
                            koff_row_reg <= koff_row_reg + w_reg[IF_AW-1:0];
                            koff_reg <= koff_row_reg + w_reg[IF_AW-1:0];
                        end else begin
                            tkw_reg <= {D{1'b0}};
                            tkh_reg <= {D{1'b0}};
                            kw_last_reg <= kw_is1_reg;
                            kh_last_reg <= kh_is1_reg;
                            tc_reg <= tc_reg + 1'b1;
                            c_last_reg <= (tc_reg == c_m2_reg);
                            last_tap_reg <= kw_is1_reg && kh_is1_reg && (tc_reg == c_m2_reg);
                            koff_chan_reg <= koff_chan_reg + hw_reg;
                            koff_row_reg <= koff_chan_reg + hw_reg;
                            koff_reg <= koff_chan_reg + hw_reg;
                        end
                    end
                end
            end

            if (idle) begin
                if (start && empty_layer) begin
                    // nothing to compute (a register left at zero): finish at once rather than hang
                    done_reg <= 1'b1;
                    cycle_reg <= 32'd0;
                    mac_reg <= 32'd0;
                end else if (start) begin
                    state_reg <= ST_SETUP;
                    done_reg <= 1'b0;
                    cycle_reg <= 32'd0;
                    mac_reg <= 32'd0;
                    pw_cnt_reg <= {RW{1'b0}};
                    pw_oh_reg <= {D{1'b0}};
                    pw_ow_reg <= {D{1'b0}};
                    pw_ow_last_reg <= ow_is1_reg;
                    pw_ih0_reg <= -$signed({{(CW-D){1'b0}}, pad_reg});
                    pw_iw0_reg <= -$signed({{(CW-D){1'b0}}, pad_reg});
                    pw_row_reg <= -padw_reg;
                    pw_base_reg <= -padw_reg;
                    pw_valid_reg <= 1'b1;
                    st_rows_reg <= {RW{1'b0}};
                    st_valid_reg <= {ROWS{1'b0}};
                    tiles_issued_reg <= 17'd0;
                end
            end
            if (in_setup) begin
                if (setup_end) begin
                    state_reg <= ST_RUN;
                    tc_reg <= {D{1'b0}}; tkh_reg <= {D{1'b0}}; tkw_reg <= {D{1'b0}};
                    koff_reg <= {IF_AW{1'b0}}; koff_row_reg <= {IF_AW{1'b0}};
                    koff_chan_reg <= {IF_AW{1'b0}};
                    tsat_reg <= {RW{1'b0}};
                    tsat_last_reg <= (ROWS == 1);
                    feed_reg <= 1'b1;
                    first_reg <= 1'b1;
                    frem_reg <= f_reg;
                    lastf_reg <= f_le_cols_reg;
                    kw_last_reg <= kw_is1_reg; kh_last_reg <= kh_is1_reg; c_last_reg <= c_is1_reg;
                    last_tap_reg <= k_is1_reg;
                    wt_addr_reg <= {WB_AW{1'b0}};
                end
            end
            if (running) begin
                if (last_tile) begin
                    state_reg <= ST_FLUSH;
                end
            end
            if (in_flush) begin   // until the last tile's outputs are written
                if (tiles_done_reg == tiles_issued_reg) begin
                    state_reg <= ST_IDLE;
                    done_reg <= 1'b1;
                end
            end
        end
    end

    assign busy = !idle;
    assign done = done_reg;
    assign cycle_count = cycle_reg;
    assign mac_count = mac_reg;

    // ---------------------------------------------------------------------------------------------------
    // stage A: per-row address and tap coordinates; stage B: bounds check and block-RAM read; stage C:
    // byte select into the array's input registers
    // ---------------------------------------------------------------------------------------------------
    reg               a_feed_reg, a_first_reg, a_last_reg;
    reg [ROWS*IF_AW-1:0] a_addr_reg;
    reg [ROWS*CW-1:0] a_ih_reg, a_iw_reg;
    reg [ROWS-1:0]    a_rv_reg;
    reg [WB_AW-1:0]   a_wt_addr_reg;
    reg [COLS-1:0]    a_cv_reg;

    reg               b_feed_reg, b_first_reg, b_last_reg;
    reg [ROWS-1:0]    b_inb_reg;
    reg [ROWS*2-1:0]  b_lane_reg;
    reg [1:0]         b_wlane_reg;
    reg [COLS-1:0]    b_cv_reg;
    // stage B2: the RAMs' output register (cnnx_ram_*'s second read cycle)
    reg               b2_feed_reg, b2_first_reg, b2_last_reg;
    reg [ROWS-1:0]    b2_inb_reg;
    reg [ROWS*2-1:0]  b2_lane_reg;
    reg [1:0]         b2_wlane_reg;
    reg [COLS-1:0]    b2_cv_reg;
    wire [ROWS*32-1:0] b_word;
    wire [COLS*32-1:0] b_wword;

    reg [ROWS*8-1:0]  a_feed_q;
    reg [COLS*8-1:0]  w_feed_q;
    reg               valid_feed_q, first_feed_q, last_feed_q;

    wire signed [CW-1:0] h_s = $signed({{(CW-D){1'b0}}, h_reg});
    wire signed [CW-1:0] w_s = $signed({{(CW-D){1'b0}}, w_reg});

    genvar r, c;
    generate
        for (r = 0; r < ROWS; r = r + 1) begin : g_row
            wire signed [CW-1:0] ih = $signed(a_ih_reg[r*CW +: CW]);
            wire signed [CW-1:0] iw = $signed(a_iw_reg[r*CW +: CW]);
            always @(posedge clk) begin
                a_addr_reg[r*IF_AW +: IF_AW] <= act_base_reg[r*IF_AW +: IF_AW] + koff_reg;
                a_ih_reg[r*CW +: CW] <= act_ih0_reg[r*CW +: CW] + {{(CW-D){1'b0}}, tkh_reg};
                a_iw_reg[r*CW +: CW] <= act_iw0_reg[r*CW +: CW] + {{(CW-D){1'b0}}, tkw_reg};
                a_rv_reg[r] <= act_valid_reg[r];
                b_inb_reg[r] <= a_feed_reg && a_rv_reg[r] && (ih >= 0) && (ih < h_s) && (iw >= 0)
                                && (iw < w_s);
                b_lane_reg[r*2 +: 2] <= a_addr_reg[r*IF_AW +: 2];
                b2_inb_reg[r] <= b_inb_reg[r];
                b2_lane_reg[r*2 +: 2] <= b_lane_reg[r*2 +: 2];
                case (b2_lane_reg[r*2 +: 2])
                    2'd0: a_feed_q[r*8 +: 8] <= b2_inb_reg[r] ? b_word[r*32 +: 8] : 8'd0;
                    2'd1: a_feed_q[r*8 +: 8] <= b2_inb_reg[r] ? b_word[r*32 + 8 +: 8] : 8'd0;
                    2'd2: a_feed_q[r*8 +: 8] <= b2_inb_reg[r] ? b_word[r*32 + 16 +: 8] : 8'd0;
                    default: a_feed_q[r*8 +: 8] <= b2_inb_reg[r] ? b_word[r*32 + 24 +: 8] : 8'd0;
                endcase
            end
        end

        // the input map copies: rows 2k (port A) and 2k+1 (port B); port A takes the host's writes
        for (r = 0; r < NCOPY; r = r + 1) begin : g_icopy
            wire [IF_AW-3:0] a_port_addr = hw_ifmap_reg ? hw_addr_reg[IF_AW-3:0]
                                                        : a_addr_reg[2*r*IF_AW + 2 +: IF_AW-2];
            wire [IF_AW-3:0] b_port_addr;
            wire [31:0]      b_port_data;
            if (2 * r + 1 < ROWS) begin : g_pair
                assign b_port_addr = a_addr_reg[(2*r+1)*IF_AW + 2 +: IF_AW-2];
                assign b_word[(2*r+1)*32 +: 32] = b_port_data;
            end else begin : g_single
                assign b_port_addr = {(IF_AW-2){1'b0}};
                wire unused_b = ^b_port_data;
            end
            cnnx_ram_dp #(
                .WIDTH(32),
                .DEPTH(IFMAP_DEPTH / 4)
            ) u_ifmap (
                .clk(clk),
                .a_we(hw_ifmap_reg),
                .a_addr(a_port_addr),
                .a_wdata(hw_data_reg),
                .a_rdata(b_word[2*r*32 +: 32]),
                .b_addr(b_port_addr),
                .b_rdata(b_port_data)
            );
        end

        for (c = 0; c < COLS; c = c + 1) begin : g_col
            always @(posedge clk) begin
                a_cv_reg[c] <= (frem_reg > c);
                b_cv_reg[c] <= a_feed_reg && a_cv_reg[c];
                b2_cv_reg[c] <= b_cv_reg[c];
                case (b2_wlane_reg)
                    2'd0: w_feed_q[c*8 +: 8] <= b2_cv_reg[c] ? b_wword[c*32 +: 8] : 8'd0;
                    2'd1: w_feed_q[c*8 +: 8] <= b2_cv_reg[c] ? b_wword[c*32 + 8 +: 8] : 8'd0;
                    2'd2: w_feed_q[c*8 +: 8] <= b2_cv_reg[c] ? b_wword[c*32 + 16 +: 8] : 8'd0;
                    default: w_feed_q[c*8 +: 8] <= b2_cv_reg[c] ? b_wword[c*32 + 24 +: 8] : 8'd0;
                endcase
            end
            wire bank_sel;
            if (CB == 0) begin : g_one_bank
                assign bank_sel = 1'b1;
            end else begin : g_banks
                localparam [CB-1:0] BANK = c;
                assign bank_sel = (hw_addr_reg[WB_AW-2 +: CB] == BANK);
            end
            cnnx_ram_sdp #(
                .WIDTH(32),
                .DEPTH(WEIGHT_DEPTH / (1 << CB) / 4),
                .OUT_REG(1)
            ) u_weight (
                .clk(clk),
                .we({4{hw_weight_reg && bank_sel}}),
                .waddr(hw_addr_reg[WB_AW-3:0]),
                .wdata(hw_data_reg),
                .re(1'b1),
                .raddr(a_wt_addr_reg[WB_AW-1:2]),
                .rdata(b_wword[c*32 +: 32])
            );
        end
    endgenerate

    always @(posedge clk) begin
        if (rst) begin
            a_feed_reg <= 1'b0; a_first_reg <= 1'b0; a_last_reg <= 1'b0;
            b_feed_reg <= 1'b0; b_first_reg <= 1'b0; b_last_reg <= 1'b0;
            b2_feed_reg <= 1'b0; b2_first_reg <= 1'b0; b2_last_reg <= 1'b0;
            valid_feed_q <= 1'b0; first_feed_q <= 1'b0; last_feed_q <= 1'b0;
        end else begin
            a_feed_reg <= feed_reg;
            a_first_reg <= feed_reg && first_reg;
            a_last_reg <= feed_reg && last_tap;
            b_feed_reg <= a_feed_reg;
            b_first_reg <= a_first_reg;
            b_last_reg <= a_last_reg;
            b2_feed_reg <= b_feed_reg;
            b2_first_reg <= b_first_reg;
            b2_last_reg <= b_last_reg;
            valid_feed_q <= b2_feed_reg;
            first_feed_q <= b2_first_reg;
            last_feed_q <= b2_last_reg;
        end
        a_wt_addr_reg <= wt_addr_reg;
        b_wlane_reg <= a_wt_addr_reg[1:0];
        b2_wlane_reg <= b_wlane_reg;
    end

    // ---------------------------------------------------------------------------------------------------
    // the array
    // ---------------------------------------------------------------------------------------------------
    wire [COLS*32-1:0] drain_data;
    wire [COLS-1:0]    drain_first;
    wire [COLS-1:0]    drain_soon;

    cnnx_systolic_array #(
        .ROWS(ROWS),
        .COLS(COLS),
        .DATA_W(8),
        .ACC_W(32)
    ) u_array (
        .clk(clk),
        .rst(rst),
        .a_west(a_feed_q),
        .w_north(w_feed_q),
        .valid(valid_feed_q),
        .first(first_feed_q),
        .last(last_feed_q),
        .drain_data(drain_data),
        .drain_first(drain_first),
        .drain_soon(drain_soon)
    );

    // ---------------------------------------------------------------------------------------------------
    // the output writers: one per column, drain register, bias, requantisation, write; one row per cycle.
    // Column c's n-th drained row of the run goes to byte n of its output bank.
    // ---------------------------------------------------------------------------------------------------
    wire [COLS-1:0] col_tile_done;
    wire [COLS*32-1:0] rq_words;
    wire [COLS*4-1:0]  rq_we;
    wire [COLS*(OB_AW-2)-1:0] rq_waddr;

    generate
        for (c = 0; c < COLS; c = c + 1) begin : g_writer
            reg              busy_w_reg;
            reg [RW-1:0]     j_reg;             // rows of the tile already drained
            reg [OB_AW-1:0]  slot_reg;          // next byte of the output bank
            reg [BB_AW-1:0]  fj_reg;            // filter tile of the next tile to drain (advanced when
                                                // its bias read starts, one cycle before its drain)
            reg [D-1:0]      wfrem_reg;         // F - its first filter
            reg              dq_valid_reg;
            reg              dq_last_reg;
            reg [31:0]       dq_reg;
            reg [7:0]        dq_raw_reg;        // byte RAW_BYTE of the accumulator (raw mode)
            reg [OB_AW-1:0]  dq_slot_reg;
            wire [31:0]      bias_q;
            wire             active = drain_first[c] | busy_w_reg;
            wire [RW-1:0]    j = drain_first[c] ? {RW{1'b0}} : j_reg;
            wire             rq_valid;
            wire [7:0]       rq_y;
            wire [OB_AW+8:0] rq_tag;            // {raw byte, last row, slot}
            // MULT and SHIFT (and RELU, RAW, RAW_BYTE) reach column c through c + 1 registers, from the
            // configuration or the column before: copies the synthesis keeps apart (different inputs), each
            // near its column's multiplier and shifter; they settle c + 1 cycles after a write, long before the
            // column's first drained row (2*ROWS + c + 7 cycles after `start` at the earliest)
            reg [15:0]       mult_q;
            reg [5:0]        shift_q;
            reg              relu_q, raw_q;
            reg [1:0]        raw_byte_q;
            if (c == 0) begin : g_mult_head
                always @(posedge clk) {raw_byte_q, raw_q, relu_q, shift_q, mult_q}
                                      <= {raw_byte_reg, raw_reg, relu_reg, shift_reg, mult_reg};
            end else begin : g_mult_next
                always @(posedge clk) {raw_byte_q, raw_q, relu_q, shift_q, mult_q}
                                      <= {g_writer[c-1].raw_byte_q, g_writer[c-1].raw_q, g_writer[c-1].relu_q,
                                          g_writer[c-1].shift_q, g_writer[c-1].mult_q};
            end
            // the run's clear reaches writer c c + 1 cycles after start_run, from writer c - 1's copy (one
            // register per writer, near it, rather than one register for all): column c's first row drains
            // at least 2*ROWS + c + 6 cycles after start_run (set-up, a tap, the address stages, the skew)
            reg              clr_q;
            if (c == 0) begin : g_clr_head
                always @(posedge clk) clr_q <= start_run;
            end else begin : g_clr_next
                always @(posedge clk) clr_q <= g_writer[c-1].clr_q;
            end

            always @(posedge clk) begin
                if (rst || clr_q) begin
                    busy_w_reg <= 1'b0;
                    j_reg <= {RW{1'b0}};
                    slot_reg <= {OB_AW{1'b0}};
                    fj_reg <= {BB_AW{1'b0}};
                    wfrem_reg <= f_reg;
                    dq_valid_reg <= 1'b0;
                end else begin
                    dq_valid_reg <= active;
                    if (active) begin
                        slot_reg <= slot_reg + 1'b1;
                        if (j == ROWS_M1) begin
                            busy_w_reg <= 1'b0;
                            j_reg <= {RW{1'b0}};
                        end else begin
                            busy_w_reg <= 1'b1;
                            j_reg <= j + 1'b1;
                        end
                    end
                    if (drain_soon[c]) begin
                        if (wfrem_reg <= COLS_D) begin
                            fj_reg <= {BB_AW{1'b0}};
                            wfrem_reg <= f_reg;
                        end else begin
                            fj_reg <= fj_reg + 1'b1;
                            wfrem_reg <= wfrem_reg - COLS_D;
                        end
                    end
                end
                dq_reg <= drain_data[c*32 +: 32];
                dq_raw_reg <= drain_data[c*32 + 8*raw_byte_q +: 8];
                dq_slot_reg <= slot_reg;
                dq_last_reg <= (j == ROWS_M1);
            end

            wire bank_sel;
            if (CB == 0) begin : g_one_bank
                assign bank_sel = 1'b1;
            end else begin : g_banks
                localparam [CB-1:0] BANK = c;
                assign bank_sel = (hw_addr_reg[BB_AW +: CB] == BANK);
            end
            // the bias: read when the drain is one cycle away, through the RAM's output register (two
            // cycles), so it is in bias_q with the first drained row and stays there for the tile's ROWS rows
            // (the next read starts PERIOD >= ROWS cycles later); nothing but a register follows the RAM
            cnnx_ram_sdp #(
                .WIDTH(32),
                .DEPTH(BIAS_DEPTH / (1 << CB)),
                .OUT_REG(1)
            ) u_bias (
                .clk(clk),
                .we({4{hw_bias_reg && bank_sel}}),
                .waddr(hw_addr_reg[BB_AW-1:0]),
                .wdata(hw_data_reg),
                .re(drain_soon[c]),
                .raddr(fj_reg),
                .rdata(bias_q)
            );

            cnnx_requant #(
                .TAG_W(OB_AW + 9)
            ) u_requant (
                .clk(clk),
                .rst(rst),
                .in_valid(dq_valid_reg),
                .acc(dq_reg),
                .bias(bias_q),
                .tag_in({dq_raw_reg, dq_last_reg, dq_slot_reg}),
                .mult(mult_q),
                .shift(shift_q),
                .relu(relu_q),
                .out_valid(rq_valid),
                .y(rq_y),
                .tag_out(rq_tag)
            );
            assign col_tile_done[c] = rq_valid && rq_tag[OB_AW];
            // the raw byte rides through the requantiser's tag pipeline, so both modes write at the same cycle
            assign rq_words[c*32 +: 32] = {4{raw_q ? rq_tag[OB_AW+1 +: 8] : rq_y}};
            assign rq_we[c*4 +: 4] = {4{rq_valid}} & (4'b0001 << rq_tag[1:0]);
            assign rq_waddr[c*(OB_AW-2) +: OB_AW-2] = rq_tag[OB_AW-1:2];
        end
    endgenerate

    always @(posedge clk) begin
        if (rst || start_run) begin
            tiles_done_reg <= 17'd0;
        end else if (col_tile_done[COLS-1]) begin
            tiles_done_reg <= tiles_done_reg + 17'd1;
        end
    end

    // the output banks: written by the writers, read by the host (registered, one cycle)
    wire [COLS*32-1:0] of_word;
    generate
        for (c = 0; c < COLS; c = c + 1) begin : g_obank
            cnnx_ram_sdp #(
                .WIDTH(32),
                .DEPTH(OFMAP_DEPTH / (1 << CB) / 4)
            ) u_ofmap (
                .clk(clk),
                .we(rq_we[c*4 +: 4]),
                .waddr(rq_waddr[c*(OB_AW-2) +: OB_AW-2]),
                .wdata(rq_words[c*32 +: 32]),
                .re(1'b1),
                .raddr(rd_addr[OB_AW-3:0]),
                .rdata(of_word[c*32 +: 32])
            );
        end
    endgenerate
    generate
        if (CB == 0) begin : g_rd_one
            assign rd_data = of_word[31:0];
        end else begin : g_rd_banks
            reg [CB-1:0] rd_bank_reg;     // the bank of the word being read, registered with it
            always @(posedge clk) rd_bank_reg <= rd_addr[OB_AW-2 +: CB];
            wire [31:0] bank32 = {{(32-CB){1'b0}}, rd_bank_reg};
            assign rd_data = (bank32 < COLS_32) ? of_word[rd_bank_reg * 32 +: 32] : 32'd0;
        end
    endgenerate

endmodule

`default_nettype wire
