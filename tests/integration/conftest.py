"""Integration fixtures: real tritonserver processes and real MLflow stores."""

from __future__ import annotations

from pathlib import Path

import pytest

# Importing tests.support.processes sets this session's token for every process a test
# starts, so the leak checks see this session's servers only.
import tests.support.processes  # noqa: F401
from tests.support.paths import DEMO_ONNX


@pytest.fixture(scope="session")
def demo_onnx() -> Path:
    path = DEMO_ONNX
    if not path.exists():
        pytest.fail(f"{path} is missing: the bundled demo model must be shipped")
    return path
