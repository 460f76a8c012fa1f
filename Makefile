# cnnx: `make demo` (set-up + the main job) and `make test` (set-up + every test) are the two commands.
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_DIR ?= runs/lenet5

.PHONY: setup demo test lint bench synth build clean

setup:
	bash scripts/setup.sh

# The main job: train LeNet-5 on MNIST, then co-simulate a slice of the test set on the RTL and profile it
# (at the clock place-and-route reports for the 8x8 cores: `--synth` runs the flow once, then it is cached).
demo: setup
	$(PY) -m cnnx train --model lenet5 --out $(RUN_DIR)
	$(PY) -m cnnx cosim $(RUN_DIR) --images 1000
	$(PY) -m cnnx profile $(RUN_DIR) --synth --out $(RUN_DIR)/profile  # clock = Fmax of `cnnx synth` (cached)

test: setup lint
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check .
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cython-lint cnnx/_kernels  # it runs pycodestyle from PATH
	for f in verilog/*.v; do verilator --lint-only -Wall -Iverilog $$f || exit 1; done
	$(PY) -m cnnx.fpga.check  # Yosys on every verilog/*.v top: no latches, check -assert (no multiple drivers)

bench: setup
	$(PY) benchmarks/bench_layers.py

# Place and route the cores at 4x4, 8x8 and 16x16 on an ECP5 (cnnx.fpga; cached; the first run takes long).
synth: setup
	$(PY) benchmarks/bench_synth.py

# Rebuild the extension in place after editing a .pyx (the editable install points here).
build:
	flock /tmp/cnnx-build.lock $(PY) setup.py -q build_ext --inplace

clean:
	rm -rf build dist *.egg-info cnnx/_kernels/*.so cnnx/_kernels/*.c .pytest_cache .ruff_cache
