"""The law fit: recovers known coefficients within its intervals, shows a poor fit as poor, and
rejects degenerate input with clear errors."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from entropymon.analysis.law import fit_entropy_law, fit_run_law
from entropymon.errors import AnalysisError, InputError

A_TRUE, B_TRUE = 0.8, 1.7  # ceiling 0.9


def law_curve(n=60, noise=0.03, seed=0, tau=20.0):
    """Entropy decaying 0.75 -> 0.15 nats and R = b - a*e^H + N(0, noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    h = 0.15 + 0.6 * np.exp(-t / tau)
    r = B_TRUE - A_TRUE * np.exp(h) + rng.normal(0.0, noise, n)
    return t, h, r


def test_fit_matches_scipy_linregress_on_e_to_the_h():
    _, h, r = law_curve(seed=3)
    fit = fit_entropy_law(h, r, n_bootstrap=0)
    reference = stats.linregress(np.exp(h), r)
    assert fit.a == pytest.approx(-reference.slope, rel=1e-10)
    assert fit.b == pytest.approx(reference.intercept, rel=1e-10)
    assert fit.ceiling == pytest.approx(reference.intercept + reference.slope, rel=1e-10)
    assert fit.r2 == pytest.approx(reference.rvalue**2, rel=1e-10)
    residuals = r - (reference.intercept + reference.slope * np.exp(h))
    np.testing.assert_allclose(fit.residuals, residuals, atol=1e-12)
    assert fit.rmse == pytest.approx(np.sqrt(np.mean(residuals**2)))
    np.testing.assert_allclose(fit.predict(h), r - residuals, atol=1e-12)


def test_intervals_cover_true_coefficients_at_about_the_nominal_rate():
    # 200 independent noisy curves, 95% pairs-bootstrap percentile intervals. Percentile
    # intervals undercover slightly at n = 60 (measured ~92-93%). If the true coverage were 0.92,
    # 200 draws give 184 +- 3.8 hits; 176 (88%) is more than 2 sd below, so the test fails only
    # when intervals are genuinely too narrow. Too wide intervals are caught by the width test.
    hits = {"a": 0, "b": 0, "ceiling": 0}
    for seed in range(200):
        _, h, r = law_curve(seed=seed)
        fit = fit_entropy_law(h, r, n_bootstrap=400, seed=seed)
        hits["a"] += fit.a_ci[0] <= A_TRUE <= fit.a_ci[1]
        hits["b"] += fit.b_ci[0] <= B_TRUE <= fit.b_ci[1]
        hits["ceiling"] += fit.ceiling_ci[0] <= B_TRUE - A_TRUE <= fit.ceiling_ci[1]
    for name, count in hits.items():
        assert count >= 176, (name, count)


def test_bootstrap_interval_width_matches_classical_t_interval_for_homoscedastic_noise():
    # With i.i.d. normal noise the pairs bootstrap and the textbook OLS interval estimate the
    # same spread; averaged over 30 curves their width ratio should be close to 1.
    ratios = []
    for seed in range(30):
        _, h, r = law_curve(seed=seed)
        fit = fit_entropy_law(h, r, n_bootstrap=1000, seed=seed)
        reference = stats.linregress(np.exp(h), r)
        classical = 2 * stats.t.ppf(0.975, h.size - 2) * reference.stderr
        ratios.append((fit.a_ci[1] - fit.a_ci[0]) / classical)
    assert 0.85 < np.mean(ratios) < 1.15


def test_law_shaped_data_gives_reliable_fit_with_ceiling_in_bounds():
    _, h, r = law_curve(seed=1)
    fit = fit_entropy_law(h, r, bounds=(0, 1))
    assert fit.reliable, fit.problems
    assert fit.ceiling_in_bounds is True
    assert fit.r2 > 0.9


def test_pure_noise_is_reported_as_an_unreliable_fit():
    t, h, _ = law_curve()
    r = np.random.default_rng(7).normal(0.5, 0.1, t.size)
    fit = fit_entropy_law(h, r, bounds=(0, 1))
    assert not fit.reliable
    assert fit.r2 < 0.5
    assert any("R²" in p for p in fit.problems)


def test_ceiling_outside_bounds_is_flagged():
    # Steep law whose ceiling at H = 0 is 1.3: valid fit, impossible accuracy.
    h = np.linspace(0.8, 0.3, 40)
    r = 2.0 - 0.7 * np.exp(h)
    fit = fit_entropy_law(h, r + np.random.default_rng(0).normal(0, 0.01, 40), bounds=(0, 1))
    assert fit.ceiling == pytest.approx(1.3, abs=0.05)
    assert fit.ceiling_in_bounds is False
    assert not fit.reliable
    assert any("outside the metric's range [0, 1]" in p for p in fit.problems)


def test_nan_pairs_are_dropped_and_counted():
    _, h, r = law_curve(seed=2)
    h, r = h.copy(), r.copy()
    h[[3, 10]] = np.nan
    r[20] = np.inf
    fit = fit_entropy_law(h, r, n_bootstrap=0)
    keep = np.isfinite(h) & np.isfinite(r)
    reference = stats.linregress(np.exp(h[keep]), r[keep])
    assert fit.n_dropped_nan == 3 and fit.n == keep.sum()
    assert fit.a == pytest.approx(-reference.slope)


@pytest.mark.parametrize(
    "entropy, performance, message",
    [
        ([0.5, 0.4], [0.1, 0.2], "at least 3"),
        ([0.5, 0.5, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4], "constant"),
        ([np.nan] * 5, [0.1] * 5, "at least 3"),
        ([0.5, 0.4, 0.3], [0.1, 0.2], "equal lengths"),
    ],
)
def test_degenerate_input_raises_analysis_error_naming_the_problem(entropy, performance, message):
    with pytest.raises(AnalysisError, match=message):
        fit_entropy_law(entropy, performance)


def test_bad_arguments_raise_input_error():
    _, h, r = law_curve()
    with pytest.raises(InputError, match="ci"):
        fit_entropy_law(h, r, ci=1.5)
    with pytest.raises(InputError, match="bounds"):
        fit_entropy_law(h, r, bounds=(1, 0))
    with pytest.raises(InputError, match="n_bootstrap"):
        fit_entropy_law(h, r, n_bootstrap=-1)


@settings(max_examples=40, deadline=None)
@given(
    a=st.floats(0.05, 5.0),
    b=st.floats(-2.0, 5.0),
    h=st.lists(st.floats(0.0, 3.0), min_size=3, max_size=30, unique=True),
)
def test_noise_free_law_is_recovered_exactly(a, b, h):
    h = np.array(h)
    if np.ptp(np.exp(h)) < 1e-3:
        return
    fit = fit_entropy_law(h, b - a * np.exp(h), n_bootstrap=50)
    assert fit.a == pytest.approx(a, rel=1e-6, abs=1e-6)
    assert fit.ceiling == pytest.approx(b - a, rel=1e-6, abs=1e-6)
    # every resample of exact data lies on the same line
    assert fit.ceiling_ci[0] == pytest.approx(b - a, rel=1e-5, abs=1e-5)


def test_to_dict_is_json_serialisable_with_none_for_nan():
    _, h, r = law_curve()
    text = json.dumps(fit_entropy_law(h, r, n_bootstrap=0).to_dict())
    loaded = json.loads(text)
    assert loaded["a_ci"] == [None, None]
    assert len(loaded["residuals"]) == h.size


def _run_frame(h, r, **extra):
    return pd.DataFrame({"step": np.arange(h.size), "entropy_mean": h, "reward_mean": r, **extra})


def test_run_fit_prefers_eval_accuracy_and_records_its_choices():
    t, h, r = law_curve(seed=4)
    evals = np.full(t.size, np.nan)
    evals[::10] = r[::10]
    fit = fit_run_law(_run_frame(h, r + 5.0, eval_accuracy=evals), n_bootstrap=100)
    assert fit.performance_column == "eval_accuracy"
    assert fit.n == 6 and fit.entropy_column == "entropy_mean"
    reference = stats.linregress(np.exp(h[::10]), r[::10])
    assert fit.a == pytest.approx(-reference.slope)
    assert fit.bounds == (0.0, 1.0)  # accuracy is a fraction


def test_run_fit_falls_back_to_reward_mean_when_eval_has_too_few_points():
    t, h, r = law_curve(seed=4)
    evals = np.full(t.size, np.nan)
    evals[[0, 30]] = 0.5
    fit = fit_run_law(_run_frame(h, r, eval_accuracy=evals), n_bootstrap=0)
    assert fit.performance_column == "reward_mean"


def test_run_fit_smoothing_equals_fitting_the_pandas_ema():
    _, h, r = law_curve(seed=5, noise=0.1)
    fit = fit_run_law(_run_frame(h, r), smoothing=0.3, warmup=None, n_bootstrap=0)
    hs = pd.Series(h).ewm(alpha=0.3, adjust=False).mean().to_numpy()
    rs = pd.Series(r).ewm(alpha=0.3, adjust=False).mean().to_numpy()
    reference = stats.linregress(np.exp(hs), rs)
    assert fit.smoothing == "ema(alpha=0.3)"
    assert fit.a == pytest.approx(-reference.slope)
    window_fit = fit_run_law(_run_frame(h, r), smoothing=4, warmup=None, n_bootstrap=0)
    assert window_fit.smoothing == "mean(window=4)"


def test_run_fit_excludes_an_entropy_warm_up_and_says_so():
    t, h, r = law_curve(n=90, seed=6, tau=25)
    rise = 0.75 + 0.15 * np.sin(np.linspace(0, np.pi / 2, 15))  # entropy climbs for 15 steps
    h = np.concatenate([rise, h[: 90 - 15] + 0.15])
    r = B_TRUE - A_TRUE * np.exp(h)
    r[:14] = 0.0  # off the law before the entropy peak
    fit = fit_run_law(_run_frame(h, r), n_bootstrap=0)
    assert fit.warmup_excluded == 14  # argmax of the rise is its last point, index 14
    assert fit.first_step == 14.0
    assert any("warm-up" in note for note in fit.notes)
    assert fit.a == pytest.approx(A_TRUE, rel=1e-6)
    kept = fit_run_law(_run_frame(h, r), warmup=None, n_bootstrap=0)
    assert kept.warmup_excluded == 0 and kept.n == 90


def test_run_fit_steps_slice_selects_step_values():
    _, h, r = law_curve(seed=8)
    fit = fit_run_law(_run_frame(h, r), steps=slice(10, 40), warmup=None, n_bootstrap=0)
    reference = stats.linregress(np.exp(h[10:40]), r[10:40])
    assert fit.n == 30 and fit.a == pytest.approx(-reference.slope)


def test_run_fit_missing_column_names_available_columns():
    _, h, r = law_curve()
    with pytest.raises(AnalysisError, match="entropy_seq_mean"):
        fit_run_law(_run_frame(h, r), entropy="entropy_seq_mean")
    with pytest.raises(AnalysisError, match="eval_accuracy"):
        fit_run_law(pd.DataFrame({"step": [0, 1, 2], "entropy_mean": [1.0, 0.9, 0.8]}))


def test_run_fit_accepts_a_run_object_with_step_metrics():
    _, h, r = law_curve(seed=9)

    class Run:  # what entropymon.log.reader.read_run returns, as far as analysis cares
        name = "r"
        step_metrics = _run_frame(h, r)

    assert fit_run_law(Run(), n_bootstrap=0).a == fit_run_law(Run.step_metrics, n_bootstrap=0).a


def test_run_fit_with_duplicate_steps_asks_for_combined_ranks():
    frame = pd.DataFrame({"step": [0, 0, 1], "entropy_mean": [1, 1, 0.5], "reward_mean": [0, 0, 1]})
    with pytest.raises(InputError, match="combine ranks"):
        fit_run_law(frame)


def test_fit_with_1000_resamples_is_not_degenerate():
    _, h, r = law_curve(seed=10)
    fit = fit_entropy_law(h, r, n_bootstrap=1000)
    assert fit.n_bootstrap == 1000
    assert math.isfinite(fit.ceiling_ci[0]) and fit.ceiling_ci[0] < fit.ceiling < fit.ceiling_ci[1]
