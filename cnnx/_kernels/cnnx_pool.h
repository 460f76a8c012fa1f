/* cnnx/_kernels/cnnx_pool.h — the float32 2 x 2, stride 2 max pool of cnnx/_kernels/_pool.pyx, in C.
 *
 * The same comparisons as the general kernel, in the same order: the window (a b / c d) in row-major order,
 * a new value wins only if strictly greater (ties and NaNs keep the earlier one), and the arg-max is the flat
 * index ih * W + iw in the plane. Written with SSE2 compare-and-select (4 outputs at a time): the scalar
 * selects compile to branches, which on real data mispredict about half the time.
 */
#ifndef CNNX_POOL_H
#define CNNX_POOL_H

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static inline void cnnx_maxpool2x2_one(const float *r0, const float *r1, Py_ssize_t i0, Py_ssize_t W,
                                       float *o, int *a)
{
    float best = r0[0];
    Py_ssize_t bi = i0;
    if (r0[1] > best) { best = r0[1]; bi = i0 + 1; }
    if (r1[0] > best) { best = r1[0]; bi = i0 + W; }
    if (r1[1] > best) { best = r1[1]; bi = i0 + W + 1; }
    *o = best;
    *a = (int) bi;
}

/* One (H, W) plane -> out (OH, OW) and argmax (OH, OW); 2 OH <= H, 2 OW <= W. */
static void cnnx_maxpool2x2_f32(const float *plane, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, float *out,
                                int *argmax)
{
    for (Py_ssize_t oh = 0; oh < OH; ++oh) {
        const float *r0 = plane + 2 * oh * W, *r1 = r0 + W;
        float *o = out + oh * OW;
        int *am = argmax + oh * OW;
        Py_ssize_t ow = 0;
#if defined(__SSE2__)
        const __m128i step = _mm_set1_epi32(8);
        __m128i base = _mm_add_epi32(_mm_set1_epi32((int) (2 * oh * W)), _mm_setr_epi32(0, 2, 4, 6));
        const __m128i one = _mm_set1_epi32(1), wv = _mm_set1_epi32((int) W);
        for (; ow + 4 <= OW; ow += 4) {
            const __m128 p0 = _mm_loadu_ps(r0 + 2 * ow), p1 = _mm_loadu_ps(r0 + 2 * ow + 4);
            const __m128 q0 = _mm_loadu_ps(r1 + 2 * ow), q1 = _mm_loadu_ps(r1 + 2 * ow + 4);
            const __m128 a = _mm_shuffle_ps(p0, p1, _MM_SHUFFLE(2, 0, 2, 0));
            const __m128 b = _mm_shuffle_ps(p0, p1, _MM_SHUFFLE(3, 1, 3, 1));
            const __m128 c = _mm_shuffle_ps(q0, q1, _MM_SHUFFLE(2, 0, 2, 0));
            const __m128 d = _mm_shuffle_ps(q0, q1, _MM_SHUFFLE(3, 1, 3, 1));
            __m128 best = a;
            __m128i bi = base;
            __m128 m = _mm_cmpgt_ps(b, best);
            best = _mm_or_ps(_mm_and_ps(m, b), _mm_andnot_ps(m, best));
            __m128i mi = _mm_castps_si128(m), idx = _mm_add_epi32(base, one);
            bi = _mm_or_si128(_mm_and_si128(mi, idx), _mm_andnot_si128(mi, bi));
            m = _mm_cmpgt_ps(c, best);
            best = _mm_or_ps(_mm_and_ps(m, c), _mm_andnot_ps(m, best));
            mi = _mm_castps_si128(m);
            idx = _mm_add_epi32(base, wv);
            bi = _mm_or_si128(_mm_and_si128(mi, idx), _mm_andnot_si128(mi, bi));
            m = _mm_cmpgt_ps(d, best);
            best = _mm_or_ps(_mm_and_ps(m, d), _mm_andnot_ps(m, best));
            mi = _mm_castps_si128(m);
            idx = _mm_add_epi32(idx, one);
            bi = _mm_or_si128(_mm_and_si128(mi, idx), _mm_andnot_si128(mi, bi));
            _mm_storeu_ps(o + ow, best);
            _mm_storeu_si128((__m128i *) (am + ow), bi);
            base = _mm_add_epi32(base, step);
        }
#endif
        for (; ow < OW; ++ow)
            cnnx_maxpool2x2_one(r0 + 2 * ow, r1 + 2 * ow, 2 * oh * W + 2 * ow, W, o + ow, am + ow);
    }
}

#endif /* CNNX_POOL_H */
