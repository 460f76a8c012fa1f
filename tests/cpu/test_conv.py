"""conv2d: Cython float32 kernel vs the float64 golden model (forward and backward), golden gradients vs
finite differences, and the lectures' worked example."""

import numpy as np
import pytest

from cnnx import functional as F
from cnnx import reference as ref

# (N, C, H, W, F, kernel, stride, padding): stride > 1, padding, 1x1 and 7x7 kernels, batch 1, odd and
# non-square inputs and kernels, the LeNet-5 shapes.
CONV_SHAPES = [
    (2, 1, 28, 28, 6, 5, 1, 2),
    (2, 6, 14, 14, 16, 5, 1, 0),
    (1, 3, 7, 7, 4, 1, 1, 0),
    (2, 2, 9, 9, 3, 7, 1, 1),
    (3, 2, 9, 11, 5, 3, 2, 1),
    (1, 4, 13, 7, 2, (3, 1), (2, 3), (0, 0)),
    (2, 3, 5, 8, 3, (2, 4), 1, (1, 2)),
    (1, 1, 4, 4, 1, 2, 2, 0),
    (2, 5, 6, 6, 7, 3, 3, 0),
    (1, 2, 3, 3, 2, 5, 1, 1),
]


def _data(rng, shape, bias=True):
    N, C, H, W, Fo, k, s, p = shape
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((Fo, C, kh, kw)).astype(np.float32)
    b = rng.standard_normal(Fo).astype(np.float32) if bias else None
    return x, w, b, s, p


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_forward_matches_golden(shape, bias, rng, layer_check):
    x, w, b, s, p = _data(rng, shape, bias)
    got = F.conv2d(x, w, b, stride=s, padding=p)
    assert got.dtype == np.float32
    layer_check(got, ref.conv2d(x, w, b, s, p))


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=str)
def test_conv2d_backward_matches_golden(shape, rng, layer_check, tol):
    x, w, b, s, p = _data(rng, shape)
    y = F.conv2d(x, w, b, stride=s, padding=p)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = F.conv2d_backward(dy, x, w, stride=s, padding=p)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, s, p)
    layer_check(dx, rdx, what="dx")
    # dw and db sum over the whole batch and every position: up to ~1500 terms here
    layer_check(dw, rdw, atol=tol.float_atol_long_sum, what="dw")
    layer_check(db, rdb, atol=tol.float_atol_long_sum, what="db")


def test_conv2d_backward_without_dx(rng, layer_check):
    x, w, b, s, p = _data(rng, CONV_SHAPES[4])
    dy = rng.standard_normal(F.conv2d(x, w, b, s, p).shape).astype(np.float32)
    dx, dw, db = F.conv2d_backward(dy, x, w, s, p, need_dx=False)
    assert dx is None
    _, dw2, db2 = F.conv2d_backward(dy, x, w, s, p)
    np.testing.assert_array_equal(dw, dw2)
    np.testing.assert_array_equal(db, db2)


FD_SHAPES = [(2, 2, 5, 6, 3, 3, 1, 1), (1, 2, 7, 5, 2, (3, 2), (2, 1), (1, 0))]


@pytest.mark.parametrize("shape", FD_SHAPES, ids=str)
def test_golden_conv2d_backward_matches_finite_differences(shape, rng, fd_grad, tol, layer_check):
    N, C, H, W, Fo, k, s, p = shape
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((Fo, C, kh, kw))
    b = rng.standard_normal(Fo)
    r = rng.standard_normal(ref.conv2d(x, w, b, s, p).shape)  # L = sum(y * r), so dL/dy = r

    def loss():
        return float((ref.conv2d(x, w, b, s, p) * r).sum())

    dx, dw, db = ref.conv2d_backward(r, x, w, s, p)
    for name, got, arr in (("dx", dx, x), ("dw", dw, w), ("db", db, b)):
        layer_check(got, fd_grad(loss, arr), rtol=tol.fd_rtol, atol=tol.fd_atol, what=name)


def test_float64_input_is_converted(rng, layer_check):
    x, w, b, s, p = _data(rng, CONV_SHAPES[2])
    got = F.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), s, p)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, F.conv2d(x, w, b, s, p))


def test_floor_mode_drops_the_last_partial_window(rng, layer_check):
    x = rng.standard_normal((1, 1, 6, 6)).astype(np.float32)
    w = rng.standard_normal((1, 1, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="stride 2"):
        F.conv2d(x, w, stride=2)
    got = F.conv2d(x, w, stride=2, floor_mode=True)
    assert got.shape == (1, 1, 2, 2)
    layer_check(got, ref.conv2d(x, w, None, 2, 0, floor_mode=True))


def test_lecture_convolution_example():
    """The 2x2-kernel example of the FPGA lecture (seeds/000): kernel [[-0.5, 1], [1, -0.5]] moved over the
    4x4 image without overlap. Raw sums 250, 67.5 / 138, 312.5; the lecture maps them to pixels with
    max(0, min(255, floor(k))) -> 250, 67 / 138, 255."""
    image = np.array([[20, 120, 45, 140],
                      [180, 80, 10, 120],
                      [122, 39, 70, 200],
                      [170, 20, 153, 11]], np.float32)[None, None]
    kernel = np.array([[-0.5, 1], [1, -0.5]], np.float32)[None, None]
    raw = F.conv2d(image, kernel, stride=2)[0, 0]
    np.testing.assert_array_equal(raw, [[250, 67.5], [138, 312.5]])  # exact: halves and integers
    pixels = np.maximum(0, np.minimum(255, np.floor(raw)))
    np.testing.assert_array_equal(pixels, [[250, 67], [138, 255]])
