"""Tiling: a layer larger than the RTL cores' on-chip buffers, split into core runs that each fit.

Conv (and dense, as a 1x1 convolution) layers are split
  * by output channels: a tile's filters' weights (ceil(F_t/COLS) * C*KH*KW bytes per column bank), biases and
    outputs must fit their buffers;
  * by output rows: a tile of output rows [r0, r1) reads the input band of rows [r0*S, (r1-1)*S + KH) of the
    zero-padded input (the host pads it, and the core then runs with padding 0), so only the band must fit
    the input buffer and only the tile's outputs the output buffer.
A layer whose input map and outputs fit is never split by rows (it runs with the core's own padding).
  * by input channels, when one filter's C*KH*KW weights do not fit a weight bank: the channels are cut
    into chunks of as many whole channels as a bank holds, each chunk planned as above (filters, rows) and
    run in the conv core's raw-accumulator mode (RAW_PASSES = 4 runs, one per byte of the exact int32
    accumulators, cnnx.sim.ConvCore.run_raw); the host sums the chunks' partial accumulators (exact: the
    whole sum obeys cnnx.quant.check_acc_range, so every partial sum fits int32 too), adds the bias once and
    requantises with cnnx.quant.requantize. A layer where one channel's KH*KW weights do not fit a bank is
    refused with a message naming the sizes.
Pool layers are split by channels (a pool is channel-wise).

Every tile is one ordinary run of the existing drivers (cnnx.sim.ConvCore.run / PoolCore.run); its cycles are
the per-run model's, so the layer's cycles are the sum over tiles (cnnx.cycles.tiled_conv_cycles /
tiled_pool_cycles), which the cores' counters must equal exactly. Results are assembled into the layer's
output and are bit-identical to the untiled golden model (each output depends on exactly the same inputs,
weights and requantisation in the tile as in the layer).

Buffer sizes are build parameters: `parse_buffers("in=8K,w=64K,out=8K,bias=256")`, checked against the
Verilog parameter guards (powers of two and ranges) before any build.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .. import cycles as cycle_model
from .. import quant
from ..shapes import out_size

# the conv core's defaults (verilog/cnnx_conv_core.v) and the pool core's (verilog/cnnx_pool_core.v)
CONV_DEFAULTS = {"IFMAP_DEPTH": 8192, "WEIGHT_DEPTH": 65536, "OFMAP_DEPTH": 8192, "BIAS_DEPTH": 256}
POOL_DEFAULTS = {"IFMAP_DEPTH": 8192, "OFMAP_DEPTH": 2048}
BUFFER_KEYS = {"in": "IFMAP_DEPTH", "w": "WEIGHT_DEPTH", "out": "OFMAP_DEPTH", "bias": "BIAS_DEPTH"}


def _banks(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _parse_size(key: str, text: str) -> int:
    t = text.strip().upper()
    mult = 1
    if t.endswith("K"):
        mult, t = 1024, t[:-1]
    elif t.endswith("M"):
        mult, t = 1024 * 1024, t[:-1]
    if not t.isdigit():
        raise ValueError(f"--buffers: {key}={text!r} is not a size (an integer, optionally with K or M)")
    return int(t) * mult


def parse_buffers(text) -> dict[str, int]:
    """'in=8K,w=64K,out=8K,bias=256' (any subset; K = 1024, M = 1024**2) -> the conv core's parameters
    {"IFMAP_DEPTH": ..., ...}, the rest at their defaults. A dict with those keys (or the short ones) passes
    through the same checks. Range checks that depend on the array: `check_buffers`."""
    if text is None or text == "":
        return dict(CONV_DEFAULTS)
    out = dict(CONV_DEFAULTS)
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for part in str(text).split(","):
            if "=" not in part:
                raise ValueError(f"--buffers must look like in=8K,w=64K,out=8K,bias=256, got {text!r}")
            k, v = part.split("=", 1)
            items.append((k.strip().lower(), v))
    for k, v in items:
        name = BUFFER_KEYS.get(k, k if k in CONV_DEFAULTS else None)
        if name is None:
            raise ValueError(f"--buffers: unknown buffer {k!r} (one of {', '.join(BUFFER_KEYS)})")
        if isinstance(v, bool):
            raise ValueError(f"--buffers: {k} must be a size, got {v!r}")
        out[name] = int(v) if isinstance(v, int | np.integer) else _parse_size(k, str(v))
    return out


def check_buffers(buffers: dict[str, int], rows: int, cols: int, lanes: int = cycle_model.POOL_LANES) -> None:
    """The Verilog parameter guards of verilog/cnnx_conv_core.v (and the pool core's input/output maps, which
    are built with the same IFMAP/OFMAP depths), checked before any build (ValueError naming the buffer)."""
    cp, lp = _banks(cols), _banks(lanes)
    names = {v: k for k, v in BUFFER_KEYS.items()}
    for name, v in buffers.items():
        if v < 1 or v & (v - 1):
            raise ValueError(f"--buffers: {names[name]}={v} must be a power of two")
    i, w, o, b = (buffers[k] for k in ("IFMAP_DEPTH", "WEIGHT_DEPTH", "OFMAP_DEPTH", "BIAS_DEPTH"))
    if not 16 <= i <= w <= 65536:
        raise ValueError(f"--buffers: need 16 <= in <= w <= 65536 (64K), got in={i}, w={w}")
    if o > 65536:
        raise ValueError(f"--buffers: out must be at most 65536 (64K), got {o}")
    if w // cp < 8 or o // cp < 8 or b // cp < 2:
        raise ValueError(f"--buffers: each of the {cp} column banks of a {rows}x{cols} array needs >= 8 "
                         f"bytes of w and of out and >= 2 bias entries; got w={w}, out={o}, bias={b}")
    if b > w // 4:
        raise ValueError(f"--buffers: bias ({b} entries) must be at most w/4 = {w // 4}")
    if i // lp < 8 or o // lp < 8:   # verilog/cnnx_pool_core.v's guard on its lane banks
        raise ValueError(f"--buffers: the pool core's {lp} lane banks need >= 8 bytes each of in and out; "
                         f"got in={i}, out={o}")


def pool_params(buffers: dict[str, int] | None) -> dict[str, int]:
    """The pool core's build parameters: its own defaults without --buffers, else the same in/out sizes as
    the conv core's."""
    if buffers is None:
        return dict(POOL_DEFAULTS)
    return {"IFMAP_DEPTH": buffers["IFMAP_DEPTH"], "OFMAP_DEPTH": buffers["OFMAP_DEPTH"]}


@dataclass(frozen=True)
class ConvTile:
    """One core run: filters [f0, f1), output rows [r0, r1); `band` = the input rows it reads (of the
    host-padded input when `host_pad`, else the whole unpadded input with the core padding)."""
    f0: int
    f1: int
    r0: int
    r1: int
    host_pad: bool
    # the per-run shape given to the core and to the per-run cycle model
    C: int
    H: int
    W: int
    F: int
    KH: int
    KW: int
    stride: int
    padding: int
    # input channels [c0, c1) (c1 = -1: all); raw: run in raw-accumulator mode (an input-channel chunk)
    c0: int = 0
    c1: int = -1
    raw: bool = False


def plan_conv(C, H, W, F, KH, KW, stride, padding, rows, cols, buffers) -> list[ConvTile]:
    """The tiles of one conv layer on a ROWS x COLS core with these buffers (ValueError if it cannot be
    tiled). Filter tiles are as large as the weight/bias banks allow, row tiles as large as the input and
    output buffers then allow."""
    OH = out_size(H, KH, stride, padding, what="kernel")
    OW = out_size(W, KW, stride, padding, what="kernel")
    cp = _banks(cols)
    wbank, obank = buffers["WEIGHT_DEPTH"] // cp, buffers["OFMAP_DEPTH"] // cp
    bbank, ifmap = buffers["BIAS_DEPTH"] // cp, buffers["IFMAP_DEPTH"]
    K = C * KH * KW
    if K > wbank:
        if KH * KW > wbank:
            raise ValueError(
                f"one input channel of one filter, KH*KW = {KH}*{KW} = {KH * KW} weights, does not fit a "
                f"weight bank of {wbank} bytes (w={buffers['WEIGHT_DEPTH']} over {cp} column banks), so "
                "even a split by input channels cannot run it: build with a larger w buffer or fewer columns")
        quant.check_acc_range(K)     # the whole sum (bias: checked by the run) must fit int32
        # whole input channels per chunk: as many as a weight bank holds and the input buffer then allows
        step = wbank // (KH * KW)
        while True:
            try:
                plan_conv(step, H, W, F, KH, KW, stride, padding, rows, cols, buffers)
                break
            except ValueError:
                if step == 1:
                    raise
                step = max(1, step // 2) if step > 64 else step - 1
        tiles = []
        for c0 in range(0, C, step):
            c1 = min(C, c0 + step)
            for t in plan_conv(c1 - c0, H, W, F, KH, KW, stride, padding, rows, cols, buffers):
                tiles.append(replace(t, c0=c0, c1=c1, raw=True))
        return tiles
    ft_max = min(wbank // K, bbank)            # filters per column bank in one tile

    def out_fits(n_rows, ft):
        return -(-n_rows * OW // rows) * rows * ft <= obank

    ft = min(ft_max, -(-F // cols))
    # whole input map, core padding: only filters are split
    if C * H * W <= ifmap:
        while ft > 1 and not out_fits(OH, ft):
            ft -= 1
        if out_fits(OH, ft):
            return _conv_tiles(C, H, W, F, KH, KW, stride, padding, ft * cols, OH, OH, False)
    # split by rows too: host-padded input bands
    WP = W + 2 * padding

    def band(n_rows):
        return C * ((n_rows - 1) * stride + KH) * WP

    if band(1) > ifmap:
        raise ValueError(f"one output row's input band C*KH*(W+2*pad) = {band(1)} bytes does not fit the "
                         f"input buffer in={ifmap}; build with a larger in buffer")
    while ft > 1 and not out_fits(1, ft):
        ft -= 1
    if not out_fits(1, ft):
        raise ValueError(f"one output row of one filter tile, ceil(OW/ROWS)*ROWS = {-(-OW // rows) * rows} "
                         f"bytes, does not fit an output bank of {obank} bytes (out={buffers['OFMAP_DEPTH']} "
                         f"over {cp} column banks); build with a larger out buffer")
    r = 1
    while r < OH and band(r + 1) <= ifmap and out_fits(r + 1, ft):
        r += 1
    return _conv_tiles(C, H, W, F, KH, KW, stride, padding, ft * cols, r, OH, True)


def _conv_tiles(C, H, W, F, KH, KW, stride, padding, f_step, r_step, OH, host_pad):
    tiles = []
    for r0 in range(0, OH, r_step):
        r1 = min(OH, r0 + r_step)
        for f0 in range(0, F, f_step):
            f1 = min(F, f0 + f_step)
            if host_pad:
                shape = (C, (r1 - r0 - 1) * stride + KH, W + 2 * padding, f1 - f0, KH, KW, stride, 0)
            else:
                shape = (C, H, W, f1 - f0, KH, KW, stride, padding)
            tiles.append(ConvTile(f0, f1, r0, r1, host_pad, *shape))
    return tiles


def conv_tile_shapes(tiles) -> list[tuple]:
    """Each tile's per-run shape, with the pass count RAW_PASSES appended for a raw-accumulator tile."""
    return [(t.C, t.H, t.W, t.F, t.KH, t.KW, t.stride, t.padding)
            + ((cycle_model.RAW_PASSES,) if t.raw else ()) for t in tiles]


def conv_cycles(C, H, W, F, KH, KW, stride, padding, rows, cols, buffers) -> int:
    """The cycle model of the tiled conv layer (one image): cnnx.cycles.tiled_conv_cycles over its plan."""
    tiles = plan_conv(C, H, W, F, KH, KW, stride, padding, rows, cols, buffers)
    return cycle_model.tiled_conv_cycles(conv_tile_shapes(tiles), rows, cols)


def run_conv(core, x, w, b, rq, stride=1, padding=0):
    """A conv layer on `core` (cnnx.sim.ConvCore), tiled to its buffers: (y, cycles per image)."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    tiles = plan_conv(C, H, W, F, KH, KW, stride, padding, core.rows, core.cols, core.params)
    OH = out_size(H, KH, stride, padding, what="kernel")
    OW = out_size(W, KW, stride, padding, what="kernel")
    b = np.zeros(F, np.int32) if b is None else b
    raw = bool(tiles) and tiles[0].raw
    if raw:
        quant.check_acc_range(C * KH * KW, b)
    y = np.empty((N, F, OH, OW), np.int8)
    acc = np.zeros((N, F, OH, OW), np.int64) if raw else None
    cyc = np.zeros(N, np.int64)
    xp = None
    for t in tiles:
        if t.host_pad:
            if xp is None:
                xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x
            xt = xp[:, :, t.r0 * stride : t.r0 * stride + t.H]
        else:
            xt = x
        wt = w[t.f0 : t.f1]
        if t.raw:
            xt, wt = xt[:, t.c0 : t.c1], wt[:, t.c0 : t.c1]
            part, _ = core.run_raw(np.ascontiguousarray(xt), np.ascontiguousarray(wt), stride=stride,
                                   padding=t.padding)
            acc[:, t.f0 : t.f1, t.r0 : t.r1] += part if t.host_pad else part[:, :, t.r0 : t.r1]
        else:
            yt, _ = core.run(np.ascontiguousarray(xt), np.ascontiguousarray(wt),
                             np.ascontiguousarray(b[t.f0 : t.f1]), rq, stride=stride, padding=t.padding)
            y[:, t.f0 : t.f1, t.r0 : t.r1] = yt if t.host_pad else yt[:, :, t.r0 : t.r1]
        cyc += np.asarray(core.last_cycles, np.int64)
    if raw:   # every partial and the whole sum plus bias fit int32 (checked above): exact
        y = quant.requantize((acc + b.astype(np.int64)[None, :, None, None]).astype(np.int32), rq)
    return y, cyc


def run_linear(core, x, w, b, rq):
    """A dense layer as a 1x1 convolution of a 1x1 map per image, tiled: (y, cycles per image)."""
    y, cyc = run_conv(core, x[:, :, None, None], w[:, :, None, None], b, rq)
    return np.ascontiguousarray(y[:, :, 0, 0]), cyc


def plan_pool(C, H, W, kernel, stride, lanes, buffers) -> list[tuple[int, int]]:
    """Channel groups [c0, c1) of one pool layer that each fit the pool core's lane banks."""
    stride = kernel if stride is None else stride
    OH = out_size(H, kernel, stride, 0, what="pooling window")
    OW = out_size(W, kernel, stride, 0, what="pooling window")
    lp = _banks(lanes)
    ibank, obank = buffers["IFMAP_DEPTH"] // lp, buffers["OFMAP_DEPTH"] // lp
    cg = min(ibank // (H * W), obank // (OH * OW))    # channels per lane bank
    if cg < 1:
        raise ValueError(f"one channel's map H*W = {H * W} (or pooled OH*OW = {OH * OW}) bytes does not "
                         f"fit a lane bank of the pool core ({ibank} / {obank} bytes: in/out over {lp} lane "
                         "banks); build with larger in/out buffers")
    step = cg * lanes
    return [(c0, min(C, c0 + step)) for c0 in range(0, C, step)]


def pool_cycles(C, H, W, kernel, stride, lanes, buffers) -> int:
    groups = plan_pool(C, H, W, kernel, stride, lanes, buffers)
    return cycle_model.tiled_pool_cycles([(c1 - c0, H, W, kernel, stride) for c0, c1 in groups], lanes)


def run_pool(core, x, kernel, stride=None, mode="max"):
    """A pool layer on `core` (cnnx.sim.PoolCore), split by channels to its buffers: (y, cycles per image)."""
    N, C, H, W = x.shape
    groups = plan_pool(C, H, W, kernel, stride, core.lanes, core.params)
    ys, cyc = [], np.zeros(N, np.int64)
    for c0, c1 in groups:
        yt, _ = core.run(np.ascontiguousarray(x[:, c0:c1]), kernel, stride=stride, mode=mode)
        ys.append(yt)
        cyc += np.asarray(core.last_cycles, np.int64)
    return np.ascontiguousarray(np.concatenate(ys, axis=1)), cyc
