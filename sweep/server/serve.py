"""Render -> serve: the one way the job, the doctor and the benchmarks put an engine behind
Triton."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sweep.engine import Engine
from sweep.model import ModelInterface
from sweep.server.base import Endpoint, ModelRepository, Server, ServingOptions
from sweep.server.repository import render


@dataclass(frozen=True)
class Served:
    """A ready server and what it serves."""

    endpoint: Endpoint
    repository: ModelRepository
    log_path: Path
    startup_seconds: float  # from the serving call until the entry model was READY


@contextmanager
def serve(model: ModelInterface, engine: Engine, server: Server, workdir: Path,
          options: ServingOptions | None = None,
          rendered: Callable[[ModelRepository], None] | None = None) -> Iterator[Served]:
    """Render ``engine`` into ``workdir/model_repository`` and serve it with ``server``;
    the server stops (and is removed) when the block exits, whatever happens inside.
    ``rendered`` sees the repository before the server starts (to log its configs: a
    server that refuses them then leaves them on the run)."""
    repository = render(model, engine, workdir / "model_repository",
                        site_packages=server.site_packages(),
                        options=options if options is not None else ServingOptions())
    if rendered is not None:
        rendered(repository)
    log_path = workdir / "tritonserver.log"
    begin = time.perf_counter()
    with server.serving(repository, log_path) as endpoint:
        yield Served(endpoint, repository, log_path, time.perf_counter() - begin)
