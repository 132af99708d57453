"""The static HTML report and its pure figure builders.

Figures are checked trace by trace against the tables they were given and against closed forms
(the law's curve is b - a*e^H; predicted dH is -eta*Cov). The report is checked to be one
offline file (plotly.js inlined once, no remote script), and opened in a real headless Chromium
with the network off.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from entropymon.figures import overlays as figures
from entropymon.report.html import analyse_run, render_report, write_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def law_run(n: int = 60, a: float = 0.6, b: float = 1.3, noise: float = 0.01, seed: int = 0) -> pd.DataFrame:
    """Steps following R = -a*e^H + b with falling entropy, covariance and diversity columns."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n)
    entropy = 0.15 + 0.6 * np.exp(-steps / 20)
    dh = np.diff(entropy, append=entropy[-1] - 0.6 / 20 * np.exp(-n / 20))
    return pd.DataFrame({
        "step": steps, "entropy_mean": entropy,
        "reward_mean": b - a * np.exp(entropy) + rng.normal(0, noise, n),
        "cov_logp_adv": -dh / 0.5 + rng.normal(0, 1e-4, n),  # eta = 0.5 by construction
        "zero_std_group_frac": np.linspace(0.1, 0.6, n),
        "pass_at_1": np.linspace(0.3, 0.6, n), "pass_at_8": np.linspace(0.8, 0.65, n),
        "length_mean": np.linspace(40, 25, n),
    })


def test_curves_figure_draws_each_runs_entropy_and_performance_as_given():
    one, two = law_run(seed=0), law_run(n=30, seed=1)
    figure = figures.curves_figure({"one": one, "two": two}, {"one": "reward_mean", "two": "reward_mean"})
    by_name = {trace.name: trace for trace in figure.data}
    np.testing.assert_array_equal(by_name["one"].y, one["entropy_mean"])
    np.testing.assert_array_equal(by_name["two"].x, two["step"])
    np.testing.assert_array_equal(by_name["two: reward_mean"].y, two["reward_mean"])
    assert by_name["one"].line.color != by_name["two"].line.color


def test_curves_figure_marks_each_runs_alerts_on_its_plot_and_names_the_performance_column():
    """The report's curves said neither where an alert fired (the dashboard draws a dashed line)
    nor which column "performance" is."""
    one, two = law_run(seed=0), law_run(seed=1)
    alerts = {"one": [{"rule": "entropy_collapse", "step": 40.0, "plot": "entropy"},
                      {"rule": "plateau", "step": 30.0, "plot": "performance"},
                      {"rule": "zero_variance", "step": 20.0, "plot": "groups"}],  # not a curve: the table has it
              "two": [{"rule": "entropy_collapse", "step": 42.0, "plot": "entropy"}]}
    figure = figures.curves_figure({"one": one, "two": two}, {"one": "reward_mean", "two": "reward_mean"},
                                   alerts=alerts)
    assert "performance (reward_mean)" in [a.text for a in figure.layout.annotations]
    marks = sorted((a.x, a.text, a.yref, a.yshift or 0) for a in figure.layout.annotations if a.x in (30.0, 40.0, 42.0))
    assert [(x, text) for x, text, _, _ in marks] == [(30.0, "plateau (one)"), (40.0, "entropy_collapse (one)"),
                                                      (42.0, "entropy_collapse (two)")]
    assert marks[0][2] != marks[1][2] == marks[2][2]  # the plateau on the performance plot, the rest on entropy's
    assert marks[1][3] != marks[2][3]  # two steps apart: stacked, not printed over each other
    lines = [shape for shape in figure.layout.shapes if shape.type == "line"]
    assert len(lines) == 3 and {shape.line.dash for shape in lines} == {"dash"}
    single = figures.curves_figure({"one": one}, {"one": "reward_mean"}, alerts={"one": alerts["one"]})
    assert {a.text for a in single.layout.annotations} >= {"plateau", "entropy_collapse"}


def test_curves_figure_skips_missing_values_instead_of_drawing_gaps_as_zero():
    frame = pd.DataFrame({"step": [0, 1, 2], "entropy_mean": [0.5, np.nan, 0.3], "eval_accuracy": [np.nan, 0.4, np.nan]})
    figure = figures.curves_figure({"r": frame}, {"r": "eval_accuracy"})
    entropy, accuracy = figure.data
    assert list(entropy.x) == [0, 2] and list(entropy.y) == [0.5, 0.3]
    assert list(accuracy.x) == [1] and list(accuracy.y) == [0.4]


def test_law_figure_curve_is_b_minus_a_exp_h_and_the_ceiling_carries_its_interval():
    points = pd.DataFrame({"entropy": [0.2, 0.4, 0.6], "performance": [0.5, 0.4, 0.3]})
    law = {"a": 0.6, "b": 1.3, "ceiling": 0.7, "ceiling_ci": (0.65, 0.78), "trustworthy": True}
    figure = figures.law_figure({"r": points}, {"r": law})
    observed, curve, ceiling = figure.data
    np.testing.assert_array_equal(observed.x, points["entropy"])
    np.testing.assert_allclose(curve.y, 1.3 - 0.6 * np.exp(np.asarray(curve.x)), rtol=1e-12)
    assert curve.x[0] == 0.0 and curve.x[-1] == pytest.approx(0.6)
    assert list(ceiling.y) == [0.7] and ceiling.marker.symbol == "diamond"
    assert ceiling.error_y.array[0] == pytest.approx(0.08) and ceiling.error_y.arrayminus[0] == pytest.approx(0.05)


def test_law_figure_marks_an_untrusted_ceiling_as_not_a_prediction():
    points = pd.DataFrame({"entropy": [0.2, 0.4], "performance": [0.5, 0.4]})
    law = {"a": 0.6, "b": 1.3, "ceiling": 0.7, "ceiling_ci": (0.1, 1.5), "trustworthy": False}
    ceiling = figures.law_figure({"r": points}, {"r": law}).data[-1]
    assert ceiling.marker.symbol == "diamond-open" and "not a prediction" in ceiling.name


def test_law_legends_fold_the_signs_of_a_and_b_into_the_formula():
    """A negative a (performance rising with entropy, as on grpo-adaptive-ent0.55) read
    "R = --0.0761·e^H + 0.661" in the legends of the report and the dashboard's law panel."""
    from entropymon.display import law_formula
    from entropymon.figures.law import law_scatter_figure

    assert law_formula(0.333, 1.25) == "R = -0.333·e^H + 1.25"
    assert law_formula(-0.0761, 0.661) == "R = 0.0761·e^H + 0.661"
    assert law_formula(0.5, -0.07) == "R = -0.5·e^H - 0.07"
    points = pd.DataFrame({"entropy": [0.2, 0.4, 0.6], "performance": [0.5, 0.55, 0.6]})
    law = {"a": -0.0761, "b": 0.661, "ceiling": 0.585, "ceiling_ci": (0.5, 0.6), "trustworthy": False}
    assert figures.law_figure({"r": points}, {"r": law}).data[1].name == "r: R = 0.0761·e^H + 0.661"

    class Fit:  # what law_scatter_figure reads of a LawFit
        entropy, performance, steps, performance_column = [0.2, 0.4, 0.6], [0.5, 0.55, 0.6], None, "R"
        a, b, ceiling, ceiling_ci = -0.0761, 0.661, 0.585, (0.5, 0.6)

        def predict(self, h):
            return self.b - self.a * np.exp(h)

    names = [trace.name for trace in law_scatter_figure(Fit()).data]
    assert "fit: R = 0.0761·e^H + 0.661" in names and not any("--" in name for name in names)


def test_dynamics_figure_plots_minus_eta_times_covariance_against_observed_dh():
    table = pd.DataFrame({"dH": [-0.02, -0.01, 0.0], "cov_logp_adv": [0.05, 0.02, -0.01]})
    figure = figures.dynamics_figure({"r": table}, {"r": {"cov_logp_adv": 0.4}})
    points, identity = figure.data
    np.testing.assert_allclose(points.x, -0.4 * table["cov_logp_adv"].to_numpy())
    np.testing.assert_array_equal(points.y, table["dH"])
    assert list(identity.x) == list(identity.y)


def test_diversity_figure_orders_pass_at_k_by_k_and_draws_pass_at_1_solid():
    frame = law_run()
    frame["pass_at_16"] = 0.9
    figure = figures.diversity_figure({"r": frame})
    assert [t.name for t in figure.data if "pass@" in t.name] == ["r: pass@1", "r: pass@8", "r: pass@16"]
    assert [t.line.dash for t in figure.data if "pass@" in t.name] == ["solid", "dash", "dash"]


def test_figures_without_their_columns_say_so_in_the_title():
    bare = pd.DataFrame({"step": [0, 1], "entropy_mean": [0.5, 0.4]})
    assert figures.covariance_figure({"r": bare}).layout.title.text == "covariance: not logged in these runs"
    assert figures.diversity_figure({"r": bare}).layout.title.text == "diversity: not logged in these runs"


def test_report_is_one_offline_file_with_plotly_inlined_once(tmp_path):
    runs = [law_run(seed=0), law_run(n=40, a=0.5, b=1.1, seed=3)]
    path = write_report(runs, tmp_path / "report.html", title="two <runs>", n_bootstrap=100)
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*['\"]?https?://", text, re.I)
    assert not re.search(r"<link[^>]*href\s*=\s*['\"]?https?://", text, re.I)
    assert text.count("plotly.js v") == 1  # the library's banner: inlined exactly once
    assert "<h1>two &lt;runs&gt;</h1>" in text  # titles are escaped
    assert text.count("class='figure'") == 5  # curves, law, covariance, dynamics, diversity
    assert "Trust this ceiling" in text or "Do not trust this ceiling" in text


def test_report_verdict_agrees_with_the_summary_and_names_the_baselines(tmp_path):
    analysis = analyse_run(law_run(), n_bootstrap=100)
    text = render_report([analysis])
    expected = "Trust this ceiling" if analysis.summary["trustworthy"] else "Do not trust this ceiling"
    assert f"{expected}: {html.escape(analysis.summary['reason'])}" in text
    for baseline in ("last value", "window mean", "linear trend"):
        assert baseline in text


def test_report_of_a_noise_run_does_not_present_a_trusted_ceiling(tmp_path):
    rng = np.random.default_rng(5)
    noise = pd.DataFrame({"step": np.arange(50), "entropy_mean": 0.5 + rng.normal(0, 0.05, 50),
                          "reward_mean": rng.uniform(0, 1, 50)})
    analysis = analyse_run(noise, n_bootstrap=100)
    assert analysis.summary["trustworthy"] is False
    assert "Do not trust this ceiling" in render_report([analysis])


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium on this machine")
def test_report_renders_every_figure_in_chromium_with_the_network_off(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    path = write_report([law_run(), law_run(n=40, seed=2)], tmp_path / "report.html", n_bootstrap=100)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_context(offline=True).new_page()
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(path.as_uri())
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
            assert page.locator(".js-plotly-plot").count() == 5
            assert page.evaluate("typeof Plotly") == "object"
            assert errors == []
        finally:
            browser.close()


def test_the_report_gives_each_alert_as_check_does_with_its_remedies():
    from entropymon.analysis import diagnose

    curve = pd.read_csv(Path(__file__).parent / "data" / "real_curves" / "trl_grpo_qwen25_7b_gsm8k_s43_collapse"
                        / "curve.csv").rename(columns={"entropy": "entropy_mean", "performance": "reward_mean"})
    frame = curve[["step", "entropy_mean", "reward_mean"]]
    page = html.unescape(render_report([analyse_run(frame, n_bootstrap=50)]))
    alerts = diagnose(frame)
    assert alerts and any(a.severity == "critical" for a in alerts)
    for alert in alerts:
        assert alert.message in page
        for remedy in alert.remedies:
            assert remedy["action"] in page and (remedy["trl"] or remedy["verl"]) in page
    assert "critical (" in page  # the summary table's health column
