"""Capacity at a latency SLO: how many paced calls one served engine carries.

A probe streams N paced calls (chunk k of a call due at its start + k chunk durations,
sweep/evaluate/stream.py) for a few seconds of audio each and measures the chunk latency
from the schedule. N passes when its p<percentile> latency is within the SLO and no call
ended behind real time. The search doubles N from 1 until a probe fails, then bisects
between the last pass and the first failure; it stops at ``max_streams`` or when the time
budget would be exceeded by the next probe, and says which bound it hit.

How calls arrive in a probe is ``arrivals`` (sweep/evaluate/arrivals.py): N lines always
busy (staggered), or random arrivals with random lengths, N in progress on average
(poisson). Either way a probe's N is the load an operator would admit.

What an operator does with the figure (``Capacity.metrics``):

* ``streams_at_slo_min`` / ``streams_at_slo_max``: the interval the probes allow. The low
  end is the largest count at or below which no probe failed (a count that failed once and
  then passed on a retry is not proven); the high end is one below the smallest count
  whose every probe failed (the search's bracket; ``streams_at_slo`` itself when nothing
  failed: then the search stopped at ``max_streams`` or its budget, see ``stopped_by``).
* ``admission_limit``: concurrent calls to admit per server, the low end less a stated
  headroom (``eval.admission_headroom``): floor(streams_at_slo_min * (1 - headroom)).
* ``cost_per_audio_hour``: the host's price per hour (``eval.cost_per_hour``) over the
  calls admitted: at the admission limit each call brings one hour of audio an hour.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sweep.data.manifest import Utterance
from sweep.errors import EvaluationError
from sweep.evaluate import arrivals as calls
from sweep.evaluate.arrivals import ARRIVALS
from sweep.evaluate.finals import FINAL_SILENCE_MS, final_summary
from sweep.evaluate.stream import GrpcStreamer, StreamRun
from sweep.model import ModelInterface


@dataclass(frozen=True)
class CapacityBounds:
    slo_ms: float = 100.0
    percentile: float = 95.0
    max_streams: int = 256
    probe_s: float = 6.0
    budget_s: float = 180.0
    # A failing count is probed again this many times and passes if any probe passes:
    # on a shared machine another process's burst only adds latency, so one stalled probe
    # says little about the server, one clean pass says it can carry that load.
    retries: int = 1
    # How the probe's calls arrive (arrivals.py) and, for poisson, their mean length
    # (None: the test set's mean utterance) and the draw's seed.
    arrivals: str = "staggered"
    call_mean_s: float | None = None
    seed: int = 0
    # The silence that makes a phrase final (finals.py), for each probe's final latency.
    final_silence_ms: float = FINAL_SILENCE_MS

    def __post_init__(self) -> None:
        if self.arrivals not in ARRIVALS:
            raise EvaluationError(f"eval.arrivals={self.arrivals!r}; expected one of "
                                  f"{', '.join(ARRIVALS)}.")
        if self.slo_ms <= 0 or not 0 < self.percentile <= 100:
            raise EvaluationError(
                f"eval.slo_ms={self.slo_ms}, eval.slo_percentile={self.percentile}; expected "
                "a positive SLO and a percentile in (0, 100].")
        if self.max_streams < 1 or self.probe_s <= 0 or self.budget_s <= 0 or self.retries < 0:
            raise EvaluationError(
                f"eval.capacity_max_streams={self.max_streams}, eval.capacity_probe_s="
                f"{self.probe_s}, eval.capacity_budget_s={self.budget_s}, retries="
                f"{self.retries}; expected at least one stream, positive seconds and no "
                "negative retries.")


@dataclass(frozen=True)
class ProbePoint:
    """One paced probe: N streams and what they saw."""

    streams: int
    latency_ms: float  # at the SLO's percentile, from the schedule
    late_chunk_fraction: float
    behind_max_ms: float
    seconds: float
    passed: bool
    # Time to the final transcript at p95 in this probe (finals.py); NaN: none measured.
    final_latency_p95_ms: float = float("nan")
    partial_latency_p95_ms: float = float("nan")


@dataclass
class Capacity:
    """The search's outcome: ``streams_at_slo`` (0 when even one stream misses the SLO),
    every probe in the order it ran, and why the search stopped."""

    bounds: CapacityBounds
    points: list[ProbePoint] = field(default_factory=list)
    streams_at_slo: int = 0
    stopped_by: str = "converged"  # or "max_streams" / "budget"
    seconds: float = 0.0
    # What the operator states (module docstring): the share of capacity kept free, and
    # the host's price per hour (0: not given, no cost figure).
    headroom: float = 0.2
    cost_per_hour: float = 0.0

    def interval(self) -> tuple[int, int]:
        """(low, high) of streams_at_slo over the probes (module docstring)."""
        failed_at = sorted({p.streams for p in self.points if not p.passed})
        low = max((p.streams for p in self.points
                   if p.passed and p.streams <= self.streams_at_slo
                   and not any(f <= p.streams for f in failed_at)), default=0)
        never_passed = [n for n in failed_at
                        if not any(p.passed and p.streams == n for p in self.points)]
        high = min(never_passed) - 1 if never_passed else self.streams_at_slo
        return low, max(high, self.streams_at_slo)

    @property
    def admission_limit(self) -> int:
        return math.floor(self.interval()[0] * (1.0 - self.headroom) + 1e-9)

    def metrics(self) -> dict[str, float]:
        best = next((p for p in self.points if p.passed and p.streams == self.streams_at_slo),
                    None)
        low, high = self.interval()
        figures = {"streams_at_slo": float(self.streams_at_slo),
                   "streams_at_slo_min": float(low), "streams_at_slo_max": float(high),
                   "admission_limit": float(self.admission_limit),
                   "capacity_seconds": self.seconds, "capacity_probes": float(len(self.points))}
        if self.cost_per_hour > 0 and self.admission_limit > 0:
            figures["cost_per_audio_hour"] = self.cost_per_hour / self.admission_limit
        if best is not None:
            figures["capacity_latency_ms"] = best.latency_ms
            for name, value in (("capacity_final_latency_p95_ms", best.final_latency_p95_ms),
                                ("capacity_partial_latency_p95_ms",
                                 best.partial_latency_p95_ms)):
                if math.isfinite(value):
                    figures[name] = value
        return figures


def playlists(utterances: Sequence[Utterance], streams: int, seconds: float) -> list[list[int]]:
    """For each stream, utterance indices (cycled, each stream starting elsewhere in the
    set) adding up to at least ``seconds`` of audio: every probe load lasts as long,
    however many streams share the utterances."""
    if not utterances:
        raise EvaluationError("the capacity search needs at least one utterance.")
    lists = []
    for s in range(streams):
        picked: list[int] = []
        total, i = 0.0, s
        while total < seconds:
            index = i % len(utterances)
            picked.append(index)
            total += max(utterances[index].duration, 1e-3)
            i += 1
        lists.append(picked)
    return lists


def judge(run: StreamRun, streams: int, bounds: CapacityBounds, seconds: float) -> ProbePoint:
    values = run.latencies_ms
    latency = float(np.percentile(values, bounds.percentile)) if values.size else float("inf")
    behind = run.behind_max_ms
    finals = final_summary(run.phrase_timings(bounds.final_silence_ms))
    return ProbePoint(streams=streams, latency_ms=latency,
                      late_chunk_fraction=run.late_chunk_fraction, behind_max_ms=behind,
                      seconds=seconds, passed=latency <= bounds.slo_ms and behind <= 0.0,
                      final_latency_p95_ms=finals.get("final_latency_p95_ms", math.nan),
                      partial_latency_p95_ms=finals.get("partial_latency_p95_ms", math.nan))


def search(probe: Callable[[int], ProbePoint], bounds: CapacityBounds,
           clock: Callable[[], float] = time.perf_counter) -> Capacity:
    """Doubling, then bisection, over stream counts; ``probe(n)`` runs one paced load (a
    failing count again, ``bounds.retries`` times)."""
    result = Capacity(bounds)
    started = clock()

    def run(n: int) -> ProbePoint | None:
        elapsed = clock() - started
        # The next probe takes about as long as the longest so far (its audio is as long).
        expected = max((p.seconds for p in result.points), default=bounds.probe_s)
        if result.points and elapsed + expected > bounds.budget_s:
            result.stopped_by = "budget"
            return None
        point = probe(n)
        result.points.append(point)
        return point

    def verdict(n: int) -> ProbePoint | None:
        point = run(n)
        for _ in range(bounds.retries):
            if point is None or point.passed:
                break
            point = run(n)
        return point

    good, bad = 0, None
    n = 1
    while True:
        point = verdict(n)
        if point is None:
            break
        if not point.passed:
            bad = n
            break
        good = n
        if n >= bounds.max_streams:
            result.stopped_by = "max_streams"
            break
        n = min(2 * n, bounds.max_streams)
    while bad is not None and bad - good > 1 and result.stopped_by == "converged":
        mid = (good + bad) // 2
        point = verdict(mid)
        if point is None:
            break
        good, bad = (mid, bad) if point.passed else (good, mid)
    result.streams_at_slo = good
    result.seconds = clock() - started
    return result


def measure(model: ModelInterface, grpc_url: str, model_name: str,
            utterances: Sequence[Utterance], bounds: CapacityBounds, *,
            transport: str = "auto", timeout_s: float = 30.0,
            state: str = "client") -> Capacity:
    """The search against a served model: each probe a fresh paced GrpcStreamer
    (``state``: the client for a server that keeps the state, or one that round-trips it)."""
    def make(n: int) -> GrpcStreamer:
        return GrpcStreamer(model, grpc_url, model_name, streams=n, timeout_s=timeout_s,
                            transport=transport, pacing="realtime", state=state)

    chunk_s = model.chunk_ms / 1000.0
    mean_s = calls.mean_call_s(utterances, bounds.call_mean_s)

    def probe(n: int) -> ProbePoint:
        plan = (calls.poisson(utterances, n, bounds.probe_s, chunk_s, mean_s, bounds.seed)
                if bounds.arrivals == "poisson" else
                calls.staggered(utterances, n, bounds.probe_s, chunk_s))
        t0 = time.perf_counter()
        run = make(len(plan.playlists)).run_playlists(list(utterances), plan.playlists,
                                                      starts=plan.starts)
        return judge(run, n, bounds, time.perf_counter() - t0)

    return search(probe, bounds)
