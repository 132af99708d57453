"""The entropy distribution over steps as a heatmap of the logged token-entropy histograms.

Why: a mean hides the shape that matters - most tokens near zero entropy and a minority of
high-entropy "forking" tokens. Each step logs token counts per fixed entropy bin
(``entropy_hist`` over ``ENTROPY_HIST_EDGES``); long runs are summed into at most
``max_columns`` step buckets on the server so the browser draws a fixed-size image. Colour is
log10 of each bin's share of the bucket's tokens, so the sparse high-entropy tail stays visible
next to the near-zero mass.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from entropymon.figures.style import empty_figure, styled

DEFAULT_MAX_COLUMNS = 400
SHARE_FLOOR = 1e-4  # shares below this are drawn as this (log scale)


def histogram_matrix(frame: pd.DataFrame, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps (m,), counts (m, n_bins)) from the rows whose ``entropy_hist`` has ``n_bins``
    finite counts, sorted by step; other rows (not logged, wrong length) are left out."""
    if "entropy_hist" not in frame.columns:
        return np.empty(0), np.empty((0, n_bins))
    steps, rows = [], []
    for step, hist in zip(frame["step"].to_numpy(), frame["entropy_hist"].to_numpy()):
        if hist is None or isinstance(hist, float) or len(hist) != n_bins:
            continue
        counts = np.asarray(hist, dtype=np.float64)
        if np.isfinite(counts).all():
            steps.append(step)
            rows.append(counts)
    if not rows:
        return np.empty(0), np.empty((0, n_bins))
    steps = np.asarray(steps, dtype=np.float64)
    order = np.argsort(steps, kind="stable")
    return steps[order], np.vstack(rows)[order]


def bucket_counts(steps: np.ndarray, counts: np.ndarray, max_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum consecutive steps into at most ``max_columns`` buckets: (first step of each bucket
    (k,), summed counts (k, n_bins))."""
    m = steps.size
    if m <= max_columns:
        return steps, counts
    bucket = np.arange(m) * max_columns // m  # (m,) non-decreasing bucket ids
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    return steps[starts], np.add.reduceat(counts, starts, axis=0)


def bin_labels(edges) -> list[str]:
    """"0.00-0.05" style labels for the bins between consecutive ``edges`` (inf allowed)."""
    edges = [float(e) for e in edges]
    labels = []
    for low, high in zip(edges[:-1], edges[1:]):
        labels.append(f">= {low:.2f}" if math.isinf(high) else f"{low:.2f}-{high:.2f}")
    return labels


def entropy_heatmap_figure(frame: pd.DataFrame, edges, title: str = "Token entropy distribution", *,
                           max_columns: int = DEFAULT_MAX_COLUMNS, uirevision=None) -> go.Figure:
    """Heatmap: x = step (bucketed), y = entropy bin, colour = log10 share of the tokens."""
    n_bins = len(edges) - 1
    steps, counts = histogram_matrix(frame, n_bins)
    if steps.size == 0:
        return empty_figure("Not logged in this run: entropy_hist (token entropy histogram)", title)
    steps, counts = bucket_counts(steps, counts, max_columns)
    totals = counts.sum(axis=1, keepdims=True)  # (k, 1)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)  # (k, n_bins)
    z = np.log10(np.maximum(share, SHARE_FLOOR)).T  # (n_bins, k)
    labels = bin_labels(edges)
    fig = go.Figure(go.Heatmap(
        x=steps, y=labels, z=z, customdata=share.T, colorscale="Viridis", zmin=math.log10(SHARE_FLOOR), zmax=0,
        colorbar={"title": {"text": "log10 share"}, "thickness": 12},
        hovertemplate="step %{x}<br>entropy %{y} nats<br>share of tokens %{customdata:.2%}<extra></extra>",
    ))
    return styled(fig, title, uirevision=uirevision, y_title="token entropy (nats)")
