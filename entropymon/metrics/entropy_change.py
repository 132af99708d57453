"""The entropy change of one optimizer step, measured where it happens: same sequences, same positions.

Why: the entropy of two consecutive logged steps is measured on two different batches, so its
difference is mostly batch-to-batch noise (on the demo its spread is 5-10x that of the real
change). The honest measurement is the policy's entropy at the *same* positions just before and
just after the update, dH_t = H_after,t - H_before,t. With the logits of both forwards this module
also gives, per position, Cui et al.'s first-order prediction in logit space

    dH_t ~ -Cov_{a~pi_t}(log pi_t(a), dz_t(a)),   dz = z_after/tau - z_before/tau

(exact for small steps on a softmax; no assumption on *why* the logits moved), and the
attribution of sum_t dH_t to classes of tokens: by the sign of the advantage (arXiv 2511.05993:
positive-advantage tokens drive the collapse), high-entropy "forking" tokens vs the rest, and
the top Cov_i tokens (the set Clip-Cov / KL-Cov act on) vs the rest - direct measurements with
no first-order approximation.

Two halves, like every metric here: ``entropy_change`` reads the two (B, T, V) logits once,
in chunks of rows (float32, float64 for float64 input), and returns small (B, T) tensors;
``entropy_change_stats`` reduces those to mergeable sums (``DhStats``) whose ``compute`` gives
the registry's ``dh_*`` metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from entropymon.errors import InputError
from entropymon.metrics import _validate
from entropymon.metrics.covariance import top_count
from entropymon.metrics.stats import COV_TOP_FRACTIONS, FORKING_THRESHOLD, DhStats

# scratch for one chunk: about six float32 (C, V) temporaries (two log-softmaxes, probabilities, products)
CPU_SCRATCH_BYTES = 4 * 2**20
GPU_SCRATCH_BYTES = 256 * 2**20
_TEMPORARIES = 6


@dataclass
class EntropyChange:
    """Per-position results, each (B, T) float32 with 0 at masked positions (``logprob_before`` None
    when no token ids were given)."""

    entropy_before: torch.Tensor
    entropy_after: torch.Tensor
    dh: torch.Tensor  # entropy_after - entropy_before, formed in the work dtype
    predicted: torch.Tensor  # -Cov_{a~pi_before}(log pi_before, dz)
    logprob_before: torch.Tensor | None


@dataclass
class EntropyChangeResult:
    """metrics: registry name -> value; stats: DhStats (merge across micro-batches and ranks)."""

    metrics: dict
    stats: DhStats


@torch.no_grad()
def entropy_change(logits_before: torch.Tensor, logits_after: torch.Tensor, token_ids: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None, temperature: float = 1.0, *,
                   scratch_bytes: int | None = None) -> EntropyChange:
    """Entropy before and after, their difference and the logit-space prediction, at every position.

    logits_before, logits_after: (..., V) of the same positions before and after the update;
    token_ids: (...) the sampled tokens (for ``logprob_before``, which ranks tokens by Cov_i);
    mask: (...) bool or 0/1, True at valid positions.
    """
    before = _validate.float_tensor(logits_before, "logits_before", min_rank=2)
    after = _validate.float_tensor(logits_after, "logits_after", min_rank=2)
    _validate.same_shape(after, "logits_after", before.shape, "logits_before")
    inv_temperature = 1.0 / _validate.positive_number(temperature, "temperature")
    lead_shape, vocab = before.shape[:-1], before.shape[-1]
    valid = _validate.valid_mask(mask, lead_shape).to(before.device).reshape(-1)  # (N,)
    ids = None
    if token_ids is not None:
        if not isinstance(token_ids, torch.Tensor) or token_ids.is_floating_point() or token_ids.dtype == torch.bool:
            raise InputError(f"token_ids: expected an integer torch.Tensor, got {_describe(token_ids)}")
        _validate.same_shape(token_ids, "token_ids", lead_shape, "logits_before.shape[:-1]")
        ids = token_ids.to(before.device).reshape(-1)  # (N,)
        chosen = ids[valid]
        if chosen.numel() and (int(chosen.min()) < 0 or int(chosen.max()) >= vocab):
            raise InputError(f"token_ids: expected values in [0, {vocab - 1}] (V = {vocab}), got range "
                             f"[{int(chosen.min())}, {int(chosen.max())}]")

    rows = valid.nonzero().squeeze(-1)  # (n,) flat indices of valid positions
    work = torch.float64 if before.dtype == torch.float64 else torch.float32
    flat_before, flat_after = before.reshape(-1, vocab), after.reshape(-1, vocab)  # (N, V)
    budget = scratch_bytes or (GPU_SCRATCH_BYTES if before.device.type != "cpu" else CPU_SCRATCH_BYTES)
    chunk = max(1, int(budget) // (_TEMPORARIES * vocab * torch.finfo(work).bits // 8))
    n_rows = valid.numel()
    outputs = {name: torch.zeros(n_rows, dtype=work, device=before.device)
               for name in ("entropy_before", "entropy_after", "dh", "predicted", "logprob_before")}
    for start in range(0, rows.numel(), chunk):
        where = rows[start:start + chunk]  # (C,)
        s_before = flat_before[where].to(work) * inv_temperature  # (C, V)
        s_after = flat_after[where].to(work) * inv_temperature  # (C, V)
        log_p = torch.log_softmax(s_before, dim=-1)  # (C, V)
        log_q = torch.log_softmax(s_after, dim=-1)  # (C, V)
        p, q = log_p.exp(), log_q.exp()
        h_before = -(p * log_p).sum(-1)  # (C,)
        h_after = -(q * log_q).sum(-1)  # (C,)
        dz = s_after - s_before  # (C, V); a constant shift per row changes neither softmax nor the covariance
        dz = dz - (p * dz).sum(-1, keepdim=True)  # centred under pi_before, for rounding
        # Cov_{a~p}(log p, dz) = sum_a p_a (log p_a + H) dz_a  (the weights p (log p + H) sum to 0)
        outputs["predicted"][where] = -(p * (log_p + h_before[:, None]) * dz).sum(-1)
        outputs["entropy_before"][where] = h_before
        outputs["entropy_after"][where] = h_after
        outputs["dh"][where] = h_after - h_before
        if ids is not None:
            outputs["logprob_before"][where] = log_p.gather(-1, ids[where, None]).squeeze(-1)
    shaped = {name: value.to(torch.float32).reshape(lead_shape) for name, value in outputs.items()}
    for name in ("entropy_before", "entropy_after", "dh", "predicted"):
        _validate.finite_at(shaped[name], valid.reshape(lead_shape), "logits_before/logits_after")
    return EntropyChange(shaped["entropy_before"], shaped["entropy_after"], shaped["dh"], shaped["predicted"],
                         shaped["logprob_before"] if ids is not None else None)


@torch.no_grad()
def entropy_change_stats(dh: torch.Tensor, predicted: torch.Tensor, entropy_before: torch.Tensor,
                         mask: torch.Tensor | None = None, advantages: torch.Tensor | None = None,
                         logprobs: torch.Tensor | None = None) -> EntropyChangeResult:
    """Where the entropy went: the ``dh_*`` metrics of one batch from per-position (B, T) values.

    advantages: (B, T) or (B,) per sequence (broadcast); classes by its sign. logprobs: (B, T) log
    pi_before of the sampled tokens; with advantages it ranks tokens by Cov_i =
    (log pi_i - mean log pi)(A_i - mean A) for the top-Cov classes (the top 0.02% and 0.2%).
    Forking tokens: entropy before the update above ``FORKING_THRESHOLD`` (0.672 nats).
    """
    dh = _validate.float_tensor(dh, "dh", min_rank=2)
    if dh.ndim != 2:
        raise InputError(f"dh: expected shape (B, T), got {tuple(dh.shape)}")
    predicted = _validate.float_tensor(predicted, "predicted")
    entropy_before = _validate.float_tensor(entropy_before, "entropy_before")
    _validate.same_shape(predicted, "predicted", dh.shape, "dh")
    _validate.same_shape(entropy_before, "entropy_before", dh.shape, "dh")
    valid = _validate.valid_mask(mask, dh.shape).to(dh.device)  # (B, T)
    for name, value in (("dh", dh), ("predicted", predicted), ("entropy_before", entropy_before)):
        _validate.finite_at(value, valid, name)

    d = dh.double()[valid]  # (n,)
    pred = predicted.double()[valid]  # (n,)
    per_seq = torch.where(valid, dh.double(), 0.0).sum(1) / valid.sum(1).clamp(min=1)  # (B,) token-mean per sequence
    has_tokens = valid.any(1)  # (B,)
    forking = entropy_before.double()[valid] > FORKING_THRESHOLD  # (n,)
    stats = DhStats(
        n=int(d.numel()), sum_dh=float(d.sum()), sum_dh_sq=float((d * d).sum()), sum_pred=float(pred.sum()),
        sum_pred_sq=float((pred * pred).sum()), sum_dh_pred=float((d * pred).sum()),
        sum_h_before=float(entropy_before.double()[valid].sum()),
        n_seq=int(has_tokens.sum()), sum_seq_dh=float(per_seq[has_tokens].sum()),
        n_forking=int(forking.sum()), sum_forking=float(d[forking].sum()),
    )
    if advantages is not None:
        a = _broadcast(advantages, dh.shape).double()[valid]  # (n,)
        _validate.finite_at(a, torch.ones_like(a, dtype=torch.bool), "advantages")
        stats.n_adv = int(a.numel())
        stats.sum_pos = float(d[a > 0].sum())
        stats.sum_zero = float(d[a == 0].sum())
        stats.sum_neg = float(d[a < 0].sum())
        if logprobs is not None:
            x = _validate.float_tensor(logprobs, "logprobs")
            _validate.same_shape(x, "logprobs", dh.shape, "dh")
            x = x.double()[valid]
            _validate.finite_at(x, torch.ones_like(x, dtype=torch.bool), "logprobs")
            cov_i = (x - x.mean()) * (a - a.mean())  # (n,)
            for name, fraction in COV_TOP_FRACTIONS.items():
                k = top_count(d.numel(), fraction)
                top = cov_i.topk(k).indices
                setattr(stats, f"top_{name}_sum", float(d[top].sum()))
                setattr(stats, f"top_{name}_n", k)
    return EntropyChangeResult(stats.compute(), stats)


def _broadcast(advantages, shape):
    if not isinstance(advantages, torch.Tensor) or not advantages.is_floating_point():
        raise InputError(f"advantages: expected a floating torch.Tensor, got {_describe(advantages)}")
    if tuple(advantages.shape) == tuple(shape):
        return advantages
    if tuple(advantages.shape) == tuple(shape[:1]):
        return advantages[:, None].expand(shape)
    raise InputError(f"advantages: expected shape {tuple(shape)} (per token) or {tuple(shape[:1])} (per sequence), "
                     f"got {tuple(advantages.shape)}")


def _describe(x) -> str:
    return f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
