"""Collapse diagnosis: named rules with thresholds, each giving a message and the step it fired.

Why: a user (or a CI job through ``entropymon check``) wants one answer per known failure mode
of RL post-training, not a wall of curves. ``RULES`` is the one registry of rules, with their
descriptions and default parameters; the CLI's ``check --rules`` and the README read it.

Each rule reads the step metrics, smooths with a trailing mean where noted (so one odd batch does
not fire it) and fires once, at the first step its condition holds. A rule whose columns the run
does not have does not fire. ``thresholds`` overrides defaults: ``{"entropy_collapse": 0.2}``
sets a rule's ``threshold``; ``{"zero_std_groups": {"threshold": 0.6, "window": 10}}`` sets any
of its parameters. Each rule declares the range of its parameters (``rule_params.Limit``); an
override outside it is an ``InputError``, not a rule that silently never fires.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Real

import numpy as np
import pandas as pd

from entropymon.analysis._frame import column_values, finite_count, step_frame
from entropymon.analysis.forecast import forecast_ceiling
from entropymon.analysis.regimes import detect_regime_exit
from entropymon.analysis.rule_params import Limit, checked_value, inferred_limit
from entropymon.display import SEVERITIES
from entropymon.errors import AnalysisError, InputError
from entropymon.registry import ENTROPY_COLUMNS, pass_at_k_columns
from entropymon.results import JsonResult


@dataclass(frozen=True)
class Alert(JsonResult):
    """One fired rule: where, how bad, the value against its threshold, and a sentence."""

    rule: str
    severity: str
    step: float
    value: float
    threshold: float
    message: str

    def __post_init__(self):
        for key in ("step", "value", "threshold"):
            object.__setattr__(self, key, float(getattr(self, key)))


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    severity: str
    defaults: dict
    check: Callable[[_Context, dict], Alert | None]
    limits: dict[str, Limit] = field(default_factory=dict)  # parameter -> accepted values (else inferred)

    def limit(self, parameter: str) -> Limit:
        return self.limits.get(parameter) or inferred_limit(self.defaults[parameter])


@dataclass
class _Context:
    run_or_df: object
    frame: pd.DataFrame
    performance: str
    entropy: str
    bounds: object
    forecast: object = field(default=None)

    def ceiling_forecast(self):
        """The run's ``CeilingForecast`` (the one given to ``diagnose``, else computed once), or
        None when the law cannot be fitted."""
        if self.forecast is None:
            try:
                self.forecast = forecast_ceiling(self.run_or_df, performance=self.performance, entropy=self.entropy,
                                                 bounds=self.bounds, n_bootstrap=FORECAST_BOOTSTRAP)
            except AnalysisError:
                self.forecast = False
        return self.forecast or None


FORECAST_BOOTSTRAP = 200  # resamples when diagnose fits the law itself


def diagnose(
    run_or_df,
    rules=None,
    thresholds: dict | None = None,
    *,
    performance: str = "auto",
    entropy: str = "entropy_mean",
    bounds="auto",
    forecast=None,
) -> list[Alert]:
    """Run the named rules (default: all of ``RULES``) and return the alerts that fired, by step.

    ``performance``, ``entropy``, ``bounds`` are passed to the law forecast (``low_headroom``,
    ``left_law_regime``). ``forecast``: the run's ``CeilingForecast`` when the caller has it
    (``summarize`` does), so the law is not fitted twice.
    """
    names = list(RULES) if rules is None else _check_rule_names(rules)
    params = _merge_thresholds(names, thresholds or {})
    context = _Context(run_or_df, step_frame(run_or_df), performance, entropy, bounds, forecast)
    alerts = [alert for name in names if (alert := RULES[name].check(context, params[name])) is not None]
    return sorted(alerts, key=lambda a: (a.step, -SEVERITIES.index(a.severity)))


def _check_rule_names(rules) -> list[str]:
    if isinstance(rules, str):
        rules = [r.strip() for r in rules.split(",") if r.strip()]
    names = list(rules)
    unknown = [r for r in names if r not in RULES]
    if unknown:
        raise InputError(f"rules: expected names among {sorted(RULES)}, got unknown {unknown}")
    return names


def _merge_thresholds(names, thresholds: dict) -> dict[str, dict]:
    unknown = [r for r in thresholds if r not in RULES]
    if unknown:
        raise InputError(f"thresholds: expected rule names among {sorted(RULES)}, got unknown {unknown}")
    merged = {}
    for name in names:
        params = dict(RULES[name].defaults)
        override = thresholds.get(name)
        if override is None:
            pass
        elif isinstance(override, dict):
            bad = [k for k in override if k not in params]
            if bad:
                raise InputError(f"thresholds[{name!r}]: expected parameters among {sorted(params)}, got {bad}")
            params.update({key: checked_value(name, key, value, RULES[name].limit(key))
                           for key, value in override.items()})
        elif isinstance(override, Real) and not isinstance(override, bool):
            params["threshold"] = checked_value(name, "threshold", override, RULES[name].limit("threshold"))
        else:
            raise InputError(f"thresholds[{name!r}]: expected a number or a dict of parameters, got {override!r}")
        merged[name] = params
    return merged


def _series(frame: pd.DataFrame, column: str, window: int = 1):
    """(steps, values, smoothed) of a column's non-NaN points; smoothed = trailing mean."""
    values = column_values(frame, column)
    present = np.isfinite(values)
    steps, values = frame["step"].to_numpy(dtype=np.float64)[present], values[present]
    smoothed = pd.Series(values).rolling(int(window), min_periods=1).mean().to_numpy()
    return steps, values, smoothed


def _first(flags: np.ndarray) -> int | None:
    hits = np.flatnonzero(flags)
    return int(hits[0]) if hits.size else None


def _fall_below_start(values, smoothed, p: dict):
    """(index, start, limit) of the first smoothed value below ``threshold`` x the mean of the first
    ``start_points`` values; None when it never falls there or the start is not positive.

    Both "entropy collapsed" and "pass@k met pass@1" are falls relative to where the run began,
    because absolute levels differ from task to task."""
    start = float(values[: p["start_points"]].mean())
    if start <= 0:
        return None
    limit = p["threshold"] * start
    i = _first(smoothed < limit)
    return None if i is None else (i, start, limit)


def _entropy_collapse(ctx: _Context, p: dict) -> Alert | None:
    column = next((c for c in (ctx.entropy, *ENTROPY_COLUMNS) if finite_count(ctx.frame, c) > p["start_points"]), None)
    if column is None:
        return None
    steps, values, smoothed = _series(ctx.frame, column, p["window"])
    found = _fall_below_start(values, smoothed, p)
    if found is None:
        return None
    i, start, limit = found
    return Alert("entropy_collapse", "critical", steps[i], smoothed[i], limit,
                 f"Entropy ({column}) fell to {smoothed[i]:.3g} nats at step {steps[i]:g}, below "
                 f"{p['threshold']:.0%} of its starting {start:.3g} nats.")


def _cov_positive(ctx: _Context, p: dict) -> Alert | None:
    if finite_count(ctx.frame, "cov_logp_adv") == 0:
        return None
    steps, values, _ = _series(ctx.frame, "cov_logp_adv")
    needed = int(p["threshold"])
    streak = 0
    for i, value in enumerate(values):
        streak = streak + 1 if value > 0 else 0
        if streak >= needed:
            return Alert("cov_positive", "warning", steps[i], float(streak), float(needed),
                         f"Cov(log pi, A) has been positive for {streak} logged steps in a row up to step "
                         f"{steps[i]:g}, so updates keep pushing entropy down.")
    return None


def _above_rule(name: str, column: str, what: str):
    def check(ctx: _Context, p: dict) -> Alert | None:
        if finite_count(ctx.frame, column) == 0:
            return None
        steps, _, smoothed = _series(ctx.frame, column, p["window"])
        i = _first(smoothed > p["threshold"])
        if i is None:
            return None
        return Alert(name, "warning", steps[i], smoothed[i], p["threshold"],
                     f"{what} reached {smoothed[i]:.0%} at step {steps[i]:g} (mean of the last "
                     f"{p['window']} logged steps), above {p['threshold']:.0%}.")
    return check


def _ess_low(ctx: _Context, p: dict) -> Alert | None:
    if finite_count(ctx.frame, "ess_frac") == 0:
        return None
    steps, _, smoothed = _series(ctx.frame, "ess_frac", p["window"])
    i = _first(smoothed < p["threshold"])
    if i is None:
        return None
    return Alert("ess_low", "warning", steps[i], smoothed[i], p["threshold"],
                 f"Importance-weight ESS fell to {smoothed[i]:.0%} of the batch at step {steps[i]:g}, "
                 f"below {p['threshold']:.0%}: updates are far off-policy.")


def _pass_at_k_converging(ctx: _Context, p: dict) -> Alert | None:
    ks = [int(c[len("pass_at_"):]) for c in pass_at_k_columns(ctx.frame.columns)]
    ks = [k for k in ks if k > 1 and finite_count(ctx.frame, f"pass_at_{k}") > 0]
    if not ks or finite_count(ctx.frame, "pass_at_1") == 0:
        return None
    k = ks[-1]
    gap_frame = pd.DataFrame({
        "step": ctx.frame["step"],
        "gap": column_values(ctx.frame, f"pass_at_{k}") - column_values(ctx.frame, "pass_at_1"),
    })
    steps, values, smoothed = _series(gap_frame, "gap", p["window"])
    if values.size <= p["start_points"]:
        return None
    found = _fall_below_start(values, smoothed, p)
    if found is None:
        return None
    i, start, limit = found
    return Alert("pass_at_k_converging", "warning", steps[i], smoothed[i], limit,
                 f"pass@{k} - pass@1 shrank to {smoothed[i]:.3g} at step {steps[i]:g}, below "
                 f"{p['threshold']:.0%} of its starting {start:.3g}: samples are losing diversity.")


def _low_headroom(ctx: _Context, p: dict) -> Alert | None:
    forecast = ctx.ceiling_forecast()
    if forecast is None or not forecast.trustworthy or forecast.ceiling is None:
        return None
    column = forecast.backtest.performance_column
    steps, _, smoothed = _series(ctx.frame, column, p["window"])
    headroom = forecast.ceiling - float(smoothed[-1])
    if headroom >= p["threshold"]:
        return None
    return Alert("low_headroom", "info", steps[-1], headroom, p["threshold"],
                 f"Predicted ceiling {forecast.ceiling:.3g} is only {headroom:.3g} above the current "
                 f"{column} {smoothed[-1]:.3g} at step {steps[-1]:g}: little gain is left.")


def _left_law_regime(ctx: _Context, p: dict) -> Alert | None:
    try:
        exit_ = detect_regime_exit(ctx.run_or_df, entropy=ctx.entropy, performance=ctx.performance,
                                   bounds=ctx.bounds, surge=p["threshold"], collapse=p["collapse"],
                                   persist=int(p["persist"]))
    except AnalysisError:
        return None
    if exit_ is None:
        return None
    sentence = exit_.message[0].upper() + exit_.message[1:]
    return Alert("left_law_regime", "critical", exit_.step, exit_.value, exit_.threshold,
                 f"{sentence}; ceiling forecasts stop there.")


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in [
        Rule("entropy_collapse", "Entropy (trailing mean) below `threshold` times its starting value",
             "critical", {"threshold": 0.3, "window": 3, "start_points": 3}, _entropy_collapse,
             {"threshold": Limit.share(high_open=True)}),
        Rule("cov_positive", "Cov(log pi, A) positive for `threshold` logged steps in a row",
             "warning", {"threshold": 20}, _cov_positive, {"threshold": Limit.count()}),
        Rule("zero_std_groups", "Share of zero-reward-variance groups (trailing mean) above `threshold`",
             "warning", {"threshold": 0.5, "window": 5},
             _above_rule("zero_std_groups", "zero_std_group_frac", "The share of groups with zero reward variance"),
             {"threshold": Limit.share(low_open=False, high_open=True)}),
        Rule("pass_at_k_converging", "pass@k - pass@1 (largest k, trailing mean) below `threshold` times its start",
             "warning", {"threshold": 0.25, "window": 5, "start_points": 3}, _pass_at_k_converging,
             {"threshold": Limit.share(high_open=True)}),
        Rule("low_headroom", "Trustworthy predicted ceiling less than `threshold` above current performance",
             "info", {"threshold": 0.02, "window": 5}, _low_headroom, {"threshold": Limit()}),
        Rule("ess_low", "Importance-weight ESS fraction (trailing mean) below `threshold`",
             "warning", {"threshold": 0.5, "window": 3}, _ess_low, {"threshold": Limit.share()}),
        Rule("left_law_regime", "Entropy surging above (1 + `threshold`) times its start, or performance "
             "collapsing by `collapse` of its range, for `persist` points",
             "critical", {"threshold": 0.5, "collapse": 0.5, "persist": 2}, _left_law_regime,
             {"threshold": Limit(low_open=True), "collapse": Limit.share()}),
    ]
}
