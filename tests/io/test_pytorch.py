"""PyTorch weights: an .npz with PyTorch's state_dict names (no torch needed) or a .pt file (when torch is
installed), plus a cnnx model config, import to a model whose logits the float64 golden model reproduces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnx import checkpoint, harness, models
from cnnx.cli import main
from cnnx.io import import_model, load_pytorch
from cnnx.io.pt import TorchImportError

ATOL_SUMS = 1e-4  # sums over several hundred terms (tests/conftest.py)


def _golden_logits(sd, config, x):
    """The float64 golden model (cnnx.reference, via harness.float_traces) on a fresh model with `sd`."""
    from cnnx import nn

    model = nn.Sequential.from_config(config)
    model.load_state_dict(sd)
    return harness.float_traces(model, x, golden=True)[-1]


def test_npz_with_pytorch_names(tmp_path, lenet_sd, layer_check, tol):
    config = models.build_model("lenet5").config()
    (tmp_path / "lenet5.json").write_text(json.dumps(config))
    np.savez(tmp_path / "weights.npz", **lenet_sd)
    res = import_model(tmp_path / "weights.npz", tmp_path / "run", config=tmp_path / "lenet5.json",
                       input_shape=(1, 28, 28))
    assert res["format"] == "pytorch" and res["parameters"] == 61_706
    model, info = checkpoint.load(tmp_path / "run")
    x = np.random.default_rng(6).standard_normal((8, 1, 28, 28)).astype(np.float32)
    layer_check(model.forward(x), _golden_logits(lenet_sd, config, x), rtol=tol.float_rtol, atol=ATOL_SUMS)


def test_pytorch_refusals(tmp_path, lenet_sd):
    config = models.build_model("lenet5").config()
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(config))
    np.savez(tmp_path / "w.npz", **lenet_sd)
    with pytest.raises(ValueError, match="--config"):
        import_model(tmp_path / "w.npz", tmp_path / "r")
    with pytest.raises(ValueError, match="--input-shape"):
        import_model(tmp_path / "w.npz", tmp_path / "r", config=cfg)
    with pytest.raises(ValueError, match="does not fit inputs of shape"):
        import_model(tmp_path / "w.npz", tmp_path / "r", config=cfg, input_shape=(1, 32, 32))
    missing = {k: v for k, v in lenet_sd.items() if k != "11.bias"}
    np.savez(tmp_path / "m.npz", **missing)
    with pytest.raises(TorchImportError, match="11.bias"):
        load_pytorch(tmp_path / "m.npz", config)
    np.savez(tmp_path / "nan.npz", **dict(lenet_sd, **{"0.bias": np.full(6, np.inf, np.float32)}))
    with pytest.raises(TorchImportError, match="infinite"):
        load_pytorch(tmp_path / "nan.npz", config)
    np.savez(tmp_path / "obj.npz", **dict(lenet_sd, **{"0.bias": np.array([{"a": 1}], dtype=object)}))
    with pytest.raises(TorchImportError, match="not a readable .npz"):
        load_pytorch(tmp_path / "obj.npz", config)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TorchImportError, match="not JSON"):
        load_pytorch(tmp_path / "w.npz", tmp_path / "bad.json")
    with pytest.raises(TorchImportError, match="does not build"):
        load_pytorch(tmp_path / "w.npz", [{"type": "Softmax"}])
    assert not (tmp_path / "r").exists()


def test_pt_file_without_torch_says_so(tmp_path, lenet_sd, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    (tmp_path / "w.pt").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(TorchImportError, match="needs torch"):
        load_pytorch(tmp_path / "w.pt", models.build_model("lenet5").config())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's TorchScript exporter announces its end
def test_exported_from_pytorch(tmp_path, layer_check, tol, capsys):
    torch = pytest.importorskip("torch")
    from torch import nn as tnn

    torch.manual_seed(0)
    net = tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
        tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10),
    ).eval()  # fmt: skip
    torch.save(net.state_dict(), tmp_path / "lenet5.pt")
    (tmp_path / "lenet5.json").write_text(json.dumps(models.build_model("lenet5").config()))
    assert main(["import", str(tmp_path / "lenet5.pt"), "--config", str(tmp_path / "lenet5.json"),
                 "--input-shape", "1,28,28", "--out", str(tmp_path / "run")]) == 0
    model, _ = checkpoint.load(tmp_path / "run")
    x = np.random.default_rng(7).standard_normal((8, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    layer_check(model.forward(x), want, rtol=tol.float_rtol, atol=ATOL_SUMS)
    try:  # and the same network through ONNX, when torch's exporter is usable here
        torch.onnx.export(net, torch.from_numpy(x[:1]), str(tmp_path / "lenet5.onnx"), opset_version=13,
                          input_names=["input"], dynamic_axes={"input": {0: "N"}}, dynamo=False)
    except Exception as e:  # pragma: no cover - depends on torch's optional exporter dependencies
        pytest.skip(f"torch.onnx.export unavailable: {e}")
    from cnnx.io import load_onnx

    model2, shape = load_onnx(tmp_path / "lenet5.onnx")
    assert shape == (1, 28, 28)
    layer_check(model2.forward(x), want, rtol=tol.float_rtol, atol=ATOL_SUMS)


def test_imported_model_trains_only_from_its_run_directory(tmp_path):
    from cnnx.train import TrainConfig, fit

    with pytest.raises(ValueError, match="--resume"):
        fit(TrainConfig(model="imported", epochs=1, limit=100), tmp_path / "run", progress=False,
            log=lambda *a: None)
