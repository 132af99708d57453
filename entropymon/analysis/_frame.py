"""Turn whatever the caller holds into the one step table every analysis reads.

Why: every run-level function accepts a ``Run`` from ``entropymon.log.reader`` (its
``.step_metrics``) or a plain DataFrame of the same shape (tests, notebooks, imported CSVs). This
module is the only place that knows about both, so the analysis never imports the reader and is
tested with hand-built DataFrames. It also holds the small column helpers the analyses share:
picking the performance column, causal smoothing and reading a column as float values.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import pandas as pd

from entropymon.errors import AnalysisError, InputError
from entropymon.registry import ENTROPY_COLUMNS, ENTROPY_ESTIMATES, PERFORMANCE_COLUMNS

# Which performance column "auto" picks, in order: held-out accuracy is the law's true R; the
# training reward mean is a proxy; TRL's own logged reward is the fallback for imported runs.
PERFORMANCE_PREFERENCE = PERFORMANCE_COLUMNS
# Entropy aggregates a run may carry, in the order sensitivity checks try them.
ENTROPY_AGGREGATES = (*ENTROPY_COLUMNS, *ENTROPY_ESTIMATES)
MIN_EVAL_POINTS = 3


def step_frame(run_or_df, *, argument: str = "run") -> pd.DataFrame:
    """The run's step table: one row per step, sorted by ``step``, with a fresh index.

    Accepts anything with a ``.step_metrics`` DataFrame (duck-typed ``Run``) or a DataFrame.
    """
    frame = getattr(run_or_df, "step_metrics", run_or_df)
    if not isinstance(frame, pd.DataFrame):
        raise InputError(
            f"{argument}: expected a Run (with .step_metrics) or a pandas DataFrame, "
            f"got {type(run_or_df).__name__}"
        )
    if "step" not in frame.columns:
        raise InputError(
            f"{argument}: expected a 'step' column, got columns {sorted(map(str, frame.columns))}"
        )
    frame = frame[frame["step"].notna()]
    if frame["step"].duplicated().any():
        duplicated = frame.loc[frame["step"].duplicated(), "step"].iloc[0]
        raise InputError(
            f"{argument}: expected one row per step, got several rows for step {duplicated}; "
            "combine ranks first (entropymon.metrics.stats.combine_ranks or Run.step_metrics)"
        )
    return frame.sort_values("step", kind="stable").reset_index(drop=True)


def run_name(run_or_df, default: str) -> str:
    """The run's name when it has one (a ``Run``), else ``default``."""
    name = getattr(run_or_df, "name", None)
    return name if isinstance(name, str) and name else default


def column_values(frame: pd.DataFrame, name: str, *, argument: str = "column") -> np.ndarray:
    """Column ``name`` as float64 values (NaN where missing); a clear error when absent."""
    if name not in frame.columns:
        raise AnalysisError(
            f"{argument}: expected a column {name!r} in the run's step metrics, "
            f"got columns {sorted(map(str, frame.columns))}"
        )
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)


def finite_count(frame: pd.DataFrame, name: str) -> int:
    if name not in frame.columns:
        return 0
    values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
    return int(np.isfinite(values).sum())


def choose_performance(frame: pd.DataFrame, performance: str = "auto") -> str:
    """The performance column: the given name, or for "auto" ``eval_accuracy`` when it has at
    least 3 values, else ``reward_mean``, else ``trl/reward``."""
    if performance != "auto":
        if performance not in frame.columns:
            raise AnalysisError(
                f"performance: expected a column {performance!r} in the run's step metrics, "
                f"got columns {sorted(map(str, frame.columns))}"
            )
        return performance
    if finite_count(frame, "eval_accuracy") >= MIN_EVAL_POINTS:
        return "eval_accuracy"
    for name in PERFORMANCE_PREFERENCE[1:]:
        if finite_count(frame, name) > 0:
            return name
    raise AnalysisError(
        "performance='auto': expected eval_accuracy (>= 3 values), reward_mean or trl/reward in "
        f"the run's step metrics, got columns {sorted(map(str, frame.columns))}; "
        "pass performance=<column name>"
    )


def performance_reason(frame: pd.DataFrame, performance: str, column: str) -> str:
    """Why ``column`` is the performance series: asked for, or which rule of "auto" picked it.

    Two imports of one run can carry different series (a JSONL with 6 held-out accuracy points,
    a CSV with 61 training rewards), and the law's verdict differs with them: every result says
    which series it used, how many points it has, and how to ask for another.
    """
    count = finite_count(frame, column)
    if performance != "auto":
        return f"{column} as asked ({count} values)"
    others = [f"{name} ({finite_count(frame, name)} values)" for name in PERFORMANCE_PREFERENCE
              if name != column and finite_count(frame, name) > 0]
    if column == "eval_accuracy":
        why = (f"eval_accuracy ({count} values): auto prefers a held-out accuracy with >= {MIN_EVAL_POINTS} "
               "values to the training reward")
    else:
        n_eval = finite_count(frame, "eval_accuracy")
        lacking = (f"eval_accuracy has only {n_eval} values (auto needs >= {MIN_EVAL_POINTS})" if n_eval
                   else "the run has no eval_accuracy")
        why = f"{column} ({count} values): {lacking}"
    if others:
        why += f"; also present: {', '.join(others)}, choose another with --performance NAME"
    return why


def smoothing_label(smoothing) -> str:
    """How a smoothing spec is written in results: 'none', 'ema(alpha=0.3)', 'mean(window=5)'."""
    kind, value = _parse_smoothing(smoothing)
    if kind == "none":
        return "none"
    return f"ema(alpha={value:g})" if kind == "ema" else f"mean(window={value})"


def smooth(values: np.ndarray, smoothing) -> np.ndarray:
    """Causal (trailing) smoothing of a series, skipping NaN entries (they stay NaN).

    ``smoothing``: None (no smoothing), a float in (0, 1) (exponential moving average with that
    alpha) or an int >= 1 (mean of the last ``window`` values). Trailing filters use no future
    values, so a backtest that smooths the whole run and then cuts it sees what it would have
    seen live.
    """
    kind, value = _parse_smoothing(smoothing)
    values = np.asarray(values, dtype=np.float64)
    if kind == "none":
        return values.copy()
    out = np.full_like(values, np.nan)
    present = np.isfinite(values)
    series = pd.Series(values[present])
    if kind == "ema":
        smoothed = series.ewm(alpha=value, adjust=False).mean()
    else:
        smoothed = series.rolling(window=value, min_periods=1).mean()
    out[present] = smoothed.to_numpy()
    return out


def _parse_smoothing(smoothing):
    if smoothing is None:
        return "none", None
    if isinstance(smoothing, bool):
        raise InputError(f"smoothing: expected None, an EMA alpha in (0, 1) or a window >= 1, got {smoothing!r}")
    if isinstance(smoothing, Integral):
        if smoothing < 1:
            raise InputError(f"smoothing: expected a window >= 1, got {smoothing}")
        return ("none", None) if smoothing == 1 else ("window", int(smoothing))
    if isinstance(smoothing, Real) and math.isfinite(smoothing):
        if not 0.0 < smoothing < 1.0:
            raise InputError(
                f"smoothing: expected an EMA alpha in (0, 1) (or an int window), got {smoothing}"
            )
        return "ema", float(smoothing)
    raise InputError(f"smoothing: expected None, an EMA alpha in (0, 1) or a window >= 1, got {smoothing!r}")

