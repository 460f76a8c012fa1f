"""Issue 11, item 4 (the harness side): `cnnx cosim` never reports "bit-identical" / exit 0 when a float path
gives NaN. A checkpoint with non-finite parameters is refused before any work (exit 2, one line); non-finite
float logits from finite parameters are a failed check (exit 1, "FAILED: a float path gives NaN/inf")."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from _robust_cli_common import tiny_run_dir

from cnnx import cli, harness


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run_dir(tmp_path_factory)


def nan_copy(run_dir, dest):
    """A copy of the run whose first conv layer's weights are all NaN (written member by member, as a
    damaged or crafted file would be, not through cnnx.checkpoint.save)."""
    shutil.copytree(run_dir, dest)
    path = dest / "checkpoint.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    key = next(k for k in arrays if k.startswith("param/") and k.endswith("weight"))
    arrays[key] = np.full_like(arrays[key], np.nan)
    np.savez(path, **arrays)
    return dest


@pytest.mark.parametrize("command", ["cosim", "profile"])
def test_a_nan_checkpoint_is_refused_before_any_work(capsys, tmp_path, run_dir, command, monkeypatch):
    run = nan_copy(run_dir, tmp_path / "nan_run")
    monkeypatch.setattr(harness, "run_cosim", lambda *a, **k: pytest.fail("the co-simulation ran"))
    extra = ["--images", "4"] + (["--out", str(tmp_path / "p")] if command == "profile" else [])
    code = cli.main([command, str(run), *extra, "--json"])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and re.search(r"non-finite|nan", err, re.I), err
    assert json.loads(out)["exit_code"] == 2
    assert "bit-identical" not in out + err


def test_non_finite_float_logits_fail_the_check(run_dir):
    from cnnx import data, ptq
    from cnnx.checkpoint import load

    model, _ = load(run_dir)
    images, labels = data.load_mnist("test")
    qmodel = ptq.quantize_model(model, data.load_mnist("train")[0][:100])  # from the healthy weights
    first = next(p for p in model.parameters() if p.data.ndim == 4)
    first.data[...] = np.inf  # finite int8 model, but the float path now overflows to inf/NaN
    res = harness.run_cosim(model, images[:8], labels[:8], qmodel=qmodel, rtl=False, workers=1,
                            golden_images=4, progress=False)
    assert not res.int8_mismatch  # the int8 paths still agree with each other ...
    assert res.failed and res.nonfinite  # ... but that says nothing: the check fails
    # the golden model propagates the NaN; the Cython float path must say the same once its ReLU keeps NaN
    assert "float-numpy logits: 4 of 4 images" in res.nonfinite
    table = res.table()
    assert "RESULT: FAILED: a float path gives NaN/inf" in table and "bit-identical" not in table
    assert json.loads(json.dumps(res.to_dict()))["failed"] is True

    res = harness.run_cosim(model, images[:4], labels[:4], qmodel=qmodel, rtl=False, workers=1,
                            golden_images=0, progress=False)
    assert res.float_logits_max_abs_diff is None  # no golden subset: no made-up NaN figure


def test_check_finite_model_names_the_parameter(run_dir):
    from cnnx.checkpoint import load

    model, _ = load(run_dir)
    harness.check_finite_model(model)  # finite: fine
    model.parameters()[-1].data[0] = np.nan
    with pytest.raises(ValueError, match=r"1 non-finite values \(NaN/inf\) in parameter"):
        harness.check_finite_model(model)
