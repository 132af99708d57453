"""The Monitor's background thread: takes observations off a bounded queue and feeds the stream.

The training thread only enqueues (``put_nowait``): a full queue drops the observation and
counts it, it never blocks the trainer. Control items (flush, stop) wait for room, so a flush
always reaches the stream. Each item is handled inside its own try/except, so one bad item cannot
stop the thread.
"""

from __future__ import annotations

import queue
import threading

from entropymon.hooks.failures import FailureLog
from entropymon.hooks.stream import StepStream

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
