"""`cnnx sweep` (cnnx.sweep): a sweep on a Dask LocalCluster gives the rows of running the configurations one
by one; a rerun does no work; a worker killed mid-sweep leaves a complete table; bad flags exit 2."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "robustness"))
from _robust_cli_common import alive, children_of  # noqa: E402
from _robust_cli_common import tiny_run_dir as _tiny_run_dir  # noqa: E402

distributed = pytest.importorskip("distributed")
sweep = pytest.importorskip("cnnx.sweep")

ARRAYS = [(2, 2), (2, 4), (4, 2)]
N_IMAGES = 6
LABELS = [sweep.config_label(r, c, None, 4) for r, c in ARRAYS]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return _tiny_run_dir(tmp_path_factory)


def _stable(rows):
    """The rows without what depends on the machine or the moment (times, worker names, build status)."""
    return [{k: v for k, v in r.items() if k not in sweep.TIMING_FIELDS} for r in rows]


def _live_children() -> set[int]:
    """Live child processes, but multiprocessing's resource tracker (one per parent, for its lifetime)."""
    return {p for p in children_of(os.getpid())
            if alive(p) and b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()}


@pytest.fixture(scope="module")
def one_by_one(run_dir, tmp_path_factory):
    """The three configurations run one by one in this process (no Dask)."""
    out = tmp_path_factory.mktemp("sweep_inline")
    return sweep.run_sweep(run_dir, ARRAYS, n_images=N_IMAGES, out=out, progress=False, inline=True)


@pytest.mark.rtl
@pytest.mark.slow
def test_localcluster_rows_equal_one_by_one_and_rerun_does_no_work(run_dir, one_by_one, tmp_path,
                                                                    monkeypatch):
    before = _live_children()
    res = sweep.run_sweep(run_dir, ARRAYS, n_images=N_IMAGES, jobs=2, out=tmp_path, progress=False)
    assert _live_children() <= before, "a Dask process outlived the sweep"
    assert res["ran"] == 3 and res["reused"] == 0 and res["failed"] == 0
    assert [r["config"] for r in res["rows"]] == LABELS
    assert _stable(res["rows"]) == _stable(one_by_one["rows"])
    for r in res["rows"]:
        assert r["status"] == "ok" and r["bit_exact"] == N_IMAGES
        assert r["cycles_compute"] == r["cycles_model"]
        assert r["cycles_end_to_end"] == sweep.E2E_NA
    # the files hold the same rows, and the CSV one line per configuration
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert _stable(doc["rows"]) == _stable(res["rows"])
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 1 + 3
    assert (tmp_path / "layers.png").stat().st_size > 0

    # a rerun: every row is there with its key, so no cluster starts and nothing runs
    def no_cluster(*a, **k):
        raise AssertionError("a rerun started a cluster")

    monkeypatch.setattr(sweep, "dask_client", no_cluster)
    again = sweep.run_sweep(run_dir, ARRAYS, n_images=N_IMAGES, jobs=2, out=tmp_path, progress=False)
    assert again["ran"] == 0 and again["reused"] == 3
    assert again["rows"] == res["rows"]
    # ... but other images are another result: that configuration runs again (inline here)
    more = sweep.run_sweep(run_dir, ARRAYS[:1], n_images=N_IMAGES - 1, out=tmp_path, progress=False,
                           inline=True)
    assert more["ran"] == 1 and more["rows"][0]["images"] == N_IMAGES - 1


@pytest.mark.rtl
@pytest.mark.slow
def test_killed_worker_is_retried_once_then_reported_failed(run_dir, one_by_one, tmp_path):
    before = _live_children()
    # SIGKILL the worker running 2x2 on its first attempt only, and the one running 2x4 every time
    res = sweep.run_sweep(run_dir, ARRAYS, n_images=N_IMAGES, jobs=2, out=tmp_path, progress=False,
                          test_kill={LABELS[0]: "once", LABELS[1]: "always"})
    assert _live_children() <= before, "a Dask process outlived the sweep"
    rows = {r["config"]: r for r in res["rows"]}
    assert list(rows) == LABELS  # nothing dropped
    assert rows[LABELS[0]]["status"] == "ok"  # retried on a fresh worker
    assert _stable([rows[LABELS[0]], rows[LABELS[2]]]) == _stable([one_by_one["rows"][0],
                                                                     one_by_one["rows"][2]])
    assert rows[LABELS[1]]["status"] == "failed"
    assert "died twice" in rows[LABELS[1]]["error"]
    assert res["failed"] == 1
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["status"] for r in doc["rows"]] == ["ok", "failed", "ok"]
    # the failed configuration is run again by the next sweep; the others are not
    again = sweep.run_sweep(run_dir, ARRAYS, n_images=N_IMAGES, out=tmp_path, progress=False, inline=True)
    assert again["ran"] == 1 and again["failed"] == 0


@pytest.mark.rtl
@pytest.mark.slow
def test_scheduler_address_gives_the_same_rows(run_dir, one_by_one, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = sweep.run_sweep(run_dir, ARRAYS, n_images=N_IMAGES, scheduler=cluster.scheduler_address,
                              out=tmp_path, progress=False)
    assert _stable(res["rows"]) == _stable(one_by_one["rows"])


@pytest.mark.parametrize("argv, fragment", [
    (["--array", "2y2"], "--array must look like"),
    (["--array", "2x2", "--lanes", "0"], "--lanes"),
    (["--array", "2x2", "--lanes", "4,x"], "--lanes"),
    (["--array", "2x2", "--buffers", "in=3"], "power of two"),
    (["--array", "2x2", "--buffers", "q=8K"], "unknown buffer"),
    (["--array", "2x2", "--jobs", "0"], "--jobs"),
    (["--array", "2x2", "--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"], "not allowed with"),
    (["--array", "2x2", "--images", "0"], "--images"),
    (["--array", "2x2", "--scheduler", " "], "--scheduler"),
])
def test_bad_flags_exit_2_with_one_line(run_dir, tmp_path, capsys, argv, fragment):
    from cnnx.cli import main

    assert main(["sweep", str(run_dir), "--out", str(tmp_path / "o"), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnx sweep: error:") and fragment in err[0], err
    assert not (tmp_path / "o").exists()


def test_bad_inputs_exit_2_json(run_dir, tmp_path, capsys):
    from cnnx.cli import main

    # a layer that cannot be tiled onto this configuration: refused before any work
    assert main(["sweep", str(run_dir), "--array", "2x2", "--buffers", "in=16,w=16,out=16,bias=4",
                 "--json"]) == 2
    cap = capsys.readouterr()
    assert json.loads(cap.out)["exit_code"] == 2 and len(cap.err.strip().splitlines()) == 1
    # an --out whose sweep.json is not a sweep result is refused, not overwritten
    (tmp_path / "sweep.json").write_text("[1, 2")
    assert main(["sweep", str(run_dir), "--array", "2x2", "--out", str(tmp_path), "--json"]) == 2
    cap = capsys.readouterr()
    assert "not a cnnx sweep result" in json.loads(cap.out)["error"]
    assert (tmp_path / "sweep.json").read_text() == "[1, 2"
    # a missing run directory
    assert main(["sweep", str(tmp_path / "nope"), "--array", "2x2"]) == 2


def test_pareto_best_and_charts_with_synthesis_figures(tmp_path):
    pts = [(100, 5.0), (200, 3.0), (150, 6.0), (300, 3.0), (50, 12.0)]
    assert sweep.pareto(pts) == [0, 1, 4]
    layers = [{"name": "conv", "kind": "conv", "cycles": 10, "cycles_model": 10, "constant": True}]
    rows = [{"config": f"{i}x2 L4 buf=default", "status": "ok", "images": 4, "bit_exact": 4,
             "cycles_compute": 1000 // (i + 1), "utilisation": 0.5, "build_s": 1.0, "sim_s": 1.0,
             "layers": layers, "lut4": lut, "ff": 10, "mult18": i, "ebr": 1, "fmax_mhz": 100.0,
             "latency_us": lat, "error": ""} for i, (lut, lat) in enumerate(pts)]
    rows.append(sweep.failed_row({"label": "8x8 L4 buf=default", "rows": 8, "cols": 8, "buffers": None,
                                  "lanes": 4, "key": "k"}, "boom\nmore"))
    best = sweep.best_config(rows)
    assert best["config"] == "0x2 L4 buf=default"  # 100 LUT4 x 5 us: the smallest product
    files = sweep.write_charts(rows, tmp_path)
    assert [Path(f).name for f in files] == ["layers.png", "pareto.png"]
    table = sweep.format_table(rows, synth=True)
    assert "boom" in table and "more" not in table and "Fmax" in table
    assert sweep.best_config(rows[-1:]) is None


@pytest.mark.rtl
def test_cli_prints_the_table_and_one_json_object(run_dir, one_by_one, capsys):
    from cnnx.cli import main

    # the configurations of `one_by_one` are all in its folder: the CLI reuses them (no cluster starts)
    argv = ["sweep", str(run_dir), "--array", "2x2,2x4,4x2", "--images", str(N_IMAGES), "--out",
            one_by_one["out"]]
    assert main([*argv, "--json"]) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert doc["reused"] == 3 and doc["ran"] == 0 and [r["config"] for r in doc["rows"]] == LABELS
    assert "2x4 L4" in cap.err and "already in" in cap.err
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "n/a (issue 9)" in out and "best: " in out and LABELS[2] in out


class _FakeSynth:
    """What cnnx.fpga.synth returns, as far as a sweep row reads it."""

    def __init__(self, core, rows, cols, params):
        self.core, self.part, self.speed, self.fits = core, "LFE5U-85F", 6, True
        lanes = (params or {}).get("LANES", 0)
        self.fmax_mhz = 100.0 if core == "conv" else 125.0
        pes = rows * cols if core == "conv" else 0
        self.resources = {"lut4_total": 1000 * pes + 10 * lanes, "ff": 500, "mult18": pes, "ebr_total": 40}


@pytest.mark.rtl
def test_synth_columns_come_from_the_synthesis_results(run_dir, one_by_one, tmp_path, monkeypatch):
    import cnnx.fpga as fpga
    from cnnx.fpga import flow

    calls = []

    def fake_synth(core, rows, cols, *, device, freq_mhz, seed, params, pnr):
        calls.append((core, rows, cols, params))
        return _FakeSynth(core, rows, cols, params)

    monkeypatch.setattr(fpga, "synth", fake_synth)
    monkeypatch.setattr(fpga, "find_cached", lambda *a, **k: None)
    monkeypatch.setattr(flow, "tool_versions", lambda: {"yosys": "fake", "nextpnr-ecp5": "fake"})
    monkeypatch.setattr(flow, "require_tools", lambda: None)
    events = []
    monkeypatch.setattr(sweep, "_dask_event", lambda config, msg: events.append(msg))
    synth = {"device": "85k", "freq_mhz": 150.0, "seed": 1}
    res = sweep.run_sweep(run_dir, ARRAYS[:1], n_images=N_IMAGES, synth=synth, out=tmp_path, progress=False,
                          inline=True)
    (row,) = res["rows"]
    assert calls == [("conv", 2, 2, {}), ("pool", 2, 2, {"LANES": 4})]
    assert row["lut4"] == 4000 + 40 and row["mult18"] == 4 and row["ebr"] == 80
    assert row["fmax_mhz"] == 100.0  # the slower core's
    assert row["latency_us"] == round(row["cycles_compute"] / 100.0, 3)
    assert row["cycles_compute"] == one_by_one["rows"][0]["cycles_compute"]
    assert res["best"]["config"] == LABELS[0]
    assert (tmp_path / "pareto.png").is_file()


@pytest.mark.rtl
def test_a_build_is_announced_and_timed_apart_from_the_simulation(run_dir, monkeypatch):
    from cnnx.harness import load_run

    _model, qmodel, images, _labels = load_run(run_dir)
    x = qmodel.quantize_input(images[:2])
    spec = {"rows": 2, "cols": 2, "lanes": 4, "buffers": None, "label": LABELS[0], "key": "k", "synth": None,
            "model_cycles": sweep.model_layer_cycles(qmodel, 2, 2, None, 4), "macs": sweep.layer_macs(qmodel)}
    monkeypatch.setattr(sweep, "_needs_build", lambda top, params: top == "cnnx_conv_core")
    events = []
    row = sweep.run_config(spec, qmodel, x, on_event=lambda config, msg: events.append((config, msg)))
    assert events[0] == (LABELS[0], "building 2x2 (first time)")
    assert row["built"] == "cnnx_conv_core" and row["build_s"] >= 0 and row["sim_s"] > 0
    assert row["status"] == "ok" and row["bit_exact"] == 2
