"""Hydra callback: one MLflow parent run around a multirun, closed with a summary."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sweep import track


class ParentRunCallback(Callback):
    """Opens the parent run before the first job and closes it after the last.

    Jobs find its id through the environment (same process) or a file in the sweep folder
    (launchers that run jobs elsewhere). An interrupted sweep closes it as KILLED
    (``close_open_parent``, called from ``sweep.__main__``).
    """

    _open: tuple[track.Store, str] | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient

        store = track.open_store(config.tracking.uri, config.tracking.experiment,
                                 config.tracking.artifact_root, Path.cwd())
        sweep_dir = Path(config.hydra.sweep.dir)
        client = MlflowClient(store.uri)
        run = client.create_run(store.experiment_id, run_name=f"sweep {sweep_dir.name}",
                                tags={"trt-sweep.kind": "sweep",
                                      "sweep_dir": str(sweep_dir.resolve()),
                                      **track.environment_tags()})
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / track.PARENT_FILE).write_text(run.info.run_id)
        os.environ[track.PARENT_ENV] = run.info.run_id
        ParentRunCallback._open = (store, run.info.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        close_open_parent("FINISHED", Path(config.hydra.sweep.dir))


def close_open_parent(status: str, sweep_dir: Path | None = None) -> None:
    """Summarise and terminate the parent run, if one is open (idempotent)."""
    opened = ParentRunCallback._open
    if opened is None:
        return
    ParentRunCallback._open = None
    os.environ.pop(track.PARENT_ENV, None)
    store, run_id = opened
    from mlflow.tracking import MlflowClient

    from sweep.summary import summarise

    client = MlflowClient(store.uri)
    try:
        summarise(client, store, run_id, sweep_dir)
    finally:
        client.set_terminated(run_id, status)
