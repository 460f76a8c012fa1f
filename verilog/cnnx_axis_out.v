`default_nettype none
// cnnx_axis_out: an AXI-Stream master that streams output words read from a core's registered read port
// (rd_addr -> rd_data one clock later). A request (from cnnx_axis_in's READ packet) asks for N words from
// word ADDR; they leave packed little-endian into W-bit beats (word 2i in bits 31:0 of a 64-bit beat), the
// last beat carrying tlast and, when N is odd at W = 64, zeros in its upper half.
//
// The read port gives one 32-bit word per clock, so with W = 64 a beat is ready every other clock at best:
// W = 64 halves the beats, not the cycles. Back-pressure: reads are issued only while the word FIFO (4 beats)
// has room for every word in flight, so a consumer that holds tready low loses and repeats nothing.
module cnnx_axis_out #(
    parameter W   = 32,   // stream width, bits: 32 or 64
    parameter RAW = 14    // the core's read-address width (word index)
) (
    input  wire            clk,
    input  wire            rst,           // synchronous, active high
    input  wire            req,
    input  wire [RAW-1:0]  req_addr,
    input  wire [14:0]     req_len,       // 1 ... 16384 words
    output wire            idle,
    output wire [RAW-1:0]  rd_addr,
    input  wire [31:0]     rd_data,
    output wire            m_axis_tvalid,
    input  wire            m_axis_tready,
    output wire [W-1:0]    m_axis_tdata,
    output wire            m_axis_tlast
);
    localparam P  = W / 32;               // words per beat
    localparam D  = 4 * P;                // FIFO depth, words
    localparam FW = $clog2(D + 1);
    localparam [31:0] P_32 = P;
    localparam [31:0] D_32 = D;
    localparam [FW-1:0] P_F = P_32[FW-1:0];
    localparam [FW-1:0] D_F = D_32[FW-1:0];

    generate
        if (W != 32 && W != 64) begin : g_bad_w
            $fatal(1, "cnnx_axis_out: W must be 32 or 64, got %0d", W);
        end
    endgenerate

    reg [RAW-1:0] raddr_reg;
    reg [14:0]    issue_left_reg;         // words still to read from the core
    reg [14:0]    out_left_reg;           // words still to send
    reg           inflight_reg;           // a read issued last clock: rd_data holds it now
    reg [31:0]    fifo_reg [0:D-1];
    reg [FW-1:0]  fcnt_reg;

    assign idle = (out_left_reg == 15'd0);
    assign rd_addr = raddr_reg;
    wire [14:0] fcnt15 = {{(15-FW){1'b0}}, fcnt_reg};
    // a full beat, or the last (possibly partial) one
    assign m_axis_tvalid = (fcnt_reg >= P_F) || (fcnt_reg != {FW{1'b0}} && fcnt15 == out_left_reg);
    assign m_axis_tlast = (out_left_reg <= {{(15-FW){1'b0}}, P_F});
    wire deq = m_axis_tvalid && m_axis_tready;
    wire [FW-1:0] deq_n = deq ? ((fcnt_reg >= P_F) ? P_F : fcnt_reg) : {FW{1'b0}};
    wire [FW-1:0] infl = {{(FW-1){1'b0}}, inflight_reg};
    wire issue = (issue_left_reg != 15'd0) && (fcnt_reg + infl < D_F - {{(FW-1){1'b0}}, 1'b1});
    wire [FW-1:0] fcnt_after = fcnt_reg - deq_n;

    genvar j;
    generate
        for (j = 0; j < P; j = j + 1) begin : g_beat
            assign m_axis_tdata[32*j +: 32] = (fcnt_reg > j[FW-1:0]) ? fifo_reg[j] : 32'd0;
        end
    endgenerate

    integer i;
    always @(posedge clk) begin
        if (rst) begin
            raddr_reg <= {RAW{1'b0}};
            issue_left_reg <= 15'd0;
            out_left_reg <= 15'd0;
            inflight_reg <= 1'b0;
            fcnt_reg <= {FW{1'b0}};
        end else begin
            inflight_reg <= issue;
            if (req && idle) begin
                raddr_reg <= req_addr;
                issue_left_reg <= req_len;
                out_left_reg <= req_len;
            end else begin
                if (issue) begin
                    raddr_reg <= raddr_reg + {{(RAW-1){1'b0}}, 1'b1};
                    issue_left_reg <= issue_left_reg - 15'd1;
                end
                if (deq) out_left_reg <= out_left_reg - {{(15-FW){1'b0}}, deq_n};
            end
            fcnt_reg <= fcnt_after + infl;
        end
    end

    // the FIFO: the head at slot 0; a dequeue shifts down by the words sent, an arriving word lands behind
    always @(posedge clk) begin
        for (i = 0; i < D; i = i + 1) begin
            if (inflight_reg && !rst && fcnt_after == i[FW-1:0]) fifo_reg[i] <= rd_data;
            else if (deq_n == P_F && i + P < D) fifo_reg[i] <= fifo_reg[i + P];
            else if (deq_n != {FW{1'b0}} && deq_n != P_F && i + 1 < D) fifo_reg[i] <= fifo_reg[i + 1];
        end
    end
endmodule
