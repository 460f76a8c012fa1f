"""The hypothesis sweep over the public float (`cnnx.functional`) and int8 (`cnnx.int8`) API, run by
test_fuzz_api.py in a child process (`python -X faulthandler _fuzz_child.py float|int8 N`), so a segfault
fails that test instead of killing pytest.

Random shapes (0-d to 5-d, empty dims), dtypes, strides, paddings and kernels (including huge values around
2**31, 2**62, 2**63, 2**64 and 2**70), thread counts (including absurd and non-int ones) and data with NaN
and +-inf. Each call must either raise ValueError/TypeError, or return what the golden model
`cnnx.reference` returns: integers exactly, floats within the conftest tolerances with NaN at exactly the
same places. The child runs with a 64 MiB allocation budget (CNNX_MAX_ALLOC_BYTES) so accepted cases stay
cheap; the golden model is skipped for geometries too big for its plain loops (the fast result still has to
come back with the right shape).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnx import functional as F
from cnnx import int8, quant, reference

RTOL, ATOL = 1e-5, 1e-4  # tests/conftest.py's float regime for sums of up to a few hundred terms
HUGE = [2**31 - 1, 2**31, 2**62 + 1, 3 * 2**61, 2**63 - 1, 2**63, 2**64 - 1, 2**70, 40000]
OK = (ValueError, TypeError)
GOLDEN_MAX_ELEMENTS = 200_000  # plain-loop golden model: skip bigger padded inputs

# Each example is "tame" (two in three: valid dtypes, ranks, thread counts, small geometry, so the call
# mostly gets through to the comparison with the golden model) or "wild" (anything, huge values included).
small = st.integers(1, 3)
TAME = {
    "geometry": small, "padding": st.integers(0, 2),
    "threads": st.one_of(st.none(), st.integers(1, 3)),
    "float_dtype": st.sampled_from([np.float32, np.float32, np.float64, np.float16]),
    "int_dtype": st.just(np.int8),
    "ndim4": st.just(4), "ndim2": st.just(2), "floor": st.sampled_from([True, True, False]),
}
WILD = {
    "geometry": st.one_of(small, st.sampled_from(HUGE + [0, -1])),
    "padding": st.one_of(st.integers(0, 2), st.sampled_from(HUGE + [-1])),
    "threads": st.one_of(st.none(), st.integers(1, 3), st.sampled_from([0, -1, 257, 10**6, 2**63, 1.5, "2",
                                                                        True])),
    "float_dtype": st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.bool_, np.complex64]),
    "int_dtype": st.sampled_from([np.int8, np.int16, np.uint8, np.float32]),
    "ndim4": st.sampled_from([4, 0, 1, 3, 5]), "ndim2": st.sampled_from([2, 1, 3]), "floor": st.booleans(),
}


def _pick(draw):
    return TAME if draw(st.integers(0, 2)) else WILD


def _shape(draw, ndim):
    """Sizes 1..5, and now and then an empty dimension."""
    return tuple(draw(st.integers(0, 5) if draw(st.integers(0, 19)) == 0 else st.integers(1, 5))
                 for _ in range(ndim))


def _float_data(draw, shape, dtype):
    seed = draw(st.integers(0, 2**32 - 1))
    r = np.random.default_rng(seed)
    a = r.uniform(-1, 1, size=shape).astype(np.float32)
    if a.size and draw(st.booleans()):
        k = draw(st.integers(1, 3))
        idx = r.integers(0, a.size, size=k)
        a.reshape(-1)[idx] = r.choice(np.array([np.nan, np.inf, -np.inf], np.float32), size=k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return a.astype(dtype)


def _check_float(got, want, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != golden {want.shape}"
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{what}: NaN positions differ from the golden"
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=what)


def _golden_can(x_shape, case) -> bool:
    """Whether the plain-loop golden model can afford this convolution's geometry."""
    return _padded_small(x_shape, case["padding"]) and case["stride"] < 64


def _padded_small(x_shape, padding):
    p = padding if isinstance(padding, int) else 0
    return (x_shape[-2] + 2 * p) * (x_shape[-1] + 2 * p) * int(np.prod(x_shape[:-2])) <= GOLDEN_MAX_ELEMENTS


@st.composite
def float_case(draw):
    op = draw(st.sampled_from(["conv2d", "conv2d_backward", "max_pool2d", "avg_pool2d", "sum_pool2d",
                               "lp_pool2d", "linear", "linear_backward", "relu", "leaky_relu", "elu",
                               "sigmoid", "tanh", "relu_backward", "elu_backward", "leaky_relu_backward"]))
    m = _pick(draw)
    dtype = draw(m["float_dtype"])
    if op.startswith("linear"):
        ndim = draw(m["ndim2"])
    elif op.startswith(("conv", "max", "avg", "sum", "lp")):
        ndim = draw(m["ndim4"])
    else:
        ndim = draw(st.integers(0, 5))
    x_shape = _shape(draw, ndim)
    case = {"op": op, "x": _float_data(draw, x_shape, dtype), "n_threads": draw(m["threads"])}
    if op.startswith("conv"):
        c = x_shape[1] if ndim == 4 and x_shape[1] and draw(st.integers(0, 9)) else draw(st.integers(1, 3))
        w_shape = (draw(st.integers(1, 3)), c, draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        case["w"] = _float_data(draw, w_shape, draw(st.sampled_from([np.float32, np.float32, np.float64])))
        case["stride"], case["padding"] = draw(m["geometry"]), draw(m["padding"])
        case["floor_mode"] = draw(m["floor"])
    elif op.startswith("linear"):
        n_in = x_shape[-1] if ndim and draw(st.integers(0, 9)) else draw(st.integers(1, 5))
        case["w"] = _float_data(draw, (draw(st.integers(1, 5)), n_in), np.float32)
    elif op.endswith("pool2d"):
        case["kernel"], case["stride"] = draw(m["geometry"]), draw(st.one_of(st.none(), m["geometry"]))
        case["floor_mode"] = draw(m["floor"])
    if op.endswith("backward"):
        case["dy_seed"] = draw(st.integers(0, 2**32 - 1))
    return case


def _dy_like(shape, seed):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(np.float32)


def run_float(case):
    op, x, nt = case["op"], case["x"], case["n_threads"]
    try:
        if op == "conv2d":
            got = F.conv2d(x, case["w"], None, case["stride"], case["padding"], case["floor_mode"],
                           n_threads=nt)
        elif op == "conv2d_backward":
            y = F.conv2d(x, case["w"], None, case["stride"], case["padding"], case["floor_mode"])
            dy = _dy_like(y.shape, case["dy_seed"])
            got = F.conv2d_backward(dy, x, case["w"], case["stride"], case["padding"], case["floor_mode"],
                                    n_threads=nt)
        elif op.endswith("pool2d"):
            fn = getattr(F, op)
            args = (2,) if op == "lp_pool2d" else ()
            got = fn(x, *args, case["kernel"], case["stride"], case["floor_mode"], n_threads=nt)
        elif op == "linear":
            got = F.linear(x, case["w"], None, n_threads=nt)
        elif op == "linear_backward":
            y = F.linear(x, case["w"])
            dy = _dy_like(y.shape, case["dy_seed"])
            got = F.linear_backward(dy, x, case["w"], n_threads=nt)
        elif op.endswith("_backward"):
            dy = _dy_like(np.shape(x), case["dy_seed"])
            got = getattr(F, op)(dy, x, n_threads=nt)
        else:
            got = getattr(F, op)(x, n_threads=nt)
    except OK:
        return "refused"
    # accepted: compare with the golden model on the same (float32-converted) operands
    x32 = np.asarray(x, np.float32)
    if op == "conv2d":
        if _golden_can(x32.shape, case):
            _check_float(got, reference.conv2d(x32, case["w"].astype(np.float32), None, case["stride"],
                                               case["padding"], case["floor_mode"]), op)
    elif op == "conv2d_backward":
        if _golden_can(x32.shape, case):
            want = reference.conv2d_backward(dy, x32, case["w"].astype(np.float32), case["stride"],
                                             case["padding"], case["floor_mode"])
            for g, w, name in zip(got, want, ("dx", "dw", "db"), strict=True):
                _check_float(g, w, f"{op} {name}")
    elif op.endswith("pool2d"):
        small_geometry = all(isinstance(v, int) and v < 64 for v in (case["kernel"], case["stride"] or 1))
        if small_geometry:
            args = (2,) if op == "lp_pool2d" else ()
            _check_float(got, getattr(reference, op)(x32, *args, case["kernel"], case["stride"],
                                                     case["floor_mode"]), op)
    elif op == "linear":
        _check_float(got, reference.linear(x32, case["w"]), op)
    elif op == "linear_backward":
        want = reference.linear_backward(dy, x32, case["w"])
        for g, w, name in zip(got, want, ("dx", "dw", "db"), strict=True):
            _check_float(g, w, f"{op} {name}")
    elif op.endswith("_backward"):
        _check_float(got, getattr(reference, op)(dy, x32), op)
    else:
        _check_float(got, getattr(reference, op)(x32), op)
    return "matched"


def _int_data(draw, shape, dtype, lo=-128, hi=127):
    r = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return r.integers(lo, hi, size=shape, endpoint=True).astype(dtype)


@st.composite
def int8_case(draw):
    op = draw(st.sampled_from(["conv2d_acc", "conv2d_int8", "linear_acc", "linear_int8", "maxpool2d_int8",
                               "avgpool2d_int8"]))
    m = _pick(draw)
    dtype = draw(m["int_dtype"])
    linear = op.startswith("linear")
    ndim = draw(m["ndim2"] if linear else m["ndim4"])
    x_shape = _shape(draw, ndim)
    case = {"op": op, "x": _int_data(draw, x_shape, dtype), "n_threads": draw(m["threads"])}
    if op.startswith("conv"):
        c = x_shape[1] if ndim == 4 and x_shape[1] and draw(st.integers(0, 9)) else draw(st.integers(1, 3))
        w_shape = (draw(st.integers(1, 3)), c, draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        case["w"] = _int_data(draw, w_shape, np.int8)
        case["stride"], case["padding"] = draw(m["geometry"]), draw(m["padding"])
        case["floor_mode"] = draw(m["floor"])
        case["b"] = draw(st.one_of(st.none(), st.just(_int_data(draw, (w_shape[0],), np.int32, -2**20,
                                                                2**20))))
    elif linear:
        n_in = x_shape[-1] if ndim and draw(st.integers(0, 9)) else draw(st.integers(1, 5))
        case["w"] = _int_data(draw, (draw(st.integers(1, 5)), n_in), np.int8)
        case["b"] = draw(st.one_of(st.none(), st.just(_int_data(draw, (case["w"].shape[0],), np.int32,
                                                                -2**20, 2**20))))
    else:
        case["kernel"], case["stride"] = draw(m["geometry"]), draw(st.one_of(st.none(), m["geometry"]))
        case["floor_mode"] = draw(m["floor"])
    if op.endswith("int8") and op != "maxpool2d_int8" and op != "avgpool2d_int8":
        case["rq"] = quant.Requant(draw(st.integers(1, quant.MULT_MAX)),
                                   draw(st.integers(1, quant.SHIFT_MAX)), draw(st.booleans()))
    return case


def run_int8(case):
    op, x, nt = case["op"], case["x"], case["n_threads"]
    try:
        if op == "conv2d_acc":
            got = int8.conv2d_acc(x, case["w"], case["b"], case["stride"], case["padding"],
                                  case["floor_mode"], n_threads=nt)
        elif op == "conv2d_int8":
            got = int8.conv2d_int8(x, case["w"], case["b"], case["rq"], case["stride"], case["padding"],
                                   case["floor_mode"], n_threads=nt)
        elif op == "linear_acc":
            got = int8.linear_acc(x, case["w"], case["b"], n_threads=nt)
        elif op == "linear_int8":
            got = int8.linear_int8(x, case["w"], case["b"], case["rq"], n_threads=nt)
        else:
            got = getattr(int8, op)(x, case["kernel"], case["stride"], case["floor_mode"], n_threads=nt)
    except OK:
        return "refused"
    assert got.dtype == (np.int32 if op.endswith("acc") else np.int8), got.dtype
    b = case.get("b")
    b = np.zeros(case["w"].shape[0], np.int32) if (b is None and "w" in case) else b
    if op.startswith("conv"):
        if not (_padded_small(x.shape, case["padding"]) and case["stride"] < 64):
            return "matched"
        acc = reference.conv2d_acc_int(x, case["w"], b, case["stride"], case["padding"], case["floor_mode"])
        want = acc if op == "conv2d_acc" else quant.requantize(acc, case["rq"])
    elif op == "linear_acc":
        want = reference.conv2d_acc_int(x[:, :, None, None], case["w"][:, :, None, None], b)[:, :, 0, 0]
    elif op == "linear_int8":
        want = reference.linear_int8(x, case["w"], b, case["rq"])
    else:
        if not all(isinstance(v, int) and v < 64 for v in (case["kernel"], case["stride"] or 1)):
            return "matched"
        want = getattr(reference, op)(x, case["kernel"], case["stride"], case["floor_mode"])
    np.testing.assert_array_equal(got, want, err_msg=op)  # integers: exact
    return "matched"


def main(which: str, n: int) -> None:
    counts: dict[str, int] = {}
    strategy, run = (float_case(), run_float) if which == "float" else (int8_case(), run_int8)

    @settings(max_examples=n, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=strategy)
    def sweep(case):
        outcome = run(case)
        counts[outcome] = counts.get(outcome, 0) + 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "invalid value" on NaN/inf data
        sweep()
    print(f"{which}: {sum(counts.values())} calls: {counts}")


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from _helpers import hypothesis_examples  # loads the conftest profiles ("ci" derandomised by default)

    main(sys.argv[1], hypothesis_examples(int(sys.argv[2])))
