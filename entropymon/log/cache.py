"""A process-wide cache of chunk files' columns, keyed by (path, size, mtime).

Why: dashboards and ``entropymon`` commands re-read live runs every few seconds; chunk files are
immutable once renamed into place, so a file whose size and mtime are unchanged need not be read
again, and re-reading a live run costs only its new files. The cache keeps whichever columns
were asked for (a dashboard drawing two token columns never loads the others) plus each file's
step range from the Parquet footer, so a step filter can skip whole files. Files that cannot be
read (corrupt, truncated, zero bytes, not entropymon's) are warned about once and remembered as
bad until they change.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from entropymon.log.layout import warn_once
from entropymon.log.schema import FIRST_ROW_KEY, RANK_COLUMN, STEP_COLUMN
from entropymon.log.shutdown import keep_signals_on_the_main_thread

DEFAULT_MAX_BYTES = 1 << 30
PRELOAD_THREADS = 4


class Vanished(Exception):
    """The file was deleted between listing and reading (a compaction finished meanwhile)."""


@dataclass
class _Entry:
    version: tuple[int, int]  # (size, mtime_ns)
    schema: pa.Schema | None = None
    step_range: tuple[int, int] | None = None
    group_ranges: list[tuple[int, int]] | None = None  # each row group's (min, max) step, None when unknown
    num_rows: int = 0
    first_row: int | None = None  # the footer's entropymon.first_row (None for older files)
    columns: dict[str, pa.ChunkedArray] = field(default_factory=dict)
    bad: bool = False
    nbytes: int = 0  # of ``columns``, kept as they are added (summing 100 columns per look costs)


def _first_row(schema: pa.Schema) -> int | None:
    raw = (schema.metadata or {}).get(FIRST_ROW_KEY)
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


def _group_ranges(metadata: pq.FileMetaData, schema: pa.Schema) -> list[tuple[int, int]] | None:
    """Each row group's (min, max) step from the footer's statistics; None when one lacks them."""
    index = schema.get_field_index(STEP_COLUMN)
    ranges = []
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_min_max:
            return None
        ranges.append((int(stats.min), int(stats.max)))
    return ranges


def _step_range(ranges: list[tuple[int, int]] | None) -> tuple[int, int] | None:
    if not ranges:
        return None
    return min(low for low, _ in ranges), max(high for _, high in ranges)


class FileTableCache:
    """Columns of chunk files, read at most once per file version; ``reads`` counts file opens."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self.reads = 0
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0  # sum of the entries' nbytes
        self._lock = threading.Lock()
        self._reads_lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def step_range(self, path: Path) -> tuple[int, int] | None:
        """(min, max) step of a readable file, None when unknown; raises Vanished."""
        with self._lock:
            entry = self._entry(path, [])
            return None if entry.bad else entry.step_range

    def placement(self, path: Path) -> tuple[int, int] | None:
        """(first row, number of rows) of a readable file in its segment's row stream, None when
        unknown (an older file, or unreadable); raises Vanished."""
        with self._lock:
            entry = self._entry(path, [])
            if entry.bad or entry.first_row is None:
                return None
            return entry.first_row, entry.num_rows

    def forget(self, paths) -> None:
        """Drop the entries of files that are gone (merged away), so they free their memory now."""
        with self._lock:
            for path in paths:
                self._drop(str(path))

    def preload(self, paths: list[Path], columns: list[str] | None = None, workers: int = PRELOAD_THREADS,
                exclude: frozenset[str] = frozenset()) -> None:
        """Read ``columns`` (all when None) but ``exclude`` of the files not holding them yet, several
        files at a time (pyarrow decodes without holding the GIL), so a cold read of many files costs
        less than reading them in turn. ``exclude`` is judged per file, from its own footer: naming
        the columns to read would need every new file's footer first, one file at a time."""
        todo = []
        with self._lock:
            for path in paths:
                entry = self._entries.get(str(path))
                if (entry is None or entry.schema is None
                        or any(name not in entry.columns for name in selected_names(entry.schema, columns, exclude))):
                    todo.append(path)
        if not todo:
            return

        def load(path: Path) -> tuple[str, _Entry] | None:
            try:
                info = path.stat()
                entry = _Entry((info.st_size, info.st_mtime_ns))
                self._load(path, entry, columns, exclude)
            except (OSError, pa.ArrowException, ValueError):
                return None  # read() meets it again, and warns or raises Vanished as it should
            return str(path), entry

        if len(todo) == 1 or workers < 2:
            loaded = [item for item in map(load, todo) if item is not None]
        else:
            loaded = [item for item in _pool(workers).map(load, todo) if item is not None]
        with self._lock:
            for key, entry in loaded:
                if entry.bad:
                    continue
                held = self._entries.get(key)
                if held is not None and held.version == entry.version and held.schema is not None and not held.bad:
                    for name, column in entry.columns.items():  # keep the columns it held already
                        if name not in held.columns:
                            held.columns[name] = column
                            held.nbytes += column.nbytes
                            self._bytes += column.nbytes
                    continue
                self._drop(key)
                self._entries[key] = entry
                self._bytes += entry.nbytes
            self._evict()

    def read_groups(self, path: Path, columns: list[str] | None, overlaps) -> pa.Table | None | bool:
        """The file's ``columns`` from only the row groups whose step range ``overlaps(range)`` says
        may hold a wanted step; False when the file is better read whole (it has one group, the
        cache holds the columns already, or its groups' ranges are unknown); None when unreadable.

        Why: a file of a long run spans many steps (one row group per ``durable.STEPS_PER_ROW_GROUP``
        steps); a one-step read decodes the group holding the step instead of the file. What it
        reads is not cached (it is one step's rows; the file's columns are cached by ``read``)."""
        with self._lock:
            entry = self._entry(path, [])
            if entry.bad:
                return None
            wanted = selected_names(entry.schema, columns)
            if (entry.group_ranges is None or len(entry.group_ranges) < 2
                    or all(name in entry.columns for name in wanted)):
                return False
            groups = [i for i, span in enumerate(entry.group_ranges) if overlaps(span)]
        with self._reads_lock:
            self.reads += 1
        try:
            data = pq.ParquetFile(path, page_checksum_verification=True).read_row_groups(groups, columns=wanted)
        except FileNotFoundError:
            raise Vanished(str(path)) from None
        except (OSError, pa.ArrowException, ValueError):
            return False  # read() reads it whole, and warns as it should
        return data.select(wanted)

    def schema(self, path: Path) -> pa.Schema | None:
        """The file's Arrow schema (from its footer), None when unreadable; raises Vanished."""
        with self._lock:
            entry = self._entry(path, [])
            return None if entry.bad else entry.schema

    def read_uncached(self, path: Path, columns: list[str] | None = None,
                      exclude: frozenset[str] = frozenset()) -> pa.Table | None:
        """The file's ``columns`` (all when None; keys always; absent ones left out) but ``exclude``,
        decoded now and not kept; None when it cannot be read (``read`` then says why). Why: a full read of a wide
        table places each file's rows into its frame and lets the file go (``resolve.stream_frame``);
        cached, every file would stay in memory beside the frame built from them."""
        with self._lock:
            entry = self._entry(path, [])
            if entry.bad:
                return None
            wanted = None if columns is None and not exclude else selected_names(entry.schema, columns, exclude)
        with self._reads_lock:
            self.reads += 1
        try:
            return pq.ParquetFile(path, page_checksum_verification=True).read(columns=wanted)
        except FileNotFoundError:
            raise Vanished(str(path)) from None
        except (OSError, pa.ArrowException, ValueError):
            return None

    def read(self, path: Path, columns: list[str] | None = None,
             exclude: frozenset[str] = frozenset()) -> pa.Table | None:
        """The file's ``columns`` (all when None; keys always; absent ones left out) but ``exclude``,
        None when unreadable."""
        with self._lock:
            entry = self._entry(path, columns, exclude)
            if entry.bad:
                return None
            wanted = selected_names(entry.schema, columns, exclude)
            return pa.table({name: entry.columns[name] for name in wanted})

    def _entry(self, path: Path, columns: list[str] | None, exclude: frozenset[str] = frozenset()) -> _Entry:
        key = str(path)
        try:
            info = path.stat()
        except FileNotFoundError:
            self._drop(key)
            raise Vanished(key) from None
        except OSError as error:  # e.g. a link loop: unreadable, not fatal for the run
            self._drop(key)
            entry = self._entries[key] = _Entry((-1, -1), bad=True)
            warn_once(path, f"{path}: skipped a file that cannot be read ({error})")
            return entry
        version = (info.st_size, info.st_mtime_ns)
        entry = self._entries.get(key)
        if entry is None or entry.version != version:
            self._drop(key)
            entry = _Entry(version)
            self._entries[key] = entry
        self._entries.move_to_end(key)
        if entry.bad:
            return entry
        missing = (None if entry.schema is None
                   else [name for name in selected_names(entry.schema, columns, exclude) if name not in entry.columns])
        if entry.schema is not None and not missing:
            return entry
        self._bytes -= entry.nbytes
        try:
            self._load(path, entry, columns, exclude)
        except FileNotFoundError:
            self._entries.pop(key, None)
            raise Vanished(key) from None
        except (OSError, pa.ArrowException, ValueError) as error:
            entry.bad, entry.columns, entry.nbytes = True, {}, 0
            warn_once(path, f"{path}: skipped a corrupt or truncated Parquet file ({error})")
        self._bytes += entry.nbytes
        self._evict()
        return entry

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.nbytes

    def _load(self, path: Path, entry: _Entry, columns: list[str] | None,
              exclude: frozenset[str] = frozenset()) -> None:
        with self._reads_lock:
            self.reads += 1
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
        if entry.schema is None:
            schema = parquet.schema_arrow
            if STEP_COLUMN not in schema.names:
                entry.bad = True
                warn_once(path, f"{path}: skipped a Parquet file that is not an entropymon log "
                                f"(expected a {STEP_COLUMN!r} column, found {schema.names[:8]})")
                return
            entry.schema = schema
            entry.group_ranges = _group_ranges(parquet.metadata, schema)
            entry.step_range = _step_range(entry.group_ranges)
            entry.num_rows = parquet.metadata.num_rows
            entry.first_row = _first_row(schema)
        missing = [n for n in selected_names(entry.schema, columns, exclude) if n not in entry.columns]
        if missing:
            table = parquet.read(columns=missing)
            entry.columns.update({name: table.column(name) for name in missing})
            entry.nbytes += table.nbytes

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.nbytes


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """One long-lived pool per size and process: starting threads for every refresh cost more than
    reading the few new files of a live run in parallel saves (40 ms of a 200 ms refresh at load 4).
    Keyed by the process id too: a forked child (a DataLoader worker) gets threads of its own."""
    key = (os.getpid(), workers)
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="entropymon-read",
                                             initializer=keep_signals_on_the_main_thread)
        return _POOLS[key]


def read_pool() -> ThreadPoolExecutor:
    """The long-lived pool the reader decodes files on (PRELOAD_THREADS threads)."""
    return _pool(PRELOAD_THREADS)


def selected_names(schema: pa.Schema, columns: list[str] | None, exclude: frozenset[str] = frozenset()) -> list[str]:
    """The names of ``schema`` that ``columns`` (all when None) asks for, keys always, ``exclude`` never
    (bar the keys)."""
    keys = {STEP_COLUMN, RANK_COLUMN}
    asked = None if columns is None else set(columns) | keys
    return [name for name in schema.names
            if (asked is None or name in asked) and (name in keys or name not in exclude)]


TABLE_CACHE = FileTableCache()
