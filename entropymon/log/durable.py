"""Atomic, durable file writes: a reader sees either the old file, the whole new file, or nothing.

Why: a trainer can be killed (-9, OOM, pre-emption) at any instant. Every file entropymon makes
is written under a temporary name in the same folder, fsynced, renamed into place with
``os.replace`` (atomic on POSIX and Windows) and the folder fsynced so the rename itself survives
a power loss. Nothing is ever appended to an existing file.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from entropymon.log.schema import KEY_TYPES, STEP_COLUMN

# Parquet options (measured on the token table: benchmarks/writer_options.py, figures in
# benchmarks/README.md's writer section). Page checksums let the reader detect a damaged page.
# LZ4 (written as Parquet's LZ4_RAW codec) encodes about 1.4x faster than zstd-1, for files 1.17x
# bigger that read back faster. Dictionary encoding only for the key columns and text: on token
# ids and positions it costs a third of the write speed for files 1.13x smaller. Min/max
# statistics only for the key columns, the ones readers skip row groups by (cache.py reads the
# step's): on the float and id columns they cost ~10% of the encoding and serve no reader.
PARQUET_COMPRESSION = "lz4"
PARQUET_COMPRESSION_LEVEL = None


def _statistics_columns(schema: pa.Schema) -> list[str]:
    return [field.name for field in schema if field.name in KEY_TYPES]


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    return [field.name for field in schema
            if field.name in KEY_TYPES or pa.types.is_string(field.type) or pa.types.is_large_string(field.type)]


def fsync_dir(folder: Path) -> None:
    """Make renames and deletions inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its renames are durable on their own
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Row groups: a file spanning many steps is cut into groups of at most STEPS_PER_ROW_GROUP steps
# (but at least MIN_ROW_GROUP_ROWS rows), so a one-step read decodes the group holding the step,
# not the file (the reader skips groups by their step statistics). Why by steps: a 64-rank run
# written in one chunk per rank holds every step in every file, and the dashboard's one-step read
# decoded all 64 files; a chunk spanning few steps (a flush's worth, or the 1M-row token chunks of
# benchmarks/writer.py) stays one group, which is what the writer's throughput needs (cutting
# those into 16k-row groups cost 15-25% of the write).
STEPS_PER_ROW_GROUP = 1024
MIN_ROW_GROUP_ROWS = 4096


def row_group_bounds(table: pa.Table) -> list[int]:
    """Row offsets where ``table``'s row groups start, the row count last: [0, ..., num_rows]."""
    rows = table.num_rows
    if rows < 2 * MIN_ROW_GROUP_ROWS or STEP_COLUMN not in table.column_names:
        return [0, rows]
    step = table.column(STEP_COLUMN)
    span = pc.min_max(step)
    low, high = span["min"].as_py(), span["max"].as_py()
    if low is None or high - low < STEPS_PER_ROW_GROUP:
        return [0, rows]
    steps = step.to_numpy()
    bounds, start = [0], 0
    while rows - start >= 2 * MIN_ROW_GROUP_ROWS:
        first = start + MIN_ROW_GROUP_ROWS  # the group holds at least this many rows ...
        # ... and ends where the steps leave the span its first row starts (rows in step order)
        end = first + int(np.searchsorted(steps[first:], steps[start] + STEPS_PER_ROW_GROUP, side="left"))
        if end >= rows - MIN_ROW_GROUP_ROWS:
            break
        bounds.append(end)
        start = end
    bounds.append(rows)
    return bounds


def write_parquet_temp(table: pa.Table, temp_path: Path, metadata: dict[bytes, bytes] | None = None) -> None:
    """Write ``table`` to ``temp_path`` with page checksums and fsync it (not yet visible).

    ``metadata`` goes into the file footer's key-value metadata (e.g. the chunk's first row).
    """
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    options = {"compression": PARQUET_COMPRESSION, "compression_level": PARQUET_COMPRESSION_LEVEL,
               "use_dictionary": _dictionary_columns(table.schema), "write_page_checksum": True,
               "write_statistics": _statistics_columns(table.schema)}
    bounds = row_group_bounds(table)
    if len(bounds) == 2:  # one row group: the chunk is the unit of work
        pq.write_table(table, temp_path, row_group_size=max(table.num_rows, 1), **options)
    else:
        with pq.ParquetWriter(temp_path, table.schema, **options) as writer:
            for start, stop in zip(bounds[:-1], bounds[1:]):
                writer.write_table(table.slice(start, stop - start), row_group_size=stop - start)
    _fsync_file(temp_path)


def publish(temp_path: Path, final_path: Path) -> None:
    """Atomically move a finished temporary file into place and make the rename durable."""
    os.replace(temp_path, final_path)
    fsync_dir(final_path.parent)


def write_parquet_atomic(table: pa.Table, temp_path: Path, final_path: Path,
                         metadata: dict[bytes, bytes] | None = None) -> None:
    write_parquet_temp(table, temp_path, metadata)
    publish(temp_path, final_path)


def write_json_atomic(data: dict, final_path: Path) -> None:
    """Write ``data`` as JSON to ``final_path`` atomically (temporary + rename).

    The temporary's name is unique to the process and thread (``.name.PID.TID.tmp``), so two
    writers replacing one file at the same instant (two processes starting one run) never write
    into each other's temporary: each rename is whole, and the last one wins.
    """
    temp_path = final_path.with_name(f".{final_path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=True)
    try:
        with open(temp_path, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        publish(temp_path, final_path)
    except BaseException:
        try:
            temp_path.unlink(missing_ok=True)
        except OSError:
            pass
        raise
