"""cnnx: CNN layers in Cython/OpenMP, Verilog systolic-array cores co-simulated with Verilator, and a harness
that checks the CPU engine, the RTL and a NumPy golden model against each other."""

import os

# Idle OpenMP threads sleep instead of spinning. Set before the kernels (and so the OpenMP runtime) load;
# an explicit OMP_WAIT_POLICY in the environment wins. With the default spinning policy, 2 threads on 2
# cores that other processes also use were measured 10x slower per LeNet-5 training step than 1 thread
# (244 vs 19 ms); sleeping waiters cure that and cost little when the cores are free.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._malloc import retain_freed_memory  # noqa: E402
from ._threads import get_num_threads, set_num_threads  # noqa: E402

retain_freed_memory()  # no page faults on every step's ~1 MB arrays (see cnnx/_malloc.py)

__version__ = "0.1.0"


def openmp_enabled() -> bool:
    """True when the Cython kernels were compiled with OpenMP."""
    try:
        from ._kernels._openmp import openmp_enabled as _enabled
    except ImportError:  # extension not built yet
        return False
    return bool(_enabled())


def __getattr__(name):
    # cnnx.synth is cnnx.fpga.synth (the ECP5 flow), imported on first use: `import cnnx` stays light.
    if name == "synth":
        from .fpga import synth

        return synth
    raise AttributeError(f"module 'cnnx' has no attribute {name!r}")


__all__ = ["get_num_threads", "openmp_enabled", "set_num_threads", "synth", "__version__"]
