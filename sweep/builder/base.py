"""What every builder takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sweep.flags import FlagSet


@dataclass(frozen=True)
class Engine:
    """A built engine and everything needed to serve and record it.

    ``format`` tells the deploy stage how to serve it: ``tensorrt_plan`` (a TensorRT plan,
    Triton's tensorrt backend) or ``onnx_emulated`` (an ONNX graph rewritten to compute in
    the flag set's precisions, served by ONNX Runtime inside Triton's python backend).
    ``runtime`` carries settings the server-side runner must apply (for the emulator:
    ONNX Runtime's graph optimisation level); ``metrics`` the builder's own figures
    (trtexec's, prefixed ``trt_``).
    """

    path: Path
    format: str
    flags: FlagSet
    builder: str
    builder_version: str
    build_seconds: float
    log_path: Path
    runtime: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: tuple[Path, ...] = ()
    cached: bool = False


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
