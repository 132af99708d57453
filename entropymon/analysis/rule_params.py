"""The values a collapse rule's parameters accept, and the one check every override goes through.

Why its own module: a threshold override comes from a user (``entropymon check --threshold
entropy_collapse.window=0``, a ``thresholds`` dict in a script), and a value out of range must be
refused with a message naming the rule, the parameter, the range and the value, never make a
rule silently never fire (``threshold=nan``), fire at step 0 (``start_points=0``) or crash inside
pandas (``window=1e30``). Each rule declares a ``Limit`` per parameter; a parameter without one
gets a limit inferred from its default's type (an int counts logged steps: an integer >= 1; a
float: a finite number >= 0), so a new rule is checked without anyone remembering to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

from entropymon.errors import InputError

MAX_COUNT = 2**31 - 1  # a count of logged steps larger than this is a typo, and overflows pandas' windows


@dataclass(frozen=True)
class Limit:
    """A parameter's accepted values: ``low``..``high`` (open or closed ends), integer or not."""

    low: float = 0.0
    high: float = math.inf
    integer: bool = False
    low_open: bool = False
    high_open: bool = False

    @classmethod
    def count(cls, low: int = 1) -> Limit:
        """A number of logged steps or points: an integer >= ``low``."""
        return cls(low=low, high=MAX_COUNT, integer=True)

    @classmethod
    def share(cls, *, low_open: bool = True, high_open: bool = False) -> Limit:
        """A fraction of something (of the starting value, of the groups): in (0, 1] by default."""
        return cls(low=0.0, high=1.0, low_open=low_open, high_open=high_open)

    def describe(self) -> str:
        what = "an integer" if self.integer else "a number"
        if self.high == math.inf:
            return f"{what} {'>' if self.low_open else '>='} {self.low:g}"
        if self.integer and self.high == MAX_COUNT:
            return f"{what} >= {self.low:g} (a count of logged steps, at most {MAX_COUNT})"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{what} in {left}{self.low:g}, {self.high:g}{right}"

    def accepts(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.integer and value != int(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


def inferred_limit(default) -> Limit:
    """The limit of a parameter that declares none, from its default value's type."""
    if isinstance(default, int) and not isinstance(default, bool):
        return Limit.count()
    return Limit()


def checked_value(rule: str, parameter: str, value, limit: Limit):
    """``value`` as the parameter's type (an int for counts) after checking it against ``limit``."""
    where = f"threshold {rule}.{parameter}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InputError(f"{where}: expected {limit.describe()}, got {value!r}")
    number = float(value)
    if not limit.accepts(number):
        raise InputError(f"{where}: expected {limit.describe()}, got {value!r}")
    return int(number) if limit.integer else number
