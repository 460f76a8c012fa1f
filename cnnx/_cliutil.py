"""What every `cnnx` subcommand shares at its edges: the ONE error exit (`cli_error`), output directories
checked before any work and locked while a run writes to them, and SIGTERM turned into a clean stop.

Exit codes, one table for train, eval, cosim and profile:
  0    success
  1    a check failed: an int8 mismatch, a non-finite float result, a co-simulation worker that failed,
       died or stalled, a simulator run that did not finish
  2    bad input or environment: usage, numbers, a missing/corrupt/foreign checkpoint, an output path that is
       not a writable directory or is in use by another run, a missing MNIST package or RTL toolchain
  130  interrupted by SIGINT (Ctrl-C); 143 by SIGTERM (`cnnx train` saves a resumable checkpoint first)
  141  the reader of stdout went away (`cnnx eval RUN | head`): the command stops quietly
On an error the command prints one line `cnnx CMD: error: ...` on stderr and, under `--json`, exactly one
object `{"error": ..., "exit_code": N}` on stdout.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 128 + signal.SIGINT, 128 + signal.SIGTERM
EXIT_SIGPIPE = 128 + signal.SIGPIPE
LOCK_NAME = ".cnnx.lock"
RTL_INSTALL_HINT = "pip install 'cnnx[rtl]' (pyverilator-mm) and Verilator (apt-get install verilator)"

# The flags every subcommand has (cnnx.cli adds those a subcommand does not declare itself).
COMMON_FLAGS = {
    "--json": "print one JSON object on stdout (human-readable text goes to stderr)",
    "--no-progress": "no progress bars or build notices (they go to stderr otherwise)",
    "--quiet": "no progress and no human-readable report; errors and --json output still print",
}


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 epoch', '2 epochs' (`words`: an irregular plural)."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def progress_on(args) -> bool:
    """THE progress rule of every subcommand: bars and notices on stderr unless --no-progress or --quiet;
    --json does not change it (stdout carries only the JSON object either way)."""
    return not (getattr(args, "no_progress", False) or getattr(args, "quiet", False))


@contextlib.contextmanager
def quiet_stdout(args):
    """Under --quiet (and not --json): the human-readable report on stdout is dropped, and the RTL build
    notices (cnnx.sim.builder) with it; under --no-progress only the notices."""
    from contextlib import redirect_stdout

    notices = progress_on(args)
    try:
        import cnnx.sim.builder as builder
    except ImportError:  # the RTL bridge is optional
        builder = None
    old = builder.NOTICES if builder is not None else None
    if builder is not None:
        builder.NOTICES = notices
    try:
        if getattr(args, "quiet", False) and not getattr(args, "json", False):
            with open(os.devnull, "w") as devnull, redirect_stdout(devnull):
                yield
        else:
            yield
    finally:
        if builder is not None:
            builder.NOTICES = old


def broken_pipe_exit() -> int:
    """After a BrokenPipeError on stdout: point stdout at /dev/null so that the interpreter's final flush
    does not fail again (Python's documented recipe), and return 141 like a command killed by SIGPIPE."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_SIGPIPE


def std_streams_open() -> None:
    """A closed stderr (`cnnx ... 2>&-`) or stdout makes Python's sys.stderr/sys.stdout None, and print(...,
    file=None) then writes to stdout: human text and error lines would land in the --json output. Point a
    closed one at /dev/null instead."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115


def output_failed_exit(command: str, e: OSError, as_json: bool = False) -> int:
    """An OSError that ended a command while it printed (stdout on a full disk or /dev/full, an I/O error):
    one line on stderr (and the error object under --json) where they can still be written, then stdout and
    stderr pointed at /dev/null so the interpreter's final flush does not fail again (no traceback).
    Exit 2."""
    reason = f"cannot write the output ({e.strerror or e})"
    msg = f"cnnx {command}: error: {reason}"
    with contextlib.suppress(OSError, ValueError):
        print(msg, file=sys.stderr, flush=True)
    if as_json:
        with contextlib.suppress(OSError, ValueError):
            print(json.dumps({"error": reason, "exit_code": EXIT_BAD_INPUT}), flush=True)
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.dup2(devnull, sys.stderr.fileno())
    return EXIT_BAD_INPUT


class CliError(Exception):
    """An error the CLI reports as one line with exit code `code` (default 2: bad input or environment)."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.code = code


class CheckFailed(RuntimeError):
    """A check did not pass (exit 1): a worker failed, died or stalled, a result is not finite."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the same clean-up runs; exit 143."""

    signum = signal.SIGTERM


def exit_code_of_signal(signum: int) -> int:
    return 128 + int(signum)


def classify(e: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) of an exception that ends a CLI command. Unknown exceptions (bugs) are
    re-raised so that their traceback shows."""
    from .data import MnistError  # a RuntimeError, but a missing/broken MNIST package is bad environment

    if isinstance(e, CliError):
        return e.code, str(e)
    if isinstance(getattr(e, "exit_code", None), int):  # e.g. cnnx.sim's BuildError: a broken toolchain is 2
        return e.exit_code, str(e)
    if isinstance(e, KeyboardInterrupt):
        signum = getattr(e, "signum", signal.SIGINT)
        return exit_code_of_signal(signum), f"interrupted ({signal.Signals(signum).name})"
    if isinstance(e, MnistError):
        return EXIT_BAD_INPUT, str(e)
    if isinstance(e, ImportError):
        return EXIT_BAD_INPUT, f"the RTL bridge cannot be loaded ({e}); it needs {RTL_INSTALL_HINT}"
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return EXIT_BAD_INPUT, f"{e.filename}: {e.strerror}"
    if isinstance(e, ValueError | TypeError | OSError | MemoryError | RecursionError):
        return EXIT_BAD_INPUT, str(e) or type(e).__name__
    if isinstance(e, RuntimeError):  # CheckFailed, a simulator that did not finish, a failed RTL build step
        return EXIT_CHECK_FAILED, str(e) or type(e).__name__
    raise e


def one_line(text: str) -> str:
    """The first non-empty line of `text`, whitespace collapsed (the rest goes to a log, not the terminal)."""
    for line in str(text).splitlines():
        if line.strip():
            return " ".join(line.split())
    return ""


def cli_error(command: str, error: BaseException | str, as_json: bool = False,
              code: int | None = None) -> int:
    """THE error exit of every `cnnx` subcommand: prints `cnnx COMMAND: error: MESSAGE` (one line) on stderr,
    and `{"error": MESSAGE, "exit_code": CODE}` on stdout under --json; returns the exit code. `error` is an
    exception (its code comes from `classify`) or a message (then `code`, default 2)."""
    if isinstance(error, BaseException):
        c, msg = classify(error)
        code = c if code is None else code
    else:
        msg, code = str(error), EXIT_BAD_INPUT if code is None else code
    msg = one_line(msg) or "failed"
    prefix = f"cnnx {command}: " if command else "cnnx: "
    close_progress_bars()  # the command ends: bars left open by the failure end their line first
    print_clear(f"{prefix}error: {msg}")
    if as_json:
        print(json.dumps({"error": msg, "exit_code": code}), flush=True)
    return code


def close_progress_bars() -> None:
    """Close every open tqdm bar (each ends its own line), so nothing redraws one after an error line."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        with contextlib.suppress(Exception):
            bar.close()


def print_clear(msg: str, file=None) -> None:
    """Print a line on stderr on a line of its own: an open tqdm bar is cleared first and redrawn after, so
    an error or warning never lands on the bar's line."""
    file = sys.stderr if file is None else file
    try:
        from tqdm import tqdm

        with tqdm.external_write_mode(file=file):
            print(msg, file=file, flush=True)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(msg, file=file, flush=True)


def json_safe(obj):
    """`obj` with every non-finite float replaced by None, so `json.dumps(..., allow_nan=False)` never fails
    and never writes the bare NaN/Infinity that JSON does not have."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # a numpy scalar
        return json_safe(obj.item())
    return obj


def dumps(obj, **kw) -> str:
    """Strict JSON text of `obj` (non-finite floats become null)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kw)


# ---------------------------------------------------------------------------------------------------------
# signals
# ---------------------------------------------------------------------------------------------------------
def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block (main thread only), SIGTERM raises `Terminated` (a KeyboardInterrupt): the same
    `finally` clean-up as Ctrl-C runs (workers stopped, locks released) and the command exits 143."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# ---------------------------------------------------------------------------------------------------------
# output directories
# ---------------------------------------------------------------------------------------------------------
def _reason(e: OSError) -> str:
    return e.strerror or errno.errorcode.get(e.errno or 0, str(e))


def prepare_output_dir(path, flag: str = "--out", files: tuple[str, ...] = ()) -> list[Path]:
    """Check that `path` is, or can be made, a writable directory, before any work: creates it (and its
    missing parents), creates and removes a probe file in it, and refuses a directory where one of `files`
    will be written. Raises CliError (exit 2) naming `flag`; returns the directories it created, top first."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CliError(f"{flag} {p} exists and is not a directory")
    missing, q = [], p
    while not q.exists() and q != q.parent:
        missing.append(q)
        q = q.parent
    if not q.is_dir():
        raise CliError(f"{flag} {p}: {q} is not a directory")
    created = list(reversed(missing))
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        remove_empty_dirs(created)
        raise CliError(f"{flag} {p} cannot be created ({_reason(e)})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".cnnx-write-probe.", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        remove_empty_dirs(created)
        raise CliError(f"{flag} {p} is not writable ({_reason(e)})") from None
    for name in files:
        if (p / name).is_dir():
            remove_empty_dirs(created)
            raise CliError(f"{flag} {p}: {name} is a directory where cnnx writes a file")
    return created


def remove_empty_dirs(dirs: list[Path]) -> None:
    """rmdir `dirs` (top first, as prepare_output_dir returns them) deepest first, where they are empty."""
    for d in reversed(dirs):
        with contextlib.suppress(OSError):
            d.rmdir()


class RunDirLocked(CliError):
    """Another process holds the directory's lock."""


class DirLock:
    """An exclusive, non-blocking fcntl lock on DIR/.cnnx.lock, holding the owner's pid; the file is removed
    on release. The kernel drops the lock when its holder dies, so a killed run never blocks the next one."""

    def __init__(self, directory, what: str = "run directory"):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> DirLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").split()
                os.close(fd)
                pid = holder[0] if holder else "unknown"
                raise RunDirLocked(
                    f"{self.what} {self.directory} is in use by another cnnx run (pid {pid}); wait for it to "
                    "finish or choose another directory"
                ) from None
            # A releasing holder unlinks the file: make sure we locked the file that is still there.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


@contextlib.contextmanager
def output_dir(path, flag: str = "--out", files: tuple[str, ...] = (), what: str = "run directory"):
    """`with output_dir(run_dir, "--out", files=(...)):` — the directory checked (prepare_output_dir) and
    locked (DirLock) for the block. If the block fails, directories this call created are removed again
    when they are still empty, so a refused run leaves nothing behind."""
    created = prepare_output_dir(path, flag, files)
    ok = False
    try:
        with DirLock(path, what):
            yield Path(path)
        ok = True
    finally:
        if not ok:
            remove_empty_dirs(created)
