"""Monitor in a plain PyTorch loop: every logged number against an independent NumPy computation
over the same tensors, micro-batch accumulation, token-row sampling, latest_metrics and close."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TinyPolicy as SharedTinyPolicy
from entropymon.hooks.monitor import Monitor
from entropymon.log.reader import read_run

VOCAB, LENGTH, GROUPS, GROUP_SIZE = 11, 6, 3, 4
BATCH = GROUPS * GROUP_SIZE


def TinyPolicy():
    return SharedTinyPolicy(VOCAB, LENGTH, GROUPS, position_scale=0.5, logit_scale=2.0)


def _rollout(policy, generator, temperature=1.0):
    """Sample completions at ``temperature`` and score them (token 3 anywhere = correct)."""
    prompt_ids = torch.arange(GROUPS).repeat_interleave(GROUP_SIZE)  # (B,)
    logits = policy(prompt_ids)  # (B, T, V)
    with torch.no_grad():
        probs = torch.softmax(logits / temperature, -1).reshape(-1, VOCAB)
        tokens = torch.multinomial(probs, 1, generator=generator).reshape(BATCH, LENGTH)  # (B, T)
        lengths = torch.randint(1, LENGTH + 1, (BATCH,), generator=generator)
        mask = torch.arange(LENGTH)[None, :] < lengths[:, None]  # (B, T)
        rewards = ((tokens == 3) & mask).any(dim=1).float()  # (B,)
        grouped = rewards.reshape(GROUPS, GROUP_SIZE)
        advantages = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)).flatten()
    return dict(logits=logits, token_ids=tokens, mask=mask, advantages=advantages, rewards=rewards,
                group_ids=prompt_ids)


def _update(policy, optimizer, batch, temperature=1.0):
    logprobs = torch.log_softmax(batch["logits"] / temperature, -1).gather(-1, batch["token_ids"][..., None])[..., 0]
    loss = -(batch["advantages"][:, None] * logprobs * batch["mask"]).sum() / batch["mask"].sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def reference_metrics(batch, temperature=1.0):
    """The step metrics recomputed with NumPy in float64 from the same tensors."""
    z = batch["logits"].detach().double().numpy() / temperature
    z = z - z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    entropy = -(np.exp(log_p) * log_p).sum(-1)  # (B, T)
    tokens, mask = batch["token_ids"].numpy(), batch["mask"].numpy()
    logprob = np.take_along_axis(log_p, tokens[..., None], -1)[..., 0]  # (B, T)
    adv = np.broadcast_to(batch["advantages"].double().numpy()[:, None], mask.shape)
    x, a = logprob[mask], adv[mask]
    y = np.exp(x) * a
    rewards = batch["rewards"].double().numpy()
    groups = batch["group_ids"].numpy()
    zero_std = np.mean([np.ptp(rewards[groups == g]) == 0 for g in np.unique(groups)])
    per_seq_entropy = [entropy[i][mask[i]].mean() for i in range(len(mask))]
    return {
        "entropy_mean": entropy[mask].mean(),
        "entropy_seq_mean": np.mean(per_seq_entropy),
        "entropy_max": entropy[mask].max(),
        "surprisal_mean": -x.mean(),
        "cov_logp_adv": np.mean((x - x.mean()) * (a - a.mean())),
        "cov_logp_piadv": np.mean((x - x.mean()) * (y - y.mean())),
        "reward_mean": rewards.mean(),
        "zero_std_group_frac": zero_std,
        "n_tokens": mask.sum(),
        "n_sequences": len(mask),
        "_entropy": entropy, "_logprob": logprob, "_per_seq_entropy": per_seq_entropy,
        "_cov_i": (logprob - x.mean()) * (adv - a.mean()),
        "_lengths": mask.sum(1), "_mask": mask,
    }


def _train(tmp_path, steps, temperature=1.0, **monitor_kwargs):
    torch.manual_seed(0)
    policy = TinyPolicy()
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.3)
    generator = torch.Generator().manual_seed(1)
    references = []
    with Monitor(tmp_path, run="loop", temperature=temperature, **monitor_kwargs) as mon:
        for step in range(steps):
            batch = _rollout(policy, generator, temperature)
            mon.observe(step, **batch, lr=0.3)
            references.append(reference_metrics(batch, temperature))
            _update(policy, optimizer, batch, temperature)
    return read_run(tmp_path / "loop"), references


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logged_step_metrics_equal_numpy_over_the_same_logits(tmp_path, temperature):
    run, references = _train(tmp_path, steps=4, temperature=temperature)
    steps = run.steps.set_index("step")
    assert list(steps.index) == [0, 1, 2, 3]
    for step, reference in enumerate(references):
        for name in ("entropy_mean", "entropy_seq_mean", "entropy_max", "surprisal_mean", "cov_logp_adv",
                     "cov_logp_piadv", "reward_mean", "zero_std_group_frac", "n_tokens", "n_sequences"):
            assert steps.loc[step, name] == pytest.approx(reference[name], rel=1e-5, abs=1e-6), name
        assert steps.loc[step, "entropy_temperature"] == temperature
        assert steps.loc[step, "lr"] == pytest.approx(0.3)


def test_samples_table_has_one_row_per_completion_matching_numpy(tmp_path):
    run, references = _train(tmp_path, steps=2, token_rows_every=0)
    samples = run.samples
    assert len(samples) == 2 * BATCH
    for step, reference in enumerate(references):
        rows = samples[samples.step == step].sort_values("sample_id")
        assert list(rows.sample_id) == list(range(BATCH))
        assert list(rows.length) == list(reference["_lengths"])
        assert list(rows.group_id) == list(np.arange(GROUPS).repeat(GROUP_SIZE))
        np.testing.assert_allclose(rows.entropy_mean, reference["_per_seq_entropy"], rtol=1e-5)
        entropy_max = [reference["_entropy"][i][reference["_mask"][i]].max() for i in range(BATCH)]
        np.testing.assert_allclose(rows.entropy_max, entropy_max, rtol=1e-5)


def test_token_rows_every_n_steps_for_the_first_k_sequences(tmp_path):
    run, references = _train(tmp_path, steps=7, token_rows_every=3, token_rows_per_step=2)
    tokens = run.tokens
    assert sorted(tokens.step.unique()) == [0, 3, 6]
    for step in (0, 3, 6):
        reference = references[step]
        rows = tokens[tokens.step == step].sort_values(["sample_id", "position"])
        mask = reference["_mask"][:2]  # (2, T): the first two sequences
        sample_id, position = np.nonzero(mask)
        assert list(rows.sample_id) == list(sample_id) and list(rows.position) == list(position)
        np.testing.assert_allclose(rows.entropy, reference["_entropy"][:2][mask], rtol=1e-5)
        np.testing.assert_allclose(rows.logprob, reference["_logprob"][:2][mask], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rows["cov"], reference["_cov_i"][:2][mask], rtol=1e-4, atol=1e-6)


def test_token_text_comes_from_the_decode_callable(tmp_path):
    run, _ = _train(tmp_path, steps=1, token_rows_every=1, token_rows_per_step=1, decode=lambda t: f"<{t}>")
    tokens = run.tokens
    assert list(tokens.token_text) == [f"<{t}>" for t in tokens.token_id]


def _split(batch, pieces):
    """The batch as micro-batches of consecutive sequences, each padded to its own longest length."""
    parts = []
    for index in np.array_split(np.arange(BATCH), pieces):
        index = torch.as_tensor(index)
        width = int(batch["mask"][index].sum(1).max())
        part = {name: value[index] for name, value in batch.items()}
        for name in ("logits", "token_ids", "mask"):
            part[name] = part[name][:, :width]
        parts.append(part)
    return parts


def test_micro_batches_of_a_step_give_the_same_row_as_one_big_batch(tmp_path):
    torch.manual_seed(0)
    policy, generator = TinyPolicy(), torch.Generator().manual_seed(5)
    batches = [_rollout(policy, generator) for _ in range(2)]
    with Monitor(tmp_path, run="whole") as whole, Monitor(tmp_path, run="split") as split:
        for step, batch in enumerate(batches):
            whole.observe(step, **batch)
            for part in _split(batch, 3):  # groups straddle the micro-batches
                split.observe(step, **part)
    whole_steps = read_run(tmp_path / "whole").steps.drop(columns="time")
    split_steps = read_run(tmp_path / "split").steps.drop(columns="time")
    assert sorted(whole_steps.columns) == sorted(split_steps.columns)
    for name in whole_steps.columns:
        if whole_steps[name].dtype == object:  # list columns: entropy_hist, stat/ histograms and top tokens
            whole_lists = [np.asarray(v, dtype=float) for v in whole_steps[name]]
            split_lists = [np.asarray(v, dtype=float) for v in split_steps[name]]
            assert [len(v) for v in whole_lists] == [len(v) for v in split_lists], name
            for whole_value, split_value in zip(whole_lists, split_lists):
                np.testing.assert_allclose(split_value, whole_value, rtol=1e-9, atol=1e-12,
                                           err_msg=name)
        else:
            np.testing.assert_allclose(split_steps[name].astype(float), whole_steps[name].astype(float),
                                       rtol=1e-9, atol=1e-12, err_msg=name)
    reference = reference_metrics(batches[1])
    split_zero_std = split_steps.set_index("step").loc[1, "zero_std_group_frac"]
    assert split_zero_std == pytest.approx(reference["zero_std_group_frac"])


def test_latest_metrics_is_the_last_finished_step(tmp_path):
    torch.manual_seed(0)
    policy, generator = TinyPolicy(), torch.Generator().manual_seed(6)
    with Monitor(tmp_path, run="latest") as mon:
        assert mon.latest_metrics() == {}
        batches = [_rollout(policy, generator) for _ in range(2)]
        mon.observe(0, **batches[0])
        mon.observe(1, **batches[1])
        mon.flush()
        latest = mon.latest_metrics()
    assert latest["step"] == 1
    assert latest["entropy_mean"] == pytest.approx(reference_metrics(batches[1])["entropy_mean"], rel=1e-5)
    assert not any(name.startswith("stat/") for name in latest)


def test_end_step_finishes_the_step_without_waiting_for_the_next(tmp_path):
    import time

    torch.manual_seed(0)
    policy, generator = TinyPolicy(), torch.Generator().manual_seed(8)
    with Monitor(tmp_path, run="end-step") as mon:
        batch = _rollout(policy, generator)
        mon.observe(0, **batch)
        mon.end_step()  # no flush, no step 1: the worker finishes step 0 on its own
        deadline = time.monotonic() + 60
        while mon.latest_metrics().get("step") != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        latest = mon.latest_metrics()
    assert latest["step"] == 0
    assert latest["entropy_mean"] == pytest.approx(reference_metrics(batch)["entropy_mean"], rel=1e-5)


def test_close_writes_the_pending_step_and_every_table(tmp_path):
    torch.manual_seed(0)
    policy, generator = TinyPolicy(), torch.Generator().manual_seed(7)
    mon = Monitor(tmp_path, run="close", token_rows_every=1, token_rows_per_step=1)
    batch = _rollout(policy, generator)
    mon.observe(0, **batch)
    mon.log_scalars(0, {"eval_accuracy": 0.25})
    mon.close()
    run = read_run(tmp_path / "close")
    assert list(run.steps.step) == [0]
    assert run.steps.eval_accuracy.iloc[0] == 0.25
    assert len(run.samples) == BATCH
    assert len(run.tokens) == int(batch["mask"][0].sum())
    assert run.meta["status"] == "closed"
    mon.close()  # a second close is harmless


def test_late_scalars_join_the_row_of_an_already_written_step(tmp_path):
    torch.manual_seed(0)
    policy, generator = TinyPolicy(), torch.Generator().manual_seed(8)
    with Monitor(tmp_path, run="late") as mon:
        mon.observe(0, **_rollout(policy, generator))
        mon.observe(1, **_rollout(policy, generator))
        mon.log_scalars(0, {"eval_accuracy": 0.5})  # step 0 is already finished
    steps = read_run(tmp_path / "late").steps.set_index("step")
    assert steps.loc[0, "eval_accuracy"] == 0.5
    assert np.isfinite(steps.loc[0, "entropy_mean"])


def test_observe_with_only_logprobs_gives_surprisal_and_no_entropy(tmp_path):
    torch.manual_seed(0)
    policy, generator = TinyPolicy(), torch.Generator().manual_seed(9)
    batch = _rollout(policy, generator)
    reference = reference_metrics(batch)
    logprobs = torch.as_tensor(reference["_logprob"], dtype=torch.float32)
    with Monitor(tmp_path, run="logprobs") as mon:
        mon.observe(0, logprobs=logprobs, mask=batch["mask"], advantages=batch["advantages"],
                    rewards=batch["rewards"], group_ids=batch["group_ids"])
    row = read_run(tmp_path / "logprobs").steps.iloc[0]
    assert row["surprisal_mean"] == pytest.approx(reference["surprisal_mean"], rel=1e-6)
    assert row["cov_logp_adv"] == pytest.approx(reference["cov_logp_adv"], rel=1e-5)
    assert "entropy_mean" not in row.index or np.isnan(row["entropy_mean"])


def test_given_entropies_are_used_instead_of_recomputing(tmp_path):
    torch.manual_seed(0)
    policy, generator = TinyPolicy(), torch.Generator().manual_seed(10)
    batch = _rollout(policy, generator)
    given = torch.full(batch["mask"].shape, 0.25)
    with Monitor(tmp_path, run="given") as mon:
        mon.observe(0, **batch, entropies=given)
    assert read_run(tmp_path / "given").steps.entropy_mean.iloc[0] == pytest.approx(0.25)


def test_monitoring_does_not_change_training(tmp_path):
    def final_parameters(monitor):
        torch.manual_seed(0)
        policy, generator = TinyPolicy(), torch.Generator().manual_seed(11)
        optimizer = torch.optim.SGD(policy.parameters(), lr=0.3)
        for step in range(3):
            batch = _rollout(policy, generator)
            if monitor is not None:
                monitor.observe(step, **batch)
            _update(policy, optimizer, batch)
        return torch.cat([p.detach().flatten() for p in policy.parameters()])

    with Monitor(tmp_path, run="same") as mon:
        watched = final_parameters(mon)
    assert torch.equal(watched, final_parameters(None))


def test_rank_comes_from_the_environment_when_not_distributed(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    torch.manual_seed(0)
    policy, generator = TinyPolicy(), torch.Generator().manual_seed(12)
    with Monitor(tmp_path, run="ranked") as mon:
        assert mon.rank == 3
        mon.observe(0, **_rollout(policy, generator))
    # rank 3 writes its own chunk files (run.json is rank 0's job)
    written = list((tmp_path / "ranked" / "steps").glob("*.parquet"))
    assert written and all(path.name.startswith("rank-3.") for path in written)


def test_plain_pytorch_example_runs_and_logs_an_entropy_collapse(tmp_path):
    script = Path(__file__).resolve().parents[1] / "examples" / "plain_pytorch.py"
    finished = subprocess.run([sys.executable, str(script), "--steps", "40", "--logdir", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    run = read_run(tmp_path / "plain-pytorch")
    steps = run.steps.set_index("step")
    assert list(steps.index) == list(range(40))
    # the last line the script prints is the last logged row
    final = finished.stdout.strip().splitlines()[-1]
    assert final == (f"final step 39: reward {steps.loc[39, 'reward_mean']:.2f}, "
                     f"entropy {steps.loc[39, 'entropy_mean']:.3f} nats")
    # a fresh 16-token policy starts near log 16 nats and collapses while reward rises
    assert steps.loc[0, "entropy_mean"] > 0.8 * np.log(16)
    assert steps.loc[39, "entropy_mean"] < 0.25 * steps.loc[0, "entropy_mean"]
    assert steps.reward_mean.iloc[-5:].mean() > steps.reward_mean.iloc[:5].mean() + 0.5
    # while it learns, Cov(log pi, A) is positive (why entropy falls)
    assert (steps.cov_logp_adv.iloc[:20] > 0).mean() > 0.8
    assert len(run.samples) == 40 * 64
    assert sorted(run.tokens.step.unique()) == [0, 10, 20, 30]
    # the dH probe every 5th step; on this small policy the logit-space first order tracks it closely
    probed = steps.dropna(subset=["dh_same_batch"])
    assert list(probed.index) == list(range(0, 40, 5))
    assert np.corrcoef(probed["dh_pred_logit"], probed["dh_same_batch"])[0, 1] > 0.9
    assert list(run.tokens.token_text) == [f"t{t}" for t in run.tokens.token_id]
