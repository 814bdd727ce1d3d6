"""Shared fixtures. Integration fixtures start real servers once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

# bench/client_calls.py imports the model builder from here.
from tests.support.models import tiny_monolithic_onnx

__all__ = ["tiny_monolithic_onnx"]


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    return tiny_monolithic_onnx(tmp_path / "tiny.onnx")
