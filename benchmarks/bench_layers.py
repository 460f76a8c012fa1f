"""Per-layer forward/backward timing of the cnnx float32 Cython kernels on LeNet-5 shapes, against the float64
NumPy golden model (few reps: it is slow) and PyTorch CPU (when importable, with torch.set_num_threads
matched), at 1 and 2 threads. Prints the method, the times, ratios measured in this same run, and GFLOP/s
for conv/linear. Never asserts a speed.

    .venv/bin/python benchmarks/bench_layers.py [--batch 64] [--reps 30] [--threads 1 2] [--no-golden]
                                                [--clock wall|cpu]

--clock cpu times with the process CPU clock instead of the wall clock: on a shared, busy machine it is the
steadier measure for 1-thread runs (it sums the threads' CPU time, so it does not show parallel speed-up).
"""

from __future__ import annotations

import os

# numpy's OpenBLAS threads spin after each matmul of the golden model and steal the cores the kernels
# being timed run on; one BLAS thread keeps the comparison about the kernels
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# idle OpenMP threads sleep instead of spinning (set before any OpenMP runtime starts; applies to cnnx and
# torch alike): on cores shared with other jobs, spinning waiters otherwise cost whole scheduler slices
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import cnnx  # noqa: E402
from cnnx import functional as F  # noqa: E402
from cnnx import reference as ref  # noqa: E402

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # the torch column is optional
    torch = None


CLOCK = time.perf_counter


def timeit(fn, reps: int, warmup: int) -> float:
    """Median time of fn() in seconds (on CLOCK), after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return statistics.median(times)


def make_layers(batch: int, rng: np.random.Generator) -> list[dict]:
    """LeNet-5 (modern) shapes: each entry has cnnx fwd/bwd closures, golden fwd/bwd, torch fwd/bwd, flops."""
    f32 = np.float32

    def randn(*shape):
        return rng.standard_normal(shape).astype(f32)

    layers = []

    def conv(name, c, f, h, k, pad):
        x, w, b = randn(batch, c, h, h), randn(f, c, k, k) * 0.1, randn(f)
        y = F.conv2d(x, w, b, 1, pad)
        dy = randn(*y.shape)
        oh = y.shape[2]
        flops = 2 * batch * f * c * k * k * oh * oh  # forward multiply-adds x2; backward is twice that
        layers.append(dict(
            name=name, flops=flops,
            fwd=lambda: F.conv2d(x, w, b, 1, pad), bwd=lambda: F.conv2d_backward(dy, x, w, 1, pad),
            gfwd=lambda: ref.conv2d(x, w, b, 1, pad), gbwd=lambda: ref.conv2d_backward(dy, x, w, 1, pad),
            torch=("conv", x, w, b, pad, dy)))

    def pool(name, c, h):
        x = randn(batch, c, h, h)
        y, idx = F.max_pool2d(x, 2, return_indices=True)
        dy = randn(*y.shape)
        layers.append(dict(
            name=name, flops=None,
            fwd=lambda: F.max_pool2d(x, 2, return_indices=True),
            bwd=lambda: F.max_pool2d_backward(dy, idx, x.shape),
            gfwd=lambda: ref.max_pool2d(x, 2), gbwd=lambda: ref.max_pool2d_backward(dy, x, 2),
            torch=("maxpool", x, dy)))

    def fc(name, i, o):
        x, w, b = randn(batch, i), randn(o, i) * 0.1, randn(o)
        dy = randn(batch, o)
        layers.append(dict(
            name=name, flops=2 * batch * i * o,
            fwd=lambda: F.linear(x, w, b), bwd=lambda: F.linear_backward(dy, x, w),
            gfwd=lambda: ref.linear(x, w, b), gbwd=lambda: ref.linear_backward(dy, x, w),
            torch=("linear", x, w, b, dy)))

    conv("conv1 1->6 5x5 p2 28x28", 1, 6, 28, 5, 2)
    pool("pool1 max 2x2 6x28x28", 6, 28)
    conv("conv2 6->16 5x5 14x14", 6, 16, 14, 5, 0)
    pool("pool2 max 2x2 16x10x10", 16, 10)
    fc("fc1 400->120", 400, 120)
    fc("fc2 120->84", 120, 84)
    fc("fc3 84->10", 84, 10)
    xr = randn(batch, 6, 28, 28)
    dyr = randn(batch, 6, 28, 28)
    layers.append(dict(name="relu 6x28x28", flops=None, fwd=lambda: F.relu(xr),
                       bwd=lambda: F.relu_backward(dyr, xr), gfwd=lambda: ref.relu(xr),
                       gbwd=lambda: ref.relu_backward(dyr, xr), torch=("relu", xr, dyr)))
    z = randn(batch, 10)
    t = rng.integers(0, 10, batch)
    layers.append(dict(name="cross-entropy 10 classes", flops=None,
                       fwd=lambda: F.cross_entropy(z, t), bwd=lambda: None,
                       gfwd=lambda: ref.cross_entropy(z, t), gbwd=lambda: None, torch=("ce", z, t)))
    return layers


def torch_closures(spec):
    """(forward, backward) closures for PyTorch; backward reruns autograd on a retained graph."""
    kind = spec[0]
    if kind == "conv":
        _, x, w, b, pad, dy = spec
        tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
        tdy = torch.from_numpy(dy)
        y = TF.conv2d(tx, tw, tb, padding=pad)
        def fwd():
            with torch.no_grad():
                return TF.conv2d(tx, tw, tb, padding=pad)
        return fwd, lambda: torch.autograd.grad(y, (tx, tw, tb), tdy, retain_graph=True)
    if kind == "maxpool":
        _, x, dy = spec
        tx = torch.from_numpy(x).requires_grad_()
        y = TF.max_pool2d(tx, 2)
        tdy = torch.from_numpy(dy)
        return (lambda: TF.max_pool2d(tx.detach(), 2),
                lambda: torch.autograd.grad(y, (tx,), tdy, retain_graph=True))
    if kind == "linear":
        _, x, w, b, dy = spec
        tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
        y = TF.linear(tx, tw, tb)
        tdy = torch.from_numpy(dy)
        return (lambda: TF.linear(tx.detach(), tw.detach(), tb.detach()),
                lambda: torch.autograd.grad(y, (tx, tw, tb), tdy, retain_graph=True))
    if kind == "relu":
        _, x, dy = spec
        tx = torch.from_numpy(x).requires_grad_()
        y = TF.relu(tx)
        tdy = torch.from_numpy(dy)
        return lambda: TF.relu(tx.detach()), lambda: torch.autograd.grad(y, (tx,), tdy, retain_graph=True)
    _, z, t = spec
    tz = torch.from_numpy(z).requires_grad_()
    tt = torch.from_numpy(t)

    def fwd_bwd():  # cnnx's cross_entropy returns the loss and its gradient in one call: time the same
        loss = TF.cross_entropy(tz, tt)
        return torch.autograd.grad(loss, (tz,))
    return fwd_bwd, lambda: None


def lenet_steps(batch: int, rng: np.random.Generator):
    """One training step (forward, cross-entropy, backward; no optimiser) of LeNet-5 through cnnx.nn, and the
    same through torch.nn when importable. cnnx skips the input gradient of the first layer, as torch does
    for an input that does not require grad."""
    from cnnx import nn

    m = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, seed=0), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, seed=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120, seed=2), nn.ReLU(), nn.Linear(120, 84, seed=3), nn.ReLU(),
        nn.Linear(84, 10, init="xavier", seed=4))
    loss_fn = nn.CrossEntropyLoss()
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    t = rng.integers(0, 10, batch)

    def step():
        loss_fn(m(x), t)
        m.backward(loss_fn.backward(), need_input_grad=False)

    if torch is None:
        return step, None
    tnn = torch.nn
    tm = tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5),
                        tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(),
                        tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
    tx, tt = torch.from_numpy(x), torch.from_numpy(t)

    def tstep():
        tm.zero_grad(set_to_none=True)
        TF.cross_entropy(tm(tx), tt).backward()

    return step, tstep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=30, help="timed repetitions (median reported)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--golden-reps", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-golden", action="store_true")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter

    rng = np.random.default_rng(0)
    layers = make_layers(args.batch, rng)
    print(f"cnnx {cnnx.__version__} bench_layers: LeNet-5 shapes, batch {args.batch}, float32")
    print(f"method: median of {args.reps} timed reps after {args.warmup} warm-up calls (golden model: "
          f"median of {args.golden_reps} reps, 1 warm-up); f+b = forward + backward (conv bwd includes dx);")
    print(f"        {args.clock} clock; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; "
          f"threads {args.threads} via cnnx.set_num_threads"
          + (" and torch.set_num_threads" if torch is not None else "") + "; ratios are from this run.")
    print(f"machine: {platform.processor() or platform.machine()}, {cnnx.get_num_threads()} default threads, "
          f"OpenMP {'on' if cnnx.openmp_enabled() else 'OFF'}; torch "
          + (torch.__version__ if torch is not None else "not importable (torch column skipped)"))

    golden = {}
    if not args.no_golden:
        for L in layers:
            gf = timeit(L["gfwd"], args.golden_reps, 1)
            gb = timeit(L["gbwd"], args.golden_reps, 1)
            golden[L["name"]] = gf + gb

    totals = {}
    for nt in args.threads:
        cnnx.set_num_threads(nt)
        if torch is not None:
            torch.set_num_threads(nt)
        print(f"\n== {nt} thread(s) ==")
        hdr = (f"{'layer':<26} {'fwd ms':>8} {'bwd ms':>8} {'f+b ms':>8} {'GFLOP/s':>8}"
               + (f" {'torch f+b':>9} {'torch/cnnx':>10}" if torch is not None else "")
               + (f" {'golden f+b':>10} {'golden/cnnx':>11}" if golden else ""))
        print(hdr)
        print("-" * len(hdr))
        tot = {"cnnx": 0.0, "torch": 0.0}
        for L in layers:
            f = timeit(L["fwd"], args.reps, args.warmup)
            b = timeit(L["bwd"], args.reps, args.warmup)
            fb = f + b
            tot["cnnx"] += fb
            gflops = f"{3 * L['flops'] / fb / 1e9:8.2f}" if L["flops"] else f"{'':>8}"
            row = f"{L['name']:<26} {f * 1e3:8.3f} {b * 1e3:8.3f} {fb * 1e3:8.3f} {gflops}"
            if torch is not None:
                tf, tb = torch_closures(L["torch"])
                tfb = timeit(tf, args.reps, args.warmup) + timeit(tb, args.reps, args.warmup)
                tot["torch"] += tfb
                row += f" {tfb * 1e3:9.3f} {tfb / fb:10.2f}"
            if golden:
                row += f" {golden[L['name']] * 1e3:10.1f} {golden[L['name']] / fb:11.0f}"
            print(row)
        totals[nt] = tot
        line = f"{'all layers':<26} {'':>8} {'':>8} {tot['cnnx'] * 1e3:8.3f} {'':>8}"
        if torch is not None:
            line += f" {tot['torch'] * 1e3:9.3f} {tot['torch'] / tot['cnnx']:10.2f}"
        print(line)
        step, tstep = lenet_steps(args.batch, rng)
        sc = timeit(step, args.reps, args.warmup)
        line = f"{'LeNet-5 training step':<26} {'':>8} {'':>8} {sc * 1e3:8.3f} {'':>8}"
        if tstep is not None:
            st = timeit(tstep, args.reps, args.warmup)
            line += f" {st * 1e3:9.3f} {st / sc:10.2f}"
        print(line + "   (nn.Sequential forward + loss + backward)")
    if len(args.threads) > 1 and args.threads[0] in totals:
        base = totals[args.threads[0]]["cnnx"]
        for nt in args.threads[1:]:
            print(f"cnnx speed-up {args.threads[0]} -> {nt} threads (all layers): "
                  f"{base / totals[nt]['cnnx']:.2f}x")
    print("GFLOP/s counts forward + backward as 3x the forward multiply-adds (x2 flops each).")
    print("torch/cnnx > 1 means cnnx is faster. Timings on a shared machine are noisy.")
    cnnx.set_num_threads(None)


if __name__ == "__main__":
    main()
