"""Importers on real files written by the real libraries: TensorBoard's writers, TRL's GRPOTrainer,
veRL's JSONL format, the public curves CSVs; and on corrupt inputs.

Every imported value is compared with what was written (float32 where the format stores float32).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from entropymon.errors import ImportFormatError, InputError
from entropymon.importers import import_run
from entropymon.importers.common import NameMap
from entropymon.importers.csv_curves import import_csv
from entropymon.importers.tensorboard import import_tensorboard
from entropymon.importers.trl_output import import_trl
from entropymon.importers.verl_jsonl import import_verl
from entropymon.log.reader import read_run

SHARED = Path(__file__).resolve().parent / "data"  # real_curves/ copied from public logs
REAL_CURVES = sorted((SHARED / "real_curves").glob("*/curve.csv"))


def steps_of(run_path: Path) -> pd.DataFrame:
    """The imported run's steps table indexed by step (one rank)."""
    return read_run(run_path).steps.set_index("step").sort_index()


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name].dropna()


# -- the name map ------------------------------------------------------------------------------

def test_name_map_first_present_candidate_wins_and_the_rest_are_kept_under_the_prefix():
    names = NameMap(exact={"entropy_mean": ("actor/entropy", "actor/entropy_loss")},
                    patterns=((r"rewards/(.+)/mean", "reward_func/{0}"),))
    resolved = names.resolve(["actor/entropy_loss", "actor/entropy", "rewards/acc/mean", "odd/tag"])
    assert resolved == {"actor/entropy": "entropy_mean", "actor/entropy_loss": "import/actor/entropy_loss",
                        "rewards/acc/mean": "reward_func/acc", "odd/tag": "import/odd/tag"}
    assert names.resolve(["actor/entropy_loss"]) == {"actor/entropy_loss": "entropy_mean"}


# -- CSV curves --------------------------------------------------------------------------------

def test_csv_maps_train_reward_to_reward_mean_and_val_accuracy_to_eval_accuracy(tmp_path):
    src = tmp_path / "curve.csv"
    pd.DataFrame({
        "step": [0, 1, 2, 2], "entropy": [0.5, 0.4, 0.3, 0.3],
        "performance": [0.1, 0.2, 0.35, 0.3], "performance_kind": ["train_reward"] * 3 + ["val_acc"],
        "kl": [0.0, 0.01, 0.02, 0.02],
    }).to_csv(src, index=False)
    steps = steps_of(import_csv(src, tmp_path / "logs" / "run"))
    assert column(steps, "entropy_mean").to_dict() == {0: 0.5, 1: 0.4, 2: 0.3}
    assert column(steps, "reward_mean").to_dict() == {0: 0.1, 1: 0.2, 2: 0.35}
    assert column(steps, "eval_accuracy").to_dict() == {2: 0.3}
    assert column(steps, "import/kl").to_dict() == {0: 0.0, 1: 0.01, 2: 0.02}


@pytest.mark.parametrize("curve", REAL_CURVES, ids=lambda p: p.parent.name)
def test_csv_import_of_each_public_curve_keeps_every_point(tmp_path, curve):
    expected = pd.read_csv(curve)
    steps = steps_of(import_run("csv", curve.parent, tmp_path / "logs" / curve.parent.name))
    assert list(steps.index) == sorted(expected["step"])
    np.testing.assert_array_equal(steps["entropy_mean"].to_numpy(), expected.sort_values("step")["entropy"].to_numpy())
    target = {"train_reward": "reward_mean", "val_acc": "eval_accuracy"}[expected["performance_kind"].iloc[0]]
    np.testing.assert_array_equal(steps[target].to_numpy(), expected.sort_values("step")["performance"].to_numpy())


def test_csv_with_an_unknown_performance_kind_is_an_import_error_naming_the_kind(tmp_path):
    src = tmp_path / "c.csv"
    src.write_text("step,entropy,performance,performance_kind\n0,0.5,0.1,elo\n")
    with pytest.raises(ImportFormatError, match=r"c\.csv: performance_kind: .*'elo'"):
        import_csv(src, tmp_path / "logs" / "run")


def test_csv_with_a_bad_step_is_an_import_error_naming_the_row(tmp_path):
    src = tmp_path / "c.csv"
    src.write_text("step,entropy\n0,0.5\nten,0.4\n")
    with pytest.raises(ImportFormatError, match=r"row 3: expected a non-negative integer step, got 'ten'"):
        import_csv(src, tmp_path / "logs" / "run")


def test_import_refuses_to_overwrite_an_existing_run(tmp_path):
    src = tmp_path / "c.csv"
    src.write_text("step,entropy\n0,0.5\n1,0.4\n")
    import_csv(src, tmp_path / "logs" / "run")
    with pytest.raises(InputError, match="already holds an entropymon run"):
        import_csv(src, tmp_path / "logs" / "run")


def test_progress_reports_every_row_up_to_the_total(tmp_path):
    src = tmp_path / "c.csv"
    pd.DataFrame({"step": range(7), "entropy": np.linspace(1, 0.3, 7)}).to_csv(src, index=False)
    calls = []
    import_csv(src, tmp_path / "logs" / "run", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 7) for i in range(1, 8)]


# -- TensorBoard -------------------------------------------------------------------------------

def verl_scalars(n_steps: int = 12) -> dict[str, dict[int, float]]:
    rng = np.random.default_rng(0)
    entropy = 0.6 * np.exp(-np.arange(n_steps) / 8) + 0.05
    return {
        "actor/entropy": dict(enumerate(entropy)),
        "critic/score/mean": dict(enumerate(0.8 - 0.7 * np.exp(entropy) + 0.7 + rng.normal(0, 0.01, n_steps))),
        "actor/pg_clipfrac": dict(enumerate(rng.uniform(0, 0.1, n_steps))),
        "response_length/mean": dict(enumerate(rng.uniform(100, 200, n_steps))),
        "val-core/openai/gsm8k/reward/mean@1": {s: 0.1 * s / 5 for s in range(0, n_steps, 5)},
    }


def test_tensorboard_import_of_torch_summary_writer_maps_verl_tags_and_keeps_the_rest(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    scalars = verl_scalars()
    writer = SummaryWriter(str(tmp_path / "tb"))
    for tag, values in scalars.items():
        for step, value in values.items():
            writer.add_scalar(tag, value, step)
    writer.close()

    steps = steps_of(import_tensorboard(tmp_path / "tb", tmp_path / "logs" / "verl"))
    expected_columns = {"actor/entropy": "entropy_mean", "critic/score/mean": "reward_mean",
                        "actor/pg_clipfrac": "import/actor/pg_clipfrac", "response_length/mean": "length_mean",
                        "val-core/openai/gsm8k/reward/mean@1": "eval_accuracy"}
    for tag, target in expected_columns.items():
        written = pd.Series(scalars[tag], dtype="float64").astype(np.float32).astype(np.float64)  # event files hold float32
        pd.testing.assert_series_equal(column(steps, target), written, check_names=False, check_index_type=False)


def _tf2_scalar_event(tag: str, value: float, step: int, first: bool):
    """An Event as TF2's tf.summary.scalar writes it: a 0-d float tensor with the scalars plugin."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.util import tensor_util

    summary_value = summary_pb2.Summary.Value(tag=tag, tensor=tensor_util.make_tensor_proto(np.float32(value)))
    if first:
        summary_value.metadata.plugin_data.plugin_name = "scalars"
    return event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=[summary_value]))


def write_tf2_events(folder: Path, scalars: dict[str, dict[int, float]]) -> Path:
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(folder))
    for tag, values in scalars.items():
        for i, (step, value) in enumerate(values.items()):
            writer.add_event(_tf2_scalar_event(tag, value, step, first=i == 0))
    writer.close()
    return next(folder.glob("*tfevents*"))


def test_tensorboard_import_reads_tf2_tensor_scalars_with_trl_tag_names(tmp_path):
    scalars = {"train/entropy": {1: 0.9, 2: 0.7, 3: 0.6}, "train/reward": {1: 0.2, 2: 0.4, 3: 0.5},
               "train/frac_reward_zero_std": {1: 0.5, 2: 0.25, 3: 0.75}, "eval/accuracy": {2: 0.3},
               "train/rewards/correctness/mean": {1: 0.2, 2: 0.4, 3: 0.5}, "train/kl": {1: 0.0, 2: 0.1, 3: 0.2}}
    event_file = write_tf2_events(tmp_path / "tb", scalars)
    steps = steps_of(import_tensorboard(event_file, tmp_path / "logs" / "trl"))
    for tag, target in {"train/entropy": "entropy_mean", "train/reward": "reward_mean",
                        "train/frac_reward_zero_std": "zero_std_group_frac", "eval/accuracy": "eval_accuracy",
                        "train/rewards/correctness/mean": "reward_func/correctness", "train/kl": "import/train/kl"}.items():
        np.testing.assert_array_equal(column(steps, target).to_numpy(), np.float32(list(scalars[tag].values())))


def test_tensorboard_with_two_accuracy_candidates_promotes_neither_and_warns(tmp_path):
    scalars = {"actor/entropy": {0: 0.5, 1: 0.4},
               "val-core/gsm8k/acc/mean@1": {1: 0.3}, "val-core/math/acc/mean@1": {1: 0.2}}
    write_tf2_events(tmp_path / "tb", scalars)
    with pytest.warns(UserWarning, match="several held-out accuracy candidates"):
        steps = steps_of(import_tensorboard(tmp_path / "tb", tmp_path / "logs" / "run"))
    assert "eval_accuracy" not in steps.columns
    assert column(steps, "import/val-core/gsm8k/acc/mean@1").tolist() == [np.float32(0.3)]


def test_tensorboard_garbage_file_is_an_import_error_naming_the_file(tmp_path):
    garbage = tmp_path / "events.out.tfevents.1.host"
    garbage.write_bytes(b"this is not a TFRecord stream at all" * 4)
    with pytest.raises(ImportFormatError, match=r"events\.out\.tfevents\.1\.host: not a TensorBoard event file"):
        import_tensorboard(garbage, tmp_path / "logs" / "run")


def test_tensorboard_truncated_last_record_warns_and_keeps_the_records_before_it(tmp_path):
    event_file = write_tf2_events(tmp_path / "tb", {"actor/entropy": {0: 0.5, 1: 0.4, 2: 0.3}})
    event_file.write_bytes(event_file.read_bytes()[:-7])  # a writer killed mid-record
    with pytest.warns(UserWarning, match="truncated"):
        steps = steps_of(import_tensorboard(event_file, tmp_path / "logs" / "run"))
    np.testing.assert_array_equal(steps["entropy_mean"].to_numpy(), np.float32([0.5, 0.4]))


def test_tensorboard_folder_without_event_files_is_an_import_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportFormatError, match="found no TensorBoard event files"):
        import_tensorboard(tmp_path / "empty", tmp_path / "logs" / "run")


# -- veRL JSONL --------------------------------------------------------------------------------

def write_verl_jsonl(path: Path, scalars: dict[str, dict[int, float]], extra_line: str = "") -> None:
    """One ``{"step", "elapsed_seconds", "data"}`` object per step, as veRL's FileLogger writes."""
    steps = sorted({s for values in scalars.values() for s in values})
    with path.open("w") as handle:
        for i, step in enumerate(steps):
            data = {tag: values[step] for tag, values in scalars.items() if step in values}
            data["training/note"] = "text values are skipped"
            handle.write(json.dumps({"step": step, "elapsed_seconds": 1.5 * i, "data": data}) + "\n")
        handle.write(extra_line)


def test_verl_jsonl_maps_verl_names_exactly(tmp_path):
    scalars = verl_scalars()
    write_verl_jsonl(tmp_path / "metrics.jsonl", scalars)
    steps = steps_of(import_verl(tmp_path / "metrics.jsonl", tmp_path / "logs" / "verl"))
    for tag, target in {"actor/entropy": "entropy_mean", "critic/score/mean": "reward_mean",
                        "actor/pg_clipfrac": "import/actor/pg_clipfrac",
                        "val-core/openai/gsm8k/reward/mean@1": "eval_accuracy"}.items():
        assert column(steps, target).to_dict() == pytest.approx(scalars[tag], rel=0, abs=0)


def test_verl_jsonl_truncated_last_line_warns_and_keeps_the_rest(tmp_path):
    scalars = {"actor/entropy": {0: 0.5, 1: 0.4}}
    write_verl_jsonl(tmp_path / "m.jsonl", scalars, extra_line='{"step": 2, "data": {"actor/ent')
    with pytest.warns(UserWarning, match=r"m\.jsonl: line 3 is truncated"):
        steps = steps_of(import_verl(tmp_path / "m.jsonl", tmp_path / "logs" / "run"))
    assert steps["entropy_mean"].to_dict() == {0: 0.5, 1: 0.4}


def test_verl_jsonl_corrupt_middle_line_is_an_import_error_naming_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 0, "data": {"actor/entropy": 0.5}}\nnot json\n{"step": 2, "data": {}}\n')
    with pytest.raises(ImportFormatError, match=r"m\.jsonl: line 2: expected a JSON object"):
        import_verl(path, tmp_path / "logs" / "run")


def test_verl_jsonl_of_another_format_is_an_import_error(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 0, "actor/entropy": 0.5}\n')
    with pytest.raises(ImportFormatError, match="veRL's file logger format"):
        import_verl(path, tmp_path / "logs" / "run")


# -- TRL ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trl_output(tmp_path_factory) -> Path:
    """A real GRPOTrainer run of 4 steps on the demo's tiny model, with eval and log_completions."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from entropymon.demo.task import build_model, build_tokenizer, correctness_reward, split_problems

    out = tmp_path_factory.mktemp("trl") / "out"
    train, heldout = split_problems(seed=0, n_heldout=64)

    def dataset(problems):
        return Dataset.from_dict({"prompt": [p.prompt for p in problems], "answer": [p.answer for p in problems]})

    args = GRPOConfig(output_dir=str(out), per_device_train_batch_size=8, num_generations=4, max_completion_length=4,
                      max_steps=4, logging_steps=1, save_strategy="no", report_to=[], log_completions=True,
                      num_completions_to_print=0, eval_strategy="steps", eval_steps=2, per_device_eval_batch_size=8,
                      learning_rate=1e-3, use_cpu=True, seed=0, beta=0.0, disable_tqdm=True)
    trainer = GRPOTrainer(model=build_model(), reward_funcs=correctness_reward, args=args,
                          train_dataset=dataset(train[:64]), eval_dataset=dataset(heldout[:8]),
                          processing_class=build_tokenizer())
    trainer.train()
    trainer.save_state()
    return out


@pytest.mark.slow
def test_trl_log_history_is_mapped_and_every_key_kept_as_trl(tmp_path, trl_output):
    history = json.loads((trl_output / "trainer_state.json").read_text())["log_history"]
    steps = steps_of(import_trl(trl_output, tmp_path / "logs" / "trl"))
    train = {e["step"]: e for e in history if "entropy" in e}
    evals = {e["step"]: e for e in history if "eval_reward" in e}
    assert train and evals
    for key, target in {"entropy": "entropy_mean", "reward": "reward_mean", "frac_reward_zero_std": "zero_std_group_frac",
                        "learning_rate": "lr", "completions/mean_length": "length_mean",
                        "rewards/correctness_reward/mean": "reward_func/correctness_reward"}.items():
        expected = {step: float(entry[key]) for step, entry in train.items()}
        assert column(steps, target).to_dict() == expected
        assert column(steps, f"trl/{key}").to_dict() == expected
    assert column(steps, "eval_accuracy").to_dict() == {s: float(e["eval_rewards/correctness_reward/mean"])
                                                        for s, e in evals.items()}
    assert column(steps, "trl/eval_loss").to_dict() == {s: float(e["eval_loss"]) for s, e in evals.items()}


@pytest.mark.slow
def test_trl_completions_become_sample_rows(tmp_path, trl_output):
    written = pd.concat([pd.read_parquet(p) for p in sorted((trl_output / "completions").glob("*.parquet"))],
                        ignore_index=True)
    samples = read_run(import_trl(trl_output, tmp_path / "logs" / "trl")).samples
    samples = samples.sort_values(["step", "sample_id"]).reset_index(drop=True)
    assert len(samples) == len(written)
    np.testing.assert_array_equal(samples["step"], written["step"])
    assert samples["text"].tolist() == written["completion"].tolist()
    assert samples["prompt"].tolist() == written["prompt"].tolist()
    np.testing.assert_array_equal(samples["reward"], written["correctness_reward"])
    np.testing.assert_array_equal(samples["advantage"], written["advantage"])
    for _, rows in samples.groupby("step"):  # one group id per distinct prompt, numbered in order
        assert rows["group_id"].tolist() == pd.factorize(rows["prompt"])[0].tolist()


def test_trl_uses_the_newest_checkpoint_state_when_the_folder_has_none(tmp_path):
    for step in (2, 10):
        folder = tmp_path / "out" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps(
            {"log_history": [{"step": s, "entropy": 1.0 / s, "reward": 0.1 * s} for s in range(1, step + 1)]}))
    steps = steps_of(import_trl(tmp_path / "out", tmp_path / "logs" / "run"))
    assert steps["entropy_mean"].to_dict() == {s: 1.0 / s for s in range(1, 11)}


def test_trl_bad_json_is_an_import_error_naming_the_file(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "trainer_state.json").write_text('{"log_history": [{"step": 1, ')
    with pytest.raises(ImportFormatError, match=r"trainer_state\.json: expected JSON, the file is corrupt"):
        import_trl(tmp_path / "out", tmp_path / "logs" / "run")


def test_trl_folder_without_a_state_is_an_import_error_with_a_fix(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(ImportFormatError, match=r"save_state\(\)"):
        import_trl(tmp_path / "out", tmp_path / "logs" / "run")


def test_trl_corrupt_completions_parquet_is_an_import_error_naming_the_file(tmp_path):
    out = tmp_path / "out"
    (out / "completions").mkdir(parents=True)
    (out / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 1, "entropy": 0.5}]}))
    (out / "completions" / "completions_00001.parquet").write_bytes(b"PAR1 but not really")
    with pytest.raises(ImportFormatError, match=r"completions_00001\.parquet: not a readable Parquet file"):
        import_trl(out, tmp_path / "logs" / "run")
