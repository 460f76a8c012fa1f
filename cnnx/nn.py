"""PyTorch-shaped layers on the float32 Cython engine (`cnnx.functional`), with explicit backward passes.

Every layer has `forward(x)` (also `__call__`), `backward(dy) -> dx` using what its last forward cached,
`train()` / `eval()` (the `.training` flag; only Dropout cares), `parameters()` -> list of `Parameter`,
`output_shape(input_shape)` for an input shape WITHOUT the batch dimension ((C, H, W) or (F,); ValueError
naming the sizes when the layer does not fit), `config()` (JSON-able type + constructor arguments) and a
torch-like `__repr__`.

Gradients: `backward` OVERWRITES each `Parameter.grad` with the gradient of the last forward's batch (no
accumulation, so no zero_grad is needed between steps). Weights use torch's layouts, conv (out, in, kh, kw)
and linear (out, in), in float32. Initialisation is deterministic given `seed` (or an explicit numpy
Generator `rng`): `init="he"` (Kaiming normal, std sqrt(2 / fan_in); the default, for layers followed by a
ReLU-family activation) or `init="xavier"` (Glorot normal, std sqrt(2 / (fan_in + fan_out))); biases start
at zero. Every call honours `cnnx.set_num_threads`.
"""

from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .shapes import check_alloc, pair

__all__ = [
    "AvgPool2d", "Conv2d", "CrossEntropyLoss", "Dropout", "ELU", "Flatten", "LPPool2d", "LeakyReLU", "Linear",
    "MSELoss", "MaxPool2d", "Module", "Parameter", "ReLU", "Sequential", "Sigmoid", "SumPool2d", "Tanh",
]


class Parameter:
    """A trainable float32 array `.data` with its gradient `.grad` (same shape; zeros until a backward)."""

    def __init__(self, data, name: str = ""):
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.grad = np.zeros_like(self.data)
        self.name = name

    @property
    def shape(self) -> tuple:
        return self.data.shape

    def __repr__(self) -> str:
        return f"Parameter(name={self.name!r}, shape={self.data.shape})"


def _json(v):
    """Constructor arguments as JSON-able values (tuples become lists)."""
    if isinstance(v, tuple | list):
        return [_json(a) for a in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _shape_tuple(input_shape, ndim: int, layer) -> tuple:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != ndim or min(shape, default=0) < 1:
        raise ValueError(f"{layer!r} expects an input shape of {ndim} positive sizes without the batch "
                         f"dimension, got {tuple(input_shape)}")
    return shape


class Module:
    """Base class: the training flag, parameters, config and call plumbing."""

    def __init__(self):
        self.training = True

    # -- to override ---------------------------------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def output_shape(self, input_shape) -> tuple:
        return tuple(int(s) for s in input_shape)

    def _args(self) -> dict:
        """Constructor arguments, for config() and __repr__."""
        return {}

    # -- shared --------------------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        return []

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def train(self, mode: bool = True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def config(self) -> dict:
        return {"type": type(self).__name__, "args": {k: _json(v) for k, v in self._args().items()}}

    def _need(self, name: str):
        v = getattr(self, name, None)
        if v is None:
            raise RuntimeError(f"{self!r}: backward() called before forward()")
        return v

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._args().items())})"


def _init_rng(seed, rng) -> np.random.Generator:
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


def _init_weight(shape, fan_in, fan_out, init, rng, what: str = "a layer") -> np.ndarray:
    # the normal draw is float64, then the float32 weight and its gradient: refuse absurd sizes before any
    check_alloc(what, (shape, np.float64), (shape, np.float32), (shape, np.float32))
    if init == "he":
        std = math.sqrt(2.0 / fan_in)
    elif init == "xavier":
        std = math.sqrt(2.0 / (fan_in + fan_out))
    else:
        raise ValueError(f"init must be 'he' or 'xavier', got {init!r}")
    return (rng.standard_normal(shape) * std).astype(np.float32)


# ------------------------------------------------------------------------------------------------------------
# layers with weights
# ------------------------------------------------------------------------------------------------------------


class Conv2d(Module):
    """2-D convolution, torch.nn.Conv2d's arguments; `floor_mode=True` lets a non-fitting window floor."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 floor_mode=False, init="he", seed=None, rng=None):
        super().__init__()
        self.in_channels = pair("in_channels", in_channels)[0]
        self.out_channels = pair("out_channels", out_channels)[0]
        self.kernel_size = pair("kernel_size", kernel_size)
        self.stride = pair("stride", stride)
        self.padding = pair("padding", padding, minimum=0)
        self.floor_mode = bool(floor_mode)
        self.init = init
        kh, kw = self.kernel_size
        fan_in, fan_out = self.in_channels * kh * kw, self.out_channels * kh * kw
        r = _init_rng(seed, rng)
        self.weight = Parameter(_init_weight((self.out_channels, self.in_channels, kh, kw), fan_in, fan_out,
                                             init, r, f"Conv2d({in_channels}, {out_channels}, "
                                             f"kernel_size={kernel_size})"), "weight")
        self.bias = Parameter(np.zeros(self.out_channels, np.float32), "bias") if bias else None
        self._x = None

    def named_parameters(self):
        return [("weight", self.weight)] + ([("bias", self.bias)] if self.bias is not None else [])

    def forward(self, x):
        x = F._as_f32("input x", x, 4)
        self._x = x
        return F.conv2d(x, self.weight.data, None if self.bias is None else self.bias.data, self.stride,
                        self.padding, self.floor_mode)

    def backward(self, dy, need_dx: bool = True):
        """dx (or None with need_dx=False, which skips that work for a first layer); fills the grads."""
        dx, dw, db = F.conv2d_backward(dy, self._need("_x"), self.weight.data, self.stride, self.padding,
                                       self.floor_mode, need_dx=need_dx)
        self.weight.grad = dw
        if self.bias is not None:
            self.bias.grad = db
        return dx

    def output_shape(self, input_shape):
        c, h, w = _shape_tuple(input_shape, 3, self)
        return F.conv2d_output_shape((1, c, h, w), self.weight.shape, self.stride, self.padding,
                                     self.floor_mode)[1:]

    def _args(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "bias": self.bias is not None, "floor_mode": self.floor_mode, "init": self.init}

    def __repr__(self):
        s = (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        if self.floor_mode:
            s += ", floor_mode=True"
        return s + ")"


class Linear(Module):
    """Fully connected layer y = x @ weight.T + bias, weight (out_features, in_features)."""

    def __init__(self, in_features, out_features, bias=True, init="he", seed=None, rng=None):
        super().__init__()
        self.in_features = pair("in_features", in_features)[0]
        self.out_features = pair("out_features", out_features)[0]
        self.init = init
        r = _init_rng(seed, rng)
        self.weight = Parameter(_init_weight((self.out_features, self.in_features), self.in_features,
                                             self.out_features, init, r,
                                             f"Linear({in_features}, {out_features})"), "weight")
        self.bias = Parameter(np.zeros(self.out_features, np.float32), "bias") if bias else None
        self._x = None

    def named_parameters(self):
        return [("weight", self.weight)] + ([("bias", self.bias)] if self.bias is not None else [])

    def forward(self, x):
        x = F._as_f32("input x", x, 2)
        self._x = x
        return F.linear(x, self.weight.data, None if self.bias is None else self.bias.data)

    def backward(self, dy, need_dx: bool = True):
        dx, dw, db = F.linear_backward(dy, self._need("_x"), self.weight.data)
        self.weight.grad = dw
        if self.bias is not None:
            self.bias.grad = db
        return dx if need_dx else None

    def output_shape(self, input_shape):
        shape = _shape_tuple(input_shape, 1, self)
        if shape[0] != self.in_features:
            raise ValueError(f"{self!r} expects {self.in_features} input features, got {shape[0]}")
        return (self.out_features,)

    def _args(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "init": self.init}

    def __repr__(self):
        return (f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None})")


# ------------------------------------------------------------------------------------------------------------
# pooling
# ------------------------------------------------------------------------------------------------------------


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, floor_mode=False):
        super().__init__()
        pair("kernel_size", kernel_size)  # validate now, keep torch's form (an int stays an int)
        if stride is not None:
            pair("stride", stride)
        self.kernel_size = tuple(kernel_size) if isinstance(kernel_size, list) else kernel_size
        # as torch: a missing stride is the kernel size
        self.stride = self.kernel_size if stride is None else (tuple(stride) if isinstance(stride, list)
                                                               else stride)
        self.floor_mode = bool(floor_mode)
        self._in_shape = None

    def output_shape(self, input_shape):
        c, h, w = _shape_tuple(input_shape, 3, self)
        return F.pool2d_output_shape((1, c, h, w), self.kernel_size, self.stride, self.floor_mode)[1:]

    def _args(self):
        return {"kernel_size": self.kernel_size, "stride": self.stride, "floor_mode": self.floor_mode}

    def __repr__(self):
        s = f"{type(self).__name__}(kernel_size={self.kernel_size!r}, stride={self.stride!r}"
        return s + (", floor_mode=True)" if self.floor_mode else ")")


class MaxPool2d(_Pool2d):
    """Max pooling; the gradient goes to each window's arg-max (ties: the first in row-major order)."""

    def forward(self, x):
        y, self._idx = F.max_pool2d(x, self.kernel_size, self.stride, self.floor_mode, return_indices=True)
        self._in_shape = np.shape(x)
        return y

    def backward(self, dy):
        return F.max_pool2d_backward(dy, self._need("_idx"), self._in_shape)

    _idx = None


class AvgPool2d(_Pool2d):
    """Average pooling (no padding)."""

    def forward(self, x):
        y = F.avg_pool2d(x, self.kernel_size, self.stride, self.floor_mode)
        self._in_shape = np.shape(x)
        return y

    def backward(self, dy):
        return F.avg_pool2d_backward(dy, self._need("_in_shape"), self.kernel_size, self.stride,
                                     self.floor_mode)


class SumPool2d(_Pool2d):
    """Sum pooling: the lectures' un-normalised reduction kernel."""

    def forward(self, x):
        y = F.sum_pool2d(x, self.kernel_size, self.stride, self.floor_mode)
        self._in_shape = np.shape(x)
        return y

    def backward(self, dy):
        return F.sum_pool2d_backward(dy, self._need("_in_shape"), self.kernel_size, self.stride,
                                     self.floor_mode)


class LPPool2d(_Pool2d):
    """Power-average pooling (sum x^p)^(1/p) as torch.nn.LPPool2d; only norm_type=2 (L2 pooling) for now."""

    def __init__(self, norm_type, kernel_size, stride=None, floor_mode=False):
        F._check_norm_type(norm_type)
        super().__init__(kernel_size, stride, floor_mode)
        self.norm_type = norm_type
        self._x = self._y = None

    def forward(self, x):
        x = F._as_f32("input x", x, 4)
        y = F.lp_pool2d(x, self.norm_type, self.kernel_size, self.stride, self.floor_mode)
        self._x, self._y = x, y
        return y

    def backward(self, dy):
        return F.lp_pool2d_backward(dy, self._need("_x"), self._y, self.norm_type, self.kernel_size,
                                    self.stride, self.floor_mode)

    def _args(self):
        return {"norm_type": self.norm_type, **super()._args()}

    def __repr__(self):
        return f"LPPool2d(norm_type={self.norm_type!r}, " + super().__repr__()[len("LPPool2d("):]


# ------------------------------------------------------------------------------------------------------------
# activations, reshape, dropout
# ------------------------------------------------------------------------------------------------------------


class ReLU(Module):
    def forward(self, x):
        self._x = F._as_f32("input x", x)
        return F.relu(self._x)

    def backward(self, dy):
        return F.relu_backward(dy, self._need("_x"))

    _x = None


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = F._real("negative_slope", negative_slope)

    def forward(self, x):
        self._x = F._as_f32("input x", x)
        return F.leaky_relu(self._x, self.negative_slope)

    def backward(self, dy):
        return F.leaky_relu_backward(dy, self._need("_x"), self.negative_slope)

    def _args(self):
        return {"negative_slope": self.negative_slope}

    _x = None


class ELU(Module):
    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = F._real("alpha", alpha)

    def forward(self, x):
        self._x = F._as_f32("input x", x)
        return F.elu(self._x, self.alpha)

    def backward(self, dy):
        return F.elu_backward(dy, self._need("_x"), self.alpha)

    def _args(self):
        return {"alpha": self.alpha}

    _x = None


class Sigmoid(Module):
    def forward(self, x):
        self._y = F.sigmoid(x)
        return self._y

    def backward(self, dy):
        return F.sigmoid_backward(dy, self._need("_y"))

    _y = None


class Tanh(Module):
    def forward(self, x):
        self._y = F.tanh(x)
        return self._y

    def backward(self, dy):
        return F.tanh_backward(dy, self._need("_y"))

    _y = None


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W)."""

    def forward(self, x):
        x = F._as_f32("input x", x)
        if x.ndim < 2:
            raise ValueError(f"Flatten expects (N, ...) with at least 2 dimensions, got shape {x.shape}")
        self._in_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        shape = self._need("_in_shape")
        dy = F._as_f32("output gradient dy", dy, 2)
        if dy.shape != (shape[0], int(np.prod(shape[1:]))):
            raise ValueError(f"output gradient dy must have shape {(shape[0], int(np.prod(shape[1:])))}, "
                             f"got {dy.shape}")
        return dy.reshape(shape)

    def output_shape(self, input_shape):
        shape = tuple(int(s) for s in input_shape)
        if not shape or min(shape) < 1:
            raise ValueError(f"Flatten expects a non-empty positive input shape, got {tuple(input_shape)}")
        return (int(np.prod(shape)),)

    _in_shape = None


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability p and scale the rest by 1/(1-p);
    identity in eval. Masks come from a Generator seeded once with `seed` (reproducible sequence)."""

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        p = F._real("p", p)
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability p must be in [0, 1), got {p}")
        self.p, self.seed = p, seed
        self._rng = np.random.default_rng(seed)
        self._mask = None
        self._ran = False

    def forward(self, x):
        y, self._mask = F.dropout(x, self.p, training=self.training, rng=self._rng)
        self._ran = True
        return y

    def backward(self, dy):
        if not self._ran:
            raise RuntimeError(f"{self!r}: backward() called before forward()")
        return F.dropout_backward(dy, self._mask)

    def _args(self):
        return {"p": self.p, "seed": self.seed}

    def __repr__(self):
        return f"Dropout(p={self.p})"


# ------------------------------------------------------------------------------------------------------------
# losses
# ------------------------------------------------------------------------------------------------------------


class CrossEntropyLoss(Module):
    """Softmax cross-entropy on logits (N, K) with int targets (N,), mean over the batch.
    forward(logits, target) -> float; backward() -> dloss/dlogits."""

    def forward(self, logits, target):
        loss, self._grad = F.cross_entropy(logits, target)
        return loss

    def backward(self, dy=None):
        return self._need("_grad")

    _grad = None


class MSELoss(Module):
    """Mean squared error over every element. forward(x, target) -> float; backward() -> dloss/dx."""

    def forward(self, x, target):
        loss, self._grad = F.mse_loss(x, target)
        return loss

    def backward(self, dy=None):
        return self._need("_grad")

    _grad = None


# ------------------------------------------------------------------------------------------------------------
# Sequential
# ------------------------------------------------------------------------------------------------------------


class Sequential(Module):
    """Layers applied in order. Parameters are named "<index>.<name>" ("0.weight", "0.bias", ...)."""

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], list | tuple):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layer {i} must be a cnnx.nn.Module, got {type(layer).__name__}")
        self.layers = list(layers)
        for name, p in self.named_parameters():
            p.name = name

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(*self.layers[i])
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy, need_input_grad: bool = True):
        """Backpropagate through every layer; returns dx of the input (None with need_input_grad=False,
        which lets a first Conv2d/Linear skip computing it)."""
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if i == 0 and not need_input_grad and isinstance(layer, Conv2d | Linear):
                return layer.backward(dy, need_dx=False)
            dy = layer.backward(dy)
        return dy

    def named_parameters(self):
        return [(f"{i}.{name}", p) for i, layer in enumerate(self.layers)
                for name, p in layer.named_parameters()]

    def train(self, mode: bool = True):
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def output_shapes(self, input_shape) -> list[tuple]:
        """The output shape after each layer (without the batch dimension)."""
        shapes, shape = [], tuple(int(s) for s in input_shape)
        for i, layer in enumerate(self.layers):
            try:
                shape = tuple(layer.output_shape(shape))
            except ValueError as e:
                raise ValueError(f"layer {i} ({layer!r}) does not fit input shape {shape}: {e}") from None
            shapes.append(shape)
        return shapes

    def output_shape(self, input_shape):
        shapes = self.output_shapes(input_shape)
        return shapes[-1] if shapes else tuple(input_shape)

    def summary(self, input_shape) -> str:
        """A table: index, layer, output shape, parameter count, multiply-accumulates per image, and totals.

        MACs of a layer with a weight (conv, linear): output elements x the weights each one uses
        (C*KH*KW for a conv, IN for a linear layer) -- the count `cnnx.cycles` uses; other layers: 0."""
        shapes = self.output_shapes(input_shape)
        rows = [("#", "layer", "output shape", "params", "MACs")]
        total = total_macs = 0
        for i, (layer, shape) in enumerate(zip(self.layers, shapes, strict=True)):
            n = sum(p.data.size for p in layer.parameters())
            w = getattr(layer, "weight", None)
            macs = int(np.prod(shape)) * (w.data.size // w.data.shape[0]) if w is not None else 0
            total += n
            total_macs += macs
            rows.append((str(i), repr(layer), str(tuple(shape)), f"{n:,}", f"{macs:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(5)]
        line = "-" * (sum(widths) + 8)

        def fmt(r):
            return (f"{r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}  "
                    f"{r[4]:>{widths[4]}}")

        out = [f"input shape {tuple(input_shape)}", line, fmt(rows[0]), line, *map(fmt, rows[1:]), line,
               f"total parameters: {total:,}; multiply-accumulates per image: {total_macs:,}"]
        return "\n".join(out)

    def state_dict(self) -> dict[str, np.ndarray]:
        """{"0.weight": copy of the array, ...}."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict) -> None:
        """Copy arrays into the parameters; names and shapes must match exactly (ValueError otherwise)."""
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"state_dict does not match the model: missing {missing}, "
                             f"unexpected {unexpected}")
        for name, p in own.items():
            a = np.asarray(state[name])
            if a.shape != p.data.shape:
                raise ValueError(f"state_dict[{name!r}] has shape {a.shape}, "
                                 f"the model expects {p.data.shape}")
            if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
                raise TypeError(f"state_dict[{name!r}] must be a real array, got dtype {a.dtype}")
        for name, p in own.items():
            p.data = np.ascontiguousarray(state[name], dtype=np.float32).copy()
            p.grad = np.zeros_like(p.data)

    def config(self) -> list[dict]:
        """A JSON-able list: one {"type": class name, "args": constructor arguments} per layer."""
        return [layer.config() for layer in self.layers]

    @classmethod
    def parameter_count_of_config(cls, cfg) -> int:
        """The number of parameters `from_config(cfg)` would allocate, computed from the arguments alone
        (nothing is built), so a file's config can be weighed against the arrays it holds first.
        Arguments are checked as the constructors check them (TypeError/ValueError)."""
        if isinstance(cfg, dict) and cfg.get("type") == "Sequential":
            cfg = cfg.get("layers", [])
        if not isinstance(cfg, list | tuple):
            raise TypeError(f"config must be a list of layer dicts, got {type(cfg).__name__}")
        total = 0
        for entry in cfg:
            if isinstance(entry, list):
                total += cls.parameter_count_of_config(entry)
                continue
            if not isinstance(entry, dict):
                continue  # from_config refuses it
            args = entry.get("args", {})
            if not isinstance(args, dict):
                raise TypeError(f"layer arguments must be a dict, got {type(args).__name__}")
            kind = entry.get("type")
            if kind != "Sequential" and kind not in _LAYERS:
                raise ValueError(f"unknown layer type {kind!r}; known: {sorted(_LAYERS)}")
            if kind == "Conv2d":
                i = pair("in_channels", args.get("in_channels"))[0]
                o = pair("out_channels", args.get("out_channels"))[0]
                kh, kw = pair("kernel_size", args.get("kernel_size"))
                total += o * i * kh * kw + (o if args.get("bias", True) else 0)
            elif kind == "Linear":
                i = pair("in_features", args.get("in_features"))[0]
                o = pair("out_features", args.get("out_features"))[0]
                total += o * i + (o if args.get("bias", True) else 0)
        return total

    @classmethod
    def from_config(cls, cfg) -> Sequential:
        """Rebuild the layers from `config()` (fresh weights: load a state_dict for trained ones)."""
        if isinstance(cfg, dict) and cfg.get("type") == "Sequential":
            cfg = cfg.get("layers", [])
        if not isinstance(cfg, list | tuple):
            raise TypeError(f"config must be a list of layer dicts, got {type(cfg).__name__}")
        layers = []
        for i, entry in enumerate(cfg):
            if isinstance(entry, list):  # a nested Sequential's config
                layers.append(cls.from_config(entry))
                continue
            if not isinstance(entry, dict) or "type" not in entry:
                raise ValueError(f"config entry {i} must be a dict with a 'type', got {entry!r}")
            kind = entry["type"]
            if kind not in _LAYERS:
                raise ValueError(f"config entry {i}: unknown layer type {kind!r}; known: {sorted(_LAYERS)}")
            args = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.get("args", {}).items()}
            try:
                layers.append(_LAYERS[kind](**args))
            except TypeError as e:
                raise ValueError(f"config entry {i} ({kind}): bad arguments {args}: {e}") from None
        return cls(*layers)

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)" if inner else "Sequential()"


_LAYERS = {c.__name__: c for c in (Conv2d, Linear, MaxPool2d, AvgPool2d, SumPool2d, LPPool2d, ReLU, LeakyReLU,
                                   ELU, Sigmoid, Tanh, Flatten, Dropout)}
