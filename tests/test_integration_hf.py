"""``EntropymonCallback`` on a real Hugging Face ``Trainer``, and the logged-key mapping it relies on.

The trainer is a real ``transformers.Trainer`` fitting a 1-layer Llama to the demo's addition
sequences for a few steps on the CPU. A subclass logs the token-mean entropy of each batch as
``entropy`` (what a custom RL trainer would log), and evaluation returns an accuracy, so the run
shows every mapped key. Every value in the run is checked against the trainer's own
``state.log_history``.
"""

import math
import shutil
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import Trainer, TrainingArguments

from entropymon.demo.task import build_model, build_tokenizer, split_problems
from entropymon.demo.warmstart import encode_examples
from entropymon.errors import InputError
from entropymon.hooks.failures import MonitorWarning
from entropymon.integrations.hf import EntropymonCallback
from entropymon.integrations.scalars import canonical_scalars, numeric_scalars
from entropymon.log.reader import read_run
from entropymon.registry import is_registered

STEPS = 6

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


class AdditionDataset(torch.utils.data.Dataset):
    def __init__(self, input_ids, labels):
        self.input_ids, self.labels = input_ids, labels  # (N, W) each

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, index):
        return {"input_ids": self.input_ids[index], "labels": self.labels[index]}


class EntropyLoggingTrainer(Trainer):
    """Logs the token-mean entropy of the last training batch's answer tokens as ``entropy``."""

    last_entropy = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            with torch.no_grad():
                logits = outputs.logits[:, :-1].float()  # (B, T-1, V): position t predicts token t+1
                mask = inputs["labels"][:, 1:] != -100  # (B, T-1)
                entropy = torch.distributions.Categorical(logits=logits).entropy()  # (B, T-1)
                self.last_entropy = float(entropy[mask].mean())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs, *args, **kwargs):
        if self.last_entropy is not None and "loss" in logs:
            logs["entropy"] = self.last_entropy
        super().log(logs, *args, **kwargs)


def exact_match_accuracy(eval_prediction):
    """Share of sequences whose every answer token is predicted right by argmax (teacher forcing)."""
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    predicted = logits[:, :-1].argmax(-1)  # (N, T-1)
    targets = labels[:, 1:]
    valid = targets != -100
    return {"accuracy": float(np.mean(np.all((predicted == targets) | ~valid, axis=1)))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("hf")
    tokenizer = build_tokenizer()
    train, heldout = split_problems(0)
    callback = EntropymonCallback(str(tmp_path / "runs"), run="sft", config={"note": "test"})
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to="none",
                             max_steps=STEPS, per_device_train_batch_size=32, learning_rate=2e-3, logging_steps=1,
                             eval_strategy="steps", eval_steps=3, save_strategy="no", seed=0, disable_tqdm=True)
    trainer = EntropyLoggingTrainer(
        model=build_model(seed=0, hidden_size=32, num_layers=1, num_heads=2), args=args,
        train_dataset=AdditionDataset(*encode_examples(tokenizer, train[:512])),
        eval_dataset=AdditionDataset(*encode_examples(tokenizer, heldout[:64])),
        compute_metrics=exact_match_accuracy, callbacks=[callback])
    trainer.train()
    return trainer, callback, read_run(callback.path)


def history_by_step(trainer, key):
    return {entry["step"]: entry[key] for entry in trainer.state.log_history if key in entry}


def test_every_logged_scalar_is_kept_under_hf(trained):
    trainer, _, run = trained
    steps = run.step_metrics.set_index("step")
    for key in ("loss", "grad_norm", "learning_rate", "entropy", "eval_loss", "eval_accuracy"):
        logged = history_by_step(trainer, key)
        assert logged, key
        for step, value in logged.items():
            np.testing.assert_allclose(steps.loc[step, f"hf/{key}"], value, rtol=1e-12)


def test_unambiguous_keys_are_also_written_under_entropymons_names(trained):
    trainer, _, run = trained
    steps = run.step_metrics.set_index("step")
    for key, name in (("entropy", "entropy_mean"), ("learning_rate", "lr"), ("eval_accuracy", "eval_accuracy")):
        for step, value in history_by_step(trainer, key).items():
            np.testing.assert_allclose(steps.loc[step, name], value, rtol=1e-12)
    assert sorted(steps["eval_accuracy"].dropna().index) == [3, 6]


def test_the_training_summary_is_not_a_step_and_the_run_is_closed(trained):
    _, callback, run = trained
    assert "hf/train_runtime" not in run.step_metrics.columns
    assert list(run.step_metrics["step"]) == list(range(1, STEPS + 1))
    assert run.meta["status"] != "running" and callback.log is None
    assert run.meta["config"]["integration"] == "hf" and run.meta["config"]["note"] == "test"
    assert all(is_registered(column) for column in run.steps.columns)


def test_a_single_eval_accuracy_like_key_is_renamed():
    assert canonical_scalars({"eval_acc": 0.5})["eval_accuracy"] == 0.5
    assert canonical_scalars({"eval_gsm8k_accuracy": 0.25})["eval_accuracy"] == 0.25


def test_two_eval_accuracy_like_keys_are_ambiguous_and_neither_is_renamed():
    assert "eval_accuracy" not in canonical_scalars({"eval_math_acc": 0.5, "eval_code_acc": 0.1})


def test_an_exact_eval_accuracy_key_wins_over_other_candidates():
    assert canonical_scalars({"eval_accuracy": 0.7, "eval_code_acc": 0.1})["eval_accuracy"] == 0.7


@given(st.dictionaries(st.sampled_from(["entropy", "reward", "reward_std", "frac_reward_zero_std", "learning_rate",
                                        "loss", "epoch", "kl"]),
                       st.floats(allow_nan=True, allow_infinity=False, width=64)))
def test_renamed_values_are_the_logged_values_and_nan_is_never_renamed(logs):
    canonical = canonical_scalars(logs)
    renames = {"entropy": "entropy_mean", "reward": "reward_mean", "reward_std": "reward_std",
               "frac_reward_zero_std": "zero_std_group_frac", "learning_rate": "lr"}
    expected = {renames[key]: value for key, value in logs.items() if key in renames and not math.isnan(value)}
    assert canonical == expected


def test_numeric_scalars_keeps_numbers_and_zero_dim_tensors_only():
    logs = {"loss": 1, "flag": True, "text": "x", "vector": [1.0], "none": None, "tensor": torch.tensor(0.5),
            "entropymon/entropy_mean": 0.2}
    assert numeric_scalars(logs, skip_prefixes=("entropymon/",)) == {"loss": 1.0, "tensor": 0.5}


def test_callback_rejects_a_config_that_is_not_a_dict(tmp_path):
    with pytest.raises(InputError, match="config: expected a dict or None, got list"):
        EntropymonCallback(str(tmp_path), config=[1, 2])


def _callback_state(step: int):
    return SimpleNamespace(is_world_process_zero=True, global_step=step)


def test_writer_failures_reach_the_callbacks_error_count_one_warning_and_the_rows(tmp_path):
    callback = EntropymonCallback(str(tmp_path), run="r", alerts=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback.on_train_begin(SimpleNamespace(), _callback_state(0), None)
        steps = tmp_path / "r" / "steps"
        shutil.rmtree(steps)
        steps.write_text("the disk turned into a file")  # every steps write fails now
        for step in range(1, 5):
            callback.on_log(None, _callback_state(step), None, logs={"loss": 1.0 / step})
            assert callback.log.flush(timeout=10) is False
        assert callback.errors >= 3
        writer_warnings = [w for w in caught if issubclass(w.category, MonitorWarning) and "log writer" in str(w.message)]
        assert len(writer_warnings) == 1  # once, not once per failure
        steps.unlink()  # the disk recovers: the rows kept meanwhile are written
        steps.mkdir()
        assert callback.log.flush(timeout=10) is True
        errors = callback.errors
        callback.on_log(None, _callback_state(5), None, logs={"loss": 0.2})
        callback.on_train_end(None, _callback_state(5), None)
    run = read_run(tmp_path / "r")
    assert run.steps["step"].tolist() == [1, 2, 3, 4, 5]
    assert run.steps["hf/loss"].tolist() == [1.0, 0.5, 1.0 / 3, 0.25, 0.2]
    assert run.steps["monitor_errors"].iloc[0] == 0 and run.steps["monitor_errors"].iloc[-1] == errors


def test_a_strict_callback_raises_the_writer_failure_at_the_next_callback(tmp_path):
    callback = EntropymonCallback(str(tmp_path), run="r", alerts=False, strict=True)
    callback.on_train_begin(SimpleNamespace(), _callback_state(0), None)
    steps = tmp_path / "r" / "steps"
    shutil.rmtree(steps)
    steps.write_text("not a folder")
    callback.on_log(None, _callback_state(1), None, logs={"loss": 1.0})
    assert callback.log.flush(timeout=10) is False
    with pytest.raises(OSError):
        callback.on_step_end(None, _callback_state(1), None)
    steps.unlink()
    steps.mkdir()
    callback.on_train_end(None, _callback_state(1), None)
    assert read_run(tmp_path / "r").steps["step"].tolist() == [1]


def test_a_row_the_callback_cannot_record_is_counted_and_raised_when_strict(tmp_path):
    for strict in (False, True):
        callback = EntropymonCallback(str(tmp_path), run=f"strict-{strict}", alerts=False, strict=strict)
        callback.on_train_begin(SimpleNamespace(), _callback_state(0), None)
        bad_state = SimpleNamespace(is_world_process_zero=True, global_step=-1)  # a step the writer refuses
        if strict:
            with pytest.raises(InputError, match="step"):
                callback.on_log(None, bad_state, None, logs={"loss": 1.0})
        else:
            with pytest.warns(MonitorWarning, match="recording the trainer's logged scalars"):
                callback.on_log(None, bad_state, None, logs={"loss": 1.0})
            assert callback.errors == 1
        callback.on_train_end(None, _callback_state(0), None)
