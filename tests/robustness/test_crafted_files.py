"""Issue 11, items 10 and 1 (file side): crafted checkpoints and quantised-model files are refused with one
clear error, their sizes checked before anything is inflated or allocated. Loads run in a child process that
reports its own peak RSS, so a crash fails the test and the memory a small file can cost is measured
(target: under 1 GB for a file under 1 MB)."""

import io
import json
import re
import zipfile

import numpy as np
import pytest
from _helpers import assert_clean_error, run_child  # tests/robustness/_helpers.py

from cnnx import checkpoint, models, nn, ptq
from cnnx._npz import MAX_JSON_DEPTH, NpzError, json_loads, read_npz

LENET_CONFIG = [
    {"type": "Conv2d", "args": {"in_channels": 1, "out_channels": 2, "kernel_size": [3, 3]}},
    {"type": "ReLU", "args": {}}, {"type": "MaxPool2d", "args": {"kernel_size": [2, 2]}},
    {"type": "Flatten", "args": {}},
    {"type": "Linear", "args": {"in_features": 338, "out_features": 10}},
]


def _npy_header(dtype, shape) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                             "fortran_order": False, "shape": tuple(shape)})
    return f.getvalue()


def write_npz(path, members: dict, zeros: dict | None = None) -> None:
    """An .npz of `members` (arrays) plus `zeros` {key: (dtype, shape)} streamed as compressed zeros, so a
    multi-GB member costs neither memory nor much disk."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for key, a in members.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(a), allow_pickle=True)
            zf.writestr(key + ".npy", buf.getvalue())
        for key, (dtype, shape) in (zeros or {}).items():
            n = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
            with zf.open(key + ".npy", "w", force_zip64=True) as f:
                f.write(_npy_header(dtype, shape))
                block = bytes(1 << 24)
                while n > 0:
                    f.write(block[: min(n, len(block))])
                    n -= len(block)


def checkpoint_members(config=None, params=None, meta=None) -> dict:
    m = {"__format__": np.array(1, np.int64), "__model_name__": np.array("custom"),
         "__model_config__": np.array(json.dumps(LENET_CONFIG if config is None else config)),
         "__meta__": np.array(json.dumps(meta or {})), "__optimizer__": np.array("null")}
    if params is None:
        model = nn.Sequential.from_config(LENET_CONFIG)
        params = model.state_dict()
    m.update({f"param/{k}": v for k, v in params.items()})
    return m


_LOAD_AND_MEASURE = """
import resource, sys
from cnnx import checkpoint
try:
    checkpoint.load(sys.argv[1])
    print("LOADED")
except checkpoint.CheckpointError as e:
    print("REFUSED", e)
print("PEAK_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def load_in_child(path):
    """(message, peak RSS in MB) of checkpoint.load(path) in a child process."""
    r = run_child(_LOAD_AND_MEASURE, path)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stderr[-3000:]}"
    peak = float(re.search(r"PEAK_MB (\S+)", r.stdout).group(1))
    return r.stdout.splitlines()[0], peak


def test_a_valid_checkpoint_still_loads(tmp_path):
    path = tmp_path / "ok.npz"
    write_npz(path, checkpoint_members())
    model, _ = checkpoint.load(path)
    assert model.output_shape((1, 28, 28)) == (10,)
    msg, peak = load_in_child(path)
    assert msg == "LOADED"


CRAFTED = {
    # 200 MiB of compressed zeros in one parameter (a ~200 KB file): refused from the zip directory alone
    "huge_compressed_param": (dict(), {"param/0.weight": (np.float32, (50 * 2**20,))},
                              r"its arrays would take \d+ bytes uncompressed, more than the limit of "
                              r"134217728"),
    # the case: a config saying Linear(20000, 20000) beside small arrays
    "linear_20000_config": (dict(config=[{"type": "Linear", "args": {"in_features": 20000,
                                                                     "out_features": 20000}}],
                                 params={"0.weight": np.zeros((4, 4), np.float32),
                                         "0.bias": np.zeros(4, np.float32)}), None,
                            r"the model config implies 400020000 parameters but the file holds 20"),
    "json_nested_100000": (dict(config="[" * 100_000 + "]" * 100_000), None,
                           rf"nested more than {MAX_JSON_DEPTH} levels deep"),
    "complex64_weights": (dict(params={k: v.astype(np.complex64) for k, v in
                                       nn.Sequential.from_config(LENET_CONFIG).state_dict().items()}), None,
                          r"param/0.weight': weights must be float32, got complex64"),
    "fails_at_forward": (dict(config=LENET_CONFIG[:4] + [{"type": "Linear", "args": {"in_features": 300,
                                                                                      "out_features": 10}}],
                              params={**{k: v for k, v in nn.Sequential.from_config(LENET_CONFIG).state_dict()
                                         .items() if k.startswith("0.")},
                                      "4.weight": np.zeros((10, 300), np.float32),
                                      "4.bias": np.zeros(10, np.float32)}), None,
                         r"does not run on input shape \(1, 28, 28\).*expects 300 input features, got 338"),
    "bad_layer_args": (dict(config=[{"type": "Conv2d", "args": {"in_channels": "1", "out_channels": 2,
                                                                "kernel_size": 3}}]), None,
                       r"the model config is invalid: in_channels must be an int"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_checkpoint_is_refused_with_little_memory(tmp_path, case):
    kwargs, zeros, match = CRAFTED[case]
    config = kwargs.get("config")
    members = checkpoint_members(**kwargs) if not isinstance(config, str) else {
        **checkpoint_members(), "__model_config__": np.array(config)}
    if zeros:
        members = {k: v for k, v in members.items() if k not in zeros}
    path = tmp_path / f"{case}.npz"
    write_npz(path, members, zeros)
    size = path.stat().st_size
    assert size < 2**20, size  # each crafted file is under 1 MB
    msg, peak = load_in_child(path)
    assert msg.startswith("REFUSED") and re.search(match, msg), msg
    assert peak < 1024, f"{case}: a {size}-byte file peaked at {peak:.0f} MB"
    print(f"{case}: {size} bytes, refused, peak RSS {peak:.0f} MB")


def test_worst_file_under_the_limit_loads_below_1_gb(tmp_path):
    """The largest model a file may hold (just under MAX_CHECKPOINT_BYTES of weights, ~600 KB compressed):
    building it and loading its weights is the most memory any accepted small file can cost."""
    n_in = 4096
    n_out = (checkpoint.MAX_CHECKPOINT_BYTES - 4096) // (4 * (n_in + 1))
    cfg = [{"type": "Linear", "args": {"in_features": n_in, "out_features": n_out}}]
    path = tmp_path / "worst.npz"
    write_npz(path, checkpoint_members(config=cfg, params={"0.bias": np.zeros(n_out, np.float32)},
                                       meta={"input_shape": [n_in]}),
              {"param/0.weight": (np.float32, (n_out, n_in))})
    size = path.stat().st_size
    assert size < 2**20
    msg, peak = load_in_child(path)
    assert msg == "LOADED"
    assert peak < 1024, f"a {size}-byte file peaked at {peak:.0f} MB"
    print(f"worst accepted file: {size} bytes, {n_out}x{n_in} weights, loaded, peak RSS {peak:.0f} MB")


def test_lying_headers_are_caught_before_allocating(tmp_path):
    # the .npy header claims 2**31 float32 (8 GiB) in a member whose zip entry holds 16 bytes
    path = tmp_path / "lie.npz"
    members = checkpoint_members()
    with zipfile.ZipFile(path, "w") as zf:
        for k, a in members.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a)
            zf.writestr(k + ".npy", buf.getvalue())
        zf.writestr("param/extra.npy", _npy_header(np.float32, (2**31,)) + bytes(16))
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"header says float32\(2147483648,\).*holds 16 bytes"):
        checkpoint.read(path)


@pytest.mark.parametrize("member, match", [
    (np.array([{"a": 1}], dtype=object), "holds Python objects"),
    (np.zeros((2, 2), np.float64), "weights must be float32, got float64"),
    (np.zeros((1, 1, 1, 1, 1), np.float32), "has 5 dimensions"),
])
def test_checkpoint_member_policy(tmp_path, member, match):
    path = tmp_path / "m.npz"
    write_npz(path, {**checkpoint_members(), "optim/x": member})
    with pytest.raises(checkpoint.CheckpointError, match=match):
        checkpoint.read(path)
    write_npz(path, {**checkpoint_members(), "surprise": np.zeros(1, np.float32)})
    with pytest.raises(checkpoint.CheckpointError, match="'surprise': is not a member of a cnnx checkpoint"):
        checkpoint.read(path)


def test_npz_reader_refuses_non_zip_and_truncated_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(NpzError, match="unreadable .npz"):
        read_npz(bad, 2**20)
    good = tmp_path / "good.npz"
    np.savez(good, a=np.arange(1000))
    bad.write_bytes(good.read_bytes()[:-300])
    with pytest.raises(NpzError, match="unreadable .npz"):
        read_npz(bad, 2**20)
    np.testing.assert_array_equal(read_npz(good, 2**20)["a"], np.arange(1000))
    with pytest.raises(NpzError, match="missing b, c"):
        read_npz(good, 2**20, required=("a", "b", "c"))
    with pytest.raises(NpzError, match="more than the limit of 100 bytes"):
        read_npz(good, 100)


def test_json_depth_and_length_limits():
    assert json_loads('{"a": [[["]]]]]"]]]}') == {"a": [[["]]]]]"]]]}  # brackets inside strings do not count
    with pytest.raises(ValueError, match="nested more than"):
        json_loads("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    assert json_loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None


# ---- quantised-model files ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qmodel_file(tmp_path_factory):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, seed=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(338, 10, seed=1))
    calib = np.random.default_rng(0).integers(0, 256, size=(8, 28, 28), dtype=np.uint8)
    path = tmp_path_factory.mktemp("q") / "q.npz"
    ptq.quantize_model(model, calib).save(path)
    return path


def _rewrite(src, dst, edit_meta=None, edit_arrays=None):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    if edit_meta:
        edit_meta(meta)
    if edit_arrays:
        edit_arrays(arrays)
    np.savez(dst, meta=np.array(json.dumps(meta)), **arrays)


def _set(i, key, value):
    def f(meta):
        meta["layers"][i][key] = value
    return f


def test_crafted_quantised_model_with_huge_stride_is_refused_not_a_segfault(qmodel_file, tmp_path):
    path = tmp_path / "crafted.npz"

    def huge(meta):
        meta["layers"][0]["stride"] = 2**62 + 1
        meta["layers"][0]["padding"] = 2**62 + 1
    _rewrite(qmodel_file, path, huge)
    r = run_child("""
        import sys
        import numpy as np
        from cnnx.ptq import QuantizedModel
        imgs = np.zeros((2, 28, 28), np.uint8)
        QuantizedModel.load(sys.argv[1]).predict(imgs)
    """, path)
    assert_clean_error(r, "ValueError",
                       r"crafted.npz: not a valid cnnx quantised model: layer 0 stride must be <= 2147483647")


@pytest.mark.parametrize("edit_meta, edit_arrays, match", [
    (_set(0, "padding", 40000), None, r"layer 0 \(conv\): one image through a conv layer: needs .* GiB"),
    (_set(0, "rq", [0, 5, True]), None, r"Requant.mult must be in \[1, 32767\], got 0"),
    (_set(0, "rq", [5, 99, True]), None, r"Requant.shift must be in \[1, 47\], got 99"),
    (_set(0, "rq", [5, 5, "yes"]), None, r"rq must be \[mult, shift, relu\]"),
    (_set(0, "kind", "attention"), None, r"kind in \("),
    (_set(0, "scale", float("nan")), None, r"layer 0 scale must be a positive finite number, got nan"),
    (_set(1, "kernel", 0), None, r"layer 1 kernel must be >= 1, got 0"),
    (_set(1, "kernel", 5), None, r"layer 1 \(maxpool\): pooling window does not fit"),
    (_set(1, "evil", 1), None, r"only the fields"),
    (lambda m: m.update(input_shape=[3, 28, 28]), None, r"layer 0 \(conv\): expects 1 input channels"),
    (lambda m: m.update(input_shape=[1, 2**40, 28]), None, r"input_shape must be <= 2147483647"),
    (lambda m: m.update(input_scale=-1.0), None, r"input_scale must be a positive finite number"),
    (lambda m: m.update(format=2), None, r"format 2"),
    (lambda m: m.update(layers={}), None, r"'layers' must be a non-empty list"),
    (lambda m: m.update(calibration=[]), None, r"'calibration' must be an object"),
    (_set(1, "rq", [1, 1, False]), None, r"layer 1 \(maxpool\) cannot have a requantisation"),
    (lambda m: m.update(layers=m["layers"][:2]), None, r"last layer gives shape \(2, 13, 13\), not class"),
    (None, lambda a: a.update(w0=a["w0"].astype(np.int16)), r"'w0': must be int8, got int16"),
    (None, lambda a: a.update(b0=a["b0"].astype(np.float32)), r"'b0': must be int32, got float32"),
    (None, lambda a: a.update(w3=a["w3"][:, :300]), r"layer 3 \(linear\): expects \(300,\) inputs, gets"),
    (None, lambda a: a.update(b3=a["b3"][:3]), r"with a bias \(OUT,\)"),
    (None, lambda a: a.update(b0=np.full(2, 2**31 - 1, np.int32)), r"beyond int32"),
    (None, lambda a: a.pop("w3"), r"layer 3 \(linear\) has no weights w3/b3"),
    (None, lambda a: a.update(x=np.zeros(1)), r"'x': is not a member of a cnnx quantised model"),
])
def test_quantised_model_load_validates_every_field(qmodel_file, tmp_path, edit_meta, edit_arrays, match):
    ok = ptq.QuantizedModel.load(qmodel_file)
    assert ok.predict(np.zeros((2, 28, 28), np.uint8)).shape == (2,)
    path = tmp_path / "bad.npz"
    _rewrite(qmodel_file, path, edit_meta, edit_arrays)
    with pytest.raises(ValueError, match=match):
        ptq.QuantizedModel.load(path)


def test_npz_reader_structure_checks(tmp_path):
    path = tmp_path / "s.npz"
    a = io.BytesIO()
    np.lib.format.write_array(a, np.arange(3))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.npy", a.getvalue())
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("a.npy", a.getvalue())
    with pytest.raises(NpzError, match="duplicate member names"):
        read_npz(path, 2**20)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", b"hello")
    with pytest.raises(NpzError, match="'notes.txt' is not a .npy array"):
        read_npz(path, 2**20)
    f = io.BytesIO()
    np.lib.format.write_array(f, np.asfortranarray(np.zeros((2, 3), np.float32)))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("f.npy", f.getvalue())
    with pytest.raises(NpzError, match="Fortran order"):
        read_npz(path, 2**20)
    v2 = io.BytesIO()
    np.lib.format.write_array(v2, np.arange(4, dtype=np.int16), version=(2, 0))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("v.npy", v2.getvalue())
    np.testing.assert_array_equal(read_npz(path, 2**20)["v"], np.arange(4))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("v.npy", b"\x93NUMPY\x09\x00" + v2.getvalue()[8:])
    with pytest.raises(NpzError, match="unreadable|unsupported"):
        read_npz(path, 2**20)


def test_json_refuses_non_strings_and_huge_texts(monkeypatch):
    with pytest.raises(ValueError, match="the config must be a string"):
        json_loads(b"[]", "the config")
    monkeypatch.setattr("cnnx._npz.MAX_JSON_CHARS", 10)
    with pytest.raises(ValueError, match="the config is 12 characters long, more than 10"):
        json_loads("[1, 2, 3, 4]", "the config")


def test_checkpoint_size_limit_is_configurable_and_member_kinds_checked(tmp_path, monkeypatch):
    path = tmp_path / "ok.npz"
    write_npz(path, checkpoint_members())
    monkeypatch.setenv(checkpoint.MAX_BYTES_ENV, "1000")
    with pytest.raises(checkpoint.CheckpointError, match="more than the limit of 1000 bytes"):
        checkpoint.read(path)
    monkeypatch.setenv(checkpoint.MAX_BYTES_ENV, "1e9")
    with pytest.raises(checkpoint.CheckpointError, match="CNNX_MAX_CHECKPOINT_BYTES must be a number"):
        checkpoint.read(path)
    monkeypatch.delenv(checkpoint.MAX_BYTES_ENV)
    for key, value, match in [("__format__", np.array(1.0), "must be an integer scalar"),
                              ("__meta__", np.zeros(2), "must be a string"),
                              ("__optimizer__", np.array("[1, 2]"), "optimiser state must be a JSON object")]:
        write_npz(path, {**checkpoint_members(), key: value})
        with pytest.raises(checkpoint.CheckpointError, match=match):
            checkpoint.read(path)


@pytest.mark.parametrize("name", models.MODELS)
def test_parameter_count_of_config_agrees_with_the_built_model(name):
    model = models.build_model(name, seed=0)
    cfg = json.loads(json.dumps(model.config()))
    want = sum(p.data.size for p in model.parameters())
    assert nn.Sequential.parameter_count_of_config(cfg) == want
    assert nn.Sequential.parameter_count_of_config({"type": "Sequential", "layers": [cfg, cfg]}) == 2 * want
    with pytest.raises(TypeError, match="layer arguments must be a dict"):
        nn.Sequential.parameter_count_of_config([{"type": "Linear", "args": [1, 2]}])
