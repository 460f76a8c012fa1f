"""Output-size arithmetic for sliding windows, shared by the CPU kernels, the golden model and the
RTL drivers.

The lectures' rule: a window of size K with stride S and zero padding P over an input of size W gives
(W - K + 2P) / S + 1 outputs, and the layer only "fits" when S divides (W - K + 2P). PyTorch instead floors;
`floor_mode=True` opts into that.

It is also the one guard against sizes the kernels cannot index or the machine cannot hold, used by every
float (`cnnx.functional`, `cnnx.nn`) and int8 (`cnnx.int8`, `cnnx.ptq`) entry point before anything is
allocated (the Cython kernels run without bounds checks, so an overflowing index would be a crash):
- every size, kernel, stride and padding is an int in [minimum, MAX_DIM]: then the kernels' Py_ssize_t
  index products (e.g. oh * stride + i, c * Hp * Wp) stay far inside int64;
- every array a call allocates (outputs, scratch, padded copies) is counted by `check_alloc` against
  `max_alloc_bytes()` (MAX_ALLOC_BYTES, 4 GiB, or `$CNNX_MAX_ALLOC_BYTES`) and refused with a ValueError
  naming the argument that makes it large, instead of numpy's MemoryError or the OOM killer; and no array
  may hold more than MAX_ELEMENTS elements (the int32 arg-max of max pooling indexes a plane with them).
"""

import os

import numpy as np

MAX_DIM = 2**31 - 1
MAX_ELEMENTS = 2**31 - 1
MAX_ALLOC_BYTES = 4 * 2**30
ALLOC_ENV = "CNNX_MAX_ALLOC_BYTES"


def check_positive_int(name: str, value, minimum: int = 1, maximum: int = MAX_DIM) -> int:
    """`value` as an int in [minimum, maximum]: TypeError if it is not an int, ValueError if out of range."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def max_alloc_bytes() -> int:
    """The memory budget of one call: `$CNNX_MAX_ALLOC_BYTES` if set (bytes), else MAX_ALLOC_BYTES."""
    env = os.environ.get(ALLOC_ENV, "").strip()
    if not env:
        return MAX_ALLOC_BYTES
    if not env.isdigit() or int(env) < 1:
        raise ValueError(f"{ALLOC_ENV} must be a positive number of bytes, got {env!r}")
    return int(env)


def check_alloc(because: str, *arrays: tuple) -> None:
    """Refuse, before allocating, the arrays (shape, dtype) one call needs when any of them holds more than
    MAX_ELEMENTS elements or all of them together exceed `max_alloc_bytes()`. `because` names the
    argument(s) that set the sizes ("padding=40000 of conv2d", ...); it leads the ValueError's message."""
    total, budget, sizes = 0, max_alloc_bytes(), []
    for shape, dtype in arrays:
        n = 1
        for s in shape:
            n *= int(s)  # Python ints: exact, no overflow
        sizes.append((tuple(int(s) for s in shape), n))
        total += n * np.dtype(dtype).itemsize
    if total > budget:
        raise ValueError(f"{because}: needs {_gib(total)} of new arrays "
                         f"({', '.join(str(sh) for sh, _ in sizes)}), more than the {_gib(budget)} budget "
                         f"(raise it with {ALLOC_ENV})")
    for shape, n in sizes:
        if n > MAX_ELEMENTS:
            raise ValueError(f"{because}: an array of shape {shape} would hold {n} elements, more than the "
                             f"{MAX_ELEMENTS} the kernels can index")


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def pair(name: str, value, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints, as PyTorch accepts for kernel_size/stride/padding."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return check_positive_int(name, value[0], minimum), check_positive_int(name, value[1], minimum)
    v = check_positive_int(name, value, minimum)
    return v, v


def out_size(size: int, kernel: int, stride: int, padding: int, *, floor_mode: bool = False,
             what: str = "window") -> int:
    """Outputs along one axis; raises ValueError naming the sizes when the window does not fit."""
    check_positive_int("kernel size", kernel)
    check_positive_int("stride", stride)
    check_positive_int("padding", padding, minimum=0)
    span = size + 2 * padding - kernel
    if span < 0:
        raise ValueError(
            f"{what} of size {kernel} is larger than the padded input: input {size} + 2*padding {padding} "
            f"= {size + 2 * padding} < {kernel}"
        )
    if span % stride and not floor_mode:
        raise ValueError(
            f"{what} does not fit: (W - K + 2P) = ({size} - {kernel} + 2*{padding}) = {span} "
            f"is not a multiple of stride {stride}; change the sizes or pass floor_mode=True "
            "for PyTorch's floor behaviour"
        )
    return span // stride + 1


def check_array(name: str, a, dtype, ndim: int, *, allow_empty: bool = True) -> np.ndarray:
    """`a` itself when it is a numpy array of `dtype` with `ndim` dimensions; else TypeError/ValueError
    naming what was expected and what came."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of {np.dtype(dtype).name}, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} must be {np.dtype(dtype).name}, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    if not allow_empty and 0 in a.shape:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    return a
