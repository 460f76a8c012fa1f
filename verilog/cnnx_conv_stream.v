`default_nettype none
// cnnx_conv_stream: the conv core (cnnx_conv_core.v, unchanged) run from one AXI-Stream in and one out:
// cnnx_axis_in decodes the input stream (registers, weights, bias, input map, start, read-back requests;
// the format is documented there and built by cnnx/compile/stream.py), cnnx_axis_out streams the requested
// output words, cnnx_stream_counters counts the end-to-end cycles that cnnx/cycles.py models.
module cnnx_conv_stream #(
    parameter ROWS         = 8,       // systolic array rows (see cnnx_conv_core.v)
    parameter COLS         = 8,       // systolic array columns
    parameter IFMAP_DEPTH  = 8192,    // input map buffer, bytes
    parameter WEIGHT_DEPTH = 65536,   // weight buffer, bytes
    parameter OFMAP_DEPTH  = 8192,    // output map buffer, bytes
    parameter BIAS_DEPTH   = 256,     // bias buffer, int32 entries
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
    output wire [31:0]   mac_count,
    output wire [31:0]   cnt_total,   // cnnx_stream_counters.v
    output wire [31:0]   cnt_load,
    output wire [31:0]   cnt_compute,
    output wire [31:0]   cnt_drain,
    output wire [31:0]   cnt_stall_in,
    output wire [31:0]   cnt_stall_out
);
    localparam AW  = $clog2(WEIGHT_DEPTH) - 2;
    localparam RAW = $clog2(OFMAP_DEPTH) - 2;

    wire          wr_en, cfg_en, start, busy, done, rd_req, rd_idle;
    wire [1:0]    wr_sel;
    wire [AW-1:0] wr_addr;
    wire [31:0]   wr_data, cfg_data, rd_data;
    wire [3:0]    cfg_addr;
    wire [RAW-1:0] rd_addr, rd_req_addr;
    wire [14:0]   rd_req_len;

    cnnx_axis_in #(
        .W(W), .AW(AW), .RAW(RAW), .LIM0(IFMAP_DEPTH / 4), .LIM1(WEIGHT_DEPTH / 4), .LIM2(BIAS_DEPTH),
        .RLIM(OFMAP_DEPTH / 4)
    ) u_in (
        .clk(clk), .rst(rst), .s_axis_tvalid(s_axis_tvalid), .s_axis_tready(s_axis_tready),
        .s_axis_tdata(s_axis_tdata), .s_axis_tlast(s_axis_tlast), .wr_en(wr_en), .wr_sel(wr_sel),
        .wr_addr(wr_addr), .wr_data(wr_data), .cfg_en(cfg_en), .cfg_addr(cfg_addr), .cfg_data(cfg_data),
        .start(start), .core_done(done), .rd_req(rd_req), .rd_req_addr(rd_req_addr), .rd_req_len(rd_req_len),
        .rd_idle(rd_idle), .error(error)
    );

    cnnx_conv_core #(
        .ROWS(ROWS), .COLS(COLS), .IFMAP_DEPTH(IFMAP_DEPTH), .WEIGHT_DEPTH(WEIGHT_DEPTH),
        .OFMAP_DEPTH(OFMAP_DEPTH), .BIAS_DEPTH(BIAS_DEPTH)
    ) u_core (
        .clk(clk), .rst(rst), .wr_en(wr_en), .wr_sel(wr_sel), .wr_addr(wr_addr), .wr_data(wr_data),
        .cfg_en(cfg_en), .cfg_addr(cfg_addr), .cfg_data(cfg_data), .start(start), .busy(busy), .done(done),
        .rd_addr(rd_addr), .rd_data(rd_data), .cycle_count(cycle_count), .mac_count(mac_count)
    );

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
