"""Folders of the repository the tests read."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "assets"
DEMO_ONNX = DEMO / "demo_monolithic.onnx"
# Inputs vendored with the tests (a plain clone runs every test that reads them).
FIXTURES = ROOT / "tests" / "fixtures"
