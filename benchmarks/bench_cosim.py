"""Benchmark of the co-simulation harness: `cnnx cosim RUN_DIR --images 10000 --workers 2 --driver fast`.

Prints the method, then: the wall time and images/s of the full run, the int8 CPU vs RTL bit-identical count,
each path's accuracy (float vs int8 vs RTL), the same harness with ONE worker on a slice (the peer the
parallel speed is a ratio against, measured in the same run), and the profiler's tables for 8x8 and 16x16
arrays at the Fmax `cnnx synth` reported for them (a table is skipped, saying why, when there is no
synthesis result; `--clock-mhz` assumes a clock instead, at most that Fmax). It asserts nothing about speed;
the machine is shared, so read ratios, not absolutes.

    .venv/bin/python benchmarks/bench_cosim.py [RUN_DIR (default runs/lenet5)] [--images 10000]
        [--workers 2] [--peer-images 1000] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from cnnx import harness, profile, ptq
from cnnx.checkpoint import load
from cnnx.data import load_mnist


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", nargs="?", default="runs/lenet5")
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--peer-images", type=int, default=1000, help="images for the 1-worker peer run (0: skip)")
    p.add_argument("--arrays", default="8x8,16x16", help="arrays for the profile tables")
    p.add_argument("--clock-mhz", type=float, default=None, help="default: the Fmax of `cnnx synth`")
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    a = p.parse_args(argv)

    print(f"method: harness.run_cosim on the first {a.images} MNIST test images, fast driver, 8x8 conv core, "
          f"{a.workers} spawned workers (batches of 250 per layer), int8 model calibrated on 500 training "
          f"images; NumPy golden paths on the first 200 images; peer: 1 worker on {a.peer_images} images; "
          f"machine: {os.cpu_count()} cores (shared)", flush=True)
    model, info = load(a.run_dir)
    images, labels = load_mnist("test")
    t = time.perf_counter()
    qmodel = ptq.quantize_model(model, harness.calibration_images())
    t_ptq = time.perf_counter() - t
    print(f"quantisation (calibration on 500 images): {t_ptq:.2f} s")

    out = {"run_dir": a.run_dir, "images": a.images, "workers": a.workers}
    res = harness.run_cosim(model, images[: a.images], labels[: a.images], qmodel=qmodel, workers=a.workers)
    print(res.table())
    ident = min(r.rtl_identical for r in res.layers)
    print(f"\nRESULT {a.images} images, {a.workers} workers: wall {res.wall_time_s:.1f} s "
          f"({a.images / res.wall_time_s:.1f} images/s); images bit-identical int8 CPU vs RTL at every "
          f"layer: {ident}/{a.images}; accuracy float {res.accuracy['float-cython']:.4f}, int8 CPU "
          f"{res.accuracy['int8-cython']:.4f}, RTL {res.accuracy['rtl']:.4f}")
    out["cosim"] = res.to_dict()

    if a.peer_images:
        n = min(a.peer_images, a.images)
        peer = harness.run_cosim(model, images[:n], labels[:n], qmodel=qmodel, workers=1, golden_images=0,
                                 progress=False)
        r_par = a.images / res.rtl_time_s
        r_one = n / peer.rtl_time_s
        print(f"peer: 1 worker, {n} images: RTL part {peer.rtl_time_s:.1f} s ({r_one:.1f} images/s); "
              f"{a.workers} workers {r_par:.1f} images/s -> parallel speed-up x{r_par / r_one:.2f}")
        out["peer"] = {"images": n, "rtl_time_s": peer.rtl_time_s, "images_per_s": r_one,
                       "speedup": r_par / r_one}

    out["profile"] = {}
    for arr in a.arrays.split(","):
        try:
            clock = profile.resolve_clock(harness.parse_array(arr), a.clock_mhz)
        except profile.ClockRefused as e:
            print(f"\nno profile for {arr}: {e}")
            continue
        prof = profile.profile_model(model, qmodel, images[:16], array=harness.parse_array(arr),
                                     clock_mhz=clock["clock_mhz"])
        prof.update(clock)
        print()
        print(profile.format_table(prof))
        print(profile.format_hardware(prof))
        out["profile"][arr] = prof
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 1 if res.int8_mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
