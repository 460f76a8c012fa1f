"""Issue 11, item 7: a run directory is locked while a run writes to it. A second `cnnx train --out SAME`
(or `cnnx profile --out SAME`) exits 2 at once with one line naming the holder's pid; a killed holder never
blocks the next run (the kernel drops an fcntl lock with its process)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from _robust_cli_common import ENV, REPO, run_cnnx, tiny_run_dir

from cnnx import _cliutil, cli

SMALL = ["--limit", "320", "--epochs", "1", "--batch-size", "64", "--threads", "1", "--no-progress"]

HOLDER = """
import sys, time
from cnnx._cliutil import DirLock
DirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path):
    """A process that holds the lock of tmp_path/run; yields (run_dir, its pid)."""
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield run, proc
    finally:
        proc.kill()
        proc.wait(10)


def test_second_train_on_a_busy_run_dir_fails_fast(holder):
    run, proc = holder
    t0 = time.monotonic()
    res = run_cnnx("train", "--out", run, *SMALL, "--json", timeout=60)
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert len(res.stderr.splitlines()) == 1
    assert f"is in use by another cnnx run (pid {proc.pid})" in line and "Traceback" not in res.stderr
    assert json.loads(res.stdout)["exit_code"] == 2
    assert time.monotonic() - t0 < 30
    assert sorted(p.name for p in run.iterdir()) == [".cnnx.lock"]  # nothing of the refused run

    proc.kill()  # the holder dies without releasing: its lock goes with it
    proc.wait(10)
    with _cliutil.DirLock(run) as lock:
        assert lock.path.read_text().split()[0] != str(proc.pid)
    assert not (run / ".cnnx.lock").exists()  # released: the run directory is left clean


def test_profile_out_is_locked_too(holder, capsys, tmp_path_factory, monkeypatch):
    from cnnx import profile

    run, proc = holder
    monkeypatch.setattr(profile, "profile_run_dir", lambda *a, **k: pytest.fail("the profile ran"))
    code = cli.main(["profile", str(tiny_run_dir(tmp_path_factory)), "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and f"(pid {proc.pid})" in err and len(err.splitlines()) == 1


def test_two_trains_at_once_one_wins(tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--out", run, "--limit", "20000", "--epochs", "1", "--batch-size", "32",
            "--threads", "1", "--no-progress"]
    first = subprocess.Popen(
        [sys.executable, "-m", "cnnx", *map(str, argv)], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (run / ".cnnx.lock").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        second = run_cnnx(*argv, timeout=60)
        first.send_signal(signal.SIGINT)  # done with it: stop it (it saves a checkpoint, exits 130)
        out, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert second.returncode == 2 and f"(pid {first.pid})" in second.stderr, second.stderr
    assert first.returncode == 130, err
    assert not (run / ".cnnx.lock").exists()


def test_dir_lock_in_process(tmp_path):
    with _cliutil.DirLock(tmp_path) as lock:
        with pytest.raises(_cliutil.RunDirLocked, match=r"pid \d+"):
            _cliutil.DirLock(tmp_path).acquire()
        lock.release()
        lock.release()  # idempotent
    assert list(tmp_path.iterdir()) == []
