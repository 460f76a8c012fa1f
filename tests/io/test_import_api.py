"""The import front door (`cnnx.io.import_model`, `cnnx import`) and the state_dict readers: each wrong input
is refused with a message saying what to do, before anything is written."""

from __future__ import annotations

import io
import json
import sys
import types
import zipfile

import numpy as np
import pytest

from cnnx import models
from cnnx.cli import main
from cnnx.io import DatasetError, import_model, load_npz
from cnnx.io.pt import TorchImportError, load_pytorch, read_config, read_state_dict


def test_cli_argument_errors(tmp_path, capsys):
    for argv in (["--input-shape", "1,28"], ["--input-shape", "a,b,c"], ["--mean", "x"]):
        assert main(["import", "m.onnx", "--out", str(tmp_path / "r"), *argv]) == 2
    assert "expected" in capsys.readouterr().err


def test_import_model_refusals(tmp_path, lenet_sd, make_onnx):
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    onnx.save(make_onnx(lenet_sd), str(path))
    with pytest.raises(ValueError, match="--config is for PyTorch"):
        import_model(path, tmp_path / "r", config=tmp_path / "c.json")
    with pytest.raises(ValueError, match="differs from the ONNX input"):
        import_model(path, tmp_path / "r", input_shape=(1, 32, 32))
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        import_model(path, tmp_path / "file")
    np.savez(tmp_path / "d.npz", x_train=np.zeros((4, 28, 28), np.uint8), y_train=np.arange(4) % 2,
             x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.array([0, 11]))
    with pytest.raises(ValueError, match="12 classes, the model has 10 outputs"):
        import_model(path, tmp_path / "r", data=tmp_path / "d.npz")
    # a network that ends in a feature map is no classifier
    cfg = [{"type": "Conv2d", "args": {"in_channels": 1, "out_channels": 2, "kernel_size": 3}}]
    np.savez(tmp_path / "w.npz", **{"0.weight": np.zeros((2, 1, 3, 3), np.float32),
                                    "0.bias": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="a classifier gives"):
        import_model(tmp_path / "w.npz", tmp_path / "r", config=cfg, input_shape=(1, 5, 5))
    assert not (tmp_path / "r").exists()


def test_read_config_forms(tmp_path):
    cfg = models.build_model("mlp").config()
    (tmp_path / "wrapped.json").write_text(json.dumps({"model_config": cfg}))
    assert read_config(tmp_path / "wrapped.json") == cfg
    with pytest.raises(TorchImportError, match="no model config"):
        read_config(tmp_path / "absent.json")
    (tmp_path / "big.json").write_bytes(b" " * ((1 << 20) + 1))
    with pytest.raises(TorchImportError, match="not a model config"):
        read_config(tmp_path / "big.json")
    with pytest.raises(TorchImportError, match="no weights file"):
        read_state_dict(tmp_path / "absent.npz")
    np.savez(tmp_path / "s.npz", a=np.array(["text"]))
    with pytest.raises(TorchImportError, match="not a real number type"):
        read_state_dict(tmp_path / "s.npz")


class _FakeTensor:
    def __init__(self, a):
        self.a = np.asarray(a)

    def detach(self):
        return self

    def cpu(self):
        return self

    def float(self):
        return _FakeTensor(self.a.astype(np.float32))

    def numpy(self):
        return self.a


def _fake_torch(monkeypatch, result):
    """A stand-in `torch` module whose load() returns `result` (or raises it), checking weights_only=True."""
    def load(path, map_location=None, weights_only=False):
        assert weights_only is True and map_location == "cpu"
        if isinstance(result, Exception):
            raise result
        return result

    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(load=load, Tensor=_FakeTensor))


def test_pt_reader_logic_with_a_stand_in_torch(tmp_path, lenet_sd, monkeypatch):
    (tmp_path / "w.pt").write_bytes(b"x")
    config = models.build_model("lenet5").config()
    _fake_torch(monkeypatch, {"state_dict": {k: _FakeTensor(v) for k, v in lenet_sd.items()}})
    model = load_pytorch(tmp_path / "w.pt", config)
    np.testing.assert_array_equal(model.state_dict()["3.weight"], lenet_sd["3.weight"])
    for result, msg in [([1, 2], "not a state_dict"), ({"0.weight": [1.0]}, "not a tensor"),
                        (RuntimeError("Weights only load failed"), "weights_only=True")]:
        _fake_torch(monkeypatch, result)
        with pytest.raises(TorchImportError, match=msg):
            load_pytorch(tmp_path / "w.pt", config)


def _npz_with(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in members.items():
            z.writestr(k + ".npy", v)
    return buf.getvalue()


def _npy(a: np.ndarray, cut: int = 0) -> bytes:
    b = io.BytesIO()
    np.save(b, a)
    raw = b.getvalue()
    return raw[: len(raw) - cut] if cut else raw


def test_damaged_dataset_members(tmp_path):
    ok = {"x_train": _npy(np.zeros((4, 2, 2), np.uint8)), "y_train": _npy(np.arange(4) % 2),
          "x_test": _npy(np.zeros((2, 2, 2), np.uint8)), "y_test": _npy(np.arange(2))}
    (tmp_path / "ok.npz").write_bytes(_npz_with(ok))
    assert load_npz(tmp_path / "ok.npz").num_classes == 2
    (tmp_path / "hdr.npz").write_bytes(_npz_with({**ok, "x_test": b"\x93NUMPY garbage"}))
    with pytest.raises(DatasetError, match="x_test has no readable array header"):
        load_npz(tmp_path / "hdr.npz")
    (tmp_path / "cut.npz").write_bytes(_npz_with({**ok, "x_train": _npy(np.zeros((4, 2, 2), np.uint8), 5)}))
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_npz(tmp_path / "cut.npz")
    (tmp_path / "one.npz").write_bytes(_npz_with({**ok, "x_train": _npy(np.zeros((1, 2, 2), np.uint8)),
                                                  "y_train": _npy(np.array([1]))}))
    with pytest.raises(DatasetError, match="at least 2"):
        load_npz(tmp_path / "one.npz")
