"""Every steps-table name the metric functions emit is registered (with a description and a unit)."""

import numpy as np
import pandas as pd
import torch

from entropymon.metrics.covariance import logprob_advantage_cov
from entropymon.metrics.entropy_change import entropy_change_stats
from entropymon.metrics.entropy_stats import entropy_stats
from entropymon.metrics.groups import group_stats
from entropymon.metrics.importance import importance_ess
from entropymon.metrics.kl_modes import kl_target_modes
from entropymon.metrics.stats import STATS_CLASSES, combine_ranks
from entropymon.registry import describe_metric, is_registered


def every_metric_result(seed):
    """One result of every metric function, on a batch that exercises every optional input."""
    generator = torch.Generator().manual_seed(seed)
    entropy = torch.rand(8, 20, generator=generator, dtype=torch.float64) * 4  # (B, T)
    logprobs = -torch.rand(8, 20, generator=generator, dtype=torch.float64) * 4
    mask = torch.rand(8, 20, generator=generator) > 0.2
    advantages = torch.randn(8, generator=generator, dtype=torch.float64)
    rewards = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    groups = [0, 0, 0, 0, 1, 1, 1, 1]
    texts = ["a b c d e", "a b c", "x y", "a b", "q", "q q q q q", "r s t u", "r s"]
    return [
        entropy_stats(entropy, mask, logprobs),
        logprob_advantage_cov(logprobs, advantages, mask),
        group_stats(rewards, groups, answers=texts, texts=texts, lengths=mask.sum(-1), advantages=advantages,
                    pass_k=(1, 2, 4, 8)),
        importance_ess(logprobs, logprobs + 0.1 * torch.randn(8, 20, generator=generator, dtype=torch.float64), mask),
        kl_target_modes(logprobs.sum(-1), rewards, groups, 0.5),
        entropy_change_stats(0.1 * torch.randn(8, 20, generator=generator, dtype=torch.float64),
                             0.1 * torch.randn(8, 20, generator=generator, dtype=torch.float64), entropy, mask,
                             advantages.round(), logprobs),
    ]


def emitted_names(seed=0):
    names = set()
    for result in every_metric_result(seed):
        names |= set(result.metrics) | set(result.stats.to_columns())
    return names


def test_every_emitted_metric_and_stat_column_is_registered_with_a_description():
    names = emitted_names()
    unregistered = sorted(name for name in names if not is_registered(name))
    assert not unregistered, f"emitted but not in entropymon/registry.py: {unregistered}"
    for name in names:
        info = describe_metric(name)
        assert info.description and info.merge in {"stats", "sum", "max", "min", "first", "approx"}, name


def test_every_metric_a_stats_class_computes_is_registered_and_emitted():
    # the full set of names compute() can return is what the functions above emit (nothing unseen)
    computed = set()
    for result in every_metric_result(1):
        computed |= set(result.stats.compute())
    assert computed <= emitted_names(1)
    assert all(is_registered(name) for name in computed)
    assert {cls.family for cls in STATS_CLASSES} == {"entropy", "cov", "groups", "ess", "kl", "dh"}


def test_combine_ranks_emits_only_registered_columns():
    rows = []
    for rank in (0, 1):
        row = {"step": 3, "rank": rank}
        for result in every_metric_result(rank):
            row.update(result.metrics)
            row.update(result.stats.to_columns())
        rows.append(row)
    combined = combine_ranks(pd.DataFrame(rows))
    assert [name for name in combined.columns if not is_registered(name) and name != "n_ranks"] == []
