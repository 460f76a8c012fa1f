`default_nettype none
// cnnx_ram_sdp: a simple dual-port memory written in the shape that maps onto one block RAM (ECP5 DP16KD /
// PDPW16KD) or, when tiny, onto LUT-RAM: one write port with byte enables, one read port with a registered
// output (and a read enable that holds it). No reset: the contents are whatever the host last wrote.
// Read-during-write of the same word returns the old word (the cores never do it).
// OUT_REG = 1 adds a fabric register after the RAM's output (read latency two cycles), for reads on a
// timing-critical path: an ECP5 EBR without its own output register (Yosys does not use it) takes about
// 6 ns from clock to data.
module cnnx_ram_sdp #(
    parameter WIDTH = 32,     // word width, a multiple of 8
    parameter DEPTH = 1024,   // words (the address is $clog2(DEPTH) bits)
    parameter OUT_REG = 0     // 1: one more register after the read (latency 2)
) (
    input  wire                        clk,
    input  wire [WIDTH/8-1:0]          we,       // one write enable per byte lane
    input  wire [$clog2(DEPTH)-1:0]    waddr,
    input  wire [WIDTH-1:0]            wdata,
    input  wire                        re,
    input  wire [$clog2(DEPTH)-1:0]    raddr,
    output reg  [WIDTH-1:0]            rdata
);

    generate
        if (WIDTH < 8 || WIDTH % 8 != 0 || DEPTH < 2) begin : g_bad
            $fatal(1, "cnnx_ram_sdp: WIDTH must be a multiple of 8 and DEPTH >= 2, got %0d, %0d", WIDTH, DEPTH);
        end
    endgenerate

    integer i;
`ifdef SYNTHESIS
    // For synthesis, OUT_REG = 1 is the block RAM's own output register: the memory is written with one
    // read register, named mem_oreg, and the flow (cnnx/fpga/flow.py) sets REGMODE = OUTREG on the DP16KDs
    // it becomes, which adds the second register inside the EBR (the simulation's `rdata <= rd_q`; about
    // 6 ns from clock to data without it, under 2 ns with it). `ram_style` keeps it in block RAM (the only
    // place that register exists); `no_rw_check` drops the read/write-collision bypass Yosys would
    // otherwise put after the RAM (collisions never happen: see above).
    generate
        if (OUT_REG != 0) begin : g_out_reg
            (* ram_style = "block", no_rw_check *) reg [WIDTH-1:0] mem_oreg [0:DEPTH-1];
            always @(posedge clk) begin
                for (i = 0; i < WIDTH / 8; i = i + 1) begin
                    if (we[i]) begin
                        mem_oreg[waddr][i*8 +: 8] <= wdata[i*8 +: 8];
                    end
                end
                if (re) begin
                    rdata <= mem_oreg[raddr];
                end
            end
        end else begin : g_no_out_reg
            reg [WIDTH-1:0] mem [0:DEPTH-1];
            always @(posedge clk) begin
                for (i = 0; i < WIDTH / 8; i = i + 1) begin
                    if (we[i]) begin
                        mem[waddr][i*8 +: 8] <= wdata[i*8 +: 8];
                    end
                end
                if (re) begin
                    rdata <= mem[raddr];
                end
            end
        end
    endgenerate
`else
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    reg [WIDTH-1:0] rd_q;

    always @(posedge clk) begin
        for (i = 0; i < WIDTH / 8; i = i + 1) begin
            if (we[i]) begin
                mem[waddr][i*8 +: 8] <= wdata[i*8 +: 8];
            end
        end
        if (re) begin
            rd_q <= mem[raddr];
        end
    end

    generate
        if (OUT_REG != 0) begin : g_out_reg
            always @(posedge clk) rdata <= rd_q;
        end else begin : g_no_out_reg
            always @(*) rdata = rd_q;
        end
    endgenerate
`endif

endmodule

`default_nettype wire
