"""Flush every open RunLog when the process ends: on normal exit (atexit) and on SIGTERM.

Why: schedulers stop jobs with SIGTERM and a grace period; without a handler Python dies at once
and the rows still queued are lost. The handler is installed once, from the main thread only
(Python allows no other), and chains to whatever handler was there before: a callable is called,
SIG_IGN is respected, and the default disposition is re-delivered so the process still ends
with the signal. The handler shares no lock with the writer threads (RunLog.flush only appends
to a deque and polls a flag), so it cannot deadlock whatever instant the signal lands on.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading

logger = logging.getLogger("entropymon.log")

SIGNAL_FLUSH_TIMEOUT_S = 10.0
EXIT_CLOSE_TIMEOUT_S = 10.0

# strong references: a RunLog the trainer dropped without close() must still be flushed at exit
_open_logs: dict[int, object] = {}
_atexit_registered = False
if hasattr(os, "register_at_fork"):
    # a forked child (e.g. a data-loader worker) shares no writer thread: it must not close the
    # parent's logs or mark the run closed when it exits
    os.register_at_fork(after_in_child=_open_logs.clear)
_sigterm_installed = False
_previous_sigterm = signal.SIG_DFL


BACKGROUND_BLOCKED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def keep_signals_on_the_main_thread() -> None:
    """Block SIGTERM and SIGINT in the calling thread; every entropymon background thread calls it first.

    Why: the kernel hands a signal sent to the process to any thread that does not block it.
    Python runs handlers on the main thread only, and a main thread blocked in a sleep or a long
    C call learns of a signal another thread caught only when that call returns, so the SIGTERM
    flush (and the trainer's own handler, or Ctrl+C) could wait for minutes. Blocked here, the
    signals never land on our threads. Threads that C libraries start (OpenBLAS, OpenMP) are out
    of our reach: the kernel prefers the main thread, but may hand a signal to one of those, and
    then the handler runs when the main thread's current blocking call returns. No-op where the
    platform has no ``pthread_sigmask``.
    """
    if hasattr(signal, "pthread_sigmask"):
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, BACKGROUND_BLOCKED_SIGNALS)
        except (OSError, ValueError):  # a platform without per-thread masks: nothing to do
            pass


def register(run_log) -> None:
    """Track ``run_log`` so exit and SIGTERM flush it; install the hooks on first use."""
    global _atexit_registered, _sigterm_installed, _previous_sigterm
    _open_logs[id(run_log)] = run_log
    if not _atexit_registered:
        atexit.register(_close_all_at_exit)
        _atexit_registered = True
    if not _sigterm_installed and threading.current_thread() is threading.main_thread():
        try:
            previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _flush_all_on_sigterm)
        except (ValueError, OSError):  # not the main interpreter, or no SIGTERM on this platform
            return
        _previous_sigterm = previous
        _sigterm_installed = True


def unregister(run_log) -> None:
    _open_logs.pop(id(run_log), None)


def _close_all_at_exit() -> None:
    for run_log in list(_open_logs.values()):
        try:
            run_log.close(timeout=EXIT_CLOSE_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - exit must go on whatever a log does
            logger.error("entropymon: closing %s at exit failed: %s", getattr(run_log, "path", run_log), error)


def _flush_all_on_sigterm(signum, frame) -> None:
    for run_log in list(_open_logs.values()):
        try:
            run_log.flush(timeout=SIGNAL_FLUSH_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - the other logs and the previous handler must still run
            logger.error("entropymon: flushing %s on SIGTERM failed: %s", getattr(run_log, "path", run_log), error)
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # SIG_DFL, or None (a handler installed outside Python): end the process as the default would
        for run_log in list(_open_logs.values()):
            try:
                run_log.mark_terminated()
            except Exception:  # noqa: BLE001 - the process is ending: a status not written is all that is lost
                pass
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
