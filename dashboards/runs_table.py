"""The Runs page's table: one row per run with its status and key figures.

Why: the first question on opening the dashboard is "which runs are healthy and where are they
heading". Each row comes from ``summarize_run`` (the same figures the CLI prints), computed once
per run version; a run that cannot be read or has no steps still gets a row saying so.
"""

from __future__ import annotations

import time
from functools import cached_property

import numpy as np
import pandas as pd

from entropymon.analysis.dynamics import entropy_dynamics
from entropymon.analysis.forecast import forecast_ceiling
from entropymon.analysis.summary import summarize
from entropymon.display import BROKEN, PENDING, trust_word
from entropymon.display import run_status as status_word
from entropymon.errors import EntropymonError
from entropymon.log.reader import read_table
from entropymon.results import json_float
from entropymon_dashboard.alerts_view import health_tooltip
from entropymon_dashboard.store import Pending, RunState, RunStore

COLUMNS = (
    ("run", "run", "Run folder, relative to the logdir"),
    ("status", "status", "live: a writer is appending; finished: closed by its writer; terminated: stopped by a "
     "signal; stopped (no writer): its writer died; broken: cannot be read"),
    ("steps", "steps", "Steps logged"),
    ("last_step", "last step", "Last step logged"),
    ("entropy", "entropy", "Last entropy_mean (nats)"),
    ("reward", "reward", "Last reward_mean"),
    ("accuracy", "accuracy", "Last eval_accuracy"),
    ("ceiling", "ceiling", "Predicted performance ceiling b - a of the law R = -a*e^H + b"),
    ("trust", "trust", "Whether the ceiling deserves trust (backtest skill > 0, interval within range, ...)"),
    ("health", "health", "healthy / warning / critical: the worst alert of entropymon check; hover a run's badge "
                         "for the reasons and the trust verdict"),
    ("alerts", "alerts", "Alerts that fired (entropymon check), info notes included"),
)
# bootstrap resamples of the run's law fit: one fit per run version (``run_forecast``) gives the
# table's ceiling and badge tooltip, its alerts and the law panel, so one run shows one ceiling
# interval (the table's 200 resamples read [0.879, 0.935] for grpo-temp1.3 where the law panel's
# 1000 read [0.877, 0.942]); 1000 is also ``entropymon check``'s default, so the CLI agrees
LAW_BOOTSTRAP = 1000
# the poll waits this long for the summaries of the rows, then sends what it has: a row whose
# summary is not there yet says so (``pending``) and the next poll fills it in
SUMMARY_WAIT_S = 0.15
# the cells a row's summary fills in; until then each says display.PENDING ("-" read as "no value")
PENDING_COLUMNS = ("ceiling", "trust", "health", "alerts")
PENDING_REASON = "The summary (law fit, alerts) is being computed; the row fills in on the next poll."


# the figures of a row: numbers in the data, written by display.number's rule in the browser (page.table_column)
FIGURE_COLUMNS = ("entropy", "reward", "accuracy", "ceiling")


def _figure(value):
    return None if value is None else float(value)


def run_status(state: RunState) -> str:
    """The status word of ``entropymon list`` (``display.run_status``), as the table labels it."""
    if state.error or state.run is None:
        return BROKEN
    return status_word(state.run.meta.get("status"), state.is_live)


# the samples columns summarize_run reads (with step and rank): the zero-variance split and the
# reward's range; reading only these skips decoding the completions' text (on the 1M-row run of
# benchmarks/dashboard.py the text was half the runs table's first open)
SUMMARY_SAMPLE_COLUMNS = ("group_id", "reward")


class _RunFrames:
    """The state's combined step table with the run's samples table behind it: what
    ``summarize_run`` reads (the samples give the exact zero-variance split and the reward's range),
    so the table's alerts are those of ``entropymon check``."""

    def __init__(self, state: RunState):
        self.step_metrics = state.step_metrics
        self._run = state.run

    @cached_property
    def samples(self):
        try:
            return None if self._run is None else read_table(self._run.path, "samples", columns=SUMMARY_SAMPLE_COLUMNS)
        except Exception:  # noqa: BLE001 - without samples the rules fall back to the logged share
            return None


def _summary(store: RunStore, state: RunState) -> dict:
    frame = state.step_metrics
    if state.message() is not None:
        return {"steps": 0, "reason": state.message()}
    try:
        # the forecast first: the law panel, drawn before the covariance panel, waits for it
        forecast = run_forecast(store, state)
        summary = summarize(_RunFrames(state), n_bootstrap=LAW_BOOTSTRAP, dynamics=run_dynamics(store, state),
                            forecast=forecast)
    except Exception as error:  # noqa: BLE001 - the table must still list the run
        return {"steps": int(len(frame)), "reason": f"summary failed: {error}"}
    return summary.to_dict()


def run_dynamics(store: RunStore, state: RunState):
    """``entropy_dynamics`` of the run's steps (None when it cannot be computed), once per run
    version: the summary and the covariance panel share it (its bootstraps were half of the
    summary's time on 10k steps), and whichever asks second waits for the first's computation."""
    return _step_analysis(store, state, "dynamics", entropy_dynamics)


def run_forecast(store: RunStore, state: RunState):
    """``forecast_ceiling`` of the run's steps with ``LAW_BOOTSTRAP`` resamples (None when the law
    cannot be fitted), once per run version: the summary (ceiling, trust, alerts) and the law panel
    share it. The law reads the step table only, so it is the fit ``summarize`` would make."""
    return _step_analysis(store, state, "forecast", lambda steps: forecast_ceiling(steps, n_bootstrap=LAW_BOOTSTRAP))


def _step_analysis(store: RunStore, state: RunState, key: str, analysis):
    """``analysis(step_metrics)`` of the run, once per run version; None when the run cannot support it."""
    def compute(s: RunState):
        try:
            return analysis(s.step_metrics)
        except EntropymonError:
            return None

    return store.derived(state, key, compute)


def run_summary(store: RunStore, state: RunState, wait_s: float | None = None) -> dict:
    """``summarize_run`` of the run, once per run version (the Run view's alerts panel shares it,
    the covariance panel its entropy dynamics). ``wait_s``: see ``RunStore.derived`` (raises
    ``Pending`` when the summary is not there in time; it goes on in the background)."""
    return store.derived(state, "summary", lambda s: _summary(store, s), wait_s=wait_s)


def _pending_summary(state: RunState) -> dict:
    """The figures of a row that need no analysis, while its summary is computed in the background."""
    frame = state.step_metrics
    figures = {"steps": int(len(frame)), "last_step": json_float(frame["step"].iloc[-1]) if len(frame) else None,
               "pending": True}
    for column, key in (("entropy_mean", "entropy_end"), ("reward_mean", "reward_mean_end"),
                        ("eval_accuracy", "eval_accuracy_end")):
        if column in frame.columns:
            values = pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)
            finite = values[np.isfinite(values)]
            figures[key] = json_float(finite[-1]) if finite.size else None
    return figures


def run_row(store: RunStore, run_id: str, wait_s: float | None = None) -> dict:
    """The table row of one run (plain JSON values; ``id`` is the run id). ``wait_s``: how long to
    wait for the run's summary; without it by then the row holds what needs no analysis (status,
    steps, last values) with ``pending`` set, and the summary goes on in the background."""
    state = store.state(run_id)
    if state.message() is not None:  # unreadable or empty: its summary only says so, at no cost
        wait_s = None
    try:
        summary = run_summary(store, state, wait_s)
    except Pending:
        summary = _pending_summary(state)
    trusted = summary.get("trustworthy")
    performance = summary.get("performance_column")
    reward = summary.get("performance_end") if performance == "reward_mean" else summary.get("reward_mean_end")
    accuracy = summary.get("performance_end") if performance == "eval_accuracy" else summary.get("eval_accuracy_end")
    row = {
        "id": run_id,
        "run": state.name,
        "status": run_status(state),
        "steps": summary.get("steps", 0),
        "last_step": summary.get("last_step"),
        "entropy": _figure(summary.get("entropy_end")),
        "reward": _figure(reward),
        "accuracy": _figure(accuracy),
        "ceiling": _figure(summary.get("ceiling")),
        "trust": trust_word(trusted),
        "trust_reason": summary.get("reason", ""),
        "health": BROKEN if state.error else summary.get("health", "healthy"),
        "health_tooltip": health_tooltip(summary),
        "alerts": len(summary.get("alerts", [])),
    }
    if summary.get("pending"):
        row.update(dict.fromkeys(PENDING_COLUMNS, PENDING), trust_reason=PENDING_REASON,
                   health_tooltip=PENDING_REASON, pending=True)
    return row


def tooltips(rows: list[dict]) -> list[dict]:
    """The table's ``tooltip_data``: the health badge's reasons and the trust reason, per row."""
    return [{"health": {"value": row.get("health_tooltip", ""), "type": "markdown"},
             "trust": {"value": row.get("trust_reason", ""), "type": "text"}} for row in rows]


def runs_rows(store: RunStore, wait_s: float | None = None) -> list[dict]:
    """One row per run; ``wait_s`` is the time the rows may wait for summaries, all rows together
    (None: every summary is computed before returning)."""
    rows = []
    deadline = None if wait_s is None else time.monotonic() + wait_s
    for entry in store.catalog.entries():
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        rows.append(run_row(store, entry.run_id, left))
    return rows
