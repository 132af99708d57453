"""The writer's background thread: drain the queue, batch rows per table, write durable chunks.

Why a thread of its own: Parquet encoding, fsync and merging take milliseconds to seconds and
must never stall a training step. The thread shares with the training thread only a
``collections.deque`` (``append``/``popleft`` are atomic) and plain attributes; it polls instead of
waiting on a lock-backed Event, so a SIGTERM handler interrupting the training thread anywhere
can still flush.

Nothing is lost without a count. Every failure is caught here, logged (rate-limited), counted in
``errors`` and handed to ``on_error`` (the Monitor's failure log). An odd value in a step row is
left out alone (the row and the flush are kept). A failed write keeps its rows and retries: at
every flush, and after ``max_consecutive_errors`` failures in a row with a growing back-off (the
writer is then ``failing``); rows wait in memory up to ``max_pending_rows`` per table, beyond
which the oldest are dropped and counted in ``dropped_rows``. The first write that succeeds
again logs the recovery. After each chunk the thread merges its own small files (merge.py).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from entropymon.log import durable, merge, meta, shutdown
from entropymon.log.rows import column_rows_to_table, step_rows_to_table
from entropymon.log.schema import TABLES, ChunkName

logger = logging.getLogger("entropymon.log")

IDLE_SLEEP_MIN_S = 0.0005
IDLE_SLEEP_MAX_S = 0.01
ERROR_LOG_EVERY_S = 30.0
MAX_BACKOFF_S = 60.0


@dataclass
class Marker:
    """A flush (or final close) request: everything queued before it is written when ``done``."""

    close: bool = False
    done: bool = False
    ok: bool = False


class _RateLimitedLog:
    """Log the first error of each kind at once, then at most one summary per kind every ``ERROR_LOG_EVERY_S``."""

    def __init__(self):
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def error(self, message: str, kind: str = "error") -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -float("inf")) >= ERROR_LOG_EVERY_S:
            suppressed = self._suppressed.get(kind, 0)
            more = f" ({suppressed} similar errors suppressed)" if suppressed else ""
            logger.error("entropymon writer: %s%s", message, more)
            self._last[kind], self._suppressed[kind] = now, 0
        else:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1


class Worker:
    """Consumes ``queue`` on its own thread; see the module docstring."""

    def __init__(self, run_path: Path, rank: int, segment: int, queue: deque, *, flush_interval_s: float,
                 chunk_rows: int, max_consecutive_errors: int, heartbeat_path: Path | None,
                 on_error: Callable[[BaseException], None] | None = None, max_pending_rows: int | None = None,
                 merge_fanout: int = merge.FANOUT):
        self.run_path = run_path
        self.rank = rank
        self.segment = segment
        self.queue = queue
        self.flush_interval_s = flush_interval_s
        self.chunk_rows = chunk_rows
        self.max_consecutive_errors = max_consecutive_errors
        self.max_pending_rows = max(max_pending_rows or 2 * chunk_rows, chunk_rows)
        self.heartbeat_path = heartbeat_path
        self.on_error = on_error
        self.merge_fanout = merge_fanout
        self.errors = 0
        self.skipped_values = 0
        self.dropped_rows = 0  # rows dropped here because writes kept failing
        self.consecutive_errors = 0
        self.failing = False
        self.recoveries = 0
        self.failure: BaseException | None = None  # the latest error, for strict mode
        self.chunks_written = 0
        self.merges = 0
        self._next_chunk = 0
        self._retry_at = 0.0
        self._step_rows: list[tuple[int, float, dict]] = []
        self._tables: dict[str, list[pa.Table]] = {table: [] for table in TABLES}
        self._rows: dict[str, int] = dict.fromkeys(TABLES, 0)
        self._stream_rows: dict[str, int] = dict.fromkeys(TABLES, 0)  # rows published per table
        self._files: dict[str, list[merge.SegmentFile]] = {table: [] for table in TABLES}
        self._log = _RateLimitedLog()

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        shutdown.keep_signals_on_the_main_thread()
        next_write = time.monotonic() + self.flush_interval_s
        next_beat = time.monotonic() + meta.HEARTBEAT_INTERVAL_S
        sleep_s = IDLE_SLEEP_MIN_S
        while True:
            try:
                item = self.queue.popleft()
            except IndexError:
                item = None
            now = time.monotonic()
            if item is None:
                if now >= next_write:
                    self.write_pending()
                    next_write = now + self.flush_interval_s
                if now >= next_beat:
                    self._beat()
                    next_beat = now + meta.HEARTBEAT_INTERVAL_S
                time.sleep(min(sleep_s, max(0.0, next_write - now)))
                sleep_s = min(sleep_s * 2, IDLE_SLEEP_MAX_S)
                continue
            sleep_s = IDLE_SLEEP_MIN_S
            if isinstance(item, Marker):
                item.ok = self.write_pending(forced=True)
                item.done = True
                if item.close:
                    return
                next_write = now + self.flush_interval_s
                continue
            self.handle(item)
            if now >= next_write:
                self.write_pending()
                next_write = now + self.flush_interval_s

    def handle(self, item: tuple) -> None:
        """Take one logged item into the pending rows; bad input is counted, never raised."""
        table = item[0]
        try:
            if table == "steps":
                _, step, stamp, metrics = item
                self._step_rows.append((step, stamp, metrics))
                self._rows["steps"] += 1
            else:
                _, step, rows = item
                notes: list[str] = []
                converted = column_rows_to_table(step, self.rank, rows, f"log_{table}", notes)
                for note in notes:
                    self._count_error(f"step {step} {table}: {note}", ValueError(note), write_failure=False,
                                      kind="text")
                if converted is not None:
                    self._tables[table].append(converted)
                    self._rows[table] += converted.num_rows
        except Exception as error:  # noqa: BLE001 - the writer thread never dies of a row: counted and skipped
            self._count_error(f"skipped {table} rows: {error}", error, write_failure=False)
            return
        if self._rows[table] >= self.chunk_rows:
            if self.failing:
                self._bound_pending(table)
            else:
                self.write_table(table)

    # -- writing ----------------------------------------------------------------------------
    def write_pending(self, forced: bool = False) -> bool:
        """Write every table with pending rows; True when all writes succeeded.

        While ``failing``, a periodic (not ``forced``) write waits for its back-off to pass.
        """
        if self.failing and not forced and time.monotonic() < self._retry_at:
            return False
        ok = True
        for table in TABLES:
            if self._rows[table]:
                ok = self.write_table(table) and ok
        return ok

    def _steps_table(self) -> pa.Table | None:
        """The pending step rows as one table; values that fit no column type are left out, counted."""
        try:
            built, skipped = step_rows_to_table(self._step_rows, self.rank)
        except Exception as error:  # noqa: BLE001 - never expected; the rows are counted, not lost silently
            self._count_error(f"skipped {len(self._step_rows)} step rows: {error}", error, write_failure=False)
            return None
        if skipped:
            self.skipped_values += len(skipped)
            step, name, value = skipped[0]
            described = f"{type(value).__name__} {value!r}"[:80]
            message = (f"left out {len(skipped)} step metric value(s) that are neither a number nor text, "
                       f"e.g. step {step} {name!r}: {described}; the rest of each row was kept")
            self._count_error(message, ValueError(message), write_failure=False, count=len(skipped), kind="values")
        return built

    def write_table(self, table: str) -> bool:
        if table == "steps" and self._step_rows:
            built = self._steps_table()
            self._step_rows = []
            if built is not None:
                self._tables["steps"].append(built)
        pieces = _concat(self._tables[table])
        written = 0
        try:
            for piece in pieces:
                self._write_chunk(table, piece)
                written += 1
        except Exception as error:  # noqa: BLE001 - any write failure is counted and retried, never fatal
            # keep what was not written; the next flush retries it
            self._tables[table] = pieces[written:]
            self._rows[table] = sum(piece.num_rows for piece in pieces[written:])
            self._count_error(f"could not write a {table} chunk in {self.run_path}: {error}", error,
                              write_failure=True)
            self._bound_pending(table)
            return False
        self._tables[table] = []
        self._rows[table] = 0
        self._recovered()
        return True

    def _write_chunk(self, table: str, data: pa.Table) -> None:
        name = ChunkName(self.rank, self.segment, self._next_chunk)
        folder = self.run_path / table
        first_row = self._stream_rows[table]
        try:
            durable.write_parquet_atomic(data, folder / name.temp_filename, folder / name.filename,
                                         merge.first_row_metadata(first_row))
        except BaseException:
            try:
                (folder / name.temp_filename).unlink(missing_ok=True)
            except OSError:
                pass
            raise
        self._next_chunk += 1
        self.chunks_written += 1
        self._stream_rows[table] += data.num_rows
        try:
            nbytes = (folder / name.filename).stat().st_size
        except OSError:
            nbytes = 0
        self._files[table].append(merge.SegmentFile(name, merge.tier_of(nbytes, 0), first_row, data.num_rows, nbytes))
        self._merge(table)

    def _merge(self, table: str) -> None:
        """Merge the newest files of ``table`` while a tier is full (never raises)."""
        files = self._files[table]
        while (sources := merge.plan(files, self.merge_fanout)) is not None:
            try:
                merged = merge.merge(self.run_path / table, sources)
            except Exception as error:  # noqa: BLE001 - a failed merge loses nothing: the sources stay
                self._log.error(f"could not merge {len(sources)} {table} chunks in {self.run_path}: {error}", "merge")
                return
            del files[-len(sources):]
            if merged is None:  # types clash or too big: these files stay as they are
                files.extend(merge.SegmentFile(f.name, merge.FINAL_TIER, f.first_row, f.rows, f.nbytes)
                             for f in sources)
                return
            files.append(merged)
            self.merges += 1

    def _bound_pending(self, table: str) -> None:
        """Drop (and count) the oldest rows waiting while writes fail, beyond ``max_pending_rows``."""
        if table == "steps" and self._step_rows:
            built = self._steps_table()
            self._step_rows = []
            if built is not None:
                self._tables["steps"].append(built)
        pending = self._tables[table]
        while pending and self._rows[table] > self.max_pending_rows:
            oldest = pending.pop(0)
            self._rows[table] -= oldest.num_rows
            self.dropped_rows += oldest.num_rows
            self._log.error(f"dropped {oldest.num_rows} {table} rows: writes keep failing and more than "
                            f"{self.max_pending_rows} rows are waiting", "dropped")

    # -- health -----------------------------------------------------------------------------
    def _beat(self) -> None:
        if self.heartbeat_path is None:
            return
        try:
            meta.touch(self.heartbeat_path)
        except OSError as error:
            self._log.error(f"could not touch the heartbeat {self.heartbeat_path}: {error}", "heartbeat")

    def _recovered(self) -> None:
        if self.consecutive_errors:
            logger.warning("entropymon writer: writing to %s works again after %d failed writes; the rows "
                           "kept meanwhile are written", self.run_path, self.consecutive_errors)
            self.recoveries += 1
        self.consecutive_errors = 0
        self.failing = False

    def _count_error(self, message: str, error: BaseException, *, write_failure: bool, count: int = 1,
                     kind: str | None = None) -> None:
        self.errors += count
        self.failure = error
        self._log.error(message, kind or ("write" if write_failure else "rows"))
        if self.on_error is not None:
            try:
                self.on_error(error)
            except Exception:  # noqa: BLE001 - a broken callback must not stop the writer
                pass
        if not write_failure:
            return
        self.consecutive_errors += 1
        if self.consecutive_errors >= self.max_consecutive_errors:
            if not self.failing:
                logger.error("entropymon writer: %d failed writes in a row to %s; retrying with a back-off "
                             "(rows wait in memory, up to %d per table)", self.consecutive_errors, self.run_path,
                             self.max_pending_rows)
            self.failing = True
            excess = self.consecutive_errors - self.max_consecutive_errors
            self._retry_at = time.monotonic() + min(self.flush_interval_s * 2 ** min(excess, 30), MAX_BACKOFF_S)


def _concat(tables: list[pa.Table]) -> list[pa.Table]:
    """``tables`` as one table (schemas merged), or as they are when their column types clash."""
    if len(tables) <= 1:
        return list(tables)
    try:
        return [pa.concat_tables(tables, promote_options="permissive")]
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return list(tables)
