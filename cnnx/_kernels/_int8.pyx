# cnnx/_kernels/_int8.pyx — the int8 CPU path's integer kernels: conv/linear accumulators and pooling.
# Shapes: N batch, C in, H/W input, F filters, KH/KW kernel, OH/OW output. IN is read-only, OUT write-only.
#
# These kernels compute ONLY exact integers: the int32 accumulator (sum of int8*int8 products plus the int32
# bias), the int8 window max, and the int32 window sum. Rounding, ReLU and saturation are applied afterwards
# by `cnnx.quant.requantize` in the Python wrapper (cnnx/int8.py), so the int8 rule is defined in one place.
# int32 cannot overflow: the wrapper calls `quant.check_acc_range` before any kernel runs.
# The naive twins to compare with are the golden functions in cnnx/reference.py.

from cython.parallel cimport prange
from libc.stdint cimport int8_t, int32_t


cdef void _conv2d_acc(
    const int8_t[:, :, :, ::1] x,   # IN  (N, C, H, W)
    const int8_t[:, :, :, ::1] w,   # IN  (F, C, KH, KW), read as (F, K) rows with K = C*KH*KW
    const int32_t[::1] b,           # IN  (F,)
    int32_t[:, :, :, ::1] out,      # OUT (N, F, OH, OW)
    int8_t[:, ::1] scratch,         # scratch (T, K*OH*OW): one patch matrix per chunk of images
    Py_ssize_t stride, Py_ssize_t pad, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = out.shape[0], F = out.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t KH = w.shape[2], KW = w.shape[3]
    cdef Py_ssize_t K = C * KH * KW, P = OH * OW, T = scratch.shape[0]
    cdef Py_ssize_t t, n, f, c, i, j, p, k, oh, ow, ih, ow_lo, ow_hi, last, off
    cdef int32_t wv, bf
    cdef int8_t* col
    cdef int8_t* crow
    cdef const int8_t* xrow
    cdef const int8_t* wrow
    cdef int32_t* orow
    # Images are independent: the batch is cut into T contiguous chunks, one per thread, each with its own
    # patch matrix col (K, P): row k = (c, i, j) holds, for every output pixel p, the input value that weight
    # k meets there (0 on the padding). Then each output plane is a sum over k of weight * row, and that
    # innermost loop runs along P contiguous int8 -> int32 values, which the compiler vectorises.
    for t in prange(T, schedule="static", num_threads=n_threads):
        col = &scratch[t, 0]
        for n in range(t * N // T, (t + 1) * N // T):
            k = 0
            for c in range(C):
                for i in range(KH):
                    for j in range(KW):
                        # the outputs whose input column ow*stride + j - pad lies inside the image (cdivision
                        # is on: keep the operands >= 0)
                        if pad > j:
                            ow_lo = (pad - j + stride - 1) // stride
                        else:
                            ow_lo = 0
                        last = W - 1 + pad - j
                        if last < 0:
                            ow_hi = 0
                        else:
                            ow_hi = last // stride + 1
                            if ow_hi > OW:
                                ow_hi = OW
                        if ow_hi < ow_lo:
                            ow_hi = ow_lo
                        off = j - pad
                        for oh in range(OH):
                            crow = col + k * P + oh * OW
                            ih = oh * stride + i - pad
                            if ih < 0 or ih >= H:
                                for ow in range(OW):
                                    crow[ow] = 0
                                continue
                            xrow = &x[n, c, ih, 0]
                            for ow in range(ow_lo):
                                crow[ow] = 0
                            for ow in range(ow_lo, ow_hi):
                                crow[ow] = xrow[ow * stride + off]
                            for ow in range(ow_hi, OW):
                                crow[ow] = 0
                        k = k + 1
            for f in range(F):
                wrow = &w[f, 0, 0, 0]
                orow = &out[n, f, 0, 0]
                bf = b[f]
                for p in range(P):
                    orow[p] = bf
                for k in range(K):
                    wv = wrow[k]
                    if wv == 0:
                        continue
                    crow = col + k * P
                    for p in range(P):
                        orow[p] += wv * crow[p]


cdef void _linear_acc(
    const int8_t[:, ::1] x,   # IN  (N, IN)
    const int8_t[:, ::1] w,   # IN  (OUT, IN)
    const int32_t[::1] b,     # IN  (OUT,)
    int32_t[:, ::1] out,      # OUT (N, OUT)
    int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = out.shape[0], F = out.shape[1], K = x.shape[1]
    cdef Py_ssize_t nf, n, f, k
    cdef int32_t acc
    cdef const int8_t* xrow
    cdef const int8_t* wrow
    # one dot product per (n, out) element: independent, and both rows are contiguous (a vectorised sum)
    for nf in prange(N * F, schedule="static", num_threads=n_threads):
        n = nf // F
        f = nf % F
        xrow = &x[n, 0]
        wrow = &w[f, 0]
        acc = 0
        for k in range(K):
            acc = acc + xrow[k] * wrow[k]
        out[n, f] = acc + b[f]


cdef void _maxpool2d(
    const int8_t[:, :, :, ::1] x,   # IN  (N, C, H, W)
    int8_t[:, :, :, ::1] out,       # OUT (N, C, OH, OW)
    Py_ssize_t kernel, Py_ssize_t stride, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = out.shape[0], C = out.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t nc, n, c, oh, ow, i, j
    cdef int8_t m, v
    # every (n, c) plane is independent
    for nc in prange(N * C, schedule="static", num_threads=n_threads):
        n = nc // C
        c = nc % C
        for oh in range(OH):
            for ow in range(OW):
                m = -128
                for i in range(kernel):
                    for j in range(kernel):
                        v = x[n, c, oh * stride + i, ow * stride + j]
                        if v > m:
                            m = v
                out[n, c, oh, ow] = m


cdef void _sumpool2d(
    const int8_t[:, :, :, ::1] x,   # IN  (N, C, H, W)
    int32_t[:, :, :, ::1] out,      # OUT (N, C, OH, OW) window sums, for the average pool's requantisation
    Py_ssize_t kernel, Py_ssize_t stride, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = out.shape[0], C = out.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t nc, n, c, oh, ow, i, j
    cdef int32_t s
    for nc in prange(N * C, schedule="static", num_threads=n_threads):
        n = nc // C
        c = nc % C
        for oh in range(OH):
            for ow in range(OW):
                s = 0
                for i in range(kernel):
                    for j in range(kernel):
                        s = s + x[n, c, oh * stride + i, ow * stride + j]
                out[n, c, oh, ow] = s


# ---- Python-visible entry points: the caller (cnnx/int8.py) has validated shapes and allocated `out` ----

def conv2d_acc(const int8_t[:, :, :, ::1] x, const int8_t[:, :, :, ::1] w, const int32_t[::1] b,
               int32_t[:, :, :, ::1] out, int8_t[:, ::1] scratch, Py_ssize_t stride, Py_ssize_t pad,
               int n_threads):
    with nogil:
        _conv2d_acc(x, w, b, out, scratch, stride, pad, n_threads)


def linear_acc(const int8_t[:, ::1] x, const int8_t[:, ::1] w, const int32_t[::1] b,
               int32_t[:, ::1] out, int n_threads):
    with nogil:
        _linear_acc(x, w, b, out, n_threads)


def maxpool2d(const int8_t[:, :, :, ::1] x, int8_t[:, :, :, ::1] out,
              Py_ssize_t kernel, Py_ssize_t stride, int n_threads):
    with nogil:
        _maxpool2d(x, out, kernel, stride, n_threads)


def sumpool2d(const int8_t[:, :, :, ::1] x, int32_t[:, :, :, ::1] out,
              Py_ssize_t kernel, Py_ssize_t stride, int n_threads):
    with nogil:
        _sumpool2d(x, out, kernel, stride, n_threads)
