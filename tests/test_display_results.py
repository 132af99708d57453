"""The shared vocabulary (``entropymon.display``) and the one JSON conversion (``entropymon.results``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from entropymon import display
from entropymon.results import JsonResult, json_float, to_json


@pytest.mark.parametrize("value, digits, expected", [
    (0.87312, 3, "0.873"), (1234.5, 3, "1.23e+03"), (12, 9, "12"), (np.float64(0.5), 2, "0.5"),
    (None, 3, "-"), (math.nan, 3, "-"), (math.inf, 3, "-"),
])
def test_number_gives_significant_digits_and_a_dash_when_missing(value, digits, expected):
    assert display.number(value, digits) == expected


def test_interval_and_change_are_written_from_numbers():
    assert display.interval((0.61234, 0.9)) == "[0.612, 0.9]"
    assert display.interval(None) == "" and display.interval((0.1, None)) == ""
    assert display.change(1.0, None) == "1 → -"


def test_verdict_words_are_the_same_in_every_layer_and_capitalise_as_a_sentence():
    assert display.verdict(True, "skill 0.4 > 0") == "trust this ceiling: skill 0.4 > 0"
    assert display.verdict(False, "r") == "do not trust this ceiling: r"
    assert display.verdict(False, "r", sentence=True) == "Do not trust this ceiling: r"
    assert [display.trust_word(v) for v in (True, False, None)] == ["yes", "no", "no"]


@pytest.mark.parametrize("meta, live, expected", [
    ("running", True, "live"), ("running", False, "stopped (no writer)"), ("closed", False, "finished"),
    ("terminated", False, "terminated"), (None, False, "unknown"),
])
def test_run_status_reads_run_json_and_the_writer(meta, live, expected):
    assert display.run_status(meta, live) == expected


def test_run_colors_follow_the_palette_in_order_and_repeat():
    names = [f"r{i}" for i in range(10)]
    colors = display.run_colors(names)
    assert [colors[n] for n in names] == [display.RUN_COLORS[i % 8] for i in range(10)]


@dataclass(frozen=True)
class _Inner(JsonResult):
    x: float
    values: np.ndarray = field(default=None, repr=False)


@dataclass(frozen=True)
class _Outer(JsonResult):
    name: str
    inner: _Inner
    pair: tuple
    counts: dict
    table: object = field(default=None, repr=False)

    JSON_EXTRA = ("doubled",)

    @property
    def doubled(self) -> float:
        return 2 * self.inner.x


def test_to_json_keeps_fields_drops_repr_false_adds_extras_and_turns_nan_into_none():
    value = _Outer("r", _Inner(math.nan, np.arange(3)), (np.float64(1.5), np.inf), {1: np.int64(4)}, table="big")
    out = value.to_dict()
    assert out == {"name": "r", "inner": {"x": None}, "pair": [1.5, None], "counts": {"1": 4}, "doubled": None}
    assert type(out["counts"]["1"]) is int and type(out["pair"][0]) is float
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_to_json_turns_arrays_into_lists_and_json_float_is_one_number():
    assert to_json(np.array([[1.0, np.nan]])) == [[1.0, None]]
    assert json_float(np.float32(0.25)) == 0.25 and json_float(None) is None and json_float(-math.inf) is None


def test_verdict_says_plainly_when_the_law_does_not_predict():
    untrusted = SimpleNamespace(trustworthy=False, fit=None,
                                reason="ceiling interval [0.2, 3.1] is wider than the metric's range [0, 1]")
    trusted, text = display.verdict_sentence(untrusted)
    assert not trusted and text.startswith(display.NOT_PREDICTIVE) and "wider than the metric's range" in text
    skill = SimpleNamespace(trustworthy=False, fit=None,
                            reason="the law does not predict this run yet: backtest skill -0.40 <= 0")
    assert display.verdict_sentence(skill)[1].startswith("The law does not predict this run yet: backtest skill -0.40")
    good = SimpleNamespace(trustworthy=True, fit=SimpleNamespace(ceiling=0.9012), reason="backtest skill 0.50 > 0")
    assert display.verdict_sentence(good) == (True, "Predicted ceiling 0.901: trustworthy (backtest skill 0.50 > 0).")
    assert display.verdict_sentence(None)[1].startswith(display.NOT_PREDICTIVE)
