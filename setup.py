"""Build of cnnx: the Cython kernels in cnnx/_kernels, compiled with OpenMP where the compiler has it.

The top-level folders `sim/` (the co-simulation bridge) and `verilog/` (the RTL) are mapped into the package
as `cnnx.sim` and `cnnx.verilog`, so a non-editable install carries them too.

Environment switches:
  CNNX_DEBUG=1     turn Cython's bounds and wraparound checks back on (slow; for debugging a kernel)
  CNNX_NO_OPENMP=1 build serial kernels even where the compiler supports OpenMP
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup


def _compiler_has_openmp() -> bool:
    """Compile and link a tiny OpenMP program; True when that works."""
    if os.environ.get("CNNX_NO_OPENMP"):
        return False
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc.split()[0]) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n")
        res = subprocess.run(
            [*cc.split(), "-fopenmp", src, "-o", os.path.join(tmp, "omp")],
            capture_output=True,
        )
        return res.returncode == 0


HAS_OPENMP = _compiler_has_openmp()
if not HAS_OPENMP:
    warnings.warn(
        "cnnx: the C compiler has no OpenMP (-fopenmp failed); building SERIAL kernels. "
        "Install an OpenMP-capable compiler (gcc, or clang with libomp) for multi-threaded layers.",
        stacklevel=1,
    )
    print("WARNING: cnnx builds serial kernels (no OpenMP)", file=sys.stderr)

DEBUG = bool(os.environ.get("CNNX_DEBUG"))
omp_flags = ["-fopenmp"] if HAS_OPENMP else []

extensions = [
    Extension(
        "cnnx._kernels." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=[np.get_include(), os.path.join("cnnx", "_kernels")],
        depends=sorted(glob.glob(os.path.join("cnnx", "_kernels", "*.h"))),  # rebuild (and ship) on change
        extra_compile_args=["-O3", *omp_flags],
        extra_link_args=omp_flags,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for path in sorted(glob.glob(os.path.join("cnnx", "_kernels", "*.pyx")))
]

setup(
    packages=["cnnx", "cnnx._kernels", "cnnx.compile", "cnnx.fpga", "cnnx.io", "cnnx.schemas", "cnnx.sim",
              "cnnx.verilog"],
    package_dir={"cnnx": "cnnx", "cnnx.sim": "sim", "cnnx.verilog": "verilog"},
    package_data={"cnnx.verilog": ["*.v", "*.vh"], "cnnx.sim": ["*.cpp", "*.h"], "cnnx._kernels": ["*.h"],
                  "cnnx.io": ["export_tb/*"], "cnnx.schemas": ["*.json"]},
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compile_time_env={"CNNX_OPENMP": HAS_OPENMP},
        compiler_directives={
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "cdivision": not DEBUG,
            "initializedcheck": DEBUG,
        },
    ),
    zip_safe=False,
)
