# cnnx: `make demo` (set-up + the main job) and `make test` (set-up + every test) are the two commands.
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_DIR ?= runs/lenet5

.PHONY: setup demo test lint bench build clean

setup:
	bash scripts/setup.sh

# The main job: train LeNet-5 on MNIST, then co-simulate a slice of the test set on the RTL and profile it.
demo: setup
	$(PY) -m cnnx train --model lenet5 --out $(RUN_DIR)
	$(PY) -m cnnx cosim $(RUN_DIR) --images 1000
	$(PY) -m cnnx profile $(RUN_DIR) --out $(RUN_DIR)/profile

# coverage of cnnx/ and sim/ (configured in pyproject.toml), the lines missed listed per module
test: setup lint
	$(PY) -m pytest -q --cov --cov-report=term-missing:skip-covered --cov-fail-under=95

lint:
	$(VENV)/bin/ruff check .
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cython-lint cnnx/_kernels  # it runs pycodestyle from PATH
	for f in verilog/*.v; do verilator --lint-only -Wall -Iverilog $$f || exit 1; done

bench: setup
	$(PY) benchmarks/bench_layers.py

# Rebuild the extension in place after editing a .pyx (the editable install points here).
build:
	flock /tmp/cnnx-build.lock $(PY) setup.py -q build_ext --inplace

clean:
	rm -rf build dist *.egg-info cnnx/_kernels/*.so cnnx/_kernels/*.c .pytest_cache .ruff_cache
