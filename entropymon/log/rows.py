"""Turn what the trainer logged (dicts, lists of dicts, DataFrames, arrays, tensors) into Arrow tables.

Why a module of its own: this runs on the writer's background thread, never on the training
thread, and it is where loose Python input meets strict column types. Rules:
- steps: ``step`` int64, ``rank`` int32, ``entropy_hist`` list<int64>, numbers float64 (so every
  chunk agrees on a metric's type), strings stay strings; rows with different keys share one
  table with the union of keys (missing values are null).
- samples / tokens: columns keep the dtype they came with (float32 stays float32); scalars are
  broadcast to the batch length; ``step`` and ``rank`` come from the call.
Tensors are recognised by their ``detach`` attribute, so torch is never imported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from entropymon.errors import InputError
from entropymon.log.schema import HISTOGRAM_COLUMN, HISTOGRAM_TYPE, KEY_TYPES, RANK_COLUMN, STEP_COLUMN


def _tensor_to_numpy(value):
    """A torch tensor (found by duck typing) as a numpy array; bf16 goes through float32."""
    value = value.detach().cpu()
    try:
        return value.numpy()
    except TypeError:  # numpy has no bfloat16
        return value.float().numpy()


def _plain(value):
    """A step-metric value as a Python scalar, list, str or None."""
    if value is None or isinstance(value, (float, int, str)):
        return value
    if hasattr(value, "detach"):
        value = _tensor_to_numpy(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _metric_array(name: str, values: list) -> pa.Array:
    if name == HISTOGRAM_COLUMN:
        return pa.array(values, type=HISTOGRAM_TYPE)
    try:
        return pa.array(values, type=pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InputError(f"log_step: metric {name!r}: expected numbers or strings, got {values[:3]!r} ({error})") from None


def step_rows_to_table(rows: Sequence[tuple[int, float, Mapping]], rank: int) -> pa.Table:
    """One table from ``(step, time, metrics)`` rows; a metric that cannot be typed raises InputError."""
    names: dict[str, None] = {}
    for _, _, metrics in rows:
        names.update(dict.fromkeys(metrics))
    names.pop(STEP_COLUMN, None)
    names.pop(RANK_COLUMN, None)
    columns = {
        STEP_COLUMN: pa.array([step for step, _, _ in rows], type=KEY_TYPES[STEP_COLUMN]),
        RANK_COLUMN: pa.array([rank] * len(rows), type=KEY_TYPES[RANK_COLUMN]),
    }
    if "time" not in names:
        columns["time"] = pa.array([stamp for _, stamp, _ in rows], type=pa.float64())
    for name in names:
        values = [_plain(metrics.get(name)) for _, _, metrics in rows]
        columns[name] = _metric_array(name, values)
    return pa.table(columns)


def _rows_as_columns(rows, what: str) -> Mapping:
    """Columns of a dict of columns, a DataFrame, an Arrow table or a list of row dicts."""
    if isinstance(rows, Mapping):
        return rows
    if isinstance(rows, (pa.Table, pa.RecordBatch)):
        return {name: rows.column(name) for name in rows.column_names}
    if hasattr(rows, "columns") and hasattr(rows, "iloc"):  # a pandas DataFrame, without importing pandas
        return {str(name): rows[name].to_numpy() for name in rows.columns}
    if isinstance(rows, Sequence) and not isinstance(rows, (str, bytes)):
        if not all(isinstance(row, Mapping) for row in rows):
            raise InputError(f"{what}: expected a list of dicts, got an element that is not a dict")
        names: dict[str, None] = {}
        for row in rows:
            names.update(dict.fromkeys(row))
        return {name: [row.get(name) for row in rows] for name in names}
    raise InputError(
        f"{what}: expected a dict of columns, a list of dicts or a DataFrame, got {type(rows).__name__}"
    )


def _column(value):
    """(array-like, is_scalar) for one logged column."""
    if hasattr(value, "detach"):
        value = _tensor_to_numpy(value)
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        return value, False
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return value.item(), True
        return value, False
    if isinstance(value, (list, tuple)):
        return value, False
    return value, True


def _arrow(name: str, value, what: str) -> pa.Array | pa.ChunkedArray:
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        return value
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise InputError(f"{what}: column {name!r}: expected a 1-D array, got shape {value.shape}")
    try:
        return pa.array(value)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InputError(f"{what}: column {name!r} cannot be stored ({error})") from None


def column_rows_to_table(step: int, rank: int, rows, what: str) -> pa.Table | None:
    """One table of sample/token rows for ``step``; None when there are no rows."""
    values = {}  # name -> (value, is_scalar), in the order the caller gave
    length = None
    length_from = None
    for name, raw in _rows_as_columns(rows, what).items():
        name = str(name)
        if name in (STEP_COLUMN, RANK_COLUMN):
            continue
        value, is_scalar = _column(raw)
        values[name] = (value, is_scalar)
        if is_scalar:
            continue
        if length is None:
            length, length_from = len(value), name
        elif len(value) != length:
            raise InputError(
                f"{what}: column {name!r} has {len(value)} rows, expected {length} like column {length_from!r}"
            )
    if length is None:
        length = 1 if values else 0
    if length == 0:
        return None
    table = {
        STEP_COLUMN: pa.array(np.full(length, step, dtype=np.int64)),
        RANK_COLUMN: pa.array(np.full(length, rank, dtype=np.int32)),
    }
    for name, (value, is_scalar) in values.items():
        table[name] = _arrow(name, [value] * length if is_scalar else value, what)
    return pa.table(table)


def count_rows(rows) -> int:
    """How many rows a logged batch holds, cheaply and without converting it (1 when unknown)."""
    try:
        if isinstance(rows, Mapping):
            for value in rows.values():
                if hasattr(value, "__len__") and not isinstance(value, (str, bytes)):
                    shape = getattr(value, "shape", None)
                    return int(shape[0]) if shape else len(value)
            return 1
        return len(rows)
    except Exception:
        return 1


_warmed_up = False


def warm_up() -> None:
    """Convert a tiny batch once, so pyarrow's lazy imports (it imports pandas on first use) happen now.

    Why: rows are converted at interpreter exit too (the atexit flush), and Python refuses the
    imports' atexit registrations then; doing them while the process is healthy avoids that.
    """
    global _warmed_up
    if not _warmed_up:
        step_rows_to_table([(0, 0.0, {"entropy_mean": 0.0, HISTOGRAM_COLUMN: [0]})], 0)
        column_rows_to_table(0, 0, {"entropy": np.zeros(1, dtype=np.float32), "text": ["a"]}, "warm_up")
        _warmed_up = True
