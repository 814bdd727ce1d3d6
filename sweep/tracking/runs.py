"""MLflow runs: a child run per job (FINISHED, FAILED with its reason, or KILLED), the
tags that make two runs comparable, and the runs a killed sweep left RUNNING."""

from __future__ import annotations

import logging
import os
import platform
import re
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sweep.errors import SweepError
from sweep.infra.files import PROJECT_ROOT
from sweep.tracking import tags as tag
from sweep.tracking.store import Store

# What the SQL stores say when an insert loses a race on a unique key (PostgreSQL, MySQL,
# SQLite).
_DUPLICATE_KEY = re.compile(r"UniqueViolation|duplicate key|Duplicate entry|UNIQUE constraint")

PARENT_ENV = "TRT_SWEEP_PARENT_RUN_ID"
PARENT_FILE = "parent_run_id"
# MLflow's limit on a param value; longer ones (long pin lists) are cut, marked, and the
# whole flag set is in the run's flags.yaml.
MAX_PARAM_CHARS = 6000
_CUT = "…(cut; see flags.yaml)"


def param_value(value: Any) -> str:
    text = str(value)
    if len(text) <= MAX_PARAM_CHARS:
        return text
    return text[:MAX_PARAM_CHARS - len(_CUT)] + _CUT


def environment_tags() -> dict[str, str]:
    """Device, package versions and git commit: what makes two runs comparable."""
    from importlib.metadata import PackageNotFoundError, version

    from sweep.infra.device import host_device

    tags = {tag.DEVICE: host_device(),
            "host": platform.node(), "python": platform.python_version(), **ray_tags()}
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


def ray_tags() -> dict[str, str]:
    """The Ray node this job runs on, when a Ray launcher runs it in a task (nothing
    elsewhere): the one record of where a job of a multi-host sweep ran."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return {}
    try:
        context = ray.get_runtime_context()
        if context.get_task_id() is None:  # the driver, not a task
            return {}
        return {tag.RAY_NODE_IP: str(ray.util.get_node_ip_address()),
                tag.RAY_NODE_ID: str(context.get_node_id())}
    except Exception:  # a Ray without these calls: the run is still worth having
        return {}


def process_identity(pid: int) -> str | None:
    """host/boot id/pid/start time: a process, told apart from a later one that reuses its
    pid (or a pid from before a reboot)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{platform.node()}/{boot}/{pid}/{start}"


def owner_alive(owner: str, host: str | None = None) -> bool | None:
    """Whether the process an ``owner`` tag names still runs; None when that cannot be
    told here (another host's, or no such tag)."""
    me = process_identity(os.getpid())
    host = host or (me.rsplit("/", 3)[0] if me else None)
    parts = owner.rsplit("/", 3)
    if host is None or len(parts) != 4 or parts[0] != host or not parts[2].isdigit():
        return None
    return process_identity(int(parts[2])) == owner


# Jobs a launcher lost with their Ray worker after Ray's retries ran out (job num ->
# Ray's reason), filled by sweep/cluster/launch.py in the sweep's own process.
LOST_JOBS: dict[str, str] = {}


def close_abandoned_jobs(client: Any, store: Store, parent_id: str) -> list[str]:
    """End FAILED the job runs of this sweep still RUNNING once the sweep is over: every
    job has returned by then, so a RUNNING one lost its process (a Ray worker or a whole
    node died mid-job, on any host) and nothing else would ever close it. Where Ray ran
    the job again, the run says which run did (``trt-sweep.retried_by``) and the summary
    counts the retry only. Returns the runs it closed."""
    runs = client.search_runs([store.experiment_id],
                              filter_string=f"tags.`{tag.PARENT_RUN}` = '{parent_id}'",
                              max_results=5000)
    closed = []
    for run in runs:
        if run.info.status != "RUNNING":
            continue
        num = run.data.params.get("job.num")
        retries = [r for r in runs if r.info.run_id != run.info.run_id
                   and r.data.params.get("job.num") == num
                   and r.info.start_time >= run.info.start_time
                   and r.info.status != "RUNNING"]
        node = run.data.tags.get(tag.RAY_NODE_IP)
        where = f" on Ray node {node}" if node else ""
        reason = (f"the process that ran this job{where} ended without closing its run: the "
                  "worker or its host died mid-job")
        if retries:
            retry = max(retries, key=lambda r: r.info.start_time)
            client.set_tag(run.info.run_id, tag.RETRIED_BY, retry.info.run_id)
            reason += (f"; Ray ran the job again: run {retry.info.run_id} "
                       f"({retry.info.status})")
        elif num in LOST_JOBS:
            reason += f"; Ray gave the job up: {LOST_JOBS[num]}"
        else:
            reason += "; the job was not run again"
        client.set_tag(run.info.run_id, tag.ERROR, reason)
        model = run.data.tags.get(tag.LOGGED_MODEL)
        if model:
            with suppress(Exception):
                client.finalize_logged_model(model, "FAILED")
        client.set_terminated(run.info.run_id, "FAILED")
        closed.append(run.info.run_id)
    return closed


def parent_run_id(sweep_dir: Path | None) -> str | None:
    """The multirun's parent run, as this sweep's callback recorded it: the file in the
    sweep folder (shared with launchers that run jobs in other processes, e.g. Ray) first,
    then the environment variable the callback set in this process. A job without a sweep
    folder (a single run) has no parent: an inherited TRT_SWEEP_PARENT_RUN_ID or
    MLFLOW_RUN_ID (an outer ``mlflow run``) never makes one."""
    if sweep_dir is None:
        return None
    if (sweep_dir / PARENT_FILE).exists():
        return (sweep_dir / PARENT_FILE).read_text().strip() or None
    return os.environ.get(PARENT_ENV) or None


class JobRun:
    """One child run; what is logged before a failure stays logged."""

    def __init__(self, run_id: str, client: Any) -> None:
        self.run_id = run_id
        self.client = client

    # The LoggedModel (the job's engine) that metrics are linked to once it exists, and the
    # dataset they were measured on (MLflow 3 shows both beside each metric).
    model_id: str | None = None
    dataset_ref: tuple[str, str] | None = None  # (name, digest)

    def params(self, values: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, param_value(v)) for k, v in values.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def metrics(self, values: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        name, digest = self.dataset_ref or (None, None)
        items = [Metric(k, float(v), now, 0, model_id=self.model_id, dataset_name=name,
                        dataset_digest=digest) for k, v in values.items()]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def dataset(self, name: str, digest: str, source: dict[str, Any],
                profile: dict[str, Any]) -> None:
        """The test set as the run's input (MLflow's Dataset column and run page)."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.exceptions import MlflowException

        ds = Dataset(name=name, digest=digest, source_type="local",
                     source=json.dumps(source, sort_keys=True),
                     profile=json.dumps(profile, sort_keys=True))
        inputs = [DatasetInput(ds, [InputTag("mlflow.data.context", "eval")])]
        try:
            self.client.log_inputs(self.run_id, inputs)
        except MlflowException as exc:
            # The store looks the dataset up, then inserts it: two jobs starting together
            # on one tracking server both insert, and the later fails on the unique key
            # (seen with PostgreSQL). The dataset now exists, so a second try links to it.
            if not _DUPLICATE_KEY.search(str(exc)):
                raise
            self.client.log_inputs(self.run_id, inputs)
        self.dataset_ref = (name, digest)
        self.tags({tag.DATASET_DIGEST: digest})

    def logged_model(self, experiment_id: str, name: str, params: dict[str, Any],
                     tags: dict[str, str], files: list[tuple[Path, str | None]]) -> str:
        """The job's engine as an MLflow 3 LoggedModel (the Models tab): the flag set as
        its params, ``files`` (path, folder) as its artifacts, the run's metrics linked to
        it from now on. Left PENDING until ``finish_model``."""
        from mlflow.entities import LoggedModelOutput

        model = self.client.create_logged_model(
            experiment_id, name=name, source_run_id=self.run_id, tags=tags,
            params={k: param_value(v) for k, v in params.items()}, model_type="tensorrt-engine")
        self.model_id = model.model_id
        for path, folder in files:
            if path.is_dir():
                self.client.log_model_artifacts(model.model_id, str(path), folder)
            elif path.exists():
                self.client.log_model_artifact(model.model_id, str(path), folder)
        self.client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, 0)])
        self.tags({tag.LOGGED_MODEL: model.model_id})
        return str(model.model_id)

    def model_artifact(self, path: Path, folder: str | None = None) -> None:
        if self.model_id is not None and path.is_file():
            self.client.log_model_artifact(self.model_id, str(path), folder)

    def finish_model(self, status: str) -> None:
        if self.model_id is not None:
            self.client.finalize_logged_model(self.model_id, status)

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
            tags: dict[str, str], system_metrics_interval_s: float | None = None
            ) -> Iterator[JobRun]:
    """Start a child run; end it FINISHED, FAILED (reason tagged and logged) or KILLED."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store.uri)
    all_tags = {k: v for k, v in tags.items() if k != tag.PARENT_RUN}
    if parent_id:  # the one source of a job's parent: never an inherited MLFLOW_RUN_ID
        all_tags[tag.PARENT_RUN] = parent_id
    run = client.create_run(store.experiment_id, run_name=run_name, tags=all_tags)
    job = JobRun(run.info.run_id, client)
    monitor = system_metrics(store, job.run_id, system_metrics_interval_s)
    try:
        yield job
    except (KeyboardInterrupt, SystemExit):
        _stop(monitor)
        _close(job, "KILLED", "interrupted (SIGINT/SIGTERM)")
        raise
    except BaseException as exc:
        _stop(monitor)
        reason = str(exc) if isinstance(exc, SweepError) else f"{type(exc).__name__}: {exc}"
        _close(job, "FAILED", reason[:5000], "".join(traceback.format_exception(exc)))
        raise
    else:
        _stop(monitor)
        job.finish_model("READY")
        client.set_terminated(job.run_id, "FINISHED")


def _close(job: JobRun, status: str, reason: str, details: str | None = None) -> None:
    """End the run with its reason. A store that refuses these writes too (it stopped
    accepting writes: the failure being handled) leaves the run as it is: the failure
    already on its way is the one to report, not a second traceback."""
    from sweep.tracking.failures import store_refused

    try:
        job.finish_model("FAILED")
        job.client.set_tag(job.run_id, tag.ERROR, reason)
        if details is not None:
            job.client.log_text(job.run_id, details, "error.txt")
        job.client.set_terminated(job.run_id, status)
    except Exception as exc:
        if not store_refused(exc):
            raise


def system_metrics(store: Store, run_id: str, interval_s: float | None) -> Any:
    """MLflow's own system metrics monitor (``system/cpu_utilization_percentage``,
    ``system/system_memory_usage_megabytes``, ``system/gpu_*`` where pynvml finds a GPU) on
    the job's run; None when off (``interval_s`` None or 0) or psutil is missing."""
    if not interval_s:
        return None
    try:
        import psutil  # noqa: F401  (MLflow's CPU/memory monitor needs it)
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    except ImportError:
        return None
    # Its start/stop lines at INFO would interleave every job's progress output.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s,
                                   tracking_uri=store.uri)
    monitor.start()
    return monitor


def _stop(monitor: Any) -> None:
    """Stop the monitor; a job shorter than one sampling interval still gets one sample
    (MLflow's loop logs only after a full interval)."""
    if monitor is None:
        return
    with suppress(Exception):
        monitor.finish()
        if monitor._logging_step == 0:
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()
