"""How the CLI talks: rich tables on stdout, JSON for machines, one-line warnings on stderr.

Why a module of its own: every command prints the same way, and ``--json`` output must be valid
JSON whatever the analysis returns (NaN becomes null). Numbers, intervals and verdicts are
written by ``entropymon.display``, as in the report and the dashboard. Nothing here imports
pandas or the analysis, so ``entropymon --help`` stays fast.
"""

from __future__ import annotations

import json
import sys

from rich.console import Console

from entropymon.results import to_json

__all__ = ["stdout", "stderr", "one_line", "print_error", "show_warning", "print_json"]

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


def print_json(value) -> None:
    sys.stdout.write(json.dumps(to_json(value), indent=2, allow_nan=False, default=str) + "\n")

