"""The look shared by every figure (report and dashboard), labels from the metric registry, and
the figure shown when there is nothing to draw.

Why: one place decides margins, fonts, colours (``entropymon.display.RUN_COLORS``), the legend
and the ``uirevision`` that keeps a user's zoom through live refreshes; axis labels and hover
text come from the registry, the one place a metric is described, instead of a copy that would
drift; an empty or missing series becomes a figure that says so in words instead of a blank axis.
"""

from __future__ import annotations

import html
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go

from entropymon.display import RUN_COLORS
from entropymon.registry import SAMPLE_COLUMNS, TOKEN_COLUMNS, describe_metric

# Above this many points a trace is drawn with WebGL (Scattergl) instead of SVG.
WEBGL_MIN_POINTS = 1000
GRID_COLOR = "#EBF0F8"
TEXT_COLOR = "#2a3f5f"
LEGEND = {"orientation": "h", "y": -0.22, "x": 0}


@lru_cache(maxsize=1)
def light_template() -> go.layout.Template:
    """The look of plotly's "plotly_white", reduced to what these 2-D figures use.

    Why not ``template="plotly_white"``: plotly deep-copies and validates that whole template
    (every trace type's defaults) into each figure - about 10 ms per figure and 6 KB of JSON
    each, more than the data of a thinned curve - for settings no panel here uses.
    """
    axis = {"gridcolor": GRID_COLOR, "linecolor": GRID_COLOR, "zerolinecolor": GRID_COLOR, "zerolinewidth": 2,
            "ticks": "", "automargin": True, "title": {"standoff": 15}}
    return go.layout.Template(layout={
        "font": {"color": TEXT_COLOR}, "paper_bgcolor": "white", "plot_bgcolor": "white",
        "hoverlabel": {"align": "left"}, "xaxis": axis, "yaxis": axis, "colorway": list(RUN_COLORS),
        "coloraxis": {"colorbar": {"outlinewidth": 0, "ticks": ""}},
        "annotationdefaults": {"arrowcolor": TEXT_COLOR, "arrowhead": 0, "arrowwidth": 1},
    })


# the height of a figure's box (px); an optional plot that the run did not log is drawn as a short
# box holding only its note, not as a full-size empty plot
FIGURE_HEIGHT = 320
NOT_LOGGED_HEIGHT = 110


def styled(fig: go.Figure, title: str, *, uirevision=None, x_title: str = "step", y_title: str = "",
           height: int = FIGURE_HEIGHT) -> go.Figure:
    """Apply the shared layout. ``uirevision``: while it stays equal, plotly keeps the user's
    zoom, pan and legend clicks across figure updates (live refresh)."""
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 14}},
        margin={"l": 56, "r": 16, "t": 40, "b": 44},
        height=height,
        template=light_template(),
        legend=LEGEND,
        uirevision=uirevision if uirevision is not None else title,
        hovermode="closest",
    )
    fig.update_xaxes(title_text=x_title)
    if y_title:
        fig.update_yaxes(title_text=y_title)
    return fig


def empty_figure(message: str, title: str = "", height: int = FIGURE_HEIGHT) -> go.Figure:
    """A figure with no axes that shows ``message`` in its middle."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 13, "color": "#555"})
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 14}}, height=height, template=light_template(),
        xaxis={"visible": False}, yaxis={"visible": False}, margin={"l": 16, "r": 16, "t": 40, "b": 16},
    )
    return fig


def is_empty_figure(fig: go.Figure) -> bool:
    return len(fig.data) == 0


def scatter_class(n_points: int):
    """go.Scattergl for big series, go.Scatter for small ones (SVG is crisper, WebGL faster)."""
    return go.Scattergl if n_points >= WEBGL_MIN_POINTS else go.Scatter


def finite_xy(x, y) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) as float arrays with the pairs holding a NaN/inf dropped."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


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
