"""How entropymon says things: numbers, intervals, the trust verdict, run statuses and colours.

Why one module: the CLI, the HTML report and the dashboard show the same figures and verdicts;
when each formatted them its own way, "0.873" in one was "0.87" in another and a closed run read
"closed" here and "finished" there. Everything that turns a result into words or a colour for a
person lives here, plain Python (no pandas, no plotly), so ``entropymon --help`` stays fast and
every layer above the analysis can import it. The figures' look (template, margins) is in
``entropymon.figures.style``; its colours come from ``RUN_COLORS`` here.
"""

from __future__ import annotations

import math

MISSING = "-"
# One colour per run (or per series of one run), in order; plotly's D3 colours.
RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
# Severity of an alert, mildest first (``entropymon check --fail-on`` takes one of these).
SEVERITIES = ("info", "warning", "critical")
# A run's health: its worst warning/critical alert (info notes leave it healthy).
HEALTHY = "healthy"
HEALTH_WORDS = (HEALTHY, "warning", "critical")
# The trust verdict on a ceiling, in words; capitalised where it starts a sentence.
VERDICT_WORDS = {True: "trust this ceiling", False: "do not trust this ceiling"}
TRUST_WORDS = {True: "yes", False: "no"}
# What a figure still being computed shows (the dashboard's runs table, while a row's summary is
# computed in the background: its ceiling, trust, health and alerts cells all say this one word).
PENDING = "computing"
# How the dashboard's law panel opens an untrusted verdict (the analysis's reasons start the same way).
NOT_PREDICTIVE = "The law does not predict this run yet"
# A run's status, one vocabulary wherever it is shown (``entropymon list``, the dashboard's table,
# the README). run.json's own words are "running", "closed" and "terminated".
LIVE, FINISHED, TERMINATED, STOPPED, BROKEN = "live", "finished", "terminated", "stopped (no writer)", "broken"
STATUS_WORDS = {
    LIVE: "a writer is appending to it (status running, a heartbeat in the last 30 s)",
    FINISHED: "its writer closed it",
    TERMINATED: "its process was stopped by a signal and marked it on the way out",
    STOPPED: "marked running, but no writer's heartbeat for 30 s: the trainer crashed or hangs",
    BROKEN: "its run.json or tables cannot be read",
}
_FROM_RUN_JSON = {"closed": FINISHED, "terminated": TERMINATED}


def run_color(index: int) -> str:
    """The colour of the ``index``-th run (or series); the palette repeats after 8."""
    return RUN_COLORS[index % len(RUN_COLORS)]


def run_colors(names) -> dict[str, str]:
    """A stable colour per run name, in the order given."""
    return {name: run_color(i) for i, name in enumerate(names)}


def number(value, digits: int = 3) -> str:
    """A number to ``digits`` significant digits; "-" when missing (None, NaN, inf)."""
    if value is None:
        return MISSING
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(value):
        return MISSING
    return f"{value:.{digits}g}"


def number_format(digits: int = 3) -> dict:
    """``number``'s rule for a table the browser formats (a Dash DataTable column's ``format``):
    the cell keeps the number itself, so it sorts and filters as a number, and shows ``digits``
    significant digits, trailing zeros dropped, "-" when missing (d3-format's ``~g``)."""
    return {"specifier": f".{digits}~g", "nully": MISSING}


def interval(pair, digits: int = 3) -> str:
    """``[low, high]``; empty when the interval is missing."""
    if not pair or any(v is None for v in pair):
        return ""
    return f"[{number(pair[0], digits)}, {number(pair[1], digits)}]"


def change(start, end) -> str:
    """``start → end``."""
    return f"{number(start)} → {number(end)}"


def law_formula(a, b) -> str:
    """The fitted law ``R = -a·e^H + b`` with its signs folded in (a legend's words): a = 0.33,
    b = 1.2 read ``R = -0.33·e^H + 1.2``; a = -0.076, b = -0.07 read ``R = 0.076·e^H - 0.07``
    (not ``R = --0.076·e^H + -0.07``)."""
    def magnitude(value) -> str:
        return number(abs(float(value))) if value is not None else MISSING

    def negative(value) -> bool:
        return value is not None and float(value) < 0

    slope = magnitude(a) if negative(a) else f"-{magnitude(a)}"
    return f"R = {slope}·e^H {'-' if negative(b) else '+'} {magnitude(b)}"


# an alert marker's label (10 px text left of its dashed line) takes about this share of a plot's
# x span per character; labels closer than that are stacked (``label_rows``)
LABEL_CHAR_SPAN = 0.011


def label_rows(steps, labels, span: float, char_span: float = LABEL_CHAR_SPAN) -> list[int]:
    """The row (0 at the top) of each alert label, ``steps`` in order and ``span`` the plot's x
    width: a label written left of its line goes below any label it would overlap, so close alerts
    (two runs' collapses 15 steps apart) stay readable instead of printing over each other."""
    rows, placed = [], []
    for step, label in zip(steps, labels):
        width = len(label) * char_span * span
        row = 0
        while any(r == row and abs(step - s) < max(width, w) for s, r, w in placed):
            row += 1
        placed.append((step, row, width))
        rows.append(row)
    return rows


def health_of(severities) -> str:
    """"healthy", "warning" or "critical": the worst of ``severities`` (info counts as healthy)."""
    severities = set(severities)
    if "critical" in severities:
        return "critical"
    return "warning" if "warning" in severities else HEALTHY


def health_label(health: str, n_alerts: int) -> str:
    """The health column of the CLI table: "critical (3)" - the word and how many alerts fired."""
    return f"{health} ({n_alerts})" if n_alerts else health


def trust_word(trustworthy) -> str:
    """"yes" or "no": the trust column of every table."""
    return TRUST_WORDS[bool(trustworthy)]


def verdict(trustworthy, reason: str, *, sentence: bool = False) -> str:
    """The trust verdict with its reason: "do not trust this ceiling: <reason>" (CLI and report).

    ``sentence`` capitalises the first word (the report starts a paragraph with it). The
    dashboard's law panel says the same verdict with the ceiling in it: ``verdict_sentence``.
    """
    words = VERDICT_WORDS[bool(trustworthy)]
    if sentence:
        words = words[0].upper() + words[1:]
    return f"{words}: {reason}"


def verdict_sentence(forecast) -> tuple[bool, str]:
    """(trustworthy, sentence) for a ``CeilingForecast`` (or None), as the dashboard's law panel
    says it: the predicted ceiling when trustworthy, else a plain statement that the law does not
    predict this run yet (skill <= 0, interval wider than the range, ...) with the analysis's reason."""
    if forecast is None:
        return False, f"{NOT_PREDICTIVE}: too few steps to fit it."
    reason = str(forecast.reason)
    if forecast.trustworthy:
        return True, f"Predicted ceiling {number(forecast.fit.ceiling)}: trustworthy ({reason})."
    if reason.lower().startswith(NOT_PREDICTIVE.lower()):
        return False, reason[0].upper() + reason[1:] + "."
    return False, f"{NOT_PREDICTIVE}: {reason}."


def held_out_sentence(early) -> str:
    """The early prediction's held-out error next to the best naive baseline's, in words.

    Its skill is that of one cut (the first ``fraction`` of steps); the verdict beside it
    (``verdict_sentence``) rests on the backtest skill over many later cuts, and the two often
    differ (0.68 here, 0.36 there on grpo-temp1.0), so the sentence names which skill it gives."""
    if early is None:
        return "Held-out error: too few steps to hold any out yet."
    best = early.best_baseline
    return (f"Fitted on the first {early.fraction:.0%} of steps ({early.n_fit} points), scored on the "
            f"{early.n_test} after: law RMSE {early.law_rmse:.3g}, best naive forecast ({best.replace('_', ' ')}) "
            f"RMSE {early.baseline_rmse[best]:.3g}, held-out skill {early.skill:.2f} at this one cut "
            f"(the verdict above uses the backtest skill over later cuts).")


def run_status(meta_status, is_live: bool) -> str:
    """A run's status word (``STATUS_WORDS``) from run.json's ``status`` and whether a writer is alive."""
    status = str(meta_status or "unknown")
    if status == "running":
        return LIVE if is_live else STOPPED
    return _FROM_RUN_JSON.get(status, status)
