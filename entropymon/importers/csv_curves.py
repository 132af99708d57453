"""Import a CSV of per-step curves (``step, entropy, performance, performance_kind``).

Why: the simplest way to bring a run from any framework (or a paper's figure) into entropymon is
a table of entropy and performance per step; it is also the format of the public curves the
law fit is checked against. ``performance_kind`` says what the performance column is: a training
reward mean goes to ``reward_mean``, a held-out accuracy to ``eval_accuracy``. Any other numeric
column is kept as ``import/<column>``.

A CSV without ``entropy`` and ``performance`` columns is read as a table of metrics a trainer
logged (veRL's ``all_metrics.csv``, a wandb export): its columns are mapped with the names the
TensorBoard and TRL importers know (``actor/entropy`` -> ``entropy_mean``, ``critic/score/mean``
-> ``reward_mean``, one unambiguous validation accuracy -> ``eval_accuracy``, ...). A CSV in
which nothing maps to an entropy or a performance is refused, naming the columns it has.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from entropymon.errors import ImportFormatError
from entropymon.importers.common import IMPORT_PREFIX, ImportedRun, NameMap, Progress, build_imported, write_imported

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
CURVE_COLUMNS = ("entropy", "performance")
# what makes an import worth analysing: an entropy, or a performance the law can be fitted to
ANALYSABLE = ("entropy_mean", "reward_mean", "eval_accuracy")


def _known_names() -> tuple[NameMap, str]:
    """The veRL / OpenRLHF / TRL names the other importers map (TensorBoard tags and TRL's keys)."""
    from entropymon.importers.tensorboard import TENSORBOARD_ACCURACY, TENSORBOARD_NAMES
    from entropymon.importers.trl_output import TRL_ACCURACY, TRL_NAMES

    exact = {column: tuple(dict.fromkeys((*TENSORBOARD_NAMES.exact.get(column, ()), *TRL_NAMES.exact.get(column, ()))))
             for column in (*TENSORBOARD_NAMES.exact, *TRL_NAMES.exact)}
    names = NameMap(exact=exact, patterns=(*TENSORBOARD_NAMES.patterns, *TRL_NAMES.patterns))
    return names, f"(?:{TENSORBOARD_ACCURACY})|(?:{TRL_ACCURACY})"


def read_curves_csv(src) -> ImportedRun:
    """Parse a curves CSV (or a folder holding ``curve.csv``) into an ``ImportedRun``."""
    path = Path(src)
    if path.is_dir():
        path = path / CURVE_FILE
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise ImportFormatError(f"{path}: no such CSV file (expected a curves CSV or a folder with "
                                f"{CURVE_FILE})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ImportFormatError(f"{path}: not a readable CSV ({error})") from None
    if "step" not in frame.columns:
        raise ImportFormatError(f"{path}: expected a 'step' column, got columns {list(frame.columns)}")
    steps = pd.to_numeric(frame["step"], errors="coerce")
    bad = steps.isna() | (steps < 0) | (steps != steps.round()) | (steps.astype(np.float64) >= 2.0**63)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = frame["step"].iloc[row]
        limit = " below 2**63 (steps are int64)" if pd.notna(steps.iloc[row]) and steps.iloc[row] >= 2.0**63 else ""
        raise ImportFormatError(
            f"{path}: row {row + 2}: expected a non-negative integer step{limit}, "
            f"got {value.item() if hasattr(value, 'item') else value!r}"
        )
    if not any(column in frame.columns for column in CURVE_COLUMNS):
        return _read_metrics_table(frame, steps, path)
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


def _read_metrics_table(frame: pd.DataFrame, steps: pd.Series, path: Path) -> ImportedRun:
    """A wide CSV of logged metrics (one column per metric name) mapped with the known names."""
    records = []
    for column in frame.columns:
        if column == "step":
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        records += [(int(step), str(column), float(value)) for step, value in zip(steps, values) if pd.notna(value)]
    names, accuracy = _known_names()
    imported = build_imported("csv", path, records, names, accuracy_pattern=accuracy)
    if not any(column in ANALYSABLE for columns in imported.steps.values() for column in columns):
        shown = [str(c) for c in frame.columns]
        raise ImportFormatError(
            f"{path}: expected curve columns (step, entropy, performance, performance_kind) or metric names "
            f"veRL, OpenRLHF or TRL log (such as actor/entropy, critic/score/mean, train/reward), got "
            f"{len(shown)} columns none of which is an entropy or a performance: {shown[:20]}"
            + (" ..." if len(shown) > 20 else "")
        )
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
