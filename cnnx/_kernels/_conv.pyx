# cnnx/_kernels/_conv.pyx — 2-D convolution (cross-correlation, as PyTorch), float32, NCHW, fwd and bwd.
# Shapes: N batch, C in, H/W input, F filters, KH/KW kernel, OH/OW output, K = C*KH*KW, P = OH*OW.
# IN is read-only, OUT write-only, WORK is scratch owned by the caller. Call through `cnnx.functional`, which
# validates every size: these kernels run without bounds checks.
#
# Method (im2col + one register-blocked sgemm, `_gemm.pxd`), per image n:
#   forward  out_n (F, P) = b + w (F, K) @ col_n (K, P), col_n the receptive fields unrolled (zeros where a
#            window hangs over the padding), in a per-thread buffer; parallel over images.
#   dw       dw[f, k] = sum_n sum_p dy_n[f, p] col_n[k, p] (`sgemm_nt_tile`, reusing the forward's col
#            layout): parallel over 4x4 tiles of dw (output channels x K), each summing the images in order.
#   db       parallel over output channels, the batch summed in order (in double).
#   dx       dcol_n (K, P) = wT (K, F) @ dy_n (F, P), then col2im scatters it into dx_n; parallel over images.
# No two threads ever write one location, and every sum runs in a fixed order, so results do not depend on
# the thread count.

from cython.parallel cimport parallel, prange, threadid

from ._gemm cimport sgemm, sgemm_nt_tile
from ._im2col cimport col2im, im2col
from ._vec cimport fsum


cdef void _conv2d_forward(
    const float[:, :, :, ::1] x,    # IN   (N, C, H, W)
    const float[:, ::1] w,          # IN   (F, K)   the (F, C, KH, KW) weights, flattened
    const float[::1] b,             # IN   (F,)     ignored unless has_bias
    float[:, :, ::1] out,           # OUT  (N, F, P)
    float[:, :, ::1] col,           # WORK (n_threads, K, P) one im2col buffer per thread
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
    bint has_bias, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = w.shape[0], K = w.shape[1], P = OH * OW
    cdef Py_ssize_t n, f, p
    cdef float* cb
    # every image is independent; each thread unrolls its image into its own col buffer
    for n in prange(N, schedule="static", num_threads=n_threads, nogil=True):
        cb = &col[threadid(), 0, 0]
        im2col(&x[n, 0, 0, 0], C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, cb)
        if has_bias:
            for f in range(F):
                for p in range(P):
                    out[n, f, p] = b[f]
        sgemm(F, P, K, &w[0, 0], K, cb, P, &out[n, 0, 0], P, has_bias)


def conv2d_forward(
    const float[:, :, :, ::1] x,    # IN   (N, C, H, W)
    const float[:, ::1] w,          # IN   (F, K)
    const float[::1] b,             # IN   (F,)
    float[:, :, ::1] out,           # OUT  (N, F, P)
    float[:, :, ::1] col,           # WORK (n_threads, K, P)
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
    bint has_bias, int n_threads,
):
    with nogil:
        _conv2d_forward(x, w, b, out, col, KH, KW, OH, OW, sh, sw, ph, pw, has_bias, n_threads)


# dw tiles: up to 4 output channels x 4 columns of K, the register tile of sgemm_nt_tile
cdef enum:
    TILE = 4


cdef void _conv2d_backward(
    const float[:, :, ::1] dy,      # IN   (N, F, P)
    const float[:, :, :, ::1] x,    # IN   (N, C, H, W)
    const float[:, ::1] wt,         # IN   (K, F)   the flattened weights, transposed
    float[:, :, :, ::1] dx,         # OUT  (N, C, H, W)  zeroed by the caller; untouched unless need_dx
    float[:, ::1] dw,               # OUT  (F, K)
    float[::1] db,                  # OUT  (F,)
    float[:, :, ::1] cols,          # WORK (N, K, P) im2col of every image
    float[:, :, ::1] dcol,          # WORK (n_threads, K, P)
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
    bint need_dx, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = wt.shape[1], K = wt.shape[0], P = OH * OW
    cdef Py_ssize_t n, m, f, t, f0, k0
    cdef Py_ssize_t n_kt = (K + TILE - 1) // TILE, n_ft = (F + TILE - 1) // TILE
    cdef double accb
    cdef float* dc
    with parallel(num_threads=n_threads):
        for n in prange(N, schedule="static"):
            im2col(&x[n, 0, 0, 0], C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, &cols[n, 0, 0])
        # weight grads: one thread per dw tile (output channels x K), the batch summed in order inside it
        for t in prange(n_ft * n_kt, schedule="static"):
            f0 = (t // n_kt) * TILE
            k0 = (t % n_kt) * TILE
            sgemm_nt_tile(min(TILE, F - f0), min(TILE, K - k0), N, P, &dy[0, f0, 0], P, F * P,
                          &cols[0, k0, 0], P, K * P, &dw[f0, k0], K, 0)
        # bias grads: one thread per output channel, the batch summed in order (in double)
        for f in prange(F, schedule="static"):
            accb = 0
            for m in range(N):
                accb = accb + fsum(&dy[m, f, 0], P)
            db[f] = <float>accb
        if need_dx:
            # input grads: one thread per image, through its own dcol buffer
            for n in prange(N, schedule="static"):
                dc = &dcol[threadid(), 0, 0]
                sgemm(K, P, F, &wt[0, 0], F, &dy[n, 0, 0], P, dc, P, 0)
                col2im(dc, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, &dx[n, 0, 0, 0])


def conv2d_backward(
    const float[:, :, ::1] dy,      # IN   (N, F, P)
    const float[:, :, :, ::1] x,    # IN   (N, C, H, W)
    const float[:, ::1] wt,         # IN   (K, F)
    float[:, :, :, ::1] dx,         # OUT  (N, C, H, W) zeroed
    float[:, ::1] dw,               # OUT  (F, K)
    float[::1] db,                  # OUT  (F,)
    float[:, :, ::1] cols,          # WORK (N, K, P)
    float[:, :, ::1] dcol,          # WORK (n_threads, K, P)
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
    bint need_dx, int n_threads,
):
    with nogil:
        _conv2d_backward(dy, x, wt, dx, dw, db, cols, dcol, KH, KW, OH, OW, sh, sw, ph, pw, need_dx,
                         n_threads)
