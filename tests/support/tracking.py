"""Reading the MLflow store a sweep wrote."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

EXPERIMENT = "trt-sweep"


def experiment_id(client: MlflowClient, name: str = EXPERIMENT) -> str:
    """The id of the experiment ``name``, which the run under test must have created."""
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, \
        f"no experiment {name!r} in the store at {client.tracking_uri}"
    return str(experiment.experiment_id)
