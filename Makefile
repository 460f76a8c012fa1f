# cnnx: `make demo` (set-up + the main job) and `make test` (set-up + every test) are the two commands.
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_DIR ?= runs/lenet5

.PHONY: setup demo test lint bench synth build clean docs

setup:
	bash scripts/setup.sh

# The main job: train LeNet-5 on MNIST, then co-simulate a slice of the test set on the RTL and profile it.
# The profile turns cycles into time only at a clock place-and-route reported for the same 8x8 cores
# (`cnnx synth --core all --array 8x8`, or `make synth`: tens of minutes the first time, then cached);
# without that result it prints cycles only and says what to run.
demo: setup
	$(PY) -m cnnx train --model lenet5 --out $(RUN_DIR)
	$(PY) -m cnnx cosim $(RUN_DIR) --images 1000
	$(PY) -m cnnx profile $(RUN_DIR) --out $(RUN_DIR)/profile

# coverage of cnnx/ and sim/ (configured in pyproject.toml), the lines missed listed per module; a hung test
# ends the run (exit 124) after 40 minutes instead of holding CI to its limit
test: setup lint
	timeout -k 30 2400 $(PY) -m pytest -q --cov --cov-report=term-missing:skip-covered --cov-fail-under=95

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

# The documentation site (docs/, mkdocs.yml) into site/: offline, warnings are errors.
docs: setup
	$(VENV)/bin/mkdocs build --strict --site-dir site

# Rebuild the extension in place after editing a .pyx (the editable install points here).
build:
	flock /tmp/cnnx-build.lock $(PY) setup.py -q build_ext --inplace

clean:
	rm -rf build dist site *.egg-info cnnx/_kernels/*.so cnnx/_kernels/*.c .pytest_cache .ruff_cache
