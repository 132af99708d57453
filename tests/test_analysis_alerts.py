"""Each collapse rule fires on a run built to trigger it, stays silent on one built not to, reports
the step it began and the step it could first be seen, and never reads past that step."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from entropymon.analysis.alert_rules import TREND_BLOCK, entropy_trend, entropy_trends, zero_variance_table
from entropymon.analysis.alerts import LIVE_RULES, RULES, diagnose, health
from entropymon.errors import InputError


def healthy_run(n=100):
    """Entropy falling gently (never below 50% of its start), accuracy still rising, diverse groups, good ESS."""
    t = np.arange(n, dtype=float)
    return pd.DataFrame({
        "step": t,
        "entropy_mean": 0.6 - 0.25 * t / n,
        "cov_logp_adv": np.where(t % 4 == 0, -0.01, 0.01),
        "cov_sum_pos_adv": np.full(n, 3.0),
        "cov_sum_neg_adv": np.full(n, 1.0),
        "zero_std_group_frac": np.full(n, 0.2),
        "pass_at_1": 0.3 + 0.2 * t / n,
        "pass_at_8": 0.7 + 0.1 * t / n,
        "ess_frac": np.full(n, 0.9),
        "eval_accuracy": 0.3 + 0.4 * t / n,
    })


def _by_rule(alerts):
    return {a.rule: a for a in alerts}


def _cut(frame, step):
    return frame[frame["step"] <= step].reset_index(drop=True)


def test_healthy_run_raises_no_warning_or_critical():
    alerts = diagnose(healthy_run())
    assert [a for a in alerts if a.severity != "info"] == [] and health(alerts) == "healthy"


def test_entropy_collapse_fires_where_the_trailing_mean_crosses_30_percent_of_start_with_covariance_evidence():
    frame = healthy_run()
    frame["entropy_mean"] = 0.6 * np.exp(-frame["step"] / 30)
    alert = _by_rule(diagnose(frame, rules=["entropy_collapse"]))["entropy_collapse"]
    smoothed = frame["entropy_mean"].rolling(3, min_periods=1).mean()
    start = frame["entropy_mean"].iloc[:3].mean()
    expected = frame["step"][np.flatnonzero(smoothed < 0.3 * start)[0]]
    assert alert.step == alert.first_visible_step == expected
    assert alert.evidence["threshold"] == pytest.approx(0.3 * start)
    assert alert.evidence["baseline"] == pytest.approx(start) and alert.evidence["baseline_steps"] == [0, 2]
    # the covariance is evidence: 3/4 of steps positive up to the alert, positive-advantage share 3/(3+1)
    upto = frame[frame["step"] <= expected]
    assert alert.evidence["cov_positive_share"] == pytest.approx(np.mean(upto["cov_logp_adv"] > 0))
    assert alert.evidence["cov_pos_adv_share"] == pytest.approx(0.75)
    assert "75% of sum Cov_i" in alert.message and alert.severity == "warning" and alert.plot == "entropy"
    assert alert.remedies and all(r["trl"] or r["verl"] for r in alert.remedies)


def test_a_positive_covariance_alone_is_no_alert():
    frame = healthy_run()
    frame["cov_logp_adv"] = 0.05  # positive at every step, as in nearly every RL run
    assert [a.rule for a in diagnose(frame) if a.severity != "info"] == []


def test_entropy_collapse_never_fires_inside_the_baseline_window():
    frame = healthy_run(20)
    frame["entropy_mean"] = [0.9, 0.1, 0.1] + [0.5] * 17  # the third point is below 30% of (0.9+0.1+0.1)/3
    alert = diagnose(frame, rules=["entropy_collapse"])
    assert all(a.step > 2 for a in alert)


def diverging_run():
    """The shape of the public TRL seed that diverges: entropy 0.15 -> 7, reward 1 -> 0."""
    steps = np.arange(5, 105, 5, dtype=float)
    entropy = np.array([0.155, 0.151, 0.202, 0.252, 1.52, 4.6, 5.9, 6.5, 6.9, 7.0] + [7.0] * 10)
    reward = np.array([0.825, 0.95, 1.0, 0.775, 0.525, 0.0, 0.0, 0.05, 0.0, 0.025] + [0.0] * 10)
    return pd.DataFrame({"step": steps, "entropy_mean": entropy, "reward_mean": reward})


def test_divergence_names_the_entropy_surge_and_the_reward_collapse_with_the_step_each_began():
    alert = _by_rule(diagnose(diverging_run(), bounds=(0, 1)))["divergence"]
    assert alert.severity == "critical"
    surge, collapse = alert.evidence["entropy_surge"], alert.evidence["performance_collapse"]
    # surge: above 3x the mean of the first 3 points (0.169) from step 25 (1.52) on, 2 points -> seen at 30
    assert surge["baseline"] == pytest.approx(np.mean([0.155, 0.151, 0.202]))
    assert surge["step"] == 25 and surge["visible_step"] == 30
    # collapse: more than 0.5 below the best so far (1.0 at step 15) from step 30 (0.0), seen at 35
    assert collapse["step"] == 30 and collapse["best"] == 1.0 and collapse["best_step"] == 15
    assert alert.step == 25 and alert.first_visible_step == 35
    assert "surged" in alert.message and "reward_mean collapsed to 0 at step 30" in alert.message


def test_an_entropy_surge_while_performance_holds_is_a_warning_not_a_critical():
    frame = healthy_run()
    frame.loc[70:, "entropy_mean"] = 3.0
    alert = _by_rule(diagnose(frame, rules=["divergence"]))["divergence"]
    assert alert.severity == "warning" and alert.step == 70 and alert.first_visible_step == 71
    assert "performance_collapse" not in alert.evidence


def test_divergence_stays_silent_on_entropy_that_falls_then_rises_below_three_times_its_start():
    frame = healthy_run()
    frame["entropy_mean"] = np.r_[np.linspace(0.24, 0.12, 30), np.linspace(0.12, 0.48, 70)]  # Qwen3.5 seed 42's shape
    assert diagnose(frame, rules=["divergence"]) == []


def test_saturated_fires_when_the_trailing_mean_sits_at_the_top_of_the_range():
    frame = healthy_run()
    frame["eval_accuracy"] = np.r_[np.linspace(0.5, 0.95, 20), np.full(80, 0.96)]
    alert = _by_rule(diagnose(frame, rules=["saturated"]))["saturated"]
    smoothed = frame["eval_accuracy"].rolling(5, min_periods=1).mean().to_numpy()
    assert alert.step == frame["step"][np.flatnonzero(smoothed >= 0.9)[0]]
    assert diagnose(healthy_run(), rules=["saturated"]) == []
    # an unknown range (reward in arbitrary units) never reads as saturated
    unbounded = frame.rename(columns={"eval_accuracy": "reward_mean"}).assign(reward_mean=lambda f: f.reward_mean * 7)
    assert diagnose(unbounded, rules=["saturated"]) == []


def test_plateau_fires_when_performance_stops_improving_while_entropy_is_spent():
    frame = healthy_run()
    frame["eval_accuracy"] = np.r_[np.linspace(0.3, 0.7, 40), np.full(60, 0.7)]
    frame["entropy_mean"] = 0.6 * np.exp(-frame["step"] / 80)
    alert = _by_rule(diagnose(frame, rules=["plateau"]))["plateau"]
    # smoothed accuracy reaches 0.7 at step 43 (trailing mean of 5); no new best by 0.02 for 10 points after
    # the best before the window: the first window with no gain starts right after the curve flattens
    assert 40 <= alert.step <= 55 and alert.evidence["entropy_end"] < 0.9 * alert.evidence["entropy_start"]
    # a noiseless exponential over the 10 steps of the window: the fitted fall is 1 - exp(-9/80)
    assert alert.evidence["entropy_fall"] == pytest.approx(1 - np.exp(-9 / 80), rel=0.02)
    steady = frame.assign(entropy_mean=0.5)  # flat performance but no entropy spent: not this rule
    assert diagnose(steady, rules=["plateau"]) == []
    assert diagnose(healthy_run(), rules=["plateau"]) == []


def demo_like_run(entropy, seed=0):
    """The demo's shape: entropy at every step 0-300, held-out accuracy every 10 steps, rising to 0.8 by
    step 100 and flat from there (what the demo's tiny model can learn)."""
    t = np.arange(301, dtype=float)
    accuracy = np.where(t % 10 == 0, np.minimum(0.5 + 0.003 * t, 0.8), np.nan)
    return pd.DataFrame({"step": t, "entropy_mean": entropy(t, np.random.default_rng(seed)), "eval_accuracy": accuracy})


def oscillating_entropy(t, rng):
    """+-12% around a constant 0.5 nats (adaptive entropy control overshooting its target), ending in a dip:
    the last 8 steps 12% low."""
    h = 0.5 * (1 + 0.12 * np.sin(2 * np.pi * t / 7.3)) + rng.normal(0, 0.01, t.size)
    h[-8:] *= 0.88
    return h


def falling_entropy(t, rng):
    """A steady fall of 0.0008 nats per step from step 100 under the same +-12% noise."""
    level = 0.5 - 0.0008 * np.maximum(t - 100, 0)
    return level * (1 + rng.uniform(-0.12, 0.12, t.size))


def test_plateau_fires_on_a_steady_fall_under_noise_and_reports_the_fitted_fall_and_its_interval():
    frame = demo_like_run(falling_entropy)
    alert = _by_rule(diagnose(frame, rules=["plateau"]))["plateau"]
    lo, hi = alert.evidence["window_steps"]
    assert hi == alert.step and hi - lo == 90 and 150 <= alert.step <= 300
    inside = frame[(frame.step >= lo) & (frame.step <= hi)]
    want = _trend_by_polyfit(inside["step"].to_numpy(), inside["entropy_mean"].to_numpy(), 0.9)
    slope, low, high, start = want["slope"], want["low"], want["high"], want["start"]
    assert alert.evidence["entropy_points"] == 91
    assert alert.evidence["entropy_slope"] == pytest.approx(slope)
    assert alert.evidence["entropy_start"] == pytest.approx(start)
    assert alert.evidence["entropy_fall"] == pytest.approx(-slope * 90 / start) and alert.evidence["entropy_fall"] > 0.1
    # the interval: the standard error widened for the residuals' lag-1 autocorrelation (Santer et al. 2000)
    assert alert.evidence["entropy_points_effective"] == pytest.approx(want["n_eff"])
    assert alert.evidence["entropy_slope_interval"] == pytest.approx([low, high])
    assert alert.evidence["entropy_fall_interval"] == pytest.approx([-high * 90 / start, -low * 90 / start])
    assert low < -0.0008 < high < 0  # the true slope is inside, 0 is not
    assert f"falls {alert.evidence['entropy_fall']:.0%}" in alert.message and "90% interval" in alert.message


def test_the_trend_interval_is_calibrated_on_autocorrelated_noise():
    """On flat AR(1) noise (lag-1 correlation 0.6, like the demo's adaptive-control run) the 90% interval
    says "falling" (its top below 0) about 5% of the time; treating the points as independent says it
    far more often, which is what made a controller's slow swing read as a fall."""
    rng = np.random.default_rng(1)
    steps = np.arange(91.0)
    widened = plain = 0
    for _ in range(2000):
        noise = np.empty(91)
        noise[0] = rng.normal()
        for k in range(1, 91):
            noise[k] = 0.6 * noise[k - 1] + 0.8 * rng.normal()
        trend = entropy_trend(steps, 0.5 + 0.03 * noise, 0.9)
        widened += trend.slope_high < 0
        fit = stats.linregress(steps, 0.5 + 0.03 * noise)
        plain += fit.slope + stats.t.ppf(0.95, 89) * fit.stderr < 0
    assert 0.02 < widened / 2000 < 0.09 and plain / 2000 > 0.15


def _trend_by_polyfit(x, y, confidence):
    """One window's trend computed directly on its points, not from the rule's prefix sums: least squares
    by numpy's polyfit (its covariance: residual variance over n - 2), not scipy, about the window's
    mean step (polyfit's covariance on raw steps near 1e6 is itself off by 1e-6); the slope's standard
    error widened for the residuals' lag-1 autocorrelation (Santer et al. 2000)."""
    centre = x.mean()
    (slope, intercept), cov = np.polyfit(x - centre, y, 1, cov=True)
    intercept -= slope * centre
    e = y - (intercept + slope * x)
    r = max(e[:-1] @ e[1:] / (e @ e), 0)
    n = x.size
    n_eff = n * (1 - r) / (1 + r)
    half = stats.t.ppf(0.5 + confidence / 2, n_eff - 2) * np.sqrt(cov[0, 0] * (n - 2) / (n_eff - 2)) if n_eff > 2 else np.inf
    start = intercept + slope * x[0]
    return {"slope": slope, "low": slope - half, "high": slope + half, "start": start, "n_eff": n_eff,
            "fall": -slope * (x[-1] - x[0]) / start}


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_entropy_trends_of_many_windows_equal_a_fit_of_each_window_on_its_own_points(offset):
    """The plateau rule judges every window of a 10k-step run from prefix sums; each window equals a
    direct fit of its own points, far from step 0 too (where a sum of squared steps cancels digits)."""
    rng = np.random.default_rng(7)
    steps = offset + np.cumsum(rng.integers(1, 4, 3000)).astype(float)  # sorted, distinct, uneven
    ar = np.empty(steps.size)
    ar[0] = rng.normal()
    for k in range(1, steps.size):
        ar[k] = 0.6 * ar[k - 1] + 0.8 * rng.normal()
    values = 0.6 * np.exp(-(steps - offset) / 4000) + 0.02 * ar
    stop = np.arange(30, steps.size + 1, 3)
    first = stop - rng.integers(5, 120, stop.size).clip(max=stop)
    assert stop.size > 2 * TREND_BLOCK  # several blocks
    trends = entropy_trends(steps, values, first, stop, 0.9)
    for k in range(0, stop.size, 13):
        x, y = steps[first[k]:stop[k]], values[first[k]:stop[k]]
        want = _trend_by_polyfit(x, y, 0.9)
        got = trends.at(k)
        assert got.n == x.size
        assert got.slope == pytest.approx(want["slope"], rel=1e-9, abs=1e-15)
        assert [got.slope_low, got.slope_high] == pytest.approx([want["low"], want["high"]], rel=1e-9)
        assert got.start_level == pytest.approx(want["start"], rel=1e-9)
        assert got.fall == pytest.approx(want["fall"], rel=1e-8, abs=1e-12)
        assert entropy_trend(x, y, 0.9).slope_high == pytest.approx(got.slope_high, rel=1e-9)


def test_entropy_trends_too_few_points_or_one_step_give_no_trend_and_an_exact_line_no_autocorrelation():
    steps = np.arange(20.0)
    trends = entropy_trends(steps, 0.5 - 0.001 * steps, np.array([0, 0, 3]), np.array([4, 20, 20]), 0.9)
    assert trends.at(0) is None  # 4 points: fewer than the rule's 5
    line = trends.at(1)  # a noiseless line: its interval is the slope itself, not rounding noise's autocorrelation
    assert line.lag1 == 0 and line.slope_low == pytest.approx(-0.001) and line.slope_high == pytest.approx(-0.001)
    assert entropy_trend(np.full(6, 3.0), np.linspace(0.5, 0.4, 6), 0.9) is None  # one step: no slope


def test_plateau_stays_silent_on_noise_around_a_constant_level_even_when_the_window_ends_in_a_dip():
    frame = demo_like_run(oscillating_entropy)
    # the old rule's comparison: 5-point means of entropy at the window's start (step 210) and end (300)
    h = frame.set_index("step")["entropy_mean"]
    assert h.loc[206:210].mean() * 0.9 > h.loc[296:300].mean()  # it read a >10% fall and fired here
    assert diagnose(frame, rules=["plateau"]) == []
    for seed in range(20):  # pure noise, +-12%, with accuracy flat for 200 steps: never a plateau
        noise = demo_like_run(lambda t, rng: 0.5 * (1 + rng.uniform(-0.12, 0.12, t.size)), seed)
        assert diagnose(noise, rules=["plateau"]) == [], seed


def test_plateau_needs_both_a_significant_and_a_large_fall():
    gentle = demo_like_run(lambda t, rng: 0.5 - 0.0002 * t)  # noiseless, so significant, but about 4% per window
    assert diagnose(gentle, rules=["plateau"]) == []
    assert "plateau" in _by_rule(diagnose(gentle, rules=["plateau"], thresholds={"plateau": {"entropy_drop": 0.03}}))
    # the same fall as falling_entropy under +-80% noise: large, but its 90% interval reaches 0 in every window
    noisy = demo_like_run(lambda t, rng: (0.5 - 0.0008 * np.maximum(t - 100, 0)) * (1 + rng.uniform(-0.8, 0.8, t.size)))
    assert diagnose(noisy, rules=["plateau"]) == []
    loose = _by_rule(diagnose(noisy, rules=["plateau"], thresholds={"plateau": {"confidence": 0.5}}))["plateau"]
    assert loose.evidence["entropy_fall"] > 0.1 and loose.evidence["entropy_slope_interval"][1] < 0


def test_plateau_needs_a_best_taken_over_at_least_a_window_before_it():
    """The first 17 steps of the demo's adaptive-entropy sample run, as its live Monitor saw them before
    held-out accuracy had 3 points: entropy's trend over steps 8-17 is a significant >10% fall, and the
    training reward had not beaten a best of 0.359 - but that best is the mean of steps 1-5, and 7 steps
    are no level the run has reached. No plateau (the rule said one at step 17 before)."""
    frame = pd.DataFrame({
        "step": np.arange(1.0, 18.0),
        "entropy_mean": [0.616, 0.566, 0.513, 0.520, 0.523, 0.542, 0.546, 0.611, 0.563, 0.578, 0.547, 0.563,
                         0.581, 0.564, 0.513, 0.543, 0.524],
        "reward_mean": [0.344, 0.375, 0.312, 0.336, 0.297, 0.273, 0.250, 0.211, 0.258, 0.258, 0.344, 0.281,
                        0.344, 0.320, 0.398, 0.375, 0.398],
    })
    window = frame[frame.step >= 8]
    trend = entropy_trend(window["step"].to_numpy(), window["entropy_mean"].to_numpy(), 0.9)
    assert trend.fall > 0.1 and trend.slope_high < 0
    assert diagnose(frame, rules=["plateau"]) == []


def samples_for(steps, groups_per_step, group_size, outcome):
    """A samples table: ``outcome(step, group) -> rewards of the group`` (0/1)."""
    rows = []
    for step in steps:
        for g in range(groups_per_step):
            for i, reward in enumerate(outcome(step, g)):
                rows.append({"step": step, "rank": 0, "sample_id": g * group_size + i, "group_id": g, "reward": reward})
    return pd.DataFrame(rows)


class _RunLike:
    def __init__(self, steps, samples):
        self.step_metrics, self.samples = steps, samples


def test_zero_variance_waste_is_measured_exactly_from_the_groups_and_split_by_outcome():
    n = 30
    frame = healthy_run(n)

    def outcome(step, g):  # from step 10: groups 0-5 all correct, 6 all wrong, 7 mixed; before: all mixed
        if step >= 10 and g < 6:
            return [1.0] * 4
        if step >= 10 and g == 6:
            return [0.0] * 4
        return [1.0, 0.0, 0.0, 1.0]

    samples = samples_for(range(n), 8, 4, outcome)
    table = zero_variance_table(samples)
    assert table.loc[table.step == 12, ["all_correct", "all_wrong", "waste"]].to_numpy().tolist() == [[0.75, 0.125, 0.875]]
    alert = _by_rule(diagnose(_RunLike(frame, samples), rules=["zero_variance_waste"]))["zero_variance_waste"]
    # trailing mean of 5: waste 0 before step 10, 0.875 after: k*0.875/5 > 0.5 first for k = 3 -> step 12
    assert alert.step == 12
    assert alert.evidence["all_correct"] == pytest.approx(3 * 0.75 / 5)
    assert alert.evidence["all_wrong"] == pytest.approx(3 * 0.125 / 5)
    assert "too easy" in alert.message and alert.remedies[0]["action"].startswith("move to harder prompts")


def test_zero_variance_waste_falls_back_to_the_logged_share_without_samples():
    frame = healthy_run()
    frame.loc[50:, "zero_std_group_frac"] = 0.9
    alert = _by_rule(diagnose(frame, rules=["zero_variance_waste"]))["zero_variance_waste"]
    # window of 5: (k * 0.9 + (5 - k) * 0.2) / 5 > 0.5 first for k = 3 -> step 52
    assert alert.step == 52 and "all_correct" not in alert.evidence


def test_pass_at_k_converging_fires_when_the_gap_shrinks_and_never_at_the_first_step():
    frame = healthy_run()
    frame["pass_at_8"] = frame["pass_at_1"] + 0.4 * np.exp(-frame["step"] / 20)
    alert = _by_rule(diagnose(frame, rules=["pass_at_k_converging"]))["pass_at_k_converging"]
    gap = 0.4 * np.exp(-frame["step"] / 20)
    smoothed = gap.rolling(5, min_periods=1).mean()
    expected = np.flatnonzero(smoothed < 0.25 * gap.iloc[:3].mean())[0]
    assert alert.step == expected and "pass@8" in alert.message
    quick = healthy_run()
    quick["pass_at_8"] = quick["pass_at_1"] + np.r_[0.5, np.full(99, 0.01)]
    assert _by_rule(diagnose(quick, rules=["pass_at_k_converging"]))["pass_at_k_converging"].step >= 3


def test_ess_low_fires_and_threshold_override_changes_the_step():
    frame = healthy_run()
    frame["ess_frac"] = np.linspace(0.9, 0.1, len(frame))
    default = _by_rule(diagnose(frame, rules=["ess_low"]))["ess_low"]
    stricter = _by_rule(diagnose(frame, rules=["ess_low"], thresholds={"ess_low": 0.7}))["ess_low"]
    smoothed = frame["ess_frac"].rolling(3, min_periods=1).mean()
    assert default.step == frame["step"][np.flatnonzero(smoothed < 0.5)[0]]
    assert stricter.step == frame["step"][np.flatnonzero(smoothed < 0.7)[0]]


def test_entropy_floor_forecast_extrapolates_the_current_rate_to_the_floor():
    frame = healthy_run()
    frame["entropy_mean"] = 0.6 - 0.003 * frame["step"]  # a straight fall: 0.6 -> 0.303
    alert = _by_rule(diagnose(frame, rules=["entropy_floor_forecast"]))["entropy_floor_forecast"]
    start = frame["entropy_mean"].iloc[:3].mean()
    floor = 0.3 * start
    current = frame["entropy_mean"].iloc[-3:].mean()
    assert alert.severity == "info" and alert.step == 99
    assert alert.evidence["rate_per_step"] == pytest.approx(-0.003)
    assert alert.evidence["forecast_step"] == pytest.approx(99 + (current - floor) / 0.003)
    flat = frame.assign(entropy_mean=0.5 + 0.01 * np.sin(frame["step"]))
    assert diagnose(flat, rules=["entropy_floor_forecast"]) == []


def test_low_headroom_fires_only_for_a_trustworthy_ceiling_near_current_performance():
    rng = np.random.default_rng(0)
    t = np.arange(300, dtype=float)
    h = 0.05 + 0.6 * np.exp(-t / 60) + rng.normal(0, 0.005, 300)
    frame = pd.DataFrame({"step": t, "entropy_mean": h,
                          "eval_accuracy": 1.6 - 0.8 * np.exp(h) + rng.normal(0, 0.01, 300)})
    alerts = _by_rule(diagnose(frame, rules=["low_headroom"], thresholds={"low_headroom": 0.1}))
    assert "low_headroom" in alerts and alerts["low_headroom"].step == 299
    assert alerts["low_headroom"].evidence["headroom"] < 0.1
    noise = frame.assign(eval_accuracy=rng.uniform(0.4, 0.6, 300))
    assert diagnose(noise, rules=["low_headroom"], thresholds={"low_headroom": 0.5}) == []


def triggering_runs():
    """One run per step-crossing rule, built to make it fire."""
    collapse = healthy_run().assign(entropy_mean=lambda f: 0.6 * np.exp(-f["step"] / 30))
    surge = healthy_run()
    surge.loc[70:, "entropy_mean"] = 3.0
    saturated = healthy_run().assign(eval_accuracy=np.r_[np.linspace(0.5, 0.95, 20), np.full(80, 0.96)])
    plateau = healthy_run().assign(eval_accuracy=np.r_[np.linspace(0.3, 0.7, 40), np.full(60, 0.7)],
                                   entropy_mean=lambda f: 0.6 * np.exp(-f["step"] / 80))
    zero = healthy_run()
    zero.loc[50:, "zero_std_group_frac"] = 0.9
    pass_k = healthy_run().assign(pass_at_8=lambda f: f["pass_at_1"] + 0.4 * np.exp(-f["step"] / 20))
    ess = healthy_run().assign(ess_frac=np.linspace(0.9, 0.1, 100))
    return {"entropy_collapse": collapse, "divergence": surge, "saturated": saturated, "plateau": plateau,
            "plateau_noisy": demo_like_run(falling_entropy),
            "zero_variance_waste": zero, "pass_at_k_converging": pass_k, "ess_low": ess,
            "divergence_critical": diverging_run()}


@pytest.mark.parametrize("name", sorted(triggering_runs()))
def test_no_rule_reads_past_the_step_a_live_user_could_first_see_it(name):
    frame = triggering_runs()[name]
    rule = name.removesuffix("_critical").removesuffix("_noisy")
    full = _by_rule(diagnose(frame, rules=[rule], bounds=(0, 1)))[rule]
    assert full.first_visible_step >= full.step
    live = _by_rule(diagnose(_cut(frame, full.first_visible_step), rules=[rule], bounds=(0, 1)))[rule]
    assert (live.severity, live.step, live.first_visible_step) == (full.severity, full.step, full.first_visible_step)
    before = diagnose(_cut(frame, full.first_visible_step - 1e-9), rules=[rule], bounds=(0, 1))
    assert all(a.severity != full.severity or a.step != full.step for a in before)


def test_every_warning_and_critical_carries_evidence_a_plot_and_remedies_and_serialises():
    for name, frame in triggering_runs().items():
        for alert in diagnose(frame, bounds=(0, 1)):
            out = alert.to_dict()
            json.dumps(out, allow_nan=False)
            assert list(out)[:7] == ["rule", "severity", "step", "first_visible_step", "message", "evidence", "plot"]
            assert out["evidence"]["text"] and out["plot"] in ("entropy", "performance", "groups", "diversity",
                                                                "importance", "law")
            if alert.severity != "info":
                assert out["remedies"], (name, alert.rule)
                for remedy in out["remedies"]:
                    assert remedy["action"] and remedy["why"] and remedy["paper"] and (remedy["trl"] or remedy["verl"])


def test_unknown_rule_or_parameter_lists_the_valid_ones():
    with pytest.raises(InputError, match="entropy_collapse"):
        diagnose(healthy_run(), rules=["entropy_colapse"])
    with pytest.raises(InputError, match="window"):
        diagnose(healthy_run(), thresholds={"ess_low": {"windw": 3}})
    with pytest.raises(InputError, match="integer"):
        diagnose(healthy_run(), thresholds={"ess_low": {"window": 2.5}})
    with pytest.raises(InputError, match="ess_low.threshold"):
        diagnose(healthy_run(), thresholds={"ess_low": float("nan")})


def test_rules_registry_describes_every_rule_and_the_live_set_leaves_out_the_forecast_fit():
    for name, rule in RULES.items():
        assert rule.name == name and rule.description and "threshold" in rule.defaults
    assert "low_headroom" not in LIVE_RULES and "divergence" in LIVE_RULES


def test_rules_without_their_columns_stay_silent():
    frame = pd.DataFrame({"step": np.arange(10.0), "entropy_mean": np.linspace(0.5, 0.4, 10)})
    assert [a for a in diagnose(frame) if a.severity != "info"] == []
