"""Goodness of fit beyond R², regimes (warm-up, exit) and metric bounds."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from entropymon.analysis.bounds import infer_bounds, resolve_bounds
from entropymon.analysis.goodness import (
    aggregate_sensitivity,
    goodness_of_fit,
    residual_drift,
    smoothing_sensitivity,
    warmup_influence,
)
from entropymon.analysis.law import fit_run_law
from entropymon.analysis.regimes import find_regime_exit, warmup_length
from entropymon.errors import InputError


def _runs_test_reference(residuals):
    """Wald-Wolfowitz runs test written out from its textbook definition."""
    signs = [1 if v > 0 else -1 for v in residuals if v != 0]
    n1, n2 = signs.count(1), signs.count(-1)
    runs = 1 + sum(1 for a, b in zip(signs, signs[1:]) if a != b)
    mean = 2 * n1 * n2 / (n1 + n2) + 1
    var = 2 * n1 * n2 * (2 * n1 * n2 - n1 - n2) / ((n1 + n2) ** 2 * (n1 + n2 - 1))
    return runs, stats.norm.cdf((runs - mean) / math.sqrt(var))


def test_runs_test_matches_the_textbook_formula():
    residuals = np.random.default_rng(0).normal(size=50)
    drift = residual_drift(residuals)
    runs, p = _runs_test_reference(residuals)
    assert drift.n_runs == runs and drift.runs_p_value == pytest.approx(p)
    assert drift.spearman_rho == pytest.approx(stats.spearmanr(np.arange(50), residuals).statistic)


def test_white_noise_residuals_rarely_show_drift():
    # Each of the two tests flags at p < 0.01, so white noise is flagged in about 2% of draws;
    # out of 100 draws more than 8 would be a > 4 sd excess.
    flagged = sum(residual_drift(np.random.default_rng(s).normal(size=60)).drift for s in range(100))
    assert flagged <= 8


def test_wrong_shape_leaves_drifting_residuals():
    t = np.arange(80.0)
    curved = np.sin(t / 80 * 2 * np.pi) * 0.1 + np.random.default_rng(1).normal(0, 0.01, 80)
    drift = residual_drift(curved, t)
    assert drift.drift and drift.n_runs < drift.expected_runs
    assert "wrong for this run" in drift.message


def _law_frame(seed=0, n=120):
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    h = 0.15 + 0.6 * np.exp(-t / 40)
    return pd.DataFrame({
        "step": t,
        "entropy_mean": h + rng.normal(0, 0.02, n),
        "entropy_seq_mean": 1.1 * h + rng.normal(0, 0.02, n),
        "reward_mean": 1.7 - 0.8 * np.exp(h) + rng.normal(0, 0.03, n),
    })


def test_smoothing_sensitivity_refits_each_choice_and_reports_the_spread():
    frame = _law_frame()
    result = smoothing_sensitivity(frame, smoothings=(None, 0.3, 5), n_bootstrap=100)
    assert list(result.table["choice"]) == ["none", "ema(alpha=0.3)", "mean(window=5)"]
    ceilings = [fit_run_law(frame, smoothing=s, n_bootstrap=100).ceiling for s in (None, 0.3, 5)]
    np.testing.assert_allclose(result.table["ceiling"], ceilings)
    assert result.spread == pytest.approx(max(ceilings) - min(ceilings))


def test_aggregate_sensitivity_uses_only_aggregates_the_run_has():
    frame = _law_frame()
    result = aggregate_sensitivity(frame, n_bootstrap=100)
    assert list(result.table["choice"]) == ["entropy_mean", "entropy_seq_mean"]
    seq = fit_run_law(frame, entropy="entropy_seq_mean", n_bootstrap=100)
    assert result.table["ceiling"].iloc[1] == pytest.approx(seq.ceiling)


def test_warmup_influence_compares_with_and_without_exclusion():
    frame = _law_frame()
    frame.loc[:9, "entropy_mean"] = np.linspace(0.7, 0.95, 10)  # entropy rises first
    result = warmup_influence(frame, n_bootstrap=0)
    assert result.excluded_points == 9
    assert result.ceiling_all_points == pytest.approx(fit_run_law(frame, warmup=None, n_bootstrap=0).ceiling)
    assert "excluded 9 warm-up" in result.message


def test_goodness_report_is_json_friendly():
    import json

    report = goodness_of_fit(_law_frame(), n_bootstrap=50)
    json.dumps(report.to_dict())
    assert not report.drift.drift


def test_warmup_is_the_early_entropy_peak_and_ignores_small_or_late_rises():
    rising = np.concatenate([np.linspace(0.5, 0.6, 6), np.linspace(0.6, 0.1, 30)])
    assert warmup_length(rising) == 5
    assert warmup_length(np.linspace(0.6, 0.1, 36)) == 0
    tiny = np.concatenate([[0.5, 0.51], np.linspace(0.5, 0.1, 34)])  # +2% is noise
    assert warmup_length(tiny) == 0
    late = np.concatenate([np.linspace(0.6, 0.3, 25), np.linspace(0.3, 0.5, 11)])
    assert warmup_length(late) == 0


def test_regime_exit_on_entropy_surge_needs_two_points_in_a_row():
    steps = np.arange(30.0)
    entropy = np.linspace(0.6, 0.2, 30)
    spike = entropy.copy()
    spike[15] = 2.0  # one odd batch
    assert find_regime_exit(steps, spike) is None
    surge = entropy.copy()
    surge[20:] = 1.5
    found = find_regime_exit(steps, surge)
    assert found.step == 20 and found.kind == "entropy_surge"
    assert found.threshold == pytest.approx(1.5 * 0.6)


def test_regime_exit_on_performance_collapse_uses_the_metric_range():
    steps = np.arange(40.0)
    entropy = np.linspace(0.6, 0.2, 40)
    perf = np.linspace(0.2, 0.8, 40)
    perf[30:] = 0.1
    found = find_regime_exit(steps, entropy, perf, bounds=(0, 1))
    # trailing mean of 3 drops by > 0.5 below its best (~0.75) at the 2nd collapsed point
    best = np.maximum.accumulate(pd.Series(perf).rolling(3, min_periods=1).mean())
    smoothed = pd.Series(perf).rolling(3, min_periods=1).mean()
    expected = int(np.flatnonzero((best - smoothed).to_numpy() > 0.5)[0])
    assert found.kind == "performance_collapse" and found.step == expected
    noisy_plateau = 0.9 + np.random.default_rng(0).uniform(-0.15, 0.1, 40)
    assert find_regime_exit(steps, entropy, noisy_plateau) is None


def test_bounds_inference_rule():
    assert infer_bounds("eval_accuracy", [0.3]) == (0.0, 1.0)
    assert infer_bounds("pass_at_8", [0.3]) == (0.0, 1.0)
    assert infer_bounds("reward_mean", [0.0, 1.0, 1.0]) == (0.0, 1.0)
    assert infer_bounds("reward_mean", [0.2, 0.7]) is None
    samples = pd.DataFrame({"reward": [0.0, 1.0, 1.0]})
    assert infer_bounds("reward_mean", [0.2, 0.7], samples) == (0.0, 1.0)
    assert infer_bounds("reward_mean", [0.2, 0.7], pd.DataFrame({"reward": [0.5]})) is None
    with pytest.raises(InputError, match="bounds"):
        resolve_bounds("guess", "reward_mean", [0.1])
