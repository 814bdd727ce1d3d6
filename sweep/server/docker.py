"""Triton in a Docker container, through docker-py (``server=docker``).

Two modes, one interface (``serving`` is a context manager, as for the local server):

* fresh (default): every ``serving`` block starts a container on the rendered repository
  (mounted read-only at /models), waits until the entry model is READY, and stops and
  removes the container when the block exits, whatever happens inside.
* ``keep_running=True``: one container, started on the first block with
  ``--model-control-mode=explicit`` on a swap folder mounted read-only at /models; each
  block hard-links its repository into the swap folder and reloads its models through
  tritonclient (sweep/server/explicit.py). The container goes at ``close()``
  (or interpreter exit). Every DockerServer of the same settings in one process shares
  that container, so a multirun's jobs reuse it. Saves the container start and stop per
  job; the numbers are in docs/.report_gpu_path.md.

Networking: ``network="bridge"`` publishes Triton's ports on ``host`` (127.0.0.1 by
default) only; ``"host"`` shares the host's network with explicit free ports and binds
Triton to ``host``; ``"auto"`` (default) tries bridge and falls back to host networking
when the daemon cannot publish ports (no iptables, some rootless set-ups). A published
port that another process took between choosing and binding is detected by checking the
port, not by reading the daemon's message, and another free port is tried.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker.errors
import docker.types
from docker.client import DockerClient
from docker.models.containers import Container

from sweep.errors import ServerError
from sweep.infra import containers
from sweep.infra.files import LABEL, tail
from sweep.infra.ports import pick_ports, port_in_use
from sweep.server.args import tritonserver_args
from sweep.server.base import Endpoint, ModelRepository
from sweep.server.health import triton_error_lines, wait_ready
from sweep.server.kept import KeptServer, KeptServers, swap_in

DEFAULT_IMAGE = "trt-sweep-cpu:latest"
GRPC_IN_CONTAINER = 8001
HTTP_IN_CONTAINER = 8000
NETWORKS = ("auto", "bridge", "host")
_SITE_PACKAGES_LABEL = f"{LABEL}.site-packages"

__all__ = ["DockerServer", "cleanup", "error_lines", "server_command"]


def server_command(*, grpc_port: int, http_port: int, address: str | None = None,
                   explicit: bool = False, log_verbose: int = 0) -> list[str]:
    """tritonserver's argument list in the container (the same flags as the local server)."""
    return tritonserver_args(repository="/models", grpc_port=grpc_port, http_port=http_port,
                             address=address, explicit=explicit, log_verbose=log_verbose)


def cleanup(label: str = LABEL, base_url: str | None = None) -> int:
    """Remove every container carrying ``label`` (all of ours); return how many."""
    return containers.cleanup(label, base_url)


class DockerServer:
    """``server=docker``: tritonserver in a container of ``image``."""

    name = "docker"

    def __init__(self, image: str = DEFAULT_IMAGE, gpus: containers.GpuSpec = None,
                 shm_size: str = "256m", host: str = "127.0.0.1",
                 grpc_port: int | None = None, http_port: int | None = None,
                 ready_timeout_s: float = 60.0, keep_running: bool = False,
                 docker_base_url: str | None = None, network: str = "auto",
                 site_packages: str | None = None, log_verbose: int = 0,
                 job: str | None = None, stop_timeout_s: int = 10) -> None:
        if network not in NETWORKS:
            raise ServerError(f"server.network={network!r}; expected one of {NETWORKS}.")
        self.image = image
        self.gpus = gpus
        self.shm_size = shm_size
        self.host = host
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.ready_timeout_s = float(ready_timeout_s)
        self.keep_running = keep_running
        self.docker_base_url = docker_base_url
        self.network = network
        self._site_packages = site_packages
        self.log_verbose = log_verbose
        self.job = job
        self.stop_timeout_s = stop_timeout_s
        self._client: DockerClient | None = None

    # -- docker ------------------------------------------------------------------------
    def _docker(self) -> DockerClient:
        if self._client is None:
            self._client = containers.connect(self.docker_base_url)
        return self._client

    def site_packages(self) -> str:
        """Where numpy<2/onnxruntime live in the image, as the image itself declares
        (label ``trt-sweep.site-packages``, set by docker/build_image.py). Images without
        the label (NVIDIA's) bring them in their own Python: nothing to add."""
        if self._site_packages is None:
            image = containers.require_image(self._docker(), self.image, ServerError)
            labels = (image.attrs.get("Config") or {}).get("Labels") or {}
            self._site_packages = str(labels.get(_SITE_PACKAGES_LABEL, ""))
        return self._site_packages

    def _create_kwargs(self, mount: Path, grpc: int, http: int, network: str,
                       kind: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            detach=True, name=containers.container_name(kind),
            labels=containers.labels(self.job, kind=kind, network=network),
            volumes={str(mount): {"bind": "/models", "mode": "ro"}},
            shm_size=self.shm_size, init=True,  # init reaps the python backend's stubs
            privileged=False, security_opt=["no-new-privileges"],
            device_requests=containers.gpu_requests(self.gpus) or None,
            ulimits=containers.gpu_ulimits(self.gpus))
        if network == "host":
            kwargs["network_mode"] = "host"
        else:
            kwargs["ports"] = {f"{GRPC_IN_CONTAINER}/tcp": (self.host, grpc),
                               f"{HTTP_IN_CONTAINER}/tcp": (self.host, http)}
        return kwargs

    def _command(self, grpc: int, http: int, network: str, explicit: bool) -> list[str]:
        if network == "host":
            return server_command(grpc_port=grpc, http_port=http, address=self.host,
                                  explicit=explicit, log_verbose=self.log_verbose)
        return server_command(grpc_port=GRPC_IN_CONTAINER, http_port=HTTP_IN_CONTAINER,
                              explicit=explicit, log_verbose=self.log_verbose)

    def _start(self, mount: Path, *, explicit: bool, kind: str
               ) -> tuple[Container, int, int, str]:
        """Create and start a server container; returns it with its host ports."""
        client = self._docker()
        containers.require_image(client, self.image, ServerError)
        networks = ["bridge", "host"] if self.network == "auto" else [self.network]
        last: Exception | None = None
        first: docker.errors.APIError | None = None
        for network in networks:
            for _attempt in range(3):
                grpc, http = pick_ports(self.host, self.grpc_port, self.http_port)
                container: Container | None = None
                try:
                    container = client.containers.create(
                        self.image, command=self._command(grpc, http, network, explicit),
                        **self._create_kwargs(mount, grpc, http, network, kind))
                    container.start()
                    return container, grpc, http, network
                except docker.errors.APIError as exc:
                    containers.remove_quietly(container, stop_timeout_s=1)
                    last = exc
                    taken = [p for p in (grpc, http) if port_in_use(p, self.host)]
                    if taken and network == "bridge":
                        if self.grpc_port or self.http_port:
                            raise ServerError(
                                f"port(s) {taken} on {self.host} were taken before Docker "
                                "could publish them; free them or leave server.grpc_port/"
                                "http_port unset.") from exc
                        continue  # a race on a free port: choose others
                    if self.network == "auto" and network == "bridge":
                        first = exc
                        break  # publishing does not work on this daemon: try host networking
                    raise ServerError(
                        f"Docker could not start {self.image!r}: "
                        f"{containers.explain_api_error(exc)}"
                        + (f" (with published ports first: {containers.explain_api_error(first)})"
                           if first is not None else "")) from exc
        raise ServerError(f"Docker could not start {self.image!r}: {last}") from last

    # -- fresh container per block -----------------------------------------------------
    @contextmanager
    def serving(self, repository: ModelRepository, log_path: Path) -> Iterator[Endpoint]:
        if self.keep_running:
            with self._serving_kept(repository, log_path) as endpoint:
                yield endpoint
            return
        log_path.parent.mkdir(parents=True, exist_ok=True)
        begin = time.perf_counter()
        container, grpc, http, _network = self._start(repository.path.resolve(),
                                                      explicit=False, kind="tritonserver")
        pump: containers.LogPump | None = None
        try:
            pump = containers.LogPump(container, log_path)
            with _quoting_errors(log_path):
                wait_ready(f"{self.host}:{grpc}", repository.entry_model,
                           timeout_s=self.ready_timeout_s, log_path=log_path,
                           alive=lambda: _alive(container, pump),
                           what=f"tritonserver container {container.name}")
            yield Endpoint(grpc_url=f"{self.host}:{grpc}", http_url=f"{self.host}:{http}",
                           model_name=repository.entry_model, log_path=log_path,
                           # Counted from the create call: the container start is part of
                           # what a fresh-container job pays.
                           startup_seconds=time.perf_counter() - begin, server=self.name)
            if not _alive(container, pump):
                raise ServerError(f"tritonserver container {container.name} exited during "
                                  f"the evaluation; see {log_path}:\n{tail(log_path)}",
                                  log_path)
        finally:
            containers.remove_quietly(container, self.stop_timeout_s)
            if pump is not None:
                pump.join()

    # -- one kept container, models swapped --------------------------------------------
    def _kept_key(self) -> tuple[str, ...]:
        return (self.image, repr(self.gpus), self.shm_size, self.host, self.network,
                str(self.docker_base_url), str(self.log_verbose), str(self.job))

    def _ensure_kept(self, kept: _Kept, log_dir: Path) -> None:
        if kept.container is not None and _alive(kept.container, None):
            return
        kept.stop_timeout_s = self.stop_timeout_s
        kept.close()
        kept.root = Path(tempfile.mkdtemp(prefix=f"{LABEL}-models-"))
        container, grpc, http, _network = self._start(kept.root, explicit=True,
                                                      kind="tritonserver-kept")
        kept.container = container
        try:
            log = log_dir / f"tritonserver-{container.name}.log"
            kept.pump = containers.LogPump(container, log)
            kept.grpc_url, kept.http_url = f"{self.host}:{grpc}", f"{self.host}:{http}"
            with _quoting_errors(log):
                wait_ready(kept.grpc_url, None, timeout_s=self.ready_timeout_s, log_path=log,
                           alive=lambda: _alive(container, kept.pump),
                           what=f"tritonserver container {container.name}")
        except BaseException:
            kept.close()  # a server that never came up is not kept
            raise

    @contextmanager
    def _serving_kept(self, repository: ModelRepository, log_path: Path
                      ) -> Iterator[Endpoint]:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        kept = _KEPT.get(self._kept_key())
        with kept.lock:
            begin = time.perf_counter()
            self._ensure_kept(kept, log_path.parent)
            container, grpc_url = kept.container, kept.grpc_url
            assert container is not None and kept.root is not None and grpc_url
            pump = containers.LogPump(container, log_path, since=time.time())
            try:
                with _quoting_errors(log_path):
                    swap_in(grpc_url, repository, kept.root,
                            timeout_s=self.ready_timeout_s, log_path=log_path,
                            alive=lambda: _alive(container, None),
                            what=f"tritonserver container {container.name}")
                yield Endpoint(grpc_url=grpc_url, http_url=kept.http_url or "",
                               model_name=repository.entry_model, log_path=log_path,
                               startup_seconds=time.perf_counter() - begin, server=self.name)
            finally:
                # The models stay loaded until the next block swaps them out (or close()):
                # unloading here would only add the unload to every job's wall time.
                pump.close()

    def close(self) -> None:
        """Stop and remove the kept container of this configuration (keep_running mode)."""
        _KEPT.close(self._kept_key())

    def __enter__(self) -> DockerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Kept(KeptServer):
    """The one container a configuration keeps. Shared by every DockerServer built with
    the same settings in this process: job.py makes a server per job, and a multirun's
    jobs (one after another in one process with Hydra's basic launcher) must reuse it,
    not start one each."""

    def __init__(self) -> None:
        super().__init__()
        self.container: Container | None = None
        self.pump: containers.LogPump | None = None
        self.stop_timeout_s = 10

    def stop(self) -> None:
        container, self.container = self.container, None
        containers.remove_quietly(container, self.stop_timeout_s)
        if self.pump is not None:
            self.pump.join()
            self.pump = None


_KEPT: KeptServers[_Kept] = KeptServers(_Kept)


def close_kept() -> None:
    """Stop and remove every kept container of this process (also at interpreter exit)."""
    _KEPT.close_all()


def error_lines(log_path: Path, limit: int = 8) -> list[str]:
    """Triton's error lines in a container's log (the same reading as the local server's)."""
    return triton_error_lines(log_path, limit=limit)


@contextmanager
def _quoting_errors(log_path: Path) -> Iterator[None]:
    try:
        yield
    except ServerError as exc:
        errors = error_lines(log_path)
        if not errors:
            raise
        raise ServerError(f"{exc}\nError lines in {log_path}:\n" + "\n".join(errors),
                          log_path) from exc


def _alive(container: Container, pump: containers.LogPump | None) -> bool:
    try:
        container.reload()
        running = container.status in ("created", "running")
    except docker.errors.NotFound:
        running = False
    if not running and pump is not None:
        pump.join(5.0)  # the error message quotes the log: let its last lines land first
    return running
