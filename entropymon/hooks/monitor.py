"""``Monitor``: the plain-PyTorch hook a training loop calls once per step or micro-batch.

Why this shape: the trainer's thread must stay fast and must never fail because of monitoring.
So ``observe`` only checks shapes, computes per-token entropy / log-prob while the logits exist
(one chunked pass, no gradient) and snapshots small tensors; a background worker does the rest
(moving to the CPU, the NaN policy, all step metrics, building rows) and feeds the ``RunLog``.
Each rank writes its own files with the ``stat/`` sufficient statistics, so the reader combines
ranks exactly and no collective call is ever made.

Usage::

    with Monitor("runs", run="grpo-baseline", config={"lr": 1e-6}) as mon:
        for step, batch in enumerate(loader):
            logits = model(batch.input_ids).logits[:, prompt_len - 1 : -1]   # (B, T, V)
            mon.observe(step, logits=logits, token_ids=batch.completion_ids, mask=batch.completion_mask,
                        advantages=advantages, rewards=rewards, group_ids=batch.prompt_ids, lr=lr)
            ...
            logger.log(mon.latest_metrics())     # the last finished step's scalars
"""

from __future__ import annotations

import atexit
from collections.abc import Callable, Mapping

from entropymon.errors import InputError
from entropymon.hooks.failures import FailureLog
from entropymon.hooks.observation import check_observation, check_scalars, check_step, reduce_inputs
from entropymon.hooks.probe import check_probe_every, probe_due, reduce_probe
from entropymon.hooks.settings import make_settings, resolve_rank
from entropymon.hooks.stream import StepStream, StreamWorker


class Monitor:
    """Watches entropy, the log-prob/advantage covariance and diversity during RL training.

    Args:
        logdir: folder holding one subfolder per run.
        run: this run's folder name (a fresh name is made when None).
        config: the training configuration to store in ``run.json``.
        rank: the distributed rank (default: torch.distributed's, else ``$RANK``, else 0).
        temperature: the sampling temperature; logits are divided by it before entropy.
        token_rows_every: write token rows every this many steps (0: never).
        token_rows_per_step: how many sequences (the first ones observed) get token rows.
        metrics: "default" (all) or a set of families from ``hooks.settings.METRIC_FAMILIES``.
        pass_k: the k of the pass@k metrics.
        nan_policy: "warn" (skip NaN/inf sequences, warn once, count in ``monitor_bad_rows``),
            "ignore" (skip and count silently) or "raise" (raise ``InputError`` at the next call).
        strict: raise every error instead of counting it (the worker then runs inline; for
            tests and debugging, never for a production run).
        success_threshold: reward at or above which a completion counts as correct for pass@k
            and distinct answers (default: rewards must be 0/1).
        decode: token id -> text, to fill ``token_text`` in the tokens table.
        queue_size: observations the worker may fall behind by before new ones are dropped.
        alerts: evaluate the collapse rules live (True: the live rules of ``analysis.alerts``; or a
            list of rule names; False: off). On rank 0 only. A fired rule prints one line to stderr
            (once per rule, with a cooldown); ``alerts`` and ``worst_alert`` say what fired.
        alert_webhook: also POST each alert there as JSON (Slack-compatible ``text`` + ``alert``);
            default ``$ENTROPYMON_ALERT_WEBHOOK``. Delivery runs on its own thread with timeouts and
            retries: a slow or dead endpoint costs the training loop nothing.
        alert_thresholds: rule parameters, as ``thresholds`` of ``diagnose``.
        dh_probe_every: measure the same-batch entropy change of every this many steps (0 or None:
            off). The loop gives the logits before and after the update with ``observe_dh`` (``attach``
            does it for TRL); ``probe_due(step)`` says when (``hooks/probe.py``).
    """

    def __init__(self, logdir, run: str | None = None, config: Mapping | None = None, *,
                 rank: int | None = None, temperature: float = 1.0, token_rows_every: int = 10,
                 token_rows_per_step: int = 4, metrics="default", pass_k=(1, 4, 8),
                 nan_policy: str = "warn", strict: bool = False, success_threshold: float | None = None,
                 decode: Callable | None = None, queue_size: int = 256, dh_probe_every: int | None = 0,
                 alerts=True, alert_webhook: str | None = None, alert_thresholds: Mapping | None = None):
        from entropymon.log.writer import RunLog

        self.settings = make_settings(temperature=temperature, metrics=metrics, token_rows_every=token_rows_every,
                                      token_rows_per_step=token_rows_per_step, pass_k=pass_k,
                                      success_threshold=success_threshold, decode=decode, nan_policy=nan_policy)
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise InputError(f"queue_size: expected a positive int, got {queue_size!r}")
        self.dh_probe_every = check_probe_every(dh_probe_every)
        self.rank = resolve_rank(rank)
        self._failures = FailureLog(strict=bool(strict), nan_policy=nan_policy)
        self.alert_watcher = _alert_watcher(alerts, alert_webhook, alert_thresholds, rank=self.rank,
                                            inline=bool(strict), run=run)
        self._log = RunLog(logdir, run, dict(config or {}), rank=self.rank, on_error=self._writer_failed)
        self._last_step = -1  # observe() steps only move forward
        if self.alert_watcher is not None:
            self.alert_watcher.run = self._log.run
        self._stream = StepStream(self._log, self.settings, self._failures, on_caller_thread=bool(strict),
                                  on_row=None if self.alert_watcher is None else self.alert_watcher.add_row)
        self._worker = None if strict else StreamWorker(self._stream, self._failures, queue_size=queue_size)
        self._closed = False
        atexit.register(self.close)

    # -- the training loop's calls ---------------------------------------------------------

    def observe(self, step: int, *, logits=None, token_ids=None, logprobs=None, entropies=None, mask=None,
                advantages=None, rewards=None, group_ids=None, old_logprobs=None, ref_logprobs=None,
                kl_beta=None, texts=None, answers=None, prompts=None, lr=None) -> None:
        """Record one micro-batch of ``step``: tensors are (B, T, V) logits, (B, T) per token, (B,) per sequence.

        Give logits (with ``token_ids`` for log-probs) or the trainer's own ``logprobs`` /
        ``entropies``. ``advantages`` and ``ref_logprobs`` may be per sequence (B,) or per token
        (B, T). Calls with the same step accumulate; a higher step finishes the previous one.
        """
        inputs = dict(logits=logits, token_ids=token_ids, logprobs=logprobs, entropies=entropies, mask=mask,
                      advantages=advantages, rewards=rewards, group_ids=group_ids, old_logprobs=old_logprobs,
                      ref_logprobs=ref_logprobs, kl_beta=kl_beta, texts=texts, answers=answers, prompts=prompts,
                      lr=lr)
        self._failures.raise_pending()
        try:
            self._check_open()
            step = check_step(step)
            if step < self._last_step:
                raise InputError(f"step: expected >= {self._last_step} (observe() steps only move forward; step "
                                 f"{self._last_step} was observed already, so step {step} is written), got {step}")
            check_observation(inputs, self.settings.temperature)
            families = self.settings.families
            observation = reduce_inputs(step, inputs, temperature=self.settings.temperature,
                                        want_entropy="entropy" in families,
                                        want_logprobs=bool({"covariance", "importance", "entropy"} & families))
        except Exception as error:  # noqa: BLE001 - monitoring never breaks training (unless strict)
            self._failures.record_error("observe", error, on_caller_thread=True)
            return
        del inputs, logits  # no reference to the logits outlives this call
        self._last_step = step
        self._submit("add_observation", observation)

    def probe_due(self, step: int) -> bool:
        """Whether ``step`` is one the dH probe measures (every ``dh_probe_every`` steps; never when off)."""
        return probe_due(step, self.dh_probe_every)

    def observe_dh(self, step: int, *, logits_before, logits_after, token_ids=None, mask=None,
                   advantages=None) -> None:
        """Record the same-batch entropy change of ``step``'s optimizer update (one micro-batch).

        logits_before / logits_after: (B, T, V) at the same positions before and after the update
        (divided by the Monitor's temperature here); token_ids (B, T) rank tokens by Cov_i;
        advantages (B,) or (B, T) split the change by sign. Calls with the same step accumulate.
        """
        self._failures.raise_pending()
        try:
            self._check_open()
            step = check_step(step)
            observation = reduce_probe(step, logits_before=logits_before, logits_after=logits_after,
                                       token_ids=token_ids, mask=mask, advantages=advantages,
                                       temperature=self.settings.temperature)
        except Exception as error:  # noqa: BLE001 - monitoring never breaks training (unless strict)
            self._failures.record_error("observe_dh", error, on_caller_thread=True)
            return
        del logits_before, logits_after
        self._submit("add_probe", observation)

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Add scalars (e.g. ``{"eval_accuracy": 0.7}``) to ``step``'s row of the steps table."""
        self._failures.raise_pending()
        try:
            self._check_open()
            step = check_step(step)
            clean = check_scalars(scalars)
        except Exception as error:  # noqa: BLE001
            self._failures.record_error("log_scalars", error, on_caller_thread=True)
            return
        self._submit("add_scalars", step, clean)

    def end_step(self) -> None:
        """Finish the current step now, without waiting: for trainers that know a step is complete.

        Otherwise a step finishes when the next one begins. Its metrics reach ``latest_metrics()``
        once the worker has computed them; nothing is written to disk before the log's own flush.
        """
        if not self._closed:
            self._submit("finish_step")

    def latest_metrics(self) -> dict[str, float]:
        """The last finished step's scalar metrics (with its ``step``), for the trainer's own logger."""
        return self._stream.latest_metrics()

    def flush(self, timeout: float | None = None) -> bool:
        """Finish the pending step and write everything so far to disk; True when done in time."""
        if self._closed:
            return True
        done = self._stream_flush(timeout)
        done = self._log.flush(timeout) is not False and done
        self._failures.raise_pending()
        return done

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish the pending step, write everything and release the log (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            if self._worker is not None:
                self._worker.stop(timeout)
            else:
                self._stream.finish_step()
        finally:
            self._log.close()
            if self.alert_watcher is not None:
                self.alert_watcher.close(timeout=2.0)
        self._failures.raise_pending()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- health ----------------------------------------------------------------------------

    @property
    def errors(self) -> int:
        """Observations and steps the monitor could not process (the ``monitor_errors`` metric)."""
        return self._failures.errors

    @property
    def bad_rows(self) -> int:
        """Sequences skipped by the NaN/inf policy (the ``monitor_bad_rows`` metric)."""
        return self._failures.bad_rows

    @property
    def path(self):
        """The run folder."""
        return self._log.path

    @property
    def alerts(self) -> list:
        """The alerts reported live so far (``analysis.alerts.Alert``), oldest first."""
        return [] if self.alert_watcher is None else list(self.alert_watcher.alerts)

    @property
    def worst_alert(self) -> str | None:
        """The most severe live alert so far ("info" / "warning" / "critical"), or None."""
        return None if self.alert_watcher is None else self.alert_watcher.worst

    # -- internals -------------------------------------------------------------------------

    def _writer_failed(self, error: BaseException) -> None:
        """The log writer's errors (full or vanished disk, values it could not store), on its thread."""
        self._failures.record_error("log writer", error, on_caller_thread=False)

    def _submit(self, method: str, *args) -> None:
        if self._worker is None:
            getattr(self._stream, method)(*args)
        else:
            self._worker.submit(method, *args)

    def _stream_flush(self, timeout: float | None) -> bool:
        if self._worker is None:
            self._stream.finish_step()
            return True
        return self._worker.flush(timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("observe(): expected an open Monitor, got one that was closed (make a new Monitor)")


def _alert_watcher(alerts, webhook, thresholds, *, rank: int, inline: bool, run):
    """The live ``AlertWatcher`` (rank 0 only), or None when alerts are off."""
    if alerts is False or alerts is None:
        if webhook:
            raise InputError(f"alert_webhook: expected alerts on (alerts=True) to post them, got alerts={alerts!r}")
        return None
    if rank != 0:
        return None  # one voice: rank 0 speaks for the run
    # the analysis is torch-free; it is imported here, lazily, so a Monitor with alerts off never loads it
    from entropymon.alerting.watch import AlertWatcher

    rules = None if alerts is True else alerts
    return AlertWatcher(rules, thresholds, webhook=webhook, inline=inline, run=run)
