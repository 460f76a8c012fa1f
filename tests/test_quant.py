"""The int8 requantisation against an oracle that shares no code with it.

Each row of TABLE is (acc, M, S, relu) -> the int8 result, worked out by hand (the comment shows the exact
value acc*M/2**S); `exact_requant` re-derives every row with `fractions.Fraction` (round to nearest, an exact
half going up towards +inf, then ReLU, then saturation), so a typo in the table cannot hide a bug either.
Both implementations, `cnnx.quant.requantize` (used by the Cython int8 path) and `cnnx.reference.requantize`
(the golden model's own), must give every row exactly. The rows cover: exact .5 ties on both signs (which
random multipliers almost never produce), values just either side of a tie, saturation at both ends, ReLU,
and the extremes of each field (acc at int32's ends, M = 1 and MULT_MAX, S = 1 and SHIFT_MAX).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from cnnx import quant, reference
from cnnx.quant import INT32_MAX, INT32_MIN, MULT_MAX, SHIFT_MAX, Requant

IMPLEMENTATIONS = {"quant": quant.requantize, "reference": reference.requantize}

TABLE = [
    # acc, M, S, relu -> int8        exact acc*M/2**S
    # ties: +x.5 rounds up, -x.5 rounds up too (towards +inf)
    (1, 1, 1, False, 1),              # 0.5
    (-1, 1, 1, False, 0),             # -0.5
    (3, 1, 1, False, 2),              # 1.5
    (-3, 1, 1, False, -1),            # -1.5
    (5, 1, 1, False, 3),              # 2.5 (not to even)
    (-5, 1, 1, False, -2),            # -2.5
    (6, 3, 2, False, 5),              # 18/4 = 4.5
    (-6, 3, 2, False, -4),            # -4.5
    (2, 16384, 16, False, 1),         # 2 * 2**14 / 2**16 = 0.5: the avg-pool 2x2 multiplier
    (-2, 16384, 16, False, 0),        # -0.5
    (-6, 16384, 16, False, -1),       # -1.5
    (2**30, 1, 31, False, 1),         # 0.5 at a large shift
    (-(2**30), 1, 31, False, 0),      # -0.5
    (253, 1, 1, False, 127),          # 126.5 -> 127 (still in range)
    (-255, 1, 1, False, -127),        # -127.5 -> -127
    (-257, 1, 1, False, -128),        # -128.5 -> -128
    # just either side of a tie
    (11, 1, 2, False, 3),             # 2.75
    (9, 1, 2, False, 2),              # 2.25
    (-9, 1, 2, False, -2),            # -2.25
    (-11, 1, 2, False, -3),           # -2.75
    (32767, 1, 16, False, 0),         # 0.49998...
    (32769, 1, 16, False, 1),         # 0.50002...
    (-32769, 1, 16, False, -1),       # -0.50002...
    (-32767, 1, 16, False, 0),        # -0.49998...
    # saturation at both ends
    (255, 1, 1, False, 127),          # 127.5 -> 128 -> 127
    (256, 1, 1, False, 127),          # 128
    (-258, 1, 1, False, -128),        # -129
    (-259, 1, 1, False, -128),        # -129.5 -> -129 -> -128
    (1000, 1000, 1, False, 127),
    (-1000, 1000, 1, False, -128),
    # ReLU: after rounding, before saturation
    (-1, 1, 1, True, 0),              # -0.5 -> 0 -> 0
    (-3, 1, 1, True, 0),              # -1.5 -> -1 -> 0
    (1, 1, 1, True, 1),               # 0.5 -> 1
    (-(2**31), MULT_MAX, 1, True, 0),
    (INT32_MAX, MULT_MAX, 1, True, 127),
    (0, 1, 1, True, 0),
    # field extremes
    (0, MULT_MAX, SHIFT_MAX, False, 0),
    (INT32_MAX, MULT_MAX, SHIFT_MAX, False, 0),   # 0.49998...: the largest product still rounds to 0
    (INT32_MIN, MULT_MAX, SHIFT_MAX, False, 0),   # -0.49998... -> 0
    (INT32_MIN, MULT_MAX, 30, False, -128),       # -2 * 32767: deep saturation
    (INT32_MAX, 1, SHIFT_MAX, False, 0),
    (INT32_MAX, MULT_MAX, 1, False, 127),         # the largest product, 2**46 - ...
    (INT32_MIN, MULT_MAX, 1, False, -128),        # the most negative one
    (INT32_MIN, 1, 24, False, -128),              # exactly -128
    (INT32_MIN, 1, 25, False, -64),               # exactly -64
    (INT32_MAX, 1, 24, False, 127),               # 127.99999994 -> 128 -> 127
    (INT32_MAX, 1, 25, False, 64),                # 63.99999997 -> 64
    (127, 1, 1, False, 64),                       # 63.5 -> 64
    (1, MULT_MAX, 15, False, 1),                  # 0.99997 -> 1
    (1, MULT_MAX, 16, False, 0),                  # 0.49998 -> 0
    (-1, MULT_MAX, 16, False, 0),                 # -0.49998 -> 0
    (-1, MULT_MAX, 15, False, -1),                # -0.99997 -> -1
]


def exact_requant(acc: int, m: int, s: int, relu: bool) -> int:
    """The int8 rule from its definition, in exact rationals: nearest integer, halves up."""
    v = Fraction(acc * m, 2**s)
    y = math.floor(v + Fraction(1, 2))
    if relu:
        y = max(y, 0)
    return min(max(y, -128), 127)


@pytest.mark.parametrize("row", TABLE, ids=lambda r: f"acc={r[0]},M={r[1]},S={r[2]},relu={r[3]}")
def test_table_is_right(row):
    acc, m, s, relu, want = row
    assert exact_requant(acc, m, s, relu) == want


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
def test_requantize_table(impl):
    f = IMPLEMENTATIONS[impl]
    wrong = []
    for acc, m, s, relu, want in TABLE:
        got = f(np.array([acc], np.int64), Requant(m, s, relu))
        assert got.dtype == np.int8 and got.shape == (1,)
        if int(got[0]) != want:
            wrong.append(f"acc={acc} M={m} S={s} relu={relu}: got {int(got[0])}, want {want}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
def test_requantize_every_tie_of_a_small_shift(impl):
    """Every accumulator in [-600, 600] at S = 1..3 and a few M, against the exact oracle: every tie and
    both saturation edges are in that range."""
    f = IMPLEMENTATIONS[impl]
    acc = np.arange(-600, 601, dtype=np.int32)
    for m in (1, 3, 5):
        for s in (1, 2, 3):
            for relu in (False, True):
                want = np.array([exact_requant(int(a), m, s, relu) for a in acc], np.int8)
                np.testing.assert_array_equal(f(acc, Requant(m, s, relu)), want)


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
def test_requantize_random_against_fraction(impl, rng):
    """Random (acc, M, S) across the whole field ranges, checked against the exact oracle."""
    f = IMPLEMENTATIONS[impl]
    for _ in range(40):
        m = int(rng.integers(1, MULT_MAX + 1))
        s = int(rng.integers(1, SHIFT_MAX + 1))
        relu = bool(rng.integers(0, 2))
        # scale the accumulators so the result lands around the int8 range for this (M, S)
        reach = min(INT32_MAX, max(1, (200 << s) // m))
        acc = rng.integers(-reach, reach + 1, 64)
        want = np.array([exact_requant(int(a), m, s, relu) for a in acc], np.int8)
        np.testing.assert_array_equal(f(acc, Requant(m, s, relu)), want, err_msg=f"M={m} S={s} relu={relu}")


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
def test_requantize_refuses(impl):
    f = IMPLEMENTATIONS[impl]
    with pytest.raises(TypeError, match="integer accumulator"):
        f(np.array([0.5]), Requant(1, 1))
    beyond = np.array([INT32_MAX + 1, INT32_MIN - 1], np.int64)
    if impl == "reference":  # the golden model takes what the scheme produces: int32 accumulators only
        for a in beyond:
            with pytest.raises(ValueError, match="int32"):
                f(np.array([a]), Requant(1, 1))
    else:  # quant.requantize saturates any integer exactly, never wraps (issue 11, item 15)
        np.testing.assert_array_equal(f(beyond, Requant(1, 1)), [127, -128])
        np.testing.assert_array_equal(f(np.array([2**64 - 1], np.uint64), Requant(1, 1)), [127])
    assert f(np.zeros((0, 3), np.int32), Requant(1, 1)).shape == (0, 3)


def test_requant_fields():
    assert Requant(np.int64(3), np.int32(2), 1) == Requant(3, 2, True)
    assert Requant(3, 2).scale == 0.75
    for bad in (0, MULT_MAX + 1, -1):
        with pytest.raises(ValueError, match="mult"):
            Requant(bad, 1)
    for bad in (0, SHIFT_MAX + 1):
        with pytest.raises(ValueError, match="shift"):
            Requant(1, bad)
    for bad in (1.0, True, "1"):
        with pytest.raises(TypeError, match="mult"):
            Requant(bad, 1)
        with pytest.raises(TypeError, match="shift"):
            Requant(1, bad)


@pytest.mark.parametrize("real, mult, shift", [
    (0.5, 2**14, 15),                   # M normalised into [2**14, 2**15)
    (0.25, 2**14, 16),
    (1.0, 2**14, 14),
    (1 / 3, 21845, 16),                 # round(2**16 / 3) = 21845
    (1 / 9, 29127, 18),                 # round(2**18 / 9) = 29127.1 -> 29127
    (2**-50, 1, SHIFT_MAX),             # too small: S stays at SHIFT_MAX, M rounds to 0 and is kept at 1
    (2**-40, 128, SHIFT_MAX),           # small: S = SHIFT_MAX, M = 2**7 (not normalised)
    (2.0**13, 2**14, 1),                # the largest power of two that fits
])
def test_multiplier_from_scale(real, mult, shift):
    rq = quant.multiplier_from_scale(real, relu=True)
    assert (rq.mult, rq.shift, rq.relu) == (mult, shift, True)


def test_multiplier_from_scale_refuses():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive finite"):
            quant.multiplier_from_scale(bad)
    with pytest.raises(ValueError, match="too large"):
        quant.multiplier_from_scale(2.0**14)


@pytest.mark.parametrize("window, mult, shift", [(1, 2**14, 14), (4, 2**14, 16), (9, 29127, 18),
                                                 (16, 2**14, 18), (25, 20972, 19)])
def test_avg_pool_multiplier(window, mult, shift):
    rq = quant.avg_pool_multiplier(window)
    assert (rq.mult, rq.shift, rq.relu) == (mult, shift, False)


def test_avg_pool_multiplier_refuses():
    for bad in (0, -4, 2.0, True, "4"):
        with pytest.raises(ValueError, match="window"):
            quant.avg_pool_multiplier(bad)


def test_check_acc_range():
    n = INT32_MAX // (128 * 128)           # the most terms that fit
    quant.check_acc_range(n)
    quant.check_acc_range(n, np.array([INT32_MAX - n * 128 * 128], np.int64))
    with pytest.raises(ValueError, match="beyond int32"):
        quant.check_acc_range(n + 1)
    with pytest.raises(ValueError, match="beyond int32"):
        quant.check_acc_range(n, np.array([0, -(INT32_MAX - n * 128 * 128 + 1)], np.int64))
    quant.check_acc_range(n, np.zeros(0))


def test_quantize_rounds_half_to_even_and_saturates():
    got = quant.quantize([0.5, 1.5, 2.5, -0.5, -1.5, 126.6, 200.0, -200.0, -128.4], 1.0)
    np.testing.assert_array_equal(got, np.array([0, 2, 2, 0, -2, 127, 127, -128, -128], np.int8))
    np.testing.assert_array_equal(quant.quantize([0.3, -0.3], 0.1), np.array([3, -3], np.int8))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="scale"):
            quant.quantize([1.0], bad)


def test_quantize_bias_dequantize_symmetric_scale():
    np.testing.assert_array_equal(quant.quantize_bias([1.0, -0.25, 1e12], 0.5, 0.25),
                                  np.array([8, -2, INT32_MAX], np.int32))
    np.testing.assert_array_equal(quant.dequantize(np.array([-128, 0, 127], np.int8), 0.5),
                                  np.array([-64.0, 0.0, 63.5], np.float32))
    assert quant.symmetric_scale([-2.54, 1.0]) == pytest.approx(2.54 / 127)
    assert quant.symmetric_scale(np.arange(101.0), percentile=50) == pytest.approx(50 / 127)
    assert quant.symmetric_scale([0.0, 0.0]) == 1 / 127
    assert quant.symmetric_scale([]) == 1 / 127
