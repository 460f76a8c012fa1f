`default_nettype none
// cnnx_pool_stream: the pool core (cnnx_pool_core.v, unchanged) run from one AXI-Stream in and one out:
// cnnx_axis_in decodes the input stream (registers, input map, start, read-back requests;
// the format is documented there and built by cnnx/compile/stream.py), cnnx_axis_out streams the requested
// output words, cnnx_stream_counters counts the end-to-end cycles that cnnx/cycles.py models.
module cnnx_pool_stream #(
    parameter LANES        = 4,       // channels pooled in parallel (see cnnx_pool_core.v)
    parameter IFMAP_DEPTH  = 8192,    // input map buffer, bytes
    parameter OFMAP_DEPTH  = 2048,    // output map buffer, bytes
    parameter W            = 32       // stream width, bits: 32 or 64
) (
    input  wire          clk,
    input  wire          rst,         // synchronous, active high
    input  wire          s_axis_tvalid,
    output wire          s_axis_tready,
    input  wire [W-1:0]  s_axis_tdata,
    input  wire          s_axis_tlast,
    output wire          m_axis_tvalid,
    input  wire          m_axis_tready,
    output wire [W-1:0]  m_axis_tdata,
    output wire          m_axis_tlast,
    output wire          error,       // a malformed stream was seen (sticky until rst; cnnx_axis_in.v)
    output wire [31:0]   cycle_count, // the core's own counters (compute only, last run)
    output wire [31:0]   cnt_total,   // cnnx_stream_counters.v
    output wire [31:0]   cnt_load,
    output wire [31:0]   cnt_compute,
    output wire [31:0]   cnt_drain,
    output wire [31:0]   cnt_stall_in,
    output wire [31:0]   cnt_stall_out
);
    localparam AW  = $clog2(IFMAP_DEPTH) - 2;
    localparam RAW = $clog2(OFMAP_DEPTH) - 2;

    wire          wr_en, cfg_en, start, busy, done, rd_req, rd_idle;
    wire [1:0]    wr_sel;                 // the pool core has one buffer: WR1 and WR2 are refused (limit 0)
    wire [AW-1:0] wr_addr;
    wire [31:0]   wr_data, cfg_data, rd_data;
    wire [3:0]    cfg_addr;
    wire [RAW-1:0] rd_addr, rd_req_addr;
    wire [14:0]   rd_req_len;

    cnnx_axis_in #(
        .W(W), .AW(AW), .RAW(RAW), .LIM0(IFMAP_DEPTH / 4), .LIM1(0), .LIM2(0),
        .RLIM(OFMAP_DEPTH / 4)
    ) u_in (
        .clk(clk), .rst(rst), .s_axis_tvalid(s_axis_tvalid), .s_axis_tready(s_axis_tready),
        .s_axis_tdata(s_axis_tdata), .s_axis_tlast(s_axis_tlast), .wr_en(wr_en), .wr_sel(wr_sel),
        .wr_addr(wr_addr), .wr_data(wr_data), .cfg_en(cfg_en), .cfg_addr(cfg_addr), .cfg_data(cfg_data),
        .start(start), .core_done(done), .rd_req(rd_req), .rd_req_addr(rd_req_addr), .rd_req_len(rd_req_len),
        .rd_idle(rd_idle), .error(error)
    );

    cnnx_pool_core #(.LANES(LANES), .IFMAP_DEPTH(IFMAP_DEPTH), .OFMAP_DEPTH(OFMAP_DEPTH)) u_core (
        .clk(clk), .rst(rst), .wr_en(wr_en), .wr_addr(wr_addr), .wr_data(wr_data), .cfg_en(cfg_en),
        .cfg_addr(cfg_addr), .cfg_data(cfg_data), .start(start), .busy(busy), .done(done), .rd_addr(rd_addr),
        .rd_data(rd_data), .cycle_count(cycle_count)
    );
    wire unused_sel = ^wr_sel;

    cnnx_axis_out #(.W(W), .RAW(RAW)) u_out (
        .clk(clk), .rst(rst), .req(rd_req), .req_addr(rd_req_addr), .req_len(rd_req_len), .idle(rd_idle),
        .rd_addr(rd_addr), .rd_data(rd_data), .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready),
        .m_axis_tdata(m_axis_tdata), .m_axis_tlast(m_axis_tlast)
    );

    cnnx_stream_counters u_cnt (
        .clk(clk), .rst(rst), .s_valid(s_axis_tvalid), .s_ready(s_axis_tready), .s_last(s_axis_tlast),
        .m_valid(m_axis_tvalid), .m_ready(m_axis_tready), .core_busy(busy), .total(cnt_total),
        .load(cnt_load), .compute(cnt_compute), .drain(cnt_drain), .stall_in(cnt_stall_in),
        .stall_out(cnt_stall_out)
    );
endmodule
