"""What a builder hands the server stage: the built engine, and its format, which says how
Triton serves it. A core type: both stages import it, neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from sweep.flags import FlagSet

# NVIDIA's tritonserver image that builds (trtexec) and serves (Triton's TensorRT backend)
# a plan on a GPU host: both must be the same release, a plan runs only on the TensorRT
# that built it. 26.06 is the first release on TensorRT 11 (11.0, strongly typed only);
# older images keep working through the per-version rules (sweep/builder/versions.py).
DEFAULT_IMAGE = "nvcr.io/nvidia/tritonserver:26.06-py3"
# The newest release on TensorRT 10.x, for weakly typed sweeps (precision flags and pins).
TENSORRT_10_IMAGE = "nvcr.io/nvidia/tritonserver:26.05-py3"


class EngineFormat(StrEnum):
    """What a builder made, which says how Triton serves it (values as in engine.json)."""

    TENSORRT_PLAN = "tensorrt_plan"  # a TensorRT plan: Triton's tensorrt backend, GPU only
    ONNX_EMULATED = "onnx_emulated"  # rewritten ONNX: ONNX Runtime in the python backend


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
    format: EngineFormat
    flags: FlagSet
    builder: str
    builder_version: str
    build_seconds: float
    log_path: Path
    runtime: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: tuple[Path, ...] = ()
    cached: bool = False

    def __post_init__(self) -> None:
        # engine.json and the containerised builder hand the format over as a string.
        object.__setattr__(self, "format", EngineFormat(self.format))
