"""Entropy dynamics: observed dH against the covariance, with a known effective step size."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from entropymon.analysis.dynamics import entropy_dynamics
from entropymon.errors import AnalysisError


def _run(eta=0.5, n=200, noise=0.002, every=1, seed=0):
    """Entropy driven by dH = -eta * Cov + noise per update, logged every ``every`` steps."""
    rng = np.random.default_rng(seed)
    cov = np.abs(rng.normal(0.02, 0.01, n))  # mostly positive, as in the paper
    dh = -eta * cov + rng.normal(0, noise, n)
    h = 1.0 + np.concatenate([[0.0], np.cumsum(dh)[:-1]])
    frame = pd.DataFrame({"step": np.arange(n), "entropy_mean": h, "cov_logp_adv": cov,
                          "cov_logp_piadv": rng.normal(0, 0.01, n)})
    return frame.iloc[::every].reset_index(drop=True), cov, dh


def test_dynamics_recovers_a_known_effective_step_size():
    frame, cov, dh = _run(eta=0.5)
    result = entropy_dynamics(frame)
    fit = result.fits["cov_logp_adv"]
    used_cov, used_dh = cov[:-1], dh[:-1]
    assert fit.eta_eff == pytest.approx(-(used_cov @ used_dh) / (used_cov @ used_cov))
    assert fit.eta_eff == pytest.approx(0.5, rel=0.05)
    assert fit.pearson_r == pytest.approx(stats.pearsonr(used_cov, used_dh).statistic)
    assert fit.pearson_r < -0.8 and fit.spearman_rho < -0.8
    # the unrelated form shows no relation
    assert abs(result.fits["cov_logp_piadv"].pearson_r) < 0.3


def test_dynamics_divides_by_the_gap_between_logged_steps():
    frame, _, _ = _run(every=5)
    result = entropy_dynamics(frame)
    h = frame["entropy_mean"].to_numpy()
    np.testing.assert_allclose(result.table["dH"], np.diff(h) / 5)


def test_missing_covariance_form_is_reported_not_fatal():
    frame, _, _ = _run()
    result = entropy_dynamics(frame.drop(columns="cov_logp_piadv"))
    assert "cov_logp_piadv" in result.missing and "missing" in result.missing["cov_logp_piadv"]
    assert "cov_logp_adv" in result.fits


def test_no_covariance_at_all_is_a_clear_error():
    frame, _, _ = _run()
    with pytest.raises(AnalysisError, match="cov_logp_adv"):
        entropy_dynamics(frame[["step", "entropy_mean"]])


def _probed_run(n=120, seed=0):
    """A run with the dH probe: dh_same_batch = the logit-space prediction + small noise; the covariance only weakly related."""
    rng = np.random.default_rng(seed)
    cov = np.abs(rng.normal(0.02, 0.01, n))
    pred = -0.3 * cov + rng.normal(0, 0.01, n)  # the network's coupling: dz is not proportional to A
    dh_same = pred + rng.normal(0, 0.002, n)
    entropy = 1.0 + rng.normal(0, 0.05, n)  # different batches: the naive change is noise
    frame = pd.DataFrame({"step": np.arange(n), "entropy_mean": entropy, "cov_logp_adv": cov,
                          "dh_same_batch": dh_same, "dh_pred_logit": pred})
    frame["dh_sum"] = 100 * dh_same
    frame["dh_sum_pos_adv"] = 80 * dh_same
    frame["dh_sum_neg_adv"] = 15 * dh_same
    frame["dh_sum_zero_adv"] = 5 * dh_same
    return frame


def test_the_same_batch_change_is_preferred_and_each_predictor_is_fitted_with_intervals():
    frame = _probed_run()
    result = entropy_dynamics(frame, n_bootstrap=500)
    assert result.observed == "same_batch"
    np.testing.assert_array_equal(result.table["dH"], frame["dh_same_batch"])
    logit, cov = result.fits["dh_pred_logit"], result.fits["cov_logp_adv"]
    x, y = frame["dh_pred_logit"].to_numpy(), frame["dh_same_batch"].to_numpy()
    assert logit.pearson_r == pytest.approx(stats.pearsonr(x, y).statistic)
    assert logit.r2 == pytest.approx(logit.pearson_r**2)
    assert logit.eta_eff == pytest.approx((x @ y) / (x @ x))  # through the origin, sign +1
    assert logit.r_ci[0] < logit.pearson_r < logit.r_ci[1] and logit.eta_ci[0] < logit.eta_eff < logit.eta_ci[1]
    c = frame["cov_logp_adv"].to_numpy()
    assert cov.eta_eff == pytest.approx(-(c @ y) / (c @ c))  # dH ~ -eta * Cov
    assert cov.r_ci[0] < cov.pearson_r < cov.r_ci[1]
    assert logit.r2 > 0.9 and cov.r2 < logit.r2 / 2
    np.testing.assert_allclose(result.predicted("cov_logp_adv"), -cov.eta_eff * c)
    assert "logit-space prediction" in result.explanation and f"{100 * logit.r2:.0f}%" in result.explanation
    assert "explains the change" in result.explanation
    assert result.attribution == pytest.approx({"positive_advantage": 0.8, "zero_advantage": 0.05,
                                                "negative_advantage": 0.15})
    naive = np.diff(frame["entropy_mean"].to_numpy())
    assert result.naive_spread_ratio == pytest.approx(np.std(naive) / np.std(y))
    assert "batch-to-batch noise" in result.explanation


def test_bootstrap_interval_of_r_covers_the_truth_in_most_seeded_runs():
    # 40 independent runs with a known population correlation: the 95% interval should cover it ~95% of the time
    rho, covered = 0.6, 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=60)
        y = rho * x + np.sqrt(1 - rho**2) * rng.normal(size=60)
        frame = pd.DataFrame({"step": np.arange(60), "dh_same_batch": y, "dh_pred_logit": x})
        fit = entropy_dynamics(frame, covariances=(), n_bootstrap=400, seed=seed).fits["dh_pred_logit"]
        covered += fit.r_ci[0] <= rho <= fit.r_ci[1]
    assert covered >= 32  # binomial(40, 0.95): P(covered < 33) ~ 1e-3; percentile intervals run a little narrow


def test_without_the_probe_the_naive_change_is_called_batch_noise():
    frame, _, _ = _run()
    result = entropy_dynamics(frame)
    assert result.observed == "naive" and result.attribution == {} and result.naive_spread_ratio is None
    assert "batch-to-batch noise" in result.explanation and "dh_probe_every" in result.explanation


def test_summary_carries_the_same_explanation():
    from entropymon.analysis.summary import summarize_run

    frame = _probed_run()
    frame["reward_mean"] = np.linspace(0.2, 0.8, len(frame))
    summary = summarize_run(frame, n_bootstrap=50)
    assert summary["dynamics"]["observed"] == "same_batch"
    assert summary["dynamics"]["explanation"] == entropy_dynamics(frame).explanation
