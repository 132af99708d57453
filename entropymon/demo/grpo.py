"""Building the demo's TRL ``GRPOTrainer``: the settings measured to give a real collapse on a 2-core CPU.

Why one builder: the demo, the end-to-end tests and the overhead benchmark all need the same job
(same data, same reward, same seeds), so "with and without entropymon" compares like with like.
Settings, chosen by a sweep on this kind of 2-core CPU (after the warm start, ~50% held-out
accuracy with seed 0): 128 completions per step (16 prompts x 8 generations; 32 and 64 gave noisier
steps and a weaker fall in the same number of steps), at most 4 new tokens, AdamW at a constant lr
3e-4 (4e-4 and above were unstable; 2e-4 fell less), beta 0 (no reference model), sampling
temperature 1, 500 steps: entropy falls by about two thirds (0.58 -> 0.18 nats, first vs last 20
steps) while the training reward rises 0.25 -> 0.73 and held-out accuracy 0.49 -> 0.83, in about
50 s of GRPO (with transformers 5.24; with 5.25 and one thread the warm start reaches 0.574 and the
baseline goes 0.55 -> 0.17 nats, reward 0.33 -> 0.76, accuracy 0.57 -> 0.84: sample_logs/README.md).
Every log line is kept (``logging_steps=1``) so each step has TRL's own scalars.
The sample runs change one of these at a time (``make_sample_logs``); the lr, beta and TRL's entropy
bonus (fixed, or its adaptive control towards ``entropy_target``: 0.55 nats gives the healthy sample
run) are ``run_demo`` options to try.
"""

from __future__ import annotations

from dataclasses import dataclass

from entropymon.demo.task import MAX_ANSWER_TOKENS, Problem, correctness_reward
from entropymon.errors import InputError


@dataclass(frozen=True)
class GrpoSettings:
    """What the GRPO phase of the demo is run with (stored in ``run.json`` via the trainer's arguments)."""

    steps: int = 500
    seed: int = 0
    temperature: float = 1.0
    completions_per_step: int = 128  # per_device_train_batch_size: 16 prompts x 8 generations
    num_generations: int = 8
    lr: float = 3e-4
    beta: float = 0.0
    entropy_coef: float = 0.0  # TRL's entropy bonus (the starting coefficient when adaptive)
    entropy_target: float | None = None  # nats: TRL's adaptive entropy control (Skywork-OR1) aims here; None: off
    entropy_coef_delta: float = 0.005  # the adaptive coefficient's step per optimizer step (TRL's default)
    logging_steps: int = 1


def check_settings(settings: GrpoSettings) -> GrpoSettings:
    """Fail fast on settings TRL would reject later with a less helpful message."""
    if isinstance(settings.steps, bool) or not isinstance(settings.steps, int) or settings.steps < 1:
        raise InputError(f"steps: expected a positive int, got {settings.steps!r}")
    if isinstance(settings.seed, bool) or not isinstance(settings.seed, int):
        raise InputError(f"seed: expected an int, got {settings.seed!r}")
    if not isinstance(settings.temperature, (int, float)) or not settings.temperature > 0:
        raise InputError(f"temperature: expected a number > 0, got {settings.temperature!r}")
    target = settings.entropy_target
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float)) or not target > 0):
        raise InputError(f"entropy_target: expected a number > 0 (nats) or None, got {target!r}")
    if settings.num_generations < 2 or settings.completions_per_step % settings.num_generations:
        raise InputError(f"completions_per_step: expected a multiple of num_generations={settings.num_generations} "
                         f"(>= 2), got {settings.completions_per_step!r}")
    return settings


def problems_dataset(problems: list[Problem]):
    """A ``datasets.Dataset`` with a ``prompt`` column (plain text) and the ``answer`` the reward checks."""
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [p.prompt for p in problems], "answer": [p.answer for p in problems]})


def grpo_config(settings: GrpoSettings, output_dir: str):
    """``GRPOConfig`` for the demo on the CPU: no checkpoints, no reporting, float32, a constant lr."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=output_dir, use_cpu=True, bf16=False, report_to="none", save_strategy="no",
        max_steps=settings.steps, seed=settings.seed, data_seed=settings.seed,
        per_device_train_batch_size=settings.completions_per_step, num_generations=settings.num_generations,
        max_completion_length=MAX_ANSWER_TOKENS, temperature=float(settings.temperature),
        learning_rate=settings.lr, lr_scheduler_type="constant", beta=settings.beta,
        entropy_coef=settings.entropy_coef, **_adaptive_entropy(settings), logging_steps=settings.logging_steps,
        disable_tqdm=True, dataloader_num_workers=0,
    )


def _adaptive_entropy(settings: GrpoSettings) -> dict:
    """TRL's adaptive entropy control (``use_adaptive_entropy``): the coefficient rises by
    ``entropy_coef_delta`` each optimizer step while entropy is at or below the target and falls
    otherwise, so entropy is held near the target instead of a fixed bonus that has to be tuned per task."""
    if settings.entropy_target is None:
        return {}
    return {"use_adaptive_entropy": True, "entropy_target": float(settings.entropy_target),
            "entropy_coef_delta": float(settings.entropy_coef_delta)}


def build_grpo_trainer(model, tokenizer, problems: list[Problem], settings: GrpoSettings, output_dir: str,
                       reward_funcs=None):
    """A ready-to-train ``GRPOTrainer`` on ``problems``, rewarded by ``reward_funcs`` (default: the exact answer).

    The Trainer's own console printing of every log dict is removed (the demo prints its own lines).
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOTrainer

    check_settings(settings)
    trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs or [correctness_reward],
                          args=grpo_config(settings, output_dir), train_dataset=problems_dataset(problems),
                          processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer
