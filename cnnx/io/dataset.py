"""Image classification datasets from one `.npz` file, and where a run's data comes from.

The file holds `x_train, y_train, x_test, y_test`: images uint8 (N, H, W) or (N, C, H, W), labels integers
0..K-1 (any number of classes K). It is untrusted: it is opened without pickle (`allow_pickle=False`), every
member's header (dtype, shape) is read and checked BEFORE its data is, its size is bounded, and the labels'
range is checked. Images come back as (N, C, H, W).

A run trained on such a file stores {"path", "sha256", "input_shape", "num_classes"} in its checkpoint's
metadata under "dataset"; eval, cosim and profile read the same file from there (its checksum is compared, so
a changed file is refused rather than silently scored). Runs without it use MNIST (`cnnx.data`).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import sha256_of

META_KEY = "dataset"
KEYS = ("x_train", "y_train", "x_test", "y_test")
MAX_BYTES = 4 << 30  # the whole dataset in memory (4 GiB); a file claiming more is refused before reading
MAX_CLASSES = 65536


class DatasetError(ValueError):
    """A dataset file that is missing, unreadable, or not shaped as described in this module."""


@dataclass
class Dataset:
    x_train: np.ndarray  # uint8 (N, C, H, W)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    path: str = ""
    sha256: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.x_train.shape[1:])

    def meta(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes}


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of each wanted member, from the .npy headers only (no array data read)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(f"{path} is not a readable .npz file: {e}") from e
    out = {}
    with zf:
        names = set(zf.namelist())
        missing = [k for k in KEYS if k + ".npy" not in names]
        if missing:
            raise DatasetError(f"{path} lacks {', '.join(missing)}; a dataset .npz holds {', '.join(KEYS)}")
        for k in KEYS:
            try:
                with zf.open(k + ".npy") as f:
                    version = np.lib.format.read_magic(f)
                    read = {(1, 0): np.lib.format.read_array_header_1_0,
                            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read is None:
                        raise ValueError(f"unsupported .npy version {version}")
                    shape, _fortran, dtype = read(f)
            except Exception as e:  # header damage of any kind
                raise DatasetError(f"{path}: member {k} has no readable array header: {e}") from e
            out[k] = (tuple(int(s) for s in shape), dtype)
    return out


def _check_headers(path: Path, heads: dict) -> None:
    total = 0
    for k, (shape, dtype) in heads.items():
        if dtype.hasobject:
            raise DatasetError(f"{path}: {k} holds Python objects; only plain arrays are read (no pickle)")
        total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if total > MAX_BYTES:
        raise DatasetError(f"{path} would need {total / 2**30:.1f} GiB in memory; the limit is "
                           f"{MAX_BYTES / 2**30:.0f} GiB")
    for split in ("train", "test"):
        (xs, xd), (ys, yd) = heads[f"x_{split}"], heads[f"y_{split}"]
        if xd != np.uint8:
            raise DatasetError(f"{path}: x_{split} must be uint8 pixels, got {xd}")
        if len(xs) not in (3, 4) or min(xs, default=0) < 1:
            raise DatasetError(f"{path}: x_{split} must be (N, H, W) or (N, C, H, W) with sizes >= 1, "
                               f"got {xs}")
        if yd.kind not in "iu":
            raise DatasetError(f"{path}: y_{split} must hold integer labels, got {yd}")
        if ys != (xs[0],):
            raise DatasetError(f"{path}: y_{split} must have shape ({xs[0]},) to match x_{split}, got {ys}")
    tr, te = heads["x_train"][0], heads["x_test"][0]
    if (len(tr), tr[1:]) != (len(te), te[1:]):
        raise DatasetError(f"{path}: x_train images are {tr[1:]}, x_test images {te[1:]}; they must agree")


def load_npz(path: str | os.PathLike) -> Dataset:
    """Read and check a dataset file (see the module docstring). Raises DatasetError."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no dataset file at {path}")
    heads = _headers(path)
    _check_headers(path, heads)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in KEYS}
    except Exception as e:  # corrupt data, CRC errors, truncation
        raise DatasetError(f"{path}: cannot read the arrays (truncated or corrupt?): {e}") from e
    x_tr, x_te = arrays["x_train"], arrays["x_test"]
    if x_tr.ndim == 3:
        x_tr, x_te = x_tr[:, None], x_te[:, None]
    labels = []
    for k in ("y_train", "y_test"):
        y = arrays[k]
        if y.size and (int(y.min()) < 0 or int(y.max()) >= MAX_CLASSES):
            raise DatasetError(f"{path}: {k} has labels outside 0..{MAX_CLASSES - 1}")
        labels.append(y.astype(np.int64))
    k = int(max(labels[0].max(initial=-1), labels[1].max(initial=-1))) + 1
    if k < 2:
        raise DatasetError(f"{path}: the labels name {k} class(es); a classifier needs at least 2")
    if len(labels[0]) < 2:
        raise DatasetError(f"{path}: x_train holds {len(labels[0])} image(s); training needs at least 2")
    return Dataset(np.ascontiguousarray(x_tr), labels[0], np.ascontiguousarray(x_te), labels[1], k,
                   str(path.resolve()), sha256_of(path))


def of_meta(meta: dict | None, override: str | os.PathLike | None = None) -> Dataset | None:
    """The dataset a run was trained on (None: MNIST). `override` (a `--data` given on the command line)
    replaces it. A stored file whose checksum changed since training is refused."""
    if override is not None:
        return load_npz(override)
    d = (meta or {}).get(META_KEY)
    if not d:
        return None
    ds = load_npz(d["path"])
    if d.get("sha256") and ds.sha256 != d["sha256"]:
        raise DatasetError(f"{d['path']} changed since the run was trained (SHA-256 {ds.sha256[:12]}…, "
                           f"stored {d['sha256'][:12]}…); pass --data to score on it anyway")
    return ds


def eval_split(meta: dict | None, override=None) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) to score a run on: its dataset's test split, or MNIST's."""
    ds = of_meta(meta, override)
    if ds is None:
        from ..data import load_mnist

        return load_mnist("test")
    return ds.x_test, ds.y_test


def calibration_images(meta: dict | None, override=None, n: int = 500) -> np.ndarray:
    """The first `n` TRAINING images of a run's dataset (MNIST by default): calibration never sees the test
    set it is scored on."""
    ds = of_meta(meta, override)
    if ds is None:
        from ..data import load_mnist

        return load_mnist("train")[0][:n]
    return ds.x_train[:n]
