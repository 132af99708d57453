"""The Runs page's table: one row per run with its status and key figures.

Why: the first question on opening the dashboard is "which runs are healthy and where are they
heading". Each row comes from ``summarize_run`` (the same figures the CLI prints), computed once
per run version; a run that cannot be read or has no steps still gets a row saying so.
"""

from __future__ import annotations

from entropymon.analysis.summary import summarize_run
from entropymon.display import BROKEN, trust_word
from entropymon.display import run_status as status_word
from entropymon_dashboard.store import RunState, RunStore

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
    ("alerts", "alerts", "Collapse alerts that fired (entropymon check)"),
)
SUMMARY_BOOTSTRAP = 200


def _rounded(value, digits: int = 4):
    return None if value is None else round(float(value), digits)


def run_status(state: RunState) -> str:
    """The status word of ``entropymon list`` (``display.run_status``), as the table labels it."""
    if state.error or state.run is None:
        return BROKEN
    return status_word(state.run.meta.get("status"), state.is_live)


def _summary(state: RunState) -> dict:
    frame = state.step_metrics
    if state.message() is not None:
        return {"steps": 0, "reason": state.message()}
    try:
        return summarize_run(frame, n_bootstrap=SUMMARY_BOOTSTRAP)
    except Exception as error:  # noqa: BLE001 - the table must still list the run
        return {"steps": int(len(frame)), "reason": f"summary failed: {error}"}


def run_row(store: RunStore, run_id: str) -> dict:
    """The table row of one run (plain JSON values; ``id`` is the run id)."""
    state = store.state(run_id)
    summary = store.derived(state, "summary", _summary)
    trusted = summary.get("trustworthy")
    performance = summary.get("performance_column")
    reward = summary.get("performance_end") if performance == "reward_mean" else summary.get("reward_mean_end")
    accuracy = summary.get("performance_end") if performance == "eval_accuracy" else summary.get("eval_accuracy_end")
    return {
        "id": run_id,
        "run": state.name,
        "status": run_status(state),
        "steps": summary.get("steps", 0),
        "last_step": summary.get("last_step"),
        "entropy": _rounded(summary.get("entropy_end")),
        "reward": _rounded(reward),
        "accuracy": _rounded(accuracy),
        "ceiling": _rounded(summary.get("ceiling")),
        "trust": trust_word(trusted),
        "trust_reason": summary.get("reason", ""),
        "alerts": len(summary.get("alerts", [])),
    }


def runs_rows(store: RunStore) -> list[dict]:
    return [run_row(store, entry.run_id) for entry in store.catalog.entries()]
