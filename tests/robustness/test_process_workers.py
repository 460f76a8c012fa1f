"""Issue 11, item 8 (the process side): the worker fan-out of `cnnx cosim` (cnnx._workers.run_workers) never
leaves a worker behind, never waits for ever on a stopped one, notices a killed one at once and turns a
worker's failure into one line. Real `cnnx cosim` runs are signalled in test_process_cosim_signals.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from _robust_cli_common import ENV, REPO, alive, children_of, fails, kill_all, steps, wait_for

from cnnx._cliutil import CheckFailed
from cnnx._workers import run_workers


def test_results_come_back_in_job_order_with_progress():
    seen = []
    out = run_workers(steps, [(3, 0.01), (1, 0.01), (2, 0.01)], stall_timeout=30, on_progress=seen.append)
    assert out == [3, 1, 2]
    assert sum(seen) == 6


def test_a_killed_worker_is_noticed_at_once_and_the_others_are_stopped():
    procs = []

    def kill_first(ps):
        procs.extend(ps)
        ps[0].kill()

    t0 = time.monotonic()
    with pytest.raises(CheckFailed, match=r"worker 0 \(pid \d+\) was killed by SIGKILL before finishing"):
        run_workers(steps, [(100, 0.2), (100, 0.2)], stall_timeout=60, on_start=kill_first)
    assert time.monotonic() - t0 < 15  # the other worker had 20 s of work left: not waited for
    assert not any(alive(p.pid) for p in procs)


def test_a_stopped_worker_times_out_with_a_message():
    procs = []

    def stop_first(ps):
        procs.extend(ps)
        os.kill(ps[0].pid, signal.SIGSTOP)

    t0 = time.monotonic()
    with pytest.raises(CheckFailed, match=r"worker 0 \(pid \d+\) made no progress for 2 s \(stopped or hung"):
        run_workers(steps, [(100, 0.1), (100, 0.1)], stall_timeout=2, on_start=stop_first)
    assert time.monotonic() - t0 < 15
    assert wait_for(lambda: not any(alive(p.pid) for p in procs), 5)  # the stopped one was killed too


def test_a_worker_error_is_one_line():
    with pytest.raises(CheckFailed) as exc:
        run_workers(fails, [("bad layer 7",)], stall_timeout=30)
    assert str(exc.value).count("\n") == 0
    assert "ValueError: bad layer 7" in str(exc.value)


SCRIPT = """
import sys, time
from _robust_cli_common import steps
from cnnx._workers import run_workers
run_workers(steps, [(1000, 0.05), (1000, 0.05)], stall_timeout=600,
            on_start=lambda ps: print(' '.join(str(p.pid) for p in ps), flush=True))
"""


def test_workers_die_with_a_killed_parent():
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**ENV, "PYTHONPATH": f"{REPO}:{REPO / 'tests' / 'robustness'}"})
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
        assert set(pids) <= set(children_of(proc.pid))
        proc.kill()  # SIGKILL: no clean-up code of the parent runs
        proc.wait(10)
        assert wait_for(lambda: not any(alive(p) for p in pids), 5), "workers outlived their parent"
    finally:
        proc.kill()
        kill_all(pids if "pids" in locals() else [])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_fresh_parent_starts_its_workers_deaf_to_ctrl_c():
    """The terminal's Ctrl-C reaches the workers too: they must start with SIGINT blocked (else a worker still
    importing prints a KeyboardInterrupt traceback) and then ignore it. A fresh interpreter, because starting
    multiprocessing's resource tracker (once per process) used to unblock SIGINT just before the first worker
    was spawned (CI run of stop 16)."""
    script = ("from _robust_cli_common import signal_state\nfrom cnnx._workers import run_workers\n"
              "print(run_workers(signal_state, [(), ()], stall_timeout=60))")
    env = {**ENV, "PYTHONPATH": f"{REPO}:{REPO / 'tests' / 'robustness'}"}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120, check=True)  # fmt: skip
    sigint = 1 << (signal.SIGINT - 1)
    sigterm = 1 << (signal.SIGTERM - 1)
    for blocked, ignored in eval(out.stdout):  # noqa: S307 (our own child's repr of two int pairs)
        assert blocked & sigint and ignored & sigint
        assert not blocked & sigterm  # SIGTERM ends a worker
