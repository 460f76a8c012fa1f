"""verilog/cnnx_requant.v on its own against cnnx.quant.requantize, value for value.

The module is built as its own Verilator top (cnnx.sim.builder) and clocked from Python, one value per
cycle through its pipeline. Exhaustive where the space is small (every sum in a window for every shift),
targeted where it is not: exact .5 ties of both signs (round half up: -2.5 -> -2, 2.5 -> 3), the values
either side of both saturation points, the largest products (int32 extremes times MULT_MAX), ReLU.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnx import quant

LATENCY = 10  # verilog/cnnx_requant.v's stages


class RequantModel:
    """The pyverilator model of cnnx_requant, fed one (acc, bias) pair per cycle."""

    def __init__(self):
        from cnnx.sim import builder
        from cnnx.sim.drivers import _PythonBackend

        self.be = _PythonBackend(builder.build("cnnx_requant"))
        be = self.be
        be.set("in_valid", 0)
        be.set("rst", 1)
        be._tick()
        be.set("rst", 0)

    def run(self, acc, bias, rq: quant.Requant) -> np.ndarray:
        """int8 results of `acc + bias` under `rq`, in order, checking the valid flag and the tag."""
        be = self.be
        be.set("mult", rq.mult)
        be.set("shift", rq.shift)
        be.set("relu", int(rq.relu))
        acc = [int(a) & 0xFFFFFFFF for a in np.asarray(acc, np.int64).ravel()]
        bias = [int(b) & 0xFFFFFFFF for b in np.asarray(bias, np.int64).ravel()]
        out = []
        n = len(acc)
        for i in range(n + LATENCY):
            feeding = i < n
            be.set("in_valid", int(feeding))
            be.set("acc", acc[i] if feeding else 0)
            be.set("bias", bias[i] if feeding else 0)
            be.set("tag_in", i & 1)
            be._tick()
            if i >= LATENCY - 1 and len(out) < n:
                assert be.get("out_valid") == 1
                assert be.get("tag_out") == (i - LATENCY + 1) & 1
                out.append(be.get("y"))
            elif i < LATENCY - 1:
                assert be.get("out_valid") == 0
        be.set("in_valid", 0)
        be._tick()
        assert be.get("out_valid") == 0
        return np.array(out, np.uint8).view(np.int8)


@pytest.fixture(scope="module")
def requant_model():
    return RequantModel()


def _check(model, acc, bias, rq):
    acc = np.asarray(acc, np.int64)
    bias = np.asarray(bias, np.int64)
    want = quant.requantize(acc + bias, rq)
    got = model.run(acc, bias, rq)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{rq}: {bad.size} mismatches, first at acc={acc[bad[0]]} bias={bias[bad[0]]}: "
                           f"got {got[bad[0]]}, want {want[bad[0]]}")


@pytest.mark.rtl
@pytest.mark.parametrize("relu", [False, True])
def test_requant_every_sum_in_a_window_for_every_shift(requant_model, relu):
    """All sums in [-600, 600] (both saturation points of small shifts, every tie) for S = 1 ... 47."""
    s = np.arange(-600, 601)
    for shift in range(1, quant.SHIFT_MAX + 1):
        mult = 1 if shift < 4 else min(quant.MULT_MAX, 3 << (shift - 4))   # results spread over int8
        _check(requant_model, s, np.zeros_like(s), quant.Requant(mult, shift, relu))


@pytest.mark.rtl
def test_requant_exact_ties_round_half_up(requant_model):
    """x.5 goes up for both signs: 2.5 -> 3, -2.5 -> -2, -0.5 -> 0 (not -1: that is round half down)."""
    rng = np.random.default_rng(7)
    for shift in (1, 2, 5, 13, 16, 17, 30, 40, 47):
        half = 1 << (shift - 1)
        k = np.arange(-130, 130)
        acc = (2 * k + 1) * half                            # with M = 1: exactly k + 0.5
        ok = (acc >= quant.INT32_MIN) & (acc <= quant.INT32_MAX)
        acc = acc[ok]
        acc = np.concatenate([acc, acc - 1, acc + 1])       # and either side of each tie
        acc = acc[(acc >= quant.INT32_MIN) & (acc <= quant.INT32_MAX)]
        bias = rng.integers(-3, 4, acc.size)
        _check(requant_model, acc - bias, bias, quant.Requant(1, shift))
    y = requant_model.run(np.array([-5, -3, -1, 1, 3, 5]), np.zeros(6, np.int64), quant.Requant(1, 1))
    np.testing.assert_array_equal(y, [-2, -1, 0, 1, 2, 3])


@pytest.mark.rtl
def test_requant_saturation_both_ends_and_relu(requant_model):
    rng = np.random.default_rng(8)
    for mult, shift in ((1, 1), (32767, 47), (12345, 20), (16384, 22), (32767, 16), (3, 9)):
        for relu in (False, True):
            rq = quant.Requant(mult, shift, relu)
            # the sums where the result crosses 127 -> saturated and -128 -> saturated
            edges = []
            for target in (127.5, -128.5, 0.5, -0.5):
                centre = int(np.floor(target * 2**shift / mult))
                edges.extend(range(centre - 3, centre + 4))
            edges = np.clip(np.array(edges, np.int64), quant.INT32_MIN, quant.INT32_MAX)
            extremes = np.array([quant.INT32_MIN, quant.INT32_MIN + 1, -1, 0, 1, quant.INT32_MAX - 1,
                                 quant.INT32_MAX], np.int64)
            acc = np.concatenate([edges, extremes, rng.integers(quant.INT32_MIN, quant.INT32_MAX, 300)])
            _check(requant_model, acc, np.zeros_like(acc), rq)
    # the clamps are really reached, and ReLU really clips
    y = requant_model.run(np.array([2**31 - 1, -(2**31)]), np.zeros(2, np.int64), quant.Requant(1, 1))
    np.testing.assert_array_equal(y, [127, -128])
    y = requant_model.run(np.array([-(2**31), -7]), np.zeros(2, np.int64), quant.Requant(1, 1, relu=True))
    np.testing.assert_array_equal(y, [0, 0])


@pytest.mark.rtl
def test_requant_random_sums_with_bias(requant_model):
    """Random (acc, bias) pairs whose sum stays in int32, random (M, S): the bias is added before rounding."""
    rng = np.random.default_rng(9)
    for _ in range(12):
        rq = quant.Requant(int(rng.integers(1, quant.MULT_MAX + 1)), int(rng.integers(1, 48)),
                           bool(rng.integers(0, 2)))
        acc = rng.integers(-(2**30), 2**30, 400)
        bias = rng.integers(-(2**30), 2**30, 400)
        _check(requant_model, acc, bias, rq)
