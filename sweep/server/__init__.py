"""Serving: render a Triton model repository and run Triton on it (local process or Docker)."""

from __future__ import annotations

import sys

from sweep.server.base import Endpoint, ModelRepository, Server, ServerConfig

__all__ = ["Endpoint", "ModelRepository", "Server", "close_kept", "make_server"]


def make_server(cfg: ServerConfig, job: str | None = None) -> Server:
    """The server named by ``cfg.name`` (``server=local`` or ``server=docker``), given the
    settings that launcher takes and nothing else."""
    from sweep.errors import ConfigError

    if cfg.name == "local":
        from sweep.server.local import LocalServer

        return LocalServer(ready_timeout_s=cfg.ready_timeout_s, grpc_port=cfg.grpc_port,
                           http_port=cfg.http_port, keep_running=cfg.keep_running)
    if cfg.name == "docker":
        from sweep.server.docker import DockerServer

        return DockerServer(image=cfg.image, gpus=cfg.gpus, shm_size=cfg.shm_size,
                            grpc_port=cfg.grpc_port, http_port=cfg.http_port,
                            ready_timeout_s=cfg.ready_timeout_s,
                            keep_running=cfg.keep_running,
                            docker_base_url=cfg.docker_base_url, network=cfg.network,
                            site_packages=cfg.site_packages, job=job,
                            stop_timeout_s=cfg.stop_timeout_s)
    raise ConfigError(f"server={cfg.name!r} is unknown; expected local or docker.")


def close_kept() -> None:
    """Stop every server kept across jobs (``server.keep_running``) in this process. Only
    the launchers already imported can hold one: docker-py is not imported for nothing."""
    for module in ("sweep.server.local", "sweep.server.docker"):
        if module in sys.modules:
            sys.modules[module].close_kept()
