"""Capturing what TRL's GRPOTrainer already computes, at each optimisation step, without changing it.

Why wrap private methods: the per-token log-probs and entropies exist only inside
``GRPOTrainer._compute_loss`` (they come from ``_get_per_token_logps_and_entropies``, computed by
a fused LM head that never materialises the logits). Recomputing them would cost a second forward
pass; reading them where TRL makes them costs nothing. Wrappers are set on the *instance* (never
the class) and only look at values: every return value is passed back unchanged, captured tensors
are detached (the Monitor snapshots them), and no random number is drawn.

What is wrapped (TRL 1.16 names):

- ``_calculate_rewards(inputs, prompts, completions, completion_ids_list)`` -> the rewards per
  reward function (all processes, generation order), the prompts and the completion texts.
- ``_generate_and_score_completions(inputs)`` -> its output dict gets one extra key,
  ``INDEX_KEY``: each row's position in the generation batch. TRL shuffles and splits that dict
  in unison (one ``randperm``, whatever the keys), so after the shuffle each row still knows its
  rewards, text and group (``position // num_generations``).
- ``_get_per_token_logps_and_entropies(...)`` -> ``(logps, entropies[, aux_loss])``, both
  (B, T), read when called from the loss with ``compute_entropy=True``.
- ``compute_loss(model, inputs, ...)`` (public) -> the loss inputs: completion ids and mask,
  advantages, old and reference log-probs; then ``Monitor.observe`` for the micro-batch. The step
  is ``state.global_step + 1``: the number TRL logs these values under.

Private signatures change between TRL versions (the return arity went from 2 to 3). The
signature is checked with ``inspect`` when attaching, and the returned value's type and length on
the first call; anything unknown - or any exception in the capture itself - switches the capture
off for the rest of the run with one warning, leaving the scalar path (``TrainerCallback.on_log``)
working. Training never sees an exception from here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

INDEX_KEY = "entropymon_sample_index"
LOGPS_METHOD = "_get_per_token_logps_and_entropies"
REWARDS_METHOD = "_calculate_rewards"
GENERATE_METHOD = "_generate_and_score_completions"
LOSS_METHOD = "compute_loss"
KNOWN_ARITIES = (2, 3)  # (logps, entropies) before TRL 0.2x; (logps, entropies, aux_loss) since
REQUIRED_LOGPS_PARAMETERS = ("model", "input_ids", "attention_mask", "logits_to_keep", "compute_entropy")
REQUIRED_REWARDS_PARAMETERS = ("inputs", "prompts", "completions")


class CaptureUnsupported(Exception):
    """The trainer's private methods are not the ones this capture knows (internal signal)."""


def signature_problem(trainer) -> str | None:
    """Why the per-token capture cannot work on ``trainer`` (None when the signatures are as known)."""
    for name in (LOGPS_METHOD, REWARDS_METHOD, GENERATE_METHOD, LOSS_METHOD):
        if not callable(getattr(trainer, name, None)):
            return f"the trainer has no method {name}()"
    checks = ((LOGPS_METHOD, REQUIRED_LOGPS_PARAMETERS), (REWARDS_METHOD, REQUIRED_REWARDS_PARAMETERS))
    for name, required in checks:
        try:
            parameters = inspect.signature(getattr(trainer, name)).parameters
        except (TypeError, ValueError):
            return f"the signature of {name}() cannot be read"
        missing = [p for p in required if p not in parameters]
        if missing:
            return f"{name}() has no parameter(s) {missing} (found {list(parameters)})"
    return None


def completion_text(completion) -> str:
    """A completion as text: a string as-is, a conversation (list of messages) as its last content."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # multimodal content parts
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    return str(completion)


class TrlCapture:
    """Instance-level wrappers around a GRPOTrainer that feed ``Monitor.observe`` each micro-batch.

    ``on_disable(reason)`` is called once if the capture switches itself off.
    """

    def __init__(self, trainer, monitor, *, answer_fn: Callable[[str], str] | None = None,
                 on_disable: Callable[[str], None] | None = None):
        self.trainer = trainer
        self.monitor = monitor
        self.answer_fn = answer_fn
        self.on_disable = on_disable
        self.active = False
        self.disabled_reason: str | None = None
        self._originals: dict[str, Callable] = {}
        self._in_loss = False
        self._captured: tuple[torch.Tensor, torch.Tensor] | None = None
        self._generation: dict | None = None  # the latest generation batch: rewards, texts, prompts
        self._pending_rewards: dict | None = None
        self._checked_return = False
        self._reward_sums: dict[int, list] = {}  # step -> [reward sums (F,), non-NaN counts (F,)]
        self.probe = None  # a TrlDhProbe (trl_probe.py) that keeps probed steps' loss inputs, or None

    # -- installing ----------------------------------------------------------------------------

    def install(self) -> bool:
        """Wrap the methods; False (and the capture off) when the signatures are not the known ones."""
        problem = signature_problem(self.trainer)
        if problem is not None:
            self.disable(problem)
            return False
        wrappers = {REWARDS_METHOD: self._wrap_rewards, GENERATE_METHOD: self._wrap_generate,
                    LOGPS_METHOD: self._wrap_logps, LOSS_METHOD: self._wrap_loss}
        for name, make_wrapper in wrappers.items():
            original = getattr(self.trainer, name)
            self._originals[name] = original
            setattr(self.trainer, name, make_wrapper(original))
        self.active = True
        return True

    def uninstall(self) -> None:
        """Put the trainer's own methods back (only where our wrapper is still the one installed)."""
        for name, original in self._originals.items():
            current = self.trainer.__dict__.get(name)
            if getattr(current, "__entropymon_wrapper__", False):
                if getattr(type(self.trainer), name, None) is getattr(original, "__func__", None):
                    del self.trainer.__dict__[name]
                else:
                    setattr(self.trainer, name, original)
        self._originals.clear()
        self.active = False
        if self.probe is not None:
            self.probe.uninstall()

    def disable(self, reason: str) -> None:
        """Stop capturing (wrappers become pass-through) and report why, once."""
        if self.disabled_reason is not None:
            return
        self.disabled_reason = reason
        self.active = False
        self._captured = None
        if self.on_disable is not None:
            self.on_disable(reason)

    # -- per-step rewards by function (logged by the callback) ------------------------------------

    def pop_reward_means(self, step: int) -> dict[str, float]:
        """``{"reward_func/<name>": mean}`` over the completions observed for ``step`` (NaN rewards skipped)."""
        sums = self._reward_sums.pop(step, None)
        for old in [s for s in self._reward_sums if s < step]:
            del self._reward_sums[old]
        if sums is None:
            return {}
        names = list(getattr(self.trainer, "reward_func_names", []))
        totals, counts = sums
        return {f"reward_func/{name}": total / count
                for name, total, count in zip(names, totals.tolist(), counts.tolist()) if count > 0}

    # -- wrappers -------------------------------------------------------------------------------

    def _wrap_rewards(self, original):
        def wrapper(inputs, prompts, completions, *args, **kwargs):
            rewards_per_func = original(inputs, prompts, completions, *args, **kwargs)
            if self.active:
                self._guard(self._remember_rewards, prompts, completions, rewards_per_func)
            return rewards_per_func

        return _mark(wrapper, original)

    def _wrap_generate(self, original):
        def wrapper(*args, **kwargs):
            output = original(*args, **kwargs)
            if self.active and self.trainer.model.training:
                self._guard(self._index_generation, output)
            return output

        return _mark(wrapper, original)

    def _wrap_logps(self, original):
        def wrapper(*args, **kwargs):
            result = original(*args, **kwargs)
            if self.active and self._in_loss and kwargs.get("compute_entropy", False):
                self._guard(self._remember_logps, result)
            return result

        return _mark(wrapper, original)

    def _wrap_loss(self, original):
        def wrapper(model, inputs, *args, **kwargs):
            capturing = self.active and model.training and isinstance(inputs, dict) and INDEX_KEY in inputs
            self._in_loss, self._captured = capturing, None
            probe = self.probe if capturing else None
            if probe is not None:
                probe.begin_loss(self.trainer.state.global_step + 1)
            try:
                loss = original(model, inputs, *args, **kwargs)
            finally:
                self._in_loss = False
                if probe is not None:
                    probe.end_loss()
            if capturing and self.active and self._captured is not None:
                self._guard(self._observe, inputs)
            self._captured = None
            return loss

        return _mark(wrapper, original)

    # -- what the wrappers do (inside _guard: never raises into TRL) -------------------------------

    def _guard(self, action, *args) -> None:
        try:
            action(*args)
        except CaptureUnsupported as unsupported:
            self.disable(str(unsupported))
        except Exception as error:  # noqa: BLE001 - monitoring never breaks training
            self.disable(f"the capture failed ({type(error).__name__}: {error})")

    def _remember_rewards(self, prompts, completions, rewards_per_func) -> None:
        if not torch.is_tensor(rewards_per_func) or rewards_per_func.ndim != 2:
            raise CaptureUnsupported(f"{REWARDS_METHOD}() returned {type(rewards_per_func).__name__}, "
                                     "expected a (N, n_reward_funcs) tensor")
        self._pending_rewards = {
            "rewards_per_func": rewards_per_func.detach(),  # (N_all_processes, F)
            "texts": [completion_text(c) for c in completions],  # local process, generation order
            "prompts": [completion_text(p) for p in prompts],
        }

    def _index_generation(self, output) -> None:
        if not isinstance(output, dict) or not torch.is_tensor(output.get("advantages")):
            raise CaptureUnsupported(f"{GENERATE_METHOD}() returned {type(output).__name__} without 'advantages'")
        n_local = output["advantages"].shape[0]
        offset = self.trainer.accelerator.process_index * n_local
        pending, self._pending_rewards = self._pending_rewards, None
        self._generation = {"offset": offset, "num_generations": int(self.trainer.num_generations), **(pending or {})}
        output[INDEX_KEY] = torch.arange(n_local, device=output["advantages"].device)  # (N_local,)

    def _remember_logps(self, result) -> None:
        if not self._checked_return:
            self._checked_return = True
            arity = len(result) if isinstance(result, (tuple, list)) else None
            if arity not in KNOWN_ARITIES:
                raise CaptureUnsupported(
                    f"{LOGPS_METHOD}() returned {type(result).__name__}"
                    f"{'' if arity is None else f' of length {arity}'}; expected a tuple of length 2 or 3 "
                    "(logps, entropies[, aux_loss])")
            if not (torch.is_tensor(result[0]) and result[0].ndim == 2 and torch.is_tensor(result[1])
                    and result[1].shape == result[0].shape):
                raise CaptureUnsupported(f"{LOGPS_METHOD}() returned values that are not two (B, T) tensors")
        logps, entropies = result[0], result[1]
        if torch.is_tensor(logps) and torch.is_tensor(entropies):
            self._captured = (logps.detach(), entropies.detach())  # (B, T) each

    def _observe(self, inputs: dict) -> None:
        trainer = self.trainer
        logps, entropies = self._captured
        mask = inputs["completion_mask"]  # (B, T)
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        local_index = inputs[INDEX_KEY]  # (B,) row positions in this process's generation batch
        generation = self._generation or {}
        rows = local_index.tolist()
        global_rows = [generation.get("offset", 0) + row for row in rows]
        num_generations = generation.get("num_generations", int(trainer.num_generations))
        step = trainer.state.global_step + 1
        rewards = None
        per_func = generation.get("rewards_per_func")
        if per_func is not None:
            weights = trainer.reward_weights.to(per_func.device, per_func.dtype)  # (F,)
            chosen = per_func[global_rows]  # (B, F)
            rewards = (chosen * weights).nansum(dim=1)  # (B,): TRL's weighted sum
            rewards[torch.isnan(chosen).all(dim=1)] = float("nan")
            self._add_reward_sums(step, chosen)
        texts = [generation["texts"][row] for row in rows] if "texts" in generation else None
        prompts = [generation["prompts"][row] for row in rows] if "prompts" in generation else None
        answers = [self.answer_fn(text) for text in texts] if texts is not None and self.answer_fn else None
        beta = float(getattr(trainer, "beta", 0.0) or 0.0)
        ref_logps = inputs.get("ref_per_token_logps")
        self.monitor.observe(
            step, logprobs=logps, entropies=entropies, token_ids=inputs["completion_ids"], mask=mask,
            advantages=inputs["advantages"], rewards=rewards,
            group_ids=torch.tensor([row // num_generations for row in global_rows]),
            old_logprobs=inputs.get("old_per_token_logps"),
            ref_logprobs=ref_logps, kl_beta=beta if ref_logps is not None and beta > 0 else None,
            texts=texts, answers=answers, prompts=prompts, lr=_current_lr(trainer))
        if self.probe is not None:
            self.probe.remember(step, inputs)

    def _add_reward_sums(self, step: int, chosen: torch.Tensor) -> None:
        valid = ~torch.isnan(chosen)  # (B, F): a function may return None for some completions
        totals = torch.where(valid, chosen, torch.zeros_like(chosen)).double().sum(dim=0).cpu()  # (F,)
        counts = valid.double().sum(dim=0).cpu()  # (F,)
        entry = self._reward_sums.setdefault(step, [torch.zeros_like(totals), torch.zeros_like(counts)])
        entry[0] += totals
        entry[1] += counts


def _current_lr(trainer) -> float | None:
    scheduler = getattr(trainer, "lr_scheduler", None)
    try:
        return float(scheduler.get_last_lr()[0]) if scheduler is not None else None
    except Exception:  # noqa: BLE001 - a missing lr is not worth a failed observation
        return None


def _mark(wrapper, original):
    wrapper.__entropymon_wrapper__ = True
    wrapper.__wrapped__ = original
    wrapper.__name__ = getattr(original, "__name__", "wrapper")
    wrapper.__doc__ = getattr(original, "__doc__", None)
    return wrapper
