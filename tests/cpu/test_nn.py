"""cnnx.nn: layers against the functional/golden model, Parameter grads, Sequential (shapes, summary,
state_dict, config round trip), initialisation, and a tiny end-to-end SGD run whose loss must fall."""

import json

import numpy as np
import pytest

from cnnx import nn
from cnnx import reference as ref


def _lenet(seed=0):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, seed=seed), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, seed=seed + 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120, seed=seed + 2), nn.ReLU(), nn.Linear(120, 84, seed=seed + 3), nn.ReLU(),
        nn.Linear(84, 10, init="xavier", seed=seed + 4),
    )


def test_sequential_forward_backward_match_golden_chain(rng, layer_check):
    """A conv-tanh-avgpool-flatten-linear chain: forward and every parameter gradient against the golden
    functions composed by hand."""
    m = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=True, seed=1), nn.Tanh(), nn.AvgPool2d(2),
                      nn.Flatten(), nn.Linear(3 * 3 * 3, 4, seed=2))
    for p in m.parameters():  # non-zero biases so their gradients are exercised
        p.data[...] = rng.standard_normal(p.data.shape)
    x = rng.standard_normal((5, 2, 6, 6)).astype(np.float32)
    t = rng.integers(0, 4, 5)
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(m(x), t)
    dx = m.backward(loss_fn.backward())

    cw, cb, lw, lb = (p.data for p in m.parameters())
    h1 = ref.conv2d(x, cw, cb, 1, 1)
    h2 = ref.tanh(h1)
    h3 = ref.avg_pool2d(h2, 2)
    h4 = h3.reshape(5, -1)
    z = ref.linear(h4, lw, lb)
    gloss, dz = ref.cross_entropy(z, t)
    layer_check(loss, gloss, what="loss")
    dh4, dlw, dlb = ref.linear_backward(dz, h4, lw)
    dh2 = ref.avg_pool2d_backward(dh4.reshape(h3.shape), h2, 2)
    dh1 = ref.tanh_backward(dh2, h2)
    dx_ref, dcw, dcb = ref.conv2d_backward(dh1, x, cw, 1, 1)
    for name, p, want in (("conv.weight", m[0].weight, dcw), ("conv.bias", m[0].bias, dcb),
                          ("linear.weight", m[4].weight, dlw), ("linear.bias", m[4].bias, dlb)):
        layer_check(p.grad, want, what=name)
    layer_check(dx, dx_ref, what="dx")


def test_backward_overwrites_grads(rng):
    lin = nn.Linear(4, 3, seed=0)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    lin(x)
    lin.backward(np.ones((2, 3), np.float32))
    first = lin.weight.grad.copy()
    lin(x)
    lin.backward(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(lin.weight.grad, first)  # same batch twice: same grad, not doubled


def test_skip_input_grad_of_first_layer(rng):
    m = _lenet()
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    dy = rng.standard_normal((2, 10)).astype(np.float32)
    m(x)
    full = m.backward(dy)
    grads = [p.grad.copy() for p in m.parameters()]
    m(x)
    assert m.backward(dy, need_input_grad=False) is None
    assert full.shape == x.shape
    for g, p in zip(grads, m.parameters(), strict=True):
        np.testing.assert_array_equal(g, p.grad)


def test_summary_shapes_and_parameter_counts():
    m = _lenet()
    assert m.output_shapes((1, 28, 28)) == [(6, 28, 28), (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 10, 10),
                                            (16, 5, 5), (400,), (120,), (120,), (84,), (84,), (10,)]
    s = m.summary((1, 28, 28))
    assert "total parameters: 61,706" in s
    assert "Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))" in s
    assert sum(p.data.size for p in nn.Conv2d(3, 10, 5).parameters()) == 760
    assert "760" in nn.Sequential(nn.Conv2d(3, 10, 5)).summary((3, 32, 32))
    assert len(m) == 12 and isinstance(m[0], nn.Conv2d) and len(m[:3]) == 3


def test_state_dict_and_config_round_trip(rng):
    m = _lenet(3)
    cfg = json.loads(json.dumps(m.config()))  # JSON-able
    m2 = nn.Sequential.from_config(cfg)
    assert repr(m2) == repr(m)
    m2.load_state_dict(m.state_dict())
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(m2(x), m(x))
    assert list(m.state_dict())[:2] == ["0.weight", "0.bias"]
    bad = m.state_dict()
    bad["0.weight"] = bad["0.weight"][:, :, :4]
    with pytest.raises(ValueError, match=r"0.weight.*shape"):
        m2.load_state_dict(bad)
    missing = m.state_dict()
    del missing["3.bias"]
    with pytest.raises(ValueError, match="missing.*3.bias"):
        m2.load_state_dict(missing)
    with pytest.raises(ValueError, match="unknown layer type"):
        nn.Sequential.from_config([{"type": "Conv3d", "args": {}}])


def test_every_layer_type_round_trips_through_config():
    m = nn.Sequential(nn.Conv2d(1, 2, (3, 2), stride=(1, 2), padding=1, bias=False, floor_mode=True),
                      nn.LeakyReLU(0.1), nn.ELU(0.5), nn.SumPool2d(2, 1), nn.AvgPool2d((2, 1)),
                      nn.LPPool2d(2, 2, floor_mode=True), nn.MaxPool2d(1), nn.Sigmoid(), nn.Flatten(),
                      nn.Dropout(0.25, seed=4), nn.Linear(8, 3, bias=False, init="xavier"), nn.Tanh())
    m2 = nn.Sequential.from_config(json.loads(json.dumps(m.config())))
    assert repr(m2) == repr(m)
    assert m2.output_shapes((1, 9, 9)) == m.output_shapes((1, 9, 9))
    assert [p.name for p in m.parameters()] == ["0.weight", "10.weight"]


def test_init_is_seeded_he_or_xavier():
    a, b = nn.Conv2d(6, 16, 5, seed=1), nn.Conv2d(6, 16, 5, seed=1)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(a.weight.data, nn.Conv2d(6, 16, 5, seed=2).weight.data)
    big = nn.Linear(1000, 1000, seed=0)  # a million draws: the sample std is within 0.5 % of the target
    assert abs(big.weight.data.std() / np.sqrt(2 / 1000) - 1) < 0.005
    xav = nn.Linear(1000, 500, init="xavier", seed=0)
    assert abs(xav.weight.data.std() / np.sqrt(2 / 1500) - 1) < 0.005
    assert a.weight.data.dtype == np.float32 and not a.bias.data.any()


def test_train_eval_switches_dropout(rng):
    m = nn.Sequential(nn.Flatten(), nn.Dropout(0.5, seed=0))
    x = np.ones((4, 2, 5, 5), np.float32)
    assert (m(x) == 0).any()
    m.eval()
    assert not m[1].training
    np.testing.assert_array_equal(m(x), x.reshape(4, -1))
    m.train()
    assert m[1].training


def test_tiny_training_run_decreases_the_loss(rng):
    """~30 plain SGD steps on one fixed random batch of a conv-relu-pool-flatten-linear net."""
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, seed=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(4 * 4 * 4, 3, init="xavier", seed=1))
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    t = rng.integers(0, 3, 16)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(30):
        losses.append(loss_fn(m(x), t))
        m.backward(loss_fn.backward())
        for p in m.parameters():
            p.data -= np.float32(0.1) * p.grad
    assert losses[-1] < 0.5 * losses[0], losses


def test_mse_loss_layer(rng, layer_check):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    t = rng.standard_normal((4, 3)).astype(np.float32)
    loss_fn = nn.MSELoss()
    layer_check(loss_fn(x, t), ref.mse_loss(x, t)[0])
    layer_check(loss_fn.backward(), ref.mse_loss(x, t)[1])
