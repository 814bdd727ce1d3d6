"""What every builder takes and returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from sweep.engine import DEFAULT_IMAGE, Engine
from sweep.flags import FlagSet

# Where NGC's tritonserver images keep trtexec: not on PATH there ("trtexec" is tried next).
DEFAULT_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"


@dataclass
class BuilderConfig:
    name: str = "emulate"
    # Emulation: ONNX Runtime threads per server-side session.
    intra_op_threads: int = 1
    # trtexec / tensorrt on a GPU host (trtexec runs inside this image, via docker-py):
    image: str = DEFAULT_IMAGE
    gpus: str | None = "all"
    timeout_s: float = 3600.0
    trtexec_path: str = DEFAULT_TRTEXEC
    timing_cache_dir: str | None = None
    docker_base_url: str | None = None
    # Run the emulate builder inside ``image`` instead of on the host (what the GPU path
    # does with trtexec; with the CPU test image it proves the containerised step).
    in_container: bool = False
    # Plan a GPU host's builds here: print and write the exact trtexec command each job
    # would run, the typed ONNX and the Triton repository, without Docker or a GPU, for
    # the TensorRT version given (e.g. "11.4"); the run is FINISHED without speed or
    # accuracy metrics.
    dry_run: bool = False
    tensorrt_version: str | None = None
    # Content-addressed engine cache shared by jobs and sweeps.
    cache_dir: str = "~/.cache/trt-sweep/engines"
    # Size limit of the engine cache in GB: least recently used entries go; null: none.
    cache_max_gb: float | None = None

    @property
    def derived_dir(self) -> Path:
        """Beside the engine cache (never inside it, whose every folder is an engine): what
        the stages derive from a model once, the typed ONNX files and the fp32 reference
        outputs."""
        return Path(self.cache_dir).expanduser().parent


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
