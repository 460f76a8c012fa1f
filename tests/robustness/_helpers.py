"""Helpers for the robustness tests: run code in a child Python (with faulthandler, so a crash shows its C
stack) and check that it ended in a clean Python exception, not a signal. A plain module, not a conftest.py:
the hypothesis child process imports it too, and `tests/conftest.py` (the profiles, `hypothesis_examples`)
is loaded from its path so no other conftest module can shadow it."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_child(code: str, *args, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -X faulthandler -c code args...` from the repository root; the finished process."""
    cmd = [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code), *map(str, args)]
    return subprocess.run(cmd,
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})})


def assert_clean_error(r: subprocess.CompletedProcess, exc: str, match: str) -> str:
    """The child exited 1 (an uncaught Python exception; a signal gives a negative code) and its last
    stderr line is `exc: <message matching match>`; that line is returned."""
    assert r.returncode == 1, f"exit {r.returncode} (negative = killed by a signal)\n{r.stderr[-3000:]}"
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{exc}: ") and re.search(match, last), last
    return last


def _root_conftest():
    if str(REPO / "tests") not in sys.path:  # the conftest imports tests/hypothesis_profile.py
        sys.path.insert(0, str(REPO / "tests"))
    spec = importlib.util.spec_from_file_location("cnnx_tests_root_conftest", REPO / "tests" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # registers and loads the profile CNNX_HYPOTHESIS_PROFILE names
    return mod


hypothesis_examples = _root_conftest().hypothesis_examples
