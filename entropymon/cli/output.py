"""How the CLI talks: rich tables on stdout, JSON for machines, one-line warnings on stderr.

Why a module of its own: every command prints the same way, and ``--json`` output must be valid
JSON whatever the analysis returns (NaN becomes null). Numbers, intervals and verdicts are
written by ``entropymon.display``, as in the report and the dashboard. Nothing here imports
pandas or the analysis, so ``entropymon --help`` stays fast.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping

from rich.console import Console

from entropymon.display import change, interval, number, verdict

__all__ = ["stdout", "stderr", "one_line", "print_error", "show_warning", "jsonable", "print_json",
           "number", "interval", "change", "verdict"]

# piped output (CI logs, tests) gets room for tables instead of rich's 80-column default
stdout = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 140)
stderr = Console(stderr=True, highlight=False)


def one_line(text) -> str:
    """``text`` on one line (messages from libraries sometimes span several)."""
    return " ".join(str(text).split())


def print_error(message) -> None:
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` replacement: ``warning: <message>`` on one line of stderr."""
    sys.stderr.write(f"warning: {one_line(message)}\n")


def jsonable(value):
    """``value`` with NaN/inf floats as None and tuples as lists, so ``json.dumps`` is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "size", None) == 1:  # numpy scalar
        return jsonable(value.item())
    return value


def print_json(value) -> None:
    sys.stdout.write(json.dumps(jsonable(value), indent=2, allow_nan=False, default=str) + "\n")

