"""The host-side tiler (cnnx.compile.tiling): plans and buffer checks without a simulator; on the RTL, layers
bigger than every buffer and the zoo's `mlp` on 4x4 and 8x8 arrays with small buffers, bit-exact against the
int8 golden model (cnnx.reference via ptq's "numpy" backend) and measured cycles = the tiled cycle model."""

from __future__ import annotations

import numpy as np
import pytest

from cnnx import cycles, quant, reference
from cnnx.compile import tiling

# one small-buffer configuration shared by every RTL test here (one build per array)
SMALL = "in=1K,w=8K,out=1K,bias=64"


def test_parse_buffers_suffixes_and_defaults():
    b = tiling.parse_buffers("in=8K, w=64K ,out=8k,bias=256")
    assert b == {"IFMAP_DEPTH": 8192, "WEIGHT_DEPTH": 65536, "OFMAP_DEPTH": 8192, "BIAS_DEPTH": 256}
    assert tiling.parse_buffers("in=1K")["WEIGHT_DEPTH"] == tiling.CONV_DEFAULTS["WEIGHT_DEPTH"]
    assert tiling.parse_buffers(None) == tiling.CONV_DEFAULTS
    assert tiling.parse_buffers({"in": 1024, "OFMAP_DEPTH": 512})["OFMAP_DEPTH"] == 512
    assert tiling.parse_buffers("w=1M")["WEIGHT_DEPTH"] == 2**20   # parsed; check_buffers refuses it


@pytest.mark.parametrize("text, match", [
    ("in8K", "must look like"), ("x=8K", "unknown buffer"), ("in=8Q", "not a size"), ("in=", "not a size"),
])
def test_parse_buffers_refuses_bad_text(text, match):
    with pytest.raises(ValueError, match=match):
        tiling.parse_buffers(text)


@pytest.mark.parametrize("text, match", [
    ("in=3000", "power of two"), ("in=8,w=64K", "16 <= in <= w"), ("in=16K,w=8K", "16 <= in <= w"),
    ("w=1M", "16 <= in <= w"), ("out=128K", "at most 65536"), ("out=32", "column banks"),
    ("bias=8", "column banks"), ("w=1K,in=1K,bias=512", "at most w/4"),
])
def test_check_buffers_follows_the_verilog_guards(text, match):
    with pytest.raises(ValueError, match=match):
        tiling.check_buffers(tiling.parse_buffers(text), 8, 8)


def test_check_buffers_pool_lane_banks():
    tiling.check_buffers(tiling.parse_buffers("in=16,w=64,out=64,bias=16"), 1, 1, lanes=2)
    with pytest.raises(ValueError, match="lane banks"):
        tiling.check_buffers(tiling.parse_buffers("in=16,w=64,out=64,bias=16"), 1, 1, lanes=4)


def test_plan_small_layer_is_one_run_with_core_padding():
    buf = tiling.parse_buffers(None)
    (t,) = tiling.plan_conv(1, 28, 28, 6, 5, 5, 1, 2, 8, 8, buf)
    assert (t.f0, t.f1, t.r0, t.r1, t.host_pad, t.padding) == (0, 6, 0, 28, False, 2)
    got = tiling.conv_cycles(1, 28, 28, 6, 5, 5, 1, 2, 8, 8, buf)
    assert got == cycles.conv_cycles(1, 28, 28, 6, 5, 5, 1, 2)


def test_plan_covers_every_output_once_and_fits():
    buf = tiling.parse_buffers(SMALL)
    C, H, W, F, KH, KW, s, p = 8, 20, 20, 128, 3, 3, 1, 1
    tiles = tiling.plan_conv(C, H, W, F, KH, KW, s, p, 8, 8, buf)
    assert len(tiles) > 1 and any(t.host_pad for t in tiles)
    seen = np.zeros((F, 20), int)
    for t in tiles:
        seen[t.f0 : t.f1, t.r0 : t.r1] += 1
        assert t.C * t.H * t.W <= buf["IFMAP_DEPTH"]
        assert -(-t.F // 8) * t.C * t.KH * t.KW <= buf["WEIGHT_DEPTH"] // 8
    assert (seen == 1).all()
    assert tiling.conv_cycles(C, H, W, F, KH, KW, s, p, 8, 8, buf) == sum(
        cycles.conv_cycles(*sh, rows=8, cols=8) for sh in tiling.conv_tile_shapes(tiles))


def test_plan_refuses_what_even_an_input_channel_split_cannot_run():
    buf = tiling.parse_buffers(SMALL)   # a weight bank of 1024 bytes on 8 columns
    with pytest.raises(ValueError, match=r"KH\*KW = 33\*33 = 1089 weights.*even a split by input channels"):
        tiling.plan_conv(2, 40, 40, 4, 33, 33, 1, 0, 8, 8, buf)
    with pytest.raises(ValueError, match="beyond int32"):
        tiling.plan_conv(140_000, 1, 1, 4, 1, 1, 1, 0, 8, 8, buf)
    with pytest.raises(ValueError, match="input band"):   # even a one-channel chunk's band exceeds in=1K
        tiling.plan_conv(200, 5, 400, 4, 3, 3, 1, 0, 8, 8, buf)
    with pytest.raises(ValueError, match="input band"):
        tiling.plan_conv(16, 8, 100, 4, 3, 3, 1, 0, 8, 8, buf)
    with pytest.raises(ValueError, match="output bank"):
        tiling.plan_conv(1, 3, 300, 4, 1, 1, 1, 0, 8, 8, buf)
    with pytest.raises(ValueError, match="lane bank"):
        tiling.plan_pool(1, 40, 40, 2, 2, 4, tiling.pool_params(buf))


def test_tiled_pool_cycles_is_a_sum():
    buf = tiling.pool_params(tiling.parse_buffers(SMALL))
    groups = tiling.plan_pool(32, 16, 16, 2, 2, 4, buf)
    assert len(groups) == 8 and groups[-1] == (28, 32)
    assert tiling.pool_cycles(32, 16, 16, 2, 2, 4, buf) == 8 * cycles.pool_cycles(4, 16, 16, 2, 2)


# ----------------------------------------------------------------------------------------------------------
# on the RTL
# ----------------------------------------------------------------------------------------------------------

_CORES: dict = {}


def small_cores(rows, cols):
    from cnnx.sim import ConvCore, PoolCore

    key = (rows, cols)
    if key not in _CORES:
        buf = tiling.parse_buffers(SMALL)
        _CORES[key] = (ConvCore(rows, cols, **{k.lower(): v for k, v in buf.items()}),
                       PoolCore(**{k.lower(): v for k, v in tiling.pool_params(buf).items()}))
    return _CORES[key]


BIG_CONVS = [  # each bigger than every buffer of SMALL: input, weights, bias, outputs
    (2, 8, 20, 20, 128, 3, 3, 1, 1),
    (1, 6, 23, 21, 80, 5, 5, 2, 2),
]


@pytest.mark.rtl
@pytest.mark.parametrize("array", [(4, 4), (8, 8)], ids=lambda a: f"{a[0]}x{a[1]}")
@pytest.mark.parametrize("shape", BIG_CONVS, ids=str)
def test_big_conv_tiled_on_rtl_is_bit_exact(array, shape, rtl_rng, conv_layer):
    rows, cols = array
    N, C, H, W, F, KH, KW, s, p = shape
    buf = tiling.parse_buffers(SMALL)
    assert C * H * W > buf["IFMAP_DEPTH"] and F * C * KH * KW > buf["WEIGHT_DEPTH"]
    assert F > buf["BIAS_DEPTH"] and F * H * W // s // s > buf["OFMAP_DEPTH"]
    x, w, b, rq = conv_layer(rtl_rng, N, C, H, W, F, KH, KW)
    conv, _ = small_cores(rows, cols)
    y, cyc = tiling.run_conv(conv, x, w, b, rq, s, p)
    np.testing.assert_array_equal(y, reference.conv2d_int8(x, w, b, rq, s, p))
    assert cyc.tolist() == [tiling.conv_cycles(C, H, W, F, KH, KW, s, p, rows, cols, buf)] * N


@pytest.mark.rtl
def test_big_pool_split_by_channels_on_rtl(rtl_rng):
    x = rtl_rng.integers(-128, 128, (2, 30, 16, 16), dtype=np.int8)
    _, pool = small_cores(4, 4)
    for mode, ref in (("max", reference.maxpool2d_int8), ("avg", reference.avgpool2d_int8)):
        y, cyc = tiling.run_pool(pool, x, 2, mode=mode)
        np.testing.assert_array_equal(y, ref(x, 2))
        assert cyc.tolist() == [tiling.pool_cycles(30, 16, 16, 2, 2, pool.lanes, pool.params)] * 2


@pytest.fixture(scope="module")
def mlp_q():
    """The zoo's `mlp` (Linear(784, 300) ...), its initial weights quantised on random 'images'."""
    from cnnx import ptq
    from cnnx.models import build_model

    model = build_model("mlp", seed=0)
    images = np.random.default_rng(3).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    return model, ptq.quantize_model(model, images[:32]), images[32:]


@pytest.mark.rtl
@pytest.mark.parametrize("array", [(4, 4), (8, 8)], ids=lambda a: f"{a[0]}x{a[1]}")
def test_mlp_tiled_on_rtl_is_bit_exact(array, mlp_q):
    from cnnx.harness import RtlRunner, check_fits_rtl

    _, q, images = mlp_q
    rows, cols = array
    buf = tiling.parse_buffers(SMALL)
    check_fits_rtl(q, rows, cols, buf)
    runner = RtlRunner(q, rows, cols, buffers=buf)
    trace, _ = q.forward_trace(images, "numpy")
    h = trace[0]
    for i, layer in enumerate(q.layers):
        h, cyc = runner.run_layer(i, h)
        np.testing.assert_array_equal(h, trace[i + 1])
        if layer.kind != "flatten":
            want = cycles.layer_cycles(layer, trace[i].shape[1:], rows, cols, buf)
            assert cyc.tolist() == [want] * len(images)


@pytest.mark.rtl
def test_cosim_api_tiles_mlp_with_buffers(mlp_q):
    from cnnx.harness import run_cosim

    model, q, images = mlp_q
    res = run_cosim(model, images[:4], np.zeros(4, np.int64), qmodel=q, array=(4, 4), workers=1,
                    golden_images=2, progress=False, buffers=SMALL)
    assert not res.failed
    for r in res.layers:
        assert r.rtl_identical == 4
        if r.model_cycles_per_image is not None:
            assert r.rtl_cycles_per_image == r.model_cycles_per_image
    # w=4K on 8x8: a weight bank of 512 bytes < Linear(784, ...)'s 784: split by input channels (raw mode)
    res = run_cosim(model, images[:1], np.zeros(1, np.int64), qmodel=q, array=(8, 8), workers=1,
                    golden_images=1, progress=False, buffers="in=1K,w=4K,out=1K,bias=64")
    assert not res.failed
    for r in res.layers:
        assert r.rtl_identical == 1
        if r.model_cycles_per_image is not None:
            assert r.rtl_cycles_per_image == r.model_cycles_per_image


def test_cosim_and_profile_refuse_bad_buffers_before_any_build(mlp_q):
    from cnnx.harness import run_cosim
    from cnnx.profile import profile_model

    model, q, images = mlp_q
    with pytest.raises(ValueError, match="power of two"):
        run_cosim(model, images[:1], np.zeros(1, np.int64), qmodel=q, workers=1, progress=False,
                  buffers="in=1000")
    with pytest.raises(ValueError, match="unknown buffer"):
        profile_model(model, q, images[:1], repeats=1, buffers="q=1K")


def test_cli_cosim_buffers_error_exit_2(tmp_path, capsys):
    from cnnx.cli import main

    assert main(["cosim", str(tmp_path / "missing"), "--buffers", "in=1K", "--json"]) == 2


# ---- input-channel split (raw-accumulator mode): tiny weight banks so that one filter does not fit ---
TINY = "in=256,w=256,out=256,bias=16"   # weight banks of 64 (4x4) / 32 (8x8) bytes

_TINY: dict = {}


def tiny_core(rows, cols):
    from cnnx.sim import ConvCore

    if (rows, cols) not in _TINY:
        buf = tiling.parse_buffers(TINY)
        tiling.check_buffers(buf, rows, cols)
        _TINY[rows, cols] = ConvCore(rows, cols, **{k.lower(): v for k, v in buf.items()})
    return _TINY[rows, cols]


def test_plan_splits_by_input_channels_with_raw_passes():
    buf = tiling.parse_buffers(SMALL)   # a weight bank of 1024 bytes on 8 columns
    tiles = tiling.plan_conv(120, 8, 8, 4, 3, 3, 1, 1, 8, 8, buf)
    assert all(t.raw for t in tiles)
    chunks = sorted({(t.c0, t.c1) for t in tiles})
    assert chunks[0][0] == 0 and chunks[-1][1] == 120 and len(chunks) > 1
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:], strict=False))
    assert all((c1 - c0) * 9 <= 1024 for c0, c1 in chunks)
    shapes = tiling.conv_tile_shapes(tiles)
    assert all(sh[8] == cycles.RAW_PASSES for sh in shapes)
    assert tiling.conv_cycles(120, 8, 8, 4, 3, 3, 1, 1, 8, 8, buf) == sum(
        cycles.RAW_PASSES * cycles.conv_cycles(*sh[:8], rows=8, cols=8) for sh in shapes)


@pytest.mark.rtl
@pytest.mark.parametrize("array", [(4, 4), (8, 8)], ids=lambda a: f"{a[0]}x{a[1]}")
def test_run_raw_returns_exact_int32_accumulators(array, rtl_rng):
    """All four bytes of large positive and negative accumulators (the sign byte included) come back."""
    rows, cols = array
    core = tiny_core(rows, cols)
    K = 32                                             # fits both banks
    x = np.full((1, K, 2, 3), -128, np.int8)
    w = np.stack([np.full((K, 1, 1), v, np.int8) for v in (-128, 127, 1, -1, 0)]
                 + [rtl_rng.integers(-128, 128, (K, 1, 1), dtype=np.int8)])
    acc, total = core.run_raw(x, w)
    want = reference.conv2d_acc_int(x, w, np.zeros(len(w), np.int32))
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(acc, want)
    assert want.max() == K * 16384 and want.min() == -K * 128 * 127
    one = cycles.conv_cycles(K, 2, 3, len(w), 1, 1, 1, 0, rows=rows, cols=cols)
    assert core.last_cycles == [cycles.RAW_PASSES * one] and total == cycles.RAW_PASSES * one
    with pytest.raises(ValueError, match="raw_byte"):
        core.run(x, w, None, quant.Requant(1, 1), raw_byte=4)


IC_CONVS = [  # N, C, H, W, F, KH, KW, stride, pad: one filter bigger than a weight bank of TINY
    (1, 8, 9, 9, 5, 3, 3, 2, 1),        # stride 2, padding, odd sizes, batch 1: rows split too
    (2, 9, 7, 5, 3, 3, 3, 1, 1),
    (1, 70, 2, 3, 6, 1, 1, 1, 0),       # 1x1
    (2, 6, 6, 6, 9, 4, 3, 1, 2),
]


@pytest.mark.rtl
@pytest.mark.parametrize("array", [(4, 4), (8, 8)], ids=lambda a: f"{a[0]}x{a[1]}")
@pytest.mark.parametrize("shape", IC_CONVS, ids=str)
def test_conv_split_by_input_channels_on_rtl_is_bit_exact(array, shape, rtl_rng, conv_layer):
    rows, cols = array
    N, C, H, W, F, KH, KW, s, p = shape
    buf = tiling.parse_buffers(TINY)
    assert C * KH * KW > buf["WEIGHT_DEPTH"] // tiling._banks(cols)
    x, w, b, rq = conv_layer(rtl_rng, N, C, H, W, F, KH, KW)
    core = tiny_core(rows, cols)
    tiles = tiling.plan_conv(C, H, W, F, KH, KW, s, p, rows, cols, buf)
    assert all(t.raw for t in tiles) and len({t.c0 for t in tiles}) > 1
    y, cyc = tiling.run_conv(core, x, w, b, rq, s, p)
    np.testing.assert_array_equal(y, reference.conv2d_int8(x, w, b, rq, s, p))
    assert cyc.tolist() == [tiling.conv_cycles(C, H, W, F, KH, KW, s, p, rows, cols, buf)] * N


@pytest.mark.rtl
@pytest.mark.parametrize("array", [(4, 4), (8, 8)], ids=lambda a: f"{a[0]}x{a[1]}")
def test_dense_split_by_input_channels_with_large_partials(array):
    """A dense layer whose partial sums are large and of both signs (x = -128 everywhere, extreme weights),
    with biases at the edge the scheme allows (cnnx.quant.check_acc_range): the sum of the partials, plus
    the bias, reaches INT32_MAX exactly, and one more is refused."""
    rows, cols = array
    IN, OUT = 150, 6
    buf = tiling.parse_buffers(TINY)
    core = tiny_core(rows, cols)
    x = np.full((1, IN), -128, np.int8)
    w = np.empty((OUT, IN), np.int8)
    w[0], w[1] = -128, 127
    w[2, : IN // 2], w[2, IN // 2 :] = -128, 127            # partials of opposite signs
    w[3:] = np.random.default_rng(3).integers(-128, 128, (OUT - 3, IN), dtype=np.int8)
    edge = quant.INT32_MAX - IN * 16384
    b = np.array([edge, -edge, 7, -7, 0, 12345], np.int32)
    rq = quant.Requant(1, 30)
    y, cyc = tiling.run_linear(core, x, w, b, rq)
    np.testing.assert_array_equal(y, reference.linear_int8(x, w, b, rq))
    acc = reference.conv2d_acc_int(x[:, :, None, None], w[:, :, None, None], b)[0, :2, 0, 0]
    assert acc.tolist() == [quant.INT32_MAX, -quant.INT32_MAX + IN * 16384 - IN * 128 * 127]
    assert cyc.tolist() == [tiling.conv_cycles(IN, 1, 1, OUT, 1, 1, 1, 0, rows, cols, buf)]
    with pytest.raises(ValueError, match="beyond int32"):
        tiling.run_linear(core, x, w, b + np.array([1, 0, 0, 0, 0, 0], np.int32), rq)


@pytest.mark.rtl
def test_input_channel_split_on_the_pyverilator_driver(rtl_rng, conv_layer):
    """The Python (pyverilator) driver runs the raw-accumulator mode too: the same layer, the same outputs
    and cycles as the golden model and the cycle model."""
    from cnnx.sim import ConvCore

    buf = tiling.parse_buffers(TINY)
    core = ConvCore(4, 4, driver="python", **{k.lower(): v for k, v in buf.items()})
    N, C, H, W, F, KH, KW, s, p = IC_CONVS[0]
    x, w, b, rq = conv_layer(rtl_rng, N, C, H, W, F, KH, KW)
    y, cyc = tiling.run_conv(core, x, w, b, rq, s, p)
    np.testing.assert_array_equal(y, reference.conv2d_int8(x, w, b, rq, s, p))
    assert cyc.tolist() == [tiling.conv_cycles(C, H, W, F, KH, KW, s, p, 4, 4, buf)] * N
