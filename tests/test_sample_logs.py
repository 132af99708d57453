"""The bundled sample runs are what the README and sample_logs/README.md say they are, and the
whole offline analysis runs on them: two runs that collapse (the collapse rules fire, with
remedies)."""

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


def test_make_sample_logs_makes_exactly_the_bundled_runs():
    from entropymon.demo.make_sample_logs import SAMPLE_RUNS

    assert set(SAMPLE_RUNS) == set(RUNS)
    assert sorted(p.parent.name for p in SAMPLE_LOGS.glob("*/run.json")) == sorted(RUNS)
    for name, arguments in SAMPLE_RUNS.items():
        grpo = read_run(SAMPLE_LOGS / name).meta["config"]["demo"]["grpo"]
        assert grpo["temperature"] == arguments["temperature"] == RUNS[name]


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


@pytest.mark.parametrize("name", sorted(RUNS))
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


def test_the_two_sample_runs_differ_only_in_sampling_temperature():
    configs = {name: read_run(SAMPLE_LOGS / name).meta["config"] for name in RUNS}
    base, hot = configs["grpo-temp1.0"]["demo"]["grpo"], configs["grpo-temp1.3"]["demo"]["grpo"]
    assert {key for key in base if base[key] != hot[key]} == {"temperature"}
    assert (base["temperature"], hot["temperature"]) == (RUNS["grpo-temp1.0"], RUNS["grpo-temp1.3"])


@pytest.mark.parametrize("name", sorted(RUNS))
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
