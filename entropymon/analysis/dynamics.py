"""What explains how entropy moves? The observed entropy change against each predictor of it.

Why: Cui et al. 2025 derive, to first order, dH ~ -eta * Cov(log pi, A) under natural policy
gradient and dH ~ -eta * Cov(log pi, pi*A) under vanilla policy gradient, both from the softmax
identity dH ~ -Cov_{a~pi}(log pi, dz) in logit space. Per run this module puts the observed
change next to each predictor and reports how well it explains it: Pearson and Spearman
correlation, R^2 = r^2 (the share of the change's variance a linear fit on that predictor
explains), and the effective step size eta_eff of a least-squares line through the origin,
dH = eta_eff * (sign * predictor) - each with a pairs-bootstrap interval over steps - and says in
words which predictor explains the change and how much.

Which observed change: with the dH probe (``dh_same_batch``: the same batch's entropy just before
and after the step) the comparison is like for like, and the logit-space prediction
(``dh_pred_logit``, sign +1, eta_eff ~ 1 when first order holds) is a third predictor. Without
it the only change available is the naive one, the entropy of the next logged batch minus this
batch's, ``(H[t'] - H[t]) / (t' - t)``: two different batches, so mostly batch-to-batch noise,
and the result says so instead of passing it off as the observed change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from entropymon.analysis._bootstrap import blocks as bootstrap_blocks
from entropymon.analysis._frame import column_values, finite_count, step_frame
from entropymon.errors import AnalysisError
from entropymon.registry import PREDICTOR_SIGN
from entropymon.results import JsonResult

COVARIANCE_FORMS = ("cov_logp_adv", "cov_logp_piadv")
LOGIT_PREDICTION = "dh_pred_logit"
SAME_BATCH = "dh_same_batch"
PREDICTOR_LABEL = {"cov_logp_adv": "the batch covariance Cov(log π, A)",
                   "cov_logp_piadv": "the batch covariance Cov(log π, π·A)",
                   LOGIT_PREDICTION: "the logit-space prediction −Cov_a~π(log π, Δz)"}
# attribution of the same-batch change: share name -> (numerator column, denominator column)
ATTRIBUTION = {
    "positive_advantage": "dh_sum_pos_adv", "zero_advantage": "dh_sum_zero_adv",
    "negative_advantage": "dh_sum_neg_adv", "forking_tokens": "dh_sum_forking",
    "top_0_02pct_cov_tokens": "dh_sum_top_0_02pct_cov", "top_0_2pct_cov_tokens": "dh_sum_top_0_2pct_cov",
}
ATTRIBUTION_LABEL = {"positive_advantage": "positive-advantage tokens", "zero_advantage": "zero-advantage tokens",
                     "negative_advantage": "negative-advantage tokens", "forking_tokens": "forking tokens",
                     "top_0_02pct_cov_tokens": "top 0.02% Cov_i tokens",
                     "top_0_2pct_cov_tokens": "top 0.2% Cov_i tokens"}
MIN_PAIRS = 3
N_BOOTSTRAP = 1000
CI = 0.95
EXPLAINS = 0.5  # R^2 at or above which a predictor is said to explain the change
LITTLE = 0.1  # R^2 below which it is said to explain little


@dataclass(frozen=True)
class CovarianceFit(JsonResult):
    """The observed dH against one predictor: agreement, explained share and slope, with intervals."""

    covariance: str  # the predictor's column (a covariance form or dh_pred_logit)
    n: int
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float
    eta_eff: float  # dH ~ eta_eff * sign * predictor (sign -1 for the covariances)
    r_ci: tuple = (math.nan, math.nan)
    eta_ci: tuple = (math.nan, math.nan)
    r2: float = math.nan

    @property
    def sign(self) -> float:
        return PREDICTOR_SIGN.get(self.covariance, -1.0)


@dataclass(frozen=True)
class EntropyDynamics(JsonResult):
    """Per predictor: a fit, or the reason there is none (``missing``); ``explanation`` in words.

    ``observed`` is "same_batch" (the dH probe's ``dh_same_batch``) or "naive" (consecutive logged
    batches). ``attribution``: share of the summed same-batch change carried by each token class.
    """

    entropy_column: str
    fits: dict[str, CovarianceFit]
    missing: dict[str, str]
    table: pd.DataFrame = field(repr=False, compare=False)  # step, next_step, dH, one column per predictor
    observed: str = "naive"
    explanation: str = ""
    attribution: dict = field(default_factory=dict)
    naive_spread_ratio: float | None = None  # std of the naive dH / std of the same-batch dH

    def predicted(self, predictor: str) -> np.ndarray:
        """The change the fitted predictor predicts at each row of ``table``: eta_eff * sign * x."""
        fit = self.fits[predictor]
        return fit.eta_eff * fit.sign * self.table[predictor].to_numpy(np.float64)


def entropy_dynamics(run_or_df, *, entropy: str = "entropy_mean", covariances=COVARIANCE_FORMS,
                     n_bootstrap: int = N_BOOTSTRAP, seed: int = 0) -> EntropyDynamics:
    """The run's entropy change against each predictor; the same-batch change when the run has it."""
    frame = step_frame(run_or_df)
    same_batch = SAME_BATCH in frame.columns and finite_count(frame, SAME_BATCH) >= MIN_PAIRS
    naive = _naive_change(frame, entropy, required=not same_batch)
    if same_batch:
        rows = np.flatnonzero(np.isfinite(column_values(frame, SAME_BATCH)))
        steps = frame["step"].to_numpy(np.float64)[rows]
        table = pd.DataFrame({"step": steps, "next_step": steps, "dH": column_values(frame, SAME_BATCH)[rows]})
        predictors = (LOGIT_PREDICTION, *covariances)
    else:
        rows, table = naive
        predictors = tuple(covariances)
    fits, missing = {}, {}
    rng = np.random.default_rng(seed)
    dh = table["dH"].to_numpy(np.float64)
    for predictor in predictors:
        if predictor not in frame.columns or finite_count(frame, predictor) == 0:
            missing[predictor] = _why_missing(predictor)
            continue
        x = column_values(frame, predictor, argument="covariances")[rows]
        table[predictor] = x
        usable = np.isfinite(x) & np.isfinite(dh)
        if usable.sum() < MIN_PAIRS:
            missing[predictor] = (f"column {predictor!r}: expected at least {MIN_PAIRS} steps with an observed "
                                  f"change, got {int(usable.sum())}")
            continue
        fits[predictor] = _fit(predictor, x[usable], dh[usable], n_bootstrap, rng)
    if not fits:
        raise AnalysisError(
            f"covariances: expected at least one of {list(predictors)} with values; " + "; ".join(missing.values()))
    ratio = None
    if same_batch and naive is not None:
        naive_dh = naive[1]["dH"].to_numpy(np.float64)
        spread = np.nanstd(dh)
        if np.isfinite(naive_dh).sum() >= MIN_PAIRS and spread > 0:
            ratio = float(np.nanstd(naive_dh) / spread)
    attribution = _attribution(frame, rows) if same_batch else {}
    observed = "same_batch" if same_batch else "naive"
    explanation = _explain(observed, fits, len(table), ratio, attribution)
    return EntropyDynamics(entropy, fits, missing, table, observed, explanation, attribution, ratio)


def _naive_change(frame: pd.DataFrame, entropy: str, *, required: bool):
    """(rows, table) of the change between consecutive logged steps per update, or None when not computable."""
    if entropy not in frame.columns:
        if required:
            column_values(frame, entropy, argument="entropy")  # raises the standard missing-column error
        return None
    h = column_values(frame, entropy, argument="entropy")
    steps = frame["step"].to_numpy(dtype=np.float64)
    present = np.flatnonzero(np.isfinite(h))
    if present.size < 2:
        if required:
            raise AnalysisError(f"entropy {entropy!r}: expected at least 2 steps with values, got {present.size}")
        return None
    now, after = present[:-1], present[1:]
    dh = (h[after] - h[now]) / (steps[after] - steps[now])  # (m,) per update
    return now, pd.DataFrame({"step": steps[now], "next_step": steps[after], "dH": dh})


def _why_missing(predictor: str) -> str:
    if predictor == LOGIT_PREDICTION:
        return f"column {predictor!r} is missing or empty: the dH probe ran without the logits after the update"
    return (f"column {predictor!r} is missing or empty: the run was logged without advantages and "
            "log-probs (Monitor.observe(advantages=..., logprobs=... or logits=...))")


def _fit(predictor: str, x: np.ndarray, dh: np.ndarray, n_bootstrap: int, rng) -> CovarianceFit:
    """``x``, ``dh``: (m,) finite."""
    sign = PREDICTOR_SIGN.get(predictor, -1.0)
    signed = sign * x
    varying = np.ptp(x) > 0 and np.ptp(dh) > 0
    if varying:
        pearson = stats.pearsonr(x, dh)
        spearman = stats.spearmanr(x, dh)
        r, r_p, rho, rho_p = (float(pearson.statistic), float(pearson.pvalue), float(spearman.statistic),
                              float(spearman.pvalue))
    else:
        r = r_p = rho = rho_p = math.nan
    ss = float(signed @ signed)
    eta = float(signed @ dh) / ss if ss > 0 else math.nan
    r_ci, eta_ci = _bootstrap(signed, dh, n_bootstrap, rng)
    if varying:  # r of sign*x is sign*r; report the interval of r itself
        r_ci = tuple(sorted((sign * r_ci[0], sign * r_ci[1])))
    return CovarianceFit(predictor, int(x.size), r, r_p, rho, rho_p, eta, r_ci, eta_ci, r * r)


def _bootstrap(x: np.ndarray, y: np.ndarray, n_bootstrap: int, rng) -> tuple[tuple, tuple]:
    """Percentile intervals of Pearson r and the through-origin slope over resampled (x, y) pairs."""
    if n_bootstrap < 1 or x.size < MIN_PAIRS:
        return (math.nan, math.nan), (math.nan, math.nan)
    r, slope = np.empty(n_bootstrap), np.empty(n_bootstrap)
    for rows in bootstrap_blocks(n_bootstrap, x.size):
        index = rng.integers(0, x.size, size=(rows.stop - rows.start, x.size))  # the stream as one (R, m) draw
        xs, ys = x[index], y[index]
        xc, yc = xs - xs.mean(1, keepdims=True), ys - ys.mean(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            r[rows] = (xc * yc).sum(1) / np.sqrt((xc * xc).sum(1) * (yc * yc).sum(1))
            slope[rows] = (xs * ys).sum(1) / (xs * xs).sum(1)
    tail = 100 * (1 - CI) / 2
    return _percentiles(r, tail), _percentiles(slope, tail)


def _percentiles(values: np.ndarray, tail: float) -> tuple:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (math.nan, math.nan)
    low, high = np.percentile(finite, [tail, 100 - tail])
    return (float(low), float(high))


def _attribution(frame: pd.DataFrame, rows: np.ndarray) -> dict[str, float]:
    """Share of sum(dH) over the probed steps carried by each token class (absent classes left out)."""
    if "dh_sum" not in frame.columns:
        return {}
    total = np.nansum(column_values(frame, "dh_sum")[rows])
    if not np.isfinite(total) or total == 0:
        return {}
    out = {}
    for name, column in ATTRIBUTION.items():
        if column in frame.columns and finite_count(frame, column):
            out[name] = float(np.nansum(column_values(frame, column)[rows]) / total)
    return out


def _explain(observed: str, fits: dict[str, CovarianceFit], n_rows: int, ratio, attribution) -> str:
    """The run's answer to "what explains the entropy change", in words."""
    shares = "; ".join(f"{PREDICTOR_LABEL.get(name, name)} {_percent(fit.r2)} (r = {_num(fit.pearson_r)} "
                       f"[{_num(fit.r_ci[0])}, {_num(fit.r_ci[1])}])" for name, fit in fits.items())
    if observed == "naive":
        return ("No same-batch measurement in this run (turn on the dH probe: dh_probe_every=10 on Monitor or "
                "attach). The entropy change here is between consecutive logged batches, which are different "
                "batches, so it is mostly batch-to-batch noise: share of its variance explained by " + shares
                + ". A low share says nothing about whether the covariance drives the entropy.")
    ranked = sorted(((fit.r2, name) for name, fit in fits.items() if np.isfinite(fit.r2)), reverse=True)
    text = f"Same-batch entropy change over {n_rows} probed steps; share of its variance explained by {shares}."
    if ranked:
        best_r2, best = ranked[0]
        label = PREDICTOR_LABEL.get(best, best)
        if best_r2 >= EXPLAINS:
            text += f" {label[0].upper()}{label[1:]} explains the change ({_percent(best_r2)})."
        elif best_r2 >= LITTLE:
            text += f" {label[0].upper()}{label[1:]} explains part of it ({_percent(best_r2)})."
        else:
            text += " None of the predictors explains much of it."
        covariance_r2 = [fits[name].r2 for name in COVARIANCE_FORMS if name in fits and np.isfinite(fits[name].r2)]
        if best == LOGIT_PREDICTION and covariance_r2 and max(covariance_r2) < best_r2 / 2:
            text += (" The softmax identity holds; what fails is the assumption that the logit change follows A"
                     " (or π·A): updates to different states are coupled in a network, and optimizer momentum"
                     " carries earlier batches.")
    if ratio is not None:
        text += f" The naive change between consecutive batches spreads {ratio:.1f}x as wide"
        text += ": mostly batch-to-batch noise." if ratio >= 2 else "."
    if attribution:
        parts = [f"{ATTRIBUTION_LABEL[name]} {_percent(share)}" for name, share in attribution.items()]
        text += (" Share of the summed entropy change by token class (of the change, not of Σ Cov_i): "
                 + ", ".join(parts) + ".")
    return text


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%" if np.isfinite(value) else "n/a"


def _num(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "n/a"
