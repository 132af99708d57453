"""Thin long series out before they reach the browser, keeping what the eye needs.

Why: a run of 10k steps overlaid several times, refreshed every few seconds, is too much JSON
for a browser to redraw smoothly. A plain stride would hide spikes (entropy surges, reward
collapses) - exactly what a user looks for - so each bucket keeps its minimum and its maximum
(min/max decimation): every extreme of the full series survives, and the first and last points
stay so the curve spans the whole run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from entropymon.errors import InputError

DEFAULT_MAX_POINTS = 2000


def minmax_indices(values, max_points: int = DEFAULT_MAX_POINTS) -> np.ndarray:
    """Sorted indices into ``values`` (n,) to draw: all of them when n <= ``max_points``, else
    the first, the last and each bucket's argmin and argmax (at most ``max_points`` in all).

    NaN entries are never picked unless every entry of a bucket is NaN (then none is).
    """
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) or max_points < 4:
        raise InputError(f"max_points: expected an int >= 4, got {max_points!r}")
    values = np.asarray(values, dtype=np.float64)  # (n,)
    n = values.size
    if n <= max_points:
        return np.arange(n)
    n_buckets = (max_points - 2) // 2
    inner = np.arange(1, n - 1)  # first and last are added separately
    bucket = (inner - 1) * n_buckets // (n - 2)  # (n-2,) bucket of each inner point, 0..n_buckets-1
    finite = np.isfinite(values[inner])
    inner, bucket = inner[finite], bucket[finite]
    keys = values[inner]
    order = np.lexsort((keys, bucket))  # by bucket, then by value
    sorted_bucket = bucket[order]
    starts = np.flatnonzero(np.r_[True, sorted_bucket[1:] != sorted_bucket[:-1]])
    ends = np.r_[starts[1:], sorted_bucket.size] - 1
    picked = np.concatenate(([0, n - 1], inner[order[starts]], inner[order[ends]]))
    return np.unique(picked)


def downsample_frame(frame: pd.DataFrame, columns, max_points: int = DEFAULT_MAX_POINTS) -> pd.DataFrame:
    """Rows of ``frame`` that keep every bucket's extremes of each of ``columns``.

    The row budget is shared: with k columns each keeps about ``max_points / k`` per-bucket
    extremes, so the result has at most ``max_points`` rows (plus the first and last).
    """
    columns = [c for c in columns if c in frame.columns]
    if len(frame) <= max_points or not columns:
        return frame
    per_column = max(4, max_points // len(columns))
    picked = [minmax_indices(pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64), per_column)
              for c in columns]
    rows = np.unique(np.concatenate(picked))
    return frame.iloc[rows]
