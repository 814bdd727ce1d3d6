"""Triton's statistics (sweep/evaluate/triton_stats.py): deltas over a window, per
request, summed over an ensemble's steps; GPU memory from nvidia-smi's listing. The
integration test (tests/integration/test_latency.py) reads them from a real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.errors import EvaluationError
from sweep.evaluate.triton_stats import (
    ServerStats,
    combine,
    parse_compute_apps,
    parse_model_stats,
)
from sweep.tracking.plots import plot_server_time


def _raw(requests: int, executions: int, queue_ms: float, infer_ms: float,
         batches: dict[int, int]) -> dict:
    # tritonclient's as_json form: 64-bit counters as strings, zero fields left out.
    ns = lambda ms: str(int(ms * 1e6))  # noqa: E731
    return {"name": "model", "execution_count": str(executions),
            "inference_stats": {"success": {"count": str(requests), "ns": "1"},
                                "queue": {"count": str(requests), "ns": ns(queue_ms)},
                                "compute_infer": {"count": str(requests), "ns": ns(infer_ms)}},
            "batch_stats": [{"batch_size": str(b), "compute_infer": {"count": str(c),
                                                                      "ns": "1000"}}
                            for b, c in batches.items()]}


def test_the_window_is_the_difference_of_two_snapshots_per_request() -> None:
    before = parse_model_stats(_raw(100, 50, 100.0, 400.0, {1: 20, 2: 30}))
    after = parse_model_stats(_raw(300, 110, 700.0, 1400.0, {1: 40, 2: 30, 4: 40}))
    window = after.minus(before)
    m = window.metrics()
    assert m["triton_requests"] == 200 and m["triton_executions"] == 60
    assert m["triton_queue_ms"] == pytest.approx(3.0)  # 600 ms over 200 requests
    assert m["triton_compute_infer_ms"] == pytest.approx(5.0)
    assert m["triton_compute_input_ms"] == 0.0
    assert window.batches == {1: 20, 4: 40}  # batch 2 did not run in the window
    assert m["triton_batch_4_executions"] == 40
    assert m["triton_mean_batch"] == pytest.approx((20 + 160) / 60)
    assert ServerStats().metrics() == {}


def test_an_ensemble_sums_its_steps_per_request_of_the_entry(tmp_path: Path) -> None:
    entry = ServerStats(requests=100)  # an ensemble executes nothing itself
    pre = ServerStats(requests=100, executions=100, queue_ns=100_000_000,
                      compute_infer_ns=50_000_000, batches={1: 100})
    acoustic = ServerStats(requests=100, executions=25, queue_ns=200_000_000,
                           compute_infer_ns=400_000_000, batches={4: 25})
    total = combine({"ensemble": entry, "pre": pre, "model": acoustic}, "ensemble")
    assert total.queue_ms == pytest.approx(3.0) and total.compute_ms == pytest.approx(4.5)
    assert total.batches == {4: 25}  # the busiest step's batching
    with pytest.raises(EvaluationError, match="no model 'other'"):
        combine({"model": acoustic}, "other")
    png = plot_server_time([5.0, 9.0], total, tmp_path / "t.png", "test")
    assert png.stat().st_size > 1000


def test_gpu_memory_is_triton_processes_only() -> None:
    listing = ("/opt/tritonserver/bin/tritonserver, 1024\n"
               "/opt/tritonserver/backends/python/triton_python_backend_stub, 512\n"
               "python3, 4096\n")
    assert parse_compute_apps(listing) == 1536 * 1024 * 1024
    assert parse_compute_apps("python3, 4096\n") is None
    assert parse_compute_apps("") is None
