"""MLflow: an experiment per sweep name, a parent run per multirun, a child run per job.

The tracking URI can carry credentials, so it is never written to a log or an artifact.
"""

from __future__ import annotations

import fcntl
import os
import platform
import re
import socket
import subprocess
import traceback
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.errors import SweepError, TrackingError

PARENT_ENV = "TRT_SWEEP_PARENT_RUN_ID"
PARENT_FILE = "parent_run_id"


@dataclass(frozen=True)
class Store:
    uri: str
    experiment_id: str
    experiment: str


def _absolute_uri(uri: str, base: Path) -> str:
    # A relative sqlite path would follow the process's cwd; pin it to where the user ran.
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = (base / uri[len(prefix):]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return uri


# user:password@ in any URI-looking text: what ``redact`` hides.
# Hydra writes overrides with escaped colons (http\://user\:pw@...): the "\\?" takes those.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*\\?://)[^/@\s]+@")
# The store check's bounds: MLflow's defaults (7 retries with backoff, 120 s per request)
# let a sweep against a tracking server that is down sit silent for about four minutes
# before it fails. Mid-sweep calls keep MLflow's defaults, which ride out a short outage.
_CHECK_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
_CONNECT_TIMEOUT_S = 5.0


def redact(text: str) -> str:
    """``text`` with the credentials of every ``scheme://user:password@host`` removed."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)


def _check_reachable(uri: str) -> None:
    """An http(s) store must accept a TCP connection within seconds. Only host and port go
    into the message: the URI may carry credentials."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TrackingError(
            f"the MLflow tracking server at {parts.hostname}:{port} (tracking.uri) does not "
            f"answer ({reason}). Start it (mlflow server ...), check the address, or use the "
            "default sqlite:///mlruns/mlflow.db.") from None


@contextmanager
def _bounded_http_retries() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in _CHECK_ENV}
    for key, value in _CHECK_ENV.items():
        os.environ.setdefault(key, value)  # a user's own setting wins
    try:
        yield
    finally:
        for key, before in saved.items():
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before


@contextmanager
def _init_lock(uri: str) -> Iterator[None]:
    """One process at a time creates a fresh SQLite store: MLflow's SqlAlchemyStore runs
    its schema creation and migrations unguarded, and two sweeps starting together on a new
    store fail with 'table ... already exists' / 'duplicate column name'."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        yield
        return
    db = Path(uri[len(prefix):].split("?", 1)[0])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_store(uri: str, experiment: str, artifact_root: str, base: Path) -> Store:
    """Connect, create the experiment if needed, and fail early if the store is unusable."""
    uri = _absolute_uri(uri, base)
    _check_reachable(uri)
    if redact(uri) != uri:
        # MLflow prints "View run ... at: <tracking URI>/#/..." to stdout when a run ends,
        # credentials and all.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    with _bounded_http_retries(), _init_lock(uri):
        return _open_store(uri, experiment, artifact_root, base)


def _open_store(uri: str, experiment: str, artifact_root: str, base: Path) -> Store:
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    try:
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            root = Path(artifact_root)
            root = root if root.is_absolute() else (base / root)
            root.mkdir(parents=True, exist_ok=True)
            try:
                experiment_id = client.create_experiment(experiment,
                                                         artifact_location=root.resolve().as_uri())
            except Exception:  # another sweep created it between the two calls
                found = client.get_experiment_by_name(experiment)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        else:
            experiment_id = found.experiment_id
    except Exception as exc:
        raise TrackingError(
            f"the MLflow tracking store (tracking.uri) cannot be used: "
            f"{type(exc).__name__}. Check that it is reachable and writable, or use the "
            "default sqlite:///mlruns/mlflow.db."
        ) from exc
    return Store(uri=uri, experiment_id=experiment_id, experiment=experiment)


def environment_tags() -> dict[str, str]:
    """Device, package versions and git commit: what makes two runs comparable."""
    from importlib.metadata import PackageNotFoundError, version

    from sweep.device import host_device

    tags = {"device": host_device(),
            "host": platform.node(), "python": platform.python_version()}
    owner = process_identity(os.getpid())
    if owner is not None:
        tags[OWNER_TAG] = owner
    for package in ("trt-sweep", "onnxruntime", "onnx", "tritonclient", "nvidia-pytriton",
                    "mlflow", "numpy"):
        with suppress(PackageNotFoundError):
            tags[f"version.{package}"] = version(package)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parents[1], timeout=5)
        if commit.returncode == 0:
            tags["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


OWNER_TAG = "trt-sweep.owner"


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
        owner = run.data.tags.get(OWNER_TAG, "")
        parts = owner.rsplit("/", 3)
        if len(parts) != 4 or parts[0] != host or not parts[2].isdigit():
            continue
        if process_identity(int(parts[2])) == owner:
            continue  # still running
        client.set_tag(run.info.run_id, "error",
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

    def text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)


@contextmanager
def job_run(store: Store, run_name: str, parent_id: str | None,
            tags: dict[str, str]) -> Iterator[JobRun]:
    """Start a child run; end it FINISHED, FAILED (reason tagged and logged) or KILLED."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store.uri)
    all_tags = dict(tags)
    if parent_id:
        all_tags["mlflow.parentRunId"] = parent_id
    run = client.create_run(store.experiment_id, run_name=run_name, tags=all_tags)
    job = JobRun(run.info.run_id, client)
    try:
        yield job
    except (KeyboardInterrupt, SystemExit):
        client.set_tag(job.run_id, "error", "interrupted (SIGINT/SIGTERM)")
        client.set_terminated(job.run_id, "KILLED")
        raise
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, SweepError) else f"{type(exc).__name__}: {exc}"
        client.set_tag(job.run_id, "error", reason[:5000])
        client.log_text(job.run_id, "".join(traceback.format_exception(exc)), "error.txt")
        client.set_terminated(job.run_id, "FAILED")
        raise
    else:
        client.set_terminated(job.run_id, "FINISHED")
