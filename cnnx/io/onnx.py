"""ONNX -> a cnnx `nn.Sequential`: the chain of layers a CNN for this toolkit is made of, nothing more.

Supported (default domain, opset >= 13, NCHW float input (N, C, H, W)): Conv, Gemm, MatMul (+ Add of a bias),
Relu, MaxPool, AveragePool, Flatten (axis 1), Reshape to (N, features), Dropout and Identity (no-ops at
inference). A window that does not fit exactly is floored, as ONNX does (the layer gets floor_mode=True, which
the float path runs and the int8 path refuses). The graph must be a chain: each node takes the previous node's
output as its data input, with its weights as initializers (or Constant nodes). Anything else (another op,
dilations != 1, group != 1, auto_pad, ceil_mode, asymmetric or pooling padding, transA, a branch, ...) is
refused with one `OnnxImportError` naming the node.

ONNX files are untrusted: the file's size is checked before it is parsed; tensors stored as external data are
read only from files inside the model's own folder (an absolute path, `..`, or a symbolic link that leads out
is refused), and every tensor's dtype, shape and byte count is checked before it becomes an array.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import nn

MAX_FILE_BYTES = 512 << 20  # the .onnx file itself
MAX_TENSOR_BYTES = 512 << 20  # one weight tensor after conversion
MIN_OPSET = 13


class OnnxImportError(ValueError):
    """The ONNX file cannot become a cnnx model; the message names the node or tensor at fault."""


def _onnx():
    try:
        import onnx
    except ImportError as e:  # an optional extra
        raise OnnxImportError("importing ONNX needs the onnx package: pip install 'cnnx[onnx]'") from e
    return onnx


def _node_name(i: int, node) -> str:
    return f"node {node.name!r} ({node.op_type}, #{i})" if node.name else f"node #{i} ({node.op_type})"


# ---------------------------------------------------------------------------------------------------------
# tensors
# ---------------------------------------------------------------------------------------------------------
_FLOATS = {1: np.float32, 10: np.float16, 11: np.float64}  # TensorProto.FLOAT, FLOAT16, DOUBLE
_INTS = {6: np.int32, 7: np.int64, 9: np.bool_}  # INT32, INT64 (Reshape's shape), BOOL (Dropout's mode)


def _check_external(tensor, base: Path) -> None:
    """Refuse external data that is not a regular file inside the model's folder, or that is too short."""
    entries = {e.key: e.value for e in tensor.external_data}
    loc = entries.get("location", "")
    p = Path(loc)
    if not loc or p.is_absolute() or ".." in p.parts:
        raise OnnxImportError(f"tensor {tensor.name!r}: external data location {loc!r} is not a plain "
                              "relative path inside the model's folder; refused")
    target = (base / p).resolve()
    if not target.is_relative_to(base.resolve()):
        raise OnnxImportError(f"tensor {tensor.name!r}: external data {loc!r} leads outside the model's "
                              f"folder ({target}); refused")
    if not target.is_file():
        raise OnnxImportError(f"tensor {tensor.name!r}: external data file {loc!r} not found next to the "
                              "model")
    try:
        offset, length = int(entries.get("offset", 0)), int(entries.get("length", -1))
    except ValueError:
        raise OnnxImportError(f"tensor {tensor.name!r}: malformed external data offset/length") from None
    size = target.stat().st_size
    if offset < 0 or offset > size or (length >= 0 and offset + length > size):
        raise OnnxImportError(f"tensor {tensor.name!r}: external data ({offset}+{length} bytes) runs past "
                              f"the end of {loc!r} ({size} bytes)")


def _to_array(tensor, what: str) -> np.ndarray:
    """A TensorProto -> ndarray, after checking its dtype, shape and stored size."""
    from onnx import numpy_helper

    dtype = _FLOATS.get(tensor.data_type) or _INTS.get(tensor.data_type)
    if dtype is None:
        raise OnnxImportError(f"{what}: tensor {tensor.name!r} has ONNX data type {tensor.data_type}; only "
                              "float32/float16/float64 weights (and int32/int64 shapes) are read")
    dims = [int(d) for d in tensor.dims]
    if any(d < 0 for d in dims) or len(dims) > 8:
        raise OnnxImportError(f"{what}: tensor {tensor.name!r} has bad dims {dims}")
    count = int(np.prod(dims, dtype=np.float64)) if dims else 1
    nbytes = count * np.dtype(dtype).itemsize
    if nbytes > MAX_TENSOR_BYTES:
        raise OnnxImportError(f"{what}: tensor {tensor.name!r} would take {nbytes} bytes (limit "
                              f"{MAX_TENSOR_BYTES})")
    if tensor.HasField("raw_data"):
        if len(tensor.raw_data) != nbytes:
            raise OnnxImportError(f"{what}: tensor {tensor.name!r} holds {len(tensor.raw_data)} bytes, its "
                                  f"dims {dims} need {nbytes}")
    else:
        field = {1: "float_data", 10: "int32_data", 11: "double_data", 6: "int32_data", 7: "int64_data",
                 9: "int32_data"}
        stored = len(getattr(tensor, field[tensor.data_type]))
        if stored != count:
            raise OnnxImportError(f"{what}: tensor {tensor.name!r} holds {stored} values, its dims {dims} "
                                  f"need {count}")
    try:
        a = numpy_helper.to_array(tensor)
    except Exception as e:
        raise OnnxImportError(f"{what}: tensor {tensor.name!r} cannot be read: {e}") from e
    if a.shape != tuple(dims):
        raise OnnxImportError(f"{what}: tensor {tensor.name!r} read as {a.shape}, dims say {dims}")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise OnnxImportError(f"{what}: tensor {tensor.name!r} holds NaN or infinite values")
        a = a.astype(np.float32)
    return a


# ---------------------------------------------------------------------------------------------------------
# attributes
# ---------------------------------------------------------------------------------------------------------
def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _refuse(where: str, msg: str):
    raise OnnxImportError(f"{where}: {msg}; cnnx cannot import it")


def _only(where: str, attrs: dict, allowed: dict) -> None:
    """Every attribute must be known, and those in `allowed` must have one of the allowed values."""
    for k, v in attrs.items():
        if k not in allowed:
            _refuse(where, f"attribute {k}={v!r} is not supported")
        ok = allowed[k]
        if ok is not None and not ok(v):
            _refuse(where, f"attribute {k}={v!r} is not supported")


def _ones(v) -> bool:
    return all(int(x) == 1 for x in v)


def _notset(v) -> bool:
    return (v.decode() if isinstance(v, bytes) else str(v)) in ("NOTSET", "")


def _pads2(where: str, pads) -> tuple[int, int]:
    p = [int(x) for x in pads]
    if len(p) != 4 or p[0] != p[2] or p[1] != p[3] or min(p) < 0:
        _refuse(where, f"pads={p} (only symmetric padding [t, l, t, l] is supported)")
    return p[0], p[1]


# ---------------------------------------------------------------------------------------------------------
# the graph
# ---------------------------------------------------------------------------------------------------------
def _load_proto(path: Path):
    onnx = _onnx()
    if not path.is_file():
        raise OnnxImportError(f"no ONNX file at {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise OnnxImportError(f"{path} is {size} bytes; the limit is {MAX_FILE_BYTES}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # DecodeError and friends
        raise OnnxImportError(f"{path} is not a readable ONNX file: {e}") from e
    opsets = {o.domain or "ai.onnx": int(o.version) for o in model.opset_import}
    v = opsets.get("ai.onnx")
    if v is None or v < MIN_OPSET:
        raise OnnxImportError(f"{path} uses opset {v}; cnnx imports opset >= {MIN_OPSET} (re-export with "
                              f"opset_version={MIN_OPSET} or later)")
    base = path.parent
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    for n in model.graph.node:
        for a in n.attribute:
            if a.HasField("t") and a.t.data_location == onnx.TensorProto.EXTERNAL:
                external.append(a.t)
    if external:
        for t in external:
            _check_external(t, base)
        from onnx.external_data_helper import load_external_data_for_tensor

        for t in external:
            try:
                load_external_data_for_tensor(t, str(base))
            except Exception as e:
                raise OnnxImportError(f"tensor {t.name!r}: cannot read its external data: {e}") from e
            t.data_location = onnx.TensorProto.DEFAULT
            del t.external_data[:]
    return model


def _input_shape(graph, consts: dict) -> tuple[str, tuple[int, int, int]]:
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise OnnxImportError(f"the graph has {len(inputs)} data inputs ({[i.name for i in inputs]}); cnnx "
                              "imports networks with one image input")
    inp = inputs[0]
    tt = inp.type.tensor_type
    if tt.elem_type != 1:
        raise OnnxImportError(f"input {inp.name!r} has element type {tt.elem_type}; cnnx imports float32 "
                              "inputs")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    if len(dims) != 4 or any(d is None or d < 1 for d in dims[1:]):
        raise OnnxImportError(f"input {inp.name!r} has shape {dims}; cnnx imports NCHW image inputs "
                              "(N, C, H, W) with C, H, W fixed")
    return inp.name, (int(dims[1]), int(dims[2]), int(dims[3]))


def load_onnx(path: str | os.PathLike) -> tuple[nn.Sequential, tuple[int, int, int]]:
    """(model, input shape (C, H, W)) from an ONNX file; OnnxImportError for anything unsupported."""
    path = Path(path)
    proto = _load_proto(path)
    graph = proto.graph
    consts = {t.name: t for t in graph.initializer}
    in_name, in_shape = _input_shape(graph, consts)
    arrays: dict[str, np.ndarray] = {}

    def const(name: str, where: str) -> np.ndarray:
        if name not in arrays:
            if name not in consts:
                _refuse(where, f"input {name!r} must be a constant (an initializer or a Constant node)")
            arrays[name] = _to_array(consts[name], where)
        return arrays[name]

    layers: list[nn.Module] = []
    current, shape = in_name, in_shape  # the chain's tensor and its shape without the batch
    nodes = list(graph.node)
    skip = set()
    for i, node in enumerate(nodes):
        if i in skip:
            continue
        where = _node_name(i, node)
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            _refuse(where, f"operator domain {node.domain!r}")
        if op == "Constant":
            a = _attrs(node)
            if set(a) != {"value"} or len(node.output) != 1:
                _refuse(where, f"Constant with attributes {sorted(a)} (only 'value' is supported)")
            consts[node.output[0]] = node.attribute[0].t
            continue
        if not node.input or node.input[0] != current:
            _refuse(where, f"its data input {list(node.input)[:1]} is not the previous layer's output "
                    f"{current!r} (cnnx imports a chain of layers)")
        a = _attrs(node)
        if op == "Conv":
            _only(where, a, {"kernel_shape": None, "strides": None, "pads": None, "dilations": _ones,
                             "group": lambda g: int(g) == 1, "auto_pad": _notset})
            if len(node.input) not in (2, 3):
                _refuse(where, f"{len(node.input)} inputs")
            w = const(node.input[1], where)
            if w.ndim != 4 or w.shape[1] != shape[0]:
                _refuse(where, f"weight shape {w.shape} for an input of {shape[0]} channels")
            if "kernel_shape" in a and tuple(a["kernel_shape"]) != w.shape[2:]:
                _refuse(where, f"kernel_shape {a['kernel_shape']} differs from the weight's {w.shape[2:]}")
            b = const(node.input[2], where) if len(node.input) == 3 and node.input[2] else None
            if b is not None and b.shape != (w.shape[0],):
                _refuse(where, f"bias shape {b.shape}, expected ({w.shape[0]},)")
            stride = tuple(int(s) for s in a.get("strides", (1, 1)))
            pad = _pads2(where, a.get("pads", (0, 0, 0, 0)))
            if len(stride) != 2:
                _refuse(where, f"strides={list(stride)} (a 2-D convolution needs two)")
            layer = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], stride=stride, padding=pad,
                              bias=b is not None, floor_mode=_floors(shape, w.shape[2:], stride, pad))
            layer.weight.data = np.ascontiguousarray(w)
            if b is not None:
                layer.bias.data = np.ascontiguousarray(b)
        elif op == "Gemm":
            _only(where, a, {"alpha": None, "beta": None, "transA": lambda t: int(t) == 0,
                             "transB": lambda t: int(t) in (0, 1)})
            if len(shape) != 1:
                _refuse(where, f"input of shape {shape}: flatten before a Gemm")
            w = const(node.input[1], where)
            if w.ndim != 2:
                _refuse(where, f"weight of shape {w.shape}")
            w = w if int(a.get("transB", 0)) == 1 else w.T  # cnnx's Linear holds (out, in), as transB=1
            w = w * np.float32(a.get("alpha", 1.0))
            b = None
            if len(node.input) == 3 and node.input[2]:
                b = const(node.input[2], where).reshape(-1) * np.float32(a.get("beta", 1.0))
                if b.shape != (w.shape[0],):
                    _refuse(where, f"bias of {b.size} values for {w.shape[0]} outputs (only a per-output "
                            "bias is supported)")
            layer = _linear(where, w, b, shape)
        elif op == "MatMul":
            w = const(node.input[1], where)
            if w.ndim != 2 or len(shape) != 1:
                _refuse(where, f"weight {w.shape} on input {shape} (only (N, IN) @ (IN, OUT) is supported)")
            b = None
            nxt = nodes[i + 1] if i + 1 < len(nodes) else None
            if nxt is not None and nxt.op_type == "Add" and node.output[0] in nxt.input:
                other = [x for x in nxt.input if x != node.output[0]]
                if len(other) == 1 and (other[0] in consts or other[0] in arrays):
                    b = const(other[0], _node_name(i + 1, nxt)).reshape(-1)
                    if b.shape != (w.shape[1],):
                        _refuse(_node_name(i + 1, nxt), f"bias of {b.size} values for {w.shape[1]} outputs")
                    skip.add(i + 1)
                    node = nxt  # the chain continues from the Add's output
            layer = _linear(where, np.ascontiguousarray(w.T), b, shape)
        elif op == "Add":
            _refuse(where, "an Add that is not the bias of a MatMul")
        elif op == "Relu":
            _only(where, a, {})
            layer = nn.ReLU()
        elif op in ("MaxPool", "AveragePool"):
            allowed = {"kernel_shape": None, "strides": None, "pads": lambda p: all(int(x) == 0 for x in p),
                       "auto_pad": _notset, "ceil_mode": lambda c: int(c) == 0}
            if op == "MaxPool":
                allowed.update({"dilations": _ones, "storage_order": lambda s: int(s) == 0})
            else:  # with zero padding count_include_pad changes nothing
                allowed.update({"count_include_pad": None, "dilations": _ones})
            _only(where, a, allowed)
            if len(node.output) != 1:
                _refuse(where, "MaxPool's Indices output")
            k = tuple(int(x) for x in a.get("kernel_shape", ()))
            if len(k) != 2:
                _refuse(where, f"kernel_shape={list(k)} (a 2-D pooling needs two)")
            s = tuple(int(x) for x in a.get("strides", (1, 1)))
            cls = nn.MaxPool2d if op == "MaxPool" else nn.AvgPool2d
            layer = cls(k, stride=s, floor_mode=_floors(shape, k, s, (0, 0)))
        elif op == "Flatten":
            _only(where, a, {"axis": lambda ax: int(ax) == 1})
            layer = nn.Flatten()
        elif op == "Reshape":
            _only(where, a, {"allowzero": lambda z: int(z) == 0})
            target = [int(x) for x in const(node.input[1], where).reshape(-1)]
            feat = int(np.prod(shape))
            if len(target) != 2 or target[0] not in (0, -1, 1) or target[1] not in (-1, feat) or \
                    target == [-1, -1]:
                _refuse(where, f"Reshape to {target} of a {shape} input (only a flatten to (N, {feat}))")
            layer = nn.Flatten() if len(shape) > 1 else None
        elif op in ("Dropout", "Identity"):
            if op == "Dropout":
                _only(where, a, {"seed": None, "ratio": None})
                if len(node.input) == 3 and node.input[2]:
                    mode = const(node.input[2], where) if node.input[2] in consts else None
                    if mode is None or bool(np.asarray(mode).reshape(-1)[0]):
                        _refuse(where, "training_mode is not a constant False")
            layer = None
        else:
            _refuse(where, f"operator {op}")
        if layer is not None:
            try:
                shape = tuple(layer.output_shape(shape))
            except ValueError as e:
                _refuse(where, f"it does not fit its input of shape {shape}: {e}")
            layers.append(layer)
        current = node.output[0]
    outputs = [o.name for o in graph.output]
    if outputs != [current]:
        raise OnnxImportError(f"the graph's outputs {outputs} are not the chain's last tensor {current!r}")
    if not layers:
        raise OnnxImportError(f"{path} holds no layers")
    return nn.Sequential(*layers), in_shape


def _floors(shape, kernel, stride, pad) -> bool:
    """ONNX floors a window that does not fit (ceil_mode 0); cnnx layers do so only with floor_mode=True,
    which the int8 path refuses, so it is set only for the layers that need it."""
    if len(shape) != 3 or len(stride) != 2:
        return False  # the layer's own shape check reports it
    return any((shape[1 + d] + 2 * pad[d] - kernel[d]) % stride[d] != 0 for d in range(2)
               if shape[1 + d] + 2 * pad[d] >= kernel[d])


def _linear(where: str, w: np.ndarray, b, shape) -> nn.Linear:
    if w.shape[1] != shape[0]:
        _refuse(where, f"weight {w.shape} expects {w.shape[1]} inputs, the previous layer gives {shape[0]}")
    layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    layer.weight.data = np.ascontiguousarray(w, dtype=np.float32)
    if b is not None:
        layer.bias.data = np.ascontiguousarray(b, dtype=np.float32)
    return layer
