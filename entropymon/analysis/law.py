"""Fit the entropy-performance law R = -a*e^H + b, with bootstrap intervals and a verdict.

Why: Cui et al. 2025 found performance R and policy entropy H related by R = -a*e^H + b, so the
performance ceiling at H = 0 is ``b - a``. The law is linear in (a, b) given x = e^H, so ordinary
least squares fits it exactly and fast. A number without its uncertainty misleads, so every fit
carries percentile intervals from a **pairs bootstrap** (resample (H, R) points with
replacement): unlike a residual bootstrap it does not assume the law is the right shape or the
noise is homoscedastic, so when the law does not describe the data the intervals widen instead
of staying confidently narrow. All resamples are solved at once with numpy (no Python loop).

A poor fit stays visible: ``reliable`` is False, with the reasons in ``problems``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np

from entropymon.analysis._bootstrap import blocks as bootstrap_blocks
from entropymon.analysis._frame import (
    choose_performance,
    column_values,
    smooth,
    smoothing_label,
    step_frame,
)
from entropymon.analysis.bounds import check_bounds, format_bounds, resolve_bounds
from entropymon.analysis.regimes import find_regime_exit, warmup_length
from entropymon.errors import AnalysisError, InputError
from entropymon.results import JsonResult

MIN_POINTS = 3
RELIABLE_MIN_POINTS = 5
RELIABLE_MIN_R2 = 0.5


@dataclass(frozen=True)
class LawOptions:
    """How to fit the law on a run: the one argument list of every run-level fit.

    ``performance``: a column or "auto" (``eval_accuracy`` with >= 3 values, else
    ``reward_mean``, else ``trl/reward``). ``entropy``: the entropy column. ``smoothing``: None,
    an EMA alpha in (0, 1) or a trailing window (int), applied to entropy and performance alike.
    ``warmup``: "auto" (drop the points before an early entropy peak, see ``regimes``), an int
    number of leading points to drop, or None. ``bounds``: the metric's range, "auto"
    (inferred, see ``bounds``), None or (low, high). ``n_bootstrap``, ``ci``, ``seed``: the pairs
    bootstrap of the intervals (0 resamples: no intervals).

    ``fit_run_law``, ``forecast_ceiling``, ``early_prediction``, ``backtest`` and
    ``ceiling_curve`` take ``options=LawOptions(...)`` or the same names as keywords
    (``forecast_ceiling(run, smoothing=0.3)``); keywords override the options given.
    """

    performance: str = "auto"
    entropy: str = "entropy_mean"
    smoothing: object = None
    warmup: object = "auto"
    bounds: object = "auto"
    n_bootstrap: int = 1000
    ci: float = 0.95
    seed: int = 0

    @classmethod
    def of(cls, options: LawOptions | None = None, defaults: dict | None = None, **overrides) -> LawOptions:
        """``options`` (or the defaults, updated with a function's own ``defaults``) with ``overrides``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {unknown}; the law's options are {sorted(known)}")
        if options is not None and not isinstance(options, LawOptions):
            raise InputError(f"options: expected a LawOptions, got {type(options).__name__}")
        base = options if options is not None else cls(**(defaults or {}))
        return replace(base, **overrides)


@dataclass(frozen=True)
class LawFit(JsonResult):
    """A fit of R = -a*e^H + b: coefficients, ceiling b - a (R at H = 0), quality, intervals.

    ``residuals``, ``entropy``, ``performance`` (and ``steps`` for run fits) are the (n,) arrays
    of the points actually fitted, in the order given. Intervals are percentile intervals of a
    pairs bootstrap at level ``ci``.
    """

    a: float
    b: float
    ceiling: float
    r2: float
    rmse: float
    n: int
    a_ci: tuple[float, float]
    b_ci: tuple[float, float]
    ceiling_ci: tuple[float, float]
    ci: float
    n_bootstrap: int
    bounds: tuple[float, float] | None
    ceiling_in_bounds: bool | None
    reliable: bool
    problems: tuple[str, ...]
    n_dropped_nan: int = 0
    residuals: np.ndarray = field(default=None, repr=False, compare=False)
    entropy: np.ndarray = field(default=None, repr=False, compare=False)
    performance: np.ndarray = field(default=None, repr=False, compare=False)
    # provenance, filled by fit_run_law
    steps: np.ndarray | None = field(default=None, repr=False, compare=False)
    entropy_column: str | None = None
    performance_column: str | None = None
    smoothing: str = "none"
    warmup_excluded: int = 0
    first_step: float | None = None
    last_step: float | None = None
    regime_exit_step: float | None = None
    notes: tuple[str, ...] = ()

    JSON_EXTRA = ("residuals", "entropy", "performance", "steps")  # the fitted points too

    def predict(self, entropy):
        """Predicted performance -a*e^H + b at entropy ``entropy`` (scalar or array, nats).

        Not clipped to ``bounds``: a value outside the range is information, not noise.
        """
        values = np.asarray(entropy, dtype=np.float64)
        predicted = self.b - self.a * np.exp(values)
        return float(predicted) if predicted.ndim == 0 else predicted

    @property
    def ceiling_ci_width(self) -> float:
        return self.ceiling_ci[1] - self.ceiling_ci[0]


def fit_entropy_law(
    entropy,
    performance,
    *,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    bounds=None,
) -> LawFit:
    """Least-squares fit of R = -a*e^H + b to paired (H, R) values.

    ``entropy``, ``performance``: (n,) sequences of equal length; pairs with a NaN/inf in either
    are dropped (counted in ``n_dropped_nan``). ``bounds``: the metric's (low, high) range or
    None; a ceiling outside it is flagged. ``n_bootstrap`` = 0 skips the intervals (NaN).
    """
    entropy = _as_1d(entropy, "entropy")
    performance = _as_1d(performance, "performance")
    if entropy.shape != performance.shape:
        raise AnalysisError(
            f"entropy, performance: expected equal lengths, got {entropy.size} and {performance.size}"
        )
    if not 0.0 < ci < 1.0:
        raise InputError(f"ci: expected a level in (0, 1), got {ci}")
    if isinstance(n_bootstrap, bool) or int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise InputError(f"n_bootstrap: expected an int >= 0, got {n_bootstrap!r}")
    bounds = check_bounds(bounds)
    keep = np.isfinite(entropy) & np.isfinite(performance)
    n_dropped = int(entropy.size - keep.sum())
    h, r = entropy[keep], performance[keep]  # (n,), (n,)
    if h.size < MIN_POINTS:
        raise AnalysisError(
            f"entropy, performance: expected at least {MIN_POINTS} finite (H, R) pairs, got {h.size}"
            + (f" ({n_dropped} dropped for NaN/inf)" if n_dropped else "")
        )
    x = np.exp(h)  # (n,)
    if np.ptp(x) <= 1e-12 * np.max(np.abs(x)):
        raise AnalysisError(
            f"entropy: expected varying values to fit the law, got a constant {h[0]:.6g} nats "
            f"over all {h.size} points"
        )
    a, b = _ols(x, r)
    residuals = r - (b - a * x)
    ss_res = float(residuals @ residuals)
    ss_tot = float(((r - r.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    a_ci, b_ci, ceiling_ci = _bootstrap_intervals(x, r, int(n_bootstrap), ci, seed)
    ceiling = b - a
    in_bounds = None if bounds is None else bool(bounds[0] <= ceiling <= bounds[1])
    fit = LawFit(
        a=a, b=b, ceiling=ceiling, r2=r2, rmse=math.sqrt(ss_res / h.size), n=int(h.size),
        a_ci=a_ci, b_ci=b_ci, ceiling_ci=ceiling_ci, ci=float(ci), n_bootstrap=int(n_bootstrap),
        bounds=bounds, ceiling_in_bounds=in_bounds, reliable=False, problems=(),
        n_dropped_nan=n_dropped, residuals=residuals, entropy=h, performance=r,
    )
    problems = reliability_problems(fit)
    return replace(fit, reliable=not problems, problems=problems)


def reliability_problems(fit: LawFit) -> tuple[str, ...]:
    """Plain-language reasons the fit should not be trusted (empty when it looks sound)."""
    problems = []
    if fit.n < RELIABLE_MIN_POINTS:
        problems.append(f"only {fit.n} points (need >= {RELIABLE_MIN_POINTS})")
    if not math.isfinite(fit.r2):
        problems.append("performance is constant: nothing for the law to explain")
    elif fit.r2 < RELIABLE_MIN_R2:
        problems.append(f"R² {fit.r2:.2f} < {RELIABLE_MIN_R2}: the law explains little of the variation")
    if not math.isfinite(fit.a_ci[0]):
        problems.append("no bootstrap interval (n_bootstrap=0 or too few distinct points)")
    elif fit.a_ci[0] <= 0:
        problems.append(
            f"a's interval [{fit.a_ci[0]:.3g}, {fit.a_ci[1]:.3g}] reaches <= 0: performance does not "
            "clearly rise as entropy falls"
        )
    if fit.ceiling_in_bounds is False:
        problems.append(f"ceiling {fit.ceiling:.3g} lies outside the metric's range {format_bounds(fit.bounds)}")
    span = (fit.bounds[1] - fit.bounds[0]) if fit.bounds else float(np.ptp(fit.performance))
    width = fit.ceiling_ci_width
    if math.isfinite(width) and span > 0 and width > span:
        where = f"range {format_bounds(fit.bounds)}" if fit.bounds else f"observed span {span:.3g}"
        problems.append(
            f"ceiling interval [{fit.ceiling_ci[0]:.3g}, {fit.ceiling_ci[1]:.3g}] is wider than the metric's {where}"
        )
    return tuple(problems)


def fit_run_law(
    run_or_df,
    *,
    options: LawOptions | None = None,
    steps=None,
    stop_at_regime_exit: bool = True,
    **overrides,
) -> LawFit:
    """Fit the law on a run's step metrics, recording which columns and choices were used.

    ``options`` / keywords: see ``LawOptions`` (performance, entropy, smoothing, warmup,
    bounds, n_bootstrap, ci, seed). ``steps``: None, a ``slice`` over step values (start
    inclusive, stop exclusive) or a sequence of step values. With ``stop_at_regime_exit``,
    points from the step the run leaves the law's regime onward are not fitted.
    """
    options = LawOptions.of(options, **overrides)
    frame = step_frame(run_or_df)
    frame = _select_steps(frame, steps)
    performance_column = choose_performance(frame, options.performance)
    raw_perf = column_values(frame, performance_column, argument="performance")
    raw_entropy = column_values(frame, options.entropy, argument="entropy")
    resolved_bounds = resolve_bounds(options.bounds, performance_column, raw_perf, run_or_df)
    step_values = frame["step"].to_numpy(dtype=np.float64)
    return fit_series_law(
        step_values, smooth(raw_entropy, options.smoothing), smooth(raw_perf, options.smoothing),
        entropy_column=options.entropy, performance_column=performance_column,
        smoothing=smoothing_label(options.smoothing), warmup=options.warmup, bounds=resolved_bounds,
        stop_at_regime_exit=stop_at_regime_exit, n_bootstrap=options.n_bootstrap, ci=options.ci, seed=options.seed,
    )


def fit_series_law(
    steps,
    entropy,
    performance,
    *,
    entropy_column: str | None = None,
    performance_column: str | None = None,
    smoothing: str = "none",
    warmup="auto",
    bounds=None,
    stop_at_regime_exit: bool = True,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> LawFit:
    """The run-level fit on (already smoothed) step-ordered arrays: warm-up, regime, provenance.

    ``steps``, ``entropy``, ``performance``: (n,) in step order. Used by ``fit_run_law`` and
    by the backtests, which cut the arrays at each origin.
    """
    steps = np.asarray(steps, dtype=np.float64)
    paired = np.isfinite(entropy) & np.isfinite(performance)
    n_dropped = int(paired.size - paired.sum())
    if not paired.any():
        raise AnalysisError(
            f"entropy {entropy_column!r}, performance {performance_column!r}: expected steps where "
            f"both have values, got none among {paired.size} steps"
        )
    s, h, r = steps[paired], entropy[paired], performance[paired]
    notes = []
    if n_dropped:
        notes.append(f"{n_dropped} steps without both entropy and performance were skipped")
    regime_exit = None
    if stop_at_regime_exit:
        regime_exit = find_regime_exit(s, h, r, bounds=bounds)
        if regime_exit is not None:
            s, h, r = s[: regime_exit.index], h[: regime_exit.index], r[: regime_exit.index]
            notes.append(f"{regime_exit.message}; points from there on are not fitted")
    n_warmup = _warmup_points(warmup, h)
    if n_warmup >= h.size:
        raise AnalysisError(
            f"warmup: expected fewer warm-up points to leave out than the {h.size} points there are "
            f"to fit, got {n_warmup}"
        )
    if n_warmup:
        notes.append(
            f"excluded {n_warmup} warm-up point(s) before step {s[n_warmup]:g}, where entropy "
            f"peaked at {h[n_warmup]:.3g} nats before falling"
        )
        s, h, r = s[n_warmup:], h[n_warmup:], r[n_warmup:]
    if h.size < MIN_POINTS:
        why = f"; {notes[-1]}" if notes else ""
        raise AnalysisError(
            f"entropy {entropy_column!r}, performance {performance_column!r}: expected at least "
            f"{MIN_POINTS} points to fit, got {h.size}{why}"
        )
    fit = fit_entropy_law(h, r, n_bootstrap=n_bootstrap, ci=ci, seed=seed, bounds=bounds)
    problems = fit.problems
    if regime_exit is not None:
        problems = (regime_exit.message, *problems)
    return replace(
        fit,
        steps=s,
        n_dropped_nan=n_dropped,
        entropy_column=entropy_column,
        performance_column=performance_column,
        smoothing=smoothing,
        warmup_excluded=n_warmup,
        first_step=float(s[0]),
        last_step=float(s[-1]),
        regime_exit_step=None if regime_exit is None else regime_exit.step,
        problems=problems,
        reliable=not problems,
        notes=tuple(notes),
    )


def _warmup_points(warmup, entropy: np.ndarray) -> int:
    if warmup is None:
        return 0
    if isinstance(warmup, str):
        if warmup != "auto":
            raise InputError(f"warmup: expected 'auto', an int >= 0 or None, got {warmup!r}")
        return warmup_length(entropy)
    if isinstance(warmup, bool) or int(warmup) != warmup or warmup < 0:
        raise InputError(f"warmup: expected 'auto', an int >= 0 or None, got {warmup!r}")
    return int(warmup)


def _select_steps(frame, steps):
    if steps is None:
        return frame
    values = frame["step"]
    if isinstance(steps, slice):
        if steps.step is not None:
            raise InputError(f"steps: expected a slice of step values without a stride, got {steps}")
        keep = np.ones(len(frame), dtype=bool)
        if steps.start is not None:
            keep &= (values >= steps.start).to_numpy()
        if steps.stop is not None:
            keep &= (values < steps.stop).to_numpy()
    else:
        keep = values.isin(list(steps)).to_numpy()
    selected = frame[keep].reset_index(drop=True)
    if selected.empty:
        raise AnalysisError(
            f"steps: expected to select some of the run's steps {values.min():g}..{values.max():g}, "
            f"got none for {steps}"
        )
    return selected


def _as_1d(values, argument: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{argument}: expected numbers, got {type(values).__name__}") from None
    if array.ndim != 1:
        raise InputError(f"{argument}: expected a 1-D sequence, got shape {array.shape}")
    return array


def _ols(x: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    """(a, b) of r = b - a*x by least squares. ``x``, ``r``: (n,)."""
    dx = x - x.mean()
    slope = float(dx @ (r - r.mean())) / float(dx @ dx)
    return -slope, float(r.mean() - slope * x.mean())


def _bootstrap_intervals(x, r, n_bootstrap, ci, seed):
    """Percentile intervals of a, b and b - a over ``n_bootstrap`` pairs resamples, all at once."""
    nan_interval = (math.nan, math.nan)
    if n_bootstrap == 0:
        return nan_interval, nan_interval, nan_interval
    rng = np.random.default_rng(seed)
    spread = 1e-12 * float(((x - x.mean()) ** 2).sum())
    slope, intercept = np.empty(n_bootstrap), np.empty(n_bootstrap)
    for rows in bootstrap_blocks(n_bootstrap, x.size):
        index = rng.integers(0, x.size, size=(rows.stop - rows.start, x.size))  # the stream as one (B, n) draw
        xs, rs = x[index], r[index]  # (b, n)
        x_mean = xs.mean(axis=1, keepdims=True)
        dx = xs - x_mean  # (b, n)
        sxx = np.einsum("bn,bn->b", dx, dx)  # (b,)
        sxr = np.einsum("bn,bn->b", dx, rs - rs.mean(axis=1, keepdims=True))  # (b,)
        # A resample that repeats one entropy value has no slope: leave it out.
        with np.errstate(divide="ignore", invalid="ignore"):
            slope[rows] = np.where(sxx <= spread, np.nan, sxr / sxx)
        intercept[rows] = rs.mean(axis=1) - slope[rows] * x_mean[:, 0]
    if np.isnan(slope).all():
        return nan_interval, nan_interval, nan_interval
    tail = (1.0 - ci) / 2.0
    quantiles = [tail, 1.0 - tail]
    a_ci = tuple(float(v) for v in np.nanquantile(-slope, quantiles))
    b_ci = tuple(float(v) for v in np.nanquantile(intercept, quantiles))
    ceiling_ci = tuple(float(v) for v in np.nanquantile(intercept + slope, quantiles))
    return a_ci, b_ci, ceiling_ci
