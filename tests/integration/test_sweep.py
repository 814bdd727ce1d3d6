"""The product's main job against real parts: python -m sweep -m ..., a real tritonserver,
a real MLflow SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.cli import ExitCode
from sweep.tracking import tags as tag
from tests.support.models import demo_reference_wer
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
    parents = [r for r in runs if r.data.tags.get(tag.KIND) == "sweep"]
    children = [r for r in runs if r.data.tags.get(tag.KIND) == "job"]
    assert len(parents) == 1 and len(children) == 2
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {r.data.params["trt.precision"] for r in children} == {"fp32", "bf16"}
    assert "trt-sweep results" in proc.stdout + proc.stderr


def test_metrics_are_in_range(two_job_sweep):
    _, _, runs, _ = two_job_sweep
    for run in (r for r in runs if r.data.tags.get(tag.KIND) == "job"):
        m = run.data.metrics
        # The demo model recognises speech: what the fp32 reference gets, give or take.
        assert 0.0 <= m["wer"] <= demo_reference_wer() + 0.1, m
        assert 0.0 <= m["cer"] <= m["wer"] + 1e-9
        assert 0 < m["latency_p50_ms"] <= m["latency_p90_ms"] <= m["latency_p99_ms"] < 5000
        assert m["throughput_chunks_s"] > 0 and m["rtf"] > 0
        assert m["utterances"] == 8
        assert m["internal/startup_seconds"] > 0 and m["build_seconds"] >= 0
        assert run.data.tags["engine_hash"] and run.data.tags["flags_digest"]
        # What a person compares stands apart from where the job's time went.
        assert not [k for k in m if k.startswith("emu_") or k == "startup_seconds"], sorted(m)
        assert any(k.startswith("internal/emu_") for k in m), sorted(m)


def test_each_engine_is_stored_once(two_job_sweep):
    """The run holds the engine (promote and serve read it there); its LoggedModel holds the
    flag set and build log, not a second copy of the engine."""
    _, client, runs, _ = two_job_sweep
    for run in (r for r in runs if r.data.tags.get(tag.KIND) == "job"):
        model = client.get_logged_model(run.data.tags["logged_model_id"])
        root = Path(model.artifact_location.removeprefix("file://"))
        files = {p.name for p in root.rglob("*") if p.is_file()}
        assert "model.onnx" not in files and "flags.yaml" in files, files
        run_root = Path(run.info.artifact_uri.removeprefix("file://"))
        assert (run_root / "engine" / "model.onnx").is_file()


def test_progress_and_the_verdict_are_printed(two_job_sweep):
    """Off a terminal, each long phase is a start and an end line with its seconds and the
    job's place in the sweep; the sweep ends with the verdict and where the results are."""
    _, _, runs, proc = two_job_sweep
    out = proc.stdout + proc.stderr
    assert "(job 1/2) build (emulate): started" in out
    assert "(job 2/2" in out and "streaming the test set: done in " in out
    assert "fp32 reference (in-process): done in " in out
    (parent,) = [r for r in runs if r.data.tags.get(tag.KIND) == "sweep"]
    assert "verdict: Ship " in out or "verdict: No engine" in out
    assert f"results: parent run {parent.info.run_id}" in out
    assert "results: CSV: " in out and "workflowType=machine_learning" in out


def test_artifacts_are_logged(two_job_sweep):
    _, _, runs, _ = two_job_sweep
    for run in runs:
        root = Path(run.info.artifact_uri.removeprefix("file://"))
        files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
        if run.data.tags.get(tag.KIND) == "sweep":
            assert {"sweep_results.csv", "pareto_wer_latency.png"} <= files
            continue
        assert {"engine/model.onnx", "engine/build.log", "transcripts.csv",
                "logs/tritonserver.log", "model_repository/model/config.pbtxt"} <= files, files


def test_one_server_serves_the_whole_sweep(two_job_sweep):
    """server=local keeps one tritonserver for the multirun: each job's log shows its
    model being loaded into a running server, not a server starting."""
    _, _, runs, _ = two_job_sweep
    jobs = [r for r in runs if r.data.tags.get(tag.KIND) == "job"]
    for run in jobs:
        assert run.data.params["server.keep_running"] == "True"
        root = Path(run.info.artifact_uri.removeprefix("file://"))
        log = (root / "logs" / "tritonserver.log").read_text()
        assert log.count("successfully loaded 'model'") == 1, log
        assert "Started GRPCInferenceService" not in log, log


def test_no_server_left_behind(two_job_sweep):
    assert our_processes() == []


def test_bad_jobs_fail_alone(tmp_path, demo_onnx):
    """A flag set whose layer pattern names no layer of the graph (found by the builder,
    which reads the graph) gives a FAILED run with the reason; the good job of the same
    sweep still finishes. What the preflight can see before any job (a flag set TensorRT
    rejects, a missing ONNX) refuses the whole sweep instead, with no run opened."""
    proc = run_sweep(["-m", "trt.precision_constraints=obey",
                      "+trt.layer_precisions={},{NoSuchLayer:fp16}", "dataset=demo_tiny",
                      "dataset.limit=2"], tmp_path)
    assert proc.returncode == ExitCode.SOME_JOBS_FAILED, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp_id = experiment_id(client)
    jobs = [r for r in client.search_runs([exp_id])
            if r.data.tags.get(tag.KIND) == "job"]
    by_status = {r.info.status: r for r in jobs}
    assert sorted(by_status) == ["FAILED", "FINISHED"], [r.info.status for r in jobs]
    assert "NoSuchLayer" in by_status["FAILED"].data.tags["error"]
    assert "match no node name or op type" in by_status["FAILED"].data.tags["error"]
    before = len(client.search_runs([exp_id]))

    # Weakly typed fp8: TensorRT builds no fp8 layer from the flag alone (Q/DQ only).
    refused = run_sweep(["-m", "trt.precision=fp16,fp8", "dataset=demo_tiny",
                         "dataset.limit=2"], tmp_path)
    assert refused.returncode == ExitCode.REFUSED, refused.stderr[-3000:]
    assert refused.stderr.count("no fp8 layer") == 1, refused.stderr[-3000:]
    missing = run_sweep(["model.onnx_path=/nonexistent/model.onnx", "dataset=demo_tiny"],
                        tmp_path)
    assert missing.returncode == ExitCode.REFUSED, missing.stderr[-3000:]
    assert missing.stderr.count("/nonexistent/model.onnx does not exist") == 1
    assert len(client.search_runs([exp_id])) == before  # neither opened a run
    assert our_processes() == []


def test_jobs_are_recorded_the_way_mlflow_3_shows_them(two_job_sweep):
    """Each job: its engine a LoggedModel (flag set as params, metrics linked), the test set
    as a run input, the flag set's digest as a param and flags.yaml, MLflow's system
    metrics, WER with its bootstrap interval, latency with its spread over repeats."""
    _, client, runs, _ = two_job_sweep
    exp = experiment_id(client)
    assert client.get_experiment(exp).tags["mlflow.experimentKind"] == \
        "custom_model_development"
    jobs = [r for r in runs if r.data.tags.get(tag.KIND) == "job"]
    models = {m.model_id: m for m in client.search_logged_models([exp])}
    digests = set()
    for run in jobs:
        m, p, t = run.data.metrics, run.data.params, run.data.tags
        model = models[t["logged_model_id"]]
        assert model.name == f"{run.info.run_name}-{t['flags_digest'][:6]}"
        assert model.source_run_id == run.info.run_id and str(model.status) == "READY"
        assert model.params["trt.precision"] == p["trt.precision"]
        assert {x.key for x in model.metrics} >= {"wer", "latency_p99_ms"}
        (ds,) = run.inputs.dataset_inputs
        assert ds.dataset.name == "demo_tiny" and ds.dataset.digest == t["dataset_digest"]
        digests.add(ds.dataset.digest)
        assert p["flags.digest"] == t["flags_digest"]
        root = Path(run.info.artifact_uri.removeprefix("file://"))
        assert "precision: " + p["trt.precision"] in (root / "flags.yaml").read_text()
        assert (root / "model_repository" / "model" / "1" / "model.py").is_file()
        assert m["system/cpu_utilization_percentage"] >= 0
        assert m["system/system_memory_usage_megabytes"] > 0
        assert m["wer_ci_low"] <= m["wer"] <= m["wer_ci_high"]
        assert m["eval_repeats"] == 2 and m["latency_p99_ms_spread"] >= 0
        assert m["latency_p99_ms_min"] <= m["latency_p99_ms_max"]
    assert len(digests) == 1


def test_an_inherited_mlflow_run_id_never_reparents_jobs(tmp_path, demo_onnx):
    """A sweep started inside another MLflow run (MLFLOW_RUN_ID, TRT_SWEEP_PARENT_RUN_ID in
    its environment): its jobs are children of the sweep's own parent run only."""
    import os
    import subprocess

    from tests.support.paths import ROOT
    from tests.support.sweep import sweep_command

    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    client = MlflowClient(f"sqlite:///{db}")
    outer = client.create_run("0", run_name="outer").info.run_id
    env = {**os.environ, "MLFLOW_RUN_ID": outer, "TRT_SWEEP_PARENT_RUN_ID": outer}
    for args in (["-m", "trt.precision=fp32"], []):
        proc = subprocess.run(sweep_command([*args, "dataset=demo_tiny", "dataset.limit=1",
                                             "eval.repeats=1"], tmp_path),
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    runs = client.search_runs([experiment_id(client)])
    (parent,) = [r for r in runs if r.data.tags.get(tag.KIND) == "sweep"]
    jobs = sorted((r for r in runs if r.data.tags.get(tag.KIND) == "job"),
                  key=lambda r: r.info.start_time)
    assert len(jobs) == 2
    assert jobs[0].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert "mlflow.parentRunId" not in jobs[1].data.tags  # a single run has no parent
    assert "mlflow.parentRunId" not in parent.data.tags
    assert client.search_runs(["0"], f"tags.mlflow.parentRunId = '{outer}'") == []
