"""`cnnx.fpga.synth`: one core at one configuration through Yosys (synth_ecp5) and nextpnr-ecp5, its
resources and Fmax as a `SynthResult`, cached.

The cache lives beside the Verilator builds (`cnnx.sim.builder.cache_root()`, folder `synth/`), one folder per
configuration named by a hash of everything that shapes the result: the Verilog sources, the top module and
its parameters, the tool versions, the device, package, speed grade, seed and target frequency, and
flow.FLOW_RECIPE. The folder keeps the tools' logs and reports and `result.json`; it is built in a temporary
folder and renamed into place under a per-key lock, so a second process asking for the same configuration
waits and reuses it, and a killed run leaves no half result.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .._atomic import atomic_write, replace_dir
from . import flow, report

CORES = {"conv": "cnnx_conv_core", "pool": "cnnx_pool_core"}
RESULT_VERSION = 1


def rtl_dir() -> Path:
    from cnnx.verilog import RTL_DIR

    return RTL_DIR


def sources() -> list[Path]:
    """Every Verilog source: the tops instantiate what they need, and a new module file needs no edit here."""
    return sorted(p for p in rtl_dir().iterdir() if p.suffix in (".v", ".vh"))


def module_params(top: str) -> dict[str, int]:
    """The integer parameters of `top` with their defaults, read from its module header."""
    path = rtl_dir() / f"{top}.v"
    text = re.sub(r"//[^\n]*", "", path.read_text())
    m = re.search(r"\bmodule\s+" + re.escape(top) + r"\s*#\s*\((.*?)\)\s*\(", text, re.S)
    if not m:
        return {}
    return {name: int(val) for name, val in
            re.findall(r"\bparameter\s+(?:integer\s+)?(?:\[[^\]]*\]\s*)?(\w+)\s*=\s*(\d+)\b", m.group(1))}


def resolve_params(core: str, rows: int, cols: int, params: dict | None) -> tuple[str, dict, dict]:
    """(top, the overrides passed to Yosys, the full parameter set for the report), checked."""
    if core not in CORES:
        raise ValueError(f"unknown core {core!r}; choose from {sorted(CORES)}")
    top = CORES[core]
    defaults = module_params(top)
    given = dict(params or {})
    if core == "conv":
        for name, v in (("ROWS", rows), ("COLS", cols)):
            if name in given and given[name] != v:
                raise ValueError(f"--param {name}={given[name]} contradicts the array {rows}x{cols}")
            given[name] = v
    for name, v in given.items():
        if name not in defaults:
            raise ValueError(f"{top} has no parameter {name!r}; it has {sorted(defaults)}")
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{top} parameter {name} must be a positive integer, got {v!r}")
    full = {**defaults, **given}
    return top, dict(sorted(given.items())), dict(sorted(full.items()))


@dataclasses.dataclass(frozen=True)
class SynthResult:
    """Resources and timing of one core configuration on one ECP5 device."""

    core: str
    top: str
    params: dict            # every parameter of the top, defaults filled in
    device: str             # "85k"
    part: str               # "LFE5U-85F"
    package: str
    speed: int
    freq_mhz: float         # the target given to nextpnr
    seed: int
    tools: dict             # {"yosys": version, "nextpnr-ecp5": version}
    resources: dict         # lut4, ccu2c, lut4_total, ff, mult18, ebr, lutram, ... (Yosys, after synth_ecp5)
    ff_memories: list       # memories built from flip-flops: [{name, width, size, bits, rd_ports, wr_ports}]
    utilisation: dict       # percent of the device: lut4, ff, mult18, ebr (nextpnr's when it ran, else Yosys)
    fmax: dict              # {clock: {achieved_mhz, target_mhz, met}} from nextpnr's report; {} without P&R
    pnr: bool               # place-and-route was asked for
    pnr_error: str | None   # why nextpnr gave up (e.g. more multipliers than the device has), else None
    seconds: dict           # {"yosys": s, "nextpnr": s} of the run that made this result
    key: str
    run_dir: str
    cached: bool = False
    critical_path: dict | None = None  # nextpnr's longest path: start/end cells, delay, logic steps

    @property
    def ff_memory_bits(self) -> int:
        return sum(m["bits"] for m in self.ff_memories)

    @property
    def fmax_mhz(self) -> float | None:
        """The slowest clock's achieved Fmax (None without a finished place-and-route)."""
        vals = [v["achieved_mhz"] for v in self.fmax.values()]
        return min(vals) if vals else None

    @property
    def met(self) -> bool | None:
        return all(v["met"] for v in self.fmax.values()) if self.fmax else None

    @property
    def fits(self) -> bool:
        return self.pnr_error is None and all(v <= 100.0 for v in self.utilisation.values())

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(fmax_mhz=self.fmax_mhz, met=self.met, fits=self.fits, ff_memory_bits=self.ff_memory_bits,
                 result_version=RESULT_VERSION)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SynthResult:
        if d.get("result_version") != RESULT_VERSION:
            got = d.get("result_version")
            raise ValueError(f"synthesis result version {got!r}, expected {RESULT_VERSION}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def cache_dir() -> Path:
    from cnnx.sim.builder import cache_root

    return cache_root() / "synth"


def sources_digest() -> str:
    h = hashlib.sha256()
    for path in sources():
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def cache_key(top, overrides, tools, device, freq_mhz, seed, pnr) -> str:
    h = hashlib.sha256()
    for part in (flow.FLOW_RECIPE, top, repr(sorted(overrides.items())), repr(sorted(tools.items())), device,
                 flow.PACKAGE, str(flow.SPEED), f"{float(freq_mhz):g}", str(int(seed)), str(bool(pnr)),
                 sources_digest()):
        h.update(part.encode() + b"\0")
    shape = "".join(f"-{k.lower()}{v}" for k, v in sorted(overrides.items())
                    if k in ("ROWS", "COLS", "LANES"))
    return f"{top}{shape}-{device}-{h.hexdigest()[:16]}"


def _check_args(device, freq_mhz, seed):
    if device not in flow.DEVICES:
        raise ValueError(f"unknown device {device!r}; choose from {sorted(flow.DEVICES)}")
    if isinstance(freq_mhz, bool) or not isinstance(freq_mhz, (int, float)) or not 1 <= freq_mhz <= 1000:
        raise ValueError(f"target frequency must be in 1..1000 MHz, got {freq_mhz!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ValueError(f"seed must be an integer in 0..2**31-1, got {seed!r}")


def synth(core: str = "conv", rows: int = 8, cols: int = 8, device: str = "85k", freq_mhz: float = 150.0,
          seed: int = 1, params: dict | None = None, *, pnr: bool = True, out_dir=None,
          progress: Callable[[str], None] | None = None) -> SynthResult:
    """Synthesise (and, with `pnr`, place and route) `core` at `rows` x `cols`; cached.

    `params` overrides the top module's other parameters (buffer depths, LANES ...). `progress` receives one
    line per step. `out_dir`, if given, also receives `synth-<core>.json`."""
    _check_args(device, freq_mhz, seed)
    top, overrides, full = resolve_params(core, rows, cols, params)
    tools = flow.tool_versions()  # raises ToolsMissing with the install line
    key = cache_key(top, overrides, tools, device, freq_mhz, seed, pnr)
    root = cache_dir()
    final = root / key
    res = _load(final, progress)
    if res is None:
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f"{key}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a concurrent run of the same configuration finishes first
                if progress is not None:
                    progress(f"waiting for another process synthesising the same configuration ({key})")
                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                res = _load(final, progress)
                if res is None:
                    res = _run(core, top, overrides, full, tools, device, float(freq_mhz), seed, pnr, key,
                               final, progress)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    if out_dir is not None:
        with atomic_write(Path(out_dir) / f"synth-{core}.json", "w") as f:
            json.dump(res.to_dict(), f, indent=1)
    return res


def _load(final: Path, progress) -> SynthResult | None:
    path = final / "result.json"
    if not path.exists():
        return None
    try:
        res = SynthResult.from_dict(report.load_json(path))
    except (ValueError, TypeError, KeyError, json.JSONDecodeError):
        return None  # unreadable or from another flow version: run again
    if progress is not None:
        progress(f"cached: {final}")
    return dataclasses.replace(res, cached=True, run_dir=str(final))


def yosys_synth(workdir: Path, top: str, srcs, params: dict, progress=None, *,
                luts: bool = True) -> tuple[dict, list, float]:
    """synth_ecp5 of `top` from the Verilog files `srcs` (copied into `workdir`, where the logs stay):
    (resources, memories built from flip-flops, seconds). `luts=False`: the quick check without LUT
    mapping (flow.synth_script), whose LUT4 count is then 0."""
    [(res, mems)], secs = yosys_synth_many(workdir, [(top, params)], srcs, progress, luts=luts)
    return res, mems, secs


def yosys_synth_many(workdir: Path, jobs, srcs, progress=None, *, luts: bool = True):
    """Several (top, params) synthesised one after the other in ONE Yosys process (it starts slowly):
    ([(resources, memories built from flip-flops) per job], seconds)."""
    workdir = Path(workdir)
    names = []
    for src in srcs:
        shutil.copy(src, workdir / Path(src).name)
        names.append(Path(src).name)
    tags = [""] if len(jobs) == 1 else [f"-{i}" for i in range(len(jobs))]
    script = "design -reset\n".join(flow.synth_script(top, names, params, luts=luts, tag=tag)
                                     for (top, params), tag in zip(jobs, tags, strict=True))
    (workdir / "synth.ys").write_text(script)
    secs = flow.run_tool("yosys", ["synth.ys"], workdir, workdir / "yosys.log", progress)
    out = []
    for tag in tags:
        res = report.resources(report.cell_counts(report.load_json(workdir / f"stat{tag}.json")))
        mems = report.ff_memories((workdir / f"ffmem{tag}.txt").read_text())
        mems += report.mem2reg_memories((workdir / f"hierarchy{tag}.txt").read_text(errors="replace"),
                                        (workdir / f"regs{tag}.txt").read_text(errors="replace"))
        out.append((res, mems))
    return out, secs


def _run(core, top, overrides, full, tools, device, freq_mhz, seed, pnr, key, final, progress) -> SynthResult:
    t0 = time.monotonic()

    def say(msg):
        if progress is not None:
            progress(f"[{time.monotonic() - t0:7.1f} s] {msg}")

    # a run folder of this key left by a killed run (the caller holds the key's lock: no live run owns one)
    for stale in final.parent.glob(f".{key}.*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        say(f"yosys synth_ecp5 {' '.join([top, *(f'{k}={v}' for k, v in overrides.items())])} "
            f"(log {tmp / 'yosys.log'})")
        res, ffm, secs = yosys_synth(tmp, top, sources(), overrides, say)
        seconds = {"yosys": round(secs, 1)}
        dev = flow.DEVICES[device]
        util = {"lut4": res["lut4_total"] / dev["lut4"], "ff": res["ff"] / dev["ff"],
                "mult18": res["mult18"] / dev["mult18"], "ebr": res["ebr_total"] / dev["ebr"]}
        util = {k: round(100 * v, 1) for k, v in util.items()}
        say(f"yosys done: {res['lut4_total']} LUT4, {res['ff']} FF, {res['mult18']} MULT18X18D, "
            f"{res['ebr_total']} DP16KD, {res['lutram']} LUT-RAM, {len(ffm)} memories in flip-flops")
        fmax, err, critical = {}, None, None
        over = {k: v for k, v in util.items() if v > 100.0}
        if pnr and over:  # nextpnr would only fail, slowly: say why instead
            err = f"does not fit the {dev['part']}: " + ", ".join(f"{k} {v:.0f} %" for k, v in over.items())
            say(f"no place-and-route: {err}")
        elif pnr:
            say(f"nextpnr-ecp5 {dev['part']} {flow.PACKAGE} speed {flow.SPEED}, target {freq_mhz:g} MHz, "
                f"seed {seed} (log {tmp / 'nextpnr.log'})")
            try:
                seconds["nextpnr"] = round(flow.run_tool(
                    "nextpnr-ecp5", flow.pnr_args(device, freq_mhz, seed), tmp, tmp / "nextpnr.log", say), 1)
            except flow.ToolFailed:
                log = tmp / "nextpnr.log"
                err = report.pnr_error(log.read_text(errors="replace")) if log.exists() else None
                if err is None:
                    raise
                say(f"nextpnr gave up: {err}")
            if err is None:
                pr = report.pnr_report(report.load_json(tmp / "report.json"))
                fmax = pr["fmax"]
                critical = pr["critical_paths"][0] if pr["critical_paths"] else None
                u = pr["utilisation"]
                for name, bel in (("lut4", "TRELLIS_COMB"), ("ff", "TRELLIS_FF"), ("mult18", "MULT18X18D"),
                                  ("ebr", "DP16KD")):
                    if bel in u and u[bel]["available"]:
                        util[name] = round(100 * u[bel]["used"] / u[bel]["available"], 1)
                say("nextpnr done: " + ", ".join(f"{c} Fmax {v['achieved_mhz']:.1f} MHz "
                                                  f"({'met' if v['met'] else 'MISSED'} {v['target_mhz']:g})"
                                                  for c, v in fmax.items()))
        for big in ("netlist.json",):  # the netlists are large and nothing reads them again
            (tmp / big).unlink(missing_ok=True)
        result = SynthResult(
            core=core, top=top, params=full, device=device, part=dev["part"], package=flow.PACKAGE,
            speed=flow.SPEED, freq_mhz=float(freq_mhz), seed=int(seed), tools=tools, resources=res,
            ff_memories=ffm, utilisation=util, fmax=fmax, pnr=bool(pnr), pnr_error=err, seconds=seconds,
            key=key, run_dir=str(final), critical_path=critical)
        with atomic_write(tmp / "result.json", "w") as f:
            json.dump(result.to_dict(), f, indent=1)
        replace_dir(tmp, final)  # over a stale folder without result.json (killed run)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def find_cached(core: str, rows: int = 8, cols: int = 8, device: str = "85k", freq_mhz: float = 150.0,
                seed: int = 1, params: dict | None = None) -> SynthResult | None:
    """The cached place-and-route result of this configuration of today's sources, without running anything
    (and without the tools installed: with several tool versions cached, the installed one's, else the
    newest)."""
    _check_args(device, freq_mhz, seed)
    top, overrides, _full = resolve_params(core, rows, cols, params)
    root = cache_dir()
    if not root.is_dir():
        return None
    installed = flow.tool_versions() if flow.tools_available() else None
    if installed is not None:
        return _load(root / cache_key(top, overrides, installed, device, freq_mhz, seed, True), None)
    found = []
    for path in root.glob(f"{top}*-{device}-*/result.json"):
        res = _load(path.parent, None)
        if res is None or not res.pnr:
            continue
        if path.parent.name == cache_key(top, overrides, res.tools, device, freq_mhz, seed, True):
            found.append((path.stat().st_mtime, res))
    return max(found, key=lambda t: t[0])[1] if found else None
