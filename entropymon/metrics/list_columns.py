"""List columns of a DataFrame held by Arrow (``pd.ArrowDtype`` of a list type), and their plain form.

Why: every step row holds two histograms (``entropy_hist`` and ``stat/entropy_hist``, 38 counts
each). As pandas object columns that is one numpy array per row: at 64 ranks x 10,000 steps,
building those 1.28 M arrays was 2 of the 5 s the steps read took, and ``combine_ranks`` spent
another second putting them back into one matrix. Held by Arrow, a list column is two buffers
(offsets and values): nothing is built per row, and summing it per step is one matrix reduction.
The reader keeps list columns that way inside (``Run.step_metrics`` combines from there) and gives
users the plain form (``plain_frame``: an object column of numpy arrays, what ``to_pandas``
gives by default), so ``run.steps`` looks as it always did.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def is_list_type(data_type: pa.DataType) -> bool:
    return pa.types.is_list(data_type) or pa.types.is_large_list(data_type)


def arrow_lists(data_type: pa.DataType):
    """A ``types_mapper`` for ``Table.to_pandas``: list columns stay Arrow-backed, the rest as usual."""
    return pd.ArrowDtype(data_type) if is_list_type(data_type) else None


def _is_arrow_list_dtype(dtype) -> bool:
    return isinstance(dtype, pd.ArrowDtype) and is_list_type(dtype.pyarrow_dtype)


def is_arrow_list(column: pd.Series) -> bool:
    return _is_arrow_list_dtype(column.dtype)


def chunks(column: pd.Series) -> pa.ChunkedArray:
    """The Arrow data behind an Arrow-backed column (no copy)."""
    return column.array.__arrow_array__()


def plain_values(column: pd.Series) -> np.ndarray:
    """An Arrow-backed list column as ``to_pandas`` gives it by default: an object array holding
    one numpy array per row (None where null)."""
    return chunks(column).to_pandas().to_numpy()


def arrow_list_names(frame: pd.DataFrame) -> list:
    """The frame's Arrow-backed list columns."""
    return [name for name, dtype in frame.dtypes.items() if _is_arrow_list_dtype(dtype)]


def plain_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each Arrow-backed list column in its plain form; ``frame`` itself when it has none."""
    arrow = arrow_list_names(frame)
    if not arrow:
        return frame
    return frame.assign(**{name: plain_values(frame[name]) for name in arrow})


def matrix(column: pd.Series) -> np.ndarray | None:
    """An Arrow-backed list column as one (rows, length) int64 matrix; None unless every row holds
    a list of one same length of integers, no value null."""
    data = chunks(column)
    if not pa.types.is_integer(data.type.value_type) or data.null_count or not len(data):
        return None
    lengths = pc.list_value_length(data).to_numpy()
    width = int(lengths[0])
    if width == 0 or (lengths != width).any():
        return None
    flat = pc.list_flatten(data)
    if flat.null_count:
        return None
    return flat.to_numpy().astype(np.int64, copy=False).reshape(len(lengths), width)
