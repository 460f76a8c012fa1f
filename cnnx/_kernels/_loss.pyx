# cnnx/_kernels/_loss.pyx — losses with their input gradients, float32 in, per-sample losses out.
# Shapes: N batch, K classes (or features). IN read-only, OUT write-only. Each row is independent, so the
# loops run in parallel over the batch; the caller sums the per-sample losses (in float64, in order).

from cython.parallel cimport prange
from libc.math cimport exp, log
from libc.stdint cimport int64_t


def softmax_cross_entropy(
    const float[:, ::1] logits,     # IN  (N, K)
    const int64_t[::1] target,    # IN  (N,) class indices in [0, K), checked by the caller
    double[::1] loss,               # OUT (N,) -log softmax(logits)[n, target[n]]
    float[:, ::1] dlogits,          # OUT (N, K) (softmax - onehot) * grad_scale
    float grad_scale,               # 1/N for a mean over the batch
    int n_threads,
):
    cdef Py_ssize_t N = logits.shape[0], K = logits.shape[1]
    cdef Py_ssize_t n, k
    cdef double m, s, lse
    for n in prange(N, schedule="static", num_threads=n_threads, nogil=True):
        # log-sum-exp around the row max: exp never overflows, and the sum is >= 1
        m = logits[n, 0]
        for k in range(1, K):
            if logits[n, k] > m:
                m = logits[n, k]
        s = 0
        for k in range(K):
            s = s + exp(logits[n, k] - m)
        lse = m + log(s)
        loss[n] = lse - logits[n, target[n]]
        for k in range(K):
            dlogits[n, k] = <float>(exp(logits[n, k] - lse) * grad_scale)
        dlogits[n, target[n]] -= grad_scale


def squared_error(
    const float[:, ::1] x,          # IN  (N, K)
    const float[:, ::1] t,          # IN  (N, K) targets
    double[::1] loss,               # OUT (N,) sum_k (x - t)^2
    float[:, ::1] dx,               # OUT (N, K) 2 (x - t) * grad_scale
    float grad_scale,               # 1/(N*K) for a mean over every element
    int n_threads,
):
    cdef Py_ssize_t N = x.shape[0], K = x.shape[1]
    cdef Py_ssize_t n, k
    cdef double s, d
    for n in prange(N, schedule="static", num_threads=n_threads, nogil=True):
        s = 0
        for k in range(K):
            d = <double>x[n, k] - t[n, k]
            s = s + d * d
            dx[n, k] = <float>(2 * d * grad_scale)
        loss[n] = s
