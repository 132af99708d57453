"""Per-step aggregates of token entropy: means, exact quantiles, histogram, forking share, surprisal.

Why separate from ``entropy.py``: that module turns logits into one entropy per position; this
one reduces those positions (or entropies a trainer already computed) to the step's numbers,
under both aggregations trainers use (token-mean, as TRL logs, and the sequence-mean of
token-means of the Entropy Mechanism paper), plus the sufficient statistics that let batches and
ranks merge. Quantiles are exact here, on the batch; merged steps fall back to the histogram.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from entropymon.errors import InputError
from entropymon.metrics import _validate
from entropymon.metrics.stats import ENTROPY_QUANTILES, FORKING_THRESHOLD, EntropyStats, entropy_histogram


@dataclass
class EntropySummary:
    """metrics: registry name -> value (``entropy_hist`` is a list of counts); stats: EntropyStats;
    sequence_mean / sequence_max: (S,) float32 per sequence, NaN for a sequence with no valid token."""

    metrics: dict
    stats: EntropyStats
    sequence_mean: torch.Tensor | None
    sequence_max: torch.Tensor | None


@torch.no_grad()
def entropy_stats(entropy: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                  logprobs: torch.Tensor | None = None) -> EntropySummary:
    """Aggregate per-token entropies (..., T) and/or sampled-token log-probs (..., T) of one batch.

    Rows of the last dimension are sequences (a 1-D input is one sequence). mask (..., T) marks
    valid tokens. At least one of entropy and logprobs is required; logprobs give the surprisal
    estimate ``surprisal_mean`` = mean of -log pi(y_t), labelled apart from the entropy.
    """
    if entropy is None and logprobs is None:
        raise InputError("entropy, logprobs: expected at least one tensor, got both None")
    reference_name, reference = ("entropy", entropy) if entropy is not None else ("logprobs", logprobs)
    reference = _validate.float_tensor(reference, reference_name)
    valid = _validate.valid_mask(mask, reference.shape).to(reference.device)
    stats = EntropyStats()
    sequence_mean = sequence_max = None
    quantiles = {}
    if entropy is not None:
        entropy = reference
        _validate.finite_at(entropy, valid, "entropy")
        stats, quantiles, sequence_mean, sequence_max = _entropy_part(entropy, valid)
    if logprobs is not None:
        logprobs = _validate.float_tensor(logprobs, "logprobs")
        _validate.same_shape(logprobs, "logprobs", reference.shape, reference_name)
        _validate.finite_at(logprobs, valid, "logprobs")
        surprisal = -logprobs.double()[valid]  # (n,)
        stats.n_surprisal, stats.sum_surprisal = int(surprisal.numel()), float(surprisal.sum())
    metrics = stats.compute()
    metrics.update(quantiles)
    if entropy is not None:
        metrics["entropy_hist"] = [int(v) for v in stats.hist]
    return EntropySummary(metrics, stats, sequence_mean, sequence_max)


def _entropy_part(entropy, valid):
    values = entropy.double()[valid]  # (n,) valid entropies, float64
    rows = entropy.reshape(-1, entropy.shape[-1]).double()  # (S, T)
    row_valid = valid.reshape(rows.shape)  # (S, T)
    counts = row_valid.sum(-1)  # (S,)
    sums = torch.where(row_valid, rows, 0.0).sum(-1)  # (S,)
    has_tokens = counts > 0
    sequence_mean = torch.where(has_tokens, sums / counts.clamp(min=1), torch.nan)  # (S,)
    sequence_max = torch.where(row_valid, rows, -torch.inf).amax(-1)  # (S,)
    sequence_max = torch.where(has_tokens, sequence_max, torch.nan)

    stats = EntropyStats(
        n_tokens=int(values.numel()),
        sum_entropy=float(values.sum()),
        n_sequences=int(has_tokens.sum()),
        sum_sequence_mean=float(sequence_mean[has_tokens].sum()),
        n_forking=int((values > FORKING_THRESHOLD).sum()),
        max_entropy=float(values.max()),
        hist=entropy_histogram(values.cpu().numpy()),
    )
    sorted_values = values.sort().values
    quantiles = {name: _sorted_quantile(sorted_values, q) for name, q in ENTROPY_QUANTILES.items()}
    return stats, quantiles, sequence_mean.float(), sequence_max.float()


def _sorted_quantile(sorted_values: torch.Tensor, q: float) -> float:
    """Linear-interpolation quantile (numpy's default method) of already sorted values."""
    position = q * (sorted_values.numel() - 1)
    low = int(np.floor(position))
    high = min(low + 1, sorted_values.numel() - 1)
    fraction = position - low
    return float(sorted_values[low] * (1 - fraction) + sorted_values[high] * fraction)
