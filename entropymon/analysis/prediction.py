"""How well the law predicts the rest of a run: early prediction, rolling-origin backtests, the
ceiling as a function of steps seen.

Why: an in-sample R² says nothing about prediction, and on real public runs the law fitted on
the first 15% of steps mostly did not beat a naive forecast. Every law forecast here is scored
against three naive baselines measured the same way, on the same points:

- ``last_value``: the last performance value of the fit window, held flat;
- ``window_mean``: the mean of the fit window's performance;
- ``linear_trend``: a least-squares line in step through the fit window, extrapolated.

The law's forecast for a later step is ``-a*e^H + b`` at that step's observed entropy (as in the
paper: the law relates R to H; it does not forecast H). Skill = 1 - RMSE_law / RMSE_best_baseline:
above 0 the law beats every baseline, at or below 0 it does not predict the run.

Everything the fit sees is smoothed causally and cut at the origin, and scored against the raw
performance after it. Points from the step the run leaves the law's regime onward are neither
fitted nor scored (see ``regimes``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from entropymon.analysis._frame import (
    choose_performance,
    column_values,
    smooth,
    smoothing_label,
    step_frame,
)
from entropymon.analysis.bounds import resolve_bounds
from entropymon.analysis.law import MIN_POINTS, LawFit, LawOptions, fit_series_law
from entropymon.analysis.regimes import RegimeExit, find_regime_exit
from entropymon.errors import AnalysisError, InputError
from entropymon.results import JsonResult

BASELINES = ("last_value", "window_mean", "linear_trend")
METHODS = ("law", *BASELINES)
DEFAULT_MAX_ORIGINS = 40
MIN_FIT_POINTS = 5
# Default origins start after this share of the points: a handful of points extrapolated over
# the whole run says little and one wild fit would dominate the aggregate.
FIRST_ORIGIN_FRACTION = 0.1
CURVE_BOOTSTRAP = 200  # resamples per origin of the ceiling curve


@dataclass(frozen=True)
class RunSeries:
    """A run's step-ordered points ready for prediction. All arrays (n,).

    ``entropy`` and ``fitted`` are the (causally smoothed) series the law is fitted on;
    ``actual`` is the raw performance forecasts are scored against. ``regime_exit`` is where the
    run leaves the law's regime; the arrays stop before it.
    """

    steps: np.ndarray
    entropy: np.ndarray
    fitted: np.ndarray
    actual: np.ndarray
    entropy_column: str
    performance_column: str
    smoothing: str
    bounds: tuple[float, float] | None
    regime_exit: RegimeExit | None

    def fit_law(self, end: int | None, options: LawOptions) -> LawFit:
        """The law on the first ``end`` points (None: all), with the warm-up and bootstrap of
        ``options``; the series is already smoothed and cut at any regime exit."""
        return fit_series_law(
            self.steps[:end], self.entropy[:end], self.fitted[:end],
            entropy_column=self.entropy_column, performance_column=self.performance_column,
            smoothing=self.smoothing, warmup=options.warmup, bounds=self.bounds,
            stop_at_regime_exit=False, n_bootstrap=options.n_bootstrap, ci=options.ci, seed=options.seed,
        )


def run_series(run_or_df, options: LawOptions, *, stop_at_regime_exit: bool = True) -> RunSeries:
    """The points of a run that prediction works on (see ``RunSeries``)."""
    entropy, smoothing = options.entropy, options.smoothing
    frame = step_frame(run_or_df)
    performance_column = choose_performance(frame, options.performance)
    raw_perf = column_values(frame, performance_column, argument="performance")
    raw_entropy = column_values(frame, entropy, argument="entropy")
    resolved = resolve_bounds(options.bounds, performance_column, raw_perf, run_or_df)
    smooth_entropy, smooth_perf = smooth(raw_entropy, smoothing), smooth(raw_perf, smoothing)
    keep = np.isfinite(smooth_entropy) & np.isfinite(smooth_perf) & np.isfinite(raw_perf)
    steps = frame["step"].to_numpy(dtype=np.float64)[keep]
    h, fitted, actual = smooth_entropy[keep], smooth_perf[keep], raw_perf[keep]
    regime_exit = None
    if stop_at_regime_exit:
        regime_exit = find_regime_exit(steps, h, fitted, bounds=resolved)
        if regime_exit is not None:
            cut = regime_exit.index
            steps, h, fitted, actual = steps[:cut], h[:cut], fitted[:cut], actual[:cut]
    return RunSeries(steps, h, fitted, actual, entropy, performance_column,
                     smoothing_label(smoothing), resolved, regime_exit)


@dataclass(frozen=True)
class OriginScore:
    """One cut point: the fit on points <= origin and every method's errors on the points after."""

    origin_step: float
    fit: LawFit
    test_steps: np.ndarray  # (m,)
    actual: np.ndarray  # (m,)
    predictions: dict[str, np.ndarray]  # method -> (m,)

    def errors(self, method: str) -> np.ndarray:
        return self.predictions[method] - self.actual

    def rmse(self, method: str) -> float:
        return float(np.sqrt(np.mean(self.errors(method) ** 2)))

    def final_error(self, method: str) -> float:
        """Predicted minus actual at the last scored step."""
        return float(self.errors(method)[-1])


def score_origin(series: RunSeries, cut: int, options: LawOptions, *, horizon: int | None = None) -> OriginScore:
    """Fit the law and the baselines on points [0, cut) and score them on points [cut, cut + horizon)."""
    end = series.steps.size if horizon is None else min(series.steps.size, cut + horizon)
    if cut < MIN_POINTS or cut >= end:
        raise AnalysisError(
            f"origin: expected at least {MIN_POINTS} points to fit and 1 to score, got {cut} and {max(0, end - cut)}"
        )
    window_steps, window_perf = series.steps[:cut], series.fitted[:cut]
    fit = series.fit_law(cut, options)
    test_steps = series.steps[cut:end]
    predictions = {
        "law": fit.predict(series.entropy[cut:end]),
        "last_value": np.full(test_steps.size, window_perf[-1]),
        "window_mean": np.full(test_steps.size, window_perf.mean()),
        "linear_trend": _linear_trend(window_steps, window_perf, test_steps),
    }
    return OriginScore(float(series.steps[cut - 1]), fit, test_steps, series.actual[cut:end], predictions)


def _linear_trend(steps, values, at):
    """Least-squares line through (steps, values), evaluated at ``at``. (k,), (k,) -> (m,)."""
    ds = steps - steps.mean()
    denominator = float(ds @ ds)
    slope = float(ds @ (values - values.mean())) / denominator if denominator > 0 else 0.0
    return values.mean() + slope * (at - steps.mean())


def skill_score(law_rmse: float, baseline_rmses: dict[str, float]) -> float:
    """1 - RMSE_law / RMSE_best_baseline (1 is perfect, <= 0 no better than a naive forecast)."""
    best = min(baseline_rmses.values())
    if best == 0.0:
        return 0.0 if law_rmse == 0.0 else -math.inf
    return 1.0 - law_rmse / best


@dataclass(frozen=True)
class EarlyPrediction(JsonResult):
    """The law fitted on the first ``fraction`` of a run's steps, scored on the rest."""

    fraction: float
    cut_step: float
    fit: LawFit
    n_fit: int
    n_test: int
    law_rmse: float
    law_final_error: float
    baseline_rmse: dict[str, float]
    baseline_final_error: dict[str, float]
    best_baseline: str
    skill: float
    table: pd.DataFrame = field(repr=False, compare=False)
    regime_exit_step: float | None = None


def early_prediction(run_or_df, fraction: float = 0.15, *, options: LawOptions | None = None,
                     **overrides) -> EarlyPrediction:
    """Fit on the steps up to ``first + fraction * (last - first)`` and score on the steps after.

    ``options`` / keywords: how to fit the law (``LawOptions``).
    """
    if not 0.0 < fraction < 1.0:
        raise InputError(f"fraction: expected a value in (0, 1), got {fraction}")
    options = LawOptions.of(options, **overrides)
    series = run_series(run_or_df, options)
    if series.steps.size == 0:
        raise AnalysisError(f"performance {series.performance_column!r}: no step has both entropy and performance")
    cut_step = series.steps[0] + fraction * (series.steps[-1] - series.steps[0])
    cut = int(np.searchsorted(series.steps, cut_step, side="right"))
    if cut < MIN_POINTS or cut >= series.steps.size:
        raise AnalysisError(
            f"fraction: the first {fraction:g} of the run (steps <= {cut_step:g}) holds {cut} "
            f"{series.performance_column} point(s) and leaves {series.steps.size - cut} to score; need >= "
            f"{MIN_POINTS} and >= 1: use another fraction or performance column"
        )
    score = score_origin(series, cut, options)
    baseline_rmse = {name: score.rmse(name) for name in BASELINES}
    table = pd.DataFrame({"step": score.test_steps, "actual": score.actual, **score.predictions})
    return EarlyPrediction(
        fraction=float(fraction),
        cut_step=float(cut_step),
        fit=score.fit,
        n_fit=cut,
        n_test=int(score.test_steps.size),
        law_rmse=score.rmse("law"),
        law_final_error=score.final_error("law"),
        baseline_rmse=baseline_rmse,
        baseline_final_error={name: score.final_error(name) for name in BASELINES},
        best_baseline=min(baseline_rmse, key=baseline_rmse.get),
        skill=skill_score(score.rmse("law"), baseline_rmse),
        table=table,
        regime_exit_step=None if series.regime_exit is None else series.regime_exit.step,
    )


@dataclass(frozen=True)
class Backtest(JsonResult):
    """Rolling-origin evaluation: per-origin errors and the aggregate skill.

    Aggregate RMSE per method = sqrt(mean over origins of each origin's MSE), so every cut
    point counts once whatever its horizon. ``skill`` aggregates every origin (can the law
    predict this run from any point, the early ones included); ``recent_skill`` aggregates the
    later half of the origins only: how well fits like the current one have predicted what came
    next, which is what the trust verdict on the current ceiling needs (early origins, fitted
    before entropy starts to fall, say little about it). NaN when no origin could be scored.
    """

    table: pd.DataFrame = field(repr=False, compare=False)
    n_origins: int
    law_rmse: float
    baseline_rmse: dict[str, float]
    best_baseline: str | None
    skill: float
    performance_column: str
    regime_exit_step: float | None = None
    n_recent: int = 0
    recent_law_rmse: float = math.nan
    recent_baseline_rmse: dict[str, float] = field(default_factory=dict)
    recent_skill: float = math.nan


def backtest(
    run_or_df,
    origins=None,
    *,
    options: LawOptions | None = None,
    horizon: int | None = None,
    min_fit: int = MIN_FIT_POINTS,
    **overrides,
) -> Backtest:
    """Rolling-origin backtest: for each origin k, fit on steps <= k and score on steps > k.

    ``origins``: None (up to 40 evenly spaced cut points, the first after max(``min_fit``, 10%
    of the points)), an int (that many evenly spaced), or a sequence of step values. ``horizon``: score only the
    next ``horizon`` points after each origin (None: all of them). ``options`` / keywords: how to
    fit the law (``LawOptions``; the per-origin fits draw no bootstrap intervals).
    """
    options = LawOptions.of(options, **overrides)
    return backtest_series(run_series(run_or_df, options), options, origins, horizon=horizon, min_fit=min_fit)


def backtest_series(series: RunSeries, options: LawOptions, origins=None, *, horizon=None,
                    min_fit=MIN_FIT_POINTS) -> Backtest:
    """The rolling-origin backtest of an already built series (``backtest``, ``forecast_ceiling``)."""
    options = replace(options, n_bootstrap=0)  # each origin is scored on its point forecast
    rows, squared = [], {m: [] for m in METHODS}
    first_cut = max(min_fit, MIN_POINTS, math.ceil(FIRST_ORIGIN_FRACTION * series.steps.size))
    for cut in _origin_cuts(series.steps, origins, first_cut, series.steps.size - 1):
        try:
            score = score_origin(series, cut, options, horizon=horizon)
        except AnalysisError:
            continue  # too few points after the warm-up, or constant entropy in this window
        row = {"origin_step": score.origin_step, "n_fit": score.fit.n, "n_test": int(score.test_steps.size),
               "ceiling": score.fit.ceiling, "r2": score.fit.r2}
        for method in METHODS:
            row[f"{method}_rmse"] = score.rmse(method)
            row[f"{method}_final_error"] = score.final_error(method)
            squared[method].append(row[f"{method}_rmse"] ** 2)
        row["skill"] = skill_score(row["law_rmse"], {b: row[f"{b}_rmse"] for b in BASELINES})
        rows.append(row)
    columns = ["origin_step", "n_fit", "n_test", "ceiling", "r2",
               *[f"{m}_{e}" for m in METHODS for e in ("rmse", "final_error")], "skill"]
    table = pd.DataFrame(rows, columns=columns)
    exit_step = None if series.regime_exit is None else series.regime_exit.step
    if not rows:
        return Backtest(table, 0, math.nan, {b: math.nan for b in BASELINES}, None, math.nan,
                        series.performance_column, exit_step)
    aggregate = {m: float(np.sqrt(np.mean(squared[m]))) for m in METHODS}
    baseline_rmse = {b: aggregate[b] for b in BASELINES}
    n_recent = (len(rows) + 1) // 2
    recent = {m: float(np.sqrt(np.mean(squared[m][-n_recent:]))) for m in METHODS}
    recent_baselines = {b: recent[b] for b in BASELINES}
    return Backtest(
        table=table,
        n_origins=len(rows),
        law_rmse=aggregate["law"],
        baseline_rmse=baseline_rmse,
        best_baseline=min(baseline_rmse, key=baseline_rmse.get),
        skill=skill_score(aggregate["law"], baseline_rmse),
        performance_column=series.performance_column,
        regime_exit_step=exit_step,
        n_recent=n_recent,
        recent_law_rmse=recent["law"],
        recent_baseline_rmse=recent_baselines,
        recent_skill=skill_score(recent["law"], recent_baselines),
    )


def _origin_cuts(steps: np.ndarray, origins, first_cut: int, last_cut: int) -> list[int]:
    """Cut indices in [first_cut, last_cut] (points [0, cut) are fitted) for the requested origins.

    A step value k as origin means "fit on steps <= k": its cut is the number of points <= k.
    """
    if origins is None or (isinstance(origins, int) and not isinstance(origins, bool)):
        count = DEFAULT_MAX_ORIGINS if origins is None else origins
        if count < 1:
            raise InputError(f"origins: expected a count >= 1 or a sequence of steps, got {origins}")
        if last_cut < first_cut:
            return []
        cuts = np.linspace(first_cut, last_cut, num=min(count, last_cut - first_cut + 1)).round().astype(int)
        return sorted(set(cuts))
    try:
        origin_steps = np.asarray(list(origins), dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"origins: expected None, a count or a sequence of step values, got {origins!r}") from None
    cuts = np.searchsorted(steps, origin_steps, side="right")
    return sorted({int(c) for c in cuts if first_cut <= c <= last_cut})


def ceiling_curve(
    run_or_df,
    origins=None,
    *,
    options: LawOptions | None = None,
    min_fit: int = MIN_FIT_POINTS,
    **overrides,
) -> pd.DataFrame:
    """The predicted ceiling (with its interval) as a function of the steps seen.

    One row per origin: ``step`` (last step seen), ``n_points``, ``ceiling``, ``ceiling_lo``,
    ``ceiling_hi``, ``r2``, ``reliable``. Origins as in ``backtest``; the last origin is the
    whole run. ``options`` / keywords: how to fit the law (``LawOptions``; 200 bootstrap
    resamples per origin unless told otherwise).
    """
    options = LawOptions.of(options, {"n_bootstrap": CURVE_BOOTSTRAP}, **overrides)
    series = run_series(run_or_df, options)
    rows = []
    cuts = _origin_cuts(series.steps, origins, max(min_fit, MIN_POINTS), series.steps.size)
    for cut in cuts:
        try:
            fit = series.fit_law(cut, options)
        except AnalysisError:
            continue
        rows.append({"step": float(series.steps[cut - 1]), "n_points": fit.n, "ceiling": fit.ceiling,
                     "ceiling_lo": fit.ceiling_ci[0], "ceiling_hi": fit.ceiling_ci[1], "r2": fit.r2,
                     "reliable": fit.reliable})
    return pd.DataFrame(rows, columns=["step", "n_points", "ceiling", "ceiling_lo", "ceiling_hi", "r2", "reliable"])
