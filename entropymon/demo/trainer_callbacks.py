"""The demo's two ``TrainerCallback``s: held-out accuracy every N steps, and one progress line every M steps.

Why a held-out accuracy: the law R = -a*e^H + b is about downstream performance; the training
reward is only a proxy for it. Greedy decoding on a fixed held-out set is exact (no sampling, so
it never touches the random state training depends on) and cheap (256 prompts x 4 tokens). It
goes to the run as ``eval_accuracy`` through ``Monitor.log_scalars``, at the step it was measured
after (step 0 is the warm-started model, before any RL step).

Why our own progress lines: the Trainer's own console output is a dict per log call; the demo
prints what shows the collapse instead - reward up, entropy down, accuracy up.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

from transformers import TrainerCallback

from entropymon.demo.task import Problem
from entropymon.demo.warmstart import greedy_accuracy


class HeldOutAccuracyCallback(TrainerCallback):
    """Greedy accuracy on ``problems`` at step 0, every ``every`` steps and at the last step -> ``eval_accuracy``."""

    def __init__(self, monitor, tokenizer, problems: list[Problem], every: int = 10):
        self.monitor = monitor
        self.tokenizer = tokenizer
        self.problems = problems
        self.every = every
        self.history: dict[int, float] = {}  # step -> accuracy

    def measure(self, model, step: int) -> None:
        try:
            accuracy = greedy_accuracy(model, self.tokenizer, self.problems)
        except Exception as error:  # noqa: BLE001 - an evaluation problem must not stop the demo's training
            warnings.warn(f"entropymon demo: held-out evaluation failed at step {step} ({error})", RuntimeWarning,
                          stacklevel=2)
            return
        self.history[step] = accuracy
        self.monitor.log_scalars(step, {"eval_accuracy": accuracy})

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None and state.global_step not in self.history:
            self.measure(model, state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if model is not None and (step % self.every == 0 or step == state.max_steps):
            self.measure(model, step)

    def latest(self) -> tuple[int, float] | None:
        """(step, accuracy) of the last measurement, or None before the first."""
        if not self.history:
            return None
        step = max(self.history)
        return step, self.history[step]


class ProgressLines(TrainerCallback):
    """Prints ``step 40/200  reward 0.62  entropy 0.231 nats  held-out acc 0.55 (step 40)  12 s`` every ``every`` steps.

    Reward and entropy are the means TRL logged since the previous line (TRL's own aggregation).
    """

    def __init__(self, total_steps: int, every: int = 10, accuracy: HeldOutAccuracyCallback | None = None,
                 write: Callable[[str], None] = print):
        self.total_steps = total_steps
        self.every = every
        self.accuracy = accuracy
        self.write = write
        self.started = time.perf_counter()
        self._rewards: list[float] = []
        self._entropies: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if isinstance(logs.get("reward"), (int, float)):
            self._rewards.append(float(logs["reward"]))
        if isinstance(logs.get("entropy"), (int, float)):
            self._entropies.append(float(logs["entropy"]))
        step = state.global_step
        if "train_runtime" in logs or not (step % self.every == 0 or step == self.total_steps):
            return
        self.write(self.line(step))
        self._rewards.clear()
        self._entropies.clear()

    def line(self, step: int) -> str:
        parts = [f"step {step:>{len(str(self.total_steps))}}/{self.total_steps}"]
        if self._rewards:
            parts.append(f"reward {sum(self._rewards) / len(self._rewards):.3f}")
        if self._entropies:
            parts.append(f"entropy {sum(self._entropies) / len(self._entropies):.3f} nats")
        latest = self.accuracy.latest() if self.accuracy is not None else None
        if latest is not None:
            parts.append(f"held-out acc {latest[1]:.3f} (step {latest[0]})")
        parts.append(f"{time.perf_counter() - self.started:.0f} s")
        return "  ".join(parts)
