"""The report parsing: on hand-written report snippets, and on small modules with known synthesis results
run through the real Yosys (tiny.v beside this file)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import needs_tools

from cnnx.fpga import report
from cnnx.fpga.check import check_tops
from cnnx.fpga.driver import yosys_synth, yosys_synth_many

TINY = Path(__file__).resolve().parent / "tiny.v"


def test_cell_counts_from_design_or_single_module():
    assert report.cell_counts({"design": {"num_cells_by_type": {"LUT4": 3}}}) == {"LUT4": 3}
    assert report.cell_counts({"modules": {"\\top": {"num_cells_by_type": {"TRELLIS_FF": 2}}}}) == {
        "TRELLIS_FF": 2}
    with pytest.raises(ValueError, match="one flattened module"):
        report.cell_counts({"modules": {"\\a": {}, "\\b": {}}})


def test_resources_count_carry_cells_as_two_luts():
    r = report.resources({"LUT4": 10, "CCU2C": 4, "DP16KD": 1, "PDPW16KD": 2})
    assert (r["lut4"], r["ccu2c"], r["lut4_total"], r["ebr_total"], r["mult18"]) == (10, 4, 18, 3, 0)


DUMP = r"""
  attribute \src "x.v:3.5-3.30"
  cell $mem_v2 $auto$memory_collect.cc:1:mem$1
    parameter \ABITS 4
    parameter \INIT 128'x
    parameter \MEMID "\\mem"
    parameter \RD_PORTS 2
    parameter \SIZE 16
    parameter \WIDTH 32'00000000000000000000000000001000
    parameter \WR_PORTS 1
    connect \RD_ADDR { \ra \rb }
  end
"""


def test_ff_memories_from_a_dump():
    assert report.ff_memories(DUMP) == [
        {"name": "mem", "width": 8, "size": 16, "bits": 128, "rd_ports": 2, "wr_ports": 1, "mem2reg": False}]
    assert report.ff_memories("") == []


def test_mem2reg_memories_from_warnings_and_wires():
    elab = "Warning: Replacing memory \\regs with list of registers. See x.v:7\n"
    wires = "\n".join([*(f"  wire width 8 \\u_core.regs[{i}]" for i in range(4)), "  wire \\u_core.regs[4]",
                        "  wire width 3 \\other[0]", "  wire width 8 \\u_core.regsx[0]"])
    got = report.mem2reg_memories(elab, wires)
    assert [(m["name"], m["size"], m["bits"], m["mem2reg"]) for m in got] == [("u_core.regs", 5, 33, True)]
    assert report.mem2reg_memories("no warnings", wires) == []
    gone = report.mem2reg_memories("Replacing memory \\lost with list of registers", wires)
    assert [(m["name"], m["bits"]) for m in gone] == [("lost", 0)]


def test_pnr_report_utilisation_fmax_and_errors():
    rep = {"utilization": {"MULT18X18D": {"used": 80, "available": 72}},
           "fmax": {"$glbnet$clk$TRELLIS_IO_IN": {"achieved": 151.26, "constraint": 150.0},
                    "other": {"achieved": 90.0, "constraint": 100.0}}}
    got = report.pnr_report(rep)
    assert got["utilisation"] == {"MULT18X18D": {"used": 80, "available": 72}}
    assert got["fmax"]["clk"] == {"achieved_mhz": 151.26, "target_mhz": 150.0, "met": True}
    assert got["fmax"]["other"]["met"] is False
    assert report.pnr_report({}) == {"utilisation": {}, "fmax": {}, "critical_paths": []}
    two = {"critical_paths": [{"from": "a", "to": "a", "path": [{"type": "logic", "delay": 1.0}]},
                              {"from": "<async>", "to": "posedge $glbnet$clk$TRELLIS_IO_IN",
                               "path": [{"type": "routing", "delay": 9.0}]},
                              {"from": "posedge $glbnet$clk$TRELLIS_IO_IN", "to": "negedge $glbnet$clk",
                               "path": [{"type": "routing", "delay": 3.0}]},
                              {"from": "c", "to": "c", "path": []}]}
    got = [(p["from_clock"], p["to_clock"], p["delay_ns"], p["start"]) for p in report.critical_paths(two)]
    assert got == [("clk", "negedge clk", 3.0, "?"), ("a", "a", 1.0, "?"), ("<async>", "clk", 9.0, "?")]
    log = "Info: x\nERROR: Unable to place cell 'm', no BELs remaining\nERROR: second\n"
    assert report.pnr_error(log) == "Unable to place cell 'm', no BELs remaining"
    assert report.pnr_error("Info: fine\n") is None


KNOWN = [  # top, counts it must have, memories it must report as built from flip-flops (name, width, size)
    ("t_bram", {"ebr_total": 1, "lutram": 0}, []),
    ("t_lutram", {"ebr_total": 0, "lutram": 1}, []),
    ("t_ffmem", {"ebr_total": 0, "lutram": 0}, [("mem", 8, 16)]),
    ("t_ff", {"ff": 24, "mult18": 0, "ebr_total": 0}, []),
    ("t_mul", {"mult18": 1, "ff": 0}, []),
    ("t_mem2reg", {"ebr_total": 0, "lutram": 0}, [("regs", 8, 16)]),
]


@needs_tools
@pytest.mark.fpga
def test_known_modules_through_yosys(tmp_path):
    # the quick check (no LUT mapping): every count here is final before it
    got, _secs = yosys_synth_many(tmp_path, [(top, {}) for top, _, _ in KNOWN], [TINY], luts=False)
    for (top, expect, ffmem), (res, mems) in zip(KNOWN, got, strict=True):
        assert {k: res[k] for k in expect} == expect, top
        assert [(m["name"], m["width"], m["size"]) for m in mems] == ffmem, top
        if ffmem:
            assert res["ff"] >= 128  # the 16 x 8 memory really became flip-flops


@needs_tools
@pytest.mark.fpga
def test_the_full_flow_maps_luts(tmp_path):
    res, mems, _secs = yosys_synth(tmp_path, "t_lutram", [TINY], {})
    assert res["lutram"] == 1 and res["lut4_total"] == 0 and mems == []
    assert (tmp_path / "netlist.json").stat().st_size > 0  # what nextpnr reads
    res, _mems, _secs = yosys_synth(tmp_path, "t_ffmem", [TINY], {})
    assert res["lut4_total"] > 0  # the 16-way read multiplexer of the flip-flop memory


@needs_tools
@pytest.mark.fpga
def test_yosys_check_refuses_latches_and_multiple_drivers():
    assert check_tops(["t_ff", "t_bram"], srcs=[TINY])[0]
    ok, log = check_tops(["t_latch"], srcs=[TINY])
    assert not ok and "t_latch" in log
    ok, log = check_tops(["t_multi"], srcs=[TINY])
    assert not ok and "multiple" in log.lower()


def test_step_watch_announces_only_the_steps_that_take_a_while(monkeypatch):
    from cnnx.fpga import flow

    now = [0.0]
    monkeypatch.setattr(flow.time, "monotonic", lambda: now[0])
    said = []
    w = flow._StepWatch(flow._STEP["yosys"], said.append, "yosys", quiet_s=2.0)
    w.feed(["5.1. Executing HIERARCHY pass (managing design hierarchy).\n", "noise\n",
            "5.2. Executing PROC pass (convert processes to netlists).\n"])
    w.tick()
    assert said == []  # PROC has only just started
    now[0] = 1.0
    w.feed(["5.46. Executing ABC9 pass.\n"])
    now[0] = 2.5
    w.tick()
    assert said == []  # ABC9 started at 1.0: not yet 2 s
    now[0] = 3.5
    w.tick()
    w.tick()
    assert said == ["yosys: ABC9"]  # once
    n = flow._StepWatch(flow._STEP["nextpnr-ecp5"], said.append, "nextpnr-ecp5", quiet_s=0.0)
    n.feed(["Info: Running main analytical placer, 9 cells.\n", "Info:     at iteration #1\n"])
    n.tick()
    assert said[-1] == "nextpnr-ecp5: Running main analytical placer, 9 cells."


@needs_tools
@pytest.mark.fpga
def test_a_failing_tool_run_names_its_log(tmp_path):
    from cnnx.fpga import flow

    with pytest.raises(flow.ToolFailed, match=r"yosys failed \(exit 1\); full log: .*yosys.log"):
        yosys_synth_many(tmp_path, [("t_no_such_module", {})], [TINY])
