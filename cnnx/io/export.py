"""Export a verified int8 network for an FPGA flow: `cnnx export RUN_DIR --out DIR [--images N]`.

What DIR holds
  layers.json          the layer descriptors: kind, shapes, stride/padding/kernel, requantisation (mult,
                       shift, relu), the core runs (tiles) of each layer and its expected cycles per image
  model.h              every layer's weights, biases and requantisation constants as C arrays
  weights/layer<i>_w.hex, layer<i>_b.hex   the weights (int8, (F, C, KH, KW) order, one byte per line) and
                       biases (int32, one per line) as `$readmemh` files
  golden/act<i>.hex    N golden vectors from the int8 golden model (cnnx.reference via cnnx.ptq's
                       "numpy" backend): act0 the int8 input, act<i+1> layer i's output, one byte per
                       line, image-major
  program/layer<i>.txt the host-interface traffic of layer i on the cores, as the drivers (cnnx.sim) and the
                       tiler (cnnx.compile.tiling) produce it: register writes, buffer writes whose bytes are
                       given as indices into the weight/bias files, and runs whose input bytes index the
                       layer's input vector and whose output bytes index its output vector, with the cycles
                       the cycle model (cnnx.cycles) expects for each run
  rtl/*.v, tb.cpp, Makefile   a standalone Verilator testbench (no Python): `make` builds both cores with
                       the exported parameters, drives every layer's program for every image from the golden
                       input of that layer, and checks every output byte and every run's cycle counter,
                       exiting non-zero on the first mismatch.
The traffic is recorded by running the real driver and tiler code against a recording backend, three times
with probe values (the 3 bytes of each element's index + 1), so the export cannot drift from the drivers.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np

from .. import cycles as cycle_model
from .._atomic import atomic_write
from ..compile import tiling

MAX_PROBE = 2**24 - 2  # elements a probe of three bytes can index


class _Recorder:
    """A driver backend (the interface of cnnx.sim.drivers._FastBackend) that records the traffic and answers
    each run with probe bytes: byte `probe` of (output position + 1)."""

    def __init__(self, kind: str, rows: int, cols: int, lanes: int, probe: int):
        self.kind, self.rows, self.cols, self.lanes, self.probe = kind, rows, cols, lanes, probe
        self.ops: list = []
        self.regs: dict[int, int] = {}
        self.out_pos = 0

    def reset(self):
        pass

    def close(self):
        pass

    def config(self, regs):
        regs = [(int(a), int(v)) for a, v in regs]
        self.regs.update(regs)
        self.ops.append(("cfg", regs))

    def write(self, sel, words, addr0=0):
        self.ops.append(("wr", int(sel), int(addr0), np.array(words, np.uint32)))

    def cycles(self) -> int:
        r = self.regs
        if self.kind == "conv":
            return cycle_model.conv_cycles(*(r[k] for k in range(8)), rows=self.rows, cols=self.cols)
        return cycle_model.pool_cycles(r[0], r[1], r[2], r[3], r[4], lanes=self.lanes)

    def run_batch(self, in_sel, x_words, out_addrs, max_cycles):
        n, k = x_words.shape[0], len(out_addrs)
        base = self.out_pos
        self.out_pos += 4 * k
        code = (((base + np.arange(4 * k) + 1) >> (8 * self.probe)) & 0xFF).astype(np.uint8)
        out = np.tile(code.view("<u4").astype(np.uint32), (n, 1))
        cyc = self.cycles()
        self.ops.append(("run", int(in_sel), np.array(x_words[0], np.uint32), np.array(out_addrs, np.uint32),
                         cyc, base, k))
        return n, out, np.full(n, cyc, np.uint32), np.zeros(n, np.uint32)


def _fake_core(kind, rows, cols, lanes, params, rec):
    """A ConvCore / PoolCore whose backend is `rec` (no simulator is built or loaded)."""
    from cnnx.sim.drivers import ConvCore, PoolCore

    core = object.__new__(ConvCore if kind == "conv" else PoolCore)
    core.driver, core.build, core._be, core.last_cycles = "record", None, rec, []
    core.params = dict(params)
    if kind == "conv":
        core.rows, core.cols, core.banks, core.last_mac_count = rows, cols, 1 << (cols - 1).bit_length(), 0
    else:
        core.lanes, core.banks = lanes, 1 << (lanes - 1).bit_length()
    return core


def _code(n: int, probe: int) -> np.ndarray:
    return (((np.arange(n, dtype=np.int64) + 1) >> (8 * probe)) & 0xFF).astype(np.uint8).view(np.int8)


def _decode(parts) -> np.ndarray:
    """Three probe passes' bytes -> element index (-1: a zero the driver pads with)."""
    b = [np.asarray(p).view(np.uint8).astype(np.int64) for p in parts]
    return (b[0] | (b[1] << 8) | (b[2] << 16)) - 1


def layer_program(layer, in_shape, rows, cols, buffers, lanes=cycle_model.POOL_LANES) -> list:
    """The host traffic of one int8 layer (cnnx.ptq.QLayer with input shape `in_shape`, one image), with
    every data byte as an index into the layer's weights / biases / input / output (see the module
    docstring). Raises ValueError for a layer the tiler refuses."""
    kind = "conv" if layer.kind in ("conv", "linear") else "pool"
    params = buffers   # the conv core's parameters, or the pool core's for a pool layer
    n_in = int(np.prod(in_shape))
    if n_in > MAX_PROBE or (layer.w is not None and layer.w.size > MAX_PROBE):
        raise ValueError(f"layer {layer.name} is too large to export (more than {MAX_PROBE} elements)")
    if layer.kind in ("conv", "linear"):
        C, H, W = in_shape if layer.kind == "conv" else (int(np.prod(in_shape)), 1, 1)
        F, _, KH, KW = layer.w.shape if layer.kind == "conv" else (*layer.w.shape, 1, 1)
        s, p = (layer.stride, layer.padding) if layer.kind == "conv" else (1, 0)
        if any(t.raw for t in tiling.plan_conv(C, H, W, F, KH, KW, s, p, rows, cols, buffers)):
            raise ValueError(f"layer {layer.name}: one filter ({C}*{KH}*{KW} weights) does not fit a weight "
                             "bank, so it runs split by input channels with host-side int32 sums, which the "
                             "exported standalone testbench does not do; export with a larger w buffer")
    passes = []
    for probe in range(3):
        rec = _Recorder(kind, rows, cols, lanes, probe)
        core = _fake_core(kind, rows, cols, lanes, params, rec)
        x = _code(n_in, probe).reshape(1, *in_shape)
        if layer.kind in ("conv", "linear"):
            w = _code(layer.w.size, probe).reshape(layer.w.shape)
            b = np.arange(1, layer.w.shape[0] + 1, dtype=np.int32)
            if layer.kind == "conv":
                y, _ = tiling.run_conv(core, x, w, b, layer.rq, layer.stride, layer.padding)
            else:
                y, _ = tiling.run_linear(core, x.reshape(1, -1), w, b, layer.rq)
        else:
            mode = "max" if layer.kind == "maxpool" else "avg"
            y, _ = tiling.run_pool(core, x, layer.kernel, stride=layer.stride, mode=mode)
        passes.append((rec.ops, y.reshape(-1)))
    ops0 = passes[0][0]
    y_pos = _decode([p[1] for p in passes])     # output element -> position in the runs' output bytes
    n_pos = sum(op[6] * 4 for op in ops0 if op[0] == "run")
    if (y_pos < 0).any() or len(np.unique(y_pos)) != y_pos.size:
        raise AssertionError(f"layer {layer.name}: the probe did not map every output to one position")
    out_map = np.full(n_pos, -1, np.int64)
    out_map[y_pos] = np.arange(y_pos.size)
    program = []
    for j, op in enumerate(ops0):
        if op[0] == "cfg":
            program.append(op)
        elif op[0] == "wr":
            if op[1] == 2:   # bias entries: the probe bias is index + 1
                program.append(("wr", 2, op[2], op[3].view(np.int32).astype(np.int64) - 1))
            else:
                idx = _decode([p[0][j][3].view(np.uint8) for p in passes])
                program.append(("wr", op[1], op[2], idx))
        else:
            _, in_sel, _, addrs, cyc, base, k = op
            idx = _decode([p[0][j][2].view(np.uint8) for p in passes])
            program.append(("run", in_sel, idx, addrs, cyc, out_map[base : base + 4 * k]))
    return program


def _write_program(path: Path, program) -> None:
    lines = []
    for op in program:
        if op[0] == "cfg":
            lines.append(f"cfg {len(op[1])}")
            lines += [f"{a} {v}" for a, v in op[1]]
        elif op[0] == "wr":
            per = 1 if op[1] == 2 else 4
            lines.append(f"wr {op[1]} {op[2]} {len(op[3]) // per}")
            lines.append(" ".join(map(str, op[3].tolist())))
        else:
            _, in_sel, idx, addrs, cyc, omap = op
            lines.append(f"run {in_sel} {len(idx) // 4} {len(addrs)} {cyc}")
            lines.append(" ".join(map(str, idx.tolist())))
            lines.append(" ".join(map(str, addrs.tolist())))
            lines.append(" ".join(map(str, omap.tolist())))
    lines.append("end")
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _hex_bytes(a: np.ndarray) -> str:
    return "\n".join(f"{v:02x}" for v in np.asarray(a).reshape(-1).view(np.uint8).tolist()) + "\n"


def _hex_words(a: np.ndarray) -> str:
    return "\n".join(f"{v:08x}" for v in np.asarray(a, np.int32).reshape(-1).view(np.uint32).tolist()) + "\n"


def _c_array(ctype: str, name: str, values) -> str:
    vals = [str(int(v)) for v in np.asarray(values).reshape(-1).tolist()]
    body = ",\n".join("    " + ", ".join(vals[i : i + 16]) for i in range(0, len(vals), 16))
    return f"static const {ctype} {name}[{len(vals)}] = {{\n{body}\n}};\n"


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def export_model(qmodel, images: np.ndarray, out, *, array=(8, 8), buffers=None) -> dict:
    """Write the export of `qmodel` (cnnx.ptq.QuantizedModel) with the golden vectors of `images` (uint8, as
    cosim takes them) into directory `out`; returns the descriptor dict also written as layers.json."""
    from cnnx.sim import builder

    rows, cols = array
    pool_buffers = tiling.pool_params(None if buffers is None else tiling.parse_buffers(buffers))
    buffers = tiling.parse_buffers(buffers)
    tiling.check_buffers(buffers, rows, cols)
    out = Path(out)
    for sub in ("weights", "golden", "program", "rtl"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    x = qmodel.quantize_input(images)
    trace, _ = qmodel.forward_trace(x, "numpy")
    n = x.shape[0]
    layers, header = [], ["// cnnx export: int8 weights, biases and requantisation of every layer\n",
                          "#pragma once\n#include <stdint.h>\n\n"]
    for i, act in enumerate(trace):
        _write_text(out / "golden" / f"act{i}.hex", _hex_bytes(act))
    for i, layer in enumerate(qmodel.layers):
        in_shape, out_shape = tuple(trace[i].shape[1:]), tuple(trace[i + 1].shape[1:])
        d = {"index": i, "kind": layer.kind, "name": layer.name, "in_shape": list(in_shape),
             "out_shape": list(out_shape), "in_vector": f"golden/act{i}.hex",
             "out_vector": f"golden/act{i + 1}.hex"}
        if layer.kind == "flatten":
            layers.append(d)
            continue
        core = "conv" if layer.kind in ("conv", "linear") else "pool"
        program = layer_program(layer, in_shape, rows, cols, buffers if core == "conv" else pool_buffers)
        _write_program(out / "program" / f"layer{i}.txt", program)
        runs = [op for op in program if op[0] == "run"]
        d.update(core=core, program=f"program/layer{i}.txt", runs=len(runs),
                 expected_cycles_per_image=int(sum(op[4] for op in runs)))
        if layer.kind in ("conv", "linear"):
            d.update(weight_shape=list(layer.w.shape), mult=int(layer.rq.mult), shift=int(layer.rq.shift),
                     relu=bool(layer.rq.relu), weights=f"weights/layer{i}_w.hex",
                     bias=f"weights/layer{i}_b.hex")
            if layer.kind == "conv":
                d.update(stride=int(layer.stride), padding=int(layer.padding))
            _write_text(out / "weights" / f"layer{i}_w.hex", _hex_bytes(layer.w))
            _write_text(out / "weights" / f"layer{i}_b.hex", _hex_words(layer.b))
            header += [f"// layer {i}: {layer.name}, weights {tuple(layer.w.shape)}\n",
                       f"#define CNNX_L{i}_MULT {int(layer.rq.mult)}\n",
                       f"#define CNNX_L{i}_SHIFT {int(layer.rq.shift)}\n",
                       f"#define CNNX_L{i}_RELU {int(bool(layer.rq.relu))}\n",
                       _c_array("int8_t", f"cnnx_l{i}_weight", layer.w),
                       _c_array("int32_t", f"cnnx_l{i}_bias", layer.b), "\n"]
        else:
            d.update(kernel=int(layer.kernel), stride=int(layer.stride))
        layers.append(d)
    _write_text(out / "model.h", "".join(header))
    desc = {"format": "cnnx-export-1", "images": n, "array": [rows, cols], "buffers": buffers,
            "pool_buffers": pool_buffers, "pool_lanes": cycle_model.POOL_LANES,
            "input_scale": float(qmodel.input_scale) if hasattr(qmodel, "input_scale") else None,
            "layers": layers,
            "expected_cycles_per_image": int(sum(d.get("expected_cycles_per_image", 0) for d in layers))}
    _write_text(out / "layers.json", json.dumps(desc, indent=1) + "\n")
    # the testbench: its layer lists, the RTL, tb.cpp and the Makefile
    for core in ("conv", "pool"):
        lines = [f"{d['index']} {d['program']} {d.get('weights', '-')} {d.get('bias', '-')} {d['in_vector']} "
                 f"{d['out_vector']} {int(np.prod(d['in_shape']))} {int(np.prod(d['out_shape']))} "
                 f"{d.get('weight_shape') and int(np.prod(d['weight_shape'])) or 0} "
                 f"{d.get('weight_shape', [0])[0]} {d['expected_cycles_per_image']}"
                 for d in layers if d.get("core") == core]
        _write_text(out / f"tb_{core}.list", f"{n} {len(lines)}\n" + "".join(s + "\n" for s in lines))
    for src in builder.verilog_sources():
        shutil.copyfile(src, out / "rtl" / Path(src).name)
    tb = resources.files("cnnx.io") / "export_tb"
    cores = " ".join(c for c in ("conv", "pool") if any(d.get("core") == c for d in layers))
    for name in ("tb.cpp", "Makefile"):
        text = (tb / name).read_text()
        if name == "Makefile":
            text = text.replace("@CORES@", cores)
            text = text.replace("@CONV_PARAMS@", " ".join(
                f"-G{k}={v}" for k, v in [("ROWS", rows), ("COLS", cols), *buffers.items()]))
            pool = [("LANES", cycle_model.POOL_LANES), *pool_buffers.items()]
            text = text.replace("@POOL_PARAMS@", " ".join(f"-G{k}={v}" for k, v in pool))
        _write_text(out / name, text)
    return desc


def export_run_dir(run_dir, out, n_images: int = 10, data=None, **kwargs) -> dict:
    """Load and quantise a run (as `cnnx cosim` does) and export it with its first `n_images` test images."""
    from ..harness import load_run

    _model, qmodel, images, _labels = load_run(run_dir, data)
    if not 1 <= n_images <= len(images):
        raise ValueError(f"--images must be in [1, {len(images)}], got {n_images}")
    return export_model(qmodel, images[:n_images], out, **kwargs)
