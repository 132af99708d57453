"""One JSON-friendly dict of a run's key figures: what ``entropymon summary`` and the dashboard show.

Why: the CLI, the HTML report and the dashboard all print the same figures; computing them in
one place keeps them identical. Every value is a plain int/float/str/bool/None/list/dict, so
``json.dumps(summarize_run(run))`` works as is.
"""

from __future__ import annotations

import numpy as np

from entropymon.analysis._frame import (
    choose_performance,
    column_values,
    json_float,
    performance_reason,
    run_name,
    step_frame,
)
from entropymon.analysis.alerts import diagnose
from entropymon.analysis.dynamics import entropy_dynamics
from entropymon.analysis.forecast import forecast_ceiling
from entropymon.errors import AnalysisError


def summarize_run(
    run_or_df,
    *,
    performance: str = "auto",
    entropy: str = "entropy_mean",
    bounds="auto",
    rules=None,
    thresholds=None,
    n_bootstrap: int = 1000,
) -> dict:
    """Steps, entropy and performance at start and end, the ceiling with its interval, backtest
    skill against the baselines, the trust verdict and the alerts."""
    frame = step_frame(run_or_df)
    out = {
        "run": run_name(run_or_df, ""),
        "steps": int(len(frame)),
        "first_step": json_float(frame["step"].iloc[0]) if len(frame) else None,
        "last_step": json_float(frame["step"].iloc[-1]) if len(frame) else None,
        "entropy_column": entropy,
        "entropy_start": None,
        "entropy_end": None,
        "performance_column": None,
        "performance_start": None,
        "performance_end": None,
    }
    if entropy in frame.columns:
        out["entropy_start"], out["entropy_end"] = _ends(column_values(frame, entropy))
    try:
        performance_column = choose_performance(frame, performance)
        out["performance_column"] = performance_column
        out["performance_reason"] = performance_reason(frame, performance, performance_column)
        out["performance_start"], out["performance_end"] = _ends(column_values(frame, performance_column))
    except AnalysisError as error:
        performance_column = None
        out["performance_error"] = str(error)
    for extra in ("reward_mean", "eval_accuracy"):
        if extra in frame.columns and extra != performance_column:
            out[f"{extra}_start"], out[f"{extra}_end"] = _ends(column_values(frame, extra))
    out["forecast"] = _forecast(run_or_df, performance, entropy, bounds, n_bootstrap)
    out["ceiling"] = out["forecast"].get("ceiling")
    out["ceiling_ci"] = out["forecast"].get("ceiling_ci")
    out["skill"] = out["forecast"].get("skill")
    out["trustworthy"] = out["forecast"]["trustworthy"]
    out["reason"] = out["forecast"]["reason"]
    out["dynamics"] = _dynamics(run_or_df, entropy)
    out["alerts"] = [a.to_dict() for a in diagnose(run_or_df, rules, thresholds, performance=performance,
                                                   entropy=entropy, bounds=bounds)]
    return out


def _forecast(run_or_df, performance, entropy, bounds, n_bootstrap) -> dict:
    try:
        forecast = forecast_ceiling(run_or_df, performance=performance, entropy=entropy, bounds=bounds,
                                    n_bootstrap=n_bootstrap)
    except AnalysisError as error:
        return {"trustworthy": False, "reason": f"no ceiling forecast: {error}"}
    out = forecast.to_dict()
    out.pop("fit", None)
    if forecast.fit is not None:
        fit = forecast.fit
        out["law"] = {"a": json_float(fit.a), "b": json_float(fit.b), "r2": json_float(fit.r2),
                      "n": fit.n, "warmup_excluded": fit.warmup_excluded, "notes": list(fit.notes),
                      "problems": list(fit.problems)}
    return out


def _dynamics(run_or_df, entropy) -> dict:
    """What explains the entropy change (``analysis.dynamics``), or why it cannot be said."""
    try:
        return entropy_dynamics(run_or_df, entropy=entropy).to_dict()
    except AnalysisError as error:
        return {"observed": None, "fits": {}, "explanation": f"no entropy dynamics: {error}"}


def _ends(values: np.ndarray) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None
    return json_float(finite[0]), json_float(finite[-1])
