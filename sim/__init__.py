"""cnnx.sim: the co-simulation bridge to the Verilog cores (installed from the top-level `sim/` folder).

`ConvCore` and `PoolCore` run int8 layers on Verilator models of verilog/cnnx_conv_core.v and
cnnx_pool_core.v and return `(y, cycles)`; `build` compiles and caches those models (see builder.py).
"""

from .builder import Build, build, cache_root
from .drivers import DRIVERS, ConvCore, PoolCore

__all__ = ["DRIVERS", "Build", "ConvCore", "PoolCore", "build", "cache_root"]
