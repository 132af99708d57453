"""Effective sample size of the importance weights between the current and the sampling policy.

Why: off-policy updates (several PPO epochs, asynchronous rollouts) reweight each token by
w = pi / pi_old. When a few weights dominate, ESS/N = (sum w)^2 / (N * sum w^2) falls towards
1/N and the update becomes high-variance; its collapse precedes unstable training. Weights are
summed after subtracting the largest log-weight, so exp() cannot overflow, in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from entropymon.metrics import _validate
from entropymon.metrics.stats import EssStats


@dataclass
class ImportanceResult:
    """metrics: {"ess_frac": ESS/N}; stats: EssStats (merges exactly across batches and ranks)."""

    metrics: dict
    stats: EssStats


@torch.no_grad()
def importance_ess(logprobs: torch.Tensor, old_logprobs: torch.Tensor,
                   mask: torch.Tensor | None = None) -> ImportanceResult:
    """ESS/N of w = exp(logprobs - old_logprobs) over the valid tokens.

    logprobs, old_logprobs: same shape (e.g. (B, T)) log-probs of the sampled tokens under the
    current and the behaviour policy; mask: like them, True at valid tokens. 1/N <= ESS/N <= 1.
    """
    logprobs = _validate.float_tensor(logprobs, "logprobs")
    old_logprobs = _validate.float_tensor(old_logprobs, "old_logprobs")
    _validate.same_shape(old_logprobs, "old_logprobs", logprobs.shape, "logprobs")
    valid = _validate.valid_mask(mask, logprobs.shape).to(logprobs.device)
    _validate.finite_at(logprobs, valid, "logprobs")
    _validate.finite_at(old_logprobs, valid, "old_logprobs")

    log_w = (logprobs.double() - old_logprobs.double().to(logprobs.device))[valid]  # (n,)
    shift = log_w.max()
    scaled = (log_w - shift).exp()  # (n,) w / e^shift, in (0, 1]
    stats = EssStats(n=int(log_w.numel()), log_shift=float(shift), sum_w=float(scaled.sum()),
                     sum_w2=float((scaled * scaled).sum()))
    return ImportanceResult(stats.compute(), stats)
