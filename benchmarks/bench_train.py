"""Training throughput: one epoch (or --images N) of LeNet-5 in cnnx and in PyTorch CPU, same run.

Both train the same architecture (cnnx.models "lenet5") with the same batch size, SGD with momentum, the same
data already in memory as float32 (data loading is outside the timed region for both), and the same thread
count (cnnx.set_num_threads / torch.set_num_threads). Method: a warm-up of a few batches (not timed), then
the timed pass over the images; --runs rounds alternate cnnx and PyTorch, the best pass of each is
reported. Prints images/s of both and the ratio cnnx / PyTorch. Never asserts a speed. Usage:
    .venv/bin/python benchmarks/bench_train.py [--images 60000] [--batch-size 64] [--threads 2] [--runs 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
# As `cnnx train` does (see cnnx/cli.py), before any OpenMP runtime loads; PyTorch's bundled libgomp reads
# the same variable, so both sides run under the same policy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cnnx  # noqa: E402
from cnnx import data, models, nn, optim  # noqa: E402


def _images_per_second(step, n, batch, warmup):
    """Untimed warm-up batches, then one timed pass of `step(i)` over n images."""
    for i in range(warmup):
        step(i * batch)
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        step(i)
    return n / (time.perf_counter() - t0)


def bench_cnnx(x, y, batch, threads, warmup):
    cnnx.set_num_threads(threads)
    model = models.build_model("lenet5", seed=0)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step(i):
        xb, yb = x[i : i + batch], y[i : i + batch]
        logits = model.forward(xb)
        loss_fn.forward(logits, yb)
        model.backward(loss_fn.backward(), need_input_grad=False)  # as `cnnx train`; torch skips it too
        opt.step()

    return _images_per_second(step, len(x), batch, warmup)


def bench_torch(x, y, batch, threads, warmup):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t = torch.nn
    model = t.Sequential(
        t.Conv2d(1, 6, 5, padding=2), t.ReLU(), t.MaxPool2d(2),
        t.Conv2d(6, 16, 5), t.ReLU(), t.MaxPool2d(2), t.Flatten(),
        t.Linear(400, 120), t.ReLU(), t.Linear(120, 84), t.ReLU(), t.Linear(84, 10),
    )  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = t.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()

    def step(i):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt[i : i + batch]), yt[i : i + batch])
        loss.backward()
        opt.step()

    return _images_per_second(step, len(x), batch, warmup)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=60_000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=cnnx.get_num_threads())
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=5, help="untimed batches before each pass")
    args = ap.parse_args(argv)

    images, labels = data.load_mnist("train")
    n = min(args.images, len(images))
    x, y = data.to_float(images[:n]), labels[:n].astype(np.int64)
    print(
        f"LeNet-5 training, {n} images, batch {args.batch_size}, {args.threads} threads, SGD momentum 0.9; "
        f"warm-up {args.warmup} batches, best of {args.runs} run(s); cnnx OpenMP: {cnnx.openmp_enabled()}, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
    )

    try:
        import torch
    except ImportError:
        torch = None
    # Rounds alternate cnnx and PyTorch so a burst of load from other processes hits both alike.
    ours, theirs = [], []
    for r in range(args.runs):
        ours.append(bench_cnnx(x, y, args.batch_size, args.threads, args.warmup))
        line = f"run {r + 1}: cnnx {ours[-1]:8.0f} images/s"
        if torch is not None:
            theirs.append(bench_torch(x, y, args.batch_size, args.threads, args.warmup))
            line += f", PyTorch {theirs[-1]:8.0f} images/s"
        print(line, flush=True)
    print(f"cnnx     {max(ours):10.0f} images/s   ({n / max(ours):.2f} s per pass, best run)")
    if torch is None:
        print("PyTorch  not installed: no ratio (pip install torch for the comparison)")
        return 0
    print(
        f"PyTorch  {max(theirs):10.0f} images/s   ({n / max(theirs):.2f} s per pass; "
        f"torch {torch.__version__})"
    )
    print(f"ratio cnnx / PyTorch = {max(ours) / max(theirs):.2f}x (best against best; goal >= 1.5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
