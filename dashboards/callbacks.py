"""The Dash callbacks: wiring between components; the work is in panels.py.

The run view's figure callbacks are not written out here: one is registered per panel that
run_view.py declares, from the panel's own outputs and inputs (``register_panel``).

Why the version stores: the browser polls every few seconds. The poll callback only lists run
folders (store.versions) and answers "nothing changed" with ``no_update``; when a run changed it
publishes the new versions. Three small keys (``curves-key``, ``focus-key``, ``token-key``) then
change only when a run that a view actually shows changed, so figures are rebuilt and resent only
for those views; a key says whether only versions changed (``refresh``) or the runs did. On a
refresh the user's zoom is re-applied (``keep_zoom``, below; figures also carry a ``uirevision`` per run), and
dropdown values are kept whenever they are still valid, so a refresh keeps the selections.
"""

from __future__ import annotations

import plotly.graph_objects as go
from dash import Input, Output, State, ctx, no_update
from dash.exceptions import PreventUpdate

from entropymon_dashboard import panels
from entropymon_dashboard.run_view import RUN_PANELS, SELECTED, Panel
from entropymon_dashboard.runs_table import SUMMARY_WAIT_S, runs_rows, tooltips
from entropymon_dashboard.store import RunStore


def _key(run_ids, versions: dict) -> str:
    return "|".join(f"{run_id}@{versions.get(run_id, '')}" for run_id in run_ids or [])


def _ids(value: dict | None) -> list[str]:
    key = (value or {}).get("key")
    return [part.rsplit("@", 1)[0] for part in key.split("|")] if key else []


def _first(value: dict | None):
    return (_ids(value) or [None])[0]


def _next_key(run_ids, versions: dict, old: dict | None):
    """The new key store value, or no_update when nothing the view shows changed."""
    key = _key(run_ids, versions or {})
    if old and old.get("key") == key:
        return no_update
    return {"key": key, "refresh": bool(old) and _ids(old) == list(run_ids or [])}


def _refreshing(value: dict | None, key_id: str) -> bool:
    """True when the callback fired only because the shown runs got new data."""
    return ctx.triggered_id == key_id and bool((value or {}).get("refresh"))


def _zoomed(figures, relayouts, refreshing: bool) -> tuple:
    if not refreshing:
        return tuple(figures)
    return tuple(keep_zoom(fig, relayout) for fig, relayout in zip(figures, relayouts))


def _changed(new, old):
    return no_update if new == old else new


def token_run_for(every: list, focus, token_run, auto) -> tuple:
    """(the Tokens tab's run, the value to remember as set automatically). The Tokens run follows
    the focused run (the Runs page's ticked run, or the Run view's detail run) while it is the
    value this rule last set (``auto``): once the user picks another run on the Tokens tab, that
    pick stays while the run exists. It kept its first value after the user ticked another run."""
    follows = token_run is None or token_run not in every or token_run == auto
    if not follows:
        return token_run, auto
    token_run = focus if focus in every else (every[0] if every else None)
    return token_run, token_run


def _options(values) -> list[dict]:
    return [{"label": v, "value": v} for v in values]


def register_panel(app, store: RunStore, panel: Panel) -> None:
    """One callback for ``panel``: its key store and controls in, its texts and figures out; on a
    refresh of the same runs each figure keeps the user's zoom."""
    n_controls, n_texts = len(panel.controls), len(panel.texts)

    def update(key, *values):
        controls, relayouts = values[:n_controls], values[n_controls:]
        runs = _ids(key) if panel.runs == SELECTED else _first(key)
        built = tuple(panel.build(store, runs, *controls))
        figures = _zoomed(built[n_texts:], relayouts, _refreshing(key, panel.key_store))
        return (*built[:n_texts], *figures)

    update.__name__ = f"{panel.name}_panel"
    app.callback(*panel.outputs, *panel.inputs)(update)


def register_callbacks(app, store: RunStore, run_panels=RUN_PANELS) -> None:
    for panel in run_panels:
        register_panel(app, store, panel)

    @app.callback(
        Output("runs-table", "data"), Output("runs-table", "selected_rows"), Output("runs-table", "tooltip_data"),
        Output("data-version", "data"), Output("runs-message", "children"),
        Input("poll", "n_intervals"), State("selected-runs", "data"), State("data-version", "data"),
        State("runs-table", "data"),
    )
    def poll(_, selected, known, shown):
        versions = store.versions()
        unchanged = versions == known and ctx.triggered_id == "poll"
        if unchanged and not any(row.get("pending") for row in shown or []):
            raise PreventUpdate  # nothing changed: an empty 204 answer
        # a summary not there within SUMMARY_WAIT_S goes on in the background: its row says
        # "computing" and a later poll (the rows shown had ``pending`` set) fills it in
        rows = runs_rows(store, wait_s=SUMMARY_WAIT_S)
        if unchanged and rows == shown:
            raise PreventUpdate  # still computing
        if selected is None:  # first load: show the first run
            selected = [rows[0]["id"]] if rows else []
        chosen = [i for i, row in enumerate(rows) if row["id"] in set(selected)]
        message = "" if rows else "No runs found under this logdir (a run is a folder with a run.json)."
        # a row filled in changes no run: the version store stays as it is, and the views with it
        return rows, chosen, tooltips(rows), no_update if unchanged else versions, message

    @app.callback(Output("selected-runs", "data"), Input("runs-table", "selected_rows"),
                  State("runs-table", "data"), State("selected-runs", "data"), prevent_initial_call=True)
    def remember_selection(selected_rows, rows, current):
        if selected_rows is None or not rows:
            return no_update
        chosen = sorted(rows[i]["id"] for i in selected_rows if 0 <= i < len(rows))
        return _changed(chosen, current)

    @app.callback(Output("focus-run", "options"), Output("focus-run", "value"),
                  Output("token-run", "options"), Output("token-run", "value"), Output("token-run-auto", "data"),
                  Input("selected-runs", "data"), Input("data-version", "data"), Input("focus-run", "value"),
                  State("token-run", "value"), State("token-run-auto", "data"))
    def run_choices(selected, versions, focus, token_run, auto):
        selected = selected or []
        every = list(versions or {})
        focus = focus if focus in selected else (selected[0] if selected else None)
        token_run, followed = token_run_for(every, focus, token_run, auto)
        return _options(selected), focus, _options(every), token_run, _changed(followed, auto)

    @app.callback(Output("curves-key", "data"), Input("selected-runs", "data"), Input("data-version", "data"),
                  State("curves-key", "data"))
    def curves_key(selected, versions, old):
        return _next_key(selected, versions, old)

    @app.callback(Output("focus-key", "data"), Input("focus-run", "value"), Input("data-version", "data"),
                  State("focus-key", "data"))
    def focus_key(focus, versions, old):
        return _next_key([focus] if focus else [], versions, old)

    @app.callback(Output("token-key", "data"), Input("token-run", "value"), Input("data-version", "data"),
                  State("token-key", "data"))
    def token_key(token_run, versions, old):
        return _next_key([token_run] if token_run else [], versions, old)

    @app.callback(Output("entropy-column", "options"), Output("entropy-column", "value"),
                  Output("performance-column", "options"), Output("performance-column", "value"),
                  Input("curves-key", "data"), State("entropy-column", "value"), State("performance-column", "value"))
    def metric_choices(key, entropy, performance):
        entropy_options, performance_options = panels.metric_options(store, _ids(key))
        entropy = entropy if entropy in entropy_options or not entropy_options else entropy_options[0]
        performance = performance if performance in performance_options or not performance_options \
            else performance_options[0]
        return _options(entropy_options), entropy, _options(performance_options), performance

    @app.callback(Output("token-step", "options"), Output("token-step", "value"), Input("token-key", "data"),
                  State("token-step", "value"))
    def token_steps(key, step):
        sample_steps, token_step_list = panels.token_steps(store, _first(key))
        with_tokens = set(token_step_list)
        options = [{"label": f"{s}" + (" (tokens)" if s in with_tokens else ""), "value": s}
                   for s in reversed(sample_steps)]
        if step not in sample_steps:
            step = token_step_list[-1] if token_step_list else (sample_steps[-1] if sample_steps else None)
        return options, step

    @app.callback(Output("token-reward", "min"), Output("token-reward", "max"), Output("token-reward", "value"),
                  Output("token-reward", "step"), Input("token-run", "value"), Input("token-step", "value"))
    def token_reward_range(token_run, step):
        if token_run is None or step is None:
            return 0, 1, [0, 1], 0.01
        samples, _ = panels.step_rows(store, token_run, step)
        bounds = panels.reward_bounds(samples)
        if bounds is None or bounds[0] == bounds[1]:
            low = 0 if bounds is None else bounds[0]
            return low, low + 1, [low, low + 1], 0.01
        return bounds[0], bounds[1], [bounds[0], bounds[1]], (bounds[1] - bounds[0]) / 100

    @app.callback(Output("token-completions", "children"), Output("forking-table", "data"),
                  Input("token-key", "data"), Input("token-step", "value"), Input("token-reward", "value"),
                  Input("token-sign", "value"), Input("token-color", "value"))
    def tokens(key, step, reward, sign, color_by):
        return panels.token_panel(store, _first(key), step, reward, sign or "all", color_by or "entropy")


# -- keeping a user's zoom when a live refresh replaces a figure --------------------
# Why: plotly keeps zoom across figure updates through ``uirevision``, but the dcc.Graph of the
# installed Dash re-plots once after every zoom, which makes plotly forget the zoom it should keep
# (seen in a real browser: the next figure update autoranges). So the server re-applies it: when
# a figure is rebuilt only because its runs got new steps, the axis ranges the user zoomed to
# (the graph's ``relayoutData``) are written into the new figure. A double-click (autorange) or a
# change of runs or metric starts from a fresh view.

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
