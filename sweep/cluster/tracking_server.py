"""``mlflow server`` on PostgreSQL with proxied artifacts: runs and metrics go to the
database, artifacts go through the server (``--serve-artifacts``) into
``--artifacts-destination``, so no job writes into the server's disk directly and an
artifact a worker logged is one the head can read. The database URI, password included,
reaches the server through its environment (MLFLOW_BACKEND_STORE_URI), not its command
line, which every local user can read."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path

from sweep.cluster import postgres
from sweep.cluster.state import ClusterError, Part
from sweep.infra.processes import start_group


def start(postgres_uri: str, artifacts: Path, port: int, log: Path, runtime: Path) -> Part:
    """Start the server (``wait_healthy`` waits for it: the first start on an empty
    database runs MLflow's schema migrations, tens of seconds on two cores). ``runtime``:
    where PostgreSQL's password file is."""
    artifacts.mkdir(parents=True, exist_ok=True)
    env = {**os.environ,
           "MLFLOW_BACKEND_STORE_URI": postgres.with_password(postgres_uri, runtime)}
    pgid = start_group([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                        "--port", str(port), "--workers", "1",
                        "--artifacts-destination", artifacts.resolve().as_uri(),
                        "--serve-artifacts"], log, env=env)
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
