"""The product's main job against real parts: python -m sweep -m ..., a real tritonserver,
a real MLflow SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.cli import ExitCode
from tests.support.processes import our_processes
from tests.support.sweep import run_sweep
from tests.support.tracking import experiment_id

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_job_sweep(tmp_path_factory, demo_onnx):
    tmp = tmp_path_factory.mktemp("sweep")
    proc = run_sweep(["-m", "trt.precision=fp32,bf16", "dataset=demo_tiny", "eval.streams=4"],
                     tmp)
    assert proc.returncode == 0, proc.stderr[-4000:]
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    runs = client.search_runs([experiment_id(client)])
    return tmp, client, runs, proc


def test_two_jobs_and_a_parent(two_job_sweep):
    _, _, runs, proc = two_job_sweep
    parents = [r for r in runs if r.data.tags.get("trt-sweep.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("trt-sweep.kind") == "job"]
    assert len(parents) == 1 and len(children) == 2
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {r.data.params["trt.precision"] for r in children} == {"fp32", "bf16"}
    assert "trt-sweep results" in proc.stdout + proc.stderr


def test_metrics_are_in_range(two_job_sweep):
    _, _, runs, _ = two_job_sweep
    for run in (r for r in runs if r.data.tags.get("trt-sweep.kind") == "job"):
        m = run.data.metrics
        assert 0.0 <= m["wer"] <= 0.5, m  # the demo model recognises speech
        assert 0.0 <= m["cer"] <= m["wer"] + 1e-9
        assert 0 < m["latency_p50_ms"] <= m["latency_p90_ms"] <= m["latency_p99_ms"] < 5000
        assert m["throughput_chunks_s"] > 0 and m["rtf"] > 0
        assert m["utterances"] == 8
        assert m["startup_seconds"] > 0 and m["build_seconds"] >= 0
        assert run.data.tags["engine_hash"] and run.data.tags["flags_digest"]


def test_artifacts_are_logged(two_job_sweep):
    _, _, runs, _ = two_job_sweep
    for run in runs:
        root = Path(run.info.artifact_uri.removeprefix("file://"))
        files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
        if run.data.tags.get("trt-sweep.kind") == "sweep":
            assert {"sweep_results.csv", "pareto_wer_latency.png"} <= files
            continue
        assert {"engine/model.onnx", "engine/build.log", "transcripts.csv",
                "logs/tritonserver.log", "model_repository/model/config.pbtxt"} <= files, files


def test_one_server_serves_the_whole_sweep(two_job_sweep):
    """server=local keeps one tritonserver for the multirun: each job's log shows its
    model being loaded into a running server, not a server starting."""
    _, _, runs, _ = two_job_sweep
    jobs = [r for r in runs if r.data.tags.get("trt-sweep.kind") == "job"]
    for run in jobs:
        assert run.data.params["server.keep_running"] == "True"
        root = Path(run.info.artifact_uri.removeprefix("file://"))
        log = (root / "logs" / "tritonserver.log").read_text()
        assert log.count("successfully loaded 'model'") == 1, log
        assert "Started GRPCInferenceService" not in log, log


def test_no_server_left_behind(two_job_sweep):
    assert our_processes() == []


def test_bad_jobs_fail_alone(tmp_path, demo_onnx):
    """A flag set TensorRT rejects and a missing ONNX each give a FAILED run with the reason;
    the good job of the same sweep still finishes."""
    proc = run_sweep(["-m", "trt.strongly_typed=false,true", "trt.precision=fp16",
                      "dataset=demo_tiny", "dataset.limit=2"], tmp_path)
    assert proc.returncode == ExitCode.SOME_JOBS_FAILED, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp_id = experiment_id(client)
    jobs = [r for r in client.search_runs([exp_id])
            if r.data.tags.get("trt-sweep.kind") == "job"]
    status = {r.data.params["trt.strongly_typed"]: r for r in jobs}
    assert status["False"].info.status == "FINISHED"
    assert status["True"].info.status == "FAILED"
    assert "strongly typed" in status["True"].data.tags["error"]

    missing = run_sweep(["model.onnx_path=/nonexistent/model.onnx", "dataset=demo_tiny"],
                        tmp_path)
    assert missing.returncode == ExitCode.ALL_JOBS_FAILED
    assert "/nonexistent/model.onnx does not exist" in missing.stderr
    failed = [r for r in client.search_runs([exp_id])
              if r.data.tags.get("error", "").startswith("ONNX model /nonexistent")]
    assert len(failed) == 1 and failed[0].info.status == "FAILED"
    assert our_processes() == []
