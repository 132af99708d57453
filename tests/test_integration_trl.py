"""``attach`` on a real TRL GRPOTrainer: what it records, that it matches TRL, that it changes nothing.

Each job is a real ``GRPOTrainer`` run on the CPU (a 1-layer Llama of width 32 over the demo's
character vocabulary, 3 steps of 16 completions = 4 prompts x 4 generations). The untrained model
almost never answers an addition right, so a second reward function - "the completion starts with a
digit", true for about 10 of 15 random tokens - gives every group mixed rewards and non-zero
advantages. Every number is checked against an independent recomputation from the written rows
(NumPy) or against what TRL itself logged.
"""

import warnings

import numpy as np
import pytest
import torch

from entropymon.demo.grpo import GrpoSettings, build_grpo_trainer
from entropymon.demo.task import build_model, build_tokenizer, correctness_reward, extract_answer, split_problems
from entropymon.errors import InputError, IntegrationError
from entropymon.integrations.trl import attach
from entropymon.integrations.trl_capture import LOGPS_METHOD
from entropymon.integrations.trl_probe import PROBE_WARNING, TrlDhProbe
from entropymon.log.reader import read_run

STEPS = 3
COMPLETIONS = 16
GENERATIONS = 4
FALLBACK_WARNING = "per-token capture from TRL is off"

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def starts_with_digit(prompts, completions, **kwargs):
    """1.0 when the completion's first character is a digit: a reward an untrained model gets half the time."""
    return [1.0 if completion[:1].isdigit() else 0.0 for completion in completions]


def make_trainer(tmp_path, seed=0):
    tokenizer = build_tokenizer()
    train, _ = split_problems(seed)
    model = build_model(seed=seed, hidden_size=32, num_layers=1, num_heads=2)
    settings = GrpoSettings(steps=STEPS, seed=seed, completions_per_step=COMPLETIONS, num_generations=GENERATIONS,
                            lr=1e-2)
    return build_grpo_trainer(model, tokenizer, train[:64], settings, str(tmp_path / "trainer-output"),
                              reward_funcs=[correctness_reward, starts_with_digit])


@pytest.fixture(scope="module")
def attached_run(tmp_path_factory):
    """(trainer, run) of one monitored job with token rows for every sequence at every step."""
    tmp_path = tmp_path_factory.mktemp("attached")
    trainer = make_trainer(tmp_path)
    monitor = attach(trainer, logdir=str(tmp_path / "runs"), run="grpo", answer_fn=extract_answer,
                     token_rows_every=1, token_rows_per_step=COMPLETIONS, dh_probe_every=2)
    trainer.train()
    return trainer, read_run(monitor.path)


def test_every_step_has_entropy_covariance_and_group_metrics(attached_run):
    _, run = attached_run
    steps = run.step_metrics.set_index("step")
    assert list(steps.index) == list(range(1, STEPS + 1))
    for column in ("entropy_mean", "entropy_p50", "cov_logp_adv", "cov_logp_piadv", "zero_std_group_frac",
                   "reward_mean", "pass_at_1", "distinct_answer_frac", "lr"):
        assert steps[column].notna().all(), column
    assert (steps["n_groups"] == COMPLETIONS // GENERATIONS).all()
    assert (steps["n_sequences"] == COMPLETIONS).all()


def test_entropy_mean_equals_trls_logged_entropy(attached_run):
    _, run = attached_run
    steps = run.step_metrics.set_index("step")
    np.testing.assert_allclose(steps["entropy_mean"], steps["trl/entropy"], atol=1e-3, rtol=0)


def test_step_metrics_agree_with_a_numpy_recomputation_from_the_token_rows(attached_run):
    _, run = attached_run
    steps = run.step_metrics.set_index("step")
    tokens = run.tokens
    for step, rows in tokens.groupby("step"):
        assert rows["sample_id"].nunique() == COMPLETIONS  # every sequence has its token rows
        expected_cov = np.cov(rows["logprob"], rows["advantage"], bias=True)[0, 1]
        np.testing.assert_allclose(steps.loc[step, "cov_logp_adv"], expected_cov, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(steps.loc[step, "entropy_mean"], rows["entropy"].mean(), rtol=1e-5)
        assert steps.loc[step, "n_tokens"] == len(rows)


def test_samples_carry_texts_rewards_and_groups_as_trl_scored_them(attached_run):
    trainer, run = attached_run
    samples = run.samples
    assert len(samples) == STEPS * COMPLETIONS
    answers = {f"{a}+{b}=": str(a + b) for a in range(10, 100) for b in range(10, 100)}
    texts, prompts = samples["text"].tolist(), samples["prompt"].tolist()
    expected = (np.array(correctness_reward(prompts, texts, [answers[p] for p in prompts]))
                + np.array(starts_with_digit(prompts, texts)))  # TRL's weighted sum, weights 1
    np.testing.assert_array_equal(samples["reward"].to_numpy(), expected)
    assert samples["answer"].tolist() == [extract_answer(text) for text in texts]
    for _, group in samples.groupby(["step", "group_id"]):
        assert len(group) == GENERATIONS and group["prompt"].nunique() == 1
    steps = run.step_metrics.set_index("step")
    for step, rows in samples.groupby("step"):
        np.testing.assert_allclose(steps.loc[step, "reward_mean"], rows["reward"].mean(), rtol=1e-9)
        np.testing.assert_allclose(steps.loc[step, "reward_mean"], steps.loc[step, "trl/reward"], rtol=1e-5)
        zero_std = rows.groupby("group_id")["reward"].agg(lambda r: r.nunique() == 1).mean()
        np.testing.assert_allclose(steps.loc[step, "zero_std_group_frac"], zero_std)
        np.testing.assert_allclose(steps.loc[step, "zero_std_group_frac"], steps.loc[step, "trl/frac_reward_zero_std"])
        for name in trainer.reward_func_names:
            np.testing.assert_allclose(steps.loc[step, f"reward_func/{name}"],
                                       steps.loc[step, f"trl/rewards/{name}/mean"], rtol=1e-5)


def probe_of(trainer) -> TrlDhProbe:
    return next(c for c in trainer.callback_handler.callbacks if isinstance(c, TrlDhProbe))


def test_the_dh_probe_measures_the_batch_trl_trained_on(attached_run):
    trainer, run = attached_run
    # the logits before came from TRL's own loss forward (checked once against a full forward)
    assert probe_of(trainer).before_source == "hidden" and probe_of(trainer)._hook is None  # hook removed at the end
    steps = run.step_metrics.set_index("step")
    assert steps["dh_same_batch"].notna().tolist() == [False, True, False]  # steps 1..3, every 2nd
    # the probe's eval-mode forward before the update reproduces TRL's own loss-forward entropies
    np.testing.assert_allclose(steps.loc[2, "dh_entropy_before"], steps.loc[2, "trl/entropy"], rtol=1e-5)
    assert steps.loc[2, "dh_probe_tokens"] == steps.loc[2, "n_tokens"]
    parts = steps.loc[2, ["dh_sum_pos_adv", "dh_sum_zero_adv", "dh_sum_neg_adv"]].sum()
    np.testing.assert_allclose(parts, steps.loc[2, "dh_sum"], atol=1e-6)
    assert steps.loc[2, "dh_same_batch"] != 0 and np.isfinite(steps.loc[2, "dh_pred_logit"])


def test_our_metrics_reach_the_trainers_own_logs(attached_run):
    trainer, run = attached_run
    steps = run.step_metrics.set_index("step")
    forwarded = [entry for entry in trainer.state.log_history if "entropymon/entropy_mean" in entry]
    assert forwarded, "no entropymon/ metrics in the trainer's log history"
    for entry in forwarded:
        step = int(entry["entropymon/step"])
        np.testing.assert_allclose(entry["entropymon/entropy_mean"], steps.loc[step, "entropy_mean"], rtol=1e-6)


def test_the_monitor_is_closed_and_the_trainer_restored_when_training_ends(attached_run):
    trainer, run = attached_run
    assert run.meta["status"] != "running"
    assert LOGPS_METHOD not in trainer.__dict__  # the instance wrapper is gone, the class method is back
    assert run.meta["config"]["integration"] == "trl"


@pytest.mark.slow
def test_the_same_seeded_job_gives_identical_losses_and_parameters_with_and_without_entropymon(tmp_path):
    results = []
    for monitored in (False, True):
        trainer = make_trainer(tmp_path / str(monitored))
        if monitored:
            attach(trainer, logdir=str(tmp_path / "runs"), token_rows_every=1, dh_probe_every=1)
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        results.append((losses, {name: p.detach().clone() for name, p in trainer.model.named_parameters()}))
    (plain_losses, plain_params), (monitored_losses, monitored_params) = results
    assert len(plain_losses) == STEPS and plain_losses == monitored_losses
    assert plain_params.keys() == monitored_params.keys()
    assert all(torch.equal(plain_params[name], monitored_params[name]) for name in plain_params)
    initial = dict(build_model(seed=0, hidden_size=32, num_layers=1, num_heads=2).named_parameters())
    assert not all(torch.equal(initial[name], plain_params[name]) for name in plain_params)  # training did move them


class LogpsOutput:
    """A future TRL's return value: a named output object that still unpacks like the old tuple."""

    def __init__(self, logps, entropies, aux_loss):
        self.logps, self.entropies, self.aux_loss = logps, entropies, aux_loss

    def __iter__(self):
        return iter((self.logps, self.entropies, self.aux_loss))


def returns_an_output_object(trainer):
    original = getattr(trainer, LOGPS_METHOD)

    def changed(model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False, **kwargs):
        return LogpsOutput(*original(model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                                     compute_entropy=compute_entropy, **kwargs))

    setattr(trainer, LOGPS_METHOD, changed)


def takes_renamed_parameters(trainer):
    original = getattr(trainer, LOGPS_METHOD)

    def changed(*args, **kwargs):
        return original(*args, **kwargs)

    setattr(trainer, LOGPS_METHOD, changed)


@pytest.mark.slow
@pytest.mark.parametrize("change", [returns_an_output_object, takes_renamed_parameters])
def test_a_changed_private_method_falls_back_to_trls_scalars_with_one_warning(tmp_path, change):
    trainer = make_trainer(tmp_path)
    change(trainer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monitor = attach(trainer, logdir=str(tmp_path / "runs"), run="fallback")
        trainer.train()
    fallbacks = [w for w in caught if FALLBACK_WARNING in str(w.message)]
    assert len(fallbacks) == 1 and issubclass(fallbacks[0].category, RuntimeWarning)
    assert trainer.state.global_step == STEPS
    run = read_run(monitor.path)
    steps = run.step_metrics.set_index("step")
    assert list(steps.index) == list(range(1, STEPS + 1))
    assert steps["trl/entropy"].notna().all() and steps["trl/frac_reward_zero_std"].notna().all()
    np.testing.assert_array_equal(steps["entropy_mean"], steps["trl/entropy"])  # renamed from TRL's scalar
    np.testing.assert_array_equal(steps["reward_mean"], steps["trl/reward"])
    assert "cov_logp_adv" not in steps or steps["cov_logp_adv"].isna().all()
    assert run.samples.empty


@pytest.mark.slow
def test_with_dropout_the_probe_uses_full_forwards_before_and_after(tmp_path):
    trainer = make_trainer(tmp_path)
    for module in trainer.model.modules():
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = 0.3  # the loss forward's states are now a dropout sample
    monitor = attach(trainer, logdir=str(tmp_path / "runs"), run="dropout", dh_probe_every=1)
    trainer.train()
    assert probe_of(trainer).before_source == "forward"
    steps = read_run(monitor.path).step_metrics.set_index("step")
    assert steps["dh_same_batch"].notna().all() and (steps["monitor_errors"] == 0).all()
    # eval-mode forwards on both sides: the entropy before is the dropout-free one, not TRL's train-mode value
    assert (steps["dh_entropy_before"] - steps["trl/entropy"]).abs().max() > 1e-4


@pytest.mark.slow
def test_a_model_the_probe_cannot_run_turns_the_probe_off_with_one_warning(tmp_path):
    trainer = make_trainer(tmp_path)
    forward = trainer.model.forward

    def refuses_logits_to_keep(*args, **kwargs):
        if "logits_to_keep" in kwargs:
            raise TypeError("forward() got an unexpected keyword argument 'logits_to_keep'")
        return forward(*args, **kwargs)

    trainer.model.forward = refuses_logits_to_keep
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monitor = attach(trainer, logdir=str(tmp_path / "runs"), run="no-probe", dh_probe_every=1)
        trainer.train()
    probe_warnings = [w for w in caught if PROBE_WARNING in str(w.message)]
    assert len(probe_warnings) == 1 and "logits_to_keep" in str(probe_warnings[0].message)
    assert not [w for w in caught if FALLBACK_WARNING in str(w.message)]  # the capture itself stays on
    steps = read_run(monitor.path).step_metrics
    assert trainer.state.global_step == STEPS and steps["cov_logp_adv"].notna().all()
    assert "dh_same_batch" not in steps or steps["dh_same_batch"].isna().all()


def test_attach_rejects_what_is_not_a_trainer(tmp_path):
    with pytest.raises(InputError, match="trainer: expected a trl.GRPOTrainer, got dict"):
        attach({}, logdir=str(tmp_path))


def test_attach_rejects_a_temperature_other_than_the_trainers(tmp_path):
    trainer = make_trainer(tmp_path)
    with pytest.raises(InputError, match="temperature: expected the trainer's sampling temperature 1.0"):
        attach(trainer, logdir=str(tmp_path / "runs"), temperature=0.7)


def test_attach_twice_is_refused(tmp_path):
    trainer = make_trainer(tmp_path)
    monitor = attach(trainer, logdir=str(tmp_path / "runs"))
    try:
        with pytest.raises(IntegrationError, match="attach once per trainer"):
            attach(trainer, logdir=str(tmp_path / "runs"))
    finally:
        monitor.close()
