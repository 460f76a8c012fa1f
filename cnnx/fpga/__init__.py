"""cnnx.fpga: the cores through the open ECP5 flow (Yosys and nextpnr-ecp5 from PyPI: `pip install
'cnnx[fpga]'`).

    from cnnx.fpga import synth
    r = synth(core="conv", rows=8, cols=8, device="85k", freq_mhz=150, seed=1)
    r.resources["lut4_total"], r.resources["mult18"], r.ff_memories, r.fmax_mhz, r.met

The flow scripts are in `flow.py`, the report parsing in `report.py`, the cached driver in `driver.py`.
"""

from .driver import CORES, SynthResult, find_cached, synth
from .flow import DEVICES, INSTALL_HINT, ToolFailed, ToolsMissing, tool_versions, tools_available

__all__ = ["CORES", "DEVICES", "INSTALL_HINT", "SynthResult", "ToolFailed", "ToolsMissing", "find_cached",
           "synth", "tool_versions", "tools_available"]
