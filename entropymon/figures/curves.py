"""Line figures over steps: metrics of one run, one metric across runs, bands and pass@k.

Why: most panels of the run view are "these columns against step"; building them here, pure
(DataFrame in, Figure out), keeps the callbacks thin and lets tests check the drawn numbers
without a browser. Every series is smoothed (when asked) on the full run and then thinned with
min/max decimation, so spikes survive and at most ``max_points`` points per trace are sent.

Smoothing is given as the display weight of the dashboard's slider (TensorBoard's convention:
0 = raw, 0.9 = very smooth); ``ema`` turns it into the analysis's one smoothing,
``entropymon.analysis._frame.smooth`` with alpha = 1 - weight (causal, NaN skipped), so the curves
and the law fits smooth the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from entropymon.analysis._frame import smooth
from entropymon.display import run_color
from entropymon.errors import InputError
from entropymon.figures.downsample import DEFAULT_MAX_POINTS, minmax_indices
from entropymon.figures.style import (
    FIGURE_HEIGHT,
    empty_figure,
    finite_xy,
    hover_template,
    metric_label,
    scatter_class,
    styled,
)
from entropymon.registry import pass_at_k_columns


def ema(values, weight: float) -> np.ndarray:
    """s_t = weight * s_prev + (1 - weight) * x_t over the finite entries of ``values`` (n,);
    NaN entries stay NaN and are skipped. ``weight`` = 0 returns the values unchanged.

    The display weight is 1 - the EMA alpha of ``analysis._frame.smooth``, which does the work.
    """
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0.0 <= weight < 1.0:
        raise InputError(f"weight: expected a smoothing weight in [0, 1), got {weight!r}")
    return smooth(values, None if weight == 0.0 else 1.0 - float(weight))


def series_points(frame: pd.DataFrame, column: str, *, smoothing: float = 0.0,
                  max_points: int = DEFAULT_MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``column`` to draw: finite values only, smoothed, then thinned."""
    if column not in frame.columns or "step" not in frame.columns:
        return np.empty(0), np.empty(0)
    steps, values = finite_xy(frame["step"], pd.to_numeric(frame[column], errors="coerce"))
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], ema(values[order], smoothing)
    keep = minmax_indices(values, max_points)
    return steps[keep], values[keep]


def _add_line(fig, frame, column, *, name, color, smoothing, max_points, dash=None, raw_behind=True, width=2):
    steps, values = series_points(frame, column, smoothing=smoothing, max_points=max_points)
    if steps.size == 0:
        return False
    trace = scatter_class(steps.size)
    if smoothing > 0 and raw_behind:
        raw_steps, raw_values = series_points(frame, column, max_points=max_points)
        fig.add_trace(trace(x=raw_steps, y=raw_values, mode="lines", name=f"{name} (raw)", showlegend=False,
                            line={"color": color, "width": 1}, opacity=0.25, hoverinfo="skip"))
    mode = "lines+markers" if steps.size <= 30 else "lines"
    fig.add_trace(trace(x=steps, y=values, mode=mode, name=name, hovertemplate=hover_template(column),
                        line={"color": color, "width": width, "dash": dash}, marker={"size": 5}))
    return True


def lines_figure(frame: pd.DataFrame, columns, title: str, *, smoothing: float = 0.0,
                 max_points: int = DEFAULT_MAX_POINTS, uirevision=None, y_title: str = "",
                 missing: str | None = None, missing_height: int = FIGURE_HEIGHT, dashes=()) -> go.Figure:
    """One line per column of ``columns`` present in ``frame`` (one run); when none is, an empty
    figure of ``missing_height`` saying ``missing``. ``dashes``: plotly dash styles by column
    position (lines that may coincide: a dashed one over a solid one leaves both visible)."""
    fig = go.Figure()
    drawn = [c for i, c in enumerate(columns)
             if _add_line(fig, frame, c, name=c, color=run_color(i), smoothing=smoothing, max_points=max_points,
                          dash=dashes[i] if i < len(dashes) else None)]
    if not drawn:
        return empty_figure(missing or f"Not logged in this run: {', '.join(columns)}", title, missing_height)
    y_title = y_title or (metric_label(drawn[0]) if len(drawn) == 1 else "")
    return styled(fig, title, uirevision=uirevision, y_title=y_title)


def runs_figure(frames: dict[str, pd.DataFrame], column: str, title: str, *, smoothing: float = 0.0,
                max_points: int = DEFAULT_MAX_POINTS, uirevision=None) -> go.Figure:
    """``column`` of several runs overlaid, one colour per run (keys of ``frames`` are names)."""
    fig = go.Figure()
    drawn = [name for i, (name, frame) in enumerate(frames.items())
             if _add_line(fig, frame, column, name=name, color=run_color(i), smoothing=smoothing,
                          max_points=max_points)]
    if not drawn:
        runs = ", ".join(frames) or "no run selected"
        return empty_figure(f"No values of {column} to draw ({runs})", title)
    fig.update_layout(showlegend=True)
    return styled(fig, title, uirevision=uirevision, y_title=metric_label(column))


def quantile_bands_figure(frame: pd.DataFrame, title: str = "Token entropy quantiles", *,
                          max_points: int = DEFAULT_MAX_POINTS, uirevision=None) -> go.Figure:
    """The p10-p90 band, the median, p80 (the forking threshold) and the mean over steps."""
    needed = ("entropy_p10", "entropy_p90")
    if any(c not in frame.columns for c in needed) or frame[list(needed)].dropna().empty:
        return empty_figure("Not logged in this run: entropy_p10 / entropy_p90", title)
    rows = frame[["step", *needed]].dropna().sort_values("step")
    keep = np.unique(np.concatenate([minmax_indices(rows[c].to_numpy(np.float64), max_points // 2) for c in needed]))
    rows = rows.iloc[keep]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=rows["step"], y=rows["entropy_p90"], mode="lines", line={"width": 0},
                             name="p90", hovertemplate=hover_template("entropy_p90"), showlegend=False))
    fig.add_trace(go.Scatter(x=rows["step"], y=rows["entropy_p10"], mode="lines", line={"width": 0},
                             fill="tonexty", fillcolor="rgba(31,119,180,0.2)", name="p10-p90",
                             hovertemplate=hover_template("entropy_p10")))
    for i, column in enumerate(("entropy_p50", "entropy_p80", "entropy_mean")):
        _add_line(fig, frame, column, name=column.replace("entropy_", ""), color=run_color(i),
                  smoothing=0.0, max_points=max_points, dash="dot" if column == "entropy_p80" else None)
    return styled(fig, title, uirevision=uirevision, y_title="token entropy (nats)")


def pass_at_k_figure(frame: pd.DataFrame, title: str = "pass@k vs pass@1", *,
                     max_points: int = DEFAULT_MAX_POINTS, uirevision=None) -> go.Figure:
    """Every pass@k over steps; the gap to pass@1 closing is the collapse signature."""
    columns = pass_at_k_columns(frame.columns)
    fig = lines_figure(frame, columns, title, max_points=max_points, uirevision=uirevision,
                       y_title="fraction", missing="Not logged in this run: pass_at_k")
    return fig


def length_figure(frame: pd.DataFrame, title: str = "Completion length", *,
                  max_points: int = DEFAULT_MAX_POINTS, uirevision=None) -> go.Figure:
    """Mean length with a +-1 std band and the min/max envelope."""
    if "length_mean" not in frame.columns or frame["length_mean"].dropna().empty:
        return empty_figure("Not logged in this run: length_mean", title)
    fig = go.Figure()
    if "length_std" in frame.columns and frame["length_std"].notna().any():
        rows = frame[["step", "length_mean", "length_std"]].dropna().sort_values("step")
        rows = rows.iloc[minmax_indices(rows["length_mean"].to_numpy(np.float64), max_points)]
        fig.add_trace(go.Scatter(x=rows["step"], y=rows["length_mean"] + rows["length_std"], mode="lines",
                                 line={"width": 0}, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=rows["step"], y=rows["length_mean"] - rows["length_std"], mode="lines",
                                 line={"width": 0}, fill="tonexty", fillcolor="rgba(44,160,44,0.2)",
                                 name="mean ± std", hoverinfo="skip"))
    _add_line(fig, frame, "length_mean", name="length_mean", color=run_color(2), smoothing=0.0, max_points=max_points)
    for column in ("length_min", "length_max"):
        _add_line(fig, frame, column, name=column, color="#999", smoothing=0.0, max_points=max_points,
                  dash="dot", width=1)
    return styled(fig, title, uirevision=uirevision, y_title="tokens")
