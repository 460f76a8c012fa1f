"""The `cnnx` command: `cnnx train | eval | cosim | profile | synth | import | export` (or `python -m cnnx`).

Exit codes: 0 success, 1 a check failed (cosim/profile), 2 bad input or environment (usage, unknown model, bad
numbers, a missing, corrupt or foreign checkpoint, an output path that is not a writable directory or is in
use by another run, a missing MNIST package; nothing is written in that case), 130 interrupted by Ctrl-C,
143 by SIGTERM (train saves a resumable checkpoint first). Every error is one line on stderr, printed by
`cnnx._cliutil.cli_error`. With `--json` every subcommand prints exactly one JSON object on stdout (on an
error `{"error": ..., "exit_code": N}`) and sends its human-readable output to stderr.

Every subcommand takes `--json`, `--no-progress`, `--quiet` and `--version` (`cnnx._cliutil.COMMON_FLAGS`).
Progress bars and build notices always go to stderr, never stdout, with or without `--json`; `--no-progress`
turns them off, `--quiet` turns off progress and the human-readable report (errors still print). A closed
pipe on stdout (`cnnx eval RUN | head`) ends the command quietly with exit 141 (128 + SIGPIPE).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

from ._cliutil import (
    CliError,
    broken_pipe_exit,
    cli_error,
    dumps,
    exit_code_of_signal,
    output_dir,
    output_failed_exit,
    plural,
    progress_on,
    quiet_stdout,
    sigterm_as_interrupt,
    std_streams_open,
)

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130
TRAIN_FILES = ("checkpoint.npz", "metrics.json", "curves.png", "filters.png", "confusion.png")


def _int_at_least(lo: int):
    """An argparse type: an integer >= lo, refused in one line otherwise."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v

    return parse


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _threads(text: str) -> int:
    """--threads: a thread count the kernels accept (cnnx._threads.check_n_threads), refused by argparse
    (exit 2, one line) rather than by a kernel after the run has started."""
    from ._threads import check_n_threads

    try:
        return check_n_threads(_positive_int(text), "--threads")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


MAX_REPEATS = 1000  # profile --repeats: enough for a stable median; a typo such as 1e9 would run for days


def _repeats(text: str) -> int:
    v = _positive_int(text)
    if v > MAX_REPEATS:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_REPEATS}, got {v}")
    return v


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _positive_finite(text: str) -> float:
    v = _float(text)
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return v


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors go through the one error exit (one line, exit 2, JSON under --json)."""

    def error(self, message):
        raise CliError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from . import models
    from .train import TrainConfig

    d = TrainConfig()
    p = _Parser(prog="cnnx", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=_version_text(), help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True,
                           metavar="{train,eval,cosim,profile,synth,import,export,sweep}")

    t = sub.add_parser(
        "train",
        help="train a model on MNIST and write a run directory",
        description="Train on MNIST; writes checkpoint.npz, metrics.json and PNG plots to --out.",
    )
    t.add_argument("--model", default=None,
                   help=f"one of {', '.join(models.MODELS)} (default {d.model}; with --resume: the run's)")
    t.add_argument("--data", default=None, metavar="FILE.npz",
                   help="dataset x_train, y_train, x_test, y_test (uint8 images; default MNIST)")
    t.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    t.add_argument(
        "--lr", type=_float, default=None, help=f"peak learning rate (default {d.lr} for sgd, 0.001 for adam)"
    )
    t.add_argument("--optimizer", choices=("sgd", "adam"), default=d.optimizer,
                   help=f"sgd (with momentum) or adam (default {d.optimizer})")
    t.add_argument("--momentum", type=_float, default=d.momentum, help=f"SGD momentum (default {d.momentum})")
    t.add_argument(
        "--weight-decay",
        type=_float,
        default=d.weight_decay,
        help=f"on weights, not biases (default {d.weight_decay})",
    )
    t.add_argument("--decoupled-wd", action="store_true", help="decoupled weight decay (SGDW/AdamW), not L2")
    t.add_argument("--schedule", choices=("cosine", "step", "constant"), default=d.schedule,
                   help=f"learning-rate schedule after the warm-up (default {d.schedule})")
    t.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=d.augment,
        help="random shifts (+-2 px) and small affine distortions (default on)",
    )
    t.add_argument(
        "--dropout", type=_float, default=d.dropout, help="dropout after hidden FC layers (default 0)"
    )
    t.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed of the initial weights, shuffling and augmentation (default {d.seed})")
    t.add_argument(
        "--threads", type=_threads, default=None, help="OpenMP threads (default: OMP_NUM_THREADS/cores)"
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
    e.add_argument("path", metavar="RUN_DIR|CHECKPOINT", help="a run directory or its checkpoint.npz")
    e.add_argument("--images", type=_positive_int, default=None, help="only the first N test images")
    e.add_argument("--threads", type=_threads, default=None,
                   help="OpenMP threads (default: OMP_NUM_THREADS/cores)")
    e.add_argument("--data", default=None, metavar="FILE.npz", help="score on this dataset's test split")
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    c = sub.add_parser("cosim", help="co-simulate the int8 model on the RTL cores (cnnx.harness)")
    c.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (cnnx train or cnnx import)")
    c.add_argument("--images", type=_positive_int, default=1000, help="test images (default 1000)")
    c.add_argument("--array", default="8x8", help="systolic array ROWSxCOLS (default 8x8)")
    c.add_argument("--buffers", default=None, help="core buffer sizes, e.g. in=8K,w=64K,out=8K,bias=256 "
                   "(powers of two; larger layers are tiled; default: the cores' defaults)")
    c.add_argument("--workers", type=_positive_int, default=None,
                   help="parallel simulators (default and maximum: the CPUs this process may use)")
    c.add_argument("--worker-timeout", type=_positive_finite, default=None, metavar="SECONDS",
                   help="with 2+ workers: fail when one reports no progress for this long "
                        "(default 60 s + 0.5 s per image of a 250-image batch)")
    c.add_argument("--driver", choices=("fast", "python"), default="fast",
                   help="fast: C++ batch driver; python: pyverilator, cycle by cycle, slow (default: fast)")
    c.add_argument("--golden-images", type=_nonneg_int, default=None,
                   help="images also run through the slow NumPy golden model (default min(N, 200); 0: none)")
    c.add_argument("--corrupt-rtl-layer", type=int, default=None, metavar="K",
                   help="change one weight of layer K on the RTL side only, to see the check catch it")
    c.add_argument("--data", default=None, metavar="FILE.npz", help="use this dataset (default: the run's)")
    c.add_argument("--trace", default=None, metavar="FILE.vcd",
                   help="dump the RTL's waveforms, every clock edge: the conv core to FILE.vcd, the pool "
                        "core to FILE.pool.vcd (1 ps units; slow, meant for --images 1; at most 8; one "
                        "worker; written only when the run completes)")
    c.add_argument("--trace-clock-mhz", type=_positive_finite, default=None, metavar="MHZ",
                   help="clock of the VCD's time axis (default: the Fmax `cnnx synth` reports for this "
                        "array, else 100 MHz)")
    c.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    r = sub.add_parser("profile", help="per-layer CPU/RTL profile of a run (cnnx.profile)")
    r.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (cnnx train or cnnx import)")
    r.add_argument("--array", default="8x8", help="systolic array ROWSxCOLS (default 8x8)")
    r.add_argument("--buffers", default=None, help="core buffer sizes, e.g. in=8K,w=64K,out=8K,bias=256")
    r.add_argument(
        "--clock-mhz", type=_positive_finite, default=None,
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
    r.add_argument("--data", default=None, metavar="FILE.npz", help="use this dataset (default: the run's)")
    r.add_argument("--trace", default=None, metavar="FILE.vcd",
                   help="dump the waveforms of the RTL cycle measurement (one image): the conv core to "
                        "FILE.vcd, the pool core to FILE.pool.vcd (clock: --clock-mhz or the Fmax, else 100)")
    r.add_argument("--stream-width", type=int, choices=(32, 64), default=None,
                   help="also show end-to-end cycles at batch 1 through the AXI-Stream wrappers of this "
                        "width (model, and the RTL on one image) beside the compute-only cycles")
    r.add_argument("--repeats", type=_repeats, default=5,
                   help="timed runs per CPU figure; the table shows their median and spread "
                        f"(default 5, at most {MAX_REPEATS})")
    r.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    s = sub.add_parser("synth", help="resources and Fmax of the cores on an ECP5 FPGA (cnnx.fpga)")
    s.add_argument("--core", choices=("conv", "pool", "all"), default="all",
                   help="which core to synthesise (default all: both)")
    s.add_argument("--array", default="8x8", help="conv core ROWSxCOLS (default 8x8)")
    s.add_argument("--device", choices=("25k", "45k", "85k"), default="85k", help="LFE5U-*F (default 85k)")
    s.add_argument("--freq", type=_float, default=150.0, help="target clock for nextpnr, MHz (default 150)")
    s.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    s.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="set a core parameter (repeatable), e.g. --param IFMAP_DEPTH=4096")
    s.add_argument("--no-pnr", action="store_true", help="Yosys only: resources, no place-and-route/Fmax")
    s.add_argument("--out", default=None, help="also write synth-<core>.json into this directory")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    from .io.cli import add_import_parser

    add_import_parser(sub)
    from .io.cli import add_export_parser

    add_export_parser(sub, _positive_int)
    from .sweep import add_parser as add_sweep_parser

    add_sweep_parser(sub, _positive_int)
    _add_common_flags(sub)
    return p


def _version_text() -> str:
    from . import __version__

    return f"cnnx {__version__}"


def _add_common_flags(sub) -> None:
    """--json, --no-progress, --quiet and --version on every subcommand (added where a subcommand has not
    declared its own), so the rule in this module's docstring holds for all of them, new ones included."""
    from ._cliutil import COMMON_FLAGS

    for parser in sub.choices.values():
        have = parser._option_string_actions
        for flag, help_text in COMMON_FLAGS.items():
            if flag not in have:
                parser.add_argument(flag, action="store_true", help=help_text)
        if "--version" not in have:
            parser.add_argument("--version", action="version", version=_version_text(),
                                help="print the version and exit")


class _Out:
    """Human output: stdout normally, stderr under --json (stdout then carries only the JSON object)."""

    def __init__(self, as_json: bool, quiet: bool = False):
        self.as_json = as_json
        self.quiet = quiet
        self.human = sys.stderr if as_json else sys.stdout

    def say(self, msg: str = "") -> None:
        if not self.quiet:
            print(msg, file=self.human, flush=True)

    def error(self, cmd: str, e: BaseException | str) -> int:
        return cli_error(cmd, e, self.as_json)


def format_confusion(conf) -> str:
    lines = ["true\\pred " + " ".join(f"{j:>5d}" for j in range(len(conf)))]
    for i, row in enumerate(conf):
        lines.append(f"{i:>9d} " + " ".join(f"{v:>5d}" for v in row))
    return "\n".join(lines)


def cmd_train(args) -> int:
    from . import checkpoint, data
    from ._atomic import remove_stale_temps
    from .train import TrainConfig, TrainingInterrupted, fit

    out = _Out(args.json, args.quiet)
    lr = args.lr if args.lr is not None else (0.001 if args.optimizer == "adam" else TrainConfig.lr)
    run_dir = Path(args.out or f"runs/{args.model or TrainConfig.model}")
    model_name = args.model or TrainConfig.model
    if args.resume and args.model is None:  # resume whatever the run holds (an imported model, say)
        try:
            model_name = checkpoint.read(run_dir)["model_name"]
        except checkpoint.CheckpointError as e:
            return out.error("train", e)
    cfg = TrainConfig(
        model=model_name,
        data=args.data,
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
    # Everything is checked before the first byte is written.
    try:
        cfg.validate()
        if run_dir.exists() and not run_dir.is_dir():
            raise ValueError(f"--out {run_dir} exists and is not a directory")
        if args.resume:
            from .train import prepare_resume

            prepare_resume(cfg, run_dir)
        if cfg.data is None:
            data.load_mnist("train")  # a missing MNIST package is refused before the run directory is made
        elif not args.resume:
            from .io.dataset import load_npz

            load_npz(cfg.data)  # so is a dataset file that is missing or malformed (DatasetError)
    except (ValueError, checkpoint.CheckpointError, data.MnistError) as e:
        return out.error("train", e)

    try:
        # the run directory is created, probed for writability and locked for the whole run
        with output_dir(run_dir, "--out", files=TRAIN_FILES):
            if args.resume:
                remove_stale_temps(run_dir, all_=True)  # locked: no temporary file there is a live write
            summary = fit(cfg, run_dir, resume=args.resume, progress=progress_on(args), log=out.say)
    except BrokenPipeError:  # `cnnx train ... | head -1`: main's quiet exit 141, not an OSError's exit 2
        raise
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
                        "exit_code": exit_code_of_signal(e.signum),
                    }
                ),
                flush=True,
            )
        return exit_code_of_signal(e.signum)
    except KeyboardInterrupt as e:  # a second signal while saving, or one outside fit's loop
        saved = (run_dir / checkpoint.CHECKPOINT_NAME).is_file()
        where = f"the last saved checkpoint is in {run_dir}" if saved else "no checkpoint was saved"
        code = exit_code_of_signal(getattr(e, "signum", 2))
        return cli_error("train", f"interrupted; {where}", args.json, code)
    except (ValueError, checkpoint.CheckpointError, data.MnistError, CliError, OSError) as e:
        return out.error("train", e)

    out.say(
        f"test accuracy {100 * summary['test_accuracy']:.2f} % (error {100 * summary['test_error']:.2f} %) "
        f"after {plural(summary['epochs'], 'epoch')}; {summary['wall_seconds']:.1f} s wall, "
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
        print(dumps({k: summary[k] for k in keys}), flush=True)
    return EXIT_OK


def cmd_eval(args) -> int:
    from . import checkpoint, data
    from ._threads import set_num_threads
    from .train import evaluate

    out = _Out(args.json, args.quiet)
    try:
        model, info = checkpoint.load(args.path)
    except checkpoint.CheckpointError as e:
        return out.error("eval", e)
    from .io import dataset, preprocess

    if args.threads:
        set_num_threads(args.threads)
    try:
        images, labels = dataset.eval_split(info["meta"], args.data)
        prep = preprocess.of_meta(info["meta"])
    except (data.MnistError, ValueError) as e:  # DatasetError is a ValueError
        return out.error("eval", e)
    if args.images:
        images, labels = images[: args.images], labels[: args.images]
    try:
        res = evaluate(model, images, labels, preprocess=prep)
    except (ValueError, TypeError) as e:  # a checkpoint whose model fails only when it runs
        return out.error("eval", e)
    out.say(f"{info['path']}: model {info['model_name']}, epoch {info['epoch']}")
    out.say(
        f"test accuracy {100 * res['accuracy']:.2f} % (error {100 * res['error']:.2f} %) "
        f"on {res['n']} images, loss {res['loss']:.4f}"
    )
    out.say(format_confusion(res["confusion"]))
    if args.json:
        print(
            dumps(
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


def cmd_import(args) -> int:
    from .io.cli import cli_import

    return cli_import(args, _Out(args.json, args.quiet))


def cmd_export(args) -> int:
    from .io.cli import cli_export

    return cli_export(args)


def cmd_sweep(args) -> int:
    from .sweep import cli_sweep  # Dask is imported only when a sweep runs (the `sweep` extra)

    return cli_sweep(args)


def cmd_synth(args) -> int:
    from .fpga.cli import cli_synth  # lazy: the FPGA tools are an optional extra

    return cli_synth(args)


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "cosim": cmd_cosim, "profile": cmd_profile,
            "synth": cmd_synth, "import": cmd_import, "export": cmd_export, "sweep": cmd_sweep}


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """Python warnings during a command print as one line, `cnnx CMD: warning: ...`, like its errors (not
    the interpreter's two lines with a source path and line)."""
    import warnings

    from ._cliutil import one_line, print_clear

    def show(message, category, filename, lineno, file=None, line=None):
        print_clear(f"cnnx {command}: warning: {one_line(str(message))}")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    std_streams_open()  # `2>&-`: nothing meant for stderr may fall through to stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except CliError as e:  # a usage error: one line, exit 2
        cmd = argv[0] if argv and argv[0] in COMMANDS else ""
        # argparse takes an unambiguous prefix (--js) as --json: the error object is owed to it too
        return cli_error(cmd, e, any(len(a) > 2 and "--json".startswith(a) for a in argv))
    except SystemExit as e:  # --help, --version
        return int(e.code or 0)
    # SIGTERM stops a command like Ctrl-C does (workers stopped, locks released), with one line
    try:
        with sigterm_as_interrupt(), quiet_stdout(args), _one_line_warnings(args.command):
            try:
                return int(COMMANDS[args.command](args) or 0)
            except KeyboardInterrupt as e:
                return cli_error(args.command, e, getattr(args, "json", False))
    except BrokenPipeError:  # `cnnx eval RUN | head`: the reader left; end quietly, as a killed pipe would
        return broken_pipe_exit()
    except OSError as e:  # the output cannot be written (`> /dev/full`, a full disk): one line, no traceback
        return output_failed_exit(args.command, e, getattr(args, "json", False))


if __name__ == "__main__":
    raise SystemExit(main())
