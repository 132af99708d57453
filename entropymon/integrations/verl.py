"""entropymon inside a veRL run: ``trainer.v1.trainer_mode=entropymon_sync`` and nothing else to change.

Why a trainer subclass: in veRL 0.9.1's v1 trainer the step's per-token tensors live in
TransferQueue and exist there until ``fit()`` clears them right after
``PPOTrainer._compute_metrics(batch, metrics, ...)``. That method is where veRL itself turns them
into its scalars (``actor/entropy`` was computed from the same ``entropy`` field earlier in the
step), so reading them there costs one TransferQueue read and no recomputation. The subclass is
registered for each built-in mode (``entropymon_sync``, ``entropymon_colocate_async``,
``entropymon_separate_async``) and hands veRL the built-in mode's name back in its config, so
veRL's own ``trainer_mode == "sync"`` checks see what they would without entropymon.

At each step it

- reads ``uid, entropy, old_log_probs, advantages, response_mask, rm_scores, responses`` of the
  step's (non-padding) samples and calls ``Monitor.observe`` (``rm_scores`` summed over the
  response is the sequence reward, as in veRL's ``critic/score``; ``uid`` is the group);
- records veRL's own scalars under ``verl/`` in the steps table, and
- puts entropymon's latest finished step metrics into veRL's ``metrics`` dict as
  ``entropymon/<name>``, so they reach whatever ``trainer.logger`` backends the run has.

``entropy_mean`` is the token mean over the response mask; it equals ``actor/entropy`` when
``loss_agg_mode`` is ``token-mean`` (veRL's default). Other modes aggregate differently; the
mode is recorded in run.json (``verl.loss_agg_mode``, with ``verl.entropy_agg_matches``).

Options go in an ``entropymon`` config group (``+entropymon.logdir=/abs/runs`` ...); see
``OPTIONS``. A changed private name or field in veRL switches the per-token capture off with
one warning; the scalar path (``verl/`` and ``entropy_mean`` from ``actor/entropy``) keeps
working and training is never affected.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import warnings
from collections.abc import Mapping

from entropymon.errors import InputError
from entropymon.importers.verl_jsonl import VERL_NAMES
from entropymon.integrations.scalars import numeric_scalars, prefixed

MODE_PREFIX = "entropymon_"
BASE_MODES = {"sync": "PPOTrainerSync", "colocate_async": "PPOTrainerColocateAsync",
              "separate_async": "PPOTrainerSeparateAsync"}
VERL_PREFIX = "verl"
OUR_PREFIX = "entropymon"
# the step's fields in TransferQueue when _compute_metrics runs (veRL 0.9.1 names)
STEP_FIELDS = ("uid", "entropy", "old_log_probs", "advantages", "response_mask", "rm_scores", "responses")
METRICS_METHOD = "_compute_metrics"
# the ``entropymon`` config group: option -> default
OPTIONS = {
    "logdir": "entropymon_runs",  # made absolute in the trainer process (give an absolute path under Ray)
    "run": None,                  # default: trainer.experiment_name
    "token_rows_every": 10,
    "token_rows_per_step": 4,
    "decode_texts": True,         # decode responses for the diversity metrics and samples table
    "forward_metrics": True,      # entropymon/<metric> into veRL's metrics dict
    "success_threshold": None,    # reward >= this is a correct answer for pass@k (default: reward > 0)
}
NOT_FORWARDED = ("time",)
NOT_FORWARDED_PREFIXES = (f"{VERL_PREFIX}/", "stat/")
# veRL's scalar -> entropymon's column, for the scalar-only path (the importer's map)
CANONICAL = {names[0]: column for column, names in VERL_NAMES.exact.items()}


def register_trainers() -> list[str]:
    """Register ``entropymon_<mode>`` for each of veRL's built-in v1 trainers; the names registered."""
    v1 = importlib.import_module("verl.trainer.ppo.v1")  # also while that package finishes loading

    registered = []
    for mode, class_name in BASE_MODES.items():
        base = getattr(v1, class_name, None)
        name = MODE_PREFIX + mode
        if base is None or _is_registered(v1, name):
            continue
        cls = type(f"Entropymon{class_name}", (EntropymonTrainerMixin, base),
                   {"__doc__": f"veRL's {class_name} with entropymon watching each step.", "base_mode": mode,
                    "__module__": __name__})
        globals()[cls.__name__] = cls  # importable by name, so the class pickles like veRL's own
        v1.register_trainer(name)(cls)
        registered.append(name)
    return registered


def signature_problem(trainer_cls) -> str | None:
    """Why the capture cannot work on ``trainer_cls`` (None when ``_compute_metrics`` is as known)."""
    method = getattr(trainer_cls, METRICS_METHOD, None)
    if not callable(method):
        return f"veRL's trainer has no method {METRICS_METHOD}()"
    try:
        parameters = list(inspect.signature(method).parameters)
    except (TypeError, ValueError):
        return f"the signature of {METRICS_METHOD}() cannot be read"
    if parameters[:3] != ["self", "batch", "metrics"] or "global_steps" not in parameters:
        return (f"{METRICS_METHOD}() has parameters {parameters}, expected (self, batch, metrics, ..., "
                "global_steps, ...)")
    return None


def _verl_class(trainer) -> type:
    """The first class of ``trainer``'s MRO that is veRL's, not entropymon's (whose methods are checked)."""
    return next(cls for cls in type(trainer).__mro__ if not issubclass(cls, EntropymonTrainerMixin))


def _is_registered(v1, name: str) -> bool:
    try:
        v1.get_trainer_cls(name)
    except ValueError:
        return False
    return True


class EntropymonTrainerMixin:
    """Put before a veRL ``PPOTrainer`` subclass: a Monitor fed at every ``_compute_metrics``."""

    base_mode = "sync"

    def __init__(self, config, *args, **kwargs):
        options = self._entropymon_prepare(config)
        super().__init__(config, *args, **kwargs)
        self.entropymon = VerlCapture.start(config, options, trainer=self)

    def _entropymon_prepare(self, config) -> dict:
        """Check the ``entropymon`` options and give veRL back the built-in mode's name (before veRL reads it)."""
        from omegaconf import open_dict

        options = read_options(config)
        with open_dict(config):
            config.trainer.v1.trainer_mode = self.base_mode
        return options

    def _compute_metrics(self, batch, metrics, *args, **kwargs):
        # (batch, metrics, timing_raw, global_steps, epoch) in 0.9.1; passed on whatever they are
        step = kwargs.get("global_steps", getattr(self, "global_steps", None))
        self.entropymon.observe_step(batch, step)
        result = super()._compute_metrics(batch, metrics, *args, **kwargs)
        self.entropymon.record_scalars(metrics, step)
        return result

    def fit(self, *args, **kwargs):
        try:
            return super().fit(*args, **kwargs)
        finally:
            self.entropymon.close()


def read_options(config) -> dict:
    """The ``entropymon`` config group merged over ``OPTIONS``; InputError for an unknown option."""
    group = config.get("entropymon", None) if hasattr(config, "get") else None
    given = dict(group or {})
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise InputError(f"entropymon config group: expected options among {sorted(OPTIONS)}, got {unknown}")
    return {**OPTIONS, **given}


def run_metadata(config, base_mode: str) -> dict:
    """What run.json says about the veRL run: versions, loss, aggregation, entropy interventions.

    ``verl.policy_loss`` is the actor's ``policy_loss.loss_mode``; for ``clip_cov`` / ``kl_cov``
    (the Entropy Mechanism's Clip-Cov / KL-Cov) ``verl.entropy_intervention`` names it and
    ``verl.clip_cov`` / ``verl.kl_cov`` hold its ratios, so analysis can tell it was already on.
    """
    import verl

    actor = config.actor_rollout_ref.actor
    policy_loss = actor.get("policy_loss", {}) or {}
    loss_mode = str(policy_loss.get("loss_mode", "vanilla"))
    agg_mode = str(actor.get("loss_agg_mode", "token-mean"))
    meta = {
        "integration": "verl",
        "verl_version": getattr(verl, "__version__", None),
        "verl.trainer_mode": base_mode,
        "verl.policy_loss": loss_mode,
        "verl.loss_agg_mode": agg_mode,
        "verl.entropy_agg_matches": agg_mode == "token-mean",
        "verl.entropy_coeff": _number(actor.get("entropy_coeff")),
        "verl.clip_ratio_low": _number(actor.get("clip_ratio_low")),
        "verl.clip_ratio_high": _number(actor.get("clip_ratio_high")),
        "verl.adv_estimator": str(config.algorithm.get("adv_estimator")),
        "verl.rollout_n": _number(config.actor_rollout_ref.rollout.get("n")),
        "verl.temperature": _number(config.actor_rollout_ref.rollout.get("temperature")),
        "verl.entropy_intervention": loss_mode if loss_mode in ("clip_cov", "kl_cov") else None,
    }
    if loss_mode == "clip_cov":
        meta["verl.clip_cov"] = {key: _number(policy_loss.get(key)) for key in ("clip_cov_ratio", "clip_cov_lb",
                                                                                 "clip_cov_ub")}
    elif loss_mode == "kl_cov":
        meta["verl.kl_cov"] = {key: _number(policy_loss.get(key)) for key in ("kl_cov_ratio", "ppo_kl_coef")}
    return meta


class VerlCapture:
    """Feeds one Monitor from a veRL trainer's TransferQueue; every failure is caught here.

    ``monitor`` is None when the Monitor could not start (then every call does nothing);
    ``disabled_reason`` is set when the per-token capture is off (then only scalars are kept).
    """

    def __init__(self, monitor, *, trainer=None, decode_texts: bool = True, forward_metrics: bool = True):
        self.monitor = monitor
        self.trainer = trainer
        self.decode_texts = decode_texts
        self.forward_metrics = forward_metrics
        self.disabled_reason: str | None = None
        self._scalar_error_warned = False

    @classmethod
    def start(cls, config, options: Mapping, *, trainer=None) -> VerlCapture:
        """A capture whose Monitor writes under ``options["logdir"]``; an inert one when that fails."""
        try:
            from entropymon.hooks.monitor import Monitor

            base_mode = getattr(trainer, "base_mode", config.trainer.v1.get("trainer_mode", "sync"))
            run = options["run"] or str(config.trainer.get("experiment_name") or "verl")
            monitor = Monitor(os.path.abspath(str(options["logdir"])), run, run_metadata(config, base_mode),
                              temperature=float(config.actor_rollout_ref.rollout.get("temperature", 1.0)),
                              token_rows_every=int(options["token_rows_every"]),
                              token_rows_per_step=int(options["token_rows_per_step"]),
                              success_threshold=options["success_threshold"])
        except Exception as error:  # noqa: BLE001 - monitoring never breaks training (an unwritable logdir ...)
            warnings.warn(f"entropymon: could not start its monitor in veRL ({type(error).__name__}: {error}); "
                          "the run continues without entropymon", RuntimeWarning, stacklevel=2)
            return cls(None)
        capture = cls(monitor, trainer=trainer, decode_texts=bool(options["decode_texts"]),
                      forward_metrics=bool(options["forward_metrics"]))
        problem = signature_problem(_verl_class(trainer)) if trainer is not None else None
        if problem is not None:
            capture.disable(problem)
        return capture

    # -- per-token path ------------------------------------------------------------------------

    def observe_step(self, batch, step: int) -> None:
        """Read the step's fields from TransferQueue and observe them (the capture goes off on any problem)."""
        if self.monitor is None or self.disabled_reason is not None:
            return
        try:
            self._observe(batch, step)
        except Exception as error:  # noqa: BLE001
            self.disable(f"{type(error).__name__}: {error}")

    def disable(self, reason: str) -> None:
        """Stop the per-token capture for the rest of the run, with one warning."""
        if self.disabled_reason is not None:
            return
        self.disabled_reason = reason
        warnings.warn(f"entropymon: per-token capture from veRL is off ({reason}); recording only veRL's "
                      "scalars (verl/..., entropy_mean from actor/entropy). Training is not affected.",
                      RuntimeWarning, stacklevel=3)

    def _observe(self, batch, step: int) -> None:
        import torch
        import transfer_queue as tq

        keys, tags = list(batch.keys), list(batch.tags)
        if not keys:
            return
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=list(STEP_FIELDS))
        missing = [name for name in STEP_FIELDS if name not in data.keys()]  # noqa: SIM118 - TensorDict has no `in`
        if missing:
            raise LookupError(f"TransferQueue has no field(s) {missing} at {METRICS_METHOD}()")
        uids = list(data.pop("uid").tolist())
        lengths = data["responses"].offsets().diff().tolist()  # (B,) response lengths
        padded = data.to_padded_tensor()
        real = torch.tensor([not tag.get("is_padding", False) for tag in tags], dtype=torch.bool)  # (B,)
        mask = padded["response_mask"][real]  # (B, T)
        responses = padded["responses"][real]  # (B, T)
        rewards = padded["rm_scores"][real].float().sum(dim=-1)  # (B,) veRL's sequence score
        rows = real.nonzero().flatten().tolist()
        texts = None
        tokenizer = getattr(self.trainer, "tokenizer", None)  # set by veRL's _init_tokenizer
        if self.decode_texts and tokenizer is not None:
            texts = [tokenizer.decode(responses[i, :lengths[row]].tolist(), skip_special_tokens=True)
                     for i, row in enumerate(rows)]
        self.monitor.observe(step, logprobs=padded["old_log_probs"][real], entropies=padded["entropy"][real],
                             token_ids=responses, mask=mask, advantages=padded["advantages"][real],
                             rewards=rewards, group_ids=[str(uids[row]) for row in rows], texts=texts)

    # -- scalar path ---------------------------------------------------------------------------

    def record_scalars(self, metrics: dict, step: int) -> None:
        """veRL's scalars to ``verl/`` (renamed ones too when the capture is off); ours into ``metrics``."""
        if self.monitor is None:
            return
        try:
            scalars = numeric_scalars(metrics, skip_prefixes=(f"{OUR_PREFIX}/",))
            row = prefixed(scalars, VERL_PREFIX)
            if self.disabled_reason is not None:
                row.update({CANONICAL[name]: value for name, value in scalars.items()
                            if name in CANONICAL and not math.isnan(value)})
            self.monitor.log_scalars(step, row)
            self.monitor.end_step()  # veRL's step is complete: its metrics are forwarded at the next one
            if self.forward_metrics:
                latest = self.monitor.latest_metrics()
                metrics.update({f"{OUR_PREFIX}/{name}": value for name, value in latest.items()
                                if name not in NOT_FORWARDED and not name.startswith(NOT_FORWARDED_PREFIXES)})
        except Exception as error:  # noqa: BLE001 - a lost scalar row is not worth a failed step
            if not self._scalar_error_warned:
                self._scalar_error_warned = True
                warnings.warn(f"entropymon: could not record veRL's scalars ({error}); later failures are silent",
                              RuntimeWarning, stacklevel=2)

    def close(self) -> None:
        if self.monitor is None:
            return
        try:
            self.monitor.close()
        except Exception as error:  # noqa: BLE001
            warnings.warn(f"entropymon: closing the monitor failed ({error})", RuntimeWarning, stacklevel=2)


def _number(value):
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
