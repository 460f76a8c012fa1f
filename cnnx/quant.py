"""The int8 scheme of cnnx, defined once. The Cython int8 path, the NumPy golden model, the Verilog cores
(verilog/cnnx_conv_core.v, cnnx_pool_core.v) and the RTL drivers all follow exactly these rules.

Tensors
    activations and weights: int8, symmetric, zero point 0: real = scale * q, q in [-128, 127]
    bias: int32 at scale s_x * s_w (so it adds straight onto the accumulator)
    accumulator: int32 (sum of int8*int8 products plus bias); `check_acc_range` refuses a layer whose worst
    case could leave int32, so neither the RTL's 32-bit accumulator nor the golden model ever wraps.

Requantisation of an int32 accumulator `acc` to int8 (per tensor, one (M, S) pair per layer):
    1. y = (acc * M + 2**(S-1)) >> S     M in [1, MULT_MAX], S in [1, SHIFT_MAX]; `>>` is an arithmetic
                                         (floor) shift, so this rounds half up (towards +inf)
    2. y = max(y, 0)                     only when the layer fuses ReLU
    3. y = clamp(y, -128, 127)           saturation
    The product acc * M needs 32 + 16 = 48 bits (signed; M is a 15-bit magnitude), which the RTL carries.

Average pooling of int8 maps: the window sum (int32) goes through the same requantisation with
(M, S) = `avg_pool_multiplier(kh * kw)` (no ReLU), i.e. a rounded multiply by 1/(kh*kw).
Max pooling of int8 maps is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MULT_MAX = 2**15 - 1
SHIFT_MAX = 47
MULT_NORM_LO = 2**14  # `multiplier_from_scale` normalises M into [2**14, 2**15) for 15 significant bits


@dataclass(frozen=True)
class Requant:
    """One layer's requantisation: multiplier M, right shift S, and whether ReLU is fused."""

    mult: int
    shift: int
    relu: bool = False

    def __post_init__(self):
        if isinstance(self.mult, bool) or not isinstance(self.mult, int | np.integer):
            raise TypeError(f"Requant.mult must be an int, got {self.mult!r}")
        if isinstance(self.shift, bool) or not isinstance(self.shift, int | np.integer):
            raise TypeError(f"Requant.shift must be an int, got {self.shift!r}")
        if not 1 <= int(self.mult) <= MULT_MAX:
            raise ValueError(f"Requant.mult must be in [1, {MULT_MAX}], got {self.mult}")
        if not 1 <= int(self.shift) <= SHIFT_MAX:
            raise ValueError(f"Requant.shift must be in [1, {SHIFT_MAX}], got {self.shift}")
        object.__setattr__(self, "mult", int(self.mult))
        object.__setattr__(self, "shift", int(self.shift))
        object.__setattr__(self, "relu", bool(self.relu))

    @property
    def scale(self) -> float:
        """The real factor M / 2**S this requantisation applies."""
        return self.mult / 2.0**self.shift


def multiplier_from_scale(real: float, relu: bool = False) -> Requant:
    """The (M, S) pair closest to a positive real factor, with M normalised to 15 significant bits.

    Factors too small for S <= SHIFT_MAX keep S = SHIFT_MAX and a smaller M (or M = 1 if it rounds to 0);
    factors of 2**14 or more cannot be represented and raise.
    """
    real = float(real)
    if not math.isfinite(real) or real <= 0:
        raise ValueError(f"requantisation factor must be a positive finite number, got {real}")
    shift = SHIFT_MAX
    for s in range(1, SHIFT_MAX + 1):
        if round(real * 2**s) >= MULT_NORM_LO:
            shift = s
            break
    mult = round(real * 2**shift)
    if mult > MULT_MAX:
        raise ValueError(
            f"requantisation factor {real} is too large (needs M = {mult} > {MULT_MAX} at S = 1)"
        )
    return Requant(max(int(mult), 1), shift, relu)


def avg_pool_multiplier(window: int) -> Requant:
    """The requantisation that turns an int8 window sum into its rounded mean (no ReLU)."""
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise ValueError(f"pooling window must be a positive int, got {window!r}")
    return multiplier_from_scale(1.0 / int(window))


def requantize(acc, rq: Requant) -> np.ndarray:
    """Apply `rq` to an integer accumulator array (any shape, any integer dtype), giving int8.

    Exact integer arithmetic for every integer value (int32 accumulators are what the scheme produces, but a
    uint64 2**64 - 1 or an int64 -2**63 saturate too, never wrap): the accumulator is first clamped to
    [lo, hi], the narrowest range outside which `rq` saturates anyway, which keeps acc * M inside int64."""
    acc = np.asarray(acc)
    if acc.dtype.kind not in "iu":
        raise TypeError(f"requantize needs an integer accumulator, got dtype {acc.dtype}")
    if not isinstance(rq, Requant):
        raise TypeError(f"rq must be a cnnx.quant.Requant, got {type(rq).__name__}")
    # step 1 gives y >= INT8_MAX + 1 exactly when acc * M >= (INT8_MAX + 1) * 2**S - 2**(S-1), and
    # y <= INT8_MIN - 1 exactly when acc * M < INT8_MIN * 2**S - 2**(S-1); beyond those bounds y saturates
    hi = -(-((INT8_MAX + 1) * 2**rq.shift - 2 ** (rq.shift - 1)) // rq.mult)  # ceil: smallest saturating acc
    lo = (INT8_MIN * 2**rq.shift - 2 ** (rq.shift - 1)) // rq.mult - 1   # below this, y <= INT8_MIN - 1
    if acc.dtype.kind == "u":
        a = np.minimum(acc, acc.dtype.type(min(hi, np.iinfo(acc.dtype).max))).astype(np.int64)
    else:
        a = np.clip(acc.astype(np.int64), lo, hi)  # |a| * M <= 2**54 + M: inside int64
    y = (a * rq.mult + (1 << (rq.shift - 1))) >> rq.shift
    if rq.relu:
        y = np.maximum(y, 0)
    return np.clip(y, INT8_MIN, INT8_MAX).astype(np.int8)


def check_acc_range(n_terms: int, bias=None) -> None:
    """Refuse a layer whose worst-case accumulator (n_terms products of -128*-128 plus bias) leaves int32."""
    worst = int(n_terms) * 128 * 128
    if bias is not None and np.size(bias):
        worst += int(np.max(np.abs(np.asarray(bias, dtype=np.int64))))
    if worst > INT32_MAX:
        raise ValueError(
            f"a sum of {n_terms} int8 products plus bias can reach {worst}, beyond int32; split the layer"
        )


def quantize(x, scale: float) -> np.ndarray:
    """Real tensor -> int8 at `scale` (round half to even, as numpy rounds, then saturate); ValueError for
    NaN/inf values, which have no int8 value (numpy's cast would make them an arbitrary int8)."""
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number, got {scale}")
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"cannot quantise {int((~np.isfinite(x)).sum())} non-finite value(s) (NaN/inf)")
    return np.clip(np.rint(x / scale), INT8_MIN, INT8_MAX).astype(np.int8)


def quantize_bias(b, scale_x: float, scale_w: float) -> np.ndarray:
    """Real bias -> int32 at scale_x * scale_w (the accumulator's scale), saturated to int32; ValueError for
    a non-finite bias or scale (NaN has no int32 value: numpy would make it INT32_MIN)."""
    b = np.asarray(b, dtype=np.float64)
    s = float(scale_x) * float(scale_w)
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"bias scale scale_x * scale_w must be a positive finite number, got {s}")
    if not np.isfinite(b).all():
        raise ValueError(f"bias holds {int((~np.isfinite(b)).sum())} non-finite value(s) (NaN/inf); "
                         "it cannot be quantised")
    q = np.rint(b / s)
    return np.clip(q, INT32_MIN, INT32_MAX).astype(np.int32)


def dequantize(q, scale: float) -> np.ndarray:
    return np.asarray(q, dtype=np.float32) * np.float32(scale)


def symmetric_scale(x, percentile: float = 100.0) -> float:
    """The int8 scale that maps max|x| (or its percentile, to clip outliers) onto 127."""
    a = np.abs(np.asarray(x, dtype=np.float64)).ravel()
    m = float(np.percentile(a, percentile)) if a.size else 0.0
    return m / 127.0 if m > 0 else 1.0 / 127.0
