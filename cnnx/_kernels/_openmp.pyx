# cnnx/_kernels/_openmp.pyx — whether this build has OpenMP (set by setup.py's compile-time env).


def openmp_enabled():
    """True when the kernels were compiled with -fopenmp."""
    return CNNX_OPENMP
