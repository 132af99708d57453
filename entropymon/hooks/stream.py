"""The Monitor's step stream and the background thread that feeds it.

``StepStream``: micro-batches in, one steps row (plus samples and tokens) out. Observations for
the same step are collected; the step is finalised - metrics computed once over the joined batch
and rows handed to the ``RunLog`` - when a higher step arrives, on ``flush`` and on ``close``.
Scalars from ``log_scalars`` join their step's row. Every failure is counted by the
``FailureLog`` and the stream goes on with the next item.

``StreamWorker``: the daemon thread that owns the stream (or none: with ``strict`` the stream
runs inline on the caller's thread). The training thread only enqueues (``put_nowait``): a full
queue drops the observation and counts it, it never blocks the trainer. Control items (flush,
stop) wait for room, so a flush always reaches the stream. Each item is handled inside its own
try/except, so one bad item cannot stop the thread.
"""

from __future__ import annotations

import queue
import threading

from entropymon.hooks.failures import FailureLog
from entropymon.hooks.host_batch import HostBatch, join_batches, to_host
from entropymon.hooks.observation import Observation
from entropymon.hooks.probe import ProbeObservation, probe_row
from entropymon.hooks.settings import MonitorSettings
from entropymon.hooks.step_report import step_report
from entropymon.log.shutdown import keep_signals_on_the_main_thread


class StepStream:
    """Collects one step at a time and writes it to ``log`` when it is complete."""

    def __init__(self, log, settings: MonitorSettings, failures: FailureLog, *, on_caller_thread: bool,
                 on_row=None):
        self._log = log
        self._on_row = on_row  # called with (step, row) after each row is written (live alerts)
        self._settings = settings
        self._failures = failures
        self._on_caller_thread = on_caller_thread
        self._step: int | None = None
        self._batches: list[HostBatch] = []
        self._scalars: dict[str, float] = {}
        self._probes: list[ProbeObservation] = []
        self._latest: dict[str, float] = {}
        self._latest_lock = threading.Lock()

    def add_observation(self, observation: Observation) -> None:
        self._move_to(observation.step)
        try:
            batch = to_host(observation, self._failures)
        except Exception as error:  # noqa: BLE001 - monitoring never breaks training
            self._failures.record_error("observe", error, on_caller_thread=self._on_caller_thread)
            return
        if batch is not None:
            self._batches.append(batch)

    def add_probe(self, probe: ProbeObservation) -> None:
        """A dH probe result joins its step's row (or makes a row of its own when that step is written)."""
        if self._step is not None and probe.step < self._step:
            self._write_row(probe.step, self._probe_columns(probe.step, [probe]))
            return
        self._move_to(probe.step)
        self._probes.append(probe)

    def add_scalars(self, step: int, scalars: dict[str, float]) -> None:
        if self._step is not None and step < self._step:
            self._write_row(step, dict(scalars))  # a late scalar for a step already written
            return
        self._move_to(step)
        self._scalars.update(scalars)

    def finish_step(self) -> None:
        """Write the pending step, if any (flush and close)."""
        if self._step is None:
            return
        step, batches, scalars, probes = self._step, self._batches, self._scalars, self._probes
        self._step, self._batches, self._scalars, self._probes = None, [], {}, []
        try:
            row = dict(scalars)
            if probes:
                row.update(self._probe_columns(step, probes))
            if batches:
                report = step_report(join_batches(batches, self._failures), step=step, settings=self._settings)
                row = {**report.step_row, **row}
                if report.samples is not None:
                    self._log.log_samples(step, report.samples)
                if report.tokens is not None:
                    self._log.log_tokens(step, report.tokens)
            self._write_row(step, row)
        except Exception as error:  # noqa: BLE001 - monitoring never breaks training
            self._failures.record_error(f"metrics of step {step}", error, on_caller_thread=self._on_caller_thread)
            self._write_row(step, dict(scalars))

    def _probe_columns(self, step: int, probes: list[ProbeObservation]) -> dict:
        try:
            return probe_row(probes, self._failures)
        except Exception as error:  # noqa: BLE001 - a failed probe must not lose the step's other metrics
            self._failures.record_error(f"dH probe of step {step}", error, on_caller_thread=self._on_caller_thread)
            return {}

    def latest_metrics(self) -> dict[str, float]:
        with self._latest_lock:
            return dict(self._latest)

    def _move_to(self, step: int) -> None:
        if self._step is not None and step != self._step:
            self.finish_step()
        self._step = step

    def _write_row(self, step: int, row: dict) -> None:
        row.update(self._health())
        self._log.log_step(step, row)
        scalars = {name: value for name, value in row.items()
                   if not name.startswith("stat/") and isinstance(value, (int, float))}
        with self._latest_lock:
            self._latest = {"step": step, **scalars}
        if self._on_row is not None:
            try:
                self._on_row(step, scalars)
            except Exception as error:  # noqa: BLE001 - monitoring never breaks training
                self._failures.record_error("live alerts", error, on_caller_thread=self._on_caller_thread)

    def _health(self) -> dict[str, float]:
        return {"monitor_errors": float(self._failures.errors),
                "monitor_bad_rows": float(self._failures.bad_rows),
                "dropped_rows": float(getattr(self._log, "dropped_rows", 0))}


# -- the thread that owns the stream ----------------------------------------------------------------

_STOP = object()


class StreamWorker:
    """A daemon thread owning ``stream``: every call into the stream happens on this thread."""

    def __init__(self, stream: StepStream, failures: FailureLog, *, queue_size: int):
        self._stream = stream
        self._failures = failures
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="entropymon-monitor", daemon=True)
        self._thread.start()

    def submit(self, method: str, *args) -> None:
        """Queue ``stream.method(*args)``; drop and count it when the queue is full."""
        try:
            self._queue.put_nowait((method, args))
        except queue.Full:
            self._failures.record_error("observe", RuntimeError(
                f"the monitor's queue is full ({self._queue.maxsize} items): the worker is behind the "
                f"trainer, so a {method} call was dropped"), on_caller_thread=False)

    def flush(self, timeout: float | None = None) -> bool:
        """Finish the pending step and wait until the worker has handed everything to the log."""
        done = threading.Event()
        try:
            self._queue.put(("_flush_marker", (done,)), timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def stop(self, timeout: float | None = None) -> bool:
        """Finish the pending step, then end the thread; True when it ended in time."""
        try:
            self._queue.put((_STOP, ()), timeout=timeout)
        except queue.Full:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        keep_signals_on_the_main_thread()
        while True:
            method, args = self._queue.get()
            if method is _STOP:
                self._handle(self._stream.finish_step)
                return
            if method == "_flush_marker":
                self._handle(self._stream.finish_step)
                args[0].set()
                continue
            self._handle(getattr(self._stream, method), *args)

    def _handle(self, function, *args) -> None:
        try:
            function(*args)
        except Exception as error:  # noqa: BLE001 - the worker must outlive any one bad item
            self._failures.record_error("monitor worker", error, on_caller_thread=False)
