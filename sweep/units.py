"""One unit a person reads and types: WER and CER in percent, differences in percentage
points, every budget option in points (or percent, for an absolute bound).

MLflow keeps ``wer``/``cer`` as fractions (0.1751), as every stored run and user query has
them; only what a person reads or types goes through here. A budget that looks like the
other unit (``--max-wer-delta 0.005``: a fraction meant as half a point?) is refused with
both readings spelt out, unless the value carries its unit (``0.005pt``, ``0.5pt``,
``12.5%``), which says what was meant.
"""

from __future__ import annotations

import math
import re

from sweep.errors import ConfigError

# Below this many points a delta budget reads like a fraction typed by mistake: 0.05
# points of WER on a 1,400-word test set is less than one word.
SUSPICIOUS_POINTS = 0.05
# An absolute WER bound below 1 % on telephony speech reads like a fraction (0.18 = 18 %).
SUSPICIOUS_PERCENT = 1.0

_VALUE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(pts?|points?|%)?\s*$")


def percent(fraction: float | None, digits: int = 2) -> str:
    """A WER/CER fraction as a person reads it: ``17.51 %`` (``—`` when unknown)."""
    if fraction is None or not math.isfinite(fraction):
        return "—"
    return f"{fraction * 100:.{digits}f} %"


def percent_number(fraction: float | None, digits: int = 2) -> str:
    """The same without the sign, for a column headed "WER %"."""
    if fraction is None or not math.isfinite(fraction):
        return "—"
    return f"{fraction * 100:.{digits}f}"


def points(delta_fraction: float | None, digits: int = 2) -> str:
    """A difference of two WER fractions in percentage points, signed: ``+0.07 pts``."""
    if delta_fraction is None or not math.isfinite(delta_fraction):
        return "—"
    return f"{delta_fraction * 100:+.{digits}f} pts"


def interval_percent(low: float | None, high: float | None, digits: int = 2) -> str:
    """``[14.20, 21.00]`` from two fractions (empty when either is unknown)."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"[{low * 100:.{digits}f}, {high * 100:.{digits}f}]"


def interval_points(low: float | None, high: float | None, digits: int = 2) -> str:
    """``[-0.30, +0.45]`` from two fraction differences."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"[{low * 100:+.{digits}f}, {high * 100:+.{digits}f}]"


def _split(option: str, text: str | float) -> tuple[float, str | None]:
    match = _VALUE.match(str(text))
    if match is None:
        raise ConfigError(f"{option} {text!r}: expected a number of percentage points such "
                          "as 0.5 (or 0.5pt; an absolute bound as 12.5 or 12.5%).")
    value = float(match.group(1))
    unit = match.group(2)
    if unit is not None:
        unit = "%" if unit == "%" else "pt"
    return value, unit


def parse_delta_points(option: str, text: str | float) -> float:
    """A WER budget relative to a baseline, in percentage points (0.5 = half a point).

    Returns points. A bare value under :data:`SUSPICIOUS_POINTS` is refused, with its two
    readings, since that is what a fraction (0.005) copied from an older tool looks like;
    ``0.005pt`` says the tiny budget is meant."""
    value, unit = _split(option, text)
    if unit == "%":
        raise ConfigError(f"{option} {text!r}: a budget relative to the baseline is in "
                          "percentage points, not percent: write 0.5 (or 0.5pt) for WER "
                          "rising from 17.50 % to at most 18.00 %.")
    if value < 0 or not math.isfinite(value):
        raise ConfigError(f"{option} {text!r}: must be a finite number of points >= 0.")
    if unit is None and 0 < value < SUSPICIOUS_POINTS:
        raise ConfigError(
            f"{option} {value:g} reads as {value:g} percentage points: WER may rise from "
            f"17.50 % to {17.5 + value:.3f} %, less than one word of most test sets. If it "
            f"was a fraction ({value:g} = {value * 100:g} points), pass {option} "
            f"{value * 100:g}; if you mean {value:g} points, pass {option} {value:g}pt.")
    return value


def parse_absolute_percent(option: str, text: str | float) -> float:
    """An absolute WER bound in percent (12.5 = 12.5 % WER). Returns percent; a bare value
    under :data:`SUSPICIOUS_PERCENT` is refused as a likely fraction (0.18 = 18 %?)."""
    value, unit = _split(option, text)
    if unit == "pt":
        raise ConfigError(f"{option} {text!r}: an absolute WER bound is in percent "
                          "(12.5 or 12.5%), not points.")
    if not 0 <= value <= 100 or not math.isfinite(value):
        raise ConfigError(f"{option} {text!r}: a WER bound in percent, between 0 and 100.")
    if unit is None and 0 < value < SUSPICIOUS_PERCENT:
        raise ConfigError(
            f"{option} {value:g} reads as {value:g} % WER. If it was a fraction "
            f"({value:g} = {value * 100:g} %), pass {option} {value * 100:g}; if you mean "
            f"{value:g} %, pass {option} {value:g}%.")
    return value
