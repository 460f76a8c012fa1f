"""PyTorch weights -> a cnnx `nn.Sequential`: a `state_dict` plus the cnnx model config that describes it.

The config is the JSON list `nn.Sequential.config()` writes (one {"type", "args"} per layer, PyTorch's layer
names and argument names), so a `torch.nn.Sequential` of Conv2d/Linear/ReLU/MaxPool2d/AvgPool2d/Flatten/
Dropout maps onto it layer for layer and its `state_dict` keys ("0.weight", "0.bias", ...) are cnnx's.

The weights come from either
  * a `.pt`/`.pth` file of `torch.save(model.state_dict(), path)`, read with `torch.load(weights_only=True)`
    (no arbitrary unpickling) when torch is installed — torch stays optional and is imported only here; or
  * an `.npz` with the same names, which needs no torch: `np.savez(path, **{k: v.numpy() for k, v in
    model.state_dict().items()})`. It is read with `allow_pickle=False`.
Every array is checked (a real dtype, finite, the shape the config's layer expects) before it is used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import nn

MAX_FILE_BYTES = 1 << 30
MAX_CONFIG_BYTES = 1 << 20


class TorchImportError(ValueError):
    """Weights or a config that cannot become a cnnx model."""


def read_config(path: str | os.PathLike) -> list:
    path = Path(path)
    if not path.is_file():
        raise TorchImportError(f"no model config at {path}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise TorchImportError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes; not a model config")
    try:
        cfg = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as e:
        raise TorchImportError(f"{path} is not JSON: {e}") from e
    if isinstance(cfg, dict) and "model_config" in cfg:  # tolerate {"model_config": [...], ...}
        cfg = cfg["model_config"]
    return cfg


def _torch_state_dict(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as e:
        raise TorchImportError(f"{path}: reading a .pt file needs torch (pip install torch); without it, "
                               "save the state_dict as an .npz (see the README)") from e
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # an unpickling refusal, a corrupt zip, ...
        raise TorchImportError(f"{path} is not a loadable state_dict (weights_only=True): {e}") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise TorchImportError(f"{path} holds a {type(sd).__name__}, not a state_dict")
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise TorchImportError(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor")
        out[str(k)] = v.detach().cpu().float().numpy()
    return out


def _npz_state_dict(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:
        raise TorchImportError(f"{path} is not a readable .npz of arrays: {e}") from e


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """name -> float32 array from a .pt/.pth (torch) or .npz file; TorchImportError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise TorchImportError(f"no weights file at {path}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise TorchImportError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    sd = _npz_state_dict(path) if path.suffix == ".npz" else _torch_state_dict(path)
    out = {}
    for k, a in sd.items():
        a = np.asarray(a)
        if a.dtype.kind not in "fiu":
            raise TorchImportError(f"{path}: {k!r} has dtype {a.dtype}, not a real number type")
        if not np.isfinite(a).all():
            raise TorchImportError(f"{path}: {k!r} holds NaN or infinite values")
        out[k] = a.astype(np.float32)
    # BatchNorm-free networks only: num_batches_tracked and friends would mean layers cnnx lacks
    return out


def load_pytorch(weights: str | os.PathLike, config) -> nn.Sequential:
    """A cnnx model from a state_dict file and a config (a list, or a path to its JSON)."""
    cfg = read_config(config) if isinstance(config, str | os.PathLike) else config
    try:
        model = nn.Sequential.from_config(cfg)
    except (TypeError, ValueError) as e:
        raise TorchImportError(f"the model config does not build a cnnx model: {e}") from e
    sd = read_state_dict(weights)
    try:
        model.load_state_dict(sd)
    except (TypeError, ValueError) as e:
        raise TorchImportError(f"{weights}: {e}") from e
    return model
