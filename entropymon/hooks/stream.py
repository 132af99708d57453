"""The Monitor's step stream: micro-batches in, one steps row (plus samples and tokens) out.

It runs on the worker thread (or inline when ``strict``). Observations for the same step are
collected; the step is finalised - metrics computed once over the joined batch and rows handed
to the ``RunLog`` - when a higher step arrives, on ``flush`` and on ``close``. Scalars from
``log_scalars`` join their step's row. Every failure is counted by the ``FailureLog`` and the
stream goes on with the next item.
"""

from __future__ import annotations

import threading

from entropymon.hooks.failures import FailureLog
from entropymon.hooks.host_batch import HostBatch, join_batches, to_host
from entropymon.hooks.observation import Observation
from entropymon.hooks.probe import ProbeObservation, probe_row
from entropymon.hooks.settings import MonitorSettings
from entropymon.hooks.step_report import step_report


class StepStream:
    """Collects one step at a time and writes it to ``log`` when it is complete."""

    def __init__(self, log, settings: MonitorSettings, failures: FailureLog, *, on_caller_thread: bool):
        self._log = log
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

    def _health(self) -> dict[str, float]:
        return {"monitor_errors": float(self._failures.errors),
                "monitor_bad_rows": float(self._failures.bad_rows),
                "dropped_rows": float(getattr(self._log, "dropped_rows", 0))}

