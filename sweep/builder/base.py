"""What every builder takes and returns."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from sweep.engine import Engine
from sweep.flags import FlagSet


@runtime_checkable
class Builder(Protocol):
    """Turns an ONNX model and a flag set into an Engine; does nothing until called."""

    name: str

    def version(self) -> str:
        """Builder and tool version; part of the engine cache key."""
        ...

    def build(self, onnx_path: Path, flags: FlagSet, workdir: Path) -> Engine:
        """Build into ``workdir``; raise ``BuildError`` (with the log) on failure."""
        ...
