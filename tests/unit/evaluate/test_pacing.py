"""Paced streams' bookkeeping (sweep/evaluate/stream.py _Schedule) and the capacity
search (sweep/evaluate/capacity.py) against probes whose outcome the test decides."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from sweep.data.manifest import Utterance
from sweep.errors import EvaluationError
from sweep.evaluate.capacity import (
    Capacity,
    CapacityBounds,
    ProbePoint,
    judge,
    playlists,
    search,
)
from sweep.evaluate.stream import StreamRun, UtteranceResult, _Schedule
from sweep.tracking.plots import plot_capacity


def test_latency_is_measured_from_the_schedule_and_late_answers_are_counted() -> None:
    schedule = _Schedule(t0=100.0, chunk_s=0.4)
    # chunk 0 due at 100.0, answered 50 ms later: on time
    assert schedule.answered(100.05) == pytest.approx(50.0)
    # chunk 1 due at 100.4, answered after chunk 2 was due (100.8): late by 100 ms
    assert schedule.answered(100.9) == pytest.approx(500.0)
    assert schedule.late == 1
    assert schedule.behind_ms == pytest.approx(100.0)
    # chunk 2, due at 100.8 and sent late, answered before chunk 3 is due: caught up
    assert schedule.answered(101.0) == pytest.approx(200.0)
    assert schedule.late == 1 and schedule.behind_ms == 0.0
    assert schedule.end == pytest.approx(101.2)  # the next call on this line starts here


def test_a_paced_chunk_waits_for_its_time_and_a_late_one_goes_at_once() -> None:
    start = time.perf_counter()
    schedule = _Schedule(t0=start + 0.05, chunk_s=0.05)
    asyncio.run(schedule.wait())
    assert time.perf_counter() - start >= 0.045
    schedule.k = 0
    schedule.t0 = time.perf_counter() - 1.0  # long overdue
    t = time.perf_counter()
    asyncio.run(schedule.wait())
    assert time.perf_counter() - t < 0.04


def _utterance(i: int, duration: float) -> Utterance:
    return Utterance(id=f"u{i}", audio_path=Path(f"/nowhere/{i}.wav"),
                     text="x", duration=duration)


def test_playlists_give_every_stream_the_probe_length_starting_elsewhere() -> None:
    utterances = [_utterance(i, d) for i, d in enumerate([1.0, 2.0, 3.0])]
    lists = playlists(utterances, 5, seconds=4.0)
    assert len(lists) == 5
    assert [lst[0] for lst in lists] == [0, 1, 2, 0, 1]
    for lst in lists:
        total = sum(utterances[i].duration for i in lst)
        assert total >= 4.0 and total - utterances[lst[-1]].duration < 4.0
    with pytest.raises(EvaluationError):
        playlists([], 1, 1.0)


def _point(n: int, capacity: int, seconds: float = 1.0) -> ProbePoint:
    ok = n <= capacity
    return ProbePoint(n, 50.0 if ok else 500.0, 0.0 if ok else 0.3, 0.0 if ok else 900.0,
                      seconds, ok)


@pytest.mark.parametrize("true_capacity", [0, 1, 5, 37, 64])
def test_the_search_finds_the_largest_passing_stream_count(true_capacity: int) -> None:
    tried: list[int] = []

    def probe(n: int) -> ProbePoint:
        tried.append(n)
        return _point(n, true_capacity)

    result = search(probe, CapacityBounds(max_streams=1000, budget_s=1e9, retries=0))
    assert result.streams_at_slo == true_capacity
    assert result.stopped_by == "converged"
    assert len(tried) == len(set(tried))  # no count probed twice
    assert len(tried) <= 2 * max(true_capacity, 1).bit_length() + 2


def test_the_search_stops_at_its_stream_and_time_bounds() -> None:
    result = search(lambda n: _point(n, 10_000), CapacityBounds(max_streams=20, budget_s=1e9))
    assert result.streams_at_slo == 20 and result.stopped_by == "max_streams"
    now = [0.0]

    def slow(n: int) -> ProbePoint:
        now[0] += 10.0
        return _point(n, 10_000, seconds=10.0)

    result = search(slow, CapacityBounds(max_streams=10_000, budget_s=35.0, retries=0),
                    clock=lambda: now[0])
    assert result.stopped_by == "budget"
    assert len(result.points) == 3  # a fourth 10 s probe would end past 35 s
    assert result.streams_at_slo == 4


def test_a_failing_count_is_probed_again_and_one_pass_is_enough() -> None:
    outcomes = {8: [False, True], 16: [False, False]}  # 8 stalled once; 16 fails for real
    tried: list[int] = []

    def probe(n: int) -> ProbePoint:
        tried.append(n)
        ok = outcomes[n].pop(0) if n in outcomes else n < 16
        return ProbePoint(n, 50.0 if ok else 500.0, 0.0, 0.0, 1.0, ok)

    result = search(probe, CapacityBounds(max_streams=1000, budget_s=1e9, retries=1))
    assert tried[:6] == [1, 2, 4, 8, 8, 16]
    assert tried.count(16) == 2
    assert result.streams_at_slo == 15


def test_a_probe_passes_only_within_the_slo_and_with_no_stream_behind() -> None:
    bounds = CapacityBounds(slo_ms=100.0, percentile=95.0)
    u = _utterance(0, 1.0)

    def run(latencies: list[float], behind: float) -> StreamRun:
        return StreamRun([UtteranceResult(u, np.zeros((1, 1)), latencies,
                                          behind_ms=behind)], 1.0, 1, pacing="realtime")

    assert judge(run([10.0] * 100, 0.0), 1, bounds, 1.0).passed
    assert not judge(run([10.0] * 90 + [300.0] * 10, 0.0), 1, bounds, 1.0).passed
    assert not judge(run([10.0] * 100, 5.0), 1, bounds, 1.0).passed
    with pytest.raises(EvaluationError):
        CapacityBounds(slo_ms=0)


def test_the_capacity_plot_is_written(tmp_path) -> None:
    capacity = Capacity(CapacityBounds(), [_point(n, 5) for n in (1, 2, 4, 8, 6, 5)], 5)
    out = plot_capacity(capacity, tmp_path / "capacity.png", "fp32")
    assert out.stat().st_size > 1000
    assert capacity.metrics()["streams_at_slo"] == 5.0
