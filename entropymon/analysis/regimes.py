"""Where a run is inside the law's regime: the warm-up before it, and the step it leaves it.

Why: R = -a*e^H + b describes entropy *falling* while performance rises. Two parts of real runs
break that shape and bias the fit:

- a **warm-up**: entropy often rises for a few steps before it starts to fall. Rule: the highest
  entropy among the first third of the points is the warm-up's end when it is above the first
  point by more than ``WARMUP_MIN_RISE`` (5%) and not a surge (below ``1 + surge`` times the
  start); points before it are excluded from the fit and the result says so.
- a **regime exit**: entropy surging far above where it started (``surge``: +50% over the
  highest entropy up to the warm-up's end) or performance collapsing (its trailing mean over 3
  points falling from its best so far by ``collapse``, half, of the metric's range; range
  unknown: of the larger of the span covered and the largest absolute value). Either must hold
  for ``persist`` (2) consecutive points, so one odd batch does not end the regime. The exit step is the first of
  those points; forecasts stop extrapolating there and an alert fires.

Both use only past values at each point, so a backtest cut at step k sees what it would have
seen live.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from entropymon.analysis._frame import choose_performance, column_values, step_frame
from entropymon.analysis.bounds import resolve_bounds
from entropymon.errors import InputError
from entropymon.results import JsonResult

WARMUP_MIN_RISE = 0.05
DEFAULT_SURGE = 0.5
DEFAULT_COLLAPSE = 0.5
DEFAULT_PERSIST = 2
PERFORMANCE_WINDOW = 3


def _trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and the ``window - 1`` before it (fewer at the start). (n,) -> (n,)"""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


@dataclass(frozen=True)
class RegimeExit(JsonResult):
    """The step a run left the law's regime, why, and the values that show it."""

    step: float
    index: int
    kind: str  # "entropy_surge" | "performance_collapse"
    value: float
    reference: float
    threshold: float
    message: str


def warmup_length(entropy, *, surge: float = DEFAULT_SURGE) -> int:
    """How many leading points form the warm-up (entropy rising before it falls); 0 if none.

    ``entropy``: (n,) values in step order, no NaN.
    """
    entropy = np.asarray(entropy, dtype=np.float64)
    n = entropy.size
    if n < 6:
        return 0
    head = entropy[: max(2, n // 3)]
    peak = int(np.argmax(head))
    start = entropy[0]
    rise = head[peak] - start
    if peak == 0 or rise <= WARMUP_MIN_RISE * abs(start):
        return 0
    if head[peak] > (1.0 + surge) * _start_level(entropy):
        return 0  # a surge, not a warm-up: find_regime_exit reports it
    return peak


def _start_level(entropy: np.ndarray) -> float:
    """Entropy where the run starts: the highest of the first three points (robust to one low)."""
    return float(np.max(entropy[:3]))


def find_regime_exit(
    steps,
    entropy,
    performance=None,
    *,
    bounds: tuple[float, float] | None = None,
    surge: float = DEFAULT_SURGE,
    collapse: float = DEFAULT_COLLAPSE,
    persist: int = DEFAULT_PERSIST,
) -> RegimeExit | None:
    """The first point where the run leaves the law's regime, or None.

    ``steps``, ``entropy``: (n,) in step order; ``performance``: (n,) or None. NaN entries are
    skipped for the series they belong to.
    """
    if surge <= 0 or collapse <= 0 or persist < 1:
        raise InputError(
            f"surge, collapse, persist: expected surge > 0, collapse > 0, persist >= 1, "
            f"got {surge}, {collapse}, {persist}"
        )
    steps = np.asarray(steps, dtype=np.float64)
    candidates = []
    entropy_exit = _entropy_surge(steps, np.asarray(entropy, dtype=np.float64), surge, persist)
    if entropy_exit is not None:
        candidates.append(entropy_exit)
    if performance is not None:
        perf_exit = _performance_collapse(steps, np.asarray(performance, dtype=np.float64), bounds, collapse, persist)
        if perf_exit is not None:
            candidates.append(perf_exit)
    return min(candidates, key=lambda e: e.step) if candidates else None


def detect_regime_exit(
    run_or_df,
    *,
    entropy: str = "entropy_mean",
    performance: str = "auto",
    bounds="auto",
    surge: float = DEFAULT_SURGE,
    collapse: float = DEFAULT_COLLAPSE,
    persist: int = DEFAULT_PERSIST,
) -> RegimeExit | None:
    """``find_regime_exit`` on a run's step metrics (columns chosen as in ``fit_run_law``)."""
    frame = step_frame(run_or_df)
    performance_column = choose_performance(frame, performance)
    perf = column_values(frame, performance_column, argument="performance")
    resolved = resolve_bounds(bounds, performance_column, perf, run_or_df)
    return find_regime_exit(
        frame["step"].to_numpy(dtype=np.float64),
        column_values(frame, entropy, argument="entropy"),
        perf,
        bounds=resolved,
        surge=surge,
        collapse=collapse,
        persist=persist,
    )


def first_persistent(flags: np.ndarray, persist: int) -> int | None:
    """Index of the first run of ``persist`` consecutive True flags, or None."""
    run = 0
    for i, flag in enumerate(flags):
        run = run + 1 if flag else 0
        if run >= persist:
            return i - persist + 1
    return None


def _entropy_surge(steps, entropy, surge, persist) -> RegimeExit | None:
    present = np.isfinite(entropy)
    values, at = entropy[present], steps[present]
    if values.size < 3:
        return None
    warmup = warmup_length(values, surge=surge)
    reference = max(_start_level(values), float(values[warmup]))
    threshold = (1.0 + surge) * reference
    flags = values > threshold
    flags[: warmup + 1] = False
    first = first_persistent(flags, persist)
    if first is None:
        return None
    return RegimeExit(
        step=float(at[first]),
        index=int(np.flatnonzero(present)[first]),
        kind="entropy_surge",
        value=float(values[first]),
        reference=reference,
        threshold=threshold,
        message=(
            f"run left the law's regime at step {at[first]:g}: entropy rose to {values[first]:.3g} "
            f"nats, above {1 + surge:g}x its starting level {reference:.3g}"
        ),
    )


def _performance_collapse(steps, performance, bounds, collapse, persist) -> RegimeExit | None:
    present = np.isfinite(performance)
    values, at = performance[present], steps[present]
    if values.size < 3:
        return None
    # Unknown range: the larger of the span covered and the level reached, so a noisy plateau
    # (span 0.2 around 0.9) is not read as a collapse.
    span = (bounds[1] - bounds[0]) if bounds is not None else max(float(np.ptp(values)), float(np.max(np.abs(values))))
    if span <= 0:
        return None
    values = _trailing_mean(values, PERFORMANCE_WINDOW)
    best_so_far = np.maximum.accumulate(values)
    drop = collapse * span
    flags = best_so_far - values > drop
    first = first_persistent(flags, persist)
    if first is None:
        return None
    return RegimeExit(
        step=float(at[first]),
        index=int(np.flatnonzero(present)[first]),
        kind="performance_collapse",
        value=float(values[first]),
        reference=float(best_so_far[first]),
        threshold=float(best_so_far[first] - drop),
        message=(
            f"run left the law's regime at step {at[first]:g}: performance collapsed to "
            f"{values[first]:.3g} from its best {best_so_far[first]:.3g} (a drop over "
            f"{collapse:g} of its range {span:.3g})"
        ),
    )
