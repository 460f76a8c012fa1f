"""Image utilities from the lectures ("Deep Learning on FPGAs", TU Dortmund 2016, in /work/shared/seeds/).

Colour to grey, three ways (the slides' slips corrected, see the seeds' README):
    average     (r + g + b) / 3
    lightness   (max(r, g, b) + min(r, g, b)) / 2      (the slide prints max - min)
    luminosity  0.21 r + 0.72 g + 0.07 b              (the slide prints 0.07 r)
Block reduction: an r x r grid of pixels merges into one pixel, non-overlapping, no padding, channel-wise,
with a real-valued kernel whose result is mapped back to a pixel by the lecture's
k~ = max(0, min(255, floor(k))).

Arrays are channel-last (H, W, 3) for colour, as image files store them; greys are (H, W).
"""

from __future__ import annotations

import numpy as np

GREY_METHODS = ("average", "lightness", "luminosity")
REDUCTIONS = ("average", "max", "sum")


def _as_pixels(img, name: str = "image") -> np.ndarray:
    a = np.asarray(img)
    if a.dtype.kind not in "uif":
        raise TypeError(f"{name} must hold numbers, got dtype {a.dtype}")
    return a


def to_pixel(k) -> np.ndarray:
    """The lecture's mapping of a real kernel value back to a pixel: max(0, min(255, floor(k))), as uint8."""
    return np.clip(np.floor(np.asarray(k, dtype=np.float64)), 0, 255).astype(np.uint8)


def to_grey(rgb, method: str = "luminosity") -> np.ndarray:
    """(H, W, 3) colour image -> (H, W) float64 grey values (not rounded; see `to_pixel`)."""
    a = _as_pixels(rgb, "rgb")
    if a.ndim < 1 or a.shape[-1] != 3:
        raise ValueError(f"to_grey expects channel-last colour (..., 3), got shape {a.shape}")
    r, g, b = (a[..., i].astype(np.float64) for i in range(3))
    if method == "average":
        return (r + g + b) / 3.0
    if method == "lightness":
        return (np.maximum(np.maximum(r, g), b) + np.minimum(np.minimum(r, g), b)) / 2.0
    if method == "luminosity":
        # Integer hundredths, divided once: white (255, 255, 255) gives exactly 255.0, where the float sum
        # 0.21*255 + 0.72*255 + 0.07*255 gives 254.999... and the lecture's floor would turn it into 254.
        return (21.0 * r + 72.0 * g + 7.0 * b) / 100.0
    raise ValueError(f"unknown grey method {method!r}; expected one of {', '.join(GREY_METHODS)}")


def reduce_blocks(img, r: int, kernel: str = "average") -> np.ndarray:
    """Merge every non-overlapping r x r block into one pixel, channel-wise; result uint8 via `to_pixel`.

    `img` is (H, W) or (H, W, C); H and W must be multiples of r (the lecture applies the kernel with no
    padding and no overlap, so a block must fit). Integer inputs are summed exactly before the division.
    """
    a = _as_pixels(img)
    if isinstance(r, bool) or not isinstance(r, int | np.integer) or r < 1:
        raise ValueError(f"block size r must be a positive int, got {r!r}")
    if a.ndim not in (2, 3):
        raise ValueError(f"reduce_blocks expects (H, W) or (H, W, C), got shape {a.shape}")
    h, w = a.shape[:2]
    if h % r or w % r:
        raise ValueError(f"a {r}x{r} block does not tile a {h}x{w} image (sizes must be multiples of {r})")
    c = a.shape[2] if a.ndim == 3 else 1
    blocks = a.reshape(h // r, r, w // r, r, c)
    if kernel == "max":
        k = blocks.max(axis=(1, 3)).astype(np.float64)
    elif kernel in ("average", "sum"):
        acc = np.int64 if a.dtype.kind in "ui" else np.float64
        s = blocks.sum(axis=(1, 3), dtype=acc)
        if kernel == "sum":
            k = s.astype(np.float64)
        elif acc is np.int64:
            k = (s // (r * r)).astype(np.float64)  # exact floor for integer pixels (no float rounding)
        else:
            k = s / (r * r)
    else:
        raise ValueError(f"unknown reduction {kernel!r}; expected one of {', '.join(REDUCTIONS)}")
    out = to_pixel(k)
    return out[..., 0] if a.ndim == 2 else out
