"""cnnx: CNN layers in Cython/OpenMP, Verilog systolic-array cores co-simulated with Verilator, and a harness
that checks the CPU engine, the RTL and a NumPy golden model against each other."""

from ._threads import get_num_threads, set_num_threads

__version__ = "0.1.0"


def openmp_enabled() -> bool:
    """True when the Cython kernels were compiled with OpenMP."""
    try:
        from ._kernels._openmp import openmp_enabled as _enabled
    except ImportError:  # extension not built yet
        return False
    return bool(_enabled())


__all__ = ["get_num_threads", "openmp_enabled", "set_num_threads", "__version__"]
