"""Shared helpers of the CLI/process robustness tests (test_cli_*.py, test_process_*.py): a tiny trained run
directory shared on disk by every module of the session, subprocess runners that can never hang, /proc
scanning for child processes, and module-level worker targets (spawned workers import them by name)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def tiny_run_dir(tmp_path_factory) -> Path:
    """The same tiny LeNet-5 run as tests/harness/conftest.py's `tiny_run_dir` fixture (one epoch on 2,000
    training images), trained once per session and shared on disk by every module that asks."""
    from cnnx.train import TrainConfig, fit

    run = tmp_path_factory.getbasetemp() / "robust_cli_tiny_lenet5"
    lock_path = tmp_path_factory.getbasetemp() / "robust_cli_tiny_lenet5.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (run / "metrics.json").is_file():
            fit(TrainConfig(model="lenet5", epochs=1, limit=2000, batch_size=32, lr=0.05, seed=0, threads=2,
                            augment=False), run, progress=False, log=lambda *a, **k: None)
    return run


def cnnx_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "cnnx", *[str(a) for a in args]]


def run_cnnx(*args, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    """`python -m cnnx ARGS` to completion (killed after `timeout` s, so a test cannot hang)."""
    return subprocess.run(cnnx_cmd(*args), cwd=REPO, env=env or ENV, capture_output=True, text=True,
                          timeout=timeout)


def children_of(pid: int) -> list[int]:
    """Pids whose parent is `pid` (from /proc/*/stat)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(cond, timeout: float, poll: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(poll)
    return bool(cond())


def kill_all(pids) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def spawn_children_of(proc: subprocess.Popen, n: int, timeout: float = 60) -> list[int]:
    """Wait until `proc` has `n` live `multiprocessing` children (its spawned workers); return their pids."""
    found: list[int] = []

    def ready():
        found[:] = [c for c in children_of(proc.pid) if alive(c) and b"spawn_main" in _cmdline(c)]
        return len(found) >= n or proc.poll() is not None

    wait_for(ready, timeout, 0.1)
    return list(found)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# -- worker targets (module level: spawned workers import them by name) -----------------------------------
def steps(n: int, delay: float, *, progress):
    """n steps of `delay` seconds each, reporting each one."""
    for _ in range(n):
        time.sleep(delay)
        progress(1)
    return n


def fails(message: str, *, progress):
    progress(1)
    raise ValueError(message)


def signal_state(*, progress) -> tuple[int, int]:
    """This process's blocked and ignored signal masks (Linux /proc), as the worker's job sees them."""
    lines = Path("/proc/self/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return int(fields["SigBlk"], 16), int(fields["SigIgn"], 16)
