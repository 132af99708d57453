"""Figures that overlay several runs on one chart (the static report's): pure functions,
DataFrames in, a Figure out.

Why pure: the report (and anyone in a notebook) builds the same figures from the same tables,
and a test checks each figure's traces against the numbers it was given without a browser.
Every builder takes one entry per run (``{run name: table}``) and overlays the runs, one colour
per run, in the order given, with the dashboard's colours, template and legend
(``figures.style``). A figure whose columns no run has says so in its title instead of drawing
empty axes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from entropymon.display import label_rows, law_formula, run_colors
from entropymon.figures.style import LEGEND, light_template
from entropymon.registry import COVARIANCE_LABELS, PASS_AT_K, PREDICTOR_LABELS, PREDICTOR_SIGN, pass_at_k_columns


def _has(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns and pd.to_numeric(frame[column], errors="coerce").notna().any()


def _line(frame: pd.DataFrame, column: str, *, name: str, color: str, dash: str = "solid",
          legendgroup: str | None = None, showlegend: bool = True) -> go.Scatter:
    """A line of ``column`` over ``step``, skipping steps where it is missing."""
    values = pd.to_numeric(frame[column], errors="coerce")
    keep = values.notna().to_numpy()
    return go.Scatter(
        x=frame["step"].to_numpy()[keep], y=values.to_numpy()[keep], mode="lines+markers",
        marker={"size": 4}, line={"color": color, "dash": dash}, name=name,
        legendgroup=legendgroup or name, showlegend=showlegend,
    )


def _finish(figure: go.Figure, drawn: int, what: str) -> go.Figure:
    """The shared look; with nothing drawn, the title says so."""
    figure.update_layout(template=light_template(), legend=LEGEND)
    if drawn == 0:
        figure.update_layout(title=f"{what}: not logged in these runs")
    return figure


# which subplot of ``curves_figure`` shows an alert (``Alert.plot``); other plots' alerts are in the table
CURVE_ROWS = {"entropy": 1, "performance": 2}


def curves_figure(frames: Mapping[str, pd.DataFrame], performance: Mapping[str, str | None],
                  entropy: str = "entropy_mean", alerts: Mapping[str, list] | None = None) -> go.Figure:
    """Entropy (top) and performance (bottom) over steps. ``performance``: run -> column or None.
    ``alerts``: run -> its alerts (``summary["alerts"]``); each entropy or performance alert is a
    dashed line in the run's colour at its step, labelled with the rule (and the run, for several)."""
    colors = run_colors(frames)
    columns = {c for c in performance.values() if c}
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                           subplot_titles=(f"policy entropy ({entropy}, nats)",
                                           f"performance ({columns.pop()})" if len(columns) == 1 else "performance"))
    drawn = 0
    for name, frame in frames.items():
        if _has(frame, entropy):
            figure.add_trace(_line(frame, entropy, name=name, color=colors[name]), row=1, col=1)
            drawn += 1
        column = performance.get(name)
        if column and _has(frame, column):
            figure.add_trace(_line(frame, column, name=f"{name}: {column}", color=colors[name],
                                   legendgroup=name, showlegend=not _has(frame, entropy)), row=2, col=1)
            drawn += 1
    _mark_alerts(figure, frames, alerts or {}, colors)
    figure.update_xaxes(title_text="step", row=2, col=1)
    figure.update_layout(height=560, margin={"t": 60})
    return _finish(figure, drawn, "entropy and performance")


def _mark_alerts(figure: go.Figure, frames: Mapping[str, pd.DataFrame], alerts: Mapping[str, list],
                 colors: Mapping[str, str]) -> None:
    """The dashed alert lines of ``curves_figure``; close labels of one subplot are stacked."""
    steps = [pd.to_numeric(f["step"], errors="coerce") for f in frames.values() if "step" in f.columns and len(f)]
    span = float(max(s.max() for s in steps) - min(s.min() for s in steps)) if steps else 0.0
    for row in CURVE_ROWS.values():
        marks = sorted(((a["step"], name, a) for name, run_alerts in alerts.items() for a in run_alerts or []
                        if CURVE_ROWS.get(a.get("plot")) == row and a.get("step") is not None),
                       key=lambda m: m[0])
        labels = [a["rule"] + (f" ({name})" if len(frames) > 1 else "") for _, name, a in marks]
        for (step, name, _), label, level in zip(marks, labels, label_rows([m[0] for m in marks], labels,
                                                                            span or 1.0, 0.008)):
            figure.add_vline(x=step, row=row, col=1, line_dash="dash", line_width=1.5,
                             line_color=colors.get(name, "#555"), annotation_text=label,
                             annotation_position="top left", annotation_yshift=-12 * level,
                             annotation_font_size=10, annotation_font_color=colors.get(name, "#555"),
                             annotation_bgcolor="rgba(255,255,255,0.8)")


def law_figure(points: Mapping[str, pd.DataFrame], laws: Mapping[str, Mapping]) -> go.Figure:
    """Performance against entropy, the fitted law R = -a·e^H + b and the ceiling at H = 0.

    ``points``: run -> DataFrame with ``entropy`` and ``performance`` (the fitted points).
    ``laws``: run -> ``{"a", "b", "ceiling", "ceiling_ci": (lo, hi), "trustworthy": bool}``.
    An untrusted ceiling is drawn as an open marker, labelled "not a prediction".
    """
    colors = run_colors(points)
    figure = go.Figure()
    for name, frame in points.items():
        color = colors[name]
        figure.add_trace(go.Scatter(x=frame["entropy"], y=frame["performance"], mode="markers",
                                    marker={"color": color, "size": 6, "opacity": 0.7},
                                    name=f"{name}: observed", legendgroup=name))
        law = laws.get(name)
        if not law or law.get("a") is None or law.get("b") is None:
            continue
        top = float(np.nanmax(frame["entropy"])) if len(frame) else 1.0
        grid = np.linspace(0.0, max(top, 1e-6), 200)  # (200,) nats
        figure.add_trace(go.Scatter(x=grid, y=law["b"] - law["a"] * np.exp(grid), mode="lines",
                                    line={"color": color}, name=f"{name}: {law_formula(law['a'], law['b'])}",
                                    legendgroup=name))
        ceiling = law.get("ceiling")
        if ceiling is None or not np.isfinite(ceiling):
            continue
        lo, hi = law.get("ceiling_ci") or (np.nan, np.nan)
        trusted = bool(law.get("trustworthy"))
        figure.add_trace(go.Scatter(
            x=[0.0], y=[ceiling], mode="markers",
            marker={"color": color, "size": 12, "symbol": "diamond" if trusted else "diamond-open"},
            error_y={"type": "data", "symmetric": False, "array": [hi - ceiling], "arrayminus": [ceiling - lo]}
            if np.isfinite(lo) and np.isfinite(hi) else None,
            name=f"{name}: ceiling {ceiling:.3g}" + ("" if trusted else " (not a prediction)"),
            legendgroup=name,
        ))
    figure.update_layout(title="the law R = -a·e^H + b and its ceiling at H = 0", height=480,
                         xaxis_title="entropy H (nats)", yaxis_title="performance R")
    return _finish(figure, len(points), "law fit")


def covariance_figure(frames: Mapping[str, pd.DataFrame], forms=tuple(COVARIANCE_LABELS)) -> go.Figure:
    """Each covariance form over steps (solid: Cov(log π, A); dashed: Cov(log π, π·A))."""
    colors = run_colors(frames)
    figure = go.Figure()
    drawn = 0
    for name, frame in frames.items():
        for form, dash in zip(forms, ("solid", "dash", "dot")):
            if _has(frame, form):
                figure.add_trace(_line(frame, form, name=f"{name}: {COVARIANCE_LABELS.get(form, form)}",
                                       color=colors[name], dash=dash, legendgroup=name))
                drawn += 1
    figure.add_hline(y=0.0, line={"color": "grey", "width": 1})
    figure.update_layout(title="covariance of log-probability and advantage (positive drives entropy down)",
                         height=420, xaxis_title="step", yaxis_title="nats")
    return _finish(figure, drawn, "covariance")


def dynamics_figure(tables: Mapping[str, pd.DataFrame], etas: Mapping[str, Mapping[str, float]]) -> go.Figure:
    """Predicted ΔH (-η_eff·Cov, or η_eff times the logit-space prediction) against observed ΔH per step, with y = x.

    ``tables``: run -> the dynamics table (``dH`` and one column per predictor);
    ``etas``: run -> {form: η_eff}.
    """
    colors = run_colors(tables)
    figure = go.Figure()
    extent = []
    for name, table in tables.items():
        for form, symbol in zip(etas.get(name, {}), ("circle", "x", "square")):
            eta = etas[name][form]
            if form not in table.columns or eta is None or not np.isfinite(eta):
                continue
            predicted = PREDICTOR_SIGN.get(form, -1.0) * eta * table[form].to_numpy(dtype=np.float64)  # (m,)
            observed = table["dH"].to_numpy(dtype=np.float64)  # (m,)
            keep = np.isfinite(predicted) & np.isfinite(observed)
            figure.add_trace(go.Scatter(
                x=predicted[keep], y=observed[keep], mode="markers", marker={"color": colors[name], "symbol": symbol},
                name=f"{name}: {PREDICTOR_LABELS.get(form, form)}, η_eff = {eta:.3g}", legendgroup=name,
            ))
            extent.extend([*predicted[keep], *observed[keep]])
    if extent:
        lo, hi = float(np.min(extent)), float(np.max(extent))
        figure.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"color": "grey", "dash": "dot"},
                                    name="predicted = observed"))
    figure.update_layout(title="entropy change per step: predicted vs observed", height=440,
                         xaxis_title="predicted ΔH (nats/step)", yaxis_title="observed ΔH (nats/step)")
    return _finish(figure, len(extent), "entropy dynamics")


def diversity_figure(frames: Mapping[str, pd.DataFrame]) -> go.Figure:
    """Zero-std group share, pass@k against pass@1 (converging = collapse) and completion length."""
    colors = run_colors(frames)
    figure = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                           subplot_titles=("groups with zero reward std (no gradient)",
                                           "pass@k (dashed) vs pass@1 (solid)", "completion length (tokens)"))
    drawn = 0
    for name, frame in frames.items():
        color = colors[name]
        if _has(frame, "zero_std_group_frac"):
            figure.add_trace(_line(frame, "zero_std_group_frac", name=name, color=color), row=1, col=1)
            drawn += 1
        for column in (c for c in pass_at_k_columns(frame.columns) if _has(frame, c)):
            k = int(PASS_AT_K.match(column).group(1))
            figure.add_trace(_line(frame, column, name=f"{name}: pass@{k}", color=color,
                                   dash="solid" if k == 1 else "dash", legendgroup=name), row=2, col=1)
            drawn += 1
        if _has(frame, "length_mean"):
            figure.add_trace(_line(frame, "length_mean", name=f"{name}: mean length", color=color,
                                   legendgroup=name, showlegend=False), row=3, col=1)
            drawn += 1
    figure.update_xaxes(title_text="step", row=3, col=1)
    figure.update_layout(height=720, margin={"t": 60})
    return _finish(figure, drawn, "diversity")
