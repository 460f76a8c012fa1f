# cnnx/_kernels/_gemm.pxd — the one float32 matrix-multiply core of the conv and dense kernels, in C.
# C (+)= A @ B for row-major A (M, K), B (K, N), C (M, N), each with its own leading dimension. Written as a
# register-blocked 6x16 tile (12 eight-float accumulators, the classic AVX2 sgemm shape) with gcc vector
# extensions, compiled three times by gcc's target_clones (x86-64-v4, x86-64-v3 AVX2+FMA, plain x86-64) with
# the best picked at load time, because setup.py builds portable -O3 code without -march; on AVX-512 CPUs
# twins with 16-float vectors run instead (6x32 tiles, masked column tails; NT tiles with a masked k tail;
# set CNNX_NO_AVX512=1 to compare). Other compilers and CPUs get the same C as portable code.
# Deterministic: each C element is summed in a fixed order whatever thread calls it, and the path is chosen
# once per process. Modules that cimport this call gemm_init() once at import.

cdef extern from *:
    """
    #include <stdlib.h>
    #include <string.h>
    #ifndef CNNX_CLONES
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define CNNX_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
    #else
    #define CNNX_CLONES
    #endif
    #endif
    #define CNNX_MR 6
    #define CNNX_NR 16

    typedef float cnnx_v8 __attribute__((vector_size(32)));
    #define CNNX_NR512 32
    typedef float cnnx_v16 __attribute__((vector_size(64)));
    #define cnnx_ld16(p) __extension__ ({ cnnx_v16 v_; memcpy(&v_, (p), sizeof v_); v_; })
    #define cnnx_st16(p, v) do { cnnx_v16 v_ = (v); memcpy((p), &v_, sizeof v_); } while (0)
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define CNNX_HAVE_512 1
    #define CNNX_AVX512 __attribute__((target("arch=x86-64-v4")))
    #include <immintrin.h>
    #else
    #define CNNX_HAVE_512 0
    #define CNNX_AVX512
    #endif


    /* unaligned 8-float load/store (macros, not functions: a vector argument would change the ABI) */
    #define cnnx_ld8(p) __extension__ ({ cnnx_v8 v_; memcpy(&v_, (p), sizeof v_); v_; })
    #define cnnx_st8(p, v) do { cnnx_v8 v_ = (v); memcpy((p), &v_, sizeof v_); } while (0)

    /* One MR x 16 tile of C, mr (<= MR, a compile-time constant after inlining) rows, 16 columns. */
    static inline __attribute__((always_inline)) void cnnx_tile(
        const int mr, Py_ssize_t K, const float *A, Py_ssize_t lda, const float *B, Py_ssize_t ldb,
        float *C, Py_ssize_t ldc, int accumulate)
    {
        cnnx_v8 c0[CNNX_MR], c1[CNNX_MR];
        for (int r = 0; r < mr; ++r) {
            if (accumulate) { c0[r] = cnnx_ld8(C + r * ldc); c1[r] = cnnx_ld8(C + r * ldc + 8); }
            else { c0[r] = (cnnx_v8){0}; c1[r] = (cnnx_v8){0}; }
        }
        for (Py_ssize_t k = 0; k < K; ++k) {
            const cnnx_v8 b0 = cnnx_ld8(B + k * ldb), b1 = cnnx_ld8(B + k * ldb + 8);
            for (int r = 0; r < mr; ++r) {
                const float a = A[r * lda + k];
                c0[r] += a * b0;
                c1[r] += a * b1;
            }
        }
        for (int r = 0; r < mr; ++r) { cnnx_st8(C + r * ldc, c0[r]); cnnx_st8(C + r * ldc + 8, c1[r]); }
    }

    /* The last nr < 16 columns: copy them into a zero-padded K x 16 panel and a 16-wide C tile, run the full
       register tile on those, copy the nr real columns back. A scalar loop here would cost more than the
       copy (with K = 25, a 9-column tail is a third of the work). */
    static inline __attribute__((always_inline)) void cnnx_tail(
        Py_ssize_t M, Py_ssize_t nr, Py_ssize_t K, const float *A, Py_ssize_t lda, const float *B,
        Py_ssize_t ldb, float *C, Py_ssize_t ldc, int accumulate)
    {
        float ct[CNNX_MR * CNNX_NR];
        float *bp = (float *) malloc((size_t) (K > 0 ? K : 1) * CNNX_NR * sizeof(float));
        if (bp == NULL) {  /* out of memory: the same sums, in the same order, without the panel */
            for (Py_ssize_t r = 0; r < M; ++r)
                for (Py_ssize_t j = 0; j < nr; ++j) {
                    float acc = accumulate ? C[r * ldc + j] : 0.0f;
                    for (Py_ssize_t k = 0; k < K; ++k) acc += A[r * lda + k] * B[k * ldb + j];
                    C[r * ldc + j] = acc;
                }
            return;
        }
        for (Py_ssize_t k = 0; k < K; ++k) {
            for (Py_ssize_t j = 0; j < nr; ++j) bp[k * CNNX_NR + j] = B[k * ldb + j];
            for (Py_ssize_t j = nr; j < CNNX_NR; ++j) bp[k * CNNX_NR + j] = 0.0f;
        }
        for (Py_ssize_t i0 = 0; i0 < M; i0 += CNNX_MR) {
            const Py_ssize_t mr = M - i0 < CNNX_MR ? M - i0 : CNNX_MR;
            for (Py_ssize_t r = 0; r < mr; ++r)
                for (Py_ssize_t j = 0; j < CNNX_NR; ++j)
                    ct[r * CNNX_NR + j] = (accumulate && j < nr) ? C[(i0 + r) * ldc + j] : 0.0f;
            const float *a = A + i0 * lda;
            switch (mr) {
                case 6: cnnx_tile(6, K, a, lda, bp, CNNX_NR, ct, CNNX_NR, 1); break;
                case 5: cnnx_tile(5, K, a, lda, bp, CNNX_NR, ct, CNNX_NR, 1); break;
                case 4: cnnx_tile(4, K, a, lda, bp, CNNX_NR, ct, CNNX_NR, 1); break;
                case 3: cnnx_tile(3, K, a, lda, bp, CNNX_NR, ct, CNNX_NR, 1); break;
                case 2: cnnx_tile(2, K, a, lda, bp, CNNX_NR, ct, CNNX_NR, 1); break;
                default: cnnx_tile(1, K, a, lda, bp, CNNX_NR, ct, CNNX_NR, 1); break;
            }
            for (Py_ssize_t r = 0; r < mr; ++r)
                for (Py_ssize_t j = 0; j < nr; ++j) C[(i0 + r) * ldc + j] = ct[r * CNNX_NR + j];
        }
        free(bp);
    }

    CNNX_CLONES __attribute__((unused))
    static void cnnx_sgemm_v8(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float *A, Py_ssize_t lda,
                           const float *B, Py_ssize_t ldb, float *C, Py_ssize_t ldc, int accumulate)
    {
        Py_ssize_t j0 = 0;
        for (; j0 + CNNX_NR <= N; j0 += CNNX_NR) {
            for (Py_ssize_t i0 = 0; i0 < M; i0 += CNNX_MR) {
                const float *a = A + i0 * lda;
                const float *b = B + j0;
                float *c = C + i0 * ldc + j0;
                switch (M - i0 < CNNX_MR ? M - i0 : CNNX_MR) {
                    case 6: cnnx_tile(6, K, a, lda, b, ldb, c, ldc, accumulate); break;
                    case 5: cnnx_tile(5, K, a, lda, b, ldb, c, ldc, accumulate); break;
                    case 4: cnnx_tile(4, K, a, lda, b, ldb, c, ldc, accumulate); break;
                    case 3: cnnx_tile(3, K, a, lda, b, ldb, c, ldc, accumulate); break;
                    case 2: cnnx_tile(2, K, a, lda, b, ldb, c, ldc, accumulate); break;
                    default: cnnx_tile(1, K, a, lda, b, ldb, c, ldc, accumulate); break;
                }
            }
        }
        if (j0 < N)
            cnnx_tail(M, N - j0, K, A, lda, B + j0, ldb, C + j0, ldc, accumulate);
    }

    /* The same register tile with B's rows given by offsets: row k of B is Bbase + boff[k]. With B a padded
       image and boff[k] the offset of kernel tap k = (c, i, j), this is a stride-1 convolution computed over
       the padded width without building an im2col matrix ("implicit GEMM"). */
    static inline __attribute__((always_inline)) void cnnx_tile_rows(
        const int mr, Py_ssize_t K, const float *A, Py_ssize_t lda, const float *B, const Py_ssize_t *boff,
        float *C, Py_ssize_t ldc)
    {
        cnnx_v8 c0[CNNX_MR], c1[CNNX_MR];
        for (int r = 0; r < mr; ++r) { c0[r] = (cnnx_v8){0}; c1[r] = (cnnx_v8){0}; }
        for (Py_ssize_t k = 0; k < K; ++k) {
            const float *b = B + boff[k];
            const cnnx_v8 b0 = cnnx_ld8(b), b1 = cnnx_ld8(b + 8);
            for (int r = 0; r < mr; ++r) {
                const float a = A[r * lda + k];
                c0[r] += a * b0;
                c1[r] += a * b1;
            }
        }
        for (int r = 0; r < mr; ++r) { cnnx_st8(C + r * ldc, c0[r]); cnnx_st8(C + r * ldc + 8, c1[r]); }
    }

    /* C (M, N) = A (M, K) @ B where row k of B is Bbase + boff[k] (N floats). The last N % 16 columns go
       through a 16-wide scratch tile; the caller guarantees 16 readable floats past each row's Nth. */
    CNNX_CLONES __attribute__((unused))
    static void cnnx_sgemm_rows_v8(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float *A, Py_ssize_t lda,
                                const float *Bbase, const Py_ssize_t *boff, float *C, Py_ssize_t ldc)
    {
        float ct[CNNX_MR * CNNX_NR];
        for (Py_ssize_t j0 = 0; j0 < N; j0 += CNNX_NR) {
            const Py_ssize_t nr = N - j0 < CNNX_NR ? N - j0 : CNNX_NR;
            for (Py_ssize_t i0 = 0; i0 < M; i0 += CNNX_MR) {
                const Py_ssize_t mr = M - i0 < CNNX_MR ? M - i0 : CNNX_MR;
                const float *a = A + i0 * lda;
                const float *b = Bbase + j0;
                float *c = nr == CNNX_NR ? C + i0 * ldc + j0 : ct;
                const Py_ssize_t l = nr == CNNX_NR ? ldc : CNNX_NR;
                switch (mr) {
                    case 6: cnnx_tile_rows(6, K, a, lda, b, boff, c, l); break;
                    case 5: cnnx_tile_rows(5, K, a, lda, b, boff, c, l); break;
                    case 4: cnnx_tile_rows(4, K, a, lda, b, boff, c, l); break;
                    case 3: cnnx_tile_rows(3, K, a, lda, b, boff, c, l); break;
                    case 2: cnnx_tile_rows(2, K, a, lda, b, boff, c, l); break;
                    default: cnnx_tile_rows(1, K, a, lda, b, boff, c, l); break;
                }
                if (nr < CNNX_NR)
                    for (Py_ssize_t r = 0; r < mr; ++r)
                        for (Py_ssize_t j = 0; j < nr; ++j) C[(i0 + r) * ldc + j0 + j] = ct[r * CNNX_NR + j];
            }
        }
    }

    #if CNNX_HAVE_512
    /* AVX-512 twins of the functions above: 16-float vectors, 6 x 32 tiles (12 zmm accumulators). */
    static inline __attribute__((always_inline)) void cnnx_tile_512(
        const int mr, Py_ssize_t K, const float *A, Py_ssize_t lda, const float *B, Py_ssize_t ldb,
        float *C, Py_ssize_t ldc, int accumulate)
    {
        cnnx_v16 c0[CNNX_MR], c1[CNNX_MR];
        for (int r = 0; r < mr; ++r) {
            if (accumulate) { c0[r] = cnnx_ld16(C + r * ldc); c1[r] = cnnx_ld16(C + r * ldc + 16); }
            else { c0[r] = (cnnx_v16){0}; c1[r] = (cnnx_v16){0}; }
        }
        for (Py_ssize_t k = 0; k < K; ++k) {
            const cnnx_v16 b0 = cnnx_ld16(B + k * ldb), b1 = cnnx_ld16(B + k * ldb + 16);
            for (int r = 0; r < mr; ++r) {
                const float a = A[r * lda + k];
                c0[r] += a * b0;
                c1[r] += a * b1;
            }
        }
        for (int r = 0; r < mr; ++r) { cnnx_st16(C + r * ldc, c0[r]); cnnx_st16(C + r * ldc + 16, c1[r]); }
    }

    /* The last N % 32 columns with masked loads and stores: no packing copy, nothing read or written past
       column N. Same sums in the same order as the full tile. */
    static inline CNNX_AVX512 __attribute__((always_inline)) void cnnx_tile_512m(
        const int mr, Py_ssize_t K, const float *A, Py_ssize_t lda, const float *B, Py_ssize_t ldb,
        float *C, Py_ssize_t ldc, int accumulate, __mmask16 m0, __mmask16 m1)
    {
        __m512 c0[CNNX_MR], c1[CNNX_MR];
        for (int r = 0; r < mr; ++r) {
            if (accumulate) {
                c0[r] = _mm512_maskz_loadu_ps(m0, C + r * ldc);
                c1[r] = _mm512_maskz_loadu_ps(m1, C + r * ldc + 16);
            } else { c0[r] = _mm512_setzero_ps(); c1[r] = _mm512_setzero_ps(); }
        }
        for (Py_ssize_t k = 0; k < K; ++k) {
            const __m512 b0 = _mm512_maskz_loadu_ps(m0, B + k * ldb);
            const __m512 b1 = _mm512_maskz_loadu_ps(m1, B + k * ldb + 16);
            for (int r = 0; r < mr; ++r) {
                const __m512 a = _mm512_set1_ps(A[r * lda + k]);
                c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
                c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
            }
        }
        for (int r = 0; r < mr; ++r) {
            _mm512_mask_storeu_ps(C + r * ldc, m0, c0[r]);
            _mm512_mask_storeu_ps(C + r * ldc + 16, m1, c1[r]);
        }
    }

    CNNX_AVX512 __attribute__((unused))
    static void cnnx_sgemm_512(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float *A, Py_ssize_t lda,
                           const float *B, Py_ssize_t ldb, float *C, Py_ssize_t ldc, int accumulate)
    {
        Py_ssize_t j0 = 0;
        for (; j0 + CNNX_NR512 <= N; j0 += CNNX_NR512) {
            for (Py_ssize_t i0 = 0; i0 < M; i0 += CNNX_MR) {
                const float *a = A + i0 * lda;
                const float *b = B + j0;
                float *c = C + i0 * ldc + j0;
                switch (M - i0 < CNNX_MR ? M - i0 : CNNX_MR) {
                    case 6: cnnx_tile_512(6, K, a, lda, b, ldb, c, ldc, accumulate); break;
                    case 5: cnnx_tile_512(5, K, a, lda, b, ldb, c, ldc, accumulate); break;
                    case 4: cnnx_tile_512(4, K, a, lda, b, ldb, c, ldc, accumulate); break;
                    case 3: cnnx_tile_512(3, K, a, lda, b, ldb, c, ldc, accumulate); break;
                    case 2: cnnx_tile_512(2, K, a, lda, b, ldb, c, ldc, accumulate); break;
                    default: cnnx_tile_512(1, K, a, lda, b, ldb, c, ldc, accumulate); break;
                }
            }
        }
        if (j0 < N) {
            const Py_ssize_t nr = N - j0;
            const __mmask16 m0 = (__mmask16) (nr >= 16 ? 0xFFFF : (1u << nr) - 1u);
            const __mmask16 m1 = (__mmask16) (nr <= 16 ? 0 : (1u << (nr - 16)) - 1u);
            for (Py_ssize_t i0 = 0; i0 < M; i0 += CNNX_MR) {
                const float *a = A + i0 * lda;
                const float *b = B + j0;
                float *c = C + i0 * ldc + j0;
                switch (M - i0 < CNNX_MR ? M - i0 : CNNX_MR) {
                    case 6: cnnx_tile_512m(6, K, a, lda, b, ldb, c, ldc, accumulate, m0, m1); break;
                    case 5: cnnx_tile_512m(5, K, a, lda, b, ldb, c, ldc, accumulate, m0, m1); break;
                    case 4: cnnx_tile_512m(4, K, a, lda, b, ldb, c, ldc, accumulate, m0, m1); break;
                    case 3: cnnx_tile_512m(3, K, a, lda, b, ldb, c, ldc, accumulate, m0, m1); break;
                    case 2: cnnx_tile_512m(2, K, a, lda, b, ldb, c, ldc, accumulate, m0, m1); break;
                    default: cnnx_tile_512m(1, K, a, lda, b, ldb, c, ldc, accumulate, m0, m1); break;
                }
            }
        }
    }

    /* The same register tile with B's rows given by offsets: row k of B is Bbase + boff[k]. With B a padded
       image and boff[k] the offset of kernel tap k = (c, i, j), this is a stride-1 convolution computed over
       the padded width without building an im2col matrix ("implicit GEMM"). */
    static inline __attribute__((always_inline)) void cnnx_tile_rows_512(
        const int mr, Py_ssize_t K, const float *A, Py_ssize_t lda, const float *B, const Py_ssize_t *boff,
        float *C, Py_ssize_t ldc)
    {
        cnnx_v16 c0[CNNX_MR], c1[CNNX_MR];
        for (int r = 0; r < mr; ++r) { c0[r] = (cnnx_v16){0}; c1[r] = (cnnx_v16){0}; }
        for (Py_ssize_t k = 0; k < K; ++k) {
            const float *b = B + boff[k];
            const cnnx_v16 b0 = cnnx_ld16(b), b1 = cnnx_ld16(b + 16);
            for (int r = 0; r < mr; ++r) {
                const float a = A[r * lda + k];
                c0[r] += a * b0;
                c1[r] += a * b1;
            }
        }
        for (int r = 0; r < mr; ++r) { cnnx_st16(C + r * ldc, c0[r]); cnnx_st16(C + r * ldc + 16, c1[r]); }
    }

    /* C (M, N) = A (M, K) @ B where row k of B is Bbase + boff[k] (N floats). The last N % 16 columns go
       through a 16-wide scratch tile; the caller guarantees 16 readable floats past each row's Nth. */
    CNNX_AVX512 __attribute__((unused))
    static void cnnx_sgemm_rows_512(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float *A, Py_ssize_t lda,
                                const float *Bbase, const Py_ssize_t *boff, float *C, Py_ssize_t ldc)
    {
        float ct[CNNX_MR * CNNX_NR512];
        for (Py_ssize_t j0 = 0; j0 < N; j0 += CNNX_NR512) {
            const Py_ssize_t nr = N - j0 < CNNX_NR512 ? N - j0 : CNNX_NR512;
            for (Py_ssize_t i0 = 0; i0 < M; i0 += CNNX_MR) {
                const Py_ssize_t mr = M - i0 < CNNX_MR ? M - i0 : CNNX_MR;
                const float *a = A + i0 * lda;
                const float *b = Bbase + j0;
                float *c = nr == CNNX_NR512 ? C + i0 * ldc + j0 : ct;
                const Py_ssize_t l = nr == CNNX_NR512 ? ldc : CNNX_NR512;
                switch (mr) {
                    case 6: cnnx_tile_rows_512(6, K, a, lda, b, boff, c, l); break;
                    case 5: cnnx_tile_rows_512(5, K, a, lda, b, boff, c, l); break;
                    case 4: cnnx_tile_rows_512(4, K, a, lda, b, boff, c, l); break;
                    case 3: cnnx_tile_rows_512(3, K, a, lda, b, boff, c, l); break;
                    case 2: cnnx_tile_rows_512(2, K, a, lda, b, boff, c, l); break;
                    default: cnnx_tile_rows_512(1, K, a, lda, b, boff, c, l); break;
                }
                if (nr < CNNX_NR512)
                    for (Py_ssize_t r = 0; r < mr; ++r)
                        for (Py_ssize_t j = 0; j < nr; ++j)
                            C[(i0 + r) * ldc + j0 + j] = ct[r * CNNX_NR512 + j];
            }
        }
    }

    #endif

    /* Which tiles to run: the AVX-512 ones when the CPU has AVX-512 (F, VL, DQ, BW) and CNNX_NO_AVX512 is
       unset, else the 8-float ones (themselves cloned for AVX2 / baseline). Decided once, at import
       (cnnx_gemm_init), so every thread of every call takes the same path and sums in the same order. */
    static int cnnx_use512 = 0;

    static void cnnx_gemm_init(void)
    {
    #if CNNX_HAVE_512
        const char *off = getenv("CNNX_NO_AVX512");
        __builtin_cpu_init();
        cnnx_use512 = (off == NULL || off[0] == 0 || off[0] == '0')
            && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
    #endif
    }

    static inline __attribute__((unused)) void cnnx_sgemm(
        Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float *A, Py_ssize_t lda, const float *B,
        Py_ssize_t ldb, float *C, Py_ssize_t ldc, int accumulate)
    {
    #if CNNX_HAVE_512
        if (cnnx_use512) { cnnx_sgemm_512(M, N, K, A, lda, B, ldb, C, ldc, accumulate); return; }
    #endif
        cnnx_sgemm_v8(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    }

    /* The caller guarantees 32 readable floats past each B row's Nth (the widest tile). */
    static inline __attribute__((unused)) void cnnx_sgemm_rows(
        Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float *A, Py_ssize_t lda, const float *Bbase,
        const Py_ssize_t *boff, float *C, Py_ssize_t ldc)
    {
    #if CNNX_HAVE_512
        if (cnnx_use512) { cnnx_sgemm_rows_512(M, N, K, A, lda, Bbase, boff, C, ldc); return; }
    #endif
        cnnx_sgemm_rows_v8(M, N, K, A, lda, Bbase, boff, C, ldc);
    }

    /* Batched "NT" product for weight gradients: C[i, j] (+)= sum_n sum_k A_n[i, k] * B_n[j, k], with
       A_n = A + n * sa (rows lda apart) and B_n = B + n * sb (rows ldb apart, or, when boff is not NULL,
       row j at B_n + boff[j]: the taps of a padded image, as in cnnx_sgemm_rows): both operands are read
       along their rows, so a weight gradient needs no transposed copy. One tile of mr x nc <= 4 x 4
       outputs keeps 16 eight-float accumulators over k for the WHOLE batch (summed in the fixed order
       n = 0, 1, ..., then k), and reduces the eight lanes in a fixed tree at the end. */
    static inline __attribute__((always_inline)) void cnnx_nt_tile(
        const int mr, const int nc, Py_ssize_t nbatch, Py_ssize_t K, const float *A, Py_ssize_t lda,
        Py_ssize_t sa, const float *B, Py_ssize_t ldb, const Py_ssize_t *boff, Py_ssize_t sb, float *C,
        Py_ssize_t ldc, int accumulate)
    {
        cnnx_v8 acc[4][4];
        Py_ssize_t bo[4];
        for (int q = 0; q < nc; ++q) bo[q] = boff != NULL ? boff[q] : q * ldb;
        float tail[4][4];
        for (int r = 0; r < mr; ++r)
            for (int q = 0; q < nc; ++q) { acc[r][q] = (cnnx_v8){0}; tail[r][q] = 0.0f; }
        for (Py_ssize_t n = 0; n < nbatch; ++n) {
            const float *a = A + n * sa, *b = B + n * sb;
            Py_ssize_t k = 0;
            for (; k + 8 <= K; k += 8) {
                cnnx_v8 av[4], bv[4];
                for (int r = 0; r < mr; ++r) av[r] = cnnx_ld8(a + r * lda + k);
                for (int q = 0; q < nc; ++q) bv[q] = cnnx_ld8(b + bo[q] + k);
                for (int r = 0; r < mr; ++r)
                    for (int q = 0; q < nc; ++q) acc[r][q] += av[r] * bv[q];
            }
            for (; k < K; ++k)
                for (int r = 0; r < mr; ++r)
                    for (int q = 0; q < nc; ++q) tail[r][q] += a[r * lda + k] * b[bo[q] + k];
        }
        for (int r = 0; r < mr; ++r)
            for (int q = 0; q < nc; ++q) {
                const cnnx_v8 v = acc[r][q];
                float s = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])) + tail[r][q];
                C[r * ldc + q] = accumulate ? C[r * ldc + q] + s : s;
            }
    }

    #define CNNX_NT_CASE(R, Q) case (R) * 8 + (Q): \
        cnnx_nt_tile(R, Q, nbatch, K, A, lda, sa, B, ldb, boff, sb, C, ldc, accumulate); break;

    /* One tile (mr, nc <= 4) of the batched NT product above. */
    CNNX_CLONES __attribute__((unused))
    static void cnnx_sgemm_nt_tile_v8(int mr, int nc, Py_ssize_t nbatch, Py_ssize_t K, const float *A,
                                   Py_ssize_t lda, Py_ssize_t sa, const float *B, Py_ssize_t ldb,
                                   const Py_ssize_t *boff, Py_ssize_t sb, float *C, Py_ssize_t ldc,
                                   int accumulate)
    {
        switch (mr * 8 + nc) {
            CNNX_NT_CASE(1, 1) CNNX_NT_CASE(1, 2) CNNX_NT_CASE(1, 3) CNNX_NT_CASE(1, 4)
            CNNX_NT_CASE(2, 1) CNNX_NT_CASE(2, 2) CNNX_NT_CASE(2, 3) CNNX_NT_CASE(2, 4)
            CNNX_NT_CASE(3, 1) CNNX_NT_CASE(3, 2) CNNX_NT_CASE(3, 3) CNNX_NT_CASE(3, 4)
            CNNX_NT_CASE(4, 1) CNNX_NT_CASE(4, 2) CNNX_NT_CASE(4, 3) CNNX_NT_CASE(4, 4)
            default: break;
        }
    }
    #if CNNX_HAVE_512
    /* AVX-512 twin of cnnx_nt_tile: 16-float accumulators, the k remainder as one masked chunk. */
    static inline CNNX_AVX512 __attribute__((always_inline)) void cnnx_nt_tile_512(
        const int mr, const int nc, Py_ssize_t nbatch, Py_ssize_t K, const float *A, Py_ssize_t lda,
        Py_ssize_t sa, const float *B, Py_ssize_t ldb, const Py_ssize_t *boff, Py_ssize_t sb, float *C,
        Py_ssize_t ldc, int accumulate)
    {
        __m512 acc[4][4];
        Py_ssize_t bo[4];
        const Py_ssize_t kfull = K - K % 16;
        const __mmask16 mt = (__mmask16) ((1u << (K % 16)) - 1u);
        for (int q = 0; q < nc; ++q) bo[q] = boff != NULL ? boff[q] : q * ldb;
        for (int r = 0; r < mr; ++r)
            for (int q = 0; q < nc; ++q) acc[r][q] = _mm512_setzero_ps();
        for (Py_ssize_t n = 0; n < nbatch; ++n) {
            const float *a = A + n * sa, *b = B + n * sb;
            for (Py_ssize_t k = 0; k < kfull; k += 16) {
                __m512 av[4], bv[4];
                for (int r = 0; r < mr; ++r) av[r] = _mm512_loadu_ps(a + r * lda + k);
                for (int q = 0; q < nc; ++q) bv[q] = _mm512_loadu_ps(b + bo[q] + k);
                for (int r = 0; r < mr; ++r)
                    for (int q = 0; q < nc; ++q) acc[r][q] = _mm512_fmadd_ps(av[r], bv[q], acc[r][q]);
            }
            if (mt) {
                __m512 av[4], bv[4];
                for (int r = 0; r < mr; ++r) av[r] = _mm512_maskz_loadu_ps(mt, a + r * lda + kfull);
                for (int q = 0; q < nc; ++q) bv[q] = _mm512_maskz_loadu_ps(mt, b + bo[q] + kfull);
                for (int r = 0; r < mr; ++r)
                    for (int q = 0; q < nc; ++q) acc[r][q] = _mm512_fmadd_ps(av[r], bv[q], acc[r][q]);
            }
        }
        for (int r = 0; r < mr; ++r)
            for (int q = 0; q < nc; ++q) {
                const float s = _mm512_reduce_add_ps(acc[r][q]);
                C[r * ldc + q] = accumulate ? C[r * ldc + q] + s : s;
            }
    }

    #define CNNX_NT512_CASE(R, Q) case (R) * 8 + (Q): \
        cnnx_nt_tile_512(R, Q, nbatch, K, A, lda, sa, B, ldb, boff, sb, C, ldc, accumulate); break;

    CNNX_AVX512 __attribute__((unused))
    static void cnnx_sgemm_nt_tile_512(int mr, int nc, Py_ssize_t nbatch, Py_ssize_t K, const float *A,
                                       Py_ssize_t lda, Py_ssize_t sa, const float *B, Py_ssize_t ldb,
                                       const Py_ssize_t *boff, Py_ssize_t sb, float *C, Py_ssize_t ldc,
                                       int accumulate)
    {
        switch (mr * 8 + nc) {
            CNNX_NT512_CASE(1, 1) CNNX_NT512_CASE(1, 2) CNNX_NT512_CASE(1, 3) CNNX_NT512_CASE(1, 4)
            CNNX_NT512_CASE(2, 1) CNNX_NT512_CASE(2, 2) CNNX_NT512_CASE(2, 3) CNNX_NT512_CASE(2, 4)
            CNNX_NT512_CASE(3, 1) CNNX_NT512_CASE(3, 2) CNNX_NT512_CASE(3, 3) CNNX_NT512_CASE(3, 4)
            CNNX_NT512_CASE(4, 1) CNNX_NT512_CASE(4, 2) CNNX_NT512_CASE(4, 3) CNNX_NT512_CASE(4, 4)
            default: break;
        }
    }
    #endif

    static inline __attribute__((unused)) void cnnx_sgemm_nt_tile(
        int mr, int nc, Py_ssize_t nbatch, Py_ssize_t K, const float *A, Py_ssize_t lda, Py_ssize_t sa,
        const float *B, Py_ssize_t ldb, const Py_ssize_t *boff, Py_ssize_t sb, float *C, Py_ssize_t ldc,
        int accumulate)
    {
    #if CNNX_HAVE_512
        if (cnnx_use512) {
            cnnx_sgemm_nt_tile_512(mr, nc, nbatch, K, A, lda, sa, B, ldb, boff, sb, C, ldc, accumulate);
            return;
        }
    #endif
        cnnx_sgemm_nt_tile_v8(mr, nc, nbatch, K, A, lda, sa, B, ldb, boff, sb, C, ldc, accumulate);
    }
    """
    void gemm_init "cnnx_gemm_init"() noexcept nogil
    void sgemm "cnnx_sgemm"(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* A, Py_ssize_t lda,
                            const float* B, Py_ssize_t ldb, float* C, Py_ssize_t ldc,
                            int accumulate) noexcept nogil
    void sgemm_nt_tile "cnnx_sgemm_nt_tile"(int mr, int nc, Py_ssize_t nbatch, Py_ssize_t K, const float* A,
                                            Py_ssize_t lda, Py_ssize_t sa, const float* B, Py_ssize_t ldb,
                                            const Py_ssize_t* boff, Py_ssize_t sb, float* C, Py_ssize_t ldc,
                                            int accumulate) noexcept nogil
    void sgemm_rows "cnnx_sgemm_rows"(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* A,
                                      Py_ssize_t lda, const float* Bbase, const Py_ssize_t* boff, float* C,
                                      Py_ssize_t ldc) noexcept nogil
