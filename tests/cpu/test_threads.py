"""1 thread vs 2 threads: forward and backward results are bit-identical (race-free, fixed-order kernels),
and the thread-count setting (`cnnx.set_num_threads`) is honoured and validated."""

import numpy as np
import pytest

import cnnx
from cnnx import functional as F


def _all_results(rng, n_threads):
    r = np.random.default_rng(7)  # same data for both thread counts
    x = r.standard_normal((5, 3, 12, 10)).astype(np.float32)
    w = r.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = r.standard_normal(4).astype(np.float32)
    out = {}
    y = F.conv2d(x, w, b, 1, 1, n_threads=n_threads)
    out["conv"] = y
    dy = r.standard_normal(y.shape).astype(np.float32)
    out["conv_dx"], out["conv_dw"], out["conv_db"] = F.conv2d_backward(dy, x, w, 1, 1, n_threads=n_threads)
    y2 = F.conv2d(x, w, b, 2, (0, 1), floor_mode=True, n_threads=n_threads)
    dy2 = r.standard_normal(y2.shape).astype(np.float32)
    out["conv_s2"] = y2
    out["conv_s2_grads"] = F.conv2d_backward(dy2, x, w, 2, (0, 1), floor_mode=True, n_threads=n_threads)
    p, idx = F.max_pool2d(x, 2, return_indices=True, n_threads=n_threads)
    out["max"], out["max_dx"] = p, F.max_pool2d_backward(p, idx, x.shape, n_threads=n_threads)
    out["avg"] = F.avg_pool2d(x, 3, 1, n_threads=n_threads)
    out["avg_dx"] = F.avg_pool2d_backward(out["avg"], x.shape, 3, 1, n_threads=n_threads)
    out["l2"] = F.lp_pool2d(x, 2, 2, n_threads=n_threads)
    out["l2_dx"] = F.lp_pool2d_backward(out["l2"], x, out["l2"], 2, 2, n_threads=n_threads)
    flat = x.reshape(5, -1)
    lw = r.standard_normal((7, flat.shape[1])).astype(np.float32)
    out["linear"] = F.linear(flat, lw, None, n_threads=n_threads)
    out["linear_grads"] = F.linear_backward(out["linear"], flat, lw, n_threads=n_threads)
    out["relu"] = F.relu(x, n_threads=n_threads)
    out["tanh_dx"] = F.tanh_backward(x, F.tanh(x, n_threads=n_threads), n_threads=n_threads)
    out["ce"] = F.cross_entropy(out["linear"], np.arange(5), n_threads=n_threads)
    return out


def _flatten(v):
    if isinstance(v, tuple):
        return [a for item in v for a in _flatten(item)]
    return [np.asarray(v)]


def test_one_and_two_threads_are_bit_identical(rng):
    one, two = _all_results(rng, 1), _all_results(rng, 2)
    for key in one:
        for a, b in zip(_flatten(one[key]), _flatten(two[key]), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=key)


def test_set_num_threads_is_honoured_and_validated(rng):
    x = rng.standard_normal((3, 2, 8, 8)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    try:
        cnnx.set_num_threads(1)
        assert cnnx.get_num_threads() == 1
        a = F.conv2d(x, w)
        cnnx.set_num_threads(2)
        assert cnnx.get_num_threads() == 2
        np.testing.assert_array_equal(a, F.conv2d(x, w))
    finally:
        cnnx.set_num_threads(None)
    with pytest.raises(ValueError, match="n_threads"):
        F.conv2d(x, w, n_threads=0)
    with pytest.raises(ValueError):
        cnnx.set_num_threads(-1)


_SCRIPT = """
import sys
import numpy as np
from cnnx import functional as F
r = np.random.default_rng(3)
x = r.standard_normal((3, 4, 13, 11)).astype(np.float32)
w = r.standard_normal((7, 4, 3, 5)).astype(np.float32)
y = F.conv2d(x, w, None, 1, (1, 2), n_threads=1)
dx, dw, _ = F.conv2d_backward(np.ones_like(y), x, w, 1, (1, 2), n_threads=1)
xs = x.reshape(3, -1)
lw = r.standard_normal((37, xs.shape[1])).astype(np.float32)
lin = F.linear(xs, lw, n_threads=1)
ldx, ldw, _ = F.linear_backward(lin, xs, lw, n_threads=1)
np.savez(sys.argv[1], y=y, dx=dx, dw=dw, lin=lin, ldx=ldx, ldw=ldw)
"""


def test_avx512_and_portable_tiles_agree(tmp_path, layer_check):
    """The sgemm tiles are picked once per process (AVX-512 when the CPU has it, else AVX2/baseline clones);
    run the same products under CNNX_NO_AVX512=1 in a child process and compare."""
    import os
    import subprocess
    import sys

    outs = []
    for flag in ("0", "1"):
        path = tmp_path / f"out{flag}.npz"
        env = dict(os.environ, CNNX_NO_AVX512=flag)
        subprocess.run([sys.executable, "-c", _SCRIPT, str(path)], check=True, env=env, timeout=120)
        outs.append(np.load(path))
    for key in outs[0].files:
        layer_check(outs[1][key], outs[0][key], what=key)  # same sums in the same order: ~bit-identical
