"""Turning a trainer's logged scalars into steps-table columns (shared by the HF and TRL callbacks).

Why a mapping: a trainer whose internals we do not reach still logs curves such as ``entropy``,
``reward`` and an eval accuracy. Kept under a prefix (``hf/entropy``) they are shown as-is; the
law fit and the dashboard also need them under entropymon's own names (``entropy_mean``,
``reward_mean``, ``eval_accuracy``). A key is renamed only when its meaning is unambiguous:

==========================  ======================  =====================================================
logged key                  entropymon column       why it is the same quantity
==========================  ======================  =====================================================
``entropy``                 ``entropy_mean``        TRL/GRPO-style trainers log the global token-mean
``reward``                  ``reward_mean``         mean reward of the step's completions
``reward_std``              ``reward_std``          standard deviation of those rewards
``frac_reward_zero_std``    ``zero_std_group_frac`` TRL's fraction of groups with equal rewards
``learning_rate``           ``lr``                  the scheduler's learning rate
``eval_accuracy``, or the   ``eval_accuracy``       held-out accuracy (a single ``eval_*acc*`` key only:
only ``eval_*acc*`` key                             two candidates are ambiguous and none is renamed)
==========================  ======================  =====================================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

RENAMES = {
    "entropy": "entropy_mean",
    "reward": "reward_mean",
    "reward_std": "reward_std",
    "frac_reward_zero_std": "zero_std_group_frac",
    "learning_rate": "lr",
}
EVAL_ACCURACY_KEY = re.compile(r"eval_.*acc(uracy)?", re.IGNORECASE)


def numeric_scalars(logs: Mapping | None, skip_prefixes: tuple[str, ...] = ()) -> dict[str, float]:
    """The finite-or-NaN numbers in ``logs`` (bools, strings, lists and None dropped)."""
    scalars = {}
    for name, value in (logs or {}).items():
        if not isinstance(name, str) or name.startswith(skip_prefixes):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a 0-d tensor / numpy scalar
                value = value.item()
            else:
                continue
        scalars[name] = float(value)
    return scalars


def is_training_summary(logs: Mapping | None) -> bool:
    """True for the Trainer's final summary log (``train_runtime`` ...), which is not a step's values."""
    return bool(logs) and "train_runtime" in logs


def prefixed(scalars: Mapping[str, float], prefix: str) -> dict[str, float]:
    """``{"entropy": 0.3}`` -> ``{"trl/entropy": 0.3}`` for prefix ``"trl"``."""
    return {f"{prefix}/{name}": value for name, value in scalars.items()}


def canonical_scalars(scalars: Mapping[str, float]) -> dict[str, float]:
    """The entropymon columns that ``scalars`` unambiguously provide (see the module table)."""
    canonical = {RENAMES[name]: value for name, value in scalars.items()
                 if name in RENAMES and not math.isnan(value)}
    if "eval_accuracy" in scalars:
        canonical["eval_accuracy"] = scalars["eval_accuracy"]
    else:
        candidates = [name for name in scalars if EVAL_ACCURACY_KEY.fullmatch(name)]
        if len(candidates) == 1:
            canonical["eval_accuracy"] = scalars[candidates[0]]
    return canonical
