`default_nettype none
// cnnx_axis_in: an AXI-Stream slave that turns one packet stream into a core's host-port operations (register
// writes, buffer writes, start, read-back requests), so a core runs a whole layer from one input stream.
//
// Stream format (cnnx/compile/stream.py builds and checks streams; it is the one source of truth): the
// stream is a sequence of 32-bit words, packed little-endian into W-bit beats (word 2i in bits 31:0 of a
// 64-bit beat); the last beat carries tlast and is padded with NOP words. A packet is a header word
//     bits 31:28 opcode, 27:14 ADDR, 13:0 N-1 (N = 1 ... 16384 words)
// followed by its payload:
//     0 NOP     no payload (ADDR and N ignored): padding
//     1 CFG     N words written to the core's registers ADDR, ADDR+1, ... (ADDR + N <= 16)
//     2 WR0     N words written to buffer 0 (input map) at word ADDR, ADDR+1, ...      (ADDR + N <= LIM0)
//     3 WR1     N words to buffer 1 (weights)                                          (ADDR + N <= LIM1)
//     4 WR2     N words to buffer 2 (bias)                                             (ADDR + N <= LIM2)
//     5 START   no payload: waits until the read-back engine is idle, starts the core, waits for `done`
//     6 READ    no payload: waits until the read-back engine is idle, then asks it for N output words
//               from word ADDR (ADDR + N <= RLIM); they leave on the output stream (cnnx_axis_out.v)
// Timing: one word per clock (the core's write port takes one 32-bit word per clock, so a 64-bit beat takes
// two clocks and tready is high every other clock while loading: W = 64 halves the beats, not the cycles).
// tready depends on state only, never on tvalid; a stalled producer just pauses the word pipeline.
//
// Malformed streams (the Python builder refuses them before a simulator runs; the RTL's defined behaviour):
// an unknown opcode, a packet past its limit (including a write to a buffer of limit 0), or a stream whose
// tlast beat ends inside a CFG/WR payload sets the sticky `error` flag (cleared by rst only). After a bad
// header the decoder drops every word (tready stays high) up to the end of the tlast beat, then decodes the
// next stream normally. Nothing of the bad packet reaches the core.
module cnnx_axis_in #(
    parameter W    = 32,      // stream width, bits: 32 or 64
    parameter AW   = 14,      // the core's write-address width (word index)
    parameter RAW  = 14,      // the core's read-address width (word index)
    parameter LIM0 = 2048,    // buffer 0 (input map) size, 32-bit words (0: no such buffer)
    parameter LIM1 = 16384,   // buffer 1 (weights) size, words
    parameter LIM2 = 256,     // buffer 2 (bias) size, words
    parameter RLIM = 2048     // output buffer size, words
) (
    input  wire             clk,
    input  wire             rst,          // synchronous, active high
    input  wire             s_axis_tvalid,
    output wire             s_axis_tready,
    input  wire [W-1:0]     s_axis_tdata,
    input  wire             s_axis_tlast,
    // the core's host ports (registered)
    output reg              wr_en,
    output reg  [1:0]       wr_sel,
    output reg  [AW-1:0]    wr_addr,
    output reg  [31:0]      wr_data,
    output reg              cfg_en,
    output reg  [3:0]       cfg_addr,
    output reg  [31:0]      cfg_data,
    output reg              start,
    input  wire             core_done,
    // read-back requests to cnnx_axis_out (one outstanding)
    output reg              rd_req,
    output reg  [RAW-1:0]   rd_req_addr,
    output reg  [14:0]      rd_req_len,
    input  wire             rd_idle,
    output reg              error
);
    localparam P  = W / 32;               // words per beat
    localparam PW = $clog2(P + 1);
    localparam [PW-1:0] P_N = P[PW-1:0];
    localparam [PW-1:0] ONE = {{(PW-1){1'b0}}, 1'b1};

    generate
        if (W != 32 && W != 64) begin : g_bad_w
            $fatal(1, "cnnx_axis_in: W must be 32 or 64, got %0d", W);
        end
        if (AW < 1 || AW > 14 || RAW < 1 || RAW > 14 || LIM0 > (1 << AW) || LIM1 > (1 << AW)
                || LIM2 > (1 << AW) || RLIM > (1 << RAW)) begin : g_bad_lim
            $fatal(1, "cnnx_axis_in: address widths must be 1..14 and each limit fit its address width");
        end
    endgenerate

    localparam [15:0] LIM0_16 = LIM0[15:0];
    localparam [15:0] LIM1_16 = LIM1[15:0];
    localparam [15:0] LIM2_16 = LIM2[15:0];
    localparam [15:0] RLIM_16 = RLIM[15:0];

    localparam [3:0] OP_NOP = 4'd0, OP_CFG = 4'd1, OP_WR0 = 4'd2, OP_WR1 = 4'd3, OP_WR2 = 4'd4,
                     OP_START = 4'd5, OP_READ = 4'd6;
    localparam [2:0] ST_HDR = 3'd0, ST_CFG = 3'd1, ST_WR = 3'd2, ST_RUN = 3'd3, ST_ERR = 3'd4;

    reg [2:0]    state_reg;
    reg [W-1:0]  beat_reg;                // the words not yet taken sit at the bottom
    reg [PW-1:0] nleft_reg;               // words left in beat_reg
    reg          last_reg;                // beat_reg came with tlast
    reg [13:0]   addr_reg;                // next payload word's address
    reg [14:0]   cnt_reg;                 // payload words left

    wire [31:0] word = beat_reg[31:0];
    wire [3:0]  op = word[31:28];
    wire [13:0] h_addr = word[27:14];
    wire [14:0] h_len = {1'b0, word[13:0]} + 15'd1;
    wire [15:0] h_end = {2'b00, h_addr} + {1'b0, h_len};

    wire have = (nleft_reg != {PW{1'b0}});
    // may the current word be taken this clock?
    reg  can_take;
    always @* begin
        case (state_reg)
            // a request issued last clock has not reached the read-back engine's `idle` yet
            ST_HDR: can_take = !((op == OP_START || op == OP_READ) && (!rd_idle || rd_req));
            ST_RUN: can_take = 1'b0;
            default: can_take = 1'b1;
        endcase
    end
    wire take = have && can_take;
    wire eos = take && (nleft_reg == ONE) && last_reg;     // the stream's last word is taken
    assign s_axis_tready = !rst && (!have || (take && nleft_reg == ONE));
    wire accept = s_axis_tvalid && s_axis_tready;

    // header checks
    reg hdr_bad;
    always @* begin
        case (op)
            OP_NOP, OP_START: hdr_bad = 1'b0;
            OP_CFG: hdr_bad = h_end > 16'd16;
            OP_WR0: hdr_bad = h_end > LIM0_16;
            OP_WR1: hdr_bad = h_end > LIM1_16;
            OP_WR2: hdr_bad = h_end > LIM2_16;
            OP_READ: hdr_bad = h_end > RLIM_16;
            default: hdr_bad = 1'b1;
        endcase
    end

    // the state after this clock's word, before the end-of-stream rule
    reg [2:0] next_state;
    always @* begin
        next_state = state_reg;
        if (take) begin
            case (state_reg)
                ST_HDR: begin
                    if (hdr_bad) next_state = ST_ERR;
                    else if (op == OP_CFG) next_state = ST_CFG;
                    else if (op == OP_WR0 || op == OP_WR1 || op == OP_WR2) next_state = ST_WR;
                    else if (op == OP_START) next_state = ST_RUN;
                    else next_state = ST_HDR;
                end
                ST_CFG, ST_WR: next_state = (cnt_reg == 15'd1) ? ST_HDR : state_reg;
                default: next_state = state_reg;
            endcase
        end
    end

    generate
        if (P > 1) begin : g_shift
            always @(posedge clk) begin
                if (accept) beat_reg <= s_axis_tdata;
                else if (take) beat_reg <= {32'd0, beat_reg[W-1:32]};
            end
        end else begin : g_noshift
            always @(posedge clk) begin
                if (accept) beat_reg <= s_axis_tdata;
            end
        end
    endgenerate

    always @(posedge clk) begin
        wr_en <= 1'b0;
        cfg_en <= 1'b0;
        start <= 1'b0;
        rd_req <= 1'b0;
        if (rst) begin
            state_reg <= ST_HDR;
            nleft_reg <= {PW{1'b0}};
            last_reg <= 1'b0;
            addr_reg <= 14'd0;
            cnt_reg <= 15'd0;
            error <= 1'b0;
            wr_sel <= 2'd0;
            wr_addr <= {AW{1'b0}};
            wr_data <= 32'd0;
            cfg_addr <= 4'd0;
            cfg_data <= 32'd0;
            rd_req_addr <= {RAW{1'b0}};
            rd_req_len <= 15'd0;
        end else begin
            if (accept) begin
                nleft_reg <= P_N;
                last_reg <= s_axis_tlast;
            end else if (take) begin
                nleft_reg <= nleft_reg - ONE;
            end
            if (take) begin
                case (state_reg)
                    ST_HDR: begin
                        addr_reg <= h_addr;
                        cnt_reg <= h_len;
                        if (hdr_bad) begin
                            error <= 1'b1;
                        end else begin
                            case (op)
                                OP_WR0: wr_sel <= 2'd0;
                                OP_WR1: wr_sel <= 2'd1;
                                OP_WR2: wr_sel <= 2'd2;
                                default: ;
                            endcase
                            if (op == OP_START) start <= 1'b1;
                            if (op == OP_READ) begin
                                rd_req <= 1'b1;
                                rd_req_addr <= h_addr[RAW-1:0];
                                rd_req_len <= h_len;
                            end
                        end
                    end
                    ST_CFG: begin
                        cfg_en <= 1'b1;
                        cfg_addr <= addr_reg[3:0];
                        cfg_data <= word;
                        addr_reg <= addr_reg + 14'd1;
                        cnt_reg <= cnt_reg - 15'd1;
                    end
                    ST_WR: begin
                        wr_en <= 1'b1;
                        wr_addr <= addr_reg[AW-1:0];
                        wr_data <= word;
                        addr_reg <= addr_reg + 14'd1;
                        cnt_reg <= cnt_reg - 15'd1;
                    end
                    default: ;
                endcase
            end
            // the end of a stream closes any open packet: a payload cut short is an error
            if (eos && (next_state == ST_CFG || next_state == ST_WR || next_state == ST_ERR)) begin
                state_reg <= ST_HDR;
                if (next_state != ST_ERR) error <= 1'b1;
            end else if (state_reg == ST_RUN) begin
                // start was issued last clock at the earliest: `done` fell when the core sampled it
                if (core_done && !start) state_reg <= ST_HDR;
            end else begin
                state_reg <= next_state;
            end
        end
    end

    wire unused_addr = ^addr_reg;
endmodule
