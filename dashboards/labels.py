"""Axis labels and hover text for metric columns, taken from the metric registry.

Why: the registry is the one place a metric is described; the dashboard shows that description
on hover instead of keeping its own copy that would drift.
"""

from __future__ import annotations

import html

from entropymon.registry import SAMPLE_COLUMNS, TOKEN_COLUMNS, describe_metric


def metric_info(name: str, table: str = "steps"):
    if table == "samples":
        return SAMPLE_COLUMNS.get(name)
    if table == "tokens":
        return TOKEN_COLUMNS.get(name)
    return describe_metric(name)


def metric_label(name: str, table: str = "steps") -> str:
    """``name`` with its unit, e.g. "entropy_mean (nats)"."""
    info = metric_info(name, table)
    return f"{name} ({info.unit})" if info is not None and info.unit else name


def metric_description(name: str, table: str = "steps") -> str:
    """The registry's one-line description, or a plain note for an unregistered column."""
    info = metric_info(name, table)
    return info.description if info is not None else f"{name} (not described in the metric registry)"


def hover_template(name: str, x_label: str = "step", table: str = "steps") -> str:
    """A plotly hovertemplate: the value, the step and the metric's description."""
    description = html.escape(metric_description(name, table), quote=False)
    return f"<b>{name}</b> %{{y:.4g}}<br>{x_label} %{{x}}<br><i>{description}</i><extra>%{{fullData.name}}</extra>"
