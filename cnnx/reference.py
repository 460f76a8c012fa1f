"""The NumPy golden model of cnnx: every layer written plainly, for a reader to check by eye.

Every fast path (Cython kernels, int8 path, the RTL cores) is tested against these functions; nothing here
is optimised. Float functions compute in float64. Integer functions compute exactly (int64) and apply the
int8 rules of `cnnx.quant`.

Shape letters: N batch, C in-channels, H/W input, F filters (out-channels), KH/KW kernel, OH/OW output.
"""

from __future__ import annotations

import numpy as np

from . import quant
from .shapes import out_size

# ----------------------------------------------------------------------------------------------------------
# int8 path (exact integers)
# ----------------------------------------------------------------------------------------------------------


def _as_int(name, a, dtype, ndim):
    a = np.asarray(a)
    if a.dtype != dtype:
        raise TypeError(f"{name} must be {np.dtype(dtype).name}, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return a


def conv2d_acc_int(x, w, b, stride=1, padding=0, floor_mode=False) -> np.ndarray:
    """int8 convolution's int32 accumulator: sum over (c, i, j) of x * w, plus the int32 bias. Returns int64
    (N, F, OH, OW) so that nothing can wrap here; `quant.check_acc_range` guards the int32 range."""
    x = _as_int("x", x, np.int8, 4)
    w = _as_int("w", w, np.int8, 4)
    N, C, H, W = x.shape
    F, C2, KH, KW = w.shape
    if C2 != C:
        raise ValueError(f"weight expects {C2} input channels, input has {C}")
    b = np.zeros(F, np.int32) if b is None else _as_int("b", b, np.int32, 1)
    if b.shape != (F,):
        raise ValueError(f"bias must have shape ({F},), got {b.shape}")
    OH = out_size(H, KH, stride, padding, floor_mode=floor_mode, what="kernel")
    OW = out_size(W, KW, stride, padding, floor_mode=floor_mode, what="kernel")
    quant.check_acc_range(C * KH * KW, b)
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    w64 = w.astype(np.int64)
    acc = np.empty((N, F, OH, OW), np.int64)
    for oh in range(OH):
        for ow in range(OW):
            win = xp[:, :, oh * stride : oh * stride + KH, ow * stride : ow * stride + KW]  # (N, C, KH, KW)
            acc[:, :, oh, ow] = np.einsum("nckl,fckl->nf", win, w64)
    return acc + b.astype(np.int64)[None, :, None, None]


def conv2d_int8(x, w, b, rq: quant.Requant, stride=1, padding=0, floor_mode=False) -> np.ndarray:
    """int8 convolution: int32 accumulate (with bias), then `quant.requantize` (rounding, ReLU, saturation)."""
    return quant.requantize(conv2d_acc_int(x, w, b, stride, padding, floor_mode), rq)


def linear_int8(x, w, b, rq: quant.Requant) -> np.ndarray:
    """int8 dense layer, (N, IN) x (OUT, IN) -> (N, OUT): a 1x1 convolution on a 1x1 map."""
    x = _as_int("x", x, np.int8, 2)
    w = _as_int("w", w, np.int8, 2)
    y = conv2d_int8(x[:, :, None, None], w[:, :, None, None], b, rq)
    return y[:, :, 0, 0]


def _pool_windows(x, kernel, stride, floor_mode):
    N, C, H, W = x.shape
    OH = out_size(H, kernel, stride, 0, floor_mode=floor_mode, what="pooling window")
    OW = out_size(W, kernel, stride, 0, floor_mode=floor_mode, what="pooling window")
    for oh in range(OH):
        for ow in range(OW):
            yield oh, ow, x[:, :, oh * stride : oh * stride + kernel, ow * stride : ow * stride + kernel]
    return


def maxpool2d_int8(x, kernel, stride=None, floor_mode=False) -> np.ndarray:
    """Max over each kernel x kernel window of an int8 map (exact)."""
    x = _as_int("x", x, np.int8, 4)
    stride = kernel if stride is None else stride
    N, C, H, W = x.shape
    OH = out_size(H, kernel, stride, 0, floor_mode=floor_mode, what="pooling window")
    OW = out_size(W, kernel, stride, 0, floor_mode=floor_mode, what="pooling window")
    y = np.empty((N, C, OH, OW), np.int8)
    for oh, ow, win in _pool_windows(x, kernel, stride, floor_mode):
        y[:, :, oh, ow] = win.max(axis=(2, 3))
    return y


def avgpool2d_int8(x, kernel, stride=None, floor_mode=False) -> np.ndarray:
    """Rounded mean of each window: the int32 window sum requantised by `quant.avg_pool_multiplier`."""
    x = _as_int("x", x, np.int8, 4)
    stride = kernel if stride is None else stride
    N, C, H, W = x.shape
    OH = out_size(H, kernel, stride, 0, floor_mode=floor_mode, what="pooling window")
    OW = out_size(W, kernel, stride, 0, floor_mode=floor_mode, what="pooling window")
    acc = np.empty((N, C, OH, OW), np.int64)
    for oh, ow, win in _pool_windows(x, kernel, stride, floor_mode):
        acc[:, :, oh, ow] = win.astype(np.int64).sum(axis=(2, 3))
    return quant.requantize(acc, quant.avg_pool_multiplier(kernel * kernel))


# ----------------------------------------------------------------------------------------------------------
# float path (float64)
# ----------------------------------------------------------------------------------------------------------
