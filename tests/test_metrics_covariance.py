"""logprob_advantage_cov against a float64 NumPy reference built from the definition in SCIENCE.md."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from entropymon.errors import InputError
from entropymon.metrics.covariance import logprob_advantage_cov, top_count


def random_batch(seed, batch=6, length=10, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    logprobs = (-torch.rand(batch, length, generator=generator, dtype=torch.float64) * 5).to(dtype)  # (B, T)
    advantages = torch.randn(batch, generator=generator, dtype=torch.float64).to(dtype)  # (B,)
    mask = torch.rand(batch, length, generator=generator) > 0.25  # (B, T)
    mask[:, 0] = True
    return logprobs, advantages, mask


def reference(logprobs, advantages, mask):
    """Every number from the definition, in float64 NumPy: x = log pi, y = A broadcast, u = pi * A."""
    x_full = logprobs.double().numpy()
    y_full = np.broadcast_to(advantages.double().numpy().reshape(-1, *[1] * (x_full.ndim - 1)), x_full.shape) \
        if advantages.shape != logprobs.shape else advantages.double().numpy()
    valid = mask.numpy()
    x, y = x_full[valid], y_full[valid]
    u = np.exp(x) * y
    cov_i = (x - x.mean()) * (y - y.mean())
    ranked = np.sort(cov_i)[::-1]
    out = {
        "cov_logp_adv": np.cov(x, y, bias=True)[0, 1],
        "cov_logp_piadv": np.cov(x, u, bias=True)[0, 1],
        "cov_sum_pos_adv": cov_i[y > 0].sum(),
        "cov_sum_neg_adv": cov_i[y < 0].sum(),
    }
    for name, fraction in (("0_02pct", 0.0002), ("0_2pct", 0.002)):
        k = max(1, math.ceil(round(fraction * len(x), 9)))
        out[f"cov_top_{name}_share"] = ranked[:k].sum() / cov_i.sum()
    out["cov_top_0_02pct_mean"] = ranked[:max(1, math.ceil(round(0.0002 * len(x), 9)))].mean()
    per_token = np.zeros(x_full.shape)
    per_token[valid] = cov_i
    return out, per_token


def assert_metrics_match(actual, expected):
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        assert actual[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_covariance_metrics_match_numpy_with_sequence_advantages_broadcast(seed):
    logprobs, advantages, mask = random_batch(seed)
    result = logprob_advantage_cov(logprobs, advantages, mask, per_token=True)
    expected, per_token = reference(logprobs, advantages, mask)
    assert_metrics_match(result.metrics, expected)
    assert result.per_token.dtype == torch.float32 and result.per_token.shape == logprobs.shape
    np.testing.assert_allclose(result.per_token.numpy(), per_token, rtol=1e-6, atol=1e-7)
    assert torch.all(result.per_token[~mask] == 0)


def test_per_token_advantages_equal_their_broadcast_sequence_form():
    logprobs, advantages, mask = random_batch(3)
    per_token_advantages = advantages[:, None].expand_as(logprobs).clone()  # (B, T)
    broadcast = logprob_advantage_cov(logprobs, advantages, mask)
    explicit = logprob_advantage_cov(logprobs, per_token_advantages, mask)
    assert broadcast.metrics == explicit.metrics and broadcast.stats == explicit.stats


def test_per_token_advantages_that_vary_within_a_sequence_match_numpy():
    generator = torch.Generator().manual_seed(4)
    logprobs = -torch.rand(3, 4, 25, generator=generator, dtype=torch.float64) * 3  # (B, G, T): any shape
    advantages = torch.randn(3, 4, 25, generator=generator, dtype=torch.float64)
    mask = torch.rand(3, 4, 25, generator=generator) > 0.1
    expected, _ = reference(logprobs, advantages, mask)
    assert_metrics_match(logprob_advantage_cov(logprobs, advantages, mask).metrics, expected)


def test_float32_and_bfloat16_inputs_are_reduced_in_float64():
    logprobs, advantages, mask = random_batch(5, batch=64, length=300)
    for dtype, tolerance in ((torch.float32, 1e-6), (torch.bfloat16, 1e-6)):
        low_lp, low_adv = logprobs.to(dtype), advantages.to(dtype)
        expected, _ = reference(low_lp, low_adv, mask)  # the reference sees the same rounded inputs
        actual = logprob_advantage_cov(low_lp, low_adv, mask).metrics
        for name, value in expected.items():
            assert actual[name] == pytest.approx(value, rel=tolerance, abs=1e-10), (dtype, name)


def test_no_mask_means_every_position_is_valid():
    logprobs, advantages, _ = random_batch(6)
    everything = torch.ones(logprobs.shape, dtype=torch.bool)
    assert logprob_advantage_cov(logprobs, advantages).metrics == logprob_advantage_cov(logprobs, advantages, everything).metrics


def test_top_share_picks_the_few_tokens_that_carry_the_covariance():
    # 10,000 tokens with tiny Cov_i and 2 with large ones: ceil(0.02% * 10002) = 3 tokens in the top
    rng = np.random.default_rng(7)
    n = 10_002
    x = rng.normal(-1.0, 0.01, n)
    y = rng.normal(0.0, 0.01, n)
    x[:2], y[:2] = 0.0, 5.0  # likely tokens with a large advantage: Cov_i about 1 * 5
    result = logprob_advantage_cov(torch.tensor(x), torch.tensor(y))
    cov_i = (x - x.mean()) * (y - y.mean())
    top = np.sort(cov_i)[::-1][:3]
    assert top_count(n, 0.0002) == 3 and top_count(n, 0.002) == 21
    assert result.metrics["cov_top_0_02pct_share"] == pytest.approx(top.sum() / cov_i.sum(), rel=1e-9)
    assert result.metrics["cov_top_0_02pct_mean"] == pytest.approx(top.mean(), rel=1e-9)
    assert result.metrics["cov_top_0_02pct_share"] > 0.9  # the two outliers dominate the batch covariance


def test_top_count_is_ceil_of_the_fraction_and_at_least_one():
    for n in (1, 7, 4999, 5000, 5001, 10**6):
        for fraction in (0.0002, 0.002):
            assert top_count(n, fraction) == max(1, math.ceil(round(fraction * n, 9)))


def test_equal_advantages_give_zero_covariance_and_no_top_share():
    logprobs, _, mask = random_batch(8)
    result = logprob_advantage_cov(logprobs, torch.full((6,), 0.5, dtype=torch.float64), mask)
    assert result.metrics["cov_logp_adv"] == pytest.approx(0.0, abs=1e-15)
    assert result.metrics["cov_sum_neg_adv"] == 0.0  # no token has A < 0
    assert "cov_top_0_2pct_share" not in result.metrics  # a share of a zero sum is undefined


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 12), st.integers(1, 20))
def test_split_by_advantage_sign_adds_up_to_the_total(seed, batch, length):
    # sum over A > 0, A < 0 and A == 0 tokens of Cov_i is n * Cov(log pi, A)
    logprobs, advantages, mask = random_batch(seed, batch, length)
    advantages[::3] = 0.0
    result = logprob_advantage_cov(logprobs, advantages, mask)
    x = logprobs.numpy()[mask.numpy()]
    y = np.broadcast_to(advantages.numpy()[:, None], logprobs.shape)[mask.numpy()]
    zero_part = ((x - x.mean()) * (0.0 - y.mean()))[y == 0].sum()
    total = result.metrics["cov_sum_pos_adv"] + result.metrics["cov_sum_neg_adv"] + zero_part
    assert total == pytest.approx(result.metrics["cov_logp_adv"] * len(x), rel=1e-9, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(-20, 20), st.floats(-5, 5))
def test_covariance_ignores_shifts_of_advantages_and_is_bilinear_in_scale(seed, shift, scale):
    logprobs, advantages, mask = random_batch(seed)
    base = logprob_advantage_cov(logprobs, advantages, mask).metrics["cov_logp_adv"]
    moved = logprob_advantage_cov(logprobs, advantages * scale + shift, mask).metrics["cov_logp_adv"]
    assert moved == pytest.approx(base * scale, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("call, message", [
    (lambda: logprob_advantage_cov(torch.zeros(2, 3), torch.zeros(3)),
     r"advantages: expected shape \(2, 3\) \(per token\) or \(2,\) \(per sequence\).*got \(3,\)"),
    (lambda: logprob_advantage_cov(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)),
     r"advantages: expected a floating dtype, got torch.int64"),
    (lambda: logprob_advantage_cov(torch.zeros(2, 3), [0.0, 1.0]), r"advantages: expected a floating torch.Tensor, got list"),
    (lambda: logprob_advantage_cov(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2)),
     r"logprobs: expected a floating dtype, got torch.int64"),
    (lambda: logprob_advantage_cov(torch.zeros(2, 3), torch.zeros(2), torch.zeros(2, 3, dtype=torch.bool)),
     r"mask: expected at least one True position"),
    (lambda: logprob_advantage_cov(torch.zeros(2, 3), torch.zeros(2), torch.ones(3, 2, dtype=torch.bool)),
     r"mask: expected shape \(2, 3\), got \(3, 2\)"),
    (lambda: logprob_advantage_cov(torch.tensor([[0.0, float("nan"), -1.0]]), torch.zeros(1)),
     r"logprobs: expected finite values, got NaN/inf at 1 of 3 valid positions"),
    (lambda: logprob_advantage_cov(torch.zeros(2, 3), torch.tensor([1.0, float("inf")])),
     r"advantages: expected finite values, got NaN/inf at 3 of 6 valid positions"),
])
def test_bad_input_raises_input_error_naming_the_argument(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_nan_at_a_masked_position_is_ignored():
    logprobs, advantages, mask = random_batch(9)
    logprobs[~mask] = float("nan")
    expected, _ = reference(torch.nan_to_num(logprobs), advantages, mask)
    assert_metrics_match(logprob_advantage_cov(logprobs, advantages, mask).metrics, expected)
