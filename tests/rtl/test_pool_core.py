"""The pool core (verilog/cnnx_pool_core.v) against the golden max/avg pools, bit for bit, and the cycle
model.
Shapes: (N, C, H, W, kernel, stride)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnx import cycles, reference

SHAPES = [
    (1, 1, 2, 2, 2, 2),
    (2, 3, 6, 6, 2, 2),
    (1, 2, 7, 7, 3, 2),     # overlapping windows
    (1, 4, 9, 6, 3, 3),     # H != W
    (1, 1, 5, 5, 1, 1),     # identity window
    (1, 2, 8, 8, 4, 4),
]
GOLDEN = {"max": reference.maxpool2d_int8, "avg": reference.avgpool2d_int8}


def check_pool(core, x, kernel, stride, mode):
    y, total = core.run(x, kernel, stride, mode=mode)
    np.testing.assert_array_equal(y, GOLDEN[mode](x, kernel, stride))
    N, C, H, W = x.shape
    want = cycles.pool_cycles(C, H, W, kernel, stride, core.lanes)
    assert core.last_cycles == [want] * N and total == want * N


@pytest.mark.rtl
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_pool_python_driver(shape, mode, rtl_rng, pool_core):
    N, C, H, W, k, s = shape
    check_pool(pool_core("python"), rtl_rng.integers(-128, 128, (N, C, H, W), dtype=np.int8), k, s, mode)


@pytest.mark.rtl
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_fast_driver_lenet_and_equal_to_python(mode, rtl_rng, pool_core):
    x = rtl_rng.integers(-128, 128, (3, 6, 28, 28), dtype=np.int8)
    fast = pool_core("fast")
    check_pool(fast, x, 2, 2, mode)
    check_pool(fast, x[:, :, :10, :10].copy(), 2, 2, mode)    # LeNet's second pool shape, straight after
    y_fast, c_fast = fast.run(x[:1], 2, mode=mode)
    y_slow, c_slow = pool_core("python").run(x[:1], 2, mode=mode)
    np.testing.assert_array_equal(y_fast, y_slow)
    assert c_fast == c_slow


@pytest.mark.rtl
@pytest.mark.parametrize("driver", ["python", "fast"])
def test_pool_extremes(driver, pool_core):
    core = pool_core(driver)
    for value in (-128, 127, -1, 0):
        x = np.full((1, 2, 6, 6), value, np.int8)
        for mode in ("max", "avg"):
            for k in (2, 3):
                check_pool(core, x, k, k, mode)
    # rounding halves: a window of {-1, 0, 0, 0} averages -0.25 -> 0, {-1, -1, 0, 0} -> -0.5 -> 0 (half up)
    x = np.array([[[[-1, 0, -1, -1], [0, 0, 0, 0]]]], np.int8)
    check_pool(core, x, 2, 2, "avg")


@pytest.mark.rtl
@pytest.mark.parametrize("driver", ["python", "fast"])
def test_pool_average_rounds_exact_ties_half_up(driver, pool_core):
    """Window means that are exact .5 ties, expected bytes worked out by hand (halves go up, towards +inf):
    2x2 windows (x 2**14 / 2**16 = 1/4, exact) and 4x4 windows (1/16, exact)."""
    core = pool_core(driver)
    # 2x2 window sums 2, -2, 6, -6, 254, -254 -> means 0.5, -0.5, 1.5, -1.5, 63.5, -63.5
    x = np.array([[1, 1, -1, -1, 3, 3, -3, -3, 127, 127, -127, -127],
                  [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], np.int8).reshape(1, 1, 2, 12)
    y, _ = core.run(x, 2, 2, mode="avg")
    np.testing.assert_array_equal(y[0, 0, 0], [1, 0, 2, -1, 64, -63])
    # 4x4 window sums 8, -8, 24, -24 -> 0.5, -0.5, 1.5, -1.5
    x = np.zeros((1, 2, 4, 8), np.int8)
    x[0, 0, 0, :4], x[0, 0, 0, 4:] = 2, -2                    # sums 8 and -8
    x[0, 1, 0, :4], x[0, 1, 1, :2] = 4, 4                     # sum 24
    x[0, 1, :, 4:] = -1                                        # 16 * -1 ...
    x[0, 1, 0, 4] = -9                                         # ... - 8 = -24
    y, _ = core.run(x, 4, 4, mode="avg")
    np.testing.assert_array_equal(y[0, :, 0], [[1, 0], [2, -1]])


@pytest.mark.rtl
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_three_lanes(mode, rtl_rng, pool_core):
    """A non-power-of-two lane count: channel groups of 3, the last one partial for C = 4 and 7."""
    core = pool_core("fast", lanes=3)
    for C, H, k, s in ((4, 6, 2, 2), (7, 9, 3, 3), (3, 7, 3, 2), (1, 4, 2, 2)):
        check_pool(core, rtl_rng.integers(-128, 128, (2, C, H, H), dtype=np.int8), k, s, mode)


@pytest.mark.rtl
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_python_driver_channels_fill_the_last_group_exactly(mode, rtl_rng, pool_core):
    """C a multiple of LANES with more than one group (8 = 2 x 4): the walker must stop after the second
    group, not walk a third, empty one (the output and the cycle count both checked against the golden)."""
    core = pool_core("python")
    assert core.lanes == 4
    check_pool(core, rtl_rng.integers(-128, 128, (1, 8, 4, 4), dtype=np.int8), 2, 2, mode)
