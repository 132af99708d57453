"""The training-thread half of ``Monitor.observe``: check the inputs, then reduce them to small tensors.

Both run on the training thread, so both stay cheap (the step and scalar checks of
``observe_dh`` and ``log_scalars`` are here too). The checks look only at metadata (shape,
dtype, length): no value is read, nothing synchronises with a GPU; checks that need values
(NaN/inf, an all-false mask) happen on the worker thread (host_batch.py). Every failure is an
``InputError`` naming the argument, the expected and the actual value.

The reduction does only the work that needs the logits while they exist: per-token entropy and
the sampled token's log-prob, in one chunked pass under ``torch.no_grad``. Everything else is
snapshotted (``detach().clone()``, asynchronous on a GPU: no synchronisation, no ``.item()``) so
the trainer may reuse or modify its tensors after ``observe`` returns, and handed to the worker
thread. No reference to the logits survives ``reduce_inputs``.

The entropy metric refuses NaN/inf logits, but what to do with them is the Monitor's
``nan_policy``, applied on the worker thread. So non-finite positions are left out of the pass and
come back as NaN entropy / log-prob: the worker then skips and counts exactly those sequences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from entropymon.errors import InputError
from entropymon.registry import KEY_COLUMNS

# per-token arguments: (B, T)
TOKEN_ARGUMENTS = ("token_ids", "logprobs", "entropies", "mask", "old_logprobs")
# per-sequence arguments that may also come per token: (B,) or (B, T)
SEQUENCE_OR_TOKEN_ARGUMENTS = ("advantages", "ref_logprobs")
# per-sequence arguments: (B,)
SEQUENCE_ARGUMENTS = ("rewards",)
# per-sequence Python lists of length B
LIST_ARGUMENTS = ("texts", "answers", "prompts")
# every tensor argument but the logits: what the worker receives (snapshotted)
TENSOR_ARGUMENTS = (*TOKEN_ARGUMENTS, *SEQUENCE_OR_TOKEN_ARGUMENTS, *SEQUENCE_ARGUMENTS)


# -- the checks: metadata only ---------------------------------------------------------------------

def batch_shape(inputs: dict) -> tuple[int, int | None]:
    """The (B, T) every argument must agree with; T is None when nothing per-token was given."""
    logits = inputs.get("logits")
    if logits is not None:
        _require_tensor("logits", logits)
        if logits.ndim != 3:
            raise InputError(f"logits: expected shape (B, T, V), got {tuple(logits.shape)}")
        if not logits.is_floating_point():
            raise InputError(f"logits: expected a floating dtype (float32/bfloat16/float16), got {logits.dtype}")
        return int(logits.shape[0]), int(logits.shape[1])
    for name in TOKEN_ARGUMENTS:
        value = inputs.get(name)
        if value is not None:
            _require_tensor(name, value)
            if value.ndim != 2:
                raise InputError(f"{name}: expected shape (B, T), got {tuple(value.shape)}")
            return int(value.shape[0]), int(value.shape[1])
    for name in (*SEQUENCE_OR_TOKEN_ARGUMENTS, *SEQUENCE_ARGUMENTS):
        value = inputs.get(name)
        if value is not None:
            _require_tensor(name, value)
            if value.ndim == 0:
                raise InputError(f"{name}: expected shape (B,), got a scalar")
            return int(value.shape[0]), None
    raise InputError("observe(): expected at least one of logits, logprobs, entropies, advantages or "
                     "rewards, got none")


def check_observation(inputs: dict, temperature: float) -> tuple[int, int | None]:
    """Check every given argument against the batch shape; return (B, T)."""
    n_seq, n_tok = batch_shape(inputs)
    if n_seq == 0 or n_tok == 0:
        raise InputError(f"observe(): expected a non-empty batch, got B={n_seq}, T={n_tok}")
    expected_token_shape = (n_seq, n_tok)
    token_ids = inputs.get("token_ids")
    for name in TOKEN_ARGUMENTS:
        value = inputs.get(name)
        if value is None:
            continue
        _require_tensor(name, value)
        if n_tok is None:
            raise InputError(f"{name}: expected shape (B, T) with B={n_seq}, but the other arguments are "
                             f"per sequence; got {tuple(value.shape)}")
        if tuple(value.shape) != expected_token_shape:
            raise InputError(f"{name}: expected shape {expected_token_shape} (B, T), got {tuple(value.shape)}")
    if token_ids is not None and (token_ids.is_floating_point() or token_ids.is_complex()):
        raise InputError(f"token_ids: expected an integer dtype, got {token_ids.dtype}")
    for name in ("logprobs", "entropies", "old_logprobs"):
        value = inputs.get(name)
        if value is not None and not value.is_floating_point():
            raise InputError(f"{name}: expected a floating dtype, got {value.dtype}")
    mask = inputs.get("mask")
    if mask is not None and mask.is_complex():
        raise InputError(f"mask: expected bool or 0/1 values, got {mask.dtype}")
    for name in SEQUENCE_OR_TOKEN_ARGUMENTS:
        value = inputs.get(name)
        if value is None:
            continue
        _require_tensor(name, value)
        allowed = [(n_seq,)] + ([expected_token_shape] if n_tok is not None else [])
        if tuple(value.shape) not in allowed:
            raise InputError(f"{name}: expected shape {' or '.join(map(str, allowed))}, got {tuple(value.shape)}")
        if not value.is_floating_point():
            raise InputError(f"{name}: expected a floating dtype, got {value.dtype}")
    rewards = inputs.get("rewards")
    if rewards is not None:
        _require_tensor("rewards", rewards)
        if tuple(rewards.shape) != (n_seq,):
            raise InputError(f"rewards: expected shape ({n_seq},) (one per sequence), got {tuple(rewards.shape)}")
        if rewards.dtype == torch.bool or rewards.is_complex():
            raise InputError(f"rewards: expected a real dtype, got {rewards.dtype}")
    group_ids = inputs.get("group_ids")
    if group_ids is not None:
        if torch.is_tensor(group_ids) and group_ids.ndim != 1:
            raise InputError(f"group_ids: expected shape ({n_seq},), got {tuple(group_ids.shape)}")
        length = _length("group_ids", group_ids)
        if length != n_seq:
            raise InputError(f"group_ids: expected {n_seq} ids (one per sequence), got {length}")
    for name in LIST_ARGUMENTS:
        value = inputs.get(name)
        if value is not None and _length(name, value) != n_seq:
            raise InputError(f"{name}: expected {n_seq} entries (one per sequence), got {_length(name, value)}")
    texts = inputs.get("texts")
    if texts is not None:
        _check_texts(texts)
    kl_beta = inputs.get("kl_beta")
    if kl_beta is not None and not (isinstance(kl_beta, (int, float)) and kl_beta > 0):
        raise InputError(f"kl_beta: expected a positive number, got {kl_beta!r}")
    lr = inputs.get("lr")
    if lr is not None and not isinstance(lr, (int, float)):
        raise InputError(f"lr: expected a number, got {type(lr).__name__}")
    if inputs.get("logits") is not None and not temperature > 0:
        raise InputError(f"temperature: expected > 0, got {temperature!r}")
    return n_seq, n_tok


def check_step(step) -> int:
    """A step of ``observe`` / ``observe_dh`` / ``log_scalars``: an int in [0, 2**63) (steps are int64)."""
    if isinstance(step, bool) or not hasattr(step, "__index__") or not 0 <= step.__index__() < 2**63:
        raise InputError(f"step: expected an integer >= 0 and < 2**63, got {type(step).__name__} {step!r}")
    return step.__index__()


def check_scalars(scalars) -> dict[str, float]:
    """``log_scalars``' mapping as {metric name: float}; the key columns and ``stat/`` names are refused."""
    if not isinstance(scalars, Mapping):
        raise InputError(f"scalars: expected a dict of name -> number, got {type(scalars).__name__}")
    clean = {}
    for name, value in scalars.items():
        if not isinstance(name, str) or not name or name.startswith("stat/") or name in KEY_COLUMNS:
            raise InputError(f"scalars: expected metric names (str, not 'step'/'rank'/'stat/...'), got {name!r}")
        try:
            clean[name] = float(value)
        except (TypeError, ValueError):
            raise InputError(f"scalars[{name!r}]: expected a number, got {type(value).__name__} {value!r}") from None
    return clean


def _check_texts(texts) -> None:
    """Each completion must be a str or a sequence of token ids: one None would void the step's diversity."""
    for index, text in enumerate(texts):
        if isinstance(text, str):
            continue
        if text is None or isinstance(text, (bool, int, float)) or not hasattr(text, "__len__"):
            raise InputError(f"texts[{index}]: expected a str (or a sequence of token ids) for every completion, "
                             f"got {type(text).__name__} {text!r}")


def check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise InputError(f"temperature: expected a positive number, got {temperature!r}")
    return float(temperature)


def _require_tensor(name: str, value) -> None:
    if not torch.is_tensor(value):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")


def _length(name: str, value) -> int:
    if isinstance(value, (str, bytes)) or not (isinstance(value, Sequence) or hasattr(value, "__len__")):
        raise InputError(f"{name}: expected a list with one entry per sequence, got {type(value).__name__}")
    return len(value)


# -- the reduction: what the worker thread receives ------------------------------------------------

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
