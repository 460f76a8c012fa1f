"""Issue 11, items 1, 2 and 15: sizes, strides, paddings and thread counts that would overflow an index,
exceed the memory budget or break OpenMP are refused with a ValueError naming the argument, before any
kernel or allocation; crash cases run in a child process so a segfault fails the test."""

import numpy as np
import pytest
from _helpers import assert_clean_error, run_child  # tests/robustness/_helpers.py

import cnnx
from cnnx import _threads, int8, nn, quant, reference
from cnnx import functional as F
from cnnx import shapes as S
from cnnx._threads import MAX_THREADS

INT8_HUGE = [2**62 + 1, 3 * 2**61, 2**63 - 1]


@pytest.mark.parametrize("value", INT8_HUGE)
@pytest.mark.parametrize("side", [1, 3])
def test_int8_conv_huge_stride_padding_is_a_value_error_not_a_segfault(value, side):
    r = run_child(f"""
        import numpy as np
        from cnnx import int8
        x = np.ones((1, 1, {side}, {side}), np.int8)
        int8.conv2d_acc(x, x[:, :, :1, :1], None, stride={value}, padding={value})
    """)
    assert_clean_error(r, "ValueError", rf"stride must be <= {S.MAX_DIM}, got {value}")


def test_largest_allowed_stride_and_padding_run_and_match_the_golden_model():
    x = np.arange(1, 10, dtype=np.int8).reshape(1, 1, 3, 3)
    w = np.full((1, 1, 1, 1), 2, np.int8)
    big = S.MAX_DIM
    # padded coordinates 0, big and 2*big (near 2**32): only the middle window meets the image, at x[0, 0]
    got = F.conv2d(x.astype(np.float32), w.astype(np.float32), None, stride=big, padding=big, floor_mode=True)
    np.testing.assert_array_equal(got, [[[[0, 0, 0], [0, 2, 0], [0, 0, 0]]]])
    # the int8 kernel packs a padded copy of the image (cnnx_int8.h), so the same call asks for ~2**64 bytes:
    # refused by the allocation budget, before the size_t that would hold it could wrap
    with pytest.raises(ValueError, match=r"int8 conv2d with stride=2147483647, padding=2147483647 .* budget"):
        int8.conv2d_acc(x, w, None, stride=big, padding=big, floor_mode=True)
    got = int8.conv2d_acc(x, w, None, stride=big, padding=1, floor_mode=True)  # one window, on the padding
    want = reference.conv2d_acc_int(x, w, None, stride=4, padding=1, floor_mode=True)[..., :1, :1]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("call, match", [
    (lambda: F.conv2d(np.ones((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32), padding=40000),
     r"conv2d with stride=1, padding=40000 .* needs 71.5 GiB .* more than the 4 GiB budget"),
    (lambda: int8.conv2d_acc(np.ones((1, 1, 1, 1), np.int8), np.ones((1, 1, 1, 1), np.int8), padding=40000),
     r"int8 conv2d with stride=1, padding=40000 .* more than the 4 GiB budget"),
    (lambda: nn.Linear(10**5, 10**5), r"Linear\(100000, 100000\): needs 149 GiB"),
    (lambda: nn.Conv2d(10**4, 10**4, 50), r"Conv2d\(10000, 10000, kernel_size=50\): needs"),
    (lambda: F.max_pool2d_backward(np.ones((1, 1, 1, 1), np.float32), np.zeros((1, 1, 1, 1), np.int32),
                                   (1, 1, 10**6, 10**6)), r"max_pool2d_backward to input_shape=.* budget"),
    (lambda: F.avg_pool2d_backward(np.ones((1, 1, 1, 1), np.float32), (1, 1, 10**6, 10**6), 10**6),
     r"pooling backward to input_shape=.* budget"),
    (lambda: F.linear(np.ones((10**5, 1), np.float32), np.ones((10**5, 1), np.float32)),
     r"linear on input \(100000, 1\) and weight \(100000, 1\): needs 37.3 GiB"),
    (lambda: F.conv2d(np.ones((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32), stride=2**70),
     r"stride must be <= 2147483647"),
    (lambda: F.max_pool2d(np.ones((1, 1, 2, 2), np.float32), 2, stride=2**31),
     r"stride must be <= 2147483647"),
    (lambda: int8.maxpool2d_int8(np.ones((1, 1, 2, 2), np.int8), 2**40), r"kernel must be <= 2147483647"),
])
def test_absurd_sizes_raise_value_error_naming_the_argument_not_memory_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_budget_is_configurable_and_checked(monkeypatch):
    x = np.ones((1, 1, 8, 8), np.float32)
    monkeypatch.setenv(S.ALLOC_ENV, "1000")  # bytes: an 8x8 relu output (256 bytes) fits, a conv does not
    F.relu(x)
    with pytest.raises(ValueError, match=r"than the 0.000954 MiB budget \(raise it with CNNX_MAX_ALLOC"):
        F.conv2d(x, np.ones((4, 1, 1, 1), np.float32))
    monkeypatch.setenv(S.ALLOC_ENV, "lots")
    with pytest.raises(ValueError, match="CNNX_MAX_ALLOC_BYTES must be a positive number of bytes"):
        F.relu(x)


def test_conv_backward_counts_its_scratch_before_allocating(monkeypatch):
    one = np.ones((1, 1, 1, 1), np.float32)
    dy = np.ones((1, 1, 601, 601), np.float32)  # padding 300 around a 1x1 image: 1.4 MB padded copies
    F.conv2d_backward(dy, one, one, padding=300)
    monkeypatch.setenv(S.ALLOC_ENV, str(2**20))
    with pytest.raises(ValueError, match=r"conv2d_backward with stride=1, padding=300 .* MiB budget"):
        F.conv2d_backward(dy, one, one, padding=300)


def test_element_limit_applies_even_under_a_raised_budget(monkeypatch):
    monkeypatch.setenv(S.ALLOC_ENV, str(2**60))
    with pytest.raises(ValueError, match=r"would hold 4294967296 elements, more than the 2147483647"):
        S.check_alloc("test", ((2**16, 2**16), np.int8))


@pytest.mark.parametrize("n", [10**6, 100_000, 5000, MAX_THREADS + 1])
def test_absurd_thread_counts_are_value_errors_not_segfaults(n):
    r = run_child(f"""
        import numpy as np
        from cnnx import functional as F
        F.relu(np.ones(4, np.float32), n_threads={n})
    """)
    assert_clean_error(r, "ValueError", rf"n_threads must be in \[1, {MAX_THREADS}\], got {n}")


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-3, ValueError), (MAX_THREADS + 1, ValueError),
                                      (2**40, ValueError), (1.5, TypeError), (True, TypeError),
                                      ("4", TypeError)])
def test_thread_count_check_covers_every_entry_point(bad, exc):
    x4 = np.ones((1, 1, 4, 4), np.float32)
    i4 = np.ones((1, 1, 4, 4), np.int8)
    calls = [
        lambda: F.conv2d(x4, x4[:, :, :1, :1], n_threads=bad),
        lambda: F.conv2d_backward(x4, x4, x4[:, :, :1, :1], n_threads=bad),
        lambda: F.max_pool2d(x4, 2, n_threads=bad),
        lambda: F.avg_pool2d(x4, 2, n_threads=bad),
        lambda: F.lp_pool2d(x4, 2, 2, n_threads=bad),
        lambda: F.linear(x4[0, 0], x4[0, 0], n_threads=bad),
        lambda: F.linear_backward(x4[0, 0], x4[0, 0], x4[0, 0], n_threads=bad),
        lambda: F.relu(x4, n_threads=bad),
        lambda: F.elu_backward(x4, x4, n_threads=bad),
        lambda: F.cross_entropy(x4[0, 0], np.zeros(4, np.int64), n_threads=bad),
        lambda: F.mse_loss(x4, x4, n_threads=bad),
        lambda: int8.conv2d_acc(i4, i4[:, :, :1, :1], n_threads=bad),
        lambda: int8.linear_acc(i4[0, 0], i4[0, 0], n_threads=bad),
        lambda: int8.maxpool2d_int8(i4, 2, n_threads=bad),
        lambda: int8.avgpool2d_int8(i4, 2, n_threads=bad),
        lambda: cnnx.set_num_threads(bad),
    ]
    for call in calls:
        with pytest.raises(exc, match="threads"):
            call()
    assert cnnx.get_num_threads() >= 1  # nothing was set


def test_omp_num_threads_is_checked_too(monkeypatch):
    monkeypatch.setattr(_threads, "_NUM_THREADS", None)  # whatever an earlier test set, restored after
    monkeypatch.setenv("OMP_NUM_THREADS", "100000")
    with pytest.raises(ValueError, match=r"OMP_NUM_THREADS must be in \[1, 256\], got 100000"):
        cnnx.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cnnx.get_num_threads() == 3
    cnnx.set_num_threads(np.int64(2))
    assert cnnx.get_num_threads() == 2


@pytest.mark.parametrize("fn", [F.relu, F.sigmoid, F.tanh, F.elu, F.leaky_relu])
def test_zero_d_input_keeps_its_shape(fn):
    for x in (np.float32(-1.5), np.array(2.0), np.array(np.nan, np.float32)):
        y = fn(x)
        assert y.shape == () and y.dtype == np.float32
        want = getattr(reference, fn.__name__)(np.asarray(x, np.float64))
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert F.relu_backward(np.float32(3.0), np.float32(1.0)).shape == ()


def _requant_exact(a: int, rq: quant.Requant) -> int:
    """The scheme's formula in Python integers (no width at all): the independent oracle."""
    y = (a * rq.mult + (1 << (rq.shift - 1))) >> rq.shift
    if rq.relu:
        y = max(y, 0)
    return min(max(y, -128), 127)


@pytest.mark.parametrize("dtype", [np.uint64, np.int64, np.uint32, np.int32, np.uint16, np.int16, np.uint8,
                                   np.int8])
def test_requantize_saturates_every_integer_dtype_exactly(dtype, rng):
    info = np.iinfo(dtype)
    edges = [info.min, info.min + 1, info.max - 1, info.max, 0, 1, -1, 2**31 - 1, -(2**31), 2**54, -(2**54)]
    vals = [v for v in edges if info.min <= v <= info.max]
    vals += [int(v) for v in rng.integers(info.min, info.max, size=50, dtype=dtype, endpoint=True)]
    acc = np.array(vals, dtype)
    for rq in (quant.Requant(1, 1), quant.Requant(1, 47, True), quant.Requant(32767, 1),
               quant.Requant(16384, 15), quant.Requant(12345, 30, True), quant.Requant(32767, 47)):
        got = quant.requantize(acc, rq)
        assert got.dtype == np.int8
        assert got.tolist() == [_requant_exact(v, rq) for v in vals], rq
    assert quant.requantize(np.array([2**64 - 1], np.uint64), quant.Requant(1, 1)).tolist() == [127]


def test_requantize_refuses_what_is_not_an_integer_array():
    with pytest.raises(TypeError, match="integer accumulator"):
        quant.requantize(np.array([2**70]), quant.Requant(1, 1))  # a Python int beyond 64 bits is an object
    with pytest.raises(TypeError, match="Requant"):
        quant.requantize(np.array([1]), (1, 1))
