"""The training-thread half of ``Monitor.observe``: reduce big inputs to small detached tensors.

Only work that needs the logits while they exist happens here: per-token entropy and the sampled
token's log-prob, in one chunked pass under ``torch.no_grad``. Everything else is snapshotted
(``detach().clone()``, asynchronous on a GPU: no synchronisation, no ``.item()``) so the trainer
may reuse or modify its tensors after ``observe`` returns, and handed to the worker thread. No
reference to the logits survives this function.

The entropy metric refuses NaN/inf logits, but what to do with them is the Monitor's
``nan_policy``, applied on the worker thread. So non-finite positions are left out of the pass and
come back as NaN entropy / log-prob: the worker then skips and counts exactly those sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from entropymon.errors import InputError

TENSOR_ARGUMENTS = ("token_ids", "logprobs", "entropies", "mask", "advantages", "rewards",
                    "old_logprobs", "ref_logprobs")
LIST_ARGUMENTS = ("texts", "answers", "prompts")


@dataclass
class Observation:
    """One micro-batch as the worker receives it: small tensors, possibly still on the GPU."""

    step: int
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # each (B, T) or (B,)
    group_ids: list | torch.Tensor | None = None  # (B,)
    lists: dict[str, list] = field(default_factory=dict)  # texts / answers / prompts, B entries
    lr: float | None = None
    kl_beta: float | None = None


def reduce_inputs(step: int, inputs: dict, *, temperature: float, want_entropy: bool,
                  want_logprobs: bool) -> Observation:
    """Snapshot ``inputs`` (already shape-checked) and compute what the logits alone can give."""
    observation = Observation(step=step, lr=_optional_float(inputs.get("lr")),
                              kl_beta=_optional_float(inputs.get("kl_beta")))
    for name in TENSOR_ARGUMENTS:
        value = inputs.get(name)
        if value is not None:
            observation.tensors[name] = value.detach().clone()
    mask = observation.tensors.get("mask")
    if mask is not None and mask.dtype != torch.bool:
        observation.tensors["mask"] = mask != 0
    logits = inputs.get("logits")
    if logits is not None:
        observation.tensors.update(_from_logits(logits, observation.tensors, temperature=temperature,
                                                want_entropy=want_entropy, want_logprobs=want_logprobs))
    group_ids = inputs.get("group_ids")
    if group_ids is not None:
        observation.group_ids = group_ids.detach().clone() if torch.is_tensor(group_ids) else list(group_ids)
    for name in LIST_ARGUMENTS:
        if inputs.get(name) is not None:
            observation.lists[name] = list(inputs[name])
    return observation


def _from_logits(logits: torch.Tensor, given: dict[str, torch.Tensor], *, temperature: float,
                 want_entropy: bool, want_logprobs: bool) -> dict[str, torch.Tensor]:
    """Entropy (B, T) and sampled-token log-prob (B, T) that were not given explicitly."""
    from entropymon.metrics.entropy import nonfinite_rows, token_entropy, token_entropy_and_logprob

    need_entropy = want_entropy and "entropies" not in given
    need_logprobs = want_logprobs and "logprobs" not in given and "token_ids" in given
    if not (need_entropy or need_logprobs):
        return {}
    token_ids = given["token_ids"] if need_logprobs else None

    def entropy_pass(mask):
        if token_ids is not None:
            entropy, logprob = token_entropy_and_logprob(logits, token_ids, temperature=temperature, mask=mask)
            return {"entropies": entropy, "logprobs": logprob}
        return {"entropies": token_entropy(logits, temperature=temperature, mask=mask)}

    with torch.no_grad():
        logits = logits.detach()  # (B, T, V)
        mask = given.get("mask")  # (B, T) bool or None
        try:
            derived = entropy_pass(mask)
        except InputError:
            # The metric refuses NaN/inf logits; the NaN policy is the worker's job. Recompute
            # without the non-finite positions and mark them NaN, so the worker skips (and counts)
            # exactly their sequences. Only this rare path pays the extra read of the logits.
            bad = nonfinite_rows(logits, mask)  # (B, T) bool
            if not bool(bad.any()):
                raise
            finite_mask = ~bad if mask is None else mask & ~bad
            if bool(finite_mask.any()):
                derived = entropy_pass(finite_mask)
            else:  # every valid position is non-finite: nothing left to compute
                names = ("entropies", "logprobs") if token_ids is not None else ("entropies",)
                derived = {name: torch.zeros(bad.shape, dtype=torch.float32, device=bad.device) for name in names}
            derived = {name: value.masked_fill(bad, float("nan")) for name, value in derived.items()}
    if not need_entropy:
        derived.pop("entropies")
    return derived


def _optional_float(value) -> float | None:
    return None if value is None else float(value)
