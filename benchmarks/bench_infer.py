"""LeNet-5 inference throughput: cnnx float32, cnnx int8, PyTorch float32 and PyTorch int8, in one run.

Method. One LeNet-5 (cnnx.models "lenet5", seed 0) and its int8 twin (cnnx.ptq.quantize_model, calibrated
on 256 of the benchmark's images); PyTorch gets the same weights, and its int8 model is
torch.ao.quantization's eager post-training flow (conv/linear + ReLU fused, engine "x86", i.e. fbgemm's
kernels, per-tensor weights, calibrated on the same images). Every engine takes the same float32 batch and
returns logits (the int8 ones quantise the input inside the timed region). Configurations: batch 1 and 64,
1 and 2 threads (cnnx.set_num_threads / torch.set_num_threads / n_threads=). Each --rounds round times every
(configuration, engine) pair once, one after the other (interleaved), over --images images after one
untimed warm-up pass; the best round of each pair is reported and the spread (worst/best) shown. Ratios are
between engines of the same run. Never asserts a speed.

Per layer (batch 64): the cnnx float and int8 layer times and their GOP/s (2 ops per multiply-add) next to
the machine's peak, peak = cores used x clock x ops per cycle per core, where the clock is the one the kernel
reports (/proc/cpuinfo "cpu MHz"; a virtual machine reports its nominal clock) and ops per cycle assume one
512-bit instruction per cycle (AVX-512 as two 256-bit halves, as on AMD Zen 4): fp32 FMA 16 lanes x 2 =
32 flop, int8 `vpdpbusd` 64 multiply-adds x 2 = 128 op. With AVX2 only, half of each.

Training (--train-profile, on by default): the per-layer forward and backward times of one LeNet-5 training
step at batch 64 (`benchmarks/bench_layers.py`'s layers), cnnx against PyTorch, and each layer's share.

    .venv/bin/python benchmarks/bench_infer.py [--rounds 5] [--images 2048] [--no-train-profile]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before any OpenMP runtime loads (as bench_train.py)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

import cnnx  # noqa: E402
from cnnx import int8 as int8_cpu  # noqa: E402
from cnnx import models, ptq  # noqa: E402

try:
    import torch
except ImportError:  # the PyTorch columns are optional (`pip install torch==2.13.0`)
    torch = None

LAYER_MACS = {  # per image
    "conv1": 6 * 25 * 28 * 28, "conv2": 16 * 150 * 10 * 10, "fc1": 400 * 120, "fc2": 120 * 84, "fc3": 84 * 10,
}  # fmt: skip


def cpu_mhz() -> float | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return float(line.split(":")[1])
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":")[1].split())
    except OSError:
        pass
    return set()


def build(calib: np.ndarray):
    model = models.build_model("lenet5", seed=0)
    model.eval()
    qmodel = ptq.quantize_model(model, calib)
    return model, qmodel


def torch_models(model, calib: np.ndarray):
    """PyTorch float LeNet-5 with cnnx's weights, and its eager-mode int8 (x86/fbgemm) twin."""
    import torch.ao.quantization as tq

    t = torch.nn

    class Net(t.Module):
        def __init__(self, quantized: bool):
            super().__init__()
            self.quant = tq.QuantStub() if quantized else t.Identity()
            self.dequant = tq.DeQuantStub() if quantized else t.Identity()
            self.c1, self.r1, self.p1 = t.Conv2d(1, 6, 5, padding=2), t.ReLU(), t.MaxPool2d(2)
            self.c2, self.r2, self.p2 = t.Conv2d(6, 16, 5), t.ReLU(), t.MaxPool2d(2)
            self.f1, self.r3 = t.Linear(400, 120), t.ReLU()
            self.f2, self.r4 = t.Linear(120, 84), t.ReLU()
            self.f3 = t.Linear(84, 10)

        def forward(self, x):
            x = self.quant(x)
            x = self.p1(self.r1(self.c1(x)))
            x = self.p2(self.r2(self.c2(x)))
            x = torch.flatten(x, 1)
            x = self.r4(self.f2(self.r3(self.f1(x))))
            return self.dequant(self.f3(x))

    params = [p.data for p in model.parameters()]  # conv1 w, b, conv2 w, b, fc1 w, b, ...
    nets = []
    for quantized in (False, True):
        net = Net(quantized)
        mods = [net.c1, net.c2, net.f1, net.f2, net.f3]
        for i, m in enumerate(mods):
            m.weight.data = torch.from_numpy(np.array(params[2 * i], np.float32))
            m.bias.data = torch.from_numpy(np.array(params[2 * i + 1], np.float32))
        net.eval()
        if quantized:
            torch.backends.quantized.engine = "x86"
            net.qconfig = tq.get_default_qconfig("x86")
            net = tq.fuse_modules(net, [["c1", "r1"], ["c2", "r2"], ["f1", "r3"], ["f2", "r4"]])
            net = tq.prepare(net)
            with torch.no_grad():
                net(torch.from_numpy(calib))
            net = tq.convert(net)
        nets.append(net)
    return nets


def engines(model, qmodel, tnets):
    """name -> (set threads, forward(batch)) for every engine present."""

    def cnnx_threads(n):
        cnnx.set_num_threads(n)

    out = {
        "cnnx float": (cnnx_threads, lambda x, n: model.forward(x)),
        "cnnx int8": (cnnx_threads, lambda x, n: qmodel.forward(x, n_threads=n)),
    }
    if tnets is not None:
        tf, tq8 = tnets

        def torch_threads(n):
            torch.set_num_threads(n)

        def run(net):
            def fwd(x, n):
                with torch.inference_mode():
                    return net(torch.from_numpy(x))

            return fwd

        out["torch float"] = (torch_threads, run(tf))
        out["torch int8"] = (torch_threads, run(tq8))
    return out


def time_pass(fwd, x, batch, n_threads) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(x), batch):
        fwd(x[i : i + batch], n_threads)
    return time.perf_counter() - t0


def throughput(eng, x, rounds, configs, images_b1):
    """{(batch, threads, engine): [images/s per round]}, rounds interleaved over configs and engines."""
    res = {}
    for r in range(rounds):
        for batch, threads in configs:
            xs = x[:images_b1] if batch == 1 else x
            for name, (set_threads, fwd) in eng.items():
                set_threads(threads)
                if r == 0:
                    time_pass(fwd, xs[: max(batch, 64)], batch, threads)  # warm-up
                res.setdefault((batch, threads, name), []).append(
                    len(xs) / time_pass(fwd, xs, batch, threads)
                )
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
    return res


def layer_times(model, qmodel, x, threads, reps=20):
    """Per-layer seconds per image at this batch: cnnx float (conv/linear including its ReLU) and int8."""
    cnnx.set_num_threads(threads)
    n = len(x)
    fl = [m for m in model.layers] if hasattr(model, "layers") else list(model)
    out = {}

    def best(fn):
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    # float: walk the model, timing each Conv2d/Linear together with the ReLU after it
    h = x
    names = iter(LAYER_MACS)
    i = 0
    while i < len(fl):
        m = fl[i]
        kind = type(m).__name__
        group = [m]
        if kind in ("Conv2d", "Linear") and i + 1 < len(fl) and type(fl[i + 1]).__name__ == "ReLU":
            group.append(fl[i + 1])

        def run(g=group, h=h):
            y = h
            for mm in g:
                y = mm.forward(y)
            return y

        if kind in ("Conv2d", "Linear"):
            out.setdefault(next(names), {})["float"] = best(run) / n
        h = run()
        i += len(group)
    # int8
    hq = qmodel.quantize_input(x)
    names = iter(LAYER_MACS)
    for layer in qmodel.layers:
        if layer.kind in ("conv", "linear"):
            t = best(lambda lay=layer, h=hq: ptq.run_layer(lay, h, "cython", threads, want_acc=False))
            out[next(names)]["int8"] = t / n
        hq, _ = ptq.run_layer(layer, hq, "cython", threads, want_acc=False)
    return out


def train_profile(threads: int, batch: int):
    """Per-layer fwd/bwd of a training step: cnnx vs PyTorch (bench_layers' LeNet-5 layers)."""
    import bench_layers as bl

    cnnx.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows = []
    for spec in bl.make_layers(batch, rng):
        c_f = bl.timeit(spec["fwd"], 20, 3)
        c_b = bl.timeit(spec["bwd"], 20, 3)
        t_f = t_b = float("nan")
        if torch is not None:
            tfwd, tbwd = bl.torch_closures(spec["torch"])
            t_f, t_b = bl.timeit(tfwd, 20, 3), bl.timeit(tbwd, 20, 3)
        rows.append((spec["name"], c_f, c_b, t_f, t_b))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--images", type=int, default=2048, help="images per timed pass at batch 64")
    ap.add_argument("--images-b1", type=int, default=256, help="images per timed pass at batch 1")
    ap.add_argument("--no-train-profile", dest="train_profile", action="store_false")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.images, 1, 28, 28)).astype(np.float32)
    model, qmodel = build(x[:256])
    tnets = torch_models(model, x[:256]) if torch is not None else None
    eng = engines(model, qmodel, tnets)
    configs = [(64, 1), (64, 2), (1, 1), (1, 2)]
    mhz = cpu_mhz()
    flags = cpu_flags()
    wide = "avx512f" in flags
    print(f"LeNet-5 inference, images/s (best of {args.rounds} interleaved rounds; spread = worst/best)")
    print(
        f"cnnx int8 GEMM variant: {int8_cpu.isa()}; torch: {torch.__version__ if torch else 'not installed'}"
        f"; cpu MHz (kernel-reported): {mhz}; os.cpu_count() = {os.cpu_count()}"
    )
    res = throughput(eng, x, args.rounds, configs, args.images_b1)

    names = list(eng)
    print(f"\n{'batch':>5} {'thr':>3} " + " ".join(f"{n:>18}" for n in names))
    for batch, threads in configs:
        cells = []
        for n in names:
            v = res[(batch, threads, n)]
            cells.append(f"{max(v):>9.0f} ({min(v) / max(v):.2f})")
        print(f"{batch:>5} {threads:>3} " + " ".join(f"{c:>18}" for c in cells))

    print("\nratios (best vs best, same run):")
    for batch, threads in configs:
        b = {n: max(res[(batch, threads, n)]) for n in names}
        parts = [f"int8/float cnnx {b['cnnx int8'] / b['cnnx float']:.2f}x"]
        if tnets is not None:
            parts += [
                f"cnnx int8/torch int8 {b['cnnx int8'] / b['torch int8']:.2f}x",
                f"cnnx float/torch float {b['cnnx float'] / b['torch float']:.2f}x",
                f"cnnx int8/torch float {b['cnnx int8'] / b['torch float']:.2f}x",
            ]
        print(f"  batch {batch:>2}, {threads} thread(s): " + "; ".join(parts))

    print("\nper layer, batch 64 (conv/linear with their ReLU), GOP/s = 2 x multiply-adds / time:")
    for threads in (1, 2):
        lt = layer_times(model, qmodel, x[:64], threads)
        if mhz:
            pf = threads * mhz / 1e3 * (32 if wide else 16)
            pi = threads * mhz / 1e3 * (128 if "avx512_vnni" in flags else 64)
            print(
                f"  {threads} thread(s): peak fp32 {pf:.0f} GFLOP/s, int8 {pi:.0f} GOP/s "
                f"({threads} x {mhz / 1e3:.2f} GHz x {32 if wide else 16} / "
                f"{128 if 'avx512_vnni' in flags else 64} op per cycle)"
            )
        for name, t in lt.items():
            g = 2 * LAYER_MACS[name]
            print(
                f"    {name:<6} float {t['float'] * 1e6:6.2f} us/img {g / t['float'] / 1e9:6.1f} GFLOP/s"
                f"   int8 {t['int8'] * 1e6:6.2f} us/img {g / t['int8'] / 1e9:6.1f} GOP/s"
                f"   int8 speed-up {t['float'] / t['int8']:.2f}x"
            )

    if args.train_profile:
        print("\ntraining step per layer, batch 64, 2 threads (median of 20; us per batch):")
        rows = train_profile(2, 64)
        tot_c = sum(r[1] + r[2] for r in rows)
        tot_t = sum(r[3] + r[4] for r in rows) if torch is not None else float("nan")
        print(
            f"  {'layer':<26} {'cnnx fwd':>9} {'cnnx bwd':>9} {'share':>6} {'torch fwd':>10}"
            f" {'torch bwd':>10} {'torch/cnnx':>10}"
        )
        for name, cf, cb, tf, tb in rows:
            print(
                f"  {name:<26} {cf * 1e6:9.0f} {cb * 1e6:9.0f} {(cf + cb) / tot_c:6.1%} {tf * 1e6:10.0f}"
                f" {tb * 1e6:10.0f} {(tf + tb) / (cf + cb):10.2f}"
            )
        print(
            f"  {'sum of layers':<26} {tot_c * 1e6:19.0f} {'':>6} {tot_t * 1e6:21.0f} {tot_t / tot_c:10.2f}"
        )
    print(
        f"\nmedian of the per-round spreads: "
        f"{statistics.median(min(v) / max(v) for v in res.values()):.2f} (1.00 = steady machine)"
    )


if __name__ == "__main__":
    main()
