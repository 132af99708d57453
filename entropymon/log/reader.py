"""Read runs back: ``read_run(path)`` -> Run with pandas DataFrames, ``list_runs(logdir)``.

Why it is careful: it reads folders a writer is still filling, after crashes and restarts, and
after compactions. The rules it applies:
- only renamed chunk files are read (temporaries never), minus those a finished compaction
  replaced (layout.py); unreadable or foreign files are warned about once and skipped;
- chunks whose schemas gained columns are merged (missing values are null);
- a (rank, step) logged by several segments (a restarted process re-did the step) keeps only
  the newest segment's rows, in every table; within that segment several step rows for one
  step (metrics logged in separate calls) merge into one, later non-null values winning;
- file contents are cached by (path, size, mtime) in cache.TABLE_CACHE; a ``Run`` keeps a
  ``view.TableView`` per table, so ``refresh()`` reads only rows it has not seen.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from entropymon.errors import InputError, LogFormatError, RunNotFoundError
from entropymon.log import meta as run_meta
from entropymon.log.cache import TABLE_CACHE, Vanished, read_pool
from entropymon.log.layout import scan_table
from entropymon.log.resolve import resolve_frame, tag_segment
from entropymon.log.schema import RANK_COLUMN, RUN_META_FILE, STEP_COLUMN, TABLES
from entropymon.log.view import TableView, column_names, is_big
from entropymon.metrics.list_columns import arrow_list_names, plain_frame

_LISTING_RETRIES = 5
# _trimmed_step_metrics gives up on the trimmed view when more steps than this need their full rows
REDO_MIN_STEPS, REDO_SHARE = 64, 0.02


class Run:
    """One run folder. Tables load on first access and stay cached; ``refresh()`` forgets them.

    ``steps``: one row per (step, rank); ``step_metrics``: one row per step with ranks combined;
    ``samples`` / ``tokens``: their rows ordered by step then rank; ``meta``: run.json.
    One ``Run`` may be shared by threads (a dashboard's callbacks): its tables are brought up to
    date under a lock, as two updates of one view at once would append the same rows twice.
    """

    def __init__(self, path: Path, meta: dict):
        self.path = path
        self.meta = meta
        self._lock = threading.RLock()
        self._frames: dict[str, pd.DataFrame] = {}
        self._views = {table: TableView(path / table, merge_step_rows=(table == "steps")) for table in TABLES}
        # what was derived from a view, with the view's version it was derived from
        self._combined: tuple[int, pd.DataFrame] | None = None  # the steps' step_metrics
        self._trimmed_view: TableView | None = None  # the steps without the family metrics (_trimmed_step_metrics)
        self._trimmed: tuple[int, pd.DataFrame] | None = None  # the step_metrics from it
        self._trim_refused = False  # the trimmed view does not pay for this run: the full table it is
        self._trimmed_current = False  # the trimmed view was brought up to date since the last refresh()
        self._plains: dict[str, tuple[int, pd.Series, pd.DataFrame]] = {}  # table -> (version, its dtypes, plain form)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def steps(self) -> pd.DataFrame:
        with self._lock:
            return self._plain("steps")

    @property
    def samples(self) -> pd.DataFrame:
        with self._lock:
            return self._plain("samples")

    @property
    def tokens(self) -> pd.DataFrame:
        with self._lock:
            return self._plain("tokens")

    @property
    def step_metrics(self) -> pd.DataFrame:
        """One row per step, ranks combined exactly (``metrics.stats.combine_ranks``)."""
        with self._lock:
            return self._step_metrics()

    def _step_metrics(self) -> pd.DataFrame:
        view = self._views["steps"]
        if "steps" not in self._frames and view.frame is None:
            trimmed = self._trimmed_step_metrics()
            if trimmed is not None:
                return trimmed
        steps = self._frame("steps")  # list columns Arrow-backed: combined without a numpy array per row
        if self._combined is not None and self._combined[0] == view.version:
            return self._combined[1]
        from entropymon.metrics.stats import combine_ranks  # numpy-only module; imported on use

        if self._combined is not None and view.previous_version == self._combined[0]:
            # a live refresh appended rows: combine only the steps they belong to
            again = combine_ranks(view.appended_rows())
            combined = _with_steps(self._combined[1], view.appended_steps, again).reset_index(drop=True)
        else:
            combined = combine_ranks(steps)
        self._combined = (view.version, combined)
        return combined

    def _trimmed_step_metrics(self) -> pd.DataFrame | None:
        """``step_metrics`` of a big steps table, combined from its rows read without the ranks' own
        values of the stats families' metrics (``stats.combine_ranks_without``; a ``TableView`` of its
        own, so a live refresh appends to it), the steps where those values count combined again
        from their full rows; None (the full table then) for a small table, one rank, no family with
        its stats in every row, or more such steps than REDO_MIN_STEPS and REDO_SHARE allow.

        Why: ``combine_ranks`` replaces those values by the family's, and a dashboard needs only the
        combined rows: at 64 ranks x 10k steps 39 of the 104 float columns are such metrics, and
        reading without them took 1.25-1.29 s against 1.81-2.59 s."""
        from entropymon.metrics.stats import combine_ranks_without, family_metrics, in_table_order

        folder = self.path / "steps"
        view = self._trimmed_view
        if view is None:
            if self._trim_refused:
                return None
            files = scan_table(folder).active
            if not is_big(files) or len({chunk.rank for chunk, _ in files}) < 2:
                return None  # small, or one rank: every step is kept as logged, which needs every column
            # a family's metrics are left out when every row has its stats (the dH probe's, logged
            # every N steps, are read: most steps would need their rows again)
            families = family_metrics(column_names([path for _, path in files]))
            complete = _filled_in_every_row([path for _, path in files], list(families))
            left_out = {name for count, names in families.items() if count in complete for name in names}
            if not left_out:
                self._trim_refused = True
                return None
            view = self._trimmed_view = TableView(folder, merge_step_rows=True, exclude=frozenset(left_out))
        if not self._trimmed_current:
            view.update()  # the appended rows stay a tail of the view: only they are combined
            self._trimmed_current = True
        if self._trimmed is not None and self._trimmed[0] == view.version:
            return self._trimmed[1]
        order = column_names(view.paths)
        appended = self._trimmed is not None and view.previous_version == self._trimmed[0]
        rows = view.appended_rows() if appended else view.frame
        combined, redo = combine_ranks_without(rows, view.exclude, order)
        if len(redo) > max(REDO_MIN_STEPS, REDO_SHARE * combined[STEP_COLUMN].nunique()):
            # most of it would be read twice (e.g. a metric a family leaves out at many steps): the
            # full table is the way for this run
            self._trim_refused, self._trimmed_view, self._trimmed = True, None, None
            return None
        combined = self._exact(combined, redo)
        if appended:
            combined = _with_steps(self._trimmed[1], view.appended_steps, combined)
        combined = in_table_order(combined.reset_index(drop=True), order)
        self._trimmed = (view.version, combined)
        return combined

    def _exact(self, combined: pd.DataFrame, redo: np.ndarray) -> pd.DataFrame:
        """``combined`` with the rows of the steps ``redo`` combined again from their full rows."""
        if not len(redo):
            return combined
        from entropymon.metrics.stats import combine_ranks

        return _with_steps(combined, redo, combine_ranks(read_table(self.path, "steps", steps=redo)))

    @property
    def is_live(self) -> bool:
        """True while a writer holds the run: status "running" and a heartbeat in the last 30 s."""
        try:
            current = run_meta.read_meta(self.path)
        except LogFormatError:  # run.json vanished or is unreadable now: judge by what was read
            current = self.meta
        return run_meta.is_live(self.path, current)

    @property
    def files(self) -> list[Path]:
        """The chunk files the tables are read from (compacted-away files excluded)."""
        return [path for table in TABLES for _, path in scan_table(self.path / table).active]

    def refresh(self) -> Run:
        """Re-read run.json and bring the tables up to date on their next access, reading only
        the rows that are new since (a folder listing when nothing is)."""
        meta = run_meta.read_meta(self.path)
        with self._lock:
            self.meta = meta
            self._frames.clear()
            self._trimmed_current = False
        return self

    def _frame(self, table: str) -> pd.DataFrame:
        """The table as the reader holds it: list columns Arrow-backed (``metrics.list_columns``)."""
        if table not in self._frames:
            self._frames[table] = self._views[table].read()
        return self._frames[table]

    def _plain(self, table: str) -> pd.DataFrame:
        """The table as users get it: list columns as one numpy array per row, made on first access
        only (the dashboard never asks: it reads ``step_metrics``), once per version of the table."""
        frame = self._frame(table)
        view = self._views[table]
        held = self._plains.get(table)
        if held is not None and held[0] == view.version:
            return held[2]
        if not arrow_list_names(frame):
            plain = frame
        elif held is not None and view.previous_version == held[0] and held[1].equals(frame.dtypes):
            # a live refresh appended rows: convert those only (at 8 ranks x 10k steps, converting the
            # whole table again cost more than the 200 ms a refresh may take)
            cut = view.kept_rows
            plain = pd.concat([held[2].iloc[:cut], plain_frame(frame.iloc[cut:])], ignore_index=True)
        else:
            plain = plain_frame(frame)
        self._plains[table] = (view.version, frame.dtypes, plain)
        return plain

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"


def _with_steps(combined: pd.DataFrame, steps: np.ndarray, again: pd.DataFrame) -> pd.DataFrame:
    """``combined`` with its rows of ``steps`` replaced by ``again`` (rows combined anew), in step order."""
    rest = combined[~combined[STEP_COLUMN].isin(steps).to_numpy()]
    return pd.concat([rest, again], ignore_index=True).sort_values(STEP_COLUMN, kind="stable")


def _filled_in_every_row(paths: list[Path], names: list[str]) -> set[str]:
    """The columns of ``names`` that every row of the files ``paths`` holds, not null, NaN or zero
    (a stats family's count column: the family logged at every step of every rank)."""
    TABLE_CACHE.preload(paths, names)
    filled = set(names)
    for path in paths:
        data = TABLE_CACHE.read(path, names)
        if data is None:
            continue
        for name in list(filled):
            values = data.column(name).to_numpy() if name in data.column_names else None
            if values is None or (values.dtype.kind not in "iuf") or np.isnan(values.astype(np.float64)).any() \
                    or (values == 0).any():
                filled.discard(name)
    return filled


def _run_folder(path) -> Path:
    run_path = Path(path)
    if not run_path.is_dir():
        raise RunNotFoundError(f"path: expected an entropymon run folder, {run_path} does not exist"
                               if not run_path.exists() else f"path: expected a run folder, {run_path} is a file")
    return run_path


def read_run(path) -> Run:
    """The run at ``path``: RunNotFoundError when the folder is missing, LogFormatError when run.json is."""
    run_path = _run_folder(path)
    return Run(run_path, run_meta.read_meta(run_path))


def list_runs(logdir) -> list[Path]:
    """Every folder under ``logdir`` (itself included) holding a run.json, sorted."""
    root = Path(logdir)
    if not root.is_dir():
        raise RunNotFoundError(f"logdir: expected a folder of runs, {root} does not exist or is not a folder")
    found = []
    for folder, subfolders, files in os.walk(root):
        if RUN_META_FILE in files:
            found.append(Path(folder))
            subfolders[:] = [name for name in subfolders if name not in TABLES]
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
    return sorted(found)


def read_table(path, table: str, columns: Iterable[str] | None = None, steps=None) -> pd.DataFrame:
    """One table of a run as a DataFrame, reading only what is asked for.

    ``columns``: the columns wanted (``step`` and ``rank`` always come along; names no file has
    are left out). ``steps``: an int, a ``range`` or an iterable of steps; only the footers of
    files whose step range misses it are read.
    """
    if table not in TABLES:
        raise InputError(f"table: expected one of {TABLES}, got {table!r}")
    run_path = _run_folder(path)
    columns = None if columns is None else [str(name) for name in ([columns] if isinstance(columns, str) else columns)]
    wanted = _StepFilter.of(steps)
    pieces = read_pieces(run_path / table, columns, wanted)
    frame, _ = resolve_frame(pieces, merge_step_rows=(table == "steps"))
    return _empty_frame() if frame is None else frame


def table_steps(path, table: str) -> np.ndarray:
    """The distinct steps of one table of a run, ascending (int64).

    Why not ``read_table(...)["step"]``: the rules of resolve.py choose which segment's rows of a
    (rank, step) are kept, never whether the step is there, so the steps are the union of the
    files' step columns, without putting every row in (step, rank) order (2.5 M sample rows at 64
    ranks x 10k steps) first.
    """
    if table not in TABLES:
        raise InputError(f"table: expected one of {TABLES}, got {table!r}")
    pieces = read_pieces(_run_folder(path) / table, [STEP_COLUMN])
    found = [_distinct(piece.column(STEP_COLUMN).to_numpy()) for piece in pieces]
    return _distinct(np.sort(np.concatenate(found))).astype(np.int64) if found else np.zeros(0, dtype=np.int64)


def _distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)``; one pass when they are in order already (a file's steps usually are:
    NumPy's hashing unique cost 0.15 s over 64 files of 40k rows)."""
    if len(values) < 2 or bool((values[1:] >= values[:-1]).all()):
        return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values
    return np.unique(values)


class _StepFilter:
    """Which steps to keep: a closed range [low, high] plus, unless contiguous, a set of members."""

    def __init__(self, low: int, high: int, members: np.ndarray | None):
        self.low, self.high, self.members = low, high, members

    @classmethod
    def of(cls, steps) -> _StepFilter | None:
        if steps is None:
            return None
        if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
            return cls(int(steps), int(steps), None)
        if isinstance(steps, range) and steps.step == 1:
            return cls(steps.start, steps.stop - 1, None)
        try:
            members = np.unique(np.asarray(list(steps), dtype=np.int64))
        except (TypeError, ValueError):
            raise InputError(f"steps: expected an int, a range or an iterable of ints, got {steps!r}") from None
        if members.size == 0:
            return cls(0, -1, members)
        return cls(int(members[0]), int(members[-1]), members)

    def overlaps(self, step_range: tuple[int, int] | None) -> bool:
        return step_range is None or (step_range[0] <= self.high and step_range[1] >= self.low)

    def mask(self, step: pa.ChunkedArray) -> pa.ChunkedArray:
        if self.members is not None:
            return pc.is_in(step, value_set=pa.array(self.members))
        return pc.and_(pc.greater_equal(step, self.low), pc.less_equal(step, self.high))


def read_pieces(folder: Path, columns: list[str] | None = None, steps: _StepFilter | None = None,
                rank: int | None = None) -> list[pa.Table]:
    """The readable active chunks of ``folder`` (of one ``rank`` when given), segment-tagged, oldest first."""
    for _ in range(_LISTING_RETRIES):
        pieces, skipped = [], None
        try:
            active = [(chunk, path) for chunk, path in scan_table(folder).active if rank is None or chunk.rank == rank]
            wanted = [path for _, path in active if steps is None or steps.overlaps(TABLE_CACHE.step_range(path))]
            # with a step filter, a file of many row groups gives those that may hold a wanted step
            # (one file per rank of a 64-rank run holds every step); these are decoded several files
            # at a time, and the rest of the files whose footer says they hold a wanted step too
            groups = {} if steps is None else _read_groups(wanted, columns, steps)
            TABLE_CACHE.preload([path for path in wanted if groups.get(path, False) is False], columns)
            for chunk, path in active:
                if steps is not None and not steps.overlaps(TABLE_CACHE.step_range(path)):
                    skipped = skipped or path
                    continue
                data = groups.get(path, False)
                if data is False:
                    data = TABLE_CACHE.read(path, columns)
                if data is None:
                    continue
                if steps is not None:
                    data = data.filter(steps.mask(data.column(STEP_COLUMN)))
                pieces.append(tag_segment(data, chunk.segment))
            if not pieces and skipped is not None:  # no row matched: keep the columns all the same
                pieces.append(tag_segment(TABLE_CACHE.read(skipped, columns).slice(0, 0), 0))
        except Vanished:
            continue  # a compaction replaced files while we read: list the folder again
        return pieces
    return pieces


def _read_groups(paths: list[Path], columns: list[str] | None, steps: _StepFilter) -> dict:
    """{path: its rows from the row groups that may hold a wanted step, or False (read it whole)
    or None (unreadable)} (``FileTableCache.read_groups``), several files at a time."""
    def read(path: Path):
        return TABLE_CACHE.read_groups(path, columns, steps.overlaps)

    return dict(zip(paths, map(read, paths) if len(paths) < 2 else read_pool().map(read, paths)))


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({STEP_COLUMN: pd.Series(dtype="int64"), RANK_COLUMN: pd.Series(dtype="int32")})
