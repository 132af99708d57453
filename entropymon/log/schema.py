"""Names and layout of a run folder: what a file is called and which columns are fixed.

Why a module of its own: the writer, the reader and the compactor must agree byte for byte on
file names (``rank-R.seg-S.chunk-C.parquet``), on which names are temporaries and on the column
types of the key columns; keeping those rules here means the three cannot drift apart.

A run folder::

    run.json                                  run metadata (rank 0 writes it)
    rank-R.heartbeat                          touched by rank R's writer while it runs
    rank-R.seg-S.claim                        the writer that owns segment S of rank R (O_EXCL claim)
    steps/rank-R.seg-S.chunk-C.parquet        one file per flush; a new segment S per writer start
    steps/rank-R.seg-S.chunk-A-B.parquet      the writer's merge of its own chunks A..B (merge.py)
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
from entropymon.registry import RANK_COLUMN, STEP_COLUMN

SCHEMA_VERSION = 1
TABLES = ("steps", "samples", "tokens")
RUN_META_FILE = "run.json"

# key columns every table carries (named in the registry), with the type the writer gives them
KEY_TYPES = {STEP_COLUMN: pa.int64(), RANK_COLUMN: pa.int32()}
# steps-table columns whose type is not float64
HISTOGRAM_COLUMN = "entropy_hist"
HISTOGRAM_TYPE = pa.list_(pa.int64())

TEMP_SUFFIX = ".tmp"
_CHUNK_RE = re.compile(r"rank-(\d+)\.seg-(\d+)\.chunk-(\d+)(?:-(\d+))?\.parquet\Z")
_CLAIM_RE = re.compile(r"rank-(\d+)\.seg-(\d+)\.claim\Z")
# Parquet footer key: the row offset of a chunk's first row in its segment's stream of rows of
# that table (the writer counts rows per table and segment); lets a reader take only new rows
FIRST_ROW_KEY = b"entropymon.first_row"
_MANIFEST_RE = re.compile(r"rank-(\d+)\.seg-(\d+)\.manifest\.json\Z")
_SEGMENT_RE = re.compile(r"\.?rank-(\d+)\.seg-(\d+)\.")


@dataclass(frozen=True, order=True)
class ChunkName:
    """The parsed name of a chunk file; ordering is (rank, segment, chunk, last) = oldest first.

    A written chunk holds one flush (``last == chunk``); a merged file holds the rows of the
    chunks ``chunk..last`` of its segment, in order, and hides any file whose range it contains.
    """

    rank: int
    segment: int
    chunk: int
    last: int = -1  # -1: same as chunk

    def __post_init__(self):
        if self.last < self.chunk:
            object.__setattr__(self, "last", self.chunk)

    @property
    def filename(self) -> str:
        span = f"{self.chunk}" if self.last == self.chunk else f"{self.chunk}-{self.last}"
        return f"rank-{self.rank}.seg-{self.segment}.chunk-{span}.parquet"

    @property
    def merged(self) -> bool:
        return self.last > self.chunk

    def contains(self, other: ChunkName) -> bool:
        """True when ``other`` is another file of the same segment inside this one's chunk range."""
        return (other != self and (other.rank, other.segment) == (self.rank, self.segment)
                and self.chunk <= other.chunk and other.last <= self.last)

    @property
    def temp_filename(self) -> str:
        return f".{self.filename}{TEMP_SUFFIX}"

    @classmethod
    def parse(cls, filename: str) -> ChunkName | None:
        match = _CHUNK_RE.match(filename)
        if match is None:
            return None
        rank, segment, chunk, last = match.groups()
        return cls(int(rank), int(segment), int(chunk), int(last) if last is not None else -1)


def claim_filename(rank: int, segment: int) -> str:
    return f"rank-{rank}.seg-{segment}.claim"


def parse_claim_filename(filename: str) -> tuple[int, int] | None:
    match = _CLAIM_RE.match(filename)
    return None if match is None else (int(match.group(1)), int(match.group(2)))


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


MAX_INDEX = 2**63 - 1  # steps are stored as int64


def validate_index(name: str, value: object) -> int:
    """``value`` as a Python int when it is an integer in [0, 2**63) (numpy integers too), else InputError."""
    if not isinstance(value, bool):
        try:
            number = operator.index(value)
        except TypeError:
            number = -1
        if 0 <= number <= MAX_INDEX:
            return number
    raise InputError(f"{name}: expected an integer >= 0 and < 2**63, got {type(value).__name__} {value!r}")
