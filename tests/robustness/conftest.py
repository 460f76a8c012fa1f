"""Helpers for the robustness tests: run code in a child Python (with faulthandler, so a crash shows its C
stack) and check that it ended in a clean Python exception, not a signal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_child(code: str, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -X faulthandler -c code args...` from the repository root; the finished process."""
    return subprocess.run([sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})})


def assert_clean_error(r: subprocess.CompletedProcess, exc: str, match: str) -> str:
    """The child exited 1 (an uncaught Python exception; a signal gives a negative code) and its last
    stderr line is `exc: <message matching match>`; that line is returned."""
    assert r.returncode == 1, f"exit {r.returncode} (negative = killed by a signal)\n{r.stderr[-3000:]}"
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{exc}: ") and re.search(match, last), last
    return last


@pytest.fixture(scope="session")
def child():
    return run_child


@pytest.fixture(scope="session")
def clean_error():
    return assert_clean_error
