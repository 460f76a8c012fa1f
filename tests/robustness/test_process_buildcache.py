"""Issue 11, items 3 and 9: the Verilator build cache is checked by content (SHA-256 of each loaded artefact,
in a manifest written last) BEFORE anything is loaded. A truncated, empty, random or foreign library, or a
missing manifest, prints one line "... rebuilding ..." and is rebuilt, never SIGBUS or a traceback. A held
build lock is waited for with a message and a timeout; temporary directories of killed builds are removed.

The real build of the 8x8 conv core (cached for the whole suite) is the pristine copy; each test works on a
copy of it in its own cache root ($CNNX_RTL_CACHE), and "rebuilding" copies the pristine files back in
(monkeypatched `_build_into`) instead of spending minutes in the C++ compiler."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _robust_cli_common import ENV, REPO, alive

pytestmark = pytest.mark.rtl

PARAMS = {"ROWS": 8, "COLS": 8}
TOP = "cnnx_conv_core"


@pytest.fixture(scope="module")
def pristine():
    from cnnx.sim import builder

    return builder.build(TOP, PARAMS)


@pytest.fixture
def cache(tmp_path, monkeypatch, pristine):
    """A private cache root holding a copy of the pristine build; yields the Build there."""
    from cnnx.sim import builder

    root = tmp_path / "rtl"
    root.mkdir()
    monkeypatch.setenv("CNNX_RTL_CACHE", str(root))
    shutil.copytree(pristine.path, root / pristine.path.name)

    def fake_build_into(top, params, out):
        for p in pristine.path.iterdir():
            if p.name != builder.MANIFEST and p.is_file():
                shutil.copy(p, out / p.name)

    monkeypatch.setattr(builder, "_build_into", fake_build_into)
    return builder.Build(TOP, pristine.params, root / pristine.path.name)


def damage(build, how: str) -> None:
    so = build.batch_so
    if how == "truncated":
        so.write_bytes(so.read_bytes()[: so.stat().st_size // 3])
    elif how == "empty":
        so.write_bytes(b"")
    elif how == "random":
        so.write_bytes(os.urandom(so.stat().st_size))
    elif how == "foreign":  # a real shared library, just not ours
        import ctypes.util

        libm = Path("/lib/x86_64-linux-gnu") / (ctypes.util.find_library("m") or "libm.so.6")
        shutil.copy(libm if libm.exists() else sys.executable, so)
    elif how == "no-manifest":
        (build.path / "manifest.json").unlink()
    elif how == "bad-manifest":
        (build.path / "manifest.json").write_text("{not json")
    elif how == "model-truncated":
        build.model_so.write_bytes(build.model_so.read_bytes()[:1000])


@pytest.mark.parametrize("how", ["truncated", "empty", "random", "foreign", "no-manifest", "bad-manifest",
                                 "model-truncated"])
def test_a_damaged_cache_is_found_and_rebuilt(cache, capsys, how):
    from cnnx.sim import builder

    assert builder.check_build(cache) is None
    damage(cache, how)
    assert builder.check_build(cache) is not None
    got = builder.build(TOP, PARAMS)
    err = capsys.readouterr().err
    assert got.path == cache.path and builder.check_build(got) is None
    lines = err.splitlines()  # the damage and the rebuild on one line, then the build's time
    assert len(lines) == 2 and "is damaged" in lines[0] and "rebuilding" in lines[0], err
    assert lines[1].startswith(f"cnnx: built {TOP} in "), err
    builder.build(TOP, PARAMS)  # intact now: silent
    assert capsys.readouterr().err == ""


def test_a_truncated_library_never_reaches_dlopen(cache, pristine):
    """In a child process (a SIGBUS would kill it): load the fast driver from the damaged cache."""
    damage(cache, "truncated")
    script = f"""
import pathlib, shutil
from cnnx.sim import builder, ConvCore
def fake(top, params, out):
    for p in pathlib.Path({str(pristine.path)!r}).iterdir():
        if p.name != "manifest.json" and p.is_file():
            shutil.copy(p, out / p.name)
builder._build_into = fake
core = ConvCore(8, 8, driver="fast")
print("loaded", core.rows, flush=True)
"""
    res = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={**ENV, "CNNX_RTL_CACHE": str(cache.path.parent)})
    assert res.returncode == 0, res.stderr
    assert "loaded 8" in res.stdout and "rebuilding" in res.stderr and "Traceback" not in res.stderr


def test_stale_temp_build_dirs_are_removed(cache):
    from cnnx.sim import builder

    root = cache.path.parent
    key = cache.path.name
    mine = root / f".{key}.999999999.abcdefgh"  # this key, a dead builder
    legacy = root / f".{key}.k3j4h5g6"  # this key, before the pid was in the name
    other_dead = root / ".cnnx_pool_core-0123456789abcdef.999999999.abcdefgh"
    other_live = root / f".cnnx_pool_core-0123456789abcdef.{os.getppid()}.abcdefgh"
    for d in (mine, legacy, other_dead, other_live):
        d.mkdir()
        (d / "Vcnnx_conv_core__ALL.a").write_bytes(b"partial")
    removed = builder.remove_stale_build_dirs(root, key)
    assert sorted(removed) == sorted([mine, legacy, other_dead])
    assert other_live.exists()


KILLED_BUILD = """
import sys, time
from cnnx.sim import builder
def slow(top, params, out):
    (out / "half.o").write_bytes(b"partial")
    print(out, flush=True)
    time.sleep(60)
builder._build_into = slow
builder.build("cnnx_conv_core", {"ROWS": 8, "COLS": 8})
"""


def test_a_build_killed_midway_leaves_nothing_for_good(cache, capsys):
    from cnnx.sim import builder

    shutil.rmtree(cache.path)
    root = cache.path.parent
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**ENV, "CNNX_RTL_CACHE": str(root)})
    try:
        tmp = Path(proc.stdout.readline().strip())
        assert tmp.is_dir() and tmp.parent == root
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
    assert tmp.exists()  # what the kill left behind ...
    got = builder.build(TOP, PARAMS)
    assert not tmp.exists()  # ... is gone after the next build
    assert builder.check_build(got) is None
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


HOLD_LOCK = """
import fcntl, os, sys, time
f = open(sys.argv[1], "a+")
fcntl.flock(f, fcntl.LOCK_EX)
f.seek(0); f.truncate(); f.write(f"{os.getpid()}\\n"); f.flush()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_held_build_lock_is_waited_for_with_a_message_then_times_out(cache, capsys, monkeypatch):
    from cnnx.sim import builder

    shutil.rmtree(cache.path)
    lock = cache.path.parent / f"{cache.path.name}.lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock), "60"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        monkeypatch.setenv(builder.LOCK_TIMEOUT_ENV, "1")
        t0 = time.monotonic()
        want = rf"gave up after 1 s waiting for another build .*pid {proc.pid}"
        with pytest.raises(builder.BuildError, match=want):
            builder.build(TOP, PARAMS)
        assert time.monotonic() - t0 < 10
        err = capsys.readouterr().err
        assert f"waiting for another build of {cache.path.name} (pid {proc.pid})" in err
    finally:
        proc.kill()
        proc.wait(10)
    assert alive(proc.pid) is False
    # the holder is gone: the next build goes ahead
    assert builder.check_build(builder.build(TOP, PARAMS)) is None


def test_the_cli_reports_a_lock_timeout_as_one_line(cache, capsys, monkeypatch, tmp_path_factory):
    from _robust_cli_common import tiny_run_dir
    from cnnx.sim import builder

    from cnnx import cli

    run = tiny_run_dir(tmp_path_factory)
    shutil.rmtree(cache.path)
    lock = cache.path.parent / f"{cache.path.name}.lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock), "60"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        monkeypatch.setenv(builder.LOCK_TIMEOUT_ENV, "0.5")
        code = cli.main(["cosim", str(run), "--images", "2", "--workers", "1"])
    finally:
        proc.kill()
        proc.wait(10)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert lines[0].startswith("cnnx: waiting for another build") and len(lines) == 2
    assert lines[1].startswith("cnnx cosim: error: gave up after") and "Traceback" not in err
