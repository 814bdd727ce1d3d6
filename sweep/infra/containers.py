"""docker-py plumbing shared by the trtexec builder and the Docker launcher.

Kept in one place so both follow the same rules: connect (and fail with how to start
Docker) before any work; never pull (an image is there or the error says how to get it);
arguments as lists, never shell strings; every container labelled with
``sweep.server.base.LABEL`` and removed on every exit, timeouts included.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
import docker.types
import requests.exceptions
from docker.client import DockerClient
from docker.models.containers import Container
from docker.models.images import Image

from sweep.errors import DockerUnavailableError, SweepError
from sweep.infra.files import LABEL

GpuSpec = str | int | Sequence[int | str] | None

_START_DOCKER = (
    "Start the daemon (e.g. `sudo systemctl start docker`, or as root `dockerd > "
    "/tmp/dockerd.log 2>&1 &`), make sure this user may use it (member of the `docker` "
    "group), or point DOCKER_HOST / server.docker_base_url at a running daemon."
)


def connect(base_url: str | None = None, timeout_s: int = 120) -> DockerClient:
    """A client to a daemon that answers, or DockerUnavailableError saying how to start one."""
    try:
        client = (DockerClient(base_url=base_url, timeout=timeout_s) if base_url
                  else DockerClient.from_env(timeout=timeout_s))
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        where = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise DockerUnavailableError(
            f"No Docker daemon answers at {where} ({type(exc).__name__}: {exc}). "
            + _START_DOCKER) from exc
    return client


def require_image(client: DockerClient, image: str,
                  error: type[SweepError]) -> Image:
    """The local image, never pulled: a pull inside a sweep would hide a multi-GB download
    (and there may be no registry at all), so a missing image is the user's decision."""
    try:
        return client.images.get(image)
    except docker.errors.ImageNotFound as exc:
        hint = ("build it with `python docker/build_image.py` (prints the tag)"
                if image.startswith("trt-sweep-cpu") else
                f"`docker pull {image}` on a host with registry access (NGC images need "
                "`docker login nvcr.io`), or `docker save`/`docker load` it across")
        raise error(
            f"Docker image {image!r} is not present on this Docker host and the sweep does "
            f"not pull images. Expected it locally: {hint}.") from exc


def gpu_requests(gpus: GpuSpec) -> list[docker.types.DeviceRequest]:
    """``None``/``"none"``: no GPU; ``"all"``: every GPU; ids (``[0, 2]`` or ``"0,2"``)."""
    if gpus is None or gpus == "none" or gpus == [] or gpus == ():
        return []
    if gpus == "all":
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if isinstance(gpus, int):
        ids = [str(gpus)]
    elif isinstance(gpus, str):
        ids = [g.strip() for g in gpus.split(",") if g.strip()]
    else:
        ids = [str(g) for g in gpus]
    return [docker.types.DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]


def gpu_ulimits(gpus: GpuSpec) -> list[docker.types.Ulimit] | None:
    """NVIDIA's recommended limits for TensorRT/Triton containers on GPUs (unlimited locked
    memory for pinned buffers, 64 MiB stack). Only with GPUs: a daemon that may not raise
    memlock (rootless, sandboxes) would refuse every container otherwise."""
    if not gpu_requests(gpus):
        return None
    return [docker.types.Ulimit(name="memlock", soft=-1, hard=-1),
            docker.types.Ulimit(name="stack", soft=67108864, hard=67108864)]


def explain_api_error(exc: docker.errors.APIError) -> str:
    """The daemon's message, plus the fix for the one failure everybody meets first."""
    text = str(exc.explanation or exc)
    if "capabilities: [[gpu]]" in text or "nvidia" in text.lower():
        text += (" — the daemon cannot hand GPUs to containers: install the NVIDIA "
                 "Container Toolkit (nvidia-ctk runtime configure --runtime=docker, then "
                 "restart dockerd), or run without GPUs (gpus: null).")
    return text


def labels(job: str | None = None, **extra: str) -> dict[str, str]:
    out = {LABEL: "1", f"{LABEL}.job": job or f"pid{os.getpid()}",
           f"{LABEL}.host-pid": str(os.getpid())}
    out.update({f"{LABEL}.{k}": v for k, v in extra.items()})
    return out


def container_name(kind: str) -> str:
    return f"{LABEL}-{kind}-{uuid.uuid4().hex[:10]}"


def remove_quietly(container: Container | None, stop_timeout_s: int = 10) -> None:
    """Stop (SIGTERM, then SIGKILL after the grace time) and remove; never raises."""
    if container is None:
        return
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError,
                             requests.exceptions.RequestException):
        container.reload()
        if container.status in ("running", "restarting", "paused"):
            container.stop(timeout=stop_timeout_s)
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError,
                             requests.exceptions.RequestException):
        container.remove(force=True, v=True)


def cleanup(label: str = LABEL, base_url: str | None = None) -> int:
    """Remove every container carrying ``label`` (ours, running or not); return how many."""
    client = connect(base_url)
    count = 0
    for container in client.containers.list(all=True, filters={"label": label}):
        remove_quietly(container, stop_timeout_s=2)
        count += 1
    return count


class LogPump:
    """Copies a container's output into a file as it is produced.

    The log file is the record of a build or a server, and the error messages quote its
    last lines, so it must be written while the container runs, not fetched at the end.
    """

    def __init__(self, container: Container, path: Path, since: float | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb")  # noqa: SIM115 - closed by the pump thread
        self._stream = container.logs(stream=True, follow=True, stdout=True, stderr=True,
                                      since=since)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"logs-{container.short_id}")
        self._thread.start()

    def _run(self) -> None:
        try:
            for chunk in self._stream:
                self._file.write(chunk)
                self._file.flush()
        except Exception:  # the daemon closed the stream (container removed): the end
            pass
        finally:
            self._file.close()

    def join(self, timeout_s: float = 5.0) -> None:
        self._thread.join(timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop following a container that keeps running (a kept server's per-job log)."""
        time.sleep(0.2)  # let the daemon deliver what was written just before
        with contextlib.suppress(Exception):
            self._stream.close()
        self.join(timeout_s)

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None  # None when the run was cut off by the timeout
    seconds: float
    timed_out: bool


@contextlib.contextmanager
def started(client: DockerClient, image: str, command: Sequence[str], *,
            error: type[SweepError], **create: Any) -> Iterator[Container]:
    """Create and start a container; stop and remove it when the block exits, whatever
    happens (exception, Ctrl-C, timeout)."""
    container: Container | None = None
    try:
        try:
            container = client.containers.create(image, command=list(command), **create)
            container.start()
        except docker.errors.APIError as exc:
            raise error(f"Docker could not start {image!r}: {explain_api_error(exc)}") from exc
        yield container
    finally:
        remove_quietly(container)


def run_to_completion(client: DockerClient, image: str, command: Sequence[str], *,
                      log_path: Path, timeout_s: float, error: type[SweepError],
                      volumes: Mapping[str, Mapping[str, str]] | None = None,
                      device_requests: list[docker.types.DeviceRequest] | None = None,
                      job: str | None = None, kind: str = "run",
                      **create: Any) -> RunResult:
    """Run one command in a fresh container, streaming its output to ``log_path``."""
    start = time.perf_counter()
    with started(client, image, command, error=error, detach=True,
                 name=container_name(kind), labels=labels(job, kind=kind),
                 volumes=dict(volumes or {}), device_requests=device_requests or None,
                 **create) as container:
        pump = LogPump(container, log_path)
        try:
            status = container.wait(timeout=timeout_s)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            with contextlib.suppress(docker.errors.APIError):
                container.kill()
            pump.join()
            return RunResult(None, time.perf_counter() - start, True)
        pump.join()
        return RunResult(int(status.get("StatusCode", -1)), time.perf_counter() - start, False)
