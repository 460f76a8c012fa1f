"""cnnx.checkpoint: a save/load round trip is exact, and every kind of broken file is refused with a
CheckpointError that says what is wrong (never a crash, never a pickle)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnx import checkpoint, nn, optim
from cnnx.checkpoint import CheckpointError


def _model():
    # runs on MNIST's (1, 28, 28), the input shape a checkpoint without one is checked on at load
    return nn.Sequential(nn.Conv2d(1, 2, 3, seed=0), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 26 * 26, 3, seed=1))


def _arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_round_trip_with_optimiser_is_exact(tmp_path, rng):
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
    opt.step()
    path = checkpoint.save(tmp_path, model, opt, meta={"model_name": "tiny", "epoch": 3, "metrics": [1, 2]})
    assert path == tmp_path / checkpoint.CHECKPOINT_NAME
    loaded, info = checkpoint.load(tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert (info["model_name"], info["epoch"], info["metrics"], info["format"]) == ("tiny", 3, [1, 2], 1)
    assert not loaded.training                                   # loaded for evaluation
    opt2 = optim.SGD(loaded.parameters(), lr=0.1, momentum=0.9)
    checkpoint.resume_optimizer(opt2, info)
    assert opt2.step_count == 1
    for a, b in zip(opt.state["momentum"], opt2.state["momentum"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_save_to_a_named_file_and_without_optimiser(tmp_path):
    path = checkpoint.save(tmp_path / "m.npz", _model())
    assert path == tmp_path / "m.npz" and path.is_file()
    _, info = checkpoint.load(path)
    assert info["optimizer"] is None and info["model_name"] == "custom" and info["epoch"] is None
    with pytest.raises(CheckpointError, match="no optimiser state"):
        checkpoint.resume_optimizer(optim.SGD(_model().parameters(), lr=0.1), info)


def _rewrite(path, **changes):
    arrays = _arrays(path)
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("change, message", [
    (dict(__format__=np.array(2)), "format 2"),
    (dict(__meta__=np.array("{not json")), "malformed header"),
    (dict(__model_config__=None), "missing __model_config__"),
    (dict(__model_config__=np.array(json.dumps([{"type": "Conv9d"}]))), "unknown layer type 'Conv9d'"),
])
def test_broken_headers_are_refused(tmp_path, change, message):
    path = checkpoint.save(tmp_path, _model(), optim.SGD(_model().parameters(), lr=0.1))
    _rewrite(path, **change)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(tmp_path)


def test_a_file_without_weights_is_refused(tmp_path):
    path = checkpoint.save(tmp_path, _model())
    arrays = {k: v for k, v in _arrays(path).items() if not k.startswith("param/")}
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(CheckpointError, match="holds no weights"):
        checkpoint.load(path)


def test_weights_of_the_wrong_shape_are_refused(tmp_path):
    path = checkpoint.save(tmp_path, _model())
    _rewrite(path, **{"param/0.weight": np.zeros((5, 1, 3, 3), np.float32)})  # 27 more values than the config
    with pytest.raises(CheckpointError, match="config implies 4079 parameters but the file holds 4106"):
        checkpoint.load(path)
    _rewrite(path, **{"param/0.weight": np.zeros((1, 2, 3, 3), np.float32)})  # as many values, wrong shape
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        checkpoint.load(path)


def test_unreadable_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoint.load(tmp_path / "missing")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(bad)
    good = checkpoint.save(tmp_path / "good.npz", _model())
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])                      # truncated
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(good)
    pickled = tmp_path / "pickled.npz"
    with open(pickled, "wb") as f:
        np.savez(f, __format__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(pickled)
    other = tmp_path / "other.npz"
    with open(other, "wb") as f:
        np.savez(f, x=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a readable checkpoint: missing __format__"):
        checkpoint.load(other)


def test_optimiser_state_that_does_not_fit_is_refused(tmp_path):
    model = _model()
    checkpoint.save(tmp_path, model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    _, info = checkpoint.load(tmp_path)
    with pytest.raises(CheckpointError, match="does not fit"):
        checkpoint.resume_optimizer(optim.Adam(model.parameters()), info)
