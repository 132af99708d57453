"""``Monitor.observe_dh``: the dH probe from the training loop's call to the steps table.

References: the torch metric functions (tested against NumPy in test_metrics_entropy_change.py)
on the same batch; micro-batches must give exactly what one batch gives.
"""

import numpy as np
import pytest
import torch

from entropymon.errors import InputError
from entropymon.hooks.monitor import Monitor
from entropymon.log.reader import read_run
from entropymon.metrics.entropy_change import entropy_change, entropy_change_stats


def batch(seed, n_seq=8, n_tok=5, vocab=9):
    generator = torch.Generator().manual_seed(seed)
    before = torch.randn(n_seq, n_tok, vocab, generator=generator) * 2
    after = before + 0.1 * torch.randn(n_seq, n_tok, vocab, generator=generator)
    ids = torch.randint(0, vocab, (n_seq, n_tok), generator=generator)
    mask = torch.rand(n_seq, n_tok, generator=generator) > 0.2
    mask[:, 0] = True
    advantages = torch.randn(n_seq, generator=generator).round()
    return before, after, ids, mask, advantages


def expected_metrics(before, after, ids, mask, advantages, temperature=1.0):
    change = entropy_change(before, after, ids, mask, temperature)
    return entropy_change_stats(change.dh, change.predicted, change.entropy_before, mask, advantages,
                                change.logprob_before).metrics


def test_probed_steps_carry_the_dh_metrics_of_their_batch(tmp_path):
    data = {step: batch(step) for step in range(6)}
    with Monitor(tmp_path, run="r", dh_probe_every=3, temperature=0.8) as monitor:
        for step, (before, after, ids, mask, adv) in data.items():
            monitor.observe(step, logits=before, token_ids=ids, mask=mask, advantages=adv)
            if monitor.probe_due(step):
                monitor.observe_dh(step, logits_before=before, logits_after=after, token_ids=ids, mask=mask,
                                   advantages=adv)
    steps = read_run(monitor.path).step_metrics.set_index("step")
    assert steps["dh_same_batch"].notna().tolist() == [True, False, False, True, False, False]
    for step in (0, 3):
        expected = expected_metrics(*data[step], temperature=0.8)
        for name, value in expected.items():
            assert steps.loc[step, name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
        # the probe's own before-forward and observe() saw the same batch
        assert steps.loc[step, "dh_entropy_before"] == pytest.approx(steps.loc[step, "entropy_mean"], rel=1e-6)
    assert (steps["monitor_errors"] == 0).all()


def test_micro_batches_of_a_step_give_what_one_batch_gives(tmp_path):
    before, after, ids, mask, adv = batch(7, n_seq=10)
    with Monitor(tmp_path, run="micro", dh_probe_every=1) as monitor:
        for part in (slice(0, 4), slice(4, 10)):
            monitor.observe_dh(0, logits_before=before[part, :4 if part.start else 5],
                               logits_after=after[part, :4 if part.start else 5], token_ids=ids[part, :4 if part.start else 5],
                               mask=mask[part, :4 if part.start else 5], advantages=adv[part])
    row = read_run(monitor.path).step_metrics.iloc[0]
    whole_mask = mask.clone()
    whole_mask[4:, 4:] = False  # the second micro-batch was 4 tokens long
    expected = expected_metrics(before, after, ids, whole_mask, adv)
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


def test_nan_advantages_skip_and_count_their_sequences(tmp_path):
    before, after, ids, mask, adv = batch(1)
    adv[2] = float("nan")
    with pytest.warns(UserWarning, match="probe logits/advantages"):
        with Monitor(tmp_path, run="nan", dh_probe_every=1) as monitor:
            monitor.observe_dh(0, logits_before=before, logits_after=after, token_ids=ids, mask=mask, advantages=adv)
    row = read_run(monitor.path).step_metrics.iloc[0]
    keep = torch.ones(8, dtype=torch.bool)
    keep[2] = False
    expected = expected_metrics(before[keep], after[keep], ids[keep], mask[keep], adv[keep])
    assert row["dh_probe_tokens"] == expected["dh_probe_tokens"]
    assert row["dh_same_batch"] == pytest.approx(expected["dh_same_batch"], rel=1e-6)
    assert monitor.bad_rows == 1


def test_a_probe_arriving_after_its_step_was_written_still_lands_on_that_step(tmp_path):
    before, after, ids, mask, adv = batch(2)
    with Monitor(tmp_path, run="late", dh_probe_every=1, strict=True) as monitor:
        monitor.observe(0, logits=before, token_ids=ids, mask=mask, advantages=adv)
        monitor.observe(1, logits=before, token_ids=ids, mask=mask, advantages=adv)  # step 0 is written
        monitor.observe_dh(0, logits_before=before, logits_after=after, token_ids=ids, mask=mask, advantages=adv)
    steps = read_run(monitor.path).step_metrics.set_index("step")
    assert steps.loc[0, "dh_same_batch"] == pytest.approx(expected_metrics(before, after, ids, mask, adv)["dh_same_batch"])
    assert np.isfinite(steps.loc[0, "entropy_mean"]) and np.isnan(steps.loc[1, "dh_same_batch"])


def test_probe_due_follows_dh_probe_every(tmp_path):
    with Monitor(tmp_path, run="off") as off, Monitor(tmp_path, run="on", dh_probe_every=10) as on:
        assert not any(off.probe_due(step) for step in range(30))
        assert [step for step in range(30) if on.probe_due(step)] == [0, 10, 20]


@pytest.mark.parametrize("value", [-1, 1.5, True, "10"])
def test_a_bad_dh_probe_every_is_refused(tmp_path, value):
    with pytest.raises(InputError, match="dh_probe_every: expected a non-negative int"):
        Monitor(tmp_path, run="bad", dh_probe_every=value)


def test_a_bad_probe_call_is_counted_not_raised(tmp_path):
    before, after, ids, mask, adv = batch(3)
    with pytest.warns(UserWarning, match="observe_dh failed"):
        with Monitor(tmp_path, run="count", dh_probe_every=1) as monitor:
            monitor.observe_dh(0, logits_before=before, logits_after=after[:, :3], token_ids=ids)
    assert monitor.errors == 1
    with Monitor(tmp_path, run="strict", dh_probe_every=1, strict=True) as monitor:
        with pytest.raises(InputError, match="logits_after: expected shape"):
            monitor.observe_dh(0, logits_before=before, logits_after=after[:, :3])
