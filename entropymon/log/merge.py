"""Background tiered merging of a writer's own chunks, so a long run keeps few files.

Why: one chunk per table and flush means 10,000 files per rank and table after 10,000 steps, and
a reader pays per file. The writer thread (never the training thread) therefore merges its own
chunks as it goes, like an LSM tree: whenever the newest ``FANOUT`` files of its segment are of
one tier, they are rewritten as one file of the next tier. A segment of N chunks then holds at
most ``FANOUT`` files per tier, about ``FANOUT * log_FANOUT(N)`` files (40 for 10,000 chunks at
fanout 8), and every row is rewritten ``log_FANOUT(N)`` times.

Crash safety, with no manifest: the merged rows (the sources' rows, concatenated in order, so a
reader's rules give the same answer) go to a temporary, fsynced, then are renamed to
``rank-R.seg-S.chunk-A-B.parquet``. From that rename on, a reader hides every file of the segment
whose chunk range lies in A..B (layout.py), so a kill -9 before it leaves the sources, after it
leaves the merged file (and perhaps some sources, hidden, deleted by the next writer start).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from entropymon.log import durable
from entropymon.log.schema import FIRST_ROW_KEY, ChunkName

FANOUT = 8
# a file this big is never merged again: per-file costs are negligible next to its size, and
# rewriting it would slow the writer (token chunks of 1M rows are about this size)
FINAL_BYTES = 8 << 20
FINAL_TIER = 1 << 30  # the tier of such a file


@dataclass
class SegmentFile:
    """One published file of the writer's segment: its name, tier, first row and size."""

    name: ChunkName
    tier: int
    first_row: int
    rows: int
    nbytes: int


def first_row_metadata(first_row: int) -> dict[bytes, bytes]:
    return {FIRST_ROW_KEY: str(first_row).encode()}


def plan(files: list[SegmentFile], fanout: int = FANOUT) -> list[SegmentFile] | None:
    """The newest ``fanout`` files when they share one tier (and may be merged), else None."""
    if len(files) < fanout:
        return None
    tail = files[-fanout:]
    tier = tail[0].tier
    if tier >= FINAL_TIER or any(f.tier != tier for f in tail):
        return None
    return tail


def merge(folder: Path, sources: list[SegmentFile]) -> SegmentFile | None:
    """Merge ``sources`` (consecutive files of one segment) into one file; None when they cannot be
    (their column types clash), in which case they become final."""
    tables = [pq.read_table(folder / f.name.filename) for f in sources]
    try:
        merged = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    merged = merged.replace_schema_metadata(None)
    first, last = sources[0].name, sources[-1].name
    target = ChunkName(first.rank, first.segment, first.chunk, last.last)
    temp = folder / target.temp_filename
    try:
        durable.write_parquet_temp(merged, temp, first_row_metadata(sources[0].first_row))
        durable.publish(temp, folder / target.filename)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    # from here on the sources are hidden; deleting them only frees the space
    for source in sources:
        try:
            os.unlink(folder / source.name.filename)
        except OSError:  # hidden all the same; the next writer start deletes it
            pass
    durable.fsync_dir(folder)
    nbytes = (folder / target.filename).stat().st_size
    return SegmentFile(target, tier_of(nbytes, sources[0].tier + 1), sources[0].first_row, merged.num_rows, nbytes)


def tier_of(nbytes: int, tier: int) -> int:
    return FINAL_TIER if nbytes >= FINAL_BYTES else tier
