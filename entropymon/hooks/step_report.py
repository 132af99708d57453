"""One finished step's rows: the steps-table row, the samples rows and the sampled token rows.

Runs on the worker thread over the step's joined batch (host_batch.py), calling each metric
family of ``entropymon.metrics`` once. The steps row holds the metric values and the ``stat/``
sufficient statistics, so the reader can combine ranks exactly.

Token rows are opt-in detail (one row per token is far more than one row per step), so they are
sampled: every ``token_rows_every`` steps, the first ``token_rows_per_step`` sequences of the step
in the order the trainer observed them. Deterministic on purpose, so two runs (or two ranks)
sample comparable tokens and a test can say exactly which rows must exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from entropymon.hooks.host_batch import HostBatch
from entropymon.hooks.settings import MonitorSettings
from entropymon.metrics.covariance import logprob_advantage_cov
from entropymon.metrics.entropy_stats import entropy_stats
from entropymon.metrics.groups import group_stats
from entropymon.metrics.importance import importance_ess
from entropymon.metrics.kl_modes import kl_target_modes


@dataclass
class StepReport:
    step_row: dict  # registry name -> value, plus stat/ columns
    samples: dict | None  # samples-table columns, one entry per completion
    tokens: dict | None  # tokens-table columns


def step_report(batch: HostBatch, *, step: int, settings: MonitorSettings) -> StepReport:
    families = settings.families
    row: dict = {}
    with_tokens = wants_token_rows(step, settings.token_rows_every, settings.token_rows_per_step)
    entropy_summary = None
    if "entropy" in families and (batch.entropies is not None or batch.logprobs is not None):
        entropy_summary = entropy_stats(batch.entropies, batch.mask, batch.logprobs)
        _add(row, entropy_summary)
        if batch.entropies is not None:
            row["entropy_temperature"] = settings.temperature
    token_cov = None
    if "covariance" in families and batch.logprobs is not None and batch.advantages_token is not None:
        covariance = logprob_advantage_cov(batch.logprobs, batch.advantages_token, batch.mask, per_token=with_tokens)
        _add(row, covariance)
        token_cov = covariance.per_token
    lengths = batch.mask.sum(dim=1) if batch.mask is not None else None  # (B,)
    if families & {"rewards", "groups", "diversity"}:
        _add_group_metrics(row, batch, lengths, settings)
    if "importance" in families and batch.logprobs is not None and batch.old_logprobs is not None:
        _add(row, importance_ess(batch.logprobs, batch.old_logprobs, batch.mask))
    if ("kl" in families and batch.ref_logprobs is not None and batch.rewards is not None
            and batch.group_ids is not None and batch.kl_beta is not None):
        _add(row, kl_target_modes(batch.ref_logprobs, batch.rewards, batch.group_ids, batch.kl_beta))
    if batch.lr is not None:
        row["lr"] = batch.lr
    samples = _sample_rows(batch, lengths, entropy_summary) if "samples" in families else None
    tokens = None
    if with_tokens:
        tokens = token_rows(batch, token_cov, per_step=settings.token_rows_per_step, decode=settings.decode)
    return StepReport(row, samples, tokens)


def _add(row: dict, result) -> None:
    row.update(result.metrics)
    row.update(result.stats.to_columns())


def _add_group_metrics(row: dict, batch: HostBatch, lengths, settings: MonitorSettings) -> None:
    """Rewards, advantages, lengths ("rewards"); per-group metrics ("groups", "diversity")."""
    families = settings.families
    per_group = batch.group_ids is not None and batch.rewards is not None and "groups" in families
    diversity = batch.group_ids is not None and batch.texts is not None and "diversity" in families
    per_completion = "rewards" in families and (batch.rewards is not None or batch.advantages is not None
                                                or lengths is not None)
    if not (per_group or diversity or per_completion):
        return
    n_seq = batch.n_sequences
    # group_stats needs rewards and groups; stand-ins are used where they are missing and the
    # parts they would feed are zeroed below, so only real numbers reach the row
    summary = group_stats(
        batch.rewards if batch.rewards is not None else np.zeros(n_seq),
        batch.group_ids if per_group or diversity else np.arange(n_seq),
        answers=batch.answers if per_group else None,
        texts=batch.texts if diversity else None,
        lengths=lengths if per_completion else None,
        advantages=batch.advantages if per_completion else None,
        pass_k=settings.pass_k if per_group else (),
        success_threshold=settings.success_threshold,
    )
    stats = summary.stats
    if not per_group:
        stats = replace(stats, n_groups=0, n_zero_std=0, pass_at={}, distinct_answer_sum=0.0, distinct_answer_n=0)
    if not diversity:
        stats = replace(stats, distinct={}, overlap_sum=0.0, overlap_n=0)
    if not (per_completion and batch.rewards is not None):
        stats = replace(stats, reward_n=0, reward_sum=0.0, reward_sumsq=0.0)
    row.update(stats.compute())
    row.update(stats.to_columns())


def _sample_rows(batch: HostBatch, lengths, entropy_summary) -> dict | None:
    n_seq = batch.n_sequences
    if n_seq == 0:
        return None
    nan = [float("nan")] * n_seq
    columns = {
        "sample_id": list(range(n_seq)),
        "group_id": _group_labels(batch.group_ids) if batch.group_ids is not None else [-1] * n_seq,
        "reward": batch.rewards.tolist() if batch.rewards is not None else nan,
        "advantage": batch.advantages.tolist() if batch.advantages is not None else nan,
        "length": lengths.tolist() if lengths is not None else [-1] * n_seq,
        "entropy_mean": nan, "entropy_max": nan,
    }
    if entropy_summary is not None and entropy_summary.sequence_mean is not None:
        columns["entropy_mean"] = entropy_summary.sequence_mean.double().tolist()
        columns["entropy_max"] = entropy_summary.sequence_max.double().tolist()
    for name, values in (("text", batch.texts), ("answer", batch.answers), ("prompt", batch.prompts)):
        if values is not None:
            columns[name] = [None if value is None else str(value) for value in values]
    return columns


def _group_labels(group_ids: list) -> list:
    """Integer ids stay integers; anything else (prompt strings, tuples) is written as text."""
    if all(isinstance(g, (int, np.integer)) and not isinstance(g, bool) for g in group_ids):
        return [int(g) for g in group_ids]
    return [str(g) for g in group_ids]


# -- the sampled token rows -------------------------------------------------------------------------

def wants_token_rows(step: int, every: int, per_step: int) -> bool:
    """Token rows are written at steps 0, every, 2*every, ...; never when every or per_step is 0."""
    return every > 0 and per_step > 0 and step % every == 0


def token_rows(batch: HostBatch, token_cov: torch.Tensor | None, *, per_step: int,
               decode: Callable | None = None) -> dict[str, list] | None:
    """Columns of the tokens table for the valid tokens of the first ``per_step`` sequences.

    ``token_cov`` (B, T) is each token's Cov_i (None when log-probs or advantages are missing).
    Returns None when the batch has no per-token data.
    """
    if batch.mask is None:
        return None
    n_seq = min(per_step, batch.mask.shape[0])
    mask = batch.mask[:n_seq]  # (k, T)
    sample_id, position = torch.nonzero(mask, as_tuple=True)  # (N,), (N,) in row-major order
    columns = {"sample_id": sample_id.tolist(), "position": position.tolist()}
    columns["token_id"] = _column(batch.token_ids, n_seq, mask, fill=-1, dtype=torch.int64)
    if decode is not None and batch.token_ids is not None:
        columns["token_text"] = [_decode_one(decode, token) for token in columns["token_id"]]
    columns["entropy"] = _column(batch.entropies, n_seq, mask)
    columns["logprob"] = _column(batch.logprobs, n_seq, mask)
    columns["advantage"] = _column(batch.advantages_token, n_seq, mask)
    columns["cov"] = _column(token_cov, n_seq, mask)
    return columns


def _column(values: torch.Tensor | None, n_seq: int, mask: torch.Tensor, *, fill=float("nan"),
            dtype=torch.float64) -> list:
    if values is None:
        return [fill] * int(mask.sum())
    return values[:n_seq][mask].to(dtype).tolist()


def _decode_one(decode: Callable, token_id: int) -> str:
    text = decode(token_id) if token_id >= 0 else ""
    return text if isinstance(text, str) else str(text)
