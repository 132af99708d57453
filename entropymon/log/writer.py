"""RunLog: the crash-safe, never-blocking writer of one run's Parquet logs.

Why it looks like this: a monitor must never slow down or break the training it watches. The
training thread only appends to a bounded queue (dropping and counting when it is full); a
background thread (worker.py) turns rows into Arrow tables, writes one durable chunk file per
table and flush (durable.py) and merges its own small chunks in tiers (merge.py). Every writer
claims a segment number of its own (an O_EXCL claim file, layout.py), so a restarted or crashed
writer, or a second writer on the same run and rank, never touches another's files. See
docs/ARCHITECTURE.md for the folder layout.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from entropymon.errors import InputError, LogFormatError
from entropymon.log import meta, shutdown
from entropymon.log.layout import claim_segment, scan_table, segment_in_use
from entropymon.log.merge import FANOUT
from entropymon.log.rows import count_rows, warm_up
from entropymon.log.schema import (
    RUN_META_FILE,
    TABLES,
    TEMP_SUFFIX,
    heartbeat_filename,
    segment_of,
    validate_index,
    validate_run_name,
)
from entropymon.log.worker import Marker, Worker

FLUSH_POLL_MIN_S = 0.0002
STALE_JSON_TEMP_S = 600.0
FLUSH_POLL_MAX_S = 0.005


class RunLog:
    """Write one run's steps, samples and tokens to ``logdir/run`` as crash-safe Parquet chunks.

    Usage::

        with RunLog("logs", run="grpo-qwen-0.5b", config={"lr": 1e-6}) as log:
            for step in range(steps):
                log.log_step(step, {"entropy_mean": 0.41, "reward_mean": 0.3})
                log.log_samples(step, {"reward": rewards, "length": lengths})  # dict of columns
                log.log_tokens(step, {"entropy": entropies, "token_id": ids})  # opt-in

    The ``log_*`` calls never block and raise only for a wrong step or argument type (InputError);
    rows go onto a queue of ``queue_size`` items (a step row, or one batch of sample/token rows,
    is one item); when it is full they are dropped and counted (``dropped_rows``, also written as
    the ``dropped_rows`` metric of the next step row). Arrays and tensors are read later on the
    writer thread: do not modify them in place after logging them. The writer thread writes a
    chunk per table every ``flush_interval_s`` seconds, or at once when a table holds
    ``chunk_rows`` rows; it keeps the number of files bounded by merging its own chunks in the
    background (``merge_fanout`` files of a tier become one). Writer errors and values that
    cannot be stored are logged (rate-limited), counted in ``errors`` and passed to
    ``on_error(exception)`` (called on the writer thread; the Monitor counts and warns). A failed
    write keeps its rows and is retried (``failing`` after ``max_consecutive_errors`` failures in
    a row: retries back off, and rows beyond ``max_pending_rows`` per table are dropped and
    counted in ``dropped_rows``); it recovers by itself when the disk does. With ``strict=True``
    the next call raises the writer's error instead.
    ``close()`` (or leaving the ``with`` block), interpreter exit and SIGTERM flush the queue.

    With several ranks, every rank opens the same ``run`` with its own ``rank``; each writes its
    own files and only rank 0 writes run.json.
    """

    def __init__(self, logdir, run: str | None = None, config=None, *, rank: int = 0, queue_size: int = 10_000,
                 flush_interval_s: float = 2.0, chunk_rows: int = 1_000_000, max_consecutive_errors: int = 5,
                 strict: bool = False, on_error=None, max_pending_rows: int | None = None,
                 merge_fanout: int = FANOUT):
        rank = validate_index("rank", rank)
        queue_size = _positive_int("queue_size", queue_size)
        chunk_rows = _positive_int("chunk_rows", chunk_rows)
        max_consecutive_errors = _positive_int("max_consecutive_errors", max_consecutive_errors)
        merge_fanout = _positive_int("merge_fanout", merge_fanout)
        if merge_fanout < 2:
            raise InputError(f"merge_fanout: expected an integer >= 2, got {merge_fanout!r}")
        if max_pending_rows is not None:
            max_pending_rows = _positive_int("max_pending_rows", max_pending_rows)
        if on_error is not None and not callable(on_error):
            raise InputError(f"on_error: expected a callable or None, got {type(on_error).__name__}")
        if not isinstance(flush_interval_s, (int, float)) or not flush_interval_s > 0:
            raise InputError(f"flush_interval_s: expected a number of seconds > 0, got {flush_interval_s!r}")
        config_json = meta.config_to_json(config)
        warm_up()
        started = time.time()
        self.rank = rank
        self.strict = strict
        self.path = _make_run_folder(Path(logdir), run, rank)
        self.run = self.path.name
        self._dropped_rows = 0
        self._queue_size = queue_size
        self._queue: deque = deque()
        self._closed = False
        self._close_ok = False
        self._pid = os.getpid()  # a forked child must not flush or close the parent's log
        self._warned_closed = False
        self._meta: dict | None = None
        self._claim: int | None = None
        try:
            for table in TABLES:
                (self.path / table).mkdir(exist_ok=True)
            _remove_stale_files(self.path, rank, before=started)
            segment, self._claim = claim_segment(self.path, rank)
            if rank == 0:
                self._meta = _start_meta(self.path, self.run, config_json, config is not None)
                meta.write_meta(self.path, self._meta)
            heartbeat = meta.write_heartbeat(self.path, rank, segment)
        except OSError as error:
            if self._claim is not None:
                os.close(self._claim)
            raise InputError(f"logdir: could not set up the run folder {self.path} ({error})") from None
        self.segment = segment
        self._worker = Worker(self.path, rank, segment, self._queue, flush_interval_s=float(flush_interval_s),
                              chunk_rows=chunk_rows, max_consecutive_errors=max_consecutive_errors,
                              heartbeat_path=heartbeat, on_error=on_error, max_pending_rows=max_pending_rows,
                              merge_fanout=merge_fanout)
        self._thread = threading.Thread(target=self._worker.run, name=f"entropymon-writer[{self.run}:{rank}]",
                                        daemon=True)
        self._thread.start()
        shutdown.register(self)

    # -- the training-thread calls ------------------------------------------------------------
    def log_step(self, step: int, metrics: Mapping) -> None:
        """Queue one row of scalar metrics for ``step`` (float64 columns; ``entropy_hist`` a list)."""
        self._raise_if_strict_failure()
        step = validate_index("step", step)
        if not isinstance(metrics, Mapping):
            raise InputError(f"metrics: expected a dict of metric name -> value, got {type(metrics).__name__}")
        if self._refuse():
            return
        row = dict(metrics)
        if self.dropped_rows:
            row.setdefault("dropped_rows", self.dropped_rows)
        self._put(("steps", step, time.time(), row), 1)

    def log_samples(self, step: int, rows) -> None:
        """Queue one row per completion: a dict of equal-length columns, a list of dicts or a DataFrame."""
        self._log_rows("samples", step, rows)

    def log_tokens(self, step: int, rows) -> None:
        """Queue sampled token rows (same forms as ``log_samples``)."""
        self._log_rows("tokens", step, rows)

    def _log_rows(self, table: str, step: int, rows) -> None:
        self._raise_if_strict_failure()
        step = validate_index("step", step)
        if rows is None:
            raise InputError(f"rows: expected a dict of columns, a list of dicts or a DataFrame for log_{table}, "
                             "got None")
        if self._refuse():
            return
        self._put((table, step, rows), None)

    def _put(self, item: tuple, rows: int | None) -> None:
        # len() and append() are atomic on a deque: no lock the training thread could wait on
        if len(self._queue) >= self._queue_size:
            self._dropped_rows += count_rows(item[2]) if rows is None else rows
            return
        self._queue.append(item)

    def _refuse(self) -> bool:
        if self._closed:
            if not self._warned_closed:
                self._warned_closed = True
                warnings.warn(f"RunLog {self.path}: rows logged after close() are ignored", stacklevel=4)
            return True
        return False

    # -- flushing and closing -----------------------------------------------------------------
    @property
    def dropped_rows(self) -> int:
        """Rows dropped so far: the queue was full, or writes kept failing and too many waited."""
        return self._dropped_rows + self._worker.dropped_rows

    @property
    def errors(self) -> int:
        """Writer errors so far (failed writes, values and rows that could not be stored)."""
        return self._worker.errors

    @property
    def failing(self) -> bool:
        """True while writes keep failing (the writer retries with a back-off and recovers by itself)."""
        return self._worker.failing

    disabled = failing  # the name before the writer learnt to recover

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything logged so far; True when it is on disk, False on error or timeout."""
        if self._closed:
            return self._close_ok
        if not self._thread.is_alive() or os.getpid() != self._pid:
            return False
        marker = Marker()
        self._queue.append(marker)  # a flush request bypasses the bound: it must get through
        ok = self._wait(marker, timeout)
        self._raise_if_strict_failure()
        return ok

    def _wait(self, marker: Marker, timeout: float | None) -> bool:
        # polling, not an Event: this runs inside the SIGTERM handler too (see shutdown.py)
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = FLUSH_POLL_MIN_S
        while not marker.done:
            if not self._thread.is_alive() or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(pause)
            pause = min(pause * 2, FLUSH_POLL_MAX_S)
        return marker.ok

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush, stop the writer thread and mark the run closed in run.json. Safe to call twice."""
        if self._closed or os.getpid() != self._pid:
            return
        self._closed = True
        shutdown.unregister(self)
        marker = Marker(close=True)
        self._queue.append(marker)
        self._close_ok = self._wait(marker, timeout)
        if marker.done:
            self._thread.join(timeout=1.0)  # the worker returns right after a close marker
        self._finish_meta("closed")
        self._release_claim()
        self._raise_if_strict_failure()

    def _release_claim(self) -> None:
        if self._claim is not None and self._thread is not None and not self._thread.is_alive():
            claim, self._claim = self._claim, None
            try:
                os.close(claim)
            except OSError:
                pass

    def mark_terminated(self) -> None:
        """Record in run.json that the process is ending on a signal (called by shutdown.py)."""
        if os.getpid() != self._pid:
            return
        self._closed = True
        self._finish_meta("terminated")

    def _finish_meta(self, status: str) -> None:
        if self._meta is None:
            return
        self._meta.update(status=status, ended_at=meta.now_iso())
        try:
            meta.write_meta(self.path, self._meta)
        except OSError as error:
            self._worker.errors += 1
            shutdown.logger.error("entropymon writer: could not mark %s %s: %s", self.path, status, error)

    def _raise_if_strict_failure(self) -> None:
        if self.strict and self._worker.failure is not None:
            failure, self._worker.failure = self._worker.failure, None
            raise failure

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunLog({str(self.path)!r}, rank={self.rank}, segment={self.segment})"


def _positive_int(name: str, value) -> int:
    number = validate_index(name, value)
    if number == 0:
        raise InputError(f"{name}: expected an integer > 0, got {value!r}")
    return number


def _make_run_folder(logdir: Path, run: str | None, rank: int) -> Path:
    if logdir.exists() and not logdir.is_dir():
        raise InputError(f"logdir: expected a folder, got the file {logdir}")
    try:
        logdir.mkdir(parents=True, exist_ok=True)
        if run is None:
            if rank != 0:
                raise InputError(f"run: with rank={rank} a run name is required, so that every rank writes "
                                 "into the same folder (pass the name rank 0 uses)")
            return meta.create_generated_run(logdir)
        path = logdir / validate_run_name(run)
        path.mkdir(exist_ok=True)
    except OSError as error:
        raise InputError(f"logdir: could not create a run folder in {logdir} ({error})") from None
    return path


def _start_meta(run_path: Path, run: str, config_json: dict | None, config_given: bool) -> dict:
    """run.json for a starting writer; a restart into an existing run keeps its start time and config."""
    fresh = meta.new_meta(run, config_json, 0)
    try:
        previous = meta.read_meta(run_path)
    except LogFormatError:
        return fresh
    fresh["started_at"] = previous.get("started_at", fresh["started_at"])
    fresh["resumed_at"] = [*previous.get("resumed_at", []), meta.now_iso()]
    if not config_given:
        fresh["config"] = previous.get("config")
    return fresh


def _remove_stale_files(run_path: Path, rank: int, before: float) -> None:
    """Delete what crashed writers of ``rank`` left behind: their ``*.tmp`` files (older than this
    start) and chunks a merge had already replaced (hidden from readers, only taking space)."""
    own_temporaries = [f".{heartbeat_filename(rank)}."] + ([f".{RUN_META_FILE}."] if rank == 0 else [])
    for name in os.listdir(run_path):
        if name.endswith(TEMP_SUFFIX) and name.startswith(tuple(own_temporaries)):
            # another writer may be replacing run.json this instant: only long-abandoned ones go
            _unlink_if_older(run_path / name, before - STALE_JSON_TEMP_S)
    for table in TABLES:
        folder = run_path / table
        for name in os.listdir(folder):
            owner = segment_of(name)
            if name.startswith(".") and name.endswith(TEMP_SUFFIX) and owner and owner[0] == rank:
                if not segment_in_use(run_path, *owner):  # never a live writer's file being written
                    _unlink_if_older(folder / name, before)
        files = scan_table(folder)
        merged = [outer for outer, _ in files.active if outer.merged and outer.rank == rank]
        for chunk, path in files.hidden:
            if any(outer.contains(chunk) for outer in merged):
                path.unlink(missing_ok=True)


def _unlink_if_older(path: Path, before: float) -> None:
    try:
        if path.stat().st_mtime < before:
            path.unlink()
    except FileNotFoundError:
        pass
