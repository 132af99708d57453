"""The demo's task: two-digit addition with a verifiable answer, a character tokenizer and a tiny Llama.

Why this task: the demo must show a *real* entropy collapse on a 2-core CPU in a few minutes with
nothing downloaded. Two-digit addition ("47+38=" -> "85") has an answer a program can check, so
GRPO gets an exact correctness reward, and a 2-layer model learns part of it from a short
supervised warm start (see ``warmstart.py``), which leaves room for RL to sharpen it.

Everything here is deterministic given a seed and built in code: the tokenizer (a character-level
``tokenizers`` WordLevel model wrapped as a ``PreTrainedTokenizerFast``) and the model (a
``transformers.LlamaConfig``). ``vocab_size`` can be raised (e.g. to 32,000 for the overhead
benchmark): the extra ids are unused filler tokens, so the task tokens keep their ids and the
entropy is computed over a realistic vocabulary.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from entropymon.errors import InputError

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
TASK_CHARS = list("0123456789+=")
SPECIAL_TOKENS = [PAD, BOS, EOS]
BASE_VOCAB = SPECIAL_TOKENS + TASK_CHARS  # 15 tokens; ids 0..14
OPERAND_RANGE = (10, 99)  # two-digit operands, inclusive
PROMPT_LENGTH = 6  # "ab+cd=": every prompt has the same length, so no prompt padding is needed
MAX_ANSWER_TOKENS = 4  # at most 3 digits (99+99=198) and the end-of-sequence token


@dataclass(frozen=True)
class Problem:
    """One addition problem: ``prompt`` is what the model sees, ``answer`` the exact expected text."""

    a: int
    b: int

    @property
    def prompt(self) -> str:
        return f"{self.a}+{self.b}="

    @property
    def answer(self) -> str:
        return str(self.a + self.b)


def all_problems() -> list[Problem]:
    """Every two-digit addition problem, in a fixed order (8,100 of them)."""
    low, high = OPERAND_RANGE
    return [Problem(a, b) for a in range(low, high + 1) for b in range(low, high + 1)]


def split_problems(seed: int = 0, n_heldout: int = 256) -> tuple[list[Problem], list[Problem]]:
    """(train, held-out) problems: a seeded shuffle, the first ``n_heldout`` held out.

    The held-out set never appears in the warm start or in GRPO prompts, so ``eval_accuracy`` on it
    is the law's true R rather than a training reward.
    """
    problems = all_problems()
    if not 0 < n_heldout < len(problems):
        raise InputError(f"n_heldout: expected an integer in (0, {len(problems)}), got {n_heldout!r}")
    random.Random(seed).shuffle(problems)
    return problems[n_heldout:], problems[:n_heldout]


def extract_answer(completion: str) -> str:
    """The final answer in a completion: its text up to the first non-digit, without spaces."""
    text = completion.replace(" ", "")
    digits = []
    for char in text:
        if not char.isdigit():
            break
        digits.append(char)
    return "".join(digits)


def correctness_reward(prompts, completions, answer, **kwargs) -> list[float]:
    """TRL reward function: 1.0 when the completion's answer equals the dataset's ``answer``, else 0.0.

    The signature follows TRL's contract (``prompts``, ``completions`` and dataset columns as keyword
    arguments). A completion must be exactly the digits of the sum, optionally followed by the end
    token (which TRL strips when decoding): "85" is right, "856" and "8" are wrong.
    """
    return [1.0 if completion.replace(" ", "") == str(expected) else 0.0
            for completion, expected in zip(completions, answer)]


def build_tokenizer(vocab_size: int | None = None):
    """A character tokenizer for the task as a ``PreTrainedTokenizerFast`` (nothing is downloaded).

    Ids 0..14 are ``<pad> <s> </s> 0-9 + =``. With ``vocab_size`` larger than 15, ids 15.. are
    filler tokens ``<unused_K>`` so a model with a realistic vocabulary still decodes every id.
    Encoding adds no special tokens: prompts are the bare characters "47+38=".
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    size = len(BASE_VOCAB) if vocab_size is None else vocab_size
    if size < len(BASE_VOCAB):
        raise InputError(f"vocab_size: expected at least {len(BASE_VOCAB)} (the task's tokens), got {vocab_size!r}")
    vocab = {token: index for index, token in enumerate(BASE_VOCAB)}
    for index in range(len(BASE_VOCAB), size):
        vocab[f"<unused_{index}>"] = index
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=PAD,
        padding_side="left", model_max_length=64,
    )
    return tokenizer


def build_model(vocab_size: int = len(BASE_VOCAB), seed: int = 0, hidden_size: int = 128, num_layers: int = 2,
                num_heads: int = 4):
    """A tiny randomly initialised ``LlamaForCausalLM`` (2 layers, width 128, 4 heads by default)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=32, pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)
