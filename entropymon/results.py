"""Result objects as JSON: the one conversion every ``to_dict()`` and ``--json`` output uses.

Why one: the analysis returns frozen dataclasses (``LawFit``, ``CeilingForecast``, ``Alert``,
...); the CLI prints them as JSON, the report and the dashboard read them. Each class used to
write its own ``to_dict`` and two helpers each turned NaN into None. Here a dataclass becomes a
dict of its fields - those declared ``repr=False`` (per-point arrays, tables) left out, unless
named in the class's ``JSON_EXTRA`` with the properties worth showing - and every float that is
NaN or infinite becomes None, so ``json.dumps(..., allow_nan=False)`` accepts the result. Plain
Python only (numpy values are recognised by their ``tolist``), so the CLI's ``--help`` stays light.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping


def to_json(value):
    """``value`` as JSON-ready Python: dicts with str keys, lists, str, bool, int, finite float, None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        skip = set(getattr(value, "JSON_EXCLUDE", ()))
        out = {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)
               if f.repr and f.name not in skip}
        for name in getattr(value, "JSON_EXTRA", ()):
            out[name] = to_json(getattr(value, name))
        return out
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return to_json(value.tolist())
    return value


def json_float(value) -> float | None:
    """One number for JSON: a float, or None for a missing, NaN or infinite value."""
    return None if value is None else to_json(float(value))


class JsonResult:
    """Mixin of the analysis's result dataclasses: ``to_dict()`` is ``to_json(self)``.

    A class adds derived values with ``JSON_EXTRA = ("property", ...)`` and leaves fields out
    with ``JSON_EXCLUDE`` (fields declared ``repr=False`` are left out already).
    """

    JSON_EXTRA: tuple[str, ...] = ()
    JSON_EXCLUDE: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON-friendly: plain floats (None for NaN), lists for intervals and arrays."""
        return to_json(self)
