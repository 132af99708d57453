"""End to end on real public training curves (shared/real_curves): fit, backtest, summary and
diagnosis run on every run; the veRL run's in-sample R² is reproduced; the diverging TRL run is
never given a confident ceiling.

The curves are read with pandas into the step-metrics shape the analysis takes (entropy ->
``entropy_mean``, performance -> ``reward_mean``); every run's reward is GSM8K rule-based
correctness (0/1 per completion, SOURCE.txt), so its mean lies in [0, 1].
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from entropymon.analysis import (
    backtest,
    diagnose,
    early_prediction,
    fit_entropy_law,
    fit_run_law,
    forecast_ceiling,
    summarize_run,
)

SHARED = Path(__file__).resolve().parent / "data"  # real_curves/ copied from public logs
CURVES = SHARED / "real_curves"
RUN_DIRS = sorted(p.parent for p in CURVES.glob("*/curve.csv"))


def test_the_six_public_runs_are_in_the_repository():
    assert len(RUN_DIRS) == 6, f"expected the 6 public runs under {CURVES}, found {len(RUN_DIRS)}"


def load_curve(run_dir: Path) -> pd.DataFrame:
    curve = pd.read_csv(run_dir / "curve.csv")
    assert set(curve["performance_kind"]) == {"train_reward"}
    return curve.rename(columns={"entropy": "entropy_mean", "performance": "reward_mean"})[
        ["step", "entropy_mean", "reward_mean"]
    ]


@pytest.mark.parametrize("run_dir", RUN_DIRS, ids=lambda p: p.name)
def test_every_real_run_analyses_end_to_end(run_dir):
    frame = load_curve(run_dir)
    fit = fit_run_law(frame, bounds=(0, 1), stop_at_regime_exit=False, warmup=None)
    reference = stats.linregress(np.exp(frame["entropy_mean"]), frame["reward_mean"])
    assert fit.r2 == pytest.approx(reference.rvalue**2)
    tested = backtest(frame, bounds=(0, 1))
    summary = summarize_run(frame, bounds=(0, 1), n_bootstrap=300)
    json.dumps(summary)
    assert summary["steps"] == len(frame)
    assert isinstance(summary["reason"], str) and summary["reason"]
    diagnose(frame, bounds=(0, 1))
    if summary["trustworthy"]:
        low, high = summary["ceiling_ci"]
        assert 0 <= low <= summary["ceiling"] <= high <= 1
        assert tested.recent_skill > 0


def test_verl_run_in_sample_r2_is_095():
    frame = load_curve(CURVES / "verl_gsm8k_ppo_qwen05b")
    fit = fit_entropy_law(frame["entropy_mean"], frame["reward_mean"])
    assert fit.r2 == pytest.approx(0.95, abs=0.01)
    assert fit.n == 61


def test_verl_run_half_way_forecast_beats_the_window_mean():
    # README: fitting the first half of the veRL run predicts the rest with RMSE ~0.036
    # against ~0.40 for "the mean of the fit window".
    result = early_prediction(load_curve(CURVES / "verl_gsm8k_ppo_qwen05b"), fraction=0.5, bounds=(0, 1))
    assert result.law_rmse == pytest.approx(0.036, abs=0.01)
    assert result.baseline_rmse["window_mean"] == pytest.approx(0.40, abs=0.02)
    assert result.skill > 0


def test_diverging_trl_run_is_not_trustworthy_and_left_the_regime():
    frame = load_curve(CURVES / "trl_grpo_qwen25_7b_gsm8k_s43_collapse")
    for bounds in [(0, 1), "auto"]:
        forecast = forecast_ceiling(frame, bounds=bounds)
        assert not forecast.trustworthy
        assert forecast.reason.startswith("run left the law's regime at step 25")
    summary = summarize_run(frame, bounds=(0, 1))
    assert summary["trustworthy"] is False
    assert summary["ceiling"] is None  # the 4 points before the exit extrapolate outside [0, 1]
    rules = {a["rule"]: a for a in summary["alerts"]}
    assert rules["divergence"]["step"] == 25


def test_diverging_trl_run_gets_a_critical_alert_naming_the_reward_collapse_and_the_entropy_surge():
    frame = load_curve(CURVES / "trl_grpo_qwen25_7b_gsm8k_s43_collapse")
    for bounds in [(0, 1), "auto"]:
        critical = [a for a in diagnose(frame, bounds=bounds) if a.severity == "critical"]
        assert [a.rule for a in critical] == ["divergence"]
        alert = critical[0]
        surge, collapse = alert.evidence["entropy_surge"], alert.evidence["performance_collapse"]
        # entropy 0.155, 0.151, 0.202 at steps 5-15, then 1.52 at step 25 and 4.6 at 30: above 3x from 25
        assert surge["step"] == 25 and surge["baseline"] == pytest.approx(frame["entropy_mean"][:3].mean())
        # reward 1.0 at step 15, 0.525 at 25, 0.0 at 30 and 35: more than half its range below its best from 30
        assert collapse["step"] == 30 and collapse["best"] == 1.0 and collapse["visible_step"] == 35
        assert "entropy (entropy_mean) surged to 1.52 nats at step 25" in alert.message
        assert "reward_mean collapsed to 0 at step 30 from its best 1 (step 15)" in alert.message
        assert alert.remedies[0]["action"].startswith("stop, and restart")


@pytest.mark.parametrize("run_dir", [d for d in RUN_DIRS if "collapse" not in d.name], ids=lambda p: p.name)
def test_healthy_real_runs_get_no_critical_alert(run_dir):
    assert [a.rule for a in diagnose(load_curve(run_dir), bounds=(0, 1)) if a.severity == "critical"] == []


def test_the_run_that_sits_at_reward_09_from_the_start_is_called_saturated():
    alerts = {a.rule: a for a in diagnose(load_curve(CURVES / "trl_grpo_qwen25_7b_gsm8k_s42"), bounds=(0, 1))}
    curve = load_curve(CURVES / "trl_grpo_qwen25_7b_gsm8k_s42")
    smoothed = curve["reward_mean"].rolling(5).mean()
    assert alerts["saturated"].step == curve["step"][np.flatnonzero(smoothed >= 0.9)[0]]


def test_no_real_trl_run_gets_a_trusted_ceiling():
    # The README measured in-sample R² 0.08-0.38 on these runs: the tool must not vouch for them.
    for run_dir in RUN_DIRS:
        if run_dir.name.startswith("trl_"):
            assert not forecast_ceiling(load_curve(run_dir), bounds=(0, 1), n_bootstrap=300).trustworthy, run_dir.name
