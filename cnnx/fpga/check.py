"""`python -m cnnx.fpga.check [TOP ...]`: Yosys's structural lint on every Verilog top (each verilog/*.v is
one module, elaborated with its default parameters): no latches, and `check -assert` (no multiple drivers,
no undriven or conflicting nets, no combinational loops). Part of `make lint`; exit 0 clean, 1 not, 2 when the
tools are missing.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from . import flow
from .driver import sources


def check_tops(tops=None, params: dict | None = None, srcs=None) -> tuple[bool, str]:
    """Run the check on `tops` in one Yosys process; (passed, log text). `tops`: a list of module names
    (default: every verilog/*.v), each elaborated with `params`, or a {top: its params} dict. `srcs`
    (default: the cnnx Verilog) are the files read for every top."""
    srcs = [Path(s) for s in srcs] if srcs is not None else sources()
    tops = tops or [p.stem for p in srcs if p.suffix == ".v"]
    jobs = tops if isinstance(tops, dict) else {t: params or {} for t in tops}
    with tempfile.TemporaryDirectory(prefix="cnnx-yosys-check-") as tmp:
        work = Path(tmp)
        names = []
        for src in srcs:
            (work / src.name).write_bytes(src.read_bytes())
            names.append(src.name)
        parts = []
        for top, top_params in jobs.items():
            parts += [f"log -header {flow.CHECK_HEADER}{top}", flow.check_script(top, names, top_params),
                      "design -reset"]
        (work / "check.ys").write_text("\n".join(parts))
        try:
            flow.run_tool("yosys", ["check.ys"], work, work / "check.log")
            ok = True
        except flow.ToolFailed:
            ok = False
        return ok, (work / "check.log").read_text(errors="replace")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not flow.tools_available():
        print(f"yosys check: {flow.INSTALL_HINT}", file=sys.stderr)
        return 2
    ok, log = check_tops(argv or None)
    done = [ln.split(flow.CHECK_HEADER, 1)[1].strip() for ln in log.splitlines() if flow.CHECK_HEADER in ln]
    if ok:
        print(f"yosys check -assert: no latches, no multiple drivers: {', '.join(done)}")
        return 0
    bad = done[-1] if done else "?"
    tail = [ln for ln in log.splitlines() if "ERROR" in ln or "Warning" in ln or "found" in ln.lower()]
    print(f"yosys check failed on {bad}:\n" + "\n".join(tail[-20:]), file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
