"""linear, activations, losses, dropout and the L2 penalty: Cython float32 vs the float64 golden model, golden
gradients vs finite differences, and the numerically delicate corners (large logits, large |x|)."""

import numpy as np
import pytest

from cnnx import functional as F
from cnnx import reference as ref


@pytest.mark.parametrize("n, i, o", [(64, 400, 120), (1, 7, 3), (5, 1, 9), (3, 33, 17)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_golden(n, i, o, bias, rng, layer_check, tol):
    x = rng.standard_normal((n, i)).astype(np.float32)
    w = rng.standard_normal((o, i)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32) if bias else None
    # up to 400-term float32 sums of unit-size products, accumulated in order: ~1e-5..1e-4 absolute rounding
    layer_check(F.linear(x, w, b), ref.linear(x, w, b), atol=tol.float_atol_long_sum)
    dy = rng.standard_normal((n, o)).astype(np.float32)
    for name, got, want in zip(("dx", "dw", "db"), F.linear_backward(dy, x, w), ref.linear_backward(dy, x, w),
                               strict=True):
        layer_check(got, want, atol=tol.float_atol_long_sum, what=name)


def test_golden_linear_backward_matches_finite_differences(rng, fd_grad, tol, layer_check):
    x, w, b = rng.standard_normal((3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    r = rng.standard_normal((3, 4))

    def loss():
        return float((ref.linear(x, w, b) * r).sum())

    for name, got, arr in zip(("dx", "dw", "db"), ref.linear_backward(r, x, w), (x, w, b), strict=True):
        layer_check(got, fd_grad(loss, arr), rtol=tol.fd_rtol, atol=tol.fd_atol, what=name)


# name -> (cython forward, cython backward, golden forward, golden backward, backward takes the output y)
ACTIVATIONS = {
    "relu": (F.relu, F.relu_backward, ref.relu, ref.relu_backward, False),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda d, x: F.leaky_relu_backward(d, x, 0.2),
                   lambda x: ref.leaky_relu(x, 0.2), lambda d, x: ref.leaky_relu_backward(d, x, 0.2), False),
    "elu": (lambda x: F.elu(x, 0.7), lambda d, x: F.elu_backward(d, x, 0.7),
            lambda x: ref.elu(x, 0.7), lambda d, x: ref.elu_backward(d, x, 0.7), False),
    "sigmoid": (F.sigmoid, F.sigmoid_backward, ref.sigmoid, ref.sigmoid_backward, True),
    "tanh": (F.tanh, F.tanh_backward, ref.tanh, ref.tanh_backward, True),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (64, 120), (1,), (3, 1, 1)], ids=str)
def test_activation_matches_golden(name, shape, rng, layer_check):
    fwd, bwd, gfwd, gbwd, uses_y = ACTIVATIONS[name]
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    y = fwd(x)
    assert y.shape == x.shape and y.dtype == np.float32
    layer_check(y, gfwd(x), what=f"{name} forward")
    dy = rng.standard_normal(shape).astype(np.float32)
    saved = y if uses_y else x
    layer_check(bwd(dy, saved), gbwd(dy, gfwd(x) if uses_y else x), what=f"{name} backward")


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_golden_activation_backward_matches_finite_differences(name, rng, fd_grad, tol, layer_check):
    _, _, gfwd, gbwd, uses_y = ACTIVATIONS[name]
    x = rng.standard_normal(20) * 2
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kinks of ReLU-family functions
    r = rng.standard_normal(20)

    def loss():
        return float((gfwd(x) * r).sum())

    got = gbwd(r, gfwd(x) if uses_y else x)
    layer_check(got, fd_grad(loss, x), rtol=tol.fd_rtol, atol=tol.fd_atol, what=f"{name} dx")


def test_activations_at_extremes():
    x = np.array([-1e4, -200, 0, 100, 1e4], np.float32)  # exp(-200) underflows float32 to 0
    np.testing.assert_array_equal(F.sigmoid(x), [0, 0, 0.5, 1, 1])
    np.testing.assert_array_equal(F.tanh(x), [-1, -1, 0, 1, 1])
    np.testing.assert_array_equal(F.elu(x), [-1, -1, 0, 100, 1e4])
    np.testing.assert_array_equal(F.relu_backward(np.ones(5, np.float32), x), [0, 0, 0, 1, 1])  # ReLU'(0)=0


@pytest.mark.parametrize("n, k", [(64, 10), (1, 3), (7, 2)], ids=str)
def test_cross_entropy_matches_golden(n, k, rng, layer_check):
    logits = (4 * rng.standard_normal((n, k))).astype(np.float32)
    target = rng.integers(0, k, n)
    loss, grad = F.cross_entropy(logits, target)
    gloss, ggrad = ref.cross_entropy(logits, target)
    layer_check(loss, gloss, what="loss")
    layer_check(grad, ggrad, what="dlogits")


def test_cross_entropy_is_stable_for_huge_logits(tol):
    logits = np.array([[1e4, 0, -1e4], [-1e4, -1e4, -1e4 + 1]], np.float32)
    loss, grad = F.cross_entropy(logits, np.array([0, 1]))
    # row 0: loss 0; row 1 (relative to -1e4): -log(e^0 / (e^0 + e^0 + e^1)) = log(2 + e)
    want = (0 + np.log(2 + np.e)) / 2
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(loss, want, rtol=tol.hand_rtol)


def test_golden_cross_entropy_and_mse_gradients_match_finite_differences(rng, fd_grad, tol, layer_check):
    z, t = rng.standard_normal((4, 5)), np.array([0, 4, 2, 2])
    layer_check(ref.cross_entropy(z, t)[1], fd_grad(lambda: ref.cross_entropy(z, t)[0], z),
                rtol=tol.fd_rtol, atol=tol.fd_atol, what="cross-entropy")
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    layer_check(ref.mse_loss(x, y)[1], fd_grad(lambda: ref.mse_loss(x, y)[0], x), rtol=tol.fd_rtol,
                atol=tol.fd_atol, what="mse")


@pytest.mark.parametrize("shape", [(8, 10), (2, 3, 4, 5), (5,)], ids=str)
def test_mse_matches_golden(shape, rng, layer_check):
    x = rng.standard_normal(shape).astype(np.float32)
    t = rng.standard_normal(shape).astype(np.float32)
    loss, grad = F.mse_loss(x, t)
    gloss, ggrad = ref.mse_loss(x, t)
    layer_check(loss, gloss, what="loss")
    layer_check(grad, ggrad, what="dx")


def test_dropout_is_inverted_seeded_and_identity_in_eval(rng, tol):
    x = np.ones((200, 100), np.float32)
    y, mask = F.dropout(x, 0.3, training=True, seed=5)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01  # 20,000 draws: the std of the mean is 0.003
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=tol.hand_rtol)
    y2, _ = F.dropout(x, 0.3, training=True, seed=5)
    np.testing.assert_array_equal(y, y2)  # same seed, same mask
    y3, _ = F.dropout(x, 0.3, training=True, seed=6)
    assert (y3 != y).any()
    np.testing.assert_array_equal(F.dropout_backward(x, mask), y)  # backward applies the same mask
    ye, me = F.dropout(x, 0.3, training=False, seed=5)
    assert me is None
    np.testing.assert_array_equal(ye, x)
    g1 = np.random.default_rng(1)
    a, _ = F.dropout(x, 0.5, rng=g1)
    b, _ = F.dropout(x, 0.5, rng=g1)
    assert (a != b).any()  # a Generator advances between calls


def test_l2_penalty_and_gradient(rng, layer_check):
    ws = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    pen, grads = F.l2_penalty(ws, 0.01)
    gpen, ggrads = ref.l2_penalty(ws, 0.01)
    layer_check(pen, gpen, what="penalty")
    for g, gg in zip(grads, ggrads, strict=True):
        layer_check(g, gg, what="gradient")
    flat = np.concatenate([w.ravel() for w in ws]).astype(np.float64)
    layer_check(pen, 0.01 * (flat @ flat), what="penalty by hand")
