"""One unit a person reads and types (sweep/units.py): percent, points, and budgets that
look like the other unit refused with both readings."""

from __future__ import annotations

import math

import pytest

from sweep import units
from sweep.errors import ConfigError


def test_wer_reads_in_percent_and_differences_in_points():
    assert units.percent(0.1751) == "17.51 %"
    assert units.percent(math.nan) == "—" and units.percent(None) == "—"
    assert units.points(-0.0007) == "-0.07 pts" and units.points(0.005) == "+0.50 pts"
    assert units.interval_percent(0.142, 0.21) == "[14.20, 21.00]"
    assert units.interval_points(-0.003, 0.0045) == "[-0.30, +0.45]"


@pytest.mark.parametrize(("text", "points"), [("0.5", 0.5), ("2", 2.0), ("0.01pt", 0.01),
                                              ("0.5 points", 0.5), (0, 0.0)])
def test_delta_budgets_in_points(text: str, points: float):
    assert units.parse_delta_points("--max-wer-delta", text) == pytest.approx(points)


def test_a_fraction_given_as_points_is_refused_with_both_readings():
    with pytest.raises(ConfigError) as exc:
        units.parse_delta_points("--max-wer-delta", "0.005")
    message = str(exc.value)
    assert "reads as 0.005 percentage points" in message
    assert "pass --max-wer-delta 0.5" in message and "0.005pt" in message


def test_percent_is_not_a_delta_and_points_are_not_an_absolute_bound():
    with pytest.raises(ConfigError, match="percentage points, not percent"):
        units.parse_delta_points("--max-wer-delta", "0.5%")
    with pytest.raises(ConfigError, match="not points"):
        units.parse_absolute_percent("--max-wer", "12pt")


def test_an_absolute_bound_that_looks_like_a_fraction_is_refused():
    assert units.parse_absolute_percent("--max-wer", "12.5") == 12.5
    assert units.parse_absolute_percent("--max-wer", "0.8%") == 0.8
    with pytest.raises(ConfigError, match=r"pass --max-wer 18;"):
        units.parse_absolute_percent("--max-wer", "0.18")
    with pytest.raises(ConfigError, match="between 0 and 100"):
        units.parse_absolute_percent("--max-wer", "120")
    with pytest.raises(ConfigError, match="expected a number"):
        units.parse_absolute_percent("--max-wer", "twelve")
