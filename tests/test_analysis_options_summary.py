"""``LawOptions`` (how to fit the law) and ``summarize`` (a typed summary that fits it once)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from entropymon.analysis import forecast as forecast_module
from entropymon.analysis.forecast import forecast_ceiling
from entropymon.analysis.law import LawOptions, fit_run_law
from entropymon.analysis.prediction import backtest, ceiling_curve, early_prediction
from entropymon.analysis.summary import RunSummary, summarize, summarize_run
from entropymon.errors import InputError


def law_run(n: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    steps = np.arange(n)
    entropy = 0.2 + 0.6 * np.exp(-steps / 25)
    return pd.DataFrame({"step": steps, "entropy_mean": entropy,
                         "reward_mean": 1.2 - 0.5 * np.exp(entropy) + rng.normal(0, 0.01, n)})


def test_options_and_the_same_keywords_give_the_same_fit():
    frame = law_run()
    options = LawOptions(smoothing=0.3, warmup=None, bounds=(0, 1), n_bootstrap=50, seed=3)
    by_options = fit_run_law(frame, options=options)
    by_keywords = fit_run_law(frame, smoothing=0.3, warmup=None, bounds=(0, 1), n_bootstrap=50, seed=3)
    assert by_options == by_keywords and by_options.smoothing == "ema(alpha=0.3)"
    np.testing.assert_array_equal(by_options.residuals, by_keywords.residuals)


def test_keywords_override_the_options_given():
    frame = law_run()
    base = LawOptions(n_bootstrap=0)
    assert np.isnan(forecast_ceiling(frame, options=base).fit.ceiling_ci[0])
    assert np.isfinite(forecast_ceiling(frame, options=base, n_bootstrap=50).fit.ceiling_ci[0])


def test_an_unknown_option_is_a_type_error_naming_the_known_ones():
    with pytest.raises(TypeError, match="n_bootstrap"):
        early_prediction(law_run(), 0.3, n_bootsrap=10)
    with pytest.raises(InputError, match="options"):
        backtest(law_run(), options={"smoothing": 0.3})


def test_ceiling_curve_keeps_its_own_default_of_200_resamples():
    frame = law_run()
    assert ceiling_curve(frame, origins=3).equals(ceiling_curve(frame, origins=3, n_bootstrap=200))


def test_summarize_fits_the_law_once_and_its_json_view_is_summarize_run(monkeypatch):
    frame = law_run()
    calls = []
    original = forecast_module.run_series
    monkeypatch.setattr(forecast_module, "run_series", lambda *a, **k: calls.append(1) or original(*a, **k))
    summary = summarize(frame, n_bootstrap=100)
    assert isinstance(summary, RunSummary) and len(calls) == 1  # low_headroom read the same forecast
    assert summary.ceiling == summary.forecast.ceiling and summary.reason == summary.forecast.reason
    assert summary.to_dict() == summarize_run(frame, n_bootstrap=100)


def test_a_summary_without_a_forecast_says_why():
    summary = summarize(pd.DataFrame({"step": [0, 1], "entropy_mean": [0.5, 0.4]}))
    assert summary.forecast is None and summary.trustworthy is False
    assert summary.reason.startswith("no ceiling forecast: ") and summary.performance_error
