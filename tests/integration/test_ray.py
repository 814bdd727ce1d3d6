"""Jobs in parallel on a local Ray instance (hydra/launcher=ray_local): 4 jobs on 2
workers, each reserving one GPU. This host has no GPU, so the Ray instance declares two
logical ones; Ray then hands each job its own CUDA_VISIBLE_DEVICES, which the job records
through `server.gpus=${oc.env:CUDA_VISIBLE_DEVICES}` (the override docs/scaling.md gives
for GPU hosts)."""

from __future__ import annotations

import secrets

import pytest
from mlflow.tracking import MlflowClient

from sweep.tracking import tags as tag
from tests.support.processes import our_processes
from tests.support.sweep import run_sweep
from tests.support.tracking import experiment_id

pytest.importorskip("ray", reason="the `ray` extra is not installed: pip install -e '.[ray]'")
pytest.importorskip("hydra_plugins.hydra_ray_launcher",
                    reason="the `ray` extra is not installed: pip install -e '.[ray]'")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_four_jobs_on_two_ray_workers(tmp_path, monkeypatch, demo_onnx):
    # A token in the environment: Ray 2.60's token authentication is satisfied without
    # writing ~/.ray/auth_token on the test machine.
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
    proc = run_sweep(["-m", "hydra/launcher=ray_local", "hydra.launcher.ray.init.num_cpus=2",
                      "hydra.launcher.ray.init.num_gpus=2",
                      "hydra.launcher.ray.remote.num_gpus=1",
                      "server.gpus=${oc.env:CUDA_VISIBLE_DEVICES,none}",
                      "trt.precision=fp32,fp16", "trt.opt_level=0,3",
                      "dataset=demo_tiny", "dataset.limit=1", "eval.streams=1"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Ray Launcher is launching 4 jobs" in proc.stderr + proc.stdout

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([experiment_id(client)])
    parents = [r for r in runs if r.data.tags.get(tag.KIND) == "sweep"]
    jobs = [r for r in runs if r.data.tags.get(tag.KIND) == "job"]
    assert len(parents) == 1 and len(jobs) == 4
    assert all(r.info.status == "FINISHED" for r in runs), [r.data.tags.get("error")
                                                            for r in runs]
    # Ray workers found the parent run through the file in the sweep folder or the env.
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parents[0].info.run_id}
    assert {(r.data.params["trt.precision"], r.data.params["trt.opt_level"]) for r in jobs} \
        == {("fp32", "0"), ("fp32", "3"), ("fp16", "0"), ("fp16", "3")}

    # Two workers: jobs overlapped, never more than two at once, and jobs running at the
    # same time held different GPUs.
    spans = [(r.info.start_time, r.info.end_time, r.data.params["server.gpus"]) for r in jobs]
    assert {gpu for *_, gpu in spans} <= {"0", "1"}
    overlapping = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:]
                   if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, spans
    assert all(a[2] != b[2] for a, b in overlapping), spans
    for start, _, _ in spans:
        assert sum(s <= start < e for s, e, _ in spans) <= 2
    assert our_processes() == []
