"""The conv core (verilog/cnnx_conv_core.v) against the golden model, bit for bit, and the cycle model.

Small layers run on the python driver (clocked from Python), the sweeps on the fast driver; a separate test
checks that the two drivers agree exactly. Shapes: (N, C, H, W, F, KH, KW, stride, padding).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis_profile import hypothesis_examples

from cnnx import cycles, quant, reference

# small: run on the python driver on a 2x2 array (partial tiles on both axes almost everywhere)
SMALL = [
    (1, 1, 1, 1, 1, 1, 1, 1, 0),      # one MAC: K = 1 < ROWS, so every tile idles
    (2, 3, 4, 4, 5, 1, 1, 1, 0),      # 1x1 kernel, F not a multiple of COLS
    (1, 2, 5, 5, 3, 3, 3, 1, 1),      # 3x3, padding 1
    (1, 1, 6, 5, 1, 3, 3, 1, 2),      # padding 2, H != W
    (1, 2, 7, 7, 3, 5, 5, 2, 1),      # 5x5, stride 2
    (1, 3, 4, 7, 2, 2, 3, 2, 0),      # non-square kernel, stride 2
]

# the sweep: fast driver, arrays 4x4 and 8x8
SWEEP = [
    (2, 1, 9, 9, 4, 1, 1, 1, 0),
    (1, 4, 9, 9, 9, 1, 1, 2, 0),
    (2, 3, 9, 9, 6, 3, 3, 1, 0),
    (1, 2, 10, 10, 11, 3, 3, 1, 1),
    (1, 5, 11, 11, 3, 3, 3, 2, 2),
    (2, 1, 12, 12, 6, 5, 5, 1, 2),    # LeNet conv1-like
    (1, 6, 14, 14, 16, 5, 5, 1, 0),   # LeNet conv2
    (1, 3, 13, 13, 8, 5, 5, 2, 1),
    (1, 16, 5, 5, 17, 5, 5, 1, 0),    # a 1x1 output map, K = 400
]


def check_conv(core, rng, shape, conv_layer, **kw):
    N, C, H, W, F, KH, KW, s, p = shape
    x, w, b, rq = conv_layer(rng, N, C, H, W, F, KH, KW, **kw)
    y, total = core.run(x, w, b, rq, stride=s, padding=p)
    np.testing.assert_array_equal(y, reference.conv2d_int8(x, w, b, rq, stride=s, padding=p))
    want = cycles.conv_cycles(C, H, W, F, KH, KW, s, p, core.rows, core.cols)
    assert core.last_cycles == [want] * N
    assert total == want * N
    assert core.last_mac_count == cycles.conv_macs(C, H, W, F, KH, KW, s, p)
    return x, w, b, rq, y


@pytest.mark.rtl
@pytest.mark.parametrize("shape", SMALL, ids=str)
def test_conv_python_driver_2x2(shape, rtl_rng, conv_core, conv_layer):
    check_conv(conv_core(2, 2, "python"), rtl_rng, shape, conv_layer)


@pytest.mark.rtl
@pytest.mark.parametrize("array", [(4, 4), (8, 8)], ids=lambda a: f"{a[0]}x{a[1]}")
@pytest.mark.parametrize("shape", SWEEP, ids=str)
def test_conv_fast_driver_sweep(shape, array, rtl_rng, conv_core, conv_layer):
    check_conv(conv_core(*array, "fast"), rtl_rng, shape, conv_layer)


@pytest.mark.rtl
@pytest.mark.parametrize("shape", SWEEP[:3] + SMALL[2:4], ids=str)
def test_conv_fast_equals_python(shape, rtl_rng, conv_core, conv_layer):
    N, C, H, W, F, KH, KW, s, p = shape
    x, w, b, rq = conv_layer(rtl_rng, N, C, H, W, F, KH, KW)
    fast, slow = conv_core(2, 2, "fast"), conv_core(2, 2, "python")
    y_fast, c_fast = fast.run(x, w, b, rq, s, p)
    y_slow, c_slow = slow.run(x, w, b, rq, s, p)
    np.testing.assert_array_equal(y_fast, y_slow)
    assert (c_fast, fast.last_cycles, fast.last_mac_count) == (c_slow, slow.last_cycles, slow.last_mac_count)
    np.testing.assert_array_equal(y_fast, reference.conv2d_int8(x, w, b, rq, s, p))


@pytest.mark.rtl
@pytest.mark.parametrize("driver", ["python", "fast"])
def test_conv_int8_extremes(driver, conv_core):
    """-128 * -128 everywhere: the largest sums (K * 16384 + bias) and saturation at both ends."""
    core = conv_core(2, 2, driver)
    C, K = 4, 3
    x = np.full((1, C, 5, 5), -128, np.int8)
    w = np.full((3, C, K, K), -128, np.int8)
    w[1] = 127                                         # most negative sum: -128 * 127 * 36
    w[2, :, :, ::2] = 127                              # mixed signs
    b = np.array([2**20, -(2**20), 7], np.int32)
    for rq in (quant.Requant(1, 1), quant.Requant(32767, 47), quant.Requant(32767, 30, relu=True),
               quant.Requant(12345, 20), quant.Requant(1, 47, relu=True)):
        want = reference.conv2d_int8(x, w, b, rq, 1, 1)
        y, _ = core.run(x, w, b, rq, stride=1, padding=1)
        np.testing.assert_array_equal(y, want)
    # the first requantisation saturates both ways: the test really reaches the clamps
    y, _ = core.run(x, w, b, quant.Requant(1, 1), stride=1, padding=1)
    assert (y == 127).any() and (y == -128).any()


@pytest.mark.rtl
def test_conv_largest_accumulator(conv_core):
    """The largest sum the int8 scheme allows through a 1x1 map: 120 channels of 5x5 at -128*-128."""
    core = conv_core(4, 4, "fast")
    x = np.full((1, 120, 5, 5), -128, np.int8)
    w = np.full((2, 120, 5, 5), -128, np.int8)
    w[1] = 127
    b = np.array([2**30, -(2**30)], np.int32)          # 3000 * 16384 + 2**30 < 2**31
    rq = quant.Requant(32767, 47)
    np.testing.assert_array_equal(core.run(x, w, b, rq)[0], reference.conv2d_int8(x, w, b, rq))


@pytest.mark.rtl
@pytest.mark.parametrize("driver", ["python", "fast"])
def test_two_layers_back_to_back_without_reset(driver, rtl_rng, conv_core, conv_layer):
    core = conv_core(2, 2, driver)
    x, w1, b1, rq1 = conv_layer(rtl_rng, 1, 2, 6, 6, 3, 3, 3, relu=True)
    y1, _ = core.run(x, w1, b1, rq1, padding=1)
    np.testing.assert_array_equal(y1, reference.conv2d_int8(x, w1, b1, rq1, padding=1))
    _, w2, b2, rq2 = conv_layer(rtl_rng, 1, 3, 6, 6, 5, 1, 1)
    y2, _ = core.run(y1, w2, b2, rq2)                  # a smaller kernel, more filters, straight after
    np.testing.assert_array_equal(y2, reference.conv2d_int8(y1, w2, b2, rq2))
    y1b, _ = core.run(x, w1, b1, rq1, padding=1)       # and back: nothing of layer 2 lingers
    np.testing.assert_array_equal(y1b, y1)


@pytest.mark.rtl
def test_reset_in_the_middle_then_rerun(rtl_rng, conv_core, conv_layer):
    """Start a layer by hand, reset the core half way, then run a different layer correctly."""
    from cnnx.sim.drivers import SEL_IFMAP, SEL_WEIGHT, _words, conv_registers

    core = conv_core(2, 2, "python")
    be = core._be
    x, w, b, rq = conv_layer(rtl_rng, 1, 3, 6, 6, 4, 3, 3)
    be.config(list(enumerate(conv_registers(3, 6, 6, 4, 3, 3, 1, 0, rq))))
    be.write(SEL_WEIGHT, _words(w))
    be.write(SEL_IFMAP, _words(x[0]))
    be.set("start", 1)
    be.tick(1)
    be.set("start", 0)
    be.tick(60)
    assert be.get("busy") == 1 and be.get("done") == 0
    core.reset()
    assert be.get("busy") == 0 and be.get("done") == 0 and be.get("cycle_count") == 0
    x2, w2, b2, rq2 = conv_layer(rtl_rng, 1, 2, 5, 5, 3, 3, 3)
    y, total = core.run(x2, w2, b2, rq2, padding=1)
    np.testing.assert_array_equal(y, reference.conv2d_int8(x2, w2, b2, rq2, padding=1))
    assert total == cycles.conv_cycles(2, 5, 5, 3, 3, 3, 1, 1, 2, 2)


@pytest.mark.rtl
@pytest.mark.parametrize("array", [(2, 2), (8, 8)], ids=lambda a: f"{a[0]}x{a[1]}")
def test_linear_as_1x1_conv(array, rtl_rng, conv_core):
    core = conv_core(*array, "fast")
    for n_in, n_out in ((400, 120), (120, 84), (84, 10), (3, 1)):
        x = rtl_rng.integers(-128, 128, (3, n_in), dtype=np.int8)
        w = rtl_rng.integers(-128, 128, (n_out, n_in), dtype=np.int8)
        b = rtl_rng.integers(-9999, 9999, n_out, dtype=np.int32)
        rq = quant.multiplier_from_scale(127 / (3 * np.sqrt(n_in) * 128 * 128 / 3), relu=n_out > 10)
        y, total = core.run_linear(x, w, b, rq)
        np.testing.assert_array_equal(y, reference.linear_int8(x, w, b, rq))
        assert total == 3 * cycles.linear_cycles(n_in, n_out, *array)
        assert core.last_mac_count == cycles.linear_macs(n_in, n_out)


@pytest.mark.rtl
@settings(max_examples=hypothesis_examples(40), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    C=st.integers(1, 5), F=st.integers(1, 11), KH=st.integers(1, 5), KW=st.integers(1, 5),
    OH=st.integers(1, 6), OW=st.integers(1, 6), stride=st.integers(1, 3), padding=st.integers(0, 2),
)
def test_conv_random_layers_on_a_3x5_array(data, C, F, KH, KW, OH, OW, stride, padding, conv_core,
                                           conv_layer):
    """Random layers that fit the lecture rule, on a non-square, non-power-of-two array (ROWS != COLS)."""
    H = (OH - 1) * stride + KH - 2 * padding
    W = (OW - 1) * stride + KW - 2 * padding
    assume(H >= 1 and W >= 1)
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    core = conv_core(3, 5, "fast")
    check_conv(core, np.random.default_rng(seed), (2, C, H, W, F, KH, KW, stride, padding), conv_layer)


@pytest.mark.rtl
def test_linear_batch_as_pixels(rtl_rng, conv_core):
    """Dense layers with the batch mapped onto the array rows: same outputs, far fewer cycles per image."""
    core = conv_core(8, 8, "fast")
    x = rtl_rng.integers(-128, 128, (45, 400), dtype=np.int8)     # 20 images fit the 8 KiB input buffer
    w = rtl_rng.integers(-128, 128, (120, 400), dtype=np.int8)
    b = rtl_rng.integers(-9999, 9999, 120, dtype=np.int32)
    rq = quant.multiplier_from_scale(127 / (20 * 128 * 128), relu=True)
    y, total = core.run_linear(x, w, b, rq, batch_as_pixels=True)
    np.testing.assert_array_equal(y, reference.linear_int8(x, w, b, rq))
    want = [cycles.linear_cycles(400, 120, 8, 8, batch=g) for g in (20, 20, 5)]
    assert core.last_cycles == want and total == sum(want)
    assert total < 45 * cycles.linear_cycles(400, 120, 8, 8) / 4


@pytest.mark.rtl
@pytest.mark.parametrize("driver", ["python", "fast"])
def test_conv_requantiser_rounds_exact_ties_half_up(driver, conv_core):
    """Exact .5 ties, which random layers almost never hit, with the expected bytes worked out by hand:
    a 1x1 convolution of weight 1 (acc = x + bias) through Requant(1, 1) halves acc and rounds half up."""
    core = conv_core(2, 2, driver)
    x = np.array([-5, -3, -1, 1, 3, 5, 127, -127], np.int8).reshape(1, 1, 1, 8)
    w = np.ones((2, 1, 1, 1), np.int8)
    b = np.array([0, -2], np.int32)
    y, _ = core.run(x, w, b, quant.Requant(1, 1))
    # filter 0: acc/2 = -2.5 -1.5 -0.5 0.5 1.5 2.5 63.5 -63.5; filter 1: (acc-2)/2 = -3.5 ... -64.5
    np.testing.assert_array_equal(y[0, 0, 0], [-2, -1, 0, 1, 2, 3, 64, -63])
    np.testing.assert_array_equal(y[0, 1, 0], [-3, -2, -1, 0, 1, 2, 63, -64])
    y, _ = core.run(x, w, b, quant.Requant(1, 1, relu=True))
    np.testing.assert_array_equal(y[0, 0, 0], [0, 0, 0, 1, 2, 3, 64, 0])
    # 3 * acc / 4 ties where acc = 2 mod 4: -6 -> -4.5 -> -4, 2 -> 1.5 -> 2, 6 -> 4.5 -> 5, -2 -> -1.5 -> -1
    x = np.array([-6, -2, 2, 6], np.int8).reshape(1, 1, 1, 4)
    y, _ = core.run(x, w[:1], b[:1], quant.Requant(3, 2))
    np.testing.assert_array_equal(y[0, 0, 0], [-4, -1, 2, 5])
    # a tie at a large shift, carried by the bias alone: 2**30 / 2**31 = 0.5 -> 1, -0.5 -> 0
    zero = np.zeros((1, 1, 1, 2), np.int8)
    y, _ = core.run(zero, w, np.array([2**30, -(2**30)], np.int32), quant.Requant(1, 31))
    np.testing.assert_array_equal(y[0, :, 0, 0], [1, 0])
