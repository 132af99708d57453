"""Analysis of logged runs (pandas/NumPy/SciPy; no torch): the entropy-performance law and how
far its ceiling can be trusted, entropy dynamics, collapse alerts, run comparison, summaries.

Every run-level function takes a ``Run`` (``entropymon.log.reader.read_run``) or a DataFrame of
its step metrics. Modules: ``law`` (fit), ``prediction`` (early prediction, backtests, ceiling
curve), ``forecast`` (ceiling + trust verdict), ``goodness`` (drift, sensitivity, warm-up),
``regimes`` (warm-up and regime exit), ``bounds`` (metric ranges), ``dynamics``, ``alerts``,
``compare``, ``summary``.
"""

from entropymon.analysis.alerts import RULES, Alert, diagnose
from entropymon.analysis.compare import align_runs, compare_runs
from entropymon.analysis.dynamics import entropy_dynamics
from entropymon.analysis.forecast import CeilingForecast, forecast_ceiling
from entropymon.analysis.goodness import goodness_of_fit, residual_drift
from entropymon.analysis.law import LawFit, LawOptions, fit_entropy_law, fit_run_law
from entropymon.analysis.prediction import backtest, ceiling_curve, early_prediction
from entropymon.analysis.regimes import detect_regime_exit
from entropymon.analysis.summary import RunSummary, summarize, summarize_run

__all__ = [
    "RULES", "Alert", "diagnose", "align_runs", "compare_runs", "entropy_dynamics", "CeilingForecast",
    "forecast_ceiling", "goodness_of_fit", "residual_drift", "LawFit", "LawOptions", "fit_entropy_law", "fit_run_law",
    "backtest", "ceiling_curve", "early_prediction", "detect_regime_exit", "RunSummary",
    "summarize", "summarize_run",
]
