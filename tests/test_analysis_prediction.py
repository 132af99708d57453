"""Early prediction, rolling-origin backtests, the ceiling curve and the trust verdict: known
errors reproduced, skill high on law-shaped runs and absent on runs without the law's shape."""

import json
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from entropymon.analysis.forecast import forecast_ceiling
from entropymon.analysis.law import fit_run_law
from entropymon.analysis.prediction import backtest, ceiling_curve, early_prediction, skill_score
from entropymon.errors import AnalysisError, InputError

A_TRUE, B_TRUE = 0.8, 1.7


def law_run(n=300, noise=0.02, seed=0, tau=100.0):
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    h = 0.15 + 0.6 * np.exp(-t / tau) + rng.normal(0, 0.01, n)
    r = B_TRUE - A_TRUE * np.exp(h) + rng.normal(0, noise, n)
    return pd.DataFrame({"step": t, "entropy_mean": h, "reward_mean": r})


def noise_run(seed):
    frame = law_run(seed=seed)
    frame["reward_mean"] = np.random.default_rng(100 + seed).normal(0.5, 0.05, len(frame))
    return frame


def sigmoid_run(seed):
    rng = np.random.default_rng(seed)
    t = np.arange(300, dtype=float)
    return pd.DataFrame({
        "step": t,
        "entropy_mean": np.linspace(1.0, 0.2, 300) + rng.normal(0, 0.01, 300),
        "reward_mean": 0.1 + 0.7 / (1 + np.exp(-(t - 150) / 15)) + rng.normal(0, 0.02, 300),
    })


def diverging_run():
    """Entropy falls 0.8 -> 0.3 over 100 steps while accuracy rises, then explodes to 3 nats and
    accuracy collapses to 0 (like the public s43 run)."""
    t = np.arange(160, dtype=float)
    h = np.where(t < 100, 0.3 + 0.5 * np.exp(-t / 30), 0.3 + 2.7 * (1 - np.exp(-(t - 100) / 5)))
    r = np.where(t < 100, 1.5 - 0.8 * np.exp(h), 0.0)
    r = r + np.random.default_rng(0).normal(0, 0.01, t.size)
    return pd.DataFrame({"step": t, "entropy_mean": h, "eval_accuracy": np.clip(r, 0, 1)})


def test_early_prediction_reproduces_a_known_offset_error_and_baseline_errors():
    t = np.arange(100, dtype=float)
    h = 0.2 + 0.6 * np.exp(-t / 40)
    r = B_TRUE - A_TRUE * np.exp(h)
    delta = 0.05
    observed = r.copy()
    observed[30:] += delta  # the law holds exactly on the fit window; the rest is shifted
    frame = pd.DataFrame({"step": t, "entropy_mean": h, "reward_mean": observed})
    result = early_prediction(frame, fraction=0.3, n_bootstrap=0)
    # cut at step 0.3 * 99 = 29.7: points 0..29 fitted, 70 scored
    assert result.n_fit == 30 and result.n_test == 70
    assert result.law_rmse == pytest.approx(delta, rel=1e-9)
    assert result.law_final_error == pytest.approx(-delta, rel=1e-9)
    target = observed[30:]
    last = np.sqrt(np.mean((observed[29] - target) ** 2))
    mean = np.sqrt(np.mean((observed[:30].mean() - target) ** 2))
    slope, intercept = np.polyfit(t[:30], observed[:30], 1)
    trend_errors = intercept + slope * t[30:] - target
    assert result.baseline_rmse["last_value"] == pytest.approx(last)
    assert result.baseline_rmse["window_mean"] == pytest.approx(mean)
    assert result.baseline_rmse["linear_trend"] == pytest.approx(np.sqrt(np.mean(trend_errors**2)))
    assert result.baseline_final_error["linear_trend"] == pytest.approx(trend_errors[-1])
    best = min(last, mean, np.sqrt(np.mean(trend_errors**2)))
    assert result.skill == pytest.approx(1 - delta / best)
    assert list(result.table.columns) == ["step", "actual", "law", "last_value", "window_mean", "linear_trend"]


def test_early_prediction_error_on_noisy_law_data_is_the_noise_level():
    # Fit on 45 noisy points, score 255: the law's RMSE is the noise sd plus a little
    # estimation error. The sample RMSE of 255 N(0, sd) values has relative sd ~ 1/sqrt(510)
    # = 4.4%, so [0.9, 1.2] x sd leaves > 2 sd below and room for extrapolation error above.
    noise = 0.02
    result = early_prediction(law_run(noise=noise, seed=3), fraction=0.15, n_bootstrap=200)
    assert 0.9 * noise < result.law_rmse < 1.2 * noise
    assert result.skill > 0.5


def test_early_prediction_rejects_bad_fraction_and_too_few_points():
    with pytest.raises(InputError, match="fraction"):
        early_prediction(law_run(), fraction=1.5)
    with pytest.raises(AnalysisError, match="fraction"):
        early_prediction(law_run(n=20), fraction=0.05)


def test_backtest_origin_rows_match_an_independent_refit():
    frame = law_run(seed=1)
    result = backtest(frame, origins=[99, 199], warmup=None)
    assert list(result.table["origin_step"]) == [99.0, 199.0]
    for _, row in result.table.iterrows():
        k = int(row["origin_step"])
        x, y = np.exp(frame["entropy_mean"][: k + 1]), frame["reward_mean"][: k + 1]
        reference = stats.linregress(x, y)
        predicted = reference.intercept + reference.slope * np.exp(frame["entropy_mean"][k + 1 :])
        actual = frame["reward_mean"][k + 1 :]
        assert row["law_rmse"] == pytest.approx(np.sqrt(np.mean((predicted - actual) ** 2)))
        assert row["last_value_rmse"] == pytest.approx(np.sqrt(np.mean((y.iloc[-1] - actual) ** 2)))
        assert row["window_mean_rmse"] == pytest.approx(np.sqrt(np.mean((y.mean() - actual) ** 2)))
    aggregate = np.sqrt(np.mean(result.table["law_rmse"] ** 2))
    assert result.law_rmse == pytest.approx(aggregate)


@pytest.mark.parametrize("seed", range(4))
def test_backtest_skill_is_high_on_law_shaped_runs(seed):
    result = backtest(law_run(seed=seed))
    assert result.n_origins >= 30
    assert result.skill > 0.6 and result.recent_skill > 0.2


@pytest.mark.parametrize("seed", range(6))
def test_backtest_skill_is_not_positive_on_noise(seed):
    result = backtest(noise_run(seed))
    assert result.skill <= 0


def test_backtest_of_1000_steps_runs_well_under_a_second():
    frame = law_run(n=1000, seed=2, tau=300)
    backtest(frame)  # warm caches
    started = time.perf_counter()
    backtest(frame)
    assert time.perf_counter() - started < 1.0  # generous: measured ~10 ms on 2 cores


@pytest.mark.parametrize("seed", range(3))
def test_forecast_on_law_run_is_trustworthy_and_covers_the_true_ceiling(seed):
    forecast = forecast_ceiling(law_run(seed=seed), bounds=(0, 1))
    assert forecast.trustworthy, forecast.reasons
    low, high = forecast.fit.ceiling_ci
    assert low <= B_TRUE - A_TRUE <= high
    assert forecast.ceiling == forecast.fit.ceiling
    assert "backtest skill" in forecast.reason


@pytest.mark.parametrize("make", [noise_run, sigmoid_run])
@pytest.mark.parametrize("seed", range(3))
def test_forecast_without_the_law_shape_is_not_trustworthy(make, seed):
    forecast = forecast_ceiling(make(seed), bounds=(0, 1), n_bootstrap=200)
    assert not forecast.trustworthy
    assert forecast.reason


def test_sigmoid_run_reports_no_skill_and_residual_drift():
    forecast = forecast_ceiling(sigmoid_run(0), bounds=(0, 1), n_bootstrap=200)
    assert forecast.skill <= 0
    assert any("residuals drift" in reason for reason in forecast.reasons)


def test_diverging_run_leaves_the_regime_and_stops_extrapolating_there():
    frame = diverging_run()
    forecast = forecast_ceiling(frame, n_bootstrap=200)
    assert not forecast.trustworthy
    assert forecast.reason.startswith("run left the law's regime at step 10")
    exit_step = forecast.regime_exit.step
    assert 100 <= exit_step <= 103
    assert forecast.fit.last_step < exit_step  # nothing after the exit was fitted
    curve = ceiling_curve(frame, n_bootstrap=100)
    assert curve["step"].max() < exit_step
    table = early_prediction(frame, fraction=0.5, n_bootstrap=0).table
    assert table["step"].max() < exit_step  # not scored past the exit either


def test_ceiling_outside_the_range_is_flagged_not_predicted():
    t = np.arange(80, dtype=float)
    h = 0.3 + 0.5 * np.exp(-t / 30)
    r = 2.0 - 0.7 * np.exp(h) + np.random.default_rng(0).normal(0, 0.005, t.size)
    forecast = forecast_ceiling(pd.DataFrame({"step": t, "entropy_mean": h, "eval_accuracy": r}))
    assert forecast.fit.ceiling > 1.0
    assert forecast.ceiling is None
    assert not forecast.trustworthy
    assert forecast.reason.startswith(f"ceiling {forecast.fit.ceiling:.3g} lies outside the metric's range [0, 1]")
    assert json.loads(json.dumps(forecast.to_dict()))["ceiling"] is None


def test_ceiling_curve_ends_with_the_whole_run_fit_and_narrows():
    frame = law_run(seed=4)
    curve = ceiling_curve(frame, n_bootstrap=300, seed=1)
    assert curve["step"].is_monotonic_increasing
    whole = fit_run_law(frame, n_bootstrap=300, seed=1)
    assert curve["ceiling"].iloc[-1] == pytest.approx(whole.ceiling)
    assert curve["ceiling_lo"].iloc[-1] == pytest.approx(whole.ceiling_ci[0])
    widths = curve["ceiling_hi"] - curve["ceiling_lo"]
    assert widths.iloc[-1] < widths.iloc[0]


def test_skill_score_against_the_best_baseline():
    assert skill_score(0.1, {"a": 0.2, "b": 0.4}) == pytest.approx(0.5)
    assert skill_score(0.3, {"a": 0.2, "b": 0.4}) == pytest.approx(-0.5)
