"""Checkpoints: one `.npz` (no pickles) holding everything needed to evaluate or resume a training run.

Keys of the archive (format version 1):
    __format__        int, FORMAT_VERSION
    __model_name__    str, the zoo name (cnnx.models) or "custom"
    __model_config__  str, JSON of `Sequential.config()` (rebuilds the architecture without the zoo)
    __meta__          str, JSON: epoch, metrics so far, training settings, resume position, ...
    __optimizer__     str, JSON: {"kind", "hyper", "step"} or "null"
    param/<name>      float32 arrays of `model.state_dict()` ("0.weight", "0.bias", ...)
    optim/<name>      float32 optimiser buffers ("momentum.0", "m.3", ...)
Written atomically (temporary file in the same folder + os.replace), so a crash or Ctrl-C while saving leaves
the previous checkpoint intact. Anything wrong with a file on load raises `CheckpointError` (a ValueError).

A checkpoint is an untrusted file. Before anything is allocated, `read` checks the zip and .npy headers
(`cnnx._npz.read_npz`: at most MAX_CHECKPOINT_BYTES of arrays, or `$CNNX_MAX_CHECKPOINT_BYTES`; only the keys
above; float32 weights, so complex64 is refused), parses the JSON with a nesting limit, and compares the
parameter count the model config implies with the weights actually present (a small file whose config says
Linear(20000, 20000) is refused without building the layer). Weights must be finite (NaN/inf refused).
`load` then builds the model, loads the weights and checks that it runs on the input shape it was trained
for (the meta's "input_shape", else MNIST's (1, 28, 28)), so nothing fails only at forward time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import nn
from ._atomic import atomic_write
from ._npz import NpzError, json_loads, read_npz

MAX_CHECKPOINT_BYTES = 128 * 2**20  # 30x the zoo's largest checkpoint (the MLP with Adam buffers, 4.3 MB)
MAX_BYTES_ENV = "CNNX_MAX_CHECKPOINT_BYTES"
DEFAULT_INPUT_SHAPE = (1, 28, 28)  # = cnnx.models.INPUT_SHAPE (not imported: models imports the zoo)

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.npz"
_REQUIRED = ("__format__", "__model_name__", "__model_config__", "__meta__", "__optimizer__")


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupt, of another format, or of another model."""


def resolve(path_or_run_dir: str | os.PathLike) -> Path:
    """A run directory means RUN_DIR/checkpoint.npz; anything else is taken as the file itself."""
    p = Path(path_or_run_dir)
    return p / CHECKPOINT_NAME if p.is_dir() else p


def save(path: str | os.PathLike, model, optimizer=None, meta: dict | None = None) -> Path:
    """Write `model` (+ optimiser state, + JSON-able `meta`) to `path` (a file or a run directory)."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".npz":
        path = path / CHECKPOINT_NAME
    meta = dict(meta or {})
    arrays: dict[str, np.ndarray] = {
        "__format__": np.array(FORMAT_VERSION, dtype=np.int64),
        "__model_name__": np.array(str(meta.get("model_name", "custom"))),
        "__model_config__": np.array(json.dumps(model.config())),
        "__meta__": np.array(json.dumps(meta)),
    }
    for name, a in model.state_dict().items():
        arrays[f"param/{name}"] = np.asarray(a, dtype=np.float32)
    if optimizer is not None:
        sd = optimizer.state_dict()
        arrays["__optimizer__"] = np.array(json.dumps({k: sd[k] for k in ("kind", "hyper", "step")}))
        for name, a in sd["buffers"].items():
            arrays[f"optim/{name}"] = np.asarray(a, dtype=np.float32)
    else:
        arrays["__optimizer__"] = np.array("null")
    with atomic_write(path) as f:
        np.savez(f, **arrays)
    return path


def read(path_or_run_dir: str | os.PathLike) -> dict:
    """The raw contents, checked for format: {"path", "format", "model_name", "model_config", "meta",
    "optimizer" (dict or None, with "buffers"), "state_dict"}. Raises CheckpointError."""
    path = resolve(path_or_run_dir)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        # every member is read (and so CRC-checked) here, after its sizes and dtype were checked
        arrays = read_npz(path, _max_bytes(), _check_member, required=_REQUIRED)
    except NpzError as e:
        raise CheckpointError(f"{path} is not a readable checkpoint: {e}") from None
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise CheckpointError(f"{path} is not a cnnx checkpoint: missing {', '.join(missing)}")
    try:
        version = int(arrays["__format__"])
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{path} has checkpoint format {version}; this cnnx reads {FORMAT_VERSION}")
        model_config = json_loads(str(arrays["__model_config__"]), "the model config")
        meta = json_loads(str(arrays["__meta__"]), "the meta data")
        optimizer = json_loads(str(arrays["__optimizer__"]), "the optimiser state")
        if optimizer is not None and not isinstance(optimizer, dict):
            raise ValueError(f"the optimiser state must be a JSON object, got {type(optimizer).__name__}")
    except CheckpointError:
        raise
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has a malformed header: {e}") from None
    state = {k[len("param/") :]: v for k, v in arrays.items() if k.startswith("param/")}
    if not state:
        raise CheckpointError(f"{path} holds no weights")
    try:
        implied = nn.Sequential.parameter_count_of_config(model_config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: the model config is invalid: {e}") from None
    present = sum(a.size for a in state.values())
    if implied != present:
        raise CheckpointError(f"{path}: the model config implies {implied} parameters but the file holds "
                              f"{present}")
    for k, a in arrays.items():
        if k.startswith(("param/", "optim/")) and not np.isfinite(a).all():
            raise CheckpointError(f"{path}: {k} holds {int((~np.isfinite(a)).sum())} non-finite value(s) "
                                  "(NaN/inf); refusing to load")
    if optimizer is not None:
        optimizer["buffers"] = {k[len("optim/") :]: v for k, v in arrays.items() if k.startswith("optim/")}
    return {
        "path": str(path),
        "format": version,
        "model_name": str(arrays["__model_name__"]),
        "model_config": model_config,
        "meta": meta if isinstance(meta, dict) else {},
        "optimizer": optimizer,
        "state_dict": state,
    }


def load(path_or_run_dir: str | os.PathLike):
    """(model: nn.Sequential with the saved weights, info: dict) from a checkpoint file or a run directory.

    info holds "path", "format", "model_name", "model_config", "meta" (with "epoch", "metrics", ...),
    "epoch", "metrics" and "optimizer" (the optimiser state for `resume_optimizer`, or None).
    """
    info = read(path_or_run_dir)
    try:
        model = nn.Sequential.from_config(info["model_config"])
        model.load_state_dict(info.pop("state_dict"))
    except CheckpointError:
        raise
    except Exception as e:  # a config or weights that do not build a model are a broken checkpoint
        raise CheckpointError(f"{info['path']}: cannot rebuild the model: {e}") from e
    input_shape = info["meta"].get("input_shape", DEFAULT_INPUT_SHAPE)
    try:
        out = model.output_shape(input_shape)
        if len(out) != 1:
            raise ValueError(f"it gives outputs of shape {tuple(out)}, not class scores (K,)")
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{info['path']}: the model does not run on input shape "
                              f"{input_shape}: {e}") from None
    model.eval()
    info["epoch"] = info["meta"].get("epoch")
    info["metrics"] = info["meta"].get("metrics", [])
    return model, info


def _max_bytes() -> int:
    env = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not env:
        return MAX_CHECKPOINT_BYTES
    if not env.isdigit():
        raise CheckpointError(f"{MAX_BYTES_ENV} must be a number of bytes, got {env!r}")
    return int(env)


def _check_member(key: str, dtype: np.dtype, shape: tuple) -> None:
    """Which members a checkpoint may hold, with which dtypes and shapes (see the module docstring)."""
    if key == "__format__":
        if dtype.kind not in "iu" or shape != ():
            raise ValueError(f"must be an integer scalar, got {dtype}{shape}")
    elif key in _REQUIRED:
        if dtype.kind != "U" or shape != ():
            raise ValueError(f"must be a string, got {dtype}{shape}")
    elif key.startswith(("param/", "optim/")):
        if dtype != np.float32:
            raise ValueError(f"weights must be float32, got {dtype}")
        if len(shape) > 4:
            raise ValueError(f"has {len(shape)} dimensions; cnnx weights have at most 4")
    else:
        raise ValueError("is not a member of a cnnx checkpoint")


def resume_optimizer(optimizer, info: dict) -> None:
    """Load the optimiser state saved in `info` (from `load`) into `optimizer`; CheckpointError if not."""
    state = info.get("optimizer")
    if state is None:
        raise CheckpointError(f"{info.get('path')} holds no optimiser state to resume from")
    try:
        optimizer.load_state_dict(state)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{info.get('path')}: optimiser state does not fit: {e}") from e
