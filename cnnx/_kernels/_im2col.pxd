# cnnx/_kernels/_im2col.pxd — im2col / col2im for one image, in C, for the float32 conv kernels.
# im2col unrolls every receptive field of x (C, H, W) into col (K = C*KH*KW, P = OH*OW): row k = (c, i, j)
# holds x[c, oh*sh + i - ph, ow*sw + j - pw] for every output (oh, ow), 0 in the zero padding. col2im is its
# adjoint: it ADDS each row of col back into dx (the caller zeroes dx). Both work on runs of one output row,
# whose valid columns [ow_lo, ow_hi) are computed once per (j), so the inner loops have no branches; they are
# compiled per CPU family (target_clones, as the sgemm in _gemm.pxd) and kept as loops rather than memcpy
# calls (runs are only OW floats long; a libc call per run cost more than the copy).

cdef extern from *:
    """
    #ifndef CNNX_CLONES
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define CNNX_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
    #else
    #define CNNX_CLONES
    #endif
    #endif
    #if defined(__GNUC__) && !defined(__clang__)
    #define CNNX_NO_MEMCPY_CALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
    #else
    #define CNNX_NO_MEMCPY_CALLS
    #endif

    /* [lo, hi): the outputs ow whose input column ow*sw + j - pw lies inside [0, W) */
    static inline void cnnx_valid_cols(Py_ssize_t OW, Py_ssize_t W, Py_ssize_t j, Py_ssize_t sw,
                                       Py_ssize_t pw, Py_ssize_t *lo, Py_ssize_t *hi)
    {
        const Py_ssize_t first = pw - j;          /* ow*sw >= first */
        const Py_ssize_t last = W - 1 + pw - j;   /* ow*sw <= last */
        Py_ssize_t l = first > 0 ? (first + sw - 1) / sw : 0;
        Py_ssize_t h = last >= 0 ? last / sw + 1 : 0;
        if (h > OW) h = OW;
        if (l > h) l = h;
        *lo = l;
        *hi = h;
    }

    CNNX_CLONES CNNX_NO_MEMCPY_CALLS __attribute__((unused))
    static void cnnx_im2col(const float *x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH,
                            Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t sw,
                            Py_ssize_t ph, Py_ssize_t pw, float *col)
    {
        for (Py_ssize_t c = 0; c < C; ++c)
            for (Py_ssize_t i = 0; i < KH; ++i)
                for (Py_ssize_t j = 0; j < KW; ++j) {
                    float *row = col + ((c * KH + i) * KW + j) * OH * OW;
                    Py_ssize_t lo, hi;
                    cnnx_valid_cols(OW, W, j, sw, pw, &lo, &hi);
                    for (Py_ssize_t oh = 0; oh < OH; ++oh) {
                        float *r = row + oh * OW;
                        const Py_ssize_t ih = oh * sh + i - ph;
                        if (ih < 0 || ih >= H) {
                            for (Py_ssize_t ow = 0; ow < OW; ++ow) r[ow] = 0.0f;
                            continue;
                        }
                        const float *xr = x + (c * H + ih) * W;
                        for (Py_ssize_t ow = 0; ow < lo; ++ow) r[ow] = 0.0f;
                        if (sw == 1) {
                            const float *src = xr + (lo + j - pw);
                            float *dst = r + lo;
                            for (Py_ssize_t q = 0; q < hi - lo; ++q) dst[q] = src[q];
                        } else {
                            for (Py_ssize_t ow = lo; ow < hi; ++ow) r[ow] = xr[ow * sw + j - pw];
                        }
                        for (Py_ssize_t ow = hi; ow < OW; ++ow) r[ow] = 0.0f;
                    }
                }
    }

    CNNX_CLONES CNNX_NO_MEMCPY_CALLS __attribute__((unused))
    static void cnnx_col2im(const float *col, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH,
                            Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t sw,
                            Py_ssize_t ph, Py_ssize_t pw, float *dx)
    {
        for (Py_ssize_t c = 0; c < C; ++c)
            for (Py_ssize_t i = 0; i < KH; ++i)
                for (Py_ssize_t j = 0; j < KW; ++j) {
                    const float *row = col + ((c * KH + i) * KW + j) * OH * OW;
                    Py_ssize_t lo, hi;
                    cnnx_valid_cols(OW, W, j, sw, pw, &lo, &hi);
                    for (Py_ssize_t oh = 0; oh < OH; ++oh) {
                        const Py_ssize_t ih = oh * sh + i - ph;
                        if (ih < 0 || ih >= H) continue;
                        const float *r = row + oh * OW;
                        float *dr = dx + (c * H + ih) * W;
                        if (sw == 1) {
                            float *dst = dr + (lo + j - pw);
                            const float *src = r + lo;
                            for (Py_ssize_t q = 0; q < hi - lo; ++q) dst[q] += src[q];
                        } else {
                            for (Py_ssize_t ow = lo; ow < hi; ++ow) dr[ow * sw + j - pw] += r[ow];
                        }
                    }
                }
    }
    """
    void im2col "cnnx_im2col"(const float* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH,
                              Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t sw,
                              Py_ssize_t ph, Py_ssize_t pw, float* col) noexcept nogil
    void col2im "cnnx_col2im"(const float* col, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH,
                              Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t sw,
                              Py_ssize_t ph, Py_ssize_t pw, float* dx) noexcept nogil
