"""Fixtures of the RTL tests: one Verilator build per core configuration, shared by the whole session.

Builds are cached on disk (cnnx.sim.builder; `CNNX_RTL_CACHE` overrides the directory), so a warm run never
recompiles. Model instances are cached per (core, array, driver) for the session: tests that need a pristine
core call `reset()` themselves. Integers compare exactly (np.testing.assert_array_equal) everywhere here.
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from cnnx import quant

HAVE_RTL = shutil.which("verilator") is not None and importlib.util.find_spec("pyverilator") is not None


def pytest_collection_modifyitems(config, items):
    if HAVE_RTL:
        return
    skip = pytest.mark.skip(reason="needs verilator on PATH and pyverilator-mm installed")
    for item in items:
        if "rtl" in item.keywords:
            item.add_marker(skip)


_CORES: dict = {}


def get_conv(rows: int, cols: int, driver: str):
    """The session's conv core model with this array and driver (built once, cached on disk)."""
    from cnnx.sim import ConvCore

    key = ("conv", rows, cols, driver)
    if key not in _CORES:
        _CORES[key] = ConvCore(rows, cols, driver=driver)
    return _CORES[key]


def get_pool(driver: str, lanes: int | None = None):
    """The session's pool core model with this driver (and lanes, default: the core's default)."""
    from cnnx.sim import PoolCore

    key = ("pool", driver, lanes)
    if key not in _CORES:
        _CORES[key] = PoolCore(driver=driver) if lanes is None else PoolCore(driver=driver, lanes=lanes)
    return _CORES[key]


@pytest.fixture
def rtl_rng() -> np.random.Generator:
    return np.random.default_rng(20261122)


def random_conv_layer(rng, N, C, H, W, F, KH, KW, wmax=128, bmax=5000, relu=None):
    """Random int8 input/weights (full range by default), int32 bias, and a requantisation that keeps the
    outputs spread over the int8 range (some saturate) rather than all zero."""
    x = rng.integers(-128, 128, (N, C, H, W), dtype=np.int8)
    w = rng.integers(-wmax, wmax, (F, C, KH, KW), dtype=np.int8)
    b = rng.integers(-bmax, bmax + 1, F, dtype=np.int32)
    K = C * KH * KW
    # a typical |acc| is ~ sqrt(K) * 128 * wmax / 3; map about twice that onto 127
    scale = 127.0 / (2.0 * max(1.0, np.sqrt(K)) * 128 * wmax / 3.0)
    rq = quant.multiplier_from_scale(scale, relu=bool(rng.integers(0, 2)) if relu is None else relu)
    return x, w, b, rq


@pytest.fixture
def conv_core():
    """`conv_core(rows, cols, driver)` -> the session's ConvCore of that configuration."""
    return get_conv


@pytest.fixture
def pool_core():
    """`pool_core(driver, lanes=None)` -> the session's PoolCore."""
    return get_pool


@pytest.fixture
def conv_layer():
    """`conv_layer(rng, N, C, H, W, F, KH, KW, ...)` -> (x, w, b, rq), see random_conv_layer."""
    return random_conv_layer
