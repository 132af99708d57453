"""The range a performance metric can take, so a forecast outside it is flagged, not printed.

Why: accuracy and 0/1 rewards live in [0, 1]; an extrapolated law happily predicts 1.7 (or -3 on
a diverging run). Knowing the range turns such a number into a warning.

Inference rule for ``bounds="auto"`` (first that applies):
1. the column is a known fraction: ``eval_accuracy``, ``pass_at_<k>``, or a name containing
   ``accuracy``/``acc`` -> (0, 1);
2. every observed value is exactly 0 or 1 -> (0, 1);
3. the run has a samples table (``run.samples``) whose per-completion ``reward`` values are all
   0 or 1, and the column is a mean of them (``reward_mean``, ``trl/reward``) -> (0, 1);
4. otherwise unknown (None): nothing is flagged, and interval-width checks fall back to the
   observed span of the metric.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from entropymon.errors import InputError

UNIT_INTERVAL = (0.0, 1.0)
_FRACTION_NAMES = re.compile(r"(eval_accuracy|pass_at_\d+|.*accuracy.*|(.*[/_])?acc([/_].*)?)\Z")
_REWARD_MEANS = ("reward_mean", "trl/reward")


def infer_bounds(column: str, values, samples: pd.DataFrame | None = None) -> tuple[float, float] | None:
    """The metric's range by the module's rule, or None when it cannot be known."""
    if _FRACTION_NAMES.match(column):
        return UNIT_INTERVAL
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size and np.all((values == 0.0) | (values == 1.0)):
        return UNIT_INTERVAL
    if column in _REWARD_MEANS and isinstance(samples, pd.DataFrame) and "reward" in samples.columns:
        rewards = pd.to_numeric(samples["reward"], errors="coerce").to_numpy(dtype=np.float64)
        rewards = rewards[np.isfinite(rewards)]
        if rewards.size and np.all((rewards == 0.0) | (rewards == 1.0)):
            return UNIT_INTERVAL
    return None


def resolve_bounds(bounds, column: str, values, run_or_df=None) -> tuple[float, float] | None:
    """``bounds`` as given ("auto", None or (low, high)) turned into a checked range or None."""
    if isinstance(bounds, str):
        if bounds != "auto":
            raise InputError(f"bounds: expected 'auto', None or (low, high), got {bounds!r}")
        samples = getattr(run_or_df, "samples", None)
        return infer_bounds(column, values, samples if isinstance(samples, pd.DataFrame) else None)
    return check_bounds(bounds)


def check_bounds(bounds) -> tuple[float, float] | None:
    if bounds is None:
        return None
    try:
        low, high = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise InputError(f"bounds: expected None or (low, high) numbers, got {bounds!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise InputError(f"bounds: expected finite low < high, got ({low}, {high})")
    return (low, high)


def format_bounds(bounds: tuple[float, float]) -> str:
    return f"[{bounds[0]:g}, {bounds[1]:g}]"
