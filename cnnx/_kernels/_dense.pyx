# cnnx/_kernels/_dense.pyx — fully connected layer y = x @ w.T + b, float32, forward and backward.
# Shapes: N batch, DI in-features, DO out-features. IN is read-only, OUT write-only. Call through
# `cnnx.functional`, which validates every size: no bounds checks here. The products run on the register
# tiles of `_gemm.pxd`:
#   forward  y (N, DO) = b + x (N, DI) @ wT (DI, DO)     parallel over blocks of images
#   dx       dx (N, DI) = dy (N, DO) @ w (DO, DI)        parallel over blocks of images
#   dw       dw (DO, DI) = dyT (DO, N) @ x (N, DI)       parallel over blocks of output features, the batch
#                                                        summed in order inside each
#   db       db[o] = sum_n dy[n, o]                      parallel over output features, summed in order
# No two threads write one location and no sum depends on the thread count.

from cython.parallel cimport prange

from ._gemm cimport gemm_init, sgemm

gemm_init()  # pick the sgemm tiles for this CPU, once

cdef enum:
    ROWS = 6     # the sgemm register tile's rows


def linear_forward(
    const float[:, ::1] x,          # IN  (N, DI)
    const float[:, ::1] wt,         # IN  (DI, DO) the weights, transposed
    const float[::1] b,             # IN  (DO,) ignored unless has_bias
    float[:, ::1] out,              # OUT (N, DO)
    bint has_bias, int n_threads,
):
    cdef Py_ssize_t N = x.shape[0], DI = x.shape[1], DO = wt.shape[1]
    cdef Py_ssize_t t, r0, r, o, nr
    for t in prange((N + ROWS - 1) // ROWS, schedule="static", num_threads=n_threads, nogil=True):
        r0 = t * ROWS
        nr = min(<Py_ssize_t>ROWS, N - r0)
        if has_bias:
            for r in range(nr):
                for o in range(DO):
                    out[r0 + r, o] = b[o]
        sgemm(nr, DO, DI, &x[r0, 0], DI, &wt[0, 0], DO, &out[r0, 0], DO, has_bias)


def linear_backward(
    const float[:, ::1] dy,         # IN  (N, DO)
    const float[:, ::1] dyt,        # IN  (DO, N) the same, transposed
    const float[:, ::1] x,          # IN  (N, DI)
    const float[:, ::1] w,          # IN  (DO, DI)
    float[:, ::1] dx,               # OUT (N, DI)
    float[:, ::1] dw,               # OUT (DO, DI)
    float[::1] db,                  # OUT (DO,)
    int n_threads,
):
    cdef Py_ssize_t N = x.shape[0], DI = x.shape[1], DO = w.shape[0]
    cdef Py_ssize_t t, r0, o, m
    cdef double s
    with nogil:
        for t in prange((N + ROWS - 1) // ROWS, schedule="static", num_threads=n_threads):
            r0 = t * ROWS
            sgemm(min(ROWS, N - r0), DI, DO, &dy[r0, 0], DO, &w[0, 0], DI, &dx[r0, 0], DI, 0)
        for t in prange((DO + ROWS - 1) // ROWS, schedule="static", num_threads=n_threads):
            r0 = t * ROWS
            sgemm(min(ROWS, DO - r0), DI, N, &dyt[r0, 0], N, &x[0, 0], DI, &dw[r0, 0], DI, 0)
        for o in prange(DO, schedule="static", num_threads=n_threads):
            s = 0
            for m in range(N):
                s = s + dyt[o, m]
            db[o] = <float>s
