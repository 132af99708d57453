"""The step-table helpers: input shapes, the performance choice and causal smoothing."""

import numpy as np
import pandas as pd
import pytest

from entropymon.analysis._frame import choose_performance, smooth, smoothing_label, step_frame
from entropymon.errors import AnalysisError, InputError


def test_step_frame_sorts_by_step_and_accepts_run_objects():
    frame = pd.DataFrame({"step": [2, 0, 1], "x": [3.0, 1.0, 2.0]})

    class Run:
        step_metrics = frame

    for given in (frame, Run()):
        out = step_frame(given)
        assert list(out["step"]) == [0, 1, 2] and list(out["x"]) == [1.0, 2.0, 3.0]


def test_step_frame_rejects_other_inputs_naming_what_it_got():
    with pytest.raises(InputError, match="got list"):
        step_frame([1, 2, 3])
    with pytest.raises(InputError, match="'step' column"):
        step_frame(pd.DataFrame({"x": [1.0]}))


def test_auto_performance_order():
    base = {"step": range(4), "reward_mean": [0.1] * 4, "trl/reward": [0.2] * 4}
    assert choose_performance(pd.DataFrame({**base, "eval_accuracy": [0.5, np.nan, 0.6, 0.7]})) == "eval_accuracy"
    assert choose_performance(pd.DataFrame({**base, "eval_accuracy": [0.5, np.nan, np.nan, 0.7]})) == "reward_mean"
    assert choose_performance(pd.DataFrame({"step": range(4), "trl/reward": [0.2] * 4})) == "trl/reward"
    with pytest.raises(AnalysisError, match="performance"):
        choose_performance(pd.DataFrame({"step": range(4)}))


def test_smoothing_is_trailing_and_skips_nan():
    values = np.array([1.0, np.nan, 3.0, 5.0, 7.0])
    ema = smooth(values, 0.5)
    expected = pd.Series([1.0, 3.0, 5.0, 7.0]).ewm(alpha=0.5, adjust=False).mean().to_numpy()
    np.testing.assert_allclose(ema[[0, 2, 3, 4]], expected)
    assert np.isnan(ema[1])
    np.testing.assert_allclose(smooth(values, 2)[[0, 2, 3, 4]], [1.0, 2.0, 4.0, 6.0])
    # causal: changing a later value never changes an earlier smoothed one
    changed = values.copy()
    changed[4] = 100.0
    np.testing.assert_allclose(smooth(changed, 0.5)[:4], ema[:4], equal_nan=True)
    assert smoothing_label(None) == "none" and smoothing_label(3) == "mean(window=3)"


@pytest.mark.parametrize("bad", [0, -2, 1.5, 0.0, True, "ema", float("nan")])
def test_bad_smoothing_raises_input_error(bad):
    with pytest.raises(InputError, match="smoothing"):
        smooth(np.ones(3), bad)
