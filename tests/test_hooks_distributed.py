"""torch.distributed: two real gloo processes each observe half of a fixed dataset; the reader's
rank-combined step metrics equal a single process observing all of it. A monitor failing on one
rank must not hang the other (the Monitor makes no collective call)."""

import multiprocessing
import os
import socket
import traceback

import numpy as np
import pytest
import torch
import torch.distributed as dist

from entropymon.hooks.monitor import Monitor
from entropymon.log.reader import read_run

WORLD, STEPS, GROUPS, GROUP_SIZE, LENGTH, VOCAB = 2, 3, 4, 4, 6, 13
BATCH = GROUPS * GROUP_SIZE
COMPARED = ("entropy_mean", "entropy_seq_mean", "cov_logp_adv", "cov_logp_piadv", "reward_mean",
            "zero_std_group_frac", "surprisal_mean", "advantage_mean", "reward_std", "n_tokens")
JOIN_TIMEOUT_S = 120


def make_dataset(seed=0):
    """STEPS batches of (B, T, V) logits with sampled tokens, masks, rewards and GRPO advantages."""
    generator = torch.Generator().manual_seed(seed)
    dataset = []
    for _ in range(STEPS):
        logits = torch.randn(BATCH, LENGTH, VOCAB, generator=generator) * 3  # (B, T, V)
        tokens = torch.randint(0, VOCAB, (BATCH, LENGTH), generator=generator)
        lengths = torch.randint(1, LENGTH + 1, (BATCH,), generator=generator)
        mask = torch.arange(LENGTH)[None, :] < lengths[:, None]
        rewards = torch.randint(0, 2, (BATCH,), generator=generator).float()
        rewards[:GROUP_SIZE] = 1.0  # one zero-std group on rank 0's half
        grouped = rewards.reshape(GROUPS, GROUP_SIZE)
        advantages = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)).flatten()
        dataset.append(dict(logits=logits, token_ids=tokens, mask=mask, rewards=rewards, advantages=advantages,
                            group_ids=torch.arange(GROUPS).repeat_interleave(GROUP_SIZE)))
    return dataset


def rank_half(batch, rank):
    """Rank r observes groups r*G/2 .. (r+1)*G/2 - 1 (whole groups, as a GRPO sampler gives them)."""
    rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
    return {name: value[rows] for name, value in batch.items()}


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank, port, logdir, failing_rank, results):
    try:
        torch.set_num_threads(1)
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=WORLD)
        errors = 0
        with Monitor(logdir, run="ddp", token_rows_every=1) as mon:
            assert mon.rank == rank  # picked up from the process group
            for step, batch in enumerate(make_dataset()):
                half = rank_half(batch, rank)
                if rank == failing_rank:
                    half["logits"] = half["logits"].long()  # every observation on this rank is bad
                mon.observe(step, **half)
                total = torch.ones(1)
                dist.all_reduce(total)  # the trainer's own collective: both ranks must reach it
            mon.flush()
            errors = mon.errors
        dist.destroy_process_group()
        results.put((rank, "ok", errors))
    except BaseException:  # noqa: BLE001 - report to the parent instead of dying silently
        results.put((rank, "failed", traceback.format_exc()))


def _run_ranks(logdir, failing_rank=None):
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    port = _free_port()
    processes = [context.Process(target=_rank_main, args=(rank, port, str(logdir), failing_rank, results))
                 for rank in range(WORLD)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(JOIN_TIMEOUT_S)
    hung = [process for process in processes if process.is_alive()]
    for process in hung:
        process.kill()
    assert not hung, "a rank hung"
    outcomes = {}
    while not results.empty():
        rank, status, detail = results.get()
        outcomes[rank] = (status, detail)
    assert all(status == "ok" for status, _ in outcomes.values()), outcomes
    assert sorted(outcomes) == list(range(WORLD))
    return {rank: detail for rank, (_, detail) in outcomes.items()}


@pytest.mark.slow
def test_two_gloo_ranks_combine_to_the_single_process_result(tmp_path):
    _run_ranks(tmp_path / "ranks")
    with Monitor(tmp_path / "single", run="one", token_rows_every=1) as mon:
        for step, batch in enumerate(make_dataset()):
            mon.observe(step, **batch)
    distributed = read_run(tmp_path / "ranks" / "ddp")
    single = read_run(tmp_path / "single" / "one").step_metrics.set_index("step")
    assert sorted(distributed.steps["rank"].unique()) == [0, 1]
    combined = distributed.step_metrics.set_index("step")
    assert list(combined.index) == list(range(STEPS))
    for name in COMPARED:
        np.testing.assert_allclose(combined[name], single[name], rtol=1e-6, atol=1e-9, err_msg=name)
    # the per-rank covariances do not average to the global one: the combination is not a mean
    per_rank = distributed.steps.groupby("step").cov_logp_adv.mean()
    assert not np.allclose(per_rank.values, single.cov_logp_adv.values, rtol=1e-3)
    # each rank wrote its own token rows and samples
    assert sorted(distributed.samples["rank"].unique()) == [0, 1]
    assert len(distributed.samples) == STEPS * BATCH


@pytest.mark.slow
def test_a_failing_monitor_on_one_rank_does_not_hang_the_other(tmp_path):
    errors = _run_ranks(tmp_path, failing_rank=1)
    assert errors == {0: 0, 1: STEPS}
    steps = read_run(tmp_path / "ddp").steps
    healthy = steps[steps["rank"] == 0]
    assert list(healthy.step) == list(range(STEPS)) and healthy.entropy_mean.notna().all()
