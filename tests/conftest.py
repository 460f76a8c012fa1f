"""Shared pytest fixtures for cnnx, and the three tolerance regimes, stated once:

1. integers (int8 path, RTL) compare EXACTLY (`np.testing.assert_array_equal`);
2. the float32 Cython engine against the float64 golden model (`cnnx.reference`): rtol=1e-5, plus
   atol=1e-5 because a float32 sum of O(100) unit-size terms that cancels to ~0 carries ~1e-6 absolute error
   that no relative tolerance can cover (sums over many hundreds of terms — weight/bias gradients over a
   batch, a 400-feature linear layer — use atol=1e-4, said where they do);
3. gradients of the float64 golden model against central finite differences (step 1e-6): rtol=1e-6,
   atol=1e-7 (truncation error O(eps^2 f''') plus rounding O(1e-16 / eps) ~ 1e-10 for our unit-scale data).
Two more, for values worked out by hand: float32 results of a few operations against decimal figures,
rtol=1e-6 (a few float32 roundings of 6e-8 each); float64 results against hand figures, atol=1e-9.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
from hypothesis import settings
from hypothesis_profile import HYPOTHESIS_PROFILE, hypothesis_examples  # noqa: F401 (hypothesis_examples: tests)

# Hypothesis profiles, chosen once here by CNNX_HYPOTHESIS_PROFILE: "ci" (the default, and what `make test`
# and CI run) is derandomised, so a run is reproducible and CI never flakes on a new draw; "dev" draws fresh
# random examples each run (and 10x more of them, see `hypothesis_examples`) for a longer local hunt.
settings.register_profile("ci", derandomize=True, deadline=None, database=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(HYPOTHESIS_PROFILE)

FLOAT_RTOL = 1e-5
FLOAT_ATOL = 1e-5
FD_EPS = 1e-6
FD_RTOL = 1e-6
FD_ATOL = 1e-7
FLOAT_ATOL_LONG_SUM = 1e-4  # float32 sums over many hundreds of terms (batch weight gradients, 400 features)
HAND_RTOL = 1e-6
HAND_ATOL = 1e-9

TOL = types.SimpleNamespace(float_rtol=FLOAT_RTOL, float_atol=FLOAT_ATOL, fd_eps=FD_EPS, fd_rtol=FD_RTOL,
                            fd_atol=FD_ATOL, float_atol_long_sum=FLOAT_ATOL_LONG_SUM, hand_rtol=HAND_RTOL,
                            hand_atol=HAND_ATOL)


def assert_layer_matches(got, want, rtol: float = FLOAT_RTOL, atol: float = FLOAT_ATOL, what: str = "output",
                         show: int = 5) -> None:
    """Fail unless got ~= want elementwise (|got - want| <= atol + rtol*|want|), showing the shapes, the max
    absolute/relative difference and the first `show` mismatching positions with both values."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape} != expected {want.shape}")
    g, w = got.astype(np.float64), want.astype(np.float64)
    if not (np.isfinite(g).all() and np.isfinite(w).all()):
        bad = np.argwhere(~(np.isfinite(g) & np.isfinite(w)))[:show]
        raise AssertionError(f"{what}: non-finite values at {[tuple(b) for b in bad]}")
    diff = np.abs(g - w)
    bad = diff > atol + rtol * np.abs(w)
    if bad.any():
        rel = diff / np.maximum(np.abs(w), 1e-300)
        lines = [f"{what}: {int(bad.sum())} of {bad.size} elements differ (rtol={rtol}, atol={atol}); "
                 f"max abs diff {diff.max():.3g}, max rel diff {rel.max():.3g}"]
        for idx in np.argwhere(bad)[:show]:
            t = tuple(int(i) for i in idx)
            lines.append(f"  at {t}: got {g[t]!r}, expected {w[t]!r}")
        raise AssertionError("\n".join(lines))


def numeric_grad(f, a: np.ndarray, eps: float = FD_EPS) -> np.ndarray:
    """Central finite differences of the scalar f() wrt the float64 array `a` (perturbed in place)."""
    assert a.dtype == np.float64
    g = np.empty_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed Generator: every test sees the same data on every run."""
    return np.random.default_rng(20240611)


@pytest.fixture(scope="session")
def tol() -> types.SimpleNamespace:
    """The tolerance regimes above, as attributes (float_rtol, float_atol, fd_eps, fd_rtol, fd_atol,
    float_atol_long_sum, hand_rtol, hand_atol)."""
    return TOL


@pytest.fixture(scope="session")
def layer_check():
    """`assert_layer_matches` as a fixture, so test modules need not import conftest."""
    return assert_layer_matches


@pytest.fixture(scope="session")
def fd_grad():
    """`numeric_grad` (central finite differences) as a fixture."""
    return numeric_grad
