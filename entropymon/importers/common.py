"""What every importer shares: naming imported scalars, and writing them as an entropymon run.

Why one place: each importer only has to parse its format into an ``ImportedRun`` (step ->
{name: value}, optional sample rows); the checks on the output folder, the queue-safe writing
through ``RunLog``, the provenance recorded in run.json and the progress reports are the same
for all of them. A name an importer does not know is kept as ``import/<original name>`` (or
``trl/<key>`` for TRL) rather than dropped, so nothing a user logged is lost by importing it.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path

import pandas as pd

from entropymon.errors import ImportFormatError, InputError, LogFormatError

# progress(done, total): called while the run is written, ``done`` rows out of ``total``
Progress = Callable[[int, int], None]

IMPORT_PREFIX = "import/"
MAX_STEP = 2**63 - 1  # steps are stored as int64
_FLUSH_EVERY_ROWS = 500  # flush the writer's queue this often so no row is ever dropped


@dataclass
class ImportedRun:
    """A parsed log, ready to write: scalar rows by step, optional sample rows, provenance."""

    source_kind: str
    source: Path
    steps: dict[int, dict[str, float]] = field(default_factory=dict)
    samples: pd.DataFrame | None = None
    mapping: dict[str, str] = field(default_factory=dict)  # original name -> column written

    def add(self, step: int, column: str, value: float, original: str | None = None) -> None:
        """Record ``column = value`` at ``step``; a later value for the same step replaces it."""
        self.steps.setdefault(int(step), {})[column] = float(value)
        if original is not None:
            self.mapping.setdefault(original, column)


def as_float(value) -> float | None:
    """``value`` as a float when it is a real number (bools count as 0/1), else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, Real):
        return float(value)
    return None


def as_step(value, *, where: str) -> int:
    """A step number from a parsed record; ImportFormatError naming ``where`` when it is not one."""
    number = as_float(value)
    if number is None or not math.isfinite(number) or number != int(number) or number < 0:
        raise ImportFormatError(f"{where}: expected a non-negative integer step, got {value!r}")
    if (value if isinstance(value, int) else number) > MAX_STEP:
        raise ImportFormatError(f"{where}: expected a step that fits int64 (at most {MAX_STEP}), got {value!r}")
    return int(value) if isinstance(value, int) else int(number)


@dataclass(frozen=True)
class NameMap:
    """Maps a log's scalar names onto registry names.

    ``exact``: registry column -> original names in priority order (the first one present in the
    log wins; the others are kept under the fallback prefix). ``patterns``: regexes whose match
    is formatted into a registry name (``rewards/(.+)/mean`` -> ``reward_func/{0}``).
    """

    exact: Mapping[str, tuple[str, ...]]
    patterns: tuple[tuple[str, str], ...] = ()
    fallback_prefix: str = IMPORT_PREFIX

    def resolve(self, names: Iterable[str]) -> dict[str, str]:
        """original name -> column to write, for every name in ``names``."""
        present = set(names)
        resolved: dict[str, str] = {}
        for column, candidates in self.exact.items():
            for candidate in candidates:
                if candidate in present:
                    resolved[candidate] = column
                    break
        compiled = [(re.compile(p + r"\Z"), template) for p, template in self.patterns]
        for name in sorted(present - set(resolved)):
            for regex, template in compiled:
                match = regex.match(name)
                if match:
                    resolved[name] = template.format(*match.groups())
                    break
            else:
                resolved[name] = self.fallback_prefix + name
        return resolved


def pick_accuracy_name(names: Iterable[str], pattern: str) -> str | None:
    """The one name matching ``pattern`` (a held-out accuracy), or None when none or several do.

    Several candidates are ambiguous (which data set? mean@1 or best@4?): none is promoted to
    ``eval_accuracy``, all are kept as they are, and a warning names them.
    """
    regex = re.compile(pattern)
    candidates = sorted(name for name in set(names) if regex.search(name))
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        warnings.warn(
            f"several held-out accuracy candidates {candidates}; none mapped to eval_accuracy "
            "(all kept under their own names)",
            stacklevel=3,
        )
    return None


def build_imported(
    source_kind: str,
    source: Path,
    records: list[tuple[int, str, float]],
    names: NameMap,
    *,
    accuracy_pattern: str | None = None,
    keep_originals_as: str | None = None,
) -> ImportedRun:
    """An ``ImportedRun`` from ``(step, original name, value)`` records and a ``NameMap``.

    ``accuracy_pattern``: a regex for held-out accuracy names; the one match (if unambiguous)
    becomes ``eval_accuracy``. ``keep_originals_as``: a prefix under which every original value is
    also written (TRL's own ``trl/entropy`` next to ``entropy_mean``, for comparison).
    """
    imported = ImportedRun(source_kind, source)
    original_names = {name for _, name, _ in records}
    resolved = names.resolve(original_names)
    if accuracy_pattern is not None:
        accuracy = pick_accuracy_name(original_names, accuracy_pattern)
        if accuracy is not None:
            resolved[accuracy] = "eval_accuracy"
    for step, name, value in records:
        imported.add(step, resolved[name], value, original=name)
        if keep_originals_as is not None and not resolved[name].startswith(keep_originals_as):
            imported.add(step, keep_originals_as + name, value)
    return imported


def check_output_folder(out) -> Path:
    """The run folder ``out`` (LOGDIR/RUN) after checking it does not already hold a run."""
    out = Path(out)
    if not out.name or out.name in (".", ".."):
        raise InputError(f"out: expected LOGDIR/RUN (a folder for the new run), got {str(out)!r}")
    if (out / "run.json").exists():
        raise InputError(
            f"out: expected a new run folder, but {out} already holds an entropymon run; "
            "choose another name or delete it"
        )
    if out.exists() and not out.is_dir():
        raise InputError(f"out: expected a folder path, but {out} is an existing file")
    return out


def write_imported(imported: ImportedRun, out, *, progress: Progress | None = None) -> Path:
    """Write ``imported`` as the entropymon run ``out`` (LOGDIR/RUN) and return its folder.

    Rows go through ``RunLog`` like a live run's; the queue is flushed every few hundred rows so
    the writer never has to drop one, and a drop or writer error is raised, not ignored. A failed
    import (bad data found while writing, Ctrl+C) removes the half-made run, so a retry works.
    """
    out = check_output_folder(out)
    if not imported.steps:
        raise ImportFormatError(f"{imported.source}: found no numeric scalars to import")
    samples = imported.samples if imported.samples is not None and len(imported.samples) else None
    sample_groups = list(samples.groupby("step", sort=True)) if samples is not None else []
    total = len(imported.steps) + len(sample_groups)
    config = {
        "imported_from": {"kind": imported.source_kind, "path": str(imported.source.resolve())},
        "name_mapping": dict(sorted(imported.mapping.items())),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    existed = out.exists()
    try:
        return _write_run(imported, out, config, sample_groups, total, progress)
    except BaseException:
        _remove_half_made(out, existed)  # so that a retry is not refused as "already holds a run"
        raise


def _remove_half_made(out: Path, existed: bool) -> None:
    """Delete what a failed import wrote: the whole folder when it made it, else only the run's files."""
    import shutil

    from entropymon.log.schema import RUN_META_FILE, TABLES

    if not existed:
        shutil.rmtree(out, ignore_errors=True)
        return
    for table in TABLES:
        shutil.rmtree(out / table, ignore_errors=True)
    for path in [out / RUN_META_FILE, *out.glob("rank-*.heartbeat"), *out.glob("rank-*.seg-*.claim")]:
        path.unlink(missing_ok=True)


def _write_run(imported: ImportedRun, out: Path, config: dict, sample_groups, total: int,
               progress: Progress | None) -> Path:
    from entropymon.log.writer import RunLog  # deferred: keeps `entropymon --help` light

    done = 0
    with RunLog(out.parent, run=out.name, config=config) as log:
        for step in sorted(imported.steps):
            log.log_step(step, imported.steps[step])
            done = _advance(log, done, total, progress)
        for step, rows in sample_groups:
            log.log_samples(int(step), rows.drop(columns=["step"]).reset_index(drop=True))
            done = _advance(log, done, total, progress)
        if not log.flush():
            raise LogFormatError(f"{out}: the writer did not finish writing the imported rows")
        path = Path(log.path)
        if log.dropped_rows:
            raise LogFormatError(f"{out}: the writer dropped {log.dropped_rows} imported rows; import again")
        if log.errors:
            raise LogFormatError(f"{out}: the writer reported {log.errors} write errors while importing "
                                 "(see the warnings)")
    return path


def _advance(log, done: int, total: int, progress: Progress | None) -> int:
    done += 1
    if done % _FLUSH_EVERY_ROWS == 0:
        log.flush()
    if progress is not None:
        progress(done, total)
    return done
