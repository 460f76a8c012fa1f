"""Input preprocessing: how uint8 pixels become a model's float input; the one definition, stored with a
model.

    x[n, c] = (pixel[n, c] / 255 - mean[c]) / std[c]

`Preprocess((0.0,), (1.0,))` is torchvision's `ToTensor` (pixel / 255), the default of `cnnx import`;
`--mean/--std` add torchvision's `Normalize`. A single mean/std applies to every channel. MNIST's is
(0.1307, 0.3081), the normalisation every checkpoint without a stored preprocessing keeps (old runs work
unchanged). Training, evaluation, calibration (`cnnx.ptq`), the int8 input quantiser and co-simulation all
call `to_float`, and the int8 input scale comes from `max_abs` (the largest |value| pixel 0 or 255 gives).

Stored in a checkpoint's metadata as {"mean": [...], "std": [...]} under the key "preprocess".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

META_KEY = "preprocess"


@dataclass(frozen=True)
class Preprocess:
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self):
        mean = tuple(float(v) for v in np.atleast_1d(np.asarray(self.mean, dtype=np.float64)))
        std = tuple(float(v) for v in np.atleast_1d(np.asarray(self.std, dtype=np.float64)))
        if not mean or not std:
            raise ValueError("mean and std need at least one value")
        if len(mean) != len(std) and 1 not in (len(mean), len(std)):
            raise ValueError(f"mean has {len(mean)} values and std {len(std)}: give one per channel, or one")
        if not all(math.isfinite(v) for v in mean + std):
            raise ValueError(f"mean and std must be finite, got mean={mean}, std={std}")
        if min(std) <= 0:
            raise ValueError(f"std must be > 0, got {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def channels(self) -> int | None:
        """The channel count the statistics fix (None: one value for any number of channels)."""
        n = max(len(self.mean), len(self.std))
        return None if n == 1 else n

    def _table(self, c: int) -> np.ndarray:
        """(c, 256) float32: the value of each pixel in each channel (float64 arithmetic, rounded once)."""
        if self.channels not in (None, c):
            raise ValueError(f"the preprocessing has {self.channels} channel statistics, the images {c} "
                             "channels")
        mean = np.broadcast_to(np.asarray(self.mean), (c,))[:, None]
        std = np.broadcast_to(np.asarray(self.std), (c,))[:, None]
        return ((np.arange(256, dtype=np.float64)[None, :] / 255.0 - mean) / std).astype(np.float32)

    def to_float(self, images) -> np.ndarray:
        """uint8 (N, H, W) or (N, C, H, W) -> float32 (N, C, H, W), by a per-channel 256-entry table."""
        a = np.asarray(images)
        if a.dtype != np.uint8:
            raise TypeError(f"images must be uint8 pixels, got dtype {a.dtype}")
        if a.ndim == 3:
            a = a[:, None]
        if a.ndim != 4:
            raise ValueError(f"images must be (N, H, W) or (N, C, H, W), got shape {a.shape}")
        table = self._table(a.shape[1])
        if a.shape[1] == 1:
            return table[0][a]
        out = np.empty(a.shape, np.float32)
        for c in range(a.shape[1]):
            out[:, c] = table[c][a[:, c]]
        return out

    def max_abs(self) -> float:
        """The largest |value| any pixel can map to (at 0 or 255, in any channel): the int8 input range."""
        return float(np.abs(self._table(self.channels or 1)[:, [0, 255]]).max())

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d) -> Preprocess:
        if not isinstance(d, dict) or "mean" not in d or "std" not in d:
            raise ValueError(f"a stored preprocessing must be {{'mean': [...], 'std': [...]}}, got {d!r}")
        return cls(tuple(d["mean"]), tuple(d["std"]))

    def describe(self) -> str:
        if all(m == 0 for m in self.mean) and all(s == 1 for s in self.std):
            return "pixel / 255"
        return f"(pixel / 255 - mean {list(self.mean)}) / std {list(self.std)}"


MNIST = Preprocess((0.1307,), (0.3081,))  # == cnnx.data.MNIST_MEAN / MNIST_STD (checked by the tests)
TO_TENSOR = Preprocess((0.0,), (1.0,))


def of_meta(meta: dict | None) -> Preprocess:
    """The preprocessing stored in a checkpoint's metadata; MNIST's for checkpoints that predate it."""
    d = (meta or {}).get(META_KEY)
    return MNIST if d is None else Preprocess.from_dict(d)


def from_stats(images: np.ndarray, chunk: int = 4096) -> Preprocess:
    """Per-channel mean and std of uint8 images (N, C, H, W) scaled to [0, 1] (float64, chunked)."""
    a = np.asarray(images)
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[0] == 0:
        raise ValueError(f"statistics need uint8 images (N, C, H, W), N > 0, got {a.dtype} {a.shape}")
    c = a.shape[1]
    s1, s2 = np.zeros(c), np.zeros(c)
    for i in range(0, a.shape[0], chunk):
        b = a[i : i + chunk].astype(np.float64) / 255.0
        s1 += b.sum(axis=(0, 2, 3))
        s2 += (b * b).sum(axis=(0, 2, 3))
    n = a.shape[0] * a.shape[2] * a.shape[3]
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
    std = np.where(std > 1e-6, std, 1.0)  # a constant channel: centre it, do not divide by ~0
    return Preprocess(tuple(np.round(mean, 6)), tuple(np.round(std, 6)))
