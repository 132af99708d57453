"""The Monitor's dH probe: the same batch's entropy before and after an optimizer step.

Why a probe: the naive entropy change between logged steps compares two different batches and is
mostly noise (see ``metrics/entropy_change.py``). Every ``dh_probe_every`` steps the training
loop gives the logits of the batch it just trained on, from before and after the optimizer step
(``Monitor.observe_dh``); this module does the same split as ``observe``: on the training thread
one chunked no-grad pass over both logits leaves small (B, T) tensors, on the worker thread they
become the ``dh_*`` metrics of the step's row (``metrics.entropy_change.entropy_change_stats``).

The TRL integration runs the two forwards itself (``integrations/trl_probe.py``); a plain PyTorch
loop keeps the training forward's logits (detached) and adds one no-grad forward after
``optimizer.step()``::

    logits = model(batch)                                    # (B, T, V), the training forward
    ...; loss.backward(); optimizer.step()
    if monitor.probe_due(step):
        with torch.no_grad():
            after = model(batch)                             # the same positions, updated weights
        monitor.observe_dh(step, logits_before=logits.detach(), logits_after=after,
                           token_ids=tokens, mask=mask, advantages=advantages)

For a clean measurement both forwards should see the same model mode (no dropout difference).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from entropymon.errors import InputError
from entropymon.hooks.failures import FailureLog
from entropymon.metrics.entropy_change import entropy_change, entropy_change_stats

PER_TOKEN = ("dh", "predicted", "entropy_before", "logprob_before", "mask", "advantages")


def check_probe_every(value) -> int:
    """``dh_probe_every``: 0 or None (off) or a positive int."""
    value = 0 if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"dh_probe_every: expected a non-negative int (0 or None: off), got {value!r}")
    return value


def probe_due(step: int, every: int) -> bool:
    """Whether step ``step`` is probed: every ``every``-th step (step 0 included), never when ``every`` is 0."""
    return every > 0 and step % every == 0


@dataclass
class ProbeObservation:
    """One micro-batch's probe result as the worker receives it: (B, T) tensors, possibly on a GPU."""

    step: int
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


def reduce_probe(step: int, *, logits_before, logits_after, token_ids=None, mask=None, advantages=None,
                 temperature: float = 1.0) -> ProbeObservation:
    """The training-thread half: check shapes, read both logits once, snapshot the rest (no sync)."""
    for name, logits in (("logits_before", logits_before), ("logits_after", logits_after)):
        if not isinstance(logits, torch.Tensor) or logits.ndim != 3:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise InputError(f"{name}: expected a (B, T, V) torch.Tensor, got {shape}")
    n_seq, n_tok = logits_before.shape[:2]
    if mask is not None and (not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (n_seq, n_tok)):
        raise InputError(f"mask: expected shape ({n_seq}, {n_tok}) to match the logits, got {_shape(mask)}")
    if advantages is not None:
        if not isinstance(advantages, torch.Tensor) or tuple(advantages.shape) not in ((n_seq,), (n_seq, n_tok)):
            raise InputError(f"advantages: expected shape ({n_seq},) or ({n_seq}, {n_tok}), got {_shape(advantages)}")
    bool_mask = None if mask is None else (mask if mask.dtype == torch.bool else mask != 0)
    change = entropy_change(logits_before, logits_after, token_ids, bool_mask, temperature)
    tensors = {"dh": change.dh, "predicted": change.predicted, "entropy_before": change.entropy_before}
    if change.logprob_before is not None:
        tensors["logprob_before"] = change.logprob_before
    if bool_mask is not None:
        tensors["mask"] = bool_mask.detach().clone()
    if advantages is not None:
        adv = advantages.detach().to(torch.float32)
        tensors["advantages"] = (adv[:, None].expand(n_seq, n_tok) if adv.ndim == 1 else adv).clone()
    return ProbeObservation(step, tensors)


def probe_row(observations: list[ProbeObservation], failures: FailureLog) -> dict:
    """The worker-thread half: the step's ``dh_*`` metrics and ``stat/dh_*`` columns from its micro-batches.

    Sequences with a non-finite value at a valid position are skipped and counted (the NaN policy).
    """
    batches = [_to_host(o) for o in observations]
    keys = set(batches[0])
    if any(set(b) != keys for b in batches):
        raise InputError("observe_dh(): expected the same arguments in every micro-batch of a step, got "
                         f"{sorted(set().union(*batches) - keys)} in some only")
    n_tok = max(b["dh"].shape[1] for b in batches)
    joined = {name: torch.cat([_pad(b[name], n_tok) for b in batches]) for name in keys}
    mask = joined.pop("mask", None)
    mask = torch.ones(joined["dh"].shape, dtype=torch.bool) if mask is None else mask
    mask = mask & _pad_mask(batches, n_tok) if "mask" not in keys else mask
    bad = torch.zeros(mask.shape[0], dtype=torch.bool)
    for value in joined.values():
        bad |= (~torch.isfinite(value) & mask).any(1)
    if bool(bad.any()):
        failures.record_bad_rows("probe logits/advantages", int(bad.sum()), int(bad.numel()))
        mask = mask & ~bad[:, None]
    if not bool(mask.any()):
        return {}
    clean = {name: torch.where(mask, value, 0.0) for name, value in joined.items()}
    result = entropy_change_stats(clean["dh"], clean["predicted"], clean["entropy_before"], mask,
                                  advantages=clean.get("advantages"), logprobs=clean.get("logprob_before"))
    return {**result.metrics, **result.stats.to_columns()}


def _to_host(observation: ProbeObservation) -> dict[str, torch.Tensor]:
    return {name: value.to("cpu") for name, value in observation.tensors.items()}


def _pad(value: torch.Tensor, n_tok: int) -> torch.Tensor:
    padded = torch.zeros((value.shape[0], n_tok), dtype=value.dtype)  # (B, n_tok); False / 0 past the end
    padded[:, : value.shape[1]] = value
    return padded


def _pad_mask(batches: list[dict], n_tok: int) -> torch.Tensor:
    """Without a mask every position of each micro-batch is valid, padding past its own T is not."""
    return torch.cat([_pad(torch.ones(b["dh"].shape, dtype=torch.bool), n_tok) for b in batches])


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__
