"""The worker-thread half of ``observe``: move a micro-batch to the CPU, apply the NaN policy,
and join the micro-batches of one step into one batch.

Joining the small per-token tensors (a few bytes per token) and computing every metric once per
step makes micro-batch accumulation exactly equal to one big batch, including quantiles, top-k
shares and groups that straddle micro-batches.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from entropymon.errors import InputError
from entropymon.hooks.failures import FailureLog
from entropymon.hooks.observation import Observation

PER_TOKEN = ("entropies", "logprobs", "token_ids", "old_logprobs", "advantages_token", "ref_logprobs_token")
PER_SEQUENCE = ("rewards", "advantages", "ref_logprobs")
LISTS = ("group_ids", "texts", "answers", "prompts")


@dataclass
class HostBatch:
    """One step's (or micro-batch's) data on the CPU; padded positions have ``mask`` False."""

    mask: torch.Tensor | None = None  # (B, T) bool
    entropies: torch.Tensor | None = None  # (B, T) float32
    logprobs: torch.Tensor | None = None  # (B, T) float32
    token_ids: torch.Tensor | None = None  # (B, T) int64
    old_logprobs: torch.Tensor | None = None  # (B, T) float32
    advantages_token: torch.Tensor | None = None  # (B, T) float32, sequence advantage broadcast when per sequence
    ref_logprobs_token: torch.Tensor | None = None  # (B, T) float32
    rewards: torch.Tensor | None = None  # (B,) float64
    advantages: torch.Tensor | None = None  # (B,) float64, per sequence (token-mean when given per token)
    ref_logprobs: torch.Tensor | None = None  # (B,) float64 sequence log-prob
    group_ids: list | None = None  # B hashables
    texts: list | None = None
    answers: list | None = None
    prompts: list | None = None
    lr: float | None = None
    kl_beta: float | None = None

    @property
    def n_sequences(self) -> int:
        for name in ("mask", *PER_SEQUENCE):
            value = getattr(self, name)
            if value is not None:
                return int(value.shape[0])
        return len(self.group_ids or [])

    def select(self, keep: torch.Tensor) -> HostBatch:
        """The sequences where ``keep`` (B,) is True."""
        index = torch.nonzero(keep).flatten().tolist()
        chosen = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if torch.is_tensor(value):
                value = value[keep]
            elif isinstance(value, list):
                value = [value[i] for i in index]
            chosen[item.name] = value
        return HostBatch(**chosen)


def to_host(observation: Observation, failures: FailureLog) -> HostBatch | None:
    """The micro-batch on the CPU with NaN/inf rows removed; None when nothing valid is left."""
    cpu = {name: value.to("cpu") for name, value in observation.tensors.items()}
    batch = HostBatch(lr=observation.lr, kl_beta=observation.kl_beta)
    if observation.group_ids is not None:
        ids = observation.group_ids
        batch.group_ids = ids.to("cpu").tolist() if torch.is_tensor(ids) else list(ids)
    for name, value in observation.lists.items():
        setattr(batch, name, value)
    if "rewards" in cpu:
        batch.rewards = cpu["rewards"].to(torch.float64)
    per_token = {name: cpu[name] for name in ("entropies", "logprobs", "token_ids", "old_logprobs") if name in cpu}
    token_axis_given = [cpu[name].ndim == 2 for name in ("advantages", "ref_logprobs") if name in cpu]
    if per_token or any(token_axis_given):
        shape = _token_shape(cpu)
        mask = cpu.get("mask")
        batch.mask = torch.ones(shape, dtype=torch.bool) if mask is None else mask
        if mask is not None and not bool(mask.any()):
            raise InputError(f"mask: expected at least one True position, got all {mask.numel()} "
                             "positions masked out")
        for name, value in per_token.items():
            setattr(batch, name, value if name == "token_ids" else value.to(torch.float32))
    _set_advantages(batch, cpu.get("advantages"))
    _set_ref_logprobs(batch, cpu.get("ref_logprobs"))
    return _drop_non_finite(batch, failures)


def join_batches(batches: list[HostBatch], failures: FailureLog) -> HostBatch:
    """One batch from a step's micro-batches: per-token tensors padded to the longest T and stacked."""
    if len(batches) == 1:
        return batches[0]
    joined = HostBatch(lr=_last(b.lr for b in batches), kl_beta=_last(b.kl_beta for b in batches))
    n_tok = max((b.mask.shape[1] for b in batches if b.mask is not None), default=0)
    for name in ("mask", *PER_TOKEN, *PER_SEQUENCE, *LISTS):
        values = [getattr(b, name) for b in batches]
        if all(v is None for v in values):
            continue
        if any(v is None for v in values):
            failures.record_error("join micro-batches", InputError(
                f"{name}: expected in every micro-batch of a step or in none, got it in "
                f"{sum(v is not None for v in values)} of {len(values)}; dropped for this step"),
                on_caller_thread=False)
            continue
        if isinstance(values[0], list):
            setattr(joined, name, [item for v in values for item in v])
        elif values[0].ndim == 2:
            setattr(joined, name, torch.cat([_pad_columns(v, n_tok) for v in values]))
        else:
            setattr(joined, name, torch.cat(values))
    return joined


def _token_shape(cpu: dict[str, torch.Tensor]) -> tuple[int, int]:
    for value in cpu.values():
        if value.ndim == 2:
            return tuple(value.shape)
    raise InputError("observe(): expected a per-token (B, T) tensor, got none")


def _set_advantages(batch: HostBatch, advantages: torch.Tensor | None) -> None:
    if advantages is None:
        return
    if advantages.ndim == 2:  # (B, T): per-token advantages; the sequence's is its token mean
        batch.advantages_token = advantages.to(torch.float32)
        batch.advantages = _masked_mean(advantages.to(torch.float64), batch.mask)
    else:  # (B,)
        batch.advantages = advantages.to(torch.float64)
        if batch.mask is not None:
            batch.advantages_token = advantages.to(torch.float32)[:, None].expand(batch.mask.shape).clone()


def _set_ref_logprobs(batch: HostBatch, ref_logprobs: torch.Tensor | None) -> None:
    if ref_logprobs is None:
        return
    if ref_logprobs.ndim == 2:  # (B, T): the sequence log-prob is the masked sum
        batch.ref_logprobs_token = ref_logprobs.to(torch.float32)
        batch.ref_logprobs = torch.where(batch.mask, ref_logprobs.to(torch.float64), 0.0).sum(dim=1)
    else:
        batch.ref_logprobs = ref_logprobs.to(torch.float64)


# Values that cannot be what the argument claims: a log-probability above 0 or an entropy below 0
# is a bug upstream (swapped arguments, a sign error), not a measurement. The slack absorbs the
# rounding of other implementations (a float32 log-softmax can give +1e-7).
ROUNDING_SLACK = 1e-3
LOG_PROBABILITIES = ("logprobs", "old_logprobs", "ref_logprobs_token")


def _drop_non_finite(batch: HostBatch, failures: FailureLog) -> HostBatch | None:
    """Apply the NaN policy: sequences with a NaN/inf or impossible value at a valid position are skipped.

    Impossible: a log-prob > 0 or an entropy < 0 (beyond ``ROUNDING_SLACK``). ``-inf`` log-probs
    (a sampled token of probability 0, or one below float32's range because logits overflowed)
    are skipped too, and the warning says which it was.
    """
    n_seq = batch.n_sequences
    bad = torch.zeros(n_seq, dtype=torch.bool)
    found = []
    for name in ("entropies", "logprobs", "old_logprobs", "advantages_token", "ref_logprobs_token"):
        value = getattr(batch, name)
        if value is not None:
            bad_values, what = _bad_values(name, value)
            bad_here = (bad_values & batch.mask).any(dim=1)  # (B,)
            if bool(bad_here.any()):
                found.append((name.removesuffix("_token"), _describe_bad(value[batch.mask & bad_values], what)))
            bad |= bad_here
    for name in PER_SEQUENCE:
        value = getattr(batch, name)
        if value is not None:
            bad_values, what = _bad_values(name, value)
            if bool(bad_values.any()):
                found.append((name, _describe_bad(value[bad_values], what)))
            bad |= bad_values
    n_bad = int(bad.sum())
    if n_bad == 0:
        return batch
    names = "/".join(dict.fromkeys(name for name, _ in found))
    failures.record_bad_rows(names, n_bad, n_seq, found="; ".join(f"{name}: {text}" for name, text in found))
    return None if n_bad == n_seq else batch.select(~bad)


def _bad_values(name: str, value: torch.Tensor) -> tuple[torch.Tensor, str]:
    """(bool tensor of impossible values, what the argument must hold)."""
    if name in LOG_PROBABILITIES or name == "ref_logprobs":  # a sequence log-prob is a sum of them: <= 0 too
        return ~torch.isfinite(value) | (value > ROUNDING_SLACK), "finite log-probs <= 0"
    if name == "entropies":
        return ~torch.isfinite(value) | (value < -ROUNDING_SLACK), "finite entropies >= 0"
    return ~torch.isfinite(value), "finite values"


def _describe_bad(values: torch.Tensor, expected: str) -> str:
    """``expected ..., got 2 NaN, 1 -inf, 3 > 0 (max 801)`` for the bad values of one argument."""
    values = values.to(torch.float64)
    parts = []
    for count, what in ((int(torch.isnan(values).sum()), "NaN"), (int((values == float("inf")).sum()), "+inf"),
                        (int((values == -float("inf")).sum()), "-inf")):
        if count:
            parts.append(f"{count} {what}")
    finite = values[torch.isfinite(values)]
    if finite.numel():
        if "<= 0" in expected:
            parts.append(f"{finite.numel()} > 0 (max {float(finite.max()):.4g})")
        else:
            parts.append(f"{finite.numel()} < 0 (min {float(finite.min()):.4g})")
    note = ""
    if "log-probs" in expected and bool((values == -float("inf")).any()):
        note = " (-inf: a sampled token of probability 0, or a log-prob below float32's range: overflowing logits)"
    return f"expected {expected}, got {', '.join(parts)}{note}"


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, values, 0.0).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def _pad_columns(value: torch.Tensor, n_tok: int) -> torch.Tensor:
    padded = torch.zeros((value.shape[0], n_tok), dtype=value.dtype)  # (B, n_tok); False / 0 past the end
    padded[:, : value.shape[1]] = value
    return padded


def _last(values):
    found = [v for v in values if v is not None]
    return found[-1] if found else None
