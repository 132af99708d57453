"""Turn the CLI's option strings into the values the library takes.

Why: ``--smoothing 0.3`` means an EMA and ``--smoothing 5`` a window, ``--warmup none`` means
"keep every point"; these conversions are the CLI's job, and a value that does not parse must
give the same one-line ``error: ...`` as any other user error (``InputError``).
"""

from __future__ import annotations

from pathlib import Path

from entropymon.errors import InputError, RunNotFoundError

NONE_WORDS = ("none", "off", "no")


def parse_smoothing(text: str | None):
    """None, an EMA alpha (``0.3``) or a trailing window (``5``)."""
    if text is None or text.strip().lower() in NONE_WORDS:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"--smoothing: expected 'none', an EMA alpha in (0, 1) such as 0.3, or a window such as 5, got {text!r}"
        ) from None


def parse_warmup(text: str):
    """"auto", None ("none") or a number of leading points to drop."""
    word = text.strip().lower()
    if word == "auto":
        return "auto"
    if word in NONE_WORDS:
        return None
    try:
        count = int(word)
    except ValueError:
        count = -1
    if count < 0:
        raise InputError(f"--warmup: expected 'auto', 'none' or a number of points >= 0, got {text!r}")
    return count


def parse_bounds(text: str):
    """"auto", None ("none") or (low, high) from ``low,high``."""
    word = text.strip().lower()
    if word == "auto":
        return "auto"
    if word in NONE_WORDS:
        return None
    parts = word.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise InputError(f"--bounds: expected 'auto', 'none' or LOW,HIGH such as 0,1, got {text!r}") from None
    if not low < high:
        raise InputError(f"--bounds: expected LOW < HIGH, got {text!r}")
    return (low, high)


def parse_thresholds(items: list[str] | None) -> dict:
    """``rule=value`` or ``rule.parameter=value`` items -> the ``thresholds`` dict of ``diagnose``.

    Only the syntax is checked here; ``diagnose`` checks each value against the range its rule
    declares for the parameter (and makes counts integers), so a new rule needs nothing here.
    """
    thresholds: dict = {}
    for item in items or []:
        key, sep, value_text = item.partition("=")
        try:
            value = int(value_text)
        except ValueError:
            try:
                value = float(value_text)
            except ValueError:
                value = None
        if not sep or not key.strip() or value is None:
            raise InputError(
                f"--threshold: expected RULE=VALUE or RULE.PARAMETER=VALUE such as entropy_collapse=0.2, got {item!r}"
            )
        rule, _, parameter = key.strip().partition(".")
        if parameter:
            existing = thresholds.get(rule)
            params = existing if isinstance(existing, dict) else ({} if existing is None else {"threshold": existing})
            params[parameter] = value
            thresholds[rule] = params
        elif isinstance(thresholds.get(rule), dict):  # RULE.PARAMETER=... came first
            thresholds[rule]["threshold"] = value
        else:
            thresholds[rule] = value
    return thresholds


def parse_rules(text: str | None) -> list[str] | None:
    if text is None:
        return None
    rules = [r.strip() for r in text.split(",") if r.strip()]
    if not rules:
        raise InputError(f"--rules: expected comma-separated rule names, got {text!r}")
    return rules


def open_run(path: Path):
    """The run in the folder ``path`` (``RunNotFoundError`` / ``LogFormatError`` otherwise)."""
    from entropymon.log.reader import read_run

    if path.is_dir() and not (path / "run.json").exists():
        nested = sorted(p.parent for p in path.glob("*/run.json"))
        hint = f"; it holds the runs {', '.join(str(p) for p in nested[:5])}" if nested else ""
        raise RunNotFoundError(f"RUN: expected a run folder (with run.json), {path} is not one{hint}")
    return read_run(path)
