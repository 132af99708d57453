"""Keep a user's zoom when a live refresh replaces a figure.

Why: plotly keeps zoom across figure updates through ``uirevision``, but the dcc.Graph of the
installed Dash re-plots once after every zoom, which makes plotly forget the zoom it should keep
(seen in a real browser: the next figure update autoranges). So the server re-applies it: when
a figure is rebuilt only because its runs got new steps, the axis ranges the user zoomed to
(the graph's ``relayoutData``) are written into the new figure. A double-click (autorange) or a
change of runs or metric starts from a fresh view.
"""

from __future__ import annotations

import plotly.graph_objects as go

AXES = ("xaxis", "yaxis")


def zoomed_ranges(relayout: dict | None) -> dict[str, list[float]]:
    """{axis: [low, high]} for each axis the user zoomed in ``relayout`` (plotly's relayoutData)."""
    ranges = {}
    for axis in AXES:
        if not relayout or relayout.get(f"{axis}.autorange"):
            continue
        whole = relayout.get(f"{axis}.range")
        low, high = whole if isinstance(whole, list) and len(whole) == 2 else (
            relayout.get(f"{axis}.range[0]"), relayout.get(f"{axis}.range[1]"))
        if isinstance(low, (int, float)) and isinstance(high, (int, float)):
            ranges[axis] = [low, high]
    return ranges


def keep_zoom(fig: go.Figure, relayout: dict | None) -> go.Figure:
    """``fig`` with the user's zoomed ranges applied (a copy; ``fig`` may be a cached object)."""
    ranges = zoomed_ranges(relayout)
    if not ranges or len(fig.data) == 0:
        return fig
    zoomed = go.Figure(fig)
    zoomed.update_layout({axis: {"range": value, "autorange": False} for axis, value in ranges.items()})
    return zoomed
