"""The same sweep with server=docker and server=local, on the same cached engines, gives the
same transcripts and WER; afterwards no container of ours exists."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.infra.files import LABEL
from sweep.tracking import tags as tag
from tests.support.sweep import run_sweep
from tests.support.tracking import experiment_id

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def test_docker_sweep_matches_local(cpu_image: str, docker_client, tmp_path: Path,
                                    demo_onnx: Path) -> None:
    common = ["-m", "trt.precision=fp32,bf16", "dataset=demo_tiny", "eval.streams=4"]
    before = {c.id for c in docker_client.containers.list(all=True,
                                                          filters={"label": LABEL})}
    local = run_sweep([*common, "server=local"], tmp_path)
    assert local.returncode == 0, local.stderr[-3000:]
    docker = run_sweep([*common, "server=docker", f"server.image={cpu_image}"], tmp_path)
    assert docker.returncode == 0, docker.stderr[-3000:]

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    jobs = [r for r in client.search_runs([experiment_id(client)])
            if r.data.tags.get(tag.KIND) == "job"]
    assert len(jobs) == 4 and all(r.info.status == "FINISHED" for r in jobs)
    by = {(r.data.tags["server"], r.data.params["trt.precision"]): r for r in jobs}
    for precision in ("fp32", "bf16"):
        local_run, docker_run = by[("local", precision)], by[("docker", precision)]
        # Same engine (the second sweep found it in the cache), same WER, same words.
        assert docker_run.data.tags["engine_sha256"] == local_run.data.tags["engine_sha256"]
        assert docker_run.data.tags["engine_cached"] == "true"
        assert docker_run.data.metrics["wer"] == local_run.data.metrics["wer"]
        hyps = []
        for run in (local_run, docker_run):
            path = client.download_artifacts(run.info.run_id, "transcripts.csv",
                                             str(tmp_path / run.info.run_id))
            with open(path, newline="") as f:
                hyps.append([row["hypothesis"] for row in csv.DictReader(f)])
        assert len(hyps[0]) == 8 and hyps[0] == hyps[1]
    after = {c.id for c in docker_client.containers.list(all=True, filters={"label": LABEL})}
    assert after <= before, "the docker sweep left containers behind"
