"""cnnx.images against the lectures' worked numbers (slides' slips corrected as the seeds' README says)."""

import numpy as np
import pytest

from cnnx import images

# The lecture's 4x4 grid for the 2x2 average reduction (Deep Learning on FPGAs, "Reduction kernel: Example").
GRID = np.array(
    [
        [100, 66, 88, 93],
        [110, 240, 10, 120],
        [88, 39, 70, 130],
        [160, 210, 133, 111],
    ],
    dtype=np.uint8,
)


def test_average_reduction_follows_the_arithmetic_not_the_slide():
    out = images.reduce_blocks(GRID, 2)
    # 110+240+100+66 = 516 -> 129; 88+93+10+120 = 311 -> 77.75 -> 77;
    # 88+39+160+210 = 497 -> 124.25 -> 124; 70+130+133+111 = 444 -> 111 (the slide prints 86 120 81 153)
    np.testing.assert_array_equal(out, [[129, 77], [124, 111]])
    assert out.dtype == np.uint8


def test_reduction_is_channelwise_and_other_kernels():
    rgb = np.stack([GRID, 255 - GRID, np.zeros_like(GRID)], axis=-1)
    out = images.reduce_blocks(rgb, 2)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[..., 0], [[129, 77], [124, 111]])
    # 255 - mean: (1020 - 516) / 4 = 126, (1020 - 311) / 4 = 177.25 -> 177, (1020 - 444) / 4 = 144
    np.testing.assert_array_equal(out[..., 1], [[126, 177], [130, 144]])
    np.testing.assert_array_equal(out[..., 2], 0)
    np.testing.assert_array_equal(images.reduce_blocks(GRID, 2, "max"), [[240, 120], [210, 133]])
    # sums exceed 255 and are clamped by the lecture's mapping
    np.testing.assert_array_equal(images.reduce_blocks(GRID, 2, "sum"), [[255, 255], [255, 255]])
    np.testing.assert_array_equal(images.reduce_blocks(GRID, 1), GRID)
    np.testing.assert_array_equal(images.reduce_blocks(GRID, 4), [[int(GRID.sum()) // 16]])


def test_float_reduction_and_pixel_mapping():
    np.testing.assert_array_equal(images.to_pixel([-3.5, 0.99, 67.5, 312.5, 255.0]), [0, 0, 67, 255, 255])
    out = images.reduce_blocks(np.array([[0.5, 1.0], [1.0, 1.0]]), 2)
    np.testing.assert_array_equal(out, [[0]])  # 3.5 / 4 = 0.875 -> floor 0


@pytest.mark.parametrize(
    ("bad", "exc"),
    [
        (dict(img=GRID, r=3), ValueError),  # 3 does not tile 4
        (dict(img=GRID, r=0), ValueError),
        (dict(img=GRID, r=2.0), ValueError),
        (dict(img=GRID[0], r=2), ValueError),  # 1-D
        (dict(img=GRID, r=2, kernel="median"), ValueError),
        (dict(img=np.array([["a", "b"], ["c", "d"]]), r=2), TypeError),
    ],
)
def test_reduction_bad_input(bad, exc):
    with pytest.raises(exc):
        images.reduce_blocks(**bad)


def test_grey_methods(tol):
    px = np.array([[[200, 100, 50], [0, 0, 0]], [[255, 255, 255], [30, 60, 90]]], dtype=np.uint8)
    np.testing.assert_allclose(images.to_grey(px, "average"), [[350 / 3, 0], [255, 60]], rtol=0,
                               atol=tol.hand_atol)
    # lightness is (max + min) / 2 (the slide's "max - min" is a slip)
    np.testing.assert_allclose(images.to_grey(px, "lightness"), [[125, 0], [255, 60]], rtol=0,
                               atol=tol.hand_atol)
    # luminosity 0.21 r + 0.72 g + 0.07 b (the slide's last term "0.07 r" is a slip): 42 + 72 + 3.5
    np.testing.assert_allclose(
        images.to_grey(px, "luminosity"), [[117.5, 0], [255, 0.21 * 30 + 0.72 * 60 + 0.07 * 90]],
        atol=tol.hand_atol,
    )
    # white stays 255 (a plain float sum of the weights would floor to 254)
    np.testing.assert_array_equal(images.to_pixel(images.to_grey(px, "luminosity")), [[117, 0], [255, 55]])
    with pytest.raises(ValueError):
        images.to_grey(px, "desaturate")
    with pytest.raises(ValueError):
        images.to_grey(px[..., :2])
