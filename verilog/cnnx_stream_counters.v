`default_nettype none
// cnnx_stream_counters: the end-to-end counters of a streamed layer (cnnx_conv_stream, cnnx_pool_stream).
// A stream opens with its first accepted input beat (which clears every counter) and its input side closes
// with the accepted tlast beat. From the opening beat on:
//   total      cycles from the first accepted input beat to the latest output beat, both included
//   load       input beats accepted
//   compute    cycles the core was busy
//   drain      output beats sent
//   stall_in   cycles the decoder was ready but tvalid was low, before the input's tlast
//   stall_out  cycles an output beat was offered but tready was low
// cnnx/cycles.py models them (stream_cycles); with no stall injected they equal it exactly.
module cnnx_stream_counters (
    input  wire        clk,
    input  wire        rst,                // synchronous, active high
    input  wire        s_valid,
    input  wire        s_ready,
    input  wire        s_last,
    input  wire        m_valid,
    input  wire        m_ready,
    input  wire        core_busy,
    output reg  [31:0] total,
    output reg  [31:0] load,
    output reg  [31:0] compute,
    output reg  [31:0] drain,
    output reg  [31:0] stall_in,
    output reg  [31:0] stall_out
);
    reg        open_reg;                   // between a stream's first beat and its tlast beat
    reg        run_reg;                    // counting (from a first beat until the next stream)
    reg [31:0] t_reg;                      // cycles since the first beat (0 on that beat)
    wire in_beat = s_valid && s_ready;
    wire out_beat = m_valid && m_ready;
    wire first = in_beat && !open_reg;

    always @(posedge clk) begin
        if (rst) begin
            open_reg <= 1'b0;
            run_reg <= 1'b0;
            t_reg <= 32'd0;
            total <= 32'd0;
            load <= 32'd0;
            compute <= 32'd0;
            drain <= 32'd0;
            stall_in <= 32'd0;
            stall_out <= 32'd0;
        end else if (first) begin
            open_reg <= !s_last;
            run_reg <= 1'b1;
            t_reg <= 32'd1;
            total <= 32'd0;
            load <= 32'd1;
            compute <= {31'd0, core_busy};
            drain <= 32'd0;
            stall_in <= 32'd0;
            stall_out <= 32'd0;
        end else if (run_reg) begin
            t_reg <= t_reg + 32'd1;
            if (in_beat) load <= load + 32'd1;
            if (in_beat && s_last) open_reg <= 1'b0;
            if (core_busy) compute <= compute + 32'd1;
            if (out_beat) begin
                drain <= drain + 32'd1;
                total <= t_reg + 32'd1;
            end
            if (open_reg && s_ready && !s_valid) stall_in <= stall_in + 32'd1;
            if (m_valid && !m_ready) stall_out <= stall_out + 32'd1;
        end
    end
endmodule
