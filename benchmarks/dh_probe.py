"""Overhead of the dH probe on the demo's TRL GRPO job: ``attach`` with and without ``dh_probe_every``.

Why two measures: the probe costs two no-grad forwards on one step in N, so a per-step median
never sees it and the mean step time of a shared 2-core machine moves by more than the 2% target
from one job to the next. So each probed job also times the probe's own callbacks
(``on_pre_optimizer_step`` + ``on_step_end`` of ``TrlDhProbe``: both forwards, the chunked pass
over both logits and the hand-over to the worker) and divides by that job's training time: the
in-run share, immune to the machine's drift. The with/without ratio of mean step times, from
jobs interleaved round by round (plain, attach, attach + probe, the probe without its shortcut,
plain, ...), is printed next to it as the end-to-end check. "Two forwards" forces a full
forward for the logits before the update too (what the probe falls back to on models with
dropout), to show what the loss-forward shortcut saves.

The job is the demo's: its tiny Llama and character vocabulary, 128 completions per step (16
prompts x 8 generations), at most 4 new tokens; an untrained model and a length reward (the
timing does not depend on what is learnt).

Run::

    python benchmarks/dh_probe.py                      # 60 steps x 3 rounds, probe every 10 steps
    python benchmarks/dh_probe.py --steps 40 --rounds 2 --every 10 --vocab 32000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from overhead import StepTimes, completion_length_reward  # the same job's reward and step clock (run as a script)

from entropymon.demo.grpo import GrpoSettings, build_grpo_trainer
from entropymon.demo.task import build_model, build_tokenizer, split_problems
from entropymon.integrations.trl import attach
from entropymon.integrations.trl_probe import TrlDhProbe


def time_probe_callbacks(probe: TrlDhProbe) -> list[float]:
    """Wrap the probe's two callbacks on the instance; returns the list their durations go to."""
    spent: list[float] = []
    for name in ("on_pre_optimizer_step", "on_step_end"):
        original = getattr(probe, name)

        def timed(*args, _original=original, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent.append(time.perf_counter() - started)

        setattr(probe, name, timed)
    return spent


def time_job(variant: str, steps: int, every: int, vocab: int | None, seed: int, workdir: Path) -> dict:
    tokenizer = build_tokenizer() if vocab is None else build_tokenizer(vocab_size=vocab)
    train, _ = split_problems(seed)
    model = build_model(seed=seed) if vocab is None else build_model(vocab_size=vocab, seed=seed)
    trainer = build_grpo_trainer(model, tokenizer, train, GrpoSettings(steps=steps, seed=seed), str(workdir / "trainer"),
                                 reward_funcs=[completion_length_reward])
    timer = StepTimes()
    trainer.add_callback(timer)
    spent: list[float] = []
    if variant != "plain":
        attach(trainer, logdir=str(workdir / "runs"), dh_probe_every=0 if variant == "attach" else every)
        probes = [c for c in trainer.callback_handler.callbacks if isinstance(c, TrlDhProbe)]
        if probes:
            if variant == "probe, two forwards":  # without the loss-forward shortcut for the logits before
                probes[0].before_source = "forward"
                probes[0].uninstall()
            spent = time_probe_callbacks(probes[0])
    trainer.train()
    # steps 2..N: the first step_end only starts the clock; probe time inside that window only
    probe_seconds = sum(spent)
    return {"step_seconds": timer.seconds, "train_seconds": sum(timer.seconds), "probe_seconds": probe_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary size (default: the demo's characters)")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    warnings.filterwarnings("ignore")

    variants = ("plain", "attach", "probe", "probe, two forwards")
    results: dict[str, list[dict]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="entropymon-dh-probe-") as folder:
        for round_index in range(options.rounds):
            for name in variants:
                workdir = Path(folder) / f"{round_index}-{name}"
                result = time_job(name, options.steps, options.every, options.vocab, options.seed, workdir)
                results[name].append(result)
                share = result["probe_seconds"] / result["train_seconds"]
                print(f"round {round_index + 1}/{options.rounds}  {name:<20} mean step "
                      f"{statistics.mean(result['step_seconds']) * 1e3:7.1f} ms  probe share {share * 100:5.2f}%",
                      flush=True)

    def mean_step(name):
        return statistics.mean(s for r in results[name] for s in r["step_seconds"])

    n_probes = options.rounds * (options.steps // options.every)
    vocab = options.vocab or "the demo's"
    print(f"\nTRL GRPOTrainer, demo model, vocab {vocab}, 128 completions/step, {options.steps} steps x "
          f"{options.rounds} rounds, probe every {options.every} steps (mean over steps 2..N)")
    print(f"{'variant':<26}{'ms/step':>10}{'vs attach':>11}")
    for name in variants:
        print(f"{name:<26}{mean_step(name) * 1e3:>10.1f}{mean_step(name) / mean_step('attach'):>11.3f}")
    for name in ("probe", "probe, two forwards"):
        probe_time = sum(r["probe_seconds"] for r in results[name])
        train_time = sum(r["train_seconds"] for r in results[name])
        print(f"in-run share, {name}: {probe_time:.2f} s in the probe's callbacks of {train_time:.1f} s training = "
              f"{probe_time / train_time * 100:.2f}% (about {probe_time / max(n_probes, 1) * 1e3:.0f} ms per probed step)")


if __name__ == "__main__":
    main()
