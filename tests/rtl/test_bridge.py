"""The bridge around the cores: validation before the simulator is touched, the build cache, VCD tracing,
several processes at once, the cycle model's own arithmetic, and Verilator's lint on every Verilog file."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess

import numpy as np
import pytest
from cnnx.verilog import RTL_DIR

from cnnx import cycles, quant, reference

RQ = quant.Requant(16384, 20)


def _layer(C=2, H=5, W=5, F=3, K=3, N=1):
    x = np.ones((N, C, H, W), np.int8)
    w = np.ones((F, C, K, K), np.int8)
    return x, w, np.zeros(F, np.int32)


@pytest.mark.rtl
@pytest.mark.parametrize("driver", ["python", "fast"])
def test_conv_refuses_bad_input_before_simulating(driver, conv_core):
    core = conv_core(2, 2, driver)
    ticks = core._be.ticks()
    x, w, b = _layer()
    cases = [
        (TypeError, dict(x=x.astype(np.int16))),
        (TypeError, dict(w=w.astype(np.uint8))),
        (TypeError, dict(b=b.astype(np.int64))),
        (TypeError, dict(x=x.tolist())),
        (ValueError, dict(x=x[0])),
        (ValueError, dict(w=np.ones((3, 4, 3, 3), np.int8))),          # channel mismatch
        (ValueError, dict(b=np.zeros(4, np.int32))),
        (TypeError, dict(rq=(16384, 20))),
        (ValueError, dict(stride=0)),
        (ValueError, dict(padding=-1)),
        (ValueError, dict(x=np.ones((1, 2, 6, 6), np.int8), stride=2)),  # (6-3)/2 does not fit
        (ValueError, dict(w=np.ones((3, 2, 7, 7), np.int8))),          # kernel larger than the input
    ]
    for exc, change in cases:
        args = dict(x=x, w=w, b=b, rq=RQ, stride=1, padding=0) | change
        with pytest.raises(exc):
            core.run(args["x"], args["w"], args["b"], args["rq"], args["stride"], args["padding"])
    assert core._be.ticks() == ticks, "a refused layer must not clock the model"


@pytest.mark.rtl
def test_conv_refuses_layers_bigger_than_its_buffers(conv_core):
    core = conv_core(2, 2, "fast")
    ticks = core._be.ticks()
    big = [
        ("ifmap_depth=8192", _layer(C=11, H=28, W=28, F=1, K=1)),      # 8624 input bytes
        ("weight_depth=65536", _layer(C=400, H=1, W=1, F=164, K=1)),   # 65600 weight bytes
        ("ofmap_depth=8192", _layer(C=1, H=28, W=28, F=11, K=1)),      # 8624 output bytes
        ("bias_depth=256", _layer(C=1, H=1, W=1, F=257, K=1)),
    ]
    for limit, (x, w, b) in big:
        with pytest.raises(ValueError, match=limit):
            core.run(x, w, b, RQ)
    x, w, _ = _layer(C=1, H=3, W=3, F=1, K=3)
    with pytest.raises(ValueError, match="int32"):                      # a sum that could leave int32
        core.run(x, w, np.array([2**31 - 1000], np.int32), RQ)
    with pytest.raises(ValueError, match="2 dimensions"):
        core.run_linear(np.ones((1, 1, 4), np.int8), np.ones((2, 4), np.int8), None, RQ)
    assert core._be.ticks() == ticks


@pytest.mark.rtl
def test_pool_refuses_bad_input(pool_core):
    core = pool_core("fast")
    ticks = core._be.ticks()
    x = np.zeros((1, 2, 6, 6), np.int8)
    with pytest.raises(TypeError):
        core.run(x.astype(np.float32), 2)
    with pytest.raises(ValueError, match="mode"):
        core.run(x, 2, mode="min")
    with pytest.raises(ValueError):
        core.run(x, 4)                                                  # (6-4)/4 does not fit
    with pytest.raises(TypeError):
        core.run(x, 2.0)
    with pytest.raises(ValueError, match="ifmap_depth=8192"):
        core.run(np.zeros((1, 11, 28, 28), np.int8), 2)
    with pytest.raises(ValueError, match="ofmap_depth=2048"):
        core.run(np.zeros((1, 9, 16, 16), np.int8), 1)
    assert core._be.ticks() == ticks


@pytest.mark.rtl
def test_bad_driver_and_parameters():
    from cnnx.sim import ConvCore, PoolCore

    with pytest.raises(ValueError, match="driver"):
        ConvCore(2, 2, driver="verilog")
    with pytest.raises(TypeError, match="ofmap"):
        ConvCore(2, 2, ofmap=5)
    with pytest.raises(ValueError):
        ConvCore(0, 2)
    with pytest.raises(TypeError, match="trace"):
        PoolCore(driver="fast", trace=3)


@pytest.mark.rtl
def test_build_is_cached_and_keyed(conv_core):
    from cnnx.sim import builder

    conv_core(2, 2, "fast")                                         # make sure it exists
    first = builder.build("cnnx_conv_core", {"ROWS": 2, "COLS": 2})
    mtime = first.batch_so.stat().st_mtime_ns
    again = builder.build("cnnx_conv_core", {"COLS": 2, "ROWS": 2})
    assert again.path == first.path and again.batch_so.stat().st_mtime_ns == mtime
    top = "cnnx_conv_core"
    key = builder.cache_key(top, builder.resolve_params(top, {"ROWS": 2, "COLS": 2}))
    other = builder.cache_key(top, builder.resolve_params(top, {"ROWS": 2, "COLS": 4}))
    assert first.path.name == key and key != other
    with pytest.raises(ValueError, match="no parameter"):
        builder.resolve_params("cnnx_pool_core", {"ROWS": 2})


def _build_in(cache):
    """Ask for one build in a fresh process, the compile replaced by a slow fake that counts its calls."""
    import time
    from pathlib import Path

    os.environ["CNNX_RTL_CACHE"] = cache
    from cnnx.sim import builder

    def fake_build_into(top, params, out):
        with open(Path(cache) / "calls.txt", "a") as f:
            f.write(f"{top}\n")
        time.sleep(1.0)                                             # long enough for the other to arrive
        (out / f"V{top}").write_bytes(b"model")
        (out / "libcnnx_batch.so").write_bytes(b"driver")

    builder._build_into = fake_build_into
    return str(builder.build("cnnx_pool_core", {"LANES": 2}).path)


def _pool_map(fn, items, timeout=600):
    """pool.map in 2 spawned processes that then exit by themselves (close + join). A `with Pool()` block
    ends in terminate(): SIGTERM to workers that coverage (sigterm = true) is still saving in, which once
    left a worker stuck and the suite waiting on it for good."""
    pool = mp.get_context("spawn").Pool(2)
    try:
        out = pool.map_async(fn, items).get(timeout)
        pool.close()
        pool.join()
        return out
    except BaseException:
        pool.terminate()
        raise


@pytest.mark.rtl
def test_two_processes_building_at_once_share_one_build(tmp_path):
    """A cold cache and two processes asking for the same build at once: one builds, the other waits for
    it under the lock and finds it; no half-built or temporary directory is left behind."""
    paths = _pool_map(_build_in, [str(tmp_path)] * 2)
    assert paths[0] == paths[1]
    assert (tmp_path / "calls.txt").read_text().splitlines() == ["cnnx_pool_core"]
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith((".lock", ".txt")))
    assert left == [os.path.basename(paths[0])]
    assert sorted(p.name for p in (tmp_path / left[0]).iterdir()) == ["Vcnnx_pool_core", "libcnnx_batch.so",
                                                                      "manifest.json"]


@pytest.mark.rtl
def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    from cnnx.sim import builder

    monkeypatch.setenv("CNNX_RTL_CACHE", str(tmp_path / "c"))
    assert builder.cache_root() == tmp_path / "c"
    monkeypatch.delenv("CNNX_RTL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert builder.cache_root() == tmp_path / "x" / "cnnx" / "rtl"


@pytest.mark.rtl
@pytest.mark.parametrize("driver", ["python", "fast"])
def test_vcd_trace(driver, tmp_path, rtl_rng):
    from cnnx.sim import ConvCore

    vcd = tmp_path / "conv.vcd"
    core = ConvCore(2, 2, driver=driver, trace=vcd)
    x = rtl_rng.integers(-128, 128, (1, 1, 3, 3), dtype=np.int8)
    w = rtl_rng.integers(-128, 128, (2, 1, 2, 2), dtype=np.int8)
    b = np.zeros(2, np.int32)
    y, _ = core.run(x, w, b, RQ)
    core.close()
    np.testing.assert_array_equal(y, reference.conv2d_int8(x, w, b, RQ))
    text = vcd.read_text()
    assert "$enddefinitions" in text and "cycle_count" in text and text.count("\n#") > 50


def _worker(seed):
    from cnnx.sim import ConvCore

    rng = np.random.default_rng(seed)
    core = ConvCore(2, 2, driver="fast")
    x = rng.integers(-128, 128, (4, 2, 6, 6), dtype=np.int8)
    w = rng.integers(-128, 128, (3, 2, 3, 3), dtype=np.int8)
    b = rng.integers(-999, 999, 3, dtype=np.int32)
    y, total = core.run(x, w, b, RQ, padding=1)
    return bool(np.array_equal(y, reference.conv2d_int8(x, w, b, RQ, padding=1))), total


@pytest.mark.rtl
def test_fast_driver_in_several_processes(conv_core):
    conv_core(2, 2, "fast")                                         # built before the workers start
    results = _pool_map(_worker, [1, 2, 3, 4])
    want = 4 * cycles.conv_cycles(2, 6, 6, 3, 3, 3, 1, 1, 2, 2)
    assert results == [(True, want)] * 4


def test_cycle_model_arithmetic():
    # LeNet conv1 on 8x8: 98 pixel tiles x 1 filter tile of K = 25 steps
    assert cycles.conv_tiles(1, 28, 28, 6, 5, 5, 1, 2, 8, 8) == 98
    tail = 8 + 2 * 8 + 8 + cycles.CONV_PIPELINE                        # set-up + drain + pipeline
    assert cycles.conv_cycles(1, 28, 28, 6, 5, 5, 1, 2, 8, 8) == 97 * 25 + 25 + tail
    # K = 1 < ROWS = 8: each tile is stretched to ROWS cycles
    assert cycles.conv_cycles(1, 4, 4, 1, 1, 1, 1, 0, 8, 8) == 1 * 8 + 1 + tail
    assert cycles.conv_macs(1, 28, 28, 6, 5, 5, 1, 2) == 6 * 28 * 28 * 25
    assert cycles.linear_cycles(400, 120, 8, 8) == 14 * 400 + 400 + tail
    assert cycles.pool_cycles(6, 28, 28, 2, lanes=1) == 6 * 14 * 14 * 4 + cycles.POOL_PIPELINE
    # two channel groups
    assert cycles.pool_cycles(6, 28, 28, 2, lanes=4) == 2 * 14 * 14 * 4 + cycles.POOL_PIPELINE
    assert cycles.conv_ideal_cycles(16, 5, 5, 120, 5, 5, rows=8, cols=8) == 48000 // 64
    assert 0 < cycles.conv_utilisation(6, 14, 14, 16, 5, 5) <= 1
    with pytest.raises(ValueError):
        cycles.conv_cycles(1, 6, 6, 1, 3, 3, 2, 0)


VERILOG_FILES = sorted(p.name for p in RTL_DIR.glob("*.v"))


@pytest.mark.rtl
@pytest.mark.parametrize("name", VERILOG_FILES)
def test_verilator_lint_clean(name):
    res = subprocess.run(["verilator", "--lint-only", "-Wall", f"-I{RTL_DIR}", str(RTL_DIR / name)],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "%Warning" not in res.stderr, res.stderr


@pytest.mark.rtl
@pytest.mark.parametrize("top, bad, message", [
    ("cnnx_conv_core", ["-GROWS=0"], "ROWS and COLS"),
    ("cnnx_conv_core", ["-GIFMAP_DEPTH=1000"], "powers of two"),
    ("cnnx_pool_core", ["-GOFMAP_DEPTH=8"], "powers of two"),
    ("cnnx_pe", ["-GDATA_W=20"], "DATA_W"),
])
def test_bad_parameters_fail_at_elaboration(top, bad, message):
    assert shutil.which("verilator")
    cmd = ["verilator", "--lint-only", "-Wall", f"-I{RTL_DIR}", *bad, str(RTL_DIR / f"{top}.v")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode != 0 and message in res.stderr, res.stderr


@pytest.mark.rtl
@pytest.mark.parametrize("which", ["conv", "pool"])
def test_start_with_zero_registers_finishes_instead_of_hanging(which, conv_core, pool_core):
    core = conv_core(2, 2, "python") if which == "conv" else pool_core("python")
    be = core._be
    core.reset()                                                   # every register is zero now
    be.set("start", 1)
    be.tick(1)
    be.set("start", 0)
    be.tick(1)
    assert (be.get("done"), be.get("busy"), be.get("cycle_count")) == (1, 0, 0)
    x = np.arange(-8, 8, dtype=np.int8).reshape(1, 1, 4, 4)
    if which == "pool":                                            # and the core still works after it
        np.testing.assert_array_equal(core.run(x, 2)[0], reference.maxpool2d_int8(x, 2))
    else:
        w, b = np.ones((1, 1, 2, 2), np.int8), np.zeros(1, np.int32)
        np.testing.assert_array_equal(core.run(x, w, b, RQ, 2)[0], reference.conv2d_int8(x, w, b, RQ, 2))
