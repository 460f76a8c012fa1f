"""Fixtures of the import tests: ONNX LeNet-5 graphs built here with onnx.helper, from seeded weights."""

from __future__ import annotations

import numpy as np
import pytest


def lenet5_weights(rng, c=1, classes=10, flat=400):
    """PyTorch-named LeNet-5 weights (Conv 6@5x5 pad 2, pool, Conv 16@5x5, pool, 400-120-84-classes)."""
    def w(*shape, fan):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan)).astype(np.float32)

    return {
        "0.weight": w(6, c, 5, 5, fan=25 * c), "0.bias": w(6, fan=25),
        "3.weight": w(16, 6, 5, 5, fan=150), "3.bias": w(16, fan=150),
        "7.weight": w(120, flat, fan=flat), "7.bias": w(120, fan=flat),
        "9.weight": w(84, 120, fan=120), "9.bias": w(84, fan=120),
        "11.weight": w(classes, 84, fan=84), "11.bias": w(classes, fan=84),
    }


def onnx_lenet5(sd, *, opset=13, c=1, hw=28, pad=2, dense="gemm", pool="MaxPool", flatten="Flatten",
                extra_nodes=None, node_attrs=None):
    """An ONNX LeNet-5 with the weights `sd` as initializers. `dense`: "gemm" (transB=1), "gemm-t" (transB=0,
    the weight stored (in, out)) or "matmul" (MatMul + Add); `node_attrs` {node name: {attr: value}} adds or
    overrides attributes; `extra_nodes` replaces the node list's tail hook for refusal tests."""
    from onnx import TensorProto, helper, numpy_helper

    node_attrs = node_attrs or {}
    inits, nodes = [], []

    def init(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a), name))
        return name

    def node(op, inputs, name, **attrs):
        attrs.update(node_attrs.get(name, {}))
        out = name + "_out"
        nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    x = node("Conv", ["input", init("w0", sd["0.weight"]), init("b0", sd["0.bias"])], "conv1",
             kernel_shape=[5, 5], pads=[pad] * 4, strides=[1, 1])
    x = node("Relu", [x], "relu1")
    x = node(pool, [x], "pool1", kernel_shape=[2, 2], strides=[2, 2])
    x = node("Conv", [x, init("w3", sd["3.weight"]), init("b3", sd["3.bias"])], "conv2", kernel_shape=[5, 5])
    x = node("Relu", [x], "relu2")
    x = node(pool, [x], "pool2", kernel_shape=[2, 2], strides=[2, 2])
    if flatten == "Flatten":
        x = node("Flatten", [x], "flatten", axis=1)
    else:
        x = node("Reshape", [x, init("shape", np.array([-1, sd["7.weight"].shape[1]], np.int64))], "flatten")
    for i, (k, act) in enumerate(((7, True), (9, True), (11, False))):
        w, b = sd[f"{k}.weight"], sd[f"{k}.bias"]
        if dense == "gemm":
            x = node("Gemm", [x, init(f"w{k}", w), init(f"b{k}", b)], f"fc{i + 1}", transB=1)
        elif dense == "gemm-t":
            x = node("Gemm", [x, init(f"w{k}", w.T.copy()), init(f"b{k}", b)], f"fc{i + 1}")
        else:
            x = node("MatMul", [x, init(f"w{k}", w.T.copy())], f"fc{i + 1}")
            x = node("Add", [x, init(f"b{k}", b)], f"fc{i + 1}_bias")
        if act:
            x = node("Relu", [x], f"relu_fc{i + 1}")
            if i == 0:
                x = node("Dropout", [x], "drop1")
    for extra in extra_nodes or []:
        x = extra(nodes, inits, x)
    graph = helper.make_graph(
        nodes, "lenet5",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c, hw, hw])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", sd["11.weight"].shape[0]])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


@pytest.fixture
def lenet_sd():
    return lenet5_weights(np.random.default_rng(0))


@pytest.fixture(scope="session")
def make_onnx():
    """`onnx_lenet5` as a fixture (test modules do not import conftest)."""
    pytest.importorskip("onnx")
    return onnx_lenet5


@pytest.fixture(scope="session")
def make_weights():
    """`lenet5_weights` as a fixture."""
    return lenet5_weights
