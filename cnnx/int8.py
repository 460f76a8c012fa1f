"""The int8 CPU path: validating wrappers around the Cython integer kernels in `cnnx/_kernels/_int8.pyx`.

Same signatures and results (bit for bit) as the golden functions in `cnnx.reference` (`conv2d_int8`,
`linear_int8`, `maxpool2d_int8`, `avgpool2d_int8`), plus `n_threads`. conv and linear run one int8 GEMM
(`cnnx/_kernels/cnnx_int8.h`: AVX-512 VNNI, AVX2 or portable, see `isa()`) whose store either writes the
int32 accumulator (`*_acc`) or applies the requantisation of `cnnx.quant` in registers (`*_int8`): the
int32 sums never go to memory. `requantize` runs that fused epilogue alone, so tests hold it against
`quant.requantize`, the one definition of the rule. Bad input raises ValueError/TypeError here, before any
kernel (which runs without bounds checks) sees it; sizes, strides, paddings, allocations and thread counts go
through the same checks as the float path (`cnnx.shapes.check_alloc`, `cnnx._threads.check_n_threads`), so no
index can overflow.

Shape letters: N batch, C in-channels, H/W input, F filters, KH/KW kernel, OH/OW output.
"""

from __future__ import annotations

import numpy as np

from . import quant
from ._kernels import _int8
from ._threads import resolve_n_threads
from .shapes import check_alloc, check_array, check_positive_int, out_size

__all__ = [
    "conv2d_acc", "conv2d_int8", "linear_acc", "linear_int8", "maxpool2d_int8", "avgpool2d_int8", "isa",
    "requantize", "quantize",
]  # fmt: skip


def isa() -> str:
    """The int8 GEMM variant in use: "vnni512", "avx2" or "portable" (CNNX_INT8_ISA, read at import)."""
    return _int8.isa()


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


def _conv_setup(x, w, b, stride, padding, floor_mode, n_threads):
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
    K, threads = C * KH * KW, min(resolve_n_threads(n_threads), N)
    # the int32 result, each thread's padded image and packed panel, the packed weights (int8 + int16)
    check_alloc(f"int8 conv2d with stride={stride}, padding={padding} on input {x.shape} and weight "
                f"{w.shape}",
                ((N, F, OH, OW), np.int32), ((threads, C, H + 2 * padding, W + 2 * padding), np.int8),
                ((threads, K + 4, OH * OW + 16), np.int8), ((3, F, K + 4), np.int8))
    return x, w, b, stride, padding, (N, F, OH, OW)


def conv2d_acc(x, w, b=None, stride=1, padding=0, floor_mode=False, n_threads=None) -> np.ndarray:
    """int8 convolution's int32 accumulator (N, F, OH, OW): sum over (c, i, j) of x * w, plus the bias.

    The threads split the batch (whole images each), so a batch of one image runs on one thread."""
    x, w, b, stride, padding, shape = _conv_setup(x, w, b, stride, padding, floor_mode, n_threads)
    out = np.empty(shape, np.int32)
    _int8.conv2d_acc(x, w, b, out, stride, padding, resolve_n_threads(n_threads))
    return out


def conv2d_int8(x, w, b, rq, stride=1, padding=0, floor_mode=False, n_threads=None) -> np.ndarray:
    """int8 convolution: int32 accumulate (with bias) and `rq` (rounding, ReLU, clamp) fused in one pass."""
    rq = _requant(rq)
    x, w, b, stride, padding, shape = _conv_setup(x, w, b, stride, padding, floor_mode, n_threads)
    out = np.empty(shape, np.int8)
    _int8.conv2d_int8(x, w, b, out, rq.mult, rq.shift, rq.relu, stride, padding, resolve_n_threads(n_threads))
    return out


def _linear_setup(x, w, b):
    x = _int_array("x", x, np.int8, 2)
    w = _int_array("w", w, np.int8, 2)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"weight expects {w.shape[1]} input features, input has {x.shape[1]}")
    b = _bias(b, w.shape[0])
    quant.check_acc_range(x.shape[1], b)
    check_alloc(f"int8 linear on input {x.shape} and weight {w.shape}", ((x.shape[0], w.shape[0]), np.int32),
                ((3, w.shape[0], w.shape[1] + 4), np.int8))
    return x, w, b


def linear_acc(x, w, b=None, n_threads=None) -> np.ndarray:
    """int8 dense layer's int32 accumulator, (N, IN) x (OUT, IN) + b -> (N, OUT)."""
    x, w, b = _linear_setup(x, w, b)
    out = np.empty((x.shape[0], w.shape[0]), np.int32)
    _int8.linear_acc(x, w, b, out, resolve_n_threads(n_threads))
    return out


def linear_int8(x, w, b, rq, n_threads=None) -> np.ndarray:
    """int8 dense layer, (N, IN) x (OUT, IN) -> int8 (N, OUT), the requantisation fused into the product."""
    rq = _requant(rq)
    x, w, b = _linear_setup(x, w, b)
    out = np.empty((x.shape[0], w.shape[0]), np.int8)
    _int8.linear_int8(x, w, b, out, rq.mult, rq.shift, rq.relu, resolve_n_threads(n_threads))
    return out


def requantize(acc, rq) -> np.ndarray:
    """The GEMM's fused requantisation epilogue on its own (any int32 array): equals `quant.requantize`."""
    rq = _requant(rq)
    acc = np.asarray(acc)
    if acc.dtype != np.int32:
        raise TypeError(f"requantize needs an int32 accumulator, got dtype {acc.dtype}")
    flat = np.ascontiguousarray(acc).reshape(-1)
    out = np.empty(flat.shape, np.int8)
    if flat.size:
        _int8.requantize(flat, out, rq.mult, rq.shift, rq.relu)
    return out.reshape(acc.shape)


def quantize(x, scale: float) -> np.ndarray:
    """`quant.quantize` (real -> int8, round half to even, saturate) in one C pass for float32 input; other
    dtypes, and inputs holding NaN or inf, go to `quant.quantize` itself (which refuses non-finite input)."""
    x = np.asarray(x)
    scale = float(scale)
    if x.dtype != np.float32 or x.size == 0 or not np.isfinite(scale) or scale <= 0:
        return quant.quantize(x, scale)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.shape, np.int8)
    if _int8.quantize(flat, out, scale):
        return quant.quantize(x, scale)
    return out.reshape(x.shape)


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
