"""``halt_on``: stop a Hugging Face / TRL run when a live alert is severe enough, and say why.

Why in the callbacks: a Trainer stops cleanly only through ``control.should_training_stop``, read
after each step; the live ``AlertWatcher`` (on its own thread) reports alerts, and at the next step
end the callback sets the flag once, prints the reason on stderr and keeps it in ``reason`` (the
run's last steps are written as usual). Alerts are evaluated asynchronously, so a run stops a step
or two after the one that made the rule fire.
"""

from __future__ import annotations

import sys
import warnings

from entropymon.errors import InputError

HALT_LEVELS = ("warning", "critical")


def check_halt_on(halt_on) -> str | None:
    if halt_on is None or halt_on in HALT_LEVELS:
        return halt_on
    raise InputError(f"halt_on: expected None, 'warning' or 'critical', got {halt_on!r}")


class Halter:
    """Sets ``control.should_training_stop`` once ``watcher`` has reported an alert at ``level`` or above."""

    def __init__(self, watcher, level: str):
        self.watcher = watcher
        self.level = level
        self.reason: str | None = None
        self.alert = None

    def on_step_end(self, control, step: int) -> None:
        """``check``, from a Trainer callback's ``on_step_end``: a failure warns, never stops training."""
        try:
            self.check(control, step)
        except Exception as error:  # noqa: BLE001 - monitoring never breaks training
            warnings.warn(f"entropymon: halt_on check failed ({error})", RuntimeWarning, stacklevel=3)

    def check(self, control, step: int) -> None:
        if self.reason is not None:
            control.should_training_stop = True
            return
        alert = self.watcher.first_at_least(self.level)
        if alert is None:
            return
        control.should_training_stop = True
        self.alert = alert
        self.reason = (f"entropymon: stopping training at step {step} (halt_on={self.level!r}): {alert.severity} "
                       f"[{alert.rule}] from step {alert.step:g}: {alert.message}")
        sys.stderr.write(self.reason + "\n")
        sys.stderr.flush()
