"""At a sweep's end, job runs a dead Ray worker left RUNNING end FAILED: naming the run
of Ray's retry (which the summary counts instead), or Ray's reason when the launcher
gave the job up (real SQLite store)."""

from __future__ import annotations

import time
from pathlib import Path

from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from sweep.tracking import tags as tag
from sweep.tracking.records import sweep_records
from sweep.tracking.runs import LOST_JOBS, close_abandoned_jobs
from sweep.tracking.store import open_store


def test_abandoned_runs_end_failed_with_the_retry_or_the_reason(tmp_path: Path, monkeypatch):
    store = open_store(f"sqlite:///{tmp_path}/mlflow.db", "abandoned",
                       str(tmp_path / "artifacts"), tmp_path)
    client = MlflowClient(store.uri)
    parent = client.create_run(store.experiment_id, tags={tag.KIND: "sweep"}).info.run_id

    def job(num: int, node: str) -> str:
        run = client.create_run(store.experiment_id, run_name=f"job {num}",
                                tags={tag.PARENT_RUN: parent, tag.KIND: "job",
                                      tag.RAY_NODE_IP: node})
        client.log_batch(run.info.run_id, params=[Param("job.num", str(num))])
        time.sleep(0.01)  # the retry starts after the attempt it replaces
        return str(run.info.run_id)

    dead, retry, lost, done = job(0, "127.0.0.2"), job(0, "127.0.0.3"), \
        job(1, "127.0.0.2"), job(2, "127.0.0.3")
    for run_id in (retry, done):
        client.set_terminated(run_id, "FINISHED")
    monkeypatch.setitem(LOST_JOBS, "1", "NodeDiedError: the node is dead")

    assert sorted(close_abandoned_jobs(client, store, parent)) == sorted([dead, lost])
    first, second = client.get_run(dead), client.get_run(lost)
    assert first.info.status == "FAILED" and second.info.status == "FAILED"
    assert first.data.tags[tag.RETRIED_BY] == retry
    assert "127.0.0.2" in first.data.tags[tag.ERROR] and retry in first.data.tags[tag.ERROR]
    assert "Ray gave the job up: NodeDiedError" in second.data.tags[tag.ERROR]
    # Each job once: the retried attempt is the retry's, the lost job counts as FAILED.
    rows = sweep_records(client, store.experiment_id, parent, with_engine=False)
    assert sorted((r.run_id, r.status) for r in rows) == sorted(
        [(retry, "FINISHED"), (lost, "FAILED"), (done, "FINISHED")])
    assert close_abandoned_jobs(client, store, parent) == []  # nothing left to close
