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

import re
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


def _number(value) -> float | None:
    """``value`` as a float when it is one number (a bool, an int, a float or a 1-element list)."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, (bool, int, float)):
        try:
            return float(value)
        except OverflowError:
            return None
    return None


def _histogram(value) -> list | None:
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    return None


def _metric_array(name: str, values: list, skipped: list[tuple[int, str, object]]) -> pa.Array:
    """One steps-table column; a value that does not fit the column's type becomes null and is
    appended to ``skipped`` as (row index, name, value), so one odd value never costs its row."""
    if name == HISTOGRAM_COLUMN:
        try:
            return pa.array(values, type=HISTOGRAM_TYPE)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            kept = [None if v is None else _histogram(v) for v in values]
            skipped.extend((i, name, v) for i, (v, k) in enumerate(zip(values, kept)) if v is not None and k is None)
            return pa.array(kept, type=HISTOGRAM_TYPE)
    try:
        return pa.array(values, type=pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    try:  # all texts, or all lists of numbers (stat/entropy_hist)
        array = pa.array(values)
        if pa.types.is_string(array.type) or (pa.types.is_list(array.type)
                                               and pa.types.is_integer(array.type.value_type)):
            return array
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
        pass
    present = [v for v in values if v is not None]
    if sum(isinstance(v, (list, tuple)) and len(v) != 1 for v in present) * 2 > len(present):
        # a list column (e.g. stat/entropy_hist): lists of integers
        kept = [None if v is None else _histogram(v) for v in values]
        skipped.extend((i, name, v) for i, (v, k) in enumerate(zip(values, kept)) if v is not None and k is None)
        return pa.array(kept, type=HISTOGRAM_TYPE)
    if sum(isinstance(v, str) for v in present) * 2 > len(present):  # a text column (e.g. a run name)
        kept = [v if isinstance(v, str) or v is None else None for v in values]
        skipped.extend((i, name, v) for i, v in enumerate(values) if v is not None and not isinstance(v, str))
        return string_array(kept)
    kept = [None if v is None else _number(v) for v in values]
    skipped.extend((i, name, v) for i, (v, k) in enumerate(zip(values, kept)) if v is not None and k is None)
    return pa.array(kept, type=pa.float64())


def step_rows_to_table(rows: Sequence[tuple[int, float, Mapping]], rank: int
                       ) -> tuple[pa.Table, list[tuple[int, str, object]]]:
    """One table from ``(step, time, metrics)`` rows, and the values left out as (step, name, value).

    Numbers become float64 and text stays text; a value that fits neither its column's type
    (a list among numbers, a number among texts, a tensor of several elements) is stored as null
    and reported, and the rest of its row and of the flush is kept.
    """
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
    skipped: list[tuple[int, str, object]] = []
    for name in names:
        values = []
        for _, _, metrics in rows:
            try:
                values.append(_plain(metrics.get(name)))
            except Exception as error:  # noqa: BLE001 - an object whose conversion fails is one odd value
                values.append(error)
        columns[str(name)] = _metric_array(str(name), values, skipped)
    return pa.table(columns), [(rows[i][0], name, value) for i, name, value in skipped]


_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean_text(value):
    """A str with lone surrogates (not valid Unicode, so not storable as UTF-8) replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    return value


def string_array(values) -> pa.Array:
    """Text as an Arrow array; lone surrogates become U+FFFD (see ``repaired_texts``)."""
    try:
        return pa.array(values, type=pa.string())
    except UnicodeEncodeError:
        return pa.array([_clean_text(v) for v in values], type=pa.string())


def repaired_texts(values) -> int:
    """How many of ``values`` are strs that are not valid Unicode (they are stored repaired)."""
    count = 0
    for value in values:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                count += 1
    return count


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
    except UnicodeEncodeError:
        repaired = repaired_texts(value)
        array = string_array(value)
        raise RepairedText(name, repaired, array) from None
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InputError(f"{what}: column {name!r} cannot be stored ({error})") from None


class RepairedText(Exception):
    """A text column held strings that are not valid Unicode; ``array`` is the repaired column."""

    def __init__(self, name: str, count: int, array: pa.Array):
        super().__init__(f"column {name!r}: {count} text value(s) were not valid Unicode (lone surrogates); "
                         "stored with U+FFFD in their place")
        self.name, self.count, self.array = name, count, array


def column_rows_to_table(step: int, rank: int, rows, what: str, notes: list[str] | None = None) -> pa.Table | None:
    """One table of sample/token rows for ``step``; None when there are no rows.

    Text that is not valid Unicode is stored repaired (U+FFFD) and described in ``notes``.
    """
    notes = [] if notes is None else notes
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
        try:
            table[name] = _arrow(name, [value] * length if is_scalar else value, what)
        except RepairedText as repaired:
            table[name] = repaired.array
            notes.append(str(repaired))
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
    except Exception:  # noqa: BLE001 - only counts rows for dropped_rows: a guess of 1 beats failing the call
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
