"""The law panel: R against H with the fitted curve, the ceiling, the early prediction, and the
verdict on whether to believe any of it.

Why: the law R = -a*e^H + b gives a ceiling b - a at H = 0; a number alone misleads, so the
panel draws the interval, the curve fitted on the first part of the run against what happened
after it (held-out error next to the naive baselines). Inputs are the analysis results (``LawFit``,
``EarlyPrediction``, ``CeilingForecast``, the ``ceiling_curve`` table); this module only draws
them. The words beside the panel (the verdict, the held-out error) are ``entropymon.display``'s.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from entropymon.display import law_formula, run_color
from entropymon.figures.downsample import minmax_indices
from entropymon.figures.style import empty_figure, scatter_class, styled

CURVE_POINTS = 200


def law_scatter_figure(fit, early=None, title: str = "Performance against entropy", *, uirevision=None,
                       max_points: int = 2000) -> go.Figure:
    """The fitted (H, R) points coloured by step, the fitted curve down to H = 0, the ceiling
    with its interval at H = 0, and (when given) the early fit's curve, dashed."""
    if fit is None:
        return empty_figure("The law could not be fitted on this run (see the verdict)", title)
    h, r = np.asarray(fit.entropy, dtype=np.float64), np.asarray(fit.performance, dtype=np.float64)
    steps = np.arange(h.size, dtype=np.float64) if fit.steps is None else np.asarray(fit.steps, dtype=np.float64)
    if h.size > max_points:  # a scatter has no order to decimate along: an even stride
        keep = np.linspace(0, h.size - 1, max_points).astype(np.int64)
        h, r, steps = h[keep], r[keep], steps[keep]
    fig = go.Figure()
    fig.add_trace(scatter_class(h.size)(
        x=h, y=r, mode="markers", name=f"steps ({fit.performance_column or 'R'})",
        marker={"color": steps, "colorscale": "Viridis", "size": 6,
                "colorbar": {"title": {"text": "step"}, "thickness": 10}},
        customdata=steps, hovertemplate="H %{x:.4f} nats<br>R %{y:.4f}<br>step %{customdata}<extra></extra>",
    ))
    grid = np.linspace(0.0, max(float(np.max(h)), 1e-6) * 1.05, CURVE_POINTS)
    fig.add_trace(go.Scatter(x=grid, y=fit.predict(grid), mode="lines", name=f"fit: {law_formula(fit.a, fit.b)}",
                             line={"color": run_color(1), "width": 2}))
    if early is not None:
        fig.add_trace(go.Scatter(x=grid, y=early.fit.predict(grid), mode="lines",
                                 name=f"early fit (first {early.fraction:.0%})",
                                 line={"color": run_color(4), "width": 2, "dash": "dash"}))
    low, high = fit.ceiling_ci
    error = {} if not (math.isfinite(low) and math.isfinite(high)) else {"error_y": {
        "type": "data", "symmetric": False, "array": [high - fit.ceiling], "arrayminus": [fit.ceiling - low]}}
    fig.add_trace(go.Scatter(x=[0.0], y=[fit.ceiling], mode="markers",
                             name=f"ceiling {fit.ceiling:.3g} [{low:.3g}, {high:.3g}]",
                             marker={"symbol": "star", "size": 14, "color": run_color(1)}, **error))
    return styled(fig, title, uirevision=uirevision, x_title="policy entropy H (nats)",
                  y_title=fit.performance_column or "R")


def prediction_figure(early, title: str = "Early prediction vs what happened", *, uirevision=None,
                      max_points: int = 2000) -> go.Figure:
    """Performance after the cut: actual, the early law fit's forecast and the naive baselines."""
    if early is None:
        return empty_figure("Too few steps for an early prediction yet", title)
    table: pd.DataFrame = early.table.sort_values("step")
    keep = minmax_indices(table["actual"].to_numpy(np.float64), max_points)
    table = table.iloc[keep]
    fig = go.Figure()
    fig.add_trace(scatter_class(len(table))(x=table["step"], y=table["actual"], mode="markers", name="actual",
                                            marker={"size": 4, "color": "#444"}))
    fig.add_trace(go.Scatter(x=table["step"], y=table["law"], mode="lines", name=f"law (RMSE {early.law_rmse:.3g})",
                             line={"color": run_color(1), "width": 2}))
    for i, name in enumerate(early.baseline_rmse):
        if name in table.columns:
            fig.add_trace(go.Scatter(x=table["step"], y=table[name], mode="lines",
                                     name=f"{name.replace('_', ' ')} (RMSE {early.baseline_rmse[name]:.3g})",
                                     line={"color": run_color(2 + i), "width": 1, "dash": "dot"}))
    fig.add_vline(x=early.cut_step, line={"color": "#888", "dash": "dash"})
    styled(fig, f"{title} (fit on steps <= {early.cut_step:g}, held-out skill {early.skill:.2f})",
           uirevision=uirevision, y_title=early.fit.performance_column or "R")
    y_range = padded_range(table[["actual", "law"]].to_numpy(np.float64))
    if y_range is not None:  # a naive trend running off the chart must not flatten what it is scored on
        fig.update_yaxes(range=y_range)
    return fig


def padded_range(values, pad: float = 0.1) -> list[float] | None:
    """[low, high] spanning the finite ``values`` with ``pad`` of their span (or 0.05) on each side."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    low, high = float(values.min()), float(values.max())
    margin = pad * (high - low) if high > low else 0.05
    return [low - margin, high + margin]


def ceiling_curve_figure(curve: pd.DataFrame | None, title: str = "Predicted ceiling vs steps seen", *,
                         bounds=None, uirevision=None) -> go.Figure:
    """The ceiling fitted on the steps seen so far, with its interval band."""
    if curve is None or curve.empty:
        return empty_figure("Too few steps to follow the ceiling over time", title)
    curve = curve.sort_values("step")
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=curve["step"], y=curve["ceiling_hi"], mode="lines", line={"width": 0},
                             showlegend=False, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=curve["step"], y=curve["ceiling_lo"], mode="lines", line={"width": 0},
                             fill="tonexty", fillcolor="rgba(214,39,40,0.15)", name="interval", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=curve["step"], y=curve["ceiling"], mode="lines+markers", name="ceiling",
                             line={"color": run_color(1)}, marker={"size": 4},
                             hovertemplate="steps seen %{x}<br>ceiling %{y:.4g}<extra></extra>"))
    if bounds is not None:
        for value in bounds:
            fig.add_hline(y=value, line={"color": "#aaa", "dash": "dot"})
    return styled(fig, title, uirevision=uirevision, x_title="last step seen", y_title="ceiling b - a")
