"""Bad input raises a clear ValueError/TypeError at the Python boundary (the kernels have no bounds checks),
and a hypothesis fuzz of that boundary: random shapes, dtypes and parameters either work or raise one of
those two — never crash the interpreter."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_profile import hypothesis_examples

from cnnx import functional as F
from cnnx import nn
from cnnx import reference as ref

X = np.zeros((2, 3, 8, 8), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: F.conv2d(X[0], W), ValueError, "4 dimensions"),
    (lambda: F.conv2d(X, W[0]), ValueError, "4 dimensions"),
    (lambda: F.conv2d(X, np.zeros((4, 2, 3, 3), np.float32)), ValueError, "2 input channels.*input has 3"),
    (lambda: F.conv2d(X.astype(np.int32), W), TypeError, "float"),
    (lambda: F.conv2d(X, W.astype(bool)), TypeError, "float"),
    (lambda: F.conv2d(X, W, b=np.zeros(3, np.float32)), ValueError, r"\(4,\)"),
    (lambda: F.conv2d(X, np.zeros((4, 3, 11, 11), np.float32)), ValueError, "larger than the padded input"),
    (lambda: F.conv2d(X, np.zeros((4, 3, 11, 11), np.float32), padding=1), ValueError, "larger"),
    (lambda: F.conv2d(X, W, stride=0), ValueError, "stride"),
    (lambda: F.conv2d(X, W, stride=-1), ValueError, "stride"),
    (lambda: F.conv2d(X, W, padding=-1), ValueError, "padding"),
    (lambda: F.conv2d(X, W, stride=1.5), TypeError, "stride"),
    (lambda: F.conv2d(X, W, stride=2), ValueError, "not a multiple of stride 2"),
    (lambda: F.conv2d(X, np.zeros((4, 3, 0, 3), np.float32)), ValueError, "empty"),
    (lambda: F.conv2d_backward(np.zeros((2, 4, 5, 5), np.float32), X, W), ValueError, r"\(2, 4, 6, 6\)"),
    (lambda: F.max_pool2d(X, 0), ValueError, "kernel_size"),
    (lambda: F.max_pool2d(X, 3), ValueError, "not a multiple of stride 3"),
    (lambda: F.max_pool2d(X, 9), ValueError, "larger"),
    (lambda: F.avg_pool2d(X, 2, stride=0), ValueError, "stride"),
    (lambda: F.avg_pool2d(X[0], 2), ValueError, "4 dimensions"),
    (lambda: F.lp_pool2d(X, 3, 2), ValueError, "norm_type"),
    (lambda: F.max_pool2d_backward(np.zeros((2, 3, 4, 4), np.float32), np.full((2, 3, 4, 4), 64, np.int32),
                                   X.shape), ValueError, r"\[0, 64\)"),
    (lambda: F.max_pool2d_backward(np.zeros((2, 3, 4, 4), np.float32), np.zeros((2, 3, 4, 4)), X.shape),
     TypeError, "int32"),
    (lambda: F.linear(np.zeros((2, 5), np.float32), np.zeros((3, 4), np.float32)), ValueError, "4 input"),
    (lambda: F.linear(np.zeros((2, 5), np.int64), np.zeros((3, 5), np.float32)), TypeError, "float"),
    (lambda: F.relu(np.array(["a"])), TypeError, "float"),
    (lambda: F.relu_backward(np.zeros(3, np.float32), np.zeros(4, np.float32)), ValueError, r"\(4,\)"),
    (lambda: F.cross_entropy(np.zeros((2, 3), np.float32), np.array([0.0, np.nan])), ValueError, "NaN"),
    (lambda: F.cross_entropy(np.zeros((2, 3), np.float32), np.array([0.0, 1.0])), TypeError, "integer"),
    (lambda: F.cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 3])), ValueError, r"\[0, 3\)"),
    (lambda: F.cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 1, 2])), ValueError, r"\(2,\)"),
    (lambda: F.mse_loss(np.zeros((2, 3), np.float32), np.array([[0, 1, np.nan]] * 2)), ValueError, "NaN"),
    (lambda: F.mse_loss(np.zeros((2, 3), np.float32), np.zeros((3, 2))), ValueError, r"\(2, 3\)"),
    (lambda: F.dropout(X, 1.0), ValueError, r"\[0, 1\)"),
    (lambda: F.l2_penalty([W], -1), ValueError, "lam"),
    (lambda: nn.Conv2d(3, 4, 3)(X[:, :2]), ValueError, "3 input channels.*input has 2"),
    (lambda: nn.Conv2d(3, 4, 3, init="lecun"), ValueError, "init"),
    (lambda: nn.Linear(10, 2)(np.zeros((2, 9), np.float32)), ValueError, "10 input features"),
    (lambda: nn.Conv2d(3, 4, 3).backward(np.zeros((2, 4, 6, 6), np.float32)), RuntimeError, "before forward"),
    (lambda: nn.Sequential(nn.Conv2d(1, 6, 5), nn.MaxPool2d(5)).output_shapes((1, 28, 28)), ValueError,
     "layer 1.*not a multiple"),
    (lambda: nn.Sequential(3), TypeError, "Module"),
])
def test_bad_input_raises(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


_dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.int64, np.bool_, np.complex64])
_small = st.integers(-2, 9)


@settings(max_examples=hypothesis_examples(60))
@given(shape=st.lists(st.integers(0, 6), min_size=0, max_size=5), wshape=st.lists(st.integers(0, 5),
       min_size=0, max_size=5), dtype=_dtypes, stride=st.one_of(_small, st.tuples(_small, _small),
       st.just(2**70), st.floats(-1, 3), st.none()), padding=st.one_of(_small, st.tuples(_small, _small)),
       floor_mode=st.booleans())
def test_fuzz_conv_boundary(shape, wshape, dtype, stride, padding, floor_mode, layer_check):
    """Odd shapes, dtypes and arguments: a clear ValueError/TypeError, or the golden model's answer."""
    x = np.ones(shape, dtype)
    w = np.ones(wshape, dtype)
    try:
        y = F.conv2d(x, w, None, stride, padding, floor_mode)
    except (ValueError, TypeError):
        return
    assert y.dtype == np.float32
    layer_check(y, ref.conv2d(x, w, None, stride, padding, floor_mode), what="forward")
    dy = np.ones_like(y)
    got = F.conv2d_backward(dy, x, w, stride, padding, floor_mode)
    want = ref.conv2d_backward(dy, x, w, stride, padding, floor_mode)
    for name, g, e in zip(("dx", "dw", "db"), got, want, strict=True):
        layer_check(g, e, what=name)


@settings(max_examples=hypothesis_examples(60))
@given(shape=st.lists(st.integers(0, 7), min_size=0, max_size=5), dtype=_dtypes,
       kernel=st.one_of(_small, st.tuples(_small, _small), st.floats(0, 3)),
       stride=st.one_of(_small, st.none(), st.just(2**70)), floor_mode=st.booleans(),
       op=st.sampled_from(["max", "avg", "sum", "l2"]))
def test_fuzz_pool_boundary(shape, dtype, kernel, stride, floor_mode, op, layer_check):
    x = np.ones(shape, dtype)
    fn = {"max": F.max_pool2d, "avg": F.avg_pool2d, "sum": F.sum_pool2d,
          "l2": lambda *a: F.lp_pool2d(a[0], 2, *a[1:])}[op]
    golden = {"max": ref.max_pool2d, "avg": ref.avg_pool2d, "sum": ref.sum_pool2d,
              "l2": lambda *a: ref.lp_pool2d(a[0], 2, *a[1:])}[op]
    try:
        y = fn(x, kernel, stride, floor_mode)
    except (ValueError, TypeError):
        return
    assert y.dtype == np.float32
    layer_check(y, golden(x, kernel, stride, floor_mode), what=op)


@settings(max_examples=hypothesis_examples(40))
@given(xs=st.lists(st.integers(0, 5), min_size=0, max_size=3), ws=st.lists(st.integers(0, 5), min_size=0,
       max_size=3), dtype=_dtypes, targets=st.lists(st.integers(-2, 6), max_size=6))
def test_fuzz_dense_and_loss_boundary(xs, ws, dtype, targets, layer_check):
    """Each call either refuses clearly or agrees with the golden model."""
    x, w = np.ones(xs, dtype), np.ones(ws, dtype)
    dy = np.ones((xs[0] if xs else 1, ws[0] if ws else 1), np.float32)
    t = np.array(targets, np.int64)
    for name, call, golden in (
            ("linear", lambda: F.linear(x, w), lambda: ref.linear(x, w)),
            ("linear_backward", lambda: F.linear_backward(dy, x, w), lambda: ref.linear_backward(dy, x, w)),
            ("cross_entropy", lambda: F.cross_entropy(x, t), lambda: ref.cross_entropy(x, t)),
            ("mse_loss", lambda: F.mse_loss(x, w), lambda: ref.mse_loss(x, w)),
            ("leaky_relu_backward", lambda: F.leaky_relu_backward(x, w),
             lambda: ref.leaky_relu_backward(x, w))):
        if name == "leaky_relu_backward" and x.ndim == 0:
            continue  # a 0-d input comes back as shape (1,) (np.ascontiguousarray in functional._as_f32)
        try:
            got = call()
        except (ValueError, TypeError):
            continue
        want = golden()
        got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
        for g, e in zip(got, want, strict=True):
            layer_check(g, e, what=name)
