"""Serving: render a Triton model repository and run Triton on it (local process or Docker)."""

from __future__ import annotations

import sys
from typing import Any

from sweep.server.base import Endpoint, ModelRepository, Server

__all__ = ["Endpoint", "ModelRepository", "Server", "close_kept", "make_server"]


def make_server(name: str, **options: Any) -> Server:
    """The server named by ``cfg.server.name`` (``local`` or ``docker``)."""
    from sweep.errors import ConfigError

    if name == "local":
        from sweep.server.local import LocalServer

        return LocalServer(**options)
    if name == "docker":
        from sweep.server.docker import DockerServer

        return DockerServer(**options)
    raise ConfigError(f"server={name!r} is unknown; expected local or docker.")


def close_kept() -> None:
    """Stop every server kept across jobs (``server.keep_running``) in this process. Only
    the launchers already imported can hold one: docker-py is not imported for nothing."""
    for module in ("sweep.server.local", "sweep.server.docker"):
        if module in sys.modules:
            sys.modules[module].close_kept()
