"""Integration fixtures: real tritonserver processes and real MLflow stores."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import DEMO, ROOT

# Every process a test starts inherits this token, so the leak check sees this test
# session's servers only (not those of another sweep running on the same machine).
TOKEN = uuid.uuid4().hex
os.environ["TRT_SWEEP_TEST_TOKEN"] = TOKEN


def our_processes() -> list[int]:
    """Pids of live processes started by the sweep in this test session (the sweep's
    servers carry TRT_SWEEP=1; the test session's token marks which are ours)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if b"TRT_SWEEP=1" in env and f"TRT_SWEEP_TEST_TOKEN={TOKEN}".encode() in env \
                and "State:\tZ" not in status:
            pids.append(int(entry.name))
    return pids


def run_sweep(args: list[str], tmp: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m sweep`` as a user runs it, against a store and cache under ``tmp``."""
    cmd = [sys.executable, "-m", "sweep", *args,
           f"tracking.uri=sqlite:///{tmp}/mlruns/mlflow.db",
           f"tracking.artifact_root={tmp}/mlruns/artifacts",
           f"builder.cache_dir={tmp}/cache",
           f"hydra.sweep.dir={tmp}/multirun", f"hydra.run.dir={tmp}/run"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def demo_onnx() -> Path:
    path = DEMO / "demo_monolithic.onnx"
    if not path.exists():
        pytest.fail(f"{path} is missing: the bundled demo model must be shipped")
    return path
