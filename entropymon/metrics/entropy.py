"""Exact per-position token entropy (and the sampled token's log-prob) of a policy's logits.

Why its own module: this is the one computation that touches the full ``(..., V)`` logits, which
for a 150k vocabulary are the largest tensor in a training step. A naive
``softmax(z) * log_softmax(z)`` makes several full-size float32 temporaries (gigabytes on a GPU,
hundreds of megabytes on a CPU). Here the rows are processed in chunks sized from a small fixed
scratch budget; per chunk, passes over the cache-resident buffers compute the row max, the shifted
logits, their exponentials and two row sums, and the entropy is formed from those sums at the end:

    s = z/tau - max(z/tau)        S = sum(exp(s))
    H = log S - sum(exp(s) * s) / S            log pi(y) = s[y] - log S

Everything is accumulated in float32 (float64 for float64 input), so bf16/fp16 logits and
logits of +-1e4 are exact to float32 rounding. s is floored at ``S_FLOOR`` before exp (see there):
a ``-inf`` logit (a masked vocabulary slot, a banned token) is a token of probability 0 that adds
nothing to the entropy, which stays finite. Only NaN, ``+inf`` and rows that are ``-inf``
everywhere (no distribution at all) are bad input. These are observations of the policy, never part
of its loss: no autograd graph is built.
"""

from __future__ import annotations

import torch

from entropymon.errors import InputError
from entropymon.metrics._validate import bool_mask, positive_number

# Scratch memory for the two float32 work buffers of one chunk. On a CPU a chunk that fits in the
# L2 cache keeps the passes over it cache-resident: 1 MiB (4 rows of a 32k vocabulary) was the
# fastest of 256 KiB..4 MiB with 1 and 2 threads (benchmarks/README.md); on a GPU large
# chunks amortise kernel launches.
CPU_SCRATCH_BYTES = 2**20
GPU_SCRATCH_BYTES = 512 * 2**20
# s = (z - max z)/tau is floored here before exp. exp(-80) = 1.8e-35 adds at most V * 80 * 1.8e-35
# (< 1e-28 for any vocabulary) to S >= 1 and to sum exp(s) * s: nothing at float32 or float64
# precision. It makes a -inf logit (probability 0) contribute 0 instead of exp(-inf) * -inf = NaN,
# and keeps exp off its slow underflow path: exp of values below -88 (masked slots, peaked
# policies at low temperature) ran 20-90x slower than exp of ordinary values (benchmarks/README.md).
S_FLOOR = -80.0


@torch.no_grad()
def token_entropy(logits: torch.Tensor, temperature: float = 1.0, mask: torch.Tensor | None = None,
                  *, scratch_bytes: int | None = None) -> torch.Tensor:
    """Entropy in nats of ``softmax(logits / temperature)`` at every position.

    logits: (..., V) floating; mask: (...) bool or 0/1, False positions are skipped and return 0.
    Returns a float32 tensor of shape ``logits.shape[:-1]`` (0 <= H <= log V). ``-inf`` logits are
    allowed (probability 0). Raises InputError on bad shapes/dtypes/temperature (including one so
    small that ``1/temperature`` overflows the working dtype), an all-false mask, or NaN / +inf
    logits or an all ``-inf`` row at valid positions (find them first with ``nonfinite_rows`` to
    mask such rows instead).
    """
    entropy, _ = _entropy_pass(logits, None, temperature, mask, scratch_bytes)
    return entropy


@torch.no_grad()
def token_entropy_and_logprob(logits: torch.Tensor, token_ids: torch.Tensor, temperature: float = 1.0,
                              mask: torch.Tensor | None = None, *,
                              scratch_bytes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(entropy, logprob)`` in one chunked pass: logprob is log pi(token_ids) at the temperature.

    logits: (..., V) with at least 2 dims; token_ids: (...) integer in [0, V). Both outputs are
    float32 of shape ``logits.shape[:-1]``, 0 at masked positions.
    """
    return _entropy_pass(logits, token_ids, temperature, mask, scratch_bytes)


@torch.no_grad()
def nonfinite_rows(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Bool tensor of shape ``x.shape[:-1]``: True where a valid row has no entropy to compute.

    That is a row holding NaN or ``+inf``, or a row that is ``-inf`` everywhere; a row with some
    ``-inf`` slots (a masked vocabulary) is fine. Cheap: one read of ``x`` (a row sum is
    non-finite exactly when the row holds a non-finite value, unless finite values overflow, so
    only rows whose sum is non-finite are re-checked element-wise). Masked rows are reported
    False. The streaming layer uses it to apply its ``nan_policy`` before calling ``token_entropy``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise InputError(f"x: expected a tensor with at least 1 dimension, got {_describe(x)}")
    if mask is not None:
        mask = bool_mask(mask, x.shape[:-1], "mask", " (x.shape[:-1])")
    if not (x.is_floating_point() or x.is_complex()):
        return torch.zeros(x.shape[:-1], dtype=torch.bool, device=x.device)
    row_sums = x.detach().sum(-1)  # (...)
    bad = ~torch.isfinite(row_sums)
    if bad.any():
        # confirm element-wise on the suspect rows only (a sum of huge finite values may overflow)
        suspects = x.detach()[bad]  # (n, V)
        no_distribution = torch.isnan(suspects) | (suspects == float("inf"))
        bad[bad.clone()] = no_distribution.any(-1) | (suspects == -float("inf")).all(-1)
    if mask is not None:
        bad &= mask
    return bad


def _entropy_pass(logits, token_ids, temperature, mask, scratch_bytes):
    _check_logits(logits, need_rows=token_ids is not None)
    inv_temperature = 1.0 / positive_number(temperature, "temperature")
    lead_shape, vocab = logits.shape[:-1], logits.shape[-1]
    work_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    if inv_temperature > torch.finfo(work_dtype).max:
        raise InputError(
            f"temperature: expected a value whose inverse fits {work_dtype} (temperature > "
            f"{1 / torch.finfo(work_dtype).max:.3g}), got {temperature!r}: logits/temperature overflows"
        )
    mask = None if mask is None else bool_mask(mask, lead_shape, "mask", " (logits.shape[:-1])")
    if token_ids is not None:
        _check_token_ids(token_ids, lead_shape, vocab, mask)

    rows = logits.detach().reshape(-1, vocab)  # (N, V), a view when logits are contiguous
    n_rows = rows.shape[0]
    valid = None if mask is None else mask.reshape(-1)  # (N,)
    ids = None if token_ids is None else token_ids.reshape(-1)  # (N,)
    if ids is not None and valid is not None:
        ids = ids.clamp(0, vocab - 1)  # padding ids (e.g. -100) at masked rows a chunk still computes
    if n_rows == 0:
        raise InputError(f"logits: expected at least one position, got shape {tuple(logits.shape)}")
    if valid is not None and not bool(valid.any()):
        raise InputError(f"mask: expected at least one True position, got all {n_rows} positions masked out")

    budget = scratch_bytes or (GPU_SCRATCH_BYTES if logits.device.type != "cpu" else CPU_SCRATCH_BYTES)
    chunk = max(1, min(n_rows, int(budget) // (2 * vocab * torch.finfo(work_dtype).bits // 8)))
    scratch = _Scratch(chunk, vocab, work_dtype, logits.device)

    # per-row sums, reduced to entropy once at the end: rows never computed keep S = 1, sum = 0
    total = torch.ones(n_rows, dtype=work_dtype, device=logits.device)  # (N,) S = sum exp(s)
    weighted = torch.zeros(n_rows, dtype=work_dtype, device=logits.device)  # (N,) sum exp(s) * s
    picked = torch.zeros(n_rows, dtype=work_dtype, device=logits.device) if ids is not None else None  # (N,) s[y]
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        if valid is not None:
            block_valid = valid[start:stop]
            n_valid = int(block_valid.sum())
            if n_valid == 0:
                continue
            if 2 * n_valid < stop - start:  # mostly padding: gather the valid rows (chunk-bounded copy)
                where = start + block_valid.nonzero().squeeze(-1)
                sums = _chunk_sums(rows[where], None if ids is None else ids[where], inv_temperature, scratch)
                total[where], weighted[where] = sums[0], sums[1]
                if picked is not None:
                    picked[where] = sums[2]
                continue
        where = slice(start, stop)
        _chunk_sums(rows[where], None if ids is None else ids[where], inv_temperature, scratch,
                    out=(total[where], weighted[where], None if picked is None else picked[where]))

    log_total = total.log()  # (N,)
    entropy = log_total - weighted / total  # H = log S - sum(exp(s) * s) / S
    if valid is not None:
        entropy.masked_fill_(~valid, 0.0)
    _raise_on_nonfinite(entropy, rows, lead_shape)
    logprob = None if picked is None else picked - log_total  # log pi(y) = s[y] - log S
    if logprob is not None and valid is not None:
        logprob.masked_fill_(~valid, 0.0)
    entropy.clamp_(min=0.0)  # rounding can give -1e-7 for a one-hot row
    entropy = entropy.to(torch.float32).reshape(lead_shape)
    if logprob is not None:
        logprob = logprob.to(torch.float32).reshape(lead_shape)
    return entropy, logprob


class _Scratch:
    """The fixed work buffers of one chunk: shifted logits s and exp(s), (C, V), and the row max (C, 1)."""

    def __init__(self, rows: int, vocab: int, dtype: torch.dtype, device: torch.device):
        self.shifted = torch.empty(rows, vocab, dtype=dtype, device=device)  # (C, V)
        self.exps = torch.empty_like(self.shifted)  # (C, V)
        self.row_max = torch.empty(rows, 1, dtype=dtype, device=device)  # (C, 1)


def _chunk_sums(block, block_ids, inv_temperature, scratch: _Scratch, out=None):
    """(S, sum exp(s) * s, s[y]) of the rows of block (R, V), s = (z - max z)/tau, in float32/64.

    Six passes over a cache-sized chunk, all into preallocated buffers (``out`` when given):
    max, shift, floor, exp, two row sums; the product is formed in place in the shifted buffer.
    """
    n = block.shape[0]
    shifted, exps, row_max = scratch.shifted[:n], scratch.exps[:n], scratch.row_max[:n]  # (R, V), (R, 1)
    if block.dtype == shifted.dtype:
        torch.amax(block, -1, keepdim=True, out=row_max)
        torch.sub(block, row_max, out=shifted)
    else:  # bf16/fp16: convert first, so the subtraction is done in float32
        shifted.copy_(block)
        torch.amax(shifted, -1, keepdim=True, out=row_max)
        shifted.sub_(row_max)
    if inv_temperature != 1.0:
        shifted.mul_(inv_temperature)  # (z - max z)/tau == z/tau - max(z/tau) for tau > 0
    total_out, weighted_out, picked_out = out if out is not None else (None, None, None)
    picked = None
    if block_ids is not None:
        picked = shifted.gather(1, block_ids.unsqueeze(-1)).squeeze(-1)  # (R,) s[y], before the floor
        if picked_out is not None:
            picked_out.copy_(picked)
    shifted.clamp_(min=S_FLOOR)  # log pi(y) above keeps its true value; NaN stays NaN
    torch.exp(shifted, out=exps)
    total = torch.sum(exps, -1, out=total_out) if total_out is not None else exps.sum(-1)  # (R,) S >= 1
    shifted.mul_(exps)  # (R, V) exp(s) * s
    weighted = torch.sum(shifted, -1, out=weighted_out) if weighted_out is not None else shifted.sum(-1)  # (R,)
    return total, weighted, picked


def _raise_on_nonfinite(entropy, rows, lead_shape):
    bad = ~torch.isfinite(entropy)  # (N,) only valid rows can be non-finite: masked rows are 0
    n_bad = int(bad.sum())
    if n_bad:
        first = bad.nonzero()[0, 0].item()
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(first), lead_shape)) if lead_shape else ()
        bad_rows = rows[bad]  # (n_bad, V)
        n_nan = int(torch.isnan(bad_rows).any(-1).sum())
        n_posinf = int((bad_rows == float("inf")).any(-1).sum())
        n_neginf = int((bad_rows == -float("inf")).all(-1).sum())
        found = ", ".join(f"{count} with {what}" for count, what in
                          ((n_nan, "NaN"), (n_posinf, "+inf"), (n_neginf, "-inf in every slot")) if count)
        raise InputError(
            f"logits: expected finite values or -inf in some slots, got {n_bad} of {entropy.numel()} "
            f"positions without a distribution ({found or 'NaN/inf'}; first at index {index}); mask those "
            "rows (see entropymon.metrics.entropy.nonfinite_rows) or let the monitor's nan_policy skip them"
        )


def _check_logits(logits, need_rows):
    if not isinstance(logits, torch.Tensor):
        raise InputError(f"logits: expected a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise InputError(f"logits: expected a floating dtype (float32, bfloat16, float16, float64), got {logits.dtype}")
    min_rank = 2 if need_rows else 1
    if logits.ndim < min_rank:
        raise InputError(f"logits: expected at least {min_rank} dimensions (..., V), got shape {tuple(logits.shape)}")
    if logits.shape[-1] == 0:
        raise InputError(f"logits: expected a vocabulary dimension V >= 1, got shape {tuple(logits.shape)}")


def _check_token_ids(token_ids, shape, vocab, mask):
    if not isinstance(token_ids, torch.Tensor):
        raise InputError(f"token_ids: expected an integer torch.Tensor, got {type(token_ids).__name__}")
    if token_ids.is_floating_point() or token_ids.is_complex() or token_ids.dtype == torch.bool:
        raise InputError(f"token_ids: expected an integer dtype, got {token_ids.dtype}")
    if tuple(token_ids.shape) != tuple(shape):
        raise InputError(f"token_ids: expected shape {tuple(shape)} (logits.shape[:-1]), got {tuple(token_ids.shape)}")
    checked = token_ids if mask is None else token_ids[mask]  # padding ids at masked positions are ignored
    if checked.numel():
        low, high = int(checked.min()), int(checked.max())
        if low < 0 or high >= vocab:
            raise InputError(f"token_ids: expected values in [0, {vocab - 1}] (V = {vocab}), got range [{low}, {high}]")


def _describe(x):
    return f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
