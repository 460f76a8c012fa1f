"""The cross-check harness (cnnx.harness) and profiler (cnnx.profile) on a tiny model trained in the test."""

import json

import numpy as np
import pytest

from cnnx import harness, profile, quant
from cnnx.cli import build_parser


def have_sim() -> bool:
    try:
        harness.import_sim()
        return True
    except ImportError:
        return False


needs_sim = pytest.mark.skipif(not have_sim(), reason="cnnx.sim (the RTL bridge) is not available")


def _args(command, run_dir, **kw):
    """The CLI's own parsed arguments (so the names cannot drift from cnnx/cli.py), with small overrides."""
    args = build_parser().parse_args([command, str(run_dir)])
    base = dict(images=24, json=True)
    if command == "cosim":
        base.update(workers=1, golden_images=8)
    base.update(kw)
    for k, v in base.items():
        assert hasattr(args, k), k
        setattr(args, k, v)
    return args


def test_cpu_paths_agree(tiny):
    model, q, _, images, labels = tiny
    res = harness.run_cosim(model, images, labels, qmodel=q, rtl=False, golden_images=16, progress=False)
    assert res.n_golden == 16
    assert not res.int8_mismatch
    for r in res.layers:
        assert r.int8_cy_vs_np_identical == 16
        assert r.rtl_identical is None
        # float32 Cython vs float64 golden, rtol 1e-5 of activations that stay below ~20 here
        assert r.float_max_abs_diff is not None and r.float_max_abs_diff < 2e-4
    assert res.agreement["float-cython vs float-numpy"] == 1.0
    assert res.agreement["int8-cython vs int8-numpy"] == 1.0
    assert res.accuracy["float-cython"] > 0.5  # the tiny model learned something
    d = res.to_dict()
    json.dumps(d)
    assert "RESULT: all int8 tensors bit-identical" in res.table()


def test_bad_input(tiny):
    model, q, _, images, labels = tiny
    with pytest.raises(TypeError, match="uint8"):
        harness.run_cosim(model, images.astype(np.float32), labels, qmodel=q, rtl=False, progress=False)
    with pytest.raises(ValueError, match="labels"):
        harness.run_cosim(model, images, labels[:3], qmodel=q, rtl=False, progress=False)
    with pytest.raises(ValueError, match="driver"):
        harness.run_cosim(model, images, labels, qmodel=q, driver="slow", progress=False)
    with pytest.raises(ValueError, match="8x8"):
        harness.parse_array("8by8")
    assert harness.parse_array("16x8") == (16, 8)


def test_profile_cpu_only_writes_charts(tiny, tmp_path):
    model, q, _, images, _ = tiny
    prof = profile.profile_model(model, q, images[:8], rtl=False, repeats=1)
    assert [r["kind"] for r in prof["layers"]] == [layer.kind for layer in q.layers]
    conv0 = prof["layers"][0]
    assert conv0["macs"] == 6 * 28 * 28 * 25
    assert conv0["int8_cython_1t_us"] > 0 and conv0["int8_numpy_us"] > 0
    assert [s["array"] for s in prof["sweep"]] == ["4x4", "8x8", "16x16", "32x32"]
    paths = profile.write_charts(prof, tmp_path)
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "profile: array 8x8" in profile.format_table(prof)


def test_profile_without_a_clock_gives_cycles_only(tiny, tmp_path):
    """No synthesis result, no --clock-mhz: cycles and utilisation, but no time or speed-up figure."""
    model, q, _, images, _ = tiny
    prof = profile.profile_model(model, q, images[:4], rtl=False, repeats=1, clock_mhz=None)
    conv0 = prof["layers"][0]
    assert conv0["model_cycles"] > 0 and conv0["mac_utilisation"] > 0
    assert conv0["rtl_us"] is None and conv0["rtl_speedup_over_cpu"] is None
    assert prof["totals"]["rtl_us"] is None and all(s["time_us"] is None for s in prof["sweep"])
    text = profile.format_table(prof)
    assert "at no clock (cycles only)" in text and " us," not in text.split("array sweep")[1]
    profile.write_charts(prof, tmp_path)


@pytest.mark.rtl
@needs_sim
def test_rtl_bit_identical_inline(tiny):
    model, q, _, images, labels = tiny
    res = harness.run_cosim(model, images[:16], labels[:16], qmodel=q, workers=1, golden_images=4,
                            progress=False)
    assert not res.int8_mismatch, res.table()
    for r in res.layers:
        assert r.rtl_identical == 16
        if r.kind != "flatten":
            assert r.rtl_cycles_per_image == r.model_cycles_per_image  # measured == the one cycle model
    assert res.agreement["int8-cython vs rtl"] == 1.0
    assert res.accuracy["rtl"] == res.accuracy["int8-cython"]


@pytest.mark.rtl
@needs_sim
def test_cli_cosim_two_workers_and_corruption_caught(tiny_run_dir, capsys):
    assert harness.cli_cosim(_args("cosim", tiny_run_dir, workers=2, images=12)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_images"] == 12 and out["workers"] == 2 and not out["int8_mismatch"]
    assert all(r["rtl_identical"] == 12 for r in out["layers"])

    # a wrong weight sent to the RTL (conv2, layer 2) must be caught and reported, with a non-zero exit
    assert harness.cli_cosim(_args("cosim", tiny_run_dir, images=12, corrupt_rtl_layer=2, json=False)) == 1
    text = capsys.readouterr().out
    assert "MISMATCH" in text and "RESULT: INT8 MISMATCH" in text
    assert "layer 2" in text


@pytest.mark.rtl
@needs_sim
def test_cli_profile_writes_pngs_and_json(tiny_run_dir, tmp_path, capsys):
    out = tmp_path / "prof"
    # an assumed clock, forced: this test checks the profile, not a synthesis result
    assert profile.cli_profile(_args("profile", tiny_run_dir, images=4, out=str(out), clock_mhz=200.0,
                                     force=True)) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (out / "layers.png").exists() and (out / "sweep.png").exists()
    saved = json.loads((out / "profile.json").read_text())
    assert saved["array"] == printed["array"] == "8x8"
    for r in saved["layers"]:
        if r["kind"] != "flatten":
            assert r["agree"] is True and r["rtl_bit_identical"] is True
            assert r["rtl_us"] == pytest.approx(r["rtl_cycles"] / 200.0)


@pytest.mark.rtl
@needs_sim
def test_cli_profile_without_a_synthesis_result_prints_cycles_only(tiny_run_dir, tmp_path, capsys):
    out = tmp_path / "prof"
    # no place-and-route result exists for the 25k device: cycles only, said why, exit 0
    assert profile.cli_profile(_args("profile", tiny_run_dir, images=2, out=str(out), device="25k",
                                     json=False)) == 0
    text = capsys.readouterr().out
    assert "at no clock (cycles only)" in text and "no place-and-route result" in text
    saved = json.loads((out / "profile.json").read_text())
    assert saved["clock_mhz"] is None and saved["clock_source"] == "none"
    assert all(r["rtl_us"] is None for r in saved["layers"])


def test_corruption_changes_the_weight():
    w = np.array([[1, -128, 3]], np.int8)
    c = harness._corrupted(w)
    assert c[0, 1] == 127 and (c != w).sum() == 1 and w[0, 1] == -128  # the original is untouched
    assert quant.INT8_MIN <= c.min()


@pytest.mark.rtl
@needs_sim
def test_rtl_average_pooling_model(tiny):
    from cnnx import nn, ptq

    _, _, calib, images, labels = tiny
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, seed=0), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 14 * 14, 10, seed=1))
    q = ptq.quantize_model(model, calib[:40])
    res = harness.run_cosim(model, images[:6], labels[:6], qmodel=q, workers=1, golden_images=6,
                            progress=False)
    assert not res.int8_mismatch, res.table()
    assert [r.rtl_identical for r in res.layers] == [6, 6, 6, 6]


def test_cli_bad_input_exit_code_2(tmp_path, capsys):
    assert harness.cli_cosim(_args("cosim", tmp_path / "missing")) == 2
    assert profile.cli_profile(_args("profile", tmp_path / "missing", out=str(tmp_path / "p"))) == 2
    assert "error" in capsys.readouterr().err


def test_float_golden_takes_stride_and_padding_pairs(rng, layer_check):
    """Conv2d(stride=(1, 2), padding=(1, 0)) through the harness's float paths: the golden model gets the
    pairs as they are (it once kept element 0 only, giving (1, 2, 8, 9) against the engine's (1, 2, 8, 4))."""
    from cnnx import nn

    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=(1, 2), padding=(1, 0), seed=0), nn.ReLU(),
                          nn.MaxPool2d((2, 1), stride=(2, 1)), nn.Flatten(), nn.Linear(2 * 4 * 4, 3, seed=1))
    x = rng.standard_normal((1, 1, 8, 9)).astype(np.float32)
    fast, golden = harness.float_traces(model, x, golden=False), harness.float_traces(model, x, golden=True)
    assert fast[0].shape == golden[0].shape == (1, 2, 8, 4)
    for i, (a, b) in enumerate(zip(fast, golden, strict=True)):
        layer_check(a, b, what=f"layer {i}")


@pytest.mark.rtl
@needs_sim
def test_rtl_on_a_3x5_array(tiny):
    """The whole network on a non-square array: bit-identical, and every layer's measured cycles equal the
    cycle model's for ROWS=3, COLS=5."""
    model, q, _, images, labels = tiny
    res = harness.run_cosim(model, images[:3], labels[:3], qmodel=q, array=(3, 5), workers=1, golden_images=0,
                            progress=False)
    assert not res.int8_mismatch, res.table()
    for r in res.layers:
        assert r.rtl_identical == 3
        if r.kind != "flatten":
            assert r.rtl_cycles_per_image == r.model_cycles_per_image
    assert tuple(res.array) == (3, 5)


@pytest.mark.parametrize("layer", [lambda nn: nn.Tanh(), lambda nn: nn.Sigmoid(), lambda nn: nn.Dropout(0.5),
                                   lambda nn: nn.AvgPool2d(2), lambda nn: nn.MaxPool2d(3, stride=1),
                                   lambda nn: nn.ReLU()])
def test_float_golden_layer_of_each_kind(layer, rng, layer_check):
    from cnnx import nn

    m = layer(nn).eval()
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    layer_check(m.forward(x), harness.float_golden_layer(m, x), what=type(m).__name__)


def test_float_golden_layer_refuses_what_it_does_not_know():
    from cnnx import nn

    with pytest.raises(ValueError, match="no float golden function"):
        harness.float_golden_layer(nn.LeakyReLU(), np.zeros((1, 2)))


def test_parse_array_forms():
    assert harness.parse_array((3, 5)) == (3, 5) and harness.parse_array("3X5") == (3, 5)
    with pytest.raises(ValueError, match="must be in 1..256"):
        harness.parse_array("0x4")


def test_profile_stream_width_model_columns(tiny):
    """--stream-width: each layer's end-to-end model beside its compute-only cycles, in the table too."""
    model, q, _, images, _ = tiny
    prof = profile.profile_model(model, q, images[:2], rtl=False, repeats=1, stream_width=64)
    assert prof["stream_width"] == 64
    for row, layer in zip(prof["layers"], q.layers, strict=True):
        if layer.kind == "flatten":
            assert row["stream"] is None
            continue
        assert row["stream"]["compute"] == row["model_cycles"]
        assert row["stream"]["total"] > row["model_cycles"]
    text = profile.format_stream(prof)
    assert "stream width 64 bits" in text and "compute-only" in text and "end-to-end" in text
    assert profile.format_stream({"stream_width": None}) == ""
    with pytest.raises(ValueError, match="stream width"):
        profile.profile_model(model, q, images[:1], rtl=False, repeats=1, stream_width=16)


@pytest.mark.rtl
@needs_sim
def test_profile_stream_width_on_the_rtl(tiny):
    """The wrappers' counters on one image equal the model, and the outputs the CPU's int8 outputs."""
    model, q, _, images, _ = tiny
    prof = profile.profile_model(model, q, images[:1], array=(4, 4), rtl_images=1, repeats=1,
                                 stream_width=64)
    streamed = [r for r in prof["layers"] if r.get("stream_rtl") is not None]
    assert len(streamed) == len([layer for layer in q.layers if layer.kind != "flatten"])
    for r in streamed:
        assert r["stream_agree"] and r["stream_bit_identical"]
        assert r["stream_rtl"]["compute"] == r["rtl_cycles"] == r["model_cycles"]
    assert "RTL e2e" in profile.format_stream(prof)
