"""One multirun job, end to end. The only module that reads Hydra's config and knows the
order of the stages: flags -> build -> deploy -> evaluate -> track."""

from __future__ import annotations

import csv
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sweep.builder import Builder, make_builder
from sweep.builder.cache import EngineCache
from sweep.config import as_dict
from sweep.data.manifest import Utterance, load_manifest
from sweep.engine import Engine
from sweep.errors import BuildError, ConfigError, SweepError
from sweep.evaluate.decode import DecodePool, DecoderSpec
from sweep.evaluate.metrics import latency_summary, score
from sweep.evaluate.stream import GrpcStreamer, StreamRun, UtteranceResult
from sweep.flags import FlagSet
from sweep.infra.device import engine_device
from sweep.infra.files import file_digest, project_path
from sweep.model import ModelInterface, StatePair
from sweep.server import Server, make_server
from sweep.server.base import ServingOptions
from sweep.server.repository import render
from sweep.tracking import resume
from sweep.tracking.plots import plot_latency, plot_layer_precisions
from sweep.tracking.runs import (
    JobRun,
    close_orphaned_runs,
    environment_tags,
    job_run,
    orphans_message,
    parent_run_id,
)
from sweep.tracking.store import open_store

console = Console(stderr=True)


def say(label: str, style: str, message: str) -> None:
    """One unwrapped line per event (error messages stay greppable); the message itself is
    printed verbatim, never parsed as rich markup."""
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] [{style}]{label}[/]", end=" ",
                  soft_wrap=True)
    console.print(message, markup=False, highlight=False, soft_wrap=True)



@dataclass
class JobResult:
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "FINISHED"
    error: str | None = None

    @property
    def objectives(self) -> tuple[float, float]:
        """(wer, latency_p99_ms) for a sweeper; inf for a failed job so it never wins."""
        return (self.metrics.get("wer", math.inf), self.metrics.get("latency_p99_ms", math.inf))


def model_interface(cfg: DictConfig) -> ModelInterface:
    m = as_dict(cfg.model)
    states = tuple(StatePair(s["input"], s["output"]) for s in m.pop("states"))
    return ModelInterface(states=states, **{**m, "onnx_path": project_path(m["onnx_path"])})


def dataset(cfg: DictConfig) -> list[Utterance]:
    folder = project_path(cfg.dataset.base_path) / cfg.dataset.name
    utterances = load_manifest(folder, expected_rate=cfg.model.sample_rate,
                               manifest_name=cfg.dataset.manifest)
    return utterances[: cfg.dataset.limit] if cfg.dataset.limit else utterances


def job_params(cfg: DictConfig, flags: FlagSet) -> dict[str, Any]:
    params: dict[str, Any] = dict(flags.params())
    for group in ("builder", "server", "model", "dataset", "eval", "decoder"):
        for key, value in as_dict(cfg[group]).items():
            if key != "states":
                params[f"{group}.{key}"] = value
    return params


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def _transcripts(run: StreamRun, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "duration", "reference", "hypothesis", "chunks",
                         "latency_mean_ms"])
        for r in run.results:
            writer.writerow([r.utterance.id, f"{r.utterance.duration:.3f}", r.utterance.text,
                             r.hypothesis, len(r.latencies_ms),
                             f"{sum(r.latencies_ms) / max(len(r.latencies_ms), 1):.3f}"])


class _Deadline:
    """``builder.timeout_s`` for the emulate builder running in this process; the
    containerised builders (trtexec, ``in_container``) enforce it on their container.

    SIGALRM raises inside the build, which the builder records in its log like any other
    failure. A single long C call (an ONNX Runtime session being created) is interrupted
    when it returns, not in its middle. Only the main thread receives signals: elsewhere
    (a launcher running jobs in threads) the build runs without a deadline.
    """

    def __init__(self, builder: Builder, timeout_s: float) -> None:
        self.inner = builder
        self.name = builder.name
        self.timeout_s = float(timeout_s)

    def version(self) -> str:
        return self.inner.version()

    def build(self, onnx_path: Path, flags: FlagSet, workdir: Path) -> Engine:
        if self.timeout_s <= 0 or threading.current_thread() is not threading.main_thread():
            return self.inner.build(onnx_path, flags, workdir)

        def expired(signum: int, frame: object) -> None:
            raise BuildError(f"the build did not finish within builder.timeout_s="
                             f"{self.timeout_s:g} s (raise it for large models)")

        previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        try:
            return self.inner.build(onnx_path, flags, workdir)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def build_engine(cfg: DictConfig, model: ModelInterface, flags: FlagSet,
                 job_label: str | None = None) -> Engine:
    b = cfg.builder
    docker = {"docker_base_url": b.docker_base_url, "job": job_label}
    builder: Builder
    if b.name == "emulate" and b.in_container:
        from sweep.builder.container import ContainerBuilder

        builder = ContainerBuilder(builder="emulate", image=b.image, timeout_s=b.timeout_s,
                                   options={"intra_op_num_threads": b.intra_op_threads},
                                   **docker)
    elif b.name == "emulate":
        builder = _Deadline(make_builder("emulate", intra_op_num_threads=b.intra_op_threads),
                            b.timeout_s)
    else:
        builder = make_builder(b.name, image=b.image, gpus=b.gpus, timeout_s=b.timeout_s,
                               trtexec_path=b.trtexec_path,
                               timing_cache_dir=b.timing_cache_dir, **docker)
    device = engine_device(b.name)
    cache = EngineCache(b.cache_dir, max_gb=b.cache_max_gb)
    return cache.build(builder, model.onnx_path, flags, device)


def job_server(cfg: DictConfig) -> Server:
    """The job's server, checked before any build: ``site_packages`` is the first thing
    that needs the server's side (for Docker: a daemon that answers and the image), so a
    stopped daemon fails the job before an engine is built for nothing."""
    server_options = {k: v for k, v in as_dict(cfg.server).items() if k not in (
        "name", "max_batch_size", "queue_delay_us", "instances")}
    server = make_server(cfg.server.name, **server_options)
    server.site_packages()
    return server


def evaluate(cfg: DictConfig, model: ModelInterface, engine: Engine, utterances: list[Utterance],
             workdir: Path, job: JobRun, server: Server | None = None
             ) -> dict[str, float]:
    """Deploy the engine, stream the test set through Triton, score it."""
    server = server if server is not None else job_server(cfg)
    repository = render(model, engine, workdir / "model_repository",
                        site_packages=server.site_packages(),
                        options=ServingOptions(max_batch_size=cfg.server.max_batch_size,
                                               queue_delay_us=cfg.server.queue_delay_us,
                                               instances=cfg.server.instances,
                                               intra_op_threads=cfg.builder.intra_op_threads,
                                               fp16_features=cfg.eval.fp16_features))
    for config in repository.configs:
        job.artifact(config, f"model_repository/{config.parent.name}")
    log_path = workdir / "tritonserver.log"
    timings: dict[str, float] = {}
    spec = DecoderSpec.from_config(as_dict(cfg.decoder), resolve=project_path)
    # Greedy takes microseconds an utterance: decode inline. Beam search with KenLM runs
    # in worker processes that load the LM before the server starts and decode each
    # utterance as soon as its last chunk is back, off the streaming event loop.
    workers = cfg.decoder.workers if spec.name == "beam" else 0
    try:
        with DecodePool(spec, workers) as pool:
            timings["decoder_load_seconds"] = pool.build_seconds
            t0 = time.perf_counter()
            with server.serving(repository, log_path) as endpoint:
                timings["startup_seconds"] = time.perf_counter() - t0
                streamer = GrpcStreamer(model, endpoint.grpc_url, endpoint.model_name,
                                        streams=cfg.eval.streams,
                                        timeout_s=cfg.eval.request_timeout_s,
                                        transport=cfg.eval.transport)
                with _progress() as progress:
                    task = progress.add_task(f"streaming {engine.flags.label}",
                                             total=len(utterances))

                    def done(result: UtteranceResult) -> None:
                        pool.submit(result.utterance.id, result.logprobs)
                        progress.advance(task)

                    run = streamer.run(utterances, done)
                job.tags({"transport": streamer.used_transport or cfg.eval.transport})
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
    job.artifact(plot_latency(run.latencies_ms, workdir / "latency.png",
                              f"{engine.flags.label}: {run.streams} streams"), "plots")
    transcripts = workdir / "transcripts.csv"
    _transcripts(run, transcripts)
    job.artifact(transcripts)
    return {"wer": scores.wer, "cer": scores.cer, **latency_summary(run.latencies_ms),
            "throughput_chunks_s": run.chunks / run.wall_seconds,
            "rtf": run.wall_seconds / max(run.audio_seconds, 1e-9),
            "eval_seconds": run.wall_seconds, "chunks": float(run.chunks),
            "utterances": float(len(run.results)), **timings}


def run(cfg: DictConfig, workdir: Path, sweep_dir: Path | None = None,
        job_num: int | None = None) -> JobResult:
    """Run one job; a failure is recorded (FAILED run, reason) and returned, not raised, so
    the sweep goes on with its other jobs. Ctrl-C/SIGTERM still propagate."""
    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    store = open_store(cfg.tracking.uri, cfg.tracking.experiment,
                             cfg.tracking.artifact_root, Path.cwd())
    if sweep_dir is None:  # a multirun's parent-run callback did it for the whole sweep
        closed = close_orphaned_runs(store)
        if closed:
            say("store", "yellow", orphans_message(closed))
    flags: FlagSet | None = None
    flag_error: SweepError | None = None
    try:
        flags = FlagSet.from_mapping(as_dict(cfg.trt))
        label = flags.label
    except SweepError as exc:  # recorded as a FAILED run below, with the params it had
        flag_error, label = exc, "invalid-flags"
    tags = {**environment_tags(), "builder": cfg.builder.name, "server": cfg.server.name,
            "model": cfg.model.name, "dataset": cfg.dataset.name, "trt-sweep.kind": "job"}
    if flags is not None:
        tags["flags_digest"] = flags.digest
    result = JobResult()
    try:
        with job_run(store, label, parent_run_id(sweep_dir), tags) as job:
            job.params({"job.num": job_num if job_num is not None else 0,
                        **(job_params(cfg, flags) if flags else
                           {f"trt.{k}": v for k, v in as_dict(cfg.trt).items()})})
            if flag_error is not None or flags is None:
                raise flag_error or ConfigError("trt: no flag set")
            model = model_interface(cfg)
            model.tensors()  # the ONNX must match the interface before anything is built
            utterances = dataset(cfg)
            identity = resume.job_identity(
                flags_digest=flags.digest, onnx_digest=file_digest(model.onnx_path),
                data_digest=resume.utterances_digest(utterances), device=tags["device"],
                settings={g: as_dict(cfg[g]) for g in resume.SETTING_GROUPS})
            job.tags({resume.IDENTITY_TAG: identity})
            done = None if cfg.get("force", False) else resume.find_finished(store, identity)
            if done is not None:
                # Resume: this exact job already FINISHED in the experiment; its run gets
                # the metrics and a resumed_from tag, nothing is built or served.
                result.metrics = resume.adopt(store, done, job)
                say(label, "yellow", f"({flags.digest}): skipped, the identical configuration "
                    f"FINISHED in run {done}; metrics copied from it (+force=true runs it "
                    "again)")
                return result
            server = job_server(cfg)
            say(label, "bold", f"({flags.digest}): building with {cfg.builder.name}")
            try:
                engine = build_engine(cfg, model, flags)
            except BuildError as exc:
                if exc.log_path is not None:  # the FAILED run keeps the builder's log
                    job.artifact(exc.log_path, "engine")
                raise
            job.tags({"engine_hash": engine.path.parent.name, "engine_cached":
                      str(engine.cached).lower(), "builder_version": engine.builder_version,
                      # promote checks the engine it installs against this
                      "engine_sha256": file_digest(engine.path)})
            job.metrics({"build_seconds": engine.build_seconds, **engine.metrics})
            for artifact in (engine.log_path, *engine.artifacts):
                job.artifact(artifact, "engine")
                if artifact.name == "layer_precisions.json":
                    job.artifact(plot_layer_precisions(
                        artifact, workdir / "layer_precisions.png",
                        title=f"Stored precision per op type: {label}"), "plots")
            if cfg.tracking.log_engine:
                job.artifact(engine.path, "engine")
            metrics = evaluate(cfg, model, engine, utterances, workdir, job, server)
            t_log = time.perf_counter()
            job.metrics(metrics)
            metrics["logging_seconds"] = time.perf_counter() - t_log
            metrics["build_seconds"] = engine.build_seconds
            metrics["job_seconds"] = time.perf_counter() - started
            job.metrics({k: metrics[k] for k in ("logging_seconds", "job_seconds")})
            result.metrics = metrics
        say(label, "green", f"WER {metrics['wer']:.4f}, CER {metrics['cer']:.4f}, "
                    f"p99 {metrics['latency_p99_ms']:.1f} ms, "
                    f"{metrics['throughput_chunks_s']:.0f} chunks/s")
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        result.status = "FAILED"
        result.error = str(exc) if isinstance(exc, SweepError) else f"{type(exc).__name__}: {exc}"
        say(f"{label} FAILED", "red", result.error)
    return result
