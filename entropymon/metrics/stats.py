"""Sufficient statistics of every step metric, and the exact combination of ranks.

Why: a mean over a batch cannot be averaged with another batch's mean, but the sums behind it
can be added. Each class here holds those sums (the torchmetrics update/compute contract):
``merge`` adds two of them exactly, ``compute`` turns them into the registry's metric values,
``to_columns``/``from_columns`` store them as ``stat/<family>_<stat>`` columns of the steps table,
so the reader can recompute a step's metrics over all ranks (``combine_ranks``) exactly as if one
process had seen the whole batch.

Quantiles and top-k shares have no finite sufficient statistic. On one batch the torch metric
functions compute them exactly; across ranks (registry ``merge="approx"``) they are recomputed
here: entropy quantiles from the merged fixed-bin histogram (linear inside a bin), covariance
top-k shares from the union of each rank's top tokens.

numpy only: the reader and the dashboard import this module, and they never need torch.
"""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

import numpy as np
import pandas as pd

from entropymon.errors import InputError
from entropymon.metrics import list_columns
from entropymon.registry import describe_metric

FORKING_THRESHOLD = 0.672  # nats; Wang et al. 2025's high-entropy "forking" token threshold
ENTROPY_QUANTILES = {"entropy_p10": 0.1, "entropy_p50": 0.5, "entropy_p80": 0.8, "entropy_p90": 0.9}
COV_TOP_FRACTIONS = {"0_02pct": 0.0002, "0_2pct": 0.002}  # Cui et al.'s 0.02% and 0.2% of tokens

# Edges of the entropy histogram bins, in nats (numpy's convention: len(edges) - 1 bins, bin i holds
# edges[i] <= H < edges[i+1]). Fine near 0, where most tokens of a collapsing policy sit, with
# 0.672 as an edge so the forking share is a bin boundary, up to 13 nats (log of a 440k
# vocabulary); the last bin [13, 22) is the overflow bin (22 > log 2^31) and also takes anything above.
ENTROPY_HIST_EDGES = np.array([
    0.0, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
    0.6, 0.672, 0.75, 0.875, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0,
    9.0, 10.0, 11.0, 12.0, 13.0, 22.0,
])
ENTROPY_HIST_EDGES.setflags(write=False)
N_ENTROPY_BINS = len(ENTROPY_HIST_EDGES) - 1


def entropy_histogram(values: np.ndarray) -> np.ndarray:
    """Counts (int64, N_ENTROPY_BINS) of values in the fixed entropy bins (out-of-range: end bins)."""
    bins = np.searchsorted(ENTROPY_HIST_EDGES, np.asarray(values, dtype=np.float64), side="right") - 1
    return np.bincount(np.clip(bins, 0, N_ENTROPY_BINS - 1), minlength=N_ENTROPY_BINS).astype(np.int64)


def histogram_quantile(hist: np.ndarray, q: float, max_value: float) -> float:
    """The q-quantile (0 < q <= 1) of values binned in ENTROPY_HIST_EDGES, linear inside its bin.

    The bin holding the maximum ends at ``max_value``; exact to the bin width.
    """
    hist = np.asarray(hist, dtype=np.float64)
    total = hist.sum()
    if total <= 0:
        return math.nan
    cumulative = np.cumsum(hist)
    target = q * total
    i = int(np.searchsorted(cumulative, target, side="left"))
    i = min(i, len(hist) - 1)
    low = ENTROPY_HIST_EDGES[i]
    high = min(ENTROPY_HIST_EDGES[i + 1], max_value)
    low = min(low, high)
    before = cumulative[i] - hist[i]
    return float(low + (target - before) / hist[i] * (high - low))


class _Stats:
    """Shared column I/O of the stats dataclasses: scalar fields become ``stat/<family>_<field>``."""

    family: ClassVar[str]

    @classmethod
    def prefix(cls) -> str:
        return f"stat/{cls.family}_"

    def to_columns(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                out[self.prefix() + f.name] = [int(v) for v in value]
            elif isinstance(value, dict):
                for key, (total, count) in sorted(value.items()):
                    out[f"{self.prefix()}{f.name}_{key}_sum"] = float(total)
                    out[f"{self.prefix()}{f.name}_{key}_n"] = int(count)
            else:
                out[self.prefix() + f.name] = value
        return out

    @classmethod
    def from_columns(cls, row) -> _Stats | None:
        """The stats stored in a row (dict or Series); None when the row has none of this family."""
        row = dict(row)
        count_key = cls.prefix() + fields(cls)[0].name
        if _missing(row.get(count_key)):
            return None
        kwargs = {}
        for f in fields(cls):
            key = cls.prefix() + f.name
            default = getattr(cls(), f.name)
            if isinstance(default, dict):
                kwargs[f.name] = _read_sum_count_columns(row, f"{cls.prefix()}{f.name}_")
            elif key not in row or _missing(row[key]):
                raise InputError(f"row: expected column {key!r} next to {count_key!r}, got it missing or null")
            elif isinstance(default, np.ndarray):
                kwargs[f.name] = np.asarray(row[key], dtype=np.int64)
            else:
                kwargs[f.name] = type(default)(row[key])
        return cls(**kwargs)

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.to_columns() == other.to_columns()

    def merge(self, other):
        """The stats of both parts: field by field sums, for a family whose every field is a count or a
        sum (a family with a maximum, a minimum or a shift merges those itself)."""
        return type(self)(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @classmethod
    def merged(cls, items):
        """All items merged into one (the empty stats when there are none)."""
        out = cls()
        for item in items:
            out = out.merge(item)
        return out


def _missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, (list, tuple, np.ndarray)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _read_sum_count_columns(row, prefix):
    pattern = re.compile(re.escape(prefix) + r"(\d+)_sum\Z")
    out = {}
    for key, value in row.items():
        match = pattern.match(key)
        if match and not _missing(value):
            count = row.get(f"{prefix}{match.group(1)}_n")
            out[int(match.group(1))] = (float(value), int(0 if _missing(count) else count))
    return out


def _add_sum_counts(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, (total, count) in b.items():
        old_total, old_count = out.get(key, (0.0, 0))
        out[key] = (old_total + total, old_count + count)
    return out


def _std(n, total, total_sq):
    """Population standard deviation (ddof=0) from n, sum and sum of squares."""
    mean = total / n
    return math.sqrt(max(total_sq / n - mean * mean, 0.0))


@dataclass(eq=False)
class EntropyStats(_Stats):
    """Token entropy of a step: counts, sums, max, forking count and the fixed-bin histogram.

    n_sequences / sum_sequence_mean give the mean over sequences of token-means; the surprisal
    fields (mean -log pi of sampled tokens) are independent of the entropy fields.
    """

    family: ClassVar[str] = "entropy"
    n_tokens: int = 0
    sum_entropy: float = 0.0
    n_sequences: int = 0
    sum_sequence_mean: float = 0.0
    n_forking: int = 0
    max_entropy: float = -math.inf
    hist: np.ndarray = field(default_factory=lambda: np.zeros(N_ENTROPY_BINS, np.int64))
    n_surprisal: int = 0
    sum_surprisal: float = 0.0

    def merge(self, other: EntropyStats) -> EntropyStats:
        return EntropyStats(
            self.n_tokens + other.n_tokens, self.sum_entropy + other.sum_entropy,
            self.n_sequences + other.n_sequences, self.sum_sequence_mean + other.sum_sequence_mean,
            self.n_forking + other.n_forking, max(self.max_entropy, other.max_entropy),
            self.hist + other.hist, self.n_surprisal + other.n_surprisal,
            self.sum_surprisal + other.sum_surprisal,
        )

    def compute(self) -> dict[str, float]:
        out = {}
        if self.n_tokens:
            out["entropy_mean"] = self.sum_entropy / self.n_tokens
            out["forking_share"] = self.n_forking / self.n_tokens
            out["entropy_max"] = float(self.max_entropy)
            for name, q in ENTROPY_QUANTILES.items():
                out[name] = histogram_quantile(self.hist, q, self.max_entropy)
            out["n_tokens"] = float(self.n_tokens)
        if self.n_sequences:
            out["entropy_seq_mean"] = self.sum_sequence_mean / self.n_sequences
            out["n_sequences"] = float(self.n_sequences)
        if self.n_surprisal:
            out["surprisal_mean"] = self.sum_surprisal / self.n_surprisal
            out.setdefault("n_tokens", float(self.n_surprisal))
        return out


@dataclass(eq=False)
class CovStats(_Stats):
    """Sums behind Cov(log pi, A), Cov(log pi, pi*A), the by-sign split and the top-token shares.

    x = log pi of a valid token, y = its advantage A, u = pi*A. ``*_pos``/``*_neg`` hold the same
    sums over tokens with A > 0 / A < 0, so the split of sum(Cov_i) uses the global means exactly.
    ``top``: fraction name -> (sum of the top tokens' Cov_i, their count), per batch.
    """

    family: ClassVar[str] = "cov"
    n: int = 0
    sum_x: float = 0.0
    sum_y: float = 0.0
    sum_xy: float = 0.0
    sum_u: float = 0.0
    sum_xu: float = 0.0
    n_pos: int = 0
    sum_x_pos: float = 0.0
    sum_y_pos: float = 0.0
    sum_xy_pos: float = 0.0
    n_neg: int = 0
    sum_x_neg: float = 0.0
    sum_y_neg: float = 0.0
    sum_xy_neg: float = 0.0
    top_0_02pct_sum: float = 0.0
    top_0_02pct_n: int = 0
    top_0_2pct_sum: float = 0.0
    top_0_2pct_n: int = 0

    def compute(self) -> dict[str, float]:
        if not self.n:
            return {}
        n, mean_x, mean_y = self.n, self.sum_x / self.n, self.sum_y / self.n
        cov = self.sum_xy / n - mean_x * mean_y
        out = {
            "cov_logp_adv": cov,
            "cov_logp_piadv": self.sum_xu / n - mean_x * self.sum_u / n,
            # sum over a subset of (x - mx)(y - my) = Sxy - my*Sx - mx*Sy + k*mx*my
            "cov_sum_pos_adv": (self.sum_xy_pos - mean_y * self.sum_x_pos - mean_x * self.sum_y_pos
                                + self.n_pos * mean_x * mean_y),
            "cov_sum_neg_adv": (self.sum_xy_neg - mean_y * self.sum_x_neg - mean_x * self.sum_y_neg
                                + self.n_neg * mean_x * mean_y),
        }
        total = cov * n  # sum of Cov_i over all valid tokens
        for name in COV_TOP_FRACTIONS:
            top_sum, top_n = getattr(self, f"top_{name}_sum"), getattr(self, f"top_{name}_n")
            if top_n and total != 0:
                out[f"cov_top_{name}_share"] = top_sum / total
        if self.top_0_02pct_n:
            out["cov_top_0_02pct_mean"] = self.top_0_02pct_sum / self.top_0_02pct_n
        return out


@dataclass(eq=False)
class GroupStats(_Stats):
    """Rewards, advantages and lengths of completions, and per-group diversity sums.

    Per-group quantities (pass@k, distinct answers, distinct-n, n-gram overlap) are stored as
    (sum over groups, number of groups it was defined for), so their mean over groups merges.
    """

    family: ClassVar[str] = "groups"
    n_groups: int = 0
    n_zero_std: int = 0
    reward_n: int = 0
    reward_sum: float = 0.0
    reward_sumsq: float = 0.0
    advantage_n: int = 0
    advantage_sum: float = 0.0
    advantage_sumsq: float = 0.0
    length_n: int = 0
    length_sum: float = 0.0
    length_sumsq: float = 0.0
    length_min: float = math.inf
    length_max: float = -math.inf
    distinct_answer_sum: float = 0.0
    distinct_answer_n: int = 0
    overlap_sum: float = 0.0
    overlap_n: int = 0
    pass_at: dict = field(default_factory=dict)  # k -> (sum over groups of pass@k, groups with >= k samples)
    distinct: dict = field(default_factory=dict)  # n -> (sum over groups of distinct-n, groups with n-grams)

    def merge(self, other: GroupStats) -> GroupStats:
        summed = {f.name: getattr(self, f.name) + getattr(other, f.name)
                  for f in fields(self) if f.name not in ("length_min", "length_max", "pass_at", "distinct")}
        return GroupStats(
            **summed,
            length_min=min(self.length_min, other.length_min),
            length_max=max(self.length_max, other.length_max),
            pass_at=_add_sum_counts(self.pass_at, other.pass_at),
            distinct=_add_sum_counts(self.distinct, other.distinct),
        )

    def compute(self) -> dict[str, float]:
        out = {}
        if self.n_groups:
            out["n_groups"] = float(self.n_groups)
            out["zero_std_group_frac"] = self.n_zero_std / self.n_groups
        if self.reward_n:
            out["reward_mean"] = self.reward_sum / self.reward_n
            out["reward_std"] = _std(self.reward_n, self.reward_sum, self.reward_sumsq)
        if self.advantage_n:
            out["advantage_mean"] = self.advantage_sum / self.advantage_n
            out["advantage_std"] = _std(self.advantage_n, self.advantage_sum, self.advantage_sumsq)
        if self.length_n:
            out["length_mean"] = self.length_sum / self.length_n
            out["length_std"] = _std(self.length_n, self.length_sum, self.length_sumsq)
            out["length_min"] = float(self.length_min)
            out["length_max"] = float(self.length_max)
        if self.distinct_answer_n:
            out["distinct_answer_frac"] = self.distinct_answer_sum / self.distinct_answer_n
        if self.overlap_n:
            out["ngram_overlap"] = self.overlap_sum / self.overlap_n
        for k, (total, count) in sorted(self.pass_at.items()):
            if count:
                out[f"pass_at_{k}"] = total / count
        for n, (total, count) in sorted(self.distinct.items()):
            if count:
                out[f"distinct_{n}"] = total / count
        return out


@dataclass(eq=False)
class EssStats(_Stats):
    """Importance weights w = exp(l), l = log pi - log pi_old, as (N, shift c, sum w/e^c, sum w^2/e^2c).

    The shift c = max l keeps exp() from overflowing; merging rescales both sums to the larger
    shift, exactly. ESS/N = (sum w)^2 / (N sum w^2) does not depend on c.
    """

    family: ClassVar[str] = "ess"
    n: int = 0
    log_shift: float = -math.inf
    sum_w: float = 0.0
    sum_w2: float = 0.0

    def merge(self, other: EssStats) -> EssStats:
        if not other.n:
            return replace(self)
        if not self.n:
            return replace(other)
        shift = max(self.log_shift, other.log_shift)
        a, b = math.exp(self.log_shift - shift), math.exp(other.log_shift - shift)
        return EssStats(self.n + other.n, shift, self.sum_w * a + other.sum_w * b,
                        self.sum_w2 * a * a + other.sum_w2 * b * b)

    def compute(self) -> dict[str, float]:
        if not self.n:
            return {}
        return {"ess_frac": self.sum_w * self.sum_w / (self.n * self.sum_w2)}


@dataclass(eq=False)
class KlModeStats(_Stats):
    """Per-group entropy H_g of the KL-optimal target over sampled completions, summed over groups."""

    family: ClassVar[str] = "kl"
    n_groups: int = 0
    sum_entropy: float = 0.0
    sum_modes: float = 0.0

    def compute(self) -> dict[str, float]:
        if not self.n_groups:
            return {}
        return {"kl_target_entropy": self.sum_entropy / self.n_groups,
                "kl_target_modes": self.sum_modes / self.n_groups}


@dataclass(eq=False)
class DhStats(_Stats):
    """Sums behind the same-batch entropy change of an optimizer step (``metrics.entropy_change``).

    d = H_after - H_before at a valid token, p = the logit-space first-order prediction there.
    ``sum_pos``/``sum_zero``/``sum_neg`` split sum(d) by the sign of the advantage (over ``n_adv``
    tokens that had one), ``sum_forking`` over tokens with H_before > 0.672 nats, ``top_*`` over each
    batch's top tokens by Cov_i (per rank: across ranks it is the union of per-rank top sets).
    """

    family: ClassVar[str] = "dh"
    n: int = 0
    sum_dh: float = 0.0
    sum_dh_sq: float = 0.0
    sum_pred: float = 0.0
    sum_pred_sq: float = 0.0
    sum_dh_pred: float = 0.0
    sum_h_before: float = 0.0
    n_seq: int = 0
    sum_seq_dh: float = 0.0
    n_forking: int = 0
    sum_forking: float = 0.0
    n_adv: int = 0
    sum_pos: float = 0.0
    sum_zero: float = 0.0
    sum_neg: float = 0.0
    top_0_02pct_sum: float = 0.0
    top_0_02pct_n: int = 0
    top_0_2pct_sum: float = 0.0
    top_0_2pct_n: int = 0

    def compute(self) -> dict[str, float]:
        if not self.n:
            return {}
        n = self.n
        out = {
            "dh_same_batch": self.sum_dh / n,
            "dh_pred_logit": self.sum_pred / n,
            "dh_sum": self.sum_dh,
            "dh_entropy_before": self.sum_h_before / n,
            "dh_sum_forking": self.sum_forking,
            "dh_probe_tokens": float(n),
        }
        if self.n_seq:
            out["dh_same_batch_seq"] = self.sum_seq_dh / self.n_seq
        var_d = self.sum_dh_sq / n - (self.sum_dh / n) ** 2
        var_p = self.sum_pred_sq / n - (self.sum_pred / n) ** 2
        if var_d > 0 and var_p > 0:
            cov = self.sum_dh_pred / n - (self.sum_dh / n) * (self.sum_pred / n)
            out["dh_pred_token_r"] = max(-1.0, min(1.0, cov / math.sqrt(var_d * var_p)))
        if self.n_adv:
            out.update(dh_sum_pos_adv=self.sum_pos, dh_sum_zero_adv=self.sum_zero, dh_sum_neg_adv=self.sum_neg)
        for name in COV_TOP_FRACTIONS:
            if getattr(self, f"top_{name}_n"):
                out[f"dh_sum_top_{name}_cov"] = getattr(self, f"top_{name}_sum")
        return out


STATS_CLASSES = (EntropyStats, CovStats, GroupStats, EssStats, KlModeStats, DhStats)


def combine_ranks(steps: pd.DataFrame) -> pd.DataFrame:
    """One row per step from rows of one or more ranks: ``step``, ``n_ranks`` and every column.

    A step logged by one rank is kept as it is (its quantiles are exact). For several ranks:
    every metric a stats family computes is recomputed from the merged ``stat/`` columns, exactly
    for ``merge="stats"`` (and for counts and by-sign covariance sums, where adding per-rank values
    would use per-rank means), from merged histograms / per-rank top tokens for ``"approx"``;
    other registered columns follow their registry rule (``sum`` adds, lists elementwise,
    ``max``/``min``, ``first`` takes the lowest rank's non-null value; a ``stats`` metric without
    stat columns, e.g. ``reward_func/...``, falls back to the mean over ranks); unregistered
    columns come from the lowest rank. The merged ``stat/`` columns are written back.

    Vectorised over steps (group sums of each column with ``np.*.reduceat``, then the families'
    formulas on arrays), so it costs a few array passes per column, not Python work per step;
    it gives the same numbers as merging the stats objects one step at a time (``_Stats.merge``
    and ``compute``), which the tests check to 1e-12.

    List columns may be plain (one array or list per row) or Arrow-backed (``pd.ArrowDtype`` of a
    list, as the reader holds them: ``metrics.list_columns``); Arrow-backed ones of equal-length
    integer lists are summed as one matrix instead of from one array per row (about a second of
    two at 64 ranks x 10k steps). Either way the result holds them in the plain form: the merged
    steps' sums as lists of ints, a single rank's as the array it logged.
    """
    return _combine(_sorted_rows(steps))


def _sorted_rows(steps: pd.DataFrame) -> pd.DataFrame:
    """``steps`` ordered by (step, rank) with a default index (rank 0 when it has no rank column)."""
    if "step" not in steps.columns:
        raise InputError(f"steps: expected a 'step' column, got columns {list(steps.columns)[:8]}")
    frame = steps if "rank" in steps.columns else steps.assign(rank=0)
    if not _sorted_by_step_rank(frame["step"].to_numpy(), frame["rank"].to_numpy()):
        frame = frame.sort_values(["step", "rank"], kind="stable")
    return frame.reset_index(drop=True)  # a new index only: no column is copied


def _combine(frame: pd.DataFrame, coverage: dict | None = None) -> pd.DataFrame:
    """``combine_ranks`` of ``_sorted_rows``: the halves of its steps side by side when it is big."""
    if len(frame) >= SPLIT_MIN_ROWS:
        halves = _combined_halves(frame, coverage)
        if halves is not None:
            return halves
    return _combine_sorted(frame, coverage)


def family_metrics(columns) -> dict[str, set[str]]:
    """{a family's count column: the metric columns the family computes across ranks} for the stats
    families whose ``stat/`` columns are among ``columns`` (the names their formulas give).

    Why: a reader that only combines ranks need not decode the ranks' own values of these, which
    ``combine_ranks`` replaces with the family's (``combine_ranks_without``)."""
    names = set(columns)
    out: dict[str, set[str]] = {}
    for cls in STATS_CLASSES:
        prefix = cls.prefix()
        if prefix + fields(cls)[0].name not in names or cls not in _COMPUTE:
            continue
        dummy: dict = {}
        pairs: dict = {}
        for f in fields(cls):
            default = getattr(cls(), f.name)
            if isinstance(default, dict):
                pattern = re.compile(re.escape(f"{prefix}{f.name}_") + r"(\d+)_sum\Z")
                keys = {int(m.group(1)) for m in map(pattern.match, names) if m}
                pairs[f.name] = {k: (np.zeros(1), np.zeros(1), np.zeros(1, dtype=bool)) for k in keys}
            else:
                dummy[f.name] = [None] if isinstance(default, np.ndarray) else np.zeros(1)
        with np.errstate(all="ignore"):
            columns_out, metrics = _COMPUTE[cls](dummy, pairs)
        out[prefix + fields(cls)[0].name] = {*columns_out, *metrics}
    return out


def combine_ranks_without(steps: pd.DataFrame, left_out, order: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """``combine_ranks`` of a steps frame read without the ``left_out`` columns (of ``family_metrics``):
    (its combined rows, columns in the full table's ``order``; the steps whose rows are not those
    of the full frame, to be combined again from their full rows).

    Exact by construction away from those steps: ``combine_ranks`` writes every left-out column
    there from the family's formulas over the merged ``stat/`` columns, and nothing else reads the
    ranks' values of them. The steps given back are those of one rank (kept as logged) and those
    where a family does not compute one of them (the ranks' own values are merged there)."""
    frame = _sorted_rows(steps)
    coverage: dict[str, list] = {}
    result = _combine(frame, coverage)
    step = frame["step"].to_numpy()
    starts = np.flatnonzero(np.r_[True, step[1:] != step[:-1]]) if len(step) else np.zeros(0, dtype=np.int64)
    sizes = np.diff(np.r_[starts, len(step)])
    several = step[starts][sizes > 1]
    redo = [step[starts][sizes == 1]]
    for name in left_out:
        parts = coverage.get(name, [])
        if sum(int(mask.sum()) for _, mask in parts) == len(several):  # written at every step of several ranks
            continue
        covered = np.concatenate([steps_of[mask] for steps_of, mask in parts]) if parts else np.zeros(0, step.dtype)
        redo.append(np.setdiff1d(several, covered))
    return in_table_order(result, order), np.unique(np.concatenate(redo))


def in_table_order(combined: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Combined rows with their columns where ``combine_ranks`` puts them for a table of columns
    ``order``: the table's columns (but ``rank``), ``n_ranks``, then those the families add."""
    first = [c for c in order if c != "rank" and c in combined.columns]
    seen = {*first, "n_ranks"}
    return combined[[*first, *(["n_ranks"] if "n_ranks" in combined.columns else []),
                     *(c for c in combined.columns if c not in seen)]]


def _combine_sorted(frame: pd.DataFrame, coverage: dict | None = None) -> pd.DataFrame:
    """``combine_ranks`` of a frame sorted by (step, rank), with a default index; ``coverage``:
    {metric: [(steps, whether its family wrote it there), ...]} is filled in when given."""
    step = frame["step"].to_numpy()
    starts = np.flatnonzero(np.r_[True, step[1:] != step[:-1]]) if len(step) else np.zeros(0, dtype=np.int64)
    sizes = np.diff(np.r_[starts, len(frame)])
    in_multi = np.repeat(sizes > 1, sizes)
    if in_multi.all() and len(frame):  # the usual multi-rank run: no copy of the rows to split them
        result = _combine_groups(frame, coverage)
    else:
        result = list_columns.plain_frame(frame[~in_multi].drop(columns="rank").assign(n_ranks=1))
        if in_multi.any():
            combined = _combine_groups(frame[in_multi].reset_index(drop=True), coverage)
            result = pd.concat([result, combined], ignore_index=True)
    result["n_ranks"] = result["n_ranks"].astype("int64")
    return result.sort_values("step", kind="stable").reset_index(drop=True)


SPLIT_MIN_ROWS = 200_000  # combine_ranks of this many rows combines the halves of its steps side by side


def _combined_halves(frame: pd.DataFrame, coverage: dict | None = None) -> pd.DataFrame | None:
    """``combine_ranks`` of the first and the second half of the steps of a sorted ``frame``, on two
    threads, joined; None when the halves' columns differ (a column only one half has would land
    at another place than one combine puts it: the caller combines it whole then).

    Why: steps are combined independently of each other, so the halves give the same rows, and
    NumPy lets go of the GIL in the passes over the columns: 0.45-0.51 s -> 0.30-0.31 s for the
    640k rows of 64 ranks x 10k steps on 2 cores."""
    step = frame["step"].to_numpy()
    cut = int(np.searchsorted(step, step[len(step) // 2]))
    if cut == 0:
        return None
    covered: tuple[dict, dict] = ({}, {})
    with ThreadPoolExecutor(1, thread_name_prefix="entropymon-combine") as pool:
        first = pool.submit(_combine_sorted, frame.iloc[:cut], covered[0])
        second = _combine_sorted(frame.iloc[cut:].reset_index(drop=True), covered[1])
        first = first.result()
    if not (first.columns.equals(second.columns) and first.dtypes.equals(second.dtypes)):
        return None
    if coverage is not None:
        for half in covered:
            for name, parts in half.items():
                coverage.setdefault(name, []).extend(parts)
    return pd.concat([first, second], ignore_index=True)


def _sorted_by_step_rank(step: np.ndarray, rank: np.ndarray) -> bool:
    """Whether rows are ordered by (step, rank) already (what the reader returns): one linear pass
    instead of a sort that copies every column."""
    if len(step) < 2:
        return True
    try:
        return bool(np.all((step[1:] > step[:-1]) | ((step[1:] == step[:-1]) & (rank[1:] >= rank[:-1]))))
    except TypeError:  # values that do not compare: the sort says what it thinks of them
        return False


class _Groups:
    """Row groups of a frame sorted by (step, rank), every group holding two or more rows."""

    def __init__(self, frame: pd.DataFrame):
        step = frame["step"].to_numpy()
        self.starts = np.flatnonzero(np.r_[True, step[1:] != step[:-1]])
        self.sizes = np.diff(np.r_[self.starts, len(frame)])
        self.n_rows = len(frame)
        self._list_sums: dict = {}
        self._columns: dict[str, object] = {}

    def column(self, frame: pd.DataFrame, name: str):
        """``frame[name]`` as one numpy array (an Arrow-backed list column as its ``_ArrowList``),
        the same object every time it is asked for."""
        if name not in self._columns:
            column = frame[name]
            self._columns[name] = _ArrowList(column) if list_columns.is_arrow_list(column) else column.to_numpy()
        return self._columns[name]

    # Each reduction skips masking the values when every row is valid (the usual case): one pass
    # over the column instead of three.
    def count(self, valid: np.ndarray) -> np.ndarray:
        if valid.all():
            return self.sizes.astype(np.int64)
        return np.add.reduceat(valid.astype(np.int64), self.starts)

    def sum(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values if valid.all() else np.where(valid, values, 0.0), self.starts)

    def max(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(values if valid.all() else np.where(valid, values, -np.inf), self.starts)

    def min(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return np.minimum.reduceat(values if valid.all() else np.where(valid, values, np.inf), self.starts)

    def first_valid(self, valid: np.ndarray) -> np.ndarray:
        """Row index of each group's first valid row (the group's first row when none is)."""
        index = np.minimum.reduceat(np.where(valid, np.arange(self.n_rows), self.n_rows), self.starts)
        return np.where(index < self.n_rows, index, self.starts)

    def list_sum(self, values, valid: np.ndarray) -> list:
        """Elementwise sums of each group's valid lists (lists of ints); None for a group with none.

        Remembered per (column, rows): stat/entropy_hist is summed by its registry rule and again
        as the entropy family's histogram."""
        key = (id(values), valid.tobytes())
        if key not in self._list_sums:
            self._list_sums[key] = (values, self._list_sum(values, valid))  # values kept: its id stays unique
        return self._list_sums[key][1]

    def _list_sum(self, values, valid: np.ndarray) -> list:
        if isinstance(values, _ArrowList):  # one matrix when every row is summed
            matrix = values.matrix() if valid.all() else None
            if matrix is not None:
                return _row_group_sums(matrix, self.starts, self.sizes).tolist()
            values = values.plain()
        out: list = [None] * len(self.starts)
        rows = np.flatnonzero(valid)
        if not len(rows):
            return out
        group_of = np.repeat(np.arange(len(self.starts)), self.sizes)[rows]
        picked = values[rows]
        lengths = np.fromiter(map(len, picked), dtype=np.int64, count=len(rows))
        if (lengths == lengths[0]).all() and lengths[0] > 0:
            matrix = np.concatenate(picked).astype(np.int64, copy=False).reshape(len(rows), lengths[0])
            bounds = np.flatnonzero(np.r_[True, group_of[1:] != group_of[:-1]])
            sums = _row_group_sums(matrix, bounds, np.diff(np.r_[bounds, len(matrix)])) if len(matrix) else matrix
            for group, total in zip(group_of[bounds], sums.tolist()):
                out[group] = total
            return out
        for group in np.unique(group_of):  # ragged lists: numpy's broadcasting rules, as before
            members = rows[group_of == group]
            out[group] = [int(v) for v in np.sum([np.asarray(values[i]) for i in members], axis=0)]
        return out


def _row_group_sums(matrix: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Sums of the rows of each group (groups of consecutive rows starting at ``starts``) of an
    integer matrix. Groups of one size (every rank at every step) are summed as a reshaped 3-D
    array: ``np.add.reduceat`` along the rows of a matrix took 10x as long (0.22 s against 0.02 s
    for 640k rows of 38 counts). Integer sums are exact in any order."""
    if len(sizes) and (sizes == sizes[0]).all() and sizes[0] * len(sizes) == len(matrix):
        return matrix.reshape(len(sizes), int(sizes[0]), -1).sum(axis=1)
    return np.add.reduceat(matrix, starts, axis=0)


class _ArrowList:
    """An Arrow-backed list column of the rows being combined: one matrix of it and its plain form
    (one array per row), each made only when a path asks."""

    def __init__(self, column: pd.Series):
        self._column = column
        self._matrix: tuple[np.ndarray | None] | None = None
        self._plain: np.ndarray | None = None

    def matrix(self) -> np.ndarray | None:
        if self._matrix is None:
            self._matrix = (list_columns.matrix(self._column),)
        return self._matrix[0]

    def plain(self) -> np.ndarray:
        if self._plain is None:
            self._plain = list_columns.plain_values(self._column)
        return self._plain

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The plain form of ``rows`` only."""
        return list_columns.plain_values(self._column.iloc[rows])


def _valid_column(column: pd.Series) -> np.ndarray:
    """Which rows of a frame column hold a value (an Arrow-backed list column without converting it)."""
    return ~column.isna().to_numpy() if list_columns.is_arrow_list(column) else _valid(column.to_numpy())


def _valid(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return ~np.isnan(values)
    if values.dtype.kind in "iub":
        return np.ones(len(values), dtype=bool)
    return ~pd.isna(values)


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _combine_groups(frame: pd.DataFrame, coverage: dict | None = None) -> pd.DataFrame:
    """One row per step of ``frame`` (sorted by step and rank, two or more rows per step)."""
    groups = _Groups(frame)
    starts = groups.starts
    out: dict[str, object] = {}
    for column in frame.columns:
        if column != "rank":
            values = groups.column(frame, column)
            out[column] = values.take(starts) if isinstance(values, _ArrowList) else values[starts]
    out["n_ranks"] = groups.sizes
    for column in frame.columns:
        if column in ("step", "rank"):
            continue
        info = describe_metric(column)
        if info is not None:
            out[column] = _merge_column(groups.column(frame, column), info.merge, groups, out[column])
    for cls in STATS_CLASSES:
        _merge_family(cls, frame, groups, out, coverage)
    return pd.DataFrame(out)


def _merge_column(values, rule: str, groups: _Groups, lowest):
    if isinstance(values, _ArrowList):
        if rule == "sum" and values.matrix() is not None:  # every row a list of one length: no nulls
            merged = np.empty(len(groups.starts), dtype=object)
            for i, total in enumerate(groups.list_sum(values, np.ones(groups.n_rows, dtype=bool))):
                merged[i] = total
            return merged
        values = values.plain()
    valid = _valid(values)
    if rule == "first":
        return values[groups.first_valid(valid)]
    count = groups.count(valid)
    if values.dtype.kind == "O":
        firsts = values[groups.first_valid(valid)]
        first_is_list = np.fromiter(map(_is_list, firsts), dtype=bool, count=len(firsts)) & (count > 0)
        if first_is_list.any():
            if rule != "sum":
                return firsts
            rows = valid & np.repeat(first_is_list, groups.sizes)
            try:
                sums = groups.list_sum(values, rows)
            except TypeError:  # a group mixing lists and numbers: sum the lists only
                sums = groups.list_sum(values, rows & np.fromiter(map(_is_list, values), dtype=bool, count=len(values)))
            merged = firsts.copy()
            for i in np.flatnonzero(first_is_list):
                merged[i] = sums[i]
            return merged
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError):  # text under a numeric rule: keep the lowest rank's value
            return lowest
    values = values.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        if rule == "sum":
            merged = groups.sum(values, valid)
        elif rule == "max":
            merged = groups.max(values, valid)
        elif rule == "min":
            merged = groups.min(values, valid)
        else:  # stats/approx without stat columns: best effort
            merged = groups.sum(values, valid) / count
    return np.where(count > 0, merged, np.asarray(lowest, dtype=object) if np.asarray(lowest).dtype.kind == "O"
                    else lowest)


_MAX_FIELDS = {"max_entropy", "length_max"}
_MIN_FIELDS = {"length_min"}


def _merge_family(cls, frame: pd.DataFrame, groups: _Groups, out: dict, coverage: dict | None = None) -> None:
    """Merge one stats family's ``stat/`` columns per step and write them and the computed metrics to ``out``."""
    prefix = cls.prefix()
    count_key = prefix + fields(cls)[0].name
    if count_key not in frame.columns:
        return
    part = _valid_column(frame[count_key])
    has = groups.count(part) > 0
    if not has.any():
        return
    merged: dict[str, np.ndarray] = {}
    pairs: dict[str, dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for f in fields(cls):
        key = prefix + f.name
        default = getattr(cls(), f.name)
        if isinstance(default, dict):
            pairs[f.name] = _merge_sum_counts(frame, f"{prefix}{f.name}_", part, groups)
            continue
        if key not in frame.columns or (part & ~_valid_column(frame[key])).any():
            raise InputError(f"row: expected column {key!r} next to {count_key!r}, got it missing or null")
        values = groups.column(frame, key)
        if isinstance(default, np.ndarray):
            merged[f.name] = groups.list_sum(values, part)
            continue
        if isinstance(values, _ArrowList):  # a list column where the family has a number
            values = values.plain()
        values = values.astype(np.float64, copy=False)
        if cls is EssStats:
            continue  # merged below, with its shift
        if f.name in _MAX_FIELDS:
            merged[f.name] = np.maximum(groups.max(values, part), default)
        elif f.name in _MIN_FIELDS:
            merged[f.name] = np.minimum(groups.min(values, part), default)
        else:
            merged[f.name] = groups.sum(values, part)
    if cls is EssStats:
        merged.update(_merge_ess(frame, part, groups))
    if cls not in _COMPUTE:
        _merge_family_per_step(cls, frame, groups, out)
        return
    columns, metrics = _COMPUTE[cls](merged, pairs)
    for f in fields(cls):
        if f.name in merged:
            _put(out, prefix + f.name, merged[f.name], has)
    for field_name, by_key in pairs.items():
        for key_value, (total, count, present) in sorted(by_key.items()):
            _put(out, f"{prefix}{field_name}_{key_value}_sum", total, has & present)
            _put(out, f"{prefix}{field_name}_{key_value}_n", count.astype(np.float64), has & present)
    for name, (values, produced) in {**columns, **metrics}.items():
        _put(out, name, values, has & produced)
        if coverage is not None:  # the steps where the family wrote it
            coverage.setdefault(name, []).append((out["step"], has & produced))


def _merge_family_per_step(cls, frame: pd.DataFrame, groups: _Groups, out: dict) -> None:
    """The scalar path (merge the stats objects of each step), for a family without a vectorised compute."""
    results: list[dict] = []
    for start, size in zip(groups.starts, groups.sizes):
        parts = [p for p in (cls.from_columns(r) for r in frame.iloc[start:start + size].to_dict("records")) if p]
        results.append({} if not parts else {**(merged := cls.merged(parts)).to_columns(), **merged.compute()})
    for name in dict.fromkeys(k for r in results for k in r):
        produced = np.array([name in r for r in results])
        values = [r.get(name) for r in results]
        if any(isinstance(v, list) for v in values):
            _put(out, name, values, produced)
        else:
            _put(out, name, np.array([np.nan if v is None else v for v in values], dtype=np.float64), produced)


def _merge_sum_counts(frame, prefix, part, groups):
    pattern = re.compile(re.escape(prefix) + r"(\d+)_sum\Z")
    out = {}
    for column in frame.columns:
        match = pattern.match(column)
        if not match:
            continue
        total = frame[column].to_numpy().astype(np.float64, copy=False)
        present = part & _valid(total)
        count_column = f"{prefix}{match.group(1)}_n"
        count = (frame[count_column].to_numpy().astype(np.float64, copy=False) if count_column in frame.columns
                 else np.zeros(len(frame)))
        count = np.where(np.isnan(count), 0.0, count)
        out[int(match.group(1))] = (groups.sum(total, present), groups.sum(count, present), groups.count(present) > 0)
    return out


def _merge_ess(frame, part, groups):
    prefix = EssStats.prefix()
    n = frame[prefix + "n"].to_numpy().astype(np.float64, copy=False)
    shift = frame[prefix + "log_shift"].to_numpy().astype(np.float64, copy=False)
    live = part & (n != 0)  # merging an empty part changes nothing
    top = groups.max(shift, live)
    scale = np.exp(shift - np.repeat(np.where(np.isfinite(top), top, 0.0), groups.sizes))
    with np.errstate(invalid="ignore"):
        return {
            "n": groups.sum(n, live),
            "log_shift": top,
            "sum_w": groups.sum(_float64(frame[prefix + "sum_w"]) * scale, live),
            "sum_w2": groups.sum(_float64(frame[prefix + "sum_w2"]) * scale * scale, live),
        }


def _float64(column: pd.Series) -> np.ndarray:
    """A frame column as float64 values (no copy when it already is)."""
    return column.to_numpy().astype(np.float64, copy=False)


def _put(out: dict, name: str, values, where: np.ndarray) -> None:
    """Set ``out[name]`` to ``values`` in the groups ``where`` (a new column is null elsewhere)."""
    if not where.any():
        return
    current = out.get(name)
    if isinstance(values, list):
        current = (np.full(len(where), None, dtype=object) if current is None
                   else np.asarray(current, dtype=object).copy())
        for i in np.flatnonzero(where):
            current[i] = values[i]
        out[name] = current
        return
    if current is None:
        current = np.full(len(where), np.nan)
    current = np.asarray(current)
    if current.dtype.kind not in "fiu":
        current = current.astype(object)
        current[where] = np.asarray(values)[where]
        out[name] = current
    else:
        out[name] = np.where(where, values, current.astype(np.float64))


def _safe_divide(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(a, dtype=np.float64) / np.asarray(b, dtype=np.float64)


def _std_columns(n, total, total_sq):
    mean = _safe_divide(total, n)
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.maximum(_safe_divide(total_sq, n) - mean * mean, 0.0))


def _histogram_quantiles(hists: list, q: float, max_value: np.ndarray) -> np.ndarray:
    """``histogram_quantile`` of every row (rows without a histogram give NaN)."""
    out = np.full(len(hists), np.nan)
    rows = [i for i, h in enumerate(hists) if h is not None]
    if not rows:
        return out
    hist = np.array([hists[i] for i in rows], dtype=np.float64)
    total = hist.sum(axis=1)
    cumulative = np.cumsum(hist, axis=1)
    target = q * total
    index = np.minimum((cumulative < target[:, None]).sum(axis=1), hist.shape[1] - 1)
    pick = np.arange(len(rows))
    low = ENTROPY_HIST_EDGES[index]
    high = np.minimum(ENTROPY_HIST_EDGES[index + 1], max_value[rows])
    low = np.minimum(low, high)
    before = cumulative[pick, index] - hist[pick, index]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = low + (target - before) / hist[pick, index] * (high - low)
    out[rows] = np.where(total > 0, value, np.nan)
    return out


def _compute_entropy(m, _pairs):
    n_tokens, n_sequences, n_surprisal = m["n_tokens"], m["n_sequences"], m["n_surprisal"]
    tokens, sequences, surprisal = n_tokens != 0, n_sequences != 0, n_surprisal != 0
    metrics = {
        "entropy_mean": (_safe_divide(m["sum_entropy"], n_tokens), tokens),
        "forking_share": (_safe_divide(m["n_forking"], n_tokens), tokens),
        "entropy_max": (m["max_entropy"], tokens),
    }
    for name, q in ENTROPY_QUANTILES.items():
        metrics[name] = (_histogram_quantiles(m["hist"], q, m["max_entropy"]), tokens)
    metrics["n_tokens"] = (np.where(tokens, n_tokens, n_surprisal), tokens | surprisal)
    metrics["entropy_seq_mean"] = (_safe_divide(m["sum_sequence_mean"], n_sequences), sequences)
    metrics["n_sequences"] = (n_sequences, sequences)
    metrics["surprisal_mean"] = (_safe_divide(m["sum_surprisal"], n_surprisal), surprisal)
    return {}, metrics


def _compute_cov(m, _pairs):
    n = m["n"]
    some = n != 0
    mean_x, mean_y = _safe_divide(m["sum_x"], n), _safe_divide(m["sum_y"], n)
    cov = _safe_divide(m["sum_xy"], n) - mean_x * mean_y
    metrics = {
        "cov_logp_adv": (cov, some),
        "cov_logp_piadv": (_safe_divide(m["sum_xu"], n) - mean_x * _safe_divide(m["sum_u"], n), some),
        "cov_sum_pos_adv": (m["sum_xy_pos"] - mean_y * m["sum_x_pos"] - mean_x * m["sum_y_pos"]
                            + m["n_pos"] * mean_x * mean_y, some),
        "cov_sum_neg_adv": (m["sum_xy_neg"] - mean_y * m["sum_x_neg"] - mean_x * m["sum_y_neg"]
                            + m["n_neg"] * mean_x * mean_y, some),
    }
    total = cov * n
    for name in COV_TOP_FRACTIONS:
        top_sum, top_n = m[f"top_{name}_sum"], m[f"top_{name}_n"]
        metrics[f"cov_top_{name}_share"] = (_safe_divide(top_sum, total), some & (top_n != 0) & (total != 0))
    metrics["cov_top_0_02pct_mean"] = (_safe_divide(m["top_0_02pct_sum"], m["top_0_02pct_n"]),
                                       some & (m["top_0_02pct_n"] != 0))
    return {}, metrics


def _compute_groups(m, pairs):
    metrics = {
        "n_groups": (m["n_groups"], m["n_groups"] != 0),
        "zero_std_group_frac": (_safe_divide(m["n_zero_std"], m["n_groups"]), m["n_groups"] != 0),
    }
    for name in ("reward", "advantage", "length"):
        n = m[f"{name}_n"]
        metrics[f"{name}_mean"] = (_safe_divide(m[f"{name}_sum"], n), n != 0)
        metrics[f"{name}_std"] = (_std_columns(n, m[f"{name}_sum"], m[f"{name}_sumsq"]), n != 0)
    metrics["length_min"] = (m["length_min"], m["length_n"] != 0)
    metrics["length_max"] = (m["length_max"], m["length_n"] != 0)
    metrics["distinct_answer_frac"] = (_safe_divide(m["distinct_answer_sum"], m["distinct_answer_n"]),
                                       m["distinct_answer_n"] != 0)
    metrics["ngram_overlap"] = (_safe_divide(m["overlap_sum"], m["overlap_n"]), m["overlap_n"] != 0)
    for field_name, label in (("pass_at", "pass_at"), ("distinct", "distinct")):
        for key_value, (total, count, present) in sorted(pairs.get(field_name, {}).items()):
            metrics[f"{label}_{key_value}"] = (_safe_divide(total, count), present & (count != 0))
    return {}, metrics


def _compute_ess(m, _pairs):
    some = m["n"] != 0
    return {}, {"ess_frac": (_safe_divide(m["sum_w"] * m["sum_w"], m["n"] * m["sum_w2"]), some)}


def _compute_kl(m, _pairs):
    some = m["n_groups"] != 0
    return {}, {"kl_target_entropy": (_safe_divide(m["sum_entropy"], m["n_groups"]), some),
                "kl_target_modes": (_safe_divide(m["sum_modes"], m["n_groups"]), some)}


def _compute_dh(m, _pairs):
    n = m["n"]
    some = n != 0
    mean_d, mean_p = _safe_divide(m["sum_dh"], n), _safe_divide(m["sum_pred"], n)
    var_d = _safe_divide(m["sum_dh_sq"], n) - mean_d ** 2
    var_p = _safe_divide(m["sum_pred_sq"], n) - mean_p ** 2
    cov = _safe_divide(m["sum_dh_pred"], n) - mean_d * mean_p
    with np.errstate(invalid="ignore"):
        r = np.clip(cov / np.sqrt(np.where((var_d > 0) & (var_p > 0), var_d * var_p, np.nan)), -1.0, 1.0)
    has_adv = some & (m["n_adv"] != 0)
    metrics = {
        "dh_same_batch": (mean_d, some), "dh_pred_logit": (mean_p, some), "dh_sum": (m["sum_dh"], some),
        "dh_entropy_before": (_safe_divide(m["sum_h_before"], n), some), "dh_sum_forking": (m["sum_forking"], some),
        "dh_probe_tokens": (n, some),
        "dh_same_batch_seq": (_safe_divide(m["sum_seq_dh"], m["n_seq"]), some & (m["n_seq"] != 0)),
        "dh_pred_token_r": (r, some & (var_d > 0) & (var_p > 0)),
        "dh_sum_pos_adv": (m["sum_pos"], has_adv), "dh_sum_zero_adv": (m["sum_zero"], has_adv),
        "dh_sum_neg_adv": (m["sum_neg"], has_adv),
    }
    for name in COV_TOP_FRACTIONS:
        metrics[f"dh_sum_top_{name}_cov"] = (m[f"top_{name}_sum"], some & (m[f"top_{name}_n"] != 0))
    return {}, metrics


_COMPUTE = {EntropyStats: _compute_entropy, CovStats: _compute_cov, GroupStats: _compute_groups,
            EssStats: _compute_ess, KlModeStats: _compute_kl, DhStats: _compute_dh}
