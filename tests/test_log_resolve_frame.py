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
    # a big block is filled by two threads, half of the columns each, in memory of its own (mmap)
    monkeypatch.setattr(resolve, "PARALLEL_BLOCK_BYTES", 0 if threads else 1 << 62)
    monkeypatch.setattr(resolve, "HUGE_PAGE_FREE_BYTES", 0 if threads else 1 << 62)
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
    assert resolve._float_block_names(with_index.schema) == []
    pd.testing.assert_frame_equal(resolve._to_pandas(with_index, True), with_index.to_pandas())


# -- pieces decoded one at a time (resolve.stream_frame, the reader's path for big tables) ---------
def _pieces(kind: str) -> list[tuple[pa.Table, int]]:
    """(piece, segment) lists of steps-like tables of several ranks, as a run's files hold them."""
    rng = np.random.default_rng(11)
    pieces = []
    for rank in range(3):
        table = wide_table(9, rank).set_column(1, "rank", pa.array(np.full(9, rank, np.int32)))
        pieces += [(table.slice(0, 4), 0), (table.slice(4), 0)]
    if kind == "restart":  # rank 1 re-did steps 3..6 in segment 1: those rows replace segment 0's
        redo = wide_table(9, 7).set_column(1, "rank", pa.array(np.full(9, 1, np.int32))).slice(3, 4)
        pieces.append((redo, 1))
    if kind == "new column":  # a later file holds a float column the others lack
        table, segment = pieces[-1]
        pieces[-1] = (table.append_column("late", pa.array(rng.normal(size=table.num_rows))), segment)
    if kind == "missing column":  # an early file lacks a float and the histogram's bins are null there
        table, segment = pieces[0]
        pieces[0] = (table.drop_columns(["f3"]), segment)
    if kind == "empty piece":
        pieces.insert(2, (pieces[0][0].slice(0, 0), 0))
    return pieces


def _streamed(pieces, merge_step_rows=True):
    tagged = [resolve.tag_segment(table, segment) for table, segment in pieces]
    keys = [t.select(["step", "rank", resolve.SEGMENT_COLUMN]) for t in tagged]
    loads = []

    def load(i):
        loads.append(i)
        return pieces[i][0]

    frame = resolve.stream_frame(keys, [table.schema for table, _ in pieces], load,
                                 merge_step_rows=merge_step_rows, arrow_lists=True)
    return frame, tagged, loads


@pytest.mark.parametrize("batch_bytes", [0, 1 << 30])  # pieces added one at a time, or all together
@pytest.mark.parametrize("kind", ["plain", "restart", "new column", "missing column", "empty piece"])
def test_pieces_placed_one_at_a_time_give_the_frame_of_resolving_them_together(kind, batch_bytes, monkeypatch):
    monkeypatch.setattr(resolve, "STREAM_BATCH_BYTES", batch_bytes)
    pieces = _pieces(kind)
    frame, tagged, loads = _streamed(pieces)
    expected, clash = resolve.resolve_frame(tagged, merge_step_rows=True, arrow_lists=True)
    assert not clash
    assert loads == list(range(len(pieces)))  # each piece decoded once, in turn
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert list(frame.columns) == list(expected.columns)
    if kind == "restart":
        assert frame[(frame["rank"] == 1) & frame["step"].between(3, 6)]["name"].str.startswith("r7").all()


def test_pieces_that_cannot_be_placed_one_at_a_time_are_refused(monkeypatch):
    monkeypatch.setattr(resolve, "STREAM_BATCH_BYTES", 0)  # each piece added on its own
    pieces = _pieces("plain")
    # histograms of another length in a later piece: the values matrix cannot hold them
    table, segment = pieces[3]
    longer = pa.array([[1, 2, 3, 4, 5, 6, 7]] * table.num_rows, type=table.schema.field("hist").type)
    wrong_width = [*pieces[:3], (table.set_column(table.schema.get_field_index("hist"), "hist", longer), segment)]
    assert _streamed(wrong_width)[0] is None
    # added in one batch, the histograms are judged together: ragged, so kept as Arrow lists
    monkeypatch.setattr(resolve, "STREAM_BATCH_BYTES", 1 << 30)
    frame, tagged, _ = _streamed(wrong_width)
    pd.testing.assert_frame_equal(frame, resolve.resolve_frame(tagged, merge_step_rows=True, arrow_lists=True)[0],
                                  check_exact=True)
    # a float column that is text in another piece: the schemas do not unify
    table, segment = pieces[1]
    text = table.set_column(table.schema.get_field_index("f2"), "f2", pa.array(["x"] * table.num_rows))
    assert _streamed([pieces[0], (text, segment)])[0] is None
    # step rows of one (rank, step) logged twice in one segment: they merge, which needs every piece
    assert _streamed([pieces[0], pieces[0]])[0] is None
    assert _streamed([pieces[0], pieces[0]], merge_step_rows=False)[0] is not None


def test_a_list_column_equal_to_an_earlier_one_shares_its_values_until_a_piece_differs():
    pieces = []
    for table, segment in _pieces("plain"):
        hist = table.column("hist")
        table = table.append_column("twin", hist)  # equal everywhere: entropy_hist and stat/entropy_hist
        rank = table.column("rank")[0].as_py() if table.num_rows else 0
        differs = pa.array([[9] * 6] * table.num_rows, type=hist.type) if rank == 2 else hist
        pieces.append((table.append_column("until_rank_2", differs), segment))
    frame, tagged, _ = _streamed(pieces)
    expected, _ = resolve.resolve_frame(tagged, merge_step_rows=True, arrow_lists=True)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    in_memory = resolve._to_pandas(pa.concat_tables([t for t, _ in pieces]), True)
    for built in (frame, in_memory):
        def values(name, built=built):
            return resolve.list_columns.chunks(built[name]).chunk(0).values.buffers()[1].address

        assert values("twin") == values("hist")  # one matrix behind both
        assert values("until_rank_2") != values("hist")  # copied when rank 2's piece differed
    assert frame.loc[frame["rank"] == 2, "until_rank_2"].map(list).tolist() == [[9] * 6] * 9
    assert frame["twin"].map(list).equals(frame["hist"].map(list))


def test_a_big_fresh_array_has_memory_of_its_own_that_lives_as_long_as_its_frame(monkeypatch):
    assert resolve._fresh_array((2, 3), np.int64).flags.owndata  # small: plain np.empty
    monkeypatch.setattr(resolve, "HUGE_PAGE_FREE_BYTES", 0)
    big = resolve._fresh_array((3, 100_000), np.float64)
    assert not big.flags.owndata and big.flags.writeable and big.shape == (3, 100_000)
    big[:] = 1.5
    frame = pd.DataFrame(big.T, copy=False)
    del big
    assert frame.to_numpy().sum() == 1.5 * 300_000  # the frame keeps the mapping alive
