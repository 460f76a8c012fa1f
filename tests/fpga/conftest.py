"""Shared pieces of the FPGA-flow tests: a marker for tests that need the tools, and a fake flow."""

from __future__ import annotations

import json

import pytest

from cnnx.fpga import driver as synth_mod
from cnnx.fpga import flow

needs_tools = pytest.mark.skipif(not flow.tools_available(), reason="needs the fpga extra: cnnx[fpga]")

FAKE_VERSIONS = {"yosys": "0.0-test", "nextpnr-ecp5": "0.0-test"}


class FakeFlow:
    """Stands in for the two tools: writes the report files a real run writes, counts the runs."""

    def __init__(self, fmax=120.0, pnr_error=None):
        self.runs = []
        self.fmax = fmax
        self.pnr_error = pnr_error

    def __call__(self, tool, args, cwd, log, progress=None, poll_s=1.0):
        self.runs.append(tool)
        if progress is not None:
            progress(f"{tool}: fake step")
        if tool == "yosys":
            stat = {"design": {"num_cells_by_type": {"LUT4": 100, "CCU2C": 5, "TRELLIS_FF": 64,
                                                     "MULT18X18D": 4, "DP16KD": 2, "TRELLIS_DPR16X4": 3}}}
            (cwd / "stat.json").write_text(json.dumps(stat))
            for name in ("ffmem.txt", "hierarchy.txt", "regs.txt"):
                (cwd / name).write_text("")
            log.write_text("5.1. Executing fake pass.\n")
            return 0.5
        if self.pnr_error:
            log.write_text(f"Info: Packing\nERROR: {self.pnr_error}\n")
            raise flow.ToolFailed("nextpnr-ecp5 failed (exit 1)")
        report = {"utilization": {"TRELLIS_COMB": {"used": 110, "available": 83640},
                                  "MULT18X18D": {"used": 4, "available": 156}},
                  "critical_paths": [{"from": "$glbnet$clk", "to": "$glbnet$clk", "path": [
                      {"type": "clk-to-q", "from": {"cell": "cfg_reg"}, "to": {"cell": "cfg_reg"},
                       "delay": 0.5},
                      {"type": "routing", "from": {"cell": "cfg_reg"}, "to": {"cell": "lut1"}, "delay": 2.0},
                      {"type": "logic", "from": {"cell": "lut1"}, "to": {"cell": "lut1"}, "delay": 0.25},
                      {"type": "setup", "from": {"cell": "lut1"}, "to": {"cell": "acc_reg"}, "delay": 0.1}]}],
                  "fmax": {"$glbnet$clk": {"achieved": self.fmax,
                                           "constraint": float(args[list(args).index("--freq") + 1])}}}
        (cwd / "report.json").write_text(json.dumps(report))
        log.write_text("Info: Running placer\n")
        return 1.5


@pytest.fixture
def fake_flow(monkeypatch, tmp_path):
    """A private synthesis cache and fake tools; yields the FakeFlow (its .runs lists the tool runs)."""
    fake = FakeFlow()
    monkeypatch.setenv("CNNX_RTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(flow, "tools_available", lambda: True)
    monkeypatch.setattr(flow, "tool_versions", lambda: dict(FAKE_VERSIONS))
    monkeypatch.setattr(flow, "run_tool", fake)
    assert synth_mod.cache_dir() == tmp_path / "cache" / "synth"
    return fake
