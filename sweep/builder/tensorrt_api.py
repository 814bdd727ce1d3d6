"""``builder=tensorrt``: TensorRT's Python API, when ``import tensorrt`` works on this host.

Same flag semantics as trtexec (``sweep.builder.trtexec``), in two steps kept apart the way
Polygraphy's CreateConfig keeps them: :func:`builder_settings` turns a flag set into plain
data (which network flags, builder flags, per-layer types, profile shapes), unit-tested
without TensorRT; :func:`apply_settings` is the only code that calls TensorRT's builder
API with it. Version rules are trtexec's (:func:`check_flags_for_version`): a release
that dropped weak typing drops it for both.

There is no inference pass here (trtexec's timing loop is a separate tool), so the
engine's metrics hold the build time only; use ``builder=trtexec`` for trtexec's
throughput/latency figures.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.builder.cache import timing_cache_name
from sweep.builder.trtexec import onnx_input_dims, resolve_layers
from sweep.builder.versions import Version, check_flags_for_version
from sweep.engine import Engine, EngineFormat
from sweep.errors import BuildError, FlagSetError
from sweep.flags import FlagSet
from sweep.infra.device import host_device
from sweep.model import read_onnx

# FlagSet precision names -> TensorRT DataType attribute names (trt.float32, ...).
_DTYPE = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "int8",
          "fp8": "fp8"}
_PRECISION_FLAG = {"fp16": "FP16", "bf16": "BF16", "int8": "INT8", "fp8": "FP8"}
_CONSTRAINT_FLAG = {"prefer": "PREFER_PRECISION_CONSTRAINTS",
                    "obey": "OBEY_PRECISION_CONSTRAINTS"}


@dataclass(frozen=True)
class BuilderSettings:
    """Everything the builder config gets, as data (names of TensorRT enum members)."""

    network_flags: tuple[str, ...]
    set_flags: tuple[str, ...]
    clear_flags: tuple[str, ...]
    optimization_level: int
    layer_precisions: dict[str, str] = field(default_factory=dict)  # layer -> DataType
    layer_output_types: dict[str, str] = field(default_factory=dict)
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = \
        field(default_factory=dict)
    timing_cache: bool = True
    profiling_verbosity: str = "DETAILED"
    # Every ONNX node name: a layer named <node>_<N> belongs to <node> only if no node of
    # the graph has that name itself.
    node_names: frozenset[str] = frozenset()


def builder_settings(flags: FlagSet, shapes: Mapping[str, tuple[int, ...]], *,
                     layer_precisions: Mapping[str, str] | None = None,
                     layer_output_types: Mapping[str, str] | None = None,
                     version: Version | None = None,
                     node_names: Iterable[str] = ()) -> BuilderSettings:
    """The builder configuration for ``flags`` (the API twin of ``trtexec_args``)."""
    if version is not None:
        check_flags_for_version(flags, version)
    network: list[str] = []
    if flags.strongly_typed:
        network.append("STRONGLY_TYPED")
    if version is not None and version < (10, 0, 0):
        network.append("EXPLICIT_BATCH")  # implicit batch was removed in 10.0
    set_flags: list[str] = []
    if not flags.strongly_typed and flags.precision != "fp32":
        set_flags.append(_PRECISION_FLAG[flags.precision])
    if flags.precision_constraints in _CONSTRAINT_FLAG:
        set_flags.append(_CONSTRAINT_FLAG[flags.precision_constraints])
    for patterns, resolved, what in (
            (flags.layer_precisions, layer_precisions, "layer_precisions"),
            (flags.layer_output_types, layer_output_types, "layer_output_types")):
        if patterns and not resolved and not flags.strongly_typed:
            raise FlagSetError(f"trt.{what}: the patterns were not resolved to layer names "
                               "(sweep.builder.layers.resolve); TensorRT matches names only.")
    profile = {name: ((flags.min_batch, *dims), (flags.opt_batch, *dims),
                      (flags.max_batch, *dims)) for name, dims in shapes.items()}
    return BuilderSettings(
        network_flags=tuple(network), set_flags=tuple(set_flags),
        clear_flags=() if flags.tf32 else ("TF32",),
        optimization_level=int(flags.opt_level),
        layer_precisions={k: _DTYPE[v] for k, v in (layer_precisions or {}).items()},
        layer_output_types={k: _DTYPE[v] for k, v in (layer_output_types or {}).items()},
        profile=profile, timing_cache=flags.timing_cache, node_names=frozenset(node_names))


def apply_settings(trt: Any, builder: Any, network: Any, config: Any,
                   settings: BuilderSettings) -> list[str]:
    """Configure ``config``/``network`` from ``settings``; returns the layer names that
    matched nothing (TensorRT's ONNX parser names layers after ONNX nodes)."""
    for name in settings.set_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in settings.clear_flags:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    config.builder_optimization_level = settings.optimization_level
    config.profiling_verbosity = getattr(trt.ProfilingVerbosity, settings.profiling_verbosity)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in settings.profile.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    seen: set[str] = set()
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        pinned = _pinned_node(layer.name, settings.layer_precisions, settings.node_names)
        if pinned is not None:
            layer.precision = getattr(trt, settings.layer_precisions[pinned])
            seen.add(pinned)
        typed = _pinned_node(layer.name, settings.layer_output_types, settings.node_names)
        if typed is not None:
            dtype = getattr(trt, settings.layer_output_types[typed])
            for output in range(layer.num_outputs):
                layer.set_output_type(output, dtype)
            seen.add(typed)
    wanted = set(settings.layer_precisions) | set(settings.layer_output_types)
    return sorted(wanted - seen)


def _node_names(onnx_path: Path, *pins: Mapping[str, str]) -> frozenset[str]:
    if not any(pins):
        return frozenset()
    graph = read_onnx(onnx_path, load_weights=False).graph
    return frozenset(n.name for n in graph.node if n.name)


def _pinned_node(layer: str, pins: Mapping[str, str], node_names: frozenset[str]
                 ) -> str | None:
    """The pinned ONNX node a layer comes from: the node itself, or one of the further
    layers the ONNX parser makes of it (``<node>_<N>``) where no ONNX node has that name."""
    if layer in pins:
        return layer
    base, sep, index = layer.rpartition("_")
    if sep and index.isdigit() and base in pins and layer not in node_names:
        return base
    return None


def _import_tensorrt() -> Any:
    try:
        import tensorrt
    except Exception as exc:  # ImportError, or a broken install raising OSError
        raise BuildError(
            f"builder=tensorrt needs TensorRT's Python package, which is not importable "
            f"here ({type(exc).__name__}: {exc}). Use builder=trtexec (trtexec inside "
            "NVIDIA's tritonserver image on a GPU host) or builder=emulate (CPU).") from exc
    return tensorrt


def _version_tuple(text: str) -> Version:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    if m is None:
        raise BuildError(f"cannot read TensorRT's version from {text!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


class TensorRTBuilder:
    """Builds with ``import tensorrt`` in this process (a GPU host with TensorRT wheels)."""

    name = "tensorrt"

    def __init__(self, timing_cache_dir: str | Path | None = None) -> None:
        self.trt = _import_tensorrt()  # refuse at construction, before a sweep starts
        self.timing_cache_dir = Path(timing_cache_dir) if timing_cache_dir else None

    def version(self) -> str:
        return f"TensorRT {self.trt.__version__} (python)"

    def build(self, onnx_path: Path, flags: FlagSet, workdir: Path) -> Engine:
        trt = self.trt
        onnx_path = Path(onnx_path)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        log_path = workdir / "build.log"
        version = _version_tuple(trt.__version__)
        notes = check_flags_for_version(flags, version)
        precisions, output_types = ({}, {}) if flags.strongly_typed else \
            resolve_layers(onnx_path, flags)
        settings = builder_settings(flags, onnx_input_dims(onnx_path),
                                    layer_precisions=precisions,
                                    layer_output_types=output_types, version=version,
                                    node_names=_node_names(onnx_path, precisions, output_types))
        start = time.perf_counter()
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        creation = 0
        for name in settings.network_flags:
            creation |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
        network = builder.create_network(creation)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            log_path.write_text("\n".join(errors) + "\n")
            raise BuildError(f"TensorRT's ONNX parser rejected {onnx_path}: "
                             f"{'; '.join(errors[:5])}", log_path)
        config = builder.create_builder_config()
        unmatched = apply_settings(trt, builder, network, config, settings)
        if unmatched:
            raise FlagSetError(
                f"layer names {unmatched[:10]} from the flag set's patterns are not layers of "
                "the parsed network (the ONNX parser renamed or fused them); pin the layers "
                "TensorRT reports instead.")
        cache_file = (self.timing_cache_dir or workdir) / timing_cache_name(
            ".".join(map(str, version)), host_device())
        if settings.timing_cache:
            cache = config.create_timing_cache(cache_file.read_bytes()
                                               if cache_file.exists() else b"")
            config.set_timing_cache(cache, ignore_mismatch=False)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BuildError(f"TensorRT could not build {onnx_path} with {flags.label}; "
                             f"see {log_path}", log_path)
        engine_path = workdir / "model.plan"
        engine_path.write_bytes(bytes(plan))
        if settings.timing_cache:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_bytes(bytes(config.get_timing_cache().serialize()))
        seconds = time.perf_counter() - start
        layers_json = workdir / "layers.json"
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(plan)
        inspector = engine.create_engine_inspector()
        layers_json.write_text(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
        log_path.write_text(json.dumps({"settings": settings.__dict__, "notes": notes},
                                       indent=2, default=str) + "\n")
        return Engine(path=engine_path, format=EngineFormat.TENSORRT_PLAN, flags=flags,
                      builder=self.name, builder_version=self.version(),
                      build_seconds=seconds, log_path=log_path,
                      runtime={"tensorrt_version": trt.__version__, "notes": notes},
                      metrics={"trt_build_s": seconds},
                      artifacts=(log_path, layers_json))
