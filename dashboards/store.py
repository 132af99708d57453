"""Runs as the dashboard holds them: read once per version, with derived results cached.

Why: every poll of the browser asks "has anything changed?". Answering must cost a directory
listing, not a read: a run's *version* is a digest of its run.json and chunk files' names, sizes
and mtimes. Only when it changes is the ``Run`` refreshed (the reader's file cache then reads
just the new files) and the figures and analyses derived from it recomputed; otherwise callbacks
get the cached results. A run that cannot be read becomes a state with an ``error`` message, so
views show that message instead of a traceback.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from entropymon.log.reader import Run, read_run
from entropymon.log.schema import RUN_META_FILE, TABLES
from entropymon.log.shutdown import keep_signals_on_the_main_thread
from entropymon_dashboard.catalog import RunCatalog, RunEntry

MAX_DERIVED = 256


class Pending(Exception):
    """A derived result is being computed in the background (``RunStore.derived`` with ``wait_s``)."""


_BACKGROUND: list[ThreadPoolExecutor] = []
_BACKGROUND_LOCK = threading.Lock()


def _background() -> ThreadPoolExecutor:
    """One thread for the dashboard's background work: results come one after the other, on a
    2-core machine two at once would only slow both (and the callbacks answering meanwhile)."""
    with _BACKGROUND_LOCK:
        if not _BACKGROUND:
            _BACKGROUND.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="entropymon-dashboard-derived",
                                                  initializer=keep_signals_on_the_main_thread))
        return _BACKGROUND[0]


def run_version(path: Path) -> str:
    """A digest of run.json and every file in the table folders (name, size, mtime)."""
    parts = []
    for name in (RUN_META_FILE, *TABLES):
        target = path / name
        try:
            if name == RUN_META_FILE:
                info = target.stat()
                parts.append(f"{name}:{info.st_size}:{info.st_mtime_ns}")
                continue
            with os.scandir(target) as listing:
                for item in sorted(listing, key=lambda e: e.name):
                    info = item.stat()
                    parts.append(f"{name}/{item.name}:{info.st_size}:{info.st_mtime_ns}")
        except OSError:
            parts.append(f"{name}:missing")
    return hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()


@dataclass
class RunState:
    """One run at one version. ``error`` is set (and ``run`` may be None) when it cannot be read."""

    entry: RunEntry
    version: str
    run: Run | None
    error: str | None = None
    _frames: dict = field(default_factory=dict, repr=False)

    @property
    def run_id(self) -> str:
        return self.entry.run_id

    @property
    def name(self) -> str:
        return self.entry.run_id if self.entry.run_id != "." else self.entry.path.name

    @property
    def step_metrics(self) -> pd.DataFrame:
        """One row per step (ranks combined); empty when unreadable."""
        if "step_metrics" not in self._frames:
            frame = pd.DataFrame({"step": pd.Series(dtype="int64")})
            if self.run is not None and self.error is None:
                try:
                    frame = self.run.step_metrics
                except Exception as error:  # noqa: BLE001 - a corrupt or foreign log must not break the page
                    self.error = f"run {self.name} cannot be read: {error}"
            self._frames["step_metrics"] = frame
        return self._frames["step_metrics"]

    @property
    def is_live(self) -> bool:
        try:
            return self.run is not None and bool(self.run.is_live)
        except Exception:  # noqa: BLE001 - an unreadable heartbeat reads as not live
            return False

    def message(self) -> str | None:
        """Why there is nothing to draw (unreadable or no steps yet), else None."""
        frame = self.step_metrics
        if self.error:
            return self.error
        if frame.empty:
            return f"Run {self.name} has no steps logged yet" + (" (it is still running)" if self.is_live else "")
        return None


class RunStore:
    """RunStates by run id, refreshed when their version changes; derived results cached."""

    def __init__(self, catalog: RunCatalog):
        self.catalog = catalog
        self._states: dict[str, RunState] = {}
        self._derived: OrderedDict[tuple, object] = OrderedDict()
        self._running: dict[tuple, Future] = {}  # derived results being computed in the background
        self._lock = threading.Lock()

    def versions(self) -> dict[str, str]:
        """{run id: version} of every run in the catalog (a directory listing per run)."""
        return {entry.run_id: run_version(entry.path) for entry in self.catalog.entries()}

    def state(self, run_id: str) -> RunState:
        """The run's current state; raises RunNotFoundError for an id the catalog does not list."""
        entry = self.catalog.resolve(run_id)
        version = run_version(entry.path)
        with self._lock:
            state = self._states.get(run_id)
            if state is not None and state.version == version:
                return state
        state = self._load(entry, version, None if state is None else state.run)
        with self._lock:
            self._states[run_id] = state
        return state

    def derived(self, state: RunState, key, compute, wait_s: float | None = None):
        """``compute(state)`` cached per (run id, version, key), computed once: a caller asking while
        it is being computed waits for that computation. Exceptions are not cached.

        ``wait_s``: how long to wait for a result not cached yet (None: until it is there). When it
        is not there in time, the computation goes on on the store's background thread and the call
        raises ``Pending``; a later call (waiting or not) gets its result. Why: the runs table's
        summary of a run of 10k steps costs seconds of analyses (bootstraps, alert rules), and the
        page should show the table meanwhile and fill the row in on a later poll. A background
        ``compute`` may ask for other results only without ``wait_s`` (computed on its own thread):
        one queued behind it on the single background thread would never start."""
        cache_key = (state.run_id, state.version, key)
        with self._lock:
            if cache_key in self._derived:
                self._derived.move_to_end(cache_key)
                return self._derived[cache_key]
            running = self._running.get(cache_key)
            inline = running is None and wait_s is None  # computed by this caller
            if running is None:
                running = self._running[cache_key] = Future()
                if not inline:
                    _background().submit(self._compute, cache_key, compute, state, running)
        if inline:
            self._compute(cache_key, compute, state, running)
        try:
            return running.result(timeout=wait_s)
        except FutureTimeout:
            raise Pending(f"{key!r} of run {state.run_id} is being computed") from None

    def _compute(self, cache_key: tuple, compute, state: RunState, future: Future) -> None:
        """Run ``compute`` and hand its result (or exception) to ``future``; a result is cached."""
        try:
            value = compute(state)
        except BaseException as error:  # noqa: BLE001 - raised to every caller waiting for it
            with self._lock:
                self._running.pop(cache_key, None)
            future.set_exception(error)
            return
        with self._lock:
            self._derived[cache_key] = value
            while len(self._derived) > MAX_DERIVED:
                self._derived.popitem(last=False)
            self._running.pop(cache_key, None)
        future.set_result(value)

    @staticmethod
    def _load(entry: RunEntry, version: str, previous: Run | None) -> RunState:
        try:
            run = previous.refresh() if previous is not None else read_run(entry.path)
        except Exception as error:  # noqa: BLE001 - missing/corrupt run.json: show it as a broken run
            return RunState(entry, version, None, f"run {entry.run_id} cannot be read: {error}")
        return RunState(entry, version, run)
