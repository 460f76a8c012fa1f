"""`cnnx import`: an ONNX file, or PyTorch weights plus a cnnx config, becomes a run directory.

The run directory holds an ordinary cnnx checkpoint (model name "imported"), so eval, cosim and profile work
on it as on a trained zoo model, and `cnnx train --resume --out RUN_DIR` fine-tunes it. With the weights go:
    preprocess   how uint8 pixels become the network's input (`cnnx.io.preprocess`): pixel / 255 by default
                 (torchvision's ToTensor), or with `mean`/`std` per channel (torchvision's Normalize)
    input_shape  (C, H, W); num_classes (the last layer's outputs)
    source       the file imported, its format and SHA-256
    dataset      optional: the dataset .npz the model is meant for (else MNIST), used by eval/cosim/fine-tune
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

from .. import checkpoint
from ..data import sha256_of
from . import dataset as io_dataset
from .preprocess import TO_TENSOR, Preprocess

FORMATS = ("onnx", "pytorch")


def read_model(file: str | os.PathLike, config=None, input_shape=None):
    """(model, input shape (C, H, W), format) from an .onnx file, or a .pt/.pth/.npz state_dict + config."""
    file = Path(file)
    if file.suffix.lower() == ".onnx":
        if config is not None:
            raise ValueError("an ONNX file carries its own architecture: --config is for PyTorch weights")
        from .onnx import load_onnx

        model, shape = load_onnx(file)
        if input_shape is not None and tuple(input_shape) != tuple(shape):
            raise ValueError(f"--input-shape {tuple(input_shape)} differs from the ONNX input {shape}")
        return model, shape, "onnx"
    if file.suffix.lower() in (".pt", ".pth", ".npz"):
        if config is None:
            raise ValueError(f"{file}: PyTorch weights need --config MODEL.json (the cnnx model config)")
        if input_shape is None:
            raise ValueError(f"{file}: PyTorch weights need --input-shape C,H,W (e.g. 1,28,28)")
        from .pt import load_pytorch

        return load_pytorch(file, config), tuple(int(v) for v in input_shape), "pytorch"
    raise ValueError(f"{file}: cannot tell the format from the suffix; expected .onnx, .pt, .pth or .npz")


def import_model(file: str | os.PathLike, out: str | os.PathLike, *, config=None, input_shape=None,
                 mean=None, std=None, data: str | os.PathLike | None = None, force: bool = False) -> dict:
    """Import `file` into the run directory `out` (see the module docstring); returns a JSON-able summary.
    Everything is read and checked before anything is written; an existing checkpoint is kept unless
    `force`."""
    from ..train import IMPORTED, TrainConfig

    t0 = time.perf_counter()
    file, out = Path(file), Path(out)
    if (mean is None) != (std is None):
        raise ValueError("give both --mean and --std, or neither")
    prep = TO_TENSOR if mean is None else Preprocess(tuple(mean), tuple(std))
    model, shape, fmt = read_model(file, config, input_shape)
    try:
        out_shape = model.output_shape(shape)
    except ValueError as e:
        raise ValueError(f"{file}: the model does not fit inputs of shape {shape}: {e}") from None
    if len(out_shape) != 1 or out_shape[0] < 2:
        raise ValueError(f"{file}: the model's output has shape {out_shape}; a classifier gives (classes,)")
    if prep.channels not in (None, shape[0]):
        raise ValueError(f"--mean/--std give {prep.channels} channels, the model takes {shape[0]}")
    meta = {"model_name": IMPORTED, "epoch": 0, "metrics": [], "input_shape": list(shape),
            "num_classes": int(out_shape[0]), "preprocess": prep.to_dict(),
            "source": {"file": str(file.resolve()), "format": fmt, "sha256": sha256_of(file)}}
    if data is not None:
        ds = io_dataset.load_npz(data)
        if ds.input_shape != tuple(shape):
            raise ValueError(f"{data}: images are {ds.input_shape}, the model takes {tuple(shape)}")
        if ds.num_classes > out_shape[0]:
            raise ValueError(f"{data}: {ds.num_classes} classes, the model has {out_shape[0]} outputs")
        meta["dataset"] = ds.meta()
    # resumable at epoch 0, so `cnnx train --resume --out RUN_DIR --epochs N` fine-tunes it
    meta["config"] = asdict(TrainConfig(model=IMPORTED, epochs=1, augment=False,
                                        data=None if data is None else str(Path(data).resolve())))
    meta["position"] = {"epoch": 0, "batch": 0, "sums": {}}
    target = out / checkpoint.CHECKPOINT_NAME
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    if target.exists() and not force:
        raise ValueError(f"{target} exists; choose another --out (or pass --force to replace it)")
    path = checkpoint.save(target, model, None, meta)
    return {"run_dir": str(out), "checkpoint": str(path), "format": fmt, "input_shape": list(shape),
            "num_classes": int(out_shape[0]), "preprocess": prep.describe(), "layers": len(model.layers),
            "parameters": int(sum(p.data.size for p in model.parameters())),
            "seconds": time.perf_counter() - t0}
