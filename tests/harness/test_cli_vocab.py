"""One vocabulary across the CLI (issue 15): every subcommand's flags, its `--json` object checked against its
schema (cnnx/schemas/*.json) on REAL outputs of the tiny LeNet-5 run, the progress/stdout rule, plurals,
the broken-pipe exit, and the Python-side summaries (summary() with MACs, the QuantizedModel repr)."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnx import _cliutil, cli, harness, models, nn, schemas

COMMON = ("--json", "--no-progress", "--quiet", "--version")


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def json_of(capsys, command, *argv, code=0):
    got, out, err = run_cli(capsys, command, *argv, "--json")
    assert got == code, err
    obj = json.loads(out)  # stdout is exactly one JSON object: no progress, no report
    problems = schemas.validate(obj, schemas.load(command if code == 0 else "error"))
    assert not problems, problems
    return obj, err


# ---------------------------------------------------------------------------------------------------------
# flags
# ---------------------------------------------------------------------------------------------------------
def test_every_flag_has_help_and_every_subcommand_the_common_flags():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(cli.COMMANDS) <= set(sub.choices)
    for name, p in sub.choices.items():
        for flag in COMMON:
            assert flag in p._option_string_actions, (name, flag)
        for action in p._actions:
            if action.dest == "help":
                continue
            assert action.help, f"cnnx {name} {action.option_strings or action.dest} has no help text"


@pytest.mark.parametrize("argv", [["--version"], ["eval", "--version"], ["cosim", "--version"]])
def test_version(capsys, argv):
    import cnnx

    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and out.strip() == f"cnnx {cnnx.__version__}"


def test_golden_images_zero_is_accepted():
    args = cli.build_parser().parse_args(["cosim", "RUN", "--golden-images", "0"])
    assert args.golden_images == 0
    with pytest.raises(_cliutil.CliError, match=">= 0"):
        cli.build_parser().parse_args(["cosim", "RUN", "--golden-images", "-1"])


def test_progress_rule_and_plurals():
    p = cli.build_parser()
    assert _cliutil.progress_on(p.parse_args(["cosim", "R", "--json"]))  # --json alone keeps progress on
    assert not _cliutil.progress_on(p.parse_args(["cosim", "R", "--no-progress"]))
    assert not _cliutil.progress_on(p.parse_args(["profile", "R", "--quiet"]))
    assert (_cliutil.plural(1, "epoch"), _cliutil.plural(2, "worker")) == ("1 epoch", "2 workers")


def test_error_clears_the_progress_bar_line(monkeypatch):
    from tqdm import tqdm

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bar = tqdm(total=10, file=err, mininterval=0)
    bar.update(3)
    _cliutil.print_clear("a warning")  # the bar is cleared, the line printed, the bar drawn again
    assert not bar.disable and bar in tqdm._instances
    _cliutil.cli_error("cosim", "something broke")  # the command ends: the bar is closed first
    assert bar not in tqdm._instances
    text = err.getvalue()
    for line in ("a warning", "cnnx cosim: error: something broke"):
        i = text.index(line)
        assert i == 0 or text[i - 1] in "\r\n", line  # never glued onto the bar's text
    assert text.rstrip("\n").endswith("something broke")  # no bar redrawn after the error


def test_missing_rtl_bridge_names_the_extra():
    code, msg = _cliutil.classify(ImportError("No module named 'pyverilator'"))
    assert code == 2 and "cnnx[rtl]" in msg


# ---------------------------------------------------------------------------------------------------------
# the JSON objects against their schemas, on real runs
# ---------------------------------------------------------------------------------------------------------
def test_schema_checker_catches_what_it_should():
    s = schemas.load("cosim")
    assert schemas.validate({"error": "x", "exit_code": 2}, schemas.load("error")) == []
    assert any("exit_code" in p for p in schemas.validate({"error": "x"}, schemas.load("error")))
    bad = {"array": [8, 8]}
    problems = schemas.validate(bad, s)
    assert any("$.array" in p for p in problems) and any("missing key 'layers'" in p for p in problems)
    layer = {"index": 0, "kind": "conv", "name": "Conv2d+relu", "out_shape": [6, 28, 28],
             "float_max_abs_diff": None, "int8_cy_vs_np_identical": None, "rtl_identical": 1,
             "rtl_cycles_per_image": 12.5, "model_cycles_per_image": 12}
    got = schemas.validate(layer, s["$defs"]["layer"], s)
    assert any("rtl_cycles_per_image" in p for p in got)  # cycles are integers
    assert not schemas.validate({**layer, "rtl_cycles_per_image": 12, "name": "Conv2d+ReLU"},
                                s["$defs"]["layer"], s)
    with pytest.raises(ValueError, match="no schema"):
        schemas.load("nope")


def test_train_eval_import_json_match_their_schemas(capsys, tmp_path, tiny_run_dir):
    obj, err = json_of(capsys, "train", "--model", "lenet5", "--epochs", "1", "--limit", "600", "--val",
                       "5000", "--threads", "1", "--no-augment", "--out", tmp_path / "t")
    assert "epoch 1/1" in err  # progress stays on stderr under --json (the one rule)
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["config"]["n_val"] == metrics["summary"]["n_val"] == obj["n_val"] == 60
    assert metrics["summary"]["n_val_requested"] == 5000
    assert metrics["summary"]["threads"] == metrics["config"]["threads"] == obj["threads"] == 1

    ev, _ = json_of(capsys, "eval", tiny_run_dir, "--images", "50")
    assert ev["n_images"] == 50

    from cnnx import checkpoint

    model, _ = checkpoint.load(tiny_run_dir)
    np.savez(tmp_path / "w.npz", **model.state_dict())
    (tmp_path / "c.json").write_text(json.dumps(models.build_model("lenet5").config()))
    json_of(capsys, "import", tmp_path / "w.npz", "--config", tmp_path / "c.json", "--input-shape", "1,28,28",
            "--out", tmp_path / "imp")
    json_of(capsys, "eval", tmp_path / "missing", code=2)  # the error object


def test_quiet_prints_nothing_on_stdout(capsys, tiny_run_dir):
    code, out, _ = run_cli(capsys, "eval", tiny_run_dir, "--images", "20", "--quiet")
    assert code == 0 and out == ""


@pytest.mark.rtl
def test_cosim_profile_export_json_match_their_schemas(capsys, tmp_path, tiny_run_dir):
    obj, err = json_of(capsys, "cosim", tiny_run_dir, "--images", "3", "--golden-images", "0",
                       "--workers", "1")
    assert obj["array"] == "8x8" and obj["n_golden"] == 0
    assert obj["accuracy_images"] == {"float-cython": 3, "int8-cython": 3, "rtl": 3}
    assert [r["name"] for r in obj["layers"]][:2] == ["Conv2d+ReLU", "MaxPool2d"]
    assert "int8 cpu vs rtl" in err  # the bar, on stderr
    _, _, err = run_cli(capsys, "cosim", tiny_run_dir, "--images", "2", "--no-progress")
    assert "int8 cpu vs rtl" not in err

    prof, _ = json_of(capsys, "profile", tiny_run_dir, "--images", "2", "--repeats", "2", "--array", "4x4",
                      "--clock-mhz", "50", "--out", tmp_path / "prof", "--trace", tmp_path / "p.vcd")
    assert prof["traces"] == [str(tmp_path / "p.vcd"), str(tmp_path / "p.pool.vcd")]
    assert prof["trace_clock_mhz"] == 50 and prof["rtl_images"] == 1
    with open(tmp_path / "p.vcd") as f:
        head = f.read(300_000)
    assert "$timescale 1ps $end" in head
    assert [int(x[1:]) for x in head.splitlines() if x.startswith("#")][:3] == [10000, 20000, 30000]
    asked = [s for s in prof["sweep"] if s["asked"]]
    assert [s["array"] for s in asked] == ["4x4"]
    assert asked[0]["total_cycles"] == prof["totals"]["rtl_cycles"]  # the table's total IS the sweep's
    assert asked[0]["time_us"] == pytest.approx(prof["totals"]["rtl_us"], rel=1e-12)
    assert {"MaxPool2d"} <= {x["name"] for x in asked[0]["layers"]}  # pools are in the sweep
    t = prof["totals"]
    assert t["rtl_speedup_over_cpu"] == pytest.approx(
        min(t["int8_cython_1t_us"], t["int8_cython_2t_us"]) / t["rtl_us"])

    json_of(capsys, "export", tiny_run_dir, "--out", tmp_path / "exp", "--images", "1")


@pytest.mark.rtl
def test_cosim_trace_writes_vcds_on_the_clock(capsys, tmp_path, tiny_run_dir):
    vcd = tmp_path / "w.vcd"
    obj, _ = json_of(capsys, "cosim", tiny_run_dir, "--images", "1", "--trace", vcd, "--trace-clock-mhz",
                     "125")
    assert obj["traces"] == [str(vcd), str(tmp_path / "w.pool.vcd")] and obj["workers"] == 1
    assert obj["trace_clock_mhz"] == 125
    for path in obj["traces"]:
        stamps = []
        with open(path, errors="replace") as f:  # the first dump holds every signal: read until 6 stamps
            head = f.read(4096)
            f.seek(0)
            for line in f:
                if line.startswith("#"):
                    stamps.append(int(line[1:]))
                    if len(stamps) == 6:
                        break
        assert "$timescale 1ps $end" in head
        assert stamps == [4000, 8000, 12000, 16000, 20000, 24000]  # rise at P/2, fall at P; P = 8000 ps


@pytest.mark.rtl
def test_eval_into_a_closed_pipe_exits_quietly(tiny_run_dir):
    p = subprocess.run(f"{sys.executable} -m cnnx eval {tiny_run_dir} --images 100 | head -1", shell=True,
                       capture_output=True, text=True, timeout=120)
    assert "Traceback" not in p.stderr and "BrokenPipeError" not in p.stderr, p.stderr
    assert p.stdout.count("\n") == 1


def test_broken_pipe_exit_code():
    assert _cliutil.EXIT_SIGPIPE == 141


# ---------------------------------------------------------------------------------------------------------
# Python summaries
# ---------------------------------------------------------------------------------------------------------
def test_summary_counts_macs():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 26 * 26, 5))
    text = m.summary((1, 28, 28))
    conv, linear = 2 * 26 * 26 * 1 * 3 * 3, 2 * 26 * 26 * 5
    assert f"{conv:,}" in text and f"{linear:,}" in text
    assert f"multiply-accumulates per image: {conv + linear:,}" in text


def test_quantized_model_repr_is_short(tiny):
    text = repr(tiny[1])
    assert len(text) < 2000 and "array(" not in text
    assert len(text.splitlines()) == 1 + len(tiny[1].layers) and "Conv2d+ReLU" in text


def test_result_to_dict_uses_rxc_and_counts(tiny):
    res = harness.CosimResult(n_images=10, n_golden=4, array=(8, 4), driver="fast", workers=1, layers=[],
                              accuracy={"float-cython": 1.0, "float-numpy": 1.0}, agreement={},
                              float_logits_max_abs_diff=None, wall_time_s=3.0, build_time_s=2.0)
    d = res.to_dict()
    assert d["array"] == "8x4" and d["accuracy_images"] == {"float-cython": 10, "float-numpy": 4}
    assert d["images_per_s"] == pytest.approx(10.0)  # the 2 s of building are left out
    assert "(4 images)" in res.table() and "(10 images)" in res.table() and "1 worker)" in res.table()


@pytest.mark.fpga
def test_synth_json_matches_its_schema(capsys):
    from cnnx.fpga import flow

    if not flow.tools_available():
        pytest.skip("the fpga extra is not installed")  # pragma: no cover
    # Yosys only, the pool core: the configuration the tutorial test synthesises too (one cached result)
    obj, err = json_of(capsys, "synth", "--core", "pool", "--no-pnr", "--array", "8X8")
    assert obj["array"] == "8x8" and [r["top"] for r in obj["results"]] == ["cnnx_pool_core"]
    assert "== pool core" in err  # progress on stderr


def test_one_epoch_curves_have_whole_epoch_ticks(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnx.train import write_plots

    seen = {}
    real_savefig = plt.Figure.savefig

    def spy(fig, path, *a, **k):
        seen[Path(path).name] = fig
        return real_savefig(fig, path, *a, **k)

    monkeypatch.setattr(plt.Figure, "savefig", spy)
    history = [{"epoch": 1, "train_loss": 2.0, "val_loss": 1.9, "train_accuracy": 0.3, "val_accuracy": 0.4}]
    model = models.build_model("lenet5")
    written = write_plots(tmp_path, history, model, np.eye(10, dtype=int) * 3)
    assert written == ["curves.png", "filters.png", "confusion.png"]
    for ax in seen["curves.png"].axes:
        assert list(ax.get_xticks()) == [1.0]  # not 0.945 ... 1.050
    assert len(seen["filters.png"].axes) > 6 * 1 and len(seen["confusion.png"].axes) == 2  # colour bars


def test_schema_checker_keywords():
    schema = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0},
              "properties": {"mode": {"enum": ["max", "avg"]},
                             "array": {"type": "string", "pattern": "^[0-9]+x[0-9]+$"},
                             "either": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/pos"}]}},
              "$defs": {"pos": {"type": "number", "minimum": 0}}}
    ok = {"mode": "max", "array": "8x8", "either": None, "n": 3}
    assert schemas.validate(ok, schema) == []
    bad = {"mode": "sum", "array": "[8, 8]", "either": -1, "n": -2}
    problems = " ".join(schemas.validate(bad, schema))
    for what in ("$.mode", "$.array", "$.either", "$.n"):
        assert what in problems
    with pytest.raises(ValueError, match="local"):
        schemas.validate(1, {"$ref": "other.json#/x"})


def test_trace_clock_sources(monkeypatch):
    from cnnx import profile

    assert harness.trace_clock((8, 8), 125.0) == (125.0, "given")
    monkeypatch.setattr(profile, "resolve_clock", lambda array: {"clock_mhz": 87.5})
    assert harness.trace_clock((8, 8))[0] == 87.5
    monkeypatch.setattr(profile, "resolve_clock", lambda array: {"clock_mhz": None})
    mhz, basis = harness.trace_clock((4, 4))
    assert mhz == 100.0 and "assumed" in basis and "4x4" in basis
