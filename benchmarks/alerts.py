"""Cost of the live alert rules to the training thread: the same seeded Monitor loop with alerts off and on.

Why this shape: the rules read a run's whole history, so one evaluation grows with the run (tens
of milliseconds at a thousand steps); the Monitor runs them on its own thread, at most once every
5 s, and the question is what that costs the *training* thread, which shares the CPU (and, for the
pandas parts, the GIL) with it. The only honest baseline is the same loop, same seed, in the same
process, interleaved round by round (off, on, on-continuously, off, ...) so a noisy shared machine
slows every variant alike. "on, continuously" evaluates again as soon as the previous evaluation
ends (``min_interval_s=0``): the worst case, an upper bound on what the throttled default costs.

The loop is a GRPO-style policy-gradient step on the CPU (a two-layer policy over a 512-token
vocabulary, 64 completions of 16 tokens, 8 per group, rewards that make its entropy fall, so
the collapse rules really fire), with ``Monitor.observe`` given the logits as a user's loop would.
Per-step time is the training thread's wall clock per iteration; the mean (not only the median)
is reported because an evaluation lands on a few steps every 5 s, and the mean is what a run's
length pays. The watcher's own time in ``evaluate`` is summed, to show that it really worked.

Run::

    python benchmarks/alerts.py                   # 1000 steps x 2 rounds (~3 min on 2 cores)
    python benchmarks/alerts.py --steps 400 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from entropymon import Monitor

VOCAB, LENGTH, GROUP_SIZE, PROMPTS, WIDTH = 512, 16, 8, 8, 128
VARIANTS = {"alerts off": None, "alerts on (default)": 5.0, "alerts on, continuously": 0.0}  # -> min_interval_s


class Policy(torch.nn.Module):
    """Logits for every completion position from the prompt id: (B,) -> (B, T, V)."""

    def __init__(self):
        super().__init__()
        self.prompt = torch.nn.Embedding(PROMPTS, WIDTH)
        self.position = torch.nn.Parameter(torch.randn(LENGTH, WIDTH) * 0.1)
        self.hidden = torch.nn.Linear(WIDTH, WIDTH)
        self.head = torch.nn.Linear(WIDTH, VOCAB)

    def forward(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.hidden(torch.tanh(self.prompt(prompt_ids)[:, None, :] + self.position)))
        return self.head(hidden)  # (B, T, V)


def time_loop(min_interval_s: float | None, steps: int, seed: int, logdir: Path) -> dict:
    """Per-step seconds of one seeded loop, and what its alert watcher did."""
    torch.manual_seed(seed)
    policy = Policy()
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    prompt_ids = torch.arange(PROMPTS).repeat_interleave(GROUP_SIZE)  # (B,)
    targets = torch.randint(0, VOCAB, (PROMPTS, LENGTH))
    monitor = Monitor(logdir, run="loop", alerts=min_interval_s is not None, token_rows_every=0)
    watcher = monitor.alert_watcher
    spent: list[float] = []
    if watcher is not None:
        watcher.min_interval_s = min_interval_s
        watcher.write = lambda line: None  # the lines are not what is measured
        evaluate = watcher.evaluate

        def timed_evaluate():
            started = time.perf_counter()
            try:
                return evaluate()
            finally:
                spent.append(time.perf_counter() - started)

        watcher.evaluate = timed_evaluate
    seconds = []
    for step in range(steps):
        started = time.perf_counter()
        logits = policy(prompt_ids)  # (B, T, V)
        with torch.no_grad():
            noise = -torch.log(-torch.log(torch.rand(logits.shape).clamp_min(1e-20)))
            tokens = (logits + noise).argmax(-1)  # (B, T): a sample of softmax(logits) (Gumbel-max)
            rewards = (tokens == targets[prompt_ids]).float().mean(1)  # (B,) share of positions on target
            grouped = rewards.reshape(-1, GROUP_SIZE)
            advantages = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)).flatten()
        monitor.observe(step, logits=logits, token_ids=tokens, advantages=advantages, rewards=rewards,
                        group_ids=prompt_ids)
        logprobs = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)  # (B, T)
        loss = -(advantages[:, None] * logprobs).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - started)
    fired = sorted({a.rule for a in monitor.alerts})
    monitor.close()
    return {"seconds": seconds[1:], "evaluations": len(spent), "eval_seconds": sum(spent), "fired": fired,
            "last_eval_ms": spent[-1] * 1e3 if spent else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the training loop (1: the loop keeps to one core, as a "
                             "trainer pinned per core would; more threads oversubscribe a loaded 2-core CPU)")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)

    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="entropymon-alerts-") as folder:
        for round_index in range(options.rounds):
            for index, (name, interval) in enumerate(VARIANTS.items()):
                result = time_loop(interval, options.steps, options.seed, Path(folder) / f"{round_index}-{index}")
                results[name].append(result)
                print(f"round {round_index + 1}/{options.rounds}  {name:<26} mean step "
                      f"{statistics.mean(result['seconds']) * 1e3:6.2f} ms  evaluations {result['evaluations']:4d} "
                      f"({result['eval_seconds']:.1f} s)  fired {result['fired']}", flush=True)
    load_after = os.getloadavg()

    def steps_of(name):
        return np.concatenate([r["seconds"] for r in results[name]])

    base = steps_of("alerts off")
    print(f"\nMonitor loop, vocab {VOCAB}, {PROMPTS * GROUP_SIZE} completions x {LENGTH} tokens, {options.steps} steps x "
          f"{options.rounds} rounds; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'variant':<28}{'mean ms':>9}{'ratio':>8}{'median ms':>11}{'ratio':>8}{'p99 ms':>9}"
          f"{'evals/run':>11}{'eval s/run':>12}{'last eval ms':>14}")
    for name in VARIANTS:
        seconds = steps_of(name)
        runs = results[name]
        print(f"{name:<28}{seconds.mean() * 1e3:>9.2f}{seconds.mean() / base.mean():>8.3f}"
              f"{np.median(seconds) * 1e3:>11.2f}{np.median(seconds) / np.median(base):>8.3f}"
              f"{np.percentile(seconds, 99) * 1e3:>9.2f}{statistics.mean(r['evaluations'] for r in runs):>11.0f}"
              f"{statistics.mean(r['eval_seconds'] for r in runs):>12.2f}"
              f"{statistics.mean(r['last_eval_ms'] for r in runs) if runs[0]['evaluations'] else float('nan'):>14.1f}")


if __name__ == "__main__":
    main()
