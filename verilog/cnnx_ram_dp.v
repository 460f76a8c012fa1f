`default_nettype none
// cnnx_ram_dp: a true dual-port memory in the shape that maps onto one ECP5 DP16KD (two in parallel for 32
// bits): port A reads or writes, port B reads; both reads registered. A core uses both ports to read two
// streams at once while it runs, and port A to take the host's writes while it is idle.
// The block RAM's own output is slow (an ECP5 EBR without its output register takes about 6 ns from clock
// to data, and Yosys does not use that register), so the data get one more register in the fabric: the
// read latency is two cycles, and nothing but a register follows the RAM.
module cnnx_ram_dp #(
    parameter WIDTH = 32,     // word width
    parameter DEPTH = 1024    // words (the address is $clog2(DEPTH) bits)
) (
    input  wire                        clk,
    input  wire                        a_we,
    input  wire [$clog2(DEPTH)-1:0]    a_addr,
    input  wire [WIDTH-1:0]            a_wdata,
    output reg  [WIDTH-1:0]            a_rdata,
    input  wire [$clog2(DEPTH)-1:0]    b_addr,
    output reg  [WIDTH-1:0]            b_rdata
);

    generate
        if (WIDTH < 1 || DEPTH < 2) begin : g_bad
            $fatal(1, "cnnx_ram_dp: need WIDTH >= 1 and DEPTH >= 2, got %0d, %0d", WIDTH, DEPTH);
        end
    endgenerate

`ifdef SYNTHESIS
    // For synthesis the second register of each port is the block RAM's own output register: one read
    // register here, and the flow (cnnx/fpga/flow.py) sets REGMODE_A/B = OUTREG on the DP16KDs of every
    // memory named mem_oreg (see cnnx_ram_sdp); same read latency, two cycles.
    (* ram_style = "block", no_rw_check *) reg [WIDTH-1:0] mem_oreg [0:DEPTH-1];

    always @(posedge clk) begin
        if (a_we) begin
            mem_oreg[a_addr] <= a_wdata;
        end
        a_rdata <= mem_oreg[a_addr];
    end

    always @(posedge clk) begin
        b_rdata <= mem_oreg[b_addr];
    end
`else
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    reg [WIDTH-1:0] a_q, b_q;

    always @(posedge clk) begin
        if (a_we) begin
            mem[a_addr] <= a_wdata;
        end
        a_q <= mem[a_addr];
        a_rdata <= a_q;
    end

    always @(posedge clk) begin
        b_q <= mem[b_addr];
        b_rdata <= b_q;
    end
`endif

endmodule

`default_nettype wire
