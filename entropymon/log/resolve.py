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

import mmap
from collections import deque
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from entropymon.log.cache import read_pool
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
    clashed across chunks). Rows are put in order while converting to pandas: a wide table's float
    columns are written into their 2-D block in order (``_FrameBuilder``), the rest reordered by
    one NumPy take instead of an Arrow take per column.

    ``arrow_lists``: list columns stay Arrow-backed (``metrics.list_columns``) instead of one numpy
    array per row; the reader's tables keep them so and hand users the plain form."""
    data, clash = _resolve(pieces, merge_step_rows, to_pandas=True, arrow_lists=arrow_lists)
    if isinstance(data, pa.Table):
        data = _to_pandas(data, arrow_lists)
    return data, clash


def _to_pandas(data: pa.Table, arrow_lists: bool, order: np.ndarray | None = None) -> pd.DataFrame:
    """``data`` as a DataFrame, its rows in ``order`` (None: as they are).

    Wide tables are built straight in that order (``_FrameBuilder``): the float64 columns into the
    one 2-D block pandas holds them in, equal-length integer list columns (the entropy histograms)
    into one values matrix. Why: ``to_pandas`` builds that block, reordering its rows builds a
    second one, and an Arrow take of a list column joins its chunks first and then takes: at 64
    ranks x 10k steps that was 1.8 GB of new memory, and new memory is what costs most on a VM
    (touching a fresh 530 MB took 1.0-1.1 s here, the copy into it 0.1 s). The values are the same
    bits (nulls become NaN, as ``to_pandas`` makes them)."""
    if not _float_block_names(data.schema):
        return _columns_to_pandas(data, arrow_lists, order, None if order is None else _positions(order, data.num_rows))
    builder = _FrameBuilder(data.schema, data.num_rows, order, arrow_lists)
    builder.add(data)  # one part: always placed
    return builder.frame()


def stream_frame(keys: list[pa.Table], schemas: list[pa.Schema], load: Callable[[int], pa.Table | None], *,
                 merge_step_rows: bool, arrow_lists: bool = False) -> pd.DataFrame | None:
    """``resolve_frame`` of pieces that are decoded one at a time: ``keys[i]`` holds piece i's key
    columns tagged with its segment (``tag_segment``), ``schemas[i]`` its schema and ``load(i)``
    decodes all of it (None: it could not be read). The rows are planned from the keys alone, then
    each piece is placed into the frame and let go while the next ones decode on the read pool.

    Why: resolving the decoded pieces together holds all of them next to the frame built from
    them; at 64 ranks x 10k steps that is 1.2 GB of Arrow buffers more, each one new memory
    (about 2.5 ms per MB on the development VM when the host has not backed it yet). Decoded in
    turn, the buffers of one piece reuse the pages of the one before.

    None when the rows cannot be placed piece by piece, and the caller resolves the decoded pieces
    with ``resolve_frame``: step rows to merge, column types that differ across pieces, a table with
    few float columns, histogram lists of another length (or missing) in a later piece."""
    try:
        schema = pa.unify_schemas(schemas)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if SEGMENT_COLUMN in schema.names or not keys or not _float_block_names(schema):
        return None
    key_table = _concat(keys)
    if not isinstance(key_table, pa.Table):
        return None
    order, reorder, merge = _plan(key_table, merge_step_rows)
    if merge:
        return None
    builder = _FrameBuilder(schema, key_table.num_rows, order if reorder else None, arrow_lists)
    batch: list[pa.Table] = []  # decoded pieces of one schema, added together (``_Scatter`` says why)
    batch_bytes = 0
    for piece, part in zip(keys, _in_turn(load, len(keys), STREAM_AHEAD)):
        if part is None or part.num_rows != piece.num_rows:
            return None
        if batch and (batch_bytes >= STREAM_BATCH_BYTES or part.schema != batch[0].schema):
            if not builder.add(pa.concat_tables(batch)):
                return None
            batch, batch_bytes = [], 0
        batch.append(part)
        batch_bytes += part.nbytes
    if batch and not builder.add(pa.concat_tables(batch)):
        return None
    return builder.frame()


def _in_turn(load: Callable[[int], object], count: int, ahead: int = 2):
    """``load(0)``, ``load(1)``, ... in order, the next ``ahead`` loading on the read pool meanwhile."""
    pool, pending = read_pool(), deque()
    for i in range(min(ahead, count)):
        pending.append(pool.submit(load, i))
    for i in range(count):
        future = pending.popleft()
        if i + ahead < count:
            pending.append(pool.submit(load, i + ahead))
        yield future.result()


class _FrameBuilder:
    """The DataFrame of a table of ``rows`` rows (of ``schema``) in ``order``, built from its parts,
    consecutive runs of its rows, added one at a time (``add``), then ``frame()``.

    The float64 columns go straight into their 2-D block and, with ``arrow_lists``, equal-length
    integer lists without nulls into one values matrix each, in output order (a list column is
    judged on the first part holding rows); the other columns are kept per part and converted
    together at the end (a few narrow columns of a wide table). ``add`` returns False when a part
    does not fit what was decided (a histogram of another length, a column of another type): the
    frame cannot be finished then."""

    def __init__(self, schema: pa.Schema, rows: int, order: np.ndarray | None, arrow_lists: bool):
        self.schema, self.order, self.arrow_lists = schema, order, arrow_lists
        self.positions = None if order is None else _positions(order, rows)
        self.size = rows if order is None else len(order)  # rows of the frame
        self.floats = _float_block_names(schema)
        self.block = _fresh_array((len(self.floats), self.size), np.float64)
        # list columns that may get a matrix: None until judged, then the matrix or False
        self.lists: dict[str, np.ndarray | bool | None] = {
            field.name: None for field in schema
            if arrow_lists and list_columns.is_list_type(field.type) and pa.types.is_integer(field.type.value_type)}
        self.twins: dict[str, str] = {}  # list column -> the earlier one whose matrix it shares
        self.others: list[pa.Table] = []  # each part's remaining columns
        self.at = 0  # rows added so far

    def add(self, part: pa.Table) -> bool:
        n = part.num_rows
        where = slice(self.at, self.at + n) if self.positions is None else _Scatter(self.positions[self.at:self.at + n])
        present = set(part.column_names)
        if any(name in present and part.schema.field(name).type != pa.float64() for name in self.floats):
            return False
        # (where each column goes, its part) for every column placed here; a float column the part
        # lacks (written before it existed) is null there, as concatenating makes it
        jobs = [(self.block[i], part.column(name) if name in present else None) for i, name in enumerate(self.floats)]
        for name in self.lists:
            job = self._list_job(name, part)
            if job is False:
                return False
            if job is not None:
                jobs.append(job)

        def place(chosen: list) -> None:
            for out, column in chosen:
                if column is None:
                    _place(out, [np.full(n, np.nan)], where)
                elif out.ndim == 1:
                    _place(out, [chunk.to_numpy(zero_copy_only=False) for chunk in column.chunks], where)
                else:  # a list column's values matrix
                    _place(out, _list_rows(column, out.shape[1]), where)

        # a big frame is filled by two threads, half of its bytes each: most of the time is the kernel
        # handing out the new pages (a part's rows are spread over all of them), which two threads do
        # side by side (NumPy's copies and scatters let go of the GIL)
        if self.block.nbytes >= PARALLEL_BLOCK_BYTES and len(jobs) > 1:
            weights = np.cumsum([out[0].nbytes if out.ndim == 2 else 8 for out, _ in jobs])
            half = int(np.searchsorted(weights, weights[-1] / 2)) + 1
            second = read_pool().submit(place, jobs[half:])
            place(jobs[:half])
            second.result()
        else:
            place(jobs)
        placed = set(self.floats) | {name for name, matrix in self.lists.items() if isinstance(matrix, np.ndarray)}
        self.others.append(part.select([name for name in part.column_names if name not in placed]))
        self.at += n
        return True

    def _list_job(self, name: str, part: pa.Table):
        """(its values matrix, the part's column) for the list column ``name``, judging on the first
        part with rows whether it gets a matrix; None: nothing to place; False: the part's column
        cannot be placed as judged.

        A list column holding the same values as an earlier one shares that one's matrix while every
        part agrees (the steps table logs each entropy histogram twice, as ``entropy_hist`` and as
        ``stat/entropy_hist``: 195 MB less at 64 ranks x 10k steps); at the first part that differs
        it gets a copy of the rows placed so far, which are the same."""
        matrix = self.lists[name]
        if matrix is False or not part.num_rows:
            return None
        column = part.column(name) if name in part.column_names else None
        fits = column is not None and column.type == self.schema.field(name).type
        width = _list_width(column) if fits else None
        if matrix is None:
            if width is None:  # nulls, ragged, missing or another type: with the other columns
                self.lists[name] = False
                return None
            twin = self._twin(name, column, part)
            if twin is not None:
                self.twins[name] = twin
                self.lists[name] = self.lists[twin]
                return None
            matrix = self.lists[name] = _fresh_array((self.size, width), column.type.value_type.to_pandas_dtype())
        if width != matrix.shape[1]:
            return False
        twin = self.twins.get(name)
        if twin is not None:
            if twin in part.column_names and part.column(twin).equals(column):
                return None  # the twin's job places these values
            del self.twins[name]
            matrix = self.lists[name] = matrix.copy()
        return matrix, column

    def _twin(self, name: str, column: pa.ChunkedArray, part: pa.Table) -> str | None:
        """An earlier list column with a matrix of its own that holds ``column``'s values in ``part``."""
        for other, matrix in self.lists.items():
            if other == name:
                return None
            if (isinstance(matrix, np.ndarray) and other not in self.twins and other in part.column_names
                    and part.column(other).equals(column)):
                return other
        return None

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.block.T, columns=self.floats, copy=False)  # block.T.T is the block: no copy
        others = pa.concat_tables(self.others, promote_options="permissive")
        rest = _columns_to_pandas(others, self.arrow_lists, self.order, self.positions)
        rest.index = frame.index
        for name in self.schema.names:  # in schema order: each goes in after the columns before it
            matrix = self.lists.get(name)
            if isinstance(matrix, np.ndarray):
                lists = pa.chunked_array([_list_array(matrix, self.schema.field(name).type)])
                column = pd.arrays.ArrowExtensionArray(lists)
            elif name in rest.columns:
                column = rest[name]
            else:
                continue
            frame.insert(self.schema.get_field_index(name), name, column)
        return frame


def _fresh_array(shape: tuple[int, int], dtype) -> np.ndarray:
    """An uninitialised array in anonymous memory of its own, without transparent huge pages.

    Why: NumPy asks the kernel for transparent huge pages on every array of 4 MB or more. On the
    development VM a fresh huge page comes from memory the host has not backed yet (about 2 ms per
    MB to touch), while ordinary pages mostly reuse what processes freed shortly before: touching
    a fresh 750 MB array (the frame of 64 ranks x 10k steps) took 1.95-2.14 s with huge pages and
    0.41-0.48 s without (4 GB, more than was freed: 9.6-9.8 s against 6.7-7.7 s; no compaction
    stalls counted). The frame is written once and read in passes, so huge pages buy it little."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes < HUGE_PAGE_FREE_BYTES:
        return np.empty(shape, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype).reshape(shape)


def _columns_to_pandas(data: pa.Table, arrow_lists: bool, order: np.ndarray | None,
                       positions: np.ndarray | None) -> pd.DataFrame:
    lists = [field.name for field in data.schema if list_columns.is_list_type(field.type)] if arrow_lists else []
    frame = data.drop_columns(lists).to_pandas()
    if order is not None:
        frame = frame.take(order).reset_index(drop=True)
    for name in lists:
        column = _ordered_list(data.column(name), order, positions)
        frame.insert(data.schema.get_field_index(name), name, pd.arrays.ArrowExtensionArray(column))
    return frame


# tables with fewer float64 columns go through to_pandas: the block pays off on wide tables (the
# steps table: 104 of its 108 columns)
MIN_FLOAT_BLOCK = 8
PARALLEL_BLOCK_BYTES = 64 << 20  # a block this big is filled by two threads
STREAM_BATCH_BYTES = 128 << 20  # stream_frame adds decoded pieces this big together (8 files of 10k steps)
STREAM_AHEAD = 8  # ... while this many pieces decode on the read pool (the next batch)
HUGE_PAGE_FREE_BYTES = 64 << 20  # a frame's arrays this big get memory without huge pages (_fresh_array)


def _float_block_names(schema: pa.Schema) -> list[str]:
    """The float64 columns ``_to_pandas`` writes into their block itself; none when ``to_pandas``
    must do it all (pandas metadata to honour, repeated names, or too few such columns to matter)."""
    if schema.pandas_metadata is not None or len(set(schema.names)) != len(schema.names):
        return []
    names = [field.name for field in schema if pa.types.is_float64(field.type)]
    return names if len(names) >= MIN_FLOAT_BLOCK else []


def _positions(order: np.ndarray, rows: int) -> np.ndarray:
    """Where each row of the table goes in the output (-1: left out): ``order`` inverted."""
    positions = np.full(rows, -1, dtype=np.int64)
    positions[order] = np.arange(len(order))
    return positions


def _place(out: np.ndarray, parts: list[np.ndarray], where: slice | _Scatter | None) -> None:
    """Write ``parts`` (consecutive rows of a column, chunk after chunk) into ``out``: at the rows
    ``where`` slices (None: from row 0 in turn; one copy per chunk, no joined copy of the column)
    or where a ``_Scatter`` sends them."""
    if isinstance(where, _Scatter):
        where.put(out, parts)
        return
    at = 0 if where is None else where.start
    for values in parts:
        out[at:at + len(values)] = values
        at += len(values)


class _Scatter:
    """Row i of a part's rows to output row ``where[i]`` (-1: left out), all chunks in one scatter
    in ascending output order.

    Why not chunk by chunk: the output is ordered by step, then rank, so the chunk of one rank's
    file lands on every 64th row of a 64-rank table; each value written then touches a cache line
    of its own, and the frame's memory was swept once per rank (2.4 s for 64 x 10k rows x 104
    float columns on the development VM). Joined and written in ascending order, the chunks of
    several ranks fill those lines together (0.7-0.9 s for the same block, 8 to 16 ranks at once)."""

    def __init__(self, where: np.ndarray):
        ascending = len(where) < 2 or bool(np.all(where[1:] > where[:-1]))
        order = None if ascending else np.argsort(where, kind="stable")
        ordered = where if order is None else where[order]
        start = int(np.searchsorted(ordered, 0))  # the left-out rows (-1) sort first
        self.rows = ordered[start:]
        self.take = slice(start, None) if order is None else order[start:]

    def put(self, out: np.ndarray, parts: list[np.ndarray]) -> None:
        values = parts[0] if len(parts) == 1 else np.concatenate(parts)
        out[self.rows] = values[self.take]


def _ordered_list(column: pa.ChunkedArray, order: np.ndarray | None, positions: np.ndarray | None) -> pa.ChunkedArray:
    """A list column as one chunk, its rows in ``order``. Equal-length integer lists without nulls
    (the entropy histograms) are written into one values matrix in order; others are joined and
    taken by Arrow (over 64 chunks, one per file, Arrow's take cost 1.2 s per histogram column at
    64 ranks x 10k steps; over one joined chunk 0.2 s)."""
    width = _list_width(column)
    if width is None:
        joined = column.combine_chunks()
        return pa.chunked_array([joined if order is None else joined.take(pa.array(order))])
    rows = len(column) if order is None else len(order)
    values = np.empty((rows, width), dtype=column.type.value_type.to_pandas_dtype())
    _place(values, _list_rows(column, width), None if positions is None else _Scatter(positions))
    return pa.chunked_array([_list_array(values, column.type)])


def _list_rows(column: pa.ChunkedArray, width: int) -> list[np.ndarray]:
    """Each chunk of a list column of lists of length ``width`` as a (rows, width) matrix (no copy)."""
    return [chunk.flatten().to_numpy().reshape(len(chunk), width) for chunk in column.chunks]


def _list_array(values: np.ndarray, list_type: pa.DataType) -> pa.Array:
    """A (rows, width) matrix as a list array of ``list_type`` (each row one list)."""
    rows, width = values.shape
    large = pa.types.is_large_list(list_type)
    offsets = pa.array(np.arange(0, (rows + 1) * width, width, dtype=np.int64 if large else np.int32))
    array_type = pa.LargeListArray if large else pa.ListArray
    return array_type.from_arrays(offsets, pa.array(values.ravel()), type=list_type)


def _list_width(column: pa.ChunkedArray) -> int | None:
    """The one length of every list of an integer list column without nulls (None otherwise)."""
    if not pa.types.is_integer(column.type.value_type) or column.null_count or not len(column):
        return None
    widths = set()
    for chunk in column.chunks:
        if not len(chunk):
            continue
        if chunk.values.null_count:
            return None
        lengths = pc.min_max(pc.list_value_length(chunk))
        widths.update((lengths["min"].as_py(), lengths["max"].as_py()))
        if len(widths) > 1:
            return None
    width = widths.pop() if widths else None
    return width if width else None


def _resolve(pieces: list[pa.Table], merge_step_rows: bool, to_pandas: bool, arrow_lists: bool = False):
    if not pieces:
        return None, False
    data = _concat(pieces)
    clash = isinstance(data, pd.DataFrame)
    order, reorder, merge = _plan(data, merge_step_rows)
    data = data.drop_columns([SEGMENT_COLUMN]) if not clash else data.drop(columns=SEGMENT_COLUMN)
    if to_pandas and not clash and not merge:
        return _to_pandas(data, arrow_lists, order if reorder else None), False
    if reorder:
        data = _select(data, order)
    if merge:
        data = _merge_step_rows(data)
    return data, clash or isinstance(data, pd.DataFrame)


def _plan(data: pa.Table | pd.DataFrame, merge_step_rows: bool) -> tuple[np.ndarray, bool, bool]:
    """(the rows kept, in output order; whether that is not simply every row in turn; whether step
    rows must be merged) of segment-tagged rows (only their key and segment columns are read)."""
    keys = _keys(data)
    keep = np.ones(len(keys), dtype=bool)
    if keys[SEGMENT_COLUMN].nunique() > 1:
        newest = keys.groupby(_KEYS, sort=False)[SEGMENT_COLUMN].transform("max")
        keep = (keys[SEGMENT_COLUMN] == newest).to_numpy()
    kept = np.flatnonzero(keep)
    order = kept[_step_rank_order(keys[STEP_COLUMN].to_numpy()[kept], keys[RANK_COLUMN].to_numpy()[kept])]
    reorder = len(order) != len(keys) or bool(np.any(order != np.arange(len(keys))))
    merge = merge_step_rows and _keys_duplicated(data, order if reorder else None)
    return order, reorder, merge


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
