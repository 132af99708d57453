"""The pure figure builders (``entropymon.figures``), checked on hand-built DataFrames against independent
computations (NumPy loops, closed forms, the analysis functions themselves)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import annotation_text
from entropymon.analysis.dynamics import entropy_dynamics
from entropymon.analysis.law import fit_entropy_law
from entropymon.errors import InputError
from entropymon.figures.covariance import attribution_figure, dh_figure
from entropymon.figures.curves import (
    ema,
    length_figure,
    lines_figure,
    quantile_bands_figure,
    runs_figure,
)
from entropymon.figures.distribution import bin_labels, bucket_counts, entropy_heatmap_figure
from entropymon.figures.downsample import downsample_frame, minmax_indices
from entropymon.figures.law import law_scatter_figure, padded_range, prediction_figure
from entropymon.figures.style import hover_template, metric_label
from entropymon.registry import describe_metric, pass_at_k_columns
from entropymon_dashboard.tokens_view import (
    MAX_ALPHA,
    completion_spans,
    filter_samples,
    forking_tokens,
    token_backgrounds,
    visible_whitespace,
)


def visible_traces(fig):
    return [t for t in fig.data if t.showlegend is not False and t.hoverinfo != "skip"]


# ---- downsampling ----

def bucket_extremes_reference(values, max_points):
    """Loop reference: first, last and each bucket's min and max values of the inner points."""
    n = len(values)
    n_buckets = (max_points - 2) // 2
    buckets = {}
    for i in range(1, n - 1):
        if np.isfinite(values[i]):
            buckets.setdefault((i - 1) * n_buckets // (n - 2), []).append(values[i])
    return {(min(v), max(v)) for v in buckets.values()}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=400), st.integers(4, 60))
def test_minmax_indices_keep_every_bucket_extreme_and_both_ends(values, max_points):
    values = np.asarray(values)
    picked = minmax_indices(values, max_points)
    assert np.all(np.diff(picked) > 0)
    assert picked.size <= max(max_points, values.size if values.size <= max_points else 0) + 1
    assert picked[0] == 0 and picked[-1] == values.size - 1
    if values.size > max_points:
        kept = set(values[picked].tolist())
        for low, high in bucket_extremes_reference(values, max_points):
            assert low in kept and high in kept
        assert values.min() in kept and values.max() in kept
    else:
        assert picked.tolist() == list(range(values.size))


def test_minmax_indices_reject_a_budget_below_four():
    with pytest.raises(InputError, match="max_points"):
        minmax_indices(np.arange(10.0), 3)


def test_downsample_frame_keeps_each_columns_extremes_within_the_budget():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"step": np.arange(10_000), "a": rng.normal(size=10_000), "b": rng.normal(size=10_000)})
    frame.loc[5_123, "b"] = 50.0  # a spike a stride would likely miss
    thin = downsample_frame(frame, ["a", "b"], max_points=1000)
    assert len(thin) <= 1000 + 4
    assert thin["b"].max() == 50.0 and thin["a"].min() == frame["a"].min()


# ---- smoothing ----

def test_ema_matches_a_loop_and_skips_nan():
    values = np.array([1.0, np.nan, 3.0, 2.0, np.nan, 5.0])
    smoothed = ema(values, 0.6)
    expected, state = [], None
    for v in values:
        if math.isnan(v):
            expected.append(math.nan)
            continue
        state = v if state is None else 0.6 * state + 0.4 * v
        expected.append(state)
    np.testing.assert_allclose(smoothed, expected, equal_nan=True)


def test_ema_rejects_a_weight_of_one():
    with pytest.raises(InputError, match="weight"):
        ema([1.0, 2.0], 1.0)


# ---- curves ----

def test_runs_figure_overlays_each_run_with_its_values():
    a = pd.DataFrame({"step": [0, 1, 2, 3], "entropy_mean": [1.0, 0.8, 0.7, 0.65]})
    b = pd.DataFrame({"step": [0, 2, 4], "entropy_mean": [1.1, np.nan, 0.5]})
    fig = runs_figure({"run-a": a, "run-b": b}, "entropy_mean", "Entropy", uirevision="keep")
    traces = visible_traces(fig)
    assert [t.name for t in traces] == ["run-a", "run-b"]
    np.testing.assert_allclose(traces[0].y, a["entropy_mean"])
    np.testing.assert_allclose(traces[1].x, [0, 4])  # the NaN step is not drawn
    assert fig.layout.uirevision == "keep"
    assert describe_metric("entropy_mean").description in traces[0].hovertemplate


def test_runs_figure_smooths_and_keeps_the_raw_curve_behind():
    frame = pd.DataFrame({"step": np.arange(50), "reward_mean": np.random.default_rng(0).random(50)})
    fig = runs_figure({"r": frame}, "reward_mean", "Reward", smoothing=0.8)
    raw = [t for t in fig.data if t.hoverinfo == "skip"]
    smoothed = visible_traces(fig)
    np.testing.assert_allclose(raw[0].y, frame["reward_mean"])
    np.testing.assert_allclose(smoothed[0].y, ema(frame["reward_mean"].to_numpy(), 0.8))


def test_runs_figure_thins_a_long_run_but_keeps_its_spike():
    values = np.linspace(1.0, 0.2, 10_000)
    values[7_777] = 3.0
    fig = runs_figure({"long": pd.DataFrame({"step": np.arange(10_000), "entropy_mean": values})},
                      "entropy_mean", "Entropy", max_points=2000)
    trace = visible_traces(fig)[0]
    assert len(trace.x) <= 2000
    assert trace.type == "scattergl"
    assert 3.0 in list(trace.y) and 7_777 in list(trace.x)


def test_lines_figure_says_what_is_missing():
    fig = lines_figure(pd.DataFrame({"step": [0, 1]}), ("ess_frac",), "ESS")
    assert len(fig.data) == 0
    assert "ess_frac" in annotation_text(fig)


def test_runs_figure_with_no_runs_says_so():
    fig = runs_figure({}, "entropy_mean", "Entropy")
    assert len(fig.data) == 0 and "no run selected" in annotation_text(fig)


def test_quantile_bands_draw_the_logged_quantiles():
    steps = np.arange(20)
    frame = pd.DataFrame({"step": steps, "entropy_p10": 0.01 * steps, "entropy_p50": 0.1 * steps,
                          "entropy_p80": 0.5 * steps, "entropy_p90": steps * 1.0, "entropy_mean": 0.3 * steps})
    fig = quantile_bands_figure(frame)
    by_name = {t.name: t for t in fig.data}
    np.testing.assert_allclose(by_name["p90"].y, frame["entropy_p90"])
    np.testing.assert_allclose(by_name["p10-p90"].y, frame["entropy_p10"])
    np.testing.assert_allclose(by_name["p80"].y, frame["entropy_p80"])
    assert by_name["p10-p90"].fill == "tonexty"


def test_length_band_is_mean_plus_minus_std():
    frame = pd.DataFrame({"step": [0, 1, 2], "length_mean": [50.0, 40.0, 30.0], "length_std": [5.0, 4.0, 2.0]})
    fig = length_figure(frame)
    upper, lower = fig.data[0], fig.data[1]
    np.testing.assert_allclose(upper.y, [55, 44, 32])
    np.testing.assert_allclose(lower.y, [45, 36, 28])


def test_pass_at_k_columns_sort_by_k():
    assert pass_at_k_columns(["pass_at_16", "reward_mean", "pass_at_1", "pass_at_4", "pass_at_x"]) == \
        ["pass_at_1", "pass_at_4", "pass_at_16"]


def test_hover_and_labels_come_from_the_registry():
    info = describe_metric("cov_logp_adv")
    assert metric_label("cov_logp_adv") == f"cov_logp_adv ({info.unit})"
    assert "pass@8" in hover_template("pass_at_8")
    assert "not described" in hover_template("my_custom_metric")


# ---- entropy distribution ----

EDGES = [0.0, 0.1, 0.5, 1.0, math.inf]


def test_heatmap_colour_is_log_share_of_each_steps_tokens():
    hists = [[90, 5, 4, 1], [50, 30, 15, 5], [0, 0, 0, 0]]
    frame = pd.DataFrame({"step": [0, 1, 2], "entropy_hist": hists})
    heat = entropy_heatmap_figure(frame, EDGES).data[0]
    z = np.asarray(heat.z, dtype=float)  # (bins, steps)
    for column, counts in enumerate(hists[:2]):
        share = np.asarray(counts) / sum(counts)
        np.testing.assert_allclose(z[:, column], np.log10(np.maximum(share, 1e-4)))
    np.testing.assert_allclose(z[:, 2], -4.0)  # an empty step shows as the floor, not NaN
    assert list(heat.y) == ["0.00-0.10", "0.10-0.50", "0.50-1.00", ">= 1.00"]


def test_heatmap_sums_consecutive_steps_into_buckets():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 100, size=(1000, 4)).astype(float)
    steps, summed = bucket_counts(np.arange(1000.0), counts, 100)
    assert steps.size == 100
    np.testing.assert_allclose(summed, counts.reshape(100, 10, 4).sum(axis=1))
    np.testing.assert_allclose(steps, np.arange(0, 1000, 10))


def test_heatmap_skips_rows_with_the_wrong_number_of_bins():
    frame = pd.DataFrame({"step": [0, 1], "entropy_hist": [[1, 2, 3, 4], [1, 2]]})
    assert len(entropy_heatmap_figure(frame, EDGES).data[0].x) == 1
    empty = entropy_heatmap_figure(pd.DataFrame({"step": [0]}), EDGES)
    assert "entropy_hist" in annotation_text(empty)


def test_bin_labels_name_an_open_last_bin():
    assert bin_labels([0, 0.5, float("inf")]) == ["0.00-0.50", ">= 0.50"]


# ---- the law ----

def law_points(n=40, a=0.3, b=1.2, noise=0.005, seed=0):
    rng = np.random.default_rng(seed)
    h = np.linspace(1.2, 0.2, n)
    return h, b - a * np.exp(h) + rng.normal(0, noise, n)


def test_law_scatter_draws_the_least_squares_curve_and_ceiling():
    h, r = law_points()
    fit = fit_entropy_law(h, r, n_bootstrap=200)
    slope, intercept = np.polyfit(np.exp(h), r, 1)  # independent OLS: r = intercept + slope * e^H
    fig = law_scatter_figure(fit)
    points, curve, ceiling = fig.data[0], fig.data[1], fig.data[-1]
    np.testing.assert_allclose(points.x, h)
    np.testing.assert_allclose(curve.y, intercept + slope * np.exp(np.asarray(curve.x)), rtol=1e-9)
    assert ceiling.x == (0.0,)
    assert ceiling.y[0] == pytest.approx(intercept + slope, rel=1e-9)
    assert ceiling.error_y.array[0] == pytest.approx(fit.ceiling_ci[1] - fit.ceiling)
    assert ceiling.error_y.arrayminus[0] == pytest.approx(fit.ceiling - fit.ceiling_ci[0])


def test_law_scatter_without_a_fit_says_so():
    assert "could not be fitted" in annotation_text(law_scatter_figure(None))


# ---- covariance ----

def test_dh_figure_predicts_minus_eta_times_cov():
    rng = np.random.default_rng(5)
    cov = np.abs(rng.normal(0.02, 0.005, 60))
    h = np.r_[1.0, 1.0 - np.cumsum(2.0 * cov[:-1])] + rng.normal(0, 1e-4, 60)
    frame = pd.DataFrame({"step": np.arange(60), "entropy_mean": h, "cov_logp_adv": cov})
    dynamics = entropy_dynamics(frame, covariances=("cov_logp_adv",))
    fig = dh_figure(dynamics)
    observed, predicted = fig.data[0], fig.data[1]
    dh = np.diff(h)
    np.testing.assert_allclose(observed.y, dh)
    eta = -(cov[:-1] @ dh) / (cov[:-1] @ cov[:-1])  # least squares through the origin
    np.testing.assert_allclose(predicted.y, -eta * cov[:-1])
    assert eta == pytest.approx(2.0, rel=0.05)


def _probed_frame(n=40, seed=2):
    rng = np.random.default_rng(seed)
    pred = -np.abs(rng.normal(0.01, 0.004, n))
    dh = pred + rng.normal(0, 1e-3, n)
    tokens = np.full(n, 400.0)
    return pd.DataFrame({"step": np.arange(0, 10 * n, 10), "entropy_mean": 1 + rng.normal(0, 0.05, n),
                         "cov_logp_adv": np.abs(rng.normal(0.02, 0.01, n)), "dh_same_batch": dh,
                         "dh_pred_logit": pred, "dh_probe_tokens": tokens, "dh_sum": dh * tokens,
                         "dh_sum_pos_adv": 0.7 * dh * tokens, "dh_sum_zero_adv": 0.1 * dh * tokens,
                         "dh_sum_neg_adv": 0.2 * dh * tokens, "dh_sum_forking": 0.6 * dh * tokens,
                         "dh_sum_top_0_2pct_cov": 0.01 * dh * tokens})


def test_dh_figure_draws_the_same_batch_change_and_eta_times_the_logit_prediction():
    frame = _probed_frame()
    dynamics = entropy_dynamics(frame, n_bootstrap=50)
    fig = dh_figure(dynamics)
    observed = fig.data[0]
    np.testing.assert_allclose(observed.y, frame["dh_same_batch"])
    assert "same batch" in observed.name
    logit = next(t for t in fig.data[1:] if "Δz" in t.name)
    x, y = frame["dh_pred_logit"].to_numpy(), frame["dh_same_batch"].to_numpy()
    np.testing.assert_allclose(logit.y, (x @ y) / (x @ x) * x)  # +eta * prediction, eta through the origin


def test_dh_figure_without_the_probe_names_the_naive_change_as_noise():
    frame = _probed_frame()
    fig = dh_figure(entropy_dynamics(frame.drop(columns=[c for c in frame.columns if c.startswith("dh_")])))
    assert "noise" in fig.data[0].name and "naive" in fig.layout.title.text


def test_attribution_bars_stack_to_the_same_batch_change():
    frame = _probed_frame()
    fig = attribution_figure(frame)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [b.name for b in bars] == ["positive-advantage tokens", "zero-advantage tokens", "negative-advantage tokens"]
    np.testing.assert_allclose(np.sum([b.y for b in bars], axis=0), frame["dh_same_batch"])
    np.testing.assert_allclose(bars[0].y, frame["dh_sum_pos_adv"] / frame["dh_probe_tokens"])
    forking = next(t for t in fig.data if t.name.startswith("forking"))
    np.testing.assert_allclose(forking.y, 0.6 * frame["dh_same_batch"])
    assert fig.layout.barmode == "relative"
    empty = attribution_figure(frame[["step", "entropy_mean"]])
    assert not empty.data and "dh_probe_every" in empty.layout.annotations[0].text


# ---- tokens ----

def test_token_backgrounds_scale_entropy_and_sign_covariance():
    colors = token_backgrounds([0.0, 1.0, 2.0, np.nan])
    assert colors[0].endswith("0.000)") and colors[3].endswith("0.000)")
    assert colors[1] == f"rgba(214, 39, 40, {MAX_ALPHA / 2:.3f})"
    assert colors[2] == f"rgba(214, 39, 40, {MAX_ALPHA:.3f})"
    cov = token_backgrounds([-0.5, 0.25], "cov")
    assert cov[0] == f"rgba(31, 119, 180, {MAX_ALPHA:.3f})"
    assert cov[1] == f"rgba(214, 39, 40, {MAX_ALPHA / 2:.3f})"
    with pytest.raises(InputError, match="color_by"):
        token_backgrounds([1.0], "reward")


def test_completion_spans_follow_positions_and_carry_their_numbers():
    tokens = pd.DataFrame({"position": [2, 0, 1], "token_text": [" c", "a", " b"], "entropy": [0.4, 0.1, 0.8],
                           "logprob": [-0.5, -0.1, -1.0], "cov": [0.01, -0.02, 0.0]})
    spans = completion_spans(tokens)
    assert [s.children for s in spans] == ["a", " b", " c"]
    assert spans[1].style["backgroundColor"] == f"rgba(214, 39, 40, {MAX_ALPHA:.3f})"
    assert "entropy 0.8" in spans[1].title and "logprob -1" in spans[1].title


def test_filter_samples_matches_a_pandas_query():
    rng = np.random.default_rng(2)
    samples = pd.DataFrame({"step": rng.integers(0, 3, 200), "reward": rng.random(200),
                            "advantage": rng.normal(size=200)})
    chosen = filter_samples(samples, step=1, reward_range=(0.2, 0.7), advantage_sign="negative")
    expected = samples.query("step == 1 and reward >= 0.2 and reward <= 0.7 and advantage < 0")
    assert chosen.index.tolist() == expected.index.tolist()
    assert len(filter_samples(samples, advantage_sign="positive")) == int((samples["advantage"] > 0).sum())
    with pytest.raises(InputError, match="advantage_sign"):
        filter_samples(samples, advantage_sign="both")


def test_forking_tokens_count_high_entropy_occurrences():
    rng = np.random.default_rng(4)
    texts = rng.choice([" the", " so", " 7", " carry"], size=500)
    entropy = rng.exponential(0.6, size=500)
    tokens = pd.DataFrame({"token_text": texts, "entropy": entropy})
    table = forking_tokens(tokens, top=10)
    forks = Counter(t for t, h in zip(texts, entropy) if h > 0.672)
    counts = Counter(texts)
    assert table["token"].tolist() == sorted(counts, key=lambda t: (-forks[t], -entropy[texts == t].mean()))
    for row in table.itertuples():
        assert row.count == counts[row.token] and row.forking == forks[row.token]
        assert row.mean_entropy == pytest.approx(entropy[texts == row.token].mean())


def test_figures_carry_a_light_template_without_per_trace_defaults():
    fig = runs_figure({"r": pd.DataFrame({"step": [0, 1, 2], "entropy_mean": [1.0, 0.9, 0.8]})}, "entropy_mean", "E")
    assert fig.layout.template.layout.plot_bgcolor == "white"
    assert fig.layout.template.data.scatter == ()  # plotly_white would copy defaults for every trace type


def test_visible_whitespace_marks_only_the_spaces_at_the_ends():
    assert visible_whitespace(" digit") == "␣digit"
    assert visible_whitespace("digit") == "digit"
    assert visible_whitespace("a b ") == "a b␣"
    assert visible_whitespace("  ") == "␣␣"


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50))
def test_padded_range_contains_every_value_with_a_margin(values):
    low, high = padded_range(values + [float("nan")])
    span = max(values) - min(values)
    margin = 0.1 * span if span > 0 else 0.05
    assert low == pytest.approx(min(values) - margin) and high == pytest.approx(max(values) + margin)
    assert padded_range([float("nan")]) is None


def test_early_prediction_figure_is_scaled_to_the_actual_and_law_curves():
    from entropymon.analysis.prediction import early_prediction

    rng = np.random.default_rng(5)
    step = np.arange(200)
    entropy = 0.2 + np.exp(-step / 40)
    frame = pd.DataFrame({"step": step, "entropy_mean": entropy,
                          "reward_mean": 1.2 - 0.3 * np.exp(entropy) + rng.normal(0, 0.01, 200)})
    early = early_prediction(frame, 0.25, n_bootstrap=0)
    fig = prediction_figure(early)
    shown = early.table[["actual", "law"]].to_numpy(np.float64)
    low, high = fig.layout.yaxis.range
    span = np.nanmax(shown) - np.nanmin(shown)
    assert low == pytest.approx(np.nanmin(shown) - 0.1 * span) and high == pytest.approx(np.nanmax(shown) + 0.1 * span)
    assert {t.name.split(" (")[0] for t in fig.data} >= {"actual", "law"}


# ---- zoom kept through refreshes ----

def test_keep_zoom_applies_the_users_ranges_to_a_copy():
    from entropymon_dashboard.callbacks import keep_zoom, zoomed_ranges

    fig = runs_figure({"r": pd.DataFrame({"step": [0, 1, 2], "entropy_mean": [1.0, 0.9, 0.8]})}, "entropy_mean", "E")
    relayout = {"xaxis.range[0]": 0.5, "xaxis.range[1]": 1.5, "yaxis.range[0]": 0.85, "yaxis.range[1]": 0.95}
    zoomed = keep_zoom(fig, relayout)
    assert list(zoomed.layout.xaxis.range) == [0.5, 1.5] and list(zoomed.layout.yaxis.range) == [0.85, 0.95]
    assert fig.layout.xaxis.range is None  # the cached original is untouched
    assert zoomed_ranges({"xaxis.autorange": True, "yaxis.autorange": True}) == {}
    assert zoomed_ranges({"xaxis.range": [2, 4]}) == {"xaxis": [2, 4]}
    assert keep_zoom(fig, None) is fig


def test_completions_with_token_rows_come_first_and_the_others_say_their_tokens_were_not_sampled():
    from entropymon_dashboard.tokens_view import completions_view

    samples = pd.DataFrame({"step": [3, 3, 3], "rank": [0, 0, 0], "sample_id": [0, 1, 2], "reward": [1.0, 0.0, 1.0],
                            "advantage": [0.5, -0.5, 0.5], "entropy_mean": [0.2, 0.3, 0.4], "text": ["a b", "c d", "e f"]})
    tokens = pd.DataFrame({"step": [3, 3], "rank": [0, 0], "sample_id": [2, 2], "position": [0, 1],
                           "token_text": ["e", " f"], "token_id": [5, 6], "entropy": [0.1, 0.7],
                           "logprob": [-0.1, -0.9], "advantage": [0.5, 0.5], "cov": [0.01, -0.02]})
    blocks = completions_view(samples, tokens)
    headers = [block.children[0].children for block in blocks]
    assert headers[0].startswith("step 3 · sample 2")  # the sampled one first
    spans = blocks[0].children[1].children
    assert [span.children for span in spans] == ["e", " f"]
    assert all("not sampled" in header for header in headers[1:])
    assert "not sampled" not in headers[0]


def test_a_completion_card_shows_its_prompt_and_the_view_says_how_many_are_shown():
    from entropymon_dashboard.tokens_view import completions_view, shown_count

    samples = pd.DataFrame({"step": [1] * 3, "rank": [0] * 3, "sample_id": [0, 1, 2], "reward": [1.0, 0.0, 1.0],
                            "text": ["57", "58", "57"], "prompt": ["23+34=", "23+34=", "23+34="]})
    blocks = completions_view(samples, pd.DataFrame(), max_completions=2)
    assert len(blocks) == 2
    prompt = blocks[0].children[0]
    assert prompt.className == "completion-prompt" and prompt.children[1].children == "23+34="
    assert shown_count(3, 2, 3).children == "2 of 3 completions shown"
    assert shown_count(3, 20, 8).children == "3 of 3 completions shown (3 of the step's 8 match the filters)"


def test_top_cov_share_plot_and_the_explanation_say_which_share_each_is_and_both_lines_show():
    """The covariance paragraph's 'top 0.2% Cov_i tokens 0%' (their share of the entropy change) read
    as contradicting the plot beside it at 10-20% (their share of Σ Cov_i), and the plot's two lines
    nearly coincide, so the red one hid the blue."""
    from pathlib import Path

    from entropymon.figures.covariance import top_share_figure
    from entropymon.log.reader import read_run

    frame = read_run(Path(__file__).resolve().parents[1] / "sample_logs" / "grpo-temp1.3").step_metrics
    fig = top_share_figure(frame)
    assert "share of Σ Cov_i" in fig.layout.title.text and "not of the entropy change" in fig.layout.title.text
    lines = [t for t in fig.data if t.showlegend is not False]
    assert [t.name for t in lines] == ["cov_top_0_2pct_share", "cov_top_0_02pct_share"]
    assert lines[0].line.dash in (None, "solid") and lines[1].line.dash == "dash"  # the one on top is dashed
    explanation = entropy_dynamics(frame).explanation
    assert "Share of the summed entropy change by token class (of the change, not of Σ Cov_i)" in explanation
    assert "top 0.2% Cov_i tokens" in explanation
