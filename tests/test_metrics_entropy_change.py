"""The same-batch entropy change, its logit-space prediction and its attribution.

References: a NumPy/SciPy recomputation from before/after logits saved to disk, and the closed
form on a single softmax (one state, logits moved by eta * A: natural policy gradient, where Cui
et al.'s first-order formula -eta * Cov_{a~pi}(log pi, A) is exact to O(eta^2)).
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import log_softmax

from entropymon.errors import InputError
from entropymon.metrics.entropy_change import entropy_change, entropy_change_stats
from entropymon.metrics.stats import FORKING_THRESHOLD, DhStats


def numpy_change(before, after, temperature):
    """(H_before, H_after, predicted) per position, float64."""
    log_p = log_softmax(before / temperature, axis=-1)
    log_q = log_softmax(after / temperature, axis=-1)
    p, q = np.exp(log_p), np.exp(log_q)
    h_before, h_after = -(p * log_p).sum(-1), -(q * log_q).sum(-1)
    dz = (after - before) / temperature
    mean_log_p = (p * log_p).sum(-1, keepdims=True)
    mean_dz = (p * dz).sum(-1, keepdims=True)
    predicted = -(p * (log_p - mean_log_p) * (dz - mean_dz)).sum(-1)
    return h_before, h_after, predicted, log_p


@pytest.fixture
def saved_logits(tmp_path):
    """Logits of 6 sequences x 5 positions x 11 tokens before and after a small update, saved and reloaded."""
    rng = np.random.default_rng(3)
    before = rng.normal(0, 2, size=(6, 5, 11)).astype(np.float32)
    after = (before + rng.normal(0, 0.2, size=before.shape)).astype(np.float32)
    np.save(tmp_path / "before.npy", before)
    np.save(tmp_path / "after.npy", after)
    mask = rng.random((6, 5)) > 0.25
    mask[0] = True
    token_ids = rng.integers(0, 11, size=(6, 5))
    advantages = np.array([1.5, -0.5, 0.0, 0.0, 2.0, -1.0])
    return np.load(tmp_path / "before.npy"), np.load(tmp_path / "after.npy"), mask, token_ids, advantages


def test_per_token_change_and_prediction_match_numpy(saved_logits):
    before, after, mask, token_ids, _ = saved_logits
    result = entropy_change(torch.from_numpy(before), torch.from_numpy(after), torch.from_numpy(token_ids),
                            torch.from_numpy(mask), temperature=0.7)
    h_before, h_after, predicted, log_p = numpy_change(before.astype(np.float64), after.astype(np.float64), 0.7)
    picked = np.take_along_axis(log_p, token_ids[..., None], -1)[..., 0]
    for name, expected in (("entropy_before", h_before), ("entropy_after", h_after), ("dh", h_after - h_before),
                           ("predicted", predicted), ("logprob_before", picked)):
        got = getattr(result, name).numpy()
        np.testing.assert_allclose(got[mask], expected[mask], atol=2e-6, err_msg=name)
        assert (got[~mask] == 0).all(), name


def test_attribution_matches_a_numpy_recomputation(saved_logits):
    before, after, mask, token_ids, advantages = saved_logits
    change = entropy_change(torch.from_numpy(before), torch.from_numpy(after), torch.from_numpy(token_ids),
                            torch.from_numpy(mask))
    result = entropy_change_stats(change.dh, change.predicted, change.entropy_before, torch.from_numpy(mask),
                                  advantages=torch.from_numpy(advantages).float(), logprobs=change.logprob_before)
    h_before, h_after, predicted, log_p = numpy_change(before.astype(np.float64), after.astype(np.float64), 1.0)
    dh = (h_after - h_before)[mask]
    adv = np.broadcast_to(advantages[:, None], mask.shape)[mask]
    x = np.take_along_axis(log_p, token_ids[..., None], -1)[..., 0][mask]
    cov_i = (x - x.mean()) * (adv - adv.mean())
    top = np.argsort(-cov_i)[:1]  # 22 tokens: ceil(0.002 * 22) = 1 for both fractions
    per_seq = [(h_after - h_before)[i][mask[i]].mean() for i in range(mask.shape[0]) if mask[i].any()]
    m = result.metrics
    expected = {
        "dh_same_batch": dh.mean(), "dh_same_batch_seq": np.mean(per_seq), "dh_pred_logit": predicted[mask].mean(),
        "dh_sum": dh.sum(), "dh_sum_pos_adv": dh[adv > 0].sum(), "dh_sum_zero_adv": dh[adv == 0].sum(),
        "dh_sum_neg_adv": dh[adv < 0].sum(), "dh_sum_forking": dh[h_before[mask] > FORKING_THRESHOLD].sum(),
        "dh_sum_top_0_02pct_cov": dh[top].sum(), "dh_sum_top_0_2pct_cov": dh[top].sum(),
        "dh_pred_token_r": np.corrcoef(dh, predicted[mask])[0, 1], "dh_entropy_before": h_before[mask].mean(),
        "dh_probe_tokens": mask.sum(),
    }
    for name, value in expected.items():
        np.testing.assert_allclose(m[name], value, rtol=1e-4, atol=2e-6, err_msg=name)
    assert m["dh_sum_pos_adv"] + m["dh_sum_zero_adv"] + m["dh_sum_neg_adv"] == pytest.approx(m["dh_sum"], abs=1e-6)


@pytest.mark.parametrize("eta", [1e-2, 1e-3])
def test_prediction_is_the_closed_form_natural_gradient_change_on_one_softmax(eta):
    """Tabular softmax, dz = eta * A: predicted = -eta Cov_pi(log pi, A), and the exact change agrees to O(eta^2)."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, size=8)
    advantage = rng.normal(0, 1, size=8)
    pi = np.exp(log_softmax(z))
    log_pi = np.log(pi)
    closed_form = -eta * (np.sum(pi * log_pi * advantage) - np.sum(pi * log_pi) * np.sum(pi * advantage))
    before = torch.tensor(z, dtype=torch.float64)[None, None]  # (1, 1, 8)
    after = before + eta * torch.tensor(advantage)[None, None]
    result = entropy_change(before, after)
    assert result.predicted.item() == pytest.approx(closed_form, rel=1e-5)
    exact = float(-(np.exp(log_softmax(z + eta * advantage)) * log_softmax(z + eta * advantage)).sum()
                  + (pi * log_pi).sum())
    assert result.dh.item() == pytest.approx(exact, abs=1e-6)
    # second order: the first-order error is at most a constant times eta^2 (the constant, |d2H/d eta^2|/2, is < 5 here)
    assert abs(exact - closed_form) < 5 * eta**2
    assert abs(exact - closed_form) < 0.1 * abs(closed_form) * (eta / 1e-2)


def test_first_order_error_shrinks_quadratically_with_the_step():
    rng = np.random.default_rng(1)
    z = torch.tensor(rng.normal(0, 1, size=(1, 1, 16)))
    direction = torch.tensor(rng.normal(0, 1, size=(1, 1, 16)))
    errors = []
    for eta in (1e-2, 1e-3):
        result = entropy_change(z, z + eta * direction)
        errors.append(abs(result.dh.item() - result.predicted.item()))
    assert 60 < errors[0] / errors[1] < 160  # ~100 = (1e-2 / 1e-3)^2


def test_a_small_scratch_budget_gives_the_same_values(saved_logits):
    before, after, mask, token_ids, _ = saved_logits
    args = (torch.from_numpy(before), torch.from_numpy(after), torch.from_numpy(token_ids), torch.from_numpy(mask))
    whole, chunked = entropy_change(*args), entropy_change(*args, scratch_bytes=1)
    for name in ("entropy_before", "entropy_after", "dh", "predicted", "logprob_before"):
        assert torch.equal(getattr(whole, name), getattr(chunked, name)), name


def test_a_shift_of_the_logits_changes_nothing():
    torch.manual_seed(0)
    before = torch.randn(2, 3, 7)
    after = before + 0.1 * torch.randn(2, 3, 7)
    plain = entropy_change(before, after)
    shifted = entropy_change(before + 5.0, after - 3.0)
    torch.testing.assert_close(plain.predicted, shifted.predicted, atol=1e-6, rtol=0)
    torch.testing.assert_close(plain.dh, shifted.dh, atol=1e-6, rtol=0)


@settings(max_examples=30, deadline=None)
@given(split=st.integers(1, 5), seed=st.integers(0, 1000))
def test_stats_of_two_parts_merge_into_the_stats_of_the_whole(split, seed):
    generator = torch.Generator().manual_seed(seed)
    dh, pred, h = (torch.randn(6, 4, generator=generator) for _ in range(3))
    h = h.abs()
    adv = torch.randn(6, generator=generator).round()
    whole = entropy_change_stats(dh, pred, h, advantages=adv).stats
    parts = [entropy_change_stats(dh[s], pred[s], h[s], advantages=adv[s]).stats
             for s in (slice(0, split), slice(split, 6))]
    merged = DhStats.merged(parts)
    for name, value in whole.compute().items():
        assert merged.compute()[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_bad_inputs_name_the_argument():
    before = torch.randn(2, 3, 5)
    with pytest.raises(InputError, match="logits_after: expected shape"):
        entropy_change(before, torch.randn(2, 3, 4))
    with pytest.raises(InputError, match="token_ids: expected values in"):
        entropy_change(before, before, token_ids=torch.full((2, 3), 9))
    with pytest.raises(InputError, match="logits_before/logits_after: expected finite"):
        entropy_change(before, before.masked_fill(before > 1, float("inf")))
    with pytest.raises(InputError, match="advantages: expected shape"):
        entropy_change_stats(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), advantages=torch.zeros(3))
