"""Pooling (max, average, sum, L2): Cython float32 vs the float64 golden model, forward and backward; golden
gradients vs finite differences; max-pool ties; the lectures' 2x2 average-reduction example."""

import numpy as np
import pytest

from cnnx import functional as F
from cnnx import reference as ref

# (N, C, H, W, kernel, stride): default stride, overlapping windows, odd/non-square, batch 1, 1x1 windows
POOL_SHAPES = [
    (2, 6, 28, 28, 2, None),
    (2, 16, 10, 10, 2, None),
    (1, 3, 7, 7, 3, 2),
    (3, 2, 9, 5, 3, 1),
    (1, 1, 5, 7, (1, 3), (2, 2)),
    (2, 2, 4, 6, 1, None),
    (1, 4, 8, 8, (2, 4), (3, 2)),
]

POOLS = {
    "max": (F.max_pool2d, ref.max_pool2d),
    "avg": (F.avg_pool2d, ref.avg_pool2d),
    "sum": (F.sum_pool2d, ref.sum_pool2d),
    "l2": (lambda x, k, s: F.lp_pool2d(x, 2, k, s), lambda x, k, s: ref.lp_pool2d(x, 2, k, s)),
}


def _cy_backward(kind, dy, x, k, s):
    if kind == "max":
        _, idx = F.max_pool2d(x, k, s, return_indices=True)
        return F.max_pool2d_backward(dy, idx, x.shape)
    if kind == "avg":
        return F.avg_pool2d_backward(dy, x.shape, k, s)
    if kind == "sum":
        return F.sum_pool2d_backward(dy, x.shape, k, s)
    return F.lp_pool2d_backward(dy, x, F.lp_pool2d(x, 2, k, s), 2, k, s)


def _ref_backward(kind, dy, x, k, s):
    if kind == "l2":
        return ref.lp_pool2d_backward(dy, x, 2, k, s)
    return {"max": ref.max_pool2d_backward, "avg": ref.avg_pool2d_backward,
            "sum": ref.sum_pool2d_backward}[kind](dy, x, k, s)


@pytest.mark.parametrize("kind", list(POOLS))
@pytest.mark.parametrize("shape", POOL_SHAPES, ids=str)
def test_pool_forward_and_backward_match_golden(kind, shape, rng, layer_check):
    N, C, H, W, k, s = shape
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    cy, golden = POOLS[kind]
    y = cy(x, k, s)
    assert y.dtype == np.float32
    layer_check(y, golden(x, k, s), what=f"{kind} forward")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    layer_check(_cy_backward(kind, dy, x, k, s), _ref_backward(kind, dy, x, k, s), what=f"{kind} backward")


@pytest.mark.parametrize("kind", list(POOLS))
@pytest.mark.parametrize("hw, k, s", [((6, 8), 2, None), ((7, 9), 3, 2), ((5, 7), (2, 3), (1, 2))], ids=str)
def test_golden_pool_backward_matches_finite_differences(kind, hw, k, s, rng, fd_grad, tol, layer_check):
    # distinct, well-separated values: max pooling is differentiable away from ties
    x = rng.permutation(4 * hw[0] * hw[1]).reshape(2, 2, *hw).astype(np.float64) / 10 + 0.5
    golden = POOLS[kind][1]
    r = rng.standard_normal(golden(x, k, s).shape)

    def loss():
        return float((golden(x, k, s) * r).sum())

    layer_check(_ref_backward(kind, r, x, k, s), fd_grad(loss, x), rtol=tol.fd_rtol, atol=tol.fd_atol,
                what=f"{kind} dx")


@pytest.mark.parametrize("k, s", [(2, 2), (3, 3), (2, 1)], ids=["2x2/2 (C path)", "3x3/3", "2x2/1"])
def test_max_pool_ties_go_to_the_first_on_every_kernel_path(k, s):
    """2x2/2 runs the vectorised C kernel, other windows the generic loop: both keep the first maximum."""
    x = np.zeros((1, 2, 6, 6), np.float32)  # all ties: every window's argmax is its top-left element
    x[0, 1] = np.arange(36).reshape(6, 6) % 3  # ties among the 2s inside most windows
    y, idx = F.max_pool2d(x, k, stride=s, return_indices=True)
    np.testing.assert_array_equal(y, ref.max_pool2d(x, k, stride=s))
    dy = np.arange(1, y.size + 1, dtype=np.float32).reshape(y.shape)
    dx = F.max_pool2d_backward(dy, idx, x.shape)
    np.testing.assert_array_equal(dx, ref.max_pool2d_backward(dy, x, k, stride=s))  # gradient to the first
    oh = np.arange(y.shape[2])[:, None] * s
    ow = np.arange(y.shape[3])[None, :] * s
    np.testing.assert_array_equal(idx[0, 0], oh * 6 + ow)  # channel 0: the window's own first element


def test_max_pool_ties_go_to_the_first_in_row_major_order():
    x = np.array([[[[1, 3, 0, 0],
                    [3, 2, 0, 0]]]], np.float32)  # window 1: 3 at (0,1) and (1,0); window 2: all zero
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(y, [[[[3, 0]]]])
    np.testing.assert_array_equal(idx, [[[[1, 2]]]])  # flat ih*W + iw: (0,1) -> 1, (0,2) -> 2
    dx = F.max_pool2d_backward(np.array([[[[10, 20]]]], np.float32), idx, x.shape)
    np.testing.assert_array_equal(dx, [[[[0, 10, 20, 0], [0, 0, 0, 0]]]])
    np.testing.assert_array_equal(dx, ref.max_pool2d_backward([[[[10, 20]]]], x, 2))


def test_overlapping_max_pool_accumulates_gradients(layer_check):
    x = np.zeros((1, 1, 3, 3), np.float32)
    x[0, 0, 1, 1] = 5  # the centre is the max of all four overlapping 2x2 windows
    y, idx = F.max_pool2d(x, 2, 1, return_indices=True)
    dx = F.max_pool2d_backward(np.ones_like(y), idx, x.shape)
    assert dx[0, 0, 1, 1] == 4 and dx.sum() == 4


def test_l2_pool_gradient_is_zero_on_an_all_zero_window(tol):
    x = np.zeros((1, 1, 2, 4), np.float32)
    x[0, 0, :, 2:] = [[3, 4], [0, 0]]
    y = F.lp_pool2d(x, 2, 2)
    np.testing.assert_array_equal(y, [[[[0, 5]]]])
    dx = F.lp_pool2d_backward(np.ones_like(y), x, y, 2, 2)
    np.testing.assert_allclose(dx, [[[[0, 0, 0.6, 0.8], [0, 0, 0, 0]]]], rtol=tol.hand_rtol)


def test_lecture_average_reduction_example():
    """The FPGA lecture's 2x2 averaging of a 4x4 image (seeds/000). The slide prints 86, 120, 81, 153, a
    slip: its own grid gives (100+66+110+240)/4 = 516/4 = 129 for the first block. We follow the arithmetic;
    with the lecture's floor mapping the pixels are 129, 77, 124, 111."""
    image = np.array([[100, 66, 88, 93],
                      [110, 240, 10, 120],
                      [88, 39, 70, 130],
                      [160, 210, 133, 111]], np.float32)[None, None]
    avg = F.avg_pool2d(image, 2)[0, 0]
    np.testing.assert_array_equal(avg, [[129, 77.75], [124.25, 111]])  # exact in float32
    np.testing.assert_array_equal(F.sum_pool2d(image, 2)[0, 0], [[516, 311], [497, 444]])
    np.testing.assert_array_equal(np.floor(avg), [[129, 77], [124, 111]])
