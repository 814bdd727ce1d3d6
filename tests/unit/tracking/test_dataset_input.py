"""A job's dataset input when another job of the sweep logs the same dataset at the same
moment (the PostgreSQL race the cluster rehearsal met), in a real MLflow store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweep.tracking import tags as tag
from sweep.tracking.runs import JobRun
from sweep.tracking.store import open_store

# What PostgreSQL's store answered the job that lost the race.
LOST_RACE = ("(psycopg2.errors.UniqueViolation) duplicate key value violates unique "
             'constraint "uq_dataset_experiment_name_digest"')


class RacingClient:
    """The real client, except that on the first log_inputs another run logs the same
    dataset first (for real) and this one's insert fails as the losing insert does."""

    def __init__(self, client: MlflowClient, rival_run: str, error: str) -> None:
        self.client = client
        self.rival_run = rival_run
        self.error = error
        self.calls = 0

    def log_inputs(self, run_id: str, inputs: list[Any]) -> None:
        self.calls += 1
        if self.calls == 1:
            self.client.log_inputs(self.rival_run, inputs)
            raise MlflowException(self.error)
        self.client.log_inputs(run_id, inputs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_dataset_logged_by_two_jobs_at_once_is_linked_to_both(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'mlflow.db'}", "race", str(tmp_path / "a"),
                       tmp_path)
    client = MlflowClient(store.uri)
    ours, rival = (client.create_run(store.experiment_id).info.run_id for _ in range(2))
    racing = RacingClient(client, rival, LOST_RACE)
    JobRun(ours, racing).dataset("demo_tiny", "e4c2d165bd26", {"uri": "file:///m.json"},
                                 {"utterances": 8})
    assert racing.calls == 2
    for run_id in (ours, rival):
        inputs = client.get_run(run_id).inputs
        assert inputs is not None
        assert [(i.dataset.name, i.dataset.digest) for i in inputs.dataset_inputs] == \
            [("demo_tiny", "e4c2d165bd26")]
    assert client.get_run(ours).data.tags[tag.DATASET_DIGEST] == "e4c2d165bd26"

    # Any other refusal is the store's answer, not a race: it reaches the job.
    third = client.create_run(store.experiment_id).info.run_id
    refusing = RacingClient(client, rival, "RESOURCE_DOES_NOT_EXIST: no such run")
    with pytest.raises(MlflowException, match="no such run"):
        JobRun(third, refusing).dataset("demo_tiny", "e4c2d165bd26", {}, {})
    assert refusing.calls == 1
