"""Collapse diagnosis: named rules, each saying what is wrong, the evidence and what to try.

Why: a user (or a CI job through ``entropymon check``, or the Monitor while training) wants one
answer per known failure mode of RL post-training, not a wall of curves. ``RULES`` is the one
registry of rules, with their descriptions and default parameters; the CLI's ``check``, the
summary, the report, the dashboard and the live Monitor all read it, so they give the same alerts.

Every rule uses only data at or before the step it reports: an alert carries ``step`` (where the
problem began) and ``first_visible_step`` (the last step whose data the rule needed, i.e. the
first step a live user could have seen it); the run cut at ``first_visible_step`` gives the same
rule, severity and step. Each alert also carries ``evidence`` (the values against their baseline,
in a sentence and as numbers), the ``plot`` it belongs to and ``remedies``
(``analysis.remedies``). The rules themselves live in ``analysis.alert_rules``.

``thresholds`` overrides defaults: ``{"entropy_collapse": 0.2}`` sets a rule's ``threshold``;
``{"zero_variance_waste": {"threshold": 0.6, "window": 10}}`` sets any of its parameters. Each rule
declares the range of its parameters (``rule_params.Limit``); an override outside it is an
``InputError``, not a rule that silently never fires.
"""

from __future__ import annotations

from dataclasses import replace
from numbers import Real

import numpy as np
import pandas as pd

from entropymon.analysis._frame import step_frame
from entropymon.analysis.alert_rules import RULE_LIST
from entropymon.analysis.alert_types import PLOTS, SEVERITIES, Alert, Rule, RuleContext
from entropymon.analysis.remedies import at_temperature
from entropymon.analysis.rule_params import checked_value
from entropymon.display import health_of
from entropymon.errors import InputError

__all__ = ["Alert", "Rule", "RuleContext", "RULES", "LIVE_RULES", "SEVERITIES", "PLOTS", "diagnose", "health"]

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

    ``performance``, ``entropy``, ``bounds`` choose the columns and the metric's range as in the
    law fit (``fit_run_law``). ``forecast``: the run's ``CeilingForecast`` when the caller has it
    (``summarize`` does), so the law is not fitted twice.
    """
    names = list(RULES) if rules is None else check_rule_names(rules)
    params = merge_thresholds(names, thresholds or {})
    context = RuleContext(run_or_df, step_frame(run_or_df), performance, entropy, bounds, forecast)
    alerts = [alert for name in names if (alert := RULES[name].check(context, params[name])) is not None]
    temperature = sampling_temperature(context.frame)
    if temperature is not None:  # the temperature remedy names a value above the run's own
        alerts = [replace(a, remedies=at_temperature(a.remedies, temperature)) if a.remedies else a for a in alerts]
    return sorted(alerts, key=lambda a: (a.step, -SEVERITIES.index(a.severity), a.rule))


def sampling_temperature(frame) -> float | None:
    """The run's sampling temperature as logged (``entropy_temperature``, the temperature its
    entropies were computed at: the trainer's, through the TRL and veRL integrations): the last
    positive value, or None when the column is absent or empty."""
    if "entropy_temperature" not in getattr(frame, "columns", ()):
        return None
    values = pd.to_numeric(frame["entropy_temperature"], errors="coerce").to_numpy(dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    return float(values[-1]) if values.size else None


def health(alerts) -> str:
    """"healthy", "warning" or "critical": the worst severity among warning/critical alerts."""
    return health_of(a["severity"] if isinstance(a, dict) else a.severity for a in alerts)


def check_rule_names(rules) -> list[str]:
    if isinstance(rules, str):
        rules = [r.strip() for r in rules.split(",") if r.strip()]
    names = list(rules)
    unknown = [r for r in names if r not in RULES]
    if unknown:
        raise InputError(f"rules: expected names among {sorted(RULES)}, got unknown {unknown}")
    return names


def merge_thresholds(names, thresholds: dict) -> dict[str, dict]:
    if not isinstance(thresholds, dict):
        raise InputError(f"thresholds: expected a dict of rule name -> value or parameters, got {thresholds!r}")
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


RULES: dict[str, Rule] = {rule.name: rule for rule in RULE_LIST}
LIVE_RULES: tuple[str, ...] = tuple(name for name, rule in RULES.items() if rule.live)
