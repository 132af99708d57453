"""The covariance panel: why entropy moves.

Why: Cui et al. 2025 tie the entropy change to Cov(log pi, A) (natural policy gradient) or
Cov(log pi, pi*A) (vanilla). The panel draws both forms over steps, the observed per-step dH next
to the change each form predicts (dH ~ -eta_eff * Cov, eta_eff fitted by the analysis), the
sum of Cov_i split by the sign of the advantage (positive-advantage tokens drive collapse) and
the share carried by the top tokens.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from entropymon.display import run_color
from entropymon.figures.curves import lines_figure
from entropymon.figures.downsample import DEFAULT_MAX_POINTS, minmax_indices
from entropymon.figures.style import empty_figure, scatter_class, styled
from entropymon.registry import COVARIANCE_FORMS
ADVANTAGE_SPLIT = ("cov_sum_pos_adv", "cov_sum_neg_adv")
TOP_SHARES = ("cov_top_0_2pct_share", "cov_top_0_02pct_share")


def covariance_forms_figure(frame: pd.DataFrame, *, smoothing: float = 0.0, uirevision=None,
                            max_points: int = DEFAULT_MAX_POINTS) -> go.Figure:
    return lines_figure(frame, COVARIANCE_FORMS, "Cov(log π, A) and Cov(log π, π·A)", smoothing=smoothing,
                        uirevision=uirevision, max_points=max_points, y_title="covariance (nats)",
                        missing="Not logged in this run: cov_logp_adv / cov_logp_piadv (log with advantages)")


def advantage_split_figure(frame: pd.DataFrame, *, smoothing: float = 0.0, uirevision=None,
                           max_points: int = DEFAULT_MAX_POINTS) -> go.Figure:
    return lines_figure(frame, ADVANTAGE_SPLIT, "Σ Cov_i by advantage sign", smoothing=smoothing,
                        uirevision=uirevision, max_points=max_points, y_title="sum of Cov_i (nats)")


def top_share_figure(frame: pd.DataFrame, *, smoothing: float = 0.0, uirevision=None,
                     max_points: int = DEFAULT_MAX_POINTS) -> go.Figure:
    return lines_figure(frame, TOP_SHARES, "Share of Σ Cov_i in the top tokens", smoothing=smoothing,
                        uirevision=uirevision, max_points=max_points, y_title="fraction")


def predicted_dh(table: pd.DataFrame, eta_eff: dict[str, float]) -> dict[str, np.ndarray]:
    """For each covariance form with an ``eta_eff``: the predicted dH = -eta_eff * Cov (m,)."""
    return {form: -eta * table[form].to_numpy(np.float64) for form, eta in eta_eff.items() if form in table.columns}


def dh_figure(dynamics, title: str = "Observed vs predicted entropy change", *, uirevision=None,
              max_points: int = DEFAULT_MAX_POINTS) -> go.Figure:
    """Observed dH per update against -eta_eff * Cov for each fitted form (``EntropyDynamics``)."""
    if dynamics is None or not dynamics.fits:
        return empty_figure("Not enough steps with entropy and covariance to compare dH", title)
    table = dynamics.table.sort_values("step")
    keep = minmax_indices(table["dH"].to_numpy(np.float64), max_points)
    table = table.iloc[keep]
    fig = go.Figure()
    fig.add_trace(scatter_class(len(table))(x=table["step"], y=table["dH"], mode="lines", name="observed dH",
                                            line={"color": "#444", "width": 1}))
    predicted = predicted_dh(table, {form: fit.eta_eff for form, fit in dynamics.fits.items()})
    for i, (form, values) in enumerate(predicted.items()):
        fit = dynamics.fits[form]
        fig.add_trace(scatter_class(len(table))(
            x=table["step"], y=values, mode="lines", line={"color": run_color(i), "width": 2},
            name=f"-η·{form} (η={fit.eta_eff:.3g}, r={fit.pearson_r:.2f})"))
    return styled(fig, title, uirevision=uirevision, y_title="dH per step (nats)")
