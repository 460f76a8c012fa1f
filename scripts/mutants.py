"""Mutation testing for cnnx: apply each named one-line mutant to a temporary copy of the repository, rebuild
what it touches, run the tests it names, and report whether the tests caught it (killed) or not (survived).

The mutants are data, kept in `scripts/mutants.toml` and any `scripts/mutants_*.toml` beside it (read with
tomllib), one table per mutant:

    [[mutant]]
    name = "quant-requant-half-down"            # unique
    path = "cnnx/quant.py"                      # relative to the repository root
    old = "..."                                 # exact text; must occur exactly once in `path`
    new = "..."                                 # what replaces it
    tests = ["tests/test_quant.py", "-k", "x"]  # pytest arguments (node ids, paths, -k ...)

A mutant whose `old` text does not occur exactly once is STALE (the code moved on): the script lists every
stale one and exits non-zero without running anything, so the list is refreshed rather than silently rotting.

For each mutant: the files `git ls-files` lists are copied to a temporary directory (plus the built Cython
extensions and their generated C, with their timestamps, so only a mutated .pyx is recompiled), the mutant
is applied, a `.pyx` mutant is rebuilt with `setup.py build_ext --inplace` in the copy, and `pytest -x -q
<tests>` runs there with PYTHONPATH pointing at the copy (`cnnx.sim` and `cnnx.verilog` are symlinked into
the copy's package, as setup.py maps them). Verilator builds are cached by a hash of the Verilog sources, so
a mutated core gets a build of its own; XDG_CACHE_HOME points at a cache inside the copy, so nothing built
from a mutant lands in the real cache, whose finished builds (and MNIST) are linked in for reuse by the
unmutated configurations.
The copy, with its builds, is deleted after the run.

Exit status: 0 when every mutant was killed; 1 when one survived or its tests could not run; 2 when one is
stale or the list is malformed. Not part of CI (a full run takes tens of minutes: every Verilog mutant
recompiles the cores it tests).

Why not mutmut or cosmic-ray: both generate mutants by rewriting the *Python* AST (mutmut 3 with libcst,
cosmic-ray with parso), so they cannot touch Cython (.pyx is not Python syntax) or Verilog, which is where
half of cnnx's bugs would live; both also run the whole suite (or its coverage-selected part) without a build
step between mutation and test, and generate hundreds of operator-swap mutants instead of a short, named
list of realistic bugs whose tests are stated. A 200-line script with the mutants as data fits better.

Usage:
    .venv/bin/python scripts/mutants.py                 # every mutant, one at a time
    .venv/bin/python scripts/mutants.py --list          # the list, no run
    .venv/bin/python scripts/mutants.py --only NAME ... # just these
    .venv/bin/python scripts/mutants.py -j 2            # two mutants at once
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {"name": str, "path": str, "old": str, "new": str, "tests": list}


@dataclass
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: list[str]
    source: str  # the .toml it came from

    @property
    def line(self) -> int:
        text = (ROOT / self.path).read_text()
        return text[: text.find(self.old)].count("\n") + 1

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def load_mutants(root: Path = ROOT) -> list[Mutant]:
    """Every [[mutant]] of scripts/mutants*.toml, checked for shape and unique names (ValueError if not)."""
    out, seen = [], {}
    for f in sorted(glob.glob(str(root / "scripts" / "mutants*.toml"))):
        with open(f, "rb") as fh:
            data = tomllib.load(fh)
        for i, entry in enumerate(data.get("mutant", [])):
            where = f"{os.path.relpath(f, root)} mutant {i}"
            for key, typ in FIELDS.items():
                if not isinstance(entry.get(key), typ):
                    raise ValueError(f"{where}: `{key}` must be a {typ.__name__}")
            if set(entry) - set(FIELDS):
                raise ValueError(f"{where}: unknown keys {sorted(set(entry) - set(FIELDS))}")
            if not entry["tests"] or not all(isinstance(t, str) for t in entry["tests"]):
                raise ValueError(f"{where}: `tests` must be a non-empty list of strings")
            if entry["name"] in seen:
                raise ValueError(f"{where}: name {entry['name']!r} already used in {seen[entry['name']]}")
            seen[entry["name"]] = where
            out.append(Mutant(**entry, source=os.path.relpath(f, root)))
    return out


def stale(m: Mutant, root: Path = ROOT) -> str | None:
    """Why `m` cannot be applied (its file is missing or `old` is not there exactly once), else None."""
    p = root / m.path
    if not p.is_file():
        return f"{m.path} does not exist"
    n = p.read_text().count(m.old)
    if n != 1:
        return f"`old` occurs {n} times in {m.path} (must be exactly once)"
    if m.old == m.new:
        return "`new` equals `old`"
    return None


def _copy_repo(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in files.decode().split("\0"):
        if rel and (ROOT / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)
    # the built extensions and their generated C, dated so that each .so is newer than its .c and each .c
    # newer than its .pyx (they were built from these sources): build_ext then recompiles only the .pyx the
    # mutant touches (written after this), whatever order the real tree's files were last touched in
    now = time.time()
    for pattern, age in (("cnnx/_kernels/*.c", 20), ("cnnx/_kernels/*.so", 10)):
        for f in glob.glob(str(ROOT / pattern)):
            shutil.copy(f, dst / os.path.relpath(f, ROOT))
            os.utime(dst / os.path.relpath(f, ROOT), (now - age, now - age))
    for f in glob.glob(str(dst / "cnnx" / "_kernels" / "*.p*")):   # .pyx and .pxd
        os.utime(f, (now - 30, now - 30))
    # setup.py maps sim/ and verilog/ into the package; a plain PYTHONPATH import needs them inside it
    for name in ("sim", "verilog"):
        os.symlink(dst / name, dst / "cnnx" / name)


def _link_real_cache(base: Path) -> Path:
    """A fresh cache directory for one mutant's run, with the real cache's finished RTL builds and the MNIST
    .npz linked in: an unmutated configuration is reused, anything built from a mutant stays in `base`."""
    real = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    rtl_env = os.environ.get("CNNX_RTL_CACHE")
    rtl_real = Path(rtl_env) if rtl_env else real / "cnnx" / "rtl"
    (base / "cnnx" / "rtl").mkdir(parents=True, exist_ok=True)
    for d in rtl_real.glob("*") if rtl_real.is_dir() else []:
        if d.is_dir() and (d / "libcnnx_batch.so").exists():
            os.symlink(d, base / "cnnx" / "rtl" / d.name)
    for f in (real / "cnnx").glob("*.npz") if (real / "cnnx").is_dir() else []:
        os.symlink(f, base / "cnnx" / f.name)
    return base


def _env(copy: Path, cache: Path) -> dict:
    env = dict(os.environ)
    env.pop("CNNX_RTL_CACHE", None)
    env["XDG_CACHE_HOME"] = str(cache)
    env["PYTHONPATH"] = str(copy)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_mutant(m: Mutant, timeout: float, keep: bool = False) -> tuple[str, float, str]:
    """(result, seconds, log tail): result is killed, survived, timeout (counted as killed) or error (the
    mutant did not build, or pytest could not run its tests: exit status other than 0 or 1)."""
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f"cnnx-mutant-{m.name}-"))
    try:
        _copy_repo(tmp)
        cache = _link_real_cache(tmp / ".mutant-cache")
        target = tmp / m.path
        target.write_text(target.read_text().replace(m.old, m.new, 1))
        env = _env(tmp, cache)
        # the copy must import itself, not the editable install of the real tree
        probe = subprocess.run([sys.executable, "-c", "import cnnx, cnnx.sim, cnnx.verilog; "
                                "print(cnnx.__file__, cnnx.verilog.RTL_DIR)"],
                               cwd=tmp, env=env, capture_output=True, text=True)
        if probe.returncode != 0 or probe.stdout.count(str(tmp)) != 2:
            return "error", time.perf_counter() - t0, f"the copy does not import itself: {probe.stdout}" \
                                                      f"{probe.stderr}"
        kernels = tmp / "cnnx" / "_kernels"
        unbuilt = [p for p in kernels.glob("*.pyx") if not list(kernels.glob(p.stem + ".*.so"))]
        if m.path.endswith((".pyx", ".pxd")) or unbuilt:  # unbuilt: a fresh clone without `make setup`
            b = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tmp, env=env,
                               capture_output=True, text=True)
            if b.returncode != 0:  # a mutant that does not compile tests nothing: fix the entry
                return "error", time.perf_counter() - t0, "build failed: " + b.stderr[-2000:]
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests]
        try:
            r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout", time.perf_counter() - t0, f"no result after {timeout:.0f} s"
        tail = (r.stdout + r.stderr)[-3000:]
        result = {0: "survived", 1: "killed"}.get(r.returncode, "error")
        return result, time.perf_counter() - t0, tail
    finally:
        if not keep:  # the copy, and with it every build made from the mutant's sources
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print the mutants and exit")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="mutants run at once (default 1)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per mutant's tests (default 1800)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copies (for debugging)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the test output of every mutant")
    args = ap.parse_args(argv)

    try:
        mutants = load_mutants()
    except (ValueError, tomllib.TOMLDecodeError) as e:
        print(f"mutants: bad list: {e}", file=sys.stderr)
        return 2
    if args.only:
        unknown = set(args.only) - {m.name for m in mutants}
        if unknown:
            print(f"mutants: unknown names {sorted(unknown)}", file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m.name in args.only]
    bad = [(m, why) for m in mutants if (why := stale(m))]
    for m, why in bad:
        print(f"STALE  {m.name} ({m.source}): {why}")
    if bad:
        return 2
    if args.list:
        w = max(len(m.name) for m in mutants)
        for m in mutants:
            print(f"{m.name:<{w}}  {m.where:<36}  {' '.join(m.tests)}")
        return 0

    w = max(len(m.name) for m in mutants)
    print(f"{'mutant':<{w}} | {'where':<36} | {'result':<8} | seconds", flush=True)
    print(f"{'-' * w}-|-{'-' * 36}-|-{'-' * 8}-|--------", flush=True)
    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(run_mutant, m, args.timeout, args.keep): m for m in mutants}
        for fut in concurrent.futures.as_completed(futures):
            m = futures[fut]
            result, secs, tail = fut.result()
            results[m.name] = result
            print(f"{m.name:<{w}} | {m.where:<36} | {result:<8} | {secs:7.1f}", flush=True)
            if args.verbose or result in ("survived", "error"):
                print("    " + tail.strip().replace("\n", "\n    "), flush=True)
    killed = sum(r in ("killed", "timeout") for r in results.values())
    print(f"{killed} of {len(results)} mutants killed", flush=True)
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
