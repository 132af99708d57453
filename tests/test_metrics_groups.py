"""pass_at_k against brute-force enumeration and group_stats against per-group Python references."""

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import comb

from entropymon.errors import InputError
from entropymon.metrics.groups import group_stats, ngrams, pass_at_k


def brute_force_pass_at_k(n, c, k):
    """Share of the k-subsets of n samples (the first c correct) holding at least one correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_enumeration_of_every_subset(n):
    for k in range(1, n + 1):
        for c in range(n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_on_arrays_matches_the_binomial_formula_for_large_n():
    rng = np.random.default_rng(0)
    n = rng.integers(50, 400, 200)
    c = rng.integers(0, n + 1)
    for k in (1, 8, 32):
        expected = 1 - comb(n - c, k, exact=False) / comb(n, k, exact=False)
        np.testing.assert_allclose(pass_at_k(n, c, k), expected, rtol=1e-10, atol=1e-12)
    assert isinstance(pass_at_k(10, 3, 2), float) and pass_at_k(n, c, 1).shape == n.shape


def test_pass_at_k_stays_accurate_where_binomials_overflow():
    # C(5000, 1000) overflows float64; the product form does not. Closed form for c = 1: k / n.
    assert pass_at_k(5000, 1, 1000) == pytest.approx(1000 / 5000, rel=1e-12)
    assert pass_at_k(5000, 0, 1000) == 0.0 and pass_at_k(5000, 4001, 1000) == 1.0
    # c = 2: 1 - (n-k)(n-k-1) / (n(n-1))
    assert pass_at_k(5000, 2, 1000) == pytest.approx(1 - 4000 * 3999 / (5000 * 4999), rel=1e-12)


def test_pass_at_one_is_the_success_rate():
    n = np.array([4, 8, 16, 3])
    c = np.array([0, 3, 16, 1])
    np.testing.assert_allclose(pass_at_k(n, c, 1), c / n, rtol=1e-14)


@pytest.mark.parametrize("call, message", [
    (lambda: pass_at_k(4, 5, 1), r"c: expected 0 <= c <= n, got c = 5 with n = 4"),
    (lambda: pass_at_k(3, 1, 4), r"n: expected n >= k = 4 samples, got n = 3"),
    (lambda: pass_at_k(4, 1, 0), r"k: expected an integer >= 1, got 0"),
    (lambda: pass_at_k(4, 1, 2.5), r"k: expected an integer >= 1, got 2.5"),
    (lambda: pass_at_k(-1, 0, 1), r"n: expected non-negative integers, got -1"),
    (lambda: pass_at_k(4, 1.5, 1), r"c: expected non-negative integers, got 1.5"),
])
def test_pass_at_k_bad_input_names_the_argument(call, message):
    with pytest.raises(InputError, match=message):
        call()


# --- group_stats -----------------------------------------------------------------------------

def reference_group_metrics(rewards, groups, correct, answers, token_lists, lengths, advantages, pass_k, overlap_n=2):
    """Every group metric computed group by group in plain Python (numpy only for std)."""
    members = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    out = {
        "n_groups": float(len(members)),
        "zero_std_group_frac": np.mean([len({rewards[i] for i in idx}) == 1 for idx in members.values()]),
        "reward_mean": np.mean(rewards), "reward_std": np.std(rewards),
        "advantage_mean": np.mean(advantages), "advantage_std": np.std(advantages),
        "length_mean": np.mean(lengths), "length_std": np.std(lengths),
        "length_min": float(np.min(lengths)), "length_max": float(np.max(lengths)),
        "distinct_answer_frac": np.mean([len({answers[i] for i in idx}) / len(idx) for idx in members.values()]),
    }
    for k in pass_k:
        values = [brute_force_pass_at_k(len(idx), sum(correct[i] for i in idx), k)
                  for idx in members.values() if len(idx) >= k]
        if values:
            out[f"pass_at_{k}"] = np.mean(values)
    for n in (1, 2, 3, 4):
        shares = []
        for idx in members.values():
            grams = [tuple(token_lists[i][j:j + n]) for i in idx for j in range(len(token_lists[i]) - n + 1)]
            if grams:
                shares.append(len(set(grams)) / len(grams))
        if shares:
            out[f"distinct_{n}"] = np.mean(shares)
    overlaps = []
    for idx in members.values():
        if len(idx) < 2:
            continue
        sets = [{tuple(token_lists[i][j:j + overlap_n]) for j in range(len(token_lists[i]) - overlap_n + 1)}
                or {tuple(token_lists[i])} for i in idx]  # shorter than n: the whole completion is one gram
        pairs = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in itertools.combinations(sets, 2)]
        overlaps.append(np.mean(pairs))
    out["ngram_overlap"] = np.mean(overlaps)
    return out


def random_groups(seed, n_groups=7, max_size=6):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_size + 1, n_groups)
    groups = np.repeat([f"prompt-{g}" for g in range(n_groups)], sizes)
    rng.shuffle(groups)  # completions of one prompt need not be adjacent
    n = len(groups)
    rewards = rng.choice([0.0, 1.0], n, p=[0.6, 0.4])
    words = ["the", "cat", "sat", "on", "mat", "42"]
    texts = [" ".join(rng.choice(words, rng.integers(0, 8))) for _ in range(n)]
    answers = [str(rng.integers(0, 3)) for _ in range(n)]
    lengths = rng.integers(1, 50, n).astype(float)
    advantages = rng.normal(0, 1, n)
    return groups, rewards, texts, answers, lengths, advantages


@pytest.mark.parametrize("seed", range(4))
def test_group_metrics_match_a_group_by_group_reference(seed):
    groups, rewards, texts, answers, lengths, advantages = random_groups(seed)
    summary = group_stats(rewards, groups, answers=answers, texts=texts, lengths=lengths, advantages=advantages,
                          pass_k=(1, 2, 4))
    expected = reference_group_metrics(rewards, groups, rewards > 0, answers, [t.split() for t in texts],
                                       lengths, advantages, (1, 2, 4))
    assert summary.metrics.keys() == expected.keys()
    for name, value in expected.items():
        assert summary.metrics[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
    labels, sizes = np.unique(groups, return_counts=True)
    assert summary.group_ids.tolist() == labels.tolist() and summary.group_sizes.tolist() == sizes.tolist()
    assert summary.group_correct.tolist() == [int(rewards[groups == g].sum()) for g in labels]


def test_char_tokens_and_token_id_lists_give_the_same_distinct_n_as_their_reference():
    texts = ["abab", "abba", "ccc", "abab"]
    groups = [0, 0, 1, 1]
    ids = [torch.tensor([ord(ch) for ch in t]) for t in texts]
    by_char = group_stats([1, 0, 0, 0], groups, texts=texts, tokenize="char", pass_k=()).metrics
    by_ids = group_stats([1, 0, 0, 0], groups, texts=ids, pass_k=()).metrics
    expected = reference_group_metrics([1, 0, 0, 0], groups, [1, 0, 0, 0], texts, [list(t) for t in texts],
                                       [1, 1, 1, 1], [0, 0, 0, 0], ())
    for name in ("distinct_1", "distinct_2", "distinct_3", "distinct_4", "ngram_overlap"):
        assert by_char[name] == pytest.approx(expected[name], rel=1e-12) == by_ids[name], name
    # group 0: unigrams a,b,a,b,a,b,b,a -> 2 distinct of 8
    assert by_char["distinct_1"] == pytest.approx((2 / 8 + 3 / 7) / 2)


def test_identical_completions_have_full_overlap_and_distinct_texts_none():
    texts = ["x y z", "x y z", "a b c", "d e f"]
    metrics = group_stats([0, 0, 1, 0], ["g", "g", "h", "h"], texts=texts, pass_k=()).metrics
    assert metrics["ngram_overlap"] == pytest.approx((1.0 + 0.0) / 2)
    assert ngrams(["x", "y", "z"], 2) == [("x", "y"), ("y", "z")] and ngrams(["x"], 2) == []


def test_zero_std_groups_are_those_whose_rewards_all_agree():
    rewards = [1.0, 1.0, 0.0, 0.5, 0.5, 0.3, 0.3 + 1e-12]
    groups = [0, 0, 1, 1, 2, 3, 3]  # groups 0 and 2 (single completion) agree; 3 agrees within atol
    summary = group_stats(rewards, groups, pass_k=())
    assert summary.metrics["zero_std_group_frac"] == pytest.approx(3 / 4)
    assert summary.metrics["n_groups"] == 4.0


def test_success_rule_is_reward_above_zero_by_default_or_the_threshold_or_explicit_flags():
    rewards = np.array([0.0, 0.4, 1.0, 2.0, -1.0, 0.9])
    groups = np.zeros(6, dtype=int)
    assert group_stats(rewards, groups, pass_k=(1,)).metrics["pass_at_1"] == pytest.approx(4 / 6)
    assert group_stats(rewards, groups, pass_k=(1,), success_threshold=1.0).metrics["pass_at_1"] == pytest.approx(2 / 6)
    correct = [True, False, False, False, False, False]
    assert group_stats(rewards, groups, correct=correct, pass_k=(1, 6)).metrics == pytest.approx(
        {**group_stats(rewards, groups, pass_k=()).metrics, "pass_at_1": 1 / 6, "pass_at_6": 1.0})


def test_pass_at_k_is_averaged_over_groups_with_at_least_k_completions():
    rewards = [1, 0, 0, 0, 1, 1]
    groups = [0, 0, 0, 0, 1, 1]  # sizes 4 and 2
    metrics = group_stats(rewards, groups, pass_k=(1, 2, 4)).metrics
    assert metrics["pass_at_1"] == pytest.approx((1 / 4 + 1) / 2)
    assert metrics["pass_at_2"] == pytest.approx((brute_force_pass_at_k(4, 1, 2) + 1) / 2)
    assert metrics["pass_at_4"] == pytest.approx(1.0)  # only group 0 has 4 samples
    assert "pass_at_8" not in group_stats(rewards, groups, pass_k=(8,)).metrics


def test_tensor_and_list_inputs_give_the_same_result():
    groups, rewards, texts, answers, lengths, advantages = random_groups(9)
    codes = np.unique(groups, return_inverse=True)[1]
    from_numpy = group_stats(rewards, codes, lengths=lengths, advantages=advantages, pass_k=(1, 2)).metrics
    from_torch = group_stats(torch.tensor(rewards), torch.tensor(codes), lengths=torch.tensor(lengths),
                             advantages=torch.tensor(advantages, dtype=torch.float32), pass_k=(1, 2)).metrics
    from_lists = group_stats(rewards.tolist(), codes.tolist(), lengths=lengths.tolist(),
                             advantages=advantages.tolist(), pass_k=(1, 2)).metrics
    assert from_numpy == from_lists
    assert from_torch == pytest.approx(from_numpy, rel=1e-6)  # advantages went through float32


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.sampled_from([0.0, 1.0])), min_size=1, max_size=30))
def test_group_order_does_not_change_any_metric(items):
    groups = [g for g, _ in items]
    rewards = [r for _, r in items]
    texts = [f"t{g} r{r}" for g, r in items]
    forward = group_stats(rewards, groups, texts=texts, answers=texts, pass_k=(1, 2)).metrics
    backward = group_stats(rewards[::-1], groups[::-1], texts=texts[::-1], answers=texts[::-1], pass_k=(1, 2)).metrics
    assert forward.keys() == backward.keys()
    for name in forward:
        assert forward[name] == pytest.approx(backward[name], rel=1e-12, abs=1e-15), name
    assert 0.0 <= forward["zero_std_group_frac"] <= 1.0 and not math.isnan(forward["reward_mean"])


@pytest.mark.parametrize("call, message", [
    (lambda: group_stats([1.0, 0.0], [0]), r"group_ids: expected length 2 \(one per reward\), got 1"),
    (lambda: group_stats([[1.0, 0.0]], [0]), r"rewards: expected a 1-D sequence .*got shape \(1, 2\)"),
    (lambda: group_stats([], []), r"rewards: expected at least one completion"),
    (lambda: group_stats([1.0, float("nan")], [0, 0]), r"rewards: expected finite values, got NaN/inf at 1 positions"),
    (lambda: group_stats(["a", "b"], [0, 0]), r"rewards: expected numbers, got dtype <U1"),
    (lambda: group_stats([1.0, 0.0], [0, 0], lengths=[3]), r"lengths: expected length 2 \(one per reward\), got 1"),
    (lambda: group_stats([1.0, 0.0], [0, 0], texts=["a"]), r"texts: expected 2 entries \(one per reward\), got 1"),
    (lambda: group_stats([1.0, 0.0], [0, 0], texts=["a", "b"], tokenize="bpe"),
     r"tokenize: expected 'whitespace' or 'char', got 'bpe'"),
    (lambda: group_stats([1.0, 0.0], [0, 0], answers=["a"]), r"answers: expected length 2 \(one per reward\), got 1"),
    (lambda: group_stats([1.0, 0.0], [0, 0], correct=[True]), r"correct: expected length 2 \(one per reward\), got 1"),
])
def test_bad_input_raises_input_error_naming_the_argument(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_short_answers_overlap_only_when_they_are_the_same_answer():
    """Completions shorter than the n-gram size (one-word answers) compare as wholes, not as two
    empty n-gram sets that would look identical."""
    metrics = group_stats([1.0, 0.0, 1.0, 1.0], ["a", "a", "b", "b"], texts=["57", "58", "12", "12"]).stats.compute()
    assert metrics["ngram_overlap"] == pytest.approx((0.0 + 1.0) / 2)
