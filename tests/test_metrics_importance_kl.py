"""importance_ess and kl_target_modes against float64 NumPy/SciPy references and closed forms."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp, softmax
from scipy.stats import entropy as scipy_entropy

from entropymon.errors import InputError
from entropymon.metrics.importance import importance_ess
from entropymon.metrics.kl_modes import kl_target_modes

# --- importance_ess --------------------------------------------------------------------------


def reference_ess_frac(log_w: np.ndarray) -> float:
    """(sum w)^2 / (N sum w^2), in log space with SciPy so that no exp() overflows."""
    return math.exp(2 * logsumexp(log_w) - logsumexp(2 * log_w)) / len(log_w)


@pytest.mark.parametrize("seed, spread", [(0, 0.1), (1, 1.0), (2, 3.0)])
def test_ess_matches_the_numpy_formula_on_masked_tokens(seed, spread):
    generator = torch.Generator().manual_seed(seed)
    old = -torch.rand(5, 40, generator=generator, dtype=torch.float64) * 4  # (B, T)
    new = old + torch.randn(5, 40, generator=generator, dtype=torch.float64) * spread
    mask = torch.rand(5, 40, generator=generator) > 0.3
    w = np.exp((new - old).numpy()[mask.numpy()])
    expected = w.sum() ** 2 / (len(w) * (w * w).sum())
    result = importance_ess(new, old, mask)
    assert result.metrics["ess_frac"] == pytest.approx(expected, rel=1e-12)
    assert result.stats.n == int(mask.sum())


def test_on_policy_weights_give_ess_one_and_a_single_dominant_weight_gives_one_over_n():
    logprobs = -torch.rand(3, 7, dtype=torch.float64)
    assert importance_ess(logprobs, logprobs.clone()).metrics["ess_frac"] == pytest.approx(1.0, rel=1e-15)
    dominated = logprobs.clone()
    dominated[1, 2] += 200.0  # w = e^200 for one token, 1 for the other 20
    assert importance_ess(dominated, logprobs).metrics["ess_frac"] == pytest.approx(1 / 21, rel=1e-12)


def test_ess_of_log_weights_far_beyond_exp_overflow_is_exact():
    log_w = np.array([900.0, 899.0, 898.5, -900.0])  # exp(900) overflows float64
    result = importance_ess(torch.tensor(log_w), torch.zeros(4))
    assert result.metrics["ess_frac"] == pytest.approx(reference_ess_frac(log_w), rel=1e-12)
    assert result.stats.log_shift == 900.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-30, 30), min_size=1, max_size=60), st.floats(-100, 100))
def test_ess_lies_between_one_over_n_and_one_and_ignores_a_common_shift(log_w, shift):
    log_w = np.asarray(log_w)
    base = importance_ess(torch.tensor(log_w), torch.zeros(len(log_w))).metrics["ess_frac"]
    moved = importance_ess(torch.tensor(log_w + shift), torch.zeros(len(log_w))).metrics["ess_frac"]
    assert 1 / len(log_w) - 1e-12 <= base <= 1 + 1e-12
    assert moved == pytest.approx(base, rel=1e-9)
    assert base == pytest.approx(reference_ess_frac(log_w), rel=1e-9)


def test_float32_logprobs_are_subtracted_in_float64():
    generator = torch.Generator().manual_seed(3)
    new = (-torch.rand(4, 50, generator=generator) * 8).float()
    old = (new.double() + torch.randn(4, 50, generator=generator, dtype=torch.float64) * 0.5).float()
    log_w = new.double().numpy().ravel() - old.double().numpy().ravel()
    assert importance_ess(new, old).metrics["ess_frac"] == pytest.approx(reference_ess_frac(log_w), rel=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: importance_ess(torch.zeros(2, 3), torch.zeros(3, 2)),
     r"old_logprobs: expected shape \(2, 3\) \(the shape of logprobs\), got \(3, 2\)"),
    (lambda: importance_ess(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long)),
     r"old_logprobs: expected a floating dtype, got torch.int64"),
    (lambda: importance_ess([0.0], torch.zeros(1)), r"logprobs: expected a floating torch.Tensor, got list"),
    (lambda: importance_ess(torch.zeros(0), torch.zeros(0)), r"logprobs: expected at least one element"),
    (lambda: importance_ess(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3)),
     r"mask: expected at least one True position"),
    (lambda: importance_ess(torch.tensor([0.0, float("inf")]), torch.zeros(2)),
     r"logprobs: expected finite values, got NaN/inf at 1 of 2 valid positions"),
    (lambda: importance_ess(torch.zeros(2), torch.tensor([float("nan"), 0.0])),
     r"old_logprobs: expected finite values, got NaN/inf at 1 of 2"),
])
def test_ess_bad_input_raises_input_error_naming_the_argument(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_ess_ignores_nan_at_masked_positions():
    new = torch.tensor([[0.1, float("nan")], [-0.3, 0.2]], dtype=torch.float64)
    mask = torch.tensor([[True, False], [True, True]])
    expected = reference_ess_frac(np.array([0.1, -0.3, 0.2]))
    assert importance_ess(new, torch.zeros(2, 2), mask).metrics["ess_frac"] == pytest.approx(expected, rel=1e-12)


# --- kl_target_modes -------------------------------------------------------------------------


def reference_group_entropies(ref, rewards, groups, beta):
    """label -> entropy of softmax(log pi_ref + R / beta) over the group's completions (SciPy)."""
    groups = np.asarray(groups)
    return {g: scipy_entropy(softmax(ref[groups == g] + rewards[groups == g] / beta)) for g in np.unique(groups)}


@pytest.mark.parametrize("beta", [0.01, 0.3, 5.0])
def test_kl_target_entropy_matches_scipy_per_group(beta):
    rng = np.random.default_rng(int(beta * 100))
    groups = rng.permutation(np.repeat(["a", "b", "c", "d", "e"], [1, 2, 4, 8, 5]))
    ref = -rng.uniform(5, 60, len(groups))
    rewards = rng.choice([0.0, 1.0], len(groups))
    result = kl_target_modes(torch.tensor(ref, dtype=torch.float64), rewards, groups.tolist(), beta)
    expected = reference_group_entropies(ref, rewards, groups, beta)
    assert result.group_ids.tolist() == sorted(expected)
    np.testing.assert_allclose(result.group_entropy.numpy(), [expected[g] for g in result.group_ids], atol=1e-12)
    np.testing.assert_allclose(result.group_modes.numpy(), np.exp([expected[g] for g in result.group_ids]), rtol=1e-12)
    assert result.metrics["kl_target_entropy"] == pytest.approx(np.mean(list(expected.values())), rel=1e-12, abs=1e-15)
    assert result.metrics["kl_target_modes"] == pytest.approx(np.mean(np.exp(list(expected.values()))), rel=1e-12)


def test_equal_reference_logprobs_and_rewards_want_every_completion():
    sizes = [1, 3, 8]
    groups = np.repeat([0, 1, 2], sizes)
    result = kl_target_modes(torch.full((12,), -7.0), np.ones(12), torch.tensor(groups), beta=0.05)
    np.testing.assert_allclose(result.group_entropy.numpy(), np.log(sizes), atol=1e-12)
    np.testing.assert_allclose(result.group_modes.numpy(), sizes, rtol=1e-12)


def test_small_beta_with_one_rewarded_completion_wants_a_single_mode():
    ref = torch.tensor([-10.0, -12.0, -11.0, -10.5])
    result = kl_target_modes(ref, [0.0, 1.0, 0.0, 0.0], [0, 0, 0, 0], beta=1e-3)  # R/beta = 1000 nats apart
    assert result.group_entropy.item() == pytest.approx(0.0, abs=1e-12)
    assert result.metrics["kl_target_modes"] == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.floats(-300, 0), st.floats(-2, 2)), min_size=1, max_size=25),
       st.floats(1e-3, 100))
def test_kl_target_entropy_lies_between_zero_and_log_group_size(items, beta):
    groups = np.array([g for g, _, _ in items])
    ref = torch.tensor([r for _, r, _ in items], dtype=torch.float64)
    rewards = np.array([a for _, _, a in items])
    result = kl_target_modes(ref, rewards, groups, beta)
    sizes = np.array([np.sum(groups == g) for g in result.group_ids])
    entropy = result.group_entropy.numpy()
    assert np.all(entropy >= 0) and np.all(entropy <= np.log(sizes) + 1e-9)
    expected = reference_group_entropies(ref.numpy(), rewards, groups, beta)
    np.testing.assert_allclose(entropy, [expected[g] for g in result.group_ids], atol=1e-9)


@pytest.mark.parametrize("call, message", [
    (lambda: kl_target_modes(torch.zeros(3), [0, 1, 0], [0, 0, 1], beta=0.0), r"beta: expected a positive finite number, got 0.0"),
    (lambda: kl_target_modes(torch.zeros(3), [0, 1, 0], [0, 0, 1], beta=-1), r"beta: .*got -1"),
    (lambda: kl_target_modes(torch.zeros(3), [0, 1], [0, 0, 1], beta=1.0), r"rewards: expected shape \(3,\).*got \(2,\)"),
    (lambda: kl_target_modes(torch.zeros(3), [0, 1, 0], [0, 0], beta=1.0), r"group_ids: expected shape \(3,\).*got \(2,\)"),
    (lambda: kl_target_modes(torch.zeros(2, 3), [0, 1], [0, 0], beta=1.0), r"ref_seq_logprobs: expected shape \(N,\).*got \(2, 3\)"),
    (lambda: kl_target_modes(torch.zeros(3, dtype=torch.long), [0, 1, 0], [0, 0, 1], beta=1.0),
     r"ref_seq_logprobs: expected a floating dtype"),
    (lambda: kl_target_modes(torch.tensor([0.0, float("nan")]), [0, 1], [0, 0], beta=1.0),
     r"ref_seq_logprobs: expected finite values, got NaN/inf at 1 of 2"),
    (lambda: kl_target_modes(torch.zeros(2), [0, float("inf")], [0, 0], beta=1.0), r"rewards: expected finite values"),
    (lambda: kl_target_modes(torch.zeros(2), ["x", "y"], [0, 0], beta=1.0), r"rewards: expected a sequence of numbers"),
])
def test_kl_bad_input_raises_input_error_naming_the_argument(call, message):
    with pytest.raises(InputError, match=message):
        call()
