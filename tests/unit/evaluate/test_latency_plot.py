"""The job's latency plot draws what its latency metrics measure: every pass's chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sweep.data.manifest import Utterance
from sweep.evaluate.metrics import Scores, latency_summary
from sweep.evaluate.result import EvalResult
from sweep.evaluate.stream import StreamRun, UtteranceResult
from sweep.tracking.plots import plot_latency


def _pass(latencies: list[float]) -> StreamRun:
    utterance = Utterance("u1", Path("u1.wav"), "да", 1.0)
    return StreamRun([UtteranceResult(utterance, np.zeros((1, 2)), latencies)], 1.0, 1)


def test_the_plot_marks_the_metric_of_the_pooled_passes(tmp_path: Path):
    # A fast first pass and a slow second one: the first alone has another p99.
    first, second = _pass([10.0] * 99 + [12.0]), _pass([10.0] * 90 + [80.0] * 10)
    result = EvalResult(Scores(0.1, 0.05), first, {}, None, (second,))
    p99 = result.metrics()["latency_p99_ms"]
    assert latency_summary(first.latencies_ms)["latency_p99_ms"] != pytest.approx(p99)
    pooled = result.pooled_latencies()
    assert pooled.size == 200
    assert latency_summary(pooled)["latency_p99_ms"] == pytest.approx(p99)
    out = plot_latency(pooled, tmp_path / "latency.png", "two passes")
    assert out.read_bytes()[:4] == b"\x89PNG"
