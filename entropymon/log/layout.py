"""Which files of a table count: chunks minus those a merge or a finished compaction replaced.

Why: the reader, the compactor and the writer's choice of a fresh segment number all need the
same answer to "what is in this table folder". Two rules hide replaced files, each taking effect
at the instant one rename happens, so a crash before it changes nothing and a crash after it
duplicates nothing:
- a merged chunk ``chunk-A-B`` (the writer's background merge, merge.py) hides every file of its
  segment whose chunk range lies inside A..B;
- a compaction manifest hides the files it replaced once its merged file is in the same listing.
Both are judged on one listing of the folder, never by a later ``exists()``: a file renamed
while the folder was being listed may be missing from the listing, and then what it replaces
must stay visible. Symbolic links are never followed (a link loop or a link out of the run
folder is warned about once and skipped), and segments are claimed atomically (``claim_segment``)
so two writers of one rank never share one.
"""

from __future__ import annotations

import bisect
import json
import os

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from entropymon.log.schema import TABLES, ChunkName, claim_filename, parse_manifest_filename, segment_of

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
        """Whether the merged file exists now (for finishing an interrupted compaction)."""
        return (self.path.parent / self.merged).exists()


@dataclass
class TableFiles:
    """A table folder's contents. ``active``: the chunks a reader reads, oldest first."""

    folder: Path
    active: list[tuple[ChunkName, Path]] = field(default_factory=list)
    hidden: list[tuple[ChunkName, Path]] = field(default_factory=list)  # replaced by a merge or compaction
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
        if folder.is_symlink():
            warn_once(folder, f"{folder}: skipped a table folder that is a symbolic link (links are not followed)")
            return files
        with os.scandir(folder) as listing:
            entries = sorted((entry.name, entry.is_symlink()) for entry in listing)
    except (FileNotFoundError, NotADirectoryError):
        return files
    except OSError as error:
        warn_once(folder, f"{folder}: could not list the table folder ({error})")
        return files
    chunks = []
    for name, is_link in entries:
        path = folder / name
        chunk = ChunkName.parse(name)
        if is_link:
            if chunk is not None or name.endswith((".parquet", ".json")):
                warn_once(path, f"{path}: skipped a symbolic link (links are not followed)")
        elif chunk is not None:
            chunks.append((chunk, path))
        elif parse_manifest_filename(name) is not None:
            manifest = read_manifest(path)
            if manifest is not None:
                files.manifests.append(manifest)
        elif name.startswith(".") and name.endswith(".tmp"):
            files.temporaries.append(path)
        elif name.endswith(".parquet"):
            warn_once(path, f"{path}: skipped a Parquet file whose name is not rank-R.seg-S.chunk-C.parquet")
    listed = {path.name for _, path in chunks}
    hidden_names = {name for m in files.manifests if m.merged in listed for name in m.replaced}
    outers = _outer_ranges([chunk for chunk, _ in chunks if chunk.merged])
    for chunk, path in sorted(chunks):
        covered = path.name in hidden_names or _inside_another(chunk, outers)
        (files.hidden if covered else files.active).append((chunk, path))
    return files


def _outer_ranges(merged: list[ChunkName]) -> dict[tuple[int, int], tuple[list[int], list[int]]]:
    """Per (rank, segment): the starts and ends of the merged ranges no other merged range contains."""
    out: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    for chunk in sorted(merged, key=lambda c: (c.rank, c.segment, c.chunk, -c.last)):
        starts, ends = out.setdefault((chunk.rank, chunk.segment), ([], []))
        if ends and chunk.last <= ends[-1]:
            continue  # inside the previous one (a merge of merges interrupted before deleting)
        starts.append(chunk.chunk)
        ends.append(chunk.last)
    return out


def _inside_another(chunk: ChunkName, outers: dict[tuple[int, int], tuple[list[int], list[int]]]) -> bool:
    ranges = outers.get((chunk.rank, chunk.segment))
    if ranges is None:
        return False
    starts, ends = ranges
    i = bisect.bisect_right(starts, chunk.chunk) - 1
    return i >= 0 and chunk.last <= ends[i] and (starts[i], ends[i]) != (chunk.chunk, chunk.last)


def next_segment(run_path: Path, rank: int) -> int:
    """One more than the largest segment number any file of ``rank`` uses (tables and claims)."""
    largest = -1
    for folder in (run_path, *(run_path / table for table in TABLES)):
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            owner = segment_of(name)
            if owner is not None and owner[0] == rank:
                largest = max(largest, owner[1])
    return largest + 1


def claim_segment(run_path: Path, rank: int) -> tuple[int, int]:
    """A segment number of ``rank`` no other writer (thread or process) has or will get, and the
    open descriptor of its claim file, locked while the writer lives (close it to release).

    The claim is the exclusive creation of ``rank-R.seg-S.claim`` in the run folder (O_EXCL is
    atomic on local file systems and NFS v3+): of two writers trying one S, exactly one wins and
    the other tries the next number. Claims are never deleted, so a number is never reused. The
    lock (``flock``, dropped by the kernel when the process dies, even by kill -9) tells a
    starting writer whether a segment's temporaries belong to a live writer (``segment_in_use``).
    """
    segment = next_segment(run_path, rank)
    while True:
        try:
            fd = os.open(run_path / claim_filename(rank, segment), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            segment += 1
            continue
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # a file system without locks: the claim still holds, liveness falls back to mtimes
        return segment, fd


def segment_in_use(run_path: Path, rank: int, segment: int) -> bool | None:
    """True while a live writer holds the segment's claim, False when none does, None when unknown
    (no claim file: a writer of an older version, or no file locks here)."""
    if fcntl is None:
        return None
    try:
        fd = os.open(run_path / claim_filename(rank, segment), os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops a lock we got
    return False
