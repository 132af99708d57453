"""Goodness of fit beyond R²: residual drift, sensitivity to analysis choices, warm-up influence.

Why: a high R² can hide a wrong shape (residuals that drift with the step), and a ceiling that
moves a lot when the smoothing or the entropy aggregate changes is a property of the choices,
not of the run.

- **Residual drift** uses two tests on the residuals in step order. The Wald-Wolfowitz *runs
  test* on their signs: a curve of the wrong shape leaves long same-sign stretches (too few
  runs). It is distribution-free (no normal errors assumed, unlike the Durbin-Watson bounds) and
  its normal approximation gives a p-value directly. *Spearman's rho* of residual against step
  catches a monotone trend. Either p < 0.01 flags drift. Smoothing makes neighbouring residuals
  alike by construction, so judge drift on an unsmoothed fit.
- **Sensitivity** refits with other smoothings and other entropy aggregates present in the run
  and reports the spread (max - min) of the ceiling; it is "sensitive" when the spread exceeds
  half the base fit's ceiling interval.
- **Warm-up influence**: the fit with the automatic warm-up exclusion against the fit on every
  point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from entropymon.analysis._frame import ENTROPY_AGGREGATES, finite_count, smoothing_label, step_frame
from entropymon.analysis.law import MIN_POINTS, LawFit, fit_run_law
from entropymon.errors import AnalysisError
from entropymon.results import JsonResult

DRIFT_P_VALUE = 0.01
DEFAULT_SMOOTHINGS = (None, 0.5, 0.2, 5, 10)
SENSITIVITY_BOOTSTRAP = 200


@dataclass(frozen=True)
class ResidualDrift(JsonResult):
    """Runs test and Spearman trend of residuals in step order."""

    n_runs: int
    expected_runs: float
    runs_z: float
    runs_p_value: float  # one-sided: too few runs
    spearman_rho: float
    spearman_p_value: float
    drift: bool
    message: str


def residual_drift(residuals, steps=None) -> ResidualDrift:
    """Test residuals (n,) in step order for a pattern; ``steps`` (n,) defaults to 0..n-1."""
    residuals = np.asarray(residuals, dtype=np.float64)
    if residuals.size < MIN_POINTS:
        raise AnalysisError(f"residuals: expected at least {MIN_POINTS} values, got {residuals.size}")
    steps = np.arange(residuals.size, dtype=np.float64) if steps is None else np.asarray(steps, dtype=np.float64)
    signs = np.sign(residuals[residuals != 0])
    n_pos, n_neg = int((signs > 0).sum()), int((signs < 0).sum())
    n = n_pos + n_neg
    n_runs = int(1 + np.count_nonzero(signs[1:] != signs[:-1])) if n else 0
    if n_pos and n_neg and n > 1:
        expected = 2.0 * n_pos * n_neg / n + 1.0
        variance = 2.0 * n_pos * n_neg * (2.0 * n_pos * n_neg - n) / (n * n * (n - 1))
        z = (n_runs - expected) / math.sqrt(variance) if variance > 0 else 0.0
        runs_p = float(stats.norm.cdf(z))
    else:
        expected, z, runs_p = math.nan, math.nan, math.nan
    if np.ptp(residuals) > 0:
        spearman = stats.spearmanr(steps, residuals)
        rho, rho_p = float(spearman.statistic), float(spearman.pvalue)
    else:
        rho, rho_p = math.nan, math.nan
    too_few_runs = math.isfinite(runs_p) and runs_p < DRIFT_P_VALUE
    trend = math.isfinite(rho_p) and rho_p < DRIFT_P_VALUE
    if too_few_runs or trend:
        parts = []
        if too_few_runs:
            parts.append(f"{n_runs} sign runs where {expected:.1f} are expected (p={runs_p:.2g})")
        if trend:
            parts.append(f"residuals trend with the step (Spearman rho {rho:.2f}, p={rho_p:.2g})")
        message = "residuals drift, so the law's shape is wrong for this run: " + "; ".join(parts)
    else:
        message = "no residual drift detected"
    return ResidualDrift(n_runs, expected, z, runs_p, rho, rho_p, too_few_runs or trend, message)


@dataclass(frozen=True)
class Sensitivity(JsonResult):
    """Ceilings under alternative choices. ``table`` columns: choice, ceiling, ceiling_lo,
    ceiling_hi, r2, n; ``spread`` = max - min ceiling over the choices that could be fitted."""

    what: str
    table: pd.DataFrame = field(repr=False, compare=False)
    spread: float
    sensitive: bool

    JSON_EXTRA = ("choices",)

    @property
    def choices(self) -> list[dict]:
        """One record per choice: the rows of ``table``."""
        return self.table.to_dict("records")


def smoothing_sensitivity(run_or_df, smoothings=DEFAULT_SMOOTHINGS, **fit_kwargs) -> Sensitivity:
    """Refit with each smoothing; how far the ceiling moves. ``fit_kwargs`` go to ``fit_run_law``."""
    choices = [(smoothing_label(s), {"smoothing": s}) for s in smoothings]
    return _sensitivity(run_or_df, "smoothing", choices, fit_kwargs)


def aggregate_sensitivity(run_or_df, entropies=ENTROPY_AGGREGATES, **fit_kwargs) -> Sensitivity:
    """Refit with each entropy aggregate the run has (>= 3 values); how far the ceiling moves."""
    frame = step_frame(run_or_df)
    present = [e for e in entropies if finite_count(frame, e) >= MIN_POINTS]
    if not present:
        raise AnalysisError(f"entropies: expected at least one of {list(entropies)} in the run, got none")
    return _sensitivity(run_or_df, "entropy aggregate", [(e, {"entropy": e}) for e in present], fit_kwargs)


def _sensitivity(run_or_df, what, choices, fit_kwargs) -> Sensitivity:
    fit_kwargs = {"n_bootstrap": SENSITIVITY_BOOTSTRAP, **fit_kwargs}
    base = fit_run_law(run_or_df, **fit_kwargs)
    rows = []
    for label, override in choices:
        try:
            fit = fit_run_law(run_or_df, **{**fit_kwargs, **override})
        except AnalysisError:
            continue
        rows.append({"choice": label, "ceiling": fit.ceiling, "ceiling_lo": fit.ceiling_ci[0],
                     "ceiling_hi": fit.ceiling_ci[1], "r2": fit.r2, "n": fit.n})
    table = pd.DataFrame(rows, columns=["choice", "ceiling", "ceiling_lo", "ceiling_hi", "r2", "n"])
    spread = float(table["ceiling"].max() - table["ceiling"].min()) if len(table) else math.nan
    half_width = base.ceiling_ci_width / 2.0
    sensitive = bool(math.isfinite(spread) and math.isfinite(half_width) and spread > half_width)
    return Sensitivity(what, table, spread, sensitive)


@dataclass(frozen=True)
class WarmupInfluence(JsonResult):
    """The fit with the automatic warm-up exclusion against the fit on every point."""

    excluded_points: int
    ceiling_with_exclusion: float
    ceiling_all_points: float
    r2_with_exclusion: float
    r2_all_points: float
    message: str


def warmup_influence(run_or_df, **fit_kwargs) -> WarmupInfluence:
    fit_kwargs = {"n_bootstrap": SENSITIVITY_BOOTSTRAP, **fit_kwargs}
    auto = fit_run_law(run_or_df, **{**fit_kwargs, "warmup": "auto"})
    every = fit_run_law(run_or_df, **{**fit_kwargs, "warmup": None})
    if auto.warmup_excluded:
        message = (
            f"excluded {auto.warmup_excluded} warm-up point(s) (entropy rose before it fell): ceiling "
            f"{auto.ceiling:.3g} (R² {auto.r2:.2f}) instead of {every.ceiling:.3g} (R² {every.r2:.2f}) on every point"
        )
    else:
        message = "no warm-up detected: entropy did not rise before falling"
    return WarmupInfluence(auto.warmup_excluded, auto.ceiling, every.ceiling, auto.r2, every.r2, message)


@dataclass(frozen=True)
class GoodnessReport(JsonResult):
    JSON_EXCLUDE = ("fit",)  # the fit is the caller's; the report is the checks

    fit: LawFit
    drift: ResidualDrift
    smoothing: Sensitivity
    aggregate: Sensitivity | None
    warmup: WarmupInfluence


def goodness_of_fit(run_or_df, **fit_kwargs) -> GoodnessReport:
    """All checks of this module on one run (``fit_kwargs`` go to ``fit_run_law``)."""
    fit = fit_run_law(run_or_df, **{"n_bootstrap": SENSITIVITY_BOOTSTRAP, **fit_kwargs})
    drift = residual_drift(fit.residuals, fit.steps)
    try:
        aggregate = aggregate_sensitivity(run_or_df, **{k: v for k, v in fit_kwargs.items() if k != "entropy"})
    except AnalysisError:
        aggregate = None
    return GoodnessReport(
        fit=fit,
        drift=drift,
        smoothing=smoothing_sensitivity(run_or_df, **{k: v for k, v in fit_kwargs.items() if k != "smoothing"}),
        aggregate=aggregate,
        warmup=warmup_influence(run_or_df, **{k: v for k, v in fit_kwargs.items() if k != "warmup"}),
    )
