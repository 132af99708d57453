"""The run view's panels are declared once: the page draws every id they declare, and one callback
per panel outputs exactly its texts and figures."""

from __future__ import annotations

import json

from entropymon_dashboard import create_app
from entropymon_dashboard.page import run_page
from entropymon_dashboard.run_view import RUN_PANELS
from synthetic import write_synthetic_run


def _ids(component) -> list[str]:
    found = [component.id] if getattr(component, "id", None) else []
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None and hasattr(child, "to_plotly_json"):
            found.extend(_ids(child))
    return found


def test_every_declared_graph_and_text_output_is_on_the_page_once():
    ids = _ids(run_page())
    declared = [g for panel in RUN_PANELS for g in panel.graphs]
    declared += sorted({i for panel in RUN_PANELS for i, _ in panel.texts})
    assert sorted(i for i in ids if i in declared) == sorted(declared)
    assert len(declared) == len(set(declared))


def test_each_panel_has_one_callback_with_its_outputs_and_inputs_in_order(tmp_path):
    write_synthetic_run(tmp_path, "r", steps=5, with_samples=False)
    callbacks = create_app(tmp_path).callback_map
    for panel in RUN_PANELS:
        outputs = [f"{i}.{p}" for i, p in panel.texts] + [f"{g}.figure" for g in panel.graphs]
        key = next(k for k in callbacks if outputs[0] in k)
        assert key.strip(".").split("...") == outputs if len(outputs) > 1 else key == outputs[0]
        inputs = [f"{i['id']}.{i['property']}" for i in callbacks[key]["inputs"]]
        assert inputs == [f"{panel.key_store}.data", *(f"{c}.value" for c in panel.controls)]
        states = [f"{s['id']}.{s['property']}" for s in callbacks[key]["state"]]
        assert states == [f"{g}.relayoutData" for g in panel.graphs]


def test_a_panel_callback_answers_with_its_figures(tmp_path):
    write_synthetic_run(tmp_path, "r", steps=30, with_samples=False)
    client = create_app(tmp_path).server.test_client()
    panel = next(p for p in RUN_PANELS if p.name == "covariance")
    outputs = [{"id": i, "property": p} for i, p in panel.texts] + [{"id": g, "property": "figure"}
                                                                    for g in panel.graphs]
    payload = {
        "output": ".." + "...".join(f"{o['id']}.{o['property']}" for o in outputs) + "..", "outputs": outputs,
        "inputs": [{"id": panel.key_store, "property": "data", "value": {"key": "r@v"}},
                   {"id": "smoothing", "property": "value", "value": 0.0}],
        "state": [{"id": g, "property": "relayoutData", "value": None} for g in panel.graphs],
        "changedPropIds": [f"{panel.key_store}.data"],
    }
    response = client.post("/_dash-update-component", json=payload)
    assert response.status_code == 200
    body = json.loads(response.get_data(as_text=True))["response"]
    assert set(body) == {*panel.graphs, *(i for i, _ in panel.texts)}
    assert body["cov-forms"]["figure"]["data"]  # the synthetic run logs both covariance forms


def test_off_policy_and_kl_plots_a_run_did_not_log_are_short_notes_as_the_section_says():
    """The section said "Shown when logged." yet drew two full-size empty boxes "Not logged in this run"."""
    import pandas as pd

    from entropymon.figures import diversity
    from entropymon.figures.style import FIGURE_HEIGHT, NOT_LOGGED_HEIGHT

    section = next(s for panel in RUN_PANELS for s in panel.sections if s.title == "Off-policy and KL")
    assert "Shown when logged" not in section.note and "otherwise" in section.note
    bare = pd.DataFrame({"step": [0, 1, 2], "entropy_mean": [0.5, 0.4, 0.3]})
    for figure in (diversity.ess_figure(bare), diversity.kl_modes_figure(bare)):
        assert figure.layout.height == NOT_LOGGED_HEIGHT < FIGURE_HEIGHT and len(figure.data) == 0
        assert "Not logged in this run" in figure.layout.annotations[0].text
    logged = bare.assign(ess_frac=[0.9, 0.8, 0.7])
    assert diversity.ess_figure(logged).layout.height == FIGURE_HEIGHT  # a logged one keeps its size
