"""Every remedy names settings that exist: TRL's against the installed GRPOConfig / GRPOTrainer,
veRL's against the Hydra keys of its documented config layout, and every rule's variants have some."""

import dataclasses
import inspect
import re

import pytest

from entropymon.analysis.alerts import RULES
from entropymon.analysis.remedies import REMEDIES, RULE_REMEDIES, remedies_for

# veRL (0.9) config groups the remedies may point into
VERL_PREFIXES = ("actor_rollout_ref.actor.", "actor_rollout_ref.rollout.", "algorithm.", "data.", "trainer.")


def _names(text: str) -> set[str]:
    """Setting names in a remedy: identifiers followed by '=' and snake_case identifiers."""
    assigned = set(re.findall(r"\b([a-z][a-z0-9_]*)=", text))
    snake = set(re.findall(r"\b([a-z][a-z0-9]*_[a-z0-9_]+)\b", text))
    return assigned | snake


def test_every_trl_setting_a_remedy_names_exists_in_the_installed_trl():
    trl = pytest.importorskip("trl")
    from trl import GRPOConfig, GRPOTrainer

    known = {f.name for f in dataclasses.fields(GRPOConfig)} | set(inspect.signature(GRPOTrainer.__init__).parameters)
    named = {name: _names(r.trl) for name, r in REMEDIES.items() if r.trl}
    missing = {name: sorted(n - known) for name, n in named.items() if n - known}
    assert not missing, f"TRL {trl.__version__} has no setting(s) {missing}"
    assert sum(len(n) for n in named.values()) >= 15


def test_every_verl_setting_is_a_full_hydra_key():
    for name, remedy in REMEDIES.items():
        if remedy.verl:
            keys = re.findall(r"\b([a-z_]+(?:\.[a-z_]+)+)\b", remedy.verl)
            assert keys and all(k.startswith(VERL_PREFIXES) for k in keys), (name, remedy.verl)


def test_clip_cov_remedy_uses_verls_loss_mode_names():
    assert "policy_loss.loss_mode=clip_cov" in REMEDIES["clip_cov"].verl and "kl_cov" in REMEDIES["clip_cov"].verl


def test_every_rule_and_variant_maps_to_known_remedies_that_cite_a_paper():
    assert all(name in REMEDIES for names in RULE_REMEDIES.values() for name in names)
    for rule in RULES:
        assert remedies_for(rule), rule
    for remedy in REMEDIES.values():
        assert remedy.why and (re.search(r"(19|20)\d\d|arXiv \d{4}\.\d{4,5}", remedy.paper) or "observed" in remedy.paper)



def test_temperature_remedy_names_a_value_above_the_runs_recorded_temperature():
    """grpo-temp1.3 samples at 1.3: 'sample at a higher temperature (TRL temperature=1.1)' contradicted it."""
    from pathlib import Path

    from entropymon.analysis.alerts import diagnose
    from entropymon.log.reader import read_run

    run = read_run(Path(__file__).resolve().parents[1] / "sample_logs" / "grpo-temp1.3")
    fitted = [r for a in diagnose(run) for r in a.remedies if "temperature" in r["action"]]
    assert fitted, "the collapse alerts list a temperature remedy"
    for remedy in fitted:
        assert remedy["action"] == "raise the sampling temperature above the current 1.3"
        assert remedy["trl"] == "temperature=1.4" and remedy["verl"] == "actor_rollout_ref.rollout.temperature=1.4"
        assert "1.1" not in remedy["trl"] + remedy["verl"]


def test_temperature_remedy_is_generic_when_the_temperature_is_unknown():
    import numpy as np
    import pandas as pd

    from entropymon.analysis.alerts import diagnose
    from entropymon.analysis.remedies import temperature_remedy

    n = 60
    frame = pd.DataFrame({"step": np.arange(n), "entropy_mean": 0.6 * np.exp(-np.arange(n) / 20)})
    generic = [r for a in diagnose(frame, rules=["entropy_collapse"]) for r in a.remedies if "temperature" in r["action"]]
    assert generic and all(r == REMEDIES["temperature"].to_dict() for r in generic)
    assert "=" not in REMEDIES["temperature"].trl + REMEDIES["temperature"].verl  # no made-up value
    frame["entropy_temperature"] = 0.7
    fitted = [r for a in diagnose(frame, rules=["entropy_collapse"]) for r in a.remedies if "temperature" in r["action"]]
    assert fitted and all(r["trl"] == "temperature=0.8" for r in fitted)
    assert temperature_remedy(1.0).trl == "temperature=1.1" and "current 1.0" in temperature_remedy(1.0).action
    for unknown in (None, float("nan"), 0, -1, "x"):
        assert temperature_remedy(unknown) == REMEDIES["temperature"]
