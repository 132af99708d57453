"""``attach(trainer)``: entropymon on the TRL ``GRPOTrainer`` a user already runs, in one line.

Why both a capture and a callback: the capture (``trl_capture.py``) reads the per-token
log-probs, entropies, mask, advantages and rewards TRL computes at each optimisation step, which
is what every entropymon metric needs; the callback records TRL's own logged scalars under
``trl/`` (so ``entropy_mean`` can be checked against ``trl/entropy``) and copies entropymon's
latest step metrics into the trainer's logs under ``entropymon/``, so they reach the W&B /
TensorBoard / trackio the user already reports to. If TRL's private methods are not the known
ones, the capture switches off with one warning and the callback alone keeps the scalar curves
(TRL's ``entropy``, ``reward``, ... also renamed to ``entropy_mean``, ``reward_mean``, ... so the
law fit still runs).

Usage::

    trainer = GRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(...), train_dataset=...)
    monitor = attach(trainer, logdir="runs", run="grpo-baseline")
    trainer.train()          # the monitor closes itself when training ends
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from transformers import TrainerCallback

from entropymon.errors import InputError, IntegrationError
from entropymon.integrations.halting import Halter, check_halt_on
from entropymon.integrations.scalars import canonical_scalars, is_training_summary, numeric_scalars, prefixed
from entropymon.integrations.trl_capture import TrlCapture
from entropymon.integrations.trl_probe import TrlDhProbe

TRL_PREFIX = "trl"
OUR_PREFIX = "entropymon"
# latest_metrics() keys that are not worth copying into the trainer's logs (wall-clock time, and the
# scalars that came from the trainer's logs in the first place)
NOT_FORWARDED = ("time",)
NOT_FORWARDED_PREFIXES = (f"{TRL_PREFIX}/", "hf/", "stat/")


def attach(trainer, logdir="runs", run: str | None = None, *, answer_fn: Callable[[str], str] | None = None,
           forward_metrics: bool = True, halt_on: str | None = None, **monitor_kwargs):
    """Start a ``Monitor`` on a TRL ``GRPOTrainer`` and return it; the trainer is changed only by instance wrappers.

    Args:
        trainer: a ``trl.GRPOTrainer`` (built, not yet trained).
        logdir, run: where the run folder goes (see ``Monitor``).
        answer_fn: completion text -> final answer, for ``distinct_answer_frac`` (default: none).
        forward_metrics: copy entropymon's latest step metrics into the trainer's logs (``entropymon/``).
        halt_on: "critical" (or "warning") stops training (``control.should_training_stop``) once a
            live alert of that severity fires, printing why; None (default) never stops it.
        **monitor_kwargs: passed to ``Monitor`` (``token_rows_every``, ``metrics``, ``config``,
            ``dh_probe_every``, ``alerts``, ``alert_webhook`` ...). ``temperature`` defaults to the
            trainer's, the one TRL's entropies are computed at. With ``dh_probe_every=N`` every N-th
            step's batch is forwarded again before and after the optimizer step for the same-batch
            entropy change (``trl_probe.py``).
    """
    from transformers import Trainer

    from entropymon.hooks.monitor import Monitor

    if not isinstance(trainer, Trainer):
        raise InputError(f"trainer: expected a trl.GRPOTrainer, got {type(trainer).__name__}")
    if getattr(trainer, "_entropymon_monitor", None) is not None:
        raise IntegrationError("trainer: expected a trainer without entropymon attached, got one that already "
                               "has a monitor (attach once per trainer)")
    halt_on = check_halt_on(halt_on)
    if halt_on is not None and monitor_kwargs.get("alerts", True) is False:
        raise InputError(f"halt_on: expected live alerts on to halt on them, got alerts=False with halt_on={halt_on!r}")
    if answer_fn is not None and not callable(answer_fn):
        raise InputError(f"answer_fn: expected a callable (text -> answer) or None, got {type(answer_fn).__name__}")
    trainer_temperature = float(getattr(trainer, "temperature", getattr(trainer.args, "temperature", 1.0)))
    temperature = monitor_kwargs.pop("temperature", trainer_temperature)
    if temperature != trainer_temperature:
        raise InputError(f"temperature: expected the trainer's sampling temperature {trainer_temperature} (TRL's "
                         f"entropies are computed at it), got {temperature!r}; leave it out")
    monitor_kwargs.setdefault("decode", _token_decoder(trainer))
    config = {**trainer_config(trainer), **dict(monitor_kwargs.pop("config", None) or {})}
    monitor = Monitor(logdir, run, config, temperature=temperature, **monitor_kwargs)

    halter = None
    if halt_on is not None and monitor.alert_watcher is not None:
        halter = Halter(monitor.alert_watcher, halt_on)
    callback = TrlCallback(monitor, halter)
    capture = TrlCapture(trainer, monitor, answer_fn=answer_fn, on_disable=callback.fall_back)
    callback.capture = capture
    capture.install()
    trainer.add_callback(callback)
    if monitor.dh_probe_every:
        capture.probe = TrlDhProbe(trainer, monitor)
        capture.probe.install()
        trainer.add_callback(capture.probe)
    if forward_metrics:
        _forward_metrics_into_logs(trainer, monitor)
    trainer._entropymon_monitor = monitor
    return monitor


class TrlCallback(TrainerCallback):
    """Records TRL's logged scalars under ``trl/``, per-function reward means, and closes the monitor at the end.

    In fallback mode (the per-token capture is off) it also writes the renamed columns of
    ``integrations.scalars`` (``entropy_mean`` from TRL's ``entropy`` ...).
    """

    def __init__(self, monitor, halter: Halter | None = None):
        self.monitor = monitor
        self.halter = halter
        self.capture: TrlCapture | None = None
        self.fallback_reason: str | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.halter is not None:
            self.halter.on_step_end(control, state.global_step)

    def fall_back(self, reason: str) -> None:
        self.fallback_reason = reason
        warnings.warn(f"entropymon: per-token capture from TRL is off ({reason}); recording only the scalars "
                      "TRL logs (trl/..., entropy_mean from TRL's entropy). Training is not affected.",
                      RuntimeWarning, stacklevel=2)

    def on_log(self, args, state, control, logs=None, **kwargs):
        try:
            if is_training_summary(logs):
                return
            scalars = numeric_scalars(logs, skip_prefixes=(f"{OUR_PREFIX}/",))
            if not scalars:
                return
            row = prefixed(scalars, TRL_PREFIX)
            if self.fallback_reason is not None:
                row.update(canonical_scalars(scalars))
            elif "eval_accuracy" in scalars:
                row["eval_accuracy"] = scalars["eval_accuracy"]
            if self.capture is not None:
                row.update(self.capture.pop_reward_means(state.global_step))
            self.monitor.log_scalars(state.global_step, row)
        except Exception as error:  # noqa: BLE001 - monitoring never breaks training
            warnings.warn(f"entropymon: could not record TRL's logged scalars ({error})", RuntimeWarning, stacklevel=2)

    def on_train_end(self, args, state, control, **kwargs):
        try:
            if self.capture is not None:
                self.capture.uninstall()
            self.monitor.close()
        except Exception as error:  # noqa: BLE001
            warnings.warn(f"entropymon: closing the monitor failed ({error})", RuntimeWarning, stacklevel=2)


def _forward_metrics_into_logs(trainer, monitor) -> None:
    """Wrap ``trainer.log`` (on the instance) to add ``entropymon/<metric>`` before TRL's loggers see the logs.

    The values are those of the last step the monitor finished (``entropymon/step`` says which;
    usually the step before, since a step finishes when the next one begins).
    """
    original = trainer.log

    def log(logs, *args, **kwargs):
        if isinstance(logs, dict) and not is_training_summary(logs):
            try:
                latest = monitor.latest_metrics()
                logs.update({f"{OUR_PREFIX}/{name}": value for name, value in latest.items()
                             if name not in NOT_FORWARDED and not name.startswith(NOT_FORWARDED_PREFIXES)})
            except Exception:  # noqa: BLE001 - a missing forward is not worth a failed log call
                pass
        return original(logs, *args, **kwargs)

    log.__entropymon_wrapper__ = True
    log.__wrapped__ = original
    trainer.log = log


def trainer_config(trainer) -> dict:
    """The JSON-able part of the trainer's arguments, with the versions, for ``run.json``."""
    import transformers

    try:
        import trl

        trl_version = trl.__version__
    except ImportError:  # pragma: no cover - attach is only reached with trl installed
        trl_version = None
    settings = {}
    try:
        raw = trainer.args.to_dict()
    except Exception:  # noqa: BLE001
        raw = {}
    for name, value in raw.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            settings[name] = value
    return {"integration": "trl", "trainer": type(trainer).__name__, "trl_version": trl_version,
            "transformers_version": transformers.__version__, "args": settings}


def _token_decoder(trainer):
    tokenizer = getattr(trainer, "processing_class", None)
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    if tokenizer is None or not hasattr(tokenizer, "decode"):
        return None

    def decode(token_id: int) -> str:
        return tokenizer.decode([int(token_id)])

    return decode
