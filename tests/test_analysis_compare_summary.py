"""Run comparison and the JSON summary the CLI and dashboard show."""

import json

import numpy as np
import pandas as pd
import pytest

from entropymon.analysis.compare import align_runs, compare_runs
from entropymon.analysis.forecast import forecast_ceiling
from entropymon.analysis.summary import summarize_run
from entropymon.errors import InputError


def law_run(seed, n=200, b=1.7):
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    h = 0.15 + 0.6 * np.exp(-t / 60) + rng.normal(0, 0.01, n)
    return pd.DataFrame({"step": t, "entropy_mean": h,
                         "reward_mean": b - 0.8 * np.exp(h) + rng.normal(0, 0.02, n)})


class Run:
    """The part of entropymon.log.reader.Run the analysis uses."""

    def __init__(self, name, frame):
        self.name, self.step_metrics = name, frame


def test_compare_runs_puts_each_runs_forecast_side_by_side():
    first, second = law_run(0), law_run(1, n=150, b=1.6)
    table = compare_runs([Run("a", first), Run("b", second)], n_bootstrap=200)
    assert list(table["run"]) == ["a", "b"]
    for row, frame in zip(table.itertuples(), [first, second]):
        forecast = forecast_ceiling(frame, n_bootstrap=200)
        assert row.ceiling == pytest.approx(forecast.fit.ceiling)
        assert row.ceiling_lo == pytest.approx(forecast.fit.ceiling_ci[0])
        assert row.skill == pytest.approx(forecast.skill)
        assert row.trustworthy == forecast.trustworthy
        assert row.entropy_last == frame["entropy_mean"].iloc[-1]
        assert row.steps == len(frame)
    assert table["ceiling"].iloc[0] > table["ceiling"].iloc[1]  # b differs by 0.1


def test_compare_runs_keeps_a_row_for_a_run_that_cannot_be_fitted():
    broken = pd.DataFrame({"step": [0.0, 1.0], "entropy_mean": [0.5, 0.4], "reward_mean": [0.1, 0.2]})
    table = compare_runs([law_run(0), broken], names=["good", "short"], n_bootstrap=100)
    assert table.loc[1, "trustworthy"] == False  # noqa: E712 (numpy bool)
    assert table.loc[1, "reason"].startswith("the law cannot be fitted: ")
    assert "at least 3" in table.loc[1, "reason"]


def test_compare_runs_rejects_duplicate_or_missing_names():
    with pytest.raises(InputError, match="unique"):
        compare_runs([law_run(0), law_run(1)], names=["x", "x"])
    with pytest.raises(InputError, match="2 names"):
        compare_runs([law_run(0), law_run(1)], names=["x"])


def test_align_runs_unions_steps_with_nan_gaps():
    a = pd.DataFrame({"step": [0, 1, 2], "entropy_mean": [1.0, 0.9, 0.8]})
    b = pd.DataFrame({"step": [0, 2, 4], "entropy_mean": [0.7, 0.6, 0.5]})
    aligned = align_runs([a, b], "entropy_mean", names=["a", "b"])
    assert list(aligned.index) == [0, 1, 2, 4]
    assert aligned.loc[2, "a"] == 0.8 and aligned.loc[2, "b"] == 0.6
    assert np.isnan(aligned.loc[1, "b"]) and np.isnan(aligned.loc[4, "a"])


def test_summary_is_json_and_matches_the_forecast():
    frame = law_run(2)
    summary = summarize_run(Run("law", frame), n_bootstrap=200)
    assert json.loads(json.dumps(summary)) == summary
    forecast = forecast_ceiling(frame, n_bootstrap=200)
    assert summary["run"] == "law" and summary["steps"] == 200
    assert summary["entropy_start"] == frame["entropy_mean"].iloc[0]
    assert summary["performance_end"] == frame["reward_mean"].iloc[-1]
    assert summary["ceiling"] == pytest.approx(forecast.ceiling)
    assert summary["skill"] == pytest.approx(forecast.skill)
    assert summary["trustworthy"] == forecast.trustworthy and summary["reason"] == forecast.reason
    assert set(summary["forecast"]["backtest"]["baseline_rmse"]) == {"last_value", "window_mean", "linear_trend"}


def test_summary_of_a_run_without_performance_says_why():
    frame = pd.DataFrame({"step": np.arange(5.0), "entropy_mean": np.linspace(0.5, 0.3, 5)})
    summary = summarize_run(frame)
    assert summary["trustworthy"] is False and "no ceiling forecast" in summary["reason"]
    assert "performance_error" in summary
    json.dumps(summary)
