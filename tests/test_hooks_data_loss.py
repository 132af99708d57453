"""Nothing lost without a count, seen from the Monitor: inputs that would lose rows are refused
with an InputError naming the argument (counted and warned, raised when strict), and the log
writer's failures reach the Monitor's error count, its warning and strict mode."""

import shutil
import warnings

import numpy as np
import pytest
import torch

from entropymon.errors import InputError
from entropymon.hooks.failures import MonitorWarning
from entropymon.hooks.monitor import Monitor
from entropymon.log.reader import read_run

BATCH, LENGTH, VOCAB = 4, 3, 5


def batch(seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(BATCH, LENGTH, VOCAB, generator=generator)
    return dict(logits=logits, token_ids=torch.randint(0, VOCAB, (BATCH, LENGTH), generator=generator),
                rewards=torch.tensor([1.0, 0.0, 1.0, 0.0]), group_ids=torch.tensor([0, 0, 1, 1]),
                advantages=torch.tensor([0.5, -0.5, 0.5, -0.5]))


def numpy_entropy_mean(logits: torch.Tensor) -> float:
    z = logits.double().numpy()
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return float(-(p * np.log(p)).sum(-1).mean())


def test_a_step_of_2_to_the_63_is_refused_naming_the_step(tmp_path):
    with pytest.warns(MonitorWarning, match=r"step: expected an integer >= 0 and < 2\*\*63"):
        with Monitor(tmp_path, run="r") as mon:
            mon.observe(2**63, **batch(0))
            mon.observe(1, **batch(1))
            assert mon.errors == 1
    assert read_run(tmp_path / "r").steps["step"].tolist() == [1]
    with Monitor(tmp_path, run="strict", strict=True) as mon:
        with pytest.raises(InputError, match=r"step: expected an integer >= 0 and < 2\*\*63, got int 9223372036854775808"):
            mon.observe(2**63, **batch(0))


def test_going_back_to_a_written_step_is_refused_and_the_first_row_stays(tmp_path):
    first = batch(0)
    with pytest.warns(MonitorWarning, match=r"step: expected >= 4 .*got 3"):
        with Monitor(tmp_path, run="r") as mon:
            mon.observe(3, **first)
            mon.observe(4, **batch(1))
            mon.observe(3, **batch(2))  # would silently replace step 3's metrics
            mon.observe(4, **batch(3))  # the same step again is a second micro-batch: fine
            assert mon.errors == 1
    steps = read_run(tmp_path / "r").steps.set_index("step")
    assert sorted(steps.index) == [3, 4]
    assert steps.loc[3, "entropy_mean"] == pytest.approx(numpy_entropy_mean(first["logits"]), rel=1e-5)
    assert steps.loc[4, "n_sequences"] == 2 * BATCH
    with Monitor(tmp_path, run="strict", strict=True) as mon:
        mon.observe(5, **batch(0))
        with pytest.raises(InputError, match="step: expected >= 5"):
            mon.observe(2, **batch(1))


def test_one_none_among_texts_is_refused_naming_its_index(tmp_path):
    texts = ["a b", "a c", None, "d"]
    with Monitor(tmp_path, run="strict", strict=True) as mon:
        with pytest.raises(InputError, match=r"texts\[2\]: expected a str .* got NoneType None"):
            mon.observe(0, **batch(0), texts=texts)
    with pytest.warns(MonitorWarning, match=r"texts\[2\]"):
        with Monitor(tmp_path, run="r") as mon:
            mon.observe(0, **batch(0), texts=texts)
            mon.observe(1, **batch(1), texts=["a b", "a c", "e", "d"])
            assert mon.errors == 1
    steps = read_run(tmp_path / "r").steps
    assert steps["step"].tolist() == [1] and steps["distinct_1"].notna().all()


def test_a_text_with_a_lone_surrogate_keeps_every_sample_row_of_its_step(tmp_path):
    texts = ["fine", "half \ud83d of an emoji", "also fine", "ok"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MonitorWarning)
        with Monitor(tmp_path, run="r") as mon:
            mon.observe(0, **batch(0), texts=texts)
    samples = read_run(tmp_path / "r").samples
    assert samples["text"].tolist() == ["fine", "half \ufffd of an emoji", "also fine", "ok"]
    assert mon.errors == 1  # the repair is counted


def test_writer_failures_reach_the_error_count_one_warning_and_latest_metrics(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mon = Monitor(tmp_path, run="r")
        steps = tmp_path / "r" / "steps"
        shutil.rmtree(steps)
        steps.write_text("the disk turned into a file")  # every steps write fails now
        for step in range(4):
            mon.observe(step, **batch(step))
            assert mon.flush(timeout=10) is False
        assert mon.errors >= 3
        assert mon.latest_metrics()["monitor_errors"] >= 2  # the next rows carry the count
        writer_warnings = [w for w in caught if issubclass(w.category, MonitorWarning) and "log writer" in str(w.message)]
        assert len(writer_warnings) == 1  # once, not once per failure
        steps.unlink()  # the disk recovers: the writer did not give up, the rows kept meanwhile are written
        steps.mkdir()
        assert mon.flush(timeout=10) is True
        mon.close()
    assert read_run(tmp_path / "r").steps["step"].tolist() == [0, 1, 2, 3]


def test_a_strict_monitor_raises_the_writer_failure_at_the_next_call(tmp_path):
    mon = Monitor(tmp_path, run="r", strict=True)
    steps = tmp_path / "r" / "steps"
    shutil.rmtree(steps)
    steps.write_text("not a folder")
    mon.observe(0, **batch(0))
    with pytest.raises(OSError):
        mon.flush(timeout=10)
    steps.unlink()
    steps.mkdir()
    mon.close()
    assert read_run(tmp_path / "r").steps["step"].tolist() == [0]
