"""Issue 11, item 14: SIGTERM is handled like SIGINT in `cnnx train` (a resumable checkpoint, then exit 143;
Ctrl-C exits 130), a signal during the last epoch's validation is honoured, and leftovers of atomic writes
killed mid-way are removed (cnnx._atomic.remove_stale_temps) on --resume and on the next write there."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from _robust_cli_common import ENV, REPO, cnnx_cmd, tiny_run_dir

from cnnx import _atomic, checkpoint, cli, train
from cnnx.train import TrainConfig, TrainingInterrupted, fit

SMALL = ["--limit", "320", "--epochs", "1", "--batch-size", "64", "--threads", "1", "--no-progress"]


def test_sigterm_saves_a_resumable_checkpoint_and_exits_143(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        cnnx_cmd("train", "--model", "lenet5", "--out", run, "--limit", "30000", "--epochs", "1",
                 "--batch-size", "64", "--threads", "1"),
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        seen, deadline = b"", time.monotonic() + 60
        while b"epoch 1/1" not in seen and time.monotonic() < deadline and proc.poll() is None:
            seen += os.read(proc.stderr.fileno(), 4096)
        assert b"epoch 1/1" in seen, seen
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    err = seen.decode() + err.decode()
    assert proc.returncode == 143, err
    assert "cnnx train: interrupted; resumable checkpoint saved" in err and "--resume" in err
    assert "Traceback" not in err
    _, info = checkpoint.load(run)
    assert info["meta"]["position"]["epoch"] == 0 and info["meta"]["position"]["batch"] > 0


def test_a_signal_during_the_last_validation_is_honoured(tmp_path, monkeypatch):
    cfg = dict(model="lenet5", epochs=1, batch_size=32, limit=320, threads=1, seed=5, warmup_steps=2)
    real = train.evaluate
    calls = []

    def evaluate_then_sigint(*a, **k):
        calls.append(1)
        if len(calls) == 1:  # the validation pass of the last (only) epoch
            os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(train, "evaluate", evaluate_then_sigint)
    with pytest.raises(TrainingInterrupted) as exc:
        fit(TrainConfig(**cfg), tmp_path, progress=False, log=lambda s: None)
    assert (exc.value.epoch, exc.value.batch, exc.value.signum) == (1, 0, signal.SIGINT)
    assert len(calls) == 1  # the test set was not evaluated
    assert not (tmp_path / "confusion.png").exists()
    monkeypatch.setattr(train, "evaluate", real)
    summary = fit(TrainConfig(**cfg), tmp_path, resume=True, progress=False, log=lambda s: None)
    assert summary["epochs"] == 1 and 0 < summary["test_accuracy"] <= 1
    assert (tmp_path / "confusion.png").exists()


def test_resume_removes_leftover_temp_files(tmp_path, capsys, tmp_path_factory):
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir(tmp_path_factory), run)  # one epoch done: --resume only re-evaluates
    old_style = run / ".checkpoint.npz.k3j4h5g6.tmp"  # a killed write, before the pid was in the name
    dead = run / ".metrics.json.999999999-abcdefgh.tmp"  # a killed write of a pid that does not exist
    for p in (old_style, dead):
        p.write_bytes(b"half a file")
    code = cli.main(["train", "--out", str(run), "--resume", "--epochs", "1", "--threads", "1",
                     "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert not old_style.exists() and not dead.exists()
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_remove_stale_temps_spares_live_writers(tmp_path):
    live = tmp_path / f".data.npz.{os.getppid()}-abcdefgh.tmp"  # our parent: alive
    dead = tmp_path / ".data.npz.999999999-abcdefgh.tmp"
    other = tmp_path / "notes.tmp"  # not an atomic_write name
    for p in (live, dead, other):
        p.write_bytes(b"x")
    assert _atomic.remove_stale_temps(tmp_path) == [dead]
    with _atomic.atomic_write(tmp_path / "data.npz") as f:  # the next write there cleans too
        f.write(b"new")
    assert live.exists() and other.exists()
    assert _atomic.remove_stale_temps(tmp_path, all_=True) == [live]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "notes.tmp"]


def test_atomic_write_temp_names_carry_the_pid(tmp_path):
    with _atomic.atomic_write(tmp_path / "x.bin") as f:
        names = os.listdir(tmp_path)
        f.write(b"1")
    assert len(names) == 1 and names[0].startswith(f".x.bin.{os.getpid()}-") and names[0].endswith(".tmp")
    assert np.array_equal(np.frombuffer((tmp_path / "x.bin").read_bytes(), np.uint8), [ord("1")])
