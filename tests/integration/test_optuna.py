"""A real multi-objective Optuna multirun (hydra/sweeper=pareto): jobs run, the sweeper
gets (wer, latency_p99_ms) back, and the parent MLflow run gets its summary and Pareto plot
as with a grid sweep (the callback's on_multirun_start/end fire under this sweeper too)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweep.tracking import tags as tag
from tests.support.processes import our_processes
from tests.support.sweep import run_sweep
from tests.support.tracking import experiment_id

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper",
                    reason="the `optuna` extra is not installed: pip install -e '.[optuna]'")

pytestmark = pytest.mark.integration


def test_three_trial_pareto_search(tmp_path, demo_onnx):
    proc = run_sweep(["-m", "hydra/sweeper=pareto", "hydra.sweeper.n_trials=3",
                      "dataset=demo_tiny", "dataset.limit=2", "eval.streams=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Sampler: NSGAIISampler" in proc.stderr + proc.stdout

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([experiment_id(client)])
    parents = [r for r in runs if r.data.tags.get(tag.KIND) == "sweep"]
    jobs = [r for r in runs if r.data.tags.get(tag.KIND) == "job"]
    assert len(parents) == 1 and len(jobs) == 3
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parents[0].info.run_id}
    for job in jobs:  # every trial comes from the preset's search space
        assert job.data.params["trt.precision"] in ("fp32", "fp16", "bf16")
        assert job.data.params["trt.opt_level"] in {str(i) for i in range(6)}

    root = Path(parents[0].info.artifact_uri.removeprefix("file://"))
    assert {"sweep_results.csv", "pareto_wer_latency.png"} <= {p.name for p in root.iterdir()}

    # The sweeper's own Pareto front holds the objectives the jobs returned.
    results = yaml.safe_load((tmp_path / "multirun" / "optimization_results.yaml").read_text())
    measured = {(j.data.metrics["wer"], j.data.metrics["latency_p99_ms"]) for j in jobs}
    assert results["solutions"]
    for solution in results["solutions"]:
        assert tuple(solution["values"]) in measured
        assert set(solution["params"]) == {"trt.precision", "trt.opt_level", "trt.tf32",
                                           "+trt_pins"}
    assert our_processes() == []
