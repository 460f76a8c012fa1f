# cnnx/_kernels/_int8.pyx — the int8 CPU path's integer kernels: conv/linear (int32 accumulators, or int8
# with the requantisation fused into the GEMM's store) and pooling.
# Shapes: N batch, C in, H/W input, F filters, KH/KW kernel, OH/OW output, K = C*KH*KW, K4 = ceil(K/4),
# P = OH*OW. IN is read-only, OUT write-only.
#
# conv and linear are one int8 GEMM in C (`cnnx_int8.h`): C (F, cols) = corr + W (F, K) @ panel (K, cols),
# where the panel holds the activations + 128 as uint8 quads of 4 taps (conv: an im2col of one image, cols =
# its P output pixels; linear: cols = a block of images). Its variants (AVX-512 VNNI, AVX2, portable) are
# picked once at import; `isa()` says which, CNNX_INT8_ISA=vnni512|avx2|portable forces one. The int8
# rule is cnnx/quant.py's; the C epilogue is checked against `quant.requantize` by `requantize` below.
# The Python wrapper (cnnx/int8.py) validates every size and calls `quant.check_acc_range` first, so int32
# holds every accumulator. The naive twins to compare with are the golden functions in cnnx/reference.py.

from cython.parallel cimport parallel, prange
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc


cdef extern from "cnnx_int8.h" nogil:
    ctypedef struct cnnx_rq:
        pass
    int CNNX_I8_ACC, CNNX_I8_REQ
    void cnnx_i8_init()
    int cnnx_i8_get_isa()
    void cnnx_i8_rq_init(cnnx_rq* q, int64_t mult, int shift, int relu)
    int CNNX_I8_SLACK
    void cnnx_i8_conv_slots(Py_ssize_t C, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t K4, int32_t* slots)
    void cnnx_i8_prep_weights(Py_ssize_t F, Py_ssize_t K, const int8_t* w, const int32_t* b, Py_ssize_t K4,
                              const int32_t* slots, int8_t* wq, int16_t* wq16, int32_t* corr)
    void cnnx_i8_conv_offsets(const int32_t* slots, Py_ssize_t K4, Py_ssize_t KH, Py_ssize_t KW,
                              Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t* offs)
    void cnnx_i8_pack_conv(const int8_t* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t stride,
                           Py_ssize_t pad, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t K4, const int32_t* slots,
                           const Py_ssize_t* offs, Py_ssize_t ldp, uint8_t* xp, uint8_t* panel)
    void cnnx_i8_pack_dense(const int8_t* x, Py_ssize_t K, Py_ssize_t ncols, Py_ssize_t K4, Py_ssize_t ldp,
                            uint8_t* panel)
    void cnnx_i8_gemm(Py_ssize_t F, Py_ssize_t ncols, Py_ssize_t K4, const int8_t* wq, const int16_t* wq16,
                      const int32_t* corr, const uint8_t* panel, Py_ssize_t ldp, void* out, Py_ssize_t ldo,
                      int mode, const cnnx_rq* q)
    void cnnx_i8_maxpool2x2(const int8_t* x, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, int8_t* out)
    Py_ssize_t cnnx_i8_quantize(const float* x, Py_ssize_t n, double scale, int8_t* out)
    void cnnx_i8_requant_array(const int32_t* acc, Py_ssize_t n, int8_t* out, const cnnx_rq* q)

cnnx_i8_init()  # pick the GEMM variant for this CPU, once

ISA_NAMES = ("portable", "avx2", "vnni512")


def isa():
    """The int8 GEMM variant this process runs: "vnni512", "avx2" or "portable"."""
    return ISA_NAMES[cnnx_i8_get_isa()]


cdef enum:
    DENSE_COLS = 64  # images per block of the linear layer: one block's panel stays in L1


cdef struct Weights:
    Py_ssize_t F, K, K4
    int32_t* slots    # conv: the order of the taps in K (cnnx_i8_conv_slots); NULL for linear
    int8_t* wq
    int16_t* wq16
    int32_t* corr


cdef int _prep(Weights* p, Py_ssize_t F, Py_ssize_t K, const int8_t* w, const int32_t* b,
               Py_ssize_t C, Py_ssize_t KH, Py_ssize_t KW) noexcept nogil:
    """The GEMM's weight operands (conv when KH > 0, else linear); 0 on success, -1 when out of memory
    (then nothing is allocated)."""
    p.F = F
    p.K = K
    p.K4 = (K + 3) // 4
    p.slots = <int32_t*> malloc(p.K4 * 4 * sizeof(int32_t)) if KH > 0 else NULL
    p.wq = <int8_t*> malloc(F * p.K4 * 4)
    p.wq16 = <int16_t*> malloc(F * p.K4 * 4 * sizeof(int16_t))
    p.corr = <int32_t*> malloc(F * sizeof(int32_t))
    if p.wq == NULL or p.wq16 == NULL or p.corr == NULL or (KH > 0 and p.slots == NULL):
        _free(p)
        return -1
    if KH > 0:
        cnnx_i8_conv_slots(C, KH, KW, p.K4, p.slots)
    cnnx_i8_prep_weights(F, K, w, b, p.K4, p.slots, p.wq, p.wq16, p.corr)
    return 0


cdef void _free(Weights* p) noexcept nogil:
    free(p.slots)
    p.slots = NULL
    free(p.wq)
    free(p.wq16)
    free(p.corr)
    p.wq = NULL
    p.wq16 = NULL
    p.corr = NULL


cdef int _conv2d(
    const int8_t[:, :, :, ::1] x,   # IN  (N, C, H, W)
    const int8_t[:, :, :, ::1] w,   # IN  (F, C, KH, KW)
    const int32_t[::1] b,           # IN  (F,)
    char* out,                      # OUT (N, F, OH, OW) int32 (mode CNNX_I8_ACC) or int8 (CNNX_I8_REQ)
    int mode, const cnnx_rq* q,
    Py_ssize_t stride, Py_ssize_t pad, Py_ssize_t OH, Py_ssize_t OW, int n_threads,
) noexcept nogil:
    """0 on success, -1 when out of memory."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = w.shape[0], KH = w.shape[2], KW = w.shape[3]
    cdef Py_ssize_t P = OH * OW, ldp = (P + 15) // 16 * 16, n
    cdef size_t es = 4 if mode == CNNX_I8_ACC else 1
    cdef size_t xp_size = C * (H + 2 * pad) * (W + 2 * pad) + CNNX_I8_SLACK
    cdef Weights p
    cdef uint8_t* xp
    cdef uint8_t* panel
    cdef Py_ssize_t* offs
    cdef int failed = 0
    cdef int* fail = &failed  # set through a pointer: a variable assigned in a parallel block is private
    if n_threads > N:
        n_threads = <int> N  # no idle threads to wake (a batch of one image runs on one thread)
    if _prep(&p, F, C * KH * KW, &w[0, 0, 0, 0], &b[0], C, KH, KW) != 0:
        return -1
    offs = <Py_ssize_t*> malloc(p.K4 * 4 * sizeof(Py_ssize_t))
    if offs == NULL:
        _free(&p)
        return -1
    cnnx_i8_conv_offsets(p.slots, p.K4, KH, KW, H + 2 * pad, W + 2 * pad, offs)
    # images are independent: each thread packs its image into its own panel, then runs the GEMM on it
    with parallel(num_threads=n_threads):
        xp = <uint8_t*> malloc(xp_size)
        panel = <uint8_t*> malloc(p.K4 * ldp * 4)
        if xp == NULL or panel == NULL:
            fail[0] = 1
        for n in prange(N, schedule="static"):
            if xp != NULL and panel != NULL:
                cnnx_i8_pack_conv(&x[n, 0, 0, 0], C, H, W, stride, pad, OH, OW, p.K4, p.slots, offs, ldp,
                                  xp, panel)
                cnnx_i8_gemm(F, P, p.K4, p.wq, p.wq16, p.corr, panel, ldp, out + n * F * P * es, P, mode, q)
        free(xp)
        free(panel)
    free(offs)
    _free(&p)
    return -1 if failed else 0


cdef int _linear(
    const int8_t[:, ::1] x,   # IN  (N, K)
    const int8_t[:, ::1] w,   # IN  (F, K)
    const int32_t[::1] b,     # IN  (F,)
    char* out,                # OUT (N, F) int32 (mode CNNX_I8_ACC) or int8 (CNNX_I8_REQ)
    int mode, const cnnx_rq* q, int n_threads,
) noexcept nogil:
    """0 on success, -1 when out of memory."""
    cdef Py_ssize_t N = x.shape[0], K = x.shape[1], F = w.shape[0]
    cdef Py_ssize_t cb = (N + n_threads - 1) // n_threads
    cdef Py_ssize_t nblk, blk, n0, nc, f, j, ldp
    cdef size_t es = 4 if mode == CNNX_I8_ACC else 1
    cdef Weights p
    cdef uint8_t* panel
    cdef char* tmp
    cdef int failed = 0
    cdef int* fail = &failed  # set through a pointer: a variable assigned in a parallel block is private
    if cb > DENSE_COLS:
        cb = DENSE_COLS
    nblk = (N + cb - 1) // cb
    ldp = (cb + 15) // 16 * 16
    if n_threads > nblk:
        n_threads = <int> nblk
    if _prep(&p, F, K, &w[0, 0], &b[0], 0, 0, 0) != 0:
        return -1
    # blocks of images are independent: each thread packs a block into its panel, computes the block's
    # (F, cols) result into tmp, and writes it transposed into the block's rows of out
    with parallel(num_threads=n_threads):
        panel = <uint8_t*> malloc(p.K4 * ldp * 4)
        tmp = <char*> malloc(F * ldp * es)
        if panel == NULL or tmp == NULL:
            fail[0] = 1
        for blk in prange(nblk, schedule="static"):
            if panel != NULL and tmp != NULL:
                n0 = blk * cb
                nc = N - n0 if N - n0 < cb else cb
                cnnx_i8_pack_dense(&x[n0, 0], K, nc, p.K4, ldp, panel)
                cnnx_i8_gemm(F, nc, p.K4, p.wq, p.wq16, p.corr, panel, ldp, tmp, ldp, mode, q)
                if mode == CNNX_I8_ACC:
                    for j in range(nc):
                        for f in range(F):
                            (<int32_t*> out)[(n0 + j) * F + f] = (<int32_t*> tmp)[f * ldp + j]
                else:
                    for j in range(nc):
                        for f in range(F):
                            (<int8_t*> out)[(n0 + j) * F + f] = (<int8_t*> tmp)[f * ldp + j]
        free(panel)
        free(tmp)
    _free(&p)
    return -1 if failed else 0


cdef void _maxpool2d(
    const int8_t[:, :, :, ::1] x,   # IN  (N, C, H, W)
    int8_t[:, :, :, ::1] out,       # OUT (N, C, OH, OW)
    Py_ssize_t kernel, Py_ssize_t stride, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = out.shape[0], C = out.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t nc, n, c, oh, ow, i, j
    cdef int8_t m, v
    if kernel == 2 and stride == 2:  # LeNet's pools: a vectorised kernel
        for nc in prange(N * C, schedule="static", num_threads=n_threads):
            cnnx_i8_maxpool2x2(&x[nc // C, nc % C, 0, 0], x.shape[3], OH, OW, &out[nc // C, nc % C, 0, 0])
        return
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
               int32_t[:, :, :, ::1] out, Py_ssize_t stride, Py_ssize_t pad, int n_threads):
    cdef int rc
    with nogil:
        rc = _conv2d(x, w, b, <char*> &out[0, 0, 0, 0], CNNX_I8_ACC, NULL, stride, pad, out.shape[2],
                     out.shape[3], n_threads)
    if rc != 0:
        raise MemoryError("conv2d_acc: out of memory for the int8 GEMM's buffers")


def conv2d_int8(const int8_t[:, :, :, ::1] x, const int8_t[:, :, :, ::1] w, const int32_t[::1] b,
                int8_t[:, :, :, ::1] out, int64_t mult, int shift, bint relu, Py_ssize_t stride,
                Py_ssize_t pad, int n_threads):
    cdef cnnx_rq q
    cdef int rc
    cnnx_i8_rq_init(&q, mult, shift, relu)
    with nogil:
        rc = _conv2d(x, w, b, <char*> &out[0, 0, 0, 0], CNNX_I8_REQ, &q, stride, pad, out.shape[2],
                     out.shape[3], n_threads)
    if rc != 0:
        raise MemoryError("conv2d_int8: out of memory for the int8 GEMM's buffers")


def linear_acc(const int8_t[:, ::1] x, const int8_t[:, ::1] w, const int32_t[::1] b,
               int32_t[:, ::1] out, int n_threads):
    cdef int rc
    with nogil:
        rc = _linear(x, w, b, <char*> &out[0, 0], CNNX_I8_ACC, NULL, n_threads)
    if rc != 0:
        raise MemoryError("linear_acc: out of memory for the int8 GEMM's buffers")


def linear_int8(const int8_t[:, ::1] x, const int8_t[:, ::1] w, const int32_t[::1] b,
                int8_t[:, ::1] out, int64_t mult, int shift, bint relu, int n_threads):
    cdef cnnx_rq q
    cdef int rc
    cnnx_i8_rq_init(&q, mult, shift, relu)
    with nogil:
        rc = _linear(x, w, b, <char*> &out[0, 0], CNNX_I8_REQ, &q, n_threads)
    if rc != 0:
        raise MemoryError("linear_int8: out of memory for the int8 GEMM's buffers")


def requantize(const int32_t[::1] acc, int8_t[::1] out, int64_t mult, int shift, bint relu):
    """The GEMM's fused epilogue alone, on a flat int32 array: for tests against `quant.requantize`."""
    cdef cnnx_rq q
    cnnx_i8_rq_init(&q, mult, shift, relu)
    with nogil:
        cnnx_i8_requant_array(&acc[0], acc.shape[0], &out[0], &q)


def quantize(const float[::1] x, int8_t[::1] out, double scale):
    """float32 -> int8 as `quant.quantize` (flat arrays); returns how many inputs were non-finite (the outputs
    are then invalid)."""
    cdef Py_ssize_t nan
    with nogil:
        nan = cnnx_i8_quantize(&x[0], x.shape[0], scale, &out[0])
    return nan


def maxpool2d(const int8_t[:, :, :, ::1] x, int8_t[:, :, :, ::1] out,
              Py_ssize_t kernel, Py_ssize_t stride, int n_threads):
    with nogil:
        _maxpool2d(x, out, kernel, stride, n_threads)


def sumpool2d(const int8_t[:, :, :, ::1] x, int32_t[:, :, :, ::1] out,
              Py_ssize_t kernel, Py_ssize_t stride, int n_threads):
    with nogil:
        _sumpool2d(x, out, kernel, stride, n_threads)
