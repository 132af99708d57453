"""``EntropymonCallback``: the scalar curves of any Hugging Face ``Trainer``, as an entropymon run.

Why only scalars: for trainers whose internals we do not reach (SFT, DPO, a custom RL trainer)
the logged curves are all there is, and they are enough for the law R = -a*e^H + b when they
include an entropy and a reward or accuracy. Every numeric value the trainer logs is kept as
``hf/<name>``; the keys whose meaning is unambiguous are also written under entropymon's names
(``entropy`` -> ``entropy_mean``, ``reward`` -> ``reward_mean``, a single ``eval_*acc*`` ->
``eval_accuracy``, ``learning_rate`` -> ``lr``; the full table is in ``integrations.scalars``).
The trainer's end-of-training summary (``train_runtime`` ...) is not a step and is skipped.

Only the main process writes (logged values are already global), one row per logging step, to
a ``RunLog`` opened when training begins and closed when it ends. No torch is needed here.
Failures follow the Monitor's rules (``hooks.failures.FailureLog``): the callback's own errors and
the log writer's (a full, vanished or read-only disk) are counted in ``errors`` and in the
``monitor_errors`` column of the next rows, warned about once per kind, and never raised into the
trainer unless ``strict=True`` (a writer failure is then raised at the next callback).

Usage::

    trainer = Trainer(model=..., args=TrainingArguments(..., logging_steps=10), ...,
                      callbacks=[EntropymonCallback("runs", run="sft-baseline")])
    trainer.train()
"""

from __future__ import annotations

from collections.abc import Mapping

from transformers import TrainerCallback

from entropymon.errors import InputError
from entropymon.hooks.failures import FailureLog
from entropymon.integrations.halting import Halter, check_halt_on
from entropymon.integrations.scalars import canonical_scalars, is_training_summary, numeric_scalars, prefixed

HF_PREFIX = "hf"


class EntropymonCallback(TrainerCallback):
    """Records a Hugging Face Trainer's logged scalars into ``logdir/run`` (steps table).

    Args:
        logdir: folder holding one subfolder per run.
        run: the run's folder name (a fresh name is made when None).
        config: extra settings for ``run.json`` (the trainer's JSON-able arguments are added).
        rename: also write the unambiguous keys under entropymon's names (see the module docstring).
        alerts: evaluate the collapse rules live on the logged scalars (one stderr line per fired
            rule; see ``Monitor``); False turns them off.
        alert_webhook: POST each alert there (default ``$ENTROPYMON_ALERT_WEBHOOK``).
        halt_on: "critical" (or "warning") stops training once such an alert fires, saying why.
        strict: raise the callback's and the log writer's errors instead of counting them (tests,
            debugging); a writer error, met on its own thread, is raised at the next callback.
    """

    def __init__(self, logdir="runs", run: str | None = None, config: Mapping | None = None, *, rename: bool = True,
                 alerts=True, alert_webhook: str | None = None, halt_on: str | None = None, strict: bool = False):
        if config is not None and not isinstance(config, Mapping):
            raise InputError(f"config: expected a dict or None, got {type(config).__name__}")
        if not isinstance(strict, bool):
            raise InputError(f"strict: expected True or False, got {strict!r}")
        self._failures = FailureLog(strict=strict)
        self.halt_on = check_halt_on(halt_on)
        if alerts is False and (alert_webhook or halt_on):
            raise InputError("alerts: expected True to post or halt on alerts, got alerts=False with "
                             f"alert_webhook={alert_webhook!r}, halt_on={halt_on!r}")
        self.alerts = alerts
        self.alert_webhook = alert_webhook
        self.watcher = None  # the live AlertWatcher, between on_train_begin and on_train_end
        self.halter: Halter | None = None
        self.logdir = logdir
        self.run = run
        self.config = dict(config or {})
        self.rename = bool(rename)
        self.log = None  # the RunLog, open between on_train_begin and on_train_end
        self.path = None  # the run folder, once training has begun

    def on_train_begin(self, args, state, control, **kwargs):
        if self.log is not None or not state.is_world_process_zero:
            return
        from entropymon.log.writer import RunLog

        self.log = RunLog(self.logdir, self.run, {**_args_config(args), **self.config}, on_error=self._writer_failed)
        self.path = self.log.path
        if self.alerts is not False:
            from entropymon.alerting.watch import AlertWatcher

            self.watcher = AlertWatcher(None if self.alerts is True else self.alerts, webhook=self.alert_webhook,
                                        run=self.log.run)
            if self.halt_on is not None:
                self.halter = Halter(self.watcher, self.halt_on)

    @property
    def errors(self) -> int:
        """Rows the callback could not record and log-writer failures (the ``monitor_errors`` metric)."""
        return self._failures.errors

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._failures.raise_pending()
        if self.log is None or is_training_summary(logs):
            return
        try:
            scalars = numeric_scalars(logs)
            if not scalars:
                return
            row = prefixed(scalars, HF_PREFIX)
            if self.rename:
                row.update(canonical_scalars(scalars))
            row["monitor_errors"] = float(self._failures.errors)
            self.log.log_step(state.global_step, row)
            if self.watcher is not None:
                self.watcher.add_row(state.global_step, row)
        except Exception as error:  # noqa: BLE001 - monitoring never breaks training (unless strict)
            self._failures.record_error("recording the trainer's logged scalars", error, on_caller_thread=True)

    def on_step_end(self, args, state, control, **kwargs):
        self._failures.raise_pending()
        if self.halter is not None:
            self.halter.on_step_end(control, state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.log is None:
            return
        log, self.log = self.log, None
        try:
            if self.watcher is not None:
                self.watcher.close()
            log.close()
        except Exception as error:  # noqa: BLE001 - monitoring never breaks training (unless strict)
            self._failures.record_error("closing the run log", error, on_caller_thread=True)
        self._failures.raise_pending()

    def _writer_failed(self, error: BaseException) -> None:
        """The log writer's errors (full, vanished or read-only disk), on its thread: counted and warned."""
        self._failures.record_error("log writer", error, on_caller_thread=False)


def _args_config(args) -> dict:
    """The JSON-able part of ``TrainingArguments`` for ``run.json``."""
    try:
        raw = args.to_dict()
    except Exception:  # noqa: BLE001
        raw = {}
    settings = {name: value for name, value in raw.items()
                if isinstance(value, (str, int, float, bool)) or value is None}
    return {"integration": "hf", "args": settings}
