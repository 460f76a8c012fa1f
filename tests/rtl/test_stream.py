"""The cores behind their AXI-Stream wrappers (verilog/cnnx_conv_stream.v, cnnx_pool_stream.v): the stream
format (cnnx/compile/stream.py), bit-exact results under random back-pressure on both streams, the wrappers'
end-to-end counters against cnnx.cycles' stream model, reset mid-stream, malformed streams."""

from __future__ import annotations

import numpy as np
import pytest

from cnnx import cycles, reference
from cnnx.compile import stream as st

ROWS = COLS = 4
_STREAM: dict = {}


def stream_core(kind: str, width: int, stall: float = 0.0, seed: int = 0, driver: str = "python"):
    """The session's streamed core, its stall probability and seed set for this test."""
    from cnnx.sim import ConvCore, PoolCore

    key = (kind, width, driver)
    if key not in _STREAM:
        _STREAM[key] = (ConvCore(ROWS, COLS, driver=driver, stream_width=width) if kind == "conv"
                        else PoolCore(driver=driver, stream_width=width))
    core = _STREAM[key]
    core._be.stall = stall
    core._be.seed_stalls(seed)
    core.reset()
    return core


# (N, C, H, W, F, KH, KW, stride, padding)
CONV = [
    (2, 3, 7, 9, 5, 3, 3, 2, 1),      # stride 2, padding 1, odd sizes; the 2nd image reuses the weights
    (1, 6, 5, 5, 6, 1, 1, 1, 0),      # 1x1
    (1, 1, 11, 11, 3, 5, 5, 1, 2),    # odd words: an input map of 121 bytes, padding 2
    (1, 16, 5, 5, 10, 5, 5, 1, 0),    # a 1x1 output map (dense-like), K = 400
]
POOL = [(2, 5, 6, 6, 2, 2, "max"), (1, 3, 7, 7, 3, 2, "avg"), (1, 6, 9, 5, 2, 1, "max")]


def assert_counters(core, model):
    """Every image's wrapper counters equal the model (image 0 carries registers and weights)."""
    assert core.last_counters, "no counters: not a streamed core?"
    for i, got in enumerate(core.last_counters):
        want = model(i == 0)
        assert (got["load"], got["compute"], got["drain"], got["total"]) == tuple(want), (i, got, want)
        assert got["stall_in"] == got["stall_out"] == 0


def run_conv(core, rng, conv_layer, shape):
    N, C, H, W, F, KH, KW, s, p = shape
    x, w, b, rq = conv_layer(rng, N, C, H, W, F, KH, KW)
    y, total = core.run(x, w, b, rq, stride=s, padding=p)
    np.testing.assert_array_equal(y, reference.conv2d_int8(x, w, b, rq, stride=s, padding=p))
    assert core.last_cycles == [cycles.conv_cycles(C, H, W, F, KH, KW, s, p, ROWS, COLS)] * N
    return (C, H, W, F, KH, KW, s, p)


def run_pool(core, rng, shape):
    N, C, H, W, k, s, mode = shape
    x = rng.integers(-128, 128, (N, C, H, W), dtype=np.int8)
    y, _ = core.run(x, k, s, mode)
    ref = reference.maxpool2d_int8(x, k, s) if mode == "max" else reference.avgpool2d_int8(x, k, s)
    np.testing.assert_array_equal(y, ref)
    assert core.last_cycles == [cycles.pool_cycles(C, H, W, k, s)] * N
    return C, H, W, k, s


# ---------------------------------------------------------------------------------------------------------
# the format, in Python only
# ---------------------------------------------------------------------------------------------------------


def test_stream_format_round_trip():
    b = st.StreamBuilder()
    b.cfg(0, [1, 2, 3])
    b.write(1, np.arange(st.MAX_N - 5, dtype=np.uint32), 5)      # the whole 14-bit address space
    b.write(2, np.zeros(0, np.uint32))                             # nothing to write: no packet
    b.start()
    b.read(7, 3)
    words = b.take()
    assert b.take().size == 0
    lim = st.Limits((16, st.MAX_N, 4), 16)
    assert st.check(words, lim) == [(st.OP_CFG, 0, 3), (st.OP_WR1, 5, st.MAX_N - 5), (st.OP_START, 0, 0),
                                    (st.OP_READ, 7, 3)]
    beats = st.pack(words, 64)
    assert beats.dtype == np.uint64 and beats.size == -(-words.size // 2)
    assert st.unpack(beats, 64, words.size).tolist() == words.tolist()
    if words.size % 2:
        assert int(beats[-1]) >> 32 == st.header(st.OP_NOP)      # padded with a NOP
    assert st.pack(words, 32).tolist() == words.tolist()
    assert st.read_runs([3, 4, 5, 9, 10, 2]) == [(3, 3), (9, 2), (2, 1)]


@pytest.mark.parametrize("bad, match", [
    ([7 << 28], "unknown opcode 7"),
    ([15 << 28 | 5], "unknown opcode 15"),
    ([st.header(st.OP_WR0, 0, 4), 1, 2], "only 2 follow"),
    ([st.header(st.OP_WR0, 14, 3), 1, 2, 3], "run past buffer 0"),
    ([st.header(st.OP_WR1, 0, 1), 1], "run past buffer 1"),           # a pool core has no weight buffer
    ([st.header(st.OP_CFG, 15, 2), 1, 2], "run past the register file"),
    ([st.header(st.OP_READ, 0, 17)], "run past the output buffer"),
])
def test_malformed_streams_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        st.check(np.array(bad, np.uint32), st.Limits((16, 0, 0), 16))


def test_stream_argument_checks():
    with pytest.raises(ValueError, match="stream width"):
        st.check_width(48)
    with pytest.raises(ValueError, match="header fields"):
        st.header(st.OP_WR0, 0, 0)
    with pytest.raises(ValueError, match="header fields"):     # past the 14-bit word address space
        st.StreamBuilder().write(0, np.zeros(st.MAX_N + 1, np.uint32))
    with pytest.raises(ValueError, match="buffer select"):
        st.StreamBuilder().write(3, [1])


# ---------------------------------------------------------------------------------------------------------
# the RTL
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.rtl
@pytest.mark.parametrize("width", [32, 64])
@pytest.mark.parametrize("shape", CONV, ids=str)
def test_conv_stream_exact_and_counters_equal_model(shape, width, rtl_rng, conv_layer):
    core = stream_core("conv", width)
    dims = run_conv(core, rtl_rng, conv_layer, shape)
    assert_counters(core, lambda first: cycles.conv_stream_cycles(*dims, ROWS, COLS, width, weights=first))


@pytest.mark.rtl
@pytest.mark.parametrize("width", [32, 64])
def test_dense_stream_as_1x1_conv(width, rtl_rng, conv_layer):
    core = stream_core("conv", width)
    x, w, b, rq = conv_layer(rtl_rng, 3, 37, 1, 1, 9, 1, 1)
    y, _ = core.run_linear(x[:, :, 0, 0], w[:, :, 0, 0], b, rq)
    np.testing.assert_array_equal(y, reference.linear_int8(x[:, :, 0, 0], w[:, :, 0, 0], b, rq))
    assert_counters(core, lambda first: cycles.conv_stream_cycles(37, 1, 1, 9, 1, 1, 1, 0, ROWS, COLS, width,
                                                                  weights=first))


@pytest.mark.rtl
@pytest.mark.parametrize("width", [32, 64])
@pytest.mark.parametrize("shape", POOL, ids=str)
def test_pool_stream_exact_and_counters_equal_model(shape, width, rtl_rng):
    core = stream_core("pool", width)
    C, H, W, k, s = run_pool(core, rtl_rng, shape)
    assert_counters(core, lambda first: cycles.pool_stream_cycles(C, H, W, k, s, width=width, weights=first))


@pytest.mark.rtl
@pytest.mark.parametrize("stall", [0.3, 0.9])
@pytest.mark.parametrize("width", [32, 64])
def test_back_pressure_stays_exact(width, stall, rtl_rng, conv_layer):
    """Random stalls on tvalid (input) and tready (output): same bytes, the same work counted, only the
    stalls and the total grow."""
    for kind, shape in (("conv", CONV[0]), ("pool", POOL[0])):
        core = stream_core(kind, width, stall, seed=int(stall * 10) + width)
        if kind == "conv":
            dims = run_conv(core, rtl_rng, conv_layer, shape)
        else:
            dims = run_pool(core, rtl_rng, shape)
        for i, got in enumerate(core.last_counters):
            want = (cycles.conv_stream_cycles(*dims, ROWS, COLS, width, weights=i == 0) if kind == "conv"
                    else cycles.pool_stream_cycles(*dims, width=width, weights=i == 0))
            assert (got["load"], got["compute"], got["drain"]) == (want.load, want.compute, want.drain)
            assert got["stall_in"] > 0                       # a short read-back may meet no output stall
            assert got["total"] >= want.total                   # a stall delays or is absorbed
        assert sum(c["stall_out"] for c in core.last_counters) > 0 or kind == "pool"


@pytest.mark.rtl
@pytest.mark.parametrize("driver", ["python", "fast"])
@pytest.mark.parametrize("width", [32, 64])
def test_reset_mid_stream_then_rerun(width, driver, rtl_rng, conv_layer):
    core = stream_core("conv", width, driver=driver)
    be = core._be
    b = st.StreamBuilder()
    b.cfg(0, [3] * 16)
    b.write(0, np.arange(200, dtype=np.uint32))
    b.start()
    b.read(0, 50)
    assert be.push(b.take(), [50], max_cycles=40) is None        # cut off in the middle of the input map
    core.reset()
    dims = run_conv(core, rtl_rng, conv_layer, CONV[0])
    assert_counters(core, lambda first: cycles.conv_stream_cycles(*dims, ROWS, COLS, width, weights=first))


@pytest.mark.rtl
@pytest.mark.parametrize("width", [32, 64])
def test_rtl_drops_a_malformed_stream_up_to_tlast(width, rtl_rng, conv_layer):
    """The defined behaviour (cnnx_axis_in.v): the sticky error flag, every word dropped to the end of the
    tlast beat, nothing reaches the core, the next stream decodes normally."""
    core = stream_core("conv", width)
    be = core._be
    bad = np.array([st.header(st.OP_CFG, 0, 2), 1, 2, 9 << 28, st.header(st.OP_START), st.header(st.OP_READ),
                    st.header(st.OP_WR0, 2047, 2), 1, 2], np.uint32)
    with pytest.raises(ValueError, match="unknown opcode 9"):
        be.push(bad, [], 1000)                                   # Python refuses it first
    assert be.push(bad, [], 1000, check=False) is not None       # the RTL: no output, no hang
    be.tick(4)
    assert be.get("error") == 1
    run_conv(core, rtl_rng, conv_layer, CONV[1])                 # the next stream runs as usual
    assert be.get("error") == 1                                  # sticky until reset
    core.reset()
    assert be.get("error") == 0
    # a write past its buffer and a payload cut short by tlast are refused by the RTL too
    for words in ([st.header(st.OP_WR2, 250, 8)] + [0] * 8, [st.header(st.OP_WR0, 0, 5), 1, 2]):
        core.reset()
        be.push(np.array(words, np.uint32), [], 1000, check=False)
        be.tick(4)                                               # the last beat's words are taken
        assert be.get("error") == 1


@pytest.mark.rtl
@pytest.mark.parametrize("stall", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("width", [32, 64])
def test_fast_driver_equals_python_driver(width, stall, rtl_rng, conv_layer):
    """The C++ driver pushes the same streams with the same stalls (one shared generator): the same outputs
    and the same counters, stalls included, bit-exact to the golden model."""
    for kind, shape in (("conv", CONV[0]), ("pool", POOL[0])):
        runs = []
        for driver in ("python", "fast"):
            core = stream_core(kind, width, stall, seed=7, driver=driver)
            rng = np.random.default_rng(int(stall * 10) + width)
            if kind == "conv":
                run_conv(core, rng, conv_layer, shape)
            else:
                run_pool(core, rng, shape)
            runs.append(core.last_counters)
        assert runs[0] == runs[1]
        if stall == 0.0:
            assert all(c["stall_in"] == c["stall_out"] == 0 for c in runs[0])


@pytest.mark.rtl
def test_stream_argument_refusals():
    from cnnx.sim import ConvCore

    with pytest.raises(ValueError, match="driver must be"):
        ConvCore(ROWS, COLS, driver="slow", stream_width=32)
    with pytest.raises(ValueError, match="stream width"):
        ConvCore(2, 2, driver="python", stream_width=16)
    with pytest.raises(ValueError, match="stall probability"):
        ConvCore(ROWS, COLS, driver="python", stream_width=32, stall=1.0)


@pytest.mark.rtl
@pytest.mark.parametrize("top, bad, message", [
    ("cnnx_axis_in", ["-GW=48"], "W must be 32 or 64"),
    ("cnnx_axis_out", ["-GW=16"], "W must be 32 or 64"),
    ("cnnx_axis_in", ["-GAW=15"], "address widths"),
    ("cnnx_conv_stream", ["-GW=128"], "W must be 32 or 64"),
])
def test_stream_parameter_guards(top, bad, message):
    import subprocess

    from cnnx.verilog import RTL_DIR

    cmd = ["verilator", "--lint-only", "-Wall", f"-I{RTL_DIR}", *bad, str(RTL_DIR / f"{top}.v")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode != 0 and message in res.stderr, res.stderr


@pytest.mark.rtl
@pytest.mark.parametrize("top", ["cnnx_axis_in", "cnnx_axis_out", "cnnx_conv_stream", "cnnx_pool_stream"])
def test_stream_lint_clean_at_64_bits(top):
    import subprocess

    from cnnx.verilog import RTL_DIR

    cmd = ["verilator", "--lint-only", "-Wall", f"-I{RTL_DIR}", "-GW=64", str(RTL_DIR / f"{top}.v")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0 and "%Warning" not in res.stderr, res.stderr


@pytest.mark.rtl
@pytest.mark.parametrize("driver", ["python", "fast"])
def test_an_output_nobody_asked_for_is_an_error(driver):
    core = stream_core("conv", 32, driver=driver)
    two = [st.header(st.OP_READ, 0, 1), st.header(st.OP_READ, 1, 1)] + [st.header(st.OP_NOP)] * 16
    with pytest.raises(RuntimeError, match="nobody asked for"):      # two read-backs, one expected
        core._be.push(np.array(two, np.uint32), [1], 1000)
    core.reset()
    with pytest.raises(RuntimeError, match="tlast"):                 # asked for 1 word, 2 come back
        core._be.push(np.array([st.header(st.OP_READ, 0, 2)], np.uint32), [1], 1000)
    core.reset()


def test_stream_model_edges():
    """NOP words cost a clock each; a layer split into several core runs, or one the RTL does not run, has no
    streamed figure (None)."""
    from types import SimpleNamespace

    from cnnx.compile import tiling

    base = [(st.OP_WR0, 0, 4), (st.OP_START, 0, 0), (st.OP_READ, 0, 3)]
    plain = cycles.stream_cycles(base, 100)
    padded = cycles.stream_cycles([(st.OP_NOP, 0, 0)] * 2 + base, 100, width=64)
    assert padded.total == plain.total + 2 and padded.load == -(-(plain.load + 2) // 2)
    assert cycles.stream_cycles([(st.OP_WR0, 0, 4)], 100) == (5, 0, 0, 0)
    small = tiling.parse_buffers("in=1K,w=8K,out=1K,bias=64")
    conv = SimpleNamespace(kind="conv", w=np.zeros((128, 8, 3, 3), np.int8), stride=1, padding=1)
    pool = SimpleNamespace(kind="maxpool", kernel=2, stride=2)
    assert cycles.layer_stream_cycles(conv, (8, 20, 20), 4, 4, 32, small) is None
    assert cycles.layer_stream_cycles(pool, (16, 10, 10), 4, 4, 32, small) is None
    assert cycles.layer_stream_cycles(SimpleNamespace(kind="flatten"), (4, 2, 2)) is None
    assert cycles.layer_stream_cycles(pool, (6, 28, 28)) == cycles.pool_stream_cycles(6, 28, 28, 2, 2)
