"""The writer's background thread: drain the queue, batch rows per table, write durable chunks.

Why a thread of its own: Parquet encoding and fsync take milliseconds to seconds and must never
stall a training step. The thread shares with the training thread only a ``collections.deque``
(``append``/``popleft`` are atomic) and plain attributes; it polls instead of waiting on a
lock-backed Event, so a SIGTERM handler interrupting the training thread anywhere can still
flush. Every failure is caught here, logged (rate-limited) and counted; after
``max_consecutive_errors`` failed writes in a row the writer disables itself and drops rows.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from entropymon.log import durable, meta
from entropymon.log.rows import column_rows_to_table, step_rows_to_table
from entropymon.log.schema import TABLES, ChunkName

logger = logging.getLogger("entropymon.log")

IDLE_SLEEP_MIN_S = 0.0005
IDLE_SLEEP_MAX_S = 0.01
ERROR_LOG_EVERY_S = 30.0


@dataclass
class Marker:
    """A flush (or final close) request: everything queued before it is written when ``done``."""

    close: bool = False
    done: bool = False
    ok: bool = False


class _RateLimitedLog:
    """Log the first error at once, then at most one summary every ``ERROR_LOG_EVERY_S``."""

    def __init__(self):
        self._last = -float("inf")
        self._suppressed = 0

    def error(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last >= ERROR_LOG_EVERY_S:
            more = f" ({self._suppressed} similar errors suppressed)" if self._suppressed else ""
            logger.error("entropymon writer: %s%s", message, more)
            self._last, self._suppressed = now, 0
        else:
            self._suppressed += 1


class Worker:
    """Consumes ``queue`` on its own thread; see the module docstring."""

    def __init__(self, run_path: Path, rank: int, segment: int, queue: deque, *, flush_interval_s: float,
                 chunk_rows: int, max_consecutive_errors: int, heartbeat_path: Path | None):
        self.run_path = run_path
        self.rank = rank
        self.segment = segment
        self.queue = queue
        self.flush_interval_s = flush_interval_s
        self.chunk_rows = chunk_rows
        self.max_consecutive_errors = max_consecutive_errors
        self.heartbeat_path = heartbeat_path
        self.errors = 0
        self.consecutive_errors = 0
        self.disabled = False
        self.failure: BaseException | None = None  # the latest error, for strict mode
        self.chunks_written = 0
        self._next_chunk = 0
        self._step_rows: list[tuple[int, float, dict]] = []
        self._tables: dict[str, list[pa.Table]] = {table: [] for table in TABLES}
        self._rows: dict[str, int] = dict.fromkeys(TABLES, 0)
        self._log = _RateLimitedLog()

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
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
                item.ok = self.write_pending() and not self.disabled
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
        if self.disabled:
            return
        table = item[0]
        try:
            if table == "steps":
                _, step, stamp, metrics = item
                self._step_rows.append((step, stamp, metrics))
                self._rows["steps"] += 1
            else:
                _, step, rows = item
                converted = column_rows_to_table(step, self.rank, rows, f"log_{table}")
                if converted is not None:
                    self._tables[table].append(converted)
                    self._rows[table] += converted.num_rows
        except Exception as error:
            self._count_error(f"skipped {table} rows: {error}", error, write_failure=False)
            return
        if self._rows[table] >= self.chunk_rows:
            self.write_table(table)

    # -- writing ----------------------------------------------------------------------------
    def write_pending(self) -> bool:
        """Write every table with pending rows; True when all writes succeeded."""
        ok = True
        for table in TABLES:
            if self._rows[table]:
                ok = self.write_table(table) and ok
        return ok

    def _steps_table(self) -> pa.Table | None:
        """The pending step rows as one table; rows whose metrics cannot be typed are dropped."""
        try:
            return step_rows_to_table(self._step_rows, self.rank)
        except Exception:
            pass
        good = []
        for row in self._step_rows:
            try:
                good.append(step_rows_to_table([row], self.rank))
            except Exception as error:
                self._count_error(f"skipped the step {row[0]} row: {error}", error, write_failure=False)
        return _concat(good)[0] if good else None

    def write_table(self, table: str) -> bool:
        if self.disabled:
            return False
        if table == "steps":
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
        except Exception as error:
            # keep what was not written; the next flush retries it
            self._tables[table] = pieces[written:]
            self._rows[table] = sum(piece.num_rows for piece in pieces[written:])
            self._count_error(f"could not write a {table} chunk in {self.run_path}: {error}", error,
                              write_failure=True)
            return False
        self._tables[table] = []
        self._rows[table] = 0
        self.consecutive_errors = 0
        return True

    def _write_chunk(self, table: str, data: pa.Table) -> None:
        name = ChunkName(self.rank, self.segment, self._next_chunk)
        folder = self.run_path / table
        durable.write_parquet_atomic(data, folder / name.temp_filename, folder / name.filename)
        self._next_chunk += 1
        self.chunks_written += 1

    # -- health -----------------------------------------------------------------------------
    def _beat(self) -> None:
        if self.heartbeat_path is None:
            return
        try:
            meta.touch(self.heartbeat_path)
        except OSError as error:
            self._log.error(f"could not touch the heartbeat {self.heartbeat_path}: {error}")

    def _count_error(self, message: str, error: BaseException, *, write_failure: bool) -> None:
        self.errors += 1
        self.failure = error
        self._log.error(message)
        if not write_failure:
            return
        self.consecutive_errors += 1
        if self.consecutive_errors >= self.max_consecutive_errors and not self.disabled:
            self.disabled = True
            self._step_rows = []
            self._tables = {table: [] for table in TABLES}
            self._rows = dict.fromkeys(TABLES, 0)
            logger.error("entropymon writer: disabled after %d failed writes in a row; rows of %s are "
                         "no longer logged", self.consecutive_errors, self.run_path)


def _concat(tables: list[pa.Table]) -> list[pa.Table]:
    """``tables`` as one table (schemas merged), or as they are when their column types clash."""
    if len(tables) <= 1:
        return list(tables)
    try:
        return [pa.concat_tables(tables, promote_options="permissive")]
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return list(tables)
