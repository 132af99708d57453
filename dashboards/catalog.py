"""Which runs the dashboard may show, and the only way a request names one.

Why: a run id arrives from the browser, so it is untrusted. The catalog lists the runs under the
server's logdir (nested folders included) and answers a request only by looking the id up in
that list: an id is never joined onto a path, so ``../../etc`` or an absolute path is simply not
found. A run folder that resolves outside the logdir (a symlink pointing out of it) is left out
of the list, so it cannot be named either.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from entropymon.errors import RunNotFoundError
from entropymon.log.reader import list_runs
from entropymon.log.schema import RUN_META_FILE, TABLES

DEFAULT_RESCAN_S = 1.0


@dataclass(frozen=True)
class RunEntry:
    """A discovered run: ``run_id`` is its folder relative to the logdir (POSIX, "." for the
    logdir itself), ``path`` the resolved folder."""

    run_id: str
    path: Path


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _run_parts(folder: Path) -> list[Path]:
    """The folder and the entries the reader opens inside it."""
    return [folder, folder / RUN_META_FILE, *(folder / table for table in TABLES)]


class RunCatalog:
    """The runs under ``logdir``, rescanned at most every ``rescan_s`` seconds."""

    def __init__(self, logdir, rescan_s: float = DEFAULT_RESCAN_S):
        root = Path(logdir)
        if not root.is_dir():
            raise RunNotFoundError(f"logdir: expected a folder of runs, {root} does not exist or is not a folder")
        self.root = root.resolve()
        self.rescan_s = rescan_s
        self._entries: dict[str, RunEntry] = {}
        self._scanned_at = -float("inf")
        self._lock = threading.Lock()

    def entries(self, *, rescan: bool = False) -> list[RunEntry]:
        """Every run under the logdir whose folder resolves inside it, sorted by id."""
        with self._lock:
            if rescan or time.monotonic() - self._scanned_at >= self.rescan_s:
                self._entries = self._scan()
                self._scanned_at = time.monotonic()
            return list(self._entries.values())

    def resolve(self, run_id) -> RunEntry:
        """The entry named ``run_id``; RunNotFoundError for any id not in the discovered list."""
        if not isinstance(run_id, str):
            raise RunNotFoundError(f"run: expected a run id (text), got {type(run_id).__name__}")
        entry = {e.run_id: e for e in self.entries()}.get(run_id)
        if entry is None:
            entry = {e.run_id: e for e in self.entries(rescan=True)}.get(run_id)
        if entry is None:
            raise RunNotFoundError(f"run: expected one of the runs found under the dashboard's logdir, got {run_id!r}")
        return entry

    def _scan(self) -> dict[str, RunEntry]:
        found = {}
        try:
            folders = list_runs(self.root)
        except RunNotFoundError:
            return found
        for folder in folders:
            if not all(_inside(p.resolve(), self.root) for p in _run_parts(folder)):
                continue  # the folder, its run.json or a table folder is a link out of the logdir
            run_id = folder.relative_to(self.root).as_posix()
            found[run_id] = RunEntry(run_id, folder.resolve())
        return dict(sorted(found.items()))
