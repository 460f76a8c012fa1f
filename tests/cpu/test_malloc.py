"""cnnx/_malloc.py: glibc's thresholds are set at import, and the user's own settings win."""

import subprocess
import sys

import pytest

from cnnx import _malloc


def test_user_settings_and_opt_out_win(monkeypatch):
    monkeypatch.setenv("CNNX_MALLOC_TUNE", "0")
    assert _malloc.retain_freed_memory() is False
    monkeypatch.delenv("CNNX_MALLOC_TUNE")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000")
    assert _malloc.retain_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_accepts_the_thresholds(monkeypatch):
    for v in (*_malloc._USER_VARS, "CNNX_MALLOC_TUNE"):
        monkeypatch.delenv(v, raising=False)
    libc = subprocess.run(["ldd", "--version"], capture_output=True, text=True)
    if "GLIBC" not in (libc.stdout + libc.stderr).upper():
        pytest.skip("not glibc")
    assert _malloc.retain_freed_memory() is True
