"""The ceiling a run is heading for, and whether that number deserves trust.

Why: a user who sees "predicted ceiling 0.87" must also see whether to believe it. This module
combines the law fit on the run so far, its rolling-origin backtest against naive baselines,
the metric's range and the regime check into one verdict, ``trustworthy`` with a plain
``reason``. The checks, in the order the reason reports them:

1. the run is still in the law's regime ("run left the law's regime at step 31 ...");
2. the ceiling lies inside the metric's range ("ceiling 1.7 lies outside the metric's range
   [0, 1]") - outside, it is flagged and not offered as a prediction;
3. the backtest skill over the later half of the origins is above 0 ("the law does not
   predict this run yet: backtest skill -0.4 <= 0 ...");
4. the ceiling interval is narrower than the metric's range (or, range unknown, than the span
   performance has covered);
5. the residuals do not drift with the step (``goodness.residual_drift``);
6. the fit itself is sound (enough points, R² >= 0.5, a clearly > 0).

CLI, report and dashboard print ``reason`` as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from entropymon.analysis.bounds import format_bounds
from entropymon.analysis.goodness import residual_drift
from entropymon.analysis.law import RELIABLE_MIN_POINTS, LawFit, LawOptions
from entropymon.analysis.prediction import Backtest, backtest_series, run_series
from entropymon.analysis.regimes import RegimeExit
from entropymon.errors import AnalysisError
from entropymon.results import JsonResult


@dataclass(frozen=True)
class CeilingForecast(JsonResult):
    """The fitted ceiling with its interval, backtest skill and trust verdict.

    ``fit`` is None when the run has too few usable points to fit at all (``reasons`` says why).
    ``ceiling`` is None when it is not a prediction (outside the metric's range, or no fit).
    """

    fit: LawFit | None
    backtest: Backtest
    regime_exit: RegimeExit | None
    trustworthy: bool
    reason: str
    reasons: tuple[str, ...]

    @property
    def ceiling(self) -> float | None:
        if self.fit is None or self.fit.ceiling_in_bounds is False:
            return None
        return self.fit.ceiling

    @property
    def skill(self) -> float:
        """The backtest skill the verdict uses (later half of the origins)."""
        return self.backtest.recent_skill

    @property
    def fitted_ceiling(self) -> float | None:
        """The fit's b - a even where it is not a prediction (``ceiling`` is None there)."""
        return None if self.fit is None else self.fit.ceiling

    @property
    def ceiling_ci(self) -> tuple[float, float] | None:
        return None if self.fit is None else self.fit.ceiling_ci

    @property
    def ceiling_in_bounds(self) -> bool | None:
        return None if self.fit is None else self.fit.ceiling_in_bounds

    @property
    def bounds(self) -> tuple[float, float] | None:
        return None if self.fit is None else self.fit.bounds

    JSON_EXTRA = ("ceiling", "fitted_ceiling", "ceiling_ci", "ceiling_in_bounds", "bounds", "skill")


def forecast_ceiling(run_or_df, *, options: LawOptions | None = None, origins=None, **overrides) -> CeilingForecast:
    """Fit the law on the run (up to any regime exit), backtest it, and give the verdict.

    ``options`` / keywords: how to fit the law (``LawOptions``); ``origins``: the backtest's.
    """
    options = LawOptions.of(options, **overrides)
    series = run_series(run_or_df, options)
    tested = backtest_series(series, options, origins)
    fit, fit_error = None, None
    try:
        fit = series.fit_law(None, options)
    except AnalysisError as error:
        fit_error = str(error)
    if fit is not None and series.regime_exit is not None:
        fit = _with_regime_exit(fit, series.regime_exit)
    reasons = trust_problems(fit, tested, series.regime_exit, fit_error)
    if reasons:
        reason = reasons[0]
    else:
        reason = (
            f"backtest skill {tested.recent_skill:.2f} > 0 over the last {tested.n_recent} origins; "
            f"ceiling {fit.ceiling:.3g} [{fit.ceiling_ci[0]:.3g}, "
            f"{fit.ceiling_ci[1]:.3g}]" + (f" within {format_bounds(fit.bounds)}" if fit.bounds else "")
        )
    return CeilingForecast(fit, tested, series.regime_exit, not reasons, reason, tuple(reasons))


def trust_problems(fit: LawFit | None, tested: Backtest, regime_exit: RegimeExit | None,
                   fit_error: str | None = None) -> list[str]:
    """Why a ceiling forecast should not be trusted, most important first (empty: trust it)."""
    reasons = []
    if regime_exit is not None:
        reasons.append(regime_exit.message)
    if fit is None:
        reasons.append(f"the law cannot be fitted: {fit_error}")
        return reasons
    if fit.ceiling_in_bounds is False:
        reasons.append(f"ceiling {fit.ceiling:.3g} lies outside the metric's range {format_bounds(fit.bounds)}")
    if tested.n_origins == 0 or not math.isfinite(tested.recent_skill):
        reasons.append("the law does not predict this run yet: too few points to backtest it")
    elif tested.recent_skill <= 0:
        best = min(tested.recent_baseline_rmse, key=tested.recent_baseline_rmse.get)
        reasons.append(
            f"the law does not predict this run yet: backtest skill {tested.recent_skill:.2f} <= 0 "
            f"over the last {tested.n_recent} origins (the {best.replace('_', ' ')} forecast does "
            "as well or better)"
        )
    if fit.residuals is not None and fit.n >= RELIABLE_MIN_POINTS:
        drift = residual_drift(fit.residuals, fit.steps)
        if drift.drift:
            reasons.append(drift.message)
    remaining = [p for p in fit.problems if p not in reasons and "outside the metric's range" not in p]
    reasons.extend(sorted(remaining, key=lambda p: "interval" not in p or "a's interval" in p))
    return reasons


def _with_regime_exit(fit: LawFit, regime_exit: RegimeExit) -> LawFit:
    note = f"{regime_exit.message}; points from there on are not fitted"
    return replace(
        fit,
        regime_exit_step=regime_exit.step,
        problems=(regime_exit.message, *fit.problems),
        reliable=False,
        notes=(note, *fit.notes),
    )
