"""`cnnx synth` stopped while Yosys runs, by SIGTERM or by Ctrl-C (SIGINT to the terminal's process group):
the tool's processes end with it and no temporary run folder stays in the synthesis cache (issue 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import needs_tools

REPO = Path(__file__).resolve().parents[2]


def _procs_working_in(root: Path) -> list[int]:
    """Pids whose working directory lies under `root` (the tools run in their run folder)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:  # gone, or not ours
            continue
        if cwd == str(root) or cwd.startswith(str(root) + os.sep):
            found.append(int(entry))
    return found


@needs_tools
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_synth_leaves_no_tool_running_and_no_temp_folder(tmp_path, signum, code):
    cache = tmp_path / "cache"
    synth_dir = cache / "synth"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CNNX_RTL_CACHE": str(cache)}
    # the pool core at 1 lane and 16-byte buffers: a few seconds of Yosys, plenty to stop it in
    cmd = [sys.executable, "-m", "cnnx", "synth", "--core", "pool", "--no-pnr", "--param", "LANES=1",
           "--param", "IFMAP_DEPTH=16", "--param", "OFMAP_DEPTH=16"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own group, as a shell's foreground job
    try:
        deadline = time.monotonic() + 120
        while not _procs_working_in(synth_dir) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert _procs_working_in(synth_dir), "Yosys never started"
        time.sleep(0.5)  # well inside Yosys (its start-up alone takes seconds)
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err.decode()
    assert proc.returncode == code, err
    assert "interrupted" in err and "Traceback" not in err
    deadline = time.monotonic() + 1.0
    while _procs_working_in(synth_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _procs_working_in(synth_dir) == []
    assert [p.name for p in synth_dir.iterdir() if p.is_dir()] == []  # no half run left (lock files may)


@needs_tools
def test_a_killed_synth_takes_its_tool_along_and_the_next_run_removes_its_folder(tmp_path):
    cache = tmp_path / "cache"
    synth_dir = cache / "synth"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CNNX_RTL_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "cnnx", "synth", "--core", "pool", "--no-pnr", "--param", "LANES=1",
           "--param", "IFMAP_DEPTH=16", "--param", "OFMAP_DEPTH=16", "--json"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not _procs_working_in(synth_dir) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert _procs_working_in(synth_dir), "Yosys never started"
        proc.kill()  # SIGKILL: no handler runs
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # at once: Yosys alone (seconds to start and to run even this tiny core) would still be running
    deadline = time.monotonic() + 1.0
    while _procs_working_in(synth_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _procs_working_in(synth_dir) == []  # the tool died with it
    left = [p for p in synth_dir.iterdir() if p.is_dir()]
    assert len(left) == 1 and left[0].name.startswith(".cnnx_pool_core")  # the killed run's folder
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert [p.name for p in synth_dir.iterdir() if p.is_dir() and p.name.startswith(".")] == []
