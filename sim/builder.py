"""Builds Verilator models of the cnnx cores, once per configuration, into a shared on-disk cache.

One build directory holds, for one (top module, parameters) configuration:
  * the pyverilator model `V<top>` (a shared library pyverilator loads; the "python" driver clocks it), and
  * `libcnnx_batch.so`: sim/batch_driver.cpp compiled against the SAME Verilated objects (the "fast" driver).
The directory name is a hash of everything that shapes the result: the Verilog sources, batch_driver.cpp,
the parameters, the Verilator version and this file's BUILD_RECIPE. It lives under `$CNNX_RTL_CACHE`, else
`$XDG_CACHE_HOME/cnnx/rtl`, else `~/.cache/cnnx/rtl`. A build runs in a temporary directory next to it and
is renamed into place, under a per-key file lock, so two processes asking at once build it once and neither
ever sees half a build.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cnnx.verilog import RTL_DIR

SIM_DIR = Path(__file__).resolve().parent
BATCH_SOURCE = SIM_DIR / "batch_driver.cpp"
# Bump when the commands below change: it is part of the cache key.
BUILD_RECIPE = "cnnx-rtl-build-4: lint, pyverilator gen_only, make OPT_FAST=-O2, batch_driver.o -Bsymbolic"
MODEL_CFLAGS = "-O2"

TOPS = {
    # top module -> (its parameters with defaults, the C macro batch_driver.cpp selects it with)
    "cnnx_conv_core": (
        {"ROWS": 8, "COLS": 8, "IFMAP_DEPTH": 8192, "WEIGHT_DEPTH": 65536, "OFMAP_DEPTH": 8192,
         "BIAS_DEPTH": 256},
        "CNNX_CONV_CORE",
    ),
    "cnnx_pool_core": ({"LANES": 4, "IFMAP_DEPTH": 8192, "OFMAP_DEPTH": 2048}, "CNNX_POOL_CORE"),
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
    def complete(self) -> bool:
        """Every file this top's build makes exists (sub-modules have no batch driver)."""
        need = [self.model_so] + ([self.batch_so] if TOPS[self.top][1] else [])
        return all(p.exists() for p in need)


def cache_root() -> Path:
    env = os.environ.get("CNNX_RTL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "cnnx" / "rtl"


def verilator_version() -> str:
    exe = shutil.which("verilator")
    if exe is None:
        raise RuntimeError("verilator is not on PATH; the RTL cores need Verilator 5 (apt install verilator)")
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
        raise RuntimeError(
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


def build(top: str, params: dict | None = None) -> Build:
    """The cached build of `top` with `params` (missing ones take the module's defaults); builds if absent."""
    resolved = resolve_params(top, params)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key(top, resolved)
    final = root / key
    result = Build(top, resolved, final)
    if result.complete:
        return result
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent builder of the same key finishes first
        try:
            if result.complete:
                return result
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
            try:
                _build_into(top, resolved, tmp)
                if final.exists():  # a stale, incomplete directory from a killed build
                    shutil.rmtree(final)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return result
