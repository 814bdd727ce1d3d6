"""What a caller feels and what Triton spends it on, through ``python -m sweep``: a paced
demo_tiny sweep logs final-transcript latencies (at least the splitter's silence) and
Triton's statistics over the measured window, promote ranks by the final latency; a
capacity run with Poisson arrivals logs streams_at_slo with its interval and the admission
limit."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from sweep.evaluate.finals import FINAL_SILENCE_MS
from sweep.promote.cli import main as promote
from sweep.tracking import tags as tag
from tests.support.processes import our_processes
from tests.support.sweep import run_sweep
from tests.support.tracking import experiment_id

pytestmark = pytest.mark.integration


def _runs(tmp: Path) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([experiment_id(client, "trt-sweep")],
                              filter_string=f"tags.`{tag.KIND}` = 'job'")
    assert runs and all(r.info.status == "FINISHED" for r in runs)
    return runs


def test_a_paced_job_logs_final_latency_and_tritons_side(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = run_sweep(["-m", "trt.opt_level=0,3", "dataset=demo_tiny", "dataset.limit=4",
                      "eval.pacing=realtime", "eval.streams=4", "+force=true"],
                     tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = _runs(tmp_path)
    assert len(runs) == 2
    for run in runs:
        m = run.data.metrics
        # The caller waits at least the splitter's silence after speaking, and the final
        # text comes with a chunk: at most a chunk (400 ms) and the chunk's latency later.
        assert m["final_latency_p50_ms"] >= FINAL_SILENCE_MS
        assert m["final_latency_p50_ms"] <= m["final_latency_p95_ms"] \
            <= m["final_latency_p99_ms"]
        assert m["final_latency_p50_ms"] <= FINAL_SILENCE_MS + 400 + m["latency_p99_ms"]
        assert m["final_latency_p95_ms_min"] <= m["final_latency_p95_ms_max"]
        assert 0 < m["partial_latency_p50_ms"] <= m["partial_latency_p95_ms"]
        # Triton saw every chunk of every pass, and says where the time went.
        assert m["triton_requests"] == m["chunks"] * m["eval_repeats"]
        assert m["triton_compute_infer_ms"] > 0 and m["triton_queue_ms"] >= 0
        executions = sum(v for k, v in m.items()
                         if k.startswith("triton_batch_") and k.endswith("_executions"))
        assert executions == m["triton_executions"]
        assert "gpu_memory_used_bytes" not in m  # a CPU host: no figure, no failure
        artifacts = mlflow.MlflowClient(
            f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}").list_artifacts(
                run.info.run_id, "plots")
        assert "plots/triton.png" in {a.path for a in artifacts}
    capsys.readouterr()
    code = promote(["--tracking-uri", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
                    "--dry-run", "--objective", "final_latency_p95_ms:min"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "final_latency_p95_ms" in out
    assert our_processes() == []


def test_a_poisson_capacity_run_logs_the_interval_and_the_admission_limit(
        tmp_path: Path) -> None:
    # The operator preset (conf/eval/operator.yaml: paced, capacity, Poisson), kept short.
    done = run_sweep(["dataset=demo_tiny", "dataset.limit=4", "eval=operator",
                      "eval.repeats=1", "eval.capacity_max_streams=4",
                      # An SLO any loaded machine meets: this checks what is logged, not
                      # how fast the machine is (bench/ measures that).
                      "eval.slo_ms=2000", "eval.capacity_probe_s=3",
                      "eval.capacity_budget_s=25", "eval.capacity_retries=0",
                      "eval.admission_headroom=0.25", "eval.cost_per_hour=3.0",
                      "+force=true"], tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = _runs(tmp_path)
    m = run.data.metrics
    assert run.data.params["eval.arrivals"] == "poisson"
    assert run.data.params["eval.admission_headroom"] == "0.25"
    assert m["final_latency_p95_ms"] >= FINAL_SILENCE_MS  # the preset paces the pass too
    assert m["streams_at_slo_min"] <= m["streams_at_slo"] <= m["streams_at_slo_max"]
    assert m["streams_at_slo"] >= 1
    assert m["admission_limit"] == int(m["streams_at_slo_min"] * 0.75)
    if m["admission_limit"] > 0:
        assert m["cost_per_audio_hour"] == pytest.approx(3.0 / m["admission_limit"])
    assert m["capacity_final_latency_p95_ms"] >= FINAL_SILENCE_MS
    assert 0 < m["capacity_partial_latency_p95_ms"] <= m["capacity_final_latency_p95_ms"]
    assert our_processes() == []
