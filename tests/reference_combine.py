"""``combine_ranks`` as it was before it was vectorised: the stats objects merged one step at a time.

The reference the vectorised ``metrics.stats.combine_ranks`` is checked against, kept in one place
for the two that use it: tests/test_metrics_stats.py (equal to 1e-12 on messy random rows) and
benchmarks/scale.py (equal, and timed as the baseline it replaced). A fixture, not a shipped module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from entropymon.metrics.stats import STATS_CLASSES
from entropymon.registry import describe_metric


def reference_combine_ranks(steps: pd.DataFrame) -> pd.DataFrame:
    """combine_ranks as it was before vectorising: merge the stats objects one step at a time."""
    frame = steps.sort_values(["step", "rank"], kind="stable")
    n_ranks = frame.groupby("step", sort=True)["rank"].transform("size")
    single = frame[n_ranks == 1]
    combined = []
    for _, group in frame[n_ranks > 1].groupby("step", sort=True):
        records = group.drop(columns="rank").to_dict("records")
        out = dict(records[0])
        out["n_ranks"] = len(records)
        for column in out:
            info = describe_metric(column)
            if column in ("step", "n_ranks") or info is None:
                continue
            values = [r[column] for r in records if not is_missing(r[column])]
            out[column] = _reference_merge_values(values, info.merge, out[column])
        for cls in STATS_CLASSES:
            parts = [s for s in (cls.from_columns(r) for r in records) if s is not None]
            if parts:
                merged = cls.merged(parts)
                out.update(merged.to_columns())
                out.update(merged.compute())
        combined.append(out)
    result = single.drop(columns="rank").assign(n_ranks=1)
    if combined:
        result = pd.concat([result, pd.DataFrame(combined)], ignore_index=True)
    result["n_ranks"] = result["n_ranks"].astype("int64")
    return result.sort_values("step", kind="stable").reset_index(drop=True)


def is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, (list, tuple, np.ndarray)):
        return False
    return bool(pd.isna(value))


def _reference_merge_values(values, rule, lowest):
    if not values:
        return lowest
    if rule == "first":
        return values[0]
    if isinstance(values[0], (list, tuple, np.ndarray)):
        return [int(v) for v in np.sum([np.asarray(v) for v in values], axis=0)] if rule == "sum" else values[0]
    return float({"sum": np.sum, "max": np.max, "min": np.min}.get(rule, np.mean)(values))
