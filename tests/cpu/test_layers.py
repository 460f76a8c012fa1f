"""Every `cnnx.nn` layer class, forward and backward, in one table.

For each entry: the layer's float32 forward against the float64 golden model (`cnnx.reference`), its
backward (dx and every parameter gradient) against the golden backward, and the golden backward against
central finite differences of the golden forward (so the golden gradients are themselves checked). A new
layer class is covered by adding one `Case` to CASES (or LOSSES); `test_every_layer_class_is_listed` fails
until it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from cnnx import nn
from cnnx import reference as ref


def _conv(layer, x, p):
    return ref.conv2d(x, p["weight"], p.get("bias"), layer.stride, layer.padding, layer.floor_mode)


def _conv_bw(layer, dy, x, p):
    dx, dw, db = ref.conv2d_backward(dy, x, p["weight"], layer.stride, layer.padding, layer.floor_mode)
    return dx, {"weight": dw, "bias": db}


def _linear(layer, x, p):
    return ref.linear(x, p["weight"], p.get("bias"))


def _linear_bw(layer, dy, x, p):
    dx, dw, db = ref.linear_backward(dy, x, p["weight"])
    return dx, {"weight": dw, "bias": db}


def _pool(fwd, bwd):
    def forward(layer, x, p):
        return fwd(x, layer.kernel_size, layer.stride, layer.floor_mode)

    def backward(layer, dy, x, p):
        return bwd(dy, x, layer.kernel_size, layer.stride, layer.floor_mode), {}

    return forward, backward


def _lp(layer, x, p):
    return ref.lp_pool2d(x, layer.norm_type, layer.kernel_size, layer.stride, layer.floor_mode)


def _lp_bw(layer, dy, x, p):
    dx = ref.lp_pool2d_backward(dy, x, layer.norm_type, layer.kernel_size, layer.stride, layer.floor_mode)
    return dx, {}


def _unary(fwd, bwd, arg=None, on_output=False):
    """An activation: golden forward fwd(x[, arg]); backward bwd(dy, x or y[, arg])."""
    def extra(layer):
        return () if arg is None else (getattr(layer, arg),)

    def forward(layer, x, p):
        return fwd(x, *extra(layer))

    def backward(layer, dy, x, p):
        saved = fwd(x, *extra(layer)) if on_output else x
        return bwd(dy, saved, *extra(layer)), {}

    return forward, backward


def _flatten(layer, x, p):
    return x.reshape(x.shape[0], -1)


def _flatten_bw(layer, dy, x, p):
    return dy.reshape(x.shape), {}


def _dropout(layer, x, p):
    # the randomness lives in the layer: the golden model applies the mask the layer's forward drew
    return ref.dropout(x, 1.0 if layer._mask is None else layer._mask)


def _dropout_bw(layer, dy, x, p):
    return dy * (1.0 if layer._mask is None else layer._mask), {}


@dataclass
class Case:
    name: str
    make: Any                    # () -> layer
    shape: tuple                 # input shape with the batch dimension
    forward: Any                 # (layer, x64, params64) -> y64
    backward: Any                # (layer, dy64, x64, params64) -> (dx64, {param name: grad64})
    train: bool = False          # run the layer in training mode (only Dropout cares)
    atol: float | None = None    # when the default FLOAT_ATOL is not enough, said here with why
    fd: bool = True              # check the golden backward by finite differences
    extra: dict = field(default_factory=dict)


_MAXP = _pool(ref.max_pool2d, ref.max_pool2d_backward)
_AVGP = _pool(ref.avg_pool2d, ref.avg_pool2d_backward)
_SUMP = _pool(ref.sum_pool2d, ref.sum_pool2d_backward)

CASES = [
    Case("Conv2d", lambda: nn.Conv2d(2, 3, 3, padding=1, seed=1), (2, 2, 5, 5), _conv, _conv_bw),
    Case("Conv2d-stride(1,2)-pad(1,0)-kernel(3,2)",
         lambda: nn.Conv2d(2, 3, (3, 2), stride=(1, 2), padding=(1, 0), seed=2), (2, 2, 6, 8),
         _conv, _conv_bw),
    Case("Conv2d-nobias-floor", lambda: nn.Conv2d(1, 2, 3, stride=2, bias=False, floor_mode=True, seed=3),
         (2, 1, 6, 6), _conv, _conv_bw),
    Case("Linear", lambda: nn.Linear(5, 4, seed=4), (3, 5), _linear, _linear_bw),
    Case("Linear-nobias", lambda: nn.Linear(6, 2, bias=False, init="xavier", seed=5), (4, 6), _linear,
         _linear_bw),
    Case("MaxPool2d", lambda: nn.MaxPool2d(2), (2, 3, 6, 6), *_MAXP),
    Case("MaxPool2d-(3,2)-stride(2,1)", lambda: nn.MaxPool2d((3, 2), stride=(2, 1)), (1, 2, 7, 5), *_MAXP),
    Case("AvgPool2d", lambda: nn.AvgPool2d(2), (2, 3, 6, 6), *_AVGP),
    Case("AvgPool2d-3-stride2", lambda: nn.AvgPool2d(3, stride=2), (2, 2, 7, 7), *_AVGP),
    Case("SumPool2d", lambda: nn.SumPool2d(2), (2, 3, 6, 6), *_SUMP),
    Case("SumPool2d-(2,3)-stride1", lambda: nn.SumPool2d((2, 3), stride=1), (1, 2, 5, 6), *_SUMP),
    Case("SumPool2d-floor", lambda: nn.SumPool2d(2, floor_mode=True), (1, 2, 5, 5), *_SUMP),
    Case("LPPool2d", lambda: nn.LPPool2d(2, 2), (2, 3, 6, 6), _lp, _lp_bw),
    Case("LPPool2d-3-stride2", lambda: nn.LPPool2d(2, 3, stride=2), (1, 2, 7, 7), _lp, _lp_bw),
    Case("ReLU", nn.ReLU, (2, 3, 4, 4), *_unary(ref.relu, ref.relu_backward)),
    Case("LeakyReLU", lambda: nn.LeakyReLU(0.2), (2, 3, 4, 4),
         *_unary(ref.leaky_relu, ref.leaky_relu_backward, "negative_slope")),
    Case("LeakyReLU-default", nn.LeakyReLU, (3, 7), *_unary(ref.leaky_relu, ref.leaky_relu_backward,
                                                            "negative_slope")),
    Case("ELU", lambda: nn.ELU(0.7), (2, 3, 4, 4), *_unary(ref.elu, ref.elu_backward, "alpha")),
    Case("ELU-default", nn.ELU, (3, 7), *_unary(ref.elu, ref.elu_backward, "alpha")),
    Case("Sigmoid", nn.Sigmoid, (2, 3, 4, 4), *_unary(ref.sigmoid, ref.sigmoid_backward, on_output=True)),
    Case("Tanh", nn.Tanh, (2, 3, 4, 4), *_unary(ref.tanh, ref.tanh_backward, on_output=True)),
    Case("Flatten", nn.Flatten, (2, 3, 2, 2), _flatten, _flatten_bw),
    Case("Dropout-eval", lambda: nn.Dropout(0.4, seed=0), (2, 3, 4, 4), _dropout, _dropout_bw),
    Case("Dropout-train", lambda: nn.Dropout(0.4, seed=0), (2, 3, 4, 4), _dropout, _dropout_bw, train=True),
]

# Losses: forward(x, target) -> float, backward() -> dloss/dx; golden: (loss, grad) = fn(x, target).
LOSSES = [
    ("CrossEntropyLoss", nn.CrossEntropyLoss, ref.cross_entropy, lambda rng: rng.integers(0, 5, 4)),
    ("MSELoss", nn.MSELoss, ref.mse_loss, lambda rng: rng.standard_normal((4, 5))),
]

NOT_LAYERS = {"Module", "Parameter", "Sequential"}  # Sequential: tests/cpu/test_nn.py


def test_every_layer_class_is_listed():
    listed = {type(c.make()).__name__ for c in CASES} | {name for name, *_ in LOSSES}
    assert set(nn.__all__) - NOT_LAYERS - listed == set(), "add the new layer class to CASES or LOSSES"


def _setup(case, rng):
    layer = case.make()
    layer.train(case.train)
    for p in layer.parameters():  # non-zero biases too, so their gradients mean something
        p.data[...] = rng.standard_normal(p.data.shape)
    x = rng.standard_normal(case.shape).astype(np.float32)
    return layer, x


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_layer_forward_backward_match_golden(case, rng, layer_check, tol):
    layer, x = _setup(case, rng)
    y = layer(x)
    assert y.dtype == np.float32
    x64 = x.astype(np.float64)
    params = {name: p.data.astype(np.float64) for name, p in layer.named_parameters()}
    want = case.forward(layer, x64, params)
    layer_check(y, want, what=f"{case.name} forward")
    assert tuple(layer.output_shape(case.shape[1:])) == want.shape[1:]

    dy = rng.standard_normal(want.shape).astype(np.float32)
    dx = layer.backward(dy)
    want_dx, want_grads = case.backward(layer, dy.astype(np.float64), x64, params)
    layer_check(dx, want_dx, what=f"{case.name} dx")
    assert dx.dtype == np.float32
    for name, p in layer.named_parameters():
        layer_check(p.grad, want_grads[name], what=f"{case.name} d{name}")


@pytest.mark.parametrize("case", [c for c in CASES if c.fd], ids=lambda c: c.name)
def test_golden_backward_matches_finite_differences(case, rng, layer_check, fd_grad, tol):
    layer, x = _setup(case, rng)
    layer(x)  # Dropout draws its mask here; the golden model reuses it
    x64 = x.astype(np.float64)
    params = {name: p.data.astype(np.float64) for name, p in layer.named_parameters()}
    dy = rng.standard_normal(case.forward(layer, x64, params).shape)

    def loss():
        return float((case.forward(layer, x64, params) * dy).sum())

    dx, grads = case.backward(layer, dy, x64, params)
    layer_check(dx, fd_grad(loss, x64), rtol=tol.fd_rtol, atol=tol.fd_atol, what=f"{case.name} dx")
    for name, arr in params.items():
        layer_check(grads[name], fd_grad(loss, arr), rtol=tol.fd_rtol, atol=tol.fd_atol,
                    what=f"{case.name} d{name}")


@pytest.mark.parametrize("name, make, golden, target", LOSSES, ids=[c[0] for c in LOSSES])
def test_loss_forward_backward_match_golden(name, make, golden, target, rng, layer_check, fd_grad, tol):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    t = target(rng)
    fn = make()
    loss = fn(x, t)
    want, want_grad = golden(x.astype(np.float64), t)
    layer_check(loss, want, what=f"{name} loss")
    layer_check(fn.backward(), want_grad, what=f"{name} grad")
    x64 = x.astype(np.float64)
    layer_check(want_grad, fd_grad(lambda: golden(x64, t)[0], x64), rtol=tol.fd_rtol, atol=tol.fd_atol,
                what=f"{name} finite differences")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_backward_before_forward_is_refused(case):
    layer = case.make()
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 1), np.float32))


def test_dropout_train_mask_semantics(rng, layer_check):
    """Training: each element kept with probability 1-p and scaled by 1/(1-p), the same mask in backward,
    a fresh mask on each forward, the sequence fixed by the seed; eval and p=0: the identity."""
    p = 0.4
    x = rng.standard_normal((100, 100)).astype(np.float32)
    d = nn.Dropout(p, seed=7)
    y = d(x)
    kept = y != 0
    layer_check(y[kept], x[kept].astype(np.float64) / (1 - p), what="kept elements")
    # 10,000 Bernoulli(0.4) draws: sd of the dropped fraction 0.0049, so +-0.03 is 6 sd
    assert abs((~kept).mean() - p) < 0.03
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = d.backward(dy)
    np.testing.assert_array_equal(dx[~kept], 0)
    layer_check(dx[kept], dy[kept].astype(np.float64) / (1 - p), what="dx of kept elements")
    y2 = d(x)
    assert not np.array_equal(y2 != 0, kept)            # a new mask per forward
    again = nn.Dropout(p, seed=7)
    np.testing.assert_array_equal(again(x), y)          # same seed, same first mask
    np.testing.assert_array_equal(again(x), y2)         # and the same second one
    d.eval()
    np.testing.assert_array_equal(d(x), x)
    np.testing.assert_array_equal(d.backward(dy), dy)
    np.testing.assert_array_equal(nn.Dropout(0.0, seed=1)(x), x)
