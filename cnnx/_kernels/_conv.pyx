# cnnx/_kernels/_conv.pyx — 2-D convolution (cross-correlation, as PyTorch), float32, NCHW, fwd and bwd.
# Shapes: N batch, C in, H/W input, F filters, KH/KW kernel, OH/OW output, K = C*KH*KW, P = OH*OW.
# IN is read-only, OUT write-only, WORK is scratch owned by the caller. Call through `cnnx.functional`, which
# validates every size: these kernels run without bounds checks.
#
# Method (im2col + one register-blocked sgemm, `_gemm.pxd`), per image n:
#   forward  out_n (F, P) = b + w (F, K) @ col_n (K, P), col_n the receptive fields unrolled (zeros where a
#            window hangs over the padding), in a per-thread buffer; parallel over images. Stride 1 skips
#            the im2col (`conv2d_forward_s1`, implicit GEMM over the padded image).
#   backward parallel over fixed chunks of 8 images, one thread per chunk, with the chunk's data in cache:
#   dw       part_chunk[f, k] = sum_{n in chunk} sum_p dy_n[f, p] col_n[k, p] (`sgemm_nt_tile`, 4x4 register
#            tiles), then dw = the chunks' parts summed in chunk order (parallel over the entries of dw).
#            Stride 1 reads the taps straight from the zero-padded image instead of an im2col.
#   dx       dcol_n (K, P) = wT (K, F) @ dy_n (F, P), then col2im scatters it into dx_n (images of the chunk);
#            stride 1 instead correlates dy, zero-padded by (KH-1, KW-1), with the flipped kernels.
#   db       parallel over output channels, the batch summed in order (in double).
# No two threads ever write one location, and every sum runs in a fixed order, so results do not depend on
# the thread count.

from cython.parallel cimport parallel, prange, threadid

from ._gemm cimport gemm_init, sgemm, sgemm_nt_tile, sgemm_rows
from ._im2col cimport col2im, im2col
from ._vec cimport fsum

gemm_init()  # pick the sgemm tiles for this CPU, once


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


def conv2d_forward_s1(
    const float[:, :, :, ::1] x,    # IN   (N, C, H, W)
    const float[:, ::1] w,          # IN   (F, K)
    const float[::1] b,             # IN   (F,)    ignored unless has_bias
    const Py_ssize_t[::1] boff,     # IN   (K,)    offset c*Hp*Wp + i*Wp + j of tap k = (c, i, j)
    float[:, :, ::1] out,           # OUT  (N, F, P)
    float[:, ::1] xp,               # WORK (n_threads, C*Hp*Wp + KW + 32) the zero-padded image (+ slack)
    float[:, :, ::1] outp,          # WORK (n_threads, F, OH*Wp) the output over the padded width
    Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t ph, Py_ssize_t pw,
    bint has_bias, int n_threads,
):
    """Stride-1 forward without im2col: the output is computed over the padded width Wp (Wp - OW junk
    columns per row, dropped when copying out), where every kernel tap's operand row is a contiguous slice of
    the padded image. Parallel over images, like `conv2d_forward`."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = w.shape[0], K = w.shape[1]
    cdef Py_ssize_t Hp = H + 2 * ph, Wp = W + 2 * pw, L = xp.shape[1], PW = OH * Wp
    cdef Py_ssize_t n, c, ih, iw, f, oh, ow, e
    cdef float* xb
    cdef float* ob
    cdef float v
    for n in prange(N, schedule="static", num_threads=n_threads, nogil=True):
        xb = &xp[threadid(), 0]
        ob = &outp[threadid(), 0, 0]
        for e in range(L):
            xb[e] = 0
        for c in range(C):
            for ih in range(H):
                for iw in range(W):
                    xb[c * Hp * Wp + (ih + ph) * Wp + pw + iw] = x[n, c, ih, iw]
        sgemm_rows(F, PW, K, &w[0, 0], K, xb, &boff[0], ob, PW)
        for f in range(F):
            v = b[f] if has_bias else 0
            for oh in range(OH):
                for ow in range(OW):
                    out[n, f, oh * OW + ow] = ob[f * PW + oh * Wp + ow] + v


# dw tiles: up to 4 output channels x 4 columns of K, the register tile of sgemm_nt_tile. CHUNK images form
# one unit of backward work; it is a constant (never the thread count), so the order of every sum is fixed.
cdef enum:
    TILE = 4
    CHUNK = 8


cdef void _conv2d_backward(
    const float[:, :, ::1] dy,      # IN   (N, F, P)
    const float[:, :, :, ::1] x,    # IN   (N, C, H, W)
    const float[:, ::1] wt,         # IN   (K, F)   the flattened weights, transposed
    float[:, :, :, ::1] dx,         # OUT  (N, C, H, W)  zeroed by the caller; untouched unless need_dx
    float[:, ::1] dw,               # OUT  (F, K)
    float[::1] db,                  # OUT  (F,)
    float[:, :, :, ::1] cols,       # WORK (n_threads, CHUNK, K, P) im2col of one chunk per thread
    float[:, :, ::1] part,          # WORK (n_chunks, F, K) each chunk's share of dw
    const Py_ssize_t[::1] xoff,     # IN   (K,)  stride 1: tap offsets in the padded x (Hp, Wp)
    float[:, :, ::1] xpc,           # WORK (n_threads, CHUNK, LX = C*Hp*Wp + KW + 32) stride 1: padded x
    float[:, :, :, ::1] dyp,        # WORK (n_threads, CHUNK, F, OH*Wp) stride 1: dy on the padded width
    float[:, :, ::1] dcol,          # WORK (n_threads, K, P)          dx through col2im (any stride)
    const float[:, ::1] wflip,      # IN   (C, F*KH*KW)               dx by implicit GEMM (stride 1):
    const Py_ssize_t[::1] doff,     # IN   (F*KH*KW,)                 the flipped kernels, tap offsets
    float[:, ::1] dyq,              # WORK (n_threads, F*Hq*Wq + KW + 32) in the padded dy,
    float[:, ::1] dxq,              # WORK (n_threads, C*Hp*Wq)           and the padded dx
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
    bint need_dx, bint stride1, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = wt.shape[1], K = wt.shape[0], P = OH * OW
    cdef Py_ssize_t n_ch = part.shape[0]
    cdef Py_ssize_t ch, n0, nb, q, m, f, t, f0, k0, e, tid, c, a, ih, iw
    cdef Py_ssize_t Hq = OH + 2 * (KH - 1), Wq = OW + 2 * (KW - 1), Hp = H + 2 * ph, Wp = W + 2 * pw
    cdef Py_ssize_t LX = xpc.shape[2], PW = OH * Wp
    cdef float* dq
    cdef float* xq
    cdef Py_ssize_t n_kt = (K + TILE - 1) // TILE, n_ft = (F + TILE - 1) // TILE
    cdef double acc
    cdef float* cb
    cdef float* dc
    with parallel(num_threads=n_threads):
        # one thread per chunk of images: unroll the chunk into this thread's col buffer (it stays in
        # cache), take the chunk's share of dw from it, and the chunk's dx
        for ch in prange(n_ch, schedule="static"):
            tid = threadid()
            n0 = ch * CHUNK
            nb = min(<Py_ssize_t>CHUNK, N - n0)
            if stride1:
                # dw without im2col: per image the zero-padded x (tap k is a slice at xoff[k]) and dy
                # widened to the padded width Wp (zeros in the Wp - OW extra columns)
                xq = &xpc[tid, 0, 0]
                dq = &dyp[tid, 0, 0, 0]
                for q in range(nb):
                    for e in range(LX):
                        xq[q * LX + e] = 0
                    for c in range(C):
                        for ih in range(H):
                            for iw in range(W):
                                xq[q * LX + (c * Hp + ih + ph) * Wp + pw + iw] = x[n0 + q, c, ih, iw]
                    for e in range(F * PW):
                        dq[q * F * PW + e] = 0
                    for f in range(F):
                        for a in range(OH):
                            for e in range(OW):
                                dq[(q * F + f) * PW + a * Wp + e] = dy[n0 + q, f, a * OW + e]
                for t in range(n_ft * n_kt):
                    f0 = (t // n_kt) * TILE
                    k0 = (t % n_kt) * TILE
                    sgemm_nt_tile(min(TILE, F - f0), min(TILE, K - k0), nb, PW, dq + f0 * PW, PW, F * PW,
                                  xq, 0, &xoff[k0], LX, &part[ch, f0, k0], K, 0)
            else:
                cb = &cols[tid, 0, 0, 0]
                for q in range(nb):
                    im2col(&x[n0 + q, 0, 0, 0], C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, cb + q * K * P)
                for t in range(n_ft * n_kt):
                    f0 = (t // n_kt) * TILE
                    k0 = (t % n_kt) * TILE
                    sgemm_nt_tile(min(TILE, F - f0), min(TILE, K - k0), nb, P, &dy[n0, f0, 0], P, F * P,
                                  cb + k0 * P, P, NULL, K * P, &part[ch, f0, k0], K, 0)
            if need_dx and stride1:
                # stride 1: dx is the correlation of dy, zero-padded by the kernel size - 1, with the
                # flipped kernels; computed over the padded input, Wq wide, then cropped
                dq = &dyq[tid, 0]
                xq = &dxq[tid, 0]
                for q in range(nb):
                    for e in range(dyq.shape[1]):
                        dq[e] = 0
                    for f in range(F):
                        for a in range(OH):
                            for e in range(OW):
                                dq[(f * Hq + a + KH - 1) * Wq + e + KW - 1] = dy[n0 + q, f, a * OW + e]
                    sgemm_rows(C, Hp * Wq, F * KH * KW, &wflip[0, 0], F * KH * KW, dq, &doff[0], xq, Hp * Wq)
                    for c in range(C):
                        for ih in range(H):
                            for iw in range(W):
                                dx[n0 + q, c, ih, iw] = xq[(c * Hp + ih + ph) * Wq + iw + pw]
            elif need_dx:
                dc = &dcol[tid, 0, 0]
                for q in range(nb):
                    sgemm(K, P, F, &wt[0, 0], F, &dy[n0 + q, 0, 0], P, dc, P, 0)
                    col2im(dc, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, &dx[n0 + q, 0, 0, 0])
        # dw: the chunks' shares summed in chunk order (in double), parallel over the entries of dw
        for e in prange(F * K, schedule="static"):
            acc = 0
            for m in range(n_ch):
                acc = acc + part[m, e // K, e % K]
            dw[e // K, e % K] = <float>acc
        # bias grads: one thread per output channel, the batch summed in order (in double)
        for f in prange(F, schedule="static"):
            acc = 0
            for m in range(N):
                acc = acc + fsum(&dy[m, f, 0], P)
            db[f] = <float>acc


def conv2d_backward(
    const float[:, :, ::1] dy,      # IN   (N, F, P)
    const float[:, :, :, ::1] x,    # IN   (N, C, H, W)
    const float[:, ::1] wt,         # IN   (K, F)
    float[:, :, :, ::1] dx,         # OUT  (N, C, H, W) zeroed
    float[:, ::1] dw,               # OUT  (F, K)
    float[::1] db,                  # OUT  (F,)
    float[:, :, :, ::1] cols,       # WORK (n_threads, CHUNK, K, P)
    float[:, :, ::1] part,          # WORK (ceil(N / CHUNK), F, K)
    float[:, :, ::1] dcol,          # WORK (n_threads, K, P)
    const Py_ssize_t[::1] xoff,     # IN   (K,)          (the stride-1 buffers are only read when stride1)
    float[:, :, ::1] xpc,           # WORK (n_threads, CHUNK, C*Hp*Wp + KW + 32)
    float[:, :, :, ::1] dyp,        # WORK (n_threads, CHUNK, F, OH*Wp)
    const float[:, ::1] wflip,      # IN   (C, F*KH*KW)
    const Py_ssize_t[::1] doff,     # IN   (F*KH*KW,)
    float[:, ::1] dyq,              # WORK (n_threads, F*Hq*Wq + KW + 32)
    float[:, ::1] dxq,              # WORK (n_threads, C*Hp*Wq)
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
    bint need_dx, bint stride1, int n_threads,
):
    with nogil:
        _conv2d_backward(dy, x, wt, dx, dw, db, cols, part, xoff, xpc, dyp, dcol, wflip, doff, dyq, dxq,
                         KH, KW, OH, OW, sh, sw, ph, pw, need_dx, stride1, n_threads)


# the chunk size, for the caller's work buffers
BACKWARD_CHUNK = CHUNK
