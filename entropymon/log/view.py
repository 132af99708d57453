"""A table of a run kept up to date by reading only what is new: the reader's live refresh.

Why: a dashboard re-reads a live run every few seconds. Re-reading and re-resolving every row
each time costs what the run holds, not what changed. A ``TableView`` remembers which rows it
holds, as intervals of each segment's row stream (a chunk's footer says where its first row
sits in that stream, ``entropymon.first_row``), so a refresh:
- lists the folder (one listing; nothing else when no file name changed);
- skips files whose rows it holds already, whatever merges rewrote them (a merged file holds
  the same stream rows as its sources), and reads only the rows of the stream it has not seen;
- appends them when their (rank, step) keys are new, which is what a writer adds (kept as a
  tail beside the rows held before and joined into one frame only when ``frame`` is asked for,
  so a reader that needs only the new steps' rows never copies the whole table); anything else
  (a step re-logged, a restarted segment re-doing steps, files removed, older files without
  footers changing, column types that clash) falls back to the full read, so the rules of
  resolve.py always give the answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from entropymon.log.cache import TABLE_CACHE, Vanished, selected_names
from entropymon.log.layout import scan_table
from entropymon.log.resolve import resolve, resolve_frame, stream_frame, tag_segment
from entropymon.log.schema import RANK_COLUMN, STEP_COLUMN, ChunkName
from entropymon.metrics.list_columns import arrow_lists

_RETRIES = 5
# Tables of this many bytes of files or more are read file by file and not cached (about 10x as
# much decoded): cached, such a table would sit in memory twice (decoded files and the frame; 1.2 GB
# more at 64 ranks x 10k steps, 90 MB of files) and push everything else out of the cache (1 GB)
STREAM_MIN_DISK_BYTES = 8 << 20
_RANK_BITS = 20  # key code = step << 20 | rank; larger keys always take the full read
_MAX_STEP = (1 << (63 - _RANK_BITS)) - 1
# the appended tail is joined into the frame once it holds more than 1/8 of the rows before it, so
# an append copies at most that many rows and each row is joined O(1) times on average
JOIN_SHARE = 8


def _codes(step: np.ndarray, rank: np.ndarray) -> np.ndarray | None:
    """One int64 per (step, rank), ordered like (step, rank); None when a key does not fit."""
    if len(step) and (step.max() > _MAX_STEP or rank.max() >= (1 << _RANK_BITS) or step.min() < 0 or rank.min() < 0):
        return None
    return (step.astype(np.int64) << _RANK_BITS) | rank.astype(np.int64)


def _disk_bytes(files: list[tuple[ChunkName, Path]]) -> int:
    total = 0
    for _, path in files:
        try:
            total += path.stat().st_size
        except OSError:  # gone or unreadable: the read says so
            continue
    return total


def is_big(files: list[tuple[ChunkName, Path]]) -> bool:
    """Whether a table of these files is read file by file (STREAM_MIN_DISK_BYTES of files or more)."""
    return _disk_bytes(files) >= STREAM_MIN_DISK_BYTES


def column_names(paths: list[Path]) -> list[str]:
    """The columns of a table of these files, in the order a full read gives them (first file first)."""
    names: dict[str, None] = {}
    for path in paths:
        schema = TABLE_CACHE.schema(path)
        names.update(dict.fromkeys(() if schema is None else schema.names))
    return list(names)


def _tagged(files: list[tuple[ChunkName, Path]], columns: list[str] | None = None,
            exclude: frozenset[str] = frozenset()) -> tuple[list, list, list]:
    """(each readable file's ``columns`` but ``exclude`` tagged with its segment; each file's
    placement, None when unreadable or unknown; the readable files) through the file cache."""
    pieces, placements, readable = [], [], []
    for chunk, path in files:
        data = TABLE_CACHE.read(path, columns, exclude)
        placements.append(None if data is None else TABLE_CACHE.placement(path))
        if data is not None:
            pieces.append(tag_segment(data, chunk.segment))
            readable.append((chunk, path))
    return pieces, placements, readable


def _subtract(interval: tuple[int, int], covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``interval`` [a, b) outside the sorted, disjoint ``covered`` intervals."""
    start, stop = interval
    parts = []
    for low, high in covered:
        if high <= start or low >= stop:
            continue
        if low > start:
            parts.append((start, low))
        start = max(start, high)
    if start < stop:
        parts.append((start, stop))
    return parts


def _add(covered: list[tuple[int, int]], interval: tuple[int, int]) -> list[tuple[int, int]]:
    merged = []
    for low, high in sorted([*covered, interval]):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


class TableView:
    """One table folder of a run as a DataFrame; ``read()`` brings it up to date cheaply.

    List columns stay Arrow-backed in ``frame`` (``metrics.list_columns``): the reader combines
    ranks from there and converts them for users only when asked (``Run.steps``)."""

    def __init__(self, folder: Path, merge_step_rows: bool, exclude: frozenset[str] = frozenset()):
        self.folder = folder
        self.merge_step_rows = merge_step_rows
        self.exclude = exclude  # columns not read (the reader's view for combining ranks leaves some out)
        self._base: pd.DataFrame | None = None  # the frame's first rows ...
        self._tail: pd.DataFrame | None = None  # ... and the rest, rows appended since the last join
        self.full_reads = 0  # how often the whole table was resolved again (for tests and benchmarks)
        self._names: set[str] = set()  # active files whose rows the frame holds
        self.paths: list[Path] = []  # ... as the last listing gave them (its order is column_names')
        self._placements: dict[str, tuple[int, int] | None] = {}  # ... their (first row, rows) in the stream
        self._unplaced: set[str] = set()  # ... of them, those without a first_row footer
        self._covered: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (rank, segment) -> stream rows held
        self._row_codes: np.ndarray | None = None  # key code of each frame row (non-decreasing)
        # ``version`` counts the changes of the frame. The last change: version ``previous_version``
        # plus rows of the steps ``appended_steps`` (both None: the frame was read in full), so
        # results derived per step need only those steps redone ...
        self.version = 0
        self.previous_version: int | None = None
        self.appended_steps: np.ndarray | None = None
        self.kept_rows: int | None = None  # ... and its first rows are the first kept_rows rows of that version

    @property
    def frame(self) -> pd.DataFrame | None:
        """The table as held, None before the first read (joins the appended tail on first use)."""
        self._join()
        return self._base

    def read(self) -> pd.DataFrame:
        self.update()
        return self.frame

    def update(self) -> None:
        """Bring the view up to date (``read()`` without joining the appended rows into ``frame``)."""
        for _ in range(_RETRIES):
            try:
                return self._update()
            except Vanished:  # a merge or compaction replaced files while we read: list again
                continue
        self._update()

    def appended_rows(self) -> pd.DataFrame:
        """The frame's rows of ``appended_steps`` (set by the last change; not None), in frame order
        with the frame's row numbers as index, without joining the tail.

        Why not a mask over ``frame``: after an append its rows are in (step, rank) order, so those
        rows lie in the suffix from the first row of the oldest appended step; filtering every row
        of a 64-rank table (640k rows, Arrow-backed list columns) took 0.4 s per live refresh."""
        start = int(np.searchsorted(self._row_codes, int(self.appended_steps.min()) << _RANK_BITS))
        rows = self._base.iloc[start:]
        if self._tail is not None:  # joined to held rows (maybe none) as ``frame`` is: same columns and types
            rows = pd.concat([rows, self._tail.iloc[max(start - len(self._base), 0):]])
        return rows[np.isin(rows[STEP_COLUMN].to_numpy(), self.appended_steps)]

    # -- the two ways to get there --------------------------------------------------------------
    def _update(self) -> None:
        files = scan_table(self.folder).active
        names = {path.name for _, path in files}
        if self._base is not None and names == self._names:
            return
        if self._base is None or self._row_codes is None:
            return self._full(files)
        gone = self._names - names
        if gone & self._unplaced:  # rows of an older-format file vanished (a compaction)
            return self._full(files)
        new_parts, placed, found = [], {}, {}
        # a new written chunk is all new rows: footer and data in one open, several files at a time
        fresh = [path for chunk, path in files if path.name not in self._names and not chunk.merged]
        TABLE_CACHE.preload(fresh, exclude=self.exclude)
        for chunk, path in files:
            if path.name in self._placements:  # chunk files never change: what its footer said stays true
                placement = self._placements[path.name]
            else:
                placement = found[path.name] = TABLE_CACHE.placement(path)
            if placement is not None:
                placed.setdefault((chunk.rank, chunk.segment), []).append((placement[0], placement[0] + placement[1]))
            if path.name in self._names:
                continue
            if placement is None:
                if TABLE_CACHE.read(path, []) is None:
                    continue  # unreadable: warned about, holds nothing
                return self._full(files)  # a new older-format file: no stream position to go by
            for low, high in _subtract((placement[0], placement[0] + placement[1]),
                                       self._covered.get((chunk.rank, chunk.segment), [])):
                new_parts.append((chunk, path, low - placement[0], high - low, (low, high)))
        if gone and not self._still_on_disk(placed):
            return self._full(files)
        if new_parts and not self._append(new_parts):
            return self._full(files)
        for chunk, _, _, _, interval in new_parts:
            key = (chunk.rank, chunk.segment)
            self._covered[key] = _add(self._covered.get(key, []), interval)
        TABLE_CACHE.forget(self.folder / name for name in gone)
        self._names, self.paths = names, [path for _, path in files]
        self._placements.update(found)
        self._placements = {name: self._placements[name] for name in names if name in self._placements}

    def _full(self, files: list[tuple[ChunkName, Path]]) -> None:
        """Read and resolve every file of ``files`` (one listing: what is held is exactly what was read)."""
        self.full_reads += 1
        for _ in range(_RETRIES):
            try:
                frame, clash, placements = self._read_files(files)
                break
            except Vanished:
                files = scan_table(self.folder).active
        else:
            raise Vanished(str(self.folder))
        if frame is None:
            frame = pd.DataFrame({STEP_COLUMN: pd.Series(dtype="int64"), RANK_COLUMN: pd.Series(dtype="int32")})
        self._names, self._unplaced, self._covered, self._placements = set(), set(), {}, {}
        self.paths = [path for _, path in files]
        for (chunk, path), placement in zip(files, placements):
            self._names.add(path.name)
            self._placements[path.name] = placement
            if placement is None:
                self._unplaced.add(path.name)
            else:
                key = (chunk.rank, chunk.segment)
                self._covered[key] = _add(self._covered.get(key, []), (placement[0], placement[0] + placement[1]))
        self.version += 1
        self.previous_version, self.appended_steps, self.kept_rows = None, None, None
        self._row_codes = None
        if not clash:  # a clash of column types keeps taking the full read
            self._row_codes = _codes(frame[STEP_COLUMN].to_numpy(), frame[RANK_COLUMN].to_numpy())
        self._base, self._tail = frame, None

    # -- helpers ---------------------------------------------------------------------------------
    def _read_files(self, files: list[tuple[ChunkName, Path]]) -> tuple[pd.DataFrame | None, bool, list]:
        """(the frame of every column but ``exclude``, None without rows; whether column types
        clashed; each file's placement).

        A big table (STREAM_MIN_DISK_BYTES of files) is planned from its files' keys, then its files
        are decoded one at a time into the frame and not cached (``resolve.stream_frame``). A small
        one, or one that cannot be placed so (step rows to merge, clashing types), is decoded through
        the file cache (a second read of the run then opens no file) and resolved by ``resolve_frame``."""
        if is_big(files):
            TABLE_CACHE.preload([path for _, path in files], columns=[])  # keys only
            keys, placements, readable = _tagged(files, [])
            schemas = [TABLE_CACHE.schema(path) for _, path in readable]
            if self.exclude:
                schemas = [pa.schema([schema.field(name) for name in selected_names(schema, None, self.exclude)])
                           for schema in schemas]

            def load(i: int) -> pa.Table | None:
                return TABLE_CACHE.read_uncached(readable[i][1], exclude=self.exclude)

            frame = stream_frame(keys, schemas, load, merge_step_rows=self.merge_step_rows, arrow_lists=True)
            if frame is not None:
                return frame, False, placements
        TABLE_CACHE.preload([path for _, path in files], exclude=self.exclude)
        pieces, placements, _ = _tagged(files, exclude=self.exclude)
        frame, clash = resolve_frame(pieces, merge_step_rows=self.merge_step_rows, arrow_lists=True)
        return frame, clash, placements

    def _still_on_disk(self, placed: dict[tuple[int, int], list[tuple[int, int]]]) -> bool:
        """Whether the stream rows the frame holds are all in files listed now (merges keep them)."""
        for key, covered in self._covered.items():
            on_disk: list[tuple[int, int]] = []
            for interval in placed.get(key, []):
                on_disk = _add(on_disk, interval)
            if any(_subtract(interval, on_disk) for interval in covered):
                return False
        return True

    def _append(self, parts) -> bool:
        """Add the new rows to the frame; False when they are not plain additions (full read then)."""
        tables = []
        for chunk, path, offset, length, _ in parts:
            data = TABLE_CACHE.read(path, exclude=self.exclude)
            if data is None:
                continue
            tables.append(tag_segment(data.slice(offset, length), chunk.segment))
        new = resolve(tables, merge_step_rows=self.merge_step_rows) if tables else None
        if new is None:
            return True
        if not isinstance(new, pa.Table):
            return False
        codes = _codes(new.column(STEP_COLUMN).to_numpy(), new.column(RANK_COLUMN).to_numpy())
        if codes is None:
            return False
        old = self._row_codes
        unique = np.unique(codes)
        at = np.searchsorted(old, unique)
        if len(old) and np.any((at < len(old)) & (old[np.minimum(at, len(old) - 1)] == unique)):
            return False  # a (rank, step) the frame holds already: merging rules apply, read it all
        added = new.to_pandas(types_mapper=arrow_lists)
        cut = int(np.searchsorted(old, codes.min(), side="right"))  # rows before it stay where they are
        if cut < len(self._base):  # a new row sorts among the joined rows (a rank behind): split there
            frame = self.frame
            self._base, self._tail = frame.iloc[:cut], frame.iloc[cut:]
        held = len(self._base)
        tail = added if self._tail is None else pd.concat([self._tail, added], ignore_index=True)
        tail_codes = np.concatenate([old[held:], codes])
        keep = cut - held  # the tail's first rows that stay in place; the rest is sorted with the new rows
        order = keep + np.argsort(tail_codes[keep:], kind="stable")
        if np.any(order != np.arange(keep, len(tail_codes))):
            order = np.concatenate([np.arange(keep), order])
            tail, tail_codes = tail.iloc[order], tail_codes[order]
        tail.index = pd.RangeIndex(held, held + len(tail))
        self._tail = tail
        self._row_codes = np.concatenate([old[:held], tail_codes])
        self.previous_version, self.version = self.version, self.version + 1
        self.appended_steps, self.kept_rows = np.unique(added[STEP_COLUMN].to_numpy()), cut
        if len(tail) * JOIN_SHARE > held:
            self._join()
        return True

    def _join(self) -> None:
        if self._tail is not None:
            self._base = (pd.concat([self._base, self._tail], ignore_index=True) if len(self._base)
                          else self._tail.reset_index(drop=True))
            self._tail = None
