// batch_driver.cpp — the "fast" driver of the cnnx RTL cores: a C API over one Verilated model, loaded with
// ctypes by cnnx/sim/drivers.py, so that a whole layer for a batch of images runs without Python in the
// per-cycle loop. Compiled by cnnx/sim/builder.py against the very objects of the pyverilator model, with
// -DCNNX_CONV_CORE=1 or -DCNNX_POOL_CORE=1 selecting the top module; -DCNNX_CONV_STREAM=1 or
// -DCNNX_POOL_STREAM=1 select a core behind its AXI-Stream wrapper (cnnx_conv_stream.v, cnnx_pool_stream.v),
// driven by cnnx_stream_push alone (the host ports are inside the wrapper).
//
// The clocking protocol is the python driver's, step for step (both must give identical outputs and cycle
// counts): inputs are set while clk is low, then one tick = clk 1, eval, clk 0, eval. A run is: start = 1,
// tick, start = 0, tick until done; the cycle count is the core's own counter, read after done. The output
// read port is registered: set rd_addr, tick, then rd_data holds that word.
// Every model has its own VerilatedContext, so models in one process (or in many processes) are independent;
// one model must not be used from two threads at once. A model created with tracing on dumps every clock
// edge to a VCD file (for GTKWave); that is slow and meant for small runs. The VCD's time unit is 1 ps (the
// $timescale Verilator writes) and one clock period is `period_ps`: rise k at k*P + P/2, fall k at (k+1)*P,
// the python driver's time base too (cnnx/sim/drivers.py).
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "verilated.h"
#include "verilated_vcd_c.h"

#if defined(CNNX_CONV_CORE)
#include "Vcnnx_conv_core.h"
typedef Vcnnx_conv_core Top;
#elif defined(CNNX_POOL_CORE)
#include "Vcnnx_pool_core.h"
typedef Vcnnx_pool_core Top;
#elif defined(CNNX_CONV_STREAM)
#include "Vcnnx_conv_stream.h"
typedef Vcnnx_conv_stream Top;
#define CNNX_STREAM 1
#elif defined(CNNX_POOL_STREAM)
#include "Vcnnx_pool_stream.h"
typedef Vcnnx_pool_stream Top;
#define CNNX_STREAM 1
#else
#error "compile with -DCNNX_CONV_CORE=1, -DCNNX_POOL_CORE=1, -DCNNX_CONV_STREAM=1 or -DCNNX_POOL_STREAM=1"
#endif

// verilated.o was compiled with VL_USER_FINISH (pyverilator's flags); the cores never call $finish.
void vl_finish(const char* filename, int linenum, const char* hier) {
    (void)hier;
    std::fprintf(stderr, "cnnx batch driver: $finish at %s:%d\n", filename, linenum);
    Verilated::threadContextp()->gotFinish(true);
}
double sc_time_stamp() { return 0; }

namespace {

struct Model {
    VerilatedContext* ctx;
    Top* top;
    VerilatedVcdC* vcd;  // null unless tracing
    uint64_t ticks;      // every clock edge pair this model has seen, loading included (for the benchmark)
    uint64_t period_ps;  // one clock period in VCD time units (1 ps)
};

inline void tick(Model* m) {
    m->top->clk = 1;
    m->top->eval();
    if (m->vcd) m->vcd->dump(m->ticks * m->period_ps + m->period_ps / 2);
    m->top->clk = 0;
    m->top->eval();
    if (m->vcd) m->vcd->dump((m->ticks + 1) * m->period_ps);
    m->ticks++;
}

// every input port at rest (clk and rst aside)
void idle_inputs(Model* m) {
#if defined(CNNX_STREAM)
    m->top->s_axis_tvalid = 0;
    m->top->s_axis_tlast = 0;
    m->top->m_axis_tready = 0;
#else
    m->top->wr_en = 0;
    m->top->cfg_en = 0;
    m->top->start = 0;
#endif
}

#if !defined(CNNX_STREAM)
void write_words(Model* m, int sel, const uint32_t* words, int64_t n_words, uint32_t addr0) {
#if defined(CNNX_CONV_CORE)
    m->top->wr_sel = sel;
#else
    (void)sel;
#endif
    m->top->wr_en = 1;
    for (int64_t i = 0; i < n_words; ++i) {
        m->top->wr_addr = addr0 + (uint32_t)i;
        m->top->wr_data = words[i];
        tick(m);
    }
    m->top->wr_en = 0;
}

// start, clock to done; returns 0, or -1 when done did not come within max_cycles
int run_one(Model* m, uint64_t max_cycles) {
    m->top->start = 1;
    tick(m);
    m->top->start = 0;
    uint64_t n = 0;
    while (!m->top->done) {
        if (++n > max_cycles) return -1;
        tick(m);
    }
    return 0;
}

// read the words at addrs[0 .. n_words-1] (one tick each: the read port is registered)
void read_words(Model* m, const uint32_t* addrs, uint32_t* words, int64_t n_words) {
    for (int64_t i = 0; i < n_words; ++i) {
        m->top->rd_addr = addrs[i];
        tick(m);
        words[i] = m->top->rd_data;
    }
}
#else
// the stall generator shared with the python driver (sim/drivers.py's _SplitMix): splitmix64, a uniform
// double in [0, 1) from the top 53 bits; a beat goes (tvalid / tready high) unless it draws below `stall`
inline uint64_t splitmix(uint64_t* s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

inline bool go(uint64_t* s, double stall) {
    return stall <= 0.0 || (double)(splitmix(s) >> 11) * (1.0 / 9007199254740992.0) >= stall;
}
#endif

}  // namespace

extern "C" {

// a new model; with a non-null `vcd_path`, every clock edge is dumped to that VCD file, one clock period
// being `period_ps` picoseconds
void* cnnx_new(const char* vcd_path, uint64_t period_ps) {
    Model* m = new Model;
    m->ctx = new VerilatedContext;
    if (vcd_path) m->ctx->traceEverOn(true);  // must precede the model's construction
    m->top = new Top{m->ctx};
    m->vcd = nullptr;
    m->ticks = 0;
    m->period_ps = period_ps < 2 ? 2 : period_ps;
    if (vcd_path) {
        m->vcd = new VerilatedVcdC;
        m->top->trace(m->vcd, 99);
        m->vcd->open(vcd_path);
    }
    m->top->clk = 0;
    m->top->rst = 0;
    idle_inputs(m);
#if !defined(CNNX_STREAM)
    m->top->rd_addr = 0;
#endif
    m->top->eval();
    return m;
}

void cnnx_free(void* handle) {
    Model* m = static_cast<Model*>(handle);
    if (m == nullptr) return;
    if (m->vcd) {
        m->vcd->close();
        delete m->vcd;
    }
    m->top->final();
    delete m->top;
    delete m->ctx;
    delete m;
}

// synchronous reset: rst high for two ticks (registers only; the buffers keep their contents)
void cnnx_reset(void* handle) {
    Model* m = static_cast<Model*>(handle);
    idle_inputs(m);
    m->top->rst = 1;
    tick(m);
    tick(m);
    m->top->rst = 0;
}

#if !defined(CNNX_STREAM)
// write `n` configuration registers: addrs[i] <- values[i], one tick each
void cnnx_config(void* handle, const int32_t* addrs, const uint32_t* values, int n) {
    Model* m = static_cast<Model*>(handle);
    m->top->cfg_en = 1;
    for (int i = 0; i < n; ++i) {
        m->top->cfg_addr = addrs[i];
        m->top->cfg_data = values[i];
        tick(m);
    }
    m->top->cfg_en = 0;
}

// write `n_words` words of a buffer from word address `addr0` (sel: the conv core's wr_sel; ignored by the
// pool core)
void cnnx_write(void* handle, int sel, const uint32_t* words, int64_t n_words, uint32_t addr0) {
    write_words(static_cast<Model*>(handle), sel, words, n_words, addr0);
}

// One layer for a batch: for each image, load `in_words` words of its input map (buffer select `in_sel`),
// run, read the `out_words` output words at `out_addrs`, and record the core's cycle (and, conv core, MAC)
// counters. Returns the number of images done: n_images, or fewer when one timed out (its outputs are
// then unset).
int64_t cnnx_run_batch(void* handle, int in_sel, const uint32_t* in, int64_t in_words, int64_t n_images,
                       const uint32_t* out_addrs, uint32_t* out, int64_t out_words, uint32_t* cycles,
                       uint32_t* macs, uint64_t max_cycles) {
    Model* m = static_cast<Model*>(handle);
    for (int64_t n = 0; n < n_images; ++n) {
        write_words(m, in_sel, in + n * in_words, in_words, 0);
        if (run_one(m, max_cycles) != 0) return n;
        read_words(m, out_addrs, out + n * out_words, out_words);
        cycles[n] = m->top->cycle_count;
#if defined(CNNX_CONV_CORE)
        macs[n] = m->top->mac_count;
#else
        macs[n] = 0;
#endif
    }
    return n_images;
}
#else
// Push one stream of `n_beats` beats (W <= 64 bits each, tlast on the last) into the wrapper while taking the
// output stream: read-back r has need[r] beats (tlast on its last), stored one beat per element of `out`.
// Stalls: each clock the input's tvalid and the output's tready are low with probability `stall`, drawn in
// that order (tvalid only while beats remain) from `rng` (updated), as the python driver draws them.
// counters <- total, load, compute, drain, stall_in, stall_out, the core's cycle_count, mac_count (conv) and
// error. Returns the output beats taken, -1 on a time-out (max_cycles), -2 on an output beat not asked for
// or a misplaced tlast.
int64_t cnnx_stream_push(void* handle, const uint64_t* beats, int64_t n_beats, const int64_t* need,
                         int64_t n_reads, uint64_t* out, double stall, uint64_t* rng, uint64_t max_cycles,
                         uint32_t* counters) {
    Model* m = static_cast<Model*>(handle);
    Top* t = m->top;
    t->eval();
    int64_t i = 0, r = 0, k = 0, o = 0;
    uint64_t cycles = 0;
    while (i < n_beats || r < n_reads) {
        bool take_in = false;
        if (i < n_beats) {
            bool valid = go(rng, stall);
            t->s_axis_tvalid = valid;
            t->s_axis_tdata = beats[i];
            t->s_axis_tlast = (i == n_beats - 1);
            take_in = valid && t->s_axis_tready;
        } else {
            t->s_axis_tvalid = 0;
        }
        bool ready = go(rng, stall);
        t->m_axis_tready = ready;
        if (ready && t->m_axis_tvalid) {
            if (r >= n_reads) return -2;
            out[o++] = t->m_axis_tdata;
            ++k;
            bool last = t->m_axis_tlast;
            if (last != (k == need[r])) return -2;
            if (last) {
                ++r;
                k = 0;
            }
        }
        tick(m);
        i += take_in;
        if (++cycles > max_cycles) return -1;
    }
    t->s_axis_tvalid = 0;
    t->m_axis_tready = 0;
    tick(m);  // the last output beat's counters land
    counters[0] = t->cnt_total;
    counters[1] = t->cnt_load;
    counters[2] = t->cnt_compute;
    counters[3] = t->cnt_drain;
    counters[4] = t->cnt_stall_in;
    counters[5] = t->cnt_stall_out;
    counters[6] = t->cycle_count;
#if defined(CNNX_CONV_STREAM)
    counters[7] = t->mac_count;
#else
    counters[7] = 0;
#endif
    counters[8] = t->error;
    return o;
}
#endif

// Clock the model `n` times with the inputs held (the benchmark's raw simulation rate).
void cnnx_tick(void* handle, uint64_t n) {
    Model* m = static_cast<Model*>(handle);
    for (uint64_t i = 0; i < n; ++i) tick(m);
}

uint64_t cnnx_ticks(void* handle) { return static_cast<Model*>(handle)->ticks; }

}  // extern "C"
