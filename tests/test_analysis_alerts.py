"""Collapse rules fire at the right step on constructed runs and stay silent on healthy ones."""

import json

import numpy as np
import pandas as pd
import pytest

from entropymon.analysis.alerts import RULES, diagnose
from entropymon.errors import InputError


def healthy_run(n=100):
    """Entropy falling gently (never below 50% of its start), diverse groups, good ESS."""
    t = np.arange(n, dtype=float)
    return pd.DataFrame({
        "step": t,
        "entropy_mean": 0.6 - 0.25 * t / n,
        "cov_logp_adv": np.where(t % 4 == 0, -0.01, 0.01),  # positive, but never 20 in a row
        "zero_std_group_frac": np.full(n, 0.2),
        "pass_at_1": 0.3 + 0.2 * t / n,
        "pass_at_8": 0.7 + 0.1 * t / n,
        "ess_frac": np.full(n, 0.9),
        "eval_accuracy": 0.3 + 0.2 * t / n,
    })


def _by_rule(alerts):
    return {a.rule: a for a in alerts}


def test_healthy_run_raises_no_alert():
    assert diagnose(healthy_run()) == []


def test_entropy_collapse_fires_where_the_trailing_mean_crosses_30_percent_of_start():
    frame = healthy_run()
    frame["entropy_mean"] = 0.6 * np.exp(-frame["step"] / 30)
    alert = _by_rule(diagnose(frame, rules=["entropy_collapse"]))["entropy_collapse"]
    smoothed = frame["entropy_mean"].rolling(3, min_periods=1).mean()
    start = frame["entropy_mean"].iloc[:3].mean()
    expected = frame["step"][np.flatnonzero(smoothed < 0.3 * start)[0]]
    assert alert.step == expected and alert.threshold == pytest.approx(0.3 * start)
    assert alert.severity == "critical" and "below 30%" in alert.message


def test_cov_positive_fires_on_the_20th_positive_step_in_a_row():
    frame = healthy_run()
    frame.loc[40:, "cov_logp_adv"] = 0.02
    alert = _by_rule(diagnose(frame, rules="cov_positive"))["cov_positive"]
    # the last negative value before step 40 is at step 36 (every 4th step), so the streak
    # starts at 37 and reaches 20 at step 56
    assert alert.step == 56 and alert.value == 20


def test_zero_std_groups_fires_on_the_smoothed_share():
    frame = healthy_run()
    frame.loc[50:, "zero_std_group_frac"] = 0.9
    alert = _by_rule(diagnose(frame, rules=["zero_std_groups"]))["zero_std_groups"]
    # window of 5: (k * 0.9 + (5 - k) * 0.2) / 5 > 0.5 first for k = 3 -> step 52
    assert alert.step == 52


def test_pass_at_k_converging_fires_when_the_gap_shrinks():
    frame = healthy_run()
    frame["pass_at_8"] = frame["pass_at_1"] + 0.4 * np.exp(-frame["step"] / 20)
    alert = _by_rule(diagnose(frame, rules=["pass_at_k_converging"]))["pass_at_k_converging"]
    gap = 0.4 * np.exp(-frame["step"] / 20)
    smoothed = gap.rolling(5, min_periods=1).mean()
    expected = np.flatnonzero(smoothed < 0.25 * gap.iloc[:3].mean())[0]
    assert alert.step == expected and "pass@8" in alert.message


def test_ess_low_fires_and_threshold_override_changes_the_step():
    frame = healthy_run()
    frame["ess_frac"] = np.linspace(0.9, 0.1, len(frame))
    default = _by_rule(diagnose(frame, rules=["ess_low"]))["ess_low"]
    stricter = _by_rule(diagnose(frame, rules=["ess_low"], thresholds={"ess_low": 0.7}))["ess_low"]
    smoothed = frame["ess_frac"].rolling(3, min_periods=1).mean()
    assert default.step == frame["step"][np.flatnonzero(smoothed < 0.5)[0]]
    assert stricter.step == frame["step"][np.flatnonzero(smoothed < 0.7)[0]]


def test_left_law_regime_fires_at_the_entropy_surge():
    frame = healthy_run()
    frame.loc[70:, "entropy_mean"] = 3.0
    alert = _by_rule(diagnose(frame, rules=["left_law_regime"]))["left_law_regime"]
    assert alert.step == 70 and alert.severity == "critical"
    assert alert.message.startswith("Run left the law's regime at step 70")


def test_low_headroom_fires_only_for_a_trustworthy_ceiling_near_current_performance():
    rng = np.random.default_rng(0)
    t = np.arange(300, dtype=float)
    h = 0.05 + 0.6 * np.exp(-t / 60) + rng.normal(0, 0.005, 300)
    frame = pd.DataFrame({"step": t, "entropy_mean": h,
                          "eval_accuracy": 1.6 - 0.8 * np.exp(h) + rng.normal(0, 0.01, 300)})
    alerts = _by_rule(diagnose(frame, rules=["low_headroom"], thresholds={"low_headroom": 0.1}))
    assert "low_headroom" in alerts and alerts["low_headroom"].step == 299
    assert alerts["low_headroom"].value < 0.1
    noise = frame.assign(eval_accuracy=rng.uniform(0.4, 0.6, 300))
    assert diagnose(noise, rules=["low_headroom"], thresholds={"low_headroom": 0.5}) == []


def test_unknown_rule_or_parameter_lists_the_valid_ones():
    with pytest.raises(InputError, match="entropy_collapse"):
        diagnose(healthy_run(), rules=["entropy_colapse"])
    with pytest.raises(InputError, match="window"):
        diagnose(healthy_run(), thresholds={"ess_low": {"windw": 3}})


def test_rules_registry_describes_every_rule_and_alerts_serialise():
    for name, rule in RULES.items():
        assert rule.name == name and rule.description and "threshold" in rule.defaults
    frame = healthy_run()
    frame.loc[70:, "entropy_mean"] = 3.0
    json.dumps([a.to_dict() for a in diagnose(frame)])


def test_rules_without_their_columns_stay_silent():
    frame = pd.DataFrame({"step": np.arange(10.0), "entropy_mean": np.linspace(0.5, 0.4, 10)})
    assert diagnose(frame) == []
