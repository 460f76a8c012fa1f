"""Post-training quantisation: a trained float `Sequential` -> a `QuantizedModel` that runs in int8.

The scheme is `cnnx.quant`'s (symmetric, zero point 0, per-tensor scales):
  * the input is quantised at a FIXED scale: the largest |value| the model's preprocessing
    (`cnnx.io.preprocess`, MNIST's by default) can produce maps to 127, so every image uses the same scale and
    no calibration statistic leaks into it;
  * each Conv2d/Linear gets int8 weights at `quant.symmetric_scale(w)` and an int32 bias at s_in * s_w
    (`quant.quantize_bias`);
  * each Conv2d/Linear's output scale comes from calibration: the float activations (after the ReLU when one
    follows, which is fused) of a few hundred images, at their `percentile`-th |value| (the last layer, the
    logits, uses the max so the winning logit is not clipped);
  * the layer's requantisation is `quant.multiplier_from_scale(s_in * s_w / s_out, relu=<a ReLU follows>)`;
  * MaxPool2d is exact on int8; AvgPool2d is the window sum requantised by `quant.avg_pool_multiplier` (the
    scale is unchanged by either); Flatten is a reshape; Dropout is the identity at inference.
Anything else (Tanh, Sigmoid, a ReLU that does not directly follow a Conv2d/Linear, ...) has no int8 form here
and is refused with a ValueError naming the layer.

The int8 logits decide the class: `predict` is the argmax of the int8 logits (first index on ties), the same
rule for the Cython, NumPy and RTL paths, since the RTL core only returns int8. `forward_trace` also hands
back the last layer's int32 accumulator for whoever wants tie-free scores.

Layers are recognised by class name (`Conv2d`, `Linear`, `ReLU`, `MaxPool2d`, `AvgPool2d`, `Flatten`,
`Dropout`) and read through the attributes `cnnx.nn` gives them (`weight.data`, `bias.data`, `stride`,
`padding`, `kernel_size`), so any object shaped like `cnnx.nn.Sequential` can be quantised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import int8 as int8_cpu
from . import quant, reference
from ._atomic import atomic_write
from ._npz import NpzError, json_loads, read_npz
from .shapes import check_alloc, check_positive_int, out_size

BACKENDS = ("cython", "numpy")
KINDS = ("conv", "linear", "maxpool", "avgpool", "flatten")
# A quantised-model file is untrusted: at most this many bytes of arrays (int8 weights: 64M of them, some
# 250x the zoo's largest model) are read, after their headers are checked (`cnnx._npz.read_npz`)
MAX_QMODEL_BYTES = 64 * 2**20


@dataclass
class QLayer:
    """One int8 layer. `kind` is "conv", "linear", "maxpool", "avgpool" or "flatten".

    conv/linear: `w` int8 (F, C, KH, KW) / (OUT, IN), `b` int32, `rq` the fused requantisation, `stride`,
    `padding` (conv). Pools: `kernel`, `stride`. `scale` is the real value of one unit of this layer's output,
    `name` says which float layer(s) it came from.
    """

    kind: str
    name: str
    scale: float
    w: np.ndarray | None = None
    b: np.ndarray | None = None
    rq: quant.Requant | None = None
    w_scale: float = 0.0
    stride: int = 1
    padding: int = 0
    kernel: int = 0
    float_index: int = -1  # the float layer whose output this layer's output stands for


def run_layer(layer: QLayer, x: np.ndarray, backend: str = "cython", n_threads=None, want_acc=True):
    """One int8 layer on a batch: (int8 output, int32 accumulator for conv/linear else None).

    The Cython path requantises inside its GEMM; with `want_acc=False` it skips the accumulator (None)."""
    if backend == "cython":
        if layer.kind == "conv":
            y = int8_cpu.conv2d_int8(x, layer.w, layer.b, layer.rq, layer.stride, layer.padding,
                                     n_threads=n_threads)
            if not want_acc:
                return y, None
            acc = int8_cpu.conv2d_acc(x, layer.w, layer.b, layer.stride, layer.padding, n_threads=n_threads)
            return y, acc
        if layer.kind == "linear":
            y = int8_cpu.linear_int8(x, layer.w, layer.b, layer.rq, n_threads=n_threads)
            return y, (int8_cpu.linear_acc(x, layer.w, layer.b, n_threads=n_threads) if want_acc else None)
        if layer.kind == "maxpool":
            return int8_cpu.maxpool2d_int8(x, layer.kernel, layer.stride, n_threads=n_threads), None
        if layer.kind == "avgpool":
            return int8_cpu.avgpool2d_int8(x, layer.kernel, layer.stride, n_threads=n_threads), None
    elif backend == "numpy":
        if layer.kind == "conv":
            acc = reference.conv2d_acc_int(x, layer.w, layer.b, layer.stride, layer.padding)
            return reference.requantize(acc, layer.rq), acc
        if layer.kind == "linear":
            acc = reference.conv2d_acc_int(x[:, :, None, None], layer.w[:, :, None, None], layer.b)
            acc = acc[:, :, 0, 0]
            return reference.requantize(acc, layer.rq), acc
        if layer.kind == "maxpool":
            return reference.maxpool2d_int8(x, layer.kernel, layer.stride), None
        if layer.kind == "avgpool":
            return reference.avgpool2d_int8(x, layer.kernel, layer.stride), None
    else:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if layer.kind == "flatten":
        return np.ascontiguousarray(x.reshape(x.shape[0], -1)), None
    raise ValueError(f"unknown int8 layer kind {layer.kind!r}")


@dataclass
class QuantizedModel:
    """An int8 network: the input scale and a list of `QLayer`s, run by the Cython or the NumPy int8 path."""

    input_scale: float
    layers: list[QLayer]
    input_shape: tuple = ()
    calibration: dict = field(default_factory=dict)
    # how uint8 images become the float input ({"mean", "std"} of cnnx.io.preprocess); None: MNIST's
    preprocess: dict | None = None

    def __repr__(self) -> str:
        """One line per layer (kind, name, weight shape, requantisation), not the arrays themselves."""
        lines = [f"QuantizedModel(input_shape={tuple(self.input_shape)}, input_scale={self.input_scale:.6g}, "
                 f"{len(self.layers)} layers)"]
        for i, layer in enumerate(self.layers):
            what = f"  {i}: {layer.kind:<7} {layer.name}"
            if layer.w is not None:
                what += f" w{tuple(layer.w.shape)}"
                if layer.rq is not None:
                    what += f" mult={layer.rq.mult} shift={layer.rq.shift}"
            elif layer.kind in ("maxpool", "avgpool"):
                what += f" kernel={layer.kernel} stride={layer.stride}"
            lines.append(what + f" scale={layer.scale:.4g}")
        return "\n".join(lines)

    def to_float(self, images) -> np.ndarray:
        """uint8 images -> the float model's input, by this model's stored preprocessing."""
        from .io.preprocess import of_meta

        return of_meta({"preprocess": self.preprocess}).to_float(images)

    def quantize_input(self, x) -> np.ndarray:
        """uint8 images (N, 28, 28) / (N, 1, H, W) (normalised by `cnnx.data.to_float`), float32 (N, C, H, W)
        already normalised, or int8 (taken as already quantised) -> int8 (N, C, H, W) at `input_scale`."""
        x = np.asarray(x)
        if x.dtype == np.int8:
            q = x
        elif x.dtype == np.uint8:
            q = int8_cpu.quantize(self.to_float(x), self.input_scale)
        elif x.dtype.kind == "f":
            q = int8_cpu.quantize(x, self.input_scale)  # = quant.quantize, in C for float32
        else:
            raise TypeError(f"input must be uint8 images, float or int8, got dtype {x.dtype}")
        if q.ndim == 3:
            q = q[:, None]
        if self.input_shape and tuple(q.shape[1:]) != tuple(self.input_shape):
            want = ", ".join(map(str, self.input_shape))
            raise ValueError(f"input must have shape (N, {want}), got {q.shape}")
        return np.ascontiguousarray(q)

    def forward_trace(self, x, backend: str = "cython", n_threads=None):
        """(trace, last_acc): trace[0] is the int8 input, trace[i + 1] the int8 output of `layers[i]`;
        last_acc the int32 accumulator of the last conv/linear layer."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        h = self.quantize_input(x)
        trace, last_acc = [h], None
        # only the last conv/linear layer's accumulator is handed back: the others need not be computed
        last = max((i for i, lay in enumerate(self.layers) if lay.kind in ("conv", "linear")), default=-1)
        for i, layer in enumerate(self.layers):
            h, acc = run_layer(layer, h, backend, n_threads, want_acc=(i == last))
            if acc is not None:
                last_acc = acc
            trace.append(h)
        return trace, last_acc

    def forward(self, x, backend: str = "cython", n_threads=None) -> np.ndarray:
        """int8 logits (N, classes)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        h = self.quantize_input(x)
        for layer in self.layers:  # as forward_trace, without keeping the trace or any accumulator
            h, _ = run_layer(layer, h, backend, n_threads, want_acc=False)
        return h

    __call__ = forward

    def predict(self, x, backend: str = "cython", n_threads=None) -> np.ndarray:
        """Class indices: argmax of the int8 logits (first index on ties, as for every path)."""
        return np.argmax(self.forward(x, backend, n_threads), axis=1)

    def dequantized_logits(self, x, backend: str = "cython") -> np.ndarray:
        return quant.dequantize(self.forward(x, backend), self.layers[-1].scale)

    def save(self, path) -> None:
        """One .npz: the int8/int32 arrays plus a JSON description of every layer (written atomically)."""
        import json

        meta = {"format": 1, "input_scale": self.input_scale, "input_shape": list(self.input_shape),
                "calibration": self.calibration, "preprocess": self.preprocess, "layers": []}
        arrays = {}
        for i, layer in enumerate(self.layers):
            d = {k: getattr(layer, k) for k in ("kind", "name", "scale", "w_scale", "stride", "padding",
                                                "kernel", "float_index")}
            if layer.rq is not None:
                d["rq"] = [layer.rq.mult, layer.rq.shift, layer.rq.relu]
                arrays[f"w{i}"], arrays[f"b{i}"] = layer.w, layer.b
            meta["layers"].append(d)
        with atomic_write(path) as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path) -> QuantizedModel:
        """Read a file written by `save`. The file is untrusted: its array sizes are checked before they are
        read, and every field (kinds, scales, requantisation, strides, paddings, kernels, weight shapes and
        dtypes) is validated and the shapes are walked from `input_shape` to the logits, so a file that
        loads can be run (`predict`) without crashing. Anything wrong raises ValueError naming the file."""
        try:
            arrays = read_npz(path, MAX_QMODEL_BYTES, _check_qmodel_member, required=("meta",))
            meta = json_loads(str(arrays["meta"]), "the model description")
            return _qmodel_from(meta, arrays)
        except (NpzError, ValueError, TypeError) as e:
            raise ValueError(f"{path}: not a valid cnnx quantised model: {e}") from None

    def check_shapes(self) -> tuple:
        """Walk `input_shape` through the layers, checking every weight against what reaches it; the output
        shape (classes,) or ValueError naming the layer. Also bounds one image's intermediate sizes."""
        shape = tuple(self.input_shape)
        if len(shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {shape}")
        for i, layer in enumerate(self.layers):
            try:
                shape = _layer_output_shape(layer, shape)
            except (TypeError, ValueError) as e:
                raise ValueError(f"layer {i} ({layer.kind}): {e}") from None
        if len(shape) != 1:
            raise ValueError(f"the last layer gives shape {shape}, not class scores (K,)")
        return shape

    def summary(self) -> str:
        lines = [f"input scale {self.input_scale:.6g}"]
        for i, layer in enumerate(self.layers):
            extra = ""
            if layer.rq is not None:
                extra = (f" w_scale={layer.w_scale:.4g} M={layer.rq.mult} S={layer.rq.shift}"
                         f" relu={layer.rq.relu}")
            lines.append(f"{i:2d} {layer.kind:8s} {layer.name:28s} out_scale={layer.scale:.4g}{extra}")
        return "\n".join(lines)


def _check_qmodel_member(key: str, dtype: np.dtype, shape: tuple) -> None:
    if key == "meta":
        if dtype.kind != "U" or shape != ():
            raise ValueError(f"must be a string, got {dtype}{shape}")
    elif key[:1] in ("w", "b") and key[1:].isdigit():
        want = np.int8 if key[0] == "w" else np.int32
        if dtype != want:
            raise ValueError(f"must be {np.dtype(want).name}, got {dtype}")
    else:
        raise ValueError("is not a member of a cnnx quantised model")


def _finite_float(name: str, v, positive: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError(f"{name} must be a number, got {v!r}")
    v = float(v)
    if not np.isfinite(v) or v < 0 or (positive and v == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a {kind} finite number, got {v}")
    return v


def _qmodel_from(meta, arrays) -> QuantizedModel:
    """A QuantizedModel from `load`'s parsed description and arrays, every field checked."""
    if not isinstance(meta, dict) or meta.get("format") != 1:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"not a cnnx quantised model (format {got!r})")
    raw_layers, calibration = meta.get("layers"), meta.get("calibration", {})
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ValueError("'layers' must be a non-empty list")
    if not isinstance(calibration, dict):
        raise ValueError("'calibration' must be an object")
    input_shape = meta.get("input_shape")
    if not isinstance(input_shape, list) or len(input_shape) != 3:
        raise ValueError(f"input_shape must be [C, H, W], got {input_shape!r}")
    input_shape = tuple(check_positive_int("input_shape", s) for s in input_shape)
    fields = {"kind", "name", "scale", "w_scale", "stride", "padding", "kernel", "float_index", "rq"}
    layers = []
    for i, d in enumerate(raw_layers):
        if not isinstance(d, dict) or set(d) - fields or d.get("kind") not in KINDS:
            raise ValueError(f"layer {i} must be an object with a kind in {KINDS} and only the fields "
                             f"{sorted(fields)}, got {d!r}"[:300])
        layer = QLayer(d["kind"], str(d.get("name", "")), _finite_float(f"layer {i} scale", d.get("scale")),
                       w_scale=_finite_float(f"layer {i} w_scale", d.get("w_scale", 0.0), positive=False),
                       float_index=check_positive_int(f"layer {i} float_index", d.get("float_index", -1),
                                                      minimum=-1))
        if layer.kind in ("conv", "linear"):
            rq = d.get("rq")
            if not isinstance(rq, list) or len(rq) != 3 or not isinstance(rq[2], bool):
                raise ValueError(f"layer {i}: rq must be [mult, shift, relu], got {rq!r}")
            layer.rq = quant.Requant(*rq)  # checks mult and shift are in range
            if f"w{i}" not in arrays or f"b{i}" not in arrays:
                raise ValueError(f"layer {i} ({layer.kind}) has no weights w{i}/b{i}")
            layer.w, layer.b = arrays[f"w{i}"], arrays[f"b{i}"]
        elif "rq" in d:
            raise ValueError(f"layer {i} ({layer.kind}) cannot have a requantisation")
        if layer.kind == "conv":
            layer.stride = check_positive_int(f"layer {i} stride", d.get("stride", 1))
            layer.padding = check_positive_int(f"layer {i} padding", d.get("padding", 0), minimum=0)
        elif layer.kind in ("maxpool", "avgpool"):
            layer.kernel = check_positive_int(f"layer {i} kernel", d.get("kernel"))
            layer.stride = check_positive_int(f"layer {i} stride", d.get("stride", layer.kernel))
        layers.append(layer)
    preprocess = meta.get("preprocess")
    if preprocess is not None:  # checked like every other field: finite mean, std > 0, channels that fit
        from .io.preprocess import Preprocess

        prep = Preprocess.from_dict(preprocess)
        if prep.channels not in (None, input_shape[0]):
            raise ValueError(f"preprocess has {prep.channels} channel statistics, the input {input_shape[0]}")
        preprocess = prep.to_dict()
    qm = QuantizedModel(_finite_float("input_scale", meta.get("input_scale")), layers, input_shape,
                        calibration, preprocess)
    qm.check_shapes()
    return qm


def _layer_output_shape(layer: QLayer, shape: tuple) -> tuple:
    """One image's output shape (no batch) of `layer` on `shape`; ValueError when the layer does not fit."""
    if layer.kind == "flatten":
        return (int(np.prod(shape)),)
    if layer.kind == "linear":
        w, b = layer.w, layer.b
        if w.ndim != 2 or w.size == 0 or b.shape != (w.shape[0],):
            raise ValueError(f"weights must be (OUT, IN) with a bias (OUT,), got {w.shape} and {b.shape}")
        if shape != (w.shape[1],):
            raise ValueError(f"expects ({w.shape[1]},) inputs, gets {shape}")
        quant.check_acc_range(w.shape[1], b)
        return (w.shape[0],)
    if len(shape) != 3:
        raise ValueError(f"expects (C, H, W) inputs, gets {shape}")
    c, h, w_ = shape
    if layer.kind == "conv":
        w, b = layer.w, layer.b
        if w.ndim != 4 or w.size == 0 or b.shape != (w.shape[0],):
            raise ValueError(f"weights must be (F, C, KH, KW) with a bias (F,), got {w.shape} and {b.shape}")
        if w.shape[1] != c:
            raise ValueError(f"expects {w.shape[1]} input channels, gets {c}")
        quant.check_acc_range(int(np.prod(w.shape[1:])), b)
        oh = out_size(h, w.shape[2], layer.stride, layer.padding, what="kernel")
        ow = out_size(w_, w.shape[3], layer.stride, layer.padding, what="kernel")
        out = (w.shape[0], oh, ow)
    else:
        oh = out_size(h, layer.kernel, layer.stride, 0, what="pooling window")
        ow = out_size(w_, layer.kernel, layer.stride, 0, what="pooling window")
        out = (c, oh, ow)
    check_alloc(f"one image through a {layer.kind} layer", (out, np.int32))
    return out


def _check_finite_layer(name: str, **arrays) -> None:
    for what, a in arrays.items():
        bad = int((~np.isfinite(a)).sum())
        if bad:
            raise ValueError(f"{name}: its {what} hold {bad} non-finite value(s) (NaN/inf); "
                             "refusing to quantise")


# ------------------------------------------------------------------------------------------------------------
# building a QuantizedModel from a float Sequential
# ------------------------------------------------------------------------------------------------------------


def layers_of(model) -> list:
    """The layers of a Sequential-like model, in order."""
    for attr in ("layers", "_layers", "modules"):
        seq = getattr(model, attr, None)
        if isinstance(seq, list | tuple):
            return list(seq)
    try:
        return [model[i] for i in range(len(model))]
    except TypeError as e:
        raise TypeError(f"cannot list the layers of {type(model).__name__}: expected a Sequential") from e


def _single(name: str, value, layer) -> int:
    if isinstance(value, tuple | list):
        if len(set(value)) != 1:
            raise ValueError(f"{layer!r}: the int8 path needs equal {name} on both axes, got {value}")
        value = value[0]
    return int(value)


def _fixed_input_scale(prep) -> float:
    return prep.max_abs() / 127.0


def _as_float_input(x, prep) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return prep.to_float(x)
    if x.dtype.kind != "f":
        raise TypeError(f"calibration images must be uint8 or float, got {x.dtype}")
    x = x.astype(np.float32)
    return x[:, None] if x.ndim == 3 else x


def quantize_model(model, calib_images, percentile: float = 99.99, input_scale: float | None = None,
                   batch_size: int = 256, preprocess=None) -> QuantizedModel:
    """Post-training quantisation of a float `Sequential` calibrated on `calib_images` (uint8 images, turned
    into floats by `preprocess` (a `cnnx.io.preprocess.Preprocess`; None: MNIST's), or normalised float32
    (N, C, H, W)); see the module docstring for the rules. The quantised model keeps `preprocess`."""
    from .io.preprocess import MNIST

    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    prep = MNIST if preprocess is None else preprocess
    float_layers = layers_of(model)
    x_cal = _as_float_input(calib_images, prep)
    if x_cal.ndim != 4 or x_cal.shape[0] == 0:
        raise ValueError(f"calibration images must be a non-empty (N, C, H, W) batch, got {x_cal.shape}")
    if hasattr(model, "eval"):
        model.eval()

    # 1. fuse: conv/linear (+ ReLU), pools, flatten; refuse what has no int8 form
    groups = []  # (kind, float_layer, index of the float layer whose output is this group's output, relu)
    i = 0
    while i < len(float_layers):
        layer = float_layers[i]
        kind = type(layer).__name__
        if kind in ("Conv2d", "Linear"):
            nxt = i + 1
            while nxt < len(float_layers) and type(float_layers[nxt]).__name__ == "Dropout":
                nxt += 1
            relu = nxt < len(float_layers) and type(float_layers[nxt]).__name__ == "ReLU"
            end = nxt if relu else i
            groups.append(("conv" if kind == "Conv2d" else "linear", layer, end, relu))
            i = end + 1
            continue
        if kind == "MaxPool2d":
            groups.append(("maxpool", layer, i, False))
        elif kind == "AvgPool2d":
            groups.append(("avgpool", layer, i, False))
        elif kind == "Flatten":
            groups.append(("flatten", layer, i, False))
        elif kind == "Dropout":
            pass  # identity at inference
        elif kind == "ReLU":
            raise ValueError(f"layer {i} (ReLU) does not directly follow a Conv2d/Linear, so it cannot be "
                             "fused into the int8 requantisation; the int8 path supports only fused ReLUs")
        else:
            hint = (" (for an int8/RTL form, train a ReLU network: the zoo's lenet5-classic-relu is "
                    "lenet5-classic with ReLU for Tanh)" if kind in ("Tanh", "Sigmoid") else "")
            raise ValueError(f"layer {i} ({layer!r}) has no int8 form: the int8 path supports Conv2d, "
                             "Linear, ReLU (fused after Conv2d/Linear), MaxPool2d, AvgPool2d, Flatten, "
                             f"Dropout{hint}")
        i += 1
    last_dense = max((g for g, grp in enumerate(groups) if grp[0] in ("conv", "linear")), default=None)
    if last_dense is None:
        raise ValueError("the model has no Conv2d or Linear layer to quantise")

    # 2. float activations at each group's output, over the calibration set (batched to bound memory)
    wanted = {grp[2] for grp in groups}
    acts: dict[int, list[np.ndarray]] = {k: [] for k in wanted}
    for start in range(0, x_cal.shape[0], batch_size):
        h = x_cal[start : start + batch_size]
        for j, layer in enumerate(float_layers):
            h = layer.forward(h)
            if j in wanted:
                acts[j].append(np.abs(np.asarray(h, np.float32)).ravel())
    stats = {k: np.concatenate(v) for k, v in acts.items()}

    # 3. the int8 layers
    s_in = _fixed_input_scale(prep) if input_scale is None else float(input_scale)
    input_scale_value = s_in
    qlayers: list[QLayer] = []
    calibration = {"percentile": percentile, "n_images": int(x_cal.shape[0]), "activation_max": []}
    for g, (kind, layer, end, relu) in enumerate(groups):
        name = type(layer).__name__ + ("+ReLU" if relu else "")
        if kind in ("conv", "linear"):
            w = np.asarray(layer.weight.data, np.float64)
            bias = getattr(layer, "bias", None)
            b = np.zeros(w.shape[0]) if bias is None else np.asarray(getattr(bias, "data", bias), np.float64)
            _check_finite_layer(f"layer {end} ({name})", weights=w, biases=b)
            if not np.isfinite(stats[end]).all():
                raise ValueError(f"layer {end} ({name}): the calibration activations hold NaN/inf; "
                                 "refusing to quantise")
            s_w = quant.symmetric_scale(w)
            s_out = quant.symmetric_scale(stats[end], 100.0 if g == last_dense else percentile)
            calibration["activation_max"].append(float(stats[end].max()))
            wq = quant.quantize(w, s_w)
            bq = quant.quantize_bias(b, s_in, s_w)
            rq = quant.multiplier_from_scale(s_in * s_w / s_out, relu=relu)
            ql = QLayer(kind, name, s_out, w=wq, b=bq, rq=rq, w_scale=s_w, float_index=end)
            if kind == "conv":
                if getattr(layer, "floor_mode", False):
                    raise ValueError(f"{layer!r}: floor_mode convolutions are not supported by the int8 path")
                ql.stride = _single("stride", layer.stride, layer)
                ql.padding = _single("padding", layer.padding, layer)
            quant.check_acc_range(int(np.prod(wq.shape[1:])), bq)
            qlayers.append(ql)
            s_in = s_out
        elif kind in ("maxpool", "avgpool"):
            k = _single("kernel_size", layer.kernel_size, layer)
            stride = getattr(layer, "stride", None)
            stride = k if stride is None else _single("stride", stride, layer)
            qlayers.append(QLayer(kind, name, s_in, kernel=k, stride=stride, float_index=end))
        else:
            qlayers.append(QLayer("flatten", name, s_in, float_index=end))
    return QuantizedModel(input_scale_value, qlayers, tuple(x_cal.shape[1:]), calibration,
                          None if preprocess is None else preprocess.to_dict())
