"""The `cnnx` command: `cnnx train | eval | cosim | profile | synth` (also `python -m cnnx ...`).

Exit codes: 0 success, 1 a check failed (cosim/profile), 2 bad input (unknown model, bad numbers, a missing,
corrupt or foreign checkpoint; nothing is written in that case), 130 interrupted by Ctrl-C (after saving a
resumable checkpoint). With `--json` every subcommand prints exactly one JSON object on stdout and sends its
human-readable output to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from . import models
    from .train import TrainConfig

    d = TrainConfig()
    p = argparse.ArgumentParser(prog="cnnx", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,eval,cosim,profile,synth}")

    t = sub.add_parser(
        "train",
        help="train a model on MNIST and write a run directory",
        description="Train on MNIST; writes checkpoint.npz, metrics.json and PNG plots to --out.",
    )
    t.add_argument("--model", default=d.model, help=f"one of {', '.join(models.MODELS)} (default {d.model})")
    t.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    t.add_argument(
        "--lr", type=_float, default=None, help=f"peak learning rate (default {d.lr} for sgd, 0.001 for adam)"
    )
    t.add_argument("--optimizer", choices=("sgd", "adam"), default=d.optimizer)
    t.add_argument("--momentum", type=_float, default=d.momentum, help=f"SGD momentum (default {d.momentum})")
    t.add_argument(
        "--weight-decay",
        type=_float,
        default=d.weight_decay,
        help=f"on weights, not biases (default {d.weight_decay})",
    )
    t.add_argument("--decoupled-wd", action="store_true", help="decoupled weight decay (SGDW/AdamW), not L2")
    t.add_argument("--schedule", choices=("cosine", "step", "constant"), default=d.schedule)
    t.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=d.augment,
        help="random shifts (+-2 px) and small affine distortions (default on)",
    )
    t.add_argument(
        "--dropout", type=_float, default=d.dropout, help="dropout after hidden FC layers (default 0)"
    )
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument(
        "--threads", type=int, default=None, help="OpenMP threads (default: OMP_NUM_THREADS/cores)"
    )
    t.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    t.add_argument(
        "--val",
        type=int,
        default=d.n_val,
        dest="n_val",
        help=f"training images held out for validation (default {d.n_val})",
    )
    t.add_argument("--out", default=None, help="run directory (default runs/MODEL)")
    t.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    e = sub.add_parser("eval", help="test accuracy and confusion matrix of a checkpoint")
    e.add_argument("path", metavar="RUN_DIR|CHECKPOINT")
    e.add_argument("--images", type=_positive_int, default=None, help="only the first N test images")
    e.add_argument("--threads", type=_positive_int, default=None)
    e.add_argument("--json", action="store_true")

    c = sub.add_parser("cosim", help="co-simulate the int8 model on the RTL cores (cnnx.harness)")
    c.add_argument("run_dir", metavar="RUN_DIR")
    c.add_argument("--images", type=_positive_int, default=1000, help="test images (default 1000)")
    c.add_argument("--array", default="8x8", help="systolic array ROWSxCOLS (default 8x8)")
    c.add_argument("--workers", type=_positive_int, default=None, help="parallel simulators (default: cores)")
    c.add_argument("--driver", choices=("fast", "python"), default="fast")
    c.add_argument("--golden-images", type=_positive_int, default=None,
                   help="images also run through the slow NumPy golden model (default min(N, 200))")
    c.add_argument("--corrupt-rtl-layer", type=int, default=None, metavar="K",
                   help="change one weight of layer K on the RTL side only, to see the check catch it")
    c.add_argument("--json", action="store_true")

    r = sub.add_parser("profile", help="per-layer CPU/RTL profile of a run (cnnx.profile)")
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument("--array", default="8x8", help="systolic array ROWSxCOLS (default 8x8)")
    r.add_argument(
        "--clock-mhz", type=_float, default=None,
        help="RTL clock for time estimates (default: the Fmax `cnnx synth` reports for this array; refused "
             "above it)"
    )
    r.add_argument("--force", action="store_true", help="accept a --clock-mhz above the reported Fmax")
    r.add_argument("--synth", action="store_true", help="run `cnnx synth` first when its result is missing")
    r.add_argument("--device", choices=("25k", "45k", "85k"), default="85k", help="FPGA of the Fmax (85k)")
    r.add_argument("--synth-freq", type=_float, default=150.0, help="P&R target of the Fmax, MHz (150)")
    r.add_argument("--seed", type=int, default=1, help="P&R seed of the Fmax (default 1)")
    r.add_argument("--out", default=None, help="output directory (default RUN_DIR/profile)")
    r.add_argument("--images", type=_positive_int, default=16, help="test images (default 16)")
    r.add_argument("--json", action="store_true")

    s = sub.add_parser("synth", help="resources and Fmax of the cores on an ECP5 FPGA (cnnx.fpga)")
    s.add_argument("--core", choices=("conv", "pool", "all"), default="all")
    s.add_argument("--array", default="8x8", help="conv core ROWSxCOLS (default 8x8)")
    s.add_argument("--device", choices=("25k", "45k", "85k"), default="85k", help="LFE5U-*F (default 85k)")
    s.add_argument("--freq", type=_float, default=150.0, help="target clock for nextpnr, MHz (default 150)")
    s.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    s.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="set a core parameter (repeatable), e.g. --param IFMAP_DEPTH=4096")
    s.add_argument("--no-pnr", action="store_true", help="Yosys only: resources, no place-and-route/Fmax")
    s.add_argument("--out", default=None, help="also write synth-<core>.json into this directory")
    s.add_argument("--json", action="store_true")
    return p


class _Out:
    """Human output: stdout normally, stderr under --json (stdout then carries only the JSON object)."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.human = sys.stderr if as_json else sys.stdout

    def say(self, msg: str = "") -> None:
        print(msg, file=self.human, flush=True)

    def error(self, cmd: str, msg: str) -> int:
        print(f"cnnx {cmd}: error: {msg}", file=sys.stderr, flush=True)
        if self.as_json:
            print(json.dumps({"error": msg}), flush=True)
        return EXIT_BAD_INPUT


def format_confusion(conf) -> str:
    lines = ["true\\pred " + " ".join(f"{j:>5d}" for j in range(10))]
    for i, row in enumerate(conf):
        lines.append(f"{i:>9d} " + " ".join(f"{v:>5d}" for v in row))
    return "\n".join(lines)


def cmd_train(args) -> int:
    from . import checkpoint, data
    from .train import TrainConfig, TrainingInterrupted, fit

    out = _Out(args.json)
    lr = args.lr if args.lr is not None else (0.001 if args.optimizer == "adam" else TrainConfig.lr)
    cfg = TrainConfig(
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=lr,
        optimizer=args.optimizer,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        decoupled=args.decoupled_wd,
        schedule=args.schedule,
        augment=args.augment,
        dropout=args.dropout,
        seed=args.seed,
        threads=args.threads,
        limit=args.limit,
        n_val=args.n_val,
    )
    run_dir = Path(args.out or f"runs/{args.model}")
    # Everything is checked before the first byte is written.
    try:
        cfg.validate()
        if run_dir.exists() and not run_dir.is_dir():
            raise ValueError(f"--out {run_dir} exists and is not a directory")
        if args.resume:
            from .train import prepare_resume

            prepare_resume(cfg, run_dir)
    except (ValueError, checkpoint.CheckpointError) as e:
        return out.error("train", str(e))

    try:
        summary = fit(cfg, run_dir, resume=args.resume, progress=not args.no_progress, log=out.say)
    except TrainingInterrupted as e:
        print(
            f"cnnx train: interrupted; resumable checkpoint saved to {e.checkpoint} "
            f"(continue with: cnnx train --model {cfg.model} --out {run_dir} --resume)",
            file=sys.stderr,
            flush=True,
        )
        if args.json:
            print(
                json.dumps(
                    {
                        "interrupted": True,
                        "checkpoint": str(e.checkpoint),
                        "epoch": e.epoch,
                        "batch": e.batch,
                        "run_dir": str(run_dir),
                    }
                ),
                flush=True,
            )
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the training loop (the final evaluation)
        print(f"cnnx train: interrupted; the last epoch's checkpoint is in {run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, checkpoint.CheckpointError, data.MnistError) as e:
        return out.error("train", str(e))

    out.say(
        f"test accuracy {100 * summary['test_accuracy']:.2f} % (error {100 * summary['test_error']:.2f} %) "
        f"after {summary['epochs']} epochs; {summary['wall_seconds']:.1f} s wall, "
        f"{summary['images_per_second'] or 0:.0f} train images/s"
    )
    out.say(f"wrote {summary['checkpoint']}, metrics.json, {', '.join(summary['plots'])} in {run_dir}")
    if args.json:
        keys = (
            "test_accuracy",
            "test_error",
            "epochs",
            "wall_seconds",
            "images_per_second",
            "run_dir",
            "checkpoint",
            "model",
            "val_accuracy",
            "test_loss",
            "train_seconds",
            "n_train",
            "n_val",
            "threads",
            "plots",
        )
        print(json.dumps({k: summary[k] for k in keys}), flush=True)
    return EXIT_OK


def cmd_eval(args) -> int:
    from . import checkpoint, data
    from ._threads import set_num_threads
    from .train import evaluate

    out = _Out(args.json)
    try:
        model, info = checkpoint.load(args.path)
    except checkpoint.CheckpointError as e:
        return out.error("eval", str(e))
    if args.threads:
        set_num_threads(args.threads)
    try:
        images, labels = data.load_mnist("test")
    except data.MnistError as e:
        return out.error("eval", str(e))
    if args.images:
        images, labels = images[: args.images], labels[: args.images]
    res = evaluate(model, images, labels)
    out.say(f"{info['path']}: model {info['model_name']}, epoch {info['epoch']}")
    out.say(
        f"test accuracy {100 * res['accuracy']:.2f} % (error {100 * res['error']:.2f} %) "
        f"on {res['n']} images, loss {res['loss']:.4f}"
    )
    out.say(format_confusion(res["confusion"]))
    if args.json:
        print(
            json.dumps(
                {
                    "checkpoint": info["path"],
                    "model": info["model_name"],
                    "epoch": info["epoch"],
                    "test_accuracy": res["accuracy"],
                    "test_error": res["error"],
                    "test_loss": res["loss"],
                    "n_images": res["n"],
                    "confusion": res["confusion"],
                }
            ),
            flush=True,
        )
    return EXIT_OK


def cmd_cosim(args) -> int:
    from .harness import cli_cosim  # lazy: needs Verilator/pyverilator only when asked for

    return cli_cosim(args)


def cmd_profile(args) -> int:
    from .profile import cli_profile

    return cli_profile(args)


def cmd_synth(args) -> int:
    from .fpga.cli import cli_synth  # lazy: the FPGA tools are an optional extra

    return cli_synth(args)


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "cosim": cmd_cosim, "profile": cmd_profile}
COMMANDS["synth"] = cmd_synth


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse's usage errors already printed one line; they exit 2
        return int(e.code or 0)
    return int(COMMANDS[args.command](args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
