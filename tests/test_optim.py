"""cnnx.optim: each update rule against values worked out by hand, state round trip, schedules."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from cnnx import optim


def param(w, g, name="w"):
    return SimpleNamespace(data=np.array(w, dtype=np.float32), grad=np.array(g, dtype=np.float32), name=name)


def test_sgd_momentum_by_hand(tol):
    p = param([[1.0, -2.0]], [[0.5, 1.0]])
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    opt.step()  # v = g = [.5, 1]; w = [1 - .05, -2 - .1]
    np.testing.assert_allclose(p.data, [[0.95, -2.1]], rtol=tol.hand_rtol)
    p.grad[...] = [[1.0, 0.0]]
    opt.step()  # v = .9 * [.5, 1] + [1, 0] = [1.45, .9]; w = [.95 - .145, -2.1 - .09]
    np.testing.assert_allclose(p.data, [[0.805, -2.19]], rtol=tol.hand_rtol)
    assert p.data.dtype == np.float32 and opt.step_count == 2


def test_sgd_nesterov_and_plain():
    p = param([2.0], [1.0])
    opt = optim.SGD([p], lr=0.5, momentum=0.5, nesterov=True)
    opt.step()  # v = 1; w = 2 - .5 * (1 + .5 * 1) = 1.25
    np.testing.assert_allclose(p.data, [1.25])
    q = param([2.0], [1.0])
    optim.SGD([q], lr=0.5, momentum=0.0).step()
    np.testing.assert_allclose(q.data, [1.5])


def test_weight_decay_l2_vs_decoupled_and_biases_exempt(tol):
    w, b = param([[2.0]], [[1.0]]), param([3.0], [1.0], "bias")
    optim.SGD([w, b], lr=0.1, momentum=0.9, weight_decay=0.5).step()
    # L2: g = 1 + .5 * 2 = 2 -> w = 2 - .2; the bias (1-D) is not decayed: 3 - .1
    np.testing.assert_allclose(w.data, [[1.8]], rtol=tol.hand_rtol)
    np.testing.assert_allclose(b.data, [2.9], rtol=tol.hand_rtol)
    w2 = param([[2.0]], [[1.0]])
    opt = optim.SGD([w2], lr=0.1, momentum=0.9, weight_decay=0.5, decoupled=True)
    opt.step()  # w = 2 * (1 - .1 * .5) - .1 * 1 = 1.8  (same after one step)...
    np.testing.assert_allclose(w2.data, [[1.8]], rtol=tol.hand_rtol)
    opt.step()  # ...but not after two: v = .9 + 1 = 1.9 (decay not in v); w = 1.8 * .95 - .19 = 1.52
    np.testing.assert_allclose(w2.data, [[1.52]], rtol=tol.hand_rtol)
    w3 = param([[2.0]], [[1.0]])
    opt = optim.SGD([w3], lr=0.1, momentum=0.9, weight_decay=0.5)
    opt.step()
    opt.step()  # L2: g2 = 1 + .5 * 1.8 = 1.9; v = .9 * 2 + 1.9 = 3.7; w = 1.8 - .37 = 1.43
    np.testing.assert_allclose(w3.data, [[1.43]], rtol=tol.hand_rtol)


def test_adam_by_hand(tol):
    p = param([1.0, 1.0], [0.1, -3.0])
    opt = optim.Adam([p], lr=0.01)
    opt.step()  # the first Adam step moves every weight by lr * sign(g) (up to eps)
    np.testing.assert_allclose(p.data, [0.99, 1.01], rtol=tol.hand_rtol)
    p.grad[...] = [0.2, 0.0]
    opt.step()
    b1, b2, eps = 0.9, 0.999, 1e-8
    for i, (g1, g2) in enumerate([(0.1, 0.2), (-3.0, 0.0)]):
        m = (1 - b1) * (b1 * g1 + g2)
        v = (1 - b2) * (b2 * g1 * g1 + g2 * g2)
        m_hat, v_hat = m / (1 - b1**2), v / (1 - b2**2)
        expect = [0.99, 1.01][i] - 0.01 * m_hat / (math.sqrt(v_hat) + eps)
        np.testing.assert_allclose(p.data[i], expect, rtol=tol.hand_rtol)


def test_adamw_decoupled_decay(tol):
    p = param([[2.0]], [[0.0]])
    optim.Adam([p], lr=0.1, weight_decay=0.1, decoupled=True).step()
    # zero gradient: only the decay
    np.testing.assert_allclose(p.data, [[2.0 * (1 - 0.01)]], rtol=tol.hand_rtol)


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(5, 3, 4)).astype(np.float32)
    for kind in optim.OPTIMIZERS:
        a = param(np.ones((3, 4)), grads[0])
        opt_a = optim.make_optimizer(kind, [a], lr=0.01, weight_decay=1e-3)
        for g in grads[:2]:
            a.grad[...] = g
            opt_a.step()
        b = param(a.data.copy(), grads[0])
        opt_b = optim.make_optimizer(kind, [b], lr=0.01, weight_decay=1e-3)
        opt_b.load_state_dict(opt_a.state_dict())
        for g in grads[2:]:
            a.grad[...] = g
            b.grad[...] = g
            opt_a.step()
            opt_b.step()
        np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(ValueError, match="sgd"):
        optim.Adam([param([1.0], [1.0])]).load_state_dict(optim.SGD([param([1.0], [1.0])]).state_dict())


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=0.0),
        dict(lr=-1.0),
        dict(lr=float("nan")),
        dict(lr=0.1, weight_decay=-1),
        dict(lr=0.1, momentum=1),
    ],
)
def test_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        optim.SGD([param([1.0], [1.0])], **kwargs)


def test_missing_or_misshapen_gradient():
    p = param([1.0, 2.0], [1.0, 2.0])
    p.grad = None
    with pytest.raises(ValueError, match="backward"):
        optim.SGD([p], lr=0.1).step()
    p.grad = np.zeros(3, np.float32)
    with pytest.raises(ValueError):
        optim.SGD([p], lr=0.1).step()
    with pytest.raises(ValueError):
        optim.make_optimizer("rmsprop", [p], lr=0.1)


def test_schedules():
    cos = optim.LRSchedule("cosine", 0.1, total_steps=100)
    assert cos(0) == pytest.approx(0.1)
    assert cos(50) == pytest.approx(0.05)
    assert cos(100) == pytest.approx(0.0)
    warm = optim.LRSchedule("cosine", 0.1, total_steps=110, warmup=10)
    assert warm(0) == pytest.approx(0.01)
    assert warm(5) == pytest.approx(0.055)
    assert warm(10) == pytest.approx(0.1)
    assert warm(60) == pytest.approx(0.05)
    step = optim.LRSchedule("step", 1.0, total_steps=90, step_size=30, gamma=0.1)
    assert [step(t) for t in (0, 29, 30, 60)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    assert optim.LRSchedule("constant", 0.3, 10)(9) == 0.3
    with pytest.raises(ValueError):
        optim.LRSchedule("linear", 0.1, 10)
