"""Import veRL's JSONL file logger (``trainer.logger=[..., "file"]``, ``VERL_FILE_LOGGER_PATH``).

Why: veRL's metrics are the richest public record of RL runs, and its file logger writes one JSON
object per training step: ``{"step": N, "data": {"actor/entropy": ..., ...}}`` (newer versions
add ``elapsed_seconds``). A trainer killed mid-write leaves a truncated last line: it is skipped
with a warning, while a bad line elsewhere means the file is not what we think and is an error.

``VERL_NAMES`` (also used for TensorBoard files veRL wrote) maps veRL's metric names:
``actor/entropy`` -> ``entropy_mean`` (``actor/entropy_loss`` as a fallback: before veRL ~0.3
that key held the mean token entropy, see veRL issue #651), ``critic/score/mean`` ->
``reward_mean`` (the reward function's score, without the in-reward KL penalty),
``response_length/*`` -> ``length_*``, ``actor/lr`` -> ``lr``; one unambiguous validation
accuracy (``val-core/<data>/<acc|reward|score>/mean@1`` or ``val/test_score/<data>``) ->
``eval_accuracy``. Everything else is kept as ``import/<name>``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from entropymon.errors import ImportFormatError
from entropymon.importers.common import NameMap, Progress, as_float, as_step, build_imported, write_imported

VERL_NAMES = NameMap(
    exact={
        "entropy_mean": ("actor/entropy", "actor/entropy_loss"),
        "reward_mean": ("critic/score/mean",),
        "lr": ("actor/lr",),
        "length_mean": ("response_length/mean",),
        "length_max": ("response_length/max",),
        "length_min": ("response_length/min",),
    },
)
VERL_ACCURACY = r"\A(val-core/.+/(acc|reward|score)/mean@1|val/test_score/.+)\Z"


def read_verl_jsonl(src) -> list[tuple[int, str, float]]:
    """``(step, name, value)`` records of a veRL JSONL metrics file (non-numeric values skipped)."""
    path = Path(src)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ImportFormatError(f"{path}: no such file (expected veRL's JSONL metrics file)") from None
    except UnicodeDecodeError as error:
        raise ImportFormatError(f"{path}: not a text file ({error})") from None
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    records: list[tuple[int, str, float]] = []
    for index, (number, line) in enumerate(numbered):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            if index == len(numbered) - 1 and index > 0:
                warnings.warn(f"{path}: line {number} is truncated (a run still writing or killed); skipped it",
                              stacklevel=2)
                break
            raise ImportFormatError(f"{path}: line {number}: expected a JSON object, got invalid JSON "
                                    f"({error})") from None
        except RecursionError:
            raise ImportFormatError(f"{path}: line {number}: expected a JSON object of metrics, got JSON "
                                    "nested too deeply to be one") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("data"), dict):
            raise ImportFormatError(
                f"{path}: line {number}: expected an object {{\"step\": N, \"data\": {{...}}}} "
                f"(veRL's file logger format), got {line[:80]!r}"
            )
        step = as_step(entry.get("step"), where=f"{path}: line {number}")
        for name, value in entry["data"].items():
            number_value = as_float(value)
            if number_value is not None:
                records.append((step, str(name), number_value))
    if not numbered:
        raise ImportFormatError(f"{path}: the file is empty (expected veRL's JSONL metrics)")
    return records


def import_verl(src, out, *, progress: Progress | None = None) -> Path:
    """Import a veRL JSONL metrics file as the entropymon run ``out`` (LOGDIR/RUN)."""
    path = Path(src)
    imported = build_imported("verl", path, read_verl_jsonl(path), VERL_NAMES, accuracy_pattern=VERL_ACCURACY)
    return write_imported(imported, out, progress=progress)
