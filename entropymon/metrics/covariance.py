"""Cov(log pi, A): the quantity that drives entropy change in policy-gradient RL (Cui et al. 2025).

Why: to first order the entropy change of a step is -eta * Cov(log pi, A) (natural gradient) or
-eta * Cov(log pi, pi*A) (vanilla gradient), so this number explains *why* entropy falls. Over
the valid tokens i of a batch, with x_i = log pi of the sampled token and A_i its sequence's
advantage broadcast to the token:

    Cov_i = (x_i - mean x) * (A_i - mean A)        batch covariance = mean_i Cov_i

The sums behind it (``CovStats``) merge exactly across micro-batches and ranks, which per-GPU
implementations (veRL's clip_cov/kl_cov) do not do. Everything is reduced in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from entropymon.errors import InputError
from entropymon.metrics import _validate
from entropymon.metrics.stats import COV_TOP_FRACTIONS, CovStats


@dataclass
class CovarianceResult:
    """metrics: registry name -> value; stats: CovStats; per_token: Cov_i shaped like logprobs
    (float32, 0 at masked positions) when asked for, else None."""

    metrics: dict
    stats: CovStats
    per_token: torch.Tensor | None


@torch.no_grad()
def logprob_advantage_cov(logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor | None = None,
                          per_token: bool = False) -> CovarianceResult:
    """Batch Cov(log pi, A), Cov(log pi, pi*A), sum(Cov_i) split by the sign of A, top-token shares.

    logprobs: (B, T) (or any shape) log pi of the sampled tokens; advantages: same shape, or (B,)
    per sequence (broadcast over the tokens); mask: like logprobs, True at valid tokens.
    Top shares: the top ceil(f * n) tokens by Cov_i for f = 0.02% and 0.2%, as a share of sum(Cov_i)
    (omitted when that sum is 0, e.g. when all advantages are equal).
    """
    logprobs = _validate.float_tensor(logprobs, "logprobs")
    advantages = _broadcast_advantages(advantages, logprobs)
    valid = _validate.valid_mask(mask, logprobs.shape).to(logprobs.device)
    _validate.finite_at(logprobs, valid, "logprobs")
    _validate.finite_at(advantages, valid, "advantages")

    x = logprobs.double()[valid]  # (n,)
    y = advantages.double()[valid]  # (n,)
    u = x.exp() * y  # (n,) pi * A
    n = x.numel()
    positive, negative = y > 0, y < 0
    cov_i = (x - x.mean()) * (y - y.mean())  # (n,)

    stats = CovStats(
        n=n, sum_x=float(x.sum()), sum_y=float(y.sum()), sum_xy=float((x * y).sum()),
        sum_u=float(u.sum()), sum_xu=float((x * u).sum()),
        n_pos=int(positive.sum()), sum_x_pos=float(x[positive].sum()), sum_y_pos=float(y[positive].sum()),
        sum_xy_pos=float((x * y)[positive].sum()),
        n_neg=int(negative.sum()), sum_x_neg=float(x[negative].sum()), sum_y_neg=float(y[negative].sum()),
        sum_xy_neg=float((x * y)[negative].sum()),
    )
    for name, fraction in COV_TOP_FRACTIONS.items():
        k = top_count(n, fraction)
        setattr(stats, f"top_{name}_sum", float(cov_i.topk(k).values.sum()))
        setattr(stats, f"top_{name}_n", k)

    per_token_cov = None
    if per_token:
        per_token_cov = torch.zeros(logprobs.shape, dtype=torch.float32, device=logprobs.device)
        per_token_cov[valid] = cov_i.float()
    return CovarianceResult(stats.compute(), stats, per_token_cov)


def top_count(n: int, fraction: float) -> int:
    """How many tokens are 'the top fraction' of n: ceil(fraction * n), at least 1."""
    return max(1, math.ceil(fraction * n - 1e-9))


def _broadcast_advantages(advantages, logprobs):
    if not isinstance(advantages, torch.Tensor):
        raise InputError(f"advantages: expected a floating torch.Tensor, got {type(advantages).__name__}")
    if not advantages.is_floating_point():
        raise InputError(f"advantages: expected a floating dtype, got {advantages.dtype}")
    advantages = advantages.detach().to(logprobs.device)
    if advantages.shape == logprobs.shape:
        return advantages
    if logprobs.ndim >= 2 and advantages.shape == logprobs.shape[:1]:
        return advantages.reshape(-1, *([1] * (logprobs.ndim - 1))).expand(logprobs.shape)
    raise InputError(
        f"advantages: expected shape {tuple(logprobs.shape)} (per token) or {tuple(logprobs.shape[:1])} "
        f"(per sequence) to match logprobs, got {tuple(advantages.shape)}"
    )
