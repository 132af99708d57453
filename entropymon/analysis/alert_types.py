"""The shapes of the diagnosis: ``Alert`` (one fired rule), ``Rule`` (one registry entry) and the
``RuleContext`` a rule reads. Kept apart from ``alerts`` (the registry and ``diagnose``) and
``alert_rules`` (the conditions) so that both import these without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from entropymon.display import SEVERITIES
from entropymon.results import json_float

# which plot an alert belongs to (the dashboard marks its step there)
FORECAST_BOOTSTRAP = 200  # resamples when diagnose fits the law itself
PLOTS = ("entropy", "performance", "groups", "diversity", "importance", "law")


@dataclass(frozen=True)
class Alert:
    """One fired rule: how bad, where it began and when it could first be seen, why, and what to try."""

    rule: str
    severity: str
    step: float
    first_visible_step: float
    message: str
    evidence: dict = field(default_factory=dict)  # "text" (words) + the numbers behind it
    plot: str = "entropy"
    remedies: tuple = ()  # dicts from analysis.remedies

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity: expected one of {SEVERITIES}, got {self.severity!r}")
        object.__setattr__(self, "step", float(self.step))
        object.__setattr__(self, "first_visible_step", float(self.first_visible_step))
        object.__setattr__(self, "remedies", tuple(self.remedies))

    def to_dict(self) -> dict:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "step": json_float(self.step),
            "first_visible_step": json_float(self.first_visible_step),
            "message": self.message,
            "evidence": _jsonable(self.evidence),
            "plot": self.plot,
            "remedies": [dict(r) for r in self.remedies],
        }

    def line(self) -> str:
        """The alert on one line, for a training log: ``entropymon critical [divergence] step 25: ...``."""
        return f"entropymon {self.severity} [{self.rule}] step {self.step:g}: {self.message}"


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    severity: str  # the most severe level it can fire at
    defaults: dict
    check: Callable[[RuleContext, dict], Alert | None]
    live: bool = True  # cheap enough to evaluate on the Monitor's thread at every step
    limits: dict = field(default_factory=dict)  # parameter -> rule_params.Limit (else inferred from the default)

    def limit(self, parameter: str):
        from entropymon.analysis.rule_params import inferred_limit

        return self.limits.get(parameter) or inferred_limit(self.defaults[parameter])


@dataclass
class RuleContext:
    """What a rule reads: the step table, the run (for its samples table) and the column choices."""

    run_or_df: object
    frame: pd.DataFrame
    performance: str
    entropy: str
    bounds: object
    forecast: object = field(default=None)  # the run's CeilingForecast: given by the caller, else fitted once

    def ceiling_forecast(self):
        """The run's ``CeilingForecast`` (the one given to ``diagnose``, else computed once with
        ``FORECAST_BOOTSTRAP`` resamples), or None when the law cannot be fitted."""
        if self.forecast is None:
            from entropymon.analysis.forecast import forecast_ceiling
            from entropymon.errors import AnalysisError

            try:
                self.forecast = forecast_ceiling(self.run_or_df, performance=self.performance, entropy=self.entropy,
                                                 bounds=self.bounds, n_bootstrap=FORECAST_BOOTSTRAP)
            except AnalysisError:
                self.forecast = False
        return self.forecast or None

    @property
    def samples(self) -> pd.DataFrame | None:
        samples = getattr(self.run_or_df, "samples", None)
        return samples if isinstance(samples, pd.DataFrame) and len(samples) else None


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) or hasattr(value, "dtype"):
        return json_float(value)
    return value
