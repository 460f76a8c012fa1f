# cnnx/_kernels/_dense.pyx — fully connected layer y = x @ w.T + b, float32, forward and backward.
# Shapes: N batch, DI in-features, DO out-features. IN is read-only, OUT write-only. Call through
# `cnnx.functional`, which validates every size: no bounds checks here.
# Backward is split so no two threads write one location: dx parallel over the batch, dw/db parallel over
# the output features with the batch summed in a fixed order, so results do not depend on the thread count.

from cython.parallel cimport prange

from ._vec cimport axpy, dot


def linear_forward(
    const float[:, ::1] x,          # IN  (N, DI)
    const float[:, ::1] w,          # IN  (DO, DI)
    const float[::1] b,             # IN  (DO,) ignored unless has_bias
    float[:, ::1] out,              # OUT (N, DO)
    bint has_bias, int n_threads,
):
    cdef Py_ssize_t N = x.shape[0], DI = x.shape[1], DO = w.shape[0]
    cdef Py_ssize_t n, o
    for n in prange(N, schedule="static", num_threads=n_threads, nogil=True):
        for o in range(DO):
            out[n, o] = dot(&x[n, 0], &w[o, 0], DI) + (b[o] if has_bias else 0)


def linear_backward(
    const float[:, ::1] dy,         # IN  (N, DO)
    const float[:, ::1] x,          # IN  (N, DI)
    const float[:, ::1] w,          # IN  (DO, DI)
    float[:, ::1] dx,               # OUT (N, DI) zeroed by the caller
    float[:, ::1] dw,               # OUT (DO, DI) zeroed by the caller
    float[::1] db,                  # OUT (DO,)
    int n_threads,
):
    cdef Py_ssize_t N = x.shape[0], DI = x.shape[1], DO = w.shape[0]
    cdef Py_ssize_t n, o, m
    cdef double s
    for n in prange(N, schedule="static", num_threads=n_threads, nogil=True):
        for o in range(DO):
            axpy(dy[n, o], &w[o, 0], &dx[n, 0], DI)
    for o in prange(DO, schedule="static", num_threads=n_threads, nogil=True):
        s = 0
        for m in range(N):
            axpy(dy[m, o], &x[m, 0], &dw[o, 0], DI)
            s = s + dy[m, o]
        db[o] = <float>s
