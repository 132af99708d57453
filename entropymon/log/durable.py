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

import pyarrow as pa
import pyarrow.parquet as pq

from entropymon.log.schema import KEY_TYPES

# Parquet options: page checksums let the reader detect a damaged page. Dictionary encoding only
# for the key columns and text: for token ids, positions and floats it halves the write speed
# (measured in benchmarks/writer.py) and zstd-1 compresses them about as well without it.
PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 1


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


def write_parquet_temp(table: pa.Table, temp_path: Path, metadata: dict[bytes, bytes] | None = None) -> None:
    """Write ``table`` to ``temp_path`` with page checksums and fsync it (not yet visible).

    ``metadata`` goes into the file footer's key-value metadata (e.g. the chunk's first row).
    """
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    pq.write_table(
        table,
        temp_path,
        compression=PARQUET_COMPRESSION,
        compression_level=PARQUET_COMPRESSION_LEVEL,
        use_dictionary=_dictionary_columns(table.schema),
        write_page_checksum=True,
        row_group_size=max(table.num_rows, 1),  # one row group: the chunk is the unit of work
    )
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
