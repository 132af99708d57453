"""Several runs side by side: law coefficients, ceilings and skill in one table, curves by step.

Why: the question after a sweep is "which run heads where, and can I believe it"; the answer is
one row per run with the same columns, plus the curves aligned on the step axis for plotting.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from entropymon.analysis._frame import choose_performance, column_values, run_name, step_frame
from entropymon.analysis.forecast import forecast_ceiling
from entropymon.errors import AnalysisError, InputError

COMPARE_COLUMNS = [
    "run", "steps", "last_step", "performance_column", "a", "b", "r2", "ceiling", "ceiling_lo",
    "ceiling_hi", "skill", "trustworthy", "reason", "entropy_last", "performance_last",
]


def run_names(runs_or_dfs, names=None) -> list[str]:
    """Names for the runs: given, else each run's ``.name``, else ``run0``, ``run1``...; unique."""
    runs = list(runs_or_dfs)
    if names is None:
        names = [run_name(run, f"run{i}") for i, run in enumerate(runs)]
    names = [str(n) for n in names]
    if len(names) != len(runs):
        raise InputError(f"names: expected {len(runs)} names (one per run), got {len(names)}")
    if len(set(names)) != len(names):
        raise InputError(f"names: expected unique run names, got {names}; pass names=[...]")
    return names


def compare_runs(runs_or_dfs, names=None, *, performance: str = "auto", entropy: str = "entropy_mean",
                 bounds="auto", n_bootstrap: int = 1000) -> pd.DataFrame:
    """One row per run (columns ``COMPARE_COLUMNS``): law fit, ceiling with interval, backtest
    skill, trust verdict, and the last entropy and performance values."""
    runs = list(runs_or_dfs)
    if not runs:
        raise InputError("runs_or_dfs: expected at least one run, got none")
    rows = []
    for name, run in zip(run_names(runs, names), runs):
        frame = step_frame(run, argument=f"run {name!r}")
        row = dict.fromkeys(COMPARE_COLUMNS, math.nan)
        row.update(run=name, steps=len(frame), last_step=float(frame["step"].iloc[-1]),
                   performance_column=None, trustworthy=False, reason=None)
        try:
            column = choose_performance(frame, performance)
            row["performance_column"] = column
            row["performance_last"] = _last(column_values(frame, column))
            row["entropy_last"] = _last(column_values(frame, entropy, argument="entropy"))
            forecast = forecast_ceiling(run, performance=performance, entropy=entropy, bounds=bounds,
                                        n_bootstrap=n_bootstrap)
        except AnalysisError as error:
            row["reason"] = f"no ceiling forecast: {error}"
            rows.append(row)
            continue
        fit = forecast.fit
        if fit is not None:
            row.update(a=fit.a, b=fit.b, r2=fit.r2, ceiling=fit.ceiling,
                       ceiling_lo=fit.ceiling_ci[0], ceiling_hi=fit.ceiling_ci[1])
        row.update(skill=forecast.skill, trustworthy=forecast.trustworthy, reason=forecast.reason)
        rows.append(row)
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def align_runs(runs_or_dfs, column: str, names=None) -> pd.DataFrame:
    """One column per run holding ``column``, indexed by the union of their steps (NaN where a
    run has no value at that step)."""
    runs = list(runs_or_dfs)
    series = {}
    for name, run in zip(run_names(runs, names), runs):
        frame = step_frame(run, argument=f"run {name!r}")
        values = column_values(frame, column) if column in frame.columns else np.full(len(frame), np.nan)
        series[name] = pd.Series(values, index=frame["step"].to_numpy())
    aligned = pd.DataFrame(series)
    aligned.index.name = "step"
    return aligned.sort_index()


def _last(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan
