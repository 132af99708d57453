"""The covariance panel: why entropy moves.

Why: Cui et al. 2025 tie the entropy change to Cov(log pi, A) (natural policy gradient) or
Cov(log pi, pi*A) (vanilla). The panel draws both forms over steps, the observed per-step dH next
to the change each predictor predicts (dH ~ -eta_eff * Cov, or eta_eff times the logit-space
prediction; eta_eff fitted by the analysis), the sum of Cov_i split by the sign of the advantage
(positive-advantage tokens drive collapse), the share carried by the top tokens, and - from the
dH probe - where the same-batch entropy change went, by token class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from entropymon.display import run_color
from entropymon.figures.curves import lines_figure
from entropymon.figures.downsample import DEFAULT_MAX_POINTS, minmax_indices
from entropymon.figures.style import empty_figure, scatter_class, styled
from entropymon.registry import COVARIANCE_FORMS, PREDICTOR_LABELS, PREDICTOR_SIGN

ADVANTAGE_SPLIT = ("cov_sum_pos_adv", "cov_sum_neg_adv")
TOP_SHARES = ("cov_top_0_2pct_share", "cov_top_0_02pct_share")
# a share of Σ Cov_i, which the explanation's token-class shares (of the entropy change) are not
TOP_SHARE_TITLE = "Top Cov_i tokens' share of Σ Cov_i (not of the entropy change)"


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
    # the two shares often nearly coincide: the second is dashed so the first shows through it
    return lines_figure(frame, TOP_SHARES, TOP_SHARE_TITLE, smoothing=smoothing, uirevision=uirevision,
                        max_points=max_points, y_title="fraction", dashes=(None, "dash"))


def predicted_dh(table: pd.DataFrame, eta_eff: dict[str, float]) -> dict[str, np.ndarray]:
    """For each predictor with an ``eta_eff``: the predicted dH (m,) = -eta_eff * Cov for a covariance form,
    eta_eff * dh_pred_logit for the logit-space prediction."""
    return {form: PREDICTOR_SIGN.get(form, -1.0) * eta * table[form].to_numpy(np.float64)
            for form, eta in eta_eff.items() if form in table.columns}


def dh_figure(dynamics, title: str = "Observed vs predicted entropy change", *, uirevision=None,
              max_points: int = DEFAULT_MAX_POINTS) -> go.Figure:
    """The entropy change per step against what each fitted predictor predicts (``EntropyDynamics``).

    With the dH probe the observed change is the same batch's (``dh_same_batch``); without it the
    only change there is comes from consecutive, different batches, drawn faint and named for
    what it is - mostly batch-to-batch noise - not as the observed change.
    """
    if dynamics is None or not dynamics.fits:
        return empty_figure("Not enough steps with entropy and covariance to compare dH", title)
    same_batch = getattr(dynamics, "observed", "naive") == "same_batch"
    table = dynamics.table.sort_values("step")
    keep = minmax_indices(table["dH"].to_numpy(np.float64), max_points)
    table = table.iloc[keep]
    fig = go.Figure()
    if same_batch:
        observed = {"mode": "lines+markers", "name": "observed dH (same batch)", "line": {"color": "#222", "width": 2}}
    else:
        title = f"{title}: no same-batch probe (naive dH is batch noise)"
        observed = {"mode": "lines", "name": "naive dH between batches (mostly noise)", "opacity": 0.45,
                    "line": {"color": "#888", "width": 1}}
    fig.add_trace(scatter_class(len(table))(x=table["step"], y=table["dH"], **observed))
    predicted = predicted_dh(table, {form: fit.eta_eff for form, fit in dynamics.fits.items()})
    for i, (form, values) in enumerate(predicted.items()):
        fit = dynamics.fits[form]
        fig.add_trace(scatter_class(len(table))(
            x=table["step"], y=values, mode="lines", line={"color": run_color(i), "width": 2},
            name=f"{'' if fit.sign > 0 else '-'}η·{PREDICTOR_LABELS.get(form, form)} "
                 f"(η={fit.eta_eff:.3g}, R²={fit.r2:.2f})"))
    return styled(fig, title, uirevision=uirevision, y_title="dH per step (nats)")


def attribution_figure(frame: pd.DataFrame, title: str = "Where the entropy change went (same batch)", *,
                       uirevision=None) -> go.Figure:
    """Per probed step, each token class's part of ``dh_same_batch`` (its sum of per-token dH / tokens).

    Bars by the sign of the advantage stack to ``dh_same_batch`` (drawn as a line); forking tokens
    and the top 0.2% Cov_i tokens (the Clip-Cov / KL-Cov set) are lines, so their share of the total
    reads off directly (the rest is the line minus them).
    """
    needed = ("dh_same_batch", "dh_sum", "dh_probe_tokens")
    if any(c not in frame.columns for c in needed) or not frame["dh_same_batch"].notna().any():
        return empty_figure("No dH probe in this run: turn it on with dh_probe_every (Monitor or attach)", title)
    probed = frame[frame["dh_same_batch"].notna() & (frame["dh_probe_tokens"] > 0)].sort_values("step")
    tokens = probed["dh_probe_tokens"].to_numpy(np.float64)
    fig = go.Figure()
    for i, (column, name) in enumerate(ATTRIBUTION_BARS):
        if column in probed.columns and probed[column].notna().any():
            fig.add_trace(go.Bar(x=probed["step"], y=probed[column].to_numpy(np.float64) / tokens, name=name,
                                 marker={"color": ATTRIBUTION_COLORS[i]}))
    fig.add_trace(go.Scatter(x=probed["step"], y=probed["dh_same_batch"], mode="lines+markers",
                             name="dh_same_batch (all tokens)", line={"color": "#222", "width": 2}))
    for i, (column, name) in enumerate(ATTRIBUTION_LINES):
        if column in probed.columns and probed[column].notna().any():
            fig.add_trace(go.Scatter(x=probed["step"], y=probed[column].to_numpy(np.float64) / tokens, mode="lines",
                                     name=name, line={"color": run_color(i + 3), "dash": "dot", "width": 2}))
    fig.update_layout(barmode="relative")
    return styled(fig, title, uirevision=uirevision, y_title="part of dH per token (nats)")


ATTRIBUTION_BARS = (("dh_sum_pos_adv", "positive-advantage tokens"), ("dh_sum_zero_adv", "zero-advantage tokens"),
                    ("dh_sum_neg_adv", "negative-advantage tokens"))
ATTRIBUTION_COLORS = ("#2ca02c", "#bbbbbb", "#d62728")
ATTRIBUTION_LINES = (("dh_sum_forking", "forking tokens (H > 0.672)"),
                     ("dh_sum_top_0_2pct_cov", "top 0.2% Cov_i tokens"))
