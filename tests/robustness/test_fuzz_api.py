"""The hypothesis sweep of the public float and int8 API (tests/robustness/_fuzz_child.py), each family in
its own child process: a segfault or abort fails this test (with faulthandler's stack) instead of killing
pytest. The child uses the conftest hypothesis profile ("ci": derandomised, the default; "dev":
CNNX_HYPOTHESIS_PROFILE=dev, 10x the examples, fresh draws). About 25 s for both on a quiet machine."""

import os
import subprocess
import sys

import pytest
from _helpers import REPO  # tests/robustness/_helpers.py

CHILD = REPO / "tests" / "robustness" / "_fuzz_child.py"


@pytest.mark.parametrize("family, n", [("float", 1500), ("int8", 1000)])
def test_public_api_sweep_raises_cleanly_or_matches_the_golden_model(family, n):
    env = {**os.environ, "CNNX_MAX_ALLOC_BYTES": str(64 * 2**20)}  # accepted cases stay small
    r = subprocess.run([sys.executable, "-X", "faulthandler", str(CHILD), family, str(n)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (f"exit {r.returncode} (negative = killed by a signal)\n{r.stdout[-3000:]}\n"
                               f"{r.stderr[-6000:]}")
    summary = r.stdout.strip().splitlines()[-1]  # "<family>: N calls: {'refused': .., 'matched': ..}"
    assert "'matched'" in summary, summary  # the sweep really reached the golden-model comparison
    print(summary, file=sys.stderr)
