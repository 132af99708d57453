"""The law's and the entropy dynamics' bootstraps, computed a block of resamples at a time, give
bit-for-bit the figures of the whole-matrix computation they replaced (reference copies below)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from entropymon.analysis import _bootstrap, dynamics, law


def whole_matrix_law_intervals(x, r, n_bootstrap, ci, seed):
    """law._bootstrap_intervals as it was: every resample in one (B, n) matrix."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, x.size, size=(n_bootstrap, x.size))
    xs, rs = x[index], r[index]
    dx = xs - xs.mean(axis=1, keepdims=True)
    sxx = np.einsum("bn,bn->b", dx, dx)
    sxr = np.einsum("bn,bn->b", dx, rs - rs.mean(axis=1, keepdims=True))
    degenerate = sxx <= 1e-12 * float(((x - x.mean()) ** 2).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(degenerate, np.nan, sxr / sxx)
    intercept = rs.mean(axis=1) - slope * xs.mean(axis=1)
    tail = (1.0 - ci) / 2.0
    quantiles = [tail, 1.0 - tail]
    return (tuple(float(v) for v in np.nanquantile(-slope, quantiles)),
            tuple(float(v) for v in np.nanquantile(intercept, quantiles)),
            tuple(float(v) for v in np.nanquantile(intercept + slope, quantiles)))


def whole_matrix_dynamics(x, y, n_bootstrap, rng):
    """dynamics._bootstrap as it was."""
    index = rng.integers(0, x.size, size=(n_bootstrap, x.size))
    xs, ys = x[index], y[index]
    xc, yc = xs - xs.mean(1, keepdims=True), ys - ys.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(1) / np.sqrt((xc * xc).sum(1) * (yc * yc).sum(1))
        slope = (xs * ys).sum(1) / (xs * xs).sum(1)
    tail = 100 * (1 - dynamics.CI) / 2
    return dynamics._percentiles(r, tail), dynamics._percentiles(slope, tail)


@pytest.mark.parametrize(("n_points", "n_bootstrap"), [(7, 5000), (600, 1001), (3000, 1000), (10_000, 1000),
                                                     (20_000, 7), (1 << 19, 5), (1 << 20, 4)])
def test_blocked_bootstraps_equal_the_whole_matrix_bit_for_bit(monkeypatch, n_points, n_bootstrap):
    monkeypatch.setattr(_bootstrap, "BLOCK_VALUES", 1 << 14)  # many blocks, a partial last one
    assert len(_bootstrap.blocks(n_bootstrap, n_points)) > 1
    rng = np.random.default_rng(n_points)
    h = rng.uniform(0.1, 2.0, n_points)
    perf = 0.9 - 0.3 * np.exp(h) + rng.normal(0, 0.02, n_points)
    assert law._bootstrap_intervals(h, perf, n_bootstrap, 0.95, 4) == whole_matrix_law_intervals(h, perf, n_bootstrap,
                                                                                                  0.95, 4)
    got = dynamics._bootstrap(h, perf, n_bootstrap, np.random.default_rng(9))
    assert got == whole_matrix_dynamics(h, perf, n_bootstrap, np.random.default_rng(9))
    assert all(math.isfinite(v) for interval in got for v in interval)


def test_blocks_cover_every_resample_once():
    for n_resamples, n_points in [(1, 1), (1000, 10_000), (999, 524_289), (5, 0), (3, 1 << 20), (1, 1 << 20)]:
        rows = _bootstrap.blocks(n_resamples, n_points)
        assert all(s.stop - s.start >= 2 for s in rows) or n_resamples == 1
        assert np.array_equal(np.concatenate([np.arange(n_resamples)[s] for s in rows]), np.arange(n_resamples))
