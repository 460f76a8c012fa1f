"""The int8 CPU path: validating wrappers around the Cython integer kernels in `cnnx/_kernels/_int8.pyx`.

Same signatures and results (bit for bit) as the golden functions in `cnnx.reference` (`conv2d_int8`,
`linear_int8`, `maxpool2d_int8`, `avgpool2d_int8`), plus `n_threads`. The kernels only produce exact integer
accumulators / window sums; rounding, ReLU and saturation are always `cnnx.quant.requantize`, so there is one
definition of the int8 rule. Bad input raises ValueError/TypeError here, before any kernel (which runs without
bounds checks) sees it; sizes, strides, paddings, allocations and thread counts go through the same checks as
the float path (`cnnx.shapes.check_alloc`, `cnnx._threads.check_n_threads`), so no index can overflow.

Shape letters: N batch, C in-channels, H/W input, F filters, KH/KW kernel, OH/OW output.
"""

from __future__ import annotations

import numpy as np

from . import quant
from ._kernels import _int8
from ._threads import resolve_n_threads
from .shapes import check_alloc, check_array, check_positive_int, out_size

__all__ = ["conv2d_acc", "conv2d_int8", "linear_acc", "linear_int8", "maxpool2d_int8", "avgpool2d_int8"]


def _int_array(name: str, a, dtype, ndim: int) -> np.ndarray:
    return np.ascontiguousarray(check_array(name, a, dtype, ndim, allow_empty=False))


def _bias(b, n_out: int) -> np.ndarray:
    if b is None:
        return np.zeros(n_out, np.int32)
    b = _int_array("b", b, np.int32, 1)
    if b.shape != (n_out,):
        raise ValueError(f"bias must have shape ({n_out},), got {b.shape}")
    return b


def _requant(rq) -> quant.Requant:
    if not isinstance(rq, quant.Requant):
        raise TypeError(f"rq must be a cnnx.quant.Requant, got {type(rq).__name__}")
    return rq


def conv2d_acc(x, w, b=None, stride=1, padding=0, floor_mode=False, n_threads=None) -> np.ndarray:
    """int8 convolution's int32 accumulator (N, F, OH, OW): sum over (c, i, j) of x * w, plus the bias.

    The threads split the batch (whole images each), so a batch of one image runs on one thread."""
    x = _int_array("x", x, np.int8, 4)
    w = _int_array("w", w, np.int8, 4)
    N, C, H, W = x.shape
    F, C2, KH, KW = w.shape
    if C2 != C:
        raise ValueError(f"weight expects {C2} input channels, input has {C}")
    b = _bias(b, F)
    stride = check_positive_int("stride", stride)
    padding = check_positive_int("padding", padding, minimum=0)
    OH = out_size(H, KH, stride, padding, floor_mode=floor_mode, what="kernel")
    OW = out_size(W, KW, stride, padding, floor_mode=floor_mode, what="kernel")
    quant.check_acc_range(C * KH * KW, b)  # so the kernel's int32 accumulator cannot wrap
    n_threads = resolve_n_threads(n_threads)
    # the accumulator, the patch matrices, and requantize's int64 working copies of the accumulator
    check_alloc(f"int8 conv2d with stride={stride}, padding={padding} on input {x.shape} and weight "
                f"{w.shape}",
                ((N, F, OH, OW), np.int32), ((min(n_threads, N), C * KH * KW * OH * OW), np.int8),
                ((2, N, F, OH, OW), np.int64))
    out = np.empty((N, F, OH, OW), np.int32)
    # one patch matrix (C*KH*KW, OH*OW) per chunk of images; the kernel gives each thread one chunk
    scratch = np.empty((min(n_threads, N), C * KH * KW * OH * OW), np.int8)
    _int8.conv2d_acc(x, w, b, out, scratch, stride, padding, n_threads)
    return out


def conv2d_int8(x, w, b, rq, stride=1, padding=0, floor_mode=False, n_threads=None) -> np.ndarray:
    """int8 convolution: int32 accumulate (with bias), then `quant.requantize` (rounding, ReLU, clamp)."""
    rq = _requant(rq)
    return quant.requantize(conv2d_acc(x, w, b, stride, padding, floor_mode, n_threads), rq)


def linear_acc(x, w, b=None, n_threads=None) -> np.ndarray:
    """int8 dense layer's int32 accumulator, (N, IN) x (OUT, IN) + b -> (N, OUT)."""
    x = _int_array("x", x, np.int8, 2)
    w = _int_array("w", w, np.int8, 2)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"weight expects {w.shape[1]} input features, input has {x.shape[1]}")
    b = _bias(b, w.shape[0])
    quant.check_acc_range(x.shape[1], b)
    check_alloc(f"int8 linear on input {x.shape} and weight {w.shape}", ((x.shape[0], w.shape[0]), np.int32),
                ((2, x.shape[0], w.shape[0]), np.int64))
    out = np.empty((x.shape[0], w.shape[0]), np.int32)
    _int8.linear_acc(x, w, b, out, resolve_n_threads(n_threads))
    return out


def linear_int8(x, w, b, rq, n_threads=None) -> np.ndarray:
    """int8 dense layer, (N, IN) x (OUT, IN) -> int8 (N, OUT)."""
    rq = _requant(rq)
    return quant.requantize(linear_acc(x, w, b, n_threads), rq)


def _pool_setup(x, kernel, stride, floor_mode):
    x = _int_array("x", x, np.int8, 4)
    kernel = check_positive_int("kernel", kernel)
    stride = kernel if stride is None else check_positive_int("stride", stride)
    N, C, H, W = x.shape
    OH = out_size(H, kernel, stride, 0, floor_mode=floor_mode, what="pooling window")
    OW = out_size(W, kernel, stride, 0, floor_mode=floor_mode, what="pooling window")
    check_alloc(f"int8 pooling with kernel={kernel}, stride={stride} on input {x.shape}",
                ((N, C, OH, OW), np.int32), ((2, N, C, OH, OW), np.int64))
    return x, kernel, stride, (N, C, OH, OW)


def maxpool2d_int8(x, kernel, stride=None, floor_mode=False, n_threads=None) -> np.ndarray:
    """Max over each kernel x kernel window of an int8 map (exact)."""
    x, kernel, stride, shape = _pool_setup(x, kernel, stride, floor_mode)
    out = np.empty(shape, np.int8)
    _int8.maxpool2d(x, out, kernel, stride, resolve_n_threads(n_threads))
    return out


def avgpool2d_int8(x, kernel, stride=None, floor_mode=False, n_threads=None) -> np.ndarray:
    """Rounded mean of each window: the int32 window sum requantised by `quant.avg_pool_multiplier`."""
    x, kernel, stride, shape = _pool_setup(x, kernel, stride, floor_mode)
    out = np.empty(shape, np.int32)
    _int8.sumpool2d(x, out, kernel, stride, resolve_n_threads(n_threads))
    return quant.requantize(out, quant.avg_pool_multiplier(kernel * kernel))
