"""One multirun job, end to end: orchestration only, in the order of the stages:
flags -> builder -> server -> evaluate -> tracking. What each stage does lives in its
package; what the job was asked to do arrives as frozen ``JobSettings``."""

from __future__ import annotations

import csv
import json
import math
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sweep import cli, keys
from sweep.builder import build_engine
from sweep.builder.routes import ReferencePairs, job_reference
from sweep.builder.trtexec import dry_run_command
from sweep.config import JobSettings
from sweep.data.manifest import altered_references
from sweep.engine import Engine, EngineFormat
from sweep.errors import BuildError, ConfigError, SweepError
from sweep.evaluate.agreement import fp32_logprobs, frame_disagreement
from sweep.evaluate.capacity import Capacity
from sweep.evaluate.capacity import measure as measure_capacity
from sweep.evaluate.decode import DecodePool
from sweep.evaluate.metrics import score
from sweep.evaluate.result import EvalResult
from sweep.evaluate.stream import GrpcStreamer, StreamRun, UtteranceResult
from sweep.evaluate.triton_stats import StatsWindow, gpu_memory_used_bytes
from sweep.events import Events, Phase, Position
from sweep.flags import FlagSet
from sweep.inputs import ResolvedInputs, resolve_inputs
from sweep.model import ModelInterface
from sweep.precision.calibration import collect
from sweep.precision.realise import TypedModel, autotune_command, realise
from sweep.server import Server, make_server
from sweep.server.base import ModelRepository
from sweep.server.repository import render
from sweep.server.serve import serve
from sweep.tracking import describe, failures, resume
from sweep.tracking import tags as tag
from sweep.tracking.datasets import log_dataset
from sweep.tracking.failures import store_refused
from sweep.tracking.plots import (
    plot_capacity,
    plot_latency,
    plot_layer_precisions,
    plot_server_time,
)
from sweep.tracking.records import JobRecord
from sweep.tracking.recover import close_orphaned_runs, orphans_message
from sweep.tracking.runs import (
    JobRun,
    environment_tags,
    job_run,
    parent_run_id,
)
from sweep.tracking.store import open_store

ENGINE_FILES = ("model.plan", "model.onnx")
# How long a multirun's job waits for a tracking server that does not answer.
STORE_WAIT_S = 120.0
# Figures that say where a job's time went, not what the engine does: logged under one
# prefix, so the metrics a person compares (wer, latency_p99_ms, ...) come first in MLflow.
INTERNAL_PREFIX = "internal/"
INTERNAL_TIMINGS = frozenset({
    "startup_seconds", "stop_seconds", "decoder_load_seconds", "decode_wait_seconds",
    "decode_seconds", "decode_ms_per_utterance", "reference_seconds", "logging_seconds",
    "calibration_seconds", "precision_seconds"})


def recorded_name(name: str) -> str:
    """The MLflow name of a job's figure: internal timings and the emulator's counters
    under ``internal/``; everything else as it always was."""
    internal = name.startswith("emu_") or name in INTERNAL_TIMINGS
    return f"{INTERNAL_PREFIX}{name}" if internal else name


def recorded(metrics: dict[str, float]) -> dict[str, float]:
    return {recorded_name(k): v for k, v in metrics.items()}


@dataclass
class JobResult:
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "FINISHED"
    error: str | None = None

    @property
    def objectives(self) -> tuple[float, float]:
        """(wer, latency_p99_ms) for a sweeper; inf for a failed job so it never wins."""
        return (self.metrics.get("wer", math.inf), self.metrics.get("latency_p99_ms", math.inf))


def _transcripts(run: StreamRun, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "duration", "reference", "hypothesis", "chunks",
                         "latency_mean_ms"])
        for r in run.results:
            writer.writerow([r.utterance.id, f"{r.utterance.duration:.3f}", r.utterance.text,
                             r.hypothesis, len(r.latencies_ms),
                             f"{sum(r.latencies_ms) / max(len(r.latencies_ms), 1):.3f}"])


def job_server(settings: JobSettings) -> Server:
    """The job's server, checked before any build: ``site_packages`` is the first thing
    that needs the server's side (for Docker: a daemon that answers and the image), so a
    stopped daemon fails the job before an engine is built for nothing."""
    server = make_server(settings.server)
    server.site_packages()
    return server


def evaluate(settings: JobSettings, inputs: ResolvedInputs, engine: Engine, workdir: Path,
             job: JobRun, server: Server, events: Events | None = None) -> EvalResult:
    """Serve the engine, stream the test set through Triton, decode, score."""
    model, utterances = inputs.model, list(inputs.utterances)
    events = events or Events(engine.flags.label)
    timings: dict[str, float] = {}
    capacity: Capacity | None = None
    repeats: list[StreamRun] = []

    def log_configs(repository: ModelRepository) -> None:
        # The whole serving unit but the engine (logged under engine/): every model's
        # config.pbtxt and its version folder's sources (python-backend models), so promote
        # can install an ensemble as it was served.
        for config in repository.configs:
            folder = f"model_repository/{config.parent.name}"
            job.artifact(config, folder)
            job.model_artifact(config, folder)
            version = config.parent / "1"
            for src in sorted(version.iterdir()) if version.is_dir() else ():
                if src.is_file() and src.name not in ENGINE_FILES:
                    job.artifact(src, f"{folder}/1")
                    job.model_artifact(src, f"{folder}/1")

    log_path = workdir / "tritonserver.log"
    try:
        # Beam search loads its LM in the workers before the server starts and decodes
        # each utterance as soon as its last chunk is back.
        with DecodePool(settings.decoder, settings.decode_workers) as pool:
            timings["decoder_load_seconds"] = pool.build_seconds
            with serve(model, engine, server, workdir, settings.serving,
                       rendered=log_configs) as served:
                timings["startup_seconds"] = served.startup_seconds
                endpoint = served.endpoint
                streamer = GrpcStreamer(model, endpoint.grpc_url, endpoint.model_name,
                                        streams=settings.eval.streams,
                                        timeout_s=settings.eval.request_timeout_s,
                                        transport=settings.eval.transport,
                                        pacing=settings.eval.pacing,
                                        state=settings.server.state)
                # Triton's statistics over the streaming passes (not the capacity probes).
                with StatsWindow(endpoint.grpc_url, endpoint.model_name) as window:
                    with events.phase("streaming the test set",
                                      total=len(utterances)) as bar:

                        def done(result: UtteranceResult) -> None:
                            pool.submit(result.utterance.id, result.logprobs)
                            bar.advance()

                        run = streamer.run(utterances, done)
                    for n in range(2, max(settings.eval.repeats, 1) + 1):
                        # Timing only: the transcripts are the first pass's.
                        with events.phase(f"repeat {n}/{settings.eval.repeats}",
                                          total=len(utterances)) as again:

                            def timed(_result: UtteranceResult, p: Phase = again) -> None:
                                p.advance()

                            repeats.append(streamer.run(utterances, timed))
                gpu_memory = gpu_memory_used_bytes()  # None on a CPU host
                transport = streamer.used_transport or settings.eval.transport
                if settings.eval.capacity:
                    with events.phase("capacity search (paced streams)"):
                        capacity = measure_capacity(
                            model, endpoint.grpc_url, endpoint.model_name, utterances,
                            settings.eval.capacity_bounds(), transport=settings.eval.transport,
                            timeout_s=settings.eval.request_timeout_s,
                            state=settings.server.state)
                    # The operator's settings, checked when the config was read.
                    capacity.headroom = settings.eval.admission_headroom
                    capacity.cost_per_hour = settings.eval.cost_per_hour
                t1 = time.perf_counter()
            timings["stop_seconds"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            texts = pool.results()
            # What decoding adds to the job after the last stream ended.
            timings["decode_wait_seconds"] = time.perf_counter() - t2
            decode_times = pool.seconds
    finally:
        job.artifact(log_path, "logs")
    for result in run.results:
        result.hypothesis = texts[result.utterance.id]
    timings["decode_seconds"] = sum(decode_times.values())
    timings["decode_ms_per_utterance"] = 1000 * timings["decode_seconds"] / max(len(texts), 1)
    scores = score([r.utterance.text for r in run.results], [r.hypothesis for r in run.results])
    # Against the fp32 model in-process: what changed frame by frame, even where WER did not.
    t3 = time.perf_counter()
    with events.phase("fp32 reference (in-process)"):
        reference = fp32_logprobs(model, utterances, settings.builder.derived_dir,
                                  onnx_digest=inputs.onnx_digest)
    timings["frame_disagreement"] = frame_disagreement(
        reference, {r.utterance.id: r.logprobs for r in run.results})
    timings["reference_seconds"] = time.perf_counter() - t3
    return EvalResult(scores, run, timings, capacity, tuple(repeats),
                      final_silence_ms=settings.eval.final_silence_ms,
                      server=window.stats, gpu_memory_bytes=gpu_memory, transport=transport)


def log_evaluation(job: JobRun, evaluation: EvalResult, label: str, workdir: Path) -> None:
    """The evaluation's tag, plots and transcripts on the run: written after its figures are
    kept (``JobResult.metrics``), so a store that refuses them loses nothing measured."""
    run, repeats, capacity = evaluation.run, evaluation.repeats, evaluation.capacity
    job.tags({tag.TRANSPORT: evaluation.transport})
    # The histogram draws the chunks the latency metrics are computed from: every pass.
    job.artifact(plot_latency(evaluation.pooled_latencies(), workdir / "latency.png",
                              f"{label}: {run.streams} streams, "
                              f"{1 + len(repeats)} pass(es) pooled"), "plots")
    if evaluation.server is not None:
        # The client's chunks over the same passes as Triton's window.
        job.artifact(plot_server_time(evaluation.pooled_latencies().tolist(),
                                      evaluation.server, workdir / "triton.png",
                                      f"{label}: {run.streams} streams"), "plots")
    transcripts = workdir / "transcripts.csv"
    _transcripts(run, transcripts)
    job.artifact(transcripts)
    if capacity is not None:
        job.artifact(plot_capacity(capacity, workdir / "capacity.png",
                                   f"{label}: streams_at_slo {capacity.streams_at_slo}"),
                     "plots")


def _log_engine(job: JobRun, engine: Engine, settings: JobSettings, workdir: Path,
                label: str, experiment_id: str, flags_yaml: Path) -> None:
    flags = engine.flags
    sha256 = keys.file_digest(engine.path)  # once: engines can be large
    # The engine as an MLflow 3 LoggedModel (the experiment's Models tab): named after the
    # flag set, its params, the engine file and build log as its artifacts; the run's
    # metrics are linked to it from here on, config.pbtxt files join it once rendered.
    # The engine file itself is stored once, on the run (engine/): the LoggedModel links to
    # the run, and promote adds the engine to it when it registers a version.
    files: list[tuple[Path, str | None]] = [(flags_yaml, None), (engine.log_path, None)]
    job.logged_model(experiment_id, f"{label}-{flags.digest[:6]}",
                     {**flags.params(), "flags.digest": flags.digest,
                      "builder": settings.builder.name, "model": settings.model_config.name},
                     {tag.FLAGS_DIGEST: flags.digest,
                      tag.ENGINE_SHA256: sha256,
                      tag.BUILDER_VERSION: engine.builder_version,
                      "model": settings.model_config.name, "dataset": settings.dataset.name,
                      "engine_format": engine.format.value},
                     files)
    job.tags({tag.ENGINE_HASH: engine.path.parent.name,
              tag.ENGINE_CACHED: str(engine.cached).lower(),
              tag.BUILDER_VERSION: engine.builder_version,
              # promote checks the engine it installs against this
              tag.ENGINE_SHA256: sha256})
    job.metrics(recorded({"build_seconds": engine.build_seconds, **engine.metrics}))
    for artifact in (engine.log_path, *engine.artifacts):
        job.artifact(artifact, "engine")
        if artifact.name == "layer_precisions.json":
            job.artifact(plot_layer_precisions(
                artifact, workdir / "layer_precisions.png",
                title=f"Stored precision per op type: {label}"), "plots")
    if settings.tracking.log_engine:
        job.artifact(engine.path, "engine")


def realise_in_graph(settings: JobSettings, inputs: ResolvedInputs, flags: FlagSet,
                     job: JobRun, workdir: Path, events: Events | None = None) -> TypedModel:
    """The precision stage: the flag set realised in the graph when it asks for that
    (calibrated on streamed calibration audio), logged as the artifact the user ships."""
    onnx_path = inputs.model.onnx_path
    if not flags.in_graph:
        return realise(onnx_path, flags, Path(), source_digest=inputs.onnx_digest)
    assert inputs.calibration is not None  # resolved for every flag set realised in the graph
    events = events or Events(flags.label)
    t0 = time.perf_counter()
    with events.phase("calibration (streamed audio and state)"):
        calibration = collect(inputs.model, inputs.calibration.utterances,
                              inputs.calibration.wanted, cache_dir=settings.builder.derived_dir,
                              key=inputs.calibration.pairs_key)
    calibration_seconds = time.perf_counter() - t0
    with events.phase("typed ONNX (precision in the graph)"):
        typed = realise(onnx_path, flags, settings.builder.derived_dir, calibration,
                        plan_only=settings.builder.dry_run, source_digest=inputs.onnx_digest)
    job.tags({tag.TYPED_SHA256: typed.digest, tag.TYPED_TOOL: typed.tool})
    job.metrics(recorded({"calibration_seconds": calibration_seconds,
                          "calibration_samples": float(calibration.samples),
                          "precision_seconds": typed.seconds}))
    job.artifact(typed.path, "typed")
    if typed.table_path is not None:
        job.artifact(typed.table_path, "typed")
        job.artifact(typed.table_path.with_name("realised.json"), "typed")
        job.artifact(plot_layer_precisions(
            typed.table_path, workdir / "typed_precisions.png",
            title=f"Precision per op type in the typed ONNX: {flags.label}"), "plots")
    return typed


def dry_run(settings: JobSettings, model: ModelInterface, flags: FlagSet, typed: TypedModel,
            workdir: Path, job: JobRun, reference: ReferencePairs | None = None,
            events: Events | None = None) -> None:
    """``builder.dry_run``: what a GPU host would build and serve, with no Docker and no
    GPU: the trtexec command (printed, ``engine/trtexec.cmd``), the typed ONNX and the
    Triton repository (a placeholder where the plan would be)."""
    b = settings.builder
    if b.name != "trtexec" or not b.tensorrt_version:
        raise ConfigError("builder.dry_run=true plans trtexec builds: set builder=trtexec and "
                          "builder.tensorrt_version (e.g. 11.4), the TensorRT of the image "
                          "the GPU host will use.")
    argv, notes = dry_run_command(b.image, b.trtexec_path, typed.path, flags,
                                  b.tensorrt_version, reference=reference)
    if flags.qdq_placement == "autotune":  # the typed ONNX is made on the GPU host
        notes.append("Q/DQ placed there first: " + shlex.join(autotune_command(typed.path,
                                                                               flags)))
    command = workdir / "trtexec.cmd"
    command.write_text(shlex.join(argv) + "\n")
    events = events or Events(flags.label)
    events.line("bold", f"dry run, TensorRT {b.tensorrt_version}: {shlex.join(argv)}")
    for note in notes:
        events.line("yellow", f"note: {note}")
    placeholder = workdir / "model.plan"
    placeholder.write_text("dry run: no engine was built; trtexec.cmd builds it\n")
    engine = Engine(path=placeholder, format=EngineFormat.TENSORRT_PLAN, flags=flags,
                    builder="trtexec", builder_version=f"TensorRT {b.tensorrt_version} "
                    "(dry run)", build_seconds=0.0, log_path=command)
    repository = render(model, engine, workdir / "model_repository", site_packages="",
                        options=settings.serving)
    job.tags({tag.DRY_RUN: "true", tag.BUILDER_VERSION: engine.builder_version})
    job.artifact(command, "engine")
    for config in repository.configs:
        job.artifact(config, f"model_repository/{config.parent.name}")


def run(settings: JobSettings, workdir: Path, sweep_dir: Path | None = None,
        job_num: int | None = None, sweep_key: str | None = None,
        events: Events | None = None) -> JobResult:
    """Run one job; a failure is recorded (FAILED run, reason) and returned, not raised, so
    the sweep goes on with its other jobs. Ctrl-C/SIGTERM still propagate.

    ``sweep_key``: the sweep command this job belongs to (``resume.sweep_key``); a FINISHED
    identical job is copied only from a run of the same sweep command, unless
    ``tracking.reuse_across_sweeps``. ``events``: where progress goes (and whoever times
    the phases reads ``events.seconds``); default: the console, job n/N from the sweep."""
    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    tracking = settings.tracking
    events = events or Events(position=Position.read(sweep_dir, job_num))
    # A job of a multirun waits for a tracking server that is restarting: the sweep's own
    # check already found it up, so a refusal now is an outage, not a wrong address.
    store = open_store(tracking.uri, tracking.experiment, tracking.artifact_root, Path.cwd(),
                       wait_s=STORE_WAIT_S if sweep_dir is not None else 0.0)
    if sweep_dir is None:  # a multirun's parent-run callback did it for the whole sweep
        closed = close_orphaned_runs(store)
        if closed:
            events.line("yellow", orphans_message(closed), label="store")
    flags: FlagSet | None = None
    flag_error: SweepError | None = None
    try:
        flags = FlagSet.from_mapping(settings.trt)
        label = flags.label
    except SweepError as exc:  # recorded as a FAILED run below, with the params it had
        flag_error, label = exc, "invalid-flags"
    events.label = label
    tags = {**environment_tags(), tag.BUILDER: settings.builder.name,
            tag.SERVER: settings.server.name, tag.MODEL_NAME: settings.model_config.name,
            tag.DATASET: settings.dataset.name, tag.KIND: "job",
            tag.JOB_DIR: str(workdir.resolve())}
    if sweep_key:
        tags[tag.SWEEP_KEY] = sweep_key
    if flags is not None:
        tags[tag.FLAGS_DIGEST] = flags.digest
        tags[tag.FLAGS] = json.dumps(flags.as_dict(), sort_keys=True)
    result = JobResult()
    parent_id = parent_run_id(sweep_dir)
    run_id: str | None = None  # the job's run, once the store made it
    try:
        with job_run(store, label, parent_id, tags,
                     tracking.system_metrics_interval_s) as job:
            run_id = job.run_id
            job.params({"job.num": job_num if job_num is not None else 0,
                        **({**flags.params(), "flags.digest": flags.digest,
                            **settings.params()} if flags else
                           {f"trt.{k}": v for k, v in settings.trt.items()})})
            if flags is None:
                assert flag_error is not None
                raise flag_error
            flags_yaml = workdir / "flags.yaml"
            flags_yaml.write_text(yaml.safe_dump(flags.as_dict(), sort_keys=True,
                                                 allow_unicode=True))
            job.artifact(flags_yaml)
            # The model checked (it must run as it declares before anything is built), the
            # model and the data hashed: once, for every phase below.
            inputs = resolve_inputs(settings, flags)
            log_dataset(job, settings.dataset, inputs)
            if settings.dataset.out_of_alphabet == "drop":
                # Scored without the words T-one cannot output: how many references that
                # altered is part of the result (0 said too).
                altered = altered_references(list(inputs.utterances))
                job.metrics({"references_altered": float(altered)})
                if altered:
                    events.line("yellow", f"{altered} of {len(inputs.utterances)} references "
                                "hold words T-one cannot output (digits, Latin); scored "
                                "without them (dataset.out_of_alphabet=drop)")
            identity = resume.job_identity(
                flags_digest=flags.digest, onnx_digest=inputs.onnx_digest,
                data_digest=inputs.data_digest, device=tags[tag.DEVICE],
                settings={g: settings.groups[g] for g in resume.SETTING_GROUPS},
                calibration_digest=inputs.calibration.digest
                if flags.in_graph and inputs.calibration is not None else None)
            job.tags({tag.IDENTITY: identity})
            done = None if settings.force else resume.find_finished(
                store, identity, sweep_key=None if tracking.reuse_across_sweeps else sweep_key)
            if done is not None:
                # Resume: this exact job already FINISHED in this sweep command (or, asked
                # for, in another sweep); its run gets the metrics and a resumed_from tag,
                # nothing is built or served. The summary marks where it was measured.
                result.metrics = resume.adopt(store, done, job)
                events.line("yellow", f"({flags.digest}): skipped, the identical "
                            f"configuration FINISHED in run {done}; metrics copied from it "
                            "(+force=true runs it again)")
                return result
            server = job_server(settings)
            events.line("bold", f"({flags.digest}): " + (
                "planning (builder.dry_run)" if settings.builder.dry_run else
                f"building with {settings.builder.name}"))
            typed = realise_in_graph(settings, inputs, flags, job, workdir, events)
            reference = job_reference(inputs, flags, settings.builder.derived_dir)
            if settings.builder.dry_run:
                dry_run(settings, inputs.model, flags, typed, workdir, job, reference, events)
                return result
            try:
                with events.phase(f"build ({settings.builder.name})"):
                    engine = build_engine(settings.builder, typed.path, flags,
                                          reference=reference, onnx_digest=typed.digest)
            except BuildError as exc:
                if exc.log_path is not None:  # the FAILED run keeps the builder's log
                    job.artifact(exc.log_path, "engine")
                raise
            _log_engine(job, engine, settings, workdir, label, store.experiment_id, flags_yaml)
            if reason := engine.runtime.get("precision_mismatch"):
                job.tags({tag.PRECISION_MISMATCH: str(reason)})
                events.line("red", f"precision mismatch: {reason}")
            evaluation = evaluate(settings, inputs, engine, workdir, job, server, events)
            metrics = evaluation.metrics()
            result.metrics = metrics  # measured: kept even if the store refuses it below
            log_evaluation(job, evaluation, engine.flags.label, workdir)
            t_log = time.perf_counter()
            job.metrics(recorded(metrics))
            metrics["logging_seconds"] = time.perf_counter() - t_log
            metrics["build_seconds"] = engine.build_seconds
            metrics["job_seconds"] = time.perf_counter() - started
            job.metrics(recorded({k: metrics[k] for k in ("logging_seconds", "job_seconds")}))
            # The run's page in the MLflow UI opens on its figures and what it ran; the
            # sweep's verdict adds ΔWER and its standing once every job has ended.
            job.tags({tag.NOTE: describe.job(JobRecord(
                job.run_id, label, "FINISHED", metrics=metrics, tags={**tags, **{
                    tag.BUILDER_VERSION: engine.builder_version,
                    tag.DATASET_DIGEST: (job.dataset_ref or ("", ""))[1]}},
                flags=flags))})
            result.metrics = metrics
        events.line("green", f"WER {metrics['wer'] * 100:.2f} % "
                    f"[{metrics['wer_ci_low'] * 100:.2f}, {metrics['wer_ci_high'] * 100:.2f}], "
                    f"CER {metrics['cer'] * 100:.2f} %, "
                    f"p99 {metrics['latency_p99_ms']:.1f} ms, "
                    f"{metrics['throughput_chunks_s']:.0f} chunks/s")
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        result.status = "FAILED"
        result.error = str(exc) if isinstance(exc, SweepError) else f"{type(exc).__name__}: {exc}"
        if store_refused(exc):
            _store_stopped(exc, result, label, flags, workdir, run_id, parent_id)
        events.line("red", result.error, label=f"{label} FAILED")
    return result


def _store_stopped(exc: Exception, result: JobResult, label: str, flags: FlagSet | None,
                   workdir: Path, run_id: str | None, parent_id: str | None) -> None:
    """The tracking store stopped accepting writes: every later write would fail the same
    way, so the sweep stops here, with one line. What this job measured goes to its folder
    (``results.json``, naming its run: the next sweep closes that run with these figures,
    sweep/tracking/recover.py); jobs logged before stay in the store."""
    words = failures.reason(exc)
    result.error = f"the tracking store stopped accepting writes ({words})"
    kept = failures.keep_results(workdir, {
        "label": label, "status": result.status, "error": result.error,
        "run_id": run_id, "parent_run_id": parent_id,
        "flags": flags.as_dict() if flags is not None else None,
        # Named as the run's metrics are: the next sweep logs them as they are.
        "metrics": recorded(result.metrics)})
    raise cli.Exit(cli.ExitCode.MLFLOW_FAILED,
                   f"{label}: {result.error}; the sweep stopped. What this job measured is "
                   f"kept in {kept}; the jobs logged before it are in the store. Free the "
                   "store's volume (or make it writable) and run the same command again: "
                   "it logs the kept figures to this job's run, and finished jobs are "
                   "resumed.")
