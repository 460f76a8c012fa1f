"""The int8 GEMM (cnnx/_kernels/cnnx_int8.h) on every variant, and its fused requantisation epilogue against
the one definition of the rule, `cnnx.quant.requantize` (ties, saturation, ReLU, the int32 extremes).

The variant is picked once per process, so the per-variant runs are child processes with CNNX_INT8_ISA set,
each running tests/test_int8.py (the parametrised shapes against the golden model) and this file."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import hypothesis_examples
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnx import int8, quant, reference

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ("vnni512", "avx2", "portable")
I32_MIN, I32_MAX = np.iinfo(np.int32).min, np.iinfo(np.int32).max


def _requants():
    """(M, S, relu) corners: smallest/largest M and S, scales below and above 1, and normalised ones."""
    out = []
    for mult, shift in [(1, 1), (1, 47), (quant.MULT_MAX, 1), (quant.MULT_MAX, 47), (3, 2), (2**14, 15),
                        (2**14 + 1, 22), (12345, 30), (quant.MULT_MAX, 40), (7, 5)]:
        out += [quant.Requant(mult, shift, False), quant.Requant(mult, shift, True)]
    return out


def _edge_accs(rq: quant.Requant) -> np.ndarray:
    """The int32 extremes, the values around every output step near the saturation points and 0, and ties
    (acc * M + 2**(S-1) an exact multiple of 2**S)."""
    vals = [I32_MIN, I32_MIN + 1, -1, 0, 1, I32_MAX - 1, I32_MAX]
    two_s = 1 << rq.shift
    for y in (-130, -129, -128, -127, -1, 0, 1, 126, 127, 128, 129):
        # the smallest acc with output >= y, and its neighbours
        a = -((-(y * two_s - two_s // 2)) // rq.mult)
        vals += [a - 2, a - 1, a, a + 1]
    for t in range(-5, 6):  # ties: acc * M = (2t + 1) * 2**(S-1)
        num = (2 * t + 1) * (two_s // 2)
        if num % rq.mult == 0:
            vals.append(num // rq.mult)
    v = np.clip(np.array(vals, np.int64), I32_MIN, I32_MAX).astype(np.int32)
    return np.concatenate([v, v[::-1], v[1:]])  # odd lengths: the SIMD bodies and their scalar tails


@pytest.mark.parametrize("rq", _requants(), ids=str)
def test_fused_requantize_matches_quant_at_edges(rq, rng):
    rand = rng.integers(I32_MIN, I32_MAX, 301, dtype=np.int64).astype(np.int32)
    acc = np.concatenate([_edge_accs(rq), rand])
    np.testing.assert_array_equal(int8.requantize(acc, rq), quant.requantize(acc, rq))


@settings(max_examples=hypothesis_examples(60), deadline=None)
@given(mult=st.integers(1, quant.MULT_MAX), shift=st.integers(1, quant.SHIFT_MAX), relu=st.booleans(),
       acc=st.lists(st.integers(I32_MIN, I32_MAX), min_size=1, max_size=70))
def test_fused_requantize_matches_quant_random(mult, shift, relu, acc):
    rq = quant.Requant(mult, shift, relu)
    a = np.array(acc, np.int32)
    np.testing.assert_array_equal(int8.requantize(a, rq), quant.requantize(a, rq))


def test_requantize_input_checks():
    rq = quant.Requant(3, 2)
    with pytest.raises(TypeError, match="int32"):
        int8.requantize(np.zeros(3, np.int64), rq)
    with pytest.raises(TypeError, match="Requant"):
        int8.requantize(np.zeros(3, np.int32), (3, 2))
    assert int8.requantize(np.zeros((0, 2), np.int32), rq).shape == (0, 2)
    np.testing.assert_array_equal(int8.requantize(np.full((2, 3), 4, np.int32), rq), np.full((2, 3), 3))


def test_linear_minus_128_squared_at_the_int32_limit():
    # the longest sum check_acc_range allows, every product (-128) * (-128): acc = 2**31 - 2**14 * 1... exact;
    # with the +128 offset the activations are all 0 and the whole sum is the weight-sum correction
    K = quant.INT32_MAX // (128 * 128)
    x = np.full((3, K), -128, np.int8)
    w = np.full((2, K), -128, np.int8)
    acc = int8.linear_acc(x, w)
    assert (acc == K * 16384).all()
    x[1] = 127  # 127 * -128 * K: the most negative sum
    acc = int8.linear_acc(x, w)
    assert acc[1, 0] == -127 * 128 * K and acc[0, 1] == K * 16384
    rq = quant.Requant(quant.MULT_MAX, 47)
    np.testing.assert_array_equal(int8.linear_int8(x, w, None, rq), quant.requantize(acc, rq))


def test_conv_taps_in_any_order_give_the_golden_sums(rng):
    # kernel widths 1..9: runs of 4 taps and leftovers in every mix (the GEMM's slot order), stride 1 and 2
    for kw in range(1, 10):
        for stride in (1, 2):
            x = rng.integers(-128, 128, (2, 3, 11, 12), dtype=np.int8)
            w = rng.integers(-128, 128, (5, 3, 2, kw), dtype=np.int8)
            b = rng.integers(-9999, 9999, 5, dtype=np.int32)
            got = int8.conv2d_acc(x, w, b, stride, 1, floor_mode=True)
            np.testing.assert_array_equal(got, reference.conv2d_acc_int(x, w, b, stride, 1, floor_mode=True))


def test_wide_images_and_many_filters(rng):
    # more than one 32-column tile per row and a filter count that is not a multiple of the 6-row tile
    x = rng.integers(-128, 128, (2, 2, 9, 41), dtype=np.int8)
    w = rng.integers(-128, 128, (13, 2, 3, 3), dtype=np.int8)
    b = rng.integers(-9999, 9999, 13, dtype=np.int32)
    rq = quant.multiplier_from_scale(1 / 3000, relu=True)
    got = int8.conv2d_int8(x, w, b, rq, 1, 1)
    np.testing.assert_array_equal(got, reference.conv2d_int8(x, w, b, rq, 1, 1))
    xl = rng.integers(-128, 128, (150, 37), dtype=np.int8)  # several blocks of images, a K tail of 1
    wl = rng.integers(-128, 128, (11, 37), dtype=np.int8)
    np.testing.assert_array_equal(int8.linear_int8(xl, wl, None, rq, n_threads=2),
                                  reference.linear_int8(xl, wl, None, rq))


def _cpu_has(variant: str) -> bool:
    env = dict(os.environ, CNNX_INT8_ISA=variant)
    out = subprocess.run([sys.executable, "-c", "from cnnx import int8; print(int8.isa())"], env=env,
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip() == variant


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_matches_the_golden_model(variant):
    """CNNX_INT8_ISA forces one variant in a child process, which runs the int8 tests against the golden
    model (the variant it runs is checked first, so a silent fallback cannot pass for it)."""
    if not _cpu_has(variant):
        pytest.skip(f"this CPU cannot run the {variant} variant")
    env = dict(os.environ, CNNX_INT8_ISA=variant, CNNX_EXPECT_INT8_ISA=variant)
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_int8.py",
         "tests/cpu/test_int8_isa.py", "-k", "not every_variant"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]


def test_expected_variant_is_running():
    """In the children above: the variant asked for is the one this process runs."""
    want = os.environ.get("CNNX_EXPECT_INT8_ISA")
    assert int8.isa() in VARIANTS
    if want:
        assert int8.isa() == want


def test_c_quantize_matches_quant(rng):
    scale = 0.0173
    x = (rng.standard_normal(4099) * 3).astype(np.float32)
    # ties at +-0.5, +-1.5, ... units, the saturation points and the extreme floats
    ties = (np.arange(-130, 130) + 0.5) * scale
    special = [0.0, -0.0, 127.5 * scale, -128.5 * scale, 3e38, -3e38, 1e-45]
    x = np.concatenate([x, ties.astype(np.float32), np.array(special, np.float32)])
    np.testing.assert_array_equal(int8.quantize(x, scale), quant.quantize(x, scale))
    for s in (1.0, 0.5, 2.0**-7, 1 / 3):  # exact ties in float64 with scales that are powers of two
        y = (np.arange(-300, 300, dtype=np.float32) * 0.25).reshape(2, 3, -1)
        np.testing.assert_array_equal(int8.quantize(y, s), quant.quantize(y, s))
    x64 = x.astype(np.float64)[:7]
    np.testing.assert_array_equal(int8.quantize(x64, scale), quant.quantize(x[:7], scale))
    for bad in (np.nan, np.inf, -np.inf):  # non-finite: handed to quant.quantize, which refuses them
        x[5] = bad
        with pytest.raises(ValueError, match="non-finite"):
            quant.quantize(x, scale)
        with pytest.raises(ValueError, match="non-finite"):
            int8.quantize(x, scale)
