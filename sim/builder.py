"""Builds Verilator models of the cnnx cores, once per configuration, into a shared on-disk cache.

One build directory holds, for one (top module, parameters) configuration:
  * the pyverilator model `V<top>` (a shared library pyverilator loads; the "python" driver clocks it), and
  * `libcnnx_batch.so`: sim/batch_driver.cpp compiled against the SAME Verilated objects (the "fast" driver).
The directory name is a hash of everything that shapes the result: the Verilog sources, batch_driver.cpp,
the parameters, the Verilator version and this file's BUILD_RECIPE. It lives under `$CNNX_RTL_CACHE`, else
`$XDG_CACHE_HOME/cnnx/rtl`, else `~/.cache/cnnx/rtl`. A build runs in a temporary directory next to it
(`.KEY.PID.XXXX`) and is renamed into place, under a per-key file lock, so two processes asking at once build
it once and neither ever sees half a build.

Trust: the last file a build writes (atomically) is `manifest.json`, the size and SHA-256 of every file of
the build (the two that get loaded, `V<top>` and `libcnnx_batch.so`, must be among them; ~4 MB, a few ms to
hash). Every `build()` checks them BEFORE anything is loaded:
a truncated, empty, foreign or random file, or a missing manifest, prints one line "rebuilding ..." and the
build is redone, so a damaged cache can never reach dlopen (where a truncated library means SIGBUS).
A builder that waits for another one's lock says so (with the holder's pid) and gives up after
`$CNNX_BUILD_LOCK_TIMEOUT` seconds (default 1800) with a clear error; temporary directories of builds whose
process is gone (killed midway) are removed by the next build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cnnx.verilog import RTL_DIR

from cnnx._atomic import replace_dir
from cnnx.data import sha256_of

SIM_DIR = Path(__file__).resolve().parent
BATCH_SOURCE = SIM_DIR / "batch_driver.cpp"
# Bump when the commands below change: it is part of the cache key.
BUILD_RECIPE = ("cnnx-rtl-build-5: lint, pyverilator gen_only, make OPT_FAST=-O2, batch_driver.o -Bsymbolic, "
                "sha256 manifest")
MANIFEST = "manifest.json"
LOCK_TIMEOUT_ENV = "CNNX_BUILD_LOCK_TIMEOUT"
LOCK_TIMEOUT_DEFAULT = 1800.0  # s; a cold build of the largest core takes a few minutes on 2 cores
MODEL_CFLAGS = "-O2"

TOPS = {
    # top module -> (its parameters with defaults, the C macro batch_driver.cpp selects it with)
    "cnnx_conv_core": (
        {"ROWS": 8, "COLS": 8, "IFMAP_DEPTH": 8192, "WEIGHT_DEPTH": 65536, "OFMAP_DEPTH": 8192,
         "BIAS_DEPTH": 256},
        "CNNX_CONV_CORE",
    ),
    "cnnx_pool_core": ({"LANES": 4, "IFMAP_DEPTH": 8192, "OFMAP_DEPTH": 2048}, "CNNX_POOL_CORE"),
    # the cores behind AXI-Stream in/out (cnnx/compile/stream.py)
    "cnnx_conv_stream": (
        {"ROWS": 8, "COLS": 8, "IFMAP_DEPTH": 8192, "WEIGHT_DEPTH": 65536, "OFMAP_DEPTH": 8192,
         "BIAS_DEPTH": 256, "W": 32},
        "CNNX_CONV_STREAM",
    ),
    "cnnx_pool_stream": ({"LANES": 4, "IFMAP_DEPTH": 8192, "OFMAP_DEPTH": 2048, "W": 32}, "CNNX_POOL_STREAM"),
    # a sub-module built on its own for its unit test: the pyverilator model only, no batch driver
    "cnnx_requant": ({"TAG_W": 1}, None),
}


@dataclass(frozen=True)
class Build:
    """A finished build: where it is and what it was built from."""

    top: str
    params: tuple[tuple[str, int], ...]
    path: Path

    @property
    def model_so(self) -> Path:
        return self.path / f"V{self.top}"

    @property
    def batch_so(self) -> Path:
        return self.path / "libcnnx_batch.so"

    @property
    def artefacts(self) -> tuple[Path, ...]:
        """The files that get loaded, hashed in the manifest (sub-modules have no batch driver)."""
        return (self.model_so, self.batch_so) if TOPS[self.top][1] else (self.model_so,)


class BuildError(RuntimeError):
    """An RTL build could not be made: no Verilator, a build step failed, or another build's lock was held
    too long. The CLI reports it as a bad environment (exit 2), not as a failed check."""

    exit_code = 2


def cache_root() -> Path:
    env = os.environ.get("CNNX_RTL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "cnnx" / "rtl"


def verilator_version() -> str:
    exe = shutil.which("verilator")
    if exe is None:
        raise BuildError("verilator is not on PATH; the RTL cores need Verilator 5 (apt install verilator) "
                         "and the rtl extra (pip install 'cnnx[rtl]')")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip()


def verilog_sources() -> list[Path]:
    return sorted(p for p in RTL_DIR.iterdir() if p.suffix in (".v", ".vh"))


def resolve_params(top: str, params: dict | None) -> tuple[tuple[str, int], ...]:
    """The full, checked parameter set of `top` (defaults filled in), as a sorted tuple."""
    if top not in TOPS:
        raise ValueError(f"unknown RTL top module {top!r}; known: {sorted(TOPS)}")
    defaults = TOPS[top][0]
    merged = dict(defaults)
    for name, value in (params or {}).items():
        if name not in defaults:
            raise ValueError(f"{top} has no parameter {name!r}; it has {sorted(defaults)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{top} parameter {name} must be a positive int, got {value!r}")
        merged[name] = int(value)
    return tuple(sorted(merged.items()))


def cache_key(top: str, params: tuple[tuple[str, int], ...]) -> str:
    h = hashlib.sha256()
    for part in (BUILD_RECIPE, verilator_version(), top, repr(params), MODEL_CFLAGS):
        h.update(part.encode())
        h.update(b"\0")
    for path in [*verilog_sources(), BATCH_SOURCE]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    shape = "".join(f"-{k.lower()}{v}" for k, v in params if k in ("ROWS", "COLS"))
    return f"{top}{shape}-{h.hexdigest()[:16]}"


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError(
            f"RTL build step failed ({res.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{res.stdout[-4000:]}\n--- stderr ---\n{res.stderr[-4000:]}"
        )


def _build_into(top: str, params: tuple[tuple[str, int], ...], out: Path) -> None:
    """Verilate `top`, compile the pyverilator model and the batch driver into directory `out`."""
    import pyverilator  # deferred: only a build needs it

    macro = TOPS[top][1]
    top_file = RTL_DIR / f"{top}.v"
    gparams = [f"-G{k}={v}" for k, v in params]
    # lint first: pyverilator runs Verilator with -Wno-fatal, which would let the cores' elaboration-time
    # parameter guards ($fatal in a generate block) pass as mere warnings
    _run(["verilator", "--lint-only", "-Wall", f"-I{RTL_DIR}", *gparams, str(top_file)])
    vargs = [*gparams, "--x-assign", "fast", "--x-initial", "fast", "-LDFLAGS", "-Wl,-Bsymbolic"]
    # gen_only: pyverilator verilates and writes its wrapper; we run make ourselves with a faster -O level
    pyverilator.PyVerilator.build(
        str(top_file), verilog_path=[str(RTL_DIR)], build_dir=str(out), args=vargs, gen_only=True, quiet=True
    )
    jobs = str(max(1, min(2, os.cpu_count() or 1)))
    mk = f"V{top}.mk"
    make = ["make", "-j", jobs, "-C", str(out), "-f", mk,
            f"OPT_FAST={MODEL_CFLAGS}", f"OPT_SLOW={MODEL_CFLAGS}"]
    _run([*make, "LDFLAGS=-fPIC -shared"])
    if macro is None:
        return
    # the fast driver: same objects, same compiler flags (verilated.mk's %.o rule), its own shared library
    shutil.copy(BATCH_SOURCE, out / "batch_driver.cpp")
    _run([*make, f"USER_CPPFLAGS=-D{macro}=1", "batch_driver.o"])
    objs = [f"V{top}__ALL.a", "verilated.o", "verilated_vcd_c.o"]
    objs += [o for o in ("verilated_threads.o",) if (out / o).exists()]
    cxx = os.environ.get("CXX", "g++")
    _run([cxx, "-shared", "-fPIC", "-Wl,-Bsymbolic", "-o", "libcnnx_batch.so", "batch_driver.o", *objs,
          "-pthread", "-latomic"], cwd=out)


def write_manifest(result: Build, directory: Path) -> None:
    """The manifest of a finished build in `directory`, written last and atomically (temp file, rename)."""
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != MANIFEST)
    entries = {p.name: {"sha256": sha256_of(p), "bytes": p.stat().st_size} for p in files}
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"recipe": BUILD_RECIPE, "top": result.top, "params": list(result.params),
                               "files": entries}, indent=1))
    os.replace(tmp, directory / MANIFEST)


def check_build(result: Build) -> str | None:
    """None when `result`'s directory holds an intact build (every artefact's size and SHA-256 as its
    manifest says), else why not. Reads files only: nothing is loaded."""
    if not result.path.is_dir():
        return "absent"
    try:
        manifest = json.loads((result.path / MANIFEST).read_text())
        files = manifest["files"]
    except FileNotFoundError:
        return "its manifest is missing"
    except (OSError, ValueError, KeyError, TypeError):
        return "its manifest is unreadable"
    if not isinstance(files, dict):
        return "its manifest is unreadable"
    for path in result.artefacts:
        if path.name not in files:
            return f"{path.name} is not in its manifest"
    for name, want in files.items():
        path = result.path / name
        if not isinstance(want, dict) or "/" in name:
            return "its manifest is unreadable"
        try:
            size = path.stat().st_size
            if size != want.get("bytes"):
                return f"{path.name} has {size} bytes, not {want.get('bytes')}"
            if sha256_of(path) != want.get("sha256"):
                return f"{path.name} does not match its SHA-256"
        except OSError as e:
            return f"{path.name}: {e.strerror or e}"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_TEMP_DIR = re.compile(r"^\.(?P<key>.+?)\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]{8}$")


def remove_stale_build_dirs(root: Path, key: str | None = None) -> list[Path]:
    """Temporary build directories left by killed builds: those of `key` (the caller holds its lock, so none
    is live), and any whose builder pid is dead. Returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP_DIR.match(e.name)
        if m is None or not e.is_dir(follow_symlinks=False):
            continue
        pid = m.group("pid")
        dead = pid is not None and int(pid) != os.getpid() and not _pid_alive(int(pid))
        if m.group("key") == key or dead:
            shutil.rmtree(e.path, ignore_errors=True)
            removed.append(Path(e.path))
    return removed


def _lock_timeout() -> float:
    text = os.environ.get(LOCK_TIMEOUT_ENV)
    try:
        value = float(text) if text else LOCK_TIMEOUT_DEFAULT
    except ValueError:
        raise ValueError(f"${LOCK_TIMEOUT_ENV} must be a number of seconds, got {text!r}") from None
    return value if value >= 0 else LOCK_TIMEOUT_DEFAULT


@contextlib.contextmanager
def _key_lock(root: Path, key: str, say=None):
    """The per-key build lock. While another process holds it: one line "waiting for another build of KEY
    (pid N)", then a poll until it is free or `$CNNX_BUILD_LOCK_TIMEOUT` s have passed (BuildError)."""
    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    path = root / f"{key}.lock"
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            pid = (lock.read(32).split() or ["unknown"])[0]
            timeout = _lock_timeout()
            say(f"cnnx: waiting for another build of {key} (pid {pid}); giving up after {timeout:.0f} s "
                f"(${LOCK_TIMEOUT_ENV})")
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise BuildError(
                            f"gave up after {timeout:.0f} s waiting for another build of {key} (pid {pid}, "
                            f"lock {path}); stop that process or raise ${LOCK_TIMEOUT_ENV}"
                        ) from None
                    time.sleep(0.2)
        try:
            lock.seek(0)
            lock.truncate()
            lock.write(f"{os.getpid()}\n")
            lock.flush()
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# Announce each compilation on stderr (the first use of a configuration builds for a minute or two; without a
# word the progress bar would sit at 0 %). The CLI turns this off under --no-progress/--quiet.
NOTICES = True
# Seconds spent compiling in this process (the harness leaves them out of its images/s).
BUILD_SECONDS = 0.0


def _notice(msg: str) -> None:
    if NOTICES:
        from cnnx._cliutil import print_clear

        print_clear(f"cnnx: {msg}")


def build(top: str, params: dict | None = None) -> Build:
    """The cached build of `top` with `params` (missing ones take the module's defaults); builds if absent,
    rebuilds (with one line on stderr) if the cached one fails its manifest check."""
    resolved = resolve_params(top, params)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key(top, resolved)
    final = root / key
    result = Build(top, resolved, final)
    if check_build(result) is None:
        return result
    with _key_lock(root, key):
        problem = check_build(result)  # again: a concurrent builder of the same key may have finished
        if problem is None:
            return result
        if problem != "absent":
            print(f"cnnx: the RTL build cache {final} is damaged ({problem}); rebuilding ...",
                  file=sys.stderr, flush=True)
        remove_stale_build_dirs(root, key)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.{os.getpid()}.", dir=root))
        what = ", ".join(f"{k}={v}" for k, v in resolved)
        if problem == "absent":  # (a damaged cache has just said "rebuilding")
            _notice(f"building the Verilator model of {top} ({what}): first use of this configuration, "
                    "about a minute or two; later runs load it from the cache")
        t0 = time.monotonic()
        try:
            try:
                _build_into(top, resolved, tmp)
            except BuildError as e:  # the full compiler output goes to a log; the message keeps one line
                log = root / f"{key}.build.log"
                log.write_text(str(e))
                raise BuildError(f"{str(e).splitlines()[0]} (full output in {log})") from None
            write_manifest(result, tmp)
            replace_dir(tmp, final)  # over a damaged directory, or one from before the manifest
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        global BUILD_SECONDS
        took = time.monotonic() - t0
        BUILD_SECONDS += took
        _notice(f"built {top} in {took:.1f} s (cached in {final})")
    return result
