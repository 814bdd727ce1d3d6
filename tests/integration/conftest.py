"""Integration fixtures: real tritonserver processes and real MLflow stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.paths import DEMO_ONNX

# Importing tests.support.processes sets this session's token for every process a test
# starts. run_sweep and our_processes were imported from here before tests/support/ held
# them; tests written against that still find them.
from tests.support.processes import our_processes
from tests.support.sweep import run_sweep

__all__ = ["our_processes", "run_sweep"]


@pytest.fixture(scope="session")
def demo_onnx() -> Path:
    path = DEMO_ONNX
    if not path.exists():
        pytest.fail(f"{path} is missing: the bundled demo model must be shipped")
    return path
