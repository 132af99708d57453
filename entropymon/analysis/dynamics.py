"""Does the covariance explain how entropy moves? Observed dH against Cov(log pi, A).

Why: Cui et al. 2025 derive, to first order, dH ~ -eta * Cov(log pi, A) under natural policy
gradient and dH ~ -eta * Cov(log pi, pi*A) under vanilla policy gradient. Per run this module
puts the observed entropy change next to each covariance form and reports how well they agree
(Pearson and Spearman correlation, expected negative) and the effective step size eta_eff from
a least-squares line through the origin, dH = -eta_eff * Cov.

dH at step t is the change to the next logged step divided by the number of steps between them,
(H[t'] - H[t]) / (t' - t): runs logged every few steps are compared per update, with the
covariance at t standing for the whole gap (an approximation, exact when every step is logged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from entropymon.analysis._frame import column_values, finite_count, step_frame
from entropymon.errors import AnalysisError
from entropymon.results import JsonResult

COVARIANCE_FORMS = ("cov_logp_adv", "cov_logp_piadv")
MIN_PAIRS = 3


@dataclass(frozen=True)
class CovarianceFit(JsonResult):
    """dH against one covariance form: agreement and the slope through the origin."""

    covariance: str
    n: int
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float
    eta_eff: float  # dH ~ -eta_eff * Cov


@dataclass(frozen=True)
class EntropyDynamics(JsonResult):
    """Per covariance form: a fit, or the reason there is none (``missing``)."""

    entropy_column: str
    fits: dict[str, CovarianceFit]
    missing: dict[str, str]
    table: pd.DataFrame = field(repr=False, compare=False)  # step, next_step, dH, one column per form


def entropy_dynamics(run_or_df, *, entropy: str = "entropy_mean", covariances=COVARIANCE_FORMS) -> EntropyDynamics:
    """Observed per-step entropy change against each covariance form of the run."""
    frame = step_frame(run_or_df)
    h = column_values(frame, entropy, argument="entropy")
    steps = frame["step"].to_numpy(dtype=np.float64)
    present = np.flatnonzero(np.isfinite(h))
    if present.size < 2:
        raise AnalysisError(f"entropy {entropy!r}: expected at least 2 steps with values, got {present.size}")
    now, after = present[:-1], present[1:]
    dh = (h[after] - h[now]) / (steps[after] - steps[now])  # (m,) per update
    table = pd.DataFrame({"step": steps[now], "next_step": steps[after], "dH": dh})
    fits, missing = {}, {}
    for form in covariances:
        if form not in frame.columns or finite_count(frame, form) == 0:
            missing[form] = (
                f"column {form!r} is missing or empty: the run was logged without advantages and "
                "log-probs (Monitor.observe(advantages=..., logprobs=... or logits=...))"
            )
            continue
        cov = column_values(frame, form, argument="covariances")[now]
        table[form] = cov
        usable = np.isfinite(cov) & np.isfinite(dh)
        if usable.sum() < MIN_PAIRS:
            missing[form] = (f"column {form!r}: expected at least {MIN_PAIRS} steps with a next step, "
                             f"got {int(usable.sum())}")
            continue
        fits[form] = _fit_form(form, cov[usable], dh[usable])
    if not fits:
        raise AnalysisError(
            f"covariances: expected at least one of {list(covariances)} with values; " + "; ".join(missing.values())
        )
    return EntropyDynamics(entropy, fits, missing, table)


def _fit_form(form: str, cov: np.ndarray, dh: np.ndarray) -> CovarianceFit:
    """``cov``, ``dh``: (m,) finite."""
    varying = np.ptp(cov) > 0 and np.ptp(dh) > 0
    if varying:
        pearson = stats.pearsonr(cov, dh)
        spearman = stats.spearmanr(cov, dh)
        r, r_p = float(pearson.statistic), float(pearson.pvalue)
        rho, rho_p = float(spearman.statistic), float(spearman.pvalue)
    else:
        r = r_p = rho = rho_p = math.nan
    ss = float(cov @ cov)
    eta = -float(cov @ dh) / ss if ss > 0 else math.nan
    return CovarianceFit(form, int(cov.size), r, r_p, rho, rho_p, eta)
