"""How many modes the KL-regularised objective itself wants, per group of sampled completions.

Why: with reverse KL of strength beta the optimal policy is G(y) ~ pi_ref(y) * exp(R(y)/beta)
(Chen et al. 2025). Restricted to a group's sampled completions, G is the softmax of
u_i = log pi_ref(y_i) + R_i / beta. Its entropy H_g (and exp(H_g), an effective number of
completions) shows whether collapse is demanded by the objective rather than caused by the
optimiser: with small beta and equal rewards the target is effectively one completion.
Groups are reduced with segment operations (scatter), never a loop over groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from entropymon.errors import InputError
from entropymon.metrics import _validate
from entropymon.metrics.stats import KlModeStats


@dataclass
class KlModesResult:
    """metrics: kl_target_entropy / kl_target_modes (means over groups); stats: KlModeStats;
    group_ids: (G,) labels; group_entropy, group_modes: (G,) float64 H_g and exp(H_g)."""

    metrics: dict
    stats: KlModeStats
    group_ids: np.ndarray
    group_entropy: torch.Tensor
    group_modes: torch.Tensor


@torch.no_grad()
def kl_target_modes(ref_seq_logprobs: torch.Tensor, rewards, group_ids, beta: float) -> KlModesResult:
    """Per-group entropy of softmax(log pi_ref(y_i) + R_i / beta) over each group's completions.

    ref_seq_logprobs: (N,) sequence log-probs under the reference policy; rewards: (N,);
    group_ids: (N,) labels (tensor, array or list); beta: KL coefficient > 0.
    """
    ref = _validate.float_tensor(ref_seq_logprobs, "ref_seq_logprobs")
    if ref.ndim != 1:
        raise InputError(f"ref_seq_logprobs: expected shape (N,) (one per completion), got {tuple(ref.shape)}")
    n = ref.shape[0]
    reward = _float64_vector(rewards, "rewards")
    if reward.shape != (n,):
        raise InputError(f"rewards: expected shape ({n},) (one per completion), got {tuple(reward.shape)}")
    beta = _validate.positive_number(beta, "beta")
    labels = _labels(group_ids, n)
    everything = torch.ones(n, dtype=torch.bool)
    _validate.finite_at(ref, everything, "ref_seq_logprobs")
    _validate.finite_at(reward, everything, "rewards")

    group_labels, inverse = np.unique(labels, return_inverse=True)
    index = torch.as_tensor(inverse, dtype=torch.int64)  # (N,) group of each completion
    n_groups = len(group_labels)
    score = ref.double().cpu() + reward / beta  # (N,) u_i
    group_max = torch.full((n_groups,), -torch.inf, dtype=torch.float64).scatter_reduce(0, index, score, "amax")
    shifted = score - group_max[index]  # (N,) <= 0
    weight = shifted.exp()  # (N,)
    total = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, index, weight)  # (G,)
    weighted = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, index, weight * shifted)  # (G,)
    group_entropy = (total.log() - weighted / total).clamp(min=0.0)  # H = log S - sum(p * s)
    group_modes = group_entropy.exp()
    stats = KlModeStats(n_groups=n_groups, sum_entropy=float(group_entropy.sum()), sum_modes=float(group_modes.sum()))
    return KlModesResult(stats.compute(), stats, group_labels, group_entropy, group_modes)


def _labels(group_ids, n):
    if isinstance(group_ids, torch.Tensor):
        group_ids = group_ids.detach().cpu().numpy()
    labels = np.asarray(group_ids)
    if labels.ndim != 1 or len(labels) != n:
        raise InputError(f"group_ids: expected shape ({n},) (one per completion), got {labels.shape}")
    if labels.dtype == object:
        labels = np.array([str(v) for v in labels])
    return labels


def _float64_vector(values, name):
    if isinstance(values, torch.Tensor):
        if values.is_complex() or values.dtype == torch.bool:
            raise InputError(f"{name}: expected real numbers, got dtype {values.dtype}")
        return values.detach().double().cpu()
    try:
        return torch.as_tensor(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise InputError(f"{name}: expected a sequence of numbers, got {type(values).__name__} ({error})") from None
