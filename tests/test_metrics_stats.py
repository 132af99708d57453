"""Sufficient statistics: histogram, merge of split batches == whole batch, columns, combine_ranks."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_combine import is_missing, reference_combine_ranks
from scipy.special import logsumexp

from entropymon.errors import InputError
from entropymon.metrics import stats as stats_module
from entropymon.metrics.covariance import logprob_advantage_cov
from entropymon.metrics.entropy_change import entropy_change_stats
from entropymon.metrics.entropy_stats import entropy_stats
from entropymon.metrics.groups import group_stats
from entropymon.metrics.importance import importance_ess
from entropymon.metrics.kl_modes import kl_target_modes
from entropymon.metrics.stats import (
    ENTROPY_HIST_EDGES,
    STATS_CLASSES,
    CovStats,
    DhStats,
    EntropyStats,
    EssStats,
    GroupStats,
    KlModeStats,
    combine_ranks,
    combine_ranks_without,
    entropy_histogram,
    family_metrics,
    histogram_quantile,
)
from entropymon.registry import describe_metric


def test_stats_module_does_not_import_torch():
    code = "import sys, entropymon.metrics.stats, entropymon.metrics; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_histogram_matches_numpy_histogram_with_out_of_range_values_in_the_end_bins():
    values = np.random.default_rng(0).exponential(1.0, 5000) * np.random.default_rng(1).choice([0.001, 1, 5], 5000)
    values = np.concatenate([values, [0.0, 0.672, 13.0, 30.0]])
    expected, _ = np.histogram(np.clip(values, 0, ENTROPY_HIST_EDGES[-1] - 1e-9), bins=ENTROPY_HIST_EDGES)
    assert np.array_equal(entropy_histogram(values), expected)
    assert np.all(np.diff(ENTROPY_HIST_EDGES) > 0) and 0.672 in ENTROPY_HIST_EDGES


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 12, allow_nan=False), min_size=1, max_size=200), st.sampled_from([0.1, 0.5, 0.8, 0.9]))
def test_histogram_quantile_lies_in_the_bin_of_the_exact_quantile(values, q):
    values = np.asarray(values)
    estimate = histogram_quantile(entropy_histogram(values), q, values.max())
    # the q-quantile's rank lies between the order statistics around it; its bins bound the estimate
    rank = q * len(values)
    ordered = np.sort(values)
    low = ordered[max(math.ceil(rank) - 1, 0)]
    high = ordered[min(math.ceil(rank), len(values) - 1)]
    low_edge = ENTROPY_HIST_EDGES[np.searchsorted(ENTROPY_HIST_EDGES, low, side="right") - 1]
    high_edge = ENTROPY_HIST_EDGES[np.searchsorted(ENTROPY_HIST_EDGES, high, side="right")]
    assert low_edge - 1e-12 <= estimate <= min(high_edge, values.max()) + 1e-12


# --- merge of split batches equals the whole batch, for every stats class ---------------------

def _batches(seed, n_rows):
    generator = torch.Generator().manual_seed(seed)
    entropy = torch.rand(n_rows, 12, generator=generator, dtype=torch.float64) * 3  # (B, T)
    mask = torch.rand(n_rows, 12, generator=generator) > 0.3
    mask[:, 0] = True
    logprobs = -torch.rand(n_rows, 12, generator=generator, dtype=torch.float64) * 4
    old_logprobs = logprobs + torch.randn(n_rows, 12, generator=generator, dtype=torch.float64) * 0.3
    advantages = torch.randn(n_rows, generator=generator, dtype=torch.float64)
    rewards = (torch.rand(n_rows, generator=generator) > 0.5).double()
    lengths = mask.sum(-1).double()
    return entropy, mask, logprobs, old_logprobs, advantages, rewards, lengths


def _all_stats(entropy, mask, logprobs, old_logprobs, advantages, rewards, lengths, groups, texts):
    return {
        EntropyStats: entropy_stats(entropy, mask, logprobs).stats,
        CovStats: logprob_advantage_cov(logprobs, advantages, mask).stats,
        GroupStats: group_stats(rewards, groups, lengths=lengths, advantages=advantages, texts=texts,
                                answers=[t[:2] for t in texts], pass_k=(1, 2, 4)).stats,
        EssStats: importance_ess(logprobs, old_logprobs, mask).stats,
        KlModeStats: kl_target_modes(logprobs.sum(-1), rewards, groups, 0.7).stats,
        DhStats: entropy_change_stats(old_logprobs - logprobs, 0.9 * (old_logprobs - logprobs), entropy, mask,
                                      advantages.round(), logprobs).stats,
    }


def _exact_metrics(metrics):
    """The metrics with merge rule 'stats' (and counts/sums/max), which merging must reproduce."""
    return {k: v for k, v in metrics.items() if describe_metric(k).merge != "approx"}


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6), st.integers(2, 9), st.integers(1, 8))
def test_merge_of_split_batches_equals_the_whole_batch_for_every_stats_class(seed, groups_per_half, group_size):
    n_rows = 2 * groups_per_half * group_size
    data = _batches(seed, n_rows)
    groups = np.repeat(np.arange(2 * groups_per_half), group_size)
    texts = [" ".join(str(v) for v in np.random.default_rng(seed + i).integers(0, 4, 5)) for i in range(n_rows)]
    half = n_rows // 2  # splits at a group boundary
    whole = _all_stats(*data, groups, texts)
    first = _all_stats(*(x[:half] for x in data), groups[:half], texts[:half])
    second = _all_stats(*(x[half:] for x in data), groups[half:], texts[half:])
    for cls in STATS_CLASSES:
        merged = first[cls].merge(second[cls])
        expected, actual = _exact_metrics(whole[cls].compute()), _exact_metrics(merged.compute())
        assert expected.keys() == actual.keys(), cls
        for name in expected:
            assert actual[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-9), (cls.__name__, name)
        assert cls.merged([first[cls], second[cls]]).to_columns() == merged.to_columns()
        assert merged.merge(cls()).compute() == merged.compute()  # the empty stats are the identity


def test_histogram_quantiles_of_merged_entropy_stats_are_within_a_bin_of_the_exact_ones():
    entropy, mask, *_ = _batches(3, 40)
    whole = entropy_stats(entropy, mask)
    merged = entropy_stats(entropy[:20], mask[:20]).stats.merge(entropy_stats(entropy[20:], mask[20:]).stats)
    widths = np.diff(ENTROPY_HIST_EDGES)
    for name in ("entropy_p10", "entropy_p50", "entropy_p80", "entropy_p90"):
        exact = whole.metrics[name]
        bin_width = widths[np.searchsorted(ENTROPY_HIST_EDGES, exact, side="right") - 1]
        assert abs(merged.compute()[name] - exact) <= bin_width


def test_ess_stats_merge_rescales_batches_with_far_apart_shifts_exactly():
    rng = np.random.default_rng(4)
    log_w = np.concatenate([rng.normal(800, 1, 50), rng.normal(-800, 1, 50)])  # exp() overflows float64
    lp = torch.tensor(log_w)
    first = importance_ess(lp[:50], torch.zeros(50)).stats
    second = importance_ess(lp[50:], torch.zeros(50)).stats
    expected = math.exp(2 * logsumexp(log_w) - logsumexp(2 * log_w)) / len(log_w)
    assert first.merge(second).compute()["ess_frac"] == pytest.approx(expected, rel=1e-12)
    assert second.merge(first).compute()["ess_frac"] == pytest.approx(expected, rel=1e-12)


def test_columns_round_trip_and_are_all_stat_columns():
    data = _batches(5, 8)
    groups = np.repeat(np.arange(4), 2)
    texts = ["a b c"] * 8
    for cls, stats in _all_stats(*data, groups, texts).items():
        columns = stats.to_columns()
        assert all(name.startswith(f"stat/{cls.family}_") for name in columns)
        assert cls.from_columns(columns) == stats
        assert cls.from_columns({"step": 1}) is None
    with pytest.raises(InputError, match=r"row: expected column 'stat/cov_sum_x'"):
        CovStats.from_columns({"stat/cov_n": 3})


# --- combine_ranks ---------------------------------------------------------------------------

def _step_row(step, rank, data, groups, texts, extra=None):
    stats = _all_stats(*data, groups, texts)
    row = {"step": step, "rank": rank}
    row.update(entropy_stats(data[0], data[1], data[2]).metrics)
    for s in stats.values():
        row.update(s.compute())
        row.update(s.to_columns())
    row.update(logprob_advantage_cov(data[2], data[4], data[1]).metrics)  # exact per-batch top shares
    row.update(extra or {})
    return row


def test_combine_ranks_on_two_ranks_equals_one_rank_on_the_concatenated_batch():
    data = _batches(6, 24)
    groups = np.repeat(np.arange(8), 3)
    texts = [f"w{i % 5} w{i % 3} end" for i in range(24)]
    halves = [tuple(x[:12] for x in data), tuple(x[12:] for x in data)]
    rows = [
        _step_row(7, 1, halves[1], groups[12:], texts[12:], {"lr": 0.1, "trl/kl": 2.0, "time": 5.0, "dropped_rows": 3}),
        _step_row(7, 0, halves[0], groups[:12], texts[:12], {"lr": 0.1, "trl/kl": 1.0, "time": 9.0, "dropped_rows": 4}),
    ]
    single = _step_row(7, 0, data, groups, texts)
    combined = combine_ranks(pd.DataFrame(rows))
    assert len(combined) == 1 and combined.loc[0, "n_ranks"] == 2 and "rank" not in combined
    row = combined.loc[0]
    for name, value in single.items():
        info = describe_metric(name)
        if name in ("step", "rank") or name.startswith("stat/") or info.merge == "approx":
            continue
        if isinstance(value, list):
            assert list(row[name]) == value, name
        else:
            assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert row["trl/kl"] == 1.0 and row["lr"] == 0.1  # lowest rank / identical on every rank
    assert row["time"] == 9.0 and row["dropped_rows"] == 7  # max / sum
    assert row["stat/cov_n"] == single["stat/cov_n"]
    # approx: the entropy quantiles from the merged histogram, top-token shares from per-rank tops
    assert row["entropy_p50"] == pytest.approx(single["entropy_p50"], abs=0.5)
    top = halves[0], halves[1]
    per_rank = [logprob_advantage_cov(h[2], h[4], h[1]).stats for h in top]
    expected_share = (per_rank[0].top_0_2pct_sum + per_rank[1].top_0_2pct_sum) / (single["cov_logp_adv"] * single["stat/cov_n"])
    assert row["cov_top_0_2pct_share"] == pytest.approx(expected_share, rel=1e-9)


def test_combine_ranks_keeps_single_rank_steps_unchanged_and_sorts_by_step():
    frame = pd.DataFrame([
        {"step": 2, "rank": 0, "entropy_mean": 0.5, "entropy_p50": 0.123, "custom": "x"},
        {"step": 1, "rank": 3, "entropy_mean": 0.7, "entropy_p50": 0.456, "custom": "y"},
    ])
    combined = combine_ranks(frame)
    assert combined["step"].tolist() == [1, 2] and combined["n_ranks"].tolist() == [1, 1]
    assert combined["entropy_p50"].tolist() == [0.456, 0.123] and combined["custom"].tolist() == ["y", "x"]


def test_combine_ranks_without_stat_columns_follows_registry_rules():
    frame = pd.DataFrame([
        {"step": 0, "rank": 0, "n_tokens": 10.0, "entropy_max": 1.0, "length_min": 4.0, "reward_func/acc": 0.2,
         "entropy_hist": [1, 2, 0], "unknown": 1.0},
        {"step": 0, "rank": 1, "n_tokens": 5.0, "entropy_max": 3.0, "length_min": 2.0, "reward_func/acc": 0.6,
         "entropy_hist": [0, 1, 1], "unknown": 2.0},
    ])
    row = combine_ranks(frame).loc[0]
    assert row["n_tokens"] == 15.0 and row["entropy_max"] == 3.0 and row["length_min"] == 2.0
    assert row["reward_func/acc"] == pytest.approx(0.4) and list(row["entropy_hist"]) == [1, 3, 1]
    assert row["unknown"] == 1.0


def test_combine_ranks_requires_a_step_column():
    with pytest.raises(InputError, match="steps: expected a 'step' column"):
        combine_ranks(pd.DataFrame({"rank": [0]}))


# --- the vectorised combine_ranks against the per-step merge it replaced ------------------------

def _random_rank_rows(seed: int, n_steps: int, n_ranks: int) -> pd.DataFrame:
    """Rows of real stats for ``n_steps`` steps and up to ``n_ranks`` ranks, with the messes of real logs:
    ranks that skipped a step, families some ranks lack, nulls, and columns without stat columns."""
    rng = np.random.default_rng(seed)
    rows = []
    for step in range(n_steps):
        ranks = rng.choice(n_ranks, size=rng.integers(1, n_ranks + 1), replace=False)
        for rank in ranks:
            data = _batches(int(rng.integers(0, 10**6)), 8)
            groups = np.repeat(np.arange(4), 2)
            texts = [" ".join(str(v) for v in rng.integers(0, 4, 4)) for _ in range(8)]
            extra = {"reward_func/acc": float(rng.random()), "lr": 0.1, "time": float(rng.random()),
                     "dropped_rows": float(rng.integers(0, 3)), "trl/kl": float(rng.random()), "custom": f"r{rank}",
                     "eval_accuracy": float(rng.random()) if rng.random() < 0.3 else np.nan}
            row = _step_row(step, int(rank), data, groups, texts, extra)
            if rng.random() < 0.3:  # this rank logged no importance weights
                row = {k: v for k, v in row.items() if not k.startswith("stat/ess_") and k != "ess_frac"}
            if rng.random() < 0.2:
                row["stat/groups_pass_at_4_sum"] = np.nan  # a pass@k no group of this rank could give
                row["stat/groups_pass_at_4_n"] = np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def assert_frames_close(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert sorted(actual.columns) == sorted(expected.columns)
    assert actual["step"].tolist() == expected["step"].tolist()
    for column in expected.columns:
        a, e = actual[column].tolist(), expected[column].tolist()
        for x, y in zip(a, e):
            if isinstance(y, (list, np.ndarray)) or isinstance(x, (list, np.ndarray)):
                assert list(x) == list(y), column
            elif isinstance(y, str) or isinstance(x, str):
                assert x == y, column
            elif is_missing(y):
                assert is_missing(x), (column, x)
            else:
                assert x == pytest.approx(y, rel=1e-12, abs=1e-12), (column, x, y)


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 6), st.integers(1, 5))
def test_combine_ranks_equals_the_per_step_merge_of_stats_objects(seed, n_steps, n_ranks):
    frame = _random_rank_rows(seed, n_steps, n_ranks)
    assert_frames_close(combine_ranks(frame), reference_combine_ranks(frame))


def test_combine_ranks_on_many_ranks_with_empty_parts_equals_the_per_step_merge():
    frame = _random_rank_rows(7, 4, 12)
    frame.loc[frame.index[::3], "stat/ess_n"] = 0  # empty importance-weight parts are skipped when merging
    frame.loc[frame.index[::3], "stat/ess_log_shift"] = -np.inf
    frame.loc[frame.index[::3], ["stat/ess_sum_w", "stat/ess_sum_w2"]] = 0.0
    assert_frames_close(combine_ranks(frame), reference_combine_ranks(frame))


def test_combine_ranks_gives_the_same_rows_whatever_order_the_rows_come_in():
    frame = _random_rank_rows(11, 6, 4)
    ordered = frame.sort_values(["step", "rank"], kind="stable").reset_index(drop=True)
    multi = ordered[ordered.groupby("step")["rank"].transform("size") > 1].reset_index(drop=True)
    assert multi["step"].nunique() >= 2  # the fast path (every step has several ranks, rows in order)
    assert_frames_close(combine_ranks(multi), reference_combine_ranks(multi))
    shuffled = multi.sample(frac=1.0, random_state=3)
    assert_frames_close(combine_ranks(shuffled), reference_combine_ranks(multi))
    assert_frames_close(combine_ranks(ordered.iloc[::-1]), reference_combine_ranks(ordered))


def _complete_rank_rows(seed: int, n_steps: int, n_ranks: int) -> pd.DataFrame:
    """Rows of real stats of every family from every rank at every step (what a healthy multi-GPU run
    logs), with columns no family computes: a mean over ranks (``reward_func/acc``), ``first``, text."""
    rng = np.random.default_rng(seed)
    rows = []
    for step in range(n_steps):
        for rank in range(n_ranks):
            data = _batches(int(rng.integers(0, 10**6)), 8)
            texts = [" ".join(str(v) for v in rng.integers(0, 4, 4)) for _ in range(8)]
            extra = {"reward_func/acc": float(rng.random()), "lr": 0.1, "custom": f"r{rank}"}
            rows.append(_step_row(step, rank, data, np.repeat(np.arange(4), 2), texts, extra))
    return pd.DataFrame(rows)


def _without_family_metrics(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    left_out = [c for c in frame.columns if c in set().union(*family_metrics(frame.columns).values())]
    return frame.drop(columns=left_out), left_out


def test_family_metrics_are_the_columns_the_families_compute():
    frame = _complete_rank_rows(1, 2, 2)
    families = family_metrics(frame.columns)
    assert {"stat/entropy_n_tokens", "stat/cov_n", "stat/ess_n"} <= set(families)  # by their count columns
    assert "entropy_mean" in families["stat/entropy_n_tokens"] and "ess_frac" in families["stat/ess_n"]
    computed = set().union(*families.values())
    assert {"entropy_mean", "entropy_p50", "cov_logp_adv", "reward_mean", "pass_at_4", "ess_frac",
            "kl_target_entropy", "dh_same_batch"} <= computed
    assert not any(c.startswith("stat/") for c in computed)
    assert not computed & {"lr", "custom", "reward_func/acc", "step", "rank", "entropy_hist"}
    # combine_ranks writes every one of them from the stat/ columns alone
    trimmed, left_out = _without_family_metrics(frame)
    assert set(left_out) == computed & set(frame.columns) and len(left_out) > 30
    assert set(left_out) <= set(combine_ranks(trimmed).columns)
    assert family_metrics(["lr", "stat/entropy_hist"]) == {}  # no count column: no family


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 5), st.integers(2, 4), st.booleans())
def test_combine_ranks_without_family_metrics_gives_the_frame_of_every_column(seed, n_steps, n_ranks, halves):
    frame = _complete_rank_rows(seed, n_steps, n_ranks)
    trimmed, left_out = _without_family_metrics(frame)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stats_module, "SPLIT_MIN_ROWS", 0 if halves else 10**12)
        got, redo = combine_ranks_without(trimmed, left_out, list(frame.columns))
    assert len(redo) == 0
    pd.testing.assert_frame_equal(got, combine_ranks(frame), check_exact=True)


def test_combine_ranks_without_family_metrics_gives_back_the_steps_where_the_ranks_values_count():
    frame = _complete_rank_rows(4, 4, 3)
    trimmed, left_out = _without_family_metrics(frame)
    order = list(frame.columns)
    # a step only one rank logged keeps that rank's own values (exact quantiles)
    one_rank = trimmed[~((trimmed["step"] == 2) & (trimmed["rank"] > 0))]
    got, redo = combine_ranks_without(one_rank, left_out, order)
    assert redo.tolist() == [2]
    whole = combine_ranks(frame[~((frame["step"] == 2) & (frame["rank"] > 0))])
    pd.testing.assert_frame_equal(got[got["step"] != 2], whole[whole["step"] != 2], check_exact=True)
    # a step no rank has importance weights at: the ranks' ess_frac values are merged there
    no_ess = trimmed.copy()
    no_ess.loc[no_ess["step"] == 1, [c for c in no_ess.columns if c.startswith("stat/ess_")]] = np.nan
    assert combine_ranks_without(no_ess, left_out, order)[1].tolist() == [1]
    assert combine_ranks_without(trimmed, [*left_out, "not_a_family_metric"], order)[1].tolist() == [0, 1, 2, 3]


def _whole_and_halves(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """combine_ranks of ``frame`` in one pass, and with its step halves combined side by side."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stats_module, "SPLIT_MIN_ROWS", 10**12)
        whole = combine_ranks(frame)
        patch.setattr(stats_module, "SPLIT_MIN_ROWS", 0)
        halves = combine_ranks(frame)
    return whole, halves


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10**6), st.integers(2, 8), st.integers(1, 5))
def test_combine_ranks_of_step_halves_side_by_side_gives_the_frame_of_one_pass(seed, n_steps, n_ranks):
    frame = _random_rank_rows(seed, n_steps, n_ranks)
    whole, halves = _whole_and_halves(frame)
    pd.testing.assert_frame_equal(halves, whole, check_exact=True)
    assert_frames_close(halves, reference_combine_ranks(frame))


def test_combine_ranks_of_halves_whose_columns_differ_gives_the_frame_of_one_pass():
    frame = _random_rank_rows(5, 6, 3).drop(columns="ess_frac")
    early = frame["step"] < 3  # no importance weights in the first half: only the second computes ess_frac
    frame.loc[early, [c for c in frame.columns if c.startswith("stat/ess_")]] = np.nan
    whole, halves = _whole_and_halves(frame)
    assert whole["ess_frac"][whole["step"] < 3].isna().all() and whole["ess_frac"].notna().any()
    pd.testing.assert_frame_equal(halves, whole, check_exact=True)


def _arrow_lists(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its list columns Arrow-backed, as the reader holds them (nulls where a row has none)."""
    import pyarrow as pa

    out = frame.copy()
    for column in frame.columns:
        values = frame[column].tolist()
        if any(isinstance(v, (list, np.ndarray)) for v in values):
            lists = [list(map(int, v)) if isinstance(v, (list, np.ndarray)) else None for v in values]
            out[column] = pd.arrays.ArrowExtensionArray(pa.chunked_array([pa.array(lists, type=pa.list_(pa.int64()))]))
    return out


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 6), st.integers(1, 5))
def test_combine_ranks_on_arrow_backed_lists_equals_the_plain_lists_and_the_per_step_merge(seed, n_steps, n_ranks):
    """The reader's Arrow-backed list columns (summed as one matrix when they can be) give the same
    rows as plain list columns (one array per row) and the per-step merge, in the plain form."""
    from entropymon.metrics import list_columns

    frame = _random_rank_rows(seed, n_steps, n_ranks)
    arrow = _arrow_lists(frame)
    assert any(list_columns.is_arrow_list(arrow[c]) for c in arrow.columns)
    combined = combine_ranks(arrow)
    assert not any(list_columns.is_arrow_list(combined[c]) for c in combined.columns)
    assert_frames_close(combined, combine_ranks(frame))
    assert_frames_close(combined, reference_combine_ranks(frame))
    ordered = arrow.sort_values(["step", "rank"], kind="stable").reset_index(drop=True)
    multi = ordered[ordered.groupby("step")["rank"].transform("size") > 1].reset_index(drop=True)
    if len(multi):  # every step several ranks, rows in order: the matrix path
        assert_frames_close(combine_ranks(multi), reference_combine_ranks(frame[frame["step"].isin(multi["step"])]))
