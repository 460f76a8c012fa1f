"""The RTL sources (one Verilog module per file), shipped inside the package as data."""

from pathlib import Path

RTL_DIR = Path(__file__).resolve().parent
