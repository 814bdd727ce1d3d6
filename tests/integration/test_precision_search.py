"""python -m sweep.precision_search end to end on the bundled demo model: real emulated
builds, in-process evaluation, an MLflow parent with a child run per probe, and a flag set
that loads as `trt=<name>` and reproduces the final probe."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.support.paths import ROOT
from tests.support.tracking import experiment_id

pytestmark = pytest.mark.integration


def test_search_writes_a_flag_set_that_meets_the_budget(tmp_path, demo_onnx):
    out = tmp_path / "conf" / "trt" / "fp16_found.yaml"
    cmd = [sys.executable, "-m", "sweep.precision_search", "--target", "fp16",
           "--wer-budget", "0", "--max-frame-flips", "0", "--granularity", "op_type",
           "--output", str(out), "dataset=demo_tiny", "dataset.limit=2",
           f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
           f"tracking.artifact_root={tmp_path}/artifacts", f"builder.cache_dir={tmp_path}/cache"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([experiment_id(client)])
    parent = next(r for r in runs if r.data.tags.get("trt-sweep.kind") == "precision_search")
    probes = [r for r in runs if r.data.tags.get("trt-sweep.kind") == "probe"]
    assert parent.info.status == "FINISHED"
    assert len(probes) == parent.data.metrics["probes"] >= 3
    assert {r.data.tags["mlflow.parentRunId"] for r in probes} == {parent.info.run_id}
    final = next(r for r in probes if r.data.params["probe.phase"] == "final")
    assert final.data.metrics["passed"] == 1.0
    assert final.data.metrics["frame_flips"] == 0.0
    assert final.data.metrics["wer"] <= parent.data.metrics["baseline_wer"]

    preset = yaml.safe_load(out.read_text())
    assert preset["precision"] == "fp16" and preset["defaults"] == ["default", "_self_"]
    # The written flag set is the final probe's, and the sweep accepts it as a preset.
    pins = ",".join(f"{k}:{v}" for k, v in preset["layer_precisions"].items()) or "-"
    assert final.data.params["trt.layer_precisions"] == pins
    shown = subprocess.run([sys.executable, "-m", "sweep", "trt=fp16_found",
                            f"hydra.searchpath=[file://{tmp_path}/conf]", "--cfg", "job",
                            "-p", "trt"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert yaml.safe_load(shown.stdout)["layer_precisions"] == preset["layer_precisions"]
