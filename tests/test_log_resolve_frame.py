"""The reader's conversion of resolved rows to pandas (``resolve._to_pandas``): the same frame as
``to_pandas`` followed by a reorder, though a wide table's float columns and histogram lists are
written straight into their place (no second copy of them; a speed change, so these tests check
that nothing else changed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from entropymon.log import resolve
from entropymon.metrics.list_columns import arrow_lists

N_FLOATS = 12  # over resolve.MIN_FLOAT_BLOCK: the float block is built in order


def wide_table(rows: int, seed: int, *, with_nulls: bool = True) -> pa.Table:
    """A steps-like table: keys, float64 columns (some with nulls), an int and a text column, an
    equal-length histogram list column and a ragged list column with a null."""
    rng = np.random.default_rng(seed)
    columns = {"step": pa.array(np.arange(rows, dtype=np.int64)), "rank": pa.array(np.full(rows, seed, np.int32))}
    for i in range(N_FLOATS):
        values = rng.normal(size=rows)
        mask = (rng.random(rows) < 0.2) if with_nulls and i % 3 == 0 else None
        columns[f"f{i}"] = pa.array(values, mask=mask)
        if i == 4:
            columns["count"] = pa.array(rng.integers(0, 9, rows))
            columns["hist"] = pa.array([list(map(int, rng.integers(0, 5, 6))) for _ in range(rows)],
                                       type=pa.list_(pa.field("element", pa.int64())))
        if i == 8:
            columns["name"] = pa.array([f"r{seed}-{j}" for j in range(rows)])
            ragged = [None if j == 1 else list(range(j % 4)) for j in range(rows)]
            columns["ragged"] = pa.array(ragged, type=pa.list_(pa.int64()))
    return pa.table(columns)


def reference(data: pa.Table, arrow: bool, order) -> pd.DataFrame:
    frame = data.to_pandas(types_mapper=arrow_lists if arrow else None)
    return frame if order is None else frame.take(order).reset_index(drop=True)


@pytest.mark.parametrize("threads", [True, False])
@pytest.mark.parametrize("arrow", [True, False])
@pytest.mark.parametrize("kind", ["none", "permute", "drop"])
def test_the_frame_equals_to_pandas_then_take(arrow, kind, threads, monkeypatch):
    # a big block is filled by two threads, half of the columns each
    monkeypatch.setattr(resolve, "PARALLEL_BLOCK_BYTES", 0 if threads else 1 << 62)
    pieces = [wide_table(rows, seed) for seed, rows in enumerate((7, 1, 12))]
    data = pa.concat_tables([pieces[0], pieces[1], pieces[2].slice(0, 5), pieces[2].slice(5)])  # uneven chunks
    rng = np.random.default_rng(3)
    order = {"none": None, "permute": rng.permutation(data.num_rows),
             "drop": np.sort(rng.choice(data.num_rows, size=data.num_rows - 6, replace=False))[::-1].copy()}[kind]
    frame = resolve._to_pandas(data, arrow, order)
    expected = reference(data, arrow, order)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert list(frame.columns) == data.column_names
    # NaN where Arrow held a null, the same bits elsewhere (-0.0 included)
    assert np.array_equal(frame["f0"].to_numpy(), expected["f0"].to_numpy(), equal_nan=True)


def test_few_float_columns_or_pandas_metadata_take_the_plain_conversion():
    narrow = pa.table({"step": [2, 1], "rank": pa.array([0, 0], pa.int32()), "x": [0.5, None]})
    pd.testing.assert_frame_equal(resolve._to_pandas(narrow, True, np.array([1, 0])),
                                  reference(narrow, True, np.array([1, 0])))
    with_index = pa.Table.from_pandas(pd.DataFrame({f"f{i}": [1.0, 2.0] for i in range(N_FLOATS)}, index=[5, 6]))
    assert resolve._float_block_names(with_index) == []
    pd.testing.assert_frame_equal(resolve._to_pandas(with_index, True), with_index.to_pandas())
