"""How the Monitor fails: counted and warned once, never into the training loop.

Monitoring must never break training. Every exception the Monitor meets (bad input on the
training thread, a metric that cannot be computed on the worker thread) goes through one
``FailureLog``: it is counted (the ``monitor_errors`` metric), warned about once per kind of
problem (``warnings.warn`` and the ``entropymon`` logger), and swallowed. With ``strict=True``
the exception is raised instead, for tests and debugging. Rows skipped by the NaN/inf policy are
counted separately (``monitor_bad_rows``).

Errors raised on the worker thread cannot reach the caller directly; when they must be raised
(``strict`` or ``nan_policy="raise"``) they are kept and re-raised on the training thread at the
caller's next call into the Monitor.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings

from entropymon.errors import InputError

logger = logging.getLogger("entropymon")

NAN_POLICIES = ("warn", "raise", "ignore")


class MonitorWarning(UserWarning):
    """A problem the Monitor met and skipped; training goes on."""


def check_nan_policy(nan_policy: str) -> str:
    if nan_policy not in NAN_POLICIES:
        raise InputError(f"nan_policy: expected one of {NAN_POLICIES}, got {nan_policy!r}")
    return nan_policy


class FailureLog:
    """Counts the Monitor's errors and skipped rows, warns once per kind, keeps errors to re-raise."""

    def __init__(self, *, strict: bool = False, nan_policy: str = "warn"):
        self.strict = strict
        self.nan_policy = check_nan_policy(nan_policy)
        self._lock = threading.Lock()
        self._warned_kinds: set[str] = set()
        self._pending: BaseException | None = None
        self.errors = 0
        self.bad_rows = 0

    def record_error(self, stage: str, error: BaseException, *, on_caller_thread: bool) -> None:
        """Count ``error`` met during ``stage``; warn the first time its kind is seen.

        In strict mode the error is raised (on the caller's thread) or kept to re-raise there.
        """
        with self._lock:
            self.errors += 1
        if self.strict:
            if on_caller_thread:
                raise error
            self._keep_for_caller(error)
            return
        self._warn_once(_kind(stage, error), f"entropymon: {stage} failed and was skipped "
                        f"(training continues; counted in monitor_errors): {type(error).__name__}: {error}")

    def record_bad_rows(self, argument: str, n_rows: int, n_total: int, found: str | None = None) -> None:
        """Apply the NaN policy to ``n_rows`` of ``n_total`` sequences with NaN/inf or impossible values.

        ``found`` says what was wrong (``logprobs: expected finite log-probs <= 0, got 3 > 0``);
        warnings are once per ``argument`` whatever the numbers.
        """
        if n_rows <= 0:
            return
        with self._lock:
            self.bad_rows += n_rows
        what = found or f"{argument}: expected finite values, got NaN/inf"
        message = (f"{what} in {n_rows} of {n_total} sequences; they were skipped "
                   f"(counted in monitor_bad_rows)")
        if self.nan_policy == "raise":
            self._keep_for_caller(InputError(message))
        elif self.nan_policy == "warn":
            self._warn_once(f"nan:{argument}", "entropymon: " + message)

    def raise_pending(self) -> None:
        """Re-raise, on the caller's thread, an error the worker kept for it (at most once)."""
        with self._lock:
            error, self._pending = self._pending, None
        if error is not None:
            raise error

    def _keep_for_caller(self, error: BaseException) -> None:
        with self._lock:
            if self._pending is None:
                self._pending = error

    def _warn_once(self, kind: str, message: str) -> None:
        with self._lock:
            if kind in self._warned_kinds:
                return
            self._warned_kinds.add(kind)
        logger.warning(message)
        warnings.warn(message, MonitorWarning, stacklevel=4)


def _kind(stage: str, error: BaseException) -> str:
    """Same stage, type and message up to numbers: one kind (a shape that changes each step warns once)."""
    return f"{stage}:{type(error).__name__}:{re.sub(r'[0-9.]+', '#', str(error))[:120]}"
