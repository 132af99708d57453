"""Which rows of a table's chunks are the run's rows: the newest segment wins, step rows merge.

Why a module of its own: the reader and the compactor must apply exactly the same rules, or a
compaction would change what a run reads as. The rules:
- a (rank, step) found in several segments (a restarted process re-did the step) keeps only the
  rows of its newest segment, in every table;
- in the steps table, several rows of one (rank, step) in that segment (metrics logged in
  separate calls) merge into one row, later non-null values winning;
- rows come out ordered by step, then rank, then the order they were written.
Work stays in Arrow where it can (types survive exactly, which compaction needs); only the small
steps table goes through pandas for merging.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from entropymon.log.schema import RANK_COLUMN, STEP_COLUMN
from entropymon.metrics import list_columns

SEGMENT_COLUMN = "__segment"  # provenance of each row while resolving; never returned
_KEYS = [RANK_COLUMN, STEP_COLUMN]


def tag_segment(table: pa.Table, segment: int) -> pa.Table:
    return table.append_column(SEGMENT_COLUMN, pa.array(np.full(table.num_rows, segment, dtype=np.int64)))


def _concat(pieces: list[pa.Table]) -> pa.Table | pd.DataFrame:
    try:
        return pa.concat_tables(pieces, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # a column changed type in a way Arrow will not promote (e.g. number -> text): pandas holds both
        return pd.concat([piece.to_pandas() for piece in pieces], ignore_index=True)


def _keys(data: pa.Table | pd.DataFrame) -> pd.DataFrame:
    if isinstance(data, pa.Table):
        return pd.DataFrame({name: data.column(name).to_numpy() for name in (*_KEYS, SEGMENT_COLUMN)})
    return data[[*_KEYS, SEGMENT_COLUMN]].reset_index(drop=True)


def _select(data, rows: np.ndarray):
    return data.take(pa.array(rows)) if isinstance(data, pa.Table) else data.iloc[rows].reset_index(drop=True)


def _merge_step_rows(data: pa.Table | pd.DataFrame) -> pa.Table | pd.DataFrame:
    frame = data.to_pandas() if isinstance(data, pa.Table) else data
    order = list(frame.columns)
    merged = frame.groupby(_KEYS, sort=False, as_index=False, dropna=False).last()[order]
    if isinstance(data, pd.DataFrame):
        return merged
    try:
        return pa.Table.from_pandas(merged, schema=data.schema, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return merged


def resolve(pieces: list[pa.Table], *, merge_step_rows: bool) -> pa.Table | pd.DataFrame | None:
    """The run's rows from segment-tagged pieces (oldest first), without the segment column.

    Returns an Arrow table, or a DataFrame when column types clash across chunks; None when
    there are no pieces.
    """
    return _resolve(pieces, merge_step_rows, to_pandas=False)[0]


def resolve_frame(pieces: list[pa.Table], *, merge_step_rows: bool,
                  arrow_lists: bool = False) -> tuple[pd.DataFrame | None, bool]:
    """``resolve`` for readers: (the rows as a DataFrame, None without pieces; whether column types
    clashed across chunks). Rows are put in order after the conversion to pandas, where a wide
    table's float columns form one 2-D block and reordering them is one NumPy take instead of an
    Arrow take per column (half the time on the steps table of 64 ranks in benchmarks/dashboard.py).

    ``arrow_lists``: list columns stay Arrow-backed (``metrics.list_columns``) instead of one numpy
    array per row; the reader's tables keep them so and hand users the plain form."""
    data, clash = _resolve(pieces, merge_step_rows, to_pandas=True, arrow_lists=arrow_lists)
    if isinstance(data, pa.Table):
        data = _to_pandas(data, arrow_lists)
    return data, clash


def _to_pandas(data: pa.Table, arrow_lists: bool, order: np.ndarray | None = None) -> pd.DataFrame:
    """``data`` as a DataFrame, its rows in ``order`` (None: as they are)."""
    lists = [field.name for field in data.schema if list_columns.is_list_type(field.type)] if arrow_lists else []
    if not lists:
        frame = data.to_pandas()
        return frame if order is None else frame.take(order).reset_index(drop=True)
    # list columns are put in order by Arrow, after joining their chunks (one per file): over 64
    # chunks its take cost 1.2 s per histogram column at 64 ranks x 10k steps, over one 0.2 s, and
    # pandas' take of the Arrow-backed column 0.8 s
    frame = data.drop_columns(lists).to_pandas()
    if order is not None:
        frame = frame.take(order).reset_index(drop=True)
    indices = None if order is None else pa.array(order)
    for name in lists:
        column = data.column(name).combine_chunks()
        column = column if indices is None else column.take(indices)
        frame.insert(data.schema.get_field_index(name), name, pd.arrays.ArrowExtensionArray(pa.chunked_array([column])))
    return frame


def _resolve(pieces: list[pa.Table], merge_step_rows: bool, to_pandas: bool, arrow_lists: bool = False):
    if not pieces:
        return None, False
    data = _concat(pieces)
    clash = isinstance(data, pd.DataFrame)
    keys = _keys(data)
    keep = np.ones(len(keys), dtype=bool)
    if keys[SEGMENT_COLUMN].nunique() > 1:
        newest = keys.groupby(_KEYS, sort=False)[SEGMENT_COLUMN].transform("max")
        keep = (keys[SEGMENT_COLUMN] == newest).to_numpy()
    kept = np.flatnonzero(keep)
    order = kept[_step_rank_order(keys[STEP_COLUMN].to_numpy()[kept], keys[RANK_COLUMN].to_numpy()[kept])]
    reorder = len(order) != len(keys) or bool(np.any(order != np.arange(len(keys))))
    data = data.drop_columns([SEGMENT_COLUMN]) if not clash else data.drop(columns=SEGMENT_COLUMN)
    merge = merge_step_rows and _keys_duplicated(data, order if reorder else None)
    if to_pandas and not clash and not merge:
        return _to_pandas(data, arrow_lists, order if reorder else None), False
    if reorder:
        data = _select(data, order)
    if merge:
        data = _merge_step_rows(data)
    return data, clash or isinstance(data, pd.DataFrame)


def _step_rank_order(step: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Stable order by (step, rank); a linear check skips the sort when rows are in order already."""
    if len(step) < 2 or np.all((step[1:] > step[:-1]) | ((step[1:] == step[:-1]) & (rank[1:] >= rank[:-1]))):
        return np.arange(len(step))
    return np.lexsort((rank, step))


def _keys_duplicated(data: pa.Table | pd.DataFrame, rows: np.ndarray | None = None) -> bool:
    """Whether a (rank, step) appears twice among ``rows`` of ``data`` (all rows when None)."""
    if isinstance(data, pa.Table):
        frame = pd.DataFrame({name: data.column(name).to_numpy() for name in _KEYS})
    else:
        frame = data[_KEYS].reset_index(drop=True)
    if rows is not None:
        frame = frame.iloc[rows]
    return bool(frame.duplicated().any())
