"""Import a TRL (or transformers ``Trainer``) output folder.

Why: most GRPO runs people already have are TRL output folders. Two things in them matter:

- ``trainer_state.json``: its ``log_history`` is a list of dicts, one per logging event, each
  with ``step`` (train entries, eval entries with ``eval_`` keys, and a final summary entry).
  The Trainer writes it into every ``checkpoint-N/`` folder (and into the output folder when
  ``save_state()`` is called); the top-level file wins, else the newest checkpoint's.
  Every key is kept as ``trl/<key>`` (TRL's own number, for comparison with entropymon's), and
  known keys are also written under the registry's name: ``entropy`` -> ``entropy_mean``,
  ``reward`` -> ``reward_mean``, ``reward_std``, ``frac_reward_zero_std`` ->
  ``zero_std_group_frac``, ``learning_rate`` -> ``lr``, ``completions/*_length`` ->
  ``length_*``, ``rewards/<f>/mean`` -> ``reward_func/<f>``, and one unambiguous
  accuracy-like ``eval_`` key -> ``eval_accuracy``.
- ``completions/completions_<step>.parquet`` (``log_completions=True``; TRL 1.16 writes columns
  ``step, prompt, completion, <one column per reward function>, <extra columns>, advantage``):
  one sample row per completion. ``group_id`` numbers the distinct prompts of a step (TRL puts a
  prompt's generations next to each other), ``reward`` is the sum of the reward-function columns
  (TRL's default weights of 1; non-default ``reward_weights`` are not recorded in the folder).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from entropymon.errors import ImportFormatError
from entropymon.importers.common import (
    IMPORT_PREFIX,
    NameMap,
    Progress,
    as_float,
    as_step,
    build_imported,
    write_imported,
)

TRL_PREFIX = "trl/"
TRL_NAMES = NameMap(
    exact={
        "entropy_mean": ("entropy",),
        "reward_mean": ("reward",),
        "reward_std": ("reward_std",),
        "zero_std_group_frac": ("frac_reward_zero_std",),
        "lr": ("learning_rate",),
        "length_mean": ("completions/mean_length",),
        "length_max": ("completions/max_length",),
        "length_min": ("completions/min_length",),
    },
    patterns=((r"rewards/(.+)/mean", "reward_func/{0}"),),
    fallback_prefix=TRL_PREFIX,
)
TRL_ACCURACY = r"\Aeval_((.*[/_])?acc(uracy)?(/mean)?|rewards/[^/]*(acc|correct)[^/]*/mean)\Z"
STATE_FILE = "trainer_state.json"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)\Z")
_SAMPLE_KEYS = {"step", "prompt", "completion", "advantage"}


def find_trainer_state(src) -> Path:
    """The trainer_state.json to read for the TRL output folder (or file) ``src``."""
    path = Path(src)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ImportFormatError(f"{path}: no such folder (expected a TRL output folder)")
    if (path / STATE_FILE).is_file():
        return path / STATE_FILE
    checkpoints = sorted(
        (int(match.group(1)), child)
        for child in path.iterdir()
        if (match := _CHECKPOINT.match(child.name)) and (child / STATE_FILE).is_file()
    )
    if checkpoints:
        return checkpoints[-1][1] / STATE_FILE
    raise ImportFormatError(
        f"{path}: found no {STATE_FILE} (looked in the folder and its checkpoint-N/ folders); "
        "call trainer.save_state() or keep a checkpoint"
    )


def read_log_history(state_path: Path) -> list[tuple[int, str, float]]:
    """``(step, key, value)`` for every numeric entry of ``log_history`` (``step``/``epoch`` aside)."""
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ImportFormatError(f"{state_path}: expected JSON, the file is corrupt ({error})") from None
    except UnicodeDecodeError as error:
        raise ImportFormatError(f"{state_path}: not a text file ({error})") from None
    except RecursionError:
        raise ImportFormatError(f"{state_path}: expected a Trainer state, got JSON nested too deeply to be "
                                "one") from None
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise ImportFormatError(f"{state_path}: expected an object with a 'log_history' list (a Trainer state)")
    records: list[tuple[int, str, float]] = []
    for index, entry in enumerate(history):
        if not isinstance(entry, dict):
            raise ImportFormatError(f"{state_path}: log_history[{index}]: expected an object, got {entry!r:.80}")
        step = as_step(entry.get("step"), where=f"{state_path}: log_history[{index}]")
        for key, value in entry.items():
            number = as_float(value)
            if key != "step" and number is not None:
                records.append((step, str(key), number))
    return records


def read_completions(folder: Path) -> pd.DataFrame | None:
    """The sample rows of ``folder/completions/*.parquet``, or None when there are none."""
    files = sorted((folder / "completions").glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return None
    frames = []
    for path in files:
        try:
            frame = pd.read_parquet(path)
        except Exception as error:  # noqa: BLE001  pyarrow raises several types for a damaged file
            raise ImportFormatError(f"{path}: not a readable Parquet file ({error})") from None
        if not {"step", "completion"} <= set(frame.columns):
            raise ImportFormatError(
                f"{path}: expected TRL's completions columns (step, prompt, completion, ...), got {list(frame.columns)}"
            )
        frames.append(_samples_from_completions(frame))
    return pd.concat(frames, ignore_index=True)


def _samples_from_completions(frame: pd.DataFrame) -> pd.DataFrame:
    samples = pd.DataFrame({"step": pd.to_numeric(frame["step"]).astype("int64")})
    samples["sample_id"] = samples.groupby("step").cumcount().astype("int64")
    if "prompt" in frame.columns:
        samples["prompt"] = frame["prompt"].map(_as_text)
        samples["group_id"] = samples.groupby("step")["prompt"].transform(lambda p: pd.factorize(p)[0]).astype("int64")
    samples["text"] = frame["completion"].map(_as_text)
    reward_columns = [
        c for c in frame.columns if c not in _SAMPLE_KEYS and pd.api.types.is_numeric_dtype(frame[c])
    ]
    for column in reward_columns:
        samples[f"reward_func/{column}"] = frame[column].astype("float64")
    if reward_columns:
        samples["reward"] = frame[reward_columns].astype("float64").sum(axis=1, min_count=1)
    if "advantage" in frame.columns:
        samples["advantage"] = frame["advantage"].astype("float64")
    for column in frame.columns:
        if column not in _SAMPLE_KEYS and column not in reward_columns:
            samples[IMPORT_PREFIX + str(column)] = frame[column].map(_as_text)
    return samples


def _as_text(value) -> str:
    """A prompt/completion as text: conversational ones (lists of messages) joined by role."""
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in value)
    return json.dumps(value, default=str)


def import_trl(src, out, *, progress: Progress | None = None) -> Path:
    """Import a TRL output folder (or a trainer_state.json) as the entropymon run ``out``."""
    state_path = find_trainer_state(src)
    imported = build_imported(
        "trl",
        Path(src),
        read_log_history(state_path),
        TRL_NAMES,
        accuracy_pattern=TRL_ACCURACY,
        keep_originals_as=TRL_PREFIX,
    )
    imported.samples = read_completions(Path(src))
    return write_imported(imported, out, progress=progress)
