"""The search's budgets: how much WER a flag set may lose against fp32, and how long the
search may take.

The WER budget uses the units of ``python -m sweep.promote`` (sweep/units.py): points over
fp32 (``--max-wer-delta``), an absolute bound in percent (``--max-wer``), or a share of
fp32's own WER (``--max-wer-rel 5%``: fp32 at 17.50 % may rise to 18.38 %). MLflow and the
history keep WER as fractions; only what a person types or reads is in percent/points.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass

from sweep import units
from sweep.errors import ConfigError

_REL = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(%)?\s*$")
# Floats of word counts: 3/1405 computed two ways may differ in the last bit.
_TOLERANCE = 1e-9


def parse_relative_percent(option: str, text: str | float) -> float:
    """A share of the fp32 baseline's WER, in percent (``5`` or ``5%``: WER may grow by 5 %
    of itself). A bare value under 1 reads like a fraction (0.05 = 5 %?) and is refused
    with both readings, as sweep/units.py refuses the other budgets."""
    match = _REL.match(str(text))
    if match is None:
        raise ConfigError(f"{option} {text!r}: expected a percentage of fp32's WER such as "
                          "5 or 5%.")
    value = float(match.group(1))
    if value < 0 or not math.isfinite(value):
        raise ConfigError(f"{option} {text!r}: must be a finite percentage >= 0.")
    if match.group(2) is None and 0 < value < 1:
        raise ConfigError(
            f"{option} {value:g} reads as {value:g} % of fp32's WER. If it was a fraction "
            f"({value:g} = {value * 100:g} %), pass {option} {value * 100:g}; if you mean "
            f"{value:g} %, pass {option} {value:g}%.")
    return value


@dataclass(frozen=True)
class Budget:
    """When a probe is good enough, judged against the fp32 baseline.

    Exactly one WER bound is set: ``max_wer_delta_points`` (points over fp32),
    ``max_wer_percent`` (absolute) or ``max_wer_rel_percent`` (percent of fp32's WER).
    ``max_frame_flips`` adds the per-frame check (a fraction of output frames whose most
    likely class may differ from fp32's)."""

    max_wer_delta_points: float | None = None
    max_wer_percent: float | None = None
    max_wer_rel_percent: float | None = None
    max_frame_flips: float | None = None

    def __post_init__(self) -> None:
        bounds = [b for b in (self.max_wer_delta_points, self.max_wer_percent,
                              self.max_wer_rel_percent) if b is not None]
        if len(bounds) != 1:
            raise ConfigError("give one WER budget: --max-wer-delta POINTS, --max-wer PERCENT "
                              "or --max-wer-rel PERCENT_OF_FP32.")
        if self.max_frame_flips is not None and not 0 <= self.max_frame_flips <= 1:
            raise ConfigError(f"--max-frame-flips {self.max_frame_flips:g}: a fraction of "
                              "frames between 0 and 1 (0.001 = one frame in a thousand).")

    def wer_bound(self, baseline_wer: float) -> float:
        """The highest WER (a fraction) that passes, given fp32's."""
        if self.max_wer_percent is not None:
            return self.max_wer_percent / 100
        if self.max_wer_rel_percent is not None:
            return baseline_wer * (1 + self.max_wer_rel_percent / 100)
        assert self.max_wer_delta_points is not None
        return baseline_wer + self.max_wer_delta_points / 100

    def passes(self, wer: float, frame_flips: float, baseline_wer: float) -> bool:
        ok = wer <= self.wer_bound(baseline_wer) + _TOLERANCE
        if self.max_frame_flips is not None:
            ok = ok and frame_flips <= self.max_frame_flips + 1e-12
        return ok

    def describe(self, baseline_wer: float | None = None) -> str:
        if self.max_wer_percent is not None:
            text = f"WER <= {self.max_wer_percent:g} %"
        elif self.max_wer_rel_percent is not None:
            text = f"WER <= fp32 + {self.max_wer_rel_percent:g} % of fp32"
        else:
            text = f"WER <= fp32 + {self.max_wer_delta_points:g} pts"
        if baseline_wer is not None:
            text += f" (= {units.percent(self.wer_bound(baseline_wer), 3)})"
        if self.max_frame_flips is not None:
            text += f", frame flips <= {self.max_frame_flips:g}"
        return text

    def params(self) -> dict[str, float | None]:
        return {"search.max_wer_delta_points": self.max_wer_delta_points,
                "search.max_wer_percent": self.max_wer_percent,
                "search.max_wer_rel_percent": self.max_wer_rel_percent,
                "search.max_frame_flips": self.max_frame_flips}


def add_options(p: argparse.ArgumentParser) -> None:
    """The budget options, spelt as ``python -m sweep.promote`` spells them."""
    wer = p.add_mutually_exclusive_group()
    wer.add_argument("--max-wer-delta", metavar="POINTS",
                     help="WER may exceed fp32's by this many percentage points (0.5, or "
                          "0.5pt); the default when no WER budget is given: 0.5")
    wer.add_argument("--max-wer", metavar="PERCENT",
                     help="an absolute WER bound in percent instead (12.5 or 12.5%%)")
    wer.add_argument("--max-wer-rel", metavar="PERCENT_OF_FP32",
                     help="WER may grow by this share of fp32's own WER (5 or 5%%: fp32 at "
                          "17.50 %% may reach 18.38 %%)")
    wer.add_argument("--wer-budget", help=argparse.SUPPRESS)  # refused, see from_args
    p.add_argument("--max-frame-flips", type=float, default=None, metavar="FRACTION",
                   help="also require at most this fraction of frames to change their most "
                        "likely class against fp32 (finer than WER), e.g. 0.001")


def from_args(args: argparse.Namespace) -> Budget:
    if args.wer_budget is not None:
        try:
            hint = f" (--wer-budget {args.wer_budget} = --max-wer-delta " \
                   f"{float(args.wer_budget) * 100:g})"
        except ValueError:
            hint = ""
        raise ConfigError(
            "--wer-budget is no longer accepted: it was a fraction of WER. Give the budget in "
            f"percentage points over fp32 with --max-wer-delta POINTS{hint}, an absolute "
            "bound with --max-wer PERCENT, or a share of fp32's WER with --max-wer-rel "
            "PERCENT, as python -m sweep.promote does.")
    if args.max_wer is not None:
        return Budget(max_wer_percent=units.parse_absolute_percent("--max-wer", args.max_wer),
                      max_frame_flips=args.max_frame_flips)
    if args.max_wer_rel is not None:
        return Budget(max_wer_rel_percent=parse_relative_percent("--max-wer-rel",
                                                                 args.max_wer_rel),
                      max_frame_flips=args.max_frame_flips)
    delta = units.parse_delta_points("--max-wer-delta", args.max_wer_delta) \
        if args.max_wer_delta is not None else 0.5
    return Budget(max_wer_delta_points=delta, max_frame_flips=args.max_frame_flips)
