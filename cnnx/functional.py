"""The validating front door of the float32 CPU engine: one function per layer operation, forward/backward.

Every function checks its input at the Python boundary (the Cython kernels run without bounds checks), makes
arrays C-contiguous float32, allocates the outputs, resolves the thread count through
`cnnx._threads.resolve_n_threads` (so `cnnx.set_num_threads` and `OMP_NUM_THREADS` are honoured) and calls
the kernel with the GIL released.

Conventions, stated once:
- Tensors are NCHW; conv weights (F, C, KH, KW), linear weights (OUT, IN): PyTorch's layouts.
- dtype: float32 is used as is; float16/float64 input is CONVERTED to float32 (results are float32); any
  non-float input (int, bool, complex, object) raises TypeError.
- kernel_size / stride / padding accept an int or a pair (h, w). The lectures' rule applies: a window must
  fit exactly, (W - K + 2P) divisible by the stride, else ValueError naming the sizes, unless
  `floor_mode=True` (PyTorch's floor behaviour). Pooling has no padding; its stride defaults to the kernel.
- Forward/backward split: `op(x, ...) -> y` and `op_backward(dy, <what the forward saw>, ...) -> grads`.
  Backward functions return fresh arrays (nothing is accumulated into caller memory). What each backward
  needs: conv2d/linear the input x and the weights; max_pool2d the argmax indices (`return_indices=True`);
  avg/sum pooling only the input shape; lp_pool2d the input and the forward output; relu, leaky_relu and elu
  the forward input; sigmoid and tanh the forward output.
- Losses return `(loss: float, grad wrt the input)` in one call (the gradient costs one extra pass).
- Limits (`cnnx.shapes`, `cnnx._threads`), checked before any allocation: sizes, strides and paddings up to
  2**31 - 1, at most 4 GiB of new arrays per call (`CNNX_MAX_ALLOC_BYTES`), n_threads in [1, 256]; beyond
  them a ValueError names the argument. NaN and inf propagate as in the golden model `cnnx.reference`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from ._kernels import _activation, _conv, _dense, _loss, _pool
from ._threads import resolve_n_threads
from .shapes import MAX_ELEMENTS, check_alloc, out_size, pair

__all__ = [
    "avg_pool2d", "avg_pool2d_backward", "conv2d", "conv2d_backward", "conv2d_output_shape",
    "cross_entropy", "dropout", "dropout_backward", "elu", "elu_backward", "flatten", "l2_penalty",
    "leaky_relu", "leaky_relu_backward", "linear", "linear_backward", "lp_pool2d", "lp_pool2d_backward",
    "max_pool2d", "max_pool2d_backward", "mse_loss", "pool2d_output_shape", "relu", "relu_backward",
    "sigmoid", "sigmoid_backward", "sum_pool2d", "sum_pool2d_backward", "tanh", "tanh_backward",
]

# ------------------------------------------------------------------------------------------------------------
# validation helpers
# ------------------------------------------------------------------------------------------------------------


def _as_f32(name: str, a, ndim: int | None = None) -> np.ndarray:
    """`a` as a C-contiguous float32 array; TypeError for non-float input, ValueError for a wrong ndim."""
    if isinstance(a, np.ndarray):
        arr = a
    else:
        try:
            arr = np.asarray(a)
        except (ValueError, TypeError) as e:  # ragged nested lists and the like
            raise TypeError(f"{name} must be a float array, got {type(a).__name__}: {e}") from None
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must be a float array (float32; float64 is converted), got {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got {arr.ndim} (shape {arr.shape})")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if arr.dtype != np.float32:
        check_alloc(f"{name} of shape {arr.shape}", (arr.shape, np.float32))  # the float32 copy
    # np.asarray, not np.ascontiguousarray: the latter turns a 0-d array into shape (1,)
    return np.asarray(arr, dtype=np.float32, order="C")


def _check_shape(name: str, a: np.ndarray, expected: tuple) -> None:
    if a.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {a.shape}")


def _pad_pair(padding) -> tuple[int, int]:
    return pair("padding", padding, minimum=0)


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)


def conv2d_output_shape(input_shape, weight_shape, stride=1, padding=0, floor_mode=False) -> tuple:
    """(N, F, OH, OW) of a convolution, or ValueError naming the sizes (channels, fit rule)."""
    N, C, H, W = input_shape
    F, C2, KH, KW = weight_shape
    if C2 != C:
        raise ValueError(f"weight expects {C2} input channels (weight shape {tuple(weight_shape)}), "
                         f"input has {C} (input shape {tuple(input_shape)})")
    sh, sw = pair("stride", stride)
    ph, pw = _pad_pair(padding)
    OH = out_size(H, KH, sh, ph, floor_mode=floor_mode, what="kernel height")
    OW = out_size(W, KW, sw, pw, floor_mode=floor_mode, what="kernel width")
    return N, F, OH, OW


def pool2d_output_shape(input_shape, kernel_size, stride=None, floor_mode=False) -> tuple:
    """(N, C, OH, OW) of a pooling layer (no padding; stride defaults to the kernel)."""
    N, C, H, W = input_shape
    kh, kw = pair("kernel_size", kernel_size)
    sh, sw = (kh, kw) if stride is None else pair("stride", stride)
    OH = out_size(H, kh, sh, 0, floor_mode=floor_mode, what="pooling window height")
    OW = out_size(W, kw, sw, 0, floor_mode=floor_mode, what="pooling window width")
    return N, C, OH, OW


# ------------------------------------------------------------------------------------------------------------
# convolution
# ------------------------------------------------------------------------------------------------------------


def _conv_what(op, x, w, stride, padding) -> str:
    """What a size refusal names: the operation, its stride/padding arguments and the operand shapes."""
    return f"{op} with stride={stride!r}, padding={padding!r} on input {x.shape} and weight {w.shape}"


def _conv_setup(x, w, stride, padding, floor_mode):
    x = _as_f32("input x", x, 4)
    w = _as_f32("weight w", w, 4)
    _, F, OH, OW = conv2d_output_shape(x.shape, w.shape, stride, padding, floor_mode)
    (sh, sw), (ph, pw) = pair("stride", stride), _pad_pair(padding)
    # a stride beyond the padded input only ever takes the first window (OH or OW is 1): clamp it so a huge
    # Python int cannot overflow the kernel's Py_ssize_t
    sh, sw = min(sh, x.shape[2] + 2 * ph), min(sw, x.shape[3] + 2 * pw)
    return x, w, (sh, sw), (ph, pw), OH, OW


@functools.lru_cache(maxsize=64)
def _tap_offsets(C, KH, KW, Hp, Wp) -> np.ndarray:
    """Offset of each kernel tap k = (c, i, j) in a (C, Hp, Wp) padded image (read-only; cached because the
    layers of a network ask for the same few)."""
    c, i, j = np.meshgrid(np.arange(C), np.arange(KH), np.arange(KW), indexing="ij")
    boff = np.ascontiguousarray((c * Hp * Wp + i * Wp + j).reshape(-1), dtype=np.intp)
    boff.flags.writeable = False
    return boff


def conv2d(x, w, b=None, stride=1, padding=0, floor_mode=False, n_threads=None) -> np.ndarray:
    """2-D convolution (cross-correlation, as torch.nn.functional.conv2d): x (N, C, H, W), w (F, C, KH, KW),
    b (F,) or None -> (N, F, OH, OW) float32, zero padding."""
    x, w, (sh, sw), (ph, pw), OH, OW = _conv_setup(x, w, stride, padding, floor_mode)
    nt = resolve_n_threads(n_threads)
    N, F = x.shape[0], w.shape[0]
    KH, KW = w.shape[2], w.shape[3]
    if b is None:
        b32, has_bias = np.zeros(F, np.float32), False
    else:
        b32, has_bias = _as_f32("bias b", b, 1), True
        _check_shape("bias b", b32, (F,))
    C, K, P = w.shape[1], w.shape[1] * KH * KW, OH * OW
    workers = min(nt, N)
    Hp, Wp = x.shape[2] + 2 * ph, x.shape[3] + 2 * pw
    scratch = ([((workers, C * Hp * Wp + KW + 32), np.float32), ((workers, F, OH * Wp), np.float32)]
               if sh == sw == 1 else [((workers, K, P), np.float32)])
    check_alloc(_conv_what("conv2d", x, w, stride, padding), ((N, F, P), np.float32), *scratch)
    out = np.empty((N, F, P), np.float32)
    if sh == sw == 1:
        # implicit GEMM over the zero-padded image: no im2col (see _conv.conv2d_forward_s1)
        boff = _tap_offsets(C, KH, KW, Hp, Wp)
        xp = np.empty((workers, C * Hp * Wp + KW + 32), np.float32)
        outp = np.empty((workers, F, OH * Wp), np.float32)
        _conv.conv2d_forward_s1(x, w.reshape(F, K), b32, boff, out, xp, outp, OH, OW, ph, pw, has_bias,
                                workers)
    else:
        col = np.empty((workers, K, P), np.float32)
        _conv.conv2d_forward(x, w.reshape(F, K), b32, out, col, KH, KW, OH, OW, sh, sw, ph, pw, has_bias,
                             workers)
    return out.reshape(N, F, OH, OW)


def conv2d_backward(dy, x, w, stride=1, padding=0, floor_mode=False, need_dx=True, n_threads=None):
    """Gradients of `conv2d`: (dx (N, C, H, W) or None when need_dx=False, dw (F, C, KH, KW), db (F,)).
    db is returned whether or not the layer has a bias (the caller drops it)."""
    x, w, (sh, sw), (ph, pw), OH, OW = _conv_setup(x, w, stride, padding, floor_mode)
    N, F = x.shape[0], w.shape[0]
    dy = _as_f32("output gradient dy", dy, 4)
    _check_shape("output gradient dy", dy, (N, F, OH, OW))
    nt = resolve_n_threads(n_threads)
    KH, KW = w.shape[2], w.shape[3]
    K, P = w.shape[1] * KH * KW, OH * OW
    chunk = _conv.BACKWARD_CHUNK
    n_chunks = -(-N // chunk)
    workers = min(nt, n_chunks)  # threads that can get a chunk; each needs its own scratch
    cb = min(chunk, N)
    C = w.shape[1]
    Hp, Wp = x.shape[2] + 2 * ph, x.shape[3] + 2 * pw
    Hq, Wq = OH + 2 * (KH - 1), OW + 2 * (KW - 1)
    # The stride-1 path's implicit GEMMs multiply zero padding (of dy, and beside each row of x) by real
    # values: 0 * inf = NaN would appear where the golden model (and the im2col path) has inf or a number.
    # Non-finite x or w therefore take the im2col path, which only ever forms the products that exist.
    stride1 = sh == sw == 1 and bool(np.isfinite(x).all() and np.isfinite(w).all())
    if stride1:
        scratch = [(workers, cb, C * Hp * Wp + KW + 32), (workers, cb, F, OH * Wp), (C, F * KH * KW),
                   (workers, F * Hq * Wq + KW + 32), (workers, C * Hp * Wq)]
    else:
        scratch = [(workers, cb, K, P), (workers if need_dx else 1, K, P)]
    check_alloc(_conv_what("conv2d_backward", x, w, stride, padding),
                *(((s, np.float32)) for s in [x.shape, (F, K), (F, K), (n_chunks, F, K), *scratch]))
    dx = np.zeros(x.shape, np.float32)
    dw = np.empty((F, K), np.float32)
    db = np.empty(F, np.float32)
    part = np.empty((n_chunks, F, K), np.float32)
    wt = np.ascontiguousarray(w.reshape(F, K).T)
    tiny = np.empty((1, 1, 1, 1), np.float32)
    if stride1:
        # no im2col: dw reads kernel taps straight from the zero-padded image, and dx is the correlation of
        # dy, zero-padded by (KH-1, KW-1), with the flipped kernels (C, F, KH, KW)
        cols, dcol = tiny, tiny[0]
        xoff = _tap_offsets(C, KH, KW, Hp, Wp)
        xpc = np.empty((workers, cb, C * Hp * Wp + KW + 32), np.float32)
        dyp = np.empty((workers, cb, F, OH * Wp), np.float32)
        wflip = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(C, F * KH * KW))
        doff = _tap_offsets(F, KH, KW, Hq, Wq)
        dyq = np.empty((workers, F * Hq * Wq + KW + 32), np.float32)
        dxq = np.empty((workers, C * Hp * Wq), np.float32)
    else:
        cols = np.empty((workers, cb, K, P), np.float32)
        dcol = np.empty((workers if need_dx else 1, K, P), np.float32)
        xoff, doff = np.zeros(1, np.intp), np.zeros(1, np.intp)
        xpc, dyp = tiny[0], tiny
        wflip = dyq = dxq = tiny[0, 0]
    _conv.conv2d_backward(dy.reshape(N, F, P), x, wt, dx, dw, db, cols, part, dcol, xoff, xpc, dyp, wflip,
                          doff, dyq, dxq, KH, KW, OH, OW, sh, sw, ph, pw, bool(need_dx), stride1, workers)
    return (dx if need_dx else None), dw.reshape(w.shape), db


# ------------------------------------------------------------------------------------------------------------
# pooling
# ------------------------------------------------------------------------------------------------------------


def _pool_setup(x, kernel_size, stride, floor_mode):
    x = _as_f32("input x", x, 4)
    N, C, OH, OW = pool2d_output_shape(x.shape, kernel_size, stride, floor_mode)
    kh, kw = pair("kernel_size", kernel_size)
    sh, sw = (kh, kw) if stride is None else pair("stride", stride)
    sh, sw = min(sh, x.shape[2]), min(sw, x.shape[3])  # see _conv_setup: only one window when clamped
    check_alloc(f"pooling with kernel_size={kernel_size!r}, stride={stride!r} on input {x.shape}",
                ((N, C, OH, OW), np.float32), ((N, C, OH, OW), np.int32))
    return x, (kh, kw, sh, sw), (N, C, OH, OW)


def _pool_grad_setup(dy, input_shape, kernel_size, stride, floor_mode):
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 4 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be a positive (N, C, H, W), got {input_shape}")
    out_shape = pool2d_output_shape(input_shape, kernel_size, stride, floor_mode)
    dy = _as_f32("output gradient dy", dy, 4)
    _check_shape("output gradient dy", dy, out_shape)
    kh, kw = pair("kernel_size", kernel_size)
    sh, sw = (kh, kw) if stride is None else pair("stride", stride)
    sh, sw = min(sh, input_shape[2]), min(sw, input_shape[3])
    check_alloc(f"pooling backward to input_shape={input_shape}", (input_shape, np.float32))
    return dy, input_shape, (kh, kw, sh, sw)


def max_pool2d(x, kernel_size, stride=None, floor_mode=False, return_indices=False, n_threads=None):
    """Max over each window -> (N, C, OH, OW); with return_indices also the int32 arg-max (flat index
    ih*W + iw inside its (n, c) plane; ties go to the first in row-major window order) for the backward."""
    x, (kh, kw, sh, sw), (N, C, OH, OW) = _pool_setup(x, kernel_size, stride, floor_mode)
    H, W = x.shape[2], x.shape[3]
    if H * W > MAX_ELEMENTS:  # the arg-max is an int32 flat index into one (H, W) plane
        raise ValueError(f"max_pool2d: an input plane of {H}x{W} is too large for int32 indices")
    out = np.empty((N * C, OH, OW), np.float32)
    idx = np.empty((N * C, OH, OW), np.int32)
    _pool.max_pool2d_forward(x.reshape(N * C, H, W), out, idx, kh, kw, sh, sw, resolve_n_threads(n_threads))
    out = out.reshape(N, C, OH, OW)
    return (out, idx.reshape(N, C, OH, OW)) if return_indices else out


def max_pool2d_backward(dy, indices, input_shape, n_threads=None) -> np.ndarray:
    """Routes each output gradient to its window's arg-max: dx of `input_shape`."""
    dy = _as_f32("output gradient dy", dy, 4)
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 4 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be a positive (N, C, H, W), got {input_shape}")
    check_alloc(f"max_pool2d_backward to input_shape={input_shape}", (input_shape, np.float32))
    N, C, H, W = input_shape
    if dy.shape[:2] != (N, C):
        raise ValueError(f"output gradient dy must have batch/channels {(N, C)}, got shape {dy.shape}")
    indices = np.asarray(indices)
    if indices.dtype != np.int32:
        raise TypeError(f"indices must be the int32 arg-max of max_pool2d, got dtype {indices.dtype}")
    _check_shape("indices", indices, dy.shape)
    # the kernel scatters through these indices without bounds checks: check them here
    if indices.min() < 0 or indices.max() >= H * W:
        raise ValueError(f"indices must lie in [0, {H * W}) for a {H}x{W} input, got "
                         f"[{indices.min()}, {indices.max()}]")
    dx = np.zeros((N * C, H * W), np.float32)
    _pool.max_pool2d_backward(dy.reshape(N * C, *dy.shape[2:]),
                              np.ascontiguousarray(indices).reshape(N * C, *dy.shape[2:]), dx,
                              resolve_n_threads(n_threads))
    return dx.reshape(input_shape)


def _sum_pool(x, kernel_size, stride, floor_mode, n_threads, average):
    x, (kh, kw, sh, sw), (N, C, OH, OW) = _pool_setup(x, kernel_size, stride, floor_mode)
    out = np.empty((N * C, OH, OW), np.float32)
    scale = 1.0 / (kh * kw) if average else 1.0
    _pool.sum_pool2d_forward(x.reshape(N * C, *x.shape[2:]), out, kh, kw, sh, sw, scale,
                             resolve_n_threads(n_threads))
    return out.reshape(N, C, OH, OW)


def _sum_pool_backward(dy, input_shape, kernel_size, stride, floor_mode, n_threads, average):
    dy, input_shape, (kh, kw, sh, sw) = _pool_grad_setup(dy, input_shape, kernel_size, stride, floor_mode)
    N, C, H, W = input_shape
    dx = np.zeros((N * C, H, W), np.float32)
    scale = 1.0 / (kh * kw) if average else 1.0
    _pool.sum_pool2d_backward(dy.reshape(N * C, *dy.shape[2:]), dx, kh, kw, sh, sw, scale,
                              resolve_n_threads(n_threads))
    return dx.reshape(input_shape)


def avg_pool2d(x, kernel_size, stride=None, floor_mode=False, n_threads=None) -> np.ndarray:
    """Mean over each window (no padding)."""
    return _sum_pool(x, kernel_size, stride, floor_mode, n_threads, average=True)


def avg_pool2d_backward(dy, input_shape, kernel_size, stride=None, floor_mode=False, n_threads=None):
    """Spreads dy / (KH*KW) over each window."""
    return _sum_pool_backward(dy, input_shape, kernel_size, stride, floor_mode, n_threads, average=True)


def sum_pool2d(x, kernel_size, stride=None, floor_mode=False, n_threads=None) -> np.ndarray:
    """Sum over each window (the lectures' un-normalised reduction)."""
    return _sum_pool(x, kernel_size, stride, floor_mode, n_threads, average=False)


def sum_pool2d_backward(dy, input_shape, kernel_size, stride=None, floor_mode=False, n_threads=None):
    """Copies dy to every input of its window."""
    return _sum_pool_backward(dy, input_shape, kernel_size, stride, floor_mode, n_threads, average=False)


def _check_norm_type(norm_type):
    if isinstance(norm_type, bool) or not isinstance(norm_type, int | float | np.integer | np.floating):
        raise TypeError(f"norm_type must be a number, got {type(norm_type).__name__}")
    if norm_type != 2:
        raise ValueError(f"lp_pool2d supports norm_type=2 (L2 pooling) only, got {norm_type}")


def lp_pool2d(x, norm_type=2, kernel_size=2, stride=None, floor_mode=False, n_threads=None) -> np.ndarray:
    """L2 pooling sqrt(sum over the window of x^2) (PyTorch's LPPool2d with norm_type=2; the only p
    supported)."""
    _check_norm_type(norm_type)
    x, (kh, kw, sh, sw), (N, C, OH, OW) = _pool_setup(x, kernel_size, stride, floor_mode)
    out = np.empty((N * C, OH, OW), np.float32)
    _pool.l2_pool2d_forward(x.reshape(N * C, *x.shape[2:]), out, kh, kw, sh, sw, resolve_n_threads(n_threads))
    return out.reshape(N, C, OH, OW)


def lp_pool2d_backward(dy, x, y, norm_type=2, kernel_size=2, stride=None, floor_mode=False, n_threads=None):
    """dx = dy * x / y over each window; 0 where y == 0 (an all-zero window has no direction)."""
    _check_norm_type(norm_type)
    x, (kh, kw, sh, sw), out_shape = _pool_setup(x, kernel_size, stride, floor_mode)
    dy = _as_f32("output gradient dy", dy, 4)
    y = _as_f32("forward output y", y, 4)
    _check_shape("output gradient dy", dy, out_shape)
    _check_shape("forward output y", y, out_shape)
    N, C, H, W = x.shape
    dx = np.zeros((N * C, H, W), np.float32)
    _pool.l2_pool2d_backward(dy.reshape(N * C, *out_shape[2:]), x.reshape(N * C, H, W),
                             y.reshape(N * C, *out_shape[2:]), dx, kh, kw, sh, sw,
                             resolve_n_threads(n_threads))
    return dx.reshape(x.shape)


# ------------------------------------------------------------------------------------------------------------
# dense
# ------------------------------------------------------------------------------------------------------------


def flatten(x) -> np.ndarray:
    """(N, ...) -> (N, prod(...)): a reshape (a view when x is already C-contiguous float32)."""
    x = _as_f32("input x", x)
    if x.ndim < 1:
        raise ValueError(f"input x must have a batch dimension, got shape {x.shape}")
    return x.reshape(x.shape[0], -1)


def _linear_setup(x, w):
    x = _as_f32("input x", x, 2)
    w = _as_f32("weight w", w, 2)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"weight expects {w.shape[1]} input features (weight shape {w.shape}), input has "
                         f"{x.shape[1]} (input shape {x.shape})")
    return x, w


def linear(x, w, b=None, n_threads=None) -> np.ndarray:
    """x (N, IN) @ w.T (OUT, IN) + b (OUT,) -> (N, OUT)."""
    x, w = _linear_setup(x, w)
    O = w.shape[0]  # noqa: E741
    if b is None:
        b32, has_bias = np.zeros(O, np.float32), False
    else:
        b32, has_bias = _as_f32("bias b", b, 1), True
        _check_shape("bias b", b32, (O,))
    check_alloc(f"linear on input {x.shape} and weight {w.shape}", ((x.shape[0], O), np.float32),
                (w.shape, np.float32))
    out = np.empty((x.shape[0], O), np.float32)
    _dense.linear_forward(x, np.ascontiguousarray(w.T), b32, out, has_bias, resolve_n_threads(n_threads))
    return out


def linear_backward(dy, x, w, n_threads=None):
    """Gradients of `linear`: (dx (N, IN), dw (OUT, IN), db (OUT,))."""
    x, w = _linear_setup(x, w)
    dy = _as_f32("output gradient dy", dy, 2)
    _check_shape("output gradient dy", dy, (x.shape[0], w.shape[0]))
    check_alloc(f"linear_backward on input {x.shape} and weight {w.shape}", (x.shape, np.float32),
                (w.shape, np.float32), (dy.shape, np.float32))
    dx = np.empty(x.shape, np.float32)
    dw = np.empty(w.shape, np.float32)
    db = np.empty(w.shape[0], np.float32)
    _dense.linear_backward(dy, np.ascontiguousarray(dy.T), x, w, dx, dw, db, resolve_n_threads(n_threads))
    return dx, dw, db


# ------------------------------------------------------------------------------------------------------------
# activations (any shape)
# ------------------------------------------------------------------------------------------------------------


def _unary(kernel, x, *args, n_threads=None):
    x = _as_f32("input x", x)
    nt = resolve_n_threads(n_threads)
    check_alloc(f"an activation of input {x.shape}", (x.shape, np.float32))
    y = np.empty_like(x)
    kernel(_flat(x), _flat(y), *args, nt)
    return y


def _unary_backward(kernel, dy, saved, saved_name, *args, n_threads=None):
    saved = _as_f32(saved_name, saved)
    dy = _as_f32("output gradient dy", dy)
    _check_shape("output gradient dy", dy, saved.shape)
    nt = resolve_n_threads(n_threads)
    check_alloc(f"an activation backward of input {saved.shape}", (saved.shape, np.float32))
    dx = np.empty_like(saved)
    kernel(_flat(dy), _flat(saved), _flat(dx), *args, nt)
    return dx


def _real(name, v) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return float(v)


def relu(x, n_threads=None):
    """max(x, 0)."""
    return _unary(_activation.relu_forward, x, n_threads=n_threads)


def relu_backward(dy, x, n_threads=None):
    """dy where x > 0, else 0 (x is the forward INPUT; the gradient at 0 is 0, as PyTorch)."""
    return _unary_backward(_activation.relu_backward, dy, x, "forward input x", n_threads=n_threads)


def leaky_relu(x, negative_slope=0.01, n_threads=None):
    """x if x > 0 else negative_slope * x."""
    slope = _real("negative_slope", negative_slope)
    return _unary(_activation.leaky_relu_forward, x, slope, n_threads=n_threads)


def leaky_relu_backward(dy, x, negative_slope=0.01, n_threads=None):
    """dy if x > 0 else negative_slope * dy (x is the forward INPUT)."""
    return _unary_backward(_activation.leaky_relu_backward, dy, x, "forward input x",
                           _real("negative_slope", negative_slope), n_threads=n_threads)


def elu(x, alpha=1.0, n_threads=None):
    """x if x > 0 else alpha * (exp(x) - 1)."""
    return _unary(_activation.elu_forward, x, _real("alpha", alpha), n_threads=n_threads)


def elu_backward(dy, x, alpha=1.0, n_threads=None):
    """dy if x > 0 else dy * alpha * exp(x) (x is the forward INPUT)."""
    return _unary_backward(_activation.elu_backward, dy, x, "forward input x", _real("alpha", alpha),
                           n_threads=n_threads)


def sigmoid(x, n_threads=None):
    """1 / (1 + exp(-x)), computed without overflow for large |x|."""
    return _unary(_activation.sigmoid_forward, x, n_threads=n_threads)


def sigmoid_backward(dy, y, n_threads=None):
    """dy * y * (1 - y), where y is the forward OUTPUT."""
    return _unary_backward(_activation.sigmoid_backward, dy, y, "forward output y", n_threads=n_threads)


def tanh(x, n_threads=None):
    """tanh(x)."""
    return _unary(_activation.tanh_forward, x, n_threads=n_threads)


def tanh_backward(dy, y, n_threads=None):
    """dy * (1 - y^2), where y is the forward OUTPUT."""
    return _unary_backward(_activation.tanh_backward, dy, y, "forward output y", n_threads=n_threads)


# ------------------------------------------------------------------------------------------------------------
# losses and regularisation
# ------------------------------------------------------------------------------------------------------------


def cross_entropy(logits, target, n_threads=None) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy on logits (N, K) with int class targets (N,), mean over the batch:
    (loss, dloss/dlogits (N, K)). Stable: log-sum-exp around each row's max, in float64."""
    logits = _as_f32("logits", logits, 2)
    N, K = logits.shape
    t = np.asarray(target)
    if np.issubdtype(t.dtype, np.floating) and np.isnan(t).any():
        raise ValueError("target contains NaN")
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"target must be integer class indices, got dtype {t.dtype}")
    _check_shape("target", t, (N,))
    if t.min() < 0 or t.max() >= K:
        raise ValueError(f"target class indices must lie in [0, {K}), got [{t.min()}, {t.max()}]")
    t = np.ascontiguousarray(t, dtype=np.int64)
    loss = np.empty(N, np.float64)
    dlogits = np.empty((N, K), np.float32)
    _loss.softmax_cross_entropy(logits, t, loss, dlogits, 1.0 / N, resolve_n_threads(n_threads))
    return float(loss.sum() / N), dlogits


def mse_loss(x, target, n_threads=None) -> tuple[float, np.ndarray]:
    """Mean squared error over every element: (loss, dloss/dx = 2 (x - target) / x.size)."""
    x = _as_f32("input x", x)
    t = np.asarray(target)
    if not np.issubdtype(t.dtype, np.floating) and not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"target must be a real array, got dtype {t.dtype}")
    if np.issubdtype(t.dtype, np.floating) and np.isnan(t).any():
        raise ValueError("target contains NaN")
    _check_shape("target", t, x.shape)
    t = np.ascontiguousarray(t, dtype=np.float32)
    rows = x.shape[0] if x.ndim >= 1 else 1
    x2, t2 = x.reshape(rows, -1), t.reshape(rows, -1)
    loss = np.empty(rows, np.float64)
    dx = np.empty_like(x2)
    _loss.squared_error(x2, t2, loss, dx, 1.0 / x.size, resolve_n_threads(n_threads))
    return float(loss.sum() / x.size), dx.reshape(x.shape)


def dropout(x, p=0.5, training=True, seed=None, rng=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverted dropout: (y, mask). In training each element is kept with probability 1 - p and scaled by
    1 / (1 - p), so eval needs no rescaling; mask holds those factors (0 or 1/(1-p)) for the backward.
    In eval (or p == 0) y is x and mask is None. The draw comes from `rng` (a numpy Generator, advanced) or
    a fresh Generator seeded with `seed`; give one of them for reproducible masks."""
    x = _as_f32("input x", x)
    p = _real("p", p)
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x, None
    if rng is None:
        rng = np.random.default_rng(seed)
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    keep = rng.random(x.shape, dtype=np.float32) >= p
    mask = keep.astype(np.float32) * np.float32(1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dy, mask) -> np.ndarray:
    """dy * mask (mask from `dropout`; None means eval/identity)."""
    dy = _as_f32("output gradient dy", dy)
    if mask is None:
        return dy
    _check_shape("mask", np.asarray(mask), dy.shape)
    return dy * mask


def l2_penalty(params: Sequence, lam: float) -> tuple[float, list[np.ndarray]]:
    """L2 weight decay: (lam * sum ||w||^2, [2 * lam * w for each w]). `params` holds arrays or objects with
    `.data` (a `cnnx.nn.Parameter`); the sum is taken in float64."""
    lam = _real("lam", lam)
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    arrays = [_as_f32("parameter", getattr(p, "data", p)) for p in params]
    penalty = lam * sum(float(np.sum(a.astype(np.float64) ** 2)) for a in arrays)
    return penalty, [np.float32(2 * lam) * a for a in arrays]
