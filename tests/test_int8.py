"""The int8 Cython path (cnnx.int8) against the int8 NumPy golden model (cnnx.reference): integers, exact.

Uses the shared `rng` fixture of tests/conftest.py."""

import numpy as np
import pytest

from cnnx import int8, quant, reference

# (N, C, H, W, F, K, stride, padding): 1x1 to 7x7 kernels, stride 1/2, padding 0-2, batch 1, odd sizes
CONV_SHAPES = [
    (1, 1, 5, 5, 1, 1, 1, 0),
    (2, 3, 7, 7, 4, 1, 2, 0),
    (1, 2, 9, 9, 3, 3, 1, 1),
    (3, 3, 9, 9, 5, 3, 2, 1),
    (2, 1, 28, 28, 6, 5, 1, 2),
    (2, 6, 14, 14, 16, 5, 1, 0),
    (1, 2, 11, 11, 2, 7, 2, 2),
    (1, 4, 13, 13, 3, 7, 1, 0),
    (2, 2, 5, 5, 3, 3, 2, 2),
    (1, 1, 3, 3, 2, 5, 1, 1),
]


def _rand_int8(rng, shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def _layer(rng, shape):
    N, C, H, W, F, K, s, p = shape
    x = _rand_int8(rng, (N, C, H, W))
    w = _rand_int8(rng, (F, C, K, K))
    b = rng.integers(-5000, 5000, size=F, dtype=np.int32)
    return x, w, b, s, p


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=str)
@pytest.mark.parametrize("relu", [False, True])
def test_conv2d_int8_matches_reference(shape, relu, rng):
    x, w, b, s, p = _layer(rng, shape)
    rq = quant.multiplier_from_scale(1.0 / (40.0 * shape[1] * shape[5] ** 2), relu=relu)
    np.testing.assert_array_equal(int8.conv2d_acc(x, w, b, s, p), reference.conv2d_acc_int(x, w, b, s, p))
    got = int8.conv2d_int8(x, w, b, rq, s, p)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, reference.conv2d_int8(x, w, b, rq, s, p))


def test_conv2d_floor_mode_matches_reference(rng):
    x = _rand_int8(rng, (2, 2, 10, 10))
    w = _rand_int8(rng, (3, 2, 3, 3))
    b = rng.integers(-100, 100, size=3, dtype=np.int32)
    rq = quant.multiplier_from_scale(1e-3)
    with pytest.raises(ValueError, match="does not fit"):
        int8.conv2d_int8(x, w, b, rq, stride=2)
    np.testing.assert_array_equal(
        int8.conv2d_int8(x, w, b, rq, stride=2, floor_mode=True),
        reference.conv2d_int8(x, w, b, rq, 2, 0, floor_mode=True),
    )


def test_conv2d_all_minus_128_extreme():
    # every product is (-128)*(-128) = 16384: the largest int8 product, summed C*K*K times
    x = np.full((1, 16, 6, 6), -128, np.int8)
    w = np.full((4, 16, 5, 5), -128, np.int8)
    b = np.full(4, 2**20, np.int32)
    acc = int8.conv2d_acc(x, w, b, 1, 1)
    np.testing.assert_array_equal(acc, reference.conv2d_acc_int(x, w, b, 1, 1))
    assert acc.max() == 16 * 25 * 16384 + 2**20
    rq = quant.multiplier_from_scale(1e-6)
    got = int8.conv2d_int8(x, w, b, rq, 1, 1)
    np.testing.assert_array_equal(got, reference.conv2d_int8(x, w, b, rq, 1, 1))


@pytest.mark.parametrize("sign", [1, -1])
def test_conv2d_saturates_both_ways(sign):
    x = np.full((1, 2, 4, 4), 100, np.int8)
    w = np.full((2, 2, 3, 3), sign * 100, np.int8)
    b = np.zeros(2, np.int32)
    rq = quant.multiplier_from_scale(0.5)  # 2*9*10000/2 = 90,000: far outside int8
    got = int8.conv2d_int8(x, w, b, rq)
    np.testing.assert_array_equal(got, reference.conv2d_int8(x, w, b, rq))
    assert (got == (127 if sign > 0 else -128)).all()
    relu = int8.conv2d_int8(x, w, b, quant.multiplier_from_scale(0.5, relu=True))
    assert (relu == (127 if sign > 0 else 0)).all()


def test_conv2d_one_and_two_threads_agree(rng):
    x, w, b, s, p = _layer(rng, (5, 3, 12, 12, 7, 3, 1, 1))
    a1 = int8.conv2d_acc(x, w, b, s, p, n_threads=1)
    a2 = int8.conv2d_acc(x, w, b, s, p, n_threads=2)
    np.testing.assert_array_equal(a1, a2)
    x2 = _rand_int8(rng, (7, 400))
    w2 = _rand_int8(rng, (120, 400))
    np.testing.assert_array_equal(int8.linear_acc(x2, w2, None, 1), int8.linear_acc(x2, w2, None, 2))
    for pool in (int8.maxpool2d_int8, int8.avgpool2d_int8):
        np.testing.assert_array_equal(pool(x, 2, n_threads=1), pool(x, 2, n_threads=2))


LINEAR_SHAPES = [(1, 1, False), (400, 120, True), (120, 84, True), (84, 10, False)]


@pytest.mark.parametrize("n_in,n_out,relu", LINEAR_SHAPES)
def test_linear_int8_matches_reference(n_in, n_out, relu, rng):
    x = _rand_int8(rng, (3, n_in))
    w = _rand_int8(rng, (n_out, n_in))
    b = rng.integers(-10000, 10000, size=n_out, dtype=np.int32)
    rq = quant.multiplier_from_scale(1.0 / (30.0 * n_in), relu=relu)
    np.testing.assert_array_equal(int8.linear_int8(x, w, b, rq), reference.linear_int8(x, w, b, rq))


POOL_SHAPES = [((1, 1, 4, 4), 2, None), ((2, 3, 28, 28), 2, 2), ((1, 2, 9, 9), 3, 3), ((2, 2, 7, 7), 3, 2),
               ((1, 1, 5, 5), 1, 1), ((3, 6, 10, 10), 2, None)]


@pytest.mark.parametrize("shape,k,s", POOL_SHAPES, ids=str)
def test_pools_match_reference(shape, k, s, rng):
    x = _rand_int8(rng, shape)
    np.testing.assert_array_equal(int8.maxpool2d_int8(x, k, s), reference.maxpool2d_int8(x, k, s))
    np.testing.assert_array_equal(int8.avgpool2d_int8(x, k, s), reference.avgpool2d_int8(x, k, s))


def test_pools_extremes():
    x = np.full((1, 1, 4, 4), -128, np.int8)
    assert (int8.maxpool2d_int8(x, 2) == -128).all()
    assert (int8.avgpool2d_int8(x, 2) == -128).all()
    x[:] = 127
    assert (int8.avgpool2d_int8(x, 2) == 127).all()
    x = np.array([[[[1, 2], [2, 2]]]], np.int8)  # mean 1.75 -> 2; and -1.75 -> -2 (half up never involved)
    assert int8.avgpool2d_int8(x, 2)[0, 0, 0, 0] == reference.avgpool2d_int8(x, 2)[0, 0, 0, 0] == 2
    assert int8.avgpool2d_int8(-x, 2)[0, 0, 0, 0] == -2


def test_bad_input_raises(rng):
    x = _rand_int8(rng, (1, 2, 6, 6))
    w = _rand_int8(rng, (3, 2, 3, 3))
    b = np.zeros(3, np.int32)
    rq = quant.multiplier_from_scale(1e-3)
    with pytest.raises(TypeError, match="int8"):
        int8.conv2d_int8(x.astype(np.float32), w, b, rq)
    with pytest.raises(TypeError, match="int32"):
        int8.conv2d_int8(x, w, b.astype(np.int64), rq)
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        int8.conv2d_int8(x, w, np.zeros(4, np.int32), rq)
    with pytest.raises(ValueError, match="expects 2 input channels, input has 3"):
        int8.conv2d_int8(_rand_int8(rng, (1, 3, 6, 6)), w, b, rq)
    with pytest.raises(ValueError, match="4 dimensions"):
        int8.conv2d_int8(x[0], w, b, rq)
    with pytest.raises(ValueError, match="larger than the padded input"):
        int8.conv2d_int8(x, _rand_int8(rng, (3, 2, 9, 9)), b, rq)
    with pytest.raises(ValueError, match="stride"):
        int8.conv2d_int8(x, w, b, rq, stride=0)
    with pytest.raises(ValueError, match="padding"):
        int8.conv2d_int8(x, w, b, rq, padding=-1)
    with pytest.raises(TypeError, match="Requant"):
        int8.conv2d_int8(x, w, b, (100, 10))
    with pytest.raises(TypeError, match="numpy array"):
        int8.conv2d_int8(x.tolist(), w, b, rq)
    with pytest.raises(ValueError, match="input features"):
        int8.linear_int8(_rand_int8(rng, (2, 5)), _rand_int8(rng, (3, 4)), None, rq)
    with pytest.raises(ValueError, match="beyond int32"):
        int8.linear_acc(_rand_int8(rng, (1, 200_000)), _rand_int8(rng, (1, 200_000)))
    with pytest.raises(ValueError, match="pooling window"):
        int8.maxpool2d_int8(x, 4)
    with pytest.raises(ValueError, match="empty"):
        int8.maxpool2d_int8(np.zeros((0, 1, 4, 4), np.int8), 2)


def test_non_contiguous_input_is_accepted(rng):
    x = _rand_int8(rng, (2, 3, 8, 16))[:, :, :, ::2]
    w = _rand_int8(rng, (2, 3, 3, 3))
    rq = quant.multiplier_from_scale(1e-3)
    got = int8.conv2d_int8(x, w, None, rq, 1, 1)
    np.testing.assert_array_equal(got, reference.conv2d_int8(x, w, None, rq, 1, 1))
