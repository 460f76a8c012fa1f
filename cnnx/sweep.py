"""`cnnx sweep`: design-space exploration of the accelerator, one row per configuration, on Dask.

    cnnx sweep RUN_DIR --array 2x2,4x4,4x8 [--buffers SPEC ...] [--lanes 2,4,8] [--images 200] [--synth]
               [--jobs N | --scheduler tcp://HOST:PORT] [--out DIR] [--json] [--no-progress]

A configuration is (array ROWSxCOLS, core buffer sizes, pool-core lanes). Each one is ONE Dask task
(`run_config`), which on the worker that runs it
  * builds (or finds in the Verilator cache, `cnnx.sim.builder`, `$CNNX_RTL_CACHE`: point it at a shared
    folder on a cluster) the conv and pool cores of that configuration: `build_s`;
  * co-simulates the images through the int8 model on them, chained on its own outputs as `cnnx cosim` does
    (`cnnx.harness.RtlRunner`, tiled by `cnnx.compile.tiling`), against the int8 Cython path: `sim_s`,
    bit-exact images, cycles per layer measured by the cores' counters and checked against the cycle model
    (`cnnx.cycles.layer_cycles`);
  * with --synth, synthesises and places-and-routes both cores (`cnnx.fpga.synth`, cached): LUT4, FF,
    MULT18X18D, DP16KD block RAM (EBR), the Fmax, and the latency of one image at that Fmax: `synth_s`.
Compute cycles are the cores' busy cycles (cnnx.cycles: loading the buffers is not counted); the conv and
pool cores run one after the other, so an image's compute cycles are the sum over its layers. Utilisation is
the conv core's: MACs / (conv+dense cycles * ROWS * COLS). End-to-end (data-movement) cycles and the stream
width are issue 9's and not modelled yet: the column says "n/a (issue 9)".
Latency basis (--synth): compute cycles / min(conv Fmax, pool Fmax) (both cores on one clock), in µs.

Scheduling is Dask's: a `LocalCluster` of --jobs worker processes (one thread each) by default, or any
running cluster with --scheduler (dask-jobqueue on SLURM, dask-kubernetes, or a hand-started `dask scheduler`
+ `dask worker`). The model and the images go to the workers from here, so the workers need cnnx installed
but not the run directory. A worker that dies (killed, crashed in C) has its configuration retried once on
another worker (the scheduler's `distributed.scheduler.allowed-failures`, set to 1 for the LocalCluster;
set it on a scheduler you start yourself); a second death, or an error, is reported as a failed row.

Results: OUT/sweep.csv and OUT/sweep.json, written atomically after every configuration, and PNGs
(layers.png: cycles per layer by configuration; with --synth pareto.png: latency vs LUTs and vs DSPs with
the Pareto front). Every row carries a key, a hash of the RTL sources, the configuration, the quantised
model, the images and the tool versions: a rerun skips the configurations whose row with that key is
already there and ok (a rerun of a finished sweep starts no cluster at all).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import cycles as cycle_model
from ._cliutil import CliError, cli_error, dumps, one_line, output_dir

RESULT_VERSION = 1
SWEEP_FILES = ("sweep.csv", "sweep.json", "layers.png", "pareto.png")
EVENT_TOPIC = "cnnx-sweep"
E2E_NA = "n/a (issue 9)"
# the row's fields that depend on the machine or the moment, not on the configuration
TIMING_FIELDS = ("build_s", "sim_s", "synth_s", "worker", "built", "finished_at")
CSV_FIELDS = ("config", "array", "buffers", "lanes", "status", "bit_exact", "images", "cycles_compute",
              "cycles_model", "cycles_end_to_end", "utilisation", "cycles_per_layer", "lut4", "ff", "mult18",
              "ebr", "fmax_mhz", "latency_us", "build_s", "sim_s", "synth_s", "built", "worker", "error",
              "key")


# ---------------------------------------------------------------------------------------------------------
# configurations
# ---------------------------------------------------------------------------------------------------------
def parse_arrays(text: str) -> list[tuple[int, int]]:
    from .harness import parse_array

    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ValueError(f"--array must list ROWSxCOLS shapes like 2x2,4x4, got {text!r}")
    return list(dict.fromkeys(parse_array(t) for t in items))


def parse_lanes(text: str) -> list[int]:
    out = []
    for t in str(text).split(","):
        t = t.strip()
        if not t.isdigit() or not 1 <= int(t) <= 64:
            raise ValueError(f"--lanes must list pool lanes in 1..64 like 2,4,8, got {text!r}")
        out.append(int(t))
    return list(dict.fromkeys(out))


def parse_buffer_list(texts) -> list[dict | None]:
    """--buffers values (repeatable; ';' also separates) -> buffer dicts, None for 'default'."""
    from .compile import tiling

    specs = []
    for text in texts or ["default"]:
        specs += [t.strip() for t in str(text).split(";") if t.strip()]
    out: list[dict | None] = []
    for s in specs or ["default"]:
        b = None if s.lower() == "default" else tiling.parse_buffers(s)
        if b not in out:
            out.append(b)
    return out


def buffers_text(buffers: dict | None) -> str:
    if buffers is None:
        return "default"
    from .compile.tiling import BUFFER_KEYS

    names = {v: k for k, v in BUFFER_KEYS.items()}
    return ",".join(f"{names[k]}={v}" for k, v in buffers.items())


def config_label(rows: int, cols: int, buffers: dict | None, lanes: int) -> str:
    return f"{rows}x{cols} L{lanes} buf={buffers_text(buffers)}"


def model_layer_cycles(qmodel, rows, cols, buffers, lanes) -> list[int | None]:
    """The cycle model's cycles per int8 layer of one image (ValueError naming a layer that cannot run)."""
    from . import ptq

    h = np.zeros((1, *qmodel.input_shape), np.int8)
    out = []
    for i, layer in enumerate(qmodel.layers):
        y, _ = ptq.run_layer(layer, h, "cython", want_acc=False)
        try:
            out.append(cycle_model.layer_cycles(layer, tuple(h.shape[1:]), rows, cols, buffers, lanes))
        except ValueError as e:
            raise ValueError(f"{rows}x{cols} lanes {lanes} buffers {buffers_text(buffers)}: int8 layer {i} "
                             f"({layer.name}) cannot run on the RTL cores: {e}") from None
        h = y
    return out


def layer_macs(qmodel) -> list[int]:
    """Useful MACs per int8 layer of one image (conv and dense; 0 for the rest)."""
    from . import ptq

    h = np.zeros((1, *qmodel.input_shape), np.int8)
    out = []
    for layer in qmodel.layers:
        if layer.kind == "conv":
            C, H, W = h.shape[1:]
            F, _, KH, KW = layer.w.shape
            out.append(cycle_model.conv_macs(C, H, W, F, KH, KW, layer.stride, layer.padding))
        elif layer.kind == "linear":
            out.append(cycle_model.linear_macs(*layer.w.shape[::-1]))
        else:
            out.append(0)
        h, _ = ptq.run_layer(layer, h, "cython", want_acc=False)
    return out


# ---------------------------------------------------------------------------------------------------------
# the result key
# ---------------------------------------------------------------------------------------------------------
def _hash_value(h, v) -> None:
    if isinstance(v, np.ndarray):
        h.update(f"{v.dtype.str}{v.shape}".encode())
        h.update(np.ascontiguousarray(v).tobytes())
    elif hasattr(v, "__dataclass_fields__"):
        h.update(type(v).__name__.encode())
        for name in v.__dataclass_fields__:
            h.update(name.encode())
            _hash_value(h, getattr(v, name))
    elif isinstance(v, list | tuple):
        for x in v:
            _hash_value(h, x)
    elif isinstance(v, dict):
        for k in sorted(v, key=str):
            h.update(str(k).encode())
            _hash_value(h, v[k])
    else:
        h.update(repr(v).encode())
    h.update(b"\0")


def model_digest(qmodel) -> str:
    h = hashlib.sha256()
    _hash_value(h, qmodel)
    return h.hexdigest()


def sources_digest(synth: bool) -> str:
    """The RTL sources, the batch driver and the build/flow recipes (what the rows are computed from)."""
    from cnnx.sim import builder

    h = hashlib.sha256()
    for path in [*builder.verilog_sources(), builder.BATCH_SOURCE]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(builder.BUILD_RECIPE.encode())
    if synth:
        from .fpga import flow

        h.update(flow.FLOW_RECIPE.encode())
    return h.hexdigest()


def tool_versions(synth: bool) -> dict:
    from cnnx.sim import builder

    from . import __version__

    v = {"cnnx": __version__, "verilator": builder.verilator_version()}
    if synth:
        from .fpga import flow

        v.update(flow.tool_versions())
    return v


def config_key(common: dict, rows: int, cols: int, buffers: dict | None, lanes: int) -> str:
    h = hashlib.sha256()
    _hash_value(h, {**common, "rows": rows, "cols": cols, "buffers": buffers, "lanes": lanes})
    return h.hexdigest()[:24]


# ---------------------------------------------------------------------------------------------------------
# one configuration (runs on a Dask worker, or in this process)
# ---------------------------------------------------------------------------------------------------------
def _dask_event(config: str, msg: str) -> None:
    """Tell the client (its progress bar) what this worker is doing; nothing outside a Dask worker."""
    with contextlib.suppress(Exception):
        from distributed import get_worker

        get_worker().log_event(EVENT_TOPIC, {"config": config, "msg": msg})


def _needs_build(top: str, params: dict) -> bool:
    from cnnx.sim import builder

    resolved = builder.resolve_params(top, params)
    b = builder.Build(top, resolved, builder.cache_root() / builder.cache_key(top, resolved))
    return builder.check_build(b) is not None


def _kill_hook(spec: dict) -> None:
    """Test hook: SIGKILL this worker while it runs the configuration ('once': the first attempt only, marked
    by a file; 'always')."""
    how = spec.get("test_kill")
    if not how:
        return
    marker = Path(spec["test_kill_dir"]) / f".killed-{spec['key']}"
    if how == "always" or not marker.exists():
        marker.touch()
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def run_config(spec: dict, qmodel, x_int8: np.ndarray,
               on_event: Callable[[str, str], None] | None = None) -> dict:
    """One configuration's row: build (cached), co-simulate `x_int8` (int8 (N, C, H, W)), with
    spec["synth"] synthesise; see the module docstring. Errors propagate (the caller makes a failed row)."""
    from .harness import RtlRunner

    def emit(msg: str) -> None:
        (on_event or _dask_event)(spec["label"], msg)

    _kill_hook(spec)
    rows, cols, lanes, buffers = spec["rows"], spec["cols"], spec["lanes"], spec["buffers"]
    from .compile import tiling

    conv_params = {"ROWS": rows, "COLS": cols, **(buffers or {})}
    pool_params = {"LANES": lanes, **(tiling.pool_params(buffers) if buffers else {})}
    t0 = time.perf_counter()
    built = [top for top, p in (("cnnx_conv_core", conv_params), ("cnnx_pool_core", pool_params))
             if _needs_build(top, p)]
    if built:
        what = [f"{rows}x{cols}" if top == "cnnx_conv_core" else f"pool L{lanes}" for top in built]
        emit(f"building {' + '.join(what)} (first time)")
    runner = RtlRunner(qmodel, rows, cols, "fast", None, buffers, lanes=lanes)
    build_s = time.perf_counter() - t0
    try:
        emit(f"simulating {rows}x{cols} L{lanes}")
        t1 = time.perf_counter()
        n, n_layers = x_int8.shape[0], len(qmodel.layers)
        same_all = np.ones(n, bool)
        identical = np.zeros(n_layers, np.int64)
        measured = np.zeros((n, n_layers), np.int64)
        batch = int(spec.get("batch", 250))
        for a in range(0, n, batch):
            xb = x_int8[a : a + batch]
            trace, _ = qmodel.forward_trace(xb, "cython", n_threads=1)
            h = xb
            for i in range(n_layers):
                h, cyc = runner.run_layer(i, h)
                measured[a : a + len(xb), i] = cyc
                same = ~(h != trace[i + 1]).reshape(len(xb), -1).any(axis=1)
                same_all[a : a + len(xb)] &= same
                identical[i] += int(same_all[a : a + len(xb)].sum())
        sim_s = time.perf_counter() - t1
    finally:
        runner.close()
    model = spec["model_cycles"]
    layers = []
    for i, layer in enumerate(qmodel.layers):
        col = measured[:, i]
        layers.append({"name": layer.name, "kind": layer.kind,
                       "cycles": None if layer.kind == "flatten" else int(col[0]),
                       "cycles_model": model[i], "constant": bool((col == col[0]).all())})
    rtl_total = [int(x) for x in measured.sum(axis=1)]
    compute = rtl_total[0]
    model_total = sum(c for c in model if c is not None)
    conv_cycles = sum(L["cycles"] for L in layers if L["kind"] in ("conv", "linear"))
    macs = sum(spec["macs"])
    row = {
        "config": spec["label"], "array": f"{rows}x{cols}", "buffers": buffers_text(buffers), "lanes": lanes,
        "images": n, "bit_exact": int(same_all.sum()),
        "cycles_compute": compute, "cycles_model": model_total, "cycles_end_to_end": E2E_NA,
        "cycles_constant": all(x == compute for x in rtl_total),
        "utilisation": cycle_model.utilisation(macs, conv_cycles, rows, cols),
        "layers": layers, "layer_identical": [int(v) for v in identical],
        "build_s": round(build_s, 3), "sim_s": round(sim_s, 3), "built": ",".join(built) or "cached",
        "key": spec["key"],
    }
    row["cycles_per_layer"] = ";".join(f"{L['name']}:{L['cycles']}" for L in layers
                                       if L["cycles"] is not None)
    problems = []
    if row["bit_exact"] != n:
        problems.append(f"{n - row['bit_exact']} of {n} images differ from the int8 CPU path")
    if compute != model_total or not row["cycles_constant"]:
        problems.append(f"measured {compute} cycles per image, the cycle model says {model_total}")
    if spec.get("synth"):
        row.update(_synth_row(spec, compute, emit))
    row["status"] = "mismatch" if problems else "ok"
    row["error"] = "; ".join(problems)
    with contextlib.suppress(Exception):
        import socket

        row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return row


def _synth_row(spec: dict, compute_cycles: int, emit) -> dict:
    from .compile import tiling
    from .fpga import find_cached, synth

    s = spec["synth"]
    rows, cols, lanes, buffers = spec["rows"], spec["cols"], spec["lanes"], spec["buffers"]
    conv_p = dict(buffers or {})
    pool_p = {"LANES": lanes, **(tiling.pool_params(buffers) if buffers else {})}
    t0 = time.perf_counter()
    res = {}
    for core, params in (("conv", conv_p), ("pool", pool_p)):
        kw = {"device": s["device"], "freq_mhz": s["freq_mhz"], "seed": s["seed"], "params": params}
        if find_cached(core, rows, cols, **kw) is None:
            emit(f"synthesising {core} {rows}x{cols} L{lanes} (first time)")
        res[core] = synth(core, rows, cols, **kw, pnr=True)
    fmaxes = [r.fmax_mhz for r in res.values()]
    fmax = min(fmaxes) if all(f is not None for f in fmaxes) else None
    tot = {k: sum(r.resources[k] for r in res.values()) for k in ("lut4_total", "ff", "mult18", "ebr_total")}
    return {
        "lut4": tot["lut4_total"], "ff": tot["ff"], "mult18": tot["mult18"], "ebr": tot["ebr_total"],
        "fmax_mhz": round(fmax, 2) if fmax else None,
        "latency_us": round(compute_cycles / fmax, 3) if fmax else None,
        "synth_basis": (f"conv+pool cores, {res['conv'].part} speed {res['conv'].speed}, target "
                        f"{s['freq_mhz']:g} MHz, seed {s['seed']}; latency = compute cycles / min(conv "
                        "Fmax, pool Fmax)"),
        "fits": all(r.fits for r in res.values()),
        "synth_s": round(time.perf_counter() - t0, 3),
    }


def failed_row(spec: dict, error: str) -> dict:
    return {"config": spec["label"], "array": f"{spec['rows']}x{spec['cols']}",
            "buffers": buffers_text(spec["buffers"]), "lanes": spec["lanes"], "status": "failed",
            "error": one_line(error) or "failed", "key": spec["key"], "cycles_end_to_end": E2E_NA}


# ---------------------------------------------------------------------------------------------------------
# the output files
# ---------------------------------------------------------------------------------------------------------
def read_results(out: Path) -> dict[str, dict]:
    """The rows of an earlier sweep in OUT/sweep.json by key ({} if none); a file that is not one is refused
    (ValueError) rather than overwritten."""
    path = out / "sweep.json"
    if not path.exists():
        return {}
    if path.stat().st_size > 64 * 2**20:
        raise ValueError(f"{path} is larger than 64 MiB; not a cnnx sweep result")
    try:
        doc = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a cnnx sweep result ({one_line(str(e))}); remove it or choose "
                         "another --out") from None
    if not (isinstance(doc, dict) and doc.get("cnnx_sweep") == RESULT_VERSION
            and isinstance(doc.get("rows"), list)):
        raise ValueError(f"{path} is not a cnnx sweep result (version {RESULT_VERSION}); remove it or choose "
                         "another --out")
    return {r["key"]: r for r in doc["rows"] if isinstance(r, dict) and isinstance(r.get("key"), str)}


def write_results(out: Path, store: dict[str, dict], meta: dict) -> None:
    from ._atomic import atomic_write

    rows = list(store.values())
    with atomic_write(out / "sweep.json", "w") as f:
        f.write(dumps({"cnnx_sweep": RESULT_VERSION, **meta, "rows": rows}, indent=1))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})
    with atomic_write(out / "sweep.csv", "w") as f:
        f.write(buf.getvalue())


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both coordinates (lower is better in both)."""
    keep = []
    for i, (x, y) in enumerate(points):
        if not any(x2 <= x and y2 <= y and (x2 < x or y2 < y)
                   for j, (x2, y2) in enumerate(points) if j != i):
            keep.append(i)
    return keep


def write_charts(rows: list[dict], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._atomic import atomic_write

    ok = [r for r in rows if r.get("layers")]
    written = []
    if ok:
        names = [f"{i} {L['name']}" for i, L in enumerate(ok[0]["layers"]) if L["cycles"] is not None]
        colours = plt.get_cmap("tab20").colors
        fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(ok) * len(names) / 3 + 4), 4.5))
        width = 0.8 / len(ok)
        xs = np.arange(len(names))
        for k, r in enumerate(ok):
            cyc = [L["cycles"] for L in r["layers"] if L["cycles"] is not None]
            ax.bar(xs + k * width - 0.4 + width / 2, cyc, width, label=r["config"],
                   color=colours[k % len(colours)])
        ax.set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("compute cycles per image")
        ax.set_yscale("log")
        ax.set_title("cycles per layer by configuration (cnnx sweep)")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        with atomic_write(out / "layers.png") as f:
            fig.savefig(f, format="png", dpi=110)
        plt.close(fig)
        written.append(str(out / "layers.png"))
    syn = [r for r in ok if r.get("latency_us") is not None]
    if syn:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for ax, res, label in ((axes[0], "lut4", "LUT4 (conv + pool cores)"),
                               (axes[1], "mult18", "MULT18X18D DSPs (conv + pool cores)")):
            pts = [(float(r[res]), float(r["latency_us"])) for r in syn]
            front = sorted(pareto(pts), key=lambda i: pts[i])
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="0.6")
            ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "o-", color="C3",
                    label="Pareto front")
            for r, p in zip(syn, pts, strict=True):
                ax.annotate(r["config"].split(" buf=")[0], p, fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
            ax.set_xlabel(label)
            ax.set_ylabel("latency per image, µs (compute cycles / Fmax)")
            ax.legend(fontsize=8)
        fig.suptitle("cnnx sweep: latency vs resources (ECP5; data movement not counted)")
        fig.tight_layout()
        with atomic_write(out / "pareto.png") as f:
            fig.savefig(f, format="png", dpi=110)
        plt.close(fig)
        written.append(str(out / "pareto.png"))
    return written


def best_config(rows: list[dict]) -> dict | None:
    """With synthesis figures: the lowest latency x LUT4 product (area-delay) on the Pareto front; else the
    fewest compute cycles per image. Only ok rows count."""
    ok = [r for r in rows if r.get("status") == "ok"]
    syn = [r for r in ok if r.get("latency_us") is not None]
    if syn:
        r = min(syn, key=lambda r: r["latency_us"] * r["lut4"])
        return {"config": r["config"], "basis": "lowest latency_us x LUT4 (area-delay product)",
                "latency_us": r["latency_us"], "lut4": r["lut4"], "mult18": r["mult18"]}
    if ok:
        r = min(ok, key=lambda r: r["cycles_compute"])
        return {"config": r["config"], "basis": "fewest compute cycles per image",
                "cycles_compute": r["cycles_compute"]}
    return None


def format_table(rows: list[dict], synth: bool) -> str:
    def f(v, spec):  # a missing figure is a right-aligned "-" of the column's width
        width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 1)
        return "-".rjust(width) if v is None else format(v, spec)

    head = (f"{'configuration':<30} {'status':<8} {'exact':>9} {'cycles/img':>10} {'e2e':>13} {'util':>5} "
            f"{'build s':>7} {'sim s':>6}")
    if synth:
        head += f" {'LUT4':>6} {'FF':>6} {'MULT':>4} {'EBR':>4} {'Fmax':>6} {'lat µs':>7}"
    lines = [head]
    for r in rows:
        exact = f"{r['bit_exact']}/{r['images']}" if r.get("images") else "-"
        line = (f"{r['config']:<30} {r['status']:<8} {exact:>9} {f(r.get('cycles_compute'), '10d')} "
                f"{E2E_NA:>13} {f(r.get('utilisation'), '5.2f')} {f(r.get('build_s'), '7.1f')} "
                f"{f(r.get('sim_s'), '6.1f')}")
        if synth:
            line += (f" {f(r.get('lut4'), '6d')} {f(r.get('ff'), '6d')} {f(r.get('mult18'), '4d')} "
                     f"{f(r.get('ebr'), '4d')} {f(r.get('fmax_mhz'), '6.1f')} "
                     f"{f(r.get('latency_us'), '7.1f')}")
        if r.get("error"):
            line += f"  [{r['error']}]"
        lines.append(line)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------------------
def _bar(total: int, initial: int, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="config", desc="sweep", disable=not progress,
                file=sys.stderr, dynamic_ncols=True)


@contextlib.contextmanager
def dask_client(jobs: int, scheduler: str | None):
    """A distributed.Client: on a LocalCluster of `jobs` single-threaded worker processes, or connected to
    `scheduler`. Both closed on the way out (no worker process outlives the sweep)."""
    import logging

    import dask

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise CliError("cnnx sweep needs Dask: pip install 'cnnx[sweep]' (dask, distributed)") from None
    # A worker that dies while running a configuration: retried once, then the task fails (KilledWorker).
    # Worker saturation 1.0: a worker holds only the task it runs (Dask's default 1.1 rounds up to two per
    # single-threaded worker, and a death would count against the queued one too).
    with dask.config.set({"distributed.scheduler.allowed-failures": 1,
                          "distributed.scheduler.worker-saturation": 1.0}):
        if scheduler:
            try:
                client = Client(scheduler, timeout=15)
            except OSError as e:
                raise CliError(f"--scheduler {scheduler}: cannot connect ({one_line(str(e))})") from None
            try:
                yield client
            finally:
                client.close()
            return
        import warnings

        with warnings.catch_warnings():  # the scheduler's HTTP (health) server moving off a busy port
            warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
            cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR,
                                   env={"OMP_NUM_THREADS": "1"})
        try:
            client = Client(cluster)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()


def run_sweep(run_dir, arrays, buffers_list=(None,), lanes_list=(cycle_model.POOL_LANES,), n_images=200, *,
              synth: dict | None = None, jobs: int | None = None, scheduler: str | None = None,
              out=None, progress: bool = True, data=None, inline: bool = False, batch: int = 250,
              test_kill: dict | None = None, log=None) -> dict:
    """The sweep (see the module docstring): returns {"rows": this sweep's rows in configuration order,
    "ran", "reused", "failed", "files", "best", ...}. `inline=True` runs the configurations one by one in this
    process (no Dask). `test_kill` {label: "once"|"always"} SIGKILLs the worker running that configuration
    (tests)."""
    from .harness import load_run, usable_cpus

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"--jobs must be an integer >= 1, got {jobs!r}")
    jobs = jobs or usable_cpus()
    if synth is not None:
        from .fpga import flow

        flow.require_tools()
    model, qmodel, images, _labels = load_run(run_dir, data)
    if not 1 <= n_images <= len(images):
        raise ValueError(f"--images must be in [1, {len(images)}], got {n_images}")
    x_int8 = qmodel.quantize_input(images[:n_images])
    from .compile import tiling

    common = {"version": RESULT_VERSION, "sources": sources_digest(synth is not None),
              "tools": tool_versions(synth is not None), "model": model_digest(qmodel),
              "images": hashlib.sha256(x_int8.tobytes()).hexdigest(), "n_images": n_images, "synth": synth}
    macs = layer_macs(qmodel)
    specs = []
    for (r, c), buf, lanes in itertools.product(arrays, buffers_list, lanes_list):
        tiling.check_buffers(buf or tiling.CONV_DEFAULTS, r, c, lanes)
        specs.append({"rows": r, "cols": c, "buffers": buf, "lanes": lanes,
                      "label": config_label(r, c, buf, lanes), "key": config_key(common, r, c, buf, lanes),
                      "model_cycles": model_layer_cycles(qmodel, r, c, buf, lanes), "macs": macs,
                      "synth": synth, "batch": batch})
    out = Path(out) if out is not None else Path(run_dir) / "sweep"
    meta = {"run_dir": str(run_dir), "images": n_images, "sources": common["sources"],
            "tools": common["tools"], "model": common["model"],
            "notes": {"cycles_end_to_end": "data movement and stream width are issue 9's: not modelled yet",
                      "latency_us": "compute cycles / min(conv Fmax, pool Fmax), loading not counted",
                      "utilisation": "conv core: MACs / ((conv + dense cycles) * ROWS * COLS)"}}
    with output_dir(out, "--out", files=SWEEP_FILES, what="sweep directory"):
        store = read_results(out)
        todo = [s for s in specs if store.get(s["key"], {}).get("status") != "ok"]
        reused = len(specs) - len(todo)
        if reused:
            log(f"cnnx sweep: {reused} of {len(specs)} configurations already in {out} (same sources, model, "
                "images, tools): not rerun")
        bar = _bar(len(specs), reused, progress)
        for s in specs:
            if test_kill and s["label"] in test_kill:
                s["test_kill"], s["test_kill_dir"] = test_kill[s["label"]], str(out)

        active: dict[str, str] = {}  # configuration -> what its worker says it is doing
        done: set[str] = set()

        def status(config: str, msg: str | None) -> None:
            """The bar's postfix: what every running configuration is doing, builds first."""
            if msg is None:
                active.pop(config, None)
                done.add(config)
            elif config not in done:  # (an event may arrive after its configuration's result)
                active[config] = msg
            bar.set_postfix_str("; ".join(sorted(active.values(), key=lambda m: not m.startswith("build"))))

        rank = {s["key"]: i for i, s in enumerate(specs)}

        def finish(spec, row):
            store[spec["key"]] = row
            # this sweep's rows in configuration order, then those of earlier sweeps in this folder
            ordered = sorted(store, key=lambda k: rank.get(k, len(rank)))
            write_results(out, {k: store[k] for k in ordered}, meta)
            status(spec["label"], None)
            bar.update(1)

        try:
            if todo and inline:
                for s in todo:
                    try:
                        row = run_config(s, qmodel, x_int8, on_event=status)
                    except Exception as e:
                        row = failed_row(s, f"{type(e).__name__}: {e}")
                    finish(s, row)
            elif todo:
                _run_on_dask(todo, qmodel, x_int8, min(jobs, len(todo)), scheduler, status, finish)
        finally:
            bar.close()
        rows = [store[s["key"]] for s in specs]
        files = [str(out / "sweep.csv"), str(out / "sweep.json")]
        files += write_charts(rows, out)
    n_failed = sum(r["status"] != "ok" for r in rows)
    return {"out": str(out), "rows": rows, "ran": len(todo), "reused": reused, "failed": n_failed,
            "files": files, "best": best_config(rows), "synth": synth is not None, "scheduler": scheduler,
            "jobs": None if scheduler else jobs, "wall_s": round(time.perf_counter() - t0, 3)}


def _run_on_dask(todo, qmodel, x_int8, jobs, scheduler, status, finish) -> None:
    from distributed import as_completed

    with dask_client(jobs, scheduler) as client:
        def on_event(event):
            d = event[1] if isinstance(event, tuple) and len(event) == 2 else None
            if isinstance(d, dict) and isinstance(d.get("msg"), str) and isinstance(d.get("config"), str):
                status(d["config"], d["msg"])

        client.subscribe_topic(EVENT_TOPIC, on_event)
        # The model and images go inside each task (small: LeNet-5 and 200 images are ~0.2 MB), not scattered:
        # scattered data lives on one worker and would be lost with it, a task is resubmittable anywhere.
        futures = {}
        for s in todo:
            fut = client.submit(run_config, s, qmodel, x_int8, key=f"cnnx-sweep-{s['key']}", pure=False,
                                retries=0)
            futures[fut] = s
        for fut in as_completed(futures):
            s = futures[fut]
            try:
                row = fut.result()
            except Exception as e:
                name = type(e).__name__
                msg = ("its worker died twice (retried once): " + one_line(str(e)).split(". ")[0]
                       if name == "KilledWorker"
                       else f"{name}: {e}")
                row = failed_row(s, msg)
            finish(s, row)
            fut.release()


# ---------------------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------------------
def add_parser(sub, positive_int) -> None:
    """`cnnx sweep`'s argparse parser, added to the CLI's subparsers."""
    s = sub.add_parser("sweep", help="design-space sweep of array shapes, buffers and pool lanes on Dask",
                       description="One row per configuration: cycles, utilisation, bit-exactness and (with "
                                   "--synth) FPGA resources, Fmax and latency; CSV, JSON and PNGs in --out.")
    s.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (cnnx train or cnnx import)")
    s.add_argument("--array", default="8x8", help="comma-separated ROWSxCOLS shapes (default 8x8)")
    s.add_argument("--buffers", action="append", default=None, metavar="SPEC",
                   help="core buffer sizes, e.g. in=8K,w=64K,out=8K,bias=256, or 'default' (repeatable, or "
                        "';'-separated: each is one configuration axis value)")
    s.add_argument("--lanes", default=str(cycle_model.POOL_LANES),
                   help=f"comma-separated pool-core lanes (default {cycle_model.POOL_LANES})")
    s.add_argument("--images", type=positive_int, default=200, help="test images per configuration (200)")
    s.add_argument("--synth", action="store_true", help="also synthesise and place-and-route each one (ECP5)")
    s.add_argument("--device", choices=("25k", "45k", "85k"), default="85k", help="FPGA for --synth (85k)")
    s.add_argument("--synth-freq", type=float, default=150.0, help="P&R target for --synth, MHz (150)")
    s.add_argument("--seed", type=int, default=1, help="P&R seed for --synth (1)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--jobs", type=positive_int, default=None,
                   help="LocalCluster worker processes, one thread each (default: the usable CPUs)")
    g.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run on this running Dask cluster instead of a LocalCluster")
    s.add_argument("--out", default=None, help="output directory (default RUN_DIR/sweep)")
    s.add_argument("--data", default=None, metavar="FILE.npz", help="use this dataset (default: the run's)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def cli_sweep(args) -> int:
    """Handler of `cnnx sweep`: 0 every row ok, 1 a configuration failed or mismatched, 2 bad input."""
    as_json = args.json
    try:
        arrays = parse_arrays(args.array)
        lanes = parse_lanes(args.lanes)
        buffers = parse_buffer_list(args.buffers)
        if args.scheduler is not None and not args.scheduler.strip():
            raise ValueError("--scheduler needs an address like tcp://HOST:PORT")
        synth = None
        if args.synth:
            import math

            if not (math.isfinite(args.synth_freq) and args.synth_freq > 0):
                raise ValueError(f"--synth-freq must be a finite number > 0, got {args.synth_freq}")
            synth = {"device": args.device, "freq_mhz": float(args.synth_freq), "seed": int(args.seed)}
        res = run_sweep(args.run_dir, arrays, buffers, lanes, args.images, synth=synth, jobs=args.jobs,
                        scheduler=args.scheduler, out=args.out, progress=not (args.no_progress or as_json),
                        data=args.data)
    except Exception as e:
        return cli_error("sweep", e, as_json)
    human = sys.stderr if as_json else sys.stdout
    print(format_table(res["rows"], res["synth"]), file=human, flush=True)
    best = res["best"]
    if best:
        print(f"best: {best['config']} ({best['basis']})", file=human, flush=True)
    print(f"{res['ran']} configurations run, {res['reused']} reused, {res['failed']} failed in "
          f"{res['wall_s']:.1f} s; wrote {', '.join(res['files'])}", file=human, flush=True)
    if as_json:
        print(dumps(res), flush=True)
    return 1 if res["failed"] else 0
