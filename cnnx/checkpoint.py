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
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import nn
from ._atomic import atomic_write

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
        with np.load(path, allow_pickle=False) as z:
            # Reading every member here makes a truncated or corrupt member fail now, inside this try.
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # BadZipFile, EOFError, zlib/CRC errors, "pickled data" ValueError, ...
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {e}") from e
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise CheckpointError(f"{path} is not a cnnx checkpoint: missing {', '.join(missing)}")
    try:
        version = int(arrays["__format__"])
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{path} has checkpoint format {version}; this cnnx reads {FORMAT_VERSION}")
        model_config = json.loads(str(arrays["__model_config__"]))
        meta = json.loads(str(arrays["__meta__"]))
        optimizer = json.loads(str(arrays["__optimizer__"]))
    except CheckpointError:
        raise
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has a malformed header: {e}") from e
    state = {k[len("param/") :]: v for k, v in arrays.items() if k.startswith("param/")}
    if not state:
        raise CheckpointError(f"{path} holds no weights")
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
    model.eval()
    info["epoch"] = info["meta"].get("epoch")
    info["metrics"] = info["meta"].get("metrics", [])
    return model, info


def resume_optimizer(optimizer, info: dict) -> None:
    """Load the optimiser state saved in `info` (from `load`) into `optimizer`; CheckpointError if not."""
    state = info.get("optimizer")
    if state is None:
        raise CheckpointError(f"{info.get('path')} holds no optimiser state to resume from")
    try:
        optimizer.load_state_dict(state)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{info.get('path')}: optimiser state does not fit: {e}") from e
