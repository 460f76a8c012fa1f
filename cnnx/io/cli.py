"""`cnnx import FILE --out RUN_DIR [--config MODEL.json --input-shape C,H,W] [--mean ... --std ...]`."""

from __future__ import annotations

import json


def _floats(text: str) -> tuple[float, ...]:
    import argparse

    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.485,0.456,0.406, got {text!r}") from None


def _shape(text: str) -> tuple[int, int, int]:
    import argparse

    try:
        v = tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        v = ()
    if len(v) != 3 or min(v) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W like 1,28,28, got {text!r}")
    return v


def add_import_parser(sub) -> None:
    i = sub.add_parser(
        "import",
        help="import an ONNX model or PyTorch weights into a run directory",
        description="Import FILE (.onnx, or a PyTorch state_dict as .pt/.pth/.npz with --config) into a run "
                    "directory that eval, cosim, profile and train --resume use like a trained zoo model. "
                    "Input preprocessing: pixel / 255, then (x - mean) / std per channel if given.",
    )
    i.add_argument("file", metavar="FILE", help="model.onnx, or PyTorch weights (.npz or .pt) with --config")
    i.add_argument("--out", required=True, help="run directory to create")
    i.add_argument("--config", default=None, metavar="MODEL.json", help="cnnx model config (PyTorch weights)")
    i.add_argument("--input-shape", type=_shape, default=None, metavar="C,H,W",
                   help="input shape (PyTorch weights; ONNX files carry theirs)")
    i.add_argument("--mean", type=_floats, default=None, help="per-channel mean after pixel / 255")
    i.add_argument("--std", type=_floats, default=None, help="per-channel std after pixel / 255")
    i.add_argument("--data", default=None, metavar="FILE.npz",
                   help="the dataset the model is for (default MNIST): eval, cosim and fine-tuning use it")
    i.add_argument("--force", action="store_true", help="replace an existing checkpoint in --out")
    i.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def cli_import(args, out) -> int:
    from .._cliutil import CliError, output_dir
    from . import import_model

    try:
        # the run directory is checked, locked while the checkpoint is written, and removed again if the
        # import is refused (nothing is left behind)
        with output_dir(args.out, "--out", files=("checkpoint.npz",)):
            res = import_model(args.file, args.out, config=args.config, input_shape=args.input_shape,
                               mean=args.mean, std=args.std, data=args.data, force=args.force)
    except (ValueError, TypeError, OSError, CliError) as e:  # Onnx/Torch/DatasetError are ValueErrors
        return out.error("import", e)
    out.say(f"imported {args.file} ({res['format']}): {res['layers']} layers, {res['parameters']:,} "
            f"parameters, input {tuple(res['input_shape'])}, {res['num_classes']} classes, preprocessing "
            f"{res['preprocess']}, in {res['seconds'] * 1000:.0f} ms")
    out.say(f"wrote {res['checkpoint']}; next: cnnx eval {args.out} / cnnx cosim {args.out}")
    if args.json:
        print(json.dumps(res), flush=True)
    return 0


def add_export_parser(sub, positive_int) -> None:
    e = sub.add_parser(
        "export", help="export an int8 run for an FPGA flow, with a standalone Verilator testbench",
        description="Write RUN_DIR's int8 network (quantised as cosim does) to DIR: weights/biases as "
                    "$readmemh files and a C header, requantisation constants, layer descriptors "
                    "(layers.json), golden vectors of N test images, the RTL and a C++ Verilator testbench "
                    "with a Makefile (`make -C DIR` checks every output and cycle count, no Python).")
    e.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (cnnx train or cnnx import)")
    e.add_argument("--out", required=True, metavar="DIR", help="export directory")
    e.add_argument("--images", type=positive_int, default=10, help="golden test images (default 10)")
    e.add_argument("--array", default="8x8", help="systolic array ROWSxCOLS (default 8x8)")
    e.add_argument("--buffers", default=None, help="core buffer sizes, e.g. in=8K,w=64K,out=8K,bias=256")
    e.add_argument("--data", default=None, metavar="FILE.npz", help="use this dataset (default: the run's)")
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def cli_export(args) -> int:
    from .._cliutil import cli_error, dumps, output_dir
    from ..harness import parse_array
    from .export import export_run_dir

    try:
        array = parse_array(args.array)
        with output_dir(args.out, "--out", files=("layers.json",), what="export directory"):
            desc = export_run_dir(args.run_dir, args.out, n_images=args.images, data=args.data, array=array,
                                  buffers=args.buffers)
    except Exception as e:
        return cli_error("export", e, args.json)
    res = {"out": str(args.out), "images": desc["images"], "layers": len(desc["layers"]),
           "expected_cycles_per_image": desc["expected_cycles_per_image"]}
    if args.json:
        print(dumps(res))
    else:
        print(f"exported {args.run_dir} to {args.out}: {res['layers']} layers, {res['images']} golden "
              f"images, {res['expected_cycles_per_image']} cycles per image on {array[0]}x{array[1]}; "
              f"check with: make -C {args.out}")
    return 0
