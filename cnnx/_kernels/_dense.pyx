# cnnx/_kernels/_dense.pyx — fully connected layer y = x @ w.T + b, float32, forward and backward.
# Shapes: N batch, DI in-features, DO out-features. IN is read-only, OUT write-only. Call through
# `cnnx.functional`, which validates every size: no bounds checks here. The products run on the register
# tiles of `_gemm.pxd`:
#   forward  y[n, o] = b[o] + sum_i x[n, i] w[o, i]     (NT tiles: both operands read along their rows)
#   dx       dx (N, DI) = dy (N, DO) @ w (DO, DI)        parallel over blocks of images
#   dw       dw (DO, DI) = dyT (DO, N) @ x (N, DI)       parallel over blocks of output features, the batch
#                                                        summed in order inside each
#   db       db[o] = sum_n dy[n, o]                      parallel over output features, summed in order
# No two threads write one location and no sum depends on the thread count.

from cython.parallel cimport prange

from ._gemm cimport gemm_init, sgemm, sgemm_nt_tile

gemm_init()  # pick the sgemm tiles for this CPU, once

cdef enum:
    TILE = 4     # the NT tile: up to 4 x 4 outputs
    ROWS = 6     # the NN register tile's rows


def linear_forward(
    const float[:, ::1] x,          # IN  (N, DI)
    const float[:, ::1] w,          # IN  (DO, DI)
    const float[::1] b,             # IN  (DO,) ignored unless has_bias
    float[:, ::1] out,              # OUT (N, DO)
    bint has_bias, int n_threads,
):
    cdef Py_ssize_t N = x.shape[0], DI = x.shape[1], DO = w.shape[0]
    cdef Py_ssize_t t, n0, o0, nr, oc, r, q
    cdef Py_ssize_t n_ot = (DO + TILE - 1) // TILE, n_nt = (N + TILE - 1) // TILE
    for t in prange(n_nt * n_ot, schedule="static", num_threads=n_threads, nogil=True):
        n0 = (t // n_ot) * TILE
        o0 = (t % n_ot) * TILE
        nr = min(TILE, N - n0)
        oc = min(TILE, DO - o0)
        sgemm_nt_tile(nr, oc, 1, DI, &x[n0, 0], DI, 0, &w[o0, 0], DI, NULL, 0, &out[n0, o0], DO, 0)
        if has_bias:
            for r in range(nr):
                for q in range(oc):
                    out[n0 + r, o0 + q] = out[n0 + r, o0 + q] + b[o0 + q]


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
