"""Import a CSV of per-step curves (``step, entropy, performance, performance_kind``).

Why: the simplest way to bring a run from any framework (or a paper's figure) into entropymon is
a table of entropy and performance per step; it is also the format of the public curves the
law fit is checked against. ``performance_kind`` says what the performance column is: a training
reward mean goes to ``reward_mean``, a held-out accuracy to ``eval_accuracy``. Any other numeric
column is kept as ``import/<column>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from entropymon.errors import ImportFormatError
from entropymon.importers.common import IMPORT_PREFIX, ImportedRun, Progress, write_imported

# performance_kind value -> registry column
PERFORMANCE_KINDS = {
    "train_reward": "reward_mean",
    "reward": "reward_mean",
    "reward_mean": "reward_mean",
    "val_acc": "eval_accuracy",
    "val_accuracy": "eval_accuracy",
    "eval_accuracy": "eval_accuracy",
    "test_acc": "eval_accuracy",
}
CURVE_FILE = "curve.csv"


def read_curves_csv(src) -> ImportedRun:
    """Parse a curves CSV (or a folder holding ``curve.csv``) into an ``ImportedRun``."""
    path = Path(src)
    if path.is_dir():
        path = path / CURVE_FILE
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise ImportFormatError(f"{path}: no such CSV file (expected a curves CSV or a folder with {CURVE_FILE})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ImportFormatError(f"{path}: not a readable CSV ({error})") from None
    if "step" not in frame.columns:
        raise ImportFormatError(f"{path}: expected a 'step' column, got columns {list(frame.columns)}")
    steps = pd.to_numeric(frame["step"], errors="coerce")
    bad = steps.isna() | (steps < 0) | (steps != steps.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ImportFormatError(
            f"{path}: row {row + 2}: expected a non-negative integer step, got {frame['step'].iloc[row]!r}"
        )
    imported = ImportedRun("csv", path)
    if "performance" in frame.columns:
        _add_performance(imported, frame, steps, path)
    for column in frame.columns:
        if column in ("step", "performance", "performance_kind"):
            continue
        target = "entropy_mean" if column == "entropy" else IMPORT_PREFIX + str(column)
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().sum() == 0:
            continue  # a text column: nothing numeric to keep
        for step, value in zip(steps, values):
            if pd.notna(value):
                imported.add(int(step), target, value, original=str(column))
    return imported


def _add_performance(imported: ImportedRun, frame: pd.DataFrame, steps: pd.Series, path: Path) -> None:
    if "performance_kind" not in frame.columns:
        raise ImportFormatError(
            f"{path}: a 'performance' column needs 'performance_kind' (one of {sorted(PERFORMANCE_KINDS)}) "
            "to say whether it is a training reward or a held-out accuracy"
        )
    kinds = frame["performance_kind"].astype(str).str.strip()
    unknown = sorted(set(kinds) - set(PERFORMANCE_KINDS))
    if unknown:
        raise ImportFormatError(
            f"{path}: performance_kind: expected one of {sorted(PERFORMANCE_KINDS)}, got {unknown}"
        )
    values = pd.to_numeric(frame["performance"], errors="coerce")
    for step, kind, value in zip(steps, kinds, values):
        if pd.notna(value):
            imported.add(int(step), PERFORMANCE_KINDS[kind], value, original=f"performance ({kind})")


def import_csv(src, out, *, progress: Progress | None = None) -> Path:
    """Import a curves CSV as the entropymon run ``out`` (LOGDIR/RUN); returns the run folder."""
    return write_imported(read_curves_csv(src), out, progress=progress)
