"""The cross-check harness: one trained network, N MNIST test images, five paths that must agree.

Paths
  float-cython   the float engine (`cnnx.nn` layers' forward, float32)                    all N images
  float-numpy    the float64 golden model (`cnnx.reference` float functions), per layer   golden subset
  int8-cython    the int8 CPU path (`cnnx.ptq.QuantizedModel`, backend "cython")          all N images
  int8-numpy     the int8 golden model (backend "numpy")                                   golden subset
  rtl            the Verilog cores under Verilator (`cnnx.sim`): conv layers on ConvCore, pools on PoolCore,
                 dense layers on ConvCore as 1x1 convolutions of a 1x1 map                all N images
The NumPy golden paths are slow, so they run on the first `golden_images` images (default min(N, 200)); the
int8-cython vs RTL comparison covers all N. The RTL path is chained on its OWN outputs (layer k's RTL
output feeds layer k+1 on the RTL), so an image counts as bit-identical at layer k only if the whole RTL
pipeline up to k matches the CPU.

Parallelism: the images are split over `workers` processes (spawned, not forked, so no OpenMP state crosses a
fork); each builds its own fast-driver cores and works through its share in batches, one layer at a time per
batch (the simulator call is per layer, so batching amortises its set-up). The parent process runs the float
and golden paths meanwhile and shows a tqdm bar in images/s.

Test hook: `corrupt_rtl_layer=k` flips the largest-magnitude weight of int8 layer k in what is SENT TO THE RTL
only, to prove that a wrong RTL result is caught (the CLI then exits non-zero).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field

import numpy as np

from . import cycles, ptq

# ------------------------------------------------------------------------------------------------------------
# float paths
# ------------------------------------------------------------------------------------------------------------


def float_golden_layer(layer, x: np.ndarray) -> np.ndarray:
    """One float layer through the float64 golden model in `cnnx.reference` (plain NumPy)."""
    from . import reference as ref

    kind = type(layer).__name__
    x = np.asarray(x, np.float64)
    if kind == "Conv2d":
        b = None if getattr(layer, "bias", None) is None else np.asarray(layer.bias.data, np.float64)
        # stride, padding and kernel sizes go through as the layer holds them (ints or (h, w) pairs)
        return ref.conv2d(x, np.asarray(layer.weight.data, np.float64), b, layer.stride, layer.padding,
                          getattr(layer, "floor_mode", False))
    if kind == "Linear":
        b = None if getattr(layer, "bias", None) is None else np.asarray(layer.bias.data, np.float64)
        return ref.linear(x, np.asarray(layer.weight.data, np.float64), b)
    if kind in ("MaxPool2d", "AvgPool2d"):
        return (ref.max_pool2d if kind == "MaxPool2d" else ref.avg_pool2d)(
            x, layer.kernel_size, getattr(layer, "stride", None), getattr(layer, "floor_mode", False))
    if kind == "ReLU":
        return ref.relu(x)
    if kind == "Tanh":
        return ref.tanh(x)
    if kind == "Sigmoid":
        return ref.sigmoid(x)
    if kind == "Flatten":
        return x.reshape(x.shape[0], -1)
    if kind == "Dropout":
        return x
    raise ValueError(f"no float golden function for layer {layer!r}")


def float_traces(model, x: np.ndarray, golden: bool) -> list[np.ndarray]:
    """The output of every float layer, by the Cython engine (golden=False) or the float64 golden model."""
    out, h = [], x
    for layer in ptq.layers_of(model):
        h = float_golden_layer(layer, h) if golden else np.asarray(layer.forward(h))
        out.append(h)
    return out


# ------------------------------------------------------------------------------------------------------------
# the RTL path (runs in the worker processes)
# ------------------------------------------------------------------------------------------------------------


def _corrupted(w: np.ndarray) -> np.ndarray:
    """w with its largest-magnitude entry bit-inverted (always a different value, and a large change)."""
    w = w.copy()
    i = int(np.argmax(np.abs(w.astype(np.int16))))
    w.flat[i] = ~w.flat[i]
    return w


def _per_image_cycles(core, n: int, total) -> np.ndarray:
    per = getattr(core, "last_cycles", None)
    if per is not None and np.size(per) == n:
        return np.asarray(per, np.int64).reshape(n)
    return np.full(n, int(total) // max(n, 1), np.int64)


def import_sim():
    """The co-simulation bridge `cnnx.sim` (the top-level `sim/` folder, mapped into the package by setup.py),
    imported only when the RTL is used so that the CPU paths work without pyverilator."""
    import cnnx.sim as sim

    return sim


class RtlRunner:
    """Runs a QuantizedModel's layers on the simulated cores, one layer at a time over a batch."""

    def __init__(self, qmodel: ptq.QuantizedModel, rows: int = 8, cols: int = 8, driver: str = "fast",
                 corrupt_rtl_layer: int | None = None):
        sim = import_sim()
        self.qmodel = qmodel
        self.conv = sim.ConvCore(rows=rows, cols=cols, driver=driver)
        self.pool = sim.PoolCore(driver=driver)
        self.weights = [layer.w for layer in qmodel.layers]
        if corrupt_rtl_layer is not None:
            if not 0 <= corrupt_rtl_layer < len(qmodel.layers) or qmodel.layers[corrupt_rtl_layer].w is None:
                raise ValueError(f"corrupt_rtl_layer must index a conv/linear layer, got {corrupt_rtl_layer}")
            self.weights[corrupt_rtl_layer] = _corrupted(self.weights[corrupt_rtl_layer])

    def run_layer(self, i: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(int8 output, cycles per image) of int8 layer i on the RTL."""
        layer, n = self.qmodel.layers[i], x.shape[0]
        if layer.kind == "conv":
            y, total = self.conv.run(x, self.weights[i], layer.b, layer.rq, stride=layer.stride,
                                     padding=layer.padding)
            return y, _per_image_cycles(self.conv, n, total)
        if layer.kind == "linear":
            y, total = self.conv.run_linear(x, self.weights[i], layer.b, layer.rq)
            return y, _per_image_cycles(self.conv, n, total)
        if layer.kind in ("maxpool", "avgpool"):
            mode = "max" if layer.kind == "maxpool" else "avg"
            y, total = self.pool.run(x, layer.kernel, stride=layer.stride, mode=mode)
            return y, _per_image_cycles(self.pool, n, total)
        if layer.kind == "flatten":
            return np.ascontiguousarray(x.reshape(n, -1)), np.zeros(n, np.int64)
        raise ValueError(f"the RTL cannot run layer kind {layer.kind!r}")


def _compare_chunk(qmodel, x_int8, rows, cols, driver, corrupt_rtl_layer, batch, progress, use_rtl=True):
    """int8-cython (all layers) and RTL (chained on itself) over one chunk of quantised images."""
    runner = RtlRunner(qmodel, rows, cols, driver, corrupt_rtl_layer) if use_rtl else None
    n, n_layers = x_int8.shape[0], len(qmodel.layers)
    identical = np.zeros((n, n_layers), bool)
    per_cycles = np.zeros((n, n_layers), np.int64)
    cy_logits, rtl_logits = [], []
    mismatches = []  # first few (image, layer, n_elements_differing)
    for start in range(0, n, batch):
        xb = x_int8[start : start + batch]
        trace, _ = qmodel.forward_trace(xb, "cython", n_threads=1)
        cy_logits.append(trace[-1])
        if runner is not None:
            h = xb
            for i in range(n_layers):
                h, cyc = runner.run_layer(i, h)
                per_cycles[start : start + len(xb), i] = cyc
                diff = (h != trace[i + 1]).reshape(len(xb), -1)
                identical[start : start + len(xb), i] = ~diff.any(axis=1)
                for j in np.flatnonzero(diff.any(axis=1))[: max(0, 5 - len(mismatches))]:
                    mismatches.append((int(start + j), i, int(diff[j].sum())))
            rtl_logits.append(h)
        progress(len(xb))
    return {
        "identical": identical,
        "cycles": per_cycles,
        "cy_logits": np.concatenate(cy_logits),
        "rtl_logits": np.concatenate(rtl_logits) if rtl_logits else None,
        "mismatches": mismatches,
    }


def _worker(wid, queue, qmodel, x_int8, rows, cols, driver, corrupt_rtl_layer, batch, use_rtl):
    """A spawned worker: one own set of cores, one chunk of images; reports progress and the result."""
    try:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        res = _compare_chunk(qmodel, x_int8, rows, cols, driver, corrupt_rtl_layer, batch,
                             lambda k: queue.put(("progress", wid, k)), use_rtl)
        queue.put(("done", wid, res))
    except BaseException:  # the parent must hear of any failure, or it would wait for ever
        queue.put(("error", wid, traceback.format_exc()))


# ------------------------------------------------------------------------------------------------------------
# the result
# ------------------------------------------------------------------------------------------------------------


@dataclass
class LayerReport:
    index: int
    kind: str
    name: str
    out_shape: tuple
    float_max_abs_diff: float | None  # float-cython vs float64 golden at this layer's float output
    int8_cy_vs_np_identical: int | None  # images bit-identical, over the golden subset
    rtl_identical: int | None  # images bit-identical int8-cython vs RTL, over all N
    rtl_cycles_per_image: float | None  # measured on the simulator (mean over images)
    model_cycles_per_image: int | None  # the analytical figure of cnnx.cycles


@dataclass
class CosimResult:
    n_images: int
    n_golden: int
    array: tuple
    driver: str
    workers: int
    layers: list[LayerReport]
    accuracy: dict  # path -> accuracy (on the images that path ran)
    agreement: dict  # "a vs b" -> fraction of images with the same argmax
    float_logits_max_abs_diff: float
    mismatches: list = field(default_factory=list)
    wall_time_s: float = 0.0
    rtl_time_s: float = 0.0
    rtl: bool = True

    @property
    def int8_mismatch(self) -> bool:
        """True when any int8 tensor differs: CPU vs RTL (all N) or int8 Cython vs NumPy (golden subset)."""
        for r in self.layers:
            if r.rtl_identical is not None and r.rtl_identical != self.n_images:
                return True
            if r.int8_cy_vs_np_identical is not None and r.int8_cy_vs_np_identical != self.n_golden:
                return True
        return False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["int8_mismatch"] = self.int8_mismatch
        d["images_per_s"] = self.n_images / self.wall_time_s if self.wall_time_s else None
        return d

    def table(self) -> str:
        def fmt(v, spec):  # a missing figure is a right-aligned "-" of the column's width
            return format(v, spec) if v is not None else "-".rjust(int(spec.split(".")[0].rstrip("dfe") or 1))

        lines = [
            f"cosim: {self.n_images} images, RTL {self.array[0]}x{self.array[1]} ({self.driver} driver, "
            f"{self.workers} workers); NumPy golden paths on the first {self.n_golden} images only",
            f"{'#':>2} {'layer':<14} {'out shape':<14} {'float|max diff|':>15} {'int8 cy=np':>11} "
            f"{'int8 cy=rtl':>12} {'RTL cyc/img':>12} {'model cyc':>10}",
        ]
        for r in self.layers:
            shape = "x".join(map(str, r.out_shape))
            cynp = "-" if r.int8_cy_vs_np_identical is None else f"{r.int8_cy_vs_np_identical}/"
            cynp += "" if r.int8_cy_vs_np_identical is None else str(self.n_golden)
            cyrtl = "-" if r.rtl_identical is None else f"{r.rtl_identical}/{self.n_images}"
            lines.append(f"{r.index:>2} {r.name:<14} {shape:<14} {fmt(r.float_max_abs_diff, '15.2e')} "
                         f"{cynp:>11} {cyrtl:>12} {fmt(r.rtl_cycles_per_image, '12.1f')} "
                         f"{fmt(r.model_cycles_per_image, '10d')}")
        lines.append(f"float logits: max |cython - golden| = {self.float_logits_max_abs_diff:.2e}")
        lines.append("accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in self.accuracy.items()))
        lines.append("argmax agreement: " + ", ".join(f"{k} {v:.4f}" for k, v in self.agreement.items()))
        for img, layer, nd in self.mismatches:
            lines.append(f"MISMATCH: image {img}, layer {layer}: {nd} int8 values differ CPU vs RTL")
        total = sum(r.rtl_cycles_per_image or 0 for r in self.layers)
        lines.append(f"RTL cycles per image (all layers): {total:.0f}; wall time {self.wall_time_s:.1f} s "
                     f"({self.n_images / max(self.wall_time_s, 1e-9):.1f} images/s), RTL part "
                     f"{self.rtl_time_s:.1f} s")
        verdict = "INT8 MISMATCH" if self.int8_mismatch else "all int8 tensors bit-identical"
        lines.append("RESULT: " + verdict)
        return "\n".join(lines)


def layers_for_groups(qmodel: ptq.QuantizedModel) -> list[list[int]]:
    """For each int8 layer, the indices of the float layers it stands for (e.g. Conv2d and its ReLU)."""
    out, prev = [], -1
    for layer in qmodel.layers:
        out.append(list(range(prev + 1, layer.float_index + 1)))
        prev = layer.float_index
    return out


def layer_macs(layer: ptq.QLayer, in_shape: tuple, out_shape: tuple) -> int:
    """Useful multiply-accumulates of one image through a conv/linear layer (0 for pools and flatten), as
    `cnnx.cycles` counts them."""
    if layer.kind == "conv":
        F, C, KH, KW = layer.w.shape
        return int(cycles.conv_macs(C, in_shape[1], in_shape[2], F, KH, KW, layer.stride, layer.padding))
    if layer.kind == "linear":
        return int(cycles.linear_macs(layer.w.shape[1], layer.w.shape[0]))
    return 0


# ------------------------------------------------------------------------------------------------------------
# the harness
# ------------------------------------------------------------------------------------------------------------


def _split(n: int, k: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, n, k + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def run_cosim(model, images: np.ndarray, labels: np.ndarray, *, qmodel: ptq.QuantizedModel | None = None,
              calib_images=None, array: tuple[int, int] = (8, 8), workers: int | None = None,
              driver: str = "fast", golden_images: int | None = None, batch: int = 250,
              corrupt_rtl_layer: int | None = None, rtl: bool = True, progress: bool = True) -> CosimResult:
    """Run `images` (uint8 (N, 28, 28)) through every path and compare; see the module docstring."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise TypeError(f"images must be uint8 (N, 28, 28) or (N, 1, H, W), got {images.dtype} "
                        f"{images.shape}")
    n = images.shape[0]
    if n == 0 or labels.shape != (n,):
        raise ValueError(f"need N > 0 images and N labels, got {n} images and labels of shape {labels.shape}")
    rows, cols = array
    if driver not in ("fast", "python"):
        raise ValueError(f"driver must be 'fast' or 'python', got {driver!r}")
    n_golden = min(n, 200) if golden_images is None else max(0, min(int(golden_images), n))
    workers = max(1, min(int(workers or os.cpu_count() or 1), n))
    if qmodel is None:
        if calib_images is None:
            raise ValueError("pass a quantised model (qmodel=) or calibration images (calib_images=)")
        qmodel = ptq.quantize_model(model, calib_images)
    x_int8 = qmodel.quantize_input(images)

    # 1. the int8-cython and RTL paths over all N: in spawned workers (or inline for one worker)
    chunks = _split(n, workers)
    results: dict[int, dict] = {}
    bar = tqdm(total=n, unit="img", desc="int8 cpu vs rtl", disable=not progress, file=sys.stderr)
    t_rtl = time.perf_counter()
    procs, queue = [], None
    if workers > 1:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        for wid, (a, b) in enumerate(chunks):
            p = ctx.Process(target=_worker, args=(wid, queue, qmodel, x_int8[a:b], rows, cols, driver,
                                                  corrupt_rtl_layer, batch, rtl), daemon=True)
            p.start()
            procs.append(p)

    # 2. meanwhile, in a thread of this process (so the progress bar keeps moving): the float paths and the
    # golden subset. The heavy parts are Cython/NumPy calls that release the GIL.
    cpu: dict = {}

    def cpu_paths():
        try:
            x_float = qmodel_float_input(images)
            if hasattr(model, "eval"):
                model.eval()
            chunks_fl = [float_traces(model, x_float[a : a + 1000], golden=False)[-1]
                         for a in range(0, n, 1000)]
            cpu["float_cy_logits"] = np.concatenate(chunks_fl)
            g = n_golden
            cpu["fl_cy"] = float_traces(model, x_float[:g], golden=False) if g else []
            cpu["fl_np"] = float_traces(model, x_float[:g], golden=True) if g else []
            cpu["np_trace"] = qmodel.forward_trace(x_int8[:g], "numpy")[0] if g else []
            cpu["cy_trace_g"] = qmodel.forward_trace(x_int8[:g], "cython")[0] if g else []
        except BaseException as e:  # re-raised in the caller's thread below
            cpu["error"] = e

    thread = None
    if workers == 1:
        cpu_paths()
    else:
        import threading

        thread = threading.Thread(target=cpu_paths, name="cnnx-cosim-cpu", daemon=True)
        thread.start()

    if workers == 1:
        results[0] = _compare_chunk(qmodel, x_int8, rows, cols, driver, corrupt_rtl_layer, batch,
                                    bar.update, rtl)
    else:
        import queue as queue_mod

        errors, reported = [], set()
        while len(results) + len(errors) < len(procs):
            try:
                kind, wid, payload = queue.get(timeout=2.0)
            except queue_mod.Empty:
                # a worker that died without a word (killed, crashed in C) must not leave us waiting for ever
                for wid, p in enumerate(procs):
                    if p.exitcode not in (None, 0) and wid not in reported and wid not in results:
                        reported.add(wid)
                        errors.append(f"worker {wid} exited with code {p.exitcode} and no report")
                continue
            if kind == "progress":
                bar.update(payload)
            elif kind == "done":
                reported.add(wid)
                results[wid] = payload
            elif wid not in reported:
                reported.add(wid)
                errors.append(payload)
        for p in procs:
            p.join()
        if errors:
            bar.close()
            raise RuntimeError("a co-simulation worker failed:\n" + "\n".join(errors))
    bar.close()
    rtl_time = time.perf_counter() - t_rtl
    if thread is not None:
        thread.join()
    if "error" in cpu:
        raise cpu["error"]
    float_cy_logits, fl_cy, fl_np = cpu["float_cy_logits"], cpu["fl_cy"], cpu["fl_np"]
    np_trace, cy_trace_g = cpu["np_trace"], cpu["cy_trace_g"]

    identical = np.concatenate([results[w]["identical"] for w in sorted(results)])
    cyc = np.concatenate([results[w]["cycles"] for w in sorted(results)])
    cy_logits = np.concatenate([results[w]["cy_logits"] for w in sorted(results)])
    mismatches = []
    for w in sorted(results):
        off = chunks[w][0]
        mismatches += [(img + off, layer, nd) for img, layer, nd in results[w]["mismatches"]]

    # 3. the report
    shapes = [tuple(x_int8.shape[1:])]
    h = x_int8[:1]
    for layer in qmodel.layers:
        h, _ = ptq.run_layer(layer, h, "cython")
        shapes.append(tuple(h.shape[1:]))
    reports = []
    for i, layer in enumerate(qmodel.layers):
        fdiff = None
        if n_golden and layer.float_index >= 0:
            k = layer.float_index
            fdiff = float(np.max(np.abs(fl_cy[k].astype(np.float64) - fl_np[k])))
        cynp = None
        if n_golden:
            same = (np_trace[i + 1] == cy_trace_g[i + 1]).reshape(n_golden, -1).all(axis=1)
            cynp = int(same.sum())
        reports.append(LayerReport(
            index=i, kind=layer.kind, name=layer.name.replace("+ReLU", "+relu"), out_shape=shapes[i + 1],
            float_max_abs_diff=fdiff, int8_cy_vs_np_identical=cynp,
            rtl_identical=int(identical[:, i].sum()) if rtl else None,
            rtl_cycles_per_image=float(cyc[:, i].mean()) if rtl and layer.kind != "flatten" else None,
            model_cycles_per_image=cycles.layer_cycles(layer, shapes[i], rows, cols),
        ))
    preds = {"float-cython": np.argmax(float_cy_logits, axis=1), "int8-cython": np.argmax(cy_logits, axis=1)}
    if n_golden:
        preds["float-numpy"] = np.argmax(fl_np[-1], axis=1)
        preds["int8-numpy"] = np.argmax(np_trace[-1], axis=1)
    if rtl:
        preds["rtl"] = np.argmax(np.concatenate([results[w]["rtl_logits"] for w in sorted(results)]), axis=1)
    accuracy = {k: float(np.mean(v == labels[: len(v)])) for k, v in preds.items()}

    def agree(a, b):
        m = min(len(preds[a]), len(preds[b]))
        return float(np.mean(preds[a][:m] == preds[b][:m]))

    agreement = {"float-cython vs int8-cython": agree("float-cython", "int8-cython")}
    if n_golden:
        agreement["float-cython vs float-numpy"] = agree("float-cython", "float-numpy")
        agreement["int8-cython vs int8-numpy"] = agree("int8-cython", "int8-numpy")
    if rtl:
        agreement["int8-cython vs rtl"] = agree("int8-cython", "rtl")
    flog = float(np.max(np.abs(fl_cy[-1].astype(np.float64) - fl_np[-1]))) if n_golden else float("nan")
    return CosimResult(
        n_images=n, n_golden=n_golden, array=(rows, cols), driver=driver, workers=workers, layers=reports,
        accuracy=accuracy, agreement=agreement, float_logits_max_abs_diff=flog, mismatches=mismatches[:10],
        wall_time_s=time.perf_counter() - t0, rtl_time_s=rtl_time, rtl=rtl,
    )


def qmodel_float_input(images: np.ndarray) -> np.ndarray:
    """uint8 MNIST images -> the float model's normalised float32 input (N, 1, 28, 28)."""
    from .data import to_float

    return to_float(images)


def parse_array(text) -> tuple[int, int]:
    """'8x8' -> (8, 8)."""
    if isinstance(text, tuple | list):
        return int(text[0]), int(text[1])
    try:
        r, c = str(text).lower().split("x")
        rows, cols = int(r), int(c)
    except ValueError:
        raise ValueError(f"--array must look like 8x8, got {text!r}") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"--array sizes must be positive, got {text!r}")
    return rows, cols


def calibration_images(n: int = 500) -> np.ndarray:
    """The first `n` TRAINING images: calibration never sees the test set it is scored on."""
    from .data import load_mnist

    return load_mnist("train")[0][:n]


def cosim_run_dir(run_dir, n_images: int = 1000, **kwargs) -> CosimResult:
    """Load the checkpoint in `run_dir`, quantise it on 500 training images, co-simulate `n_images` test
    images."""
    from .checkpoint import load
    from .data import load_mnist

    model, _info = load(run_dir)
    images, labels = load_mnist("test")
    if not 1 <= n_images <= len(images):
        raise ValueError(f"--images must be in [1, {len(images)}], got {n_images}")
    qmodel = ptq.quantize_model(model, calibration_images())
    return run_cosim(model, images[:n_images], labels[:n_images], qmodel=qmodel, **kwargs)


def cli_error(command: str, e: Exception) -> int:
    """Report an exception of `cnnx cosim|profile` on stderr and give its exit code: 2 for bad input or a
    missing RTL bridge, 1 when a worker or the simulator failed (the check did not pass). Others re-raise."""
    if isinstance(e, ValueError | TypeError | FileNotFoundError):
        print(f"cnnx {command}: error: {e}", file=sys.stderr)
        return 2
    if isinstance(e, ImportError):
        print(f"cnnx {command}: the RTL bridge cannot be loaded ({e}); it needs Verilator and pyverilator-mm",
              file=sys.stderr)
        return 2
    if isinstance(e, RuntimeError):
        print(f"cnnx {command}: {e}", file=sys.stderr)
        return 1
    raise e


def cli_cosim(args) -> int:
    """`cnnx cosim RUN_DIR --images N --array 8x8 --workers K --driver fast|python --json`: 0 when every int8
    tensor matched, 1 on any int8 mismatch, 2 on bad input."""
    try:
        res = cosim_run_dir(
            args.run_dir,
            n_images=args.images,
            array=parse_array(args.array),
            workers=args.workers,
            driver=args.driver,
            golden_images=args.golden_images,
            corrupt_rtl_layer=args.corrupt_rtl_layer,
            progress=not args.json,
        )
    except Exception as e:
        return cli_error("cosim", e)
    if args.json:
        print(json.dumps(res.to_dict()))
    else:
        print(res.table())
    return 1 if res.int8_mismatch else 0
