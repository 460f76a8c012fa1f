// bench_tb.cpp — a plain C++ Verilator testbench of cnnx_conv_core, for benchmarks/bench_rtl.py: the
// simulator's own speed limit, with no Python and no driver layer around it. It loads one layer (LeNet's
// conv2 by default: 6x14x14 input, 16 filters of 5x5) with pseudo-random bytes, then runs it `n` times,
// timing only the start-to-done clocking. Prints "cycles <core cycles> seconds <wall>".
// The data layout does not matter for speed, only the sizes: the weights and bias go to each column bank
// (the core's default 8 columns, banks of WEIGHT_DEPTH/8 bytes and BIAS_DEPTH/8 entries).
// Built by the benchmark (never committed as a binary) against the objects of a cached build.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "Vcnnx_conv_core.h"
#include "verilated.h"

void vl_finish(const char* filename, int linenum, const char* hier) {
    (void)hier;
    std::fprintf(stderr, "bench_tb: $finish at %s:%d\n", filename, linenum);
    Verilated::threadContextp()->gotFinish(true);
}
double sc_time_stamp() { return 0; }

static void tick(Vcnnx_conv_core* top) {
    top->clk = 1;
    top->eval();
    top->clk = 0;
    top->eval();
}

static uint32_t next_word(uint32_t* state) {  // xorshift32: data only has to be non-trivial
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

int main(int argc, char** argv) {
    const long n_runs = argc > 1 ? std::atol(argv[1]) : 100;
    // C, H, W, F, KH, KW, STRIDE, PAD, OH, OW, MULT, SHIFT, RELU, H*W, STRIDE*W, PAD*W + PAD
    const uint32_t cfg[16] = {6, 14, 14, 16, 5, 5, 1, 0, 10, 10, 20000, 22, 1, 14 * 14, 14, 0};
    const int cols = 8;                               // the default build's columns (= its banks)
    const long in_words = (6 * 14 * 14 + 3) / 4;
    const long w_words = (2 * 6 * 25 + 3) / 4;        // per column bank: 2 filters of K = 150
    const long w_bank = 65536 / cols / 4, b_bank = 256 / cols;

    VerilatedContext ctx;
    Vcnnx_conv_core* top = new Vcnnx_conv_core{&ctx};
    top->clk = 0;
    top->rst = 1;
    tick(top);
    tick(top);
    top->rst = 0;
    top->cfg_en = 1;
    for (int i = 0; i < 16; ++i) {
        top->cfg_addr = i;
        top->cfg_data = cfg[i];
        tick(top);
    }
    top->cfg_en = 0;
    uint32_t seed = 12345;
    top->wr_en = 1;
    top->wr_sel = 0;
    for (long i = 0; i < in_words; ++i) {
        top->wr_addr = i;
        top->wr_data = next_word(&seed) & 0x0f0f0f0fu;
        tick(top);
    }
    for (int c = 0; c < cols; ++c) {
        top->wr_sel = 1;
        for (long i = 0; i < w_words; ++i) {
            top->wr_addr = c * w_bank + i;
            top->wr_data = next_word(&seed) & 0x0f0f0f0fu;
            tick(top);
        }
        top->wr_sel = 2;
        for (long i = 0; i < 2; ++i) {
            top->wr_addr = c * b_bank + i;
            top->wr_data = next_word(&seed) & 0x3ff;
            tick(top);
        }
    }
    top->wr_en = 0;

    uint64_t cycles = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (long r = 0; r < n_runs; ++r) {
        top->start = 1;
        tick(top);
        top->start = 0;
        while (!top->done) tick(top);
        cycles += top->cycle_count;
    }
    auto t1 = std::chrono::steady_clock::now();
    std::printf("cycles %llu seconds %.6f\n", (unsigned long long)cycles,
                std::chrono::duration<double>(t1 - t0).count());
    top->final();
    delete top;
    return 0;
}
