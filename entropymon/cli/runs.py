"""``entropymon list``, ``import``, ``compact`` and ``report``: managing run folders.

Why together: each takes run folders (or makes one) and hands them to one library call:
``list_runs``/``read_run``, an importer, ``compact_run``, ``write_report``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from entropymon.cli import output
from entropymon.cli.options import open_run
from entropymon.display import run_status

IMPORT_KINDS = ("trl", "tensorboard", "verl", "csv")
DEFAULT_LOGDIR = Path("runs")


def list_command(
    logdir: Annotated[Path, typer.Argument(help="A folder of runs (nested folders are searched).", metavar="LOGDIR")] = DEFAULT_LOGDIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the runs under LOGDIR with their live status.

    Status is live while a writer is running, closed when it finished, stopped when a writer
    died without closing; with the number of steps, the last step and the start time.
    """
    from entropymon.log.reader import list_runs

    rows = []
    for path in list_runs(logdir):
        run = open_run(path)
        steps = run.steps
        rows.append({
            "run": str(path.relative_to(logdir)) if path != logdir else path.name,
            "path": str(path),
            "status": _status(run),
            "steps": int(steps["step"].nunique()) if "step" in steps.columns else 0,
            "last_step": int(steps["step"].max()) if len(steps) else None,
            "started_at": run.meta.get("started_at"),
        })
    if as_json:
        output.print_json(rows)
        return
    if not rows:
        output.stdout.print(f"no runs under {logdir}", markup=False)
        return
    table = Table(title=f"runs under {logdir}")
    for column in ("run", "status", "steps", "last step", "started"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["run"], row["status"], str(row["steps"]), output.number(row["last_step"], 9),
                      _short_time(row["started_at"]))
    output.stdout.print(table)


def _status(run) -> str:
    """live / closed / terminated / stopped (a run marked running whose writer is gone)."""
    return run_status(run.meta.get("status"), run.is_live)


def _short_time(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        return dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def import_command(
    kind: Annotated[str, typer.Argument(help="What SRC is: trl, tensorboard, verl or csv.", metavar="KIND", show_default=False)],
    src: Annotated[Path, typer.Argument(
        help="TRL output folder, TensorBoard event file or folder, veRL JSONL file, or curves CSV.",
        metavar="SRC", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The new run folder, LOGDIR/RUN.", show_default=False)],
) -> None:
    """Convert logs another tool wrote into an entropymon run.

    KIND is trl (an output folder: trainer_state.json and completions/*.parquet), tensorboard
    (event files with veRL, OpenRLHF or TRL tags), verl (its JSONL file logger) or csv (step,
    entropy, performance, performance_kind). Known names map to entropymon's; unknown ones are
    kept as import/<name>.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from entropymon.errors import InputError
    from entropymon.importers import import_run

    if kind not in IMPORT_KINDS:
        raise InputError(f"KIND: expected one of {list(IMPORT_KINDS)}, got {kind!r}")
    with Progress(TextColumn("importing {task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=output.stderr, transient=True) as progress:
        task = progress.add_task(f"{kind} {src}", total=None)
        path = import_run(kind, src, out, progress=lambda done, total: progress.update(task, completed=done, total=total))
    run = open_run(path)
    mapping = (run.meta.get("config") or {}).get("name_mapping", {})
    mapped = {k: v for k, v in mapping.items() if not v.startswith(("import/", "trl/"))}
    output.stdout.print(f"imported {run.steps['step'].nunique() if len(run.steps) else 0} steps"
                        f"{f' and {len(run.samples)} samples' if len(run.samples) else ''} into {path}", markup=False)
    if mapped:
        output.stdout.print("mapped: " + ", ".join(f"{k} -> {v}" for k, v in sorted(mapped.items())), markup=False)
    kept = len(mapping) - len(mapped)
    if kept:
        output.stdout.print(f"kept {kept} other names as they were (import/<name> or trl/<name>)", markup=False)


def compact_command(
    run: Annotated[Path, typer.Argument(help="A run folder (holds a run.json).", metavar="RUN", show_default=False)],
) -> None:
    """Merge a run's many small chunk files into one file per table.

    Atomic: a crash during compaction neither loses nor duplicates rows. Refuses a live run.
    """
    from entropymon.log.compact import compact_run

    open_run(run)  # a clear error when RUN is not a run folder
    result = compact_run(run)
    recovered = f"; finished {result.recovered} interrupted compaction(s)" if result.recovered else ""
    if result.replaced:
        output.stdout.print(f"compacted {run}: merged {len(result.replaced)} chunk files into "
                            f"{len(result.written)}{recovered}", markup=False)
    else:
        output.stdout.print(f"{run}: nothing to merge (one file per table already){recovered}", markup=False)


def report_command(
    runs: Annotated[list[Path], typer.Argument(help="Run folders to put in the report.", metavar="RUN", show_default=False)],
    out: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    title: Annotated[Optional[str], typer.Option(help="Title of the report.")] = None,
) -> None:
    """Write a self-contained static HTML report of one or more runs.

    Plotly figures are inlined (viewable offline): entropy and performance curves, the law fit
    with its ceiling, interval, skill and verdict, covariance and entropy dynamics, diversity,
    and the alerts. Several runs are overlaid.
    """
    from entropymon.report.html import write_report

    path = write_report([open_run(p) for p in runs], out, title=title)
    output.stdout.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", markup=False)
