"""Which tokens get a row in the ``tokens`` table, and what the row holds.

Token rows are opt-in detail (one row per token is far more than one row per step), so they are
sampled: every ``every`` steps, the first ``k`` sequences of the step in the order the trainer
observed them. Deterministic on purpose, so two runs (or two ranks) sample comparable tokens and
a test can say exactly which rows must exist.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from entropymon.hooks.host_batch import HostBatch


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
