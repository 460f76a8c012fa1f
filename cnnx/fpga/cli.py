"""`cnnx synth --core conv|pool|all --array 8x8 [--device 85k] [--freq 150] [--seed 1] [--param N=V]
[--no-pnr] [--json] [--out DIR]`: resources and Fmax of the cores, one table row per core."""

from __future__ import annotations

import json
import sys
import time

from . import flow
from .driver import CORES, SynthResult, module_params, synth


def parse_param(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--param expects NAME=VALUE, got {text!r}")
    try:
        return name.strip(), int(value, 0)
    except ValueError:
        raise ValueError(f"--param {name.strip()}: expected an integer value, got {value!r}") from None


def split_params(cores: list[str], pairs: list[str]) -> dict[str, dict]:
    """--param pairs to each core that has that parameter; a name no chosen core has is an error."""
    per = {c: {} for c in cores}
    for text in pairs:
        name, value = parse_param(text)
        owners = [c for c in cores if name in module_params(CORES[c])]
        if not owners:
            raise ValueError(f"no chosen core has a parameter {name!r}")
        for c in owners:
            per[c][name] = value
    return per


def basis(r: SynthResult) -> str:
    tools = ", ".join(f"{k} {v}" for k, v in r.tools.items())
    return (f"{r.part} ({r.device}) {r.package} speed {r.speed}; target {r.freq_mhz:g} MHz; seed {r.seed}; "
            f"{tools}")


def _params_text(r: SynthResult) -> str:
    return " ".join(f"{k}={v}" for k, v in r.params.items())


def format_table(results: list[SynthResult]) -> str:
    if not results:
        return ""
    lines = [f"synth: {basis(results[0])}",
             f"{'core':<5} {'LUT4':>7} {'FF':>7} {'MULT18':>6} {'EBR':>4} {'LUTRAM':>6} {'FF-mem':>8} "
             f"{'LUT%':>6} {'FF%':>6} {'DSP%':>6} {'EBR%':>6} {'Fmax MHz':>9}  result"]
    for r in results:
        x, u = r.resources, r.utilisation
        if r.pnr_error:
            verdict = f"P&R failed: {r.pnr_error}"
        elif not r.pnr:
            verdict = "synthesis only" + ("" if r.fits else " (does not fit)")
        else:
            verdict = ("met" if r.met else "MISSED") + f" {r.freq_mhz:g} MHz"
        fmax = f"{r.fmax_mhz:9.1f}" if r.fmax_mhz is not None else f"{'-':>9}"
        lines.append(f"{r.core:<5} {x['lut4_total']:>7} {x['ff']:>7} {x['mult18']:>6} {x['ebr_total']:>4} "
                     f"{x['lutram']:>6} {r.ff_memory_bits:>8} {u['lut4']:>6.1f} {u['ff']:>6.1f} "
                     f"{u['mult18']:>6.1f} {u['ebr']:>6.1f} {fmax}  {verdict}")
    for r in results:
        how = "cached" if r.cached else "ran"
        lines.append(f"  {r.core}: {r.top} {_params_text(r)}  ({how}: {r.run_dir})")
        cp = r.critical_path
        if cp:
            lines.append(f"    critical path {cp['delay_ns']:.1f} ns ({cp['logic_steps']} logic steps, "
                         f"{cp['routing_ns']:.1f} ns routing): {cp['start']} -> {cp['end']}")
        for m in r.ff_memories:
            how = ("registers from the start (Verilog mem2reg)" if m.get("mem2reg")
                   else f"{m['rd_ports']} read, {m['wr_ports']} write ports")
            lines.append(f"    memory in flip-flops: {m['name']} {m['size']} x {m['width']} bits ({how})")
    lines.append("  LUT4 counts carry cells as two; FF-mem = memory bits built from flip-flops; "
                 "% of the device (nextpnr's counts after P&R)")
    return "\n".join(lines)


def cli_synth(args) -> int:
    """Handler of `cnnx synth`; exit 0 done, 1 a target missed or a core did not fit, 2 bad input/no tools."""
    from .._cliutil import cli_error, progress_on
    from ..harness import parse_array

    human = sys.stderr if args.json else sys.stdout
    quiet = getattr(args, "quiet", False)

    def say(msg: str) -> None:
        if not quiet:
            print(msg, file=human, flush=True)

    def step(msg: str) -> None:  # progress: stderr, like every subcommand's (cnnx._cliutil.progress_on)
        if progress_on(args):
            print(f"   {msg}", file=sys.stderr, flush=True)

    def fail(msg: str, code: int = 2) -> int:
        return cli_error("synth", msg, args.json, code)

    if not flow.tools_available():
        return fail(flow.INSTALL_HINT)
    cores = sorted(CORES) if args.core == "all" else [args.core]
    t0 = time.monotonic()
    try:
        rows, cols = parse_array(args.array)
        per = split_params(cores, args.param or [])
        results = []
        for core in cores:
            if progress_on(args):
                print(f"== {core} core", file=sys.stderr, flush=True)
            results.append(synth(core, rows, cols, device=args.device, freq_mhz=args.freq, seed=args.seed,
                                 params=per[core], pnr=not args.no_pnr, out_dir=args.out, progress=step))
    except (ValueError, flow.ToolsMissing) as e:
        return fail(str(e))
    except flow.ToolFailed as e:
        print(f"cnnx synth: {e}", file=sys.stderr, flush=True)  # the tool's log lines, then the one-liner
        return fail(str(e).splitlines()[0], 1)
    say(format_table(results))
    say(f"({time.monotonic() - t0:.0f} s)")
    if args.json:
        print(json.dumps({"array": f"{rows}x{cols}", "results": [r.to_dict() for r in results]}), flush=True)
    bad = [r for r in results if not r.fits or r.met is False]
    return 1 if bad else 0
