"""Importers: turn logs other tools wrote into entropymon runs, so their runs can be analysed.

Each importer is ``import_<kind>(src, out, *, progress=None) -> Path``: it parses ``src``, writes
the run folder ``out`` (LOGDIR/RUN) through ``RunLog`` and returns it. Known names are mapped
onto the registry; unknown ones are kept as ``import/<name>`` (``trl/<key>`` for TRL).
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from entropymon.errors import InputError

# kind -> (module, function); modules load on first use so the CLI starts fast
IMPORTERS = {
    "trl": ("entropymon.importers.trl_output", "import_trl"),
    "tensorboard": ("entropymon.importers.tensorboard", "import_tensorboard"),
    "verl": ("entropymon.importers.verl_jsonl", "import_verl"),
    "csv": ("entropymon.importers.csv_curves", "import_csv"),
}


def import_run(kind: str, src, out, *, progress=None) -> Path:
    """Import ``src`` with the importer for ``kind`` (one of ``IMPORTERS``) into the run ``out``."""
    if kind not in IMPORTERS:
        raise InputError(f"kind: expected one of {sorted(IMPORTERS)}, got {kind!r}")
    module, function = IMPORTERS[kind]
    return getattr(import_module(module), function)(src, out, progress=progress)
