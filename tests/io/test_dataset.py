"""Datasets from an .npz and the input preprocessing stored with a model: checked loading, MNIST unchanged
for old runs, and a 3-channel 32x32 dataset that trains, evaluates, quantises and co-simulates on the RTL."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from cnnx import checkpoint, data, harness, models, ptq, quant
from cnnx.cli import main
from cnnx.io import MNIST, TO_TENSOR, DatasetError, Preprocess, import_model, load_npz
from cnnx.io import dataset as io_dataset
from cnnx.io import preprocess as io_preprocess


def colour_bars(n, rng, classes=4, side=32):
    """uint8 (n, 3, side, side) images: noise plus a class-dependent coloured bar; labels (n,)."""
    y = rng.integers(0, classes, n)
    x = rng.integers(0, 60, (n, 3, side, side)).astype(np.uint8)
    for i, k in enumerate(y):
        o = int(rng.integers(4, side - 12))
        if k == 0:
            x[i, 0, o : o + 6, :] = 230  # red horizontal bar
        elif k == 1:
            x[i, 1, :, o : o + 6] = 230  # green vertical bar
        elif k == 2:
            x[i, 2, o : o + 10, o : o + 10] = 230  # blue square
        else:
            x[i, :, o : o + 6, o : o + 6] = 200  # grey square
    return x, y


@pytest.fixture(scope="module")
def rgb_npz(tmp_path_factory):
    rng = np.random.default_rng(11)
    path = tmp_path_factory.mktemp("rgb") / "bars.npz"
    x_tr, y_tr = colour_bars(800, rng)
    x_te, y_te = colour_bars(100, rng)
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    return path


# ---------------------------------------------------------------------------------------------------------
# preprocessing
# ---------------------------------------------------------------------------------------------------------
def test_mnist_preprocessing_is_cnnx_data_to_float_bit_for_bit():
    assert MNIST.mean == (data.MNIST_MEAN,) and MNIST.std == (data.MNIST_STD,)
    px = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    np.testing.assert_array_equal(MNIST.to_float(px), data.to_float(px))
    # checkpoints and quantised models without a stored preprocessing keep MNIST's
    assert io_preprocess.of_meta({}) == MNIST
    assert np.array_equal(ptq.QuantizedModel(1.0, []).to_float(px), data.to_float(px))
    assert np.array_equal(harness.qmodel_float_input(px), data.to_float(px))


def test_per_channel_preprocessing():
    p = Preprocess((0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 5)).astype(np.uint8)
    want = (x / 255.0 - np.array([0.5, 0.25, 0.0])[None, :, None, None]) / np.array([0.5, 0.25, 1.0])[
        None, :, None, None]
    np.testing.assert_array_equal(p.to_float(x), want.astype(np.float32))
    assert p.max_abs() == pytest.approx(3.0)  # channel 1: (1 - 0.25) / 0.25
    assert Preprocess.from_dict(p.to_dict()) == p
    assert TO_TENSOR.describe() == "pixel / 255" and TO_TENSOR.max_abs() == 1.0
    with pytest.raises(ValueError, match="3 channel statistics"):
        p.to_float(x[:, :1])
    for bad in [((0.1, 0.2), (1.0, 1.0, 1.0)), ((0.0,), (0.0,)), ((float("nan"),), (1.0,)), ((), ())]:
        with pytest.raises(ValueError):
            Preprocess(*bad)
    with pytest.raises(TypeError):
        p.to_float(x.astype(np.float32))
    with pytest.raises(ValueError):
        p.to_float(x[0, 0])
    with pytest.raises(ValueError):
        Preprocess.from_dict({"mean": [0.0]})
    s = io_preprocess.from_stats(x)
    np.testing.assert_allclose(s.mean, (x / 255.0).mean(axis=(0, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(s.std, (x / 255.0).std(axis=(0, 2, 3)), atol=1e-6)
    assert io_preprocess.from_stats(np.zeros((2, 1, 3, 3), np.uint8)).std == (1.0,)  # a constant channel


def test_quantised_model_uses_and_keeps_its_preprocessing(tmp_path):
    model = models.build_model("lenet5", input_shape=(3, 32, 32), num_classes=4)
    x, _ = colour_bars(40, np.random.default_rng(1))
    prep = Preprocess((0.1, 0.2, 0.3), (0.3, 0.3, 0.3))
    q = ptq.quantize_model(model, x, preprocess=prep)
    assert q.preprocess == prep.to_dict() and q.input_scale == pytest.approx(prep.max_abs() / 127)
    np.testing.assert_array_equal(q.quantize_input(x), quant.quantize(prep.to_float(x), q.input_scale))
    np.testing.assert_array_equal(harness.qmodel_float_input(x, q), prep.to_float(x))
    q.save(tmp_path / "q.npz")
    q2 = ptq.QuantizedModel.load(tmp_path / "q.npz")
    assert q2.preprocess == q.preprocess
    np.testing.assert_array_equal(q2.forward(x), q.forward(x))
    for bad in ({"mean": [0.1, 0.2], "std": [1.0, 1.0]}, {"mean": [0.0], "std": [0.0]}, {"mean": [0.0]}):
        q.preprocess = bad  # a file with a malformed preprocessing is refused on load
        q.save(tmp_path / "bad.npz")
        with pytest.raises(ValueError, match="not a valid cnnx quantised model"):
            ptq.QuantizedModel.load(tmp_path / "bad.npz")


# ---------------------------------------------------------------------------------------------------------
# loading a dataset file
# ---------------------------------------------------------------------------------------------------------
def _write(path, **over):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (10, 8, 8)).astype(np.uint8), "y_train": np.arange(10) % 3,
              "x_test": rng.integers(0, 256, (4, 8, 8)).astype(np.uint8), "y_test": np.arange(4) % 3}
    arrays.update(over)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_load_npz_checks(tmp_path, monkeypatch):
    ds = load_npz(_write(tmp_path / "ok.npz"))
    assert ds.x_train.shape == (10, 1, 8, 8) and ds.num_classes == 3 and ds.input_shape == (1, 8, 8)
    assert ds.meta()["sha256"] == hashlib.sha256((tmp_path / "ok.npz").read_bytes()).hexdigest()
    cases = [
        ({"y_test": None}, "lacks y_test"),
        ({"x_train": np.zeros((10, 8, 8), np.float32)}, "must be uint8"),
        ({"x_train": np.zeros((10, 8), np.uint8)}, r"\(N, H, W\) or \(N, C, H, W\)"),
        ({"y_train": np.arange(9)}, r"shape \(10,\)"),
        ({"y_train": np.arange(10) * 1.0}, "integer labels"),
        ({"y_test": np.array([0, 1, 2, -1])}, "outside"),
        ({"x_test": np.zeros((4, 2, 8, 8), np.uint8)}, "must agree"),
        ({"y_train": np.zeros(10, int), "y_test": np.zeros(4, int)}, "at least 2"),
    ]
    for i, (over, msg) in enumerate(cases):
        with pytest.raises(DatasetError, match=msg):
            load_npz(_write(tmp_path / f"bad{i}.npz", **over))
    np.savez(tmp_path / "obj.npz", x_train=np.array([None, 1], dtype=object), y_train=np.arange(2),
             x_test=np.zeros((1, 2, 2), np.uint8), y_test=np.arange(1))
    with pytest.raises(DatasetError, match="Python objects"):
        load_npz(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable"):
        load_npz(tmp_path / "junk.npz")
    with pytest.raises(DatasetError, match="no dataset file"):
        load_npz(tmp_path / "absent.npz")
    monkeypatch.setattr(io_dataset, "MAX_BYTES", 100)  # refused from the headers, before reading the data
    with pytest.raises(DatasetError, match="GiB in memory"):
        load_npz(tmp_path / "ok.npz")


def test_a_changed_dataset_file_is_refused(tmp_path):
    path = _write(tmp_path / "d.npz")
    meta = {"dataset": load_npz(path).meta()}
    assert io_dataset.of_meta(meta).num_classes == 3
    _write(path, y_test=np.array([0, 1, 1, 1]))
    with pytest.raises(DatasetError, match="changed since the run was trained"):
        io_dataset.eval_split(meta)
    assert io_dataset.eval_split(meta, override=path)[1].tolist() == [0, 1, 1, 1]


def test_zoo_builders_fit_the_input():
    assert models.build_model("lenet5").config() == models.build_model("lenet5", input_shape=(1, 28, 28),
                                                                        num_classes=10).config()
    m = models.build_model("lenet5", input_shape=(3, 32, 32), num_classes=7)
    assert m.output_shapes((3, 32, 32))[-1] == (7,) and m[0].padding == (0, 0)  # LeCun's 32x32 geometry
    assert m[7].in_features == 400
    assert models.build_model("mlp", input_shape=(3, 8, 8), num_classes=3)[1].in_features == 192
    with pytest.raises(ValueError, match="at least 12x12"):
        models.build_model("lenet5", input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="does not fit"):
        models.build_model("lenet5", input_shape=(1, 30, 30))  # 15 -> 11: the second pool does not fit
    for bad in [dict(input_shape=(1, 28)), dict(num_classes=1), dict(num_classes=True)]:
        with pytest.raises(ValueError):
            models.build_model("mlp", **bad)


# ---------------------------------------------------------------------------------------------------------
# the zoo's int8 forms
# ---------------------------------------------------------------------------------------------------------
def test_lenet5_classic_has_no_int8_form_and_says_which_model_does():
    x = np.random.default_rng(0).integers(0, 256, (16, 28, 28)).astype(np.uint8)
    with pytest.raises(ValueError, match=r"Tanh.*no int8 form.*lenet5-classic-relu is lenet5-classic with "
                                         r"ReLU for Tanh"):
        ptq.quantize_model(models.build_model("lenet5-classic"), x)
    classic, relu = models.build_model("lenet5-classic", 3), models.build_model("lenet5-classic-relu", 3)
    kinds = [type(layer).__name__ for layer in relu]
    assert kinds == [type(layer).__name__.replace("Tanh", "ReLU") for layer in classic]  # only Tanh differs
    assert sum(p.data.size for p in relu.parameters()) == 61_706 and relu[0].init == "he"
    q = ptq.quantize_model(relu, x)
    assert [layer.kind for layer in q.layers][:2] == ["conv", "avgpool"]
    np.testing.assert_array_equal(q.forward(x, "cython"), q.forward(x, "numpy"))


def test_mlp_runs_in_int8_on_the_cpu_and_splits_by_input_channels_on_small_buffers():
    pytest.importorskip("cnnx.sim")
    rng = np.random.default_rng(0)
    model = models.build_model("mlp", seed=1)
    x = rng.integers(0, 256, (32, 28, 28)).astype(np.uint8)
    q = ptq.quantize_model(model, x)
    np.testing.assert_array_equal(q.forward(x, "cython"), q.forward(x, "numpy"))
    res = harness.run_cosim(model, x[:4], np.zeros(4, np.int64), qmodel=q, rtl=False, workers=1,
                            progress=False)
    assert res.agreement["int8-cython vs int8-numpy"] == 1.0
    # the RTL path tiles it (tests/rtl/test_tiling.py); buffers too small for one filter (784 weights > a
    # bank of 512) are split by input channels (raw-accumulator runs), which the RTL check accepts
    from cnnx.compile import tiling

    small = tiling.parse_buffers("in=1K,w=4K,out=1K,bias=64")
    harness.check_fits_rtl(q, 8, 8, small)
    tiles = tiling.plan_conv(784, 1, 1, 300, 1, 1, 1, 0, 8, 8, small)
    assert all(t.raw for t in tiles) and {(t.c0, t.c1) for t in tiles} == {(0, 512), (512, 784)}


# ---------------------------------------------------------------------------------------------------------
# a 3-channel 32x32 dataset, end to end
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rgb_run(rgb_npz, tmp_path_factory):
    from cnnx.train import TrainConfig, fit

    run = tmp_path_factory.mktemp("rgb_run")
    summary = fit(TrainConfig(model="lenet5", epochs=1, batch_size=32, lr=0.05, threads=2, data=str(rgb_npz),
                              n_val=100), run, progress=False, log=lambda *a: None)
    return run, summary


def test_three_channel_dataset_trains_and_stores_its_preprocessing(rgb_run, rgb_npz, capsys):
    run, summary = rgb_run
    assert summary["test_accuracy"] >= 0.9, summary  # four easy classes: far above chance (0.25)
    _, info = checkpoint.load(run)
    meta = info["meta"]
    ds = load_npz(rgb_npz)
    assert meta["input_shape"] == [3, 32, 32] and meta["num_classes"] == 4
    assert meta["dataset"]["sha256"] == ds.sha256
    (x_tr, _), _ = data.train_val_split(80, seed=0, images=ds.x_train, labels=ds.y_train)  # a tenth held out
    assert Preprocess.from_dict(meta["preprocess"]) == io_preprocess.from_stats(x_tr)
    # eval scores the run's own test split with the stored preprocessing: the figure fit reported
    assert main(["eval", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["test_accuracy"] == summary["test_accuracy"] and len(out["confusion"]) == 4
    # training again with augmentation on 3-channel images works too (all channels move together)
    from cnnx.train import augment

    x = ds.x_train[:3]
    a = augment(x, np.random.default_rng(0))
    assert a.shape == x.shape and a.dtype == np.uint8
    b = augment(x[:, 0], np.random.default_rng(0))
    np.testing.assert_array_equal(a[:, 0], b)  # channel 0 moved exactly as the single-channel call moves it


@pytest.mark.rtl
def test_three_channel_run_cosimulates_bit_exactly(rgb_run, capsys):
    run, _ = rgb_run
    code = main(["cosim", str(run), "--images", "8", "--workers", "1", "--golden-images", "8", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and not res["int8_mismatch"]
    assert [r["rtl_identical"] for r in res["layers"] if r["kind"] != "flatten"] == [8] * 7
    assert all(r["int8_cy_vs_np_identical"] == 8 for r in res["layers"])
    # the float and int8 paths saw the same preprocessing: they agree on (nearly) every image
    assert res["agreement"]["float-cython vs int8-cython"] >= 0.875


def test_imported_model_fine_tunes_on_a_dataset(rgb_npz, tmp_path, make_onnx, make_weights, capsys):
    onnx = pytest.importorskip("onnx")
    sd = make_weights(np.random.default_rng(3), c=3, classes=4)
    onnx.save(make_onnx(sd, c=3, hw=32, pad=0), str(tmp_path / "m.onnx"))
    run = tmp_path / "run"
    import_model(tmp_path / "m.onnx", run, data=rgb_npz, mean=(0.1, 0.1, 0.1), std=(0.3, 0.3, 0.3))
    assert main(["eval", str(run), "--json"]) == 0
    before = json.loads(capsys.readouterr().out)["test_accuracy"]
    assert main(["train", "--resume", "--out", str(run), "--epochs", "3", "--no-progress", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    _, info = checkpoint.load(run)
    assert info["model_name"] == "imported" and info["meta"]["preprocess"]["mean"] == [0.1, 0.1, 0.1]
    print("imported: before", before, "after", after["test_accuracy"])
    assert after["test_accuracy"] >= max(0.8, before + 0.3)
    # without its dataset the run would be scored on MNIST, which does not fit it: refused, saying so
    import_model(tmp_path / "m.onnx", tmp_path / "bare")
    assert main(["cosim", str(tmp_path / "bare"), "--images", "2", "--workers", "1"]) == 2
    assert "takes (3, 32, 32) images" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "bare")]) == 2
    assert main(["eval", str(tmp_path / "bare"), "--data", str(rgb_npz), "--images", "10"]) == 0
    # a model for other images is refused with the dataset that does not fit it
    with pytest.raises(ValueError, match="images are"):
        import_model(tmp_path / "m.onnx", tmp_path / "r2", data=_write(tmp_path / "small.npz"))
