"""Supervised warm start of the demo model, greedy held-out accuracy, and the on-disk cache.

Why a warm start: GRPO only learns when some completions in a group are right (otherwise every
group's rewards agree and every advantage is zero). A randomly initialised model never is, so the
demo first trains the tiny model with plain teacher forcing on the training problems until it
solves part of them (greedy accuracy >= 45% on 256 training problems, checked every 10 steps; 190
steps and 49% held-out accuracy with seed 0; left to 700 steps it solves ~98% and RL has nothing
left to sharpen), then hands it to RL. The stopping rule, not a fixed step count, because when
this model "gets" addition depends on the seed: with lr 2e-3, 200 fixed steps gave 50% held-out
accuracy with seed 0 but 4% with seed 1, where GRPO then learned nothing (seed 1 reaches the target
at 730 steps; seed 2 of 0-5 never does within the 1,000-step cap).

The warm-started weights are cached under ``<logdir>/.demo_cache/seed-<seed>/`` (the model in
``save_pretrained`` format and a ``warmstart.json`` with its settings and accuracy), so a second
demo with the same settings starts RL at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from entropymon.demo.task import MAX_ANSWER_TOKENS, PROMPT_LENGTH, Problem, build_model, correctness_reward

CACHE_FORMAT = 2


@dataclass(frozen=True)
class WarmStartSettings:
    """What determines the warm-started weights (the cache key)."""

    seed: int = 0
    steps: int = 1000  # at most; training stops earlier once ``target_accuracy`` is reached
    batch_size: int = 64
    lr: float = 2e-3
    vocab_size: int = 15
    n_heldout: int = 256
    target_accuracy: float | None = 0.45  # greedy accuracy on the first ``n_check`` training problems; None: all steps
    check_every: int = 10
    n_check: int = 256


def encode_examples(tokenizer, problems: list[Problem]) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing batches: ``input_ids`` (N, PROMPT_LENGTH + MAX_ANSWER_TOKENS), right-padded,
    and ``labels`` of the same shape with -100 everywhere except the answer digits and the end token."""
    width = PROMPT_LENGTH + MAX_ANSWER_TOKENS
    input_ids = torch.full((len(problems), width), tokenizer.pad_token_id, dtype=torch.long)  # (N, W)
    labels = torch.full((len(problems), width), -100, dtype=torch.long)  # (N, W)
    for row, problem in enumerate(problems):
        prompt_ids = tokenizer(problem.prompt, add_special_tokens=False).input_ids
        answer_ids = tokenizer(problem.answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        ids = prompt_ids + answer_ids
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, len(prompt_ids) : len(ids)] = torch.tensor(answer_ids)
    return input_ids, labels


def supervised_warm_start(model, tokenizer, problems: list[Problem], settings: WarmStartSettings,
                          on_progress: Callable[[int, float], None] | None = None):
    """Train ``model`` in place with AdamW on teacher-forced answers; returns the model (in eval mode).

    Batches are drawn with a generator seeded from ``settings.seed``, so the result is reproducible.
    ``on_progress(step, loss)`` is called every 100 steps. Training stops early once the greedy
    accuracy on the first ``n_check`` training problems reaches ``target_accuracy`` (see
    ``supervised_steps``).
    """
    supervised_steps(model, tokenizer, problems, settings, on_progress)
    return model


def supervised_steps(model, tokenizer, problems: list[Problem], settings: WarmStartSettings,
                     on_progress: Callable[[int, float], None] | None = None) -> int:
    """``supervised_warm_start``'s training loop; returns how many steps it took.

    The stopping check uses training problems only (greedy decoding, no sampling, so it does not
    change the batches that follow); the held-out set stays unseen until the demo measures it.
    """
    input_ids, labels = encode_examples(tokenizer, problems)
    attention_mask = (input_ids != tokenizer.pad_token_id).long()  # (N, W); pads only at the right end
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr)
    check = problems[: settings.n_check]
    model.train()
    done = 0
    for step in range(1, settings.steps + 1):
        rows = torch.randint(0, len(problems), (settings.batch_size,), generator=generator)  # (B,)
        loss = model(input_ids=input_ids[rows], attention_mask=attention_mask[rows], labels=labels[rows]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = step
        if on_progress is not None and step % 100 == 0:
            on_progress(step, loss.item())
        if (settings.target_accuracy is not None and step % settings.check_every == 0
                and greedy_accuracy(model, tokenizer, check) >= settings.target_accuracy):
            break
    model.eval()
    return done


@torch.no_grad()
def greedy_completions(model, tokenizer, problems: list[Problem], batch_size: int = 512) -> list[str]:
    """The model's greedy completion of each prompt, decoded the way TRL decodes them for rewards.

    At most ``MAX_ANSWER_TOKENS`` tokens, cut after the end token, special tokens skipped. All
    prompts have the same length, so batches need no padding; decoding is a plain argmax loop (no
    sampling, so it never touches the random state that training depends on).
    """
    was_training = model.training
    model.eval()
    completions: list[str] = []
    for start in range(0, len(problems), batch_size):
        chunk = problems[start : start + batch_size]
        ids = torch.tensor([tokenizer(p.prompt, add_special_tokens=False).input_ids for p in chunk])  # (B, P)
        ids = ids.to(next(model.parameters()).device)
        for _ in range(MAX_ANSWER_TOKENS):
            logits = model(input_ids=ids).logits[:, -1, :]  # (B, V)
            ids = torch.cat([ids, logits.argmax(dim=-1, keepdim=True)], dim=1)  # (B, P + t)
        for row in ids[:, PROMPT_LENGTH:].tolist():
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id) + 1]
            completions.append(tokenizer.decode(row, skip_special_tokens=True))
    model.train(was_training)
    return completions


def greedy_accuracy(model, tokenizer, problems: list[Problem]) -> float:
    """Mean correctness reward of the greedy completions: the held-out accuracy the law fit uses."""
    completions = greedy_completions(model, tokenizer, problems)
    rewards = correctness_reward([p.prompt for p in problems], completions, [p.answer for p in problems])
    return sum(rewards) / len(problems)


def load_or_warm_start(cache_root: Path, tokenizer, train: list[Problem], heldout: list[Problem],
                       settings: WarmStartSettings, on_progress: Callable[[int, float], None] | None = None):
    """(model, info): the cached warm-started model when its settings match, else a freshly trained one.

    ``info`` holds the settings, the held-out greedy accuracy, the training seconds and whether the
    cache was used. A cache that cannot be read is retrained and overwritten, never trusted.
    """
    from transformers import LlamaForCausalLM

    folder = Path(cache_root) / f"seed-{settings.seed}"
    meta_path = folder / "warmstart.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") == CACHE_FORMAT and meta.get("settings") == asdict(settings):
                model = LlamaForCausalLM.from_pretrained(folder)
                return model, {**meta, "cached": True}
        except (OSError, ValueError):
            pass
    started = time.perf_counter()
    model = build_model(vocab_size=settings.vocab_size, seed=settings.seed)
    steps_done = supervised_steps(model, tokenizer, train, settings, on_progress=on_progress)
    seconds = time.perf_counter() - started
    meta = {"format": CACHE_FORMAT, "settings": asdict(settings), "steps_done": steps_done,
            "heldout_accuracy": greedy_accuracy(model, tokenizer, heldout), "seconds": round(seconds, 2)}
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    meta_path.write_text(json.dumps(meta, indent=2))
    return model, {**meta, "cached": False}
