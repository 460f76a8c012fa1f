# cnnx/_kernels/_conv.pyx — 2-D convolution (cross-correlation, as PyTorch), float32, NCHW, fwd and bwd.
# Shapes: N batch, C in, H/W input, F filters, KH/KW kernel, OH/OW output, K = C*KH*KW, P = OH*OW.
# IN is read-only, OUT write-only, WORK is scratch owned by the caller. Call through `cnnx.functional`, which
# validates every size: these kernels run without bounds checks.
#
# Method (im2col + one register-blocked sgemm, `_gemm.pxd`), per image n:
#   forward  out_n (F, P) = b + w (F, K) @ col_n (K, P), col_n the receptive fields unrolled (zeros where a
#            window hangs over the padding), in a per-thread buffer; parallel over images.
#   dw       dw (F, K) = sum_n dy_n (F, P) @ colT_n (P, K): parallel over tiles of dw (blocks of output
#            channels x blocks of K), each tile summing the images in order n = 0, 1, ...
#   db       parallel over output channels, the batch summed in order (in double).
#   dx       dcol_n (K, P) = wT (K, F) @ dy_n (F, P), then col2im scatters it into dx_n; parallel over images.
# No two threads ever write one location, and every sum runs in a fixed order, so results do not depend on
# the thread count.

from cython.parallel cimport parallel, prange, threadid

from ._gemm cimport sgemm
from ._vec cimport fsum


cdef inline void _im2col(
    const float[:, :, ::1] x,   # IN  (C, H, W) one image
    float* col,                 # OUT (K, P)
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
) noexcept nogil:
    cdef Py_ssize_t C = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t c, i, j, oh, ow, ih, iw, ow_lo, ow_hi
    cdef float* row
    cdef const float* xrow
    for c in range(C):
        for i in range(KH):
            for j in range(KW):
                row = col + ((c * KH + i) * KW + j) * OH * OW
                # the outputs whose column iw = ow*sw + j - pw lands inside [0, W)
                ow_lo = 0
                while ow_lo < OW and ow_lo * sw + j - pw < 0:
                    ow_lo += 1
                ow_hi = OW
                while ow_hi > ow_lo and (ow_hi - 1) * sw + j - pw >= W:
                    ow_hi -= 1
                for oh in range(OH):
                    ih = oh * sh + i - ph
                    if ih < 0 or ih >= H:
                        for ow in range(OW):
                            row[oh * OW + ow] = 0
                        continue
                    xrow = &x[c, ih, 0]
                    for ow in range(ow_lo):
                        row[oh * OW + ow] = 0
                    if sw == 1:
                        iw = ow_lo + j - pw
                        for ow in range(ow_lo, ow_hi):
                            row[oh * OW + ow] = xrow[iw + ow - ow_lo]
                    else:
                        for ow in range(ow_lo, ow_hi):
                            row[oh * OW + ow] = xrow[ow * sw + j - pw]
                    for ow in range(ow_hi, OW):
                        row[oh * OW + ow] = 0


cdef inline void _im2col_t(
    const float[:, :, ::1] x,   # IN  (C, H, W) one image
    float* colt,                # OUT (P, K): row p holds the receptive field of output p
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
) noexcept nogil:
    cdef Py_ssize_t C = x.shape[0], H = x.shape[1], W = x.shape[2], K = C * KH * KW
    cdef Py_ssize_t c, i, j, oh, ow, ih, j_lo, j_hi, base
    cdef float* seg
    cdef const float* xrow
    for oh in range(OH):
        for ow in range(OW):
            base = ow * sw - pw
            # the kernel columns j whose input column base + j lies inside [0, W)
            j_lo = 0 if base >= 0 else -base
            j_hi = KW if base + KW <= W else W - base
            for c in range(C):
                for i in range(KH):
                    seg = colt + (oh * OW + ow) * K + (c * KH + i) * KW
                    ih = oh * sh + i - ph
                    if ih < 0 or ih >= H or j_lo >= j_hi:
                        for j in range(KW):
                            seg[j] = 0
                        continue
                    xrow = &x[c, ih, 0]
                    for j in range(j_lo):
                        seg[j] = 0
                    for j in range(j_lo, j_hi):
                        seg[j] = xrow[base + j]
                    for j in range(j_hi, KW):
                        seg[j] = 0


cdef inline void _col2im(
    const float* col,           # IN  (K, P)
    float[:, :, ::1] dx,        # OUT (C, H, W) one image, accumulated into (caller zeroes it)
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
) noexcept nogil:
    cdef Py_ssize_t C = dx.shape[0], H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t c, i, j, oh, ow, ih, ow_lo, ow_hi
    cdef const float* row
    cdef float* dxrow
    for c in range(C):
        for i in range(KH):
            for j in range(KW):
                row = col + ((c * KH + i) * KW + j) * OH * OW
                # the outputs whose input column ow*sw + j - pw lands inside [0, W), as in _im2col
                ow_lo = 0
                while ow_lo < OW and ow_lo * sw + j - pw < 0:
                    ow_lo += 1
                ow_hi = OW
                while ow_hi > ow_lo and (ow_hi - 1) * sw + j - pw >= W:
                    ow_hi -= 1
                for oh in range(OH):
                    ih = oh * sh + i - ph
                    if ih < 0 or ih >= H:
                        continue
                    dxrow = &dx[c, ih, 0]
                    if sw == 1:
                        dxrow = dxrow + j - pw
                        for ow in range(ow_lo, ow_hi):
                            dxrow[ow] += row[oh * OW + ow]
                    else:
                        for ow in range(ow_lo, ow_hi):
                            dxrow[ow * sw + j - pw] += row[oh * OW + ow]


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
    cdef Py_ssize_t N = x.shape[0], F = w.shape[0], K = w.shape[1], P = OH * OW
    cdef Py_ssize_t n, f, p
    cdef float* cb
    # every image is independent; each thread unrolls its image into its own col buffer
    for n in prange(N, schedule="static", num_threads=n_threads, nogil=True):
        cb = &col[threadid(), 0, 0]
        _im2col(x[n], cb, KH, KW, OH, OW, sh, sw, ph, pw)
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


# dw tiles: MR output channels x NR columns of K, the shape of one sgemm register tile
cdef enum:
    TILE_F = 6
    TILE_K = 16


cdef void _conv2d_backward(
    const float[:, :, ::1] dy,      # IN   (N, F, P)
    const float[:, :, :, ::1] x,    # IN   (N, C, H, W)
    const float[:, ::1] wt,         # IN   (K, F)   the flattened weights, transposed
    float[:, :, :, ::1] dx,         # OUT  (N, C, H, W)  zeroed by the caller; untouched unless need_dx
    float[:, ::1] dw,               # OUT  (F, K)
    float[::1] db,                  # OUT  (F,)
    float[:, :, ::1] colt,          # WORK (N, P, K) transposed im2col of every image
    float[:, :, ::1] dcol,          # WORK (n_threads, K, P)
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
    bint need_dx, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = x.shape[0], F = wt.shape[1], K = wt.shape[0], P = OH * OW
    cdef Py_ssize_t n, m, f, t, f0, k0, mr, nr
    cdef Py_ssize_t n_kt = (K + TILE_K - 1) // TILE_K, n_ft = (F + TILE_F - 1) // TILE_F
    cdef double accb
    cdef float* dc
    with parallel(num_threads=n_threads):
        for n in prange(N, schedule="static"):
            _im2col_t(x[n], &colt[n, 0, 0], KH, KW, OH, OW, sh, sw, ph, pw)
        # weight grads: one thread per dw tile, the images summed in order inside it
        for t in prange(n_ft * n_kt, schedule="static"):
            f0 = (t // n_kt) * TILE_F
            k0 = (t % n_kt) * TILE_K
            mr = min(TILE_F, F - f0)
            nr = min(TILE_K, K - k0)
            for m in range(N):
                sgemm(mr, nr, P, &dy[m, f0, 0], P, &colt[m, 0, k0], K, &dw[f0, k0], K, m > 0)
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
                _col2im(dc, dx[n], KH, KW, OH, OW, sh, sw, ph, pw)


def conv2d_backward(
    const float[:, :, ::1] dy,      # IN   (N, F, P)
    const float[:, :, :, ::1] x,    # IN   (N, C, H, W)
    const float[:, ::1] wt,         # IN   (K, F)
    float[:, :, :, ::1] dx,         # OUT  (N, C, H, W) zeroed
    float[:, ::1] dw,               # OUT  (F, K)
    float[::1] db,                  # OUT  (F,)
    float[:, :, ::1] colt,          # WORK (N, P, K)
    float[:, :, ::1] dcol,          # WORK (n_threads, K, P)
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
    bint need_dx, int n_threads,
):
    with nogil:
        _conv2d_backward(dy, x, wt, dx, dw, db, colt, dcol, KH, KW, OH, OW, sh, sw, ph, pw, need_dx,
                         n_threads)
