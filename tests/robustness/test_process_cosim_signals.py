"""Issue 11, item 8, on a real `cnnx cosim` with two workers: SIGKILL of the parent leaves no worker behind,
SIGTERM and Ctrl-C (SIGINT to the whole process group, as a terminal sends it) print one line and exit
143 / 130 with the workers reaped, and a stopped worker ends the run after --worker-timeout with one line."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from _robust_cli_common import ENV, REPO, alive, cnnx_cmd, kill_all, spawn_children_of, tiny_run_dir, wait_for

pytestmark = pytest.mark.rtl


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run_dir(tmp_path_factory)


def start_cosim(run_dir, *extra):
    """`cnnx cosim` on 4,000 images with 2 workers (far longer than the test lets it run), in its own
    session; returns (process, its two worker pids)."""
    argv = cnnx_cmd("cosim", run_dir, "--images", "4000", "--workers", "2", "--golden-images", "1", *extra)
    # not measured by coverage: its atexit save, racing the workers' under a group-wide SIGINT, can print a
    # traceback of its own that is no part of cnnx's behaviour (seen once as "file is not a database")
    env = {k: v for k, v in ENV.items() if not k.startswith("COVERAGE_")}
    proc = subprocess.Popen(argv,
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    workers = spawn_children_of(proc, 2, timeout=90)
    if len(workers) < 2:
        proc.kill()
        pytest.fail(f"cosim did not start 2 workers: {proc.communicate(timeout=30)}")
    return proc, workers


def finish(proc, workers, timeout=30):
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
        gone = wait_for(lambda: not any(alive(p) for p in workers), 5)
        kill_all(workers)
    assert gone, "a worker outlived the run"
    return out, err


def test_sigkill_of_the_parent_leaves_no_worker(run_dir):
    proc, workers = start_cosim(run_dir)
    proc.kill()
    finish(proc, workers)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_exit_with_one_line(run_dir, sig, code):
    proc, workers = start_cosim(run_dir)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C: the terminal signals the whole foreground group
    else:
        proc.send_signal(sig)
    out, err = finish(proc, workers)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    last = err.strip().splitlines()[-1].split("\r")[-1]  # after the progress bar
    assert last == f"cnnx cosim: error: interrupted ({signal.Signals(sig).name})", err


def test_a_stopped_worker_times_out(run_dir):
    proc, workers = start_cosim(run_dir, "--worker-timeout", "2")
    os.kill(workers[0], signal.SIGSTOP)
    out, err = finish(proc, workers, timeout=60)
    assert proc.returncode == 1, err
    last = err.strip().splitlines()[-1].split("\r")[-1]
    assert last.startswith("cnnx cosim: error: co-simulation worker") and "made no progress for 2 s" in last
    assert "Traceback" not in err
