"""``AlertWatcher``: the collapse rules evaluated on a run's step rows while it trains.

Why its own thread: the rules read the whole history (baselines, running maxima), so one
evaluation costs milliseconds to a fraction of a second on a long run; the Monitor's worker only
hands each finished row over (``add_row``, a dict copy under a lock) and a daemon thread evaluates
the newest history whenever rows arrived, so neither the trainer nor the metrics wait for it.

What a user sees: one line per fired rule on stderr (``entropymon critical [divergence] step 25:
...``), once per rule; the same rule speaks again only when its severity rises or, after
``cooldown_steps``, when what it says has changed (the entropy-floor forecast moves as the run goes
on). Each line can also go to a webhook (``alert_webhook`` or ``$ENTROPYMON_ALERT_WEBHOOK``) as
``{"text": line, "alert": {...}, "run": name}``. ``worst`` is what ``halt_on`` reads.
Evaluation failures are counted (``errors``) and warned about once, never raised.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping

from entropymon.display import SEVERITIES
from entropymon.errors import InputError
from entropymon.log.shutdown import keep_signals_on_the_main_thread

logger = logging.getLogger("entropymon")
WEBHOOK_ENV = "ENTROPYMON_ALERT_WEBHOOK"


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class AlertWatcher:
    """Evaluates ``rules`` on the rows it is given and reports newly fired alerts.

    Args:
        rules: rule names (default: the rules cheap enough to run live, ``alerts.LIVE_RULES``).
        thresholds: as for ``diagnose``.
        min_severity: the lowest severity that is printed / posted ("warning" by default).
        cooldown_steps: steps before a rule that already spoke may speak again with new content.
        webhook: a URL (default ``$ENTROPYMON_ALERT_WEBHOOK``), "" or None for none.
        write: where the lines go (default: stderr).
        run: the run's name, in the webhook payload.
        inline: evaluate on the caller's thread (tests, ``strict`` monitors) instead of a thread.
        min_interval_s: the thread evaluates at most once per this many seconds.
    """

    def __init__(self, rules=None, thresholds: Mapping | None = None, *, min_severity: str = "warning",
                 cooldown_steps: int = 50, webhook: str | None = None, write: Callable[[str], None] | None = None,
                 run: str | None = None, inline: bool = False, min_interval_s: float = 5.0,
                 performance: str = "auto", bounds="auto"):
        from entropymon.analysis.alerts import LIVE_RULES, check_rule_names, merge_thresholds

        self.rules = list(LIVE_RULES) if rules is None else check_rule_names(rules)
        merge_thresholds(self.rules, dict(thresholds or {}))  # fail fast on a bad threshold
        self.thresholds = dict(thresholds or {})
        if min_severity not in SEVERITIES:
            raise InputError(f"min_severity: expected one of {SEVERITIES}, got {min_severity!r}")
        if isinstance(cooldown_steps, bool) or not isinstance(cooldown_steps, int) or cooldown_steps < 0:
            raise InputError(f"cooldown_steps: expected an int >= 0, got {cooldown_steps!r}")
        self.min_severity, self.cooldown_steps = min_severity, cooldown_steps
        if isinstance(min_interval_s, bool) or not isinstance(min_interval_s, (int, float)) or min_interval_s < 0:
            raise InputError(f"min_interval_s: expected a number >= 0, got {min_interval_s!r}")
        self.min_interval_s = float(min_interval_s)
        self.performance, self.bounds = performance, bounds
        self.run = run
        self.write = write or _stderr_line
        url = os.environ.get(WEBHOOK_ENV, "") if webhook is None else webhook
        self.webhook = None
        if url:
            from entropymon.alerting.webhook import WebhookSender

            self.webhook = WebhookSender(url)
        self.alerts: list = []  # every alert reported, in order
        self.errors = 0
        self.evaluations = 0
        self._rows: dict[int, dict] = {}
        self._spoken: dict[str, tuple] = {}  # rule -> (severity index, step spoken at, content key)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._stop_waiting = threading.Event()
        self._thread = None
        if not inline:
            self._thread = threading.Thread(target=self._run, name="entropymon-alerts", daemon=True)
            self._thread.start()

    # -- feeding ---------------------------------------------------------------------------

    def add_row(self, step: int, row: Mapping) -> None:
        """A finished steps row (scalars are kept; lists and ``stat/`` columns are not)."""
        scalars = {k: float(v) for k, v in row.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith("stat/")}
        with self._lock:
            self._rows.setdefault(int(step), {}).update(scalars)
            self._idle.clear()
        if self._thread is None:
            self.evaluate()
        else:
            self._wake.set()

    @property
    def worst(self) -> str | None:
        """The most severe alert reported so far (None: none)."""
        with self._lock:
            if not self.alerts:
                return None
            return max((a.severity for a in self.alerts), key=SEVERITIES.index)

    def first_at_least(self, severity: str):
        """The first reported alert at ``severity`` or above, or None."""
        with self._lock:
            return next((a for a in self.alerts if SEVERITIES.index(a.severity) >= SEVERITIES.index(severity)), None)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every row given so far has been evaluated (tests, ``flush``)."""
        return self._idle.wait(timeout)

    def close(self, timeout: float | None = 2.0) -> None:
        """Evaluate what is pending, stop the thread and the webhook (at most ``timeout`` s each)."""
        if self._closed:
            return
        self._closed = True
        self._stop_waiting.set()
        if self._thread is not None:
            self._wake.set()
            self._thread.join(timeout)
        if self.webhook is not None:
            self.webhook.close(timeout)

    # -- evaluating ------------------------------------------------------------------------

    def evaluate(self) -> list:
        """Run the rules on the history so far; report and return the alerts that are new."""
        import pandas as pd

        from entropymon.analysis.alerts import diagnose

        with self._lock:
            rows = [{"step": step, **row} for step, row in sorted(self._rows.items())]
        new = []
        try:
            if rows:
                frame = pd.DataFrame(rows)
                alerts = diagnose(frame, self.rules, self.thresholds, performance=self.performance, bounds=self.bounds)
                self.evaluations += 1
                new = [a for a in alerts if self._should_speak(a, float(rows[-1]["step"]))]
        except Exception as error:  # noqa: BLE001 - live alerts never break training
            self.errors += 1
            if self.errors == 1:
                logger.warning("entropymon: evaluating the alert rules failed (%s: %s); training continues",
                               type(error).__name__, error)
        for alert in new:
            self._report(alert)
        return new

    def _should_speak(self, alert, now: float) -> bool:
        level = SEVERITIES.index(alert.severity)
        if level < SEVERITIES.index(self.min_severity):
            return False
        key = (alert.severity, alert.step, alert.message)
        spoken = self._spoken.get(alert.rule)
        if spoken is None or level > spoken[0] or (key != spoken[2] and now - spoken[1] >= self.cooldown_steps):
            self._spoken[alert.rule] = (level, now, key)
            return True
        return False

    def _report(self, alert) -> None:
        with self._lock:
            self.alerts.append(alert)
        line = alert.line()
        try:
            self.write(line)
        except Exception:  # noqa: BLE001
            pass
        if self.webhook is not None:
            self.webhook.send({"text": line, "alert": alert.to_dict(), "run": self.run})

    def _run(self) -> None:
        keep_signals_on_the_main_thread()
        while True:
            self._wake.wait()
            self._wake.clear()
            self.evaluate()
            with self._lock:
                if not self._wake.is_set():
                    self._idle.set()
            if self._closed:
                if self._wake.is_set():
                    self.evaluate()
                    self._idle.set()
                return
            # at most one evaluation per min_interval_s: the rules read the whole history, and on a
            # small machine their pandas work competes with the trainer for the CPU
            self._stop_waiting.wait(self.min_interval_s)
