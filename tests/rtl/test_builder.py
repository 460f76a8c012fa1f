"""cnnx.sim.builder's bookkeeping, without compiling anything: the cache key, parameter checks, the lock and
rename protocol (a fake compile stands in for Verilator), and what a failing build step reports."""

from __future__ import annotations

import pytest
from cnnx.sim import builder

pytestmark = pytest.mark.rtl


def _fake(calls, fail=False):
    def build_into(top, params, out):
        calls.append((top, params))
        (out / "partial").write_text("x")
        if fail:
            raise RuntimeError("compile broke")
        (out / f"V{top}").write_bytes(b"model")
        (out / "libcnnx_batch.so").write_bytes(b"driver")

    return build_into


def test_build_builds_once_then_serves_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNX_RTL_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(builder, "_build_into", _fake(calls))
    first = builder.build("cnnx_pool_core", {"LANES": 2})
    assert first.path.parent == tmp_path and first.model_so.name == "Vcnnx_pool_core"
    assert first.params == builder.resolve_params("cnnx_pool_core", {"LANES": 2})
    again = builder.build("cnnx_pool_core", {"LANES": 2})
    assert again == first and len(calls) == 1
    names = sorted(p.name for p in first.path.iterdir())
    assert names == ["Vcnnx_pool_core", "libcnnx_batch.so", "manifest.json", "partial"]


def test_a_stale_half_build_is_replaced(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNX_RTL_CACHE", str(tmp_path))
    key = builder.cache_key("cnnx_pool_core", builder.resolve_params("cnnx_pool_core", None))
    (tmp_path / key).mkdir()
    (tmp_path / key / "Vcnnx_pool_core").write_bytes(b"left by a killed build")   # no batch driver
    calls = []
    monkeypatch.setattr(builder, "_build_into", _fake(calls))
    b = builder.build("cnnx_pool_core")
    assert len(calls) == 1 and b.batch_so.read_bytes() == b"driver" and b.model_so.read_bytes() == b"model"


def test_a_failed_build_leaves_nothing_behind(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNX_RTL_CACHE", str(tmp_path))
    monkeypatch.setattr(builder, "_build_into", _fake([], fail=True))
    with pytest.raises(RuntimeError, match="compile broke"):
        builder.build("cnnx_conv_core", {"ROWS": 2, "COLS": 3})
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_cache_key_covers_parameters_and_sources(monkeypatch, tmp_path):
    top = "cnnx_conv_core"
    k1 = builder.cache_key(top, builder.resolve_params(top, {"ROWS": 3, "COLS": 5}))
    assert k1.startswith("cnnx_conv_core-cols5-rows3-")
    assert k1 == builder.cache_key(top, builder.resolve_params(top, {"COLS": 5, "ROWS": 3}))
    other = builder.resolve_params(top, {"ROWS": 3, "COLS": 5, "BIAS_DEPTH": 128})
    assert k1 != builder.cache_key(top, other)
    # a changed Verilog source is a different build
    rtl = tmp_path / "rtl"
    rtl.mkdir()
    for src in builder.verilog_sources():
        (rtl / src.name).write_bytes(src.read_bytes())
    monkeypatch.setattr(builder, "RTL_DIR", rtl)
    assert builder.cache_key(top, builder.resolve_params(top, {"ROWS": 3, "COLS": 5})) == k1
    (rtl / "cnnx_pe.v").write_text((rtl / "cnnx_pe.v").read_text() + "\n// a comment\n")
    assert builder.cache_key(top, builder.resolve_params(top, {"ROWS": 3, "COLS": 5})) != k1


@pytest.mark.parametrize("top, params, exc, match", [
    ("cnnx_dsp", None, ValueError, "unknown RTL top"),
    ("cnnx_pool_core", {"ROWS": 2}, ValueError, "no parameter"),
    ("cnnx_pool_core", {"LANES": 0}, ValueError, "positive int"),
    ("cnnx_pool_core", {"LANES": True}, ValueError, "positive int"),
    ("cnnx_pool_core", {"LANES": "4"}, ValueError, "positive int"),
])
def test_bad_parameters_are_refused_before_building(top, params, exc, match):
    with pytest.raises(exc, match=match):
        builder.resolve_params(top, params)


def test_a_failing_step_reports_its_command_and_output(tmp_path):
    with pytest.raises(RuntimeError, match=r"RTL build step failed \(3\): sh -c") as e:
        builder._run(["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"], cwd=tmp_path)
    assert "to-stdout" in str(e.value) and "to-stderr" in str(e.value)


def test_no_verilator_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(builder.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="verilator is not on PATH"):
        builder.verilator_version()


def test_build_recipe_lints_verilates_and_links_the_batch_driver(monkeypatch, tmp_path):
    """The commands `_build_into` runs, in order, with the compiler calls recorded instead of run: lint with
    the parameters (so a $fatal guard fails the build), pyverilator's generate-only step, make of the model at
    MODEL_CFLAGS, the batch driver compiled with the top's macro, and one shared library linked -Bsymbolic."""
    import pyverilator

    runs, gens = [], []
    monkeypatch.setattr(builder, "_run", lambda cmd, cwd=None: runs.append((cmd, cwd)))
    monkeypatch.setattr(pyverilator.PyVerilator, "build",
                        classmethod(lambda cls, top, **kw: gens.append((top, kw))))
    params = builder.resolve_params("cnnx_conv_core", {"ROWS": 3, "COLS": 5})
    builder._build_into("cnnx_conv_core", params, tmp_path)
    lint, model, driver, link = (cmd for cmd, _ in runs)
    assert lint[:3] == ["verilator", "--lint-only", "-Wall"] and "-GROWS=3" in lint and "-GCOLS=5" in lint
    assert lint[-1].endswith("cnnx_conv_core.v")
    (top, kw), = gens
    assert top.endswith("cnnx_conv_core.v") and kw["build_dir"] == str(tmp_path) and kw["gen_only"]
    assert "-GROWS=3" in kw["args"] and "-Wl,-Bsymbolic" in kw["args"]
    assert model[:2] == ["make", "-j"] and f"OPT_FAST={builder.MODEL_CFLAGS}" in model
    assert "USER_CPPFLAGS=-DCNNX_CONV_CORE=1" in driver and driver[-1] == "batch_driver.o"
    assert (tmp_path / "batch_driver.cpp").read_bytes() == builder.BATCH_SOURCE.read_bytes()
    assert "-Wl,-Bsymbolic" in link and "libcnnx_batch.so" in link and runs[-1][1] == tmp_path
