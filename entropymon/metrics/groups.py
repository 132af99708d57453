"""Group (prompt) metrics: zero-variance groups, pass@k, answer and text diversity, lengths.

Why: GRPO-style trainers compare completions of the same prompt. When a group's rewards all agree
its advantages are zero and it teaches nothing; when pass@k converges to pass@1 and completions
become copies of each other, exploration has collapsed even if the mean reward still rises.
Completion-level values are reduced with numpy group-by (sort + reduceat); only the text n-gram
sets are built per completion.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from entropymon.errors import InputError
from entropymon.metrics.stats import GroupStats

DISTINCT_N = (1, 2, 3, 4)


@dataclass
class GroupSummary:
    """metrics: registry name -> value; stats: GroupStats; group_ids: (G,) the groups in order;
    group_sizes, group_correct: (G,) samples and successes per group."""

    metrics: dict
    stats: GroupStats
    group_ids: np.ndarray
    group_sizes: np.ndarray
    group_correct: np.ndarray


def pass_at_k(n, c, k):
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021).

    Product form, stable for large n: C(n-c, k)/C(n, k) = prod_{i=n-c+1..n} (1 - k/i), summed in log
    space with log1p and telescoped through prefix sums, so arrays need no Python loop.
    n, c: ints or integer arrays (broadcast); k: int >= 1. Requires 0 <= c <= n and n >= k.
    Returns a float for scalar input, else an array.
    """
    scalar = np.ndim(n) == 0 and np.ndim(c) == 0
    n_arr, c_arr = np.broadcast_arrays(_as_counts(n, "n"), _as_counts(c, "c"))
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k: expected an integer >= 1, got {k!r}")
    if np.any(c_arr > n_arr):
        bad = c_arr > n_arr
        raise InputError(f"c: expected 0 <= c <= n, got c = {c_arr[bad][0]} with n = {n_arr[bad][0]}")
    if np.any(n_arr < k):
        raise InputError(f"n: expected n >= k = {k} samples, got n = {n_arr[n_arr < k].min()}")
    # L[i] = sum_{j=k+1..i} log1p(-k/j); the terms with j <= k are never used (n - c < k gives 1)
    top = int(n_arr.max()) if n_arr.size else 0
    j = np.arange(1, top + 1, dtype=np.float64)
    terms = np.where(j > k, np.log1p(-k / np.maximum(j, k + 1)), 0.0)
    prefix = np.concatenate([[0.0], np.cumsum(terms)])  # prefix[i] = L[i]
    log_ratio = prefix[n_arr] - prefix[n_arr - c_arr]
    result = np.where(n_arr - c_arr < k, 1.0, -np.expm1(log_ratio))
    return float(result) if scalar else result


def group_stats(rewards, group_ids, *, correct=None, answers=None, texts=None, lengths=None, advantages=None,
                pass_k=(1, 4, 8), success_threshold: float | None = None, tokenize: str = "whitespace",
                overlap_n: int = 2, zero_std_atol: float = 1e-8) -> GroupSummary:
    """Group metrics of one batch of N completions.

    rewards: (N,) numbers; group_ids: (N,) hashable labels (the prompt of each completion).
    correct: (N,) bool; default ``reward > 0`` (the usual 0/1 or -1/1 verifier reward), or
    ``reward >= success_threshold`` when a threshold is given. answers: (N,) final answers (distinct
    answers / group size). texts: (N,) strings, split on whitespace (``tokenize="whitespace"``) or
    into characters (``"char"``), or token-id sequences; they give distinct-n (n = 1..4: distinct
    n-grams / total n-grams over the group) and the mean pairwise Jaccard overlap of the
    completions' ``overlap_n``-gram sets (a completion shorter than ``overlap_n`` counts as one gram). lengths,
    advantages: (N,) per completion. A group's rewards have zero std when max - min <= zero_std_atol.
    pass@k is averaged over the groups with at least k completions.
    """
    reward = _as_vector(rewards, "rewards", None)
    n_items = len(reward)
    labels = _as_labels(group_ids, n_items)
    group_labels, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])  # (G,) group start in `order`
    sizes = np.bincount(inverse)  # (G,)

    if correct is None:
        success = reward > 0 if success_threshold is None else reward >= float(success_threshold)
    else:
        success = _as_vector(correct, "correct", n_items).astype(bool)
    n_correct = np.bincount(inverse, weights=success.astype(np.float64)).astype(np.int64)  # (G,)
    spread = np.maximum.reduceat(reward[order], starts) - np.minimum.reduceat(reward[order], starts)

    stats = GroupStats(n_groups=len(sizes), n_zero_std=int((spread <= zero_std_atol).sum()),
                       reward_n=n_items, reward_sum=float(reward.sum()), reward_sumsq=float((reward * reward).sum()))
    for k in pass_k:
        eligible = sizes >= k
        values = pass_at_k(sizes[eligible], n_correct[eligible], k) if eligible.any() else np.zeros(0)
        stats.pass_at[int(k)] = (float(np.sum(values)), int(eligible.sum()))
    if advantages is not None:
        adv = _as_vector(advantages, "advantages", n_items)
        stats.advantage_n = n_items
        stats.advantage_sum, stats.advantage_sumsq = float(adv.sum()), float((adv * adv).sum())
    if lengths is not None:
        length = _as_vector(lengths, "lengths", n_items)
        stats.length_n = n_items
        stats.length_sum, stats.length_sumsq = float(length.sum()), float((length * length).sum())
        stats.length_min, stats.length_max = float(length.min()), float(length.max())
    if answers is not None:
        answer_labels = _as_labels(answers, n_items, "answers")
        distinct = [len(set(answer_labels[order[s:s + size]].tolist())) / size for s, size in zip(starts, sizes)]
        stats.distinct_answer_sum, stats.distinct_answer_n = float(sum(distinct)), len(distinct)
    if texts is not None:
        _add_text_diversity(stats, _tokenized(texts, n_items, tokenize), order, starts, sizes, overlap_n)
    return GroupSummary(stats.compute(), stats, group_labels, sizes, n_correct)


def ngrams(tokens, n: int) -> list:
    """The list of n-grams (tuples) of a token sequence."""
    return list(zip(*(tokens[i:] for i in range(n))))


def _add_text_diversity(stats, token_lists, order, starts, sizes, overlap_n):
    distinct = {n: [0.0, 0] for n in DISTINCT_N}
    overlap_sum, overlap_groups = 0.0, 0
    for start, size in zip(starts, sizes):
        members = [token_lists[i] for i in order[start:start + size]]
        for n in DISTINCT_N:
            grams = [g for tokens in members for g in ngrams(tokens, n)]
            if grams:
                distinct[n][0] += len(set(grams)) / len(grams)
                distinct[n][1] += 1
        if size >= 2:
            # a completion shorter than overlap_n is its own single gram: otherwise every pair of
            # short answers ("57" vs "58") would have two empty sets and read as identical
            sets = [set(ngrams(tokens, overlap_n)) or {tuple(tokens)} for tokens in members]
            pairs = [_jaccard(a, b) for a, b in combinations(sets, 2)]
            overlap_sum += sum(pairs) / len(pairs)
            overlap_groups += 1
    stats.distinct = {n: (total, count) for n, (total, count) in distinct.items()}
    stats.overlap_sum, stats.overlap_n = overlap_sum, overlap_groups


def _jaccard(a: set, b: set) -> float:
    union = len(a | b)
    return 1.0 if union == 0 else len(a & b) / union


def _tokenized(texts, n_items, tokenize):
    if len(texts) != n_items:
        raise InputError(f"texts: expected {n_items} entries (one per reward), got {len(texts)}")
    if tokenize not in ("whitespace", "char"):
        raise InputError(f"tokenize: expected 'whitespace' or 'char', got {tokenize!r}")
    out = []
    for text in texts:
        if isinstance(text, str):
            out.append(text.split() if tokenize == "whitespace" else list(text))
        else:
            out.append([int(t) for t in np.asarray(text).reshape(-1)])  # token ids
    return out


def _as_vector(values, name, expected_len):
    array = _to_numpy(values)
    if array.ndim != 1:
        raise InputError(f"{name}: expected a 1-D sequence (one value per completion), got shape {array.shape}")
    if expected_len is not None and len(array) != expected_len:
        raise InputError(f"{name}: expected length {expected_len} (one per reward), got {len(array)}")
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"{name}: expected numbers, got dtype {array.dtype}")
    array = array.astype(np.float64) if array.dtype != bool else array
    if len(array) == 0:
        raise InputError(f"{name}: expected at least one completion, got an empty sequence")
    if array.dtype != bool and not np.isfinite(array).all():
        raise InputError(f"{name}: expected finite values, got NaN/inf at {int((~np.isfinite(array)).sum())} positions")
    return array


def _as_labels(values, expected_len, name="group_ids"):
    array = _to_numpy(values)
    if array.ndim != 1:
        raise InputError(f"{name}: expected a 1-D sequence of labels, got shape {array.shape}")
    if len(array) != expected_len:
        raise InputError(f"{name}: expected length {expected_len} (one per reward), got {len(array)}")
    if array.dtype == object:
        array = np.array([str(v) for v in array])  # mixed/None labels compare as text
    return array


def _to_numpy(values):
    if hasattr(values, "detach"):  # torch tensor, without importing torch
        values = values.detach().cpu()
        values = (values.double() if values.is_floating_point() else values).numpy()
    return np.asarray(values)


def _as_counts(values, name):
    array = np.asarray(values)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        if not (np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array))):
            raise InputError(f"{name}: expected non-negative integers, got {values!r}")
    array = array.astype(np.int64)
    if np.any(array < 0):
        raise InputError(f"{name}: expected non-negative integers, got {values!r}")
    return array
