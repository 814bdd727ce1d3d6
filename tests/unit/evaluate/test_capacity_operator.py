"""Capacity an operator can act on (sweep/evaluate/capacity.py, arrivals.py): the interval
of streams_at_slo over the probes, the admission limit with its headroom, the cost of an
audio hour, and Poisson arrivals that offer the load they claim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from sweep.data.manifest import Utterance
from sweep.errors import ConfigError, EvaluationError
from sweep.evaluate import arrivals
from sweep.evaluate.capacity import Capacity, CapacityBounds, ProbePoint
from sweep.evaluate.settings import EvalConfig


def _point(streams: int, passed: bool) -> ProbePoint:
    return ProbePoint(streams=streams, latency_ms=50.0 if passed else 500.0,
                      late_chunk_fraction=0.0, behind_max_ms=0.0, seconds=1.0, passed=passed)


def _capacity(points: list[tuple[int, bool]], found: int, headroom: float = 0.2,
              cost_per_hour: float = 0.0) -> Capacity:
    return Capacity(CapacityBounds(), [_point(n, ok) for n, ok in points], found,
                    headroom=headroom, cost_per_hour=cost_per_hour)


def test_a_clean_search_gives_a_point_and_the_admission_limit_keeps_headroom() -> None:
    c = _capacity([(1, True), (2, True), (4, True), (8, True), (16, False), (16, False),
                   (12, True), (14, False), (14, False), (13, True)], 13,
                  headroom=0.2, cost_per_hour=2.5)
    assert c.interval() == (13, 13)
    m = c.metrics()
    assert m["streams_at_slo_min"] == m["streams_at_slo_max"] == 13
    assert m["admission_limit"] == 10  # floor(13 * 0.8)
    assert m["cost_per_audio_hour"] == pytest.approx(0.25)


def test_a_count_that_failed_once_widens_the_interval() -> None:
    # 8 failed, then passed on its retry; 16 failed twice: capacity in [4, 15].
    c = _capacity([(1, True), (2, True), (4, True), (8, False), (8, True), (16, False),
                   (16, False)], 8, headroom=0.5)
    assert c.interval() == (4, 15)
    assert c.admission_limit == 2


def test_no_cost_figure_without_a_price_or_an_admissible_call() -> None:
    assert "cost_per_audio_hour" not in _capacity([(1, True)], 1).metrics()
    zero = _capacity([(1, False), (1, False)], 0, cost_per_hour=1.0).metrics()
    assert zero["admission_limit"] == 0 and "cost_per_audio_hour" not in zero


def _utterances(durations: list[float]) -> list[Utterance]:
    return [Utterance(id=f"u{i}", audio_path=Path(f"/nowhere/{i}.wav"), text="x",
                      duration=d) for i, d in enumerate(durations)]


def test_poisson_arrivals_keep_the_offered_load_in_progress_on_average() -> None:
    utts = _utterances([2.0, 3.0, 4.0])
    mean_s = arrivals.mean_call_s(utts, None)
    assert mean_s == pytest.approx(3.0)
    plan = arrivals.poisson(utts, load=20, seconds=120.0, chunk_s=0.4, mean_s=mean_s)
    assert list(plan.starts) == sorted(plan.starts)
    assert all(plan.playlists)
    # Calls in progress, sampled over the window's middle: about the load (a call lasts
    # its whole utterances, so a little longer than its holding time).
    ends = [s + sum(utts[i].duration for i in p) for s, p in
            zip(plan.starts, plan.playlists, strict=True)]
    grid = np.linspace(20.0, 100.0, 400)
    busy = [sum(s <= t < e for s, e in zip(plan.starts, ends, strict=True)) for t in grid]
    assert 20 <= np.mean(busy) <= 20 * 1.6
    # The same load and seed draw the same calls; another load, other calls.
    assert arrivals.poisson(utts, 20, 120.0, 0.4, mean_s) == plan
    assert arrivals.poisson(utts, 21, 120.0, 0.4, mean_s) != plan


def test_staggered_calls_start_within_one_chunk() -> None:
    plan = arrivals.staggered(_utterances([1.0, 2.0]), 4, seconds=3.0, chunk_s=0.4)
    assert plan.starts == (0.0, 0.1, 0.2, 0.30000000000000004)
    assert all(sum([1.0, 2.0][i] for i in p) >= 3.0 for p in plan.playlists)


@pytest.mark.parametrize("override", [{"arrivals": "gauss"}, {"admission_headroom": 1.0},
                                      {"cost_per_hour": -1.0}, {"call_mean_s": 0.0},
                                      {"final_silence_ms": 0.0}])
def test_bad_operator_settings_are_refused_when_the_config_is_read(override: dict) -> None:
    with pytest.raises(ConfigError, match="eval\\."):
        OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EvalConfig), override))


def test_capacity_bounds_refuse_an_unknown_arrival_process() -> None:
    with pytest.raises(EvaluationError, match=r"eval\.arrivals"):
        CapacityBounds(arrivals="bursty")


def test_the_job_s_search_is_bounded_by_every_eval_setting() -> None:
    # Each eval.* bound set to a value unlike its default reaches the search's bounds.
    cfg = EvalConfig(slo_ms=150.0, slo_percentile=99.0, capacity_max_streams=64,
                     capacity_probe_s=3.0, capacity_budget_s=45.0, capacity_retries=4,
                     arrivals="poisson", call_mean_s=7.5, arrivals_seed=3,
                     final_silence_ms=450.0)
    bounds = cfg.capacity_bounds()
    assert (bounds.slo_ms, bounds.percentile, bounds.max_streams, bounds.probe_s,
            bounds.budget_s, bounds.retries, bounds.arrivals, bounds.call_mean_s, bounds.seed,
            bounds.final_silence_ms) == (150.0, 99.0, 64, 3.0, 45.0, 4, "poisson", 7.5, 3,
                                         450.0)
    assert CapacityBounds() != bounds
