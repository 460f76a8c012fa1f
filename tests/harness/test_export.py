"""`cnnx export`: the export of the tiny trained LeNet-5 (tests/harness/conftest.py) builds and passes its own
standalone Verilator testbench with `make`, and fails when one exported weight is changed."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from cnnx.cli import main


def test_export_refuses_bad_buffers(tiny_run_dir, tmp_path, capsys):
    assert main(["export", str(tiny_run_dir), "--out", str(tmp_path / "x"), "--buffers", "in=3K"]) == 2
    assert "power of two" in capsys.readouterr().err


def test_export_refuses_a_layer_split_by_input_channels(tiny_run_dir, tmp_path, capsys):
    # w=4K on 4x32: weight banks of 128 bytes < conv2's 6*5*5: cosim splits it by input channels, export can't
    assert main(["export", str(tiny_run_dir), "--out", str(tmp_path / "x"), "--buffers",
                 "in=4K,w=4K,out=4K,bias=64", "--array", "4x32"]) == 2
    assert "split by input channels" in capsys.readouterr().err


@pytest.mark.rtl
def test_exported_testbench_passes_and_catches_a_changed_weight(tiny_run_dir, tmp_path, capsys):
    if shutil.which("verilator") is None or shutil.which("make") is None:
        pytest.skip("needs verilator and make")
    out = tmp_path / "export"
    # 4x4 with buffers small enough that conv1, conv2 and the pools are tiled
    assert main(["export", str(tiny_run_dir), "--out", str(out), "--images", "3", "--array", "4x4",
                 "--buffers", "in=4K,w=4K,out=1K,bias=16", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    desc = json.loads((out / "layers.json").read_text())
    assert res["expected_cycles_per_image"] == desc["expected_cycles_per_image"] > 0
    assert max(d.get("runs", 0) for d in desc["layers"]) > 1          # some layer is tiled
    # the golden vectors are the int8 golden model's (of the run quantised as cosim quantises it)
    from cnnx import cycles, harness
    from cnnx.compile import tiling

    _, q, images, _ = harness.load_run(tiny_run_dir)
    trace, _ = q.forward_trace(q.quantize_input(images[:3]), "numpy")
    got = np.array([int(v, 16) for v in (out / "golden" / f"act{len(trace) - 1}.hex").read_text().split()])
    np.testing.assert_array_equal(got.astype(np.uint8).view(np.int8), trace[-1].reshape(-1))
    buf = tiling.parse_buffers("in=4K,w=4K,out=1K,bias=16")
    for d, layer in zip(desc["layers"], q.layers, strict=True):
        if layer.kind != "flatten":
            want = cycles.layer_cycles(layer, tuple(d["in_shape"]), 4, 4, buf)
            assert d["expected_cycles_per_image"] == want
    assert "CNNX_L0_MULT" in (out / "model.h").read_text() and cycles.CONV_PIPELINE
    ok = subprocess.run(["make", "-C", str(out)], capture_output=True, text=True, timeout=900)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert ok.stdout.count("PASS") == 2 and "3/3 images bit-identical" in ok.stdout
    # one weight of conv1 inverted: the testbench must stop with a mismatch
    wfile = out / "weights" / "layer0_w.hex"
    w = np.array([int(v, 16) for v in wfile.read_text().split()], np.uint8).view(np.int8)
    i = int(np.argmax(np.abs(w.astype(np.int16))))
    w[i] = ~w[i]
    wfile.write_text("".join(f"{v:02x}\n" for v in w.view(np.uint8).tolist()))
    bad = subprocess.run(["make", "-C", str(out)], capture_output=True, text=True, timeout=900)
    assert bad.returncode != 0
    assert "MISMATCH layer 0" in bad.stderr
