"""ONNX import edge cases on small hand-built graphs: each malformed or unsupported form is refused with a
message naming what is wrong; the accepted variants (Constant shapes, a MatMul without bias, Identity,
Dropout with training_mode False, a Reshape of an already flat tensor) import to the evaluator's output."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cnnx.io import load_onnx  # noqa: E402
from cnnx.io.onnx import OnnxImportError  # noqa: E402

R = np.random.default_rng(0)
W_CONV = R.standard_normal((2, 1, 3, 3)).astype(np.float32)
W_FC = R.standard_normal((8, 3)).astype(np.float32)  # (IN, OUT) for MatMul / Gemm transB=0


def T(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def N(op, inputs, out, name, **attrs):
    return helper.make_node(op, inputs, [out] if isinstance(out, str) else out, name=name, **attrs)


def graph(nodes, inits, out, in_shape=("N", 1, 4, 4), elem=TensorProto.FLOAT, extra_inputs=(), opset=13):
    inputs = [helper.make_tensor_value_info("x", elem, list(in_shape))]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in extra_inputs]
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def flat_then(nodes, inits, out="y"):
    """x (N, 1, 4, 4) -> conv 2@3x3 -> (N, 2, 2, 2) -> flatten (N, 8) -> `nodes`."""
    return graph([N("Conv", ["x", "wc"], "c", "conv"), N("Flatten", ["c"], "f", "flat"), *nodes],
                 [T("wc", W_CONV), *inits], out)


def _bad_dims():
    t = T("wc", W_CONV)
    t.dims[0] = 3  # 3 x 1 x 3 x 3 values declared, 2 x 1 x 3 x 3 stored
    return graph([N("Conv", ["x", "wc"], "y", "conv")], [t], "y")


def _raw_tensor(dims, values):
    """A TensorProto built by hand (helper.make_tensor would refuse these malformed ones)."""
    t = TensorProto(name="wc", data_type=TensorProto.FLOAT)
    t.dims.extend(dims)
    t.float_data.extend(values)
    return t


def _float_data_short():
    return graph([N("Conv", ["x", "wc"], "y", "conv")], [_raw_tensor([2, 1, 3, 3], W_CONV.ravel()[:10])], "y")


CASES = {
    "two data inputs": (lambda: graph([N("Relu", ["x"], "y", "r")], [], "y", extra_inputs=["x2"]),
                        "2 data inputs"),
    "int input": (lambda: graph([N("Relu", ["x"], "y", "r")], [], "y", elem=TensorProto.INT64),
                  "element type"),
    "rank-2 input": (lambda: graph([N("Relu", ["x"], "y", "r")], [], "y", in_shape=("N", 16)), "NCHW"),
    "symbolic H": (lambda: graph([N("Relu", ["x"], "y", "r")], [], "y", in_shape=("N", 1, "H", 4)), "NCHW"),
    "weight not constant": (lambda: graph([N("Conv", ["x", "x"], "y", "conv")], [], "y"),
                            "must be a constant"),
    "custom domain": (lambda: graph([helper.make_node("Relu", ["x"], ["y"], name="r", domain="com.x")], [],
                                    "y"), "domain"),
    "conv one input": (lambda: graph([N("Conv", ["x"], "y", "conv")], [], "y"), "1 inputs"),
    "conv channels": (lambda: graph([N("Conv", ["x", "w"], "y", "conv")], [T("w", np.zeros((2, 3, 3, 3),
                      np.float32))], "y"), "input of 1 channels"),
    "conv kernel_shape": (lambda: graph([N("Conv", ["x", "wc"], "y", "conv", kernel_shape=[2, 2])],
                                        [T("wc", W_CONV)], "y"), "differs from the weight"),
    "conv bias": (lambda: graph([N("Conv", ["x", "wc", "b"], "y", "conv")], [T("wc", W_CONV),
                                T("b", np.zeros(3, np.float32))], "y"), "bias shape"),
    "conv 1-D strides": (lambda: graph([N("Conv", ["x", "wc"], "y", "conv", strides=[1])], [T("wc", W_CONV)],
                                       "y"), "needs two"),
    "conv too big": (lambda: graph([N("Conv", ["x", "w"], "y", "conv")], [T("w", np.zeros((2, 1, 5, 5),
                     np.float32))], "y"), "does not fit"),
    "gemm before flatten": (lambda: graph([N("Gemm", ["x", "w"], "y", "fc")], [T("w", W_FC)], "y"),
                            "flatten before a Gemm"),
    "gemm 3-D weight": (lambda: flat_then([N("Gemm", ["f", "w"], "y", "fc")], [T("w", np.zeros((8, 3, 1),
                        np.float32))]), "weight of shape"),
    "gemm matrix bias": (lambda: flat_then([N("Gemm", ["f", "w", "b"], "y", "fc")],
                                           [T("w", W_FC), T("b", np.zeros((2, 3), np.float32))]),
                         "per-output"),
    "gemm wrong in": (lambda: flat_then([N("Gemm", ["f", "w"], "y", "fc")], [T("w", W_FC[:5])]),
                      "expects 5 inputs"),
    "matmul before flatten": (lambda: graph([N("MatMul", ["x", "w"], "y", "mm")], [T("w", W_FC)], "y"),
                              "only \\(N, IN\\) @ \\(IN, OUT\\)"),
    "matmul bad bias": (lambda: flat_then([N("MatMul", ["f", "w"], "m", "mm"), N("Add", ["m", "b"], "y",
                                           "bias")], [T("w", W_FC), T("b", np.zeros(4, np.float32))]),
                        "node 'bias'.*4 values"),
    "lone add": (lambda: graph([N("Add", ["x", "b"], "y", "add")], [T("b", np.zeros(1, np.float32))], "y"),
                 "not the bias of a MatMul"),
    "maxpool indices": (lambda: graph([N("MaxPool", ["x"], ["y", "idx"], "pool", kernel_shape=[2, 2])], [],
                                      "y"), "Indices"),
    "pool 1-D kernel": (lambda: graph([N("MaxPool", ["x"], "y", "pool", kernel_shape=[2])], [], "y"),
                        "needs two"),
    "reshape 4-D": (lambda: graph([N("Reshape", ["x", "s"], "y", "rs")], [T("s", np.array([1, 1, 16, 1],
                    np.int64))], "y"), "only a flatten"),
    "dropout training": (lambda: flat_then([N("Dropout", ["f", "", "tm"], "y", "drop")],
                                           [T("tm", np.array(True))]), "training_mode"),
    "dangling output": (lambda: graph([N("Relu", ["x"], "r", "relu")], [], "x"), "not the chain's last"),
    "no layers": (lambda: graph([N("Identity", ["x"], "y", "id")], [], "y"), "holds no layers"),
    "bad dims": (_bad_dims, "holds 72 bytes"),
    "float_data short": (_float_data_short, "holds 10 values"),
    "negative dim": (lambda: graph([N("Conv", ["x", "wc"], "y", "conv")], [_raw_tensor([-1], [])], "y"),
                     "bad dims"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused(tmp_path, case):
    build, msg = CASES[case]
    onnx.save(build(), str(tmp_path / "m.onnx"))
    with pytest.raises(OnnxImportError, match=msg):
        load_onnx(tmp_path / "m.onnx")


def test_tensor_size_limit(tmp_path, monkeypatch):
    import cnnx.io.onnx as io_onnx

    onnx.save(graph([N("Conv", ["x", "wc"], "y", "conv")], [T("wc", W_CONV)], "y"), str(tmp_path / "m.onnx"))
    monkeypatch.setattr(io_onnx, "MAX_TENSOR_BYTES", 16)
    with pytest.raises(OnnxImportError, match="would take 72 bytes"):
        load_onnx(tmp_path / "m.onnx")


ACCEPTED = {
    # Constant node for the Reshape target, MatMul without a bias, Identity and Dropout(training_mode=False)
    "constant-reshape": lambda: graph(
        [N("Conv", ["x", "wc"], "c", "conv"),
         helper.make_node("Constant", [], ["s"], name="shape", value=T("sv", np.array([0, 8], np.int64))),
         N("Reshape", ["c", "s"], "f", "rs"), N("Identity", ["f"], "i", "id"),
         N("Dropout", ["i", "", "tm"], "d", "drop"), N("MatMul", ["d", "w"], "y", "mm")],
        [T("wc", W_CONV), T("tm", np.array(False)), T("w", W_FC)], "y"),
    # a Reshape of an already flat tensor, Gemm with alpha/beta/transB=0, float64 weights
    "flat-reshape-gemm": lambda: graph(
        [N("Conv", ["x", "wc"], "c", "conv"), N("Flatten", ["c"], "f", "flat"),
         N("Reshape", ["f", "s"], "r", "rs"),
         N("Gemm", ["r", "w", "b"], "y", "fc", alpha=0.5, beta=2.0)],
        [T("wc", W_CONV), T("s", np.array([-1, 8], np.int64)), T("w", W_FC.astype(np.float64)),
         T("b", np.arange(3, dtype=np.float32))], "y"),
    # a double-typed conv weight given as double_data, stride 2 with padding
    "double-data": lambda: graph(
        [N("Conv", ["x", "wc"], "y", "conv", strides=[2, 2], pads=[1, 1, 1, 1])],
        [helper.make_tensor("wc", TensorProto.DOUBLE, [2, 1, 3, 3], W_CONV.astype(np.float64).ravel())], "y"),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_accepted_variants_match_the_evaluator(tmp_path, case, layer_check):
    from onnx.reference import ReferenceEvaluator

    m = ACCEPTED[case]()
    onnx.save(m, str(tmp_path / "m.onnx"))
    model, shape = load_onnx(tmp_path / "m.onnx")
    assert shape == (1, 4, 4)
    x = np.random.default_rng(1).standard_normal((3, 1, 4, 4)).astype(np.float32)
    layer_check(model.forward(x), ReferenceEvaluator(m).run(None, {"x": x})[0])
