"""Resume: rerunning an interrupted sweep runs only the jobs that did not finish; the others
get a run that points at the FINISHED one and carries its metrics. +force=true runs
everything again, and the engine cache makes that rerun build nothing."""

from __future__ import annotations

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from sweep.tracking import resume
from sweep.tracking import tags as tag
from tests.support.paths import ROOT
from tests.support.processes import our_processes
from tests.support.sweep import run_sweep
from tests.support.tracking import experiment_id

pytestmark = pytest.mark.integration

if "resume.find_finished" not in (ROOT / "sweep" / "job.py").read_text():
    pytest.skip("sweep/job.py does not call sweep.tracking.resume yet (the patch is in "
                "docs/.report_scaling.md)", allow_module_level=True)

ARGS = ["-m", "trt.precision=fp32,fp16", "dataset=demo_tiny", "dataset.limit=1",
        "eval.streams=1"]


def jobs_of(client: MlflowClient, parent: str) -> dict[str, Run]:
    runs = client.search_runs([experiment_id(client)],
                              filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    return {r.data.params["trt.precision"]: r for r in runs}


def last_parent(client: MlflowClient) -> str:
    runs = client.search_runs([experiment_id(client)],
                              filter_string=f"tags.`{tag.KIND}` = 'sweep'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id


def test_rerun_resumes_finished_jobs_and_force_reruns(tmp_path, demo_onnx):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    first = run_sweep(ARGS, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    done = jobs_of(client, last_parent(client))
    # The sweep was interrupted during its fp16 job.
    client.set_terminated(done["fp16"].info.run_id, "KILLED")

    second = run_sweep(ARGS, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "skipped" in second.stderr and "FINISHED in run" in second.stderr
    rerun = jobs_of(client, last_parent(client))
    fp32, fp16 = rerun["fp32"], rerun["fp16"]
    assert fp32.data.tags[resume.RESUMED_TAG] == done["fp32"].info.run_id
    assert fp32.info.status == "FINISHED"
    assert fp32.data.metrics["wer"] == done["fp32"].data.metrics["wer"]
    assert fp32.data.metrics["latency_p99_ms"] == done["fp32"].data.metrics["latency_p99_ms"]
    assert "engine_cached" not in fp32.data.tags  # nothing was built or served
    assert resume.RESUMED_TAG not in fp16.data.tags  # the KILLED job ran again
    assert fp16.data.tags["engine_cached"] == "true"  # ... from the cached engine
    assert fp16.info.status == "FINISHED"

    forced = run_sweep([*ARGS, "+force=true"], tmp_path)
    assert forced.returncode == 0, forced.stderr[-3000:]
    again = jobs_of(client, last_parent(client))
    assert all(resume.RESUMED_TAG not in r.data.tags for r in again.values())
    assert {r.data.tags["engine_cached"] for r in again.values()} == {"true"}
    assert our_processes() == []


def test_another_sweeps_job_is_measured_again_or_copied_and_marked(tmp_path, demo_onnx):
    """A single fp16 run, then a sweep that holds fp16: measured anew (its latency was taken
    at another moment), the engine from the cache. A later sweep that asks for reuse across
    sweeps copies the earlier figures, and its table, CSV and the run's description say where
    they were measured. Serving such a copy serves the original's engine."""
    import csv

    from sweep.serve.cli import fetch_run
    from sweep.tracking import tags as tag

    small = ["dataset=demo_tiny", "dataset.limit=1", "eval.streams=1"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    single = run_sweep(["trt.precision=fp16", *small], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    (original,) = client.search_runs([experiment_id(client)])

    sweep = run_sweep(["-m", "trt.precision=fp32,fp16", *small], tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert "skipped" not in sweep.stderr
    fp16 = jobs_of(client, last_parent(client))["fp16"]
    assert tag.RESUMED_FROM not in fp16.data.tags and fp16.data.tags["engine_cached"] == "true"

    reuse = run_sweep(["-m", "trt.precision=fp16,bf16", *small,
                       "tracking.reuse_across_sweeps=true"], tmp_path)
    assert reuse.returncode == 0, reuse.stderr[-3000:]
    parent = last_parent(client)
    copied = jobs_of(client, parent)["fp16"]
    assert copied.data.tags[tag.RESUMED_FROM] == original.info.run_id
    out = reuse.stdout + reuse.stderr
    assert "↺" in out and f"run {original.info.run_id[:8]}" in out
    assert "measured in a single run" in copied.data.tags[tag.NOTE]
    sweep_dir = client.get_run(parent).data.tags[tag.SWEEP_DIR]
    with open(f"{sweep_dir}/sweep_results.csv") as f:
        rows = {r["run_id"]: r for r in csv.DictReader(f)}
    assert rows[copied.info.run_id]["measured_in_another_sweep"] == "True"
    assert rows[copied.info.run_id]["measured_in_run"] == original.info.run_id

    configs, engine, run = fetch_run(f"sqlite:///{tmp_path}/mlruns/mlflow.db",
                                     copied.info.run_id, tmp_path / "serve")
    assert run.info.run_id == copied.info.run_id and engine.name == "model.onnx"
    from sweep.infra.files import file_digest

    # The copy has no artifacts: what is served is the original's engine, as it recorded it.
    assert "model" in configs and not client.list_artifacts(copied.info.run_id, "engine")
    assert file_digest(engine) == original.data.tags[tag.ENGINE_SHA256]
    assert our_processes() == []
