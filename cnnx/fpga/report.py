"""Reading the tools' reports: Yosys `stat -json` cell counts, the memories left for flip-flops, and
nextpnr-ecp5's `--report` JSON (utilisation per bel type, achieved Fmax per clock)."""

from __future__ import annotations

import json
import re
from pathlib import Path

# ECP5 cell types after synth_ecp5 and the names they are reported under.
CELLS = {
    "LUT4": "lut4",             # logic LUTs
    "CCU2C": "ccu2c",           # carry cells: two LUT4s each
    "TRELLIS_FF": "ff",         # flip-flops
    "MULT18X18D": "mult18",     # DSP multipliers
    "ALU54B": "alu54",          # DSP adders
    "DP16KD": "ebr",            # 18 kbit block RAM (EBR)
    "PDPW16KD": "ebr_pdp",      # EBR in 36-bit pseudo-dual-port mode
    "TRELLIS_DPR16X4": "lutram",  # 16x4 distributed (LUT) RAM
    "PFUMX": "pfumx",
    "L6MUX21": "l6mux",
}


def cell_counts(stat: dict) -> dict[str, int]:
    """Cell counts by type from `stat -json` (the whole design; synth_ecp5 has flattened it)."""
    if "design" in stat and "num_cells_by_type" in stat["design"]:
        by_type = stat["design"]["num_cells_by_type"]
    else:
        modules = stat.get("modules") or {}
        if len(modules) != 1:
            raise ValueError(f"expected one flattened module in the Yosys statistics, got {len(modules)}")
        by_type = next(iter(modules.values()))["num_cells_by_type"]
    return {str(k): int(v) for k, v in by_type.items()}


def resources(counts: dict[str, int]) -> dict[str, int]:
    """The figures a designer reads: LUT4 (logic LUTs + 2 per carry cell = what occupies slices' LUTs),
    FF, MULT18X18D, DP16KD (EBR), LUT-RAM cells, and the raw counts they come from."""
    res = {name: counts.get(cell, 0) for cell, name in CELLS.items()}
    res["lut4_total"] = res["lut4"] + 2 * res["ccu2c"]
    res["ebr_total"] = res["ebr"] + res["ebr_pdp"]
    return res


_CELL = re.compile(r"^\s*cell \$mem(?:_v2)? (\S+)\s*$")
_PARAM = re.compile(r"^\s*parameter \\(\w+) (.+?)\s*$")


def ff_memories(dump_text: str) -> list[dict]:
    """Memories still abstract ($mem_v2) right before synth_ecp5's `memory_map`, from a Yosys `dump`:
    each is about to be built from flip-flops and multiplexers instead of block or LUT RAM."""
    mems, cur = [], None
    for line in dump_text.splitlines():
        m = _CELL.match(line)
        if m:
            cur = {"cell": m.group(1)}
            continue
        if cur is None:
            continue
        p = _PARAM.match(line)
        if p:
            cur[p.group(1)] = p.group(2)
        elif line.strip() == "end":
            mems.append(_mem_entry(cur))
            cur = None
    return mems


_MEM2REG = re.compile(r"Replacing memory \\(\S+) with list of registers")
_WIRE = re.compile(r"^\s*wire (?:width (\d+) )?"
                   r"(?:(?:offset -?\d+|signed|upto|input \d+|output \d+|inout \d+) )*\\(\S+)\[(\d+)\]\s*$")


def mem2reg_memories(elab_text: str, regs_dump: str) -> list[dict]:
    """Memories the Verilog frontend turned into lists of registers (named in its warnings), sized from the
    flattened design's `name[i]` wires; each such memory is built from flip-flops too."""
    names = set(_MEM2REG.findall(elab_text))
    if not names:
        return []
    found: dict[str, dict] = {}
    for line in regs_dump.splitlines():
        m = _WIRE.match(line)
        if not m:
            continue
        width, full, _index = int(m.group(1) or 1), m.group(2), m.group(3)
        if full.rsplit(".", 1)[-1] not in names:
            continue
        entry = found.setdefault(full, {"name": full, "width": 0, "size": 0, "bits": 0, "rd_ports": None,
                                        "wr_ports": None, "mem2reg": True})
        entry["size"] += 1
        entry["bits"] += width
        entry["width"] = max(entry["width"], width)
    out = list(found.values())
    named = {e["name"].rsplit(".", 1)[-1] for e in out}
    out += [{"name": n, "width": 0, "size": 0, "bits": 0, "rd_ports": None, "wr_ports": None, "mem2reg": True}
            for n in sorted(names - named)]  # optimised away entirely, or not found: still named
    return sorted(out, key=lambda e: e["name"])


def _int_param(v: str | None) -> int:
    if v is None:
        return 0
    v = v.strip()
    if "'" in v:  # sized constant, e.g. 32'00000000000000000000000100000000
        return int(v.split("'", 1)[1], 2)
    return int(v)


def _mem_entry(cell: dict) -> dict:
    memid = cell.get("MEMID", cell["cell"]).strip('"').replace("\\\\", "\\").lstrip("\\")
    width, size = _int_param(cell.get("WIDTH")), _int_param(cell.get("SIZE"))
    return {"name": memid, "width": width, "size": size, "bits": width * size,
            "rd_ports": _int_param(cell.get("RD_PORTS")), "wr_ports": _int_param(cell.get("WR_PORTS")),
            "mem2reg": False}


def critical_paths(report: dict) -> list[dict]:
    """nextpnr's critical path per clock pair, summarised: where it starts and ends (cell names, which name
    the RTL registers), its delay and how many logic and routing steps it has; the register-to-register
    paths first, the longest first."""
    out = []
    for cp in report.get("critical_paths") or []:
        steps = cp.get("path") or []
        if not steps:
            continue
        delay = sum(float(s.get("delay", 0.0)) for s in steps)
        out.append({"from_clock": _clock_name(str(cp.get("from", ""))),
                    "to_clock": _clock_name(str(cp.get("to", ""))),
                    "start": (steps[0].get("from") or {}).get("cell", "?"),
                    "end": (steps[-1].get("to") or {}).get("cell", "?"),
                    "delay_ns": round(delay, 3),
                    "logic_steps": sum(1 for s in steps if s.get("type") == "logic"),
                    "routing_ns": round(sum(float(s.get("delay", 0.0)) for s in steps
                                            if s.get("type") == "routing"), 3)})
    # register-to-register paths first (what limits the clock), then those to or from the ports
    return sorted(out, key=lambda p: ("<async>" in (p["from_clock"], p["to_clock"]), -p["delay_ns"]))


def pnr_report(report: dict) -> dict:
    """nextpnr's --report JSON -> {"utilisation": {bel: {used, available}}, "fmax": {clock: {...}},
    "critical_paths": [...]}."""
    util = {str(k): {"used": int(v["used"]), "available": int(v["available"])}
            for k, v in (report.get("utilization") or {}).items()}
    fmax = {}
    for clk, v in (report.get("fmax") or {}).items():
        achieved, target = float(v["achieved"]), float(v["constraint"])
        fmax[_clock_name(str(clk))] = {"achieved_mhz": round(achieved, 2), "target_mhz": round(target, 2),
                                       "met": achieved >= target}
    return {"utilisation": util, "fmax": fmax, "critical_paths": critical_paths(report)}


def _clock_name(net: str) -> str:
    # nextpnr names the promoted global net after the clock, e.g. "posedge $glbnet$clk$TRELLIS_IO_IN"
    edge, _, name = net.rpartition(" ")
    if name.startswith("$glbnet$"):
        name = name[len("$glbnet$"):].split("$")[0] or name
    return f"{edge} {name}" if edge and edge != "posedge" else name


def pnr_error(log_text: str) -> str | None:
    """The first ERROR line of a nextpnr log (why placement or routing gave up), if any."""
    for line in log_text.splitlines():
        if line.startswith("ERROR:"):
            return line[len("ERROR:"):].strip()
    return None


def load_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)
