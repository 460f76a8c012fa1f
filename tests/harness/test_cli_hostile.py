"""The issue-15 surface as a hostile user meets it (review): --trace to paths no VCD can be written to, a
traced run that fails half-way, --trace with many images, --repeats beyond reason. Each is refused with one
line and exit 2 before any work, or leaves nothing half-written behind."""

import json
from pathlib import Path

import pytest

from cnnx import cli, harness, schemas


def run_json(capsys, *argv):
    code = cli.main([str(a) for a in argv] + ["--json"])
    out, err = capsys.readouterr()
    obj = json.loads(out)  # exactly one JSON object on stdout
    return code, obj, err


def assert_refused(capsys, *argv, match):
    code, obj, err = run_json(capsys, *argv)
    assert code == 2, err
    assert not schemas.validate(obj, schemas.load("error")), obj
    assert match in obj["error"]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnx ") and match in lines[0], err
    assert "Traceback" not in err


def no_work(monkeypatch):
    """Fail the test if a refused command got as far as loading the run."""
    def boom(*a, **k):
        pytest.fail("the run was loaded: the bad --trace was not refused first")

    monkeypatch.setattr(harness, "load_run", boom)


@pytest.mark.parametrize("cmd", ["cosim", "profile"])
@pytest.mark.parametrize("where", ["under_a_file", "a_directory", "missing_dir", "proc", "empty",
                                   "slash"])
def test_trace_path_that_cannot_be_written_is_refused_first(capsys, tmp_path, monkeypatch, tiny_run_dir,
                                                             cmd, where):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    trace = {"under_a_file": tmp_path / "afile" / "x.vcd", "a_directory": tmp_path / "adir",
             "missing_dir": tmp_path / "nope" / "x.vcd", "proc": "/proc/cnnx-no/x.vcd", "empty": "",
             "slash": f"{tmp_path / 'newdir'}/"}[where]
    no_work(monkeypatch)
    extra = ["--out", tmp_path / "prof"] if cmd == "profile" else []
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_refused(capsys, cmd, tiny_run_dir, "--images", "1", "--trace", trace, *extra, match="--trace")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing made, no temporary file left
    assert list((tmp_path / "adir").iterdir()) == []


def test_trace_with_many_images_is_refused(capsys, tmp_path, monkeypatch, tiny_run_dir):
    no_work(monkeypatch)
    n = harness.TRACE_MAX_IMAGES + 1
    assert_refused(capsys, "cosim", tiny_run_dir, "--images", n, "--trace", tmp_path / "t.vcd",
                   match=f"at most {harness.TRACE_MAX_IMAGES} images")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("repeats", ["1001", "100000000000000000000"])
def test_profile_repeats_beyond_reason_is_refused(capsys, tmp_path, repeats):
    assert_refused(capsys, "profile", tmp_path, "--repeats", repeats, match="--repeats")


def test_an_interrupted_traced_run_leaves_no_vcd(capsys, tmp_path, monkeypatch, tiny_run_dir):
    """Ctrl-C half-way through a traced run: no VCD (nor its temporary file) is left, exit 130."""
    real = harness.RtlRunner.run_layer

    def run_layer(self, i, x):
        if i == 2:  # the conv core has written two layers' edges by now
            assert any(Path(t).stat().st_size > 0 for t in self._trace_tmps)
            raise KeyboardInterrupt
        return real(self, i, x)

    monkeypatch.setattr(harness.RtlRunner, "run_layer", run_layer)
    code, obj, err = run_json(capsys, "cosim", tiny_run_dir, "--images", "1", "--golden-images", "0",
                              "--trace", tmp_path / "t.vcd")
    assert code == 130 and obj["exit_code"] == 130, err
    assert list(tmp_path.iterdir()) == []


def test_a_traced_run_publishes_whole_vcds_and_no_temporary_file(capsys, tmp_path, tiny_run_dir):
    code, obj, err = run_json(capsys, "profile", tiny_run_dir, "--images", "1", "--repeats", "1",
                              "--array", "4x4", "--out", tmp_path / "prof", "--trace", tmp_path / "t.vcd",
                              "--no-progress")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prof", "t.pool.vcd", "t.vcd"]
    for name in ("t.vcd", "t.pool.vcd"):
        text = (tmp_path / name).read_bytes()
        assert text.startswith(b"$version") and b"$timescale" in text[:400]
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


def sh(cmd):
    import subprocess
    import sys

    return subprocess.run(cmd.replace("CNNX", f"{sys.executable} -m cnnx"), shell=True, capture_output=True,
                          text=True, timeout=120, executable="/bin/bash")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("flags", ["", "--json"])
def test_stdout_on_a_full_device_is_one_line_exit_2(tiny_run_dir, flags):
    p = sh(f"CNNX eval {tiny_run_dir} --images 10 {flags} > /dev/full")
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last == "cnnx eval: error: cannot write the output (No space left on device)"


@pytest.mark.parametrize("target", ["RUN --images 10", "/nonexistent/run"])
def test_closed_stderr_leaves_one_json_object_on_stdout(tiny_run_dir, target):
    p = sh(f"CNNX eval {target.replace('RUN', str(tiny_run_dir))} --json 2>&-")
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, p.stdout  # no report, no error line mixed in: stderr was closed, not stdout
    obj = json.loads(lines[0])
    assert not schemas.validate(obj, schemas.load("eval" if p.returncode == 0 else "error")), obj
    assert p.returncode == (0 if "RUN" in target else 2)


def test_train_into_a_closed_pipe_exits_141_quietly(tmp_path):
    """stdout a pipe whose reader is already gone (deterministic `| head`): train's first log line meets
    EPIPE inside the run; the exit is the quiet 141 of every subcommand, not an OSError's exit 2."""
    import os
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "cnnx", "train", "--epochs", "1", "--limit", "300", "--val",
                            "100", "--no-progress", "--out", str(tmp_path / "r")], stdout=w,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w)
    assert p.returncode == 141, p.stderr
    assert p.stderr == "", p.stderr  # no 'error: [Errno 32] Broken pipe'


@pytest.mark.parametrize("argv,match", [
    (["cosim", "--trace", "T", "--trace-clock-mhz", "1e30"], "--trace-clock-mhz 1e+30"),
    (["profile", "--trace", "T", "--clock-mhz", "1e6", "--force"], "--clock-mhz 1e+06"),
    (["cosim", "--trace-clock-mhz", "50"], "give --trace FILE.vcd too"),
])
def test_a_vcd_clock_out_of_range_or_without_trace_is_refused_first(capsys, tmp_path, monkeypatch,
                                                                    tiny_run_dir, argv, match):
    no_work(monkeypatch)
    argv = [a if a != "T" else tmp_path / "t.vcd" for a in argv]
    out = ["--out", tmp_path / "p"] if argv[0] == "profile" else []
    assert_refused(capsys, argv[0], tiny_run_dir, "--images", "1", *argv[1:], *out, match=match)
    assert list(tmp_path.iterdir()) == []


def test_profile_clock_beyond_a_vcd_clock_is_not_a_trace_error(capsys, tmp_path, tiny_run_dir):
    """Without --trace, --clock-mhz (with --force) is only a divisor of the cycles: the VCD clock's range
    does not apply (it was refused as 'trace_clock_mhz must be ...', a flag the user never gave)."""
    code, obj, _ = run_json(capsys, "profile", tiny_run_dir, "--images", "1", "--repeats", "1", "--array",
                            "4x4", "--clock-mhz", "1e6", "--force", "--out", tmp_path / "p", "--no-progress")
    assert code == 0, obj
    assert not schemas.validate(obj, schemas.load("profile")) and obj["clock_mhz"] == 1e6


def test_trace_help_states_the_image_limit():
    cosim = cli.build_parser()._subparsers._group_actions[0].choices["cosim"]
    (trace,) = [a for a in cosim._actions if "--trace" in a.option_strings]
    assert f"at most {harness.TRACE_MAX_IMAGES}" in trace.help


@pytest.mark.parametrize("flag", ["--json", "--js", "--j"])
def test_a_usage_error_under_an_abbreviated_json_flag_prints_the_error_object(capsys, flag):
    code = cli.main(["eval", "RUN", flag, "--images", "x"])
    out, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1
    obj = json.loads(out)  # argparse accepts --js for --json, so the usage error answers in JSON as well
    assert not schemas.validate(obj, schemas.load("error")) and "--images" in obj["error"]


def test_the_python_drivers_vcd_limit_warns_in_one_line_naming_the_published_file(capsys, tmp_path,
                                                                                   tiny_run_dir):
    """At 0.001 MHz the python driver's 32-bit VCD time ends after two clock periods: the warning is one
    `cnnx cosim: warning:` line naming FILE.vcd (not the temporary file the simulator writes into)."""
    vcd = tmp_path / "slow.vcd"
    code, obj, err = run_json(capsys, "cosim", tiny_run_dir, "--images", "1", "--golden-images", "0",
                              "--driver", "python", "--trace", vcd, "--trace-clock-mhz", "0.001",
                              "--no-progress")
    assert code == 0, err
    warns = [ln for ln in err.splitlines() if "warning" in ln.lower()]
    assert warns and all(ln.startswith("cnnx cosim: warning: VCD trace ") for ln in warns), err
    assert any(str(vcd) in ln for ln in warns) and ".tmp" not in err and "UserWarning" not in err, err
    assert vcd.stat().st_size > 0


def test_profile_trace_into_its_own_new_out_directory(capsys, tmp_path, tiny_run_dir):
    """--trace may name a file in the --out directory the profile creates (checked once it exists)."""
    out = tmp_path / "new" / "prof"
    code, obj, err = run_json(capsys, "profile", tiny_run_dir, "--images", "1", "--repeats", "1", "--array",
                              "4x4", "--out", out, "--trace", out / "t.vcd", "--no-progress")
    assert code == 0, err
    assert obj["traces"] == [str(out / "t.vcd"), str(out / "t.pool.vcd")]
    assert (out / "t.vcd").stat().st_size > 0 and (out / "profile.json").is_file()
