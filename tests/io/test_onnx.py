"""ONNX import: a LeNet-5 built here with onnx.helper imports to the logits onnx's own reference evaluator
computes; every unsupported op or attribute is refused naming its node; untrusted files are checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cnnx import checkpoint  # noqa: E402
from cnnx.cli import main  # noqa: E402
from cnnx.io import import_model, load_onnx  # noqa: E402
from cnnx.io.onnx import OnnxImportError  # noqa: E402

# The logits sum over 400/120/84 features: float32 against the evaluator's float32 at rtol 1e-5 and atol 1e-4,
# the tolerance tests/conftest.py gives sums over several hundred terms.
ATOL_SUMS = 1e-4


def _save(model, path):
    onnx.save(model, str(path))
    return path


def _reference_logits(model, x):
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, {"input": x})[0]


@pytest.mark.parametrize("dense,pool,flatten", [("gemm", "MaxPool", "Flatten"), ("gemm-t", "AveragePool",
                                                "Reshape"), ("matmul", "MaxPool", "Reshape")])
def test_lenet5_imports_to_the_same_logits(tmp_path, lenet_sd, dense, pool, flatten, make_onnx, layer_check,
                                           tol):
    proto = make_onnx(lenet_sd, dense=dense, pool=pool, flatten=flatten)
    onnx.checker.check_model(proto, full_check=True)
    path = _save(proto, tmp_path / "lenet5.onnx")
    res = import_model(path, tmp_path / "run")
    assert res["format"] == "onnx" and res["input_shape"] == [1, 28, 28] and res["num_classes"] == 10
    model, info = checkpoint.load(tmp_path / "run")
    assert info["model_name"] == "imported" and info["meta"]["preprocess"] == {"mean": [0.0], "std": [1.0]}
    x = np.random.default_rng(1).standard_normal((16, 1, 28, 28)).astype(np.float32)
    layer_check(model.forward(x), _reference_logits(proto, x), rtol=tol.float_rtol, atol=ATOL_SUMS,
                         what="imported logits")


def test_three_channel_32x32_without_padding(tmp_path, make_onnx, make_weights, layer_check):
    sd = make_weights(np.random.default_rng(2), c=3, classes=4)
    proto = make_onnx(sd, c=3, hw=32, pad=0)
    model, shape = load_onnx(_save(proto, tmp_path / "m.onnx"))
    assert shape == (3, 32, 32)
    x = np.random.default_rng(3).standard_normal((4, 3, 32, 32)).astype(np.float32)
    layer_check(model.forward(x), _reference_logits(proto, x), atol=ATOL_SUMS)


def _tail(op, **attrs):
    """An extra node appended after the logits."""
    def add(nodes, inits, x):
        nodes.append(helper.make_node(op, [x], ["extra_out"], name="extra", **attrs))
        return "extra_out"
    return add


REFUSALS = [
    ({"conv1": {"dilations": [2, 2]}}, None, "conv1", "dilations"),
    ({"conv1": {"group": 2}}, None, "conv1", "group"),
    ({"conv1": {"auto_pad": "SAME_UPPER"}}, None, "conv1", "auto_pad"),
    ({"conv1": {"pads": [2, 2, 1, 1]}}, None, "conv1", "pads"),
    ({"pool1": {"ceil_mode": 1}}, None, "pool1", "ceil_mode"),
    ({"pool1": {"pads": [1, 1, 1, 1]}}, None, "pool1", "pads"),
    ({"pool1": {"dilations": [2, 2]}}, None, "pool1", "dilations"),
    ({"fc2": {"transA": 1}}, None, "fc2", "transA"),
    ({"flatten": {"axis": 2}}, None, "flatten", "axis"),
    ({"relu1": {"alpha": 0.1}}, None, "relu1", "alpha"),
    ({}, _tail("Softmax", axis=1), "extra", "Softmax"),
    ({}, _tail("Sigmoid"), "extra", "Sigmoid"),
]


@pytest.mark.parametrize("attrs,tail,node,word", REFUSALS, ids=[f"{r[2]}-{r[3]}" for r in REFUSALS])
def test_unsupported_is_refused_naming_the_node(tmp_path, lenet_sd, attrs, tail, node, word, make_onnx):
    proto = make_onnx(lenet_sd, node_attrs=attrs, extra_nodes=[tail] if tail else None)
    path = _save(proto, tmp_path / "bad.onnx")
    with pytest.raises(OnnxImportError, match=rf"node '{node}'.*{word}|{word}.*node '{node}'"):
        import_model(path, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written


def test_average_pool_count_include_pad_is_irrelevant_without_padding(tmp_path, lenet_sd, make_onnx,
                                                                     layer_check):
    proto = make_onnx(lenet_sd, pool="AveragePool", node_attrs={"pool1": {"count_include_pad": 1}})
    model, _ = load_onnx(_save(proto, tmp_path / "m.onnx"))
    x = np.random.default_rng(4).standard_normal((2, 1, 28, 28)).astype(np.float32)
    layer_check(model.forward(x), _reference_logits(proto, x), atol=ATOL_SUMS)


def test_old_opset_and_branches_refused(tmp_path, lenet_sd, make_onnx):
    with pytest.raises(OnnxImportError, match="opset 12"):
        load_onnx(_save(make_onnx(lenet_sd, opset=12), tmp_path / "old.onnx"))

    def branch(nodes, inits, x):  # an op that does not consume the chain's tensor
        nodes.append(helper.make_node("Relu", ["relu1_out"], ["side"], name="side_relu"))
        return x

    with pytest.raises(OnnxImportError, match="side_relu.*chain"):
        load_onnx(_save(make_onnx(lenet_sd, extra_nodes=[branch]), tmp_path / "branch.onnx"))


def _with_external(proto, tmp_path, location, data=None):
    """`proto` with its first conv weight moved to external data at `location` (relative to tmp_path)."""
    t = next(t for t in proto.graph.initializer if t.name == "w0")
    raw = t.raw_data or numpy_helper.to_array(t).tobytes()
    if data is not None:
        data.write_bytes(raw)
    t.ClearField("raw_data")
    del t.float_data[:]
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return _save(proto, tmp_path / "ext.onnx")


def test_external_data_inside_the_folder_is_read(tmp_path, lenet_sd, make_onnx, layer_check):
    proto = make_onnx(lenet_sd)
    ref = make_onnx(lenet_sd)
    path = _with_external(proto, tmp_path, "w0.bin", tmp_path / "w0.bin")
    model, _ = load_onnx(path)
    x = np.random.default_rng(5).standard_normal((2, 1, 28, 28)).astype(np.float32)
    layer_check(model.forward(x), _reference_logits(ref, x), atol=ATOL_SUMS)


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink", "missing", "short"])
def test_external_data_escaping_the_folder_is_refused(tmp_path, lenet_sd, where, make_onnx):
    inner = tmp_path / "model"
    inner.mkdir()
    outside = tmp_path / "secret.bin"
    proto = make_onnx(lenet_sd)
    if where == "parent":
        path, word = _with_external(proto, inner, "../secret.bin", outside), "not a plain relative path"
    elif where == "absolute":
        path, word = _with_external(proto, inner, str(outside), outside), "not a plain relative path"
    elif where == "symlink":
        (inner / "link.bin").symlink_to(outside)
        path, word = _with_external(proto, inner, "link.bin", outside), "leads outside"
    elif where == "missing":
        path, word = _with_external(proto, inner, "nothere.bin"), "not found"
    else:
        path = _with_external(proto, inner, "w0.bin", inner / "w0.bin")
        (inner / "w0.bin").write_bytes(b"\0" * 8)
        word = "runs past the end"
    with pytest.raises(OnnxImportError, match=f"'w0'.*{word}"):
        load_onnx(path)


def test_untrusted_file_checks(tmp_path, lenet_sd, monkeypatch, make_onnx):
    import cnnx.io.onnx as io_onnx

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(OnnxImportError, match="not a readable ONNX file|input"):
        load_onnx(junk)
    path = _save(make_onnx(lenet_sd), tmp_path / "m.onnx")
    monkeypatch.setattr(io_onnx, "MAX_FILE_BYTES", 1000)
    with pytest.raises(OnnxImportError, match="the limit is 1000"):
        load_onnx(path)
    monkeypatch.undo()
    # a tensor whose bytes disagree with its dims
    proto = make_onnx(lenet_sd)
    t = next(t for t in proto.graph.initializer if t.name == "w3")
    t.raw_data = t.raw_data[:-4]
    with pytest.raises(OnnxImportError, match="'w3'.*bytes"):
        load_onnx(_save(proto, tmp_path / "short.onnx"))
    # a NaN weight and an integer weight
    bad = dict(lenet_sd, **{"9.weight": np.full((84, 120), np.nan, np.float32)})
    with pytest.raises(OnnxImportError, match="NaN"):
        load_onnx(_save(make_onnx(bad), tmp_path / "nan.onnx"))
    bad = dict(lenet_sd, **{"0.bias": np.zeros(6, np.int8)})
    with pytest.raises(OnnxImportError, match="data type"):
        load_onnx(_save(make_onnx(bad), tmp_path / "int.onnx"))
    with pytest.raises(OnnxImportError, match="no ONNX file"):
        load_onnx(tmp_path / "absent.onnx")


def test_cli_import_then_eval_uses_the_stored_preprocessing(tmp_path, lenet_sd, capsys, make_onnx):
    path = _save(make_onnx(lenet_sd), tmp_path / "lenet5.onnx")
    run = tmp_path / "imported"
    assert main(["import", str(path), "--out", str(run), "--mean", "0.1307", "--std", "0.3081",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["preprocess"] == "(pixel / 255 - mean [0.1307]) / std [0.3081]"
    _, info = checkpoint.load(run)
    assert info["meta"]["preprocess"] == {"mean": [0.1307], "std": [0.3081]}
    # a second import into the same directory is refused (exit 2), --force replaces it
    assert main(["import", str(path), "--out", str(run)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["import", str(path), "--out", str(run), "--force"]) == 0
    assert checkpoint.load(run)[1]["meta"]["preprocess"] == {"mean": [0.0], "std": [1.0]}
    assert main(["import", str(path), "--out", str(tmp_path / "x"), "--mean", "0.5"]) == 2
    assert main(["import", str(path), "--out", str(tmp_path / "x"), "--mean", "0.5,0.5", "--std",
                 "1,1"]) == 2  # two channel statistics for a one-channel model
    assert main(["import", str(tmp_path / "model.txt"), "--out", str(tmp_path / "x")]) == 2
    assert "suffix" in capsys.readouterr().err
