"""Overhead of entropymon on a real TRL GRPO job: the same seeded job with and without ``attach``.

Why this shape: the only honest baseline is the same job in the same process, measured in the same
run, interleaved (plain, defaults, token rows, plain, ...) so a noisy shared machine slows every
variant alike. The model is the demo's tiny Llama with a realistic vocabulary (32,000 tokens; the
task's characters keep their ids, the rest are filler tokens), so the per-token work that grows
with the vocabulary is as large as in practice relative to the model's own LM head.

Per-step time is taken between consecutive ``on_step_end`` calls (setup and the first step are
left out) and summarised by the median over all rounds; the monitor's ``close`` (flushing the
last rows, done by ``attach``'s callback when training ends) shows in the "end s" column: the
seconds from the last step's end until ``train()`` returns.

Run::

    python benchmarks/overhead.py                 # 40 steps x 3 rounds
    python benchmarks/overhead.py --steps 20 --rounds 2 --vocab 32000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from transformers import TrainerCallback

from entropymon.demo.grpo import GrpoSettings, build_grpo_trainer
from entropymon.demo.task import build_model, build_tokenizer, split_problems
from entropymon.integrations.trl import attach

VARIANTS = {
    "plain": None,  # no entropymon
    "defaults": {},  # attach() with the Monitor's defaults (token rows every 10 steps)
    "token rows every step": {"token_rows_every": 1, "token_rows_per_step": 32},
}


def completion_length_reward(prompts, completions, **kwargs):
    """A reward with spread for an untrained model: the decoded completion's length in characters / 100."""
    return [len(completion) / 100.0 for completion in completions]


class StepTimes(TrainerCallback):
    """Wall-clock seconds between consecutive optimisation steps."""

    def __init__(self):
        self.last = None
        self.seconds: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self.last is not None:
            self.seconds.append(now - self.last)
        self.last = now


def time_job(variant: dict | None, steps: int, vocab: int, seed: int, workdir: Path) -> tuple[list[float], float]:
    """(per-step seconds, seconds from the last step's end until ``train()`` returned) of one seeded job."""
    tokenizer = build_tokenizer(vocab_size=vocab)
    train, _ = split_problems(seed)
    model = build_model(vocab_size=vocab, seed=seed)
    settings = GrpoSettings(steps=steps, seed=seed, completions_per_step=32)  # the figures in README.md
    trainer = build_grpo_trainer(model, tokenizer, train, settings, str(workdir / "trainer"),
                                 reward_funcs=[completion_length_reward])
    timer = StepTimes()
    trainer.add_callback(timer)
    if variant is not None:
        attach(trainer, logdir=str(workdir / "runs"), **variant)
    trainer.train()
    return timer.seconds, time.perf_counter() - timer.last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=32_000)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    warnings.filterwarnings("ignore")

    per_step: dict[str, list[float]] = {name: [] for name in VARIANTS}
    closing: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="entropymon-overhead-") as folder:
        for round_index in range(options.rounds):
            for name, variant in VARIANTS.items():
                workdir = Path(folder) / f"{round_index}-{len(per_step[name])}-{name.replace(' ', '-')}"
                seconds, close_seconds = time_job(variant, options.steps, options.vocab, options.seed, workdir)
                per_step[name].extend(seconds)
                closing[name].append(close_seconds)
                print(f"round {round_index + 1}/{options.rounds}  {name:<22} median step "
                      f"{statistics.median(seconds) * 1e3:7.1f} ms", flush=True)

    baseline = statistics.median(per_step["plain"])
    print(f"\nTRL GRPOTrainer, tiny Llama with vocab {options.vocab}, 32 completions/step, "
          f"{options.steps} steps x {options.rounds} rounds (median over steps 2..N)")
    print(f"{'variant':<24}{'ms/step':>10}{'ratio':>9}{'overhead':>10}{'end s':>9}")
    for name in VARIANTS:
        median = statistics.median(per_step[name])
        print(f"{name:<24}{median * 1e3:>10.1f}{median / baseline:>9.3f}{(median / baseline - 1) * 100:>9.1f}%"
              f"{statistics.mean(closing[name]):>9.2f}")


if __name__ == "__main__":
    main()
