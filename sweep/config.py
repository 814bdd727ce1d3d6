"""Structured configs: the single source of defaults and types, registered once, and the
one place that reads Hydra's DictConfig (``JobSettings.from_cfg``).

Config groups (``python -m sweep GROUP=OPTION``): trt, builder, server, model, dataset,
eval, decoder, tracking. YAML files under conf/ are presets on these schemas only. The
builder and server groups' schemas live with their stage (builder/base.py, server/base.py);
everything after this module receives typed, frozen settings. The tools compose the same
configs through sweep/loader.py, with the sweep's own options (--config-dir, overrides).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from sweep.builder.base import BuilderConfig
from sweep.evaluate.decode import DecoderSpec
from sweep.evaluate.settings import EvalConfig
from sweep.infra.files import project_path
from sweep.model import ModelInterface, StatePair
from sweep.server.base import ServerConfig, ServingOptions

if TYPE_CHECKING:
    from sweep.data.manifest import Utterance


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
    # Realised in the graph (strongly_typed with a reduced precision): sweep/flags.py.
    keep_io_types: bool = True
    autocast_data_max: float = 512.0
    autocast_init_max: float = 65504.0
    calibration_method: str = "max"
    high_precision_dtype: str = "fp16"
    qdq_placement: str = "calibrated"
    autocast_max_depth_of_reduction: int | None = None
    # TensorRT 11.1+ build routes (sweep/flags.py).
    build_route: str = ""
    tune_build_routes: str = "none"
    tuning_expr: str = ""
    tuning_timeout_s: int = -1
    save_all_engines: bool = False
    tuning_accuracy_algorithm: str = "cos"
    tuning_accuracy_threshold: float = 0.01


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
    # Calibration audio for a flag set realised in the graph (int8/fp8 scales, AutoCast's
    # range checks): another folder under base_path, never the scored utterances.
    calibration: str | None = "demo_calib"
    calibration_utterances: int = 8
    # A reference holding words T-one cannot output (digits, Latin): "refuse" the manifest
    # (the line named), or "drop" those words when scoring, the references altered counted.
    out_of_alphabet: str = "refuse"


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
    # Where a new experiment keeps its artifacts. null: the tracking server's own store
    # (``mlflow server --serve-artifacts``: jobs on any host upload through the server).
    artifact_root: str | None = "mlruns/artifacts"
    experiment: str = "trt-sweep"
    log_engine: bool = True
    # MLflow's system metrics (CPU, memory, disk, network; GPU where pynvml sees one) on
    # each job's run, sampled every this many seconds; 0 turns them off.
    system_metrics_interval_s: float = 2.0
    # A FINISHED identical job of another sweep is measured again (engine from the cache);
    # true copies its figures instead, and every report marks where and when they were
    # measured. Rerunning the same sweep command always resumes.
    reuse_across_sweeps: bool = False


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
    value = OmegaConf.to_container(node, resolve=True)
    assert isinstance(value, dict)
    return {str(k): v for k, v in value.items()}


# The groups whose every setting is a job param (``group.key``) and part of its identity.
PARAM_GROUPS = ("builder", "server", "model", "dataset", "eval", "decoder")


def gpu_host_settings(cfg: DictConfig) -> tuple[BuilderConfig, ServerConfig]:
    """The builder and server groups alone: what the preflight checks need (a multirun's
    callback sees the config before any job's flag set is chosen)."""
    builder = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(BuilderConfig),
                                                  cfg.builder))
    server = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ServerConfig),
                                                 cfg.server))
    assert isinstance(builder, BuilderConfig) and isinstance(server, ServerConfig)
    return builder, server


def multihost_paths(cfg: DictConfig) -> dict[str, str | None] | None:
    """The output paths of a sweep whose launcher runs jobs on other hosts (a Ray
    launcher that joins a cluster: ``ray.init.address`` set), by setting name; None when
    the jobs run on this host (the basic launcher, ``ray_local``)."""
    launcher = cfg.hydra.launcher
    if not str(launcher.get("_target_", "")).endswith("RayLauncher"):
        return None
    if launcher.ray.init.get("address") is None:
        return None
    builder, _ = gpu_host_settings(cfg)
    tracking = tracking_settings(cfg)
    return {"hydra.sweep.dir": str(cfg.hydra.sweep.dir),
            "builder.cache_dir": builder.cache_dir,
            "builder.timing_cache_dir": builder.timing_cache_dir,
            "tracking.uri": tracking.uri,
            "tracking.artifact_root": tracking.artifact_root}


def tracking_settings(cfg: DictConfig) -> TrackingConfig:
    tracking = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrackingConfig),
                                                   cfg.tracking))
    assert isinstance(tracking, TrackingConfig)
    return tracking


def model_interface(cfg: ModelConfig) -> ModelInterface:
    """The model group as the interface every stage reads (paths resolved)."""
    return ModelInterface(
        # A string here; ModelInterface checks it against Contract with one clear error.
        name=cfg.name, onnx_path=project_path(cfg.onnx_path),
        contract=cfg.contract,  # type: ignore[arg-type]
        audio_input=cfg.audio_input, logprobs_output=cfg.logprobs_output,
        length_input=cfg.length_input,
        states=tuple(StatePair(s.input, s.output) for s in cfg.states),
        chunk_ms=cfg.chunk_ms, sample_rate=cfg.sample_rate,
        left_context_samples=cfg.left_context_samples, scale=cfg.scale,
        blank_id=cfg.blank_id, pad_ms=cfg.pad_ms)


@dataclass(frozen=True)
class DatasetSpec:
    """Where a test set lies (``<base_path>/<name>/<manifest>``, the seed's layout)."""

    name: str
    folder: Path
    manifest: str
    limit: int | None
    sample_rate: int
    calibration: Path | None = None
    calibration_utterances: int = 8
    out_of_alphabet: str = "refuse"

    def load_calibration(self) -> list[Utterance]:
        """The calibration utterances (dataset.calibration), checked like the test set."""
        from sweep.data.manifest import load_manifest
        from sweep.errors import ConfigError

        if self.calibration is None:
            raise ConfigError("a flag set realised in the graph needs calibration audio: set "
                              "dataset.calibration to a dataset folder under base_path.")
        # Calibration streams the audio only: its texts are never scored.
        return load_manifest(self.calibration, expected_rate=self.sample_rate,
                             manifest_name=self.manifest, out_of_alphabet="drop")

    def load(self) -> list[Utterance]:
        """The utterances, every manifest line and audio file checked."""
        from sweep.data.manifest import load_manifest

        utterances = load_manifest(self.folder, expected_rate=self.sample_rate,
                                   manifest_name=self.manifest,
                                   out_of_alphabet=self.out_of_alphabet)
        return utterances[: self.limit] if self.limit else utterances


@dataclass(frozen=True)
class JobSettings:
    """One job's configuration, read once from Hydra's config and frozen.

    ``trt`` stays a mapping: FlagSet validates it inside the job, so a flag set TensorRT
    would reject still gets its FAILED run with the params it had. The model interface is
    built inside the job for the same reason (``model_interface()``).
    """

    trt: dict[str, Any]
    builder: BuilderConfig
    server: ServerConfig
    serving: ServingOptions
    model_config: ModelConfig
    dataset: DatasetSpec
    eval: EvalConfig
    decoder: DecoderSpec
    decode_workers: int
    tracking: TrackingConfig
    force: bool
    # Every param group as plain data: the run's params and the resume identity.
    groups: dict[str, dict[str, Any]]

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> JobSettings:
        def typed(node: Any, schema: type) -> Any:
            return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))

        builder: BuilderConfig = typed(cfg.builder, BuilderConfig)
        server: ServerConfig = typed(cfg.server, ServerConfig)
        model: ModelConfig = typed(cfg.model, ModelConfig)
        evaluation: EvalConfig = typed(cfg.eval, EvalConfig)
        decoder = as_dict(cfg.decoder)
        spec = DecoderSpec.from_config(decoder, resolve=project_path, blank_id=model.blank_id)
        return cls(
            trt=as_dict(cfg.trt), builder=builder, server=server,
            serving=ServingOptions(max_batch_size=server.max_batch_size,
                                   queue_delay_us=server.queue_delay_us,
                                   instances=server.instances,
                                   intra_op_threads=builder.intra_op_threads,
                                   fp16_features=evaluation.fp16_features,
                                   state=server.state,
                                   max_candidate_sequences=server.max_candidate_sequences,
                                   sequence_queue_delay_us=server.sequence_queue_delay_us,
                                   sequence_idle_us=server.sequence_idle_us),
            model_config=model,
            dataset=DatasetSpec(name=cfg.dataset.name,
                                folder=project_path(cfg.dataset.base_path) / cfg.dataset.name,
                                manifest=cfg.dataset.manifest, limit=cfg.dataset.limit,
                                sample_rate=model.sample_rate,
                                calibration=(project_path(cfg.dataset.base_path)
                                             / cfg.dataset.calibration)
                                if cfg.dataset.calibration else None,
                                calibration_utterances=cfg.dataset.calibration_utterances,
                                out_of_alphabet=cfg.dataset.out_of_alphabet),
            eval=evaluation, decoder=spec,
            # Greedy takes microseconds an utterance: decoded inline. Beam search with
            # KenLM runs in worker processes, off the streaming event loop.
            decode_workers=int(decoder.get("workers", 0)) if spec.name == "beam" else 0,
            tracking=typed(cfg.tracking, TrackingConfig),
            force=bool(cfg.get("force", False)),
            groups={g: as_dict(cfg[g]) for g in PARAM_GROUPS})

    def model_interface(self) -> ModelInterface:
        return model_interface(self.model_config)

    def params(self) -> dict[str, Any]:
        """``group.key`` for every setting of the param groups (states are the model's
        interface, listed by the model's name)."""
        return {f"{group}.{key}": value for group, values in self.groups.items()
                for key, value in values.items() if key != "states"}
