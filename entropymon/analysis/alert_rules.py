"""The collapse rules: what each warns about, the condition that says so, and its evidence.

Each rule is a function ``(RuleContext, params) -> Alert | None`` that reads only values at or
before the step it reports (trailing means, running maxima, baselines taken from the first
``start_points`` logged values and never reported before the last of them). Why each rule exists:

- ``entropy_collapse``: entropy spent. Cui et al. 2025 show performance saturates once entropy is
  used up (R = -a e^H + b); the alert explains *why* entropy fell with the covariance
  (positive-advantage tokens' share of sum Cov_i, the share of steps with Cov(log pi, A) > 0) -
  the covariance is positive in nearly every RL run, so it is evidence, never an alert by itself.
- ``entropy_floor_forecast``: when entropy reaches that floor at its current rate (linear fit of
  the last ``window`` points), so a user can act before it does.
- ``divergence``: the run blows up - entropy surging far above its start and/or performance
  collapsing from its best; both are reported with the step each began. Performance collapse is
  critical; an entropy surge alone is a warning (a rise while performance holds is a known
  "falls then rises" pattern, e.g. the public Qwen3.5-9B seed-42 run).
- ``saturated``: performance pinned near the top of its range - groups are all-correct and give
  no gradient; further steps teach little.
- ``plateau``: no new best performance for ``window`` points while entropy is still being
  consumed (a significant trend down across the whole window, judged against its noise, not two
  short means that noise can separate) - the trade the law describes has stopped paying.
- ``zero_variance_waste``: the share of rollouts in groups whose rewards all agree (no GRPO
  advantage, no gradient), measured exactly from the samples table when the run has one and split
  into all-correct (too easy) and all-wrong (too hard).
- ``pass_at_k_converging``: pass@k - pass@1 shrinking: samples of a prompt become copies.
- ``ess_low``: importance-weight ESS collapsing: updates far off-policy.
- ``low_headroom``: a trustworthy ceiling barely above current performance.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from scipy import stats

from entropymon.analysis._frame import choose_performance, column_values, finite_count
from entropymon.analysis.alert_types import Alert, Rule, RuleContext
from entropymon.analysis.bounds import resolve_bounds
from entropymon.analysis.regimes import first_persistent
from entropymon.analysis.remedies import remedies_for
from entropymon.analysis.rule_params import Limit
from entropymon.errors import AnalysisError
from entropymon.registry import ENTROPY_COLUMNS, pass_at_k_columns

_ZERO_STD_COLUMNS = ("zero_std_group_frac", "trl/frac_reward_zero_std")


# -- series helpers ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Series:
    """A column's finite points in step order; ``smoothed`` is the trailing mean over ``window``."""

    column: str
    steps: np.ndarray  # (n,)
    values: np.ndarray  # (n,)
    smoothed: np.ndarray  # (n,)


def series(frame: pd.DataFrame, column: str, window: int = 1) -> Series:
    values = column_values(frame, column)
    present = np.isfinite(values)
    steps, values = frame["step"].to_numpy(dtype=np.float64)[present], values[present]
    smoothed = pd.Series(values).rolling(int(window), min_periods=1).mean().to_numpy()
    return Series(column, steps, values, smoothed)


@dataclass(frozen=True)
class Baseline:
    """Where a series started: the mean of its first ``n`` points (steps ``first``..``last``)."""

    value: float
    n: int
    first: float
    last: float

    @property
    def words(self) -> str:
        where = f"step {self.first:g}" if self.n == 1 else f"steps {self.first:g}-{self.last:g}"
        return f"{self.value:.3g} (mean of its first {self.n} logged points, {where})"

    def to_dict(self) -> dict:
        return {"baseline": self.value, "baseline_points": self.n, "baseline_steps": [self.first, self.last]}


def baseline(s: Series, n: int) -> Baseline:
    n = min(int(n), s.values.size)
    return Baseline(float(s.values[:n].mean()), n, float(s.steps[0]), float(s.steps[n - 1]))


def first_index(flags: np.ndarray) -> int | None:
    hits = np.flatnonzero(flags)
    return int(hits[0]) if hits.size else None


def fell_below_baseline(s: Series, p: dict, unit: str = "") -> tuple[int, str, dict] | None:
    """The first point whose trailing mean (over ``p["window"]``) is below ``p["threshold"]`` of the
    series' start (the mean of its first ``p["start_points"]`` points), never one inside that baseline:
    (index, words saying so from the value on, their evidence), or None when it never falls there or
    the start is not positive (nothing to be a fraction of). ``unit`` follows the value in the words."""
    base = baseline(s, p["start_points"])
    if base.value <= 0:
        return None
    limit = p["threshold"] * base.value
    flags = s.smoothed < limit
    flags[: base.n] = False
    i = first_index(flags)
    if i is None:
        return None
    words = (f"{s.smoothed[i]:.3g}{unit} at step {s.steps[i]:g} (mean of the last {p['window']} points), "
             f"below {p['threshold']:.0%} of its start {base.words}")
    return i, words, {"value": s.smoothed[i], "threshold": limit, **base.to_dict()}


def full_window(flags: np.ndarray, window: int) -> np.ndarray:
    """``flags`` with the points before the trailing mean's window is full cleared: a mean of the
    first one or two steps is not yet the rule's quantity (it made a rule fire at step 1)."""
    flags = flags.copy()
    flags[: int(window) - 1] = False
    return flags


def entropy_series(ctx: RuleContext, min_points: int, window: int = 1) -> Series | None:
    """The entropy the user asked for, else the first aggregate the run has (at least ``min_points``)."""
    column = next((c for c in (ctx.entropy, *ENTROPY_COLUMNS) if finite_count(ctx.frame, c) >= min_points), None)
    return None if column is None else series(ctx.frame, column, window)


def performance_columns(ctx: RuleContext) -> list[str]:
    """The law's performance column, and the training reward when that is another column.

    Held-out accuracy is measured every few steps; the reward is there at every step, so a collapse
    is often seen there first."""
    try:
        chosen = choose_performance(ctx.frame, ctx.performance)
    except AnalysisError:
        return []
    columns = [chosen]
    if ctx.performance == "auto" and chosen != "reward_mean" and finite_count(ctx.frame, "reward_mean") > 0:
        columns.append("reward_mean")
    return columns


def metric_range(ctx: RuleContext, s: Series):
    """(low, high) of the performance metric, or None when unknown."""
    try:
        return resolve_bounds(ctx.bounds, s.column, s.values, ctx.run_or_df)
    except Exception:  # noqa: BLE001 - a bad bounds argument is reported by the forecast, not here
        return None


UNKNOWN_RANGE_FLOOR = 1.0  # the width of a verifier reward's range [0, 1]


def running_span(values: np.ndarray, bounds) -> np.ndarray:
    """At each point, the metric's range if known, else the largest of the span covered so far, the
    largest absolute value so far and 1 (so a noisy plateau around 0.9 is not read as a collapse, nor
    the noise of a reward still near 0.2 in a run's first steps - measured on the demo, whose live
    monitor cannot see that its rewards are 0/1). (n,)"""
    if bounds is not None:
        return np.full(values.size, float(bounds[1] - bounds[0]))
    spread = np.maximum.accumulate(values) - np.minimum.accumulate(values)
    return np.maximum(np.maximum(spread, np.maximum.accumulate(np.abs(values))), UNKNOWN_RANGE_FLOOR)


def _alert(rule, severity, step, visible, message, evidence, plot, remedy_key=None) -> Alert:
    return Alert(rule, severity, step, visible, message, {"text": message, **evidence}, plot,
                 remedies_for(remedy_key or rule) if severity != "info" or remedy_key else ())


# -- covariance as evidence ------------------------------------------------------------------

def covariance_evidence(frame: pd.DataFrame, up_to_step: float) -> tuple[str, dict]:
    """Why entropy fell, from the covariance up to ``up_to_step``: a sentence and its numbers.

    dH ~ -eta Cov(log pi, A) (Cui et al. 2025): the share of steps with a positive covariance, and
    the share of sum Cov_i carried by tokens with a positive advantage (arXiv 2511.05993)."""
    rows = frame[frame["step"] <= up_to_step]
    parts, numbers = [], {}
    if finite_count(rows, "cov_logp_adv") > 0:
        cov = column_values(rows, "cov_logp_adv")
        cov = cov[np.isfinite(cov)]
        numbers["cov_positive_share"] = float(np.mean(cov > 0))
        numbers["cov_mean"] = float(cov.mean())
        parts.append(f"Cov(log pi, A) was positive on {np.mean(cov > 0):.0%} of the {cov.size} steps so far "
                     f"(mean {cov.mean():.3g}), and entropy falls by about lr x Cov at each step")
    if finite_count(rows, "cov_sum_pos_adv") > 0 and finite_count(rows, "cov_sum_neg_adv") > 0:
        pos = float(np.nansum(column_values(rows, "cov_sum_pos_adv")))
        neg = float(np.nansum(column_values(rows, "cov_sum_neg_adv")))
        total = pos + neg
        if total > 0:
            numbers["cov_pos_adv_share"] = pos / total
            parts.append(f"tokens with a positive advantage carry {pos / total:.0%} of sum Cov_i "
                         f"({pos:.3g} of {total:.3g})")
    return ("; ".join(parts) + "." if parts else ""), numbers


# -- the rules -------------------------------------------------------------------------------

def entropy_collapse(ctx: RuleContext, p: dict) -> Alert | None:
    s = entropy_series(ctx, p["start_points"] + 1, p["window"])
    if s is None:
        return None
    fell = fell_below_baseline(s, p, " nats")
    if fell is None:
        return None
    i, words, numbers = fell
    message = f"Entropy ({s.column}) fell to {words}."
    why, cov = covariance_evidence(ctx.frame, s.steps[i])
    evidence = {"column": s.column, **numbers, **cov}
    if why:
        evidence["text_why"] = why
    return _alert("entropy_collapse", "warning", s.steps[i], s.steps[i], message + (" " + why if why else ""),
                  evidence, "entropy")


def entropy_floor_forecast(ctx: RuleContext, p: dict) -> Alert | None:
    s = entropy_series(ctx, max(p["window"], p["start_points"] + 1))
    if s is None:
        return None
    base = baseline(s, p["start_points"])
    floor = p["threshold"] * base.value
    current = float(s.values[-3:].mean())
    if base.value <= 0 or current <= floor:
        return None  # already there: entropy_collapse says so
    steps, values = s.steps[-p["window"]:], s.values[-p["window"]:]
    fit = stats.linregress(steps, values)
    if not (fit.slope < 0 and fit.pvalue < 0.05):
        return None  # not falling clearly at the current rate
    at = float(steps[-1] + (current - floor) / -fit.slope)
    message = (f"At its current rate ({fit.slope:.3g} nats/step, fitted on steps {steps[0]:g}-{steps[-1]:g}) entropy "
               f"({s.column}, now {current:.3g}) reaches its floor {floor:.3g} nats ({p['threshold']:.0%} of its start "
               f"{base.value:.3g}) at about step {at:.0f}, {at - steps[-1]:.0f} steps from now.")
    evidence = {"column": s.column, "value": current, "floor": floor, "rate_per_step": fit.slope,
                "rate_pvalue": fit.pvalue, "forecast_step": at, "fit_steps": [steps[0], steps[-1]], **base.to_dict()}
    return _alert("entropy_floor_forecast", "info", steps[-1], steps[-1], message, evidence, "entropy",
                  "entropy_floor_forecast")


def _surge(ctx: RuleContext, p: dict):
    s = entropy_series(ctx, p["start_points"] + p["persist"])
    if s is None:
        return None
    base = baseline(s, p["start_points"])
    limit = (1.0 + p["threshold"]) * base.value
    flags = s.values > limit
    flags[: base.n] = False
    j = first_persistent(flags, p["persist"])
    if j is None or base.value <= 0:
        return None
    peak = float(s.values[: j + p["persist"]].max())
    return {"column": s.column, "step": s.steps[j], "visible": s.steps[j + p["persist"] - 1], "value": s.values[j],
            "limit": limit, "peak": peak, "baseline": base,
            "words": (f"entropy ({s.column}) surged to {s.values[j]:.3g} nats at step {s.steps[j]:g} "
                      f"({s.values[j] / base.value:.1f}x its start {base.words}; above {1 + p['threshold']:g}x for "
                      f"{p['persist']} points)")}


def _collapse(ctx: RuleContext, p: dict):
    found = []
    for column in performance_columns(ctx):
        s = series(ctx.frame, column)
        if s.values.size < p["persist"] + 1:
            continue
        span = running_span(s.values, metric_range(ctx, s))
        best = np.maximum.accumulate(s.values)
        flags = (best - s.values) > p["collapse"] * span
        j = first_persistent(flags, p["persist"])
        if j is None:
            continue
        best_at = float(s.steps[int(np.argmax(s.values[: j + 1]))])
        found.append({"column": column, "step": s.steps[j], "visible": s.steps[j + p["persist"] - 1],
                      "value": s.values[j], "best": best[j], "best_step": best_at, "span": span[j],
                      "words": (f"{column} collapsed to {s.values[j]:.3g} at step {s.steps[j]:g} from its best "
                                f"{best[j]:.3g} (step {best_at:g}), a drop of more than {p['collapse']:g} of its "
                                f"range {span[j]:.3g}")})
    return min(found, key=lambda f: f["visible"]) if found else None


def divergence(ctx: RuleContext, p: dict) -> Alert | None:
    surge, collapse = _surge(ctx, p), _collapse(ctx, p)
    if surge is None and collapse is None:
        return None
    parts = [part for part in (surge, collapse) if part is not None]
    step = min(part["step"] for part in parts)
    evidence = {}
    if surge is not None:
        evidence["entropy_surge"] = {"column": surge["column"], "step": surge["step"], "visible_step": surge["visible"],
                                     "value": surge["value"], "threshold": surge["limit"], "peak_so_far": surge["peak"],
                                     **surge["baseline"].to_dict()}
    if collapse is not None:
        evidence["performance_collapse"] = {k: collapse[k] for k in ("column", "step", "value", "best", "best_step", "span")}
        evidence["performance_collapse"]["visible_step"] = collapse["visible"]
        severity, visible = "critical", collapse["visible"]
        words = " and ".join(part["words"] for part in sorted(parts, key=lambda part: part["step"]))
        message = f"Training diverged: {words}."
        return _alert("divergence", severity, step, visible, message, evidence, "performance")
    message = (f"Entropy surge: {surge['words']}; performance has not collapsed (yet) - watch it, a surge is how "
               "a divergence starts, though entropy may also fall and then rise in a healthy run.")
    return _alert("divergence", "warning", step, surge["visible"], message, evidence, "entropy", "divergence_surge")


def saturated(ctx: RuleContext, p: dict) -> Alert | None:
    for column in performance_columns(ctx)[:1]:
        s = series(ctx.frame, column, p["window"])
        bounds = metric_range(ctx, s)
        if bounds is None or s.values.size < p["window"]:
            return None
        level = bounds[0] + p["threshold"] * (bounds[1] - bounds[0])
        flags = s.smoothed >= level
        flags[: p["window"] - 1] = False
        i = first_index(flags)
        if i is None:
            return None
        message = (f"Saturated: {column} has averaged {s.smoothed[i]:.3g} over the last {p['window']} points at step "
                   f"{s.steps[i]:g}, at or above {p['threshold']:.0%} of its range [{bounds[0]:g}, {bounds[1]:g}]: most "
                   "groups are all-correct, give no advantage and so no gradient; the task is too easy for this policy.")
        evidence = {"column": column, "value": s.smoothed[i], "threshold": level, "window": p["window"],
                    "bounds": list(bounds)}
        return _alert("saturated", "warning", s.steps[i], s.steps[i], message, evidence, "performance")
    return None


PLATEAU_SMOOTHING = 5  # points in the trailing mean of performance the plateau rule compares
PLATEAU_MIN_TREND_POINTS = 5  # entropy points a window needs before its trend is judged


@dataclass(frozen=True)
class EntropyTrend:
    """A least-squares line through every entropy point of a window, its slope's confidence interval
    allowing for autocorrelated noise, and the fall over the window it implies."""

    n: int
    n_effective: float  # independent points the autocorrelated residuals are worth
    lag1: float  # lag-1 autocorrelation of the residuals (0 when negative)
    slope: float  # nats per step
    slope_low: float  # the slope's confidence interval (infinite when n_effective <= 2)
    slope_high: float
    start_level: float  # the fitted entropy at the window's first step
    fall: float  # fitted fall over the window, as a share of start_level
    fall_low: float  # the fall implied by slope_high and slope_low, from the same start level
    fall_high: float


def entropy_trend(steps: np.ndarray, values: np.ndarray, confidence: float) -> EntropyTrend | None:
    """The trend of ``values`` over ``steps`` (None with too few points or a fitted start <= 0).

    Why a fitted line over every point and not two short means: the step-to-step noise of entropy
    (about +-12% under adaptive entropy control) moves a 5-point mean by as much as a real trend, so
    a window that merely ends in a dip read as entropy spent; a line fitted on all ~90 points of a
    window moves little with the last few, and its interval says whether the fall stands out of the
    noise. Why the interval allows for autocorrelation: an entropy controller swings entropy slowly
    (the demo's adaptive run: lag-1 autocorrelation 0.6), and 90 such points carry far less evidence
    than 90 independent ones - the plain interval called a swing a significant fall. The standard
    error is widened for the lag-1 autocorrelation r of the residuals, with n_eff = n (1 - r) / (1 + r)
    points and n_eff - 2 degrees of freedom (Santer et al. 2000, J. Geophys. Res. 105, 7337). A swing
    as slow as the window itself (a period of 100-300 steps against the demo's 90-step window) still
    fits as a fall: within the window it is one."""
    steps, values = np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)
    trends = entropy_trends(steps, values, np.array([0]), np.array([steps.size]), confidence)
    return trends.at(0)


@dataclass(frozen=True)
class EntropyTrends:
    """``EntropyTrend`` for many windows at once, as arrays (NaN where a window has no trend)."""

    n: np.ndarray
    n_effective: np.ndarray
    lag1: np.ndarray
    slope: np.ndarray
    slope_low: np.ndarray
    slope_high: np.ndarray
    start_level: np.ndarray
    fall: np.ndarray
    fall_low: np.ndarray
    fall_high: np.ndarray

    def at(self, k: int) -> EntropyTrend | None:
        if not np.isfinite(self.slope[k]) or not self.start_level[k] > 0:
            return None
        return EntropyTrend(int(self.n[k]), *(float(getattr(self, f.name)[k]) for f in fields(EntropyTrend)[1:]))


TREND_BLOCK = 256  # windows whose sums share one prefix sum (see entropy_trends)


def entropy_trends(steps: np.ndarray, values: np.ndarray, first: np.ndarray, stop: np.ndarray,
                   confidence: float) -> EntropyTrends:
    """``entropy_trend`` of every window ``steps[first[k]:stop[k]]`` at once (steps sorted, distinct).

    Why: the plateau rule judges the trend of one window per performance point, 10,000 windows on a
    10k-step run; a SciPy line fit per window cost seconds there, and a dashboard's first paint paid
    them. Every quantity the fit needs - the least-squares sums and the lag-1 products of the
    residuals - is a sum over the window, so prefix sums give all windows in O(steps + windows).
    Why blocks: a prefix sum over a whole long run would cancel digits (sums of squared steps reach
    1e12 at 10k steps); windows are taken ``TREND_BLOCK`` at a time, with sums over only the stretch
    they cover, centred on it. A test checks every window against a SciPy fit on its own points."""
    first, stop = np.asarray(first, dtype=np.intp), np.asarray(stop, dtype=np.intp)
    parts = []
    for k in range(0, first.size, TREND_BLOCK):
        lo, hi = first[k:k + TREND_BLOCK], stop[k:k + TREND_BLOCK]
        base = int(min(lo.min(), hi.min()))
        end = int(max(base + 1, hi.max()))
        parts.append(_trend_block(steps[base:end], values[base:end], lo - base, hi - base, confidence))
    if not parts:
        return EntropyTrends(*(np.empty(0) for _ in fields(EntropyTrends)))
    return EntropyTrends(*(np.concatenate(columns) for columns in zip(*parts)))


def _trend_block(steps: np.ndarray, values: np.ndarray, first: np.ndarray, stop: np.ndarray,
                 confidence: float) -> tuple[np.ndarray, ...]:
    """``entropy_trends``' fields (as a tuple) for windows inside ``steps``, from centred prefix sums."""
    n = (stop - first).astype(np.float64)
    if steps.size == 0:
        return tuple(np.full(n.shape, np.nan) for _ in fields(EntropyTrends))
    x = steps - 0.5 * (steps[0] + steps[-1])
    y = values - values.mean()
    head, last = np.minimum(first, steps.size - 1), np.clip(stop - 1, 0, steps.size - 1)

    def window_sum(z: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        prefix = np.concatenate(([0.0], np.cumsum(z)))
        return prefix[hi] - prefix[lo]

    with np.errstate(divide="ignore", invalid="ignore"):
        sx, sy, sxx = window_sum(x, first, stop), window_sum(y, first, stop), window_sum(x * x, first, stop)
        mx, my = sx / n, sy / n
        cxx = sxx - sx * mx
        cxy = window_sum(x * y, first, stop) - sx * my
        cyy = window_sum(y * y, first, stop) - sy * my
        slope = cxy / cxx
        intercept = my - slope * mx
        squares = np.maximum(cyy - slope * cxy, 0.0)  # the residuals' sum of squares
        stderr = np.sqrt(squares / (n - 2) / cxx)
        # the sum over neighbours of r_t r_(t+1), r = y - intercept - slope x, expanded into window sums
        pairs = (first, np.maximum(stop - 1, first))
        neighbours = (window_sum(y[:-1] * y[1:], *pairs)
                      - intercept * (2 * sy - y[head] - y[last])
                      - slope * window_sum(x[:-1] * y[1:] + x[1:] * y[:-1], *pairs)
                      + intercept ** 2 * (n - 1)
                      + intercept * slope * (2 * sx - x[head] - x[last])
                      + slope ** 2 * window_sum(x[:-1] * x[1:], *pairs))
        # a line through the points (up to rounding) has no noise to be autocorrelated
        noisy = squares > 1e-12 * cyy
        lag1 = np.where(noisy, np.clip(neighbours / np.where(noisy, squares, 1.0), 0.0, 1.0), 0.0)
        n_eff = n * (1 - lag1) / (1 + lag1)
        judged = n_eff > 2
        half = np.full(n.shape, np.inf)  # too few independent points to judge a trend
        half[judged] = (stats.t.ppf(0.5 + confidence / 2, n_eff[judged] - 2) * stderr[judged]
                        * np.sqrt((n[judged] - 2) / (n_eff[judged] - 2)))
        low, high = slope - half, slope + half
        width = steps[last] - steps[head]
        level = intercept + slope * x[head] + values.mean()
        # a window needs enough points and more than one distinct step (cxx is rounding noise then)
        valid = (n >= PLATEAU_MIN_TREND_POINTS) & (cxx > 1e-9 * sxx)
        mask = np.where(valid, 1.0, np.nan)
        return (n, n_eff * mask, lag1 * mask, slope * mask, low * mask, high * mask, level * mask,
                -slope * width / level * mask, -high * width / level * mask, -low * width / level * mask)


def plateau(ctx: RuleContext, p: dict) -> Alert | None:
    """No new best (trailing mean over 5 points, by more than ``threshold`` of the range) for ``window``
    points, while entropy was still being consumed over them and performance stayed near its best
    (a collapsed run is ``divergence``'s, not a plateau); the best before the window is taken over
    at least ``window`` points.

    "Still being consumed" is a trend, judged against entropy's own noise (``entropy_trend``): the
    line through every entropy point of the window's steps must fall by more than ``entropy_drop`` of
    its fitted start, and the slope's ``confidence`` interval must lie wholly below 0 (0.9: a one-
    sided 5% test). The window ends at the step the alert reports and reads nothing after it."""
    columns = performance_columns(ctx)
    entropy = entropy_series(ctx, PLATEAU_MIN_TREND_POINTS)
    if not columns or entropy is None:
        return None
    s = series(ctx.frame, columns[0], PLATEAU_SMOOTHING)
    w = p["window"]
    # the best the window fails to beat is taken over at least as many points as the window itself:
    # in a run's first steps the best of a few noisy means is no level the run has reached (the
    # demo's training reward: a best of 0.359 from steps 1-7 made a "plateau" at step 17)
    first = max(w + PLATEAU_SMOOTHING - 1, 2 * w - 1)
    if s.values.size <= first:
        return None
    span = running_span(s.values, metric_range(ctx, s))
    # every window ending at point i (from `first` on) at once: performance's test, then entropy's trend
    ends = np.arange(first, s.values.size)
    starts = ends - w + 1
    best_before = np.maximum.accumulate(s.smoothed)[starts - 1]
    best_since = np.lib.stride_tricks.sliding_window_view(s.smoothed, w).max(axis=1)[starts]
    flat = ~((best_since >= best_before + p["threshold"] * span[ends])
             | (s.smoothed[ends] < best_before - 0.25 * span[ends]))
    ends, starts, best_before, best_since = ends[flat], starts[flat], best_before[flat], best_since[flat]
    inside = (np.searchsorted(entropy.steps, s.steps[starts], "left"),
              np.searchsorted(entropy.steps, s.steps[ends], "right"))
    trends = entropy_trends(entropy.steps, entropy.values, *inside, p["confidence"])
    with np.errstate(invalid="ignore"):
        fires = (trends.start_level > 0) & (trends.slope_high < 0) & (trends.fall > p["entropy_drop"])
    k = first_index(fires)
    if k is not None:
        i, start, trend = ends[k], starts[k], trends.at(k)
        best_before, best_since = float(best_before[k]), float(best_since[k])
        lo, hi = s.steps[start], s.steps[i]
        message = (f"Plateau: {s.column} has not beaten its best {best_before:.3g} (mean of {PLATEAU_SMOOTHING} "
                   f"points) by {p['threshold']:.0%} of its range in the {w} points of steps {lo:g}-{hi:g} (now "
                   f"{s.smoothed[i]:.3g}), while entropy ({entropy.column}) kept falling: a line through its "
                   f"{trend.n} points there falls {trend.fall:.0%} of its fitted start {trend.start_level:.3g} nats "
                   f"({p['confidence']:.0%} interval {trend.fall_low:.0%} to {trend.fall_high:.0%}; more than "
                   f"{p['entropy_drop']:.0%} is the rule): entropy is being spent without a gain.")
        evidence = {"column": s.column, "best": best_before, "best_in_window": best_since, "value": s.smoothed[i],
                    "threshold": p["threshold"] * span[i], "entropy_column": entropy.column,
                    "entropy_points": trend.n, "entropy_points_effective": trend.n_effective,
                    "entropy_lag1_autocorrelation": trend.lag1, "entropy_start": trend.start_level,
                    "entropy_end": trend.start_level * (1 - trend.fall), "entropy_slope": trend.slope,
                    "entropy_slope_interval": [trend.slope_low, trend.slope_high],
                    "entropy_fall": trend.fall, "entropy_fall_interval": [trend.fall_low, trend.fall_high],
                    "confidence": p["confidence"], "entropy_drop": p["entropy_drop"], "window_steps": [lo, hi]}
        return _alert("plateau", "warning", hi, hi, message, evidence, "performance")
    return None


def zero_variance_table(samples: pd.DataFrame) -> pd.DataFrame | None:
    """Per step, the exact share of rollouts in zero-variance groups, split by all-correct / all-wrong.

    A group is the completions of one prompt in one step (``group_id``); its rewards have zero
    variance when max - min <= 1e-8; "correct" is reward > 0 (the metrics' default). Columns: step,
    waste, all_correct, all_wrong (shares of the step's rollouts)."""
    needed = {"step", "group_id", "reward"}
    if samples is None or not needed <= set(samples.columns):
        return None
    data = samples[["step", "group_id", "reward"]].copy()
    data["reward"] = pd.to_numeric(data["reward"], errors="coerce")
    data = data[data["reward"].notna() & data["group_id"].notna()]
    data = data[data["group_id"].astype(str) != "-1"]
    if data.empty:
        return None
    data["group_id"] = data["group_id"].astype(str)
    groups = data.groupby(["step", "group_id"])["reward"].agg(["min", "max", "size"]).reset_index()
    zero = (groups["max"] - groups["min"]) <= 1e-8
    groups["correct"] = np.where(zero & (groups["min"] > 0), groups["size"], 0)
    groups["wrong"] = np.where(zero & (groups["max"] <= 0), groups["size"], 0)
    per_step = groups.groupby("step")[["size", "correct", "wrong"]].sum()
    table = pd.DataFrame({"step": per_step.index.to_numpy(dtype=np.float64),
                          "all_correct": (per_step["correct"] / per_step["size"]).to_numpy(),
                          "all_wrong": (per_step["wrong"] / per_step["size"]).to_numpy()})
    table["waste"] = table["all_correct"] + table["all_wrong"]
    return table.sort_values("step").reset_index(drop=True)


def zero_variance_waste(ctx: RuleContext, p: dict) -> Alert | None:
    table = zero_variance_table(ctx.samples)
    if table is not None:
        source = "exact, from the samples table"
        waste = series(table, "waste", p["window"])
        correct = series(table, "all_correct", p["window"]).smoothed
        wrong = series(table, "all_wrong", p["window"]).smoothed
    else:
        column = next((c for c in _ZERO_STD_COLUMNS if finite_count(ctx.frame, c) > 0), None)
        if column is None:
            return None
        source = f"from {column} (no samples table: no split by outcome)"
        waste = series(ctx.frame, column, p["window"])
        correct = wrong = None
    i = first_index(full_window(waste.smoothed > p["threshold"], p["window"]))
    if i is None:
        return None
    evidence = {"value": waste.smoothed[i], "threshold": p["threshold"], "window": p["window"], "source": source}
    remedy = "zero_variance_waste"
    split = ""
    if correct is not None:
        evidence.update(all_correct=correct[i], all_wrong=wrong[i])
        split = f" ({correct[i]:.0%} in all-correct groups, too easy; {wrong[i]:.0%} in all-wrong groups, too hard)"
        if correct[i] >= 2 * wrong[i]:
            remedy = "zero_variance_waste_easy"
        elif wrong[i] >= 2 * correct[i]:
            remedy = "zero_variance_waste_hard"
    message = (f"{waste.smoothed[i]:.0%} of rollouts give no gradient at step {waste.steps[i]:g} (mean of the last "
               f"{p['window']} steps, above {p['threshold']:.0%}){split}: their group's rewards all agree, so their "
               f"GRPO advantage is zero [{source}].")
    return _alert("zero_variance_waste", "warning", waste.steps[i], waste.steps[i], message, evidence, "groups", remedy)


def pass_at_k_converging(ctx: RuleContext, p: dict) -> Alert | None:
    ks = [int(c[len("pass_at_"):]) for c in pass_at_k_columns(ctx.frame.columns)]
    ks = [k for k in ks if k > 1 and finite_count(ctx.frame, f"pass_at_{k}") > 0]
    if not ks or finite_count(ctx.frame, "pass_at_1") == 0:
        return None
    k = ks[-1]
    gap_frame = pd.DataFrame({"step": ctx.frame["step"],
                              "gap": column_values(ctx.frame, f"pass_at_{k}") - column_values(ctx.frame, "pass_at_1")})
    s = series(gap_frame, "gap", p["window"])
    if s.values.size <= p["start_points"]:
        return None
    fell = fell_below_baseline(s, p)
    if fell is None:
        return None
    i, words, numbers = fell
    message = (f"pass@{k} - pass@1 shrank to {words}: the samples of a prompt are becoming copies of each other, so "
               "extra samples no longer find new answers.")
    evidence = {"k": k, **numbers}
    return _alert("pass_at_k_converging", "warning", s.steps[i], s.steps[i], message, evidence, "diversity")


def ess_low(ctx: RuleContext, p: dict) -> Alert | None:
    if finite_count(ctx.frame, "ess_frac") == 0:
        return None
    s = series(ctx.frame, "ess_frac", p["window"])
    i = first_index(full_window(s.smoothed < p["threshold"], p["window"]))
    if i is None:
        return None
    message = (f"Importance-weight ESS fell to {s.smoothed[i]:.0%} of the batch at step {s.steps[i]:g} (mean of the "
               f"last {p['window']} points), below {p['threshold']:.0%}: updates are far off-policy.")
    evidence = {"value": s.smoothed[i], "threshold": p["threshold"], "window": p["window"]}
    return _alert("ess_low", "warning", s.steps[i], s.steps[i], message, evidence, "importance")


def low_headroom(ctx: RuleContext, p: dict) -> Alert | None:
    forecast = ctx.ceiling_forecast()
    if forecast is None:
        return None
    if not forecast.trustworthy or forecast.ceiling is None:
        return None
    s = series(ctx.frame, forecast.backtest.performance_column, p["window"])
    headroom = forecast.ceiling - float(s.smoothed[-1])
    if headroom >= p["threshold"]:
        return None
    message = (f"Predicted ceiling {forecast.ceiling:.3g} is only {headroom:.3g} above the current {s.column} "
               f"{s.smoothed[-1]:.3g} at step {s.steps[-1]:g}: little gain is left.")
    evidence = {"ceiling": forecast.ceiling, "value": s.smoothed[-1], "headroom": headroom, "threshold": p["threshold"]}
    return _alert("low_headroom", "info", s.steps[-1], s.steps[-1], message, evidence, "law", "low_headroom")


RULE_LIST = [
    Rule("divergence", "Performance falling from its best by more than `collapse` of its range (critical), and/or "
         "entropy above (1 + `threshold`) times its start (warning alone), for `persist` points",
         "critical", {"threshold": 2.0, "collapse": 0.5, "persist": 2, "start_points": 3}, divergence,
         limits={"threshold": Limit(low_open=True), "collapse": Limit.share()}),
    Rule("entropy_collapse", "Entropy (trailing mean) below `threshold` times its start (mean of the first "
         "`start_points` points); the covariance is its evidence", "warning",
         {"threshold": 0.3, "window": 3, "start_points": 3}, entropy_collapse,
         limits={"threshold": Limit.share(high_open=True)}),
    Rule("entropy_floor_forecast", "Entropy falling (linear fit of the last `window` points, p < 0.05): the step it "
         "reaches `threshold` times its start at the current rate", "info",
         {"threshold": 0.3, "window": 20, "start_points": 3}, entropy_floor_forecast,
         limits={"threshold": Limit.share(high_open=True), "window": Limit.count(3)}),
    Rule("saturated", "Performance (trailing mean) at or above `threshold` of its known range", "warning",
         {"threshold": 0.9, "window": 5}, saturated, limits={"threshold": Limit.share()}),
    Rule("plateau", "No new best performance (5-point trailing mean, by `threshold` of its range) for `window` "
         "points while entropy kept falling over them: a line through every entropy point falls more than "
         "`entropy_drop` of its fitted start and its slope's `confidence` interval (autocorrelation-aware) is below 0", "warning",
         {"threshold": 0.02, "window": 10, "entropy_drop": 0.1, "confidence": 0.9}, plateau,
         limits={"threshold": Limit.share(low_open=False), "window": Limit.count(2),
                 "entropy_drop": Limit.share(high_open=True), "confidence": Limit.share(high_open=True)}),
    Rule("zero_variance_waste", "Share of rollouts in zero-reward-variance groups (trailing mean) above `threshold`, "
         "split into all-correct and all-wrong", "warning", {"threshold": 0.5, "window": 5}, zero_variance_waste,
         limits={"threshold": Limit.share(low_open=False, high_open=True)}),
    Rule("pass_at_k_converging", "pass@k - pass@1 (largest k, trailing mean) below `threshold` times its start",
         "warning", {"threshold": 0.25, "window": 5, "start_points": 3}, pass_at_k_converging,
         limits={"threshold": Limit.share(high_open=True)}),
    Rule("ess_low", "Importance-weight ESS fraction (trailing mean) below `threshold`", "warning",
         {"threshold": 0.5, "window": 3}, ess_low, limits={"threshold": Limit.share()}),
    Rule("low_headroom", "Trustworthy predicted ceiling less than `threshold` above current performance", "info",
         {"threshold": 0.02, "window": 5}, low_headroom, live=False),
]
