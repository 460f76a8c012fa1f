"""The profiler: where the time goes per layer, on the CPU and on the RTL cores, and what the array size does.

Per int8 layer of a quantised network (conv/linear with fused ReLU, pools; flatten is free):
  * CPU time per image: the float Cython layers it stands for and the int8 Cython layer, each at 1 and 2
    threads (`cnnx.set_num_threads`), and the int8 NumPy golden layer: the median of `repeats` timed runs of
    one batch (after one warm-up run), with their spread (`<key>_spread`: (max - min) / median);
  * RTL cycles per image measured on the simulator (a few images) next to `cnnx.cycles`' analytical figure;
    they must agree and `agree` says whether they did;
  * the time those cycles mean at `clock_mhz`, `rtl_speedup_over_cpu` = int8 CPU time / RTL time (the
    faster CPU thread count; > 1: the RTL is faster), and the MAC utilisation macs / (cycles * rows * cols);
  * a sweep over array sizes (4x4 .. 32x32 and the array asked for) with the cycle model only, every layer
    the RTL runs (pools included). At the asked array the sweep's total equals the table's (integer cycles,
    one division by the clock).
Charts (matplotlib, Agg backend): `layers.png` (CPU vs RTL time per layer) and `sweep.png` (cycles per layer,
stacked, and utilisation against array size) in `out_dir`, plus `profile.json`.
Timings are wall-clock on a shared machine: noisy, so read them as ratios measured in the same run.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from . import _threads, cycles, ptq
from ._atomic import atomic_write
from ._cliutil import cli_error, dumps, output_dir, progress_on
from ._threads import set_num_threads
from .harness import (
    RtlRunner,
    check_fits_rtl,
    layer_macs,
    layers_for_groups,
    parse_array,
)

PROFILE_FILES = ("profile.json", "layers.png", "sweep.png")
SWEEP = ((4, 4), (8, 8), (16, 16), (32, 32))


def _timings(fn, repeats: int) -> list[float]:
    """Seconds of `repeats` runs of fn() after one warm-up run (first-touch allocations, thread start)."""
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _median_spread(times: list[float]) -> tuple[float, float]:
    """(median, (max - min) / median) of a list of timings."""
    med = float(np.median(times))
    return med, (max(times) - min(times)) / med if med > 0 else 0.0


def _model_cycles(layer, in_shape, rows, cols, buffers=None):
    """cnnx.cycles.layer_cycles, or None when these buffers cannot hold the layer on that array (the sweep
    and the table report it as missing; the RTL run refuses it by name in check_fits_rtl)."""
    try:
        return cycles.layer_cycles(layer, in_shape, rows, cols, buffers)
    except ValueError:
        return None


def profile_model(model, qmodel: ptq.QuantizedModel, images: np.ndarray, *, array=(8, 8), clock_mhz=200.0,
                  rtl_images: int = 4, repeats: int = 5, driver: str = "fast", rtl: bool = True,
                  buffers=None, trace=None, stream_width: int | None = None) -> dict:
    """Profile `model` (float) and its quantised form on `images` (uint8 MNIST); returns a JSON-able dict.
    `buffers` (cnnx.compile.tiling.parse_buffers' text or dict) sets the cores' buffer sizes (layers are
    tiled to them). `trace` (a path) dumps the waveforms of the RTL measurement (then on one image) to VCD
    files (cnnx.harness.trace_paths), one clock period = 1e6 / clock_mhz ps (100 MHz without a clock).
    `stream_width` (32 or 64) adds each layer's end-to-end cycles at batch 1 through the streamed cores
    (`stream`: cnnx.cycles.layer_stream_cycles; with `rtl`, `stream_rtl`: the wrappers' counters on one
    image) beside the compute-only cycles."""
    rows, cols = array
    if buffers is not None:
        from .compile import tiling

        buffers = tiling.parse_buffers(buffers)
        tiling.check_buffers(buffers, rows, cols)
    bad_clock = isinstance(clock_mhz, bool) or not isinstance(clock_mhz, int | float) or not (
        math.isfinite(clock_mhz) and clock_mhz > 0)
    if clock_mhz is not None and bad_clock:  # None: no clock, cycles only
        raise ValueError(f"the clock must be a finite number of MHz > 0, got {clock_mhz!r}")
    n = len(images)
    if n == 0:
        raise ValueError("need at least one image to profile")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")

    if hasattr(model, "eval"):
        model.eval()
    float_layers = ptq.layers_of(model)
    groups = layers_for_groups(qmodel)  # int8 layer i <- float layers groups[i]
    x_float = qmodel.to_float(images)  # the model's stored preprocessing (MNIST's for older runs)
    x_int8 = qmodel.quantize_input(images)

    # inputs of every float layer and every int8 layer, computed once
    f_inputs, h = [], x_float
    for layer in float_layers:
        f_inputs.append(h)
        h = layer.forward(h)
    q_inputs, h = [], x_int8
    for layer in qmodel.layers:
        q_inputs.append(h)
        h, _ = ptq.run_layer(layer, h, "cython", want_acc=False)
    q_inputs.append(h)

    saved = _threads._NUM_THREADS  # restore exactly what the caller had set (None = OMP_NUM_THREADS/all)
    rows_out = []
    try:
        for i, layer in enumerate(qmodel.layers):
            row = {"index": i, "kind": layer.kind, "name": layer.name,
                   "in_shape": list(q_inputs[i].shape[1:]), "out_shape": list(q_inputs[i + 1].shape[1:])}
            for threads in (1, 2):
                set_num_threads(threads)
                t_f = np.zeros(repeats)
                for j in groups[i]:  # the float layers of one int8 layer, timed run by run and summed
                    t_f += _timings(lambda j=j: float_layers[j].forward(f_inputs[j]), repeats)
                _store(row, f"float_cython_{threads}t_us", list(t_f), n)
                t_q = _timings(
                    lambda lay=layer, x=q_inputs[i]: ptq.run_layer(lay, x, "cython", want_acc=False), repeats
                )
                _store(row, f"int8_cython_{threads}t_us", t_q, n)
            g = q_inputs[i][: min(n, 4)]
            t_np = _timings(lambda lay=layer, g=g: ptq.run_layer(lay, g, "numpy"), 1)
            _store(row, "int8_numpy_us", t_np, len(g))
            row["macs"] = layer_macs(layer, tuple(q_inputs[i].shape[1:]), tuple(q_inputs[i + 1].shape[1:]))
            row["model_cycles"] = _model_cycles(layer, tuple(q_inputs[i].shape[1:]), rows, cols,
                                                buffers)
            rows_out.append(row)
    finally:
        set_num_threads(saved)

    # measured cycles on the simulator (a few images), chained on the CPU's int8 inputs
    if rtl:
        check_fits_rtl(qmodel, rows, cols, buffers)  # a layer the tiler cannot split: refused (named) first
        runner = RtlRunner(qmodel, rows, cols, driver, buffers=buffers, trace=trace,
                           trace_clock_mhz=clock_mhz if trace else None)  # the VCD's clock: only if traced
        k = 1 if trace else max(1, min(rtl_images, n))
        completed = False
        try:
            for i, row in enumerate(rows_out):
                if row["kind"] == "flatten":
                    row["rtl_cycles"] = None
                    continue
                y, cyc = runner.run_layer(i, q_inputs[i][:k])
                row["rtl_cycles"] = int(np.max(cyc))  # every image takes the same: data-independent cycles
                row["rtl_bit_identical"] = bool(np.array_equal(y, q_inputs[i + 1][:k]))
            completed = True
        finally:
            runner.close(keep=completed)  # finishes the VCD files (removed if the measurement failed)
    if stream_width is not None:
        _stream_rows(qmodel, q_inputs, rows_out, rows, cols, buffers, stream_width, rtl)
    for row in rows_out:
        cyc = row.get("rtl_cycles") if rtl else None
        cyc = cyc if cyc is not None else row["model_cycles"]
        row["agree"] = (None if not rtl or row.get("rtl_cycles") is None or row["model_cycles"] is None
                        else row["rtl_cycles"] == row["model_cycles"])
        if cyc:
            row["rtl_us"] = row["rtl_speedup_over_cpu"] = None  # no clock: cycles only
            if clock_mhz is not None:
                row["rtl_us"] = cyc / clock_mhz
                row["rtl_speedup_over_cpu"] = _speedup(row, row["rtl_us"])
            row["mac_utilisation"] = cycles.utilisation(row["macs"], cyc, rows, cols)
        else:
            row["rtl_us"] = row["rtl_speedup_over_cpu"] = row["mac_utilisation"] = None

    sweep = []
    for r, c in sorted(set(SWEEP) | {(rows, cols)}):
        per = []
        for i, layer in enumerate(qmodel.layers):
            if layer.kind == "flatten":
                continue
            cyc = _model_cycles(layer, tuple(q_inputs[i].shape[1:]), r, c, buffers)
            per.append({"index": i, "name": layer.name, "kind": layer.kind, "cycles": cyc,
                        "mac_utilisation": cycles.utilisation(rows_out[i]["macs"], cyc, r, c)})
        total = sum(p["cycles"] or 0 for p in per)
        macs = sum(row["macs"] for row in rows_out)
        time_us = None if clock_mhz is None else total / clock_mhz
        sweep.append({"array": f"{r}x{c}", "asked": (r, c) == (rows, cols), "total_cycles": total,
                      "time_us": time_us, "mac_utilisation": cycles.utilisation(macs, total, r, c),
                      "layers": per})
    return {"array": f"{rows}x{cols}", "clock_mhz": clock_mhz, "images": n, "repeats": repeats,
            "rtl_images": (1 if trace else min(rtl_images, n)) if rtl else 0, "layers": rows_out,
            "sweep": sweep, "totals": _totals(rows_out, clock_mhz),
            "stream_width": stream_width, "traces": list(runner.traces) if rtl else [],
            "trace_clock_mhz": (clock_mhz or 1e6 / runner.conv.trace_period_ps) if rtl and trace else None}


def _stream_rows(qmodel, q_inputs, rows_out, rows, cols, buffers, width, rtl) -> None:
    """Each row's end-to-end figures at stream width `width`: the model's, and with `rtl` the wrappers'
    counters on one image (a layer split into several core runs is not streamed: None)."""
    from .compile import stream as st

    st.check_width(width)
    runner = RtlRunner(qmodel, rows, cols, "fast", buffers=buffers, stream_width=width) if rtl else None
    try:
        for i, (layer, row) in enumerate(zip(qmodel.layers, rows_out, strict=True)):
            m = cycles.layer_stream_cycles(layer, tuple(q_inputs[i].shape[1:]), rows, cols, width, buffers)
            row["stream"] = m._asdict() if m is not None else None
            if runner is None or m is None:
                continue
            y, _ = runner.run_layer(i, q_inputs[i][:1])
            core = runner.pool if layer.kind in ("maxpool", "avgpool") else runner.conv
            row["stream_rtl"] = core.last_counters[-1]
            row["stream_bit_identical"] = bool(np.array_equal(y, q_inputs[i + 1][:1]))
            got = row["stream_rtl"]
            row["stream_agree"] = (got["load"], got["compute"], got["drain"], got["total"]) == tuple(m)
    finally:
        if runner is not None:
            runner.close()


def format_stream(prof: dict) -> str:
    """The end-to-end table of a profile made with a stream width ('' without one)."""
    width = prof.get("stream_width")
    if width is None:
        return ""
    lines = [f"end to end at batch 1, stream width {width} bits (cnnx_conv_stream / cnnx_pool_stream, one "
             "stream per layer: registers, weights, input, start, read-back; the host between layers not "
             "counted). compute-only = core busy cycles (the table above); end-to-end = first input beat "
             "to last output beat",
             f"{'#':>2} {'layer':<13} {'compute-only':>12} {'load beats':>10} {'drain beats':>11} "
             f"{'end-to-end':>10} {'RTL e2e':>8}"]
    tot_c = tot_e = 0
    for r in prof["layers"]:
        m = r.get("stream")
        if m is None:
            continue
        got = r.get("stream_rtl")
        flag = "" if r.get("stream_agree") in (None, True) and r.get("stream_bit_identical") in (None, True) \
            else " DISAGREE"
        tot_c += m["compute"]
        tot_e += m["total"]
        lines.append(f"{r['index']:>2} {r['name'][:13]:<13} {m['compute']:12d} {m['load']:10d} "
                     f"{m['drain']:11d} {m['total']:10d} {'-' if got is None else got['total']:>8}{flag}")
    ratio = f"{tot_e / tot_c:.2f}x" if tot_c else "-"
    lines.append(f"   {'total':<13} {tot_c:12d} {'':>10} {'':>11} {tot_e:10d}   (end-to-end / compute-only "
                 f"{ratio})")
    return "\n".join(lines)


def _store(row: dict, key: str, seconds: list[float], n: int) -> None:
    """row[key] = the median time per image in us, row[key + '_spread'] = (max - min) / median."""
    med, spread = _median_spread([float(t) for t in seconds])
    row[key] = 1e6 * med / n
    row[key + "_spread"] = spread


def _speedup(row: dict, rtl_us: float | None) -> float | None:
    """rtl_speedup_over_cpu: the int8 Cython time (the faster of 1 and 2 threads) / the RTL time."""
    best_cpu = min(row["int8_cython_1t_us"], row["int8_cython_2t_us"])
    return best_cpu / rtl_us if rtl_us else None


def _totals(rows_out, clock_mhz: float | None = None) -> dict:
    """Sums over the layers. The RTL total is integer cycles divided by the clock ONCE, so it is the same
    figure as the sweep's at the asked array."""
    keys = ["float_cython_1t_us", "float_cython_2t_us", "int8_cython_1t_us", "int8_cython_2t_us",
            "int8_numpy_us", "macs"]
    t = {k: float(sum((r.get(k) or 0) for r in rows_out)) for k in keys}
    t["macs"] = int(t["macs"])
    rtl_cycles = [r.get("rtl_cycles") if r.get("rtl_cycles") is not None else r.get("model_cycles")
                  for r in rows_out]
    t["rtl_cycles"] = int(sum(c or 0 for c in rtl_cycles))
    t["rtl_us"] = None if clock_mhz is None else t["rtl_cycles"] / clock_mhz
    t["rtl_speedup_over_cpu"] = _speedup(t, t["rtl_us"])
    return t


def format_table(prof: dict) -> str:
    def f(v, spec):  # a missing figure is a right-aligned "-" of the column's width
        return format(v, spec) if v is not None else "-".rjust(int(spec.split(".")[0].rstrip("dfe") or 1))

    def t(r, key):  # "median±spread%" of a CPU timing, 13 wide
        if r.get(key) is None:
            return "-".rjust(13)
        spread = r.get(key + "_spread")
        return (f"{r[key]:.1f}" + ("" if spread is None else f"±{100 * spread:.0f}%")).rjust(13)

    clock = "no clock (cycles only)" if prof["clock_mhz"] is None else f"{prof['clock_mhz']:.1f} MHz"
    lines = [
        f"profile: array {prof['array']} at {clock}; CPU times in us per image, median of "
        f"{prof['repeats']} runs on {prof['images']} images ±(max-min)/median; RTL cycles measured on "
        f"{prof['rtl_images']} images; rtl_speedup_over_cpu = int8 Cython time (faster of 1T/2T) / RTL "
        "time (> 1: the RTL is faster)",
        f"{'#':>2} {'layer':<13} {'float 1T':>13} {'float 2T':>13} {'int8 1T':>13} {'int8 2T':>13} "
        f"{'int8 numpy':>10} {'RTL cycles':>10} {'model':>8} {'RTL us':>8} {'speedup':>8} {'util':>6}",
    ]
    for r in prof["layers"]:
        agree = "" if r.get("agree") in (None, True) else " DISAGREE"
        lines.append(
            f"{r['index']:>2} {r['name'][:13]:<13} {t(r, 'float_cython_1t_us')} {t(r, 'float_cython_2t_us')} "
            f"{t(r, 'int8_cython_1t_us')} {t(r, 'int8_cython_2t_us')} {f(r['int8_numpy_us'], '10.1f')} "
            f"{f(r.get('rtl_cycles'), '10d')} {f(r['model_cycles'], '8d')} {f(r['rtl_us'], '8.2f')} "
            f"{f(r['rtl_speedup_over_cpu'], '8.2f')} {f(r['mac_utilisation'], '6.2f')}{agree}")
    tot = prof["totals"]
    lines.append(f"   {'total':<13} {tot['float_cython_1t_us']:13.1f} {tot['float_cython_2t_us']:13.1f} "
                 f"{tot['int8_cython_1t_us']:13.1f} {tot['int8_cython_2t_us']:13.1f} "
                 f"{tot['int8_numpy_us']:10.1f} {tot['rtl_cycles']:10d} {'':>8} {f(tot['rtl_us'], '8.2f')} "
                 f"{f(tot['rtl_speedup_over_cpu'], '8.2f')}")
    lines.append("array sweep (cycle model, every layer the RTL runs): " + "; ".join(
        f"{s['array']}{'*' if s.get('asked') else ''}: {s['total_cycles']} cycles"
        f"{'' if s['time_us'] is None else format(s['time_us'], '.2f').join((' = ', ' us'))}, "
        f"util {f(s['mac_utilisation'], '.2f')}"
        for s in prof["sweep"]) + " (* the array above)")
    for path in prof.get("traces") or []:
        lines.append(f"waveforms: {path} (1 ps units, clock {prof.get('trace_clock_mhz') or 0:g} MHz; open "
                     f"with: gtkwave {path})")
    return "\n".join(lines)


def write_charts(prof: dict, out_dir) -> list[str]:
    """layers.png and sweep.png in out_dir; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers = [r for r in prof["layers"] if r["kind"] != "flatten"]
    names = [f"{r['index']} {r['name']}" for r in layers]
    xs = np.arange(len(layers))
    series = [("float Cython 1T", "float_cython_1t_us"), ("int8 Cython 1T", "int8_cython_1t_us"),
              ("int8 Cython 2T", "int8_cython_2t_us")]
    if prof["clock_mhz"] is not None:
        series.append((f"RTL @ {prof['clock_mhz']:.1f} MHz", "rtl_us"))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(series)
    for k, (label, key) in enumerate(series):
        ax.bar(xs + k * width, [r.get(key) or 0 for r in layers], width, label=label)
    ax.set_xticks(xs + 0.4 - width / 2, names, rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("time per image (us, log)")
    ax.set_title(f"Per-layer time: CPU vs RTL ({prof['array']} array)")
    ax.legend()
    fig.tight_layout()
    p1 = out / "layers.png"
    fig.savefig(p1, dpi=100)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    arrays = [s["array"] + (" (asked)" if s.get("asked") else "") for s in prof["sweep"]]
    bottom = np.zeros(len(arrays))
    for li in range(len(prof["sweep"][0]["layers"])):  # stacked: every layer the RTL runs, pools included
        cyc = np.array([s["layers"][li]["cycles"] or 0 for s in prof["sweep"]], float)
        first = prof["sweep"][0]["layers"][li]
        a1.bar(arrays, cyc, bottom=bottom, label=f"{first['index']} {first['name']}")
        bottom += cyc
    a1.set_ylabel("cycles per image (cycle model)")
    a1.set_title("Cycles per layer vs array size")
    a1.tick_params(axis="x", labelsize=8)
    a1.legend(fontsize=7)
    for li in range(len(prof["sweep"][0]["layers"])):
        util = [s["layers"][li]["mac_utilisation"] or 0 for s in prof["sweep"]]
        if any(util):
            first = prof["sweep"][0]["layers"][li]
            a2.plot(arrays, util, marker="o", label=f"{first['index']} {first['name']}")
    a2.set_ylim(0, 1.05)
    a2.set_ylabel("MAC utilisation")
    a2.set_title("Utilisation vs array size (conv/linear)")
    a2.tick_params(axis="x", labelsize=8)
    a2.legend(fontsize=7)
    fig.tight_layout()
    p2 = out / "sweep.png"
    fig.savefig(p2, dpi=100)
    plt.close(fig)
    return [str(p1), str(p2)]


class ClockRefused(ValueError):
    """No clock the profile could honestly use: no synthesis result, or a clock above the reported Fmax."""


def _hardware_summary(r) -> dict:
    keep = ("lut4_total", "ff", "mult18", "ebr_total", "lutram")
    return {"top": r.top, "params": r.params, "part": r.part, "device": r.device, "package": r.package,
            "speed": r.speed, "seed": r.seed, "target_mhz": r.freq_mhz, "tools": r.tools,
            "fmax_mhz": r.fmax_mhz, "met": r.met, "pnr_error": r.pnr_error,
            "resources": {k: r.resources[k] for k in keep}, "ff_memory_bits": r.ff_memory_bits,
            "utilisation": r.utilisation}


def resolve_clock(array=(8, 8), clock_mhz: float | None = None, *, force: bool = False, device: str = "85k",
                  freq_mhz: float = 150.0, seed: int = 1, run_synth: bool = False, progress=None) -> dict:
    """The clock the profile turns cycles into time with, and where it comes from.

    The clock is the slower achieved Fmax of the conv and pool cores of this array, from their cached
    place-and-route results (`cnnx synth`; `run_synth` runs it when missing, which takes minutes). A given
    `clock_mhz` overrides it but is refused above that Fmax unless `force`; with no synthesis result at all a
    given clock is used and labelled as assumed."""
    from . import fpga

    rows, cols = array
    if clock_mhz is not None and not clock_mhz > 0:
        raise ValueError(f"clock must be positive, got {clock_mhz} MHz")
    found = {}
    for core in ("conv", "pool"):
        r = fpga.find_cached(core, rows, cols, device=device, freq_mhz=freq_mhz, seed=seed)
        if r is None and run_synth:
            if not fpga.flow.tools_available():
                raise ClockRefused(f"--synth needs the FPGA tools; {fpga.INSTALL_HINT}")
            r = fpga.synth(core, rows, cols, device=device, freq_mhz=freq_mhz, seed=seed, progress=progress)
        found[core] = r
    hw = {c: _hardware_summary(r) for c, r in found.items() if r is not None}
    missing = [c for c, r in found.items() if r is None]
    part = fpga.DEVICES[device]["part"]
    unplaced = [c for c, r in found.items() if r is not None and r.fmax_mhz is None]
    fmax = None if missing or unplaced else min(r.fmax_mhz for r in found.values())
    how = f"cnnx synth --core all --array {rows}x{cols} --device {device} --freq {freq_mhz:g} --seed {seed}"
    if clock_mhz is None:
        if missing and not run_synth:  # cycles only: no clock is honest without a place-and-route result
            return {"clock_mhz": None, "clock_source": "none", "fmax_mhz": None, "hardware": hw,
                    "clock_note": f"no place-and-route result for the {' and '.join(missing)} core at "
                                  f"{rows}x{cols} on {part}: cycles only, no time figures; run `{how}` "
                                  "(minutes), or add --synth"}
        if missing:
            raise ClockRefused(
                f"no place-and-route result for the {' and '.join(missing)} core at {rows}x{cols} on {part} "
                f"(target {freq_mhz:g} MHz, seed {seed}) to take the clock from: run `{how}` first "
                "(minutes), "
                "or add --synth to run it now, or give --clock-mhz to assume a clock")
        if unplaced:
            errs = "; ".join(f"{c}: {found[c].pnr_error}" for c in unplaced)
            who = " and ".join(unplaced)
            raise ClockRefused(f"the {who} core at {rows}x{cols} did not place and route on {part} ({errs}): "
                               "no clock to profile at; give --clock-mhz F --force to assume one")
        return {"clock_mhz": fmax, "clock_source": "fmax", "fmax_mhz": fmax, "hardware": hw}
    if fmax is not None and clock_mhz > fmax and not force:
        raise ClockRefused(f"--clock-mhz {clock_mhz:g} is above the reported Fmax {fmax:.1f} MHz of the "
                           f"{rows}x{cols} cores on {part}; add --force to profile at it anyway")
    if unplaced and not force:
        raise ClockRefused(f"the {' and '.join(unplaced)} core at {rows}x{cols} did not place and route on "
                           f"{part}: no clock is honest for it; add --force to profile at {clock_mhz:g} MHz")
    source = ("assumed" if fmax is None else "given, above Fmax (forced)" if clock_mhz > fmax else "given")
    return {"clock_mhz": float(clock_mhz), "clock_source": source, "fmax_mhz": fmax, "hardware": hw}


def format_hardware(prof: dict) -> str:
    """The basis of the clock: device, tools, seed, Fmax and resources of each core."""
    src = prof.get("clock_source")
    if src is None:
        return ""
    if src == "none":
        return prof["clock_note"]
    hw = prof.get("hardware") or {}
    if not hw:
        return f"clock {prof['clock_mhz']:g} MHz: assumed (no synthesis result; run `cnnx synth`)"
    any_r = next(iter(hw.values()))
    tools = ", ".join(f"{k} {v}" for k, v in any_r["tools"].items())
    what = {"fmax": "the reported Fmax", "given": "given (at or below the reported Fmax)",
            "given, above Fmax (forced)": "given, ABOVE the reported Fmax (forced)",
            "assumed": "assumed"}.get(src, src)
    lines = [f"clock {prof['clock_mhz']:.1f} MHz: {what}; {any_r['part']} {any_r['package']} speed "
             f"{any_r['speed']}, P&R target {any_r['target_mhz']:g} MHz, seed {any_r['seed']}; {tools}"]
    for core, h in hw.items():
        x = h["resources"]
        fm = f"Fmax {h['fmax_mhz']:.1f} MHz" if h["fmax_mhz"] else f"no Fmax ({h['pnr_error']})"
        lines.append(f"  {core:<4} {fm}; LUT4 {x['lut4_total']} ({h['utilisation']['lut4']:.0f} %), "
                     f"FF {x['ff']}, MULT18X18D {x['mult18']} ({h['utilisation']['mult18']:.0f} %), "
                     f"DP16KD {x['ebr_total']} ({h['utilisation']['ebr']:.0f} %), LUT-RAM {x['lutram']}, "
                     f"memory in flip-flops {h['ff_memory_bits']} bits")
    return "\n".join(lines)


def profile_run_dir(run_dir, n_images: int = 16, data=None, **kwargs) -> dict:
    from .harness import load_run

    model, qmodel, images, _labels = load_run(run_dir, data)
    if not 1 <= n_images <= len(images):
        raise ValueError(f"--images must be in [1, {len(images)}], got {n_images}")
    return profile_model(model, qmodel, images[:n_images], **kwargs)


def cli_profile(args) -> int:
    """`cnnx profile RUN_DIR --array 8x8 --clock-mhz 200 --out DIR --images N --json`. Every input and the
    output directory (created, probed, locked) are checked before the profile runs; profile.json is strict
    JSON (a figure that is not finite is null)."""
    from .checkpoint import read

    as_json = getattr(args, "json", False)
    run_dir = args.run_dir
    out = args.out or str(Path(run_dir) / "profile")
    try:
        array = parse_array(args.array)
        read(run_dir)  # a missing or corrupt checkpoint is refused before the output directory is made
        clock = resolve_clock(array, args.clock_mhz, force=args.force, device=args.device,
                              freq_mhz=args.synth_freq, seed=args.seed, run_synth=args.synth,
                              progress=(lambda m: print(f"   {m}", file=sys.stderr, flush=True))
                              if progress_on(args) else None)
        with output_dir(out, "--out", files=PROFILE_FILES, what="profile directory"):
            if getattr(args, "trace", None) is not None:  # (inside: --trace may name a file in --out)
                from .harness import check_trace

                # a path the VCDs cannot be written to, or a clock they cannot carry: refused before timing
                check_trace(args.trace, clock["clock_mhz"], "--clock-mhz")
            prof = profile_run_dir(run_dir, n_images=args.images, array=array, clock_mhz=clock["clock_mhz"],
                                   data=getattr(args, "data", None), buffers=getattr(args, "buffers", None),
                                   repeats=getattr(args, "repeats", 5), trace=getattr(args, "trace", None),
                                   stream_width=getattr(args, "stream_width", None))
            prof.update(clock)
            prof["charts"] = write_charts(prof, out)
            text = dumps(prof, indent=1)
            with atomic_write(Path(out, "profile.json"), "w") as f:
                f.write(text)
    except Exception as e:
        return cli_error("profile", e, as_json)
    if as_json:
        print(dumps(prof))
    else:
        print(format_table(prof))
        if prof.get("stream_width") is not None:
            print(format_stream(prof))
        print(format_hardware(prof))
        print(f"wrote {', '.join(prof['charts'])} and {Path(out, 'profile.json')}")
    bad = [r["index"] for r in prof["layers"]
           if r.get("agree") is False or r.get("rtl_bit_identical") is False
           or r.get("stream_agree") is False or r.get("stream_bit_identical") is False]
    return 1 if bad else 0
