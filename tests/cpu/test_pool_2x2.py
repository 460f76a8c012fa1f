"""The vectorised 2 x 2, stride 2 float max pool (cnnx/_kernels/cnnx_pool.h) against the golden model and the
general kernel: values, and arg-max ties going to the first element in row-major window order."""

import numpy as np
import pytest

from cnnx import functional as F
from cnnx import reference as ref
from cnnx._kernels import _pool


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (1, 2, 9, 11), (3, 1, 2, 2), (1, 1, 10, 19), (2, 2, 5, 7)])
def test_maxpool_2x2_matches_golden_with_ties(shape, rng):
    x = rng.integers(-2, 3, shape).astype(np.float32)  # five values: most windows hold ties
    y, idx = F.max_pool2d(x, 2, floor_mode=True, return_indices=True)
    np.testing.assert_array_equal(y, ref.max_pool2d(x, 2, floor_mode=True))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = F.max_pool2d_backward(dy, idx, x.shape)
    np.testing.assert_array_equal(dx, ref.max_pool2d_backward(dy, x, 2, floor_mode=True).astype(np.float32))


def test_maxpool_2x2_equals_general_kernel_with_nan_and_signed_zero(rng):
    x = rng.standard_normal((5, 12, 18)).astype(np.float32)
    x[0, :4, :4] = np.nan
    x[1, ::2, ::3] = -0.0
    x[1, 1::2, 1::3] = 0.0
    x[2, :, :] = np.where(rng.random((12, 18)) < 0.3, np.inf, -np.inf)
    got_o, got_a = np.empty((5, 6, 9), np.float32), np.empty((5, 6, 9), np.int32)
    _pool.max_pool2d_forward(x, got_o, got_a, 2, 2, 2, 2, 1)
    # the general loop, written out: first strictly greater wins
    want_o, want_a = np.empty((5, 6, 9), np.float32), np.empty((5, 6, 9), np.int32)
    for q in range(5):
        for oh in range(6):
            for ow in range(9):
                bi = 2 * oh * 18 + 2 * ow
                best = x[q].flat[bi]
                for i in range(2):
                    for j in range(2):
                        k = (2 * oh + i) * 18 + 2 * ow + j
                        if x[q].flat[k] > best:
                            best, bi = x[q].flat[k], k
                want_o[q, oh, ow], want_a[q, oh, ow] = best, bi
    np.testing.assert_array_equal(got_a, want_a)
    np.testing.assert_array_equal(got_o, want_o)
    assert np.signbit(got_o[1]).tolist() == np.signbit(want_o[1]).tolist()
