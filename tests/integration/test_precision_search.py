"""python -m sweep.precision_search end to end on the bundled demo model: real emulated
builds, real ModelOpt quantisation, in-process evaluation, an MLflow parent with a child run
per probe, and a flag set that loads as `trt=<name>` and reproduces the final probe; the
int8 search interrupted and resumed reaches the preset of an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweep.tracking import tags as tag
from tests.support.paths import ROOT
from tests.support.tracking import experiment_id

pytestmark = pytest.mark.integration


def test_search_writes_a_flag_set_that_meets_the_budget(tmp_path, demo_onnx):
    out = tmp_path / "conf" / "trt" / "fp16_found.yaml"
    cmd = [sys.executable, "-m", "sweep.precision_search", "--target", "fp16",
           "--max-wer-delta", "0pt", "--max-frame-flips", "0", "--granularity", "op_type",
           "--output", str(out), "dataset=demo_tiny", "dataset.limit=2",
           f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
           f"tracking.artifact_root={tmp_path}/artifacts", f"builder.cache_dir={tmp_path}/cache"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([experiment_id(client)])
    parent = next(r for r in runs if r.data.tags.get(tag.KIND) == "precision_search")
    probes = [r for r in runs if r.data.tags.get(tag.KIND) == "probe"]
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


def test_the_old_fraction_budget_is_refused_before_any_work(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sweep.precision_search", "--target", "int8",
                           "--wer-budget", "0.005", f"builder.cache_dir={tmp_path}/cache"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--max-wer-delta 0.5" in proc.stderr and "points" in proc.stderr
    assert not (tmp_path / "cache").exists()


# -- int8: the ranked search, interrupted and resumed ---------------------------------------

def _int8_command(tmp_path: Path, name: str) -> list[str]:
    # A frame-level budget: on 3 utterances int8 loses no word but moves a few frames, so
    # the search has to revert something. The typed-ONNX and engine caches are shared (the
    # second search reuses the first one's quantised models); each search has its own
    # record and preset.
    return [sys.executable, "-m", "sweep.precision_search", "--target", "int8",
            "--max-wer-delta", "0pt", "--max-frame-flips", "0", "--granularity", "module",
            "--max-probes", "12", "--history", str(tmp_path / f"{name}.jsonl"),
            "--output", str(tmp_path / "conf" / "trt" / f"{name}.yaml"),
            "dataset=demo_tiny", "dataset.limit=3",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            f"tracking.artifact_root={tmp_path}/artifacts", f"builder.cache_dir={tmp_path}/cache"]


def _evals(history: Path, kind: str) -> int:
    """Evaluations of one kind (``full``: full-set probes after fp32; ``subset``: group
    scores of a ranking) recorded so far."""
    if not history.exists():
        return 0
    return sum(1 for line in history.read_text().splitlines()
               if '"type": "eval"' in line and f'"key": "{kind}:' in line)


def test_int8_search_resumes_after_an_interrupt_to_the_same_preset(tmp_path, demo_onnx):
    whole = subprocess.run(_int8_command(tmp_path, "whole"), cwd=ROOT, capture_output=True,
                           text=True, timeout=900)
    assert whole.returncode == 0, whole.stderr[-4000:]
    expected = yaml.safe_load((tmp_path / "conf" / "trt" / "whole.yaml").read_text())
    assert expected["strongly_typed"] is True and expected["precision"] == "int8"
    assert expected["layer_precisions"], "the budget should have needed a node in float"

    # Interrupt the same search in the middle of its first ranking, as Ctrl-C would.
    cut = tmp_path / "cut.jsonl"
    proc = subprocess.Popen(_int8_command(tmp_path, "cut"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while _evals(cut, "subset") < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the search ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert not (tmp_path / "conf" / "trt" / "cut.yaml").exists()
    recorded = _evals(cut, "subset")

    resumed = subprocess.run(_int8_command(tmp_path, "cut"), cwd=ROOT, capture_output=True,
                             text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming" in resumed.stderr and "(replayed)" in resumed.stderr
    got = yaml.safe_load((tmp_path / "conf" / "trt" / "cut.yaml").read_text())
    assert got["layer_precisions"] == expected["layer_precisions"]

    # One parent for both sessions of the resumed search; each full-set probe logged once.
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    meta = {}
    for line in cut.read_text().splitlines():
        record = json.loads(line)
        if record["type"] == "meta":
            meta.update(record["values"])
    parent = client.get_run(meta["parent_run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [experiment_id(client)], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    probes = [r for r in children if r.data.tags.get(tag.KIND) == "probe"
              and r.info.status == "FINISHED"]
    assert len(probes) == parent.data.metrics["probes"] == _evals(cut, "full") + 1  # + fp32
    assert _evals(cut, "subset") > recorded
    assert any(r.data.tags.get(tag.KIND) == "ranking" for r in children)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"wer_vs_kept.png", "probes.csv", "cut.yaml"} <= artifacts
