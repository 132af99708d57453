"""What a Monitor computes and under which rank it logs, checked once when it is built
(constructor errors fail fast).

Metric families let a user switch off what they do not need; the defaults keep the training
thread's cost to one chunked entropy pass and the worker's to a few vectorised reductions.

The rank: each rank writes its own log files, so the Monitor only needs its own rank number. It
is read from an initialised ``torch.distributed`` process group, else from the ``RANK``
environment variable that torchrun / accelerate / deepspeed set, else it is 0. Nothing here
talks to the other ranks: a failed monitor on one rank can never hang the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from entropymon.errors import InputError
from entropymon.hooks.failures import check_nan_policy
from entropymon.hooks.observation import check_temperature

# family -> what it adds to the steps table
METRIC_FAMILIES = {
    "entropy": "entropy_mean/seq_mean/quantiles/hist/forking_share, surprisal_mean",
    "covariance": "cov_logp_adv, cov_logp_piadv, Cov_i sums by advantage sign, top-token shares",
    "rewards": "reward_mean/std, advantage_mean/std, length stats",
    "groups": "zero_std_group_frac, n_groups, pass_at_k, distinct_answer_frac",
    "diversity": "distinct_n and ngram_overlap of completion texts",
    "importance": "ess_frac from old log-probs",
    "kl": "kl_target_entropy / kl_target_modes from reference log-probs and kl_beta",
    "samples": "one samples-table row per completion",
}


@dataclass(frozen=True)
class MonitorSettings:
    temperature: float = 1.0
    families: frozenset = frozenset(METRIC_FAMILIES)
    token_rows_every: int = 10  # 0 turns token rows off
    token_rows_per_step: int = 4
    pass_k: tuple = (1, 4, 8)
    success_threshold: float | None = None  # reward >= this counts as correct for pass@k
    decode: Callable | None = None  # token id -> text for the tokens table


def make_settings(*, temperature=1.0, metrics="default", token_rows_every=10, token_rows_per_step=4,
                  pass_k=(1, 4, 8), success_threshold=None, decode=None, nan_policy="warn") -> MonitorSettings:
    check_nan_policy(nan_policy)
    return MonitorSettings(
        temperature=check_temperature(temperature),
        families=_families(metrics),
        token_rows_every=_non_negative_int("token_rows_every", 0 if token_rows_every is None else token_rows_every),
        token_rows_per_step=_non_negative_int("token_rows_per_step", token_rows_per_step),
        pass_k=_pass_k(pass_k),
        success_threshold=_optional_number("success_threshold", success_threshold),
        decode=_optional_callable("decode", decode),
    )


def _families(metrics) -> frozenset:
    if metrics == "default" or metrics == "all":
        return frozenset(METRIC_FAMILIES)
    if isinstance(metrics, str) or not isinstance(metrics, Iterable):
        raise InputError(f"metrics: expected 'default' or a set of families from {sorted(METRIC_FAMILIES)}, "
                         f"got {metrics!r}")
    chosen = frozenset(metrics)
    unknown = sorted(chosen - set(METRIC_FAMILIES))
    if unknown:
        raise InputError(f"metrics: expected families from {sorted(METRIC_FAMILIES)}, got unknown {unknown}")
    return chosen


def _non_negative_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{name}: expected a non-negative int, got {value!r}")
    return value


def _pass_k(pass_k) -> tuple:
    values = tuple(pass_k) if isinstance(pass_k, Iterable) else (pass_k,)
    if not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in values):
        raise InputError(f"pass_k: expected positive ints, got {pass_k!r}")
    return tuple(sorted(set(values)))


def _optional_number(name: str, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise InputError(f"{name}: expected a number or None, got {value!r}")
    return None if value is None else float(value)


def _optional_callable(name: str, value):
    if value is not None and not callable(value):
        raise InputError(f"{name}: expected a callable (token id -> text) or None, got {type(value).__name__}")
    return value


def resolve_rank(rank: int | None = None) -> int:
    """The rank to log under: ``rank`` when given, else torch.distributed's, else ``$RANK``, else 0."""
    if rank is not None:
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
            raise InputError(f"rank: expected a non-negative int or None, got {rank!r}")
        return rank
    distributed_rank = _torch_distributed_rank()
    if distributed_rank is not None:
        return distributed_rank
    env_rank = os.environ.get("RANK", "").strip()
    if env_rank:
        if not env_rank.isdigit():
            raise InputError(f"RANK environment variable: expected a non-negative integer, got {env_rank!r}")
        return int(env_rank)
    return 0


def _torch_distributed_rank() -> int | None:
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())  # local bookkeeping of the process group, not a collective
    return None
