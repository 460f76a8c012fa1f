"""End-to-end cycles of LeNet-5 at batch 1 on the streamed cores (cnnx_conv_stream / cnnx_pool_stream, an
8x8 array, 4 pool lanes), per layer and per image, at stream widths 32 and 64 bits, beside the compute-only
cycles (core busy) the profile prints. Each layer is one stream: its registers, weights, bias, the image's
input map, START, the read-back (cnnx/compile/stream.py); the host's hand-off between layers is not counted.

    load     input beats (one 32-bit word per clock into the core: a 64-bit beat takes 2 clocks)
    compute  cycles the core is busy (cnnx.cycles.conv_cycles / pool_cycles: the compute-only figure)
    drain    output beats
    total    cycles from the first input beat to the last output beat (end to end)

Figures come from cnnx.cycles' stream model; `--rtl` also runs every layer through the wrappers on the RTL
(fast driver, random int8 data of the same shapes), checks the outputs against the golden model and the
counters against the model with no stall, and shows the counters under random stalls (`--stall`).

    .venv/bin/python benchmarks/bench_stream.py [--rtl] [--stall 0.3]
"""

from __future__ import annotations

import argparse

import numpy as np

from cnnx import cycles, quant, reference

ROWS = COLS = 8
# LeNet-5 on MNIST (cnnx.models.lenet5): (kind, dims)
LAYERS = [
    ("conv1", "conv", (1, 28, 28, 6, 5, 5, 1, 2)),
    ("pool1", "pool", (6, 28, 28, 2, 2)),
    ("conv2", "conv", (6, 14, 14, 16, 5, 5, 1, 0)),
    ("pool2", "pool", (16, 10, 10, 2, 2)),
    ("fc1", "conv", (400, 1, 1, 120, 1, 1, 1, 0)),
    ("fc2", "conv", (120, 1, 1, 84, 1, 1, 1, 0)),
    ("fc3", "conv", (84, 1, 1, 10, 1, 1, 1, 0)),
]


def model(kind, dims, width):
    if kind == "conv":
        return cycles.conv_stream_cycles(*dims, ROWS, COLS, width)
    return cycles.pool_stream_cycles(*dims, width=width)


def run_rtl(kind, dims, width, stall, rng, cores):
    """One image of the layer through the wrapper: (counters, outputs bit-exact to the golden model)."""
    from cnnx.sim import ConvCore, PoolCore

    key = (kind, width)
    if key not in cores:
        cores[key] = (ConvCore(ROWS, COLS, driver="fast", stream_width=width) if kind == "conv"
                      else PoolCore(driver="fast", stream_width=width))
    core = cores[key]
    core._be.stall = stall
    core._be.rng = np.random.default_rng(1234)
    core.reset()
    if kind == "conv":
        C, H, W, F, KH, KW, s, p = dims
        x = rng.integers(-128, 128, (1, C, H, W), dtype=np.int8)
        w = rng.integers(-20, 21, (F, C, KH, KW), dtype=np.int8)
        b = rng.integers(-500, 500, F, dtype=np.int32)
        rq = quant.Requant(1 << 10, 18)
        y, _ = core.run(x, w, b, rq, s, p)
        ok = np.array_equal(y, reference.conv2d_int8(x, w, b, rq, s, p))
    else:
        C, H, W, k, s = dims
        x = rng.integers(-128, 128, (1, C, H, W), dtype=np.int8)
        y, _ = core.run(x, k, s)
        ok = np.array_equal(y, reference.maxpool2d_int8(x, k, s))
    return core.last_counters[0], ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rtl", action="store_true", help="also measure on the RTL (fast driver)")
    ap.add_argument("--stall", type=float, default=0.3, help="stall probability of the --rtl stalled run")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cores: dict = {}
    print(f"LeNet-5, batch 1, {ROWS}x{COLS} conv array, {cycles.POOL_LANES} pool lanes; one stream per layer")
    for width in (32, 64):
        print(f"\nstream width {width} bits")
        head = f"{'layer':6} {'load':>6} {'compute':>8} {'drain':>6} {'total':>7}"
        if args.rtl:
            head += f" | RTL: {'total':>6} {'=model':>6} {'exact':>5} | stall {args.stall}: {'total':>6} " \
                    f"{'st_in':>5} {'st_out':>6} {'exact':>5}"
        print(head)
        sums = np.zeros(4, np.int64)
        for name, kind, dims in LAYERS:
            m = model(kind, dims, width)
            sums += m
            line = f"{name:6} {m.load:6d} {m.compute:8d} {m.drain:6d} {m.total:7d}"
            if args.rtl:
                got, ok = run_rtl(kind, dims, width, 0.0, rng, cores)
                same = (got["load"], got["compute"], got["drain"], got["total"]) == tuple(m)
                st, ok2 = run_rtl(kind, dims, width, args.stall, rng, cores)
                line += (f" |      {got['total']:6d} {str(same):>6} {str(ok):>5} |            "
                         f"{st['total']:6d} {st['stall_in']:5d} {st['stall_out']:6d} {str(ok2):>5}")
            print(line)
        print(f"{'image':6} {sums[0]:6d} {sums[1]:8d} {sums[2]:6d} {sums[3]:7d}   end to end / "
              f"compute-only = {sums[3] / sums[1]:.2f}x")


if __name__ == "__main__":
    main()
