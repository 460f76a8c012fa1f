# cnnx/_kernels/_activation.pyx — element-wise activations, float32, forward and backward.
# Every array is the flattened tensor (any shape, C-contiguous, viewed as 1-D by `cnnx.functional`); each
# element is independent, so the loops are split statically over the threads. IN read-only, OUT write-only.
# Backward conventions: ReLU'(0) = 0 and LeakyReLU'(0) = negative_slope (as PyTorch); sigmoid and tanh
# backward take the forward OUTPUT y; the ReLU family and ELU take the forward INPUT x.
# Each loop loads its operands into locals before choosing: a load inside only one branch of a conditional
# keeps gcc from turning it into a branch-free select, and random signs then mispredict half the branches.
# NaN propagates as in the golden model (cnnx.reference) and PyTorch: each select is written so that a NaN,
# for which every comparison is false, takes the branch that carries it (relu(nan) = elu(nan) = nan;
# `0 if v < 0 else v` is still one max instruction, with the NaN-propagating operand order).

from cython.parallel cimport prange
from libc.math cimport expf, tanhf


def relu_forward(const float[::1] x, float[::1] y, int n_threads):     # IN x, OUT y
    cdef Py_ssize_t i
    cdef float v
    for i in prange(x.shape[0], schedule="static", num_threads=n_threads, nogil=True):
        v = x[i]
        y[i] = 0 if v < 0 else v


def relu_backward(const float[::1] dy, const float[::1] x, float[::1] dx, int n_threads):  # IN dy, x; OUT dx
    cdef Py_ssize_t i
    cdef float d
    for i in prange(x.shape[0], schedule="static", num_threads=n_threads, nogil=True):
        d = dy[i]
        dx[i] = d if x[i] > 0 else 0


def leaky_relu_forward(const float[::1] x, float[::1] y, float slope, int n_threads):
    cdef Py_ssize_t i
    cdef float v, e
    for i in prange(x.shape[0], schedule="static", num_threads=n_threads, nogil=True):
        v = x[i]
        e = slope * v
        y[i] = v if v > 0 else e


def leaky_relu_backward(const float[::1] dy, const float[::1] x, float[::1] dx, float slope, int n_threads):
    cdef Py_ssize_t i
    cdef float d, e
    for i in prange(x.shape[0], schedule="static", num_threads=n_threads, nogil=True):
        d = dy[i]
        e = slope * d
        dx[i] = d if x[i] > 0 else e


def elu_forward(const float[::1] x, float[::1] y, float alpha, int n_threads):
    cdef Py_ssize_t i
    cdef float v, e
    for i in prange(x.shape[0], schedule="static", num_threads=n_threads, nogil=True):
        v = x[i]
        e = alpha * (expf(0 if v > 0 else v) - 1)
        y[i] = v if v > 0 else e


def elu_backward(const float[::1] dy, const float[::1] x, float[::1] dx, float alpha, int n_threads):
    cdef Py_ssize_t i
    cdef float d, v, e
    for i in prange(x.shape[0], schedule="static", num_threads=n_threads, nogil=True):
        d = dy[i]
        v = x[i]
        e = d * alpha * expf(0 if v > 0 else v)
        dx[i] = d if v > 0 else e


def sigmoid_forward(const float[::1] x, float[::1] y, int n_threads):
    cdef Py_ssize_t i
    cdef float e
    for i in prange(x.shape[0], schedule="static", num_threads=n_threads, nogil=True):
        # exp of a non-positive number only: no overflow for large |x|
        if x[i] >= 0:
            y[i] = 1 / (1 + expf(-x[i]))
        else:
            e = expf(x[i])
            y[i] = e / (1 + e)


def sigmoid_backward(const float[::1] dy, const float[::1] y, float[::1] dx, int n_threads):  # y: forward out
    cdef Py_ssize_t i
    for i in prange(y.shape[0], schedule="static", num_threads=n_threads, nogil=True):
        dx[i] = dy[i] * y[i] * (1 - y[i])


def tanh_forward(const float[::1] x, float[::1] y, int n_threads):
    cdef Py_ssize_t i
    for i in prange(x.shape[0], schedule="static", num_threads=n_threads, nogil=True):
        y[i] = tanhf(x[i])


def tanh_backward(const float[::1] dy, const float[::1] y, float[::1] dx, int n_threads):  # y: forward out
    cdef Py_ssize_t i
    for i in prange(y.shape[0], schedule="static", num_threads=n_threads, nogil=True):
        dx[i] = dy[i] * (1 - y[i] * y[i])
