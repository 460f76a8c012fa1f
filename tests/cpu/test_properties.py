"""Property tests (hypothesis) on random shapes: the Cython conv and pooling kernels agree with the float64
golden model forward and backward, and linear is a 1x1 convolution."""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis_profile import hypothesis_examples

from cnnx import functional as F
from cnnx import reference as ref
from cnnx.shapes import out_size


def _size(out, k, s, p):
    """The input size that gives `out` outputs exactly (the lectures' fit rule), built rather than filtered
    so hypothesis does not reject most draws."""
    size = (out - 1) * s + k - 2 * p
    assume(size >= 1)
    assert out_size(size, k, s, p) == out
    return size


@settings(max_examples=hypothesis_examples(25))
@given(n=st.integers(1, 3), c=st.integers(1, 4), f=st.integers(1, 5), oh=st.integers(1, 6),
       ow=st.integers(1, 6), kh=st.integers(1, 5), kw=st.integers(1, 5), sh=st.integers(1, 3),
       sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2), seed=st.integers(0, 2**32 - 1))
def test_conv2d_random_shapes_match_golden(n, c, f, oh, ow, kh, kw, sh, sw, ph, pw, seed, layer_check):
    assume(ph < kh and pw < kw)  # padding of a whole kernel or more only adds all-zero windows
    h, w = _size(oh, kh, sh, ph), _size(ow, kw, sw, pw)
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, c, h, w)).astype(np.float32)
    wt = r.standard_normal((f, c, kh, kw)).astype(np.float32)
    b = r.standard_normal(f).astype(np.float32)
    y = F.conv2d(x, wt, b, (sh, sw), (ph, pw))
    layer_check(y, ref.conv2d(x, wt, b, (sh, sw), (ph, pw)))
    dy = r.standard_normal(y.shape).astype(np.float32)
    got = F.conv2d_backward(dy, x, wt, (sh, sw), (ph, pw))
    want = ref.conv2d_backward(dy, x, wt, (sh, sw), (ph, pw))
    for name, g, e in zip(("dx", "dw", "db"), got, want, strict=True):
        layer_check(g, e, what=name)


@settings(max_examples=hypothesis_examples(25))
@given(n=st.integers(1, 3), c=st.integers(1, 3), oh=st.integers(1, 5), ow=st.integers(1, 5),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       kind=st.sampled_from(["max", "avg", "sum", "l2"]), seed=st.integers(0, 2**32 - 1))
def test_pooling_random_shapes_match_golden(n, c, oh, ow, kh, kw, sh, sw, kind, seed, layer_check):
    h, w = _size(oh, kh, sh, 0), _size(ow, kw, sw, 0)
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, c, h, w)).astype(np.float32)
    k, s = (kh, kw), (sh, sw)
    if kind == "max":
        y, idx = F.max_pool2d(x, k, s, return_indices=True)
        want_y = ref.max_pool2d(x, k, s)
    elif kind == "l2":
        y, want_y = F.lp_pool2d(x, 2, k, s), ref.lp_pool2d(x, 2, k, s)
    else:
        y = (F.avg_pool2d if kind == "avg" else F.sum_pool2d)(x, k, s)
        want_y = (ref.avg_pool2d if kind == "avg" else ref.sum_pool2d)(x, k, s)
    layer_check(y, want_y, what="forward")
    dy = r.standard_normal(y.shape).astype(np.float32)
    if kind == "max":
        got, want = F.max_pool2d_backward(dy, idx, x.shape), ref.max_pool2d_backward(dy, x, k, s)
    elif kind == "l2":
        got, want = F.lp_pool2d_backward(dy, x, y, 2, k, s), ref.lp_pool2d_backward(dy, x, 2, k, s)
    elif kind == "avg":
        got, want = F.avg_pool2d_backward(dy, x.shape, k, s), ref.avg_pool2d_backward(dy, x, k, s)
    else:
        got, want = F.sum_pool2d_backward(dy, x.shape, k, s), ref.sum_pool2d_backward(dy, x, k, s)
    layer_check(got, want, what="backward")


@settings(max_examples=hypothesis_examples(25))
@given(n=st.integers(1, 5), i=st.integers(1, 20), o=st.integers(1, 20), seed=st.integers(0, 2**32 - 1))
def test_linear_is_a_1x1_convolution(n, i, o, seed, layer_check):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, i)).astype(np.float32)
    w = r.standard_normal((o, i)).astype(np.float32)
    b = r.standard_normal(o).astype(np.float32)
    lin = F.linear(x, w, b)
    conv = F.conv2d(x[:, :, None, None], w[:, :, None, None], b)[:, :, 0, 0]
    layer_check(lin, conv)
    layer_check(lin, ref.linear(x, w, b))
