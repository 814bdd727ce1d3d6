"""How a capacity probe's calls arrive: when each call starts and what it plays.

``staggered`` (the first design): N calls start within one chunk of each other and each
line plays utterances back to back for the probe's length, so exactly N calls are in
progress all the time.

``poisson``: calls come as an operator sees them, independent arrivals at a constant rate
with random lengths (an M/M/inf load, Erlang's model of a trunk group). For an offered
load of N calls, the rate is N / mean call length, so on average N calls are in progress,
sometimes more, sometimes fewer. The probe starts in the steady state: N calls already in
progress at time 0, each with an exponential remaining length (the exponential forgets how
long a call has lasted) and a phase spread over one chunk, then new calls arrive over the
probe's window. A call plays whole utterances (each one a phrase, so its final-transcript
timing holds) until its holding time is used up, at least one; holding times are cut at the
window's end so a probe lasts about ``seconds`` whatever the draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sweep.data.manifest import Utterance
from sweep.errors import EvaluationError

ARRIVALS = ("staggered", "poisson")


@dataclass(frozen=True)
class CallPlan:
    """The calls of one probe: each call's start (seconds after the probe's clock starts)
    and its utterances (indices into the probe's utterance list), in start order."""

    starts: tuple[float, ...]
    playlists: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if len(self.starts) != len(self.playlists) or not self.playlists:
            raise EvaluationError("a call plan needs one start per call and one call at least.")


def _fill(utterances: Sequence[Utterance], first: int, seconds: float) -> list[int]:
    """Utterances cycled from ``first`` until ``seconds`` of audio (at least one)."""
    picked: list[int] = []
    total, i = 0.0, first
    while not picked or total < seconds:
        index = i % len(utterances)
        picked.append(index)
        total += max(utterances[index].duration, 1e-3)
        i += 1
    return picked


def staggered(utterances: Sequence[Utterance], streams: int, seconds: float,
              chunk_s: float) -> CallPlan:
    """N lines busy for ``seconds`` each, starting within one chunk (module docstring)."""
    if not utterances:
        raise EvaluationError("the capacity search needs at least one utterance.")
    return CallPlan(tuple(i * chunk_s / streams for i in range(streams)),
                    tuple(tuple(_fill(utterances, i, seconds)) for i in range(streams)))


def mean_call_s(utterances: Sequence[Utterance], call_mean_s: float | None) -> float:
    """The set mean call length, or the test set's mean utterance duration."""
    if call_mean_s is not None:
        if call_mean_s <= 0:
            raise EvaluationError(f"eval.call_mean_s={call_mean_s}; expected a positive "
                                  "number of seconds, or null for the test set's mean "
                                  "utterance duration.")
        return float(call_mean_s)
    if not utterances:
        raise EvaluationError("the capacity search needs at least one utterance.")
    return float(np.mean([u.duration for u in utterances]))


def poisson(utterances: Sequence[Utterance], load: int, seconds: float, chunk_s: float,
            mean_s: float, seed: int = 0) -> CallPlan:
    """An offered load of ``load`` calls (module docstring), drawn from ``seed`` and the
    load, so a probe at the same load sees the same calls."""
    if not utterances:
        raise EvaluationError("the capacity search needs at least one utterance.")
    if load < 1 or seconds <= 0 or mean_s <= 0:
        raise EvaluationError(f"poisson arrivals need a load of at least one call and "
                              f"positive seconds (load {load}, window {seconds} s, mean call "
                              f"{mean_s} s).")
    rng = np.random.default_rng([seed, load])
    starts = list(rng.uniform(0.0, chunk_s, size=load))
    # Arrivals over the window: exponential gaps at rate load / mean_s.
    t = 0.0
    while True:
        t += float(rng.exponential(mean_s / load))
        if t >= seconds:
            break
        starts.append(t)
    holds = rng.exponential(mean_s, size=len(starts))
    firsts = rng.integers(0, len(utterances), size=len(starts))
    calls = sorted(zip(starts, holds, firsts, strict=True))
    return CallPlan(tuple(float(s) for s, _, _ in calls),
                    tuple(tuple(_fill(utterances, int(f), min(float(h), seconds - s)))
                          for s, h, f in calls))
