"""Which files of a table count: chunks minus those a finished compaction replaced.

Why: the reader, the compactor and the writer's choice of a fresh segment number all need the
same answer to "what is in this table folder". A compaction manifest counts (hides the files it
replaced) only once its merged file exists: that rename is the instant the compaction takes
effect, so a crash before it changes nothing and a crash after it duplicates nothing.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from entropymon.log.schema import TABLES, ChunkName, parse_manifest_filename, segment_of

_warned: set[tuple[str, int, int]] = set()


def warn_once(path: Path, message: str) -> None:
    """warnings.warn ``message`` once per file version (path, size, mtime)."""
    try:
        info = path.stat()
        key = (str(path), info.st_size, info.st_mtime_ns)
    except OSError:
        key = (str(path), -1, -1)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)


@dataclass
class Manifest:
    """A compaction's record: ``merged`` replaces the files in ``replaced`` (all in one folder)."""

    path: Path
    rank: int
    segment: int
    merged: str
    replaced: list[str]

    @property
    def in_effect(self) -> bool:
        return (self.path.parent / self.merged).exists()


@dataclass
class TableFiles:
    """A table folder's contents. ``active``: the chunks a reader reads, oldest first."""

    folder: Path
    active: list[tuple[ChunkName, Path]] = field(default_factory=list)
    hidden: list[tuple[ChunkName, Path]] = field(default_factory=list)  # replaced by a compaction
    manifests: list[Manifest] = field(default_factory=list)
    temporaries: list[Path] = field(default_factory=list)


def read_manifest(path: Path) -> Manifest | None:
    parsed = parse_manifest_filename(path.name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        merged, replaced = str(data["merged"]), [str(name) for name in data["replaced"]]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        warn_once(path, f"{path}: skipped an unreadable compaction manifest ({error})")
        return None
    return Manifest(path, parsed[0], parsed[1], merged, replaced)


def scan_table(folder: Path) -> TableFiles:
    """List ``folder``; foreign ``*.parquet`` names are warned about (once) and left out."""
    files = TableFiles(folder)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return files
    chunks = []
    for name in names:
        path = folder / name
        chunk = ChunkName.parse(name)
        if chunk is not None:
            chunks.append((chunk, path))
        elif parse_manifest_filename(name) is not None:
            manifest = read_manifest(path)
            if manifest is not None:
                files.manifests.append(manifest)
        elif name.startswith(".") and name.endswith(".tmp"):
            files.temporaries.append(path)
        elif name.endswith(".parquet"):
            warn_once(path, f"{path}: skipped a Parquet file whose name is not rank-R.seg-S.chunk-C.parquet")
    hidden_names = {name for m in files.manifests if m.in_effect for name in m.replaced}
    for chunk, path in sorted(chunks):
        (files.hidden if path.name in hidden_names else files.active).append((chunk, path))
    return files


def next_segment(run_path: Path, rank: int) -> int:
    """One more than the largest segment number any file of ``rank`` uses in any table folder."""
    largest = -1
    for table in TABLES:
        try:
            names = os.listdir(run_path / table)
        except FileNotFoundError:
            continue
        for name in names:
            owner = segment_of(name)
            if owner is not None and owner[0] == rank:
                largest = max(largest, owner[1])
    return largest + 1
