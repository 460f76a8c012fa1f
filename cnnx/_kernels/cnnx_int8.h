/* cnnx/_kernels/cnnx_int8.h — the int8 GEMM of the conv and dense kernels (cnnx/_kernels/_int8.pyx), in C.
 *
 * One product shape serves both layers:
 *     C (F, ncols) = requant(corr[f] + W (F, K) @ B (K, ncols))
 * W: int8 weights, rows of K4 = ceil(K / 4) "quads" (4 consecutive k, zero padded past K).
 * B: a panel of uint8 quads, panel[(kq * ldp + j) * 4 + t] = x + 128 for tap k = 4 kq + t and column j
 *    (conv: j = output pixel of one image; dense: j = image), built by cnnx_i8_pack_conv / _pack_dense.
 * The +128 makes the activations unsigned, as `vpdpbusd` (u8 x s8) wants: sum_k (x + 128) w =
 * acc + 128 sum_k w, so corr[f] = b[f] - 128 sum_k w[f, k] (prepared by cnnx_i8_prep_weights). All sums
 * wrap modulo 2**32 (unsigned or SIMD adds), and the true accumulator fits int32 (the Python wrapper calls
 * quant.check_acc_range first), so the result is exact whatever the intermediate values.
 *
 * The epilogue is fused into the store: either the int32 accumulator (mode CNNX_I8_ACC, for conv2d_acc /
 * linear_acc) or the int8 requantisation of cnnx/quant.py (mode CNNX_I8_REQ):
 *     y = (acc * M + 2**(S-1)) >> S  (arithmetic shift);  y = max(y, 0) if relu;  y = clamp(y, -128, 127)
 * The SIMD epilogues first clamp acc into [acc_lo, acc_hi] (cnnx_i8_rq_init): outside that interval y
 * saturates anyway and y is monotonic in acc, so the result is unchanged, and inside it y fits int32.
 *
 * Variants, picked once per process by cnnx_i8_init (CNNX_INT8_ISA=vnni512|avx2|portable forces one):
 *   vnni512   AVX-512 VNNI `vpdpbusd`: 64 u8 x s8 products per instruction; 6 x 64 register tiles
 *   avx2      AVX2: u8 and s8 widened to int16, `vpmaddwd` (exact pair sums; `vpmaddubsw` would saturate)
 *   portable  plain C, the same sums in uint32
 * Every variant gives the same integers (exact arithmetic), so any of them may run on any input.
 */
#ifndef CNNX_INT8_H
#define CNNX_INT8_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CNNX_I8_X86 1
#include <immintrin.h>
#define CNNX_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define CNNX_TARGET_AVX2 __attribute__((target("avx2,fma,bmi2")))
#else
#define CNNX_I8_X86 0
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define CNNX_I8_ACC 0
#define CNNX_I8_REQ 1

enum { CNNX_ISA_PORTABLE = 0, CNNX_ISA_AVX2 = 1, CNNX_ISA_VNNI512 = 2 };
static int cnnx_i8_isa = CNNX_ISA_PORTABLE;

/* ---- requantisation parameters ----------------------------------------------------------------------- */

typedef struct {
    int64_t mult, round;   /* M and 2**(S-1) */
    int shift;             /* S */
    int32_t ymin, ymax;    /* -128 (0 with ReLU), 127 */
    int32_t acc_lo, acc_hi;
} cnnx_rq;

/* floor(a / b) and ceil(a / b) for b > 0 (C's `/` truncates towards zero) */
static inline int64_t cnnx_floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static inline int64_t cnnx_ceildiv(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

/* M in [1, 2**15), S in [1, 47], as cnnx.quant.Requant guarantees (the caller passes a Requant). */
static void cnnx_i8_rq_init(cnnx_rq *q, int64_t mult, int shift, int relu)
{
    const int64_t two_s = (int64_t) 1 << shift;
    q->mult = mult;
    q->shift = shift;
    q->round = two_s >> 1;
    q->ymin = relu ? 0 : -128;
    q->ymax = 127;
    /* acc_hi: the smallest acc with y >= 128; acc_lo: the largest acc with y <= -129 */
    int64_t hi = cnnx_ceildiv(128 * two_s - q->round, mult);
    int64_t lo = cnnx_floordiv(-128 * two_s - q->round - 1, mult);
    q->acc_hi = (int32_t) (hi > INT32_MAX ? INT32_MAX : hi);
    q->acc_lo = (int32_t) (lo < INT32_MIN ? INT32_MIN : lo);
}

/* The rule of cnnx/quant.py, written plainly: the scalar epilogue, and the oracle of the SIMD ones. */
static inline int8_t cnnx_i8_requant1(int32_t acc, const cnnx_rq *q)
{
    int64_t y = ((int64_t) acc * q->mult + q->round) >> q->shift;  /* gcc: >> of a negative is arithmetic */
    if (y < q->ymin) y = q->ymin;
    if (y > q->ymax) y = q->ymax;
    return (int8_t) y;
}

/* ---- weights and panels ------------------------------------------------------------------------------ */

/* The order of a conv's taps in the GEMM's K dimension ("slots"; any order gives the same sums, the weights
   follow it): first, for each kernel row (c, i), its runs of 4 consecutive j, whose quad for output pixel ow
   is 4 consecutive bytes of one image row (stride 1) — a sliding window that one byte permute builds for
   16 pixels; then the remaining KW % 4 taps of every row, 4 to a quad; -1 pads the last quad. */
static void cnnx_i8_conv_slots(Py_ssize_t C, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t K4, int32_t *slots)
{
    Py_ssize_t s = 0;
    const Py_ssize_t runs = KW / 4;
    for (Py_ssize_t c = 0; c < C; ++c)
        for (Py_ssize_t i = 0; i < KH; ++i)
            for (Py_ssize_t r = 0; r < runs; ++r)
                for (Py_ssize_t t = 0; t < 4; ++t) slots[s++] = (int32_t) ((c * KH + i) * KW + 4 * r + t);
    for (Py_ssize_t c = 0; c < C; ++c)
        for (Py_ssize_t i = 0; i < KH; ++i)
            for (Py_ssize_t j = 4 * runs; j < KW; ++j) slots[s++] = (int32_t) ((c * KH + i) * KW + j);
    for (; s < K4 * 4; ++s) slots[s] = -1;
}

/* wq (F, K4*4) int8 = w (F, K) in slot order (slots NULL: k itself), zero where a slot is -1 or past K;
   wq16 the same widened to int16 (the avx2 variant's operand); corr[f] = b[f] - 128 * sum_k w[f, k],
   modulo 2**32. */
static void cnnx_i8_prep_weights(Py_ssize_t F, Py_ssize_t K, const int8_t *w, const int32_t *b,
                                 Py_ssize_t K4, const int32_t *slots, int8_t *wq, int16_t *wq16, int32_t *corr)
{
    for (Py_ssize_t f = 0; f < F; ++f) {
        uint32_t s = 0;
        for (Py_ssize_t k = 0; k < K4 * 4; ++k) {
            const Py_ssize_t src = slots != NULL ? slots[k] : (k < K ? k : -1);
            const int8_t v = src >= 0 ? w[f * K + src] : 0;
            wq[f * K4 * 4 + k] = v;
            wq16[f * K4 * 4 + k] = v;
            s += (uint32_t) (int32_t) v;
        }
        corr[f] = (int32_t) ((uint32_t) b[f] - 128u * s);
    }
}

/* Interleave 4 byte rows r0..r3 (n bytes each) into n quads at dst. */
static inline void cnnx_i8_interleave4(const uint8_t *r0, const uint8_t *r1, const uint8_t *r2,
                                       const uint8_t *r3, Py_ssize_t n, uint8_t *dst)
{
    Py_ssize_t p = 0;
#if defined(__SSE2__)
    if (n >= 16) {
        for (;;) {
            if (p + 16 > n) p = n - 16;  /* the last block overlaps the one before: same bytes rewritten */
            const __m128i a = _mm_loadu_si128((const __m128i *) (r0 + p));
            const __m128i b = _mm_loadu_si128((const __m128i *) (r1 + p));
            const __m128i c = _mm_loadu_si128((const __m128i *) (r2 + p));
            const __m128i d = _mm_loadu_si128((const __m128i *) (r3 + p));
            const __m128i ab0 = _mm_unpacklo_epi8(a, b), ab1 = _mm_unpackhi_epi8(a, b);
            const __m128i cd0 = _mm_unpacklo_epi8(c, d), cd1 = _mm_unpackhi_epi8(c, d);
            __m128i *o = (__m128i *) (dst + 4 * p);
            _mm_storeu_si128(o, _mm_unpacklo_epi16(ab0, cd0));
            _mm_storeu_si128(o + 1, _mm_unpackhi_epi16(ab0, cd0));
            _mm_storeu_si128(o + 2, _mm_unpacklo_epi16(ab1, cd1));
            _mm_storeu_si128(o + 3, _mm_unpackhi_epi16(ab1, cd1));
            if (p + 16 >= n) return;
            p += 16;
        }
    }
    if (n >= 8) {
        for (;;) {
            if (p + 8 > n) p = n - 8;
            const __m128i a = _mm_loadl_epi64((const __m128i *) (r0 + p));
            const __m128i b = _mm_loadl_epi64((const __m128i *) (r1 + p));
            const __m128i c = _mm_loadl_epi64((const __m128i *) (r2 + p));
            const __m128i d = _mm_loadl_epi64((const __m128i *) (r3 + p));
            const __m128i ab = _mm_unpacklo_epi8(a, b), cd = _mm_unpacklo_epi8(c, d);
            __m128i *o = (__m128i *) (dst + 4 * p);
            _mm_storeu_si128(o, _mm_unpacklo_epi16(ab, cd));
            _mm_storeu_si128(o + 1, _mm_unpackhi_epi16(ab, cd));
            if (p + 8 >= n) return;
            p += 8;
        }
    }
#endif
    for (; p < n; ++p) {
        dst[4 * p] = r0[p];
        dst[4 * p + 1] = r1[p];
        dst[4 * p + 2] = r2[p];
        dst[4 * p + 3] = r3[p];
    }
}

static int cnnx_i8_vbmi = 0;  /* the CPU has AVX-512 VBMI (vpermb): run quads packed by one permute */

#if CNNX_I8_X86
/* OH rows of OW sliding-window quads: row oh's quad ow = src[oh * rs + ow .. + 3], stored at dst + 4 (oh OW
   + ow). Reads up to 64 bytes from each row start + ow (the caller's buffer has that slack); stores exactly
   the OH * OW quads. */
__attribute__((target("avx512f,avx512bw,avx512vbmi")))
static void cnnx_i8_windows_vbmi(const uint8_t *src, Py_ssize_t rs, Py_ssize_t OH, Py_ssize_t OW, uint8_t *dst)
{
    const __m512i idx = _mm512_set_epi8(
        18, 17, 16, 15, 17, 16, 15, 14, 16, 15, 14, 13, 15, 14, 13, 12,
        14, 13, 12, 11, 13, 12, 11, 10, 12, 11, 10, 9, 11, 10, 9, 8,
        10, 9, 8, 7, 9, 8, 7, 6, 8, 7, 6, 5, 7, 6, 5, 4,
        6, 5, 4, 3, 5, 4, 3, 2, 4, 3, 2, 1, 3, 2, 1, 0);
    for (Py_ssize_t oh = 0; oh < OH; ++oh) {
        const uint8_t *row = src + oh * rs;
        uint8_t *d = dst + 4 * oh * OW;
        for (Py_ssize_t p = 0; p < OW; p += 16) {
            const __mmask16 m = (__mmask16) (OW - p >= 16 ? 0xFFFF : (1u << (OW - p)) - 1u);
            const __m512i v = _mm512_loadu_si512((const void *) (row + p));
            _mm512_mask_storeu_epi32(d + 4 * p, m, _mm512_permutexvar_epi8(idx, v));
        }
    }
}
#endif

#define CNNX_I8_SLACK 64  /* bytes readable past the padded image: the window permute's 64-byte loads */

/* offs[s]: the offset of slot s's tap (c, i, j) in the padded image, (c Hp + i) Wp + j (slots -1: tap 0). */
static void cnnx_i8_conv_offsets(const int32_t *slots, Py_ssize_t K4, Py_ssize_t KH, Py_ssize_t KW,
                                 Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t *offs)
{
    for (Py_ssize_t s = 0; s < 4 * K4; ++s) {
        const Py_ssize_t k = slots[s] >= 0 ? slots[s] : 0;
        const Py_ssize_t c = k / (KH * KW), i = (k / KW) % KH, j = k % KW;
        offs[s] = (c * Hp + i) * Wp + j;
    }
}

/* The conv panel of one image x (C, H, W): column p = oh * OW + ow, quad kq = slots 4 kq .. 4 kq + 3 (their
   offsets offs, from cnnx_i8_conv_offsets), rows ldp quads apart. xp is scratch of C * Hp * Wp +
   CNNX_I8_SLACK bytes (Hp = H + 2 pad, Wp = W + 2 pad): the image + 128 with its zero padding (128), so
   every tap reads real memory. Slots -1 read tap 0 (their weight is 0). */
static void cnnx_i8_pack_conv(const int8_t *x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t stride,
                              Py_ssize_t pad, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t K4, const int32_t *slots,
                              const Py_ssize_t *offs, Py_ssize_t ldp, uint8_t *xp, uint8_t *panel)
{
    const Py_ssize_t Hp = H + 2 * pad, Wp = W + 2 * pad;
    memset(xp + C * Hp * Wp, 0x80, CNNX_I8_SLACK);
    if (pad == 0) {  /* the same layout: one flat (vectorised) pass */
        for (Py_ssize_t e = 0; e < C * H * W; ++e) xp[e] = (uint8_t) x[e] ^ 0x80;
    } else {
        memset(xp, 0x80, (size_t) (C * Hp * Wp));
        for (Py_ssize_t c = 0; c < C; ++c)
            for (Py_ssize_t h = 0; h < H; ++h) {
                const int8_t *src = x + (c * H + h) * W;
                uint8_t *dst = xp + (c * Hp + h + pad) * Wp + pad;
                for (Py_ssize_t w = 0; w < W; ++w) dst[w] = (uint8_t) src[w] ^ 0x80;
            }
    }
    for (Py_ssize_t kq = 0; kq < K4; ++kq) {
        const Py_ssize_t *off = offs + 4 * kq;
        uint8_t *dst = panel + kq * ldp * 4;
        if (stride == 1) {
#if CNNX_I8_X86
            /* 4 taps at consecutive addresses: a sliding window */
            if (cnnx_i8_vbmi && off[1] == off[0] + 1 && off[2] == off[0] + 2 && off[3] == off[0] + 3
                && slots[4 * kq + 3] >= 0) {
                cnnx_i8_windows_vbmi(xp + off[0], Wp, OH, OW, dst);
                continue;
            }
#endif
            for (Py_ssize_t oh = 0; oh < OH; ++oh) {
                const uint8_t *row = xp + oh * Wp;
                cnnx_i8_interleave4(row + off[0], row + off[1], row + off[2], row + off[3], OW, dst + oh * OW * 4);
            }
        } else {
            for (Py_ssize_t oh = 0; oh < OH; ++oh) {
                const uint8_t *row = xp + oh * stride * Wp;
                uint8_t *d = dst + oh * OW * 4;
                for (Py_ssize_t ow = 0; ow < OW; ++ow)
                    for (int t = 0; t < 4; ++t) d[4 * ow + t] = row[off[t] + ow * stride];
            }
        }
    }
}

/* The dense panel of images n0..n0+ncols of x (N, K): column j = image n0 + j. */
static void cnnx_i8_pack_dense(const int8_t *x, Py_ssize_t K, Py_ssize_t ncols, Py_ssize_t K4,
                               Py_ssize_t ldp, uint8_t *panel)
{
    const Py_ssize_t kfull = K / 4;
    for (Py_ssize_t j = 0; j < ncols; ++j) {
        const int8_t *xr = x + j * K;
        for (Py_ssize_t kq = 0; kq < kfull; ++kq) {
            uint32_t v;
            memcpy(&v, xr + 4 * kq, 4);
            v ^= 0x80808080u;
            memcpy(panel + (kq * ldp + j) * 4, &v, 4);
        }
        if (kfull < K4)
            for (int t = 0; t < 4; ++t) {
                const Py_ssize_t k = 4 * kfull + t;
                panel[(kfull * ldp + j) * 4 + t] = (uint8_t) ((k < K ? xr[k] : 0) ^ 0x80);
            }
    }
}

/* ---- quantisation of a float32 input --------------------------------------------------------------- */

/* out = clamp(rint(x / scale), -128, 127) as cnnx.quant.quantize: the division in double, rounding half to
   even. Clamping to +-200 first changes nothing (rint is monotonic) and keeps the magic-number rounding
   ((v + 1.5 * 2**52) - 1.5 * 2**52, exact round-half-even for |v| < 2**51 in the default rounding mode)
   valid. Returns the number of non-finite inputs (NaN, +-inf) met: their outputs are meaningless, and the
   caller hands the array to cnnx.quant.quantize then, which refuses it with a message. */
static Py_ssize_t cnnx_i8_quantize(const float *x, Py_ssize_t n, double scale, int8_t *out)
{
    const double magic = 6755399441055744.0;  /* 1.5 * 2**52 */
    Py_ssize_t nan = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
        double v = (double) x[i] / scale;
        nan += !((double) x[i] - (double) x[i] == 0.0);  /* NaN and +-inf give NaN here */
        v = v < -200.0 ? -200.0 : v;
        v = v > 200.0 ? 200.0 : v;
        v = (v + magic) - magic;
        v = v < -128.0 ? -128.0 : v;
        v = v > 127.0 ? 127.0 : v;
        out[i] = (int8_t) (int) v;
    }
    return nan;
}

/* ---- max pooling, 2 x 2 windows, stride 2 ----------------------------------------------------------- */

/* One (H, W) plane -> (OH, OW), OH <= H / 2 and OW <= W / 2. Signed max = unsigned max of x ^ 0x80; a
   horizontal pair is one 16-bit lane (max of its low and high byte). Blocks of 8 or 4 outputs, the last one
   overlapping the one before (the same values rewritten); planes narrower than 4 outputs go scalar. */
static void cnnx_i8_maxpool2x2(const int8_t *x, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, int8_t *out)
{
    for (Py_ssize_t oh = 0; oh < OH; ++oh) {
        const int8_t *r0 = x + 2 * oh * W, *r1 = r0 + W;
        int8_t *o = out + oh * OW;
        Py_ssize_t ow = 0;
#if defined(__SSE2__)
        const __m128i s = _mm_set1_epi8((char) 0x80), lo = _mm_set1_epi16(0xFF);
        const Py_ssize_t step = OW >= 8 ? 8 : 4;
        if (OW >= 4) {
            for (;;) {
                if (ow + step > OW) ow = OW - step;
                __m128i a, b;
                if (step == 8) {
                    a = _mm_loadu_si128((const __m128i *) (r0 + 2 * ow));
                    b = _mm_loadu_si128((const __m128i *) (r1 + 2 * ow));
                } else {
                    a = _mm_loadl_epi64((const __m128i *) (r0 + 2 * ow));
                    b = _mm_loadl_epi64((const __m128i *) (r1 + 2 * ow));
                }
                const __m128i v = _mm_max_epu8(_mm_xor_si128(a, s), _mm_xor_si128(b, s));
                const __m128i m = _mm_max_epi16(_mm_and_si128(v, lo), _mm_srli_epi16(v, 8));
                const __m128i y = _mm_xor_si128(_mm_packus_epi16(m, m), s);
                if (step == 8) _mm_storel_epi64((__m128i *) (o + ow), y);
                else { const int v32 = _mm_cvtsi128_si32(y); memcpy(o + ow, &v32, 4); }
                if (ow + step >= OW) break;
                ow += step;
            }
            continue;
        }
#endif
        for (; ow < OW; ++ow) {
            int8_t m = r0[2 * ow];
            if (r0[2 * ow + 1] > m) m = r0[2 * ow + 1];
            if (r1[2 * ow] > m) m = r1[2 * ow];
            if (r1[2 * ow + 1] > m) m = r1[2 * ow + 1];
            o[ow] = m;
        }
    }
}

/* ---- portable ---------------------------------------------------------------------------------------- */

#define CNNX_I8_PB 64  /* columns per block: one row of sums stays in registers / L1 */

static void cnnx_i8_gemm_portable(Py_ssize_t F, Py_ssize_t ncols, Py_ssize_t K4, const int8_t *wq,
                                  const int32_t *corr, const uint8_t *panel, Py_ssize_t ldp, void *out,
                                  Py_ssize_t ldo, int mode, const cnnx_rq *q)
{
    uint32_t acc[CNNX_I8_PB];
    for (Py_ssize_t f = 0; f < F; ++f) {
        const int8_t *wr = wq + f * K4 * 4;
        for (Py_ssize_t j0 = 0; j0 < ncols; j0 += CNNX_I8_PB) {
            const Py_ssize_t nb = ncols - j0 < CNNX_I8_PB ? ncols - j0 : CNNX_I8_PB;
            for (Py_ssize_t j = 0; j < nb; ++j) acc[j] = (uint32_t) corr[f];
            for (Py_ssize_t kq = 0; kq < K4; ++kq) {
                const uint8_t *bp = panel + (kq * ldp + j0) * 4;
                const int32_t w0 = wr[4 * kq], w1 = wr[4 * kq + 1], w2 = wr[4 * kq + 2], w3 = wr[4 * kq + 3];
                for (Py_ssize_t j = 0; j < nb; ++j)
                    acc[j] += (uint32_t) (bp[4 * j] * w0 + bp[4 * j + 1] * w1 + bp[4 * j + 2] * w2
                                          + bp[4 * j + 3] * w3);
            }
            if (mode == CNNX_I8_ACC) {
                int32_t *o = (int32_t *) out + f * ldo + j0;
                for (Py_ssize_t j = 0; j < nb; ++j) o[j] = (int32_t) acc[j];
            } else {
                int8_t *o = (int8_t *) out + f * ldo + j0;
                for (Py_ssize_t j = 0; j < nb; ++j) o[j] = cnnx_i8_requant1((int32_t) acc[j], q);
            }
        }
    }
}

#if CNNX_I8_X86
/* ---- avx2 -------------------------------------------------------------------------------------------- */

/* requantise 8 int32 sums -> 8 int8 (see the file's head for the clamp of acc) */
static inline CNNX_TARGET_AVX2 __attribute__((always_inline)) __m128i cnnx_i8_rq_avx2(__m256i acc,
                                                                                      const cnnx_rq *q)
{
    acc = _mm256_max_epi32(acc, _mm256_set1_epi32(q->acc_lo));
    acc = _mm256_min_epi32(acc, _mm256_set1_epi32(q->acc_hi));
    const __m256i m = _mm256_set1_epi64x(q->mult);
    /* no 64-bit arithmetic shift in AVX2: shift v + 2**62 (>= 0) logically, then take 2**(62-S) off;
       only the low 32 bits are kept, which hold y exactly since y fits int32 after the clamp */
    const __m256i r = _mm256_set1_epi64x(q->round + ((int64_t) 1 << 62));
    const __m128i s = _mm_cvtsi32_si128(q->shift);
    __m256i ev = _mm256_srl_epi64(_mm256_add_epi64(_mm256_mul_epi32(acc, m), r), s);
    __m256i od = _mm256_srl_epi64(_mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(acc, 32), m), r), s);
    __m256i y = _mm256_blend_epi32(ev, _mm256_slli_epi64(od, 32), 0xAA);
    y = _mm256_sub_epi32(y, _mm256_set1_epi32((int32_t) (uint32_t) ((uint64_t) 1 << (62 - q->shift))));
    y = _mm256_max_epi32(y, _mm256_set1_epi32(q->ymin));
    y = _mm256_min_epi32(y, _mm256_set1_epi32(q->ymax));
    const __m256i pk = _mm256_shuffle_epi8(y, _mm256_setr_epi8(
        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
    return _mm_unpacklo_epi32(_mm256_castsi256_si128(pk), _mm256_extracti128_si256(pk, 1));
}

#define CNNX_I8_MR2 6
/* mr rows x 8 columns: each ymm holds 4 columns x 2 pair sums (vpmaddwd of 4 taps), folded at the end */
static inline CNNX_TARGET_AVX2 __attribute__((always_inline)) void cnnx_i8_tile_avx2(
    const int mr, Py_ssize_t K4, const int16_t *w16, const int32_t *corr, const uint8_t *bp, Py_ssize_t ldp,
    void *out, Py_ssize_t ldo, Py_ssize_t nc, int mode, const cnnx_rq *q)
{
    __m256i a0[CNNX_I8_MR2], a1[CNNX_I8_MR2];
    for (int r = 0; r < mr; ++r) { a0[r] = _mm256_setzero_si256(); a1[r] = _mm256_setzero_si256(); }
    for (Py_ssize_t kq = 0; kq < K4; ++kq) {
        const uint8_t *b = bp + kq * ldp * 4;
        const __m256i b0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *) b));
        const __m256i b1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *) (b + 16)));
        for (int r = 0; r < mr; ++r) {
            int64_t wv;
            memcpy(&wv, w16 + r * K4 * 4 + kq * 4, 8);
            const __m256i a = _mm256_set1_epi64x(wv);
            a0[r] = _mm256_add_epi32(a0[r], _mm256_madd_epi16(b0, a));
            a1[r] = _mm256_add_epi32(a1[r], _mm256_madd_epi16(b1, a));
        }
    }
    for (int r = 0; r < mr; ++r) {
        __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a0[r], a1[r]), 0xD8);
        s = _mm256_add_epi32(s, _mm256_set1_epi32(corr[r]));
        if (mode == CNNX_I8_ACC) {
            int32_t *o = (int32_t *) out + r * ldo;
            if (nc == 8) _mm256_storeu_si256((__m256i *) o, s);
            else { int32_t t[8]; _mm256_storeu_si256((__m256i *) t, s); memcpy(o, t, (size_t) nc * 4); }
        } else {
            int8_t *o = (int8_t *) out + r * ldo;
            const __m128i y = cnnx_i8_rq_avx2(s, q);
            if (nc == 8) _mm_storel_epi64((__m128i *) o, y);
            else { int8_t t[16]; _mm_storeu_si128((__m128i *) t, y); memcpy(o, t, (size_t) nc); }
        }
    }
}

CNNX_TARGET_AVX2 static void cnnx_i8_gemm_avx2(Py_ssize_t F, Py_ssize_t ncols, Py_ssize_t K4,
                                               const int16_t *w16, const int32_t *corr, const uint8_t *panel,
                                               Py_ssize_t ldp, void *out, Py_ssize_t ldo, int mode,
                                               const cnnx_rq *q)
{
    const size_t es = mode == CNNX_I8_ACC ? 4 : 1;
    for (Py_ssize_t j0 = 0; j0 < ncols; j0 += 8) {
        const Py_ssize_t nc = ncols - j0 < 8 ? ncols - j0 : 8;
        for (Py_ssize_t i0 = 0; i0 < F; i0 += CNNX_I8_MR2) {
            const int16_t *w = w16 + i0 * K4 * 4;
            const uint8_t *b = panel + j0 * 4;
            void *o = (char *) out + (i0 * ldo + j0) * es;
            switch (F - i0 < CNNX_I8_MR2 ? F - i0 : CNNX_I8_MR2) {
                case 6: cnnx_i8_tile_avx2(6, K4, w, corr + i0, b, ldp, o, ldo, nc, mode, q); break;
                case 5: cnnx_i8_tile_avx2(5, K4, w, corr + i0, b, ldp, o, ldo, nc, mode, q); break;
                case 4: cnnx_i8_tile_avx2(4, K4, w, corr + i0, b, ldp, o, ldo, nc, mode, q); break;
                case 3: cnnx_i8_tile_avx2(3, K4, w, corr + i0, b, ldp, o, ldo, nc, mode, q); break;
                case 2: cnnx_i8_tile_avx2(2, K4, w, corr + i0, b, ldp, o, ldo, nc, mode, q); break;
                default: cnnx_i8_tile_avx2(1, K4, w, corr + i0, b, ldp, o, ldo, nc, mode, q); break;
            }
        }
    }
}

/* ---- AVX-512 VNNI ------------------------------------------------------------------------------------ */

/* requantise 16 int32 sums -> 16 int8 */
static inline CNNX_TARGET_VNNI __attribute__((always_inline)) __m128i cnnx_i8_rq_512(__m512i acc,
                                                                                     const cnnx_rq *q)
{
    acc = _mm512_max_epi32(acc, _mm512_set1_epi32(q->acc_lo));
    acc = _mm512_min_epi32(acc, _mm512_set1_epi32(q->acc_hi));
    const __m512i m = _mm512_set1_epi64(q->mult), r = _mm512_set1_epi64(q->round);
    const __m128i s = _mm_cvtsi32_si128(q->shift);
    const __m512i ev = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(acc, m), r), s);
    const __m512i od = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(acc, 32), m), r), s);
    __m512i y = _mm512_mask_blend_epi32((__mmask16) 0xAAAA, ev, _mm512_slli_epi64(od, 32));
    y = _mm512_max_epi32(y, _mm512_set1_epi32(q->ymin));
    return _mm512_cvtsepi32_epi8(y);  /* saturating: the clamp to 127 */
}

#define CNNX_I8_MR 6
#define CNNX_I8_NZ 2   /* zmm column vectors per tile: 32 columns (wider tiles spill: measured slower) */
/* mr rows x nz*16 columns (the last vector masked to m) */
static inline CNNX_TARGET_VNNI __attribute__((always_inline)) void cnnx_i8_tile_512(
    const int mr, const int nz, Py_ssize_t K4, const int8_t *wq, const int32_t *corr, const uint8_t *bp,
    Py_ssize_t ldp, void *out, Py_ssize_t ldo, __mmask16 m, int mode, const cnnx_rq *q)
{
    __m512i acc[CNNX_I8_MR][CNNX_I8_NZ];
    for (int r = 0; r < mr; ++r)
        for (int z = 0; z < nz; ++z) acc[r][z] = _mm512_set1_epi32(corr[r]);
    for (Py_ssize_t kq = 0; kq < K4; ++kq) {
        const uint8_t *b = bp + kq * ldp * 4;
        __m512i bv[CNNX_I8_NZ];
        for (int z = 0; z < nz; ++z) bv[z] = _mm512_loadu_si512((const void *) (b + 64 * z));
        for (int r = 0; r < mr; ++r) {
            int32_t wv;
            memcpy(&wv, wq + r * K4 * 4 + kq * 4, 4);
            const __m512i a = _mm512_set1_epi32(wv);
            for (int z = 0; z < nz; ++z) acc[r][z] = _mm512_dpbusd_epi32(acc[r][z], bv[z], a);
        }
    }
    for (int r = 0; r < mr; ++r)
        for (int z = 0; z < nz; ++z) {
            const __mmask16 mz = z == nz - 1 ? m : (__mmask16) 0xFFFF;
            if (mode == CNNX_I8_ACC)
                _mm512_mask_storeu_epi32((int32_t *) out + r * ldo + 16 * z, mz, acc[r][z]);
            else
                _mm_mask_storeu_epi8((int8_t *) out + r * ldo + 16 * z, mz, cnnx_i8_rq_512(acc[r][z], q));
        }
}

#define CNNX_I8_CASE(R, Z) case (R) * 8 + (Z): \
    cnnx_i8_tile_512(R, Z, K4, w, corr + i0, b, ldp, o, ldo, m, mode, q); break;

/* The panel must hold ldp >= ncols rounded up to 16 columns (the masked lanes read, never store). */
CNNX_TARGET_VNNI static void cnnx_i8_gemm_512(Py_ssize_t F, Py_ssize_t ncols, Py_ssize_t K4, const int8_t *wq,
                                              const int32_t *corr, const uint8_t *panel, Py_ssize_t ldp,
                                              void *out, Py_ssize_t ldo, int mode, const cnnx_rq *q)
{
    const size_t es = mode == CNNX_I8_ACC ? 4 : 1;
    for (Py_ssize_t j0 = 0; j0 < ncols; j0 += 16 * CNNX_I8_NZ) {
        const Py_ssize_t nc = ncols - j0 < 16 * CNNX_I8_NZ ? ncols - j0 : 16 * CNNX_I8_NZ;
        const int nz = (int) ((nc + 15) / 16);
        const int last = (int) (nc - 16 * (nz - 1));
        const __mmask16 m = (__mmask16) (last >= 16 ? 0xFFFF : (1u << last) - 1u);
        for (Py_ssize_t i0 = 0; i0 < F; i0 += CNNX_I8_MR) {
            const int mr = (int) (F - i0 < CNNX_I8_MR ? F - i0 : CNNX_I8_MR);
            const int8_t *w = wq + i0 * K4 * 4;
            const uint8_t *b = panel + j0 * 4;
            void *o = (char *) out + (i0 * ldo + j0) * es;
            switch (mr * 8 + nz) {
                CNNX_I8_CASE(6, 2) CNNX_I8_CASE(5, 2) CNNX_I8_CASE(4, 2) CNNX_I8_CASE(3, 2) CNNX_I8_CASE(2, 2)
                CNNX_I8_CASE(1, 2) CNNX_I8_CASE(6, 1) CNNX_I8_CASE(5, 1) CNNX_I8_CASE(4, 1) CNNX_I8_CASE(3, 1)
                CNNX_I8_CASE(2, 1) CNNX_I8_CASE(1, 1)
                default: break;
            }
        }
    }
}
#endif /* CNNX_I8_X86 */

/* ---- dispatch ---------------------------------------------------------------------------------------- */

/* Pick the variant once per process: the best the CPU has, unless CNNX_INT8_ISA names one (a variant the
   CPU lacks falls back to the next best it has). */
static void cnnx_i8_init(void)
{
    const char *want = getenv("CNNX_INT8_ISA");
    int best = CNNX_ISA_PORTABLE;
#if CNNX_I8_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) best = CNNX_ISA_AVX2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vnni"))
        best = CNNX_ISA_VNNI512;
#endif
    int pick = best;
    if (want != NULL && want[0] != 0) {
        if (strcmp(want, "portable") == 0) pick = CNNX_ISA_PORTABLE;
        else if (strcmp(want, "avx2") == 0) pick = CNNX_ISA_AVX2;
        else if (strcmp(want, "vnni512") == 0) pick = CNNX_ISA_VNNI512;
        if (pick > best) pick = best;
    }
    cnnx_i8_isa = pick;
#if CNNX_I8_X86
    cnnx_i8_vbmi = pick == CNNX_ISA_VNNI512 && __builtin_cpu_supports("avx512vbmi");
#endif
}

static inline int cnnx_i8_get_isa(void) { return cnnx_i8_isa; }

/* C (F, ncols) at out (rows ldo elements apart: int32 for CNNX_I8_ACC, int8 for CNNX_I8_REQ). */
static inline void cnnx_i8_gemm(Py_ssize_t F, Py_ssize_t ncols, Py_ssize_t K4, const int8_t *wq,
                                const int16_t *wq16, const int32_t *corr, const uint8_t *panel, Py_ssize_t ldp,
                                void *out, Py_ssize_t ldo, int mode, const cnnx_rq *q)
{
#if CNNX_I8_X86
    if (cnnx_i8_isa == CNNX_ISA_VNNI512) {
        cnnx_i8_gemm_512(F, ncols, K4, wq, corr, panel, ldp, out, ldo, mode, q);
        return;
    }
    if (cnnx_i8_isa == CNNX_ISA_AVX2) {
        cnnx_i8_gemm_avx2(F, ncols, K4, wq16, corr, panel, ldp, out, ldo, mode, q);
        return;
    }
#endif
    (void) wq16;
    cnnx_i8_gemm_portable(F, ncols, K4, wq, corr, panel, ldp, out, ldo, mode, q);
}

/* The chosen epilogue on n accumulators (no GEMM): for tests of the requantisation against cnnx.quant. */
#if CNNX_I8_X86
CNNX_TARGET_VNNI static Py_ssize_t cnnx_i8_requant_512(const int32_t *acc, Py_ssize_t n, int8_t *out,
                                                       const cnnx_rq *q)
{
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm_storeu_si128((__m128i *) (out + i), cnnx_i8_rq_512(_mm512_loadu_si512((const void *) (acc + i)), q));
    return i;
}

CNNX_TARGET_AVX2 static Py_ssize_t cnnx_i8_requant_avx2(const int32_t *acc, Py_ssize_t n, int8_t *out,
                                                        const cnnx_rq *q)
{
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storel_epi64((__m128i *) (out + i),
                         cnnx_i8_rq_avx2(_mm256_loadu_si256((const __m256i *) (acc + i)), q));
    return i;
}
#endif

static void cnnx_i8_requant_array(const int32_t *acc, Py_ssize_t n, int8_t *out, const cnnx_rq *q)
{
    Py_ssize_t i = 0;
#if CNNX_I8_X86
    if (cnnx_i8_isa == CNNX_ISA_VNNI512) i = cnnx_i8_requant_512(acc, n, out, q);
    else if (cnnx_i8_isa == CNNX_ISA_AVX2) i = cnnx_i8_requant_avx2(acc, n, out, q);
#endif
    for (; i < n; ++i) out[i] = cnnx_i8_requant1(acc[i], q);
}

#endif /* CNNX_INT8_H */
