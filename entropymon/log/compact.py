"""compact_run: merge each rank's chunk files into one file per table, crash-safely.

Why: a long run leaves thousands of small chunks (one per flush), which make reading slow.
Merging must never lose or duplicate a row even if the process dies at any instant, so each
(table, rank) goes through durable stages:

1. ``written``   the merged rows go to ``.rank-R.seg-S.chunk-0.parquet.tmp`` (fsynced; invisible);
2. ``manifest``  ``rank-R.seg-S.manifest.json`` names the merged file and the files it replaces;
                 it is not in effect yet, because the merged file does not exist;
3. ``renamed``   the temporary is renamed into place: from this instant the reader reads the
                 merged file and ignores the replaced ones (layout.py), deleted or not;
4. ``deleted``   the replaced files are deleted;
5. ``done``      the manifest is deleted.

S is a new segment, larger than any the rank used, so the merged rows rank as newest, like
the rows they hold would. A later compact_run first finishes or rolls back an interrupted one.
A live run (a writer holds it) is refused.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from entropymon.errors import InputError
from entropymon.log import durable, meta
from entropymon.log.cache import TABLE_CACHE
from entropymon.log.layout import TableFiles, claim_segment, scan_table, warn_once
from entropymon.log.merge import first_row_metadata
from entropymon.log.reader import read_pieces, read_run
from entropymon.log.resolve import resolve
from entropymon.log.schema import TABLES, ChunkName, manifest_filename, segment_of

STAGES = ("written", "manifest", "renamed", "deleted", "done")


@dataclass
class CompactionResult:
    """What compact_run did: files merged away, merged files written, and ``recovered``: how many
    interrupted compactions (or crashed writers' temporaries) it finished or cleaned up first."""

    path: Path
    replaced: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    recovered: int = 0


def compact_run(path, *, on_stage: Callable[[str, str, int], None] | None = None) -> CompactionResult:
    """Merge every rank's chunks of every table of the run at ``path`` into one file each.

    ``on_stage(table, stage, rank)`` is called after each durable stage (STAGES), e.g. to show
    progress. Raises RunNotFoundError / LogFormatError for a missing run, InputError for a live one.
    """
    run = read_run(path)
    if run.is_live:
        beat = meta.newest_heartbeat(run.path)
        age = "no heartbeat" if beat is None else f"heartbeat {time.time() - beat:.0f} s old"
        raise InputError(f"path: {run.path} is still being written (status running, {age}); "
                         "compact it after its writer closes")
    report = on_stage or (lambda table, stage, rank: None)
    result = CompactionResult(run.path)
    for table in TABLES:
        result.recovered += _finish_interrupted(scan_table(run.path / table))
    ranks = sorted({chunk.rank for table in TABLES for chunk, _ in scan_table(run.path / table).active})
    claims = {rank: claim_segment(run.path, rank) for rank in ranks}  # a writer starting now gets a later one
    try:
        for table in TABLES:
            for rank in ranks:
                _compact_one(run.path / table, table, rank, claims[rank][0], result, report)
    finally:
        for _, fd in claims.values():
            os.close(fd)
    return result


def _finish_interrupted(files: TableFiles) -> int:
    """Complete manifests in effect, drop the others and stale temporaries.

    Returns how many interrupted operations (one per rank and segment) were finished or undone.
    """
    interrupted = set()
    for manifest in files.manifests:
        if manifest.in_effect:
            for name in manifest.replaced:
                (files.folder / name).unlink(missing_ok=True)
        manifest.path.unlink(missing_ok=True)
        interrupted.add((manifest.rank, manifest.segment))
    for temporary in files.temporaries:
        temporary.unlink(missing_ok=True)
        interrupted.add(segment_of(temporary.name))
    if interrupted:
        durable.fsync_dir(files.folder)
    return len(interrupted)


def _compact_one(folder: Path, table: str, rank: int, segment: int, result: CompactionResult,
                 report: Callable[[str, str, int], None]) -> None:
    chunks = [path for chunk, path in scan_table(folder).active if chunk.rank == rank]
    if len(chunks) < 2:
        return
    pieces = read_pieces(folder, rank=rank)
    readable = chunks
    if len(pieces) != len(chunks):
        # unreadable files stay where they are (the reader skips them); merge the readable ones
        readable = [path for path in chunks if TABLE_CACHE.read(path, []) is not None]
    merged = resolve(pieces, merge_step_rows=(table == "steps"))
    if merged is None:
        return
    if isinstance(merged, pd.DataFrame):
        try:
            merged = pa.Table.from_pandas(merged, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            warn_once(folder, f"{folder}: rank {rank} not compacted, its chunks' column types clash ({error})")
            return
    target = ChunkName(rank, segment, 0)
    replaced = sorted(path.name for path in readable)
    durable.write_parquet_temp(merged, folder / target.temp_filename, first_row_metadata(0))
    report(table, "written", rank)
    durable.write_json_atomic({"merged": target.filename, "replaced": replaced, "rows": merged.num_rows},
                              folder / manifest_filename(rank, segment))
    report(table, "manifest", rank)
    durable.publish(folder / target.temp_filename, folder / target.filename)
    report(table, "renamed", rank)
    for name in replaced:
        (folder / name).unlink(missing_ok=True)
    durable.fsync_dir(folder)
    report(table, "deleted", rank)
    (folder / manifest_filename(rank, segment)).unlink(missing_ok=True)
    durable.fsync_dir(folder)
    report(table, "done", rank)
    result.replaced.extend(folder / name for name in replaced)
    result.written.append(folder / target.filename)

