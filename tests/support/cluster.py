"""Sweeps against a rehearsal cluster (``python -m sweep.cluster``): the command line a
user types on the head, and the runs of one sweep read back through the tracking server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from sweep.cluster.state import ClusterState
from sweep.tracking import tags as tag
from tests.support.paths import ROOT


def cluster_sweep_command(state: ClusterState, name: str, args: list[str],
                          experiment: str) -> list[str]:
    """``python -m sweep -m hydra/launcher=ray_cluster ...`` as docs/scaling.md gives it:
    the tracking server (its artifacts proxied), the engine cache and the sweep folder on
    the shared mount."""
    return [sys.executable, "-m", "sweep", "-m", "hydra/launcher=ray_cluster",
            f"tracking.uri={state.tracking_uri}", "tracking.artifact_root=null",
            f"tracking.experiment={experiment}",
            f"builder.cache_dir={state.shared}/engines",
            f"hydra.sweep.dir={state.shared}/multirun/{name}", *args]


def cluster_env(state: ClusterState) -> dict[str, str]:
    return {**os.environ, **state.env()}


def start_cluster_sweep(state: ClusterState, name: str, args: list[str], experiment: str,
                        log: Path) -> subprocess.Popen[str]:
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cluster_sweep_command(state, name, args, experiment),
                                cwd=ROOT, env=cluster_env(state), stdout=out,
                                stderr=subprocess.STDOUT, text=True)


def sweep_runs(state: ClusterState, experiment: str) -> tuple[Any, list[Any]]:
    """(the parent run, its job runs) of the one sweep in ``experiment``."""
    client = MlflowClient(state.tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    runs = client.search_runs([found.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(tag.KIND) == "sweep"]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    return parents[0], [r for r in runs if r.data.tags.get(tag.KIND) == "job"]


def wait_for_running_job(state: ClusterState, experiment: str, proc: subprocess.Popen[str],
                         accept: Callable[[Any], bool], min_age_s: float = 2.0,
                         timeout_s: float = 240.0) -> Any:
    """The first job run of the sweep that has run ``min_age_s`` and passes ``accept``:
    a job in the middle of its work, for a fault to strike."""
    client = MlflowClient(state.tracking_uri)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the sweep ended before a job was caught running"
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            for run in client.search_runs([found.experiment_id],
                                          "attributes.status = 'RUNNING'"):
                age_s = time.time() - run.info.start_time / 1000
                if run.data.tags.get(tag.KIND) == "job" and age_s >= min_age_s \
                        and accept(run):
                    return run
        time.sleep(0.3)
    raise AssertionError(f"no job of {experiment} was seen running within {timeout_s} s")
