"""Bad inputs to Monitor from inside a running training loop: the loop goes on, each problem is
counted and warned about once, and the good observations are still logged correctly."""

import warnings

import numpy as np
import pytest
import torch

from conftest import TinyPolicy as SharedTinyPolicy
from entropymon.errors import InputError
from entropymon.hooks.failures import MonitorWarning
from entropymon.hooks.monitor import Monitor
from entropymon.log.reader import read_run

VOCAB, LENGTH, GROUPS, GROUP_SIZE = 7, 5, 2, 4
BATCH = GROUPS * GROUP_SIZE


def TinyPolicy():
    return SharedTinyPolicy(VOCAB, LENGTH, GROUPS, position_scale=0.1)


def _training_step(policy, optimizer, generator):
    """One REINFORCE/GRPO-style update; returns what a trainer would hand to the monitor."""
    prompt_ids = torch.arange(GROUPS).repeat_interleave(GROUP_SIZE)  # (B,)
    logits = policy(prompt_ids)  # (B, T, V)
    with torch.no_grad():
        tokens = torch.multinomial(torch.softmax(logits, -1).reshape(-1, VOCAB), 1, generator=generator)
        tokens = tokens.reshape(BATCH, LENGTH)  # (B, T)
        lengths = torch.randint(1, LENGTH + 1, (BATCH,), generator=generator)
        mask = torch.arange(LENGTH)[None, :] < lengths[:, None]  # (B, T)
        rewards = ((tokens == 3) & mask).any(dim=1).float()  # (B,)
        grouped = rewards.reshape(GROUPS, GROUP_SIZE)
        advantages = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)).flatten()
    logprobs = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)  # (B, T)
    loss = -(advantages[:, None] * logprobs * mask).sum() / mask.sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return dict(logits=logits, token_ids=tokens, mask=mask, advantages=advantages, rewards=rewards,
                group_ids=prompt_ids)


def _bad_variants(good):
    """(kind, observe kwargs) for each bad input of the core issue's list."""
    logits = good["logits"]
    nan_logits = logits.detach().clone()
    nan_logits[1, 0, 2] = float("nan")
    return [
        ("wrong rank", {**good, "logits": logits[:, 0, :]}),
        ("shape mismatch", {**good, "token_ids": good["token_ids"][:, :-1]}),
        ("non-float logits", {**good, "logits": logits.detach().long()}),
        ("empty batch", {**good, "logits": logits[:0], "token_ids": good["token_ids"][:0], "mask": good["mask"][:0],
                         "advantages": good["advantages"][:0], "rewards": good["rewards"][:0],
                         "group_ids": good["group_ids"][:0]}),
        ("all-false mask", {**good, "mask": torch.zeros_like(good["mask"])}),
        ("group ids of wrong length", {**good, "group_ids": good["group_ids"][:-1]}),
        ("nan logits", {**good, "logits": nan_logits}),
    ]


def _numpy_entropy_mean(logits, mask, keep_rows):
    z = logits.detach().double().numpy()[keep_rows]
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    entropy = -(p * np.log(p)).sum(-1)
    return entropy[mask.numpy()[keep_rows]].mean()


def test_bad_inputs_in_a_training_loop_are_counted_and_warned_once(tmp_path):
    torch.manual_seed(0)
    policy = TinyPolicy()
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    generator = torch.Generator().manual_seed(1)
    steps, expected_entropy, nan_step_entropy = 8, {}, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Monitor(tmp_path, run="bad", token_rows_every=0) as mon:
            for step in range(steps):
                good = _training_step(policy, optimizer, generator)
                if step in (2, 5):  # every bad kind twice, at two different steps
                    for _, bad in _bad_variants(good):
                        mon.observe(step, **bad)
                    nan_step_entropy = _numpy_entropy_mean(good["logits"], good["mask"], np.arange(BATCH) != 1)
                else:
                    mon.observe(step, **good)
                    expected_entropy[step] = _numpy_entropy_mean(good["logits"], good["mask"], np.arange(BATCH) >= 0)
            mon.flush()
            errors, bad_rows = mon.errors, mon.bad_rows
    # six error kinds x two steps; the NaN sequence is a skipped row, not an error
    assert errors == 12
    assert bad_rows == 2
    monitor_warnings = [str(w.message) for w in caught if issubclass(w.category, MonitorWarning)]
    assert len(monitor_warnings) == 7, monitor_warnings
    for needle in ("logits: expected shape (B, T, V)", "token_ids: expected shape", "logits: expected a floating",
                   "non-empty batch", "mask: expected at least one True position", "group_ids: expected 8 ids",
                   "NaN in 1 of 8 sequences"):
        assert sum(needle in message for message in monitor_warnings) == 1, needle
    steps_table = read_run(tmp_path / "bad").steps.set_index("step")
    assert list(steps_table.index) == list(range(steps))  # every step was logged, the bad ones too
    for step, reference in expected_entropy.items():
        assert steps_table.loc[step, "entropy_mean"] == pytest.approx(reference, rel=1e-5)
    # on a bad step only the NaN observation was usable, minus its NaN sequence
    assert steps_table.loc[5, "entropy_mean"] == pytest.approx(nan_step_entropy, rel=1e-5)
    assert steps_table.loc[5, "n_sequences"] == BATCH - 1
    assert steps_table.loc[steps - 1, "monitor_errors"] == 12
    assert steps_table.loc[steps - 1, "monitor_bad_rows"] == 2


def test_nan_policy_ignore_skips_and_counts_without_warning(tmp_path):
    torch.manual_seed(0)
    policy, generator = TinyPolicy(), torch.Generator().manual_seed(2)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Monitor(tmp_path, run="ignore", nan_policy="ignore") as mon:
            good = _training_step(policy, optimizer, generator)
            mon.observe(0, **dict(_bad_variants(good))["nan logits"])
            mon.flush()
            assert mon.bad_rows == 1 and mon.errors == 0
    assert not [w for w in caught if issubclass(w.category, MonitorWarning)]


def test_nan_policy_raise_raises_at_the_next_call(tmp_path):
    torch.manual_seed(0)
    policy, generator = TinyPolicy(), torch.Generator().manual_seed(3)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
    mon = Monitor(tmp_path, run="raise", nan_policy="raise")
    good = _training_step(policy, optimizer, generator)
    mon.observe(0, **dict(_bad_variants(good))["nan logits"])
    with pytest.raises(InputError, match="NaN in 1 of 8"):
        mon.flush()
    mon.close()


def test_strict_monitor_raises_bad_input_on_the_calling_thread(tmp_path):
    torch.manual_seed(0)
    policy, generator = TinyPolicy(), torch.Generator().manual_seed(4)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
    good = _training_step(policy, optimizer, generator)
    with Monitor(tmp_path, run="strict", strict=True) as mon:
        with pytest.raises(InputError, match="logits: expected a floating dtype"):
            mon.observe(0, **dict(_bad_variants(good))["non-float logits"])
        with pytest.raises(InputError, match="mask: expected at least one True position"):
            mon.observe(0, **dict(_bad_variants(good))["all-false mask"])


@pytest.mark.parametrize("arguments, message", [
    ({"temperature": 0.0}, "temperature: expected a positive number, got 0.0"),
    ({"temperature": -1}, "temperature: expected a positive number, got -1"),
    ({"nan_policy": "drop"}, "nan_policy: expected one of"),
    ({"metrics": {"entropy", "vibes"}}, "unknown ['vibes']"),
    ({"token_rows_every": -1}, "token_rows_every: expected a non-negative int"),
    ({"pass_k": (0, 4)}, "pass_k: expected positive ints"),
    ({"rank": -2}, "rank: expected a non-negative int"),
])
def test_bad_monitor_settings_fail_fast_naming_the_argument(tmp_path, arguments, message):
    with pytest.raises(InputError) as raised:
        Monitor(tmp_path, run="settings", **arguments)
    assert message in str(raised.value)


def test_nan_logits_at_padding_positions_are_not_bad_rows(tmp_path):
    torch.manual_seed(0)
    policy, generator = TinyPolicy(), torch.Generator().manual_seed(5)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
    good = _training_step(policy, optimizer, generator)
    mask = good["mask"].clone()
    mask[0, -1] = False
    logits = good["logits"].detach().clone()
    logits[0, -1, :] = float("nan")  # garbage where the completion has already ended
    with Monitor(tmp_path, run="padding") as mon:
        mon.observe(0, **{**good, "mask": mask, "logits": logits})
        mon.flush()
        assert mon.bad_rows == 0 and mon.errors == 0
    row = read_run(tmp_path / "padding").steps.iloc[0]
    assert row["n_sequences"] == BATCH
    assert row["entropy_mean"] == pytest.approx(_numpy_entropy_mean(good["logits"], mask, np.arange(BATCH) >= 0),
                                                rel=1e-5)


def test_inf_logits_everywhere_skip_every_sequence_and_still_log_the_step(tmp_path):
    torch.manual_seed(0)
    policy, generator = TinyPolicy(), torch.Generator().manual_seed(6)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
    good = _training_step(policy, optimizer, generator)
    with Monitor(tmp_path, run="all-inf", nan_policy="ignore") as mon:
        mon.observe(0, **{**good, "logits": torch.full_like(good["logits"], float("inf"))})
        mon.observe(1, **good)
        mon.flush()
        assert mon.bad_rows == BATCH and mon.errors == 0
    steps = read_run(tmp_path / "all-inf").steps.set_index("step")
    assert list(steps.index) == [0, 1]
    assert "entropy_mean" not in steps.columns or np.isnan(steps.loc[0, "entropy_mean"])
    assert steps.loc[0, "monitor_bad_rows"] == BATCH
    assert steps.loc[1, "entropy_mean"] == pytest.approx(
        _numpy_entropy_mean(good["logits"], good["mask"], np.arange(BATCH) >= 0), rel=1e-5)
