"""The trtexec builder: a flag set becomes one trtexec command line, run in the tritonserver
image through docker-py.

``trtexec_args`` is the single place that knows trtexec's spelling; it is a pure function
(data in, list out) so the whole flag matrix is unit-tested without TensorRT.
``versions.check_flags_for_version`` refuses what a TensorRT release no longer has, before a GPU
minute is spent. ``TrtexecBuilder`` probes the image's TensorRT version, checks, builds,
keeps the log and reads trtexec's own throughput/latency figures out of it.

The inference pass is kept (no --skipInference): its performance summary is the only
GPU-side throughput figure the sweep gets besides Triton's, and it costs a few seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from docker.client import DockerClient
from docker.models.images import Image

from sweep.builder import layer_info, layers, routes
from sweep.builder.base import DEFAULT_TRTEXEC
from sweep.builder.cache import timing_cache_name
from sweep.builder.routes import ReferencePairs, best_from_log
from sweep.builder.trtexec_log import decode_version, parse_trtexec_log
from sweep.builder.versions import Version, check_flags_for_version
from sweep.engine import DEFAULT_IMAGE, Engine, EngineFormat
from sweep.errors import BuildError, FlagSetError, ModelError
from sweep.flags import FlagSet
from sweep.infra import containers
from sweep.infra.device import host_device
from sweep.infra.files import tail
from sweep.model import read_onnx

# trtexec's --layerPrecisions / --layerOutputTypes grammar (10.x --help):
# precision ::= "fp32"|"fp16"|"bf16"|"int32"|"int8" — no fp8 per layer.
_TRTEXEC_LAYER_TYPES = ("fp32", "fp16", "bf16", "int8")
_PRECISION_FLAG = {"fp16": "--fp16", "bf16": "--bf16", "int8": "--int8", "fp8": "--fp8"}

# Options trtexec_args sets itself; a flag set's ``extra`` may not override them, or the
# engine cache key (the flag set) and the command line would disagree.
MANAGED = frozenset({
    "onnx", "saveEngine", "loadEngine", "stronglyTyped", "fp16", "bf16", "int8", "fp8",
    "int4", "best", "noTF32", "precisionConstraints", "layerPrecisions", "layerOutputTypes",
    "builderOptimizationLevel", "minShapes", "optShapes", "maxShapes", "shapes",
    "timingCacheFile", "exportLayerInfo", "profilingVerbosity", "skipInference",
    "duration", "warmUp", "useSpinWait", "noDataTransfers", "useCudaGraph",
    "noSpinWait", "includeDataTransfers", "noCudaGraph",
    # build routes (11.1+): set from trt.build_route / trt.tune_build_routes
    "setBuildRoute", "tuneBuildRoutes", "tuneBuildRouteFile", "tuningSearch",
    "tuningTimeOut", "tuningCacheFile", "continue", "dryRun", "saveAllEngines", "refPair",
    "loadInputs", "loadRefOutputs", "accuracyAlgorithm", "accuracyThreshold", "atol", "rtol",
    "helpBuildRoute", "tuningResultFile",
})
_EXTRA_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_EXTRA_VALUE = re.compile(r"^[A-Za-z0-9_.:+\-x,]*$")


@dataclass(frozen=True)
class InferenceOptions:
    """trtexec's timing pass after the build (its figures become ``trt_*`` metrics)."""

    duration_s: int = 3
    warmup_ms: int = 500
    # Spin-waiting keeps the host thread hot: without it trtexec itself warns that GPU
    # compute time is unstable (see the yolov7 fixture) and asks for --useSpinWait.
    spin_wait: bool = True
    # T-one's published figures use --noDataTransfers (pure GPU time); the sweep keeps the
    # copies by default because Triton pays them for every chunk (state is ~440 KB/stream).
    data_transfers: bool = True
    cuda_graph: bool = False
    batch: int | None = None  # inference batch; None: the flag set's opt_batch
    skip: bool = False


def onnx_input_dims(onnx_path: Path) -> dict[str, tuple[int, ...]]:
    """Fixed non-batch dims of every graph input (initializers excluded), as the seed's
    trt_build.sh reads them before writing --minShapes/--optShapes/--maxShapes."""
    model = read_onnx(onnx_path, load_weights=False)
    initializers = {i.name for i in model.graph.initializer}
    dims: dict[str, tuple[int, ...]] = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else -1
                 for d in value.type.tensor_type.shape.dim]
        if not shape:
            raise ModelError(
                f"{onnx_path}: input {value.name!r} is a scalar without a batch axis; the "
                "sweep builds engines with a dynamic batch axis on every input.")
        if any(d < 1 for d in shape[1:]):
            raise ModelError(
                f"{onnx_path}: input {value.name!r} has dynamic non-batch dims {shape}; "
                "trtexec needs them fixed (export with a fixed chunk size).")
        dims[value.name] = tuple(shape[1:])
    return dims


def _shape_spec(dims: Mapping[str, tuple[int, ...]], batch: int) -> str:
    parts = []
    for name, rest in dims.items():
        if "," in name or "'" in name:
            # trtexec splits the spec on ',' and strips quotes; such a name cannot be passed.
            raise ModelError(f"input name {name!r} contains ',' or a quote, which trtexec's "
                             "--minShapes/--optShapes/--maxShapes grammar cannot carry.")
        parts.append(f"{name}:{'x'.join(str(d) for d in (batch, *rest))}")
    return ",".join(parts)


def _layer_spec(option: str, resolved: Mapping[str, str]) -> str:
    parts = []
    for name, precision in resolved.items():
        if precision not in _TRTEXEC_LAYER_TYPES:
            raise FlagSetError(
                f"{option}: precision {precision!r} for layer {name!r} is not one trtexec "
                f"accepts per layer ({', '.join(_TRTEXEC_LAYER_TYPES)}); fp8 comes only from "
                "Q/DQ nodes in the ONNX.")
        if "," in name:
            raise FlagSetError(
                f"{option}: ONNX node {name!r} has a ',' in its name, which trtexec's "
                "layer spec uses as separator; rename the node in the ONNX.")
        parts.append(f"{name}:{precision}")
    return ",".join(parts)


def timing_pass_args(inference: InferenceOptions, version: Version | None) -> list[str]:
    """The timing pass's switches, spelled so that they mean the same on 10.x and 11.x:
    trtexec 11 flipped the defaults (data transfers off, CUDA graphs and spin-wait on) and
    made the old switches no-ops, so the same command line would measure other things."""
    if version is not None and version >= (11, 0, 0):
        return [*(["--includeDataTransfers"] if inference.data_transfers else []),
                *([] if inference.cuda_graph else ["--noCudaGraph"]),
                *([] if inference.spin_wait else ["--noSpinWait"])]
    return [*(["--useSpinWait"] if inference.spin_wait else []),
            *([] if inference.data_transfers else ["--noDataTransfers"]),
            *(["--useCudaGraph"] if inference.cuda_graph else [])]


def trtexec_args(flags: FlagSet, onnx_path: str, engine_path: str,
                 shapes: Mapping[str, tuple[int, ...]], *,
                 layer_precisions: Mapping[str, str] | None = None,
                 layer_output_types: Mapping[str, str] | None = None,
                 timing_cache_path: str | None = None,
                 layer_info_path: str | None = None,
                 inference: InferenceOptions | None = None,
                 version: Version | None = None,
                 route: str | None = None,
                 tuning: list[str] | None = None) -> list[str]:
    """trtexec's argument list (without the program) for one flag set.

    ``shapes`` are the non-batch dims of every input; the batch axis gets min/opt/max from
    the flag set. ``layer_precisions``/``layer_output_types`` are the flag set's patterns
    already resolved to ONNX node names (``sweep.builder.layers.resolve``): trtexec matches
    layer names only, so an op-type pattern such as ``LayerNormalization`` must be expanded
    before it gets here. Paths are as trtexec sees them (inside the container).
    ``version`` (when known) drops flags a release made implicit. ``route`` builds one
    build route (``trt.build_route``, or the one a finished search picked); ``tuning`` are
    the route search's options (``routes.tuning_args``), required when the flag set
    searches and no ``route`` replaces the search.
    """
    inference = inference or InferenceOptions()
    if version is not None:
        check_flags_for_version(flags, version)
    if not shapes:
        raise ModelError(f"{onnx_path}: the model has no inputs to give shapes for.")
    args = [f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]

    if flags.strongly_typed:
        # TensorRT 11 makes every network strongly typed; the flag is then redundant.
        if version is None or version < (11, 0, 0):
            args.append("--stronglyTyped")
    elif flags.precision != "fp32":
        args.append(_PRECISION_FLAG[flags.precision])
    if not flags.tf32:
        args.append("--noTF32")

    if flags.in_graph and not flags.keep_io_types:
        raise FlagSetError(
            "trt.keep_io_types=false on a GPU host: the typed ONNX's inputs and outputs "
            "would be fp16/bf16 while the served interface (config.pbtxt, the client) is the "
            "model's fp32. Keep trt.keep_io_types=true for builder=trtexec.")
    if flags.precision_constraints != "none":
        args.append(f"--precisionConstraints={flags.precision_constraints}")
    for option, patterns, resolved in (
            ("--layerPrecisions", flags.layer_precisions, layer_precisions),
            ("--layerOutputTypes", flags.layer_output_types, layer_output_types)):
        if not patterns or flags.strongly_typed:
            continue  # strongly typed, the FP32 keeps are in the typed ONNX already
        if not resolved:
            raise FlagSetError(
                f"{option}: the patterns {[p for p, _ in patterns]} were not resolved to any "
                "ONNX node name; trtexec matches layer names only (resolve them with "
                "sweep.builder.layers.resolve on the model's graph).")
        args.append(f"{option}={_layer_spec(option, resolved)}")

    args.append(f"--builderOptimizationLevel={int(flags.opt_level)}")
    args += [f"--minShapes={_shape_spec(shapes, flags.min_batch)}",
             f"--optShapes={_shape_spec(shapes, flags.opt_batch)}",
             f"--maxShapes={_shape_spec(shapes, flags.max_batch)}"]
    if flags.timing_cache and timing_cache_path:
        args.append(f"--timingCacheFile={timing_cache_path}")
    if layer_info_path:
        # Layer info without 'detailed' verbosity names layers but not their precisions,
        # which is what a precision sweep needs to verify its pins took effect.
        args += ["--profilingVerbosity=detailed", f"--exportLayerInfo={layer_info_path}"]
        if not inference.skip:
            # Per-layer times of the timing pass: the realised precision's share of time.
            args.append("--exportProfile=" + str(Path(layer_info_path).with_name(
                "profile.json")))

    route = route or flags.build_route.strip() or None
    if route:
        args.append(f"--setBuildRoute={route}")
    elif flags.tunes_routes:
        if not tuning:
            raise FlagSetError(
                f"trt.tune_build_routes={flags.tune_build_routes}: the search's options "
                "(reference pairs, record) were not given; the job writes them from streamed "
                "calibration audio (sweep/builder/routes.py).")
        if inference.skip:
            raise FlagSetError(
                "trt.tune_build_routes with the timing pass skipped: trtexec's accuracy "
                "filter (--loadRefOutputs) runs in the inference phase, so --skipInference "
                "cannot be combined with it.")
        args += tuning

    if inference.skip:
        args.append("--skipInference")
    else:
        batch = inference.batch or flags.opt_batch
        if not flags.min_batch <= batch <= flags.max_batch:
            raise FlagSetError(
                f"inference batch {batch} lies outside the engine's profile "
                f"[{flags.min_batch}, {flags.max_batch}] (trt.min_batch/max_batch).")
        args += [f"--shapes={_shape_spec(shapes, batch)}",
                 f"--warmUp={int(inference.warmup_ms)}",
                 f"--duration={int(inference.duration_s)}"]
        args += timing_pass_args(inference, version)

    for key, value in flags.extra:
        if not _EXTRA_KEY.match(key) or key in MANAGED:
            raise FlagSetError(
                f"trt.extra: {key!r} cannot be passed to trtexec "
                + ("(the sweep sets it from the flag set itself)." if key in MANAGED else
                   "(expected a trtexec option name such as 'memPoolSize')."))
        if not _EXTRA_VALUE.match(value):
            raise FlagSetError(f"trt.extra.{key}={value!r}: value has characters trtexec "
                               "options never need.")
        args.append(f"--{key}" if value in ("", "true", "True") else f"--{key}={value}")
    return args


def resolve_layers(onnx_path: Path, flags: FlagSet
                   ) -> tuple[dict[str, str], dict[str, str]]:
    """Expand the flag set's layer patterns to node names; unmatched patterns are errors."""
    if not (flags.layer_precisions or flags.layer_output_types):
        return {}, {}
    graph = read_onnx(onnx_path, load_weights=False).graph
    missing = layers.unmatched(graph, flags.layer_precisions + flags.layer_output_types)
    if missing:
        raise FlagSetError(
            f"trt layer patterns {missing} match no node name or op type in {onnx_path}; "
            "trtexec would silently ignore them. Fix the pattern; the graph's node names are "
            "listed by `[n.name for n in onnx.load(path).graph.node]`.")
    return (layers.resolve(graph, flags.layer_precisions),
            layers.resolve(graph, flags.layer_output_types))


def layer_patterns(onnx_path: Path, flags: FlagSet
                   ) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The flag set's pins as trtexec spells them: every pinned node and the layers the ONNX
    parser derives from it (``<node>_*``, ``layers.trtexec_layers``), with notes for the
    build log where a derived layer cannot be pinned safely."""
    if flags.strongly_typed:  # the FP32 keeps live in the typed ONNX, not in the flags
        return {}, {}, []
    precisions, output_types = resolve_layers(onnx_path, flags)
    if not (precisions or output_types):
        return {}, {}, []
    graph = read_onnx(onnx_path, load_weights=False).graph
    pins, notes = layers.trtexec_layers(graph, precisions)
    outs, out_notes = layers.trtexec_layers(graph, output_types)
    return dict(pins), dict(outs), notes + out_notes


_RUNNING = re.compile(r"\[TensorRT v(\d+)\]")


def _image_tensorrt(image: Image) -> Version | None:
    """TRT_VERSION / TENSORRT_VERSION from the image's environment (NGC images set one)."""
    for item in (image.attrs.get("Config") or {}).get("Env") or []:
        key, _, value = item.partition("=")
        if key in ("TRT_VERSION", "TENSORRT_VERSION") and \
                (m := re.match(r"(\d+)\.(\d+)\.(\d+)", value)):
            return int(m.group(1)), int(m.group(2)), int(m.group(3))
    return None


class TrtexecBuilder:
    """``builder=trtexec``: trtexec inside the tritonserver image (GPU host).

    Nothing happens at construction (no Docker call, no pull); the first ``version()`` or
    ``build()`` connects, probes the image and caches what it learnt.
    """

    name = "trtexec"

    def __init__(self, image: str = DEFAULT_IMAGE, gpus: containers.GpuSpec = "all",
                 timeout_s: float = 3600.0, docker_base_url: str | None = None,
                 trtexec_path: str = DEFAULT_TRTEXEC,
                 inference: InferenceOptions | Mapping[str, object] | None = None,
                 timing_cache_dir: str | Path | None = None,
                 probe_timeout_s: float = 120.0, run_as_caller: bool = True,
                 job: str | None = None, reference: ReferencePairs | None = None) -> None:
        self.image = image
        self.gpus = gpus
        self.timeout_s = float(timeout_s)
        self.docker_base_url = docker_base_url
        self.trtexec_path = trtexec_path
        if isinstance(inference, Mapping):
            inference = InferenceOptions(**inference)  # type: ignore[arg-type]
        self.inference = inference or InferenceOptions()
        self.timing_cache_dir = Path(timing_cache_dir) if timing_cache_dir else None
        self.probe_timeout_s = probe_timeout_s
        # Files trtexec writes into the workdir belong to the caller, not to root.
        self.run_as_caller = run_as_caller
        self.job = job  # the containers' trt-sweep.job label
        # A route search's reference pairs and record folder (mounted at /tuning).
        self.reference = reference
        self._client: DockerClient | None = None
        self._tensorrt: Version | None = None
        self._trtexec: str | None = None
        self._image_id: str | None = None

    # -- docker ------------------------------------------------------------------------
    def _docker(self) -> DockerClient:
        if self._client is None:
            self._client = containers.connect(self.docker_base_url)
        return self._client

    def _user(self) -> str | None:
        if not self.run_as_caller or not hasattr(os, "getuid"):
            return None
        return f"{os.getuid()}:{os.getgid()}"

    def probe(self, log_dir: Path | None = None) -> Version:
        """TensorRT version of the image's trtexec (``trtexec --help`` prints it first)."""
        if self._tensorrt is not None:
            return self._tensorrt
        if log_dir is None:
            # Asked outside a build (the engine cache's key): the log has no job folder to
            # go to, and the working directory is the user's.
            with tempfile.TemporaryDirectory(prefix="trtexec-probe-") as tmp:
                return self.probe(Path(tmp))
        client = self._docker()
        image = containers.require_image(client, self.image, BuildError)
        self._image_id = image.id
        candidates = [self.trtexec_path] + (["trtexec"] if self.trtexec_path != "trtexec"
                                            else [])
        problems = []
        for candidate in candidates:
            log = log_dir / "trtexec-probe.log"
            try:
                # No GPU requested: --help is answered before trtexec touches CUDA, and a
                # missing container toolkit is reported by the build with its own fix.
                result = containers.run_to_completion(
                    client, self.image, [candidate, "--help"], log_path=log,
                    timeout_s=self.probe_timeout_s, error=BuildError, kind="probe",
                    job=self.job, user=self._user())
            except BuildError as exc:  # no such executable: the runtime refuses to start it
                problems.append(f"{candidate}: {exc}")
                continue
            text = log.read_text(errors="replace") if log.exists() else ""
            if (m := _RUNNING.search(text)) is not None:
                self._tensorrt = decode_version(m.group(1))
                self._trtexec = candidate
                return self._tensorrt
            if result.exit_code == 0 and (env := _image_tensorrt(image)) is not None:
                # An older trtexec without the banner: NGC images also name the version.
                self._tensorrt, self._trtexec = env, candidate
                return env
            problems.append(f"{candidate}: exit {result.exit_code}, no '[TensorRT vNNNN]' "
                            f"banner in its output:\n{tail(log, 8)}")
        raise BuildError(
            f"trtexec was not found or did not run in image {self.image!r} (tried "
            f"{candidates}). Expected NVIDIA's tritonserver image (trtexec at "
            f"{DEFAULT_TRTEXEC}); set builder.trtexec_path if it lives elsewhere, or use "
            "builder=emulate on a machine without TensorRT.\n" + "\n".join(problems))

    def version(self) -> str:
        major, minor, patch = self.probe()
        digest = (self._image_id or "").split(":")[-1][:12]
        return f"TensorRT {major}.{minor}.{patch} ({self.image}@{digest})"

    # -- build -------------------------------------------------------------------------
    def command(self, onnx_path: Path, flags: FlagSet, version: Version | None = None,
                timing_cache: str = "/cache/timing.cache", route: str | None = None,
                record: str = f"{routes.CONTAINER_DIR}/record.jsonl") -> list[str]:
        """The exact argument list a build runs (program first), as paths in the container."""
        shapes = onnx_input_dims(onnx_path)
        precisions, output_types, _ = layer_patterns(onnx_path, flags)
        tuning = None
        if flags.tunes_routes and route is None:
            if self.reference is None:
                raise FlagSetError(
                    f"trt.tune_build_routes={flags.tune_build_routes} needs reference pairs "
                    "for trtexec's accuracy filter; the job writes them from streamed "
                    "calibration audio (build through sweep.job, or pass reference=).")
            tuning = routes.tuning_args(flags, self.reference, record)
        return [self._trtexec or self.trtexec_path, *trtexec_args(
            flags, f"/onnx/{onnx_path.name}", "/work/model.plan", shapes,
            layer_precisions=precisions, layer_output_types=output_types,
            timing_cache_path=timing_cache if flags.timing_cache else None,
            layer_info_path="/work/layers.json", inference=self.inference, version=version,
            route=route, tuning=tuning)]

    def search_command(self, onnx_path: Path, flags: FlagSet, version: Version,
                       timing_cache: str, record: Path
                       ) -> tuple[list[str], str | None, list[str]]:
        """A route search's command, from where its record (host path) stands: finished
        (a ``.best.json`` beside it): the route it picked, built again with
        ``--setBuildRoute``; interrupted (a header, no best): ``--continue``, which takes
        nothing but the record; none: a fresh search. Returns (command, route, notes)."""
        best_file = record.with_suffix(".best.json")
        inside = f"{routes.CONTAINER_DIR}/{record.name}"
        if best_file.is_file():
            route = str(json.loads(best_file.read_text())["route"])
            return (self.command(onnx_path, flags, version, timing_cache, route=route), route,
                    [f"build route reused from the finished search in {record}: {route}"])
        if routes.read_record(record) is not None:
            return ([self._trtexec or self.trtexec_path, "--continue",
                     f"--tuningCacheFile={inside}"], None,
                    [f"route search resumed from {record} (trtexec --continue)"])
        return self.command(onnx_path, flags, version, timing_cache, record=inside), None, []

    def build(self, onnx_path: Path, flags: FlagSet, workdir: Path) -> Engine:
        client = self._docker()  # DockerUnavailableError before any other work
        onnx_path = Path(onnx_path).resolve()
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        version = self.probe(workdir)
        notes = check_flags_for_version(flags, version) + layer_patterns(onnx_path, flags)[2]
        volumes = {str(workdir): {"bind": "/work", "mode": "rw"},
                   str(onnx_path.parent): {"bind": "/onnx", "mode": "ro"}}
        timing_cache = "/work/timing.cache"
        if self.timing_cache_dir is not None:
            # Shared across builds of one TensorRT version on one GPU model: a file each.
            # docker-py keys mounts by host path, so one folder, one mount.
            cache_dir = self.timing_cache_dir.resolve()
            cache_dir.mkdir(parents=True, exist_ok=True)
            if str(cache_dir) not in volumes:
                volumes[str(cache_dir)] = {"bind": "/cache", "mode": "rw"}
                name = timing_cache_name(".".join(map(str, version)), host_device())
                timing_cache = f"/cache/{name}"
        record, route = None, None
        if flags.tunes_routes:
            if self.reference is None:
                raise FlagSetError(
                    f"trt.tune_build_routes={flags.tune_build_routes} needs reference pairs; "
                    "the job writes them (sweep/builder/routes.py).")
            volumes[str(self.reference.dir.resolve())] = {"bind": routes.CONTAINER_DIR,
                                                          "mode": "rw"}
            record = self.reference.dir / routes.record_name(
                ".".join(map(str, version)), host_device())
        if record is not None:
            command, route, resumed = self.search_command(onnx_path, flags, version,
                                                          timing_cache, record)
            notes += resumed
        else:
            command = self.command(onnx_path, flags, version, timing_cache)
        log_path = workdir / "build.log"
        (workdir / "trtexec.cmd").write_text(" ".join(command) + "\n")
        engine_file = workdir / "model.plan"
        with contextlib.suppress(FileNotFoundError):
            engine_file.unlink()  # never report a stale engine as this build's
        result = containers.run_to_completion(
            client, self.image, command, log_path=log_path, timeout_s=self.timeout_s,
            error=BuildError, kind="trtexec", job=self.job, volumes=volumes,
            working_dir="/work",
            device_requests=containers.gpu_requests(self.gpus), user=self._user(),
            ulimits=containers.gpu_ulimits(self.gpus))
        if result.timed_out:
            raise BuildError(
                f"trtexec did not finish within {self.timeout_s:.0f} s (builder.timeout_s); "
                f"the container was killed and removed. Last lines of {log_path}:\n"
                f"{tail(log_path)}", log_path)
        if result.exit_code != 0:
            raise BuildError(
                f"trtexec exited with code {result.exit_code} for flag set {flags.label} "
                f"({flags.digest}). Command: {workdir / 'trtexec.cmd'}. Last lines of "
                f"{log_path}:\n{tail(log_path)}", log_path)
        if not engine_file.is_file():
            raise BuildError(f"trtexec exited 0 but wrote no engine at {engine_file}; see "
                             f"{log_path}", log_path)
        log_text = log_path.read_text(errors="replace")
        report = parse_trtexec_log(log_text)
        tuning_metrics: dict[str, float] = {}
        extra_artifacts: list[Path] = []
        if record is not None:
            route, tuning_metrics, extra_artifacts = finish_search(log_text, record, route,
                                                                   log_path)
            notes.append("layer information of a route search is written by its iterations; "
                         "the realised-precision check reads the last one trtexec wrote")
        realised_metrics: dict[str, float] = {}
        realised_runtime: dict[str, object] = {}
        if (workdir / "layers.json").is_file():
            realised_metrics, realised_runtime, files = layer_info.report(
                flags, layer_info.read_engine_layers(workdir / "layers.json",
                                                     workdir / "profile.json"),
                onnx_path, workdir)
            extra_artifacts += files
            if realised_runtime["precision_mismatch"]:
                notes.append(f"precision mismatch: {realised_runtime['precision_mismatch']}")
        if notes:
            with open(log_path, "a") as log:
                log.writelines(f"[trt-sweep] note: {n}\n" for n in notes)
        batch = self.inference.batch or flags.opt_batch
        artifacts = tuple(p for p in (log_path, workdir / "layers.json",
                                      workdir / "profile.json", workdir / "trtexec.cmd",
                                      *extra_artifacts)
                          if p.exists())
        return Engine(
            path=engine_file, format=EngineFormat.TENSORRT_PLAN, flags=flags, builder=self.name,
            builder_version=self.version(), build_seconds=result.seconds, log_path=log_path,
            runtime={"tensorrt_version": ".".join(map(str, version)),
                     # What trtexec's own figures (trt_* metrics) included.
                     "timing_pass": {} if self.inference.skip else {
                         "data_transfers": self.inference.data_transfers,
                         "cuda_graph": self.inference.cuda_graph,
                         "spin_wait": self.inference.spin_wait},
                     "trtexec_warnings": list(report.warnings), "notes": notes,
                     **({"build_route": route} if route else {}), **realised_runtime,
                     "trtexec_missing": list(report.missing)},
            metrics={**report.metrics(batch=None if self.inference.skip else batch),
                     **tuning_metrics, **realised_metrics},
            artifacts=artifacts)


def finish_search(log_text: str, record: Path, route: str | None, log_path: Path
                  ) -> tuple[str | None, dict[str, float], list[Path]]:
    """After a search (or a rebuild of its route): the route trtexec picked, kept beside
    the record for the next build, the record's metrics and the files to log (copies in
    the build's own folder, beside its log: an engine's artifacts live in its cache entry,
    while the record stays where the next search resumes from)."""
    best_file = record.with_suffix(".best.json")
    found = best_from_log(log_text)
    if route is None and found is None:
        raise BuildError(f"trtexec finished the route search but reported no 'Best "
                         f"iteration' line; see {log_path}", log_path)
    if found is not None:
        route = found[0]
        best_file.write_text(json.dumps({"route": found[0], "gpu_time_ms": found[1],
                                         "record": record.name}) + "\n")
    tuned = routes.read_record(record)
    if tuned is None:
        return route, {}, []
    copies = []
    for source in (record, best_file):
        if source.is_file():
            copy = log_path.parent / source.name
            shutil.copyfile(source, copy)
            copies.append(copy)
    return route, tuned.metrics(), copies


def dry_run_command(image: str, trtexec_path: str, onnx_path: Path, flags: FlagSet,
                    tensorrt_version: str, reference: ReferencePairs | None = None
                    ) -> tuple[list[str], list[str]]:
    """The command a build of ``flags`` would run on TensorRT ``tensorrt_version`` (and the
    notes its rules add), without Docker: for planning a GPU host's sweep."""
    version = decode_version(tensorrt_version) if tensorrt_version.isdigit() else \
        _parse_version(tensorrt_version)
    notes = check_flags_for_version(flags, version)
    builder = TrtexecBuilder(image=image, trtexec_path=trtexec_path, reference=reference)
    name = timing_cache_name(".".join(map(str, version)), "gpu:<this host>")
    record = f"{routes.CONTAINER_DIR}/" + routes.record_name(".".join(map(str, version)),
                                                             "<this host>")
    return builder.command(onnx_path, flags, version, f"/cache/{name}", record=record), notes


def _parse_version(text: str) -> Version:
    parts = [int(p) for p in re.findall(r"\d+", text)[:3]]
    if not parts:
        raise FlagSetError(f"builder.tensorrt_version={text!r}; expected a TensorRT version "
                           "such as 11.4 or 10.16.")
    major, minor, patch = [*parts, 0, 0][:3]
    return major, minor, patch
