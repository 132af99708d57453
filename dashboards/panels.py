"""What each callback returns, as plain functions of the run store.

Why: the Dash callbacks only unpack their inputs and call these; the benchmark times these
same functions on a large run and the tests call them without a server. Each one turns run
states into figures (via the pure builders) and caches per run version what is worth caching:
the analysis results (law fit, backtest, dynamics) and the per-step token reads. A run that
cannot be read or has nothing logged becomes figures that say so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from entropymon.analysis.prediction import ceiling_curve, early_prediction
from entropymon.display import held_out_sentence, verdict_sentence
from entropymon.errors import EntropymonError
from entropymon.figures import covariance as fig_covariance
from entropymon.figures import diversity as fig_diversity
from entropymon.figures.curves import (
    length_figure,
    lines_figure,
    pass_at_k_figure,
    quantile_bands_figure,
    runs_figure,
)
from entropymon.figures.distribution import entropy_heatmap_figure
from entropymon.figures.law import ceiling_curve_figure, law_scatter_figure, prediction_figure
from entropymon.figures.style import empty_figure
from entropymon.log.reader import read_table, table_steps
from entropymon.registry import ENTROPY_COLUMNS, ENTROPY_ESTIMATES, PERFORMANCE_COLUMNS, pass_at_k_columns
from entropymon_dashboard import alerts_view
from entropymon_dashboard.runs_table import run_dynamics, run_forecast, run_summary
from entropymon_dashboard.store import RunState, RunStore
from entropymon_dashboard.tokens_view import (
    completions_view,
    filter_samples,
    forking_tokens,
    shown_count,
    visible_whitespace,
)

# what the Entropy dropdown offers: the entropies, their estimates, and the median token entropy
ENTROPY_CHOICES = (*ENTROPY_COLUMNS, *ENTROPY_ESTIMATES, "entropy_p50")
EARLY_FRACTIONS = (0.15, 0.25, 0.4, 0.5)  # the paper's 15% first; more when that holds too few points


def hist_edges():
    from entropymon.metrics.stats import ENTROPY_HIST_EDGES  # numpy-only; the writer's bin edges

    return ENTROPY_HIST_EDGES


def _states(store: RunStore, run_ids) -> list[RunState]:
    states = []
    for run_id in run_ids or []:
        try:
            states.append(store.state(run_id))
        except EntropymonError:
            continue  # not (or no longer) in the catalog: never read
    return states


def _single(store: RunStore, run_id) -> tuple[RunState | None, str | None]:
    """The run's state and None, or None and a message saying why there is nothing to draw."""
    if not run_id:
        return None, "Select a run on the Runs page"
    try:
        state = store.state(run_id)
    except EntropymonError as error:
        return None, str(error)
    message = state.message()
    return (None, message) if message else (state, None)


# ---- curves (several runs overlaid) ----

def metric_options(store: RunStore, run_ids) -> tuple[list[str], list[str]]:
    """(entropy columns, performance columns) that at least one of the runs has."""
    present = set()
    for state in _states(store, run_ids):
        present.update(map(str, state.step_metrics.columns))
    entropy = [c for c in ENTROPY_CHOICES if c in present]
    performance = [c for c in PERFORMANCE_COLUMNS if c in present] + pass_at_k_columns(present)
    return entropy, performance


def curve_figures(store: RunStore, run_ids, entropy_column: str = "entropy_mean",
                  performance_column: str = "reward_mean", smoothing: float = 0.0):
    """(entropy figure, performance figure) with every selected run overlaid."""
    states = _states(store, run_ids)
    if not states:
        message = "Select one or more runs on the Runs page"
        return empty_figure(message, "Entropy"), empty_figure(message, "Performance")
    frames = {s.name: s.step_metrics for s in states}
    broken = [s.message() for s in states if s.message()]
    revision = "|".join(s.run_id for s in states)
    figures = []
    for column, title in ((entropy_column, "Policy entropy"), (performance_column, "Performance")):
        fig = runs_figure(frames, column, f"{title}: {column}", smoothing=smoothing, uirevision=f"{title}|{revision}")
        if broken:
            fig.add_annotation(text="; ".join(broken), showarrow=False, xref="paper", yref="paper", x=0, y=1.08,
                               xanchor="left", font={"size": 11, "color": "#b00"})
        figures.append(fig)
    return tuple(figures)


# ---- the diagnosis: what entropymon check says about each run ----

def run_alerts(store: RunStore, run_ids) -> list[tuple[str, dict]]:
    """(run name, summary) of each readable run: the summary of the Runs table, alerts included."""
    return [(s.name, run_summary(store, s)) for s in _states(store, run_ids) if s.message() is None]


def alerts_panel(store: RunStore, run_ids):
    """(the alert cards, a one-line health summary) of the selected runs."""
    pairs = run_alerts(store, run_ids)
    line = "; ".join(f"{name}: {summary.get('health', 'healthy')}{alerts_view.alert_count(summary.get('alerts'))}"
                     for name, summary in pairs)
    return alerts_view.alerts_panel(pairs), line


def marked(figures, graph_ids, store: RunStore, run_ids) -> tuple:
    """``figures`` (one per id of ``graph_ids``) with the runs' alert steps drawn on the plot each belongs to;
    with several runs each marker's label names its run (the compare view's markers were anonymous)."""
    pairs = run_alerts(store, run_ids)
    alerts = [{**a, "run": name} if len(pairs) > 1 else a
              for name, summary in pairs for a in summary.get("alerts") or []]
    return tuple(alerts_view.mark_alerts(fig, alerts, graph_id) for fig, graph_id in zip(figures, graph_ids))


# ---- one run: distribution, covariance, diversity ----

def distribution_figures(store: RunStore, run_id):
    """(entropy histogram heatmap, quantile bands, forking share)."""
    titles = ("Token entropy distribution", "Token entropy quantiles", "Forking-token share")
    state, message = _single(store, run_id)
    if state is None:
        return tuple(empty_figure(message, t) for t in titles)
    frame = state.step_metrics

    def build(s):
        try:
            edges = hist_edges()
        except ImportError:
            edges = None
        heatmap = (entropy_heatmap_figure(frame, edges, uirevision=f"hist|{run_id}") if edges is not None
                   else empty_figure("Histogram bin edges unavailable (entropymon.metrics.stats)", titles[0]))
        return (heatmap, quantile_bands_figure(frame, uirevision=f"q|{run_id}"),
                lines_figure(frame, ("forking_share",), titles[2], uirevision=f"fork|{run_id}"))

    return store.derived(state, "distribution", build)


def covariance_figures(store: RunStore, run_id, smoothing: float = 0.0):
    """(both covariance forms, observed vs predicted dH, split by advantage sign, top-token share,
    where the same-batch entropy change went)."""
    titles = ("Covariance", "Observed vs predicted entropy change", "Σ Cov_i by advantage sign", "Top-token share",
              "Where the entropy change went (same batch)")
    state, message = _single(store, run_id)
    if state is None:
        return tuple(empty_figure(message, t) for t in titles)
    frame = state.step_metrics
    dynamics = run_dynamics(store, state)
    return (fig_covariance.covariance_forms_figure(frame, smoothing=smoothing, uirevision=f"cov|{run_id}"),
            fig_covariance.dh_figure(dynamics, uirevision=f"dh|{run_id}"),
            fig_covariance.advantage_split_figure(frame, smoothing=smoothing, uirevision=f"split|{run_id}"),
            fig_covariance.top_share_figure(frame, smoothing=smoothing, uirevision=f"top|{run_id}"),
            fig_covariance.attribution_figure(frame, uirevision=f"attr|{run_id}"))


def dynamics_explanation(store: RunStore, run_id) -> str:
    """The analysis's sentence on what explains the run's entropy change (the same one summary prints)."""
    state, message = _single(store, run_id)
    if state is None:
        return message
    dynamics = run_dynamics(store, state)
    return dynamics.explanation if dynamics is not None else "Not enough steps with entropy and covariance to say."


def diversity_figures(store: RunStore, run_id, smoothing: float = 0.0):
    """(zero-std groups, pass@k, distinct answers, lengths, ESS, KL-target modes)."""
    titles = ("Groups with zero reward spread", "pass@k vs pass@1", "Distinct answers", "Completion length",
              "Effective sample size / N", "Modes the KL-optimal target wants")
    state, message = _single(store, run_id)
    if state is None:
        return tuple(empty_figure(message, t) for t in titles)
    frame = state.step_metrics
    return (fig_diversity.zero_std_figure(frame, smoothing=smoothing, uirevision=f"zstd|{run_id}"),
            pass_at_k_figure(frame, uirevision=f"pass|{run_id}"),
            fig_diversity.distinct_answers_figure(frame, smoothing=smoothing, uirevision=f"distinct|{run_id}"),
            length_figure(frame, uirevision=f"len|{run_id}"),
            fig_diversity.ess_figure(frame, smoothing=smoothing, uirevision=f"ess|{run_id}"),
            fig_diversity.kl_modes_figure(frame, smoothing=smoothing, uirevision=f"kl|{run_id}"))


# ---- the law ----

def _or_none(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except EntropymonError:
        return None


def law_results(store: RunStore, state: RunState) -> dict:
    """Forecast (with verdict), early prediction and ceiling curve of one run (None where the
    run cannot support them). The forecast is the runs table's (``run_forecast``): one interval."""
    frame = state.step_metrics
    forecast = run_forecast(store, state)
    early = None
    for fraction in EARLY_FRACTIONS:
        early = _or_none(early_prediction, frame, fraction, n_bootstrap=0)
        if early is not None:
            break
    curve = _or_none(ceiling_curve, frame, n_bootstrap=100)
    return {"forecast": forecast, "early": early, "curve": curve}


def law_panel(store: RunStore, run_id):
    """(trustworthy, verdict sentence, held-out sentence, scatter, early-prediction, ceiling curve)."""
    titles = ("Performance against entropy", "Early prediction vs what happened", "Predicted ceiling vs steps seen")
    state, message = _single(store, run_id)
    if state is None:
        return (False, message, "", *(empty_figure(message, t) for t in titles))

    def build(s):
        results = law_results(store, s)
        forecast, early = results["forecast"], results["early"]
        trusted, verdict = verdict_sentence(forecast)
        fit = None if forecast is None else forecast.fit
        bounds = None if fit is None else fit.bounds
        return (trusted, verdict, held_out_sentence(early),
                law_scatter_figure(fit, early, uirevision=f"law|{run_id}"),
                prediction_figure(early, uirevision=f"early|{run_id}"),
                ceiling_curve_figure(results["curve"], bounds=bounds, uirevision=f"ceil|{run_id}"))

    return store.derived(state, "law", build)


# ---- tokens ----

def token_steps(store: RunStore, run_id) -> tuple[list[int], list[int]]:
    """(steps with sample rows, steps with token rows) of the run, ascending."""
    state, _ = _single(store, run_id)
    if state is None or state.run is None:
        return [], []

    def build(s):
        steps = []
        for table in ("samples", "tokens"):
            try:
                steps.append(table_steps(s.entry.path, table).tolist())
            except EntropymonError:
                steps.append([])
        return tuple(steps)

    return store.derived(state, "token_steps", build)


def step_rows(store: RunStore, run_id, step: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(samples, tokens) rows of one step, read with a step filter (cached per version)."""
    state, _ = _single(store, run_id)
    if state is None:
        return pd.DataFrame(), pd.DataFrame()

    def build(s):
        return tuple(read_table(s.entry.path, table, steps=int(step)) for table in ("samples", "tokens"))

    return store.derived(state, ("step_rows", int(step)), build)


def reward_bounds(samples: pd.DataFrame) -> tuple[float, float] | None:
    if "reward" not in samples.columns:
        return None
    rewards = pd.to_numeric(samples["reward"], errors="coerce").to_numpy(np.float64)
    rewards = rewards[np.isfinite(rewards)]
    return None if rewards.size == 0 else (float(rewards.min()), float(rewards.max()))


def token_panel(store: RunStore, run_id, step, reward_range=None, advantage_sign: str = "all",
                color_by: str = "entropy", max_completions: int = 20):
    """(completion blocks, forking-token table records) for one step's filtered completions."""
    state, message = _single(store, run_id)
    if state is None or step is None:
        from dash import html

        return [html.P(message or "This run has no sampled completions logged", className="message")], []
    samples, tokens = step_rows(store, run_id, step)
    chosen = filter_samples(samples, step=int(step), reward_range=reward_range, advantage_sign=advantage_sign)
    if chosen.empty:
        tokens = tokens.iloc[0:0]
    elif not tokens.empty:
        keys = pd.MultiIndex.from_frame(chosen[["rank", "sample_id"]])
        tokens = tokens[pd.MultiIndex.from_frame(tokens[["rank", "sample_id"]]).isin(keys)]
    blocks = completions_view(chosen, tokens, color_by, max_completions)
    if not chosen.empty:
        blocks = [shown_count(len(chosen), max_completions, len(samples)), *blocks]
    table = forking_tokens(tokens)
    table["token"] = table["token"].map(visible_whitespace)
    return blocks, table.to_dict("records")
