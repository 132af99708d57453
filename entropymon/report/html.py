"""The static HTML report: one self-contained file a user can open offline or attach to an issue.

Why self-contained: reports get mailed, archived and opened on machines without network, so
plotly.js is inlined once (with the first figure) and every other figure reuses it; no CDN link,
no external stylesheet. The numbers and verdicts come from ``entropymon.analysis``: the same
``summarize`` the CLI prints, whose forecast also gives the fitted points and whose
``entropy_dynamics`` the covariance section draws (each computed once per run). The figures come
from the pure builders in ``entropymon.figures.overlays``, numbers and verdicts in the words of
``entropymon.display`` (as the CLI and the dashboard write them). A part a run cannot support (no
covariance logged, too few points for a fit) is reported in words, never as a crash.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from entropymon import display
from entropymon._version import __version__
from entropymon.errors import InputError
from entropymon.figures import overlays as figures
from entropymon.registry import PREDICTOR_LABELS

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.5rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } .meta { color: #666; font-size: 0.9rem; }
.verdict { padding: 0.5rem 0.8rem; border-left: 4px solid; margin: 0.5rem 0; }
.trusted { border-color: #2a9d4b; background: #eef8f0; } .untrusted { border-color: #d08700; background: #fdf6e8; }
.critical { color: #b00020; font-weight: bold; } .warning { color: #b36b00; } .info { color: #555; }
.healthy { color: #2e7d32; } tr.alert ul { margin: 0; padding-left: 16px; font-size: 12px; }
"""


@dataclass
class RunAnalysis:
    """Everything the report shows about one run; ``*_error`` holds why a part is missing."""

    name: str
    frame: pd.DataFrame
    summary: dict
    law_points: pd.DataFrame | None = None
    law: dict | None = None
    dynamics_table: pd.DataFrame | None = None
    dynamics: dict = field(default_factory=dict)
    dynamics_error: str | None = None


def analyse_run(run, *, n_bootstrap: int = 1000) -> RunAnalysis:
    """Run every analysis the report needs on ``run`` (a ``Run`` or a step DataFrame)."""
    from entropymon.analysis._frame import run_name, step_frame
    from entropymon.analysis.summary import summarize

    frame = step_frame(run)
    result = summarize(run, n_bootstrap=n_bootstrap)  # the law is fitted once, here
    summary = result.to_dict()
    analysis = RunAnalysis(run_name(run, summary.get("run") or "run"), frame, summary)
    forecast = result.forecast  # None: the summary's reason says why
    if forecast is not None and forecast.fit is not None:
        fit = forecast.fit
        analysis.law_points = pd.DataFrame({"entropy": fit.entropy, "performance": fit.performance})
        analysis.law = {"a": fit.a, "b": fit.b, "ceiling": fit.ceiling, "ceiling_ci": fit.ceiling_ci,
                        "trustworthy": forecast.trustworthy, "performance_column": fit.performance_column}
    dynamics = result.dynamics  # computed once, by the summary
    if dynamics is not None:
        analysis.dynamics_table = dynamics.table
        analysis.dynamics = {form: fit.eta_eff for form, fit in dynamics.fits.items()}
        analysis.dynamics_error = "; ".join(dynamics.missing.values()) or None
    else:
        analysis.dynamics_error = result.dynamics_error
    return analysis


def write_report(runs, path, *, title: str | None = None, n_bootstrap: int = 1000) -> Path:
    """Write the HTML report of ``runs`` (``Run`` objects) to ``path`` atomically; returns the path."""
    runs = list(runs)
    if not runs:
        raise InputError("runs: expected at least one run for the report, got none")
    document = render_report([analyse_run(run, n_bootstrap=n_bootstrap) for run in runs], title=title)
    path = Path(path)
    if path.is_dir():
        raise InputError(f"path: expected an HTML file name, {path} is a folder")
    # os.open with mode 0o666 lets the umask decide the permissions, as for any file a user writes
    # (mkstemp would make it private, -rw-------, whatever the umask)
    temporary = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(document)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def render_report(analyses: list[RunAnalysis], *, title: str | None = None) -> str:
    """The report of already analysed runs as one HTML document."""
    names = [a.name for a in analyses]
    title = title or f"entropymon report: {', '.join(names)}"
    frames = {a.name: a.frame for a in analyses}
    performance = {a.name: a.summary.get("performance_column") for a in analyses}
    plots = _PlotSequence()
    parts = [
        f"<h1>{_e(title)}</h1>",
        f"<p class='meta'>entropymon {_e(__version__)}, generated "
        f"{_e(dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z'))}</p>",
        "<h2>Summary</h2>", _summary_table(analyses),
        "<h2>Entropy and performance</h2>",
        plots.add(figures.curves_figure(frames, performance,
                                        alerts={a.name: a.summary.get("alerts") or [] for a in analyses})),
        "<h2>The law R = -a·e<sup>H</sup> + b and the predicted ceiling</h2>",
        plots.add(figures.law_figure({a.name: a.law_points for a in analyses if a.law_points is not None},
                                     {a.name: a.law for a in analyses if a.law is not None})),
        *(_verdict_block(a) for a in analyses),
        "<h2>Covariance and entropy dynamics</h2>",
        "<p>Cui et al. 2025: to first order the entropy change per step is ΔH ≈ -η·Cov(log π, A) "
        "(natural policy gradient) or -η·Cov(log π, π·A) (vanilla). A positive covariance drives entropy down.</p>",
        plots.add(figures.covariance_figure(frames)),
        plots.add(figures.dynamics_figure({a.name: a.dynamics_table for a in analyses if a.dynamics_table is not None},
                                          {a.name: a.dynamics for a in analyses if a.dynamics})),
        _dynamics_table(analyses),
        "<h2>Diversity</h2>", plots.add(figures.diversity_figure(frames)),
        "<h2>Alerts</h2>", _alerts_table(analyses),
    ]
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n<title>{_e(title)}</title>\n"
            f"<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


class _PlotSequence:
    """Figures as HTML fragments; the first carries plotly.js inline, the rest reuse it.

    A figure without traces (no run logged its columns) becomes its title as a line of text.
    """

    def __init__(self):
        self.count = 0

    def add(self, figure) -> str:
        if not figure.data:
            return f"<p class='meta'>{_e(figure.layout.title.text or 'nothing to plot')}.</p>"
        fragment = figure.to_html(full_html=False, include_plotlyjs=self.count == 0,
                                  config={"displaylogo": False, "responsive": True})
        self.count += 1
        return f"<div class='figure'>{fragment}</div>"


def _e(text) -> str:
    return html.escape(str(text), quote=True)


_num = display.number
_interval = display.interval


def _summary_table(analyses: list[RunAnalysis]) -> str:
    rows = ["<table><tr><th>run</th><th>steps</th><th>entropy start → end</th><th>performance start → end</th>"
            "<th>ceiling [interval]</th><th>backtest skill</th><th>trust</th><th>health (alerts)</th></tr>"]
    for a in analyses:
        s = a.summary
        rows.append(
            f"<tr><td>{_e(a.name)}</td><td>{s.get('steps')}</td>"
            f"<td>{_num(s.get('entropy_start'))} → {_num(s.get('entropy_end'))}</td>"
            f"<td>{_e(s.get('performance_column') or '-')}: {_num(s.get('performance_start'))} → "
            f"{_num(s.get('performance_end'))}</td>"
            f"<td>{_num(s.get('ceiling'))} {_interval(s.get('ceiling_ci'))}</td><td>{_num(s.get('skill'), 2)}</td>"
            f"<td>{display.trust_word(s.get('trustworthy'))}</td>"
            f"<td class='{_e(s.get('health', 'healthy'))}'>"
            f"{display.health_label(s.get('health', 'healthy'), len(s.get('alerts') or []))}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _verdict_block(a: RunAnalysis) -> str:
    s = a.summary
    trusted = bool(s.get("trustworthy"))
    parts = [f"<div class='verdict {'trusted' if trusted else 'untrusted'}'><b>{_e(a.name)}</b>: "
             f"{_e(display.verdict(trusted, s.get('reason', ''), sentence=True))}"]
    backtest = (s.get("forecast") or {}).get("backtest") or {}
    baselines = backtest.get("recent_baseline_rmse") or {}
    if baselines:
        shown = ", ".join(f"{_e(k.replace('_', ' '))} {_num(v)}" for k, v in baselines.items())
        parts.append(f"<br>Backtest over the last {backtest.get('n_recent')} of {backtest.get('n_origins')} origins: "
                     f"RMSE law {_num(backtest.get('recent_law_rmse'))} vs {shown}; skill {_num(s.get('skill'), 2)}.")
    law = (s.get("forecast") or {}).get("law")
    if law:
        parts.append(f"<br>Fit: a = {_num(law.get('a'))}, b = {_num(law.get('b'))}, R² = {_num(law.get('r2'))} "
                     f"on {law.get('n')} points.")
        for note in law.get("notes") or []:
            parts.append(f"<br>Note: {_e(note)}")
    parts.append("</div>")
    return "".join(parts)


def _dynamics_table(analyses: list[RunAnalysis]) -> str:
    rows = ["<table><tr><th>run</th><th>observed ΔH</th><th>predictor</th><th>points</th><th>Pearson r [95%]</th>"
            "<th>R²</th><th>Spearman ρ</th><th>η<sub>eff</sub> [95%]</th></tr>"]
    notes = []
    for a in analyses:
        dynamics = a.summary.get("dynamics") or {}
        observed = {"same_batch": "same batch", "naive": "consecutive batches"}.get(dynamics.get("observed"), "-")
        for form, fit in (dynamics.get("fits") or {}).items():
            r_ci, eta_ci = fit.get("r_ci") or [None, None], fit.get("eta_ci") or [None, None]
            rows.append(f"<tr><td>{_e(a.name)}</td><td>{observed}</td>"
                        f"<td>{_e(PREDICTOR_LABELS.get(form, form))}</td><td>{fit.get('n')}</td>"
                        f"<td>{_num(fit.get('pearson_r'))} [{_num(r_ci[0])}, {_num(r_ci[1])}]</td>"
                        f"<td>{_num(fit.get('r2'))}</td><td>{_num(fit.get('spearman_rho'))}</td>"
                        f"<td>{_num(fit.get('eta_eff'))} [{_num(eta_ci[0])}, {_num(eta_ci[1])}]</td></tr>")
        if dynamics.get("explanation"):
            notes.append(f"<p>{_e(a.name)}: {_e(dynamics['explanation'])}</p>")
        if a.dynamics_error:
            notes.append(f"<p class='meta'>{_e(a.name)}: {_e(a.dynamics_error)}</p>")
    rows.append("</table>")
    return ("\n".join(rows) if len(rows) > 2 else "") + "\n".join(notes)


def _alerts_table(analyses: list[RunAnalysis]) -> str:
    """Every run's alerts as ``entropymon check`` gives them: where each began and when it was first
    visible, what is wrong, and what to try (TRL / veRL settings, why, the paper)."""
    rows = ["<table><tr><th>run</th><th>step (visible at)</th><th>severity</th><th>rule</th><th>message</th>"
            "<th>what to try</th></tr>"]
    for a in analyses:
        for alert in a.summary.get("alerts") or []:
            severity = _e(alert.get("severity"))
            remedies = "".join(
                f"<li><b>{_e(r['action'])}</b>"
                + "".join(f" {name} <code>{_e(r[key])}</code>" for key, name in (("trl", "TRL"), ("verl", "veRL"))
                          if r.get(key))
                + f": {_e(r['why'])} <i>({_e(r['paper'])})</i></li>" for r in alert.get("remedies") or [])
            rows.append(f"<tr class='alert'><td>{_e(a.name)}</td><td>{_num(alert.get('step'), 9)} "
                        f"({_num(alert.get('first_visible_step'), 9)})</td>"
                        f"<td class='{severity}'>{severity}</td><td>{_e(alert.get('rule'))}</td>"
                        f"<td>{_e(alert.get('message'))}</td><td><ul>{remedies}</ul></td></tr>")
    if len(rows) == 1:
        return "<p>No collapse rule fired.</p>"
    rows.append("</table>")
    return "\n".join(rows)
