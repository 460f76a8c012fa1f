"""Bringing networks and data in: ONNX and PyTorch import, dataset files, input preprocessing.

    cnnx.io.import_model(file, out, ...)   an .onnx, or .pt/.npz weights + config -> a run directory
    cnnx.io.load_onnx(path)                ONNX -> (nn.Sequential, input shape)         (cnnx.io.onnx)
    cnnx.io.load_pytorch(weights, config)  state_dict + cnnx config -> nn.Sequential    (cnnx.io.pt)
    cnnx.io.load_npz(path)                 a dataset .npz, checked, without pickle      (cnnx.io.dataset)
    cnnx.io.Preprocess                     pixels -> float input, stored with a model   (cnnx.io.preprocess)
"""

from .dataset import Dataset, DatasetError, load_npz
from .model import import_model
from .preprocess import MNIST, TO_TENSOR, Preprocess


def load_onnx(path):
    from .onnx import load_onnx as _load

    return _load(path)


def load_pytorch(weights, config):
    from .pt import load_pytorch as _load

    return _load(weights, config)


__all__ = ["Dataset", "DatasetError", "MNIST", "Preprocess", "TO_TENSOR", "import_model", "load_npz",
           "load_onnx", "load_pytorch"]
