"""Cython kernels (one .pyx per layer family). Call them through `cnnx.functional`, which validates input."""
