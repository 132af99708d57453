"""The page layout, built from small functions: one per page and one per panel.

Why: each function returns a plain Dash component tree with stable ids that the callbacks
(callbacks.py) target; the run view's panels and their ids are declared once, in run_view.py,
and drawn here from that declaration. The layout is built per page load (``app_layout``, called
by the app's layout function), and nothing is created at import time.
"""

from __future__ import annotations

from dash import dash_table, dcc, html

from entropymon.display import number_format
from entropymon_dashboard.alerts_view import health_styles
from entropymon_dashboard.run_view import RUN_PANELS
from entropymon_dashboard.runs_table import COLUMNS, FIGURE_COLUMNS

GRAPH_CONFIG = {"displaylogo": False}


def graph(graph_id: str) -> dcc.Graph:
    return dcc.Graph(id=graph_id, config=GRAPH_CONFIG, className="panel-graph")


def table_column(key: str, label: str | None = None, *, figure: bool = False) -> dict:
    """A DataTable column; a ``figure`` column holds numbers (so it sorts as numbers) and the
    browser shows them as ``display.number`` writes them (``display.number_format``)."""
    column = {"name": label or key, "id": key}
    if figure:
        column.update(type="numeric", format=number_format())
    return column


def section(title: str, note: str, children) -> html.Section:
    return html.Section([html.H3(title), html.P(note, className="note"), html.Div(children, className="grid")],
                        className="section")


def panel_section(declared) -> html.Section:
    """A ``run_view.Section``: its header (if any), then one graph per id."""
    header = [declared.header()] if declared.header is not None else []
    return section(declared.title, declared.note, [*header, *(graph(g) for g in declared.graphs)])


def runs_page() -> html.Div:
    table = dash_table.DataTable(
        id="runs-table",
        columns=[table_column(key, label, figure=key in FIGURE_COLUMNS) for key, label, _ in COLUMNS],
        data=[],
        row_selectable="multi",
        selected_rows=[],  # the first poll selects the first run
        sort_action="native",
        filter_action="native",
        page_action="none",
        tooltip_header={key: description for key, _, description in COLUMNS},
        tooltip_delay=300,
        tooltip_duration=None,
        style_table={"overflowX": "auto"},
        style_cell={"fontFamily": "inherit", "fontSize": 13, "padding": "4px 8px", "textAlign": "left"},
        style_header={"fontWeight": "600", "textDecoration": "underline dotted"},
        style_data_conditional=[
            {"if": {"filter_query": "{status} = live"}, "backgroundColor": "#eef8ee"},
            {"if": {"filter_query": "{status} = broken"}, "backgroundColor": "#fdecea"},
            {"if": {"filter_query": "{trust} = no", "column_id": "trust"}, "color": "#b00"},
            *health_styles(),
        ],
    )
    return html.Div([
        html.P("Tick runs to compare them on the Run view; the table refreshes while runs are written.",
               className="note"),
        table,
        html.Div(id="runs-message", className="message"),
    ], className="page")


def run_controls() -> html.Div:
    return html.Div([
        html.Label(["Run for the detail panels", dcc.Dropdown(id="focus-run", clearable=False)], className="control"),
        html.Label(["Entropy", dcc.Dropdown(id="entropy-column", value="entropy_mean", clearable=False)],
                   className="control"),
        html.Label(["Performance", dcc.Dropdown(id="performance-column", value="reward_mean", clearable=False)],
                   className="control"),
        html.Label(["Smoothing", dcc.Slider(id="smoothing", min=0, max=0.95, step=0.05, value=0.6,
                                             marks={0: "0", 0.5: "0.5", 0.9: "0.9"})], className="control wide"),
    ], className="controls")


def run_page(panels=RUN_PANELS) -> html.Div:
    return html.Div([run_controls(), *(panel_section(s) for panel in panels for s in panel.sections)],
                    className="page")


def tokens_page() -> html.Div:
    controls = html.Div([
        html.Label(["Run", dcc.Dropdown(id="token-run", clearable=False)], className="control"),
        html.Label(["Step", dcc.Dropdown(id="token-step", clearable=False)], className="control"),
        html.Label(["Reward", dcc.RangeSlider(id="token-reward", min=0, max=1, value=[0, 1], allowCross=False,
                                              tooltip={"placement": "bottom"})], className="control wide"),
        html.Label(["Advantage", dcc.RadioItems(id="token-sign", value="all", inline=True, options=[
            {"label": " all", "value": "all"}, {"label": " positive", "value": "positive"},
            {"label": " negative", "value": "negative"}])], className="control"),
        html.Label(["Colour by", dcc.RadioItems(id="token-color", value="entropy", inline=True, options=[
            {"label": " entropy", "value": "entropy"}, {"label": " Cov_i", "value": "cov"}])], className="control"),
    ], className="controls")
    forking = dash_table.DataTable(
        id="forking-table",
        columns=[table_column(n, figure=n in ("forking_rate", "mean_entropy"))
                 for n in ("token", "count", "forking", "forking_rate", "mean_entropy")],
        data=[], page_size=15, sort_action="native",
        style_cell={"fontFamily": "monospace", "fontSize": 13, "padding": "2px 8px", "textAlign": "left"},
        tooltip_header={"forking": "times the token's entropy exceeded 0.672 nats",
                        "forking_rate": "forking / count", "mean_entropy": "mean entropy (nats)"},
    )
    return html.Div([
        controls,
        html.Div([
            html.Div([html.H3("Completions"),
                      html.P("Background: red grows with the token's entropy (or Cov_i: red positive, blue "
                             "negative). Hover a token for its numbers.", className="note"),
                      html.Div(id="token-completions", className="completions")], className="completions-col"),
            html.Div([html.H3("Tokens that fork most"), forking], className="forking-col"),
        ], className="tokens-body"),
    ], className="page")


def app_layout(logdir_label: str, poll_ms: int) -> html.Div:
    return html.Div([
        html.Header([html.H1("entropymon"), html.Span(logdir_label, className="logdir")]),
        dcc.Store(id="selected-runs", data=None),
        dcc.Store(id="data-version", data={}),
        dcc.Store(id="curves-key"), dcc.Store(id="focus-key"), dcc.Store(id="token-key"),
        dcc.Store(id="token-run-auto"),  # the Tokens run as last set to follow the focus (callbacks.token_run_for)
        dcc.Interval(id="poll", interval=poll_ms, n_intervals=0),
        dcc.Tabs(id="tabs", value="runs", children=[
            dcc.Tab(label="Runs", value="runs", children=runs_page()),
            dcc.Tab(label="Run view", value="run", children=run_page()),
            dcc.Tab(label="Tokens", value="tokens", children=tokens_page()),
        ]),
    ], className="app")
