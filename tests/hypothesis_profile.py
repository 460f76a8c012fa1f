"""`hypothesis_examples(n)` for test modules: n examples under the "ci" hypothesis profile (the default), 10*n
under "dev" (CNNX_HYPOTHESIS_PROFILE=dev); tests/conftest.py registers and loads the profiles. A module of its
own because test modules cannot import `conftest` (every conftest.py is imported under that one name)."""

from __future__ import annotations

import os

HYPOTHESIS_PROFILE = os.environ.get("CNNX_HYPOTHESIS_PROFILE", "ci")


def hypothesis_examples(n: int) -> int:
    """`n` examples under the "ci" profile, 10*n under "dev"."""
    return n * 10 if HYPOTHESIS_PROFILE == "dev" else n
