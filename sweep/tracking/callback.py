"""Hydra callback: one MLflow parent run around a multirun, closed with a summary."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sweep.errors import ConfigError
from sweep.events import SWEEP_FILE
from sweep.tracking import tags as tag
from sweep.tracking.recover import close_orphaned_runs, orphans_message
from sweep.tracking.resume import sweep_key
from sweep.tracking.runs import (
    PARENT_ENV,
    PARENT_FILE,
    close_abandoned_jobs,
    environment_tags,
)
from sweep.tracking.store import Store, open_store, redact
from sweep.tracking.sweep_folder import claim, release


def _redact_logging() -> None:
    """Hide URI credentials in every log record: Hydra's launcher logs each job's
    overrides, ``tracking.uri=http://user:password@host`` included. A record factory, not a
    handler filter: Hydra replaces the handlers (launcher, every job) after the callbacks
    that could install one have run."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "trt_sweep_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # bad arguments: logging reports those itself, at emit time
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    factory.trt_sweep_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _redact_files(*paths: Path) -> None:
    """Hydra saves the overrides as typed (.hydra/*.yaml, multirun.yaml) before any job
    code runs; rewrite them without credentials."""
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        clean = redact(text)
        if clean != text:
            path.write_text(clean)


def _saved_configs() -> list[Path]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    saved = Path(hc.runtime.output_dir) / ".hydra"
    files = sorted(saved.glob("*.yaml")) if saved.is_dir() else []
    if hc.mode == RunMode.MULTIRUN:
        files.append(Path(hc.sweep.dir) / "multirun.yaml")
    return files


def count_jobs(overrides: list[str]) -> int | None:
    """How many jobs Hydra's basic sweeper makes of these overrides (the product of every
    swept value list); None where it cannot tell (another sweeper, a syntax it lacks)."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(overrides)
        return sum(len(batch) for batch in BasicSweeper.split_arguments(parsed, None))
    except Exception:  # Hydra's private helper moved, or a sweeper of its own
        return None


class ParentRunCallback(Callback):
    """Opens the parent run before the first job and closes it after the last.

    Jobs find its id through the environment (same process) or a file in the sweep folder
    (launchers that run jobs elsewhere). An interrupted sweep closes it as KILLED
    (``close_open_parent``, called from ``sweep.__main__``).
    """

    _open: tuple[Store, str] | None = None
    # This sweep's claim on its folder (sweep/tracking/sweep_folder.py), given back at the end.
    _lock: Path | None = None
    # The last parent run this process closed: ``sweep.__main__`` reads its jobs' statuses.
    closed: tuple[Store, str] | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _redact_logging()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        _redact_logging()
        _redact_files(*_saved_configs())

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient

        _redact_logging()
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            lock = claim(sweep_dir)
        except ConfigError as exc:
            print(f"trt-sweep: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        try:
            store = open_store(config.tracking.uri, config.tracking.experiment,
                                     config.tracking.artifact_root, Path.cwd())
            closed = close_orphaned_runs(store)
            if closed:
                print(f"trt-sweep: {orphans_message(closed)}", file=sys.stderr)
            client = MlflowClient(store.uri)
            overrides = list(config.hydra.overrides.task)
            key = sweep_key(overrides)
            reuse = bool(config.tracking.get("reuse_across_sweeps", False))
            run = client.create_run(store.experiment_id, run_name=f"sweep {sweep_dir.name}",
                                    tags={tag.KIND: "sweep",
                                          tag.SWEEP_DIR: str(sweep_dir.resolve()),
                                          tag.SWEEP_KEY: key,
                                          tag.REUSE_ACROSS_SWEEPS: str(reuse).lower(),
                                          **environment_tags()})
        except Exception as exc:
            # Hydra turns a callback's exception into a warning and launches every job
            # anyway; an unusable store must stop the sweep before any work. SystemExit is
            # not an Exception, so it passes Hydra's handler.
            print(f"trt-sweep: {redact(str(exc))}", file=sys.stderr)
            release(lock)
            raise SystemExit(2) from None
        ParentRunCallback._lock = lock
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).write_text(run.info.run_id)
        # For the jobs, wherever they run: "job 3/8, ~4 min left", and the sweep command
        # they resume from.
        (sweep_dir / SWEEP_FILE).write_text(json.dumps({
            "parent_run_id": run.info.run_id, "sweep_key": key,
            "jobs": count_jobs(overrides) if str(config.hydra.sweeper.get("_target_", ""))
            .endswith(".BasicSweeper") else None, "started": time.time()}))
        os.environ[PARENT_ENV] = run.info.run_id
        ParentRunCallback._open = (store, run.info.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        close_open_parent("FINISHED", Path(config.hydra.sweep.dir))


def close_open_parent(status: str, sweep_dir: Path | None = None) -> None:
    """Summarise and terminate the parent run, if one is open (idempotent)."""
    opened = ParentRunCallback._open
    if opened is None:
        return
    ParentRunCallback._open = None
    ParentRunCallback.closed = opened
    os.environ.pop(PARENT_ENV, None)
    store, run_id = opened
    from mlflow.tracking import MlflowClient

    from sweep.tracking.failures import reason, store_refused
    from sweep.tracking.summary import summarise

    lock, ParentRunCallback._lock = ParentRunCallback._lock, None
    client = MlflowClient(store.uri)
    try:
        try:
            abandoned = close_abandoned_jobs(client, store, run_id)
            if abandoned:
                print(f"trt-sweep: {len(abandoned)} job run(s) left RUNNING by a worker that "
                      "died now end FAILED (their error tag says whether Ray ran the job "
                      "again): " + ", ".join(abandoned), file=sys.stderr)
            summarise(client, store, run_id, sweep_dir)
        finally:
            client.set_terminated(run_id, status)
    except Exception as exc:
        if not store_refused(exc):
            raise
        # The job that met it has said so; the parent cannot be closed either.
        print(f"trt-sweep: the sweep's parent run {run_id} could not be closed: the tracking "
              f"store stopped accepting writes ({reason(exc)}).", file=sys.stderr)
    finally:
        release(lock)
