"""``python -m sweep.doctor``: why do the served pipeline and the ONNX pipeline disagree?

Streams a few utterances through a served pipeline (a Triton endpoint given with --url,
or one the doctor deploys itself from --model and --trt/--fp16-features) and through the
in-process reference (fp32 ONNX Runtime, same chunking), compares them chunk by chunk
(features from the ensemble's preprocessing step, log-probs, argmax, transcripts), then
re-runs the reference with each of the seed's known causes injected (chunk duration,
left-context padding, input scaling, fp16 features) and names the one the server
reproduces. Writes report.md, divergence.png and chunks.csv, prints the report and logs
a run to MLflow (experiment ``trt-sweep-doctor``).

Examples::

    # deploy the demo ensemble with fp16 features and diagnose it
    python -m sweep.doctor --model demo_skip_preprocessor --fp16-features
    # a running server, streamed the way a client without left context would
    python -m sweep.doctor --model demo_skip_preprocessor --url 127.0.0.1:8001 \\
        --client-left-context 0
    # DALI preprocessing (in-process) against sweep/data/features.py
    python -m sweep.doctor --model demo_skip_preprocessor --target dali
    # your own model, test set and store, read as the sweep reads them
    python -m sweep.doctor --config-dir tone-conf model=tone dataset=calls

The model, the test set, the decoder, the server and the tracking store are the sweep's
(sweep/loader.py: ``--config-dir``, ``-cn`` and overrides such as ``model=...``); the
doctor's own flags for them (``--model``, ``--onnx``, ``--dataset PATH``, ``--decoder``,
``--kenlm-path``, ``--beam-width``, ``--server``, ``--tracking-uri``) win when given.

Exit status: 0 when the served pipeline matches the reference, 1 when it differs (the
report says why), 2 when the doctor could not compare (message on stderr).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep import cli, loader
from sweep.cli import ExitCode
from sweep.config import DatasetSpec
from sweep.errors import ConfigError
from sweep.evaluate.decode import DecoderSpec
from sweep.evaluate.variant import ClientVariant
from sweep.loader import ConfigOptions
from sweep.model import Contract, ModelInterface
from sweep.server.base import ServerConfig
from sweep.tracking import tags as tag

EXPERIMENT = "trt-sweep-doctor"
# Exact fp32: the emulator's TF32 default would itself be a (small) difference.
DEFAULT_TRT = {"tf32": False}


def load_model(name: str | None = None, onnx: str | None = None,
               options: ConfigOptions | None = None) -> ModelInterface:
    """The model interface a sweep with these config options reads (sweep/loader.py):
    ``name`` is a model option (``model=NAME``: conf/model/ or a --config-dir) or a YAML
    file of the model group; ``onnx`` another export of it (wins over model.onnx_path)."""
    return _model(loader.load(_model_options(options or ConfigOptions(), name), "doctor"),
                  onnx)


def _model_options(options: ConfigOptions, name: str | None) -> ConfigOptions:
    """``--model NAME`` is the override ``model=NAME``; ``--model path.yaml`` that file as
    the model group's option."""
    if name is None:
        return options
    if Path(name).suffix in (".yaml", ".yml"):
        return options.with_file("model", Path(name).expanduser().resolve())
    return options.with_overrides(f"model={name}")


def _model(settings: Any, onnx: str | None) -> ModelInterface:
    import dataclasses

    from sweep.config import model_interface

    config = settings.model_config
    if onnx:
        config = dataclasses.replace(config, onnx_path=onnx)
    return model_interface(config)


def interface_for(model: ModelInterface, onnx_path: Path) -> ModelInterface:
    """``model`` with another export of it, whose chunk duration is read off its audio input
    (a 300 ms export of a 400 ms reference, say)."""
    import dataclasses

    from sweep.model import read_onnx

    graph = read_onnx(onnx_path, load_weights=False)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in graph.graph.input}
    if model.audio_input not in dims:
        raise ConfigError(f"{onnx_path} has no input {model.audio_input!r} (inputs: "
                          f"{list(dims)}); it is not an export of {model.name}.")
    audio = dims[model.audio_input]
    # monolithic: (B, samples, 1); skip_preprocessor: (B, n_mels, frames of 10 ms).
    samples = audio[1] if model.contract is Contract.MONOLITHIC else audio[2] * 80
    return dataclasses.replace(model, onnx_path=Path(onnx_path),
                               chunk_ms=samples * 1000 // model.sample_rate)


@dataclass(frozen=True)
class Deployment:
    """What the doctor deploys when no --url is given: a flag set on the emulator, served
    with the sweep's own serving defaults (``server_config``: the loaded server group,
    image and GPUs included; else ``server`` with its schema's defaults)."""

    trt: dict[str, Any]
    fp16_features: bool = False
    server: str = "local"
    ready_timeout_s: float = 120.0
    server_config: ServerConfig | None = None


@contextmanager
def deployed(model: ModelInterface, deployment: Deployment, workdir: Path) -> Iterator[Any]:
    """Build (emulate) the engine, render the repository, serve it; yields the Endpoint."""
    from sweep.builder.emulate import EmulateBuilder
    from sweep.flags import FlagSet
    from sweep.server import make_server
    from sweep.server.base import ServingOptions
    from sweep.server.serve import serve

    flags = FlagSet.from_mapping(deployment.trt)
    model.tensors()  # a mismatching export fails here, before any build
    engine = EmulateBuilder().build(model.onnx_path, flags, workdir / "engine")
    server = make_server(deployment.server_config or ServerConfig(
        name=deployment.server, ready_timeout_s=deployment.ready_timeout_s))
    with serve(model, engine, server, workdir,
               ServingOptions(fp16_features=deployment.fp16_features)) as served:
        yield served.endpoint


def write_outputs(diagnosis: Any, out_dir: Path) -> dict[str, Path]:
    from sweep.doctor import report

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"plot": report.plot(diagnosis, out_dir / report.PLOT_NAME),
             "chunks": report.chunks_csv(diagnosis, out_dir / report.CHUNKS_NAME)}
    text = report.markdown(diagnosis, report.PLOT_NAME)
    paths["report"] = out_dir / report.REPORT_NAME
    paths["report"].write_text(text, encoding="utf-8")
    return paths


def log_run(diagnosis: Any, paths: dict[str, Path], *, uri: str, artifact_root: str | None,
            params: dict[str, Any]) -> str:
    """One MLflow run in experiment trt-sweep-doctor (the sweep's store conventions)."""
    from sweep.doctor import report
    from sweep.tracking.runs import environment_tags, job_run
    from sweep.tracking.store import open_store

    store = open_store(uri, EXPERIMENT, artifact_root, Path.cwd())
    best = diagnosis.best
    tags = {**environment_tags(), tag.KIND: "doctor",
            "verdict": diagnosis.verdict, "cause": best.cause.key if best else "none",
            "contract": diagnosis.reference.contract}
    name = f"doctor-{diagnosis.reference.name}-{best.cause.key if best else diagnosis.verdict}"
    with job_run(store, name, None, tags) as run:
        run.params(params)
        run.metrics(report.metrics(diagnosis))
        for path in paths.values():
            run.artifact(path)
        return run.run_id


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {item!r}: expected KEY=VALUE.")
        out[key.strip()] = value.strip()
    return out


def _trt(values: list[str], configured: dict[str, Any] | None = None,
         spelled: bool = False) -> dict[str, Any]:
    """The deployed flag set: the config's (``configured``; exact fp32 unless the command
    line ``spelled`` a trt option or key), then ``--trt KEY=VALUE`` on top."""
    import yaml

    base = dict(configured or {}) if spelled else {**(configured or {}), **DEFAULT_TRT}
    return {**base, **{k: yaml.safe_load(v) for k, v in _pairs(values, "--trt").items()}}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sweep.doctor",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    ref = p.add_argument_group("reference")
    ref.add_argument("--model", metavar="NAME|YAML",
                     help="shorthand for the override model=NAME, or a model YAML file "
                          "(default: the config's model, as the sweep reads it)")
    ref.add_argument("--onnx", help="the reference export (default: the model config's)")
    ref.add_argument("--alt-onnx", action="append", default=[], metavar="MS=PATH",
                     help="the same checkpoint exported at another chunk duration; tries "
                          "chunk duration as a cause (repeatable)")
    ref.add_argument("--reference-fp16", action="store_true",
                     help="the reference itself rounds features to fp16 (as the seed's DALI)")
    tgt = p.add_argument_group("served pipeline")
    tgt.add_argument("--target", choices=["triton", "dali"], default="triton",
                     help="triton (a server) or dali (the DALI front end, in-process)")
    tgt.add_argument("--url", help="gRPC host:port of a running Triton; without it the doctor "
                                   "deploys the model itself")
    tgt.add_argument("--model-name", help="the model a client calls (default: ensemble for "
                                          "skip_preprocessor, model for monolithic)")
    tgt.add_argument("--timeout-s", type=float, default=10.0,
                     help="deadline of every gRPC call (default %(default)s)")
    tgt.add_argument("--trt", action="append", default=[], metavar="KEY=VALUE",
                     help="flag set of a deployed engine, e.g. precision=fp16, on top of the "
                          "config's trt group (trt=... / trt.KEY=... overrides; default "
                          "exact fp32: tf32=false)")
    tgt.add_argument("--fp16-features", action="store_true",
                     help="deploy the ensemble's preprocessing with the fp16 round trip")
    tgt.add_argument("--deploy-onnx", metavar="PATH",
                     help="deploy this export instead of the reference (e.g. the same "
                          "checkpoint at another chunk duration)")
    tgt.add_argument("--server", choices=["local", "docker"],
                     help="shorthand for the override server=local|docker (default: the "
                          "config's server group)")
    cli = p.add_argument_group("client (stream the way your client does)")
    cli.add_argument("--client-left-context", type=int, metavar="SAMPLES",
                     help="left-context samples your client really sends (default: the "
                          "model's)")
    cli.add_argument("--client-scale", type=float, metavar="DIVISOR",
                     help="what your client divides int16 samples by (default: the model's)")
    data = p.add_argument_group("data and decoding")
    data.add_argument("--dataset", metavar="PATH",
                      help="a dataset folder (holding tarred_audio_manifest.json) or the "
                           "path of a manifest; audio is looked up beside the manifest "
                           "(default: the config's test set, dataset=...)")
    data.add_argument("--limit", type=int, default=4, help="first N utterances (default 4)")
    data.add_argument("--utterances", help="comma-separated utterance ids instead of --limit")
    data.add_argument("--decoder", choices=["greedy", "beam"],
                      help="shorthand for the override decoder=greedy|beam (default: the "
                           "config's decoder)")
    data.add_argument("--kenlm-path", help="default: decoder.kenlm_path")
    data.add_argument("--beam-width", type=int, help="default: decoder.beam_width")
    data.add_argument("--decode-workers", type=int,
                      help="beam search worker processes (default: decoder.workers; greedy "
                           "decodes inline)")
    out = p.add_argument_group("output")
    out.add_argument("--out", help="folder for report.md, divergence.png, chunks.csv "
                                   "(default outputs/doctor/<time>)")
    out.add_argument("--tracking-uri", help="default: tracking.uri of the config")
    out.add_argument("--artifact-root", help="default: tracking.artifact_root of the config")
    out.add_argument("--no-mlflow", action="store_true")
    out.add_argument("--quiet", action="store_true", help="do not print the report")
    loader.add_config_options(p)
    return p


@dataclass(frozen=True)
class Resolved:
    """What the doctor reads from the configuration (sweep/loader.py), its flags applied:
    an explicit flag wins over the config's value."""

    model: ModelInterface
    dataset: DatasetSpec | None  # None: --dataset PATH
    decoder: DecoderSpec
    decode_workers: int
    server: ServerConfig
    tracking_uri: str
    artifact_root: str | None
    # The flag set a deployed engine is built with; spelled: trt.* given on the command line.
    trt: dict[str, Any]
    trt_spelled: bool = False


def resolve(args: argparse.Namespace) -> Resolved:
    import dataclasses

    from sweep.infra.files import project_path

    options = _model_options(ConfigOptions.from_args(args), args.model)
    for flag, group in ((args.decoder, "decoder"), (args.server, "server")):
        if flag:
            options = options.with_overrides(f"{group}={flag}")
    settings = loader.load(options, "doctor")
    decoder = settings.decoder
    if args.kenlm_path:
        decoder = dataclasses.replace(decoder, kenlm_path=str(project_path(args.kenlm_path)))
    if args.beam_width is not None:
        decoder = dataclasses.replace(decoder, beam_width=args.beam_width)
    workers = settings.decode_workers if args.decode_workers is None else args.decode_workers
    return Resolved(
        model=_model(settings, args.onnx), dataset=None if args.dataset else settings.dataset,
        decoder=decoder, decode_workers=workers,
        server=dataclasses.replace(settings.server, keep_running=False),
        tracking_uri=loader.tracking_uri(settings.tracking, args.tracking_uri),
        artifact_root=args.artifact_root or settings.tracking.artifact_root,
        trt=_trt(args.trt, settings.trt, options.touches("trt")),
        trt_spelled=options.touches("trt"))


def _utterances(args: argparse.Namespace, model: ModelInterface,
                dataset_spec: DatasetSpec | None = None) -> list[Any]:
    """The utterances to stream: of ``--dataset PATH`` when given, else of the config's
    test set (``dataset_spec``)."""
    from sweep.data.manifest import load_manifest
    from sweep.infra.files import project_path

    if args.dataset:
        dataset = project_path(args.dataset)
        where = str(args.dataset)
        if dataset.is_file():  # a manifest by path, whatever its name (NeMo's manifest.json)
            utterances = load_manifest(dataset.parent, expected_rate=model.sample_rate,
                                       manifest_name=dataset.name)
        else:
            utterances = load_manifest(dataset, expected_rate=model.sample_rate)
    else:
        if dataset_spec is None:
            raise ConfigError("no test set: pass --dataset PATH or a dataset= override.")
        where = f"dataset {dataset_spec.name}"
        # As a sweep job reads its test set (every line checked; dataset.* settings kept).
        utterances = dataset_spec.load()
    if args.utterances:
        wanted = [u.strip() for u in args.utterances.split(",") if u.strip()]
        by_id = {u.id: u for u in utterances}
        missing = [u for u in wanted if u not in by_id]
        if missing:
            raise ConfigError(f"--utterances: {missing} are not in {where}.")
        return [by_id[u] for u in wanted]
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit}; expected at least 1.")
    return utterances[: args.limit]


def run(args: argparse.Namespace, log: Any = None) -> Any:
    """Everything but printing; returns (diagnosis, output paths, MLflow run id)."""
    from sweep.doctor.diagnosis import diagnose
    from sweep.doctor.inprocess import InProcessTarget
    from sweep.doctor.served import TritonTarget
    from sweep.infra.files import project_path

    def say(message: str) -> None:
        if log is not None:
            log(message)

    resolved = resolve(args)
    deploy_options = [flag for flag, value in (("--trt", args.trt),
                                               ("trt.* overrides", resolved.trt_spelled),
                                               ("--fp16-features", args.fp16_features),
                                               ("--deploy-onnx", args.deploy_onnx)) if value]
    if args.url and (deploy_options or args.target == "dali"):
        raise ConfigError(f"--url attaches to a running server; "
                          f"{', '.join(deploy_options) or '--target dali'} only apply when the "
                          "doctor deploys (or runs) the pipeline itself. Drop one or the other.")
    model = resolved.model
    variant = ClientVariant(args.client_left_context, args.client_scale)
    alt = {int(k): project_path(v) for k, v in _pairs(args.alt_onnx, "--alt-onnx").items()}
    utterances = _utterances(args, model, resolved.dataset)
    out_dir = Path(args.out) if args.out else \
        Path("outputs") / "doctor" / time.strftime("%Y%m%d-%H%M%S")
    with ExitStack() as stack:
        if args.target == "dali":
            from sweep.data.dali import DaliLogMel

            if model.contract is not Contract.SKIP_PREPROCESSOR:
                raise ConfigError("--target dali needs a skip_preprocessor model: the "
                                  "monolithic model computes its own features.")
            target: Any = InProcessTarget(model, feature_fn=DaliLogMel(),
                                          fp16_features=args.fp16_features, variant=variant,
                                          label="DALI features (CPU), in-process ONNX Runtime")
        else:
            url, name = args.url, args.model_name or model.entry_model
            if url is None:
                work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="doctor-")))
                from sweep.flags import FlagSet

                say(f"deploying {model.name} ({resolved.server.name}, flag set "
                    f"{FlagSet.from_mapping(resolved.trt).label}, fp16 features "
                    f"{args.fp16_features})")
                served = interface_for(model, project_path(args.deploy_onnx)) \
                    if args.deploy_onnx else model
                endpoint = stack.enter_context(deployed(
                    served, Deployment(resolved.trt, args.fp16_features,
                                       resolved.server.name,
                                       resolved.server.ready_timeout_s, resolved.server),
                    work))
                url, name = endpoint.grpc_url, endpoint.model_name
            target = stack.enter_context(TritonTarget(url, name, model, timeout_s=args.timeout_s,
                                                      variant=variant))
        diagnosis = diagnose(target, model, utterances, decoder=resolved.decoder,
                             decode_workers=resolved.decode_workers, alt_exports=dict(alt),
                             reference_fp16=args.reference_fp16, log=say)
    paths = write_outputs(diagnosis, out_dir)
    run_id = None
    if not args.no_mlflow:
        from sweep.tracking.store import redact

        # The URI (also as an override) may carry credentials: never a param in clear.
        params = {k: redact(str(v)) for k, v in vars(args).items()
                  if v not in (None, [], False) and k != "tracking_uri"}
        params.update({"model.name": model.name, "decoder.name": resolved.decoder.name})
        run_id = log_run(diagnosis, paths, uri=resolved.tracking_uri,
                         artifact_root=resolved.artifact_root, params=params)
    return diagnosis, paths, run_id


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_intermixed_args(argv)

    def log(message: str) -> None:
        print(f"doctor: {message}", file=sys.stderr, flush=True)

    def doctor() -> ExitCode:
        diagnosis, paths, run_id = run(args, log)
        if not args.quiet:
            print(paths["report"].read_text(encoding="utf-8"))
        log(f"report: {paths['report']}" + (f"; MLflow run {run_id} in experiment {EXPERIMENT}"
                                             if run_id else ""))
        return ExitCode.OK if diagnosis.verdict == "match" else ExitCode.DIFFERS

    return cli.guard(doctor, "doctor")

