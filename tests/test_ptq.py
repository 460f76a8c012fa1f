"""Post-training quantisation (cnnx.ptq): the int8 model's structure, refusals, accuracy close to float."""

import numpy as np
import pytest

from cnnx import data, models, nn, ptq, quant, reference
from cnnx.train import TrainConfig, fit


@pytest.fixture(scope="module")
def trained_mlp(tmp_path_factory):
    """A small MLP trained in the test itself: 3,000 images, one epoch (a few seconds)."""
    run = tmp_path_factory.mktemp("ptq_mlp")
    fit(TrainConfig(model="mlp", epochs=1, limit=3000, batch_size=32, lr=0.05, seed=0, threads=2,
                    augment=False), run,
        progress=False, log=lambda *a, **k: None)
    from cnnx.checkpoint import load

    return load(run)[0]


@pytest.fixture(scope="module")
def mnist():
    train_x, _ = data.load_mnist("train")
    test_x, test_y = data.load_mnist("test")
    return train_x[-300:], test_x[:1000], test_y[:1000]


def test_lenet5_structure_relu_fused():
    model = models.build_model("lenet5", seed=0)
    calib = np.random.default_rng(0).integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    q = ptq.quantize_model(model, calib)
    kinds = [layer.kind for layer in q.layers]
    assert kinds == ["conv", "maxpool", "conv", "maxpool", "flatten", "linear", "linear", "linear"]
    relus = [layer.rq.relu for layer in q.layers if layer.rq is not None]
    assert relus == [True, True, True, True, False]  # the logits layer has no ReLU
    for layer in q.layers:
        if layer.w is not None:
            assert layer.w.dtype == np.int8 and layer.b.dtype == np.int32
            assert np.abs(layer.w).max() == 127  # symmetric per-tensor: the largest weight maps to 127
    assert (q.layers[0].stride, q.layers[0].padding) == (1, 2)
    assert (q.layers[1].kernel, q.layers[1].stride) == (2, 2)
    # the fixed input scale: pixel 255 (the largest normalised value) -> 127
    assert q.quantize_input(np.full((1, 28, 28), 255, np.uint8)).max() == 127
    top = float(data.to_float(np.full((1, 28, 28), 255, np.uint8)).max())
    assert q.input_scale == pytest.approx(top / 127)


def test_requant_factor_is_the_scale_ratio():
    model = models.build_model("lenet5", seed=1)
    calib = np.random.default_rng(1).integers(0, 256, size=(16, 28, 28), dtype=np.uint8)
    q = ptq.quantize_model(model, calib)
    s_in = q.input_scale
    for layer in q.layers:
        if layer.rq is not None:
            real = s_in * layer.w_scale / layer.scale
            assert layer.rq.scale == pytest.approx(real, rel=1e-4)
        s_in = layer.scale


def test_refuses_tanh_and_unfused_relu():
    calib = np.zeros((4, 28, 28), np.uint8)
    with pytest.raises(ValueError, match="Tanh"):
        ptq.quantize_model(models.build_model("lenet5-classic", seed=0), calib)
    bad = nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(784, 10))
    with pytest.raises(ValueError, match="ReLU"):
        ptq.quantize_model(bad, calib)
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        ptq.quantize_model(nn.Sequential(nn.Flatten()), calib)
    with pytest.raises(ValueError, match="percentile"):
        ptq.quantize_model(models.build_model("mlp", seed=0), calib, percentile=0)


def test_cython_and_numpy_backends_bit_identical(mnist):
    model = models.build_model("lenet5", seed=2)
    calib, test_x, _ = mnist
    q = ptq.quantize_model(model, calib[:50])
    cy, acc_cy = q.forward_trace(test_x[:20], "cython")
    npy, acc_np = q.forward_trace(test_x[:20], "numpy")
    assert len(cy) == len(q.layers) + 1
    for a, b in zip(cy, npy, strict=True):
        assert a.dtype == np.int8
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(acc_cy, acc_np)
    # the int8 logits are the requantised last accumulator
    np.testing.assert_array_equal(cy[-1], reference.requantize(acc_cy, q.layers[-1].rq))
    with pytest.raises(ValueError, match="backend"):
        q.forward(test_x[:2], backend="torch")


def test_input_forms_agree(mnist):
    model = models.build_model("mlp", seed=3)
    calib, test_x, _ = mnist
    q = ptq.quantize_model(model, calib[:50])
    from_uint8 = q.forward(test_x[:8])
    from_float = q.forward(data.to_float(test_x[:8]))
    from_int8 = q.forward(q.quantize_input(test_x[:8]))
    np.testing.assert_array_equal(from_uint8, from_float)
    np.testing.assert_array_equal(from_uint8, from_int8)
    with pytest.raises(ValueError, match="shape"):
        q.forward(np.zeros((2, 1, 14, 14), np.uint8))
    with pytest.raises(TypeError, match="dtype"):
        q.forward(np.zeros((2, 28, 28), np.int32))


def test_int8_accuracy_close_to_float(trained_mlp, mnist):
    calib, test_x, test_y = mnist
    q = ptq.quantize_model(trained_mlp, calib)
    trained_mlp.eval()
    float_pred = np.argmax(trained_mlp.forward(data.to_float(test_x)), axis=1)
    int8_pred = q.predict(test_x)
    float_acc = float(np.mean(float_pred == test_y))
    int8_acc = float(np.mean(int8_pred == test_y))
    assert float_acc > 0.8  # the tiny model did learn
    assert abs(int8_acc - float_acc) <= 0.02, (float_acc, int8_acc)
    assert np.mean(int8_pred == float_pred) >= 0.97


def test_avgpool_model_and_dropout(mnist):
    calib, test_x, _ = mnist
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, seed=0), nn.ReLU(), nn.AvgPool2d(2), nn.Dropout(0.3),
                          nn.Flatten(), nn.Linear(4 * 14 * 14, 10, seed=1))
    q = ptq.quantize_model(model, calib[:40])
    assert [layer.kind for layer in q.layers] == ["conv", "avgpool", "flatten", "linear"]
    cy, _ = q.forward_trace(test_x[:6], "cython")
    npy, _ = q.forward_trace(test_x[:6], "numpy")
    for a, b in zip(cy, npy, strict=True):
        np.testing.assert_array_equal(a, b)


def test_save_load_round_trip(mnist, tmp_path):
    calib, test_x, _ = mnist
    q = ptq.quantize_model(models.build_model("lenet5", seed=4), calib[:30])
    q.save(tmp_path / "q.npz")
    q2 = ptq.QuantizedModel.load(tmp_path / "q.npz")
    assert [(a.kind, a.rq, a.stride, a.padding, a.kernel) for a in q.layers] == \
        [(b.kind, b.rq, b.stride, b.padding, b.kernel) for b in q2.layers]
    np.testing.assert_array_equal(q.forward(test_x[:5]), q2.forward(test_x[:5]))


def test_quantised_model_save_load_summary_and_refusals(tmp_path, rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, seed=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(2 * 4 * 4, 3, seed=1))
    calib = rng.integers(0, 256, (8, 8, 8), dtype=np.uint8)
    q = ptq.quantize_model(model, calib)
    x = calib[:3]
    q.save(tmp_path / "q.npz")
    q2 = ptq.QuantizedModel.load(tmp_path / "q.npz")
    np.testing.assert_array_equal(q2.forward(x), q.forward(x))
    np.testing.assert_array_equal(q.predict(x), np.argmax(q.forward(x), axis=1))
    np.testing.assert_array_equal(q.dequantized_logits(x), quant.dequantize(q.forward(x), q.layers[-1].scale))
    # float input already normalised, and int8 input taken as quantised, give the same int8 path
    xq = q.quantize_input(x)
    np.testing.assert_array_equal(q.forward(xq), q.forward(x))
    assert q.summary().splitlines()[0].startswith("input scale") and f"M={q.layers[0].rq.mult}" in q.summary()
    with pytest.raises(TypeError, match="uint8 images, float or int8"):
        q.quantize_input(x.astype(np.int32))
    with pytest.raises(ValueError, match="input must have shape"):
        q.quantize_input(calib[:2, :6, :6])
    with pytest.raises(ValueError, match="backend"):
        ptq.run_layer(q.layers[0], xq, backend="verilog")
    with pytest.raises(ValueError, match="unknown int8 layer kind"):
        ptq.run_layer(ptq.QLayer("softmax", "s", 1.0), xq)
    bad = tmp_path / "bad.npz"
    with open(bad, "wb") as f:
        np.savez(f, meta=np.array('{"format": 7}'))
    with pytest.raises(ValueError, match="not a cnnx quantised model"):
        ptq.QuantizedModel.load(bad)


@pytest.mark.parametrize("layer, match", [
    (lambda: nn.Conv2d(1, 2, 3, stride=(1, 2), seed=0), "equal stride on both axes"),
    (lambda: nn.Conv2d(1, 2, 3, stride=2, floor_mode=True, seed=0), "floor_mode"),
])
def test_layers_the_int8_path_refuses(layer, match, rng):
    model = nn.Sequential(layer(), nn.ReLU(), nn.Flatten())
    with pytest.raises(ValueError, match=match):
        ptq.quantize_model(model, rng.integers(0, 256, (2, 9, 9), dtype=np.uint8))


def test_calibration_input_is_checked(rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, seed=0), nn.ReLU(), nn.Flatten())
    with pytest.raises(TypeError, match="uint8 or float"):
        ptq.quantize_model(model, rng.integers(0, 9, (2, 8, 8)))
    with pytest.raises(ValueError, match="non-empty"):
        ptq.quantize_model(model, np.zeros((0, 1, 8, 8), np.float32))
