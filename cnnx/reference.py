"""The NumPy golden model of cnnx: every layer written plainly, for a reader to check by eye.

Every fast path (Cython kernels, int8 path, the RTL cores) is tested against these functions; nothing here
is optimised. Float functions compute in float64. Integer functions compute exactly (int64) and apply the
int8 rules of `cnnx.quant`, with their own plain requantisation (`requantize`), so that the fast paths'
`quant.requantize` is checked against a second implementation, not against itself.

Shape letters: N batch, C in-channels, H/W input, F filters (out-channels), KH/KW kernel, OH/OW output.
"""

from __future__ import annotations

import numpy as np

from . import quant
from .shapes import check_array, out_size

# ----------------------------------------------------------------------------------------------------------
# int8 path (exact integers)
# ----------------------------------------------------------------------------------------------------------


def _as_int(name, a, dtype, ndim):
    return check_array(name, np.asarray(a), dtype, ndim)


def requantize(acc, rq: quant.Requant) -> np.ndarray:
    """The int8 requantisation of `cnnx.quant`, written independently of `quant.requantize` so that the
    golden model checks it rather than repeats it: y = acc * M / 2**S rounded to the nearest integer, an
    exact half going up (towards +inf), then ReLU if fused, then saturation to [-128, 127]. The rounding is
    a floor division plus a look at the remainder (`quant.requantize` adds 2**(S-1) and shifts)."""
    a = np.asarray(acc)
    if a.dtype.kind not in "iu":
        raise TypeError(f"requantize needs an integer accumulator, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < quant.INT32_MIN or a.max() > quant.INT32_MAX):
        raise ValueError("accumulator leaves int32; the layer is out of the int8 scheme's range")
    den = 2**rq.shift
    q, r = np.divmod(a * rq.mult, den)  # |acc * M| < 2**46: exact in int64; 0 <= r < den
    q = q + (2 * r >= den)              # the remainder is half or more of the step: round up
    if rq.relu:
        q = np.where(q < 0, 0, q)
    q = np.where(q > quant.INT8_MAX, quant.INT8_MAX, q)
    q = np.where(q < quant.INT8_MIN, quant.INT8_MIN, q)
    return q.astype(np.int8)


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
    """int8 convolution: int32 accumulate (with bias), then `requantize` (rounding, ReLU, saturation)."""
    return requantize(conv2d_acc_int(x, w, b, stride, padding, floor_mode), rq)


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
    """Rounded mean of each window: the int32 window sum requantised (`requantize`) by
    `quant.avg_pool_multiplier`."""
    x = _as_int("x", x, np.int8, 4)
    stride = kernel if stride is None else stride
    N, C, H, W = x.shape
    OH = out_size(H, kernel, stride, 0, floor_mode=floor_mode, what="pooling window")
    OW = out_size(W, kernel, stride, 0, floor_mode=floor_mode, what="pooling window")
    acc = np.empty((N, C, OH, OW), np.int64)
    for oh, ow, win in _pool_windows(x, kernel, stride, floor_mode):
        acc[:, :, oh, ow] = win.astype(np.int64).sum(axis=(2, 3))
    return requantize(acc, quant.avg_pool_multiplier(kernel * kernel))


# ----------------------------------------------------------------------------------------------------------
# float path (float64)
# ----------------------------------------------------------------------------------------------------------
# Plain float64 twins of the Cython kernels (cnnx.functional), forward and backward, written with loops over
# output positions and einsum so each formula can be read off directly. Arguments mirror cnnx.functional:
# kernel_size / stride / padding are ints or (h, w) pairs; pooling has no padding and stride defaults to the
# kernel; the lectures' fit rule applies unless floor_mode=True.


def _f64(name, a, ndim=None):
    a = np.asarray(a, dtype=np.float64)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return a


def _pairs(kernel_size, stride, padding=0):
    from .shapes import pair

    kh, kw = pair("kernel_size", kernel_size)
    sh, sw = (kh, kw) if stride is None else pair("stride", stride)
    ph, pw = pair("padding", padding, minimum=0)
    return kh, kw, sh, sw, ph, pw


def conv2d(x, w, b=None, stride=1, padding=0, floor_mode=False) -> np.ndarray:
    """y[n, f, oh, ow] = b[f] + sum_{c,i,j} w[f, c, i, j] * xpad[n, c, oh*SH + i, ow*SW + j]."""
    x, w = _f64("x", x, 4), _f64("w", w, 4)
    N, C, H, W = x.shape
    F, C2, KH, KW = w.shape
    if C2 != C:
        raise ValueError(f"weight expects {C2} input channels, input has {C}")
    _, _, sh, sw, ph, pw = _pairs((KH, KW), stride, padding)
    OH = out_size(H, KH, sh, ph, floor_mode=floor_mode, what="kernel")
    OW = out_size(W, KW, sw, pw, floor_mode=floor_mode, what="kernel")
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.empty((N, F, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            win = xp[:, :, oh * sh : oh * sh + KH, ow * sw : ow * sw + KW]  # (N, C, KH, KW)
            y[:, :, oh, ow] = np.einsum("ncij,fcij->nf", win, w)
    if b is not None:
        y += _f64("b", b, 1)[None, :, None, None]
    return y


def conv2d_backward(dy, x, w, stride=1, padding=0, floor_mode=False):
    """(dx, dw, db) of `conv2d`: each output position sends dy * w back to its window (dx) and adds
    dy * window to dw; db sums dy over n, oh, ow."""
    x, w, dy = _f64("x", x, 4), _f64("w", w, 4), _f64("dy", dy, 4)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    _, _, sh, sw, ph, pw = _pairs((KH, KW), stride, padding)
    OH = out_size(H, KH, sh, ph, floor_mode=floor_mode, what="kernel")
    OW = out_size(W, KW, sw, pw, floor_mode=floor_mode, what="kernel")
    if dy.shape != (N, F, OH, OW):
        raise ValueError(f"dy must have shape {(N, F, OH, OW)}, got {dy.shape}")
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for oh in range(OH):
        for ow in range(OW):
            rows, cols = slice(oh * sh, oh * sh + KH), slice(ow * sw, ow * sw + KW)
            g = dy[:, :, oh, ow]  # (N, F)
            dxp[:, :, rows, cols] += np.einsum("nf,fcij->ncij", g, w)
            dw += np.einsum("nf,ncij->fcij", g, xp[:, :, rows, cols])
    dx = dxp[:, :, ph : ph + H, pw : pw + W]
    return dx, dw, dy.sum(axis=(0, 2, 3))


def _pool_geometry(x, kernel_size, stride, floor_mode):
    kh, kw, sh, sw, _, _ = _pairs(kernel_size, stride)
    N, C, H, W = x.shape
    OH = out_size(H, kh, sh, 0, floor_mode=floor_mode, what="pooling window")
    OW = out_size(W, kw, sw, 0, floor_mode=floor_mode, what="pooling window")
    return kh, kw, sh, sw, OH, OW


def max_pool2d(x, kernel_size, stride=None, floor_mode=False) -> np.ndarray:
    """Max over each window."""
    x = _f64("x", x, 4)
    kh, kw, sh, sw, OH, OW = _pool_geometry(x, kernel_size, stride, floor_mode)
    y = np.empty(x.shape[:2] + (OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            y[:, :, oh, ow] = x[:, :, oh * sh : oh * sh + kh, ow * sw : ow * sw + kw].max(axis=(2, 3))
    return y


def max_pool2d_backward(dy, x, kernel_size, stride=None, floor_mode=False) -> np.ndarray:
    """Each dy goes to the arg-max of its window; ties go to the first in row-major order (np.argmax)."""
    x, dy = _f64("x", x, 4), _f64("dy", dy, 4)
    kh, kw, sh, sw, OH, OW = _pool_geometry(x, kernel_size, stride, floor_mode)
    N, C = x.shape[:2]
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    win = x[n, c, oh * sh : oh * sh + kh, ow * sw : ow * sw + kw]
                    i, j = np.unravel_index(np.argmax(win), win.shape)
                    dx[n, c, oh * sh + i, ow * sw + j] += dy[n, c, oh, ow]
    return dx


def sum_pool2d(x, kernel_size, stride=None, floor_mode=False) -> np.ndarray:
    """Sum over each window."""
    x = _f64("x", x, 4)
    kh, kw, sh, sw, OH, OW = _pool_geometry(x, kernel_size, stride, floor_mode)
    y = np.empty(x.shape[:2] + (OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            y[:, :, oh, ow] = x[:, :, oh * sh : oh * sh + kh, ow * sw : ow * sw + kw].sum(axis=(2, 3))
    return y


def sum_pool2d_backward(dy, x, kernel_size, stride=None, floor_mode=False) -> np.ndarray:
    """dy copied to every input of its window."""
    x, dy = _f64("x", x, 4), _f64("dy", dy, 4)
    kh, kw, sh, sw, OH, OW = _pool_geometry(x, kernel_size, stride, floor_mode)
    dx = np.zeros_like(x)
    for oh in range(OH):
        for ow in range(OW):
            dx[:, :, oh * sh : oh * sh + kh, ow * sw : ow * sw + kw] += dy[:, :, oh, ow, None, None]
    return dx


def avg_pool2d(x, kernel_size, stride=None, floor_mode=False) -> np.ndarray:
    """Mean over each window: the window sum / (KH*KW)."""
    kh, kw, *_ = _pairs(kernel_size, stride)
    return sum_pool2d(x, kernel_size, stride, floor_mode) / (kh * kw)


def avg_pool2d_backward(dy, x, kernel_size, stride=None, floor_mode=False) -> np.ndarray:
    kh, kw, *_ = _pairs(kernel_size, stride)
    return sum_pool2d_backward(dy, x, kernel_size, stride, floor_mode) / (kh * kw)


def lp_pool2d(x, norm_type=2, kernel_size=2, stride=None, floor_mode=False) -> np.ndarray:
    """L2 pooling: sqrt of the window sum of squares (norm_type 2 only, as cnnx.functional)."""
    if norm_type != 2:
        raise ValueError(f"only norm_type=2 is implemented, got {norm_type}")
    return np.sqrt(sum_pool2d(_f64("x", x, 4) ** 2, kernel_size, stride, floor_mode))


def lp_pool2d_backward(dy, x, norm_type=2, kernel_size=2, stride=None, floor_mode=False) -> np.ndarray:
    """dx = sum over the windows containing x of dy * x / y; 0 from windows where y == 0."""
    x, dy = _f64("x", x, 4), _f64("dy", dy, 4)
    y = lp_pool2d(x, norm_type, kernel_size, stride, floor_mode)
    g = np.divide(dy, y, out=np.zeros_like(y), where=y != 0)
    return sum_pool2d_backward(g, x, kernel_size, stride, floor_mode) * x


def linear(x, w, b=None) -> np.ndarray:
    """y = x @ w.T + b."""
    y = _f64("x", x, 2) @ _f64("w", w, 2).T
    return y if b is None else y + _f64("b", b, 1)


def linear_backward(dy, x, w):
    """(dx = dy @ w, dw = dy.T @ x, db = sum_n dy)."""
    dy, x, w = _f64("dy", dy, 2), _f64("x", x, 2), _f64("w", w, 2)
    return dy @ w, dy.T @ x, dy.sum(axis=0)


def relu(x):
    return np.maximum(_f64("x", x), 0.0)


def relu_backward(dy, x):
    return np.where(_f64("x", x) > 0, _f64("dy", dy), 0.0)


def leaky_relu(x, negative_slope=0.01):
    x = _f64("x", x)
    return np.where(x > 0, x, negative_slope * x)


def leaky_relu_backward(dy, x, negative_slope=0.01):
    dy = _f64("dy", dy)
    return np.where(_f64("x", x) > 0, dy, negative_slope * dy)


def elu(x, alpha=1.0):
    x = _f64("x", x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def elu_backward(dy, x, alpha=1.0):
    x, dy = _f64("x", x), _f64("dy", dy)
    return np.where(x > 0, dy, dy * alpha * np.exp(np.minimum(x, 0)))


def sigmoid(x):
    x = _f64("x", x)
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow


def sigmoid_backward(dy, y):
    y = _f64("y", y)
    return _f64("dy", dy) * y * (1 - y)


def tanh(x):
    return np.tanh(_f64("x", x))


def tanh_backward(dy, y):
    y = _f64("y", y)
    return _f64("dy", dy) * (1 - y * y)


def cross_entropy(logits, target):
    """(mean over n of -log softmax(logits[n])[target[n]], its gradient (softmax - onehot) / N)."""
    z = _f64("logits", logits, 2)
    t = np.asarray(target)
    N = z.shape[0]
    m = z.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    loss = float(np.mean(lse[:, 0] - z[np.arange(N), t]))
    grad = np.exp(z - lse)
    grad[np.arange(N), t] -= 1
    return loss, grad / N


def mse_loss(x, target):
    """(mean of (x - target)^2, its gradient 2 (x - target) / size)."""
    d = _f64("x", x) - _f64("target", target)
    return float(np.mean(d * d)), 2 * d / d.size


def dropout(x, mask):
    """Inverted dropout with a given mask of 0 or 1/(1-p) factors (the randomness lives in the caller)."""
    return _f64("x", x) * mask


def l2_penalty(params, lam):
    """(lam * sum ||w||^2, [2 * lam * w])."""
    ws = [_f64("w", getattr(p, "data", p)) for p in params]
    return lam * sum(float((w * w).sum()) for w in ws), [2 * lam * w for w in ws]
