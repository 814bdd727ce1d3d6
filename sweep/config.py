"""Structured configs: the single source of defaults and types, registered once.

Config groups (``python -m sweep GROUP=OPTION``): trt, builder, server, model, dataset,
eval, decoder, tracking. YAML files under conf/ are presets on these schemas only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TrtConfig:
    """The flag set (see sweep/flags.py for the rules); TensorRT's own defaults."""

    strongly_typed: bool = False
    precision: str = "fp32"
    layer_precisions: dict[str, str] = field(default_factory=dict)
    layer_output_types: dict[str, str] = field(default_factory=dict)
    precision_constraints: str = "none"
    tf32: bool = True
    opt_level: int = 3
    min_batch: int = 1
    opt_batch: int = 16
    max_batch: int = 16
    timing_cache: bool = True


@dataclass
class BuilderConfig:
    name: str = "emulate"
    # Emulation: ONNX Runtime threads per server-side session.
    intra_op_threads: int = 1
    # trtexec / tensorrt on a GPU host (trtexec runs inside this image, via docker-py):
    image: str = "nvcr.io/nvidia/tritonserver:25.04-py3"
    gpus: str = "all"
    timeout_s: float = 3600.0
    trtexec_path: str = "trtexec"
    timing_cache_dir: str | None = None
    docker_base_url: str | None = None
    # Run the emulate builder inside ``image`` instead of on the host (what the GPU path
    # does with trtexec; with the CPU test image it proves the containerised step).
    in_container: bool = False
    # Content-addressed engine cache shared by jobs and sweeps.
    cache_dir: str = "~/.cache/trt-sweep/engines"
    # Size limit of the engine cache in GB: least recently used entries go; null: none.
    cache_max_gb: float | None = None


@dataclass
class ServerConfig:
    name: str = "local"
    ready_timeout_s: float = 60.0
    grpc_port: int | None = None
    http_port: int | None = None
    max_batch_size: int = 16
    # bench/RESULTS.md: no queue delay is 30% faster for one stream and costs nothing at 16
    # (requests queue behind a busy instance anyway); one instance per core, ORT 1 thread.
    queue_delay_us: int = 0
    instances: int = 2
    # One tritonserver for all the jobs of a sweep, each job's models swapped in by an
    # explicit load (sweep/deploy/explicit.py) instead of a server start and stop per job.
    # On by default for server=local (bench/RESULTS.md, overhead: about 1 s a job instead
    # of 4 s);
    # ignored under launchers that run jobs in other processes (Ray).
    keep_running: bool = False
    # docker only:
    image: str = "nvcr.io/nvidia/tritonserver:25.04-py3"
    gpus: str | None = None
    shm_size: str = "256m"
    network: str = "auto"
    stop_timeout_s: int = 10
    docker_base_url: str | None = None
    # Where numpy<2/onnxruntime live inside the image (python-backend models); None: the
    # image's default.
    site_packages: str | None = None


@dataclass
class StateConfig:
    input: str = MISSING
    output: str = MISSING


@dataclass
class ModelConfig:
    name: str = MISSING
    onnx_path: str = MISSING
    contract: str = "monolithic"
    audio_input: str = "signal"
    logprobs_output: str = "logprobs"
    length_input: str | None = None
    states: list[StateConfig] = field(default_factory=list)
    chunk_ms: int = 400
    sample_rate: int = 8000
    left_context_samples: int = 80
    scale: float = 32767.0
    blank_id: int = 34
    pad_ms: int = 300


@dataclass
class DatasetConfig:
    name: str = MISSING
    # The seed's layout: <base_path>/<name>/tarred_audio_manifest.json
    base_path: str = "demo/assets/data"
    manifest: str = "tarred_audio_manifest.json"
    limit: int | None = None


@dataclass
class EvalConfig:
    streams: int = 16
    request_timeout_s: float = 30.0
    # How tensors travel: "shm" (system shared memory, the server on this machine), "grpc"
    # (inside the messages, any server), "auto" (shm when the server can see it).
    transport: str = "auto"
    # Features rounded to fp16 and back in the ensemble's preprocessing, as the seed's
    # DALI step does (skip_preprocessor contract only).
    fp16_features: bool = False


@dataclass
class DecoderConfig:
    name: str = "greedy"
    kenlm_path: str | None = None
    beam_width: int = 200
    alpha: float = 0.4
    beta: float = 0.9
    workers: int = 2


@dataclass
class TrackingConfig:
    # MLflow 3 refuses a plain file store without MLFLOW_ALLOW_FILE_STORE; SQLite keeps the
    # runs and (beside it) the artifacts in one mlruns/ folder.
    uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_root: str = "mlruns/artifacts"
    experiment: str = "trt-sweep"
    log_engine: bool = True


@dataclass
class SweepConfig:
    trt: TrtConfig = MISSING
    builder: BuilderConfig = MISSING
    server: ServerConfig = MISSING
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    eval: EvalConfig = MISSING
    decoder: DecoderConfig = MISSING
    tracking: TrackingConfig = MISSING


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="sweep_schema", node=SweepConfig)
    cs.store(group="trt", name="default", node=TrtConfig)
    cs.store(group="builder", name="emulate", node=BuilderConfig(name="emulate"))
    cs.store(group="builder", name="trtexec", node=BuilderConfig(name="trtexec"))
    cs.store(group="builder", name="tensorrt", node=BuilderConfig(name="tensorrt"))
    cs.store(group="server", name="local", node=ServerConfig(name="local", keep_running=True))
    cs.store(group="server", name="docker", node=ServerConfig(name="docker"))
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="dataset", name="dataset_schema", node=DatasetConfig)
    cs.store(group="eval", name="default", node=EvalConfig)
    cs.store(group="decoder", name="greedy", node=DecoderConfig(name="greedy"))
    cs.store(group="decoder", name="beam_schema", node=DecoderConfig(name="beam"))
    cs.store(group="tracking", name="local", node=TrackingConfig)


def as_dict(node: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    value = OmegaConf.to_container(node, resolve=True)
    assert isinstance(value, dict)
    return {str(k): v for k, v in value.items()}
