"""Names and layout of a run folder: what a file is called and which columns are fixed.

Why a module of its own: the writer, the reader and the compactor must agree byte for byte on
file names (``rank-R.seg-S.chunk-C.parquet``), on which names are temporaries and on the column
types of the key columns; keeping those rules here means the three cannot drift apart.

A run folder::

    run.json                                  run metadata (rank 0 writes it)
    rank-R.heartbeat                          touched by rank R's writer while it runs
    steps/rank-R.seg-S.chunk-C.parquet        one file per flush; a new segment S per process start
    steps/rank-R.seg-S.manifest.json          a compaction in progress (see compact.py)
    steps/.rank-R.seg-S.chunk-C.parquet.tmp   a chunk being written (never read)
    samples/..., tokens/...                   the same layout
"""

from __future__ import annotations

import operator
import os
import re
from dataclasses import dataclass

import pyarrow as pa

from entropymon.errors import InputError

SCHEMA_VERSION = 1
TABLES = ("steps", "samples", "tokens")
RUN_META_FILE = "run.json"

# key columns every table carries, with the type the writer gives them
STEP_COLUMN = "step"
RANK_COLUMN = "rank"
KEY_TYPES = {STEP_COLUMN: pa.int64(), RANK_COLUMN: pa.int32()}
# steps-table columns whose type is not float64
HISTOGRAM_COLUMN = "entropy_hist"
HISTOGRAM_TYPE = pa.list_(pa.int64())

TEMP_SUFFIX = ".tmp"
_CHUNK_RE = re.compile(r"rank-(\d+)\.seg-(\d+)\.chunk-(\d+)\.parquet\Z")
_MANIFEST_RE = re.compile(r"rank-(\d+)\.seg-(\d+)\.manifest\.json\Z")
_SEGMENT_RE = re.compile(r"\.?rank-(\d+)\.seg-(\d+)\.")


@dataclass(frozen=True, order=True)
class ChunkName:
    """The parsed name of a chunk file; ordering is (rank, segment, chunk) = oldest first."""

    rank: int
    segment: int
    chunk: int

    @property
    def filename(self) -> str:
        return f"rank-{self.rank}.seg-{self.segment}.chunk-{self.chunk}.parquet"

    @property
    def temp_filename(self) -> str:
        return f".{self.filename}{TEMP_SUFFIX}"

    @classmethod
    def parse(cls, filename: str) -> ChunkName | None:
        match = _CHUNK_RE.match(filename)
        if match is None:
            return None
        rank, segment, chunk = (int(g) for g in match.groups())
        return cls(rank, segment, chunk)


def manifest_filename(rank: int, segment: int) -> str:
    return f"rank-{rank}.seg-{segment}.manifest.json"


def parse_manifest_filename(filename: str) -> tuple[int, int] | None:
    """(rank, segment) of a compaction manifest's name, or None."""
    match = _MANIFEST_RE.match(filename)
    return None if match is None else (int(match.group(1)), int(match.group(2)))


def segment_of(filename: str) -> tuple[int, int] | None:
    """(rank, segment) of any file that belongs to a segment: chunks, temporaries, manifests."""
    match = _SEGMENT_RE.match(filename)
    return None if match is None else (int(match.group(1)), int(match.group(2)))


def heartbeat_filename(rank: int) -> str:
    return f"rank-{rank}.heartbeat"


def validate_run_name(run: object) -> str:
    """Return ``run`` when it is a usable single folder name, else raise InputError.

    Nested organisation belongs in the ``logdir`` argument, so a name never holds a path
    separator; '.', '..' and names with control characters are refused too.
    """
    if not isinstance(run, str):
        raise InputError(f"run: expected a folder name (str), got {type(run).__name__} {run!r}")
    separators = {"/", "\\", os.sep, os.altsep} - {None}
    problem = None
    if not run.strip():
        problem = "it is empty"
    elif run in (".", ".."):
        problem = "it names the current or parent folder"
    elif any(sep in run for sep in separators):
        problem = "it contains a path separator (put nesting in logdir instead)"
    elif any(ord(ch) < 32 for ch in run):
        problem = "it contains a control character"
    if problem is not None:
        raise InputError(f"run: expected a single folder name, got {run!r}: {problem}")
    return run


def validate_index(name: str, value: object) -> int:
    """``value`` as a Python int when it is an integer >= 0 (numpy integers too), else InputError."""
    if not isinstance(value, bool):
        try:
            number = operator.index(value)
        except TypeError:
            number = -1
        if number >= 0:
            return number
    raise InputError(f"{name}: expected an integer >= 0, got {type(value).__name__} {value!r}")
