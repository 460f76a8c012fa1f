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
fork; at most one per CPU this process may use); each loads its own fast-driver cores (built and checked by
the parent first) and works through its share in batches, one layer at a time per batch (the simulator call
is per layer, so batching amortises its set-up). The parent process runs the float and golden paths meanwhile
and shows a tqdm bar in images/s. Workers die with the parent, a worker that dies is noticed at once, and one
that reports no batch for `worker_timeout` seconds (default 60 s + 0.5 s per image of a batch, about 20x the
measured rate) fails the run (`cnnx._workers`).

Verdict: the run FAILS (CosimResult.failed, exit 1) on any int8 difference, or when a float path gives
non-finite logits (NaN/inf): then the int8 agreement says nothing about the trained network. A checkpoint
whose parameters are not finite is refused before any work (exit 2).

Test hook: `corrupt_rtl_layer=k` flips the largest-magnitude weight of int8 layer k in what is SENT TO THE RTL
only, to prove that a wrong RTL result is caught (the CLI then exits non-zero).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import cycles, ptq
from ._cliutil import cli_error, dumps

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


def import_sim():
    """The co-simulation bridge `cnnx.sim` (the top-level `sim/` folder, mapped into the package by setup.py),
    imported only when the RTL is used so that the CPU paths work without pyverilator."""
    import cnnx.sim as sim

    return sim


class RtlRunner:
    """Runs a QuantizedModel's layers on the simulated cores, one layer at a time over a batch."""

    def __init__(self, qmodel: ptq.QuantizedModel, rows: int = 8, cols: int = 8, driver: str = "fast",
                 corrupt_rtl_layer: int | None = None, buffers: dict | None = None, trace=None,
                 trace_clock_mhz: float | None = None, lanes: int = cycles.POOL_LANES,
                 stream_width: int | None = None):
        """`stream_width` (32 or 64): the cores run behind their AXI-Stream wrappers (the cores'
        `last_counters` then hold the end-to-end counters of the last run)."""
        from .compile import tiling

        sim = import_sim()
        self.qmodel = qmodel
        conv_params = {k.lower(): v for k, v in (buffers or {}).items()}
        pool_params = {k.lower(): v for k, v in tiling.pool_params(buffers).items()} if buffers else {}
        self.traces = trace_paths(trace) if trace else []
        # the simulators write the VCDs into temporary files beside them, published by close(keep=True):
        # a failed or interrupted run leaves no half-written waveform (cnnx._atomic)
        self._trace_tmps = open_trace_temps(self.traces)
        self.conv = self.pool = None
        conv_trace, pool_trace = self._trace_tmps or (None, None)
        if stream_width is not None:
            conv_params["stream_width"] = pool_params["stream_width"] = stream_width
        try:
            self.conv = sim.ConvCore(rows=rows, cols=cols, driver=driver, trace=conv_trace,
                                     trace_clock_mhz=trace_clock_mhz, **conv_params)
            self.pool = sim.PoolCore(driver=driver, lanes=lanes, trace=pool_trace,
                                     trace_clock_mhz=trace_clock_mhz, **pool_params)
        except BaseException:
            self.close(keep=False)
            raise
        for core, final in zip((self.conv, self.pool), self.traces, strict=False):  # no trace: none
            if hasattr(core._be, "trace"):  # the python driver's warnings name the file the user opens
                core._be.trace = final
        self.weights = [layer.w for layer in qmodel.layers]
        if corrupt_rtl_layer is not None:
            if not 0 <= corrupt_rtl_layer < len(qmodel.layers) or qmodel.layers[corrupt_rtl_layer].w is None:
                raise ValueError(f"corrupt_rtl_layer must index a conv/linear layer, got {corrupt_rtl_layer}")
            self.weights[corrupt_rtl_layer] = _corrupted(self.weights[corrupt_rtl_layer])

    def close(self, keep: bool = True) -> None:
        """Stop the simulators; the VCDs of `trace` are published when `keep` (the run completed) and
        removed when not (an error or an interrupt: a partial waveform is not left behind)."""
        from ._atomic import publish_temp

        for core in (self.conv, self.pool):
            if core is not None:
                core.close()
        tmps, self._trace_tmps = self._trace_tmps, []
        for tmp, final in zip(tmps, self.traces, strict=True):
            if keep:
                publish_temp(tmp, final)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def run_layer(self, i: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(int8 output, cycles per image) of int8 layer i on the RTL, tiled to the cores' buffers
        (cnnx.compile.tiling): the cycles are summed over the layer's core runs."""
        from .compile import tiling

        layer, n = self.qmodel.layers[i], x.shape[0]
        if layer.kind == "conv":
            return tiling.run_conv(self.conv, x, self.weights[i], layer.b, layer.rq, layer.stride,
                                   layer.padding)
        if layer.kind == "linear":
            return tiling.run_linear(self.conv, x, self.weights[i], layer.b, layer.rq)
        if layer.kind in ("maxpool", "avgpool"):
            mode = "max" if layer.kind == "maxpool" else "avg"
            return tiling.run_pool(self.pool, x, layer.kernel, stride=layer.stride, mode=mode)
        if layer.kind == "flatten":
            return np.ascontiguousarray(x.reshape(n, -1)), np.zeros(n, np.int64)
        raise ValueError(f"the RTL cannot run layer kind {layer.kind!r}")


def trace_paths(path) -> list[str]:
    """The VCD files of `--trace PATH`: PATH itself for the conv core, PATH's stem + '.pool.vcd' beside it for
    the pool core (two Verilated models, two files)."""
    from pathlib import Path

    p = Path(path)
    return [str(p), str(p.with_name(p.stem + ".pool.vcd"))]


def open_trace_temps(paths: list[str]) -> list[str]:
    """One temporary file beside each VCD of `paths` (cnnx._atomic.temp_beside), created before any
    simulation, so that a path the VCD cannot be written to is refused first (ValueError, one line)."""
    from ._atomic import temp_beside

    tmps: list[str] = []
    try:
        for path in paths:
            if os.path.isdir(path):
                raise ValueError(f"--trace {path} is a directory; give a file name such as {path}/run.vcd")
            try:
                tmps.append(temp_beside(path))
            except OSError as e:
                raise ValueError(f"--trace {path} cannot be written ({e.strerror or type(e).__name__})") \
                    from None
    except BaseException:
        for tmp in tmps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    return tmps


def check_trace(path, clock_mhz: float | None = None, clock_flag: str = "--trace-clock-mhz") -> None:
    """Refuse (ValueError, one line) a --trace path the VCDs cannot be written to, or a VCD clock
    (`clock_mhz`, given by `clock_flag`) the drivers' 1 ps time base cannot carry, before any work: the
    temporary files are made and removed again."""
    if not str(path).strip() or str(path).endswith("/"):  # 'dir/' would write a FILE named dir
        raise ValueError(f"--trace needs a file name, e.g. --trace {str(path).strip() or ''}run.vcd")
    if clock_mhz is not None:
        try:
            import_sim().drivers.trace_period_ps(clock_mhz)
        except ValueError:
            raise ValueError(f"{clock_flag} {clock_mhz:g}: the VCD's clock must be in [0.001, 500000] MHz "
                             "(one period is a whole number of ps)") from None
    for tmp in open_trace_temps(trace_paths(path)):
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def sim_build_seconds() -> float:
    """Seconds this process has spent compiling Verilator models (cnnx.sim.builder.BUILD_SECONDS)."""
    try:
        import cnnx.sim.builder as builder
    except ImportError:
        return 0.0
    return builder.BUILD_SECONDS


def _compare_chunk(qmodel, x_int8, rows, cols, driver, corrupt_rtl_layer, batch, progress, use_rtl=True,
                   runner=None, buffers=None):
    """int8-cython (all layers) and RTL (chained on itself) over one chunk of quantised images."""
    if use_rtl and runner is None:
        runner = RtlRunner(qmodel, rows, cols, driver, corrupt_rtl_layer, buffers)
    runner = runner if use_rtl else None
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


def _chunk_worker(qmodel, x_int8, rows, cols, driver, corrupt_rtl_layer, batch, use_rtl, buffers=None, *,
                  progress):
    """A spawned worker (cnnx._workers.run_workers): its own set of cores, one chunk of images."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return _compare_chunk(qmodel, x_int8, rows, cols, driver, corrupt_rtl_layer, batch, progress, use_rtl,
                          buffers=buffers)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), the cap on co-simulation workers."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_worker_timeout(batch: int) -> float:
    """Seconds a worker may go without reporting a batch: start-up (imports, loading the build) plus a
    per-image allowance ~20x the measured fast-driver rate (LeNet-5, 8x8: ~22 ms per image per worker)."""
    return 60.0 + 0.5 * batch


def check_rtl_request(qmodel: ptq.QuantizedModel, rows: int, cols: int,
                      corrupt_rtl_layer: int | None) -> None:
    """The usage checks of a co-simulation, made in the parent before any worker starts (ValueError)."""
    for name, v in (("rows", rows), ("cols", cols)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 1 <= v <= 256:
            raise ValueError(f"the systolic array's {name} must be in 1..256, got {v!r}")
    if corrupt_rtl_layer is not None:
        n = len(qmodel.layers)
        ok = isinstance(corrupt_rtl_layer, int | np.integer) and 0 <= corrupt_rtl_layer < n
        if not ok or qmodel.layers[corrupt_rtl_layer].w is None:
            ks = [i for i, layer in enumerate(qmodel.layers) if layer.w is not None]
            raise ValueError(f"--corrupt-rtl-layer must index a conv/linear layer (one of {ks}), got "
                             f"{corrupt_rtl_layer}")


def check_finite_model(model, what: str = "the checkpoint") -> None:
    """Refuse (ValueError) a model with a NaN or infinite parameter: nothing computed from it means much."""
    for name, value in model.state_dict().items():
        a = np.asarray(value)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            raise ValueError(f"{what} has {bad} non-finite values (NaN/inf) in parameter {name}; refusing it")


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
    rtl_cycles_per_image: int | None  # measured on the simulator (the most any image took: they all take
    # the same, the cores' cycles do not depend on the data)
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
    float_logits_max_abs_diff: float | None  # None without a golden subset
    mismatches: list = field(default_factory=list)
    wall_time_s: float = 0.0
    rtl_time_s: float = 0.0
    rtl: bool = True
    nonfinite: list = field(default_factory=list)  # "float-cython logits: 3 of 12 images" ...
    build_time_s: float = 0.0  # compiling Verilator models (first use of a configuration): not in images/s
    traces: list = field(default_factory=list)  # VCD files written (--trace)
    trace_clock_mhz: float | None = None  # the clock of the VCDs' time axis

    @property
    def accuracy_images(self) -> dict:
        """path -> the number of images its accuracy is over (all N, or the golden subset)."""
        return {k: (self.n_golden if k in GOLDEN_PATHS else self.n_images) for k in self.accuracy}

    @property
    def images_per_s(self) -> float | None:
        """Throughput of the checking phase: builds of Verilator models are excluded (build_time_s)."""
        t = self.wall_time_s - self.build_time_s
        return self.n_images / t if t > 0 else None

    @property
    def int8_mismatch(self) -> bool:
        """True when any int8 tensor differs: CPU vs RTL (all N) or int8 Cython vs NumPy (golden subset)."""
        for r in self.layers:
            if r.rtl_identical is not None and r.rtl_identical != self.n_images:
                return True
            if r.int8_cy_vs_np_identical is not None and r.int8_cy_vs_np_identical != self.n_golden:
                return True
        return False

    @property
    def failed(self) -> bool:
        """The check's verdict: an int8 mismatch, or a float path that gave NaN/inf."""
        return self.int8_mismatch or bool(self.nonfinite)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["array"] = f"{self.array[0]}x{self.array[1]}"  # "RxC", as every cnnx JSON writes an array
        d["accuracy_images"] = self.accuracy_images
        d["int8_mismatch"] = self.int8_mismatch
        d["failed"] = self.failed
        d["images_per_s"] = self.images_per_s
        return d

    def table(self) -> str:
        def fmt(v, spec):  # a missing figure is a right-aligned "-" of the column's width
            return format(v, spec) if v is not None else "-".rjust(int(spec.split(".")[0].rstrip("dfe") or 1))

        from ._cliutil import plural

        lines = [
            f"cosim: {plural(self.n_images, 'image')}, RTL {self.array[0]}x{self.array[1]} ({self.driver} "
            f"driver, {plural(self.workers, 'worker')}); NumPy golden paths on the first "
            f"{plural(self.n_golden, 'image')} only",
            "columns: float max diff = max |float-cython - float-numpy| (golden images); int8 cython=numpy, "
            "cython=rtl = images whose int8 outputs are identical on both paths; RTL cycles (measured) and "
            "model cycles (cnnx.cycles) per image",
            f"{'#':>2} {'layer':<14} {'out shape':<14} {'float max diff':>15} {'int8 cython=numpy':>18} "
            f"{'int8 cython=rtl':>16} {'RTL cycles':>11} {'model cycles':>12}",
        ]
        for r in self.layers:
            shape = "x".join(map(str, r.out_shape))
            cynp = "-" if r.int8_cy_vs_np_identical is None else f"{r.int8_cy_vs_np_identical}/"
            cynp += "" if r.int8_cy_vs_np_identical is None else str(self.n_golden)
            cyrtl = "-" if r.rtl_identical is None else f"{r.rtl_identical}/{self.n_images}"
            lines.append(f"{r.index:>2} {r.name:<14} {shape:<14} {fmt(r.float_max_abs_diff, '15.2e')} "
                         f"{cynp:>18} {cyrtl:>16} {fmt(r.rtl_cycles_per_image, '11d')} "
                         f"{fmt(r.model_cycles_per_image, '12d')}")
        if self.float_logits_max_abs_diff is not None:
            lines.append(f"float logits: max |cython - golden| = {self.float_logits_max_abs_diff:.2e}")
        n_of = self.accuracy_images
        lines.append("accuracy: " + ", ".join(f"{k} {v:.4f} ({plural(n_of[k], 'image')})"
                                              for k, v in self.accuracy.items()))
        lines.append("argmax agreement: " + ", ".join(
            f"{k} {v:.4f} ({plural(min(n_of[p] for p in k.split(' vs ')), 'image')})"
            for k, v in self.agreement.items()))
        for img, layer, nd in self.mismatches:
            lines.append(f"MISMATCH: image {img}, layer {layer}: {nd} int8 values differ CPU vs RTL")
        total = sum(r.rtl_cycles_per_image or 0 for r in self.layers)
        ips = self.images_per_s
        built = f", of which {self.build_time_s:.1f} s building Verilator models" if self.build_time_s else ""
        lines.append(f"RTL cycles per image (all layers): {total}; wall time {self.wall_time_s:.1f} s"
                     f"{built}; {'-' if ips is None else format(ips, '.1f')} images/s (builds excluded), "
                     f"RTL part {self.rtl_time_s:.1f} s")
        for path in self.traces:
            lines.append(f"waveforms: {path} (1 ps units, clock {self.trace_clock_mhz:g} MHz; open with "
                         f"gtkwave {path})")
        for what in self.nonfinite:
            lines.append(f"NON-FINITE: {what}")
        if self.nonfinite:
            verdict = "FAILED: a float path gives NaN/inf (" + "; ".join(self.nonfinite) + ")"
            if self.int8_mismatch:
                verdict += ", and INT8 MISMATCH"
        else:
            verdict = "INT8 MISMATCH" if self.int8_mismatch else "all int8 tensors bit-identical"
        lines.append("RESULT: " + verdict)
        return "\n".join(lines)


# --trace dumps every clock edge: a LeNet-5 image writes ~139 MB of conv-core VCD (measured, 8x8 array), so
# a run of many traced images would fill a disk for a waveform nobody opens; the CLI refuses more than this.
TRACE_MAX_IMAGES = 8
GOLDEN_PATHS = ("float-numpy", "int8-numpy")  # the paths that run on the golden subset only


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


def check_fits_rtl(qmodel: ptq.QuantizedModel, rows: int = 8, cols: int = 8,
                   buffers: dict | None = None) -> None:
    """Refuse, before any simulator starts, a model with a layer the tiler (cnnx.compile.tiling) cannot split
    to the cores' buffers, naming the layer (the runner would refuse it too, but from inside a worker)."""
    from .compile import tiling

    if buffers is not None:
        tiling.check_buffers(buffers, rows, cols)
    h = np.zeros((1, *qmodel.input_shape), np.int8)
    for i, layer in enumerate(qmodel.layers):
        out, _ = ptq.run_layer(layer, h, "cython")
        try:
            cycles.layer_cycles(layer, tuple(h.shape[1:]), rows, cols, buffers)
        except ValueError as e:
            raise ValueError(f"int8 layer {i} ({layer.name}, {tuple(h.shape[1:])} -> {tuple(out.shape[1:])}) "
                             f"cannot run on the RTL cores: {e}") from None
        h = out


def _split(n: int, k: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, n, k + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def run_cosim(model, images: np.ndarray, labels: np.ndarray, *, qmodel: ptq.QuantizedModel | None = None,
              calib_images=None, array: tuple[int, int] = (8, 8), workers: int | None = None,
              driver: str = "fast", golden_images: int | None = None, batch: int = 250,
              corrupt_rtl_layer: int | None = None, rtl: bool = True, progress: bool = True,
              preprocess=None, worker_timeout: float | None = None, buffers=None, trace=None,
              trace_clock_mhz: float | None = None) -> CosimResult:
    """Run `images` (uint8 (N, H, W) or (N, C, H, W)) through every path and compare; see the module
    docstring. The pixels become floats by the quantised model's stored preprocessing (`preprocess`, a
    `cnnx.io.preprocess.Preprocess`, when the model is quantised here; MNIST's when none is given). Usage
    errors raise ValueError/TypeError before any worker starts; a worker that fails, dies or stalls for
    `worker_timeout` s raises CheckFailed. `buffers` (cnnx.compile.tiling.parse_buffers' text or dict) sets
    the cores' buffer sizes; layers larger than them are tiled. `trace` (a path) dumps the RTL's waveforms
    (`trace_paths`: one VCD per core, one clock period = 1e6 / `trace_clock_mhz` ps) and runs one worker."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise TypeError(f"images must be uint8 (N, H, W) or (N, C, H, W), got {images.dtype} "
                        f"{images.shape}")
    n = images.shape[0]
    if n == 0 or labels.shape != (n,):
        raise ValueError(f"need N > 0 images and N labels, got {n} images and labels of shape {labels.shape}")
    rows, cols = array
    if driver not in ("fast", "python"):
        raise ValueError(f"driver must be 'fast' or 'python', got {driver!r}")
    n_golden = min(n, 200) if golden_images is None else max(0, min(int(golden_images), n))
    workers = 1 if trace else max(1, min(int(workers or usable_cpus()), n, usable_cpus()))
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    timeout = default_worker_timeout(batch) if worker_timeout is None else float(worker_timeout)
    if not timeout > 0:
        raise ValueError(f"worker_timeout must be > 0 seconds, got {worker_timeout!r}")
    if qmodel is None:
        if calib_images is None:
            raise ValueError("pass a quantised model (qmodel=) or calibration images (calib_images=)")
        qmodel = ptq.quantize_model(model, calib_images, preprocess=preprocess)
    check_rtl_request(qmodel, rows, cols, corrupt_rtl_layer)
    if buffers is not None:
        from .compile import tiling

        buffers = tiling.parse_buffers(buffers)
    x_int8 = qmodel.quantize_input(images)
    if rtl:
        check_fits_rtl(qmodel, rows, cols, buffers)
    # The parent builds (or checks the cached build of) both cores and loads them once, so a usage error or
    # a broken toolchain is reported here and no worker ever compiles or reads an unchecked build.
    built0 = sim_build_seconds()
    runner = (RtlRunner(qmodel, rows, cols, driver, corrupt_rtl_layer, buffers, trace=trace,
                        trace_clock_mhz=trace_clock_mhz) if rtl else None)
    build_time = sim_build_seconds() - built0

    # 1. the int8-cython and RTL paths over all N: in spawned workers (or inline for one worker)
    chunks = _split(n, workers)
    results: dict[int, dict] = {}
    bar = tqdm(total=n, unit="img", desc="int8 cpu vs rtl", disable=not progress, file=sys.stderr)
    t_rtl = time.perf_counter()

    # 2. meanwhile, in a thread of this process (so the progress bar keeps moving): the float paths and the
    # golden subset. The heavy parts are Cython/NumPy calls that release the GIL.
    cpu: dict = {}

    def cpu_paths():
        try:
            x_float = qmodel_float_input(images, qmodel)
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

    completed = False
    try:
        if workers == 1:
            results[0] = _compare_chunk(qmodel, x_int8, rows, cols, driver, corrupt_rtl_layer, batch,
                                        bar.update, rtl, runner=runner, buffers=buffers)
        else:
            from ._workers import run_workers

            if runner is not None:
                # one image through every layer here first: what the RTL refuses for this model and array
                # (a layer too big for a core's buffers ...) is refused here, not in every worker
                h = x_int8[:1]
                for i in range(len(qmodel.layers)):
                    h, _ = runner.run_layer(i, h)
                runner.close()
            jobs = [(qmodel, x_int8[a:b], rows, cols, driver, corrupt_rtl_layer, batch, rtl, buffers)
                    for a, b in chunks]
            out = run_workers(_chunk_worker, jobs, stall_timeout=timeout, on_progress=bar.update,
                              what="co-simulation worker")
            results = dict(enumerate(out))
        completed = True
    finally:
        bar.close()
        if runner is not None and workers == 1:
            runner.close(keep=completed)  # finishes the VCD files of --trace (removed if the run failed)
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
        h, _ = ptq.run_layer(layer, h, "cython", want_acc=False)
        shapes.append(tuple(h.shape[1:]))
    reports = []
    for i, layer in enumerate(qmodel.layers):
        fdiff = None
        if n_golden and layer.float_index >= 0:
            k = layer.float_index
            with np.errstate(invalid="ignore"):  # inf - inf: NaN, reported as non-finite below
                fdiff = float(np.max(np.abs(fl_cy[k].astype(np.float64) - fl_np[k])))
        cynp = None
        if n_golden:
            same = (np_trace[i + 1] == cy_trace_g[i + 1]).reshape(n_golden, -1).all(axis=1)
            cynp = int(same.sum())
        reports.append(LayerReport(
            index=i, kind=layer.kind, name=layer.name, out_shape=shapes[i + 1],
            float_max_abs_diff=fdiff, int8_cy_vs_np_identical=cynp,
            rtl_identical=int(identical[:, i].sum()) if rtl else None,
            rtl_cycles_per_image=int(cyc[:, i].max()) if rtl and layer.kind != "flatten" else None,
            model_cycles_per_image=cycles.layer_cycles(layer, shapes[i], rows, cols, buffers),
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
    with np.errstate(invalid="ignore"):
        flog = float(np.max(np.abs(fl_cy[-1].astype(np.float64) - fl_np[-1]))) if n_golden else None
    nonfinite = []
    float_logits = {"float-cython logits": float_cy_logits,
                    "float-numpy logits": fl_np[-1] if n_golden else None}
    for what, logits in float_logits.items():
        if logits is not None:
            finite = np.isfinite(np.asarray(logits, np.float64)).reshape(len(logits), -1)
            bad = int((~finite.all(axis=1)).sum())
            if bad:
                nonfinite.append(f"{what}: {bad} of {len(logits)} images")
    return CosimResult(
        n_images=n, n_golden=n_golden, array=(rows, cols), driver=driver, workers=workers, layers=reports,
        accuracy=accuracy, agreement=agreement, float_logits_max_abs_diff=flog, mismatches=mismatches[:10],
        wall_time_s=time.perf_counter() - t0, rtl_time_s=rtl_time, rtl=rtl, nonfinite=nonfinite,
        build_time_s=build_time, traces=list(runner.traces) if runner is not None else [],
        trace_clock_mhz=(trace_clock_mhz or import_sim().drivers.TRACE_CLOCK_MHZ) if trace and rtl else None,
    )


def qmodel_float_input(images: np.ndarray, qmodel: ptq.QuantizedModel | None = None) -> np.ndarray:
    """uint8 images -> the float model's float32 input (N, C, H, W), by `qmodel`'s stored preprocessing
    (MNIST's without one)."""
    if qmodel is not None:
        return qmodel.to_float(images)
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
    if not (1 <= rows <= 256 and 1 <= cols <= 256):
        raise ValueError(f"--array sizes must be in 1..256, got {text!r}")
    return rows, cols


def calibration_images(n: int = 500, meta: dict | None = None, data=None) -> np.ndarray:
    """The first `n` TRAINING images of a run's dataset (`meta`: its checkpoint's metadata; `data`: a
    dataset file overriding it; MNIST when neither names one): calibration never sees the test set."""
    from .io import dataset

    return dataset.calibration_images(meta, data, n)


def load_run(run_dir, data=None):
    """(float model, its quantised form, test images, test labels) of a run directory: the checkpoint's
    stored preprocessing and dataset (or `data`, a dataset .npz) are used; MNIST's for older runs."""
    from .checkpoint import load
    from .io import dataset, preprocess

    model, info = load(run_dir)
    check_finite_model(model, str(info.get("path", run_dir)))
    prep = preprocess.of_meta(info["meta"])
    images, labels = dataset.eval_split(info["meta"], data)
    if images.ndim == 3:
        images = images[:, None]
    want = tuple(info["meta"].get("input_shape") or images.shape[1:])
    if tuple(images.shape[1:]) != want:
        raise ValueError(f"the run's model takes {want} images, the dataset's are {tuple(images.shape[1:])}"
                         + ("" if data else " (MNIST); pass --data FILE.npz"))
    calib = calibration_images(500, info["meta"], data)
    qmodel = ptq.quantize_model(model, calib, preprocess=prep)
    return model, qmodel, images, labels


def cosim_run_dir(run_dir, n_images: int = 1000, data=None, **kwargs) -> CosimResult:
    """Load the checkpoint in `run_dir`, quantise it on 500 training images of its dataset, co-simulate
    `n_images` test images."""
    model, qmodel, images, labels = load_run(run_dir, data)
    if not 1 <= n_images <= len(images):
        raise ValueError(f"--images must be in [1, {len(images)}], got {n_images}")
    return run_cosim(model, images[:n_images], labels[:n_images], qmodel=qmodel, **kwargs)


def trace_clock(array, given: float | None = None) -> tuple[float, str]:
    """(MHz, where it comes from) of a VCD's clock: `given`, else the Fmax `cnnx synth` reported for this
    array (the slower core), else the drivers' default (100 MHz), labelled as assumed."""
    if given is not None:
        return float(given), "given"
    try:
        from .profile import resolve_clock

        fmax = resolve_clock(tuple(array))["clock_mhz"]
    except Exception:  # no FPGA tools, or a result that did not place: no Fmax to take
        fmax = None
    if fmax:
        return float(fmax), "the Fmax `cnnx synth` reports for this array"
    mhz = import_sim().drivers.TRACE_CLOCK_MHZ
    return mhz, f"assumed: no synthesis result for {array[0]}x{array[1]}; give --trace-clock-mhz"


def cli_cosim(args) -> int:
    """`cnnx cosim RUN_DIR --images N --array 8x8 --workers K --driver fast|python --json`: 0 when every int8
    tensor matched and the float paths are finite, 1 when not (or a worker failed), 2 on bad input. Every
    usage check runs here, in the parent, before any worker starts."""
    from ._cliutil import CliError, print_clear, progress_on

    as_json = getattr(args, "json", False)
    trace = getattr(args, "trace", None)
    try:
        array = parse_array(args.array)
        cpus = usable_cpus()
        if args.workers is not None and args.workers > cpus and not trace:
            print_clear(f"cnnx cosim: --workers {args.workers} is more than the {cpus} CPUs this process may "
                        f"use; using {cpus}")
        tclock = None
        if trace is not None:
            if args.images > TRACE_MAX_IMAGES:
                raise CliError(f"--trace dumps every clock edge (~140 MB per LeNet-5 image): at most "
                               f"{TRACE_MAX_IMAGES} images with --trace, got --images {args.images} "
                               "(try --images 1)")
            check_trace(trace, getattr(args, "trace_clock_mhz", None))
        elif getattr(args, "trace_clock_mhz", None) is not None:
            raise CliError("--trace-clock-mhz sets the clock of --trace's VCD; give --trace FILE.vcd too")
        if trace:
            tclock, basis = trace_clock(array, getattr(args, "trace_clock_mhz", None))
            if not getattr(args, "quiet", False):
                print_clear(f"cnnx cosim: tracing to {', '.join(trace_paths(trace))} (one worker), VCD clock "
                            f"{tclock:g} MHz ({basis})")
        res = cosim_run_dir(
            args.run_dir,
            n_images=args.images,
            array=array,
            workers=args.workers,
            driver=args.driver,
            golden_images=args.golden_images,
            corrupt_rtl_layer=args.corrupt_rtl_layer,
            progress=progress_on(args),
            worker_timeout=getattr(args, "worker_timeout", None),
            data=getattr(args, "data", None),
            buffers=getattr(args, "buffers", None),
            trace=trace,
            trace_clock_mhz=tclock,
        )
    except Exception as e:
        return cli_error("cosim", e, as_json)
    if as_json:
        print(dumps(res.to_dict()))
    else:
        print(res.table())
    return 1 if res.failed else 0
