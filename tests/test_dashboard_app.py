"""The dashboard's server side: run discovery and path safety, per-version caching, the
callback bodies on real logs written by RunLog, and the HTTP endpoint Dash serves."""

from __future__ import annotations

import inspect
import json
import os
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import annotation_text
from entropymon import display
from entropymon.errors import RunNotFoundError
from entropymon.log.reader import list_runs, read_run
from entropymon.log.writer import RunLog
from entropymon_dashboard import create_app, panels, serve
from entropymon_dashboard.catalog import RunCatalog
from entropymon_dashboard.runs_table import runs_rows, tooltips
from entropymon_dashboard.store import RunStore, run_version
from synthetic import write_synthetic_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("logs")
    write_synthetic_run(root, "grpo-a", steps=120, seed=0)
    write_synthetic_run(root / "sweep", "grpo-b", steps=80, seed=1)
    return root


def drawn_steps(fig) -> list[float]:
    return sorted(x for trace in fig.data if trace.hoverinfo != "skip" for x in trace.x)


def dash_post(client, outputs, inputs, state=()):
    """POST one callback request the way the browser does; returns (status, parsed JSON or None)."""
    payload = {
        "output": ".." + "...".join(f"{i}.{p}" for i, p in outputs) + ".." if len(outputs) > 1
        else f"{outputs[0][0]}.{outputs[0][1]}",
        "outputs": [{"id": i, "property": p} for i, p in outputs] if len(outputs) > 1
        else {"id": outputs[0][0], "property": outputs[0][1]},
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"],
    }
    response = client.post("/_dash-update-component", json=payload)
    body = response.get_data(as_text=True)
    return response.status_code, (json.loads(body) if body else None)


# ---- discovery and path safety ----

def test_catalog_lists_nested_runs_by_relative_id(logdir):
    catalog = RunCatalog(logdir)
    assert [e.run_id for e in catalog.entries()] == ["grpo-a", "sweep/grpo-b"]
    assert catalog.resolve("sweep/grpo-b").path == (logdir / "sweep" / "grpo-b").resolve()


@pytest.mark.parametrize("crafted", ["../../etc", "..", "/etc", "sweep/../../etc", "grpo-a/../..", "", "sweep"])
def test_catalog_refuses_any_id_it_did_not_list(logdir, crafted):
    with pytest.raises(RunNotFoundError, match="expected one of the runs"):
        RunCatalog(logdir).resolve(crafted)


def test_catalog_refuses_an_absolute_path_even_to_a_real_run(logdir):
    with pytest.raises(RunNotFoundError):
        RunCatalog(logdir).resolve(str(logdir / "grpo-a"))


def test_symlinks_out_of_the_logdir_are_neither_listed_nor_served(tmp_path):
    root, outside = tmp_path / "logs", tmp_path / "outside"
    write_synthetic_run(root, "inside", steps=5, with_samples=False)
    secret = write_synthetic_run(outside, "secret", steps=5, with_samples=False)
    os.symlink(secret, root / "linked-run")  # a run folder that is a link out
    sneaky = root / "sneaky"
    sneaky.mkdir()
    (sneaky / "run.json").write_text((Path(secret) / "run.json").read_text())
    os.symlink(Path(secret) / "steps", sneaky / "steps")  # a table folder that is a link out
    catalog = RunCatalog(root)
    assert [e.run_id for e in catalog.entries()] == ["inside"]
    for crafted in ("linked-run", "sneaky", "../outside/secret"):
        with pytest.raises(RunNotFoundError):
            catalog.resolve(crafted)
    store = RunStore(catalog)
    fig = panels.curve_figures(store, ["linked-run", "sneaky"])[0]
    assert len(fig.data) == 0  # nothing read from outside


def test_a_crafted_http_request_for_a_parent_path_gets_a_message_not_data(logdir):
    client = create_app(logdir).server.test_client()
    outputs = [("entropy-heatmap", "figure"), ("entropy-quantiles", "figure"), ("forking-share", "figure")]
    status, body = dash_post(client, outputs, [("focus-key", "data", {"key": "../../etc@x", "refresh": True})],
                             [(graph, "relayoutData", None) for graph, _ in outputs])
    assert status == 200
    figures = body["response"]
    text = json.dumps(figures)
    assert "expected one of the runs found under the dashboard's logdir" in text
    assert all(fig["figure"]["data"] == [] for fig in figures.values())
    status, body = dash_post(client, [("token-completions", "children"), ("forking-table", "data")],
                             [("token-key", "data", {"key": "/etc@x"}), ("token-step", "value", 0),
                              ("token-reward", "value", [0, 1]), ("token-sign", "value", "all"),
                              ("token-color", "value", "entropy")])
    assert status == 200 and "expected one of the runs" in json.dumps(body)


# ---- versions, caching, polling ----

def test_version_changes_only_when_a_run_gets_new_files(tmp_path):
    write_synthetic_run(tmp_path, "live", steps=10)
    store = RunStore(RunCatalog(tmp_path))
    first = store.state("live")
    assert store.state("live") is first  # unchanged folder: the cached state
    assert run_version(first.entry.path) == first.version
    write_synthetic_run(tmp_path, "live", steps=5, start=10)
    second = store.state("live")
    assert second.version != first.version
    assert second.step_metrics["step"].max() == 14


POLL_OUTPUTS = [("runs-table", "data"), ("runs-table", "selected_rows"), ("runs-table", "tooltip_data"),
                ("data-version", "data"), ("runs-message", "children")]


def poll(client, n: int, selected, versions, shown):
    return dash_post(client, POLL_OUTPUTS, [("poll", "n_intervals", n)],
                     [("selected-runs", "data", selected), ("data-version", "data", versions),
                      ("runs-table", "data", shown)])


def poll_until_filled(client, rows, versions, timeout_s: float = 60.0) -> list[dict]:
    """Poll as the browser does until no row's summary is pending; the rows then shown."""
    deadline = time.monotonic() + timeout_s
    n = 1
    while any(row.get("pending") for row in rows):
        assert time.monotonic() < deadline, "the summaries never filled in"
        time.sleep(0.05)
        status, body = poll(client, n, ["grpo-a"], versions, rows)
        n += 1
        if status == 200:
            rows = body["response"]["runs-table"]["data"]
            assert "data-version" not in body["response"]  # filling a row in changes no run
    return rows


def test_poll_answers_nothing_changed_without_sending_rows(logdir):
    client = create_app(logdir).server.test_client()
    status, body = poll(client, 0, None, {}, None)
    assert status == 200
    response = body["response"]
    assert [r["id"] for r in response["runs-table"]["data"]] == ["grpo-a", "sweep/grpo-b"]
    assert response["runs-table"]["selected_rows"] == [0]  # first load shows the first run
    versions = response["data-version"]["data"]
    rows = poll_until_filled(client, response["runs-table"]["data"], versions)
    tips = tooltips(rows)  # the health badge explains itself on hover
    assert all(t["health"]["value"].startswith(f"**{r['health']}**") for t, r in zip(tips, rows))
    assert all(r["health"] in ("healthy", "warning", "critical") for r in rows)
    status, body = poll(client, 99, ["grpo-a"], versions, rows)
    assert status == 204 and body is None


def test_a_slow_summary_leaves_its_row_pending_and_a_later_poll_fills_it_in(logdir, monkeypatch):
    """The poll waits SUMMARY_WAIT_S for a run's summary, then sends the row without it (status,
    steps and last values, ``pending``); the summary goes on in the background once, the Run view's
    alerts panel waits for that same computation, and a later poll sends the filled-in row."""
    from entropymon_dashboard import runs_table

    calls = []
    real = runs_table.summarize

    def slow(*args, **kwargs):
        calls.append(1)
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(runs_table, "summarize", slow)
    app = create_app(logdir)
    client = app.server.test_client()
    started = time.monotonic()
    status, body = poll(client, 0, None, {}, None)
    assert time.monotonic() - started < 1.0  # not waiting for the summaries
    rows = body["response"]["runs-table"]["data"]
    versions = body["response"]["data-version"]["data"]
    first = rows[0]
    assert first["pending"] and first["health"] == runs_table.PENDING == display.PENDING
    # every cell the summary fills in says the same word (the ceiling read "-" and alerts was blank)
    assert {first[key] for key in runs_table.PENDING_COLUMNS} == {display.PENDING}
    frame = read_run(logdir / "grpo-a").step_metrics
    assert first["steps"] == len(frame) and first["entropy"] == pytest.approx(frame["entropy_mean"].iloc[-1])
    status, body = poll(client, 1, ["grpo-a"], versions, rows)
    assert status == 204  # still computing, nothing new to send
    (name, summary), = panels.run_alerts(app.run_store, ["grpo-a"])  # waits for the computation under way
    assert name == "grpo-a" and summary["health"] in ("healthy", "warning", "critical") and len(calls) <= 2
    filled = poll_until_filled(client, rows, versions)
    assert not any(r.get("pending") for r in filled) and filled[0]["trust"] in ("yes", "no")
    assert filled[0]["health"] in ("healthy", "warning", "critical")
    assert len(calls) == 2  # once per run, in the background


def test_the_runs_table_and_the_law_panel_show_one_ceiling_interval_from_one_fit(monkeypatch):
    """grpo-temp1.3's badge tooltip read [0.879, 0.935] (the summary's 200 resamples) where the law
    panel read [0.877, 0.942] (its own 1000): both now read the one forecast of the run version."""
    from entropymon.analysis import summary as summary_module
    from entropymon_dashboard import runs_table

    calls = []
    real = runs_table.forecast_ceiling

    def counting(*args, **kwargs):
        calls.append(kwargs.get("n_bootstrap"))
        return real(*args, **kwargs)

    monkeypatch.setattr(runs_table, "forecast_ceiling", counting)
    monkeypatch.setattr(summary_module, "forecast_ceiling", lambda *a, **k: pytest.fail("the summary fitted its own"))
    store = create_app(REPO / "sample_logs").run_store
    row = next(r for r in runs_rows(store) if r["run"] == "grpo-temp1.3")
    state = store.state(row["id"])
    summary = runs_table.run_summary(store, state)
    _, verdict, *_ = panels.law_panel(store, row["id"])
    low, high = summary["ceiling_ci"]
    shown = f"[{low:.3g}, {high:.3g}]"
    assert shown in row["trust_reason"] and shown in row["health_tooltip"] and shown in verdict
    assert calls == [runs_table.LAW_BOOTSTRAP] * len(store.catalog.entries())  # one fit per run, shared


# ---- what the pages show ----

def test_runs_rows_report_each_runs_last_values(logdir):
    rows = {r["id"]: r for r in runs_rows(RunStore(RunCatalog(logdir)))}
    for run_id in ("grpo-a", "sweep/grpo-b"):
        frame = read_run(logdir / run_id).step_metrics
        row = rows[run_id]
        assert row["status"] == "finished"
        assert row["steps"] == len(frame) and row["last_step"] == frame["step"].max()
        assert row["entropy"] == pytest.approx(frame["entropy_mean"].iloc[-1], abs=1e-4)
        assert row["reward"] == pytest.approx(frame["reward_mean"].iloc[-1], abs=1e-4)
        accuracy = frame["eval_accuracy"].dropna()
        assert row["accuracy"] == pytest.approx(accuracy.iloc[-1], abs=1e-4)
        assert row["trust"] in ("yes", "no") and row["trust_reason"]



def test_the_runs_table_and_the_covariance_panel_share_one_entropy_dynamics(logdir, monkeypatch):
    """The summary's entropy dynamics is the covariance panel's (one bootstrap per run version), also
    when the panel asks while the summary computes in the background, and equals entropy_dynamics
    of the run's steps computed on its own."""
    from entropymon.analysis import dynamics as dynamics_module
    from entropymon.analysis import summary as summary_module
    from entropymon_dashboard import runs_table

    expected = dynamics_module.entropy_dynamics(read_run(logdir / "grpo-a").step_metrics)
    calls = []
    counted = dynamics_module.entropy_dynamics

    def counting(*args, **kwargs):
        calls.append(1)
        time.sleep(0.3)  # long enough for the panel to ask while it is being computed
        return counted(*args, **kwargs)

    monkeypatch.setattr(summary_module, "entropy_dynamics", lambda *a, **k: pytest.fail("the summary computed its own"))
    monkeypatch.setattr(runs_table, "entropy_dynamics", counting)
    store = RunStore(RunCatalog(logdir))
    assert all(row["pending"] for row in runs_rows(store, wait_s=0.0))  # summaries go on in the background
    figures = panels.covariance_figures(store, "grpo-a")  # waits for the dynamics under way, or computes it first
    assert not any(row.get("pending") for row in runs_rows(store))
    state = store.state("grpo-a")
    shared = store.derived(state, "dynamics", lambda s: pytest.fail("the summary did not leave its dynamics"))
    assert len(calls) == 2  # one per run of the catalog, none more for the panel
    assert shared.to_dict() == expected.to_dict()
    assert all(len(fig.data) > 0 for fig in figures)


def test_curves_overlay_the_selected_runs_with_their_logged_values(logdir):
    store = RunStore(RunCatalog(logdir))
    entropy, reward = panels.curve_figures(store, ["grpo-a", "sweep/grpo-b"], smoothing=0.0)
    names = [t.name for t in entropy.data]
    assert names == ["grpo-a", "sweep/grpo-b"]
    frame = read_run(logdir / "sweep" / "grpo-b").step_metrics
    np.testing.assert_allclose(reward.data[1].y, frame["reward_mean"])


def test_detail_panels_draw_data_for_a_full_run(logdir):
    store = RunStore(RunCatalog(logdir))
    figures = [*panels.distribution_figures(store, "grpo-a"), *panels.covariance_figures(store, "grpo-a"),
               *panels.diversity_figures(store, "grpo-a")]
    assert all(len(fig.data) > 0 for fig in figures), [fig.layout.title.text for fig in figures if not fig.data]
    trusted, verdict, held_out, scatter, early, curve = panels.law_panel(store, "grpo-a")
    assert verdict and "RMSE" in held_out
    # the skill of the one early cut is named as such: the verdict above it gives the backtest skill
    assert "held-out skill" in held_out and "held-out skill" in early.layout.title.text
    assert len(scatter.data) >= 3 and len(early.data) >= 2 and len(curve.data) == 3


def test_token_panel_colours_the_tokens_of_the_filtered_completions(logdir):
    store = RunStore(RunCatalog(logdir))
    sample_steps, token_steps = panels.token_steps(store, "grpo-a")
    assert sample_steps == list(range(120)) and token_steps == list(range(0, 120, 10))
    samples, tokens = panels.step_rows(store, "grpo-a", 50)
    count, *blocks = panels.token_panel(store, "grpo-a", 50, advantage_sign="all")[0]
    table = panels.token_panel(store, "grpo-a", 50, advantage_sign="all")[1]
    assert count.children == f"{min(len(samples), 20)} of {len(samples)} completions shown"
    spans = [s for block in blocks[:4] for s in block.children[-1].children]
    with_tokens = samples[samples["sample_id"].isin(tokens["sample_id"])]
    assert len(spans) == len(tokens[tokens["sample_id"].isin(with_tokens["sample_id"])])
    assert all(s.style["backgroundColor"].startswith("rgba(214, 39, 40") for s in spans)
    assert sum(r["count"] for r in table) == len(tokens)
    (shown, *positive), _ = panels.token_panel(store, "grpo-a", 50, advantage_sign="positive")
    n_positive = int((samples["advantage"] > 0).sum())
    assert n_positive > 0 and len(positive) == min(n_positive, 20)
    assert shown.children.endswith(f"({n_positive} of the step's {len(samples)} match the filters)")
    headers = [block.children[-2].children for block in positive]
    assert all(float(h.split("advantage ")[1].split(" ")[0]) > 0 for h in headers)


def test_empty_tiny_and_broken_runs_show_messages(tmp_path):
    with RunLog(tmp_path, run="empty"):
        pass
    write_synthetic_run(tmp_path, "tiny", steps=2, with_samples=False)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    store = RunStore(RunCatalog(tmp_path))
    rows = {r["id"]: r for r in runs_rows(store)}
    assert rows["broken"]["status"] == "broken" and rows["empty"]["steps"] == 0
    assert "no steps logged yet" in annotation_text(panels.distribution_figures(store, "empty")[0])
    assert "cannot be read" in annotation_text(panels.covariance_figures(store, "broken")[0])
    entropy, _ = panels.curve_figures(store, ["tiny"])
    assert drawn_steps(entropy) == [0, 1] and entropy.data[0].mode == "lines+markers"
    trusted, verdict, *_ = panels.law_panel(store, "tiny")
    assert not trusted and verdict.startswith("The law does not predict this run yet")


def test_a_growing_run_shows_its_new_steps(tmp_path):
    write_synthetic_run(tmp_path, "growing", steps=30)
    store = RunStore(RunCatalog(tmp_path))
    before = panels.curve_figures(store, ["growing"])[0]
    write_synthetic_run(tmp_path, "growing", steps=20, start=30)
    after = panels.curve_figures(store, ["growing"])[0]
    assert max(drawn_steps(before)) == 29 and max(drawn_steps(after)) == 49


# ---- serving ----

def test_serve_defaults_to_localhost_without_debug():
    defaults = {k: v.default for k, v in inspect.signature(serve).parameters.items()}
    assert defaults["host"] == "127.0.0.1" and defaults["debug"] is False and defaults["background"] is False


def test_serve_in_background_answers_on_localhost(logdir):
    server = serve(logdir, port=0, background=True)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url + "_dash-layout", timeout=10) as response:
            layout = json.loads(response.read())
        assert "runs-table" in json.dumps(layout)
        assert server.app.server.debug is False
    finally:
        server.shutdown()


def test_the_app_starts_on_the_bundled_sample_logs():
    sample_logs = REPO / "sample_logs"
    if not sample_logs.is_dir() or not list_runs(sample_logs):
        pytest.skip("sample_logs/ has no runs yet")
    store = create_app(sample_logs).run_store
    rows = runs_rows(store)
    assert rows and all(r["status"] != "broken" for r in rows)
    entropy, _ = panels.curve_figures(store, [rows[0]["id"]])
    assert len(entropy.data) > 0


@pytest.mark.parametrize("name", ["grpo-adaptive-ent0.55", "grpo-temp1.0", "grpo-temp1.3"])
def test_the_dashboard_gives_each_sample_run_the_alerts_entropymon_check_gives(name):
    """One voice: the Runs badge, the alerts panel and the plot markers read the same alerts as
    ``entropymon check --json`` on the bundled runs (the dashboard shares one law fit between its
    table, alerts and law panel; that must not change a single alert)."""
    import subprocess

    checked = json.loads(subprocess.run(["entropymon", "check", str(REPO / "sample_logs" / name), "--json"],
                                        capture_output=True, text=True, timeout=300).stdout)
    store = create_app(REPO / "sample_logs").run_store
    row = next(r for r in runs_rows(store) if r["run"] == name)
    summary = dict(panels.run_alerts(store, [row["id"]]))[name]
    assert json.loads(json.dumps(summary["alerts"])) == checked["alerts"]
    assert row["health"] == checked["health"] and row["alerts"] == len(checked["alerts"])
    cards, line = panels.alerts_panel(store, [row["id"]])
    text = "\n".join(_strings(cards))
    for alert in checked["alerts"]:
        assert alert["message"] in text
        for remedy in alert["remedies"]:
            assert remedy["action"] in text
    n = len(checked["alerts"])
    assert line == f"{name}: {checked['health']}" + (f" ({n} alert{'' if n == 1 else 's'})" if n else "")
    assert (line + "\n" + text).count("healthy") == (checked["health"] == "healthy")  # said once, not twice


def test_the_diagnosis_line_counts_one_alert_in_the_singular_and_compare_markers_name_their_run():
    """The summary line read 'grpo-x: warning (1 alerts)', and with several runs shown the dashed
    alert markers were bare rule names: which run's collapse was at step 440?"""
    import plotly.graph_objects as go

    from entropymon_dashboard.alerts_view import alert_count, mark_alerts

    assert (alert_count([]), alert_count([{}]), alert_count([{}, {}])) == ("", " (1 alert)", " (2 alerts)")
    store = create_app(REPO / "sample_logs").run_store
    rows = runs_rows(store)
    ids = [r["id"] for r in rows]
    entropy = go.Figure(go.Scatter(x=np.arange(501), y=np.zeros(501)))
    entropy.update_layout(title="Policy entropy: entropy_mean", yaxis_title="entropy_mean (nats)")
    summaries = dict(panels.run_alerts(store, ids))
    expected = sorted(f"{a['rule']} ({name})" for name, s in summaries.items() for a in s["alerts"] if a["plot"] == "entropy")
    assert expected, "the sample runs have entropy alerts"
    (compared,) = panels.marked((entropy,), ("entropy-curves",), store, ids)
    assert sorted(a.text for a in compared.layout.annotations) == expected
    one = next(r for r in rows if summaries[r["run"]]["alerts"])
    (alone,) = panels.marked((entropy,), ("entropy-curves",), store, [one["id"]])
    assert all("(" not in a.text for a in alone.layout.annotations)  # one run: the rule alone
    assert mark_alerts(entropy, [{"rule": "plateau", "severity": "warning", "step": 9.0, "plot": "entropy",
                                  "evidence": {"column": "eval_accuracy"}, "run": "r1"}],
                       "entropy-curves").layout.annotations[0].text == "plateau (eval_accuracy; r1)"


def _strings(component) -> list[str]:
    """Every text a Dash component tree shows, depth first."""
    if isinstance(component, str):
        return [component]
    if isinstance(component, (list, tuple)):
        return [text for child in component for text in _strings(child)]
    children = getattr(component, "children", None)
    return [] if children is None else _strings(children)


def test_alert_markers_stack_close_labels_and_name_a_column_the_curve_does_not_show():
    """Two runs' entropy_collapse alerts 15 steps apart printed their labels over each other, and a
    plateau of eval_accuracy was marked on the reward_mean curve as a bare "plateau"."""
    import plotly.graph_objects as go

    from entropymon_dashboard.alerts_view import mark_alerts

    def alert(rule, step, plot, column):
        return {"rule": rule, "severity": "warning", "step": step, "plot": plot, "evidence": {"column": column}}

    curve = go.Figure(go.Scatter(x=np.arange(501), y=np.zeros(501)))
    curve.update_layout(title="Performance: reward_mean", yaxis_title="reward_mean (reward)")
    alerts = [alert("plateau", 300.0, "performance", "eval_accuracy"), alert("plateau", 240.0, "performance", "eval_accuracy"),
              alert("entropy_collapse", 440.0, "entropy", "entropy_mean")]
    marked = mark_alerts(curve, alerts, "performance-curves")
    assert len(curve.layout.annotations) == 0  # the cached figure is left alone
    labels = sorted((a.x, a.text, a.yshift or 0) for a in marked.layout.annotations)
    assert [(x, text) for x, text, _ in labels] == [(240.0, "plateau (eval_accuracy)"), (300.0, "plateau (eval_accuracy)")]
    assert labels[0][2] != labels[1][2]  # one row each: 60 steps of 500 is less than the label's width

    entropy = go.Figure(go.Scatter(x=np.arange(501), y=np.zeros(501)))
    entropy.update_layout(title="Policy entropy: entropy_mean", yaxis_title="entropy_mean (nats)")
    far = [alert("entropy_collapse", 100.0, "entropy", "entropy_mean"), alert("entropy_collapse", 440.0, "entropy", "entropy_mean")]
    texts = [(a.text, a.yshift or 0) for a in mark_alerts(entropy, far, "entropy-curves").layout.annotations]
    assert texts == [("entropy_collapse", 0), ("entropy_collapse", 0)]  # the column it shows; far apart: one row


RUN_CHOICE_OUTPUTS = [("focus-run", "options"), ("focus-run", "value"), ("token-run", "options"),
                      ("token-run", "value"), ("token-run-auto", "data")]


def _run_choices(client, selected, versions, focus, token_run, auto):
    status, body = dash_post(client, RUN_CHOICE_OUTPUTS,
                             [("selected-runs", "data", selected), ("data-version", "data", versions),
                              ("focus-run", "value", focus)],
                             [("token-run", "value", token_run), ("token-run-auto", "data", auto)])
    assert status == 200
    response = body["response"]
    return (response["focus-run"]["value"], response["token-run"]["value"],
            response.get("token-run-auto", {}).get("data", auto))


def test_the_tokens_run_follows_the_ticked_run_until_the_user_picks_one_on_the_tokens_tab(logdir):
    """The Tokens tab's run kept its first value (grpo-a) after the user ticked another run on the
    Runs page; a run picked on the Tokens tab itself stays."""
    client = create_app(logdir).server.test_client()
    versions = {"grpo-a": "1", "sweep/grpo-b": "1"}
    focus, token, auto = _run_choices(client, ["grpo-a"], versions, None, None, None)
    assert (focus, token, auto) == ("grpo-a", "grpo-a", "grpo-a")
    # the user ticks the other run instead: the focus and the Tokens run follow
    focus, token, auto = _run_choices(client, ["sweep/grpo-b"], versions, focus, token, auto)
    assert (focus, token, auto) == ("sweep/grpo-b", "sweep/grpo-b", "sweep/grpo-b")
    # both ticked, the detail dropdown set to grpo-a: the Tokens run follows that too
    focus, token, auto = _run_choices(client, ["grpo-a", "sweep/grpo-b"], versions, "grpo-a", token, auto)
    assert (focus, token) == ("grpo-a", "grpo-a")
    # the user picks sweep/grpo-b on the Tokens tab: it stays when the ticks change
    focus, token, auto = _run_choices(client, ["grpo-a"], versions, focus, "sweep/grpo-b", auto)
    assert (focus, token) == ("grpo-a", "sweep/grpo-b")
    # ... until that run is gone
    focus, token, auto = _run_choices(client, ["grpo-a"], {"grpo-a": "2"}, focus, token, auto)
    assert token == "grpo-a"
