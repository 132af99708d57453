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
from entropymon.display import number, run_status

IMPORT_KINDS = ("trl", "tensorboard", "verl", "csv")


def list_command(
    logdir: Annotated[Optional[Path], typer.Argument(
        help="A folder of runs (nested folders are searched); default ./runs if present, else the bundled "
             "sample runs.", metavar="LOGDIR", show_default=False)] = None,
    samples: Annotated[bool, typer.Option("--samples", help="List the sample runs that ship with entropymon "
                                                            "(the table's title says where they are).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the runs under LOGDIR with their live status.

    Status is live while a writer is appending, finished when its writer closed it, terminated
    when a signal stopped it, stopped when a writer died without closing, broken when its
    run.json or tables cannot be read (the reason is shown); with the number of steps, the last
    step and the start time.
    """
    from entropymon.cli.serve import default_logdir, sample_logs_dir
    from entropymon.errors import InputError, LogFormatError, RunNotFoundError
    from entropymon.log.reader import list_runs

    if samples:
        if logdir is not None:
            raise InputError(f"LOGDIR: expected none with --samples, got {str(logdir)!r}")
        logdir = sample_logs_dir()
        if logdir is None:
            raise RunNotFoundError("--samples: this installation has no bundled sample runs (entropymon.sample_logs)")
    elif logdir is None:
        logdir = default_logdir()
    rows = []
    for path in list_runs(logdir):
        row = {"run": str(path.relative_to(logdir)) if path != logdir else path.name, "path": str(path),
               "status": "broken", "steps": 0, "last_step": None, "started_at": None}
        try:
            run = open_run(path)
            steps = run.steps
            row.update(status=run_status(run.meta.get("status"), run.is_live), started_at=run.meta.get("started_at"),
                       steps=int(steps["step"].nunique()) if "step" in steps.columns else 0,
                       last_step=int(steps["step"].max()) if len(steps) else None)
        except (LogFormatError, OSError) as error:  # one unreadable run must not hide the others
            row["error"] = output.one_line(error)
        rows.append(row)
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
        table.add_row(row["run"], row["status"], str(row["steps"]), number(row["last_step"], 9),
                      _short_time(row["started_at"]))
    output.stdout.print(table)
    for row in rows:
        if "error" in row:
            output.stdout.print(f"{row['run']}: broken: {row['error']}", markup=False)


def _short_time(iso) -> str:
    """An ISO time as local ``YYYY-mm-dd HH:MM:SS``; anything else (a hand-edited run.json) as it is."""
    if not iso:
        return "-"
    if not isinstance(iso, str):
        return str(iso)
    try:
        return dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def import_command(
    kind: Annotated[str, typer.Argument(help="What SRC is: trl, tensorboard, verl or csv.", metavar="KIND",
                                        show_default=False)],
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
        path = import_run(kind, src, out,
                          progress=lambda done, total: progress.update(task, completed=done, total=total))
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
    runs: Annotated[list[Path], typer.Argument(help="Run folders to put in the report.", metavar="RUN",
                                               show_default=False)],
    out: Annotated[Optional[Path], typer.Option(
        "--output", "-o", show_default=False,
        help="The HTML file to write (default: RUN/report.html for one run, report.html in the runs' "
             "common folder for several).")] = None,
    title: Annotated[Optional[str], typer.Option(help="Title of the report.")] = None,
) -> None:
    """Write a self-contained static HTML report of one or more runs.

    Plotly figures are inlined (viewable offline): entropy and performance curves, the law fit
    with its ceiling, interval, skill and verdict, covariance and entropy dynamics, diversity,
    and the alerts. Several runs are overlaid. Without -o the report goes into the run folder
    (RUN/report.html), or for several runs into the folder that holds them all.
    """
    from entropymon.errors import IntegrationError

    opened = [open_run(p) for p in runs]  # a missing run is reported before anything else
    try:
        from entropymon.report.html import write_report
    except ImportError as error:
        from entropymon.cli.serve import dashboard_extra_message

        raise IntegrationError(dashboard_extra_message(error)) from None
    path = write_report(opened, out if out is not None else default_report_path(runs), title=title)
    output.stdout.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", markup=False)


REPORT_FILE = "report.html"


def default_report_path(runs: list[Path]) -> Path:
    """RUN/report.html for one run; report.html in the runs' deepest common folder for several."""
    if len(runs) == 1:
        return runs[0] / REPORT_FILE
    import os

    return Path(os.path.commonpath([str(p.resolve()) for p in runs])) / REPORT_FILE
