// tb.cpp — the standalone testbench of a cnnx export (`cnnx export`): no Python. Built by the export's
// Makefile once per core (-DCNNX_CONV_CORE=1 / -DCNNX_POOL_CORE=1, the Verilated top renamed Vtop).
//
// Usage: tb_<core> tb_<core>.list. The list names, per layer, its program (the host-interface traffic the
// cnnx drivers and tiler produce: register writes, buffer writes, runs), its weight and bias $readmemh
// files, its golden input and output vectors (the int8 golden model's), their sizes and the cycles per image
// the cycle model expects. For every layer and every image, the testbench loads the golden input through the
// same host interface as cnnx's drivers (sim/batch_driver.cpp: same clocking), runs the core, checks the
// cycle counter of every run and every output byte, and exits 1 at the first mismatch (2 on a bad file).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "Vtop.h"
#include "verilated.h"

double sc_time_stamp() { return 0; }

namespace {

VerilatedContext* ctx;
Vtop* top;

void tick() {
    top->clk = 1;
    top->eval();
    top->clk = 0;
    top->eval();
}

void reset() {
    top->wr_en = 0;
    top->cfg_en = 0;
    top->start = 0;
    top->rst = 1;
    tick();
    tick();
    top->rst = 0;
}

void write_words(int sel, const std::vector<uint32_t>& words, uint32_t addr0) {
#if defined(CNNX_CONV_CORE)
    top->wr_sel = sel;
#else
    (void)sel;
#endif
    top->wr_en = 1;
    for (size_t i = 0; i < words.size(); ++i) {
        top->wr_addr = addr0 + (uint32_t)i;
        top->wr_data = words[i];
        tick();
    }
    top->wr_en = 0;
}

[[noreturn]] void fail(int code, const char* what, const std::string& detail) {
    std::fprintf(stderr, "tb: %s: %s\n", what, detail.c_str());
    std::exit(code);
}

// a $readmemh file of `n` values (// comments allowed), each masked to `bits` bits
std::vector<uint32_t> read_hex(const std::string& path, size_t n) {
    std::vector<uint32_t> v;
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) fail(2, "cannot open", path);
    char tok[256];
    while (std::fscanf(f, "%255s", tok) == 1) {
        if (tok[0] == '/' && tok[1] == '/') {
            int c;
            while ((c = std::fgetc(f)) != EOF && c != '\n') {
            }
            continue;
        }
        char* end;
        unsigned long x = std::strtoul(tok, &end, 16);
        if (*end) fail(2, "not a hex value in", path + ": " + tok);
        v.push_back((uint32_t)x);
    }
    std::fclose(f);
    if (v.size() != n) fail(2, "wrong number of values in", path + " (expected " + std::to_string(n) + ")");
    return v;
}

long long next_int(FILE* f, const std::string& path) {
    long long x;
    if (std::fscanf(f, "%lld", &x) != 1) fail(2, "truncated program", path);
    return x;
}

uint32_t pick(const std::vector<uint32_t>& src, size_t off, long long idx, size_t size, const char* what) {
    if (idx < 0) return 0;
    if ((size_t)idx >= size) fail(2, "program index out of range for", what);
    return src[off + (size_t)idx];
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) fail(2, "usage", "tb_<core> tb_<core>.list");
    ctx = new VerilatedContext;
    top = new Vtop{ctx};
    top->clk = 0;
    top->rst = 0;
    top->wr_en = 0;
    top->cfg_en = 0;
    top->start = 0;
    top->rd_addr = 0;
    top->eval();
    auto t0 = std::chrono::steady_clock::now();

    FILE* list = std::fopen(argv[1], "r");
    if (!list) fail(2, "cannot open", argv[1]);
    long long n_images, n_layers;
    if (std::fscanf(list, "%lld %lld", &n_images, &n_layers) != 2) fail(2, "bad list header", argv[1]);
    for (long long l = 0; l < n_layers; ++l) {
        char prog[512], wf[512], bf[512], inf[512], outf[512];
        long long idx, in_size, out_size, w_size, f_size, expected;
        if (std::fscanf(list, "%lld %511s %511s %511s %511s %511s %lld %lld %lld %lld %lld", &idx, prog, wf, bf,
                        inf, outf, &in_size, &out_size, &w_size, &f_size, &expected) != 11)
            fail(2, "bad list line in", argv[1]);
        std::vector<uint32_t> W, B;
        if (std::strcmp(wf, "-") != 0) W = read_hex(wf, (size_t)w_size);
        if (std::strcmp(bf, "-") != 0) B = read_hex(bf, (size_t)f_size);
        std::vector<uint32_t> X = read_hex(inf, (size_t)(n_images * in_size));
        std::vector<uint32_t> Y = read_hex(outf, (size_t)(n_images * out_size));
        std::vector<unsigned long long> cycles(n_images, 0);
        FILE* p = std::fopen(prog, "r");
        if (!p) fail(2, "cannot open", prog);
        reset();
        char op[16];
        long long runs = 0;
        while (true) {
            if (std::fscanf(p, "%15s", op) != 1) fail(2, "program without end:", prog);
            if (!std::strcmp(op, "end")) break;
            if (!std::strcmp(op, "cfg")) {
                long long k = next_int(p, prog);
                top->cfg_en = 1;
                for (long long i = 0; i < k; ++i) {
                    top->cfg_addr = (uint32_t)next_int(p, prog);
                    top->cfg_data = (uint32_t)next_int(p, prog);
                    tick();
                }
                top->cfg_en = 0;
            } else if (!std::strcmp(op, "wr")) {
                int sel = (int)next_int(p, prog);
                uint32_t addr0 = (uint32_t)next_int(p, prog);
                long long k = next_int(p, prog);
                std::vector<uint32_t> words(k, 0);
                for (long long i = 0; i < k; ++i) {
                    if (sel == 2) {
                        words[i] = pick(B, 0, next_int(p, prog), B.size(), "bias");
                    } else {
                        for (int b = 0; b < 4; ++b)
                            words[i] |= (pick(W, 0, next_int(p, prog), W.size(), "weights") & 0xFF) << (8 * b);
                    }
                }
                write_words(sel, words, addr0);
            } else if (!std::strcmp(op, "run")) {
                int in_sel = (int)next_int(p, prog);
                long long nin = next_int(p, prog), nout = next_int(p, prog);
                unsigned long long want_cycles = (unsigned long long)next_int(p, prog);
                std::vector<long long> in_idx(4 * nin), omap(4 * nout);
                std::vector<uint32_t> addrs(nout);
                for (auto& v : in_idx) v = next_int(p, prog);
                for (auto& v : addrs) v = (uint32_t)next_int(p, prog);
                for (auto& v : omap) v = next_int(p, prog);
                for (long long n = 0; n < n_images; ++n) {
                    std::vector<uint32_t> words(nin, 0);
                    for (long long i = 0; i < 4 * nin; ++i)
                        words[i / 4] |= (pick(X, n * in_size, in_idx[i], in_size, "input") & 0xFF) << (8 * (i % 4));
                    write_words(in_sel, words, 0);
                    top->start = 1;
                    tick();
                    top->start = 0;
                    unsigned long long waited = 0;
                    while (!top->done) {
                        if (++waited > 2 * want_cycles + 1000) {
                            std::fprintf(stderr, "tb: layer %lld run %lld image %lld: no done within %llu cycles\n",
                                         idx, runs, n, waited);
                            return 1;
                        }
                        tick();
                    }
                    if (top->cycle_count != want_cycles) {
                        std::fprintf(stderr, "tb: layer %lld run %lld image %lld: %u cycles, expected %llu\n", idx,
                                     runs, n, (unsigned)top->cycle_count, want_cycles);
                        return 1;
                    }
                    cycles[n] += top->cycle_count;
                    for (long long j = 0; j < nout; ++j) {
                        top->rd_addr = addrs[j];
                        tick();
                        uint32_t word = top->rd_data;
                        for (int b = 0; b < 4; ++b) {
                            long long o = omap[4 * j + b];
                            if (o < 0) continue;
                            if (o >= out_size) fail(2, "output index out of range in", prog);
                            uint32_t got = (word >> (8 * b)) & 0xFF, want = Y[n * out_size + o] & 0xFF;
                            if (got != want) {
                                std::fprintf(stderr, "tb: MISMATCH layer %lld image %lld output %lld: got %d, "
                                             "expected %d\n", idx, n, o, (int)(int8_t)got, (int)(int8_t)want);
                                return 1;
                            }
                        }
                    }
                }
                ++runs;
            } else {
                fail(2, "unknown program op in", std::string(prog) + ": " + op);
            }
        }
        std::fclose(p);
        for (long long n = 0; n < n_images; ++n) {
            if (cycles[n] != (unsigned long long)expected) {
                std::fprintf(stderr, "tb: layer %lld image %lld: %llu cycles, expected %lld\n", idx, n, cycles[n],
                             expected);
                return 1;
            }
        }
        std::printf("layer %lld: %lld/%lld images bit-identical, %lld runs, %llu cycles per image (expected %lld)\n",
                    idx, n_images, n_images, runs, cycles.empty() ? 0ULL : cycles[0], expected);
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("PASS: %lld layers, %lld images, %.2f s\n", n_layers, n_images, s);
    top->final();
    delete top;
    delete ctx;
    return 0;
}
