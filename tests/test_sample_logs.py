"""The bundled sample runs are what the README and sample_logs/README.md say they are, and the
whole offline analysis runs on them: two runs that collapse (the collapse rules fire, with
remedies) and one made with a remedy the alerts name, on which no warning fires."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from entropymon import read_run
from entropymon.analysis import diagnose

SAMPLE_LOGS = Path(__file__).resolve().parents[1] / "sample_logs"
RUNS = {"grpo-temp1.0": 1.0, "grpo-temp1.3": 1.3}  # the collapsing runs and their sampling temperature
HEALTHY = "grpo-adaptive-ent0.55"  # the baseline with TRL's adaptive entropy control towards 0.55 nats
ALL_RUNS = sorted([*RUNS, HEALTHY])


def test_make_sample_logs_makes_exactly_the_bundled_runs():
    from entropymon.demo.make_sample_logs import HEALTHY_RUN, SAMPLE_RUNS

    assert set(SAMPLE_RUNS) == set(ALL_RUNS) and HEALTHY_RUN == HEALTHY
    assert sorted(p.parent.name for p in SAMPLE_LOGS.glob("*/run.json")) == ALL_RUNS
    for name, arguments in SAMPLE_RUNS.items():
        grpo = read_run(SAMPLE_LOGS / name).meta["config"]["demo"]["grpo"]
        assert grpo["temperature"] == arguments["temperature"] == RUNS.get(name, 1.0)
        assert grpo["entropy_target"] == arguments.get("entropy_target")


@pytest.mark.parametrize("name", sorted(RUNS))
def test_each_sample_run_is_a_real_collapse_with_rising_accuracy(name):
    steps = read_run(SAMPLE_LOGS / name).step_metrics
    entropy = steps["entropy_mean"].dropna().to_numpy()
    accuracy = steps["eval_accuracy"].dropna().to_numpy()
    assert len(entropy) >= 300
    assert entropy[-30:].mean() < 0.7 * entropy[:30].mean()  # entropy falls by more than 30%
    assert accuracy[-5:].mean() > accuracy[0] + 0.1  # while held-out accuracy rises
    # our token-mean entropy is TRL's own logged entropy, step by step
    assert np.nanmax(np.abs(steps["entropy_mean"] - steps["trl/entropy"])) < 1e-3


@pytest.mark.parametrize("name", sorted(RUNS))
def test_the_collapse_rules_fire_on_the_collapsing_runs_with_remedies_and_the_covariance_as_evidence(name):
    run = read_run(SAMPLE_LOGS / name)
    alerts = {a.rule: a for a in diagnose(run)}
    collapse = alerts["entropy_collapse"]
    frame = run.step_metrics.dropna(subset=["entropy_mean"])
    entropy, steps = frame["entropy_mean"].to_numpy(), frame["step"].to_numpy()
    smoothed = pd.Series(entropy).rolling(3, min_periods=1).mean().to_numpy()
    below = (smoothed < 0.3 * entropy[:3].mean()) & (np.arange(len(entropy)) >= 3)
    assert collapse.step == steps[np.flatnonzero(below)[0]]
    assert collapse.remedies[0]["trl"] == "epsilon_high=0.28" and "sum Cov_i" in collapse.message
    assert "plateau" in alerts
    assert not [a for a in alerts.values() if a.severity == "critical"]


@pytest.mark.parametrize("name", ALL_RUNS)
def test_each_sample_run_carries_the_dh_probe_and_its_answer(name):
    from entropymon.analysis.dynamics import entropy_dynamics

    run = read_run(SAMPLE_LOGS / name)
    probed = run.step_metrics.dropna(subset=["dh_same_batch"])
    assert len(probed) == 50 and (probed["step"] % 10 == 0).all()  # the demo probes every 10th step
    np.testing.assert_allclose(probed["dh_sum_pos_adv"] + probed["dh_sum_zero_adv"] + probed["dh_sum_neg_adv"],
                               probed["dh_sum"], atol=1e-6)
    dynamics = entropy_dynamics(run)
    assert dynamics.observed == "same_batch"
    # measured, not tuned: the logit-space first order explains the change far better than either covariance
    logit = dynamics.fits["dh_pred_logit"]
    assert logit.r2 > 2 * max(dynamics.fits[form].r2 for form in ("cov_logp_adv", "cov_logp_piadv"))
    assert logit.eta_ci[0] < 1.0 < logit.eta_ci[1] or abs(logit.eta_eff - 1.0) < 0.3


def test_each_sample_run_differs_from_the_baseline_in_one_knob_from_the_same_warm_start():
    configs = {name: read_run(SAMPLE_LOGS / name).meta["config"]["demo"] for name in ALL_RUNS}
    base, hot, held = (configs[name]["grpo"] for name in ("grpo-temp1.0", "grpo-temp1.3", HEALTHY))
    assert {key for key in base if base[key] != hot[key]} == {"temperature"}
    assert (base["temperature"], hot["temperature"]) == (RUNS["grpo-temp1.0"], RUNS["grpo-temp1.3"])
    assert {key for key in base if base[key] != held[key]} == {"entropy_target"}
    assert (base["entropy_target"], held["entropy_target"]) == (None, 0.55)
    assert len({configs[name]["warmstart_heldout_accuracy"] for name in ALL_RUNS}) == 1


def _five_point_means(steps, values, at):
    """Mean of the last 5 values at or before step ``at``."""
    return values[steps <= at][-5:].mean()


def test_the_healthy_run_keeps_its_entropy_and_no_warning_fires_on_it_offline_or_live():
    run = read_run(SAMPLE_LOGS / HEALTHY)
    steps = run.step_metrics
    entropy = steps["entropy_mean"].dropna().to_numpy()
    accuracy = steps["eval_accuracy"].dropna().to_numpy()
    assert abs(entropy[-30:].mean() / entropy[:30].mean() - 1) < 0.05  # held: 0.539 -> 0.551 nats
    assert entropy.min() > 0.4 and entropy.max() < 0.75
    assert accuracy[-5:].mean() > accuracy[0] + 0.2  # while held-out accuracy still rises (0.574 -> 0.817)
    # TRL's adaptive control worked its coefficient: up from 0 while entropy sat under the target
    coef = steps["trl/entropy_coef"].dropna()
    assert coef.iloc[0] <= 0.005 and coef.max() > 0.3
    assert np.nanmax(np.abs(steps["entropy_mean"] - steps["trl/entropy"])) < 1e-3
    assert [a for a in diagnose(run) if a.severity != "info"] == []
    # what the live Monitor evaluates, on the run as it stood at each step: never a warning either
    from entropymon.analysis.alerts import LIVE_RULES

    for at in [*range(5, 41), *range(50, 501, 25)]:
        cut = steps[steps["step"] <= at]
        assert [a.rule for a in diagnose(cut, rules=list(LIVE_RULES)) if a.severity != "info"] == [], at
    result = subprocess.run(["entropymon", "check", str(SAMPLE_LOGS / HEALTHY), "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["healthy"] is True


def test_the_old_plateau_comparison_cried_wolf_on_the_healthy_run_where_the_trend_does_not():
    """The plateau rule used to compare 5-point means of entropy at a window's ends: on this run the
    window of steps 190-280 (accuracy under its best 0.806) read 0.638 -> 0.543 nats, a 15% "fall",
    though entropy ends the run where it began. The fitted trend over those 91 points is no
    significant fall."""
    from entropymon.analysis.alert_rules import entropy_trend

    frame = read_run(SAMPLE_LOGS / HEALTHY).step_metrics.dropna(subset=["entropy_mean"])
    steps, entropy = frame["step"].to_numpy(), frame["entropy_mean"].to_numpy()
    start, end = _five_point_means(steps, entropy, 190), _five_point_means(steps, entropy, 280)
    assert end < 0.9 * start
    inside = (steps >= 190) & (steps <= 280)
    trend = entropy_trend(steps[inside], entropy[inside], 0.9)
    assert trend.n == 91 and not trend.slope_high < 0


@pytest.mark.parametrize("name", ALL_RUNS)
def test_fit_reports_early_prediction_error_skill_and_baselines_on_a_sample_run(name):
    result = subprocess.run(["entropymon", "fit", str(SAMPLE_LOGS / name), "--json", "--bootstrap", "100"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    early = out["early_prediction"]
    assert early["n_fit"] >= 3 and early["n_test"] > early["n_fit"]
    assert set(early["baseline_rmse"]) == {"last_value", "window_mean", "linear_trend"}
    # the skill is the documented formula over the numbers it reports
    best = min(early["baseline_rmse"].values())
    assert early["skill"] == pytest.approx(1 - early["law_rmse"] / best)
    assert isinstance(out["trustworthy"], bool) and out["reason"]
    # held-out accuracy is the law's R when present
    assert out["fit"]["performance_column"] == "eval_accuracy"
    steps = pd.read_parquet(next((SAMPLE_LOGS / name / "steps").glob("*.parquet")))
    assert out["fit"]["n"] <= steps["eval_accuracy"].notna().sum()
