"""A run's key figures with its forecast and alerts: what ``entropymon summary``, the report and
the dashboard show.

Why: the CLI, the HTML report and the dashboard all print the same figures; computing them in
one place keeps them identical, and keeping the results typed keeps them computed once.
``summarize`` returns a ``RunSummary`` that carries the ``CeilingForecast`` (with its fit) and
the ``Alert`` objects, so the report draws the fitted points of the same forecast the summary
states and the ``low_headroom`` rule reads that forecast instead of fitting the law again.
``summarize_run`` is its JSON view (``RunSummary.to_dict``): every value a plain
int/float/str/bool/None/list/dict, so ``json.dumps(summarize_run(run))`` works as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from entropymon.analysis._frame import choose_performance, column_values, performance_reason, run_name, step_frame
from entropymon.analysis.alerts import Alert, diagnose, health
from entropymon.analysis.dynamics import EntropyDynamics, entropy_dynamics
from entropymon.analysis.forecast import CeilingForecast, forecast_ceiling
from entropymon.errors import AnalysisError
from entropymon.results import json_float, to_json

EXTRA_ENDS = ("reward_mean", "eval_accuracy")  # shown next to the performance column when not it


@dataclass(frozen=True)
class RunSummary:
    """Steps, where entropy and performance started and ended, the forecast, what explains the
    entropy change (``dynamics``), the alerts and the run's health (the worst alert, with reasons).

    ``forecast`` is None when the law cannot be fitted (``forecast_error`` says why), ``dynamics``
    when the change cannot be explained (``dynamics_error``);
    ``performance_column`` is None when the run has none (``performance_error``). ``ends``: the
    (start, end) of ``reward_mean`` / ``eval_accuracy`` when they are not the performance column.
    """

    run: str
    steps: int
    first_step: float | None
    last_step: float | None
    entropy_column: str
    entropy_start: float | None = None
    entropy_end: float | None = None
    performance_column: str | None = None
    performance_reason: str | None = None
    performance_start: float | None = None
    performance_end: float | None = None
    performance_error: str | None = None
    ends: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    forecast: CeilingForecast | None = None
    forecast_error: str | None = None
    dynamics: EntropyDynamics | None = None
    dynamics_error: str | None = None
    alerts: tuple[Alert, ...] = ()

    @property
    def ceiling(self) -> float | None:
        return None if self.forecast is None else self.forecast.ceiling

    @property
    def ceiling_ci(self) -> tuple[float, float] | None:
        return None if self.forecast is None else self.forecast.ceiling_ci

    @property
    def skill(self) -> float | None:
        return None if self.forecast is None else self.forecast.skill

    @property
    def health(self) -> str:
        """"healthy", "warning" or "critical": the worst warning/critical alert."""
        return health(self.alerts)

    @property
    def health_reasons(self) -> list[str]:
        """One line per warning or critical alert: severity, step and message."""
        return [f"{a.severity} at step {a.step:g}: {a.message}" for a in self.alerts if a.severity != "info"]

    @property
    def trustworthy(self) -> bool:
        return self.forecast is not None and self.forecast.trustworthy

    @property
    def reason(self) -> str:
        return f"no ceiling forecast: {self.forecast_error}" if self.forecast is None else self.forecast.reason

    def to_dict(self) -> dict:
        """The JSON layout of ``entropymon summary --json`` (the forecast without the fitted
        points: its fit as ``forecast["law"]``)."""
        out = {
            "run": self.run, "steps": self.steps, "first_step": self.first_step, "last_step": self.last_step,
            "entropy_column": self.entropy_column, "entropy_start": self.entropy_start,
            "entropy_end": self.entropy_end, "performance_column": self.performance_column,
        }
        if self.performance_column is not None:
            out["performance_reason"] = self.performance_reason
        out |= {
            "performance_start": self.performance_start, "performance_end": self.performance_end,
        }
        if self.performance_error is not None:
            out["performance_error"] = self.performance_error
        for name, (start, end) in self.ends.items():
            out[f"{name}_start"], out[f"{name}_end"] = start, end
        out["forecast"] = _forecast_json(self)
        out.update(ceiling=out["forecast"].get("ceiling"), ceiling_ci=out["forecast"].get("ceiling_ci"),
                   skill=out["forecast"].get("skill"), trustworthy=self.trustworthy, reason=self.reason)
        out["dynamics"] = self.dynamics.to_dict() if self.dynamics is not None else {
            "observed": None, "fits": {}, "explanation": f"no entropy dynamics: {self.dynamics_error}"}
        out["alerts"] = [alert.to_dict() for alert in self.alerts]
        out["health"], out["health_reasons"] = self.health, self.health_reasons
        return to_json(out)


def summarize(
    run_or_df,
    *,
    performance: str = "auto",
    entropy: str = "entropy_mean",
    bounds="auto",
    rules=None,
    thresholds=None,
    n_bootstrap: int = 1000,
    dynamics: EntropyDynamics | None = None,
    forecast=None,
) -> RunSummary:
    """The run's ``RunSummary``: the law is fitted once, and the alerts read that fit.

    ``dynamics``: ``entropy_dynamics`` of these steps and this entropy column when the caller has it
    already (the dashboard computes it once for the summary and the covariance panel); None
    computes it here. ``forecast``: likewise the run's ``CeilingForecast`` (``forecast_ceiling`` with
    these columns and bounds; the dashboard's runs table and law panel share one, so a run shows one
    ceiling interval); None fits it here with ``n_bootstrap`` resamples."""
    frame = step_frame(run_or_df)
    figures = {}
    if entropy in frame.columns:
        figures["entropy_start"], figures["entropy_end"] = _ends(column_values(frame, entropy))
    try:
        performance_column = choose_performance(frame, performance)
        figures["performance_column"] = performance_column
        figures["performance_reason"] = performance_reason(frame, performance, performance_column)
        figures["performance_start"], figures["performance_end"] = _ends(column_values(frame, performance_column))
    except AnalysisError as error:
        performance_column = None
        figures["performance_error"] = str(error)
    ends = {extra: _ends(column_values(frame, extra)) for extra in EXTRA_ENDS
            if extra in frame.columns and extra != performance_column}
    forecast_error = None
    if forecast is None:
        try:
            forecast = forecast_ceiling(run_or_df, performance=performance, entropy=entropy, bounds=bounds,
                                        n_bootstrap=n_bootstrap)
        except AnalysisError as error:
            forecast_error = str(error)
    dynamics_error = None
    if dynamics is None:
        try:
            dynamics = entropy_dynamics(run_or_df, entropy=entropy)
        except AnalysisError as error:
            dynamics_error = str(error)
    alerts = diagnose(run_or_df, rules, thresholds, performance=performance, entropy=entropy, bounds=bounds,
                      forecast=forecast)
    return RunSummary(
        run=run_name(run_or_df, ""), steps=int(len(frame)),
        first_step=json_float(frame["step"].iloc[0]) if len(frame) else None,
        last_step=json_float(frame["step"].iloc[-1]) if len(frame) else None,
        entropy_column=entropy, ends=ends, forecast=forecast, forecast_error=forecast_error,
        dynamics=dynamics, dynamics_error=dynamics_error, alerts=tuple(alerts), **figures,
    )


def summarize_run(run_or_df, **options) -> dict:
    """``summarize(run_or_df, **options).to_dict()``: the summary as one JSON-ready dict."""
    return summarize(run_or_df, **options).to_dict()


def _forecast_json(summary: RunSummary) -> dict:
    forecast = summary.forecast
    if forecast is None:
        return {"trustworthy": False, "reason": summary.reason}
    out = forecast.to_dict()
    out.pop("fit", None)
    if forecast.fit is not None:
        fit = forecast.fit
        out["law"] = {"a": fit.a, "b": fit.b, "r2": fit.r2, "n": fit.n, "warmup_excluded": fit.warmup_excluded,
                      "notes": list(fit.notes), "problems": list(fit.problems)}
    return out


def _ends(values: np.ndarray) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None
    return json_float(finite[0]), json_float(finite[-1])
