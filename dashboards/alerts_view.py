"""What the dashboard says is wrong: the health badge, the alerts panel and the alert markers.

Why here and pure: the alerts come from ``summarize_run`` (the same list ``entropymon check`` and
the report print), and these functions only turn that list into components and figure shapes,
so they are tested without a browser. ``HEALTH_STYLES`` colour the Runs table's badge; its hover
text (``health_tooltip``) gives the reasons and the trust verdict. ``alerts_panel`` opens the Run
view: one card per alert with its message, evidence and remedies. ``mark_alerts`` draws each
alert's step on the plot it belongs to (``Alert.plot``).
"""

from __future__ import annotations

from dash import html

from entropymon.display import label_rows, number

HEALTH_COLORS = {"healthy": "#2e7d32", "warning": "#b26a00", "critical": "#c62828", "broken": "#555"}
SEVERITY_COLORS = {"info": "#1565c0", "warning": HEALTH_COLORS["warning"], "critical": HEALTH_COLORS["critical"]}
# which Run-view graphs show each alert plot's marker
PLOT_GRAPHS = {
    "entropy": ("entropy-curves",),
    "performance": ("performance-curves",),
    "groups": ("div-zero-std",),
    "diversity": ("div-pass-k",),
    "importance": ("div-ess",),
    "law": ("law-ceiling",),
}


def health_styles(column: str = "health") -> list[dict]:
    """``style_data_conditional`` entries that colour the badge cell by its word."""
    return [{"if": {"filter_query": f"{{{column}}} = {word}", "column_id": column}, "color": "white",
             "backgroundColor": color, "fontWeight": "600"} for word, color in HEALTH_COLORS.items()]


def health_tooltip(summary: dict) -> str:
    """The badge's hover text (markdown): why the run is (not) healthy, and the trust verdict."""
    reasons = summary.get("health_reasons") or []
    lines = [f"**{summary.get('health', 'healthy')}**"]
    lines += [f"- {reason}" for reason in reasons] or ["- no warning or critical alert"]
    trust = "trusted" if summary.get("trustworthy") else "not trusted"
    lines.append(f"\nceiling {trust}: {summary.get('reason', '')}")
    return "\n".join(lines)


def _remedy(remedy: dict) -> html.Li:
    settings = []
    if remedy.get("trl"):
        settings += ["TRL ", html.Code(remedy["trl"])]
    if remedy.get("verl"):
        settings += ["; " if settings else "", "veRL ", html.Code(remedy["verl"])]
    return html.Li([html.B(remedy["action"]), " (", *settings, "): ", remedy["why"], ". ",
                    html.Span(remedy["paper"], className="paper")], className="remedy")


def alert_card(alert: dict, run: str | None = None) -> html.Div:
    """One alert: severity, rule and steps, the message, its evidence and what to try."""
    severity = alert["severity"]
    when = f"step {alert['step']:g}"
    if alert.get("first_visible_step") not in (None, alert["step"]):
        when += f", visible at {alert['first_visible_step']:g}"
    title = [html.Span(severity, className=f"badge {severity}",
                       style={"backgroundColor": SEVERITY_COLORS[severity]}),
             html.B(f" {alert['rule']}"), f" ({when})"]
    if run:
        title.insert(0, html.Span(f"{run}: ", className="alert-run"))
    children = [html.Div(title, className="alert-title"), html.P(alert["message"], className="alert-message")]
    numbers = {k: v for k, v in (alert.get("evidence") or {}).items() if not k.startswith("text")}
    if numbers:
        children.append(html.Details([html.Summary("evidence (numbers)"),
                                      html.Pre(_evidence_text(numbers), className="evidence")]))
    remedies = alert.get("remedies") or []
    if remedies:
        children += [html.Div("What to try:", className="remedies-title"),
                     html.Ul([_remedy(r) for r in remedies], className="remedies")]
    return html.Div(children, className=f"alert-card {severity}", **{"data-rule": alert["rule"]})


def alerts_panel(runs: list[tuple[str, dict]]) -> list:
    """The Run view's alerts panel for ``[(run name, summary), ...]``: worst first, then by step."""
    order = {"critical": 0, "warning": 1, "info": 2}
    cards = []
    for name, summary in runs:
        alerts = sorted(summary.get("alerts") or [], key=lambda a: (order[a["severity"]], a["step"]))
        if not alerts:  # the summary line above says "healthy"; the card says why
            cards.append(html.P(f"{name}: no rule fired.", className="alert-none"))
        cards += [alert_card(a, name if len(runs) > 1 else None) for a in alerts]
    return cards or [html.P("Select a run on the Runs page.", className="note")]


def _evidence_text(numbers: dict, indent: str = "") -> str:
    lines = []
    for key, value in numbers.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(_evidence_text(value, indent + "  "))
        elif isinstance(value, float):
            lines.append(f"{indent}{key}: {number(value, 4)}")
        else:
            lines.append(f"{indent}{key}: {value}")
    return "\n".join(lines)


# the curves whose column the user picks (Entropy / Performance dropdowns): an alert about another
# column says which (the plateau of eval_accuracy drawn on reward_mean's curve read as a contradiction)
COLUMN_GRAPHS = ("entropy-curves", "performance-curves")
LABEL_ROW_PX = 12  # one row of stacked alert labels (display.label_rows)


def alert_label(alert: dict, graph_id: str, shown: str = "") -> str:
    """The rule's name; on a curve of a picked column that is not the alert's, the alert's column too;
    the run's name when the alert carries one (``"run"``: several runs are drawn), as the report's
    curves label it: ``entropy_collapse (grpo-temp1.0)``, ``plateau (eval_accuracy; grpo-temp1.0)``."""
    column = (alert.get("evidence") or {}).get("column")
    notes = [column] if graph_id in COLUMN_GRAPHS and column and shown and column not in shown else []
    if alert.get("run"):
        notes.append(str(alert["run"]))
    return alert["rule"] + (f" ({'; '.join(notes)})" if notes else "")


def alert_count(alerts) -> str:
    """' (1 alert)', ' (3 alerts)'; '' for none (the run's health, and its card, say the rest)."""
    n = len(alerts or [])
    return f" ({n} alert{'' if n == 1 else 's'})" if n else ""


def _shown_text(figure) -> str:
    """The figure's title and y-axis title: which column it draws."""
    layout = figure.layout
    return " ".join(str(t or "") for t in (layout.title.text, layout.yaxis.title.text))


def _x_span(figure, steps) -> float:
    """The width of the figure's x data (the alert steps included), for spacing the labels."""
    import numpy as np

    values = [np.asarray(steps, dtype=np.float64)]
    for trace in figure.data:
        x = getattr(trace, "x", None)
        if x is not None:
            try:
                values.append(np.asarray(x, dtype=np.float64).ravel())
            except (TypeError, ValueError):
                continue
    values = np.concatenate(values)
    values = values[np.isfinite(values)]
    span = float(values.max() - values.min()) if values.size else 0.0
    return span if span > 0 else 1.0


def mark_alerts(figure, alerts: list[dict], graph_id: str):
    """A copy of ``figure`` with a dashed vertical line (and the rule's name) at each alert step that
    belongs on ``graph_id``; ``figure`` itself is left alone (panels cache their figures). Labels of
    close alerts are stacked, not printed over each other."""
    import plotly.graph_objects as go

    marks = sorted((a for a in alerts or [] if graph_id in PLOT_GRAPHS.get(a.get("plot"), ())),
                   key=lambda a: a["step"])
    if not marks:
        return figure
    figure = go.Figure(figure)
    shown = _shown_text(figure)
    labels = [alert_label(a, graph_id, shown) for a in marks]
    rows = label_rows([a["step"] for a in marks], labels, _x_span(figure, [a["step"] for a in marks]))
    for alert, label, row in zip(marks, labels, rows):
        color = SEVERITY_COLORS.get(alert["severity"], "#555")
        figure.add_vline(x=alert["step"], line_dash="dash", line_color=color, line_width=1.5,
                         annotation_text=label, annotation_position="top left", annotation_yshift=-LABEL_ROW_PX * row,
                         annotation_font_color=color, annotation_font_size=10,
                         annotation_bgcolor="rgba(255,255,255,0.8)")
    return figure
