"""The run view's panels, each declared once: its sections on the page, its component ids, the
inputs its callback reads and the function that builds what it shows.

Why: the page (page.py) and its callbacks (callbacks.py) used to repeat every id, and the
order of the figures a builder returned had to match the order of the ids by hand. Now a
``Panel`` owns all of it: page.py draws ``panel.sections``, callbacks.py registers one
callback per panel from ``panel.outputs`` and ``panel.inputs``, and ``build`` returns the text
outputs then one figure per id of ``panel.graphs``, in that order. Adding a plot is one edit:
a graph id in a section here and its figure in the builder's result.

Usage::

    Panel("dynamics", sections=(Section("Dynamics", "Why entropy moves.", ("dyn-a", "dyn-b")),),
          build=lambda store, run_id: panels.dynamics_figures(store, run_id))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dash import Input, Output, State, html

from entropymon_dashboard import panels

# Which runs a panel shows, and the key store that changes when one of them does (callbacks.py).
SELECTED, FOCUS = "selected", "focus"
KEY_STORES = {SELECTED: "curves-key", FOCUS: "focus-key"}


@dataclass(frozen=True)
class Section:
    """A titled block of the run page: a note, an optional header and graphs (dcc.Graph ids)."""

    title: str
    note: str
    graphs: tuple[str, ...]
    header: Callable[[], object] | None = None


@dataclass(frozen=True)
class Panel:
    """One callback's worth of the run view.

    ``runs``: SELECTED (every selected run overlaid; ``build`` gets their ids) or FOCUS (the run of
    the detail panels; ``build`` gets its id or None). ``controls``: ids of the controls whose
    ``value`` ``build`` also gets, in order. ``texts``: (id, property) of the outputs that are not
    figures, returned by ``build`` before the figures.
    """

    name: str
    sections: tuple[Section, ...]
    build: Callable[..., tuple]
    runs: str = FOCUS
    controls: tuple[str, ...] = ()
    texts: tuple[tuple[str, str], ...] = ()

    @property
    def graphs(self) -> tuple[str, ...]:
        return tuple(g for section in self.sections for g in section.graphs)

    @property
    def key_store(self) -> str:
        return KEY_STORES[self.runs]

    @property
    def outputs(self) -> list[Output]:
        return [Output(i, p) for i, p in self.texts] + [Output(g, "figure") for g in self.graphs]

    @property
    def inputs(self) -> list:
        """The key store, the controls, then each graph's zoom (kept through a refresh)."""
        return [Input(self.key_store, "data"), *(Input(c, "value") for c in self.controls),
                *(State(g, "relayoutData") for g in self.graphs)]


def _smoothing(value) -> float:
    return float(value or 0.0)


def _curves(store, run_ids, entropy, performance, smoothing):
    figures = panels.curve_figures(store, run_ids, entropy or "entropy_mean", performance or "reward_mean",
                                   _smoothing(smoothing))
    return panels.marked(figures, CURVE_GRAPHS, store, run_ids)


def _law(store, run_id):
    trusted, verdict, held_out, *figures = panels.law_panel(store, run_id)
    figures = panels.marked(figures, LAW_GRAPHS, store, [run_id] if run_id else [])
    return (verdict, "verdict trusted" if trusted else "verdict untrusted", held_out, *figures)


def _diversity(store, run_id, smoothing):
    figures = panels.diversity_figures(store, run_id, _smoothing(smoothing))
    return panels.marked(figures, DIVERSITY_GRAPHS, store, [run_id] if run_id else [])


def _alerts_header():
    return html.Div([html.P(id="alerts-summary", className="note"), html.Div(id="alerts-panel", className="alerts")],
                    className="full")


CURVE_GRAPHS = ("entropy-curves", "performance-curves")
LAW_GRAPHS = ("law-scatter", "law-prediction", "law-ceiling")
DIVERSITY_GRAPHS = ("div-zero-std", "div-pass-k", "div-distinct", "div-length", "div-ess", "div-kl")


def _law_header():
    return html.Div([html.Div(id="law-verdict", className="verdict"), html.P(id="law-held-out", className="note")],
                    className="full")


def _covariance(store, run_id, smoothing):
    return (panels.dynamics_explanation(store, run_id),
            *panels.covariance_figures(store, run_id, _smoothing(smoothing)))


def _dynamics_header():
    return html.P(id="cov-explanation", className="note full")


RUN_PANELS = (
    Panel("alerts", (Section("Diagnosis", "What entropymon check says about the selected runs: what is wrong, the "
                             "evidence, what to try. Dashed lines on the plots mark where each alert began.", (),
                             _alerts_header),),
          lambda store, run_ids: panels.alerts_panel(store, run_ids), runs=SELECTED,
          texts=(("alerts-panel", "children"), ("alerts-summary", "children"))),
    Panel("curves", (Section("Curves", "Selected runs overlaid; faint lines are the raw values behind the smoothed "
                             "ones.", CURVE_GRAPHS),),
          _curves, runs=SELECTED, controls=("entropy-column", "performance-column", "smoothing")),
    Panel("distribution", (Section("Entropy distribution", "Per-step token-entropy histogram, quantiles and the "
                                   "share of forking tokens (entropy > 0.672 nats).",
                                   ("entropy-heatmap", "entropy-quantiles", "forking-share")),),
          lambda store, run_id: panels.distribution_figures(store, run_id)),
    Panel("law", (Section("Law fit: R = -a·e^H + b", "The ceiling at H = 0 is b - a; the early fit uses the first "
                          "15% of steps (more when that holds too few points) and is scored on the rest against "
                          "naive forecasts.", LAW_GRAPHS, _law_header),),
          _law, texts=(("law-verdict", "children"), ("law-verdict", "className"), ("law-held-out", "children"))),
    Panel("covariance", (Section("Covariance", "Entropy falls while Cov(log π, A) stays positive; the dH probe "
                                 "(dh_probe_every) measures the change on the batch the step trained on and what "
                                 "explains it.", ("cov-forms", "cov-dh", "cov-split", "cov-top", "cov-attribution"),
                                 _dynamics_header),),
          _covariance, controls=("smoothing",), texts=(("cov-explanation", "children"),)),
    Panel("diversity", (Section("Diversity", "Collapse shows as zero-spread groups, pass@k meeting pass@1, repeated "
                                "answers.", DIVERSITY_GRAPHS[:4]),
                        Section("Off-policy and KL", "Importance-sampling ESS and the KL target's modes, when the run "
                                "logs them; otherwise a short note says what they need.", DIVERSITY_GRAPHS[4:])),
          _diversity, controls=("smoothing",)),
)
