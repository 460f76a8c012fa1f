"""The analytical cycle model of the RTL cores (verilog/cnnx_conv_core.v, cnnx_pool_core.v), the one source of
truth for drivers, tests, benchmarks and the profiler. The cores' own cycle counters must equal it exactly.

What is counted: the cycles a core is busy, from the cycle after it samples `start` to the cycle `done`
rises, both included. Loading the buffers and reading the output back through the host ports is NOT counted
(in a real system a DMA engine would do that, overlapped with the previous layer).

Conv core, ROWS x COLS output-stationary array. A tile is ROWS output pixels x COLS filters; there are
    T = ceil(OH*OW / ROWS) * ceil(F / COLS)
tiles, each taking PERIOD = max(K, ROWS) cycles, K = C*KH*KW (a column's drain takes ROWS cycles, and the
pixel walker needs ROWS cycles to prepare the next pixel tile, so tiles of short sums are padded with idle
steps). A run starts with ROWS set-up cycles (the pixel walker prepares the first pixel tile); tiles are then
issued back to back, each one's drain overlapping the next one's compute, so only the last tile's pipeline
is exposed:
    cycles = ROWS + (T - 1) * PERIOD + K + 2*ROWS + COLS + CONV_PIPELINE,    CONV_PIPELINE = 16
where K covers the steps of the last tile in the tap walker (stage T), and the tail is: 3 address stages
(A: per-row sums, B: bounds check and block-RAM read, B2: the RAM's output register) before the array's
input register, ROWS - 1 +
COLS - 1 skew/hop stages to the bottom-right PE (the input register counts as the first hop), 1 for its
product register, 1 for its accumulate, 1 to load the drain chain, ROWS drain steps (one row per cycle),
1 drain register in the writer, 10 requantiser stages (verilog/cnnx_requant.v; the last one writes the
output bank), 1 for the done flag: 3 + (ROWS + COLS - 2) + 3 + ROWS + 1 + 10 + 1 = 2*ROWS + COLS + 16.

Pool core, LANES channels side by side (default POOL_LANES), one input byte per lane per cycle, windows back
to back; after the walker's last tap (the last of the ceil(C/LANES) * OH * OW * KSIZE**2 walker cycles) come
A (address add), B (block-RAM read), B2 (the RAM's output register), C (byte select), C2 (the running max's
comparisons), E (window result) and the 10 requantiser stages, the last of which writes the output bank as
the run ends:
    cycles = ceil(C / LANES) * OH * OW * KSIZE * KSIZE + POOL_PIPELINE,    POOL_PIPELINE = 16
"""

from __future__ import annotations

from typing import NamedTuple

from .shapes import check_positive_int, out_size

CONV_PIPELINE = 16  # the conv core's fixed pipeline stages (derived in the docstring above)
POOL_PIPELINE = 16  # the pool core's fixed pipeline stages (derived in the docstring above)
POOL_LANES = 4  # verilog/cnnx_pool_core.v's default LANES, which cnnx.sim.PoolCore builds by default


def _dims(C, H, W, F, KH, KW, stride, padding):
    for name, v in (("C", C), ("H", H), ("W", W), ("F", F), ("KH", KH), ("KW", KW), ("stride", stride)):
        check_positive_int(name, v)
    check_positive_int("padding", padding, minimum=0)
    OH = out_size(H, KH, stride, padding, what="kernel")
    OW = out_size(W, KW, stride, padding, what="kernel")
    return OH, OW


def conv_tiles(C, H, W, F, KH, KW, stride, padding, rows, cols) -> int:
    """Number of ROWS-pixel x COLS-filter tiles the conv core walks."""
    OH, OW = _dims(C, H, W, F, KH, KW, stride, padding)
    check_positive_int("rows", rows)
    check_positive_int("cols", cols)
    return -(-OH * OW // rows) * -(-F // cols)


def conv_cycles(C, H, W, F, KH, KW, stride=1, padding=0, rows=8, cols=8) -> int:
    """Cycles the conv core takes for one image of this layer (start to done; loading excluded)."""
    T = conv_tiles(C, H, W, F, KH, KW, stride, padding, rows, cols)
    K = C * KH * KW
    period = max(K, rows)
    return rows + (T - 1) * period + K + 2 * rows + cols + CONV_PIPELINE


def conv_macs(C, H, W, F, KH, KW, stride=1, padding=0) -> int:
    """Useful multiply-accumulates of one image: F*OH*OW*C*KH*KW (taps on the zero padding included, as the
    usual MAC counts do). The conv core's mac_count counter counts exactly these."""
    OH, OW = _dims(C, H, W, F, KH, KW, stride, padding)
    return F * OH * OW * C * KH * KW


def conv_ideal_cycles(C, H, W, F, KH, KW, stride=1, padding=0, rows=8, cols=8) -> int:
    """The lower bound: every PE busy every cycle, no fill or drain: ceil(MACs / (ROWS*COLS))."""
    return -(-conv_macs(C, H, W, F, KH, KW, stride, padding) // (rows * cols))


def conv_utilisation(C, H, W, F, KH, KW, stride=1, padding=0, rows=8, cols=8) -> float:
    """MACs / (cycles * ROWS * COLS): the fraction of PE-cycles doing useful work."""
    macs = conv_macs(C, H, W, F, KH, KW, stride, padding)
    return macs / (conv_cycles(C, H, W, F, KH, KW, stride, padding, rows, cols) * rows * cols)


def linear_cycles(IN, OUT, rows=8, cols=8, batch=1) -> int:
    """A dense layer (N, IN) -> (N, OUT) run as a 1x1 convolution with C=IN, F=OUT: by default one image on
    a 1x1 map; with `batch` = G, one run of G images as the G pixels of a 1 x G map (ConvCore.run_linear's
    batch_as_pixels), which fills all ROWS array rows instead of one."""
    return conv_cycles(IN, 1, batch, OUT, 1, 1, 1, 0, rows, cols)


def linear_macs(IN, OUT) -> int:
    return conv_macs(IN, 1, 1, OUT, 1, 1, 1, 0)


def pool_cycles(C, H, W, kernel, stride=None, lanes=POOL_LANES) -> int:
    """Cycles the pool core takes for one image (max and average alike; start to done, loading excluded)."""
    stride = kernel if stride is None else stride
    for name, v in (("C", C), ("H", H), ("W", W), ("kernel", kernel), ("stride", stride), ("lanes", lanes)):
        check_positive_int(name, v)
    OH = out_size(H, kernel, stride, 0, what="pooling window")
    OW = out_size(W, kernel, stride, 0, what="pooling window")
    return -(-C // lanes) * OH * OW * kernel * kernel + POOL_PIPELINE


# a tile run in the conv core's raw-accumulator mode is run once per byte of its int32 accumulators
RAW_PASSES = 4


def tiled_conv_cycles(tiles, rows=8, cols=8) -> int:
    """A layer run as several core runs (cnnx.compile.tiling): the sum of conv_cycles over the runs, each
    given as (C, H, W, F, KH, KW, stride, padding), or with a 9th element, the number of identical passes
    (RAW_PASSES for an input-channel chunk read out in raw-accumulator mode; a raw pass has the same schedule
    and cycles as a requantised run). Nothing else is counted: between runs the host reloads the buffers and
    sums the partial accumulators, which (like all loading) is outside the counters."""
    return sum(conv_cycles(*t[:8], rows=rows, cols=cols) * (t[8] if len(t) > 8 else 1) for t in tiles)


def tiled_pool_cycles(tiles, lanes=POOL_LANES) -> int:
    """The sum of pool_cycles over the runs of a channel-split pool layer, each (C, H, W, kernel, stride)."""
    return sum(pool_cycles(*t, lanes=lanes) for t in tiles)


def layer_cycles(layer, in_shape, rows=8, cols=8, buffers=None, lanes=POOL_LANES) -> int | None:
    """Cycles of one image through one int8 layer (`cnnx.ptq.QLayer`: its `kind`, `w`, `stride`, `padding`,
    `kernel`) with input shape `in_shape` (no batch), on a ROWS x COLS conv core and the pool core, with the
    cores' buffers (`buffers`: cnnx.compile.tiling.parse_buffers' dict; None: the cores' defaults) and the
    pool core's `lanes`. A layer
    larger than the buffers is tiled as the RTL runner tiles it (cnnx.compile.tiling), and its cycles are
    the sum over its runs (tiled_conv_cycles / tiled_pool_cycles); a layer the tiler cannot split raises
    ValueError. None for a layer the RTL does not run (flatten). The harness and the profiler both ask
    here."""
    from .compile import tiling  # deferred: tiling builds on this module

    conv_buf = buffers or tiling.CONV_DEFAULTS
    if layer.kind == "conv":
        C, H, W = in_shape
        F, _, KH, KW = layer.w.shape
        return tiling.conv_cycles(C, H, W, F, KH, KW, layer.stride, layer.padding, rows, cols, conv_buf)
    if layer.kind == "linear":
        OUT, IN = layer.w.shape
        return tiling.conv_cycles(IN, 1, 1, OUT, 1, 1, 1, 0, rows, cols, conv_buf)
    if layer.kind in ("maxpool", "avgpool"):
        C, H, W = in_shape
        pool_buf = tiling.pool_params(buffers)
        return tiling.pool_cycles(C, H, W, layer.kernel, layer.stride, lanes, pool_buf)
    return None


def utilisation(macs: int, cycles: int, rows: int, cols: int) -> float | None:
    """MACs / (cycles * ROWS * COLS), or None when there is nothing to divide (no MACs or no cycles)."""
    return macs / (cycles * rows * cols) if macs and cycles else None


# ----------------------------------------------------------------------------------------------------------
# end to end: a layer streamed through cnnx_conv_stream / cnnx_pool_stream (cnnx/compile/stream.py)
# ----------------------------------------------------------------------------------------------------------
# The decoder takes one 32-bit word per clock (the cores' write port takes one word per clock, so a 64-bit
# beat takes two clocks: W = 64 halves the beats, not the cycles); word k of a stream is taken k + 1 cycles
# after its first beat is accepted. A START taken at cycle t lets the next word be taken at t + compute +
# STREAM_START_GAP (1 to register start, 1 for the core to sample it, 1 to see `done`). A READ of N words
# taken at cycle t sends its last beat at t + STREAM_READ_LAT + N (1 to register the request, 1 to load the
# read-back engine, 1 for the core's registered read port, then one word per clock into the output FIFO,
# whose beat leaves the clock after its last word lands, also at W = 64), and the next START or READ is
# taken once the read-back engine is idle, at t + STREAM_READ_LAT + N + 1.
STREAM_START_GAP = 3
STREAM_READ_LAT = 3


class StreamCycles(NamedTuple):
    """One streamed layer's counters (verilog/cnnx_stream_counters.v) with no stall injected: input beats,
    core busy cycles, output beats, and cycles from the first input beat to the last output beat."""

    load: int
    compute: int
    drain: int
    total: int


def stream_cycles(packets, compute: int, width: int = 32) -> StreamCycles:
    """The counters of one stream (`packets`: cnnx.compile.stream.parse's (op, addr, n) list) whose START(s)
    each run `compute` core cycles, at stream width `width`."""
    from .compile import stream as st  # deferred: the format lives there

    per = st.check_width(width) // 32
    t, free, last, words, drain = 1, 0, 0, 0, 0
    for op, _addr, n in packets:
        if op in st.PAYLOAD_OPS:
            t += 1 + n
            words += 1 + n
        elif op == st.OP_START:
            t = max(t, free) + compute + STREAM_START_GAP
            words += 1
        elif op == st.OP_READ:
            t = max(t, free)
            last = t + STREAM_READ_LAT + n
            free = last + 1
            t += 1
            words += 1
            drain += -(-n // per)
        else:
            t += 1
            words += 1
    return StreamCycles(-(-words // per), compute if any(p[0] == st.OP_START for p in packets) else 0, drain,
                        last + 1 if drain else 0)


def conv_stream_cycles(C, H, W, F, KH, KW, stride=1, padding=0, rows=8, cols=8, width=32, buffers=None,
                       weights=True) -> StreamCycles:
    """One image of a conv layer streamed through cnnx_conv_stream: registers and weights too when
    `weights` (the first image; later images of a batch reuse them), the input map, the run, the read-back.
    `buffers`: the core's build parameters (IFMAP_DEPTH ...; None: cnnx.compile.tiling.CONV_DEFAULTS)."""
    from .compile import stream as st
    from .compile import tiling

    params = {**tiling.CONV_DEFAULTS, **(buffers or {})}
    pk = st.conv_packets(C, H, W, F, KH, KW, stride, padding, rows, cols, params, weights)
    return stream_cycles(pk, conv_cycles(C, H, W, F, KH, KW, stride, padding, rows, cols), width)


def pool_stream_cycles(C, H, W, kernel, stride=None, lanes=POOL_LANES, width=32, buffers=None,
                       weights=True) -> StreamCycles:
    """One image of a pool layer streamed through cnnx_pool_stream (`weights`: the registers are sent)."""
    from .compile import stream as st
    from .compile import tiling

    stride = kernel if stride is None else stride
    params = {**tiling.POOL_DEFAULTS, **(buffers or {})}
    pk = st.pool_packets(C, H, W, kernel, stride, lanes, params, weights)
    return stream_cycles(pk, pool_cycles(C, H, W, kernel, stride, lanes), width)


def layer_stream_cycles(layer, in_shape, rows=8, cols=8, width=32, buffers=None, lanes=POOL_LANES,
                        weights=True) -> StreamCycles | None:
    """One image through one int8 layer (as `layer_cycles`) streamed end to end through the wrapper of its
    core at stream width `width`: registers and weights too when `weights` (batch 1: every image). None for
    a layer the RTL does not run (flatten) or one larger than the buffers (several core runs: tiled layers
    are not streamed yet)."""
    from .compile import tiling

    conv_buf = buffers or tiling.CONV_DEFAULTS
    if layer.kind in ("conv", "linear"):
        if layer.kind == "conv":
            C, H, W = in_shape
            F, _, KH, KW = layer.w.shape
            dims = (C, H, W, F, KH, KW, layer.stride, layer.padding)
        else:
            OUT, IN = layer.w.shape
            dims = (IN, 1, 1, OUT, 1, 1, 1, 0)
        if len(tiling.plan_conv(*dims, rows, cols, conv_buf)) != 1:
            return None
        return conv_stream_cycles(*dims, rows, cols, width, conv_buf, weights)
    if layer.kind in ("maxpool", "avgpool"):
        C, H, W = in_shape
        pool_buf = tiling.pool_params(buffers)
        if len(tiling.plan_pool(C, H, W, layer.kernel, layer.stride, lanes, pool_buf)) != 1:
            return None
        return pool_stream_cycles(C, H, W, layer.kernel, layer.stride, lanes, width, pool_buf, weights)
    return None
