"""eval.pacing=realtime through ``python -m sweep``: a server slowed on purpose (a queue
delay longer than a chunk) shows late chunks in the paced run. The unpaced run on the same
server has no schedule, so it cannot tell lateness at all: it reports latency from each
send, which hides the wait its own closed loop imposed (coordinated omission)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from sweep.tracking import tags as tag
from tests.support.processes import our_processes
from tests.support.sweep import run_sweep
from tests.support.tracking import experiment_id

pytestmark = pytest.mark.integration

# 500 ms > the demo's 400 ms chunk: with 8 streams the batch never fills (max 16), so
# every request waits the whole delay, and each call falls further behind its audio.
SLOW = ["dataset=demo_tiny", "server.queue_delay_us=500000", "+force=true"]


def _metrics(tmp: Path) -> dict[str, float]:
    client = mlflow.MlflowClient(f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([experiment_id(client, "trt-sweep")],
                                filter_string=f"tags.`{tag.KIND}` = 'job'")
    assert run.info.status == "FINISHED"
    return run.data.metrics


def test_a_slowed_server_shows_late_chunks_only_when_paced(tmp_path: Path) -> None:
    paced_dir, unpaced_dir = tmp_path / "paced", tmp_path / "unpaced"
    for folder, extra in ((paced_dir, ["eval.pacing=realtime"]), (unpaced_dir, [])):
        done = run_sweep([*SLOW, *extra], folder, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    paced, unpaced = _metrics(paced_dir), _metrics(unpaced_dir)
    assert paced["late_chunk_fraction"] > 0.5
    assert paced["behind_realtime_max_ms"] > 400.0  # more than a chunk behind at the end
    assert "late_chunk_fraction" not in unpaced  # no schedule: no notion of late
    # The closed loop measured from the send sees about the queue delay; the paced run,
    # measured from when the audio existed, sees the backlog it grew.
    assert paced["latency_p99_ms"] > 2 * unpaced["latency_p99_ms"]
    assert our_processes() == []


def test_an_unslowed_server_keeps_up_with_realtime(tmp_path: Path) -> None:
    done = run_sweep(["dataset=demo_tiny", "dataset.limit=4", "eval.pacing=realtime"],
                     tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = _metrics(tmp_path)
    # 4 calls on an idle demo server: none ends behind; a late chunk would mean the
    # machine stalled for a whole chunk (400 ms), which the bound leaves room for.
    assert metrics["late_chunk_fraction"] < 0.1
    assert metrics["latency_p50_ms"] < 400.0
