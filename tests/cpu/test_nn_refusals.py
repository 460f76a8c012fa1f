"""cnnx.nn and cnnx.optim refuse what they cannot do, with a message naming it; and the small conveniences
(repr, list forms of Sequential, configs of nested models, zero_grad) do what they say."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnx import nn, optim


def test_refusals_name_the_problem():
    lin = nn.Linear(4, 2, seed=0)
    with pytest.raises(ValueError, match="expects 4 input features, got 5"):
        lin.output_shape((5,))
    with pytest.raises(ValueError, match="3 positive sizes"):
        nn.Conv2d(1, 2, 3).output_shape((1, 8))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        nn.Flatten().forward(np.zeros(3, np.float32))
    f = nn.Flatten()
    f.forward(np.zeros((2, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"must have shape \(2, 6\)"):
        f.backward(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="non-empty positive"):
        f.output_shape(())
    for p in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            nn.Dropout(p)
    with pytest.raises(TypeError, match="numpy Generator"):
        nn.Linear(2, 2, rng=0)
    with pytest.raises(NotImplementedError):
        nn.Module().forward(1)
    with pytest.raises(NotImplementedError):
        nn.Module().backward(1)


def test_state_dict_and_config_refusals():
    m = nn.Sequential(nn.Linear(2, 2, seed=0))
    with pytest.raises(TypeError, match="real array"):
        m.load_state_dict({"0.weight": np.zeros((2, 2), complex), "0.bias": np.zeros(2)})
    with pytest.raises(TypeError, match="list of layer dicts"):
        nn.Sequential.from_config("Linear")
    with pytest.raises(ValueError, match="must be a dict with a 'type'"):
        nn.Sequential.from_config([{"args": {}}])
    with pytest.raises(ValueError, match="bad arguments"):
        nn.Sequential.from_config([{"type": "Linear", "args": {"in_features": 2, "colour": "red"}}])


def test_sequential_forms_nesting_and_numpy_config_values():
    inner = nn.Sequential([nn.Linear(3, 4, seed=1), nn.ReLU()])        # a list works like arguments
    outer = nn.Sequential(inner, nn.Linear(np.int64(4), 2, seed=2))
    assert [type(layer).__name__ for layer in outer] == ["Sequential", "Linear"]
    cfg = outer.config()
    assert cfg[1]["args"]["in_features"] == 4 and isinstance(cfg[1]["args"]["in_features"], int)
    rebuilt = nn.Sequential.from_config(json.loads(json.dumps(cfg)))
    assert rebuilt.config() == cfg
    again = nn.Sequential.from_config({"type": "Sequential", "layers": cfg})
    assert again.config() == cfg
    assert nn.LeakyReLU(np.float32(0.25)).config()["args"]["negative_slope"] == 0.25
    assert repr(outer[1].weight) == "Parameter(name='1.weight', shape=(2, 4))"
    assert nn.Sequential().output_shape((3,)) == (3,)


def test_optimiser_refusals_and_zero_grad():
    lin = nn.Linear(2, 2, seed=0)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(lin.parameters(), betas=(0.9, 1.0))
    with pytest.raises(NotImplementedError):
        optim.Optimizer(lin.parameters(), lr=0.1).step()
    lin.weight.grad[...] = 3
    sgd = optim.SGD(lin.parameters(), lr=0.1)
    sgd.zero_grad()
    assert not lin.weight.grad.any()
    sd = sgd.state_dict()
    del sd["buffers"]["momentum.1"]
    with pytest.raises(ValueError, match="lacks buffer momentum.1"):
        optim.SGD(lin.parameters(), lr=0.1).load_state_dict(sd)
    sd = sgd.state_dict()
    sd["buffers"]["momentum.0"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"momentum.0 is \(3, 3\)"):
        optim.SGD(lin.parameters(), lr=0.1).load_state_dict(sd)


def test_golden_model_refusals():
    from cnnx import quant
    from cnnx import reference as ref

    x8, w8 = np.zeros((1, 2, 4, 4), np.int8), np.zeros((3, 1, 3, 3), np.int8)
    with pytest.raises(ValueError, match="weight expects 1 input channels, input has 2"):
        ref.conv2d_acc_int(x8, w8, None)
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        ref.conv2d_acc_int(x8[:, :1], w8, np.zeros(2, np.int32))
    np.testing.assert_array_equal(ref.linear_int8(np.array([[3, -1]], np.int8), np.array([[1, 1]], np.int8),
                                                  None, quant.Requant(1, 1)), [[1]])   # 2 / 2 = 1
    with pytest.raises(ValueError, match="4 dimensions"):
        ref.conv2d(np.zeros((2, 2)), np.zeros((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="weight expects"):
        ref.conv2d(np.zeros((1, 2, 3, 3)), np.zeros((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="dy must have shape"):
        ref.conv2d_backward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="norm_type=2"):
        ref.lp_pool2d(np.zeros((1, 1, 2, 2)), 3, 2)


def test_functional_refusals():
    from cnnx import functional as F

    with pytest.raises(TypeError, match="float array"):
        F.relu([[1.0], [2.0, 3.0]])                                  # ragged
    with pytest.raises(ValueError, match="positive"):
        F.max_pool2d_backward(np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 1, 1, 1), np.int32), (1, 1, 0))
    with pytest.raises(TypeError, match="norm_type must be a number"):
        F.lp_pool2d(np.zeros((1, 1, 2, 2), np.float32), "2", 2)
    with pytest.raises(TypeError, match="real number"):
        F.leaky_relu(np.zeros(2, np.float32), "0.1")
    with pytest.raises(ValueError, match="finite"):
        F.elu(np.zeros(2, np.float32), float("nan"))
    with pytest.raises(TypeError, match="real array"):
        F.mse_loss(np.zeros(2, np.float32), np.array(["a", "b"]))
    with pytest.raises(TypeError, match="numpy Generator"):
        F.dropout(np.zeros(2, np.float32), 0.5, rng=3)
    np.testing.assert_array_equal(F.flatten(np.ones((2, 1, 2), np.float32)), np.ones((2, 2), np.float32))
