"""What every Triton launcher takes and gives."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from sweep.engine import DEFAULT_IMAGE, EngineFormat


class InstanceKind(StrEnum):
    """Where Triton runs a model's instances (config.pbtxt's ``instance_group.kind``)."""

    CPU = "KIND_CPU"
    GPU = "KIND_GPU"

    @classmethod
    def for_engine(cls, engine_format: EngineFormat) -> InstanceKind:
        # Triton's TensorRT backend accepts GPU instances only ("TensorRT backend supports
        # only GPU device"); the emulated engine runs ONNX Runtime on the CPU.
        return cls.GPU if engine_format is EngineFormat.TENSORRT_PLAN else cls.CPU


@dataclass(frozen=True)
class ServingOptions:
    """Triton's scheduling knobs: the one copy, read from ``server.*`` by sweep/config.py and
    used as is by the doctor and the benchmarks. The defaults are the sweep's (measured in
    bench/RESULTS.md): no queue delay is 30 % faster for one stream and costs nothing at 16
    streams (requests queue behind a busy instance anyway); one instance per core with
    ONNX Runtime on one thread. The instance kind is not a knob: it follows the engine."""

    max_batch_size: int = 16
    queue_delay_us: int = 0
    instances: int = 2
    intra_op_threads: int = 1
    fp16_features: bool = False
    # Where a stream's state lives between chunks: "client" (round-tripped in every request)
    # or "server" (Triton's sequence batcher, the `oldest` strategy; the client sends only
    # audio with a correlation id and start/end flags). Then dynamic batching is replaced by
    # the sequence batcher's candidate count and queue delay; a sequence idle longer than
    # sequence_idle_us is dropped with its state. Sequences beyond the candidate count wait
    # in Triton's backlog until one ends, which would cap a capacity search: hence many.
    state: str = "client"
    max_candidate_sequences: int = 256
    sequence_queue_delay_us: int = 0
    sequence_idle_us: int = 10_000_000


@dataclass
class ServerConfig:
    """The ``server`` config group (``server=local|docker``)."""

    name: str = "local"
    ready_timeout_s: float = 60.0
    grpc_port: int | None = None
    http_port: int | None = None
    # Scheduling: ServingOptions holds the defaults (and says why they are what they are).
    max_batch_size: int = ServingOptions.max_batch_size
    queue_delay_us: int = ServingOptions.queue_delay_us
    instances: int = ServingOptions.instances
    # State kept by the client or by Triton (ServingOptions says how).
    state: str = ServingOptions.state
    max_candidate_sequences: int = ServingOptions.max_candidate_sequences
    sequence_queue_delay_us: int = ServingOptions.sequence_queue_delay_us
    sequence_idle_us: int = ServingOptions.sequence_idle_us
    # One tritonserver for all the jobs of a sweep, each job's models swapped in by an
    # explicit load (sweep/server/kept.py) instead of a server start and stop per job.
    # On by default for server=local (bench/RESULTS.md, overhead: about 1 s a job instead
    # of 4 s);
    # ignored under launchers that run jobs in other processes (Ray).
    keep_running: bool = False
    # docker only:
    image: str = DEFAULT_IMAGE
    gpus: str | None = None
    shm_size: str = "256m"
    network: str = "auto"
    stop_timeout_s: int = 10
    docker_base_url: str | None = None
    # Where numpy<2/onnxruntime live inside the image (python-backend models); None: the
    # image's default.
    site_packages: str | None = None


@dataclass(frozen=True)
class ModelRepository:
    """A rendered Triton model repository on disk."""

    path: Path
    entry_model: str  # the model a client calls ("model" or "ensemble")
    models: tuple[str, ...]  # every model folder, in load order
    configs: tuple[Path, ...]  # the rendered config.pbtxt files (logged as artifacts)


@dataclass(frozen=True)
class Endpoint:
    """A ready Triton server."""

    grpc_url: str
    http_url: str
    model_name: str
    log_path: Path
    startup_seconds: float
    server: str  # "local" or "docker"


@runtime_checkable
class Server(Protocol):
    """A way to run Triton. ``serving`` starts it, waits until the model is ready, yields
    the endpoint, and always stops and removes it, whatever happens inside the block."""

    name: str

    def serving(self, repository: ModelRepository, log_path: Path
                ) -> AbstractContextManager[Endpoint]:
        ...

    def site_packages(self) -> str:
        """Where the python-backend models find numpy/onnxruntime/sweep, as the server sees
        the filesystem (the stub ignores PYTHONPATH, so model.py puts it on sys.path)."""
        ...

