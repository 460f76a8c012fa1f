"""The CLI's argument checks and dispatch: bad values are argparse errors (exit 2, a message naming the
problem), a bad run directory is exit 2 for every subcommand, and `cnnx.openmp_enabled` reports the build."""

from __future__ import annotations

import pytest

import cnnx
from cnnx import cli


@pytest.mark.parametrize("argv, message", [
    (["eval", "run", "--images", "x"], "expected an integer, got 'x'"),
    (["cosim", "run", "--workers", "0"], "must be >= 1, got 0"),
    (["train", "--lr", "fast"], "expected a number, got 'fast'"),
    (["eval", "run", "--images", "-3"], "must be >= 1, got -3"),
])
def test_bad_argument_values_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_train_refuses_an_out_path_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(["train", "--out", str(f), "--limit", "64", "--no-progress"]) == 2
    assert "not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["eval", "cosim", "profile"])
def test_a_missing_run_directory_is_exit_2(command, tmp_path, capsys):
    argv = [command, str(tmp_path / "missing")]
    if command == "eval":
        argv += ["--threads", "1"]
    assert cli.main(argv) == 2
    assert "missing" in capsys.readouterr().err


def test_openmp_enabled_reports_the_build():
    from cnnx._kernels import _openmp

    assert cnnx.openmp_enabled() is bool(_openmp.openmp_enabled())
