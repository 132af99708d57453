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
