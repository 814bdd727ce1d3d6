"""MLflow runs: a child run per job (FINISHED, FAILED with its reason, or KILLED), the
tags that make two runs comparable, and the runs a killed sweep left RUNNING."""

from __future__ import annotations

import os
import platform
import subprocess
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sweep.errors import SweepError
from sweep.infra.files import PROJECT_ROOT
from sweep.tracking import tags as tag
from sweep.tracking.store import Store

PARENT_ENV = "TRT_SWEEP_PARENT_RUN_ID"
PARENT_FILE = "parent_run_id"


def environment_tags() -> dict[str, str]:
    """Device, package versions and git commit: what makes two runs comparable."""
    from importlib.metadata import PackageNotFoundError, version

    from sweep.infra.device import host_device

    tags = {tag.DEVICE: host_device(),
            "host": platform.node(), "python": platform.python_version()}
    owner = process_identity(os.getpid())
    if owner is not None:
        tags[tag.OWNER] = owner
    for package in ("trt-sweep", "onnxruntime", "onnx", "tritonclient", "nvidia-pytriton",
                    "mlflow", "numpy"):
        with suppress(PackageNotFoundError):
            tags[f"version.{package}"] = version(package)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=PROJECT_ROOT, timeout=5)
        if commit.returncode == 0:
            tags["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return tags



def process_identity(pid: int) -> str | None:
    """host/boot id/pid/start time: a process, told apart from a later one that reuses its
    pid (or a pid from before a reboot)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{platform.node()}/{boot}/{pid}/{start}"


_ORPHANS_CHECKED: set[tuple[str, str]] = set()


def close_orphaned_runs(store: Store) -> list[str]:
    """End KILLED the runs of this experiment left RUNNING by a process of this machine that
    no longer exists (SIGKILL, the OOM killer, a reboot): nothing else would ever close
    them. Runs of live processes (a sweep running beside this one) and of other hosts are
    left alone. Once per store and process; returns the runs it closed."""
    from mlflow.tracking import MlflowClient

    me = process_identity(os.getpid())
    key = (store.uri, store.experiment_id)
    if me is None or key in _ORPHANS_CHECKED:
        return []
    _ORPHANS_CHECKED.add(key)
    host = me.rsplit("/", 3)[0]
    client = MlflowClient(store.uri)
    closed = []
    for run in client.search_runs([store.experiment_id], "attributes.status = 'RUNNING'",
                                  max_results=1000):
        owner = run.data.tags.get(tag.OWNER, "")
        parts = owner.rsplit("/", 3)
        if len(parts) != 4 or parts[0] != host or not parts[2].isdigit():
            continue
        if process_identity(int(parts[2])) == owner:
            continue  # still running
        client.set_tag(run.info.run_id, tag.ERROR,
                       f"the sweep process that ran this (pid {parts[2]} on {host}) ended "
                       "without closing it: killed (SIGKILL, out of memory) or the machine "
                       "restarted")
        client.set_terminated(run.info.run_id, "KILLED")
        closed.append(run.info.run_id)
    return closed


def orphans_message(closed: list[str]) -> str:
    return (f"{len(closed)} run(s) left RUNNING by a sweep process that no longer exists now "
            "end KILLED: " + ", ".join(closed))


def parent_run_id(sweep_dir: Path | None) -> str | None:
    """The multirun's parent run: from the environment (same process) or the sweep folder
    (launchers that run jobs in other processes, e.g. Ray, share the folder)."""
    if os.environ.get(PARENT_ENV):
        return os.environ[PARENT_ENV]
    if sweep_dir is not None and (sweep_dir / PARENT_FILE).exists():
        return (sweep_dir / PARENT_FILE).read_text().strip() or None
    return None


class JobRun:
    """One child run; what is logged before a failure stays logged."""

    def __init__(self, run_id: str, client: Any) -> None:
        self.run_id = run_id
        self.client = client

    def params(self, values: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in values.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def metrics(self, values: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, 0) for k, v in values.items()]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def tags(self, values: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in values.items()])

    def artifact(self, path: Path, folder: str | None = None) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), folder)
        elif path.exists():
            self.client.log_artifact(self.run_id, str(path), folder)



@contextmanager
def job_run(store: Store, run_name: str, parent_id: str | None,
            tags: dict[str, str]) -> Iterator[JobRun]:
    """Start a child run; end it FINISHED, FAILED (reason tagged and logged) or KILLED."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store.uri)
    all_tags = dict(tags)
    if parent_id:
        all_tags[tag.PARENT_RUN] = parent_id
    run = client.create_run(store.experiment_id, run_name=run_name, tags=all_tags)
    job = JobRun(run.info.run_id, client)
    try:
        yield job
    except (KeyboardInterrupt, SystemExit):
        client.set_tag(job.run_id, tag.ERROR, "interrupted (SIGINT/SIGTERM)")
        client.set_terminated(job.run_id, "KILLED")
        raise
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, SweepError) else f"{type(exc).__name__}: {exc}"
        client.set_tag(job.run_id, tag.ERROR, reason[:5000])
        client.log_text(job.run_id, "".join(traceback.format_exception(exc)), "error.txt")
        client.set_terminated(job.run_id, "FAILED")
        raise
    else:
        client.set_terminated(job.run_id, "FINISHED")
