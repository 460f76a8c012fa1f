# cnnx/_kernels/_conv.pyx — 2-D convolution (cross-correlation, as PyTorch), float32, NCHW, fwd and bwd.
# Shapes: N batch, C in, H/W input, F filters, KH/KW kernel, OH/OW output, K = C*KH*KW, P = OH*OW.
# IN is read-only, OUT write-only, WORK is scratch owned by the caller. Call through `cnnx.functional`, which
# validates every size: these kernels run without bounds checks.
#
# Method: per image, im2col unrolls the receptive fields into col (K, P) (zeros where the window hangs over
# the padding), then out[f, :] = b[f] + sum_k w[f, k] * col[k, :] — an axpy over P contiguous floats, which
# gcc vectorises. Backward reuses the same col layout:
#   dw[f, k] = sum_n dot(dy[n, f, :], col_n[k, :])        (parallel over filters, batch summed in order)
#   dcol[k, :] = sum_f w[f, k] * dy[n, f, :]; dx = col2im(dcol)  (parallel over images)
# so no two threads ever write one location and the result does not depend on the thread count.

from cython.parallel cimport parallel, prange, threadid

from ._vec cimport axpy, dot, fsum


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


cdef inline void _col2im(
    const float* col,           # IN  (K, P)
    float[:, :, ::1] dx,        # OUT (C, H, W) one image, accumulated into (caller zeroes it)
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
) noexcept nogil:
    cdef Py_ssize_t C = dx.shape[0], H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t c, i, j, oh, ow, ih, iw
    cdef const float* row
    for c in range(C):
        for i in range(KH):
            for j in range(KW):
                row = col + ((c * KH + i) * KW + j) * OH * OW
                for oh in range(OH):
                    ih = oh * sh + i - ph
                    if ih < 0 or ih >= H:
                        continue
                    for ow in range(OW):
                        iw = ow * sw + j - pw
                        if 0 <= iw < W:
                            dx[c, ih, iw] += row[oh * OW + ow]


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
    cdef Py_ssize_t n, f, k, p, f4
    cdef float* cb
    cdef float* o0
    cdef float* o1
    cdef float* o2
    cdef float* o3
    cdef const float* ck
    cdef float w0, w1, w2, w3, v
    # every image is independent; each thread unrolls its image into its own col buffer
    for n in prange(N, schedule="static", num_threads=n_threads, nogil=True):
        cb = &col[threadid(), 0, 0]
        _im2col(x[n], cb, KH, KW, OH, OW, sh, sw, ph, pw)
        for f in range(F):
            v = b[f] if has_bias else 0
            o0 = &out[n, f, 0]
            for p in range(P):
                o0[p] = v
        # four filters at a time: each col value loaded once feeds four accumulating rows
        f4 = F - F % 4
        for f in range(0, f4, 4):
            o0 = &out[n, f, 0]
            o1 = &out[n, f + 1, 0]
            o2 = &out[n, f + 2, 0]
            o3 = &out[n, f + 3, 0]
            for k in range(K):
                w0 = w[f, k]
                w1 = w[f + 1, k]
                w2 = w[f + 2, k]
                w3 = w[f + 3, k]
                ck = cb + k * P
                for p in range(P):
                    v = ck[p]
                    o0[p] += w0 * v
                    o1[p] += w1 * v
                    o2[p] += w2 * v
                    o3[p] += w3 * v
        for f in range(f4, F):
            o0 = &out[n, f, 0]
            for k in range(K):
                axpy(w[f, k], cb + k * P, o0, P)


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


cdef void _conv2d_backward(
    const float[:, :, ::1] dy,      # IN   (N, F, P)
    const float[:, :, :, ::1] x,    # IN   (N, C, H, W)
    const float[:, ::1] w,          # IN   (F, K)
    float[:, :, :, ::1] dx,         # OUT  (N, C, H, W)  zeroed by the caller; untouched unless need_dx
    float[:, ::1] dw,               # OUT  (F, K)
    float[::1] db,                  # OUT  (F,)
    float[:, :, ::1] cols,          # WORK (N, K, P) im2col of every image
    float[:, :, ::1] dcol,          # WORK (n_threads, K, P)
    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
    bint need_dx, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = x.shape[0], F = w.shape[0], K = w.shape[1], P = OH * OW
    cdef Py_ssize_t n, m, f, g, k, p
    cdef double acc, accb
    cdef float* dc
    with parallel(num_threads=n_threads):
        for n in prange(N, schedule="static"):
            _im2col(x[n], &cols[n, 0, 0], KH, KW, OH, OW, sh, sw, ph, pw)
        # weight and bias grads: one thread per filter, the batch summed in a fixed order (in double)
        for f in prange(F, schedule="static"):
            accb = 0
            for m in range(N):
                accb = accb + fsum(&dy[m, f, 0], P)
            db[f] = <float>accb
            for k in range(K):
                acc = 0
                for m in range(N):
                    acc = acc + dot(&dy[m, f, 0], &cols[m, k, 0], P)
                dw[f, k] = <float>acc
        if need_dx:
            # input grads: one thread per image, through its own dcol buffer
            for n in prange(N, schedule="static"):
                dc = &dcol[threadid(), 0, 0]
                for k in range(K):
                    for p in range(P):
                        dc[k * P + p] = 0
                    for g in range(F):
                        axpy(w[g, k], &dy[n, g, 0], dc + k * P, P)
                _col2im(dc, dx[n], KH, KW, OH, OW, sh, sw, ph, pw)


def conv2d_backward(
    const float[:, :, ::1] dy,      # IN   (N, F, P)
    const float[:, :, :, ::1] x,    # IN   (N, C, H, W)
    const float[:, ::1] w,          # IN   (F, K)
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
        _conv2d_backward(dy, x, w, dx, dw, db, cols, dcol, KH, KW, OH, OW, sh, sw, ph, pw, need_dx,
                         n_threads)
