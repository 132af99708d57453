"""entropymon: watch entropy collapse in RL post-training of language models.

Data flows one way: hooks -> metrics -> log (write) -> log (read) -> analysis -> dashboard / CLI.
``import entropymon`` stays fast and torch-free: names are resolved lazily on first use, so
log reading and analysis work on machines without torch.
"""

from importlib import import_module

from entropymon._version import __version__

# public name -> module that defines it
_EXPORTS = {
    # metrics (torch)
    "token_entropy": "entropymon.metrics.entropy",
    "token_entropy_and_logprob": "entropymon.metrics.entropy",
    "entropy_stats": "entropymon.metrics.entropy_stats",
    "logprob_advantage_cov": "entropymon.metrics.covariance",
    "group_stats": "entropymon.metrics.groups",
    "pass_at_k": "entropymon.metrics.groups",
    "importance_ess": "entropymon.metrics.importance",
    "kl_target_modes": "entropymon.metrics.kl_modes",
    # registry (no torch)
    "METRICS": "entropymon.registry",
    "describe_metric": "entropymon.registry",
    # logs (no torch)
    "RunLog": "entropymon.log.writer",
    "read_run": "entropymon.log.reader",
    "list_runs": "entropymon.log.reader",
    "read_table": "entropymon.log.reader",
    "compact_run": "entropymon.log.compact",
    # hooks
    "Monitor": "entropymon.hooks.monitor",
    # analysis (no torch)
    "fit_entropy_law": "entropymon.analysis.law",
    "fit_run_law": "entropymon.analysis.law",
    "LawOptions": "entropymon.analysis.law",
    "early_prediction": "entropymon.analysis.prediction",
    "backtest": "entropymon.analysis.prediction",
    "ceiling_curve": "entropymon.analysis.prediction",
    "forecast_ceiling": "entropymon.analysis.forecast",
    "goodness_of_fit": "entropymon.analysis.goodness",
    "entropy_dynamics": "entropymon.analysis.dynamics",
    "diagnose": "entropymon.analysis.alerts",
    "compare_runs": "entropymon.analysis.compare",
    "summarize": "entropymon.analysis.summary",
    "summarize_run": "entropymon.analysis.summary",
}

# a missing optional dependency -> the extra that installs it
_EXTRAS = {"torch": "torch", "plotly": "dashboard", "dash": "dashboard"}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'entropymon' has no attribute {name!r}")
    try:
        value = getattr(import_module(module), name)
    except ModuleNotFoundError as error:
        extra = _EXTRAS.get(error.name)
        if extra is None:
            raise
        raise ModuleNotFoundError(
            f"entropymon.{name} needs {error.name}, which is not installed: pip install 'entropymon[{extra}]'",
            name=error.name,
        ) from error
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
