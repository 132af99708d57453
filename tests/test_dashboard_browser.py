"""The dashboard in a real headless Chromium (Debian's, driven by Playwright; no browser
download): every page renders plots with data, selecting runs updates the figures, a run that
grows while the page is open shows its new steps, the token view shows coloured text, and the
browser console stays free of errors. Screenshots of each page go to test-artifacts/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from entropymon import forecast_ceiling, read_run
from entropymon.display import number, verdict_sentence
from entropymon_dashboard import serve
from synthetic import write_synthetic_run

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
TIMEOUT_MS = 45_000
RUN_VIEW_GRAPHS = ("entropy-curves", "performance-curves", "entropy-heatmap", "entropy-quantiles", "forking-share",
                   "law-scatter", "law-prediction", "law-ceiling", "cov-forms", "cov-dh", "cov-split", "cov-top",
                   "cov-attribution", "div-zero-std", "div-pass-k", "div-distinct", "div-length", "div-ess", "div-kl")

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)

# JS over plotly's drawn traces (_fullData holds the decoded arrays): traces holding points
TRACES_WITH_DATA = """id => {
  const gd = document.querySelector('#' + CSS.escape(id) + ' .js-plotly-plot');
  if (!gd || !gd._fullData) return -1;
  return gd._fullData.filter(t => (t.x && t.x.length > 0) || (t.z && t.z.length > 0)).length;
}"""
TRACE_NAMES = """id => {
  const gd = document.querySelector('#' + CSS.escape(id) + ' .js-plotly-plot');
  return gd && gd._fullData ? gd._fullData.filter(t => t.showlegend !== false).map(t => t.name) : [];
}"""
# the class of the first ancestor that clips the table's tooltip (overflow not visible), or null
TOOLTIP_CLIPPED_BY = """() => {
  const t = document.querySelector('.dash-tooltip'), r = t.getBoundingClientRect();
  for (let e = t.parentElement; e && e !== document.body; e = e.parentElement) {
    const s = getComputedStyle(e), b = e.getBoundingClientRect();
    if ((s.overflowX !== 'visible' || s.overflowY !== 'visible') && (r.bottom > b.bottom + 1 || r.top < b.top - 1
        || r.left < b.left - 1 || r.right > b.right + 1)) return e.className || e.tagName;
  }
  return null;
}"""
MAX_STEP = """id => {
  const gd = document.querySelector('#' + CSS.escape(id) + ' .js-plotly-plot');
  if (!gd || !gd._fullData) return -1;
  return Math.max(-1, ...gd._fullData.flatMap(t => Array.from(t.x || [])));
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-logs")
    write_synthetic_run(root, "grpo-a", steps=120, seed=0)
    write_synthetic_run(root / "sweep", "grpo-b", steps=80, seed=1)
    handle = serve(root, port=0, background=True, poll_interval_s=0.5)
    handle.logdir = root
    yield handle
    handle.shutdown()


@pytest.fixture(scope="module")
def browser():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser, url: str):
    """A fresh browser context on ``url``; returns (context, page, the console errors it collects)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "favicon" not in m.text else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return context, page, errors


@pytest.fixture
def page(browser, server):
    context, page, errors = open_page(browser, server.url)
    page.wait_for_selector("#runs-table td[data-dash-column='run']")
    yield page
    context.close()
    assert errors == [], f"browser console errors: {errors}"


def wait_for_data(page, graph_id: str, traces: int = 1) -> None:
    page.wait_for_function(f"() => ({TRACES_WITH_DATA})('{graph_id}') >= {traces}")


def open_tab(page, label: str) -> None:
    page.locator("#tabs").get_by_text(label, exact=True).click()


def test_runs_page_lists_every_run_with_status(page, server):
    page.wait_for_function("() => document.querySelectorAll('#runs-table td[data-dash-column=\"run\"]').length >= 2")
    runs = page.locator("#runs-table td[data-dash-column='run']").all_inner_texts()
    assert [r.strip() for r in runs] == ["grpo-a", "sweep/grpo-b"]
    statuses = page.locator("#runs-table td[data-dash-column='status']").all_inner_texts()
    assert [s.strip() for s in statuses] == ["finished", "finished"]
    # the browser writes the table's figures as display.number does (3 significant digits)
    entropies = page.locator("#runs-table td[data-dash-column='entropy']").all_inner_texts()
    last = [read_run(server.logdir / name.strip()).step_metrics["entropy_mean"].iloc[-1] for name in runs]
    assert [e.strip() for e in entropies] == [number(value) for value in last]
    page.screenshot(path=str(SCREENSHOTS / "runs.png"), full_page=True)


def test_run_view_draws_every_panel_with_data(page):
    open_tab(page, "Run view")
    for graph_id in RUN_VIEW_GRAPHS:
        wait_for_data(page, graph_id)
    lines = page.locator("#entropy-curves path.js-line")
    assert lines.count() >= 1 and len(lines.first.get_attribute("d")) > 20
    assert "verdict" in page.locator("#law-verdict").get_attribute("class")
    assert page.locator("#law-verdict").inner_text().strip()
    page.screenshot(path=str(SCREENSHOTS / "run_view.png"), full_page=True)


def test_the_health_badge_and_the_alerts_panel_say_what_is_wrong_and_what_to_try(page, server):
    """The Runs table's health badge carries the worst alert, its hover the reasons; the Run view
    opens with the alerts of entropymon check (message, remedies) and marks each alert's step."""
    from entropymon import read_run
    from entropymon.analysis import diagnose, summarize_run

    run = read_run(server.logdir / "grpo-a")
    summary = summarize_run(run, n_bootstrap=50)
    alerts = [a for a in diagnose(run) if a.severity != "info"]
    assert alerts, "the synthetic run's entropy collapse should raise a warning"
    page.wait_for_function("() => document.querySelectorAll('#runs-table td[data-dash-column=\"health\"]').length >= 2")
    # a row whose summary is still computing says so, and a later poll fills it in
    page.wait_for_function("() => [...document.querySelectorAll('#runs-table td[data-dash-column=\"health\"]')]"
                           ".every(td => td.innerText.trim() !== 'computing')")
    badge = page.locator("#runs-table td[data-dash-column='health']").first
    assert badge.inner_text().strip() == summary["health"]
    badge.hover()
    tooltip = page.locator(".dash-tooltip")
    tooltip.wait_for()
    assert alerts[0].rule in tooltip.inner_text() or alerts[0].message[:40] in tooltip.inner_text()
    # no ancestor cuts the tooltip off (dcc.Tabs clips its content), and it lets the pointer through
    # to the badges of the rows it covers
    assert page.evaluate(TOOLTIP_CLIPPED_BY) is None
    assert tooltip.evaluate("t => getComputedStyle(t).pointerEvents") == "none"
    page.screenshot(path=str(SCREENSHOTS / "runs_health.png"), full_page=True)

    open_tab(page, "Run view")
    page.wait_for_selector("#alerts-panel .alert-card")
    cards = page.locator("#alerts-panel .alert-card")
    texts = " ".join(cards.all_inner_texts())
    for alert in alerts:
        assert alert.message in texts
        assert alert.remedies[0]["action"] in texts and (alert.remedies[0]["trl"] or alert.remedies[0]["verl"]) in texts
    assert "What to try" in texts
    # each alert's step is drawn on the plot it belongs to (a dashed vertical line with the rule's name)
    entropy_alert = next(a for a in alerts if a.plot == "entropy")
    page.wait_for_function("""([id, rule]) => {
      const gd = document.querySelector('#' + id + ' .js-plotly-plot');
      return gd && gd.layout && (gd.layout.annotations || []).some(a => a.text === rule);
    }""", arg=["entropy-curves", entropy_alert.rule])
    page.screenshot(path=str(SCREENSHOTS / "run_view_alerts.png"), full_page=True)


def test_selecting_a_second_run_overlays_it(page):
    page.locator("#runs-table td input[type='checkbox']").nth(1).check()
    open_tab(page, "Run view")
    page.wait_for_function(f"() => ({TRACE_NAMES})('entropy-curves').length === 2")
    assert page.evaluate(TRACE_NAMES, "entropy-curves") == ["grpo-a", "sweep/grpo-b"]
    assert page.evaluate(TRACE_NAMES, "performance-curves") == ["grpo-a", "sweep/grpo-b"]
    page.screenshot(path=str(SCREENSHOTS / "run_view_two_runs.png"), full_page=False)


def test_a_run_growing_while_the_page_is_open_shows_new_steps(page, server):
    open_tab(page, "Run view")
    wait_for_data(page, "entropy-curves")
    assert page.evaluate(MAX_STEP, "entropy-curves") == 119
    plot = page.locator("#entropy-curves .js-plotly-plot")
    box = page.locator("#entropy-curves .nsewdrag").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.2, y)  # the user drags a zoom box
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y + 40, steps=8)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('#entropy-curves .js-plotly-plot').layout.xaxis.autorange === false")
    zoom = plot.evaluate("gd => gd.layout.xaxis.range")
    write_synthetic_run(server.logdir, "grpo-a", steps=30, start=120, seed=0)
    page.wait_for_function(f"() => ({MAX_STEP})('entropy-curves') === 149")
    assert plot.evaluate("gd => gd.layout.xaxis.range") == pytest.approx(zoom)  # the refresh kept the zoom
    assert zoom[1] < 100


def test_token_view_shows_text_coloured_by_entropy(page):
    open_tab(page, "Tokens")
    page.wait_for_selector("#token-completions span.token")
    spans = page.locator("#token-completions span.token")
    assert spans.count() > 10
    colours = spans.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
    assert all(c.startswith("rgba(214, 39, 40") for c in colours)
    assert len(set(colours)) > 3  # the colour varies with the entropy
    page.wait_for_selector("#forking-table td")
    page.screenshot(path=str(SCREENSHOTS / "tokens.png"), full_page=True)
    page.locator("#token-color input[value='cov']").check()
    page.wait_for_function("() => [...document.querySelectorAll('#token-completions span.token')]"
                           ".some(e => getComputedStyle(e).backgroundColor.startsWith('rgba(31, 119, 180'))")


SAMPLE_LOGS = Path(__file__).resolve().parents[1] / "sample_logs"
SAMPLE_GRAPHS = ("entropy-curves", "performance-curves", "entropy-heatmap", "entropy-quantiles", "forking-share",
                 "law-scatter", "law-prediction", "law-ceiling", "cov-forms", "cov-dh", "cov-split", "cov-top",
                 "cov-attribution", "div-zero-std", "div-pass-k", "div-length")


def test_the_bundled_sample_runs_render_on_every_page(browser):
    """The app on the real demo runs in sample_logs/: each page draws real data, the law panel
    says in words the analysis's trust verdict on the run's ceiling, tokens are coloured."""
    handle = serve(SAMPLE_LOGS, port=0, background=True, poll_interval_s=5.0)
    context, page, errors = open_page(browser, handle.url)
    try:
        page.wait_for_function("() => document.querySelectorAll('#runs-table td[data-dash-column=\"run\"]').length >= 3")
        runs = sorted(r.strip() for r in page.locator("#runs-table td[data-dash-column='run']").all_inner_texts())
        assert runs == ["grpo-adaptive-ent0.55", "grpo-temp1.0", "grpo-temp1.3"]
        page.screenshot(path=str(SCREENSHOTS / "sample_runs.png"), full_page=True)

        page.locator("#runs-table td input[type='checkbox']").nth(1).check()
        open_tab(page, "Run view")
        for graph_id in SAMPLE_GRAPHS:
            wait_for_data(page, graph_id)
        page.wait_for_function(f"() => ({TRACE_NAMES})('entropy-curves').length === 2")
        assert page.evaluate(MAX_STEP, "entropy-curves") == 500
        expected = {verdict_sentence(forecast_ceiling(read_run(SAMPLE_LOGS / name)))[1] for name in runs}
        assert page.locator("#law-verdict").inner_text().strip() in expected  # the analysis's verdict, in words
        page.screenshot(path=str(SCREENSHOTS / "sample_run_view.png"), full_page=True)

        open_tab(page, "Tokens")
        page.wait_for_selector("#token-completions span.token")
        assert page.locator("#token-completions span.token").count() > 5
        # each card shows the completion's prompt (an addition problem) and the view says how many it shows
        prompts = page.locator("#token-completions .completion-prompt").all_inner_texts()
        assert prompts and all(p.startswith("prompt: ") and p.rstrip().endswith("=") for p in prompts)
        count = page.locator("#token-completions .completions-count").inner_text()
        shown, of_n = count.split(" completions shown")[0].split(" of ")
        assert int(shown) == page.locator("#token-completions .completion-prompt").count() <= int(of_n)
        page.screenshot(path=str(SCREENSHOTS / "sample_tokens.png"), full_page=True)
    finally:
        context.close()
        handle.shutdown()
    assert errors == [], f"browser console errors: {errors}"
