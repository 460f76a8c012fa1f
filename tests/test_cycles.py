"""The analytical cycle model (cnnx.cycles) on its own, CPU only, on non-square arrays (rows != cols, and
rows > K > cols), where swapping ROWS and COLS anywhere in the model changes the answer.

The model, as cnnx/cycles.py derives it: T tiles of ROWS pixels x COLS filters, each PERIOD = max(K, ROWS)
cycles (a column's drain takes ROWS cycles), issued back to back, plus the exposed pipeline of the last tile:
    cycles = (T - 1) * PERIOD + K + TAIL,   TAIL = TAIL_PER_ROW * ROWS + TAIL_PER_COL * COLS + TAIL_FIXED
The three latency constants below are the RTL's pipeline depth (skew + hop stages, drain, done flag); if the
cores' pipeline changes, change them here and in cnnx/cycles.py together. The tests of the tile period and the
tile count take differences of the model, so they do not depend on these constants at all.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnx import cycles
from cnnx.ptq import QLayer

# the pipelined conv core (verilog/cnnx_conv_core.v): ROWS set-up cycles, then after the last tile's K steps
# 3 address stages (A, B, B2) + ROWS-1 + COLS-1 skew/hop stages + 1 product register + 1 accumulate
# + 1 drain load + ROWS drain steps + 1 drain register + 10 requantiser stages + 1 done flag
# = ROWS + (2*ROWS + COLS + 16) = 3*ROWS + COLS + 16
TAIL_PER_ROW, TAIL_PER_COL, TAIL_FIXED = 3, 1, 16
# the pool core: one input byte per lane per cycle, then A, B, B2, C, C2, E, 10 requantiser stages = 16
POOL_FIXED = 16


def tail(rows, cols):
    return TAIL_PER_ROW * rows + TAIL_PER_COL * cols + TAIL_FIXED


# (C, H, W, F, KH, KW, stride, padding, rows, cols): every array here is non-square
SHAPES = [
    (1, 5, 5, 7, 2, 2, 1, 0, 5, 3),     # rows > K=4 > cols
    (1, 6, 6, 4, 2, 2, 1, 0, 6, 2),     # rows > K=4 > cols, F a multiple of cols
    (2, 7, 7, 9, 1, 1, 1, 0, 5, 1),     # rows > K=2 > cols=1
    (1, 9, 9, 5, 3, 3, 2, 1, 3, 5),     # rows < K=9, cols > rows
    (3, 8, 8, 6, 3, 3, 1, 1, 4, 8),     # K=27 > both
    (1, 4, 4, 2, 1, 1, 1, 0, 16, 2),    # one partial pixel tile
    (6, 14, 14, 16, 5, 5, 1, 0, 3, 5),  # LeNet conv2 on a 3x5 array
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_conv_cycles_formula_non_square(shape):
    C, H, W, F, KH, KW, s, p, rows, cols = shape
    OH, OW = (H + 2 * p - KH) // s + 1, (W + 2 * p - KW) // s + 1
    K = C * KH * KW
    T = -(-OH * OW // rows) * -(-F // cols)   # pixel tiles over rows, filter tiles over cols
    assert cycles.conv_tiles(C, H, W, F, KH, KW, s, p, rows, cols) == T
    want = (T - 1) * max(K, rows) + K + tail(rows, cols)
    assert cycles.conv_cycles(C, H, W, F, KH, KW, s, p, rows, cols) == want


def test_tile_period_is_max_of_k_and_rows():
    """rows=5 > K=4 > cols=3: one more pixel tile adds exactly PERIOD = max(K, ROWS) = 5 cycles (max(K, COLS)
    would be 4), and likewise for the other orders of K, ROWS and COLS. Differences, so independent of the
    pipeline constants."""
    for rows, cols, C, KH, KW in ((5, 3, 1, 2, 2),    # K=4: rows > K > cols
                                  (5, 3, 2, 1, 1),    # K=2 < cols < rows
                                  (7, 2, 1, 2, 3),    # K=6: rows > K > cols
                                  (2, 6, 1, 1, 3),    # K=3: rows < K < cols
                                  (3, 5, 2, 2, 2)):   # K=8 > both
        K = C * KH * KW
        # a 1 x (rows * t) output map: exactly t pixel tiles; F = cols: one filter tile
        three = cycles.conv_cycles(C, KH, rows * 3 + KW - 1, cols, KH, KW, 1, 0, rows, cols)
        four = cycles.conv_cycles(C, KH, rows * 4 + KW - 1, cols, KH, KW, 1, 0, rows, cols)
        assert four - three == max(K, rows), (rows, cols, K)


def test_filter_tiles_count_cols_and_pixel_tiles_count_rows():
    # 3x5 array, 1x1 kernel, C=1: K=1, PERIOD=3. F=5 is one filter tile, F=6 two; 3 pixels one tile, 4 two.
    r, c = 3, 5
    base = cycles.conv_cycles(1, 1, 3, 5, 1, 1, 1, 0, r, c)
    assert cycles.conv_cycles(1, 1, 3, 6, 1, 1, 1, 0, r, c) - base == 3
    assert cycles.conv_cycles(1, 1, 4, 5, 1, 1, 1, 0, r, c) - base == 3
    assert cycles.conv_tiles(1, 1, 3, 5, 1, 1, 1, 0, r, c) == 1
    assert cycles.conv_tiles(1, 1, 3, 6, 1, 1, 1, 0, r, c) == 2
    assert cycles.conv_tiles(1, 1, 4, 5, 1, 1, 1, 0, r, c) == 2
    # and transposed (5x3): the same layers tile the other way
    assert cycles.conv_tiles(1, 1, 3, 5, 1, 1, 1, 0, c, r) == 2
    assert cycles.conv_tiles(1, 1, 4, 5, 1, 1, 1, 0, c, r) == 2
    assert cycles.conv_tiles(1, 1, 6, 3, 1, 1, 1, 0, c, r) == 2


def test_single_tile_is_the_pipeline_alone():
    # T = 1: K + TAIL, whatever the period
    for rows, cols in ((5, 3), (3, 5), (1, 7), (7, 1)):
        assert cycles.conv_cycles(2, 1, 1, 1, 1, 1, 1, 0, rows, cols) == 2 + tail(rows, cols)


def test_tail_grows_with_rows_and_cols_as_stated():
    # single tile: d(cycles)/d(rows) = TAIL_PER_ROW, d/d(cols) = TAIL_PER_COL
    c33 = cycles.conv_cycles(1, 1, 1, 1, 1, 1, 1, 0, 3, 3)
    assert cycles.conv_cycles(1, 1, 1, 1, 1, 1, 1, 0, 4, 3) - c33 == TAIL_PER_ROW
    assert cycles.conv_cycles(1, 1, 1, 1, 1, 1, 1, 0, 3, 4) - c33 == TAIL_PER_COL


def test_linear_cycles_is_a_1x1_conv_on_a_1xG_map():
    assert cycles.linear_cycles(400, 120, 3, 5) == cycles.conv_cycles(400, 1, 1, 120, 1, 1, 1, 0, 3, 5)
    assert cycles.linear_cycles(84, 10, 5, 3, batch=7) == cycles.conv_cycles(84, 1, 7, 10, 1, 1, 1, 0, 5, 3)
    # batch as pixels: 7 images on 5 rows take 2 pixel tiles of max(K=84, 5) each, x 4 filter tiles of 3
    assert cycles.linear_cycles(84, 10, 5, 3, batch=7) == (2 * 4 - 1) * 84 + 84 + tail(5, 3)
    assert cycles.linear_macs(84, 10) == 840


def test_macs_ideal_and_utilisation_non_square():
    args = (6, 14, 14, 16, 5, 5, 1, 0)
    macs = 16 * 10 * 10 * 6 * 25
    assert cycles.conv_macs(*args) == macs
    assert cycles.conv_ideal_cycles(*args, rows=3, cols=5) == -(-macs // 15)
    cyc = cycles.conv_cycles(*args, rows=3, cols=5)
    assert cycles.conv_utilisation(*args, rows=3, cols=5) == pytest.approx(macs / (cyc * 15))
    assert cycles.utilisation(macs, cyc, 3, 5) == pytest.approx(macs / (cyc * 15))
    assert cycles.utilisation(0, cyc, 3, 5) is None and cycles.utilisation(10, 0, 3, 5) is None


POOLS = [(6, 28, 28, 2, 2, 4), (7, 9, 9, 3, 3, 3), (4, 7, 7, 3, 2, 4), (1, 5, 4, 2, 1, 2),
         (5, 6, 6, 2, None, 4)]


@pytest.mark.parametrize("C, H, W, k, s, lanes", POOLS)
def test_pool_cycles(C, H, W, k, s, lanes):
    st = k if s is None else s
    OH, OW = (H - k) // st + 1, (W - k) // st + 1
    want = -(-C // lanes) * OH * OW * k * k + POOL_FIXED
    assert cycles.pool_cycles(C, H, W, k, s, lanes) == want


def test_layer_cycles_of_each_kind():
    conv = QLayer("conv", "c", 1.0, w=_w(4, 2, 3, 3), stride=2, padding=1)
    assert cycles.layer_cycles(conv, (2, 9, 9), 3, 5) == cycles.conv_cycles(2, 9, 9, 4, 3, 3, 2, 1, 3, 5)
    lin = QLayer("linear", "l", 1.0, w=_w(10, 84))
    assert cycles.layer_cycles(lin, (84,), 5, 3) == cycles.linear_cycles(84, 10, 5, 3)
    for kind in ("maxpool", "avgpool"):
        pool = QLayer(kind, "p", 1.0, kernel=2, stride=2)
        assert cycles.layer_cycles(pool, (6, 8, 8), 3, 5) == cycles.pool_cycles(6, 8, 8, 2, 2)
    assert cycles.layer_cycles(QLayer("flatten", "f", 1.0), (6, 4, 4), 3, 5) is None


def _w(*shape):
    return np.zeros(shape, np.int8)


def test_bad_sizes_refused():
    with pytest.raises(ValueError, match="rows"):
        cycles.conv_cycles(1, 3, 3, 1, 1, 1, rows=0)
    with pytest.raises(ValueError, match="cols"):
        cycles.conv_tiles(1, 3, 3, 1, 1, 1, 1, 0, 2, 0)
    with pytest.raises(ValueError, match="padding"):
        cycles.conv_macs(1, 3, 3, 1, 1, 1, 1, -1)
    with pytest.raises(ValueError):
        cycles.conv_cycles(1, 3, 3, 1, 5, 5)       # the kernel does not fit
    with pytest.raises(ValueError, match="lanes"):
        cycles.pool_cycles(1, 4, 4, 2, lanes=0)
    with pytest.raises(ValueError):
        cycles.pool_cycles(1, 4, 4, 5)            # the window does not fit
