"""entropymon inside veRL 0.9.1: real veRL code in its own virtualenv, checked from here.

veRL cannot share a virtualenv with TRL 1.16, so these tests run veRL in the interpreter named by
``ENTROPYMON_VERL_PYTHON`` (``.ci/run`` builds it, with entropymon installed in it). Without it
they skip locally; under CI (``CI=true``) a missing or broken one fails instead.

``tests/verl_child.py`` runs two steps of veRL's v1 trainer on the CPU: the real
``TrainingWorker`` computing old log-probs and entropy of a tiny random Qwen2, a real
TransferQueue on a local Ray holding the step's fields, veRL's own ``_compute_old_log_prob``
(``actor/entropy``) and GRPO advantage, and the registered ``entropymon_sync`` trainer's
``_compute_metrics``. A second run uses a Clip-Cov config on a veRL whose ``entropy`` field has
another name. The numbers are checked against veRL's own metrics, a plain transformers forward of
the same weights and NumPy recomputations from the written token rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from entropymon.errors import InputError
from entropymon.log.reader import read_run

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "verl_child.py"
VERL_PYTHON = os.environ.get("ENTROPYMON_VERL_PYTHON", "")
IN_CI = os.environ.get("CI", "").lower() == "true"
GROUPS, GENERATIONS = 4, 4


def verl_python() -> str:
    """The veRL virtualenv's interpreter; skip (locally) or fail (CI) when it is not usable."""
    if not VERL_PYTHON:
        if IN_CI:
            pytest.fail("ENTROPYMON_VERL_PYTHON is not set: .ci/run builds the veRL virtualenv and exports it")
        pytest.skip("veRL tests need ENTROPYMON_VERL_PYTHON (a python with verl[verl-core]==0.9.1 and entropymon); "
                    "bash .ci/run builds one")
    probe = subprocess.run([VERL_PYTHON, "-c", "import importlib.metadata as m; print(m.version('verl'))"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0 or probe.stdout.strip() != "0.9.1":
        message = f"ENTROPYMON_VERL_PYTHON={VERL_PYTHON} has no veRL 0.9.1 ({probe.stdout.strip()}{probe.stderr[-500:]})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return VERL_PYTHON


def run_in_verl(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([verl_python(), "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore", **env})


@pytest.fixture(scope="module")
def verl_steps(tmp_path_factory):
    """result.json of tests/verl_child.py, and the two runs it wrote."""
    out = tmp_path_factory.mktemp("verl")
    child = subprocess.run([verl_python(), str(CHILD), str(out)], capture_output=True, text=True, timeout=900,
                           cwd=ROOT)
    assert child.returncode == 0, child.stderr[-4000:]
    result = json.loads((out / "result.json").read_text())
    return result, read_run(result["steps_run"]), read_run(result["renamed_run"])


# -- the per-token path ----------------------------------------------------------------------


@pytest.mark.slow
def test_entropy_mean_equals_verls_actor_entropy_for_the_same_step(verl_steps):
    result, run, _ = verl_steps
    steps = run.step_metrics.set_index("step")
    assert list(steps.index) == [1, 2]
    for step, reported in zip((1, 2), result["steps"]):
        verl_entropy = reported["metrics"]["actor/entropy"]
        assert abs(steps.loc[step, "entropy_mean"] - verl_entropy) <= 1e-6
        assert steps.loc[step, "verl/actor/entropy"] == verl_entropy
    assert run.meta["config"]["verl.loss_agg_mode"] == "token-mean"
    assert run.meta["config"]["verl.entropy_agg_matches"] is True


@pytest.mark.slow
def test_token_entropies_match_a_plain_transformers_forward_of_the_same_weights(verl_steps):
    result, run, _ = verl_steps
    tokens = run.tokens
    for step, reported in zip((1, 2), result["steps"]):
        mask = np.array(reported["response_mask"], dtype=bool)  # (N, R)
        reference = np.array(reported["hf_entropy"])[mask]  # the masked tokens, row by row
        rows = tokens[tokens["step"] == step].sort_values(["sample_id", "position"])
        np.testing.assert_allclose(rows["entropy"].to_numpy(), reference, atol=1e-5)
        np.testing.assert_allclose(run.step_metrics.set_index("step").loc[step, "entropy_mean"], reference.mean(),
                                   atol=1e-5)


@pytest.mark.slow
def test_covariance_and_group_metrics_agree_with_numpy_and_verls_scores(verl_steps):
    result, run, _ = verl_steps
    steps = run.step_metrics.set_index("step")
    for step, reported in zip((1, 2), result["steps"]):
        rows = run.tokens[run.tokens["step"] == step]
        expected_cov = np.cov(rows["logprob"], rows["advantage"], bias=True)[0, 1]
        np.testing.assert_allclose(steps.loc[step, "cov_logp_adv"], expected_cov, rtol=1e-5, atol=1e-8)
        assert np.isfinite(steps.loc[step, "cov_logp_piadv"])
        scores = np.array(reported["scores"])
        np.testing.assert_allclose(steps.loc[step, "reward_mean"], reported["metrics"]["critic/score/mean"], rtol=1e-6)
        np.testing.assert_allclose(steps.loc[step, "reward_mean"], scores.mean(), rtol=1e-9)
        by_group = scores.reshape(GROUPS, GENERATIONS)  # uids are consecutive: one prompt, four responses
        np.testing.assert_allclose(steps.loc[step, "zero_std_group_frac"],
                                   np.mean([len(set(group)) == 1 for group in by_group]))
        assert steps.loc[step, "n_groups"] == GROUPS
        assert steps.loc[step, "n_sequences"] == GROUPS * GENERATIONS
        samples = run.samples[run.samples["step"] == step]
        assert samples["group_id"].tolist() == reported["uids"]
        assert samples["text"].str.len().gt(0).all()  # responses decoded with veRL's tokenizer


@pytest.mark.slow
def test_verls_scalars_are_kept_and_ours_reach_verls_metrics_dict(verl_steps):
    result, run, _ = verl_steps
    steps = run.step_metrics.set_index("step")
    second = result["steps"][1]["metrics"]
    for name in ("critic/score/mean", "response_length/mean", "timing_s/step", "critic/advantages/mean"):
        assert steps.loc[2, f"verl/{name}"] == pytest.approx(second[name], rel=1e-12)
    assert second["entropymon/step"] == 1  # a step's metrics are forwarded at the next step
    for name in ("entropy_mean", "cov_logp_adv", "zero_std_group_frac", "reward_mean"):
        assert second[f"entropymon/{name}"] == pytest.approx(steps.loc[1, name], rel=1e-9)


# -- configuration and fallback -----------------------------------------------------------------


@pytest.mark.slow
def test_run_metadata_says_which_loss_and_ratios_were_on(verl_steps):
    _, run, renamed = verl_steps
    plain, clip = run.meta["config"], renamed.meta["config"]
    assert plain["integration"] == "verl" and plain["verl_version"] == "0.9.1"
    assert plain["verl.policy_loss"] == "vanilla" and plain["verl.entropy_intervention"] is None
    assert clip["verl.policy_loss"] == "clip_cov" and clip["verl.entropy_intervention"] == "clip_cov"
    assert clip["verl.clip_cov"] == {"clip_cov_ratio": 0.0002, "clip_cov_lb": 1.0, "clip_cov_ub": 5.0}  # veRL's defaults
    assert clip["verl.trainer_mode"] == "sync"


@pytest.mark.slow
def test_a_renamed_field_turns_the_capture_off_with_one_warning_and_keeps_the_scalars(verl_steps):
    result, _, renamed = verl_steps
    assert len(result["renamed_warnings"]) == 1, result["renamed_warnings"]
    assert "per-token capture from veRL is off" in result["renamed_warnings"][0]
    assert "entropys" in result["renamed_capture_off"]
    steps = renamed.step_metrics.set_index("step")
    assert list(steps.index) == [1, 2]
    for step, reported in zip((1, 2), result["renamed"]):
        assert steps.loc[step, "entropy_mean"] == reported["metrics"]["actor/entropy"]
        assert steps.loc[step, "reward_mean"] == reported["metrics"]["critic/score/mean"]
    assert "cov_logp_adv" not in steps.columns
    assert result["renamed"][1]["metrics"]["entropymon/entropy_mean"] == steps.loc[1, "entropy_mean"]


# -- the plugin -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_plugin_loads_through_verls_entry_point_and_registers_on_first_use():
    result = run_in_verl("""
        import sys
        import verl
        loaded = "entropymon.integrations.verl_plugin" in sys.modules
        lazy = "entropymon.integrations.verl" not in sys.modules and "verl.trainer.ppo.v1" not in sys.modules
        from verl.trainer.ppo.v1 import get_trainer_cls, PPOTrainerSync, PPOTrainerSeparateAsync
        from entropymon.integrations.verl import signature_problem
        ok = (issubclass(get_trainer_cls("entropymon_sync"), PPOTrainerSync)
              and issubclass(get_trainer_cls("entropymon_separate_async"), PPOTrainerSeparateAsync)
              and signature_problem(PPOTrainerSync) is None)
        print(loaded, lazy, ok)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-3:] == ["True", "True", "True"]


@pytest.mark.slow
def test_with_plugins_off_nothing_of_entropymon_runs():
    result = run_in_verl("""
        import sys
        import verl
        from verl.trainer.ppo.v1 import get_trainer_cls
        try:
            get_trainer_cls("entropymon_sync")
            registered = True
        except ValueError:
            registered = False
        print(registered, sorted(name for name in sys.modules if name.startswith("entropymon")))
    """, VERL_USE_EXTERNAL_PLUGINS="none")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "False []"


def test_the_entry_point_is_declared_for_verl():
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert plugins.get("entropymon") == "entropymon.integrations.verl_plugin"


def test_importing_the_plugin_without_verl_does_nothing():
    code = ("import sys; import entropymon.integrations.verl_plugin as p, entropymon.integrations.verl; "
            "print(any(isinstance(f, p._AfterTrainerImport) for f in sys.meta_path), "
            "'verl' in sys.modules, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "False"]


def test_a_changed_compute_metrics_signature_is_reported():
    from entropymon.integrations.verl import signature_problem

    class Known:
        def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch): ...

    class Changed:
        def _compute_metrics(self, batch, timing_raw, step): ...

    assert signature_problem(Known) is None
    assert "expected (self, batch, metrics" in signature_problem(Changed)
    assert "no method _compute_metrics" in signature_problem(object)


def test_an_unknown_option_in_the_entropymon_group_is_an_input_error():
    from entropymon.integrations.verl import OPTIONS, read_options

    assert read_options({"entropymon": {"logdir": "/x"}}) == {**OPTIONS, "logdir": "/x"}
    with pytest.raises(InputError, match="entropymon config group.*'log_dir'"):
        read_options({"entropymon": {"log_dir": "/x"}})
