"""``mlflow server`` on PostgreSQL with proxied artifacts: runs and metrics go to the
database, artifacts go through the server (``--serve-artifacts``) into
``--artifacts-destination``, so no job writes into the server's disk directly and an
artifact a worker logged is one the head can read."""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

from sweep.cluster.state import ClusterError, Part
from sweep.infra.processes import start_group


def start(postgres_uri: str, artifacts: Path, port: int, log: Path) -> Part:
    """Start the server (``wait_healthy`` waits for it: the first start on an empty
    database runs MLflow's schema migrations, tens of seconds on two cores)."""
    artifacts.mkdir(parents=True, exist_ok=True)
    pgid = start_group([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                        "--port", str(port), "--workers", "1",
                        "--backend-store-uri", postgres_uri,
                        "--artifacts-destination", artifacts.resolve().as_uri(),
                        "--serve-artifacts"], log)
    return Part("tracking", pgid, str(log), ip="127.0.0.1")


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def wait_healthy(port: int, log: Path, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if healthy(port):
            return
        time.sleep(0.5)
    raise ClusterError(f"the MLflow server on port {port} did not answer /health within "
                       f"{timeout_s:.0f} s; its log: {log}")
