"""Benchmark of the hardware: the conv core at 4x4, 8x8 and 16x16 and the pool core, each synthesised
(Yosys synth_ecp5) and placed and routed (nextpnr-ecp5) on an ECP5, through `cnnx.fpga.synth` (cached: a
second run only reads the results). Prints one table with its basis: device, package, speed grade, tool
versions, seed and the target frequency. The pool core does not depend on the array; it runs once at its
default parameters (the ones `cnnx profile` looks up). Nothing here asserts a figure.

    .venv/bin/python benchmarks/bench_synth.py [--arrays 4x4,8x8,16x16] [--device 85k] [--freq 150] [--seed 1]
                                               [--param NAME=VALUE ...] [--no-pnr] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from cnnx import fpga
from cnnx.fpga import synth, tools_available
from cnnx.fpga.cli import basis, parse_param
from cnnx.harness import parse_array


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arrays", default="4x4,8x8,16x16")
    ap.add_argument("--device", choices=sorted(fpga.DEVICES), default="85k")
    ap.add_argument("--freq", type=float, default=150.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--param", action="append", default=[], help="conv core NAME=VALUE (repeatable)")
    ap.add_argument("--no-pnr", action="store_true")
    ap.add_argument("--json", default=None, help="also write every result to this JSON file")
    args = ap.parse_args(argv)
    if not tools_available():
        print(fpga.INSTALL_HINT, file=sys.stderr)
        return 2
    conv_params = dict(parse_param(p) for p in args.param)
    jobs = [("conv", *parse_array(a), conv_params) for a in args.arrays.split(",")] + [("pool", 8, 8, {})]
    results, t0 = [], time.monotonic()
    for core, rows, cols, params in jobs:
        label = f"{core} {rows}x{cols}" if core == "conv" else "pool"
        print(f"== {label}", flush=True)
        results.append((label, synth(core, rows, cols, device=args.device, freq_mhz=args.freq, seed=args.seed,
                                     params=params, pnr=not args.no_pnr,
                                     progress=lambda m: print(f"   {m}", flush=True))))
    print(f"\nbasis: {basis(results[0][1])}")
    print(f"{'configuration':<13} {'LUT4':>7} {'FF':>7} {'MULT18':>6} {'DP16KD':>6} {'LUTRAM':>6} "
          f"{'FF-mem b':>8} {'LUT%':>5} {'DSP%':>5} {'EBR%':>5} {'Fmax MHz':>8}  result  (params)")
    for label, r in results:
        x, u = r.resources, r.utilisation
        verdict = (f"P&R failed: {r.pnr_error}" if r.pnr_error else "no P&R" if not r.pnr
                   else "met" if r.met else "missed")
        fm = f"{r.fmax_mhz:8.1f}" if r.fmax_mhz is not None else f"{'-':>8}"
        params = " ".join(f"{k}={v}" for k, v in r.params.items() if k not in ("ROWS", "COLS"))
        print(f"{label:<13} {x['lut4_total']:>7} {x['ff']:>7} {x['mult18']:>6} {x['ebr_total']:>6} "
              f"{x['lutram']:>6} {r.ff_memory_bits:>8} {u['lut4']:>5.0f} {u['mult18']:>5.0f} "
              f"{u['ebr']:>5.0f} "
              f"{fm}  {verdict}  ({params})")
    print("LUT4 counts carry cells as two; FF-mem b = memory bits built from flip-flops; % of the device.")
    print(f"total {time.monotonic() - t0:.0f} s (cached results cost nothing)")
    if args.json:
        from cnnx._atomic import atomic_write

        with atomic_write(args.json, "w") as f:
            json.dump([{"configuration": label, **r.to_dict()} for label, r in results], f, indent=1)
    return 0


if __name__ == "__main__":
    from cnnx._cliutil import sigterm_as_interrupt

    with sigterm_as_interrupt():  # SIGTERM stops the tools and removes the run folder, as Ctrl-C does
        raise SystemExit(main())
