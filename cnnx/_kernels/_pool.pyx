# cnnx/_kernels/_pool.pyx — 2-D pooling (max, sum/average, L2), float32, NCHW, forward and backward.
# Shapes: N batch, C channels, H/W input, KH/KW window, SH/SW stride, OH/OW output. IN is read-only, OUT
# write-only. Call through `cnnx.functional`, which validates every size: no bounds checks here.
# Every (n, c) plane is independent, so all loops run in parallel over the N*C planes; overlapping windows
# (stride < kernel) scatter into one plane, which only its own thread touches: race-free and deterministic.

from cython.parallel cimport prange
from libc.math cimport sqrtf
from libc.stdint cimport int32_t


cdef inline int32_t _has_nan(const int32_t* bits, Py_ssize_t n) noexcept nogil:
    """1 if one of the n floats whose bit patterns `bits` points at is a NaN, else 0."""
    cdef int32_t found = 0
    cdef Py_ssize_t k
    for k in range(n):
        found = found | ((bits[k] & 0x7fffffff) > 0x7f800000)
    return found


cdef extern from "cnnx_pool.h" nogil:
    void cnnx_maxpool2x2_f32(const float* plane, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, float* out,
                             int* argmax)


def max_pool2d_forward(
    const float[:, :, ::1] x,       # IN  (N*C, H, W)
    float[:, :, ::1] out,           # OUT (N*C, OH, OW)
    int[:, :, ::1] argmax,          # OUT (N*C, OH, OW) flat index ih*W + iw of the max in its plane
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW, int n_threads,
):
    cdef Py_ssize_t NC = x.shape[0], HW = x.shape[1] * x.shape[2], W = x.shape[2]
    cdef Py_ssize_t OH = out.shape[1], OW = out.shape[2]
    cdef Py_ssize_t q, oh, ow, i, j, best_i, idx
    cdef float best, v
    cdef bint take
    cdef int32_t nan_bits
    cdef const float* plane
    cdef float* o
    cdef int* a
    cdef bint two_by_two = KH == 2 and KW == 2 and SH == 2 and SW == 2  # LeNet's pools
    for q in prange(NC, schedule="static", num_threads=n_threads, nogil=True):
        plane = &x[q, 0, 0]
        o = &out[q, 0, 0]
        a = &argmax[q, 0, 0]
        # Does the plane hold a NaN (|bits| above the infinity 0x7f800000)? A signed-int OR-reduction, which
        # the compiler vectorises: a few percent of the pooling itself. Only such planes take the slower
        # NaN-aware loop below, so finite data keeps the fast ones.
        nan_bits = _has_nan(<const int32_t*>plane, HW)
        if nan_bits == 0 and two_by_two:  # the same rule, vectorised in C (it does not propagate NaN)
            cnnx_maxpool2x2_f32(plane, W, OH, OW, o, a)
        elif nan_bits == 0:
            for oh in range(OH):
                for ow in range(OW):
                    # strict '>' keeps the first maximum in row-major window order (ties -> first); the
                    # operands are loaded into locals first so gcc can use conditional moves, not branches
                    best_i = (oh * SH) * W + ow * SW
                    best = plane[best_i]
                    for i in range(KH):
                        for j in range(KW):
                            idx = (oh * SH + i) * W + ow * SW + j
                            v = plane[idx]
                            best_i = idx if v > best else best_i
                            best = v if v > best else best
                    o[oh * OW + ow] = best
                    a[oh * OW + ow] = <int>best_i
        else:
            for oh in range(OH):
                for ow in range(OW):
                    # as above, but a NaN wins over any number and the first NaN stays: NaN propagates
                    # with the index of the first one, as the golden model's max/argmax (and PyTorch) give
                    best_i = (oh * SH) * W + ow * SW
                    best = plane[best_i]
                    for i in range(KH):
                        for j in range(KW):
                            idx = (oh * SH + i) * W + ow * SW + j
                            v = plane[idx]
                            take = v > best or (v != v and best == best)
                            best_i = idx if take else best_i
                            best = v if take else best
                    o[oh * OW + ow] = best
                    a[oh * OW + ow] = <int>best_i


def max_pool2d_backward(
    const float[:, :, ::1] dy,      # IN  (N*C, OH, OW)
    const int[:, :, ::1] argmax,    # IN  (N*C, OH, OW)
    float[:, ::1] dx,               # OUT (N*C, H*W) zeroed by the caller
    int n_threads,
):
    cdef Py_ssize_t NC = dy.shape[0], OH = dy.shape[1], OW = dy.shape[2]
    cdef Py_ssize_t q, oh, ow
    for q in prange(NC, schedule="static", num_threads=n_threads, nogil=True):
        for oh in range(OH):
            for ow in range(OW):
                dx[q, argmax[q, oh, ow]] += dy[q, oh, ow]


def sum_pool2d_forward(
    const float[:, :, ::1] x,       # IN  (N*C, H, W)
    float[:, :, ::1] out,           # OUT (N*C, OH, OW)
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
    float scale,                    # 1 for sum pooling, 1/(KH*KW) for average pooling
    int n_threads,
):
    cdef Py_ssize_t NC = x.shape[0], W = x.shape[2], OH = out.shape[1], OW = out.shape[2]
    cdef Py_ssize_t q, oh, ow, i, j
    cdef float s
    cdef const float* plane
    cdef const float* row
    cdef float* o
    for q in prange(NC, schedule="static", num_threads=n_threads, nogil=True):
        plane = &x[q, 0, 0]
        o = &out[q, 0, 0]
        for oh in range(OH):
            for ow in range(OW):
                s = 0
                for i in range(KH):
                    row = plane + (oh * SH + i) * W + ow * SW
                    for j in range(KW):
                        s = s + row[j]
                o[oh * OW + ow] = s * scale


def sum_pool2d_backward(
    const float[:, :, ::1] dy,      # IN  (N*C, OH, OW)
    float[:, :, ::1] dx,            # OUT (N*C, H, W) zeroed by the caller
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
    float scale, int n_threads,
):
    cdef Py_ssize_t NC = dy.shape[0], OH = dy.shape[1], OW = dy.shape[2]
    cdef Py_ssize_t q, oh, ow, i, j
    cdef float g
    for q in prange(NC, schedule="static", num_threads=n_threads, nogil=True):
        for oh in range(OH):
            for ow in range(OW):
                g = dy[q, oh, ow] * scale
                for i in range(KH):
                    for j in range(KW):
                        dx[q, oh * SH + i, ow * SW + j] += g


def l2_pool2d_forward(
    const float[:, :, ::1] x,       # IN  (N*C, H, W)
    float[:, :, ::1] out,           # OUT (N*C, OH, OW) sqrt(sum of squares over the window)
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW, int n_threads,
):
    cdef Py_ssize_t NC = x.shape[0], OH = out.shape[1], OW = out.shape[2]
    cdef Py_ssize_t q, oh, ow, i, j
    cdef float s, v
    for q in prange(NC, schedule="static", num_threads=n_threads, nogil=True):
        for oh in range(OH):
            for ow in range(OW):
                s = 0
                for i in range(KH):
                    for j in range(KW):
                        v = x[q, oh * SH + i, ow * SW + j]
                        s = s + v * v
                out[q, oh, ow] = sqrtf(s)


def l2_pool2d_backward(
    const float[:, :, ::1] dy,      # IN  (N*C, OH, OW)
    const float[:, :, ::1] x,       # IN  (N*C, H, W)
    const float[:, :, ::1] y,       # IN  (N*C, OH, OW) the forward output
    float[:, :, ::1] dx,            # OUT (N*C, H, W) zeroed by the caller
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW, int n_threads,
):
    cdef Py_ssize_t NC = dy.shape[0], OH = dy.shape[1], OW = dy.shape[2]
    cdef Py_ssize_t q, oh, ow, i, j
    cdef float g
    for q in prange(NC, schedule="static", num_threads=n_threads, nogil=True):
        for oh in range(OH):
            for ow in range(OW):
                # d sqrt(sum x^2) / dx = x / y; defined as 0 where y == 0 (an all-zero window)
                if y[q, oh, ow] == 0:
                    continue
                g = dy[q, oh, ow] / y[q, oh, ow]
                for i in range(KH):
                    for j in range(KW):
                        dx[q, oh * SH + i, ow * SW + j] += g * x[q, oh * SH + i, ow * SW + j]
