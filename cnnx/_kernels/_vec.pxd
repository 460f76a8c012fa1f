# cnnx/_kernels/_vec.pxd — inline float32 vector helpers shared by the float kernels.
# Plain loops written so that gcc -O3 vectorises them without -ffast-math: `fsum` keeps eight partial sums in
# a fixed order, so its result does not depend on the thread count.


cdef inline float fsum(const float* a, Py_ssize_t n) noexcept nogil:
    """sum_i a[i] with eight partial sums (fixed order)."""
    cdef float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        s0 += a[i]
        s1 += a[i + 1]
        s2 += a[i + 2]
        s3 += a[i + 3]
        s4 += a[i + 4]
        s5 += a[i + 5]
        s6 += a[i + 6]
        s7 += a[i + 7]
        i += 8
    while i < n:
        s0 += a[i]
        i += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
