"""What every Triton launcher takes and gives."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ModelRepository:
    """A rendered Triton model repository on disk."""

    path: Path
    entry_model: str  # the model a client calls ("model" or "ensemble")
    models: tuple[str, ...]  # every model folder, in load order
    configs: tuple[Path, ...]  # the rendered config.pbtxt files (logged as artifacts)


@dataclass(frozen=True)
class Endpoint:
    """A ready Triton server."""

    grpc_url: str
    http_url: str
    model_name: str
    log_path: Path
    startup_seconds: float
    server: str  # "local" or "docker"


@runtime_checkable
class Server(Protocol):
    """A way to run Triton. ``serving`` starts it, waits until the model is ready, yields
    the endpoint, and always stops and removes it, whatever happens inside the block."""

    name: str

    def serving(self, repository: ModelRepository, log_path: Path
                ) -> AbstractContextManager[Endpoint]:
        ...

    def site_packages(self) -> str:
        """Where the python-backend models find numpy/onnxruntime/sweep, as the server sees
        the filesystem (the stub ignores PYTHONPATH, so model.py puts it on sys.path)."""
        ...

