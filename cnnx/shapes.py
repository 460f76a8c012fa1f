"""Output-size arithmetic for sliding windows, shared by the CPU kernels, the golden model and the
RTL drivers.

The lectures' rule: a window of size K with stride S and zero padding P over an input of size W gives
(W - K + 2P) / S + 1 outputs, and the layer only "fits" when S divides (W - K + 2P). PyTorch instead floors;
`floor_mode=True` opts into that.
"""

import numpy as np


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


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
