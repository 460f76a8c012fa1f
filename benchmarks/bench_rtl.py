"""Benchmark of the RTL co-simulation: how fast the drivers clock the conv core; LeNet-5 in cycles.

1. Simulated core cycles per second on LeNet-5's conv2 (6x14x14 -> 16 filters 5x5, an 8x8 array) for
   - a plain C++ Verilator testbench of the same build (sim/bench_tb.cpp, compiled here into the cache
     directory): the simulator's own limit, start-to-done clocking only;
   - the fast driver (C++ batch driver via ctypes), a batch per call: loading and unloading included;
   - the python driver (pyverilator, clocked from Python);
   reported as ratios to the testbench, all measured in this run (best of --repeats).
2. Cycles per MNIST-sized image for every LeNet-5 layer on 8x8 and 16x16 arrays: measured on the simulator
   (fast driver) and from cnnx.cycles (they must agree), with the useful MACs, the ideal cycle count
   (MACs / PEs) and the utilisation MACs / (cycles * PEs).
Timings on a shared machine are noisy; nothing here asserts a speed.

    .venv/bin/python benchmarks/bench_rtl.py [--images 200] [--repeats 3] [--arrays 8x8,16x16]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from cnnx.sim import ConvCore, PoolCore, builder

from cnnx import cycles, quant, reference

CONV2 = dict(C=6, H=14, W=14, F=16, KH=5, KW=5, stride=1, padding=0)
TB_SOURCE = builder.SIM_DIR / "bench_tb.cpp"
INCLUDE = Path("/usr/share/verilator/include")


def verilator_include() -> Path:
    """Verilator's runtime headers (where `verilator --getenv VERILATOR_ROOT` says they are)."""
    root = subprocess.run(["verilator", "--getenv", "VERILATOR_ROOT"], capture_output=True, text=True).stdout
    inc = Path(root.strip()) / "include"
    return inc if (inc / "verilated.h").exists() else INCLUDE


def build_testbench(build: builder.Build) -> Path:
    """Compile sim/bench_tb.cpp against `build`'s Verilated objects, cached next to it."""
    key = build.path.name + "-tb-" + hashlib.sha256(TB_SOURCE.read_bytes()).hexdigest()[:12]
    exe = builder.cache_root() / "bench" / key / "bench_tb"
    if exe.exists():
        return exe
    exe.parent.parent.mkdir(parents=True, exist_ok=True)
    with open(exe.parent.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if exe.exists():
            return exe
        tmp = Path(tempfile.mkdtemp(dir=exe.parent.parent))
        inc = verilator_include()
        objs = [build.path / f"V{build.top}__ALL.a", build.path / "verilated.o",
                build.path / "verilated_vcd_c.o"]
        objs += [p for p in (build.path / "verilated_threads.o",) if p.exists()]
        cmd = [os.environ.get("CXX", "g++"), "-O2", "-std=c++14", "-faligned-new", f"-I{build.path}",
               f"-I{inc}", f"-I{inc / 'vltstd'}", "-DVM_COVERAGE=0", "-DVM_SC=0", "-DVM_TRACE=1",
               "-DVM_TRACE_FST=0", "-DVM_TRACE_VCD=1", "-DVL_USER_FINISH", str(TB_SOURCE), *map(str, objs),
               "-pthread", "-latomic", "-o", str(tmp / "bench_tb")]
        subprocess.run(cmd, check=True)
        if exe.parent.exists():
            shutil.rmtree(exe.parent)
        os.rename(tmp, exe.parent)
    return exe


def conv2_layer(rng):
    x = rng.integers(-128, 128, (1, 6, 14, 14), dtype=np.int8)
    w = rng.integers(-30, 30, (16, 6, 5, 5), dtype=np.int8)
    b = rng.integers(-1000, 1000, 16, dtype=np.int32)
    return x, w, b, quant.Requant(20000, 22, relu=True)


def driver_rates(args):
    rng = np.random.default_rng(0)
    x1, w, b, rq = conv2_layer(rng)
    xs = rng.integers(-128, 128, (args.images, 6, 14, 14), dtype=np.int8)
    per_image = cycles.conv_cycles(**CONV2, rows=8, cols=8)

    fast = ConvCore(8, 8, driver="fast")
    tb = build_testbench(fast.build)
    best_tb = best_fast = best_py = 0.0
    for _ in range(args.repeats):
        res = subprocess.run([str(tb), str(args.images)], capture_output=True, text=True, check=True)
        out = res.stdout.split()
        tb_cycles, tb_seconds = int(out[1]), float(out[3])
        assert tb_cycles == per_image * args.images, (tb_cycles, per_image)
        best_tb = max(best_tb, tb_cycles / tb_seconds)

        t = time.perf_counter()
        y, total = fast.run(xs, w, b, rq)
        best_fast = max(best_fast, total / (time.perf_counter() - t))
    np.testing.assert_array_equal(y[:2], reference.conv2d_int8(xs[:2], w, b, rq))

    slow = ConvCore(8, 8, driver="python")
    for _ in range(args.repeats):
        t = time.perf_counter()
        y1, total = slow.run(x1, w, b, rq)
        best_py = max(best_py, total / (time.perf_counter() - t))
    np.testing.assert_array_equal(y1, fast.run(x1, w, b, rq)[0])

    print(f"== simulated cycles per second, LeNet conv2 on an 8x8 array ({per_image} core cycles per image); "
          f"best of {args.repeats}, one thread each ==")
    print(f"{'driver':<34}{'cycles/s':>14}{'vs C++ tb':>12}")
    for name, rate in ((f"plain C++ testbench ({args.images} runs)", best_tb),
                       (f"fast driver ({args.images} images/call)", best_fast),
                       ("python driver (pyverilator, 1 image)", best_py)):
        print(f"{name:<34}{rate:>14,.0f}{rate / best_tb:>12.3f}")
    print(f"python driver vs fast driver: {best_fast / best_py:,.0f}x slower")
    print()


def lenet_layers():
    """LeNet-5 as the RTL runs it: (name, kind, shape, extra). Dense layers are 1x1 convs of a 1x1 map."""
    return [
        ("conv1 1->6 5x5 p2", "conv", dict(C=1, H=28, W=28, F=6, KH=5, KW=5, stride=1, padding=2)),
        ("pool1 2x2", "pool", dict(C=6, H=28, W=28, kernel=2)),
        ("conv2 6->16 5x5", "conv", dict(C=6, H=14, W=14, F=16, KH=5, KW=5, stride=1, padding=0)),
        ("pool2 2x2", "pool", dict(C=16, H=10, W=10, kernel=2)),
        ("fc1 400->120", "conv", dict(C=400, H=1, W=1, F=120, KH=1, KW=1, stride=1, padding=0)),
        ("fc2 120->84", "conv", dict(C=120, H=1, W=1, F=84, KH=1, KW=1, stride=1, padding=0)),
        ("fc3 84->10", "conv", dict(C=84, H=1, W=1, F=10, KH=1, KW=1, stride=1, padding=0)),
    ]


def lenet_cycles(args):
    rng = np.random.default_rng(1)
    pool = PoolCore(driver="fast")
    n = args.lenet_images
    for spec in args.arrays.split(","):
        rows, cols = (int(v) for v in spec.lower().split("x"))
        core = ConvCore(rows, cols, driver="fast")
        pes = rows * cols
        print(f"== LeNet-5 per image on a {rows}x{cols} array ({pes} PEs); measured on {n} random images; "
              f"wall = fast driver, one call of {n} images, weight loading included ==")
        print(f"{'layer':<26}{'measured':>10}{'model':>10}{'MACs':>10}{'ideal':>8}{'util':>8}"
              f"{'wall ms/img':>13}")
        tot_c = tot_m = tot_conv_c = 0
        for name, kind, s in lenet_layers():
            if kind == "conv":
                x = rng.integers(-128, 128, (n, s["C"], s["H"], s["W"]), dtype=np.int8)
                w = rng.integers(-8, 8, (s["F"], s["C"], s["KH"], s["KW"]), dtype=np.int8)
                b = np.zeros(s["F"], np.int32)
                t = time.perf_counter()
                core.run(x, w, b, quant.Requant(16384, 20), s["stride"], s["padding"])
                wall = (time.perf_counter() - t) / n
                measured = core.last_cycles
                model = cycles.conv_cycles(**s, rows=rows, cols=cols)
                macs = cycles.conv_macs(**s)
                assert core.last_mac_count == macs
                ideal = -(-macs // pes)
                util = f"{macs / (model * pes):.1%}"
                tot_conv_c += model
            else:
                x = rng.integers(-128, 128, (n, s["C"], s["H"], s["W"]), dtype=np.int8)
                t = time.perf_counter()
                pool.run(x, s["kernel"])
                wall = (time.perf_counter() - t) / n
                measured = pool.last_cycles
                model = cycles.pool_cycles(**s)
                macs, ideal, util = 0, model - 1, "-"
            assert measured == [model] * n, (name, measured, model)
            tot_c += model
            tot_m += macs
            print(f"{name:<26}{measured[0]:>10}{model:>10}{macs:>10}{ideal:>8}{util:>8}{wall * 1e3:>13.2f}")
        print(f"{'total':<26}{tot_c:>10}{tot_c:>10}{tot_m:>10}{'':>8}"
              f"{tot_m / (tot_conv_c * pes):>8.1%}  (conv/fc utilisation)")
        # the dense layers again with the batch on the array rows (run_linear(batch_as_pixels=True))
        fc_one = 0
        fc_batched = 0.0
        for name, _kind, s in lenet_layers()[4:]:
            n_in, n_out = s["C"], s["F"]
            group = min(n, core.params["IFMAP_DEPTH"] // n_in, core.params["OFMAP_DEPTH"] // n_out)
            x = rng.integers(-128, 128, (group, n_in), dtype=np.int8)
            w = rng.integers(-8, 8, (n_out, n_in), dtype=np.int8)
            core.run_linear(x, w, np.zeros(n_out, np.int32), quant.Requant(16384, 20), batch_as_pixels=True)
            model = cycles.linear_cycles(n_in, n_out, rows, cols, batch=group)
            assert core.last_cycles == [model], (core.last_cycles, model)
            macs = cycles.linear_macs(n_in, n_out) * group
            fc_one += cycles.linear_cycles(n_in, n_out, rows, cols)
            fc_batched += model / group
            print(f"{name + f' x{group} batched':<26}{model / group:>10.1f}{'':>10}{macs // group:>10}"
                  f"{'':>8}{macs / (model * pes):>8.1%}   (cycles per image; {group} images per run)")
        print(f"dense layers: {fc_one} cycles per image one image per run, {fc_batched:.0f} batched "
              f"({fc_one / fc_batched:.1f}x fewer); LeNet total {tot_c} -> {tot_c - fc_one + fc_batched:.0f}")
        print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=200, help="images per fast-driver call and testbench runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lenet-images", type=int, default=32, help="images per LeNet layer call")
    ap.add_argument("--arrays", default="8x8,16x16")
    args = ap.parse_args()
    print(f"method: wall time (time.perf_counter), best of {args.repeats} (the first round also warms up); "
          f"testbench and drivers alternate round by round; builds cached in {builder.cache_root()}; one "
          f"simulator thread each; cycles counted by the core (start to done)")
    print()
    driver_rates(args)
    lenet_cycles(args)


if __name__ == "__main__":
    main()
